import {expect} from 'chai'
import {execFileSync} from 'node:child_process'
import {randomBytes} from 'node:crypto'
import {writeFileSync} from 'node:fs'
import path from 'node:path'
import {Readable} from 'node:stream'
import {pipeline} from 'node:stream/promises'
import {gunzipSync, gzipSync} from 'node:zlib'

import {
  type Compression, type CompressorOptions, createCompressor, defaultZstdImplementation, LAYER_MEDIA_TYPES, MEMBER_BYTES,
} from '../../../src/lib/layer/compress.js'
import {tempDir} from '../../helpers/ext4.js'
import {requireTools} from '../../helpers/tools.js'

const GZIP_MAGIC = Buffer.from([0x1F, 0x8B, 0x08, 0x00])

async function compressWith(data: Buffer, compression: Compression, options: CompressorOptions = {}): Promise<Buffer> {
  const out: Buffer[] = []
  // Feed odd-sized chunks, as a tar stream does.
  const chunks = Array.from({length: Math.ceil(data.length / 65_521)}, (_, i) => data.subarray(i * 65_521, (i + 1) * 65_521))
  await pipeline(Readable.from(chunks), createCompressor(compression, options), async (source: AsyncIterable<Buffer>) => {
    for await (const chunk of source) out.push(chunk)
  })
  return Buffer.concat(out)
}

const compress = (data: Buffer, level?: number): Promise<Buffer> => compressWith(data, 'gzip', {level})

describe('compress', () => {
  const data = Buffer.concat([randomBytes(100_000), Buffer.alloc(100_000, 0x61)])

  it('round-trips through gzip, deterministically', async () => {
    const first = await compress(data)
    expect(gunzipSync(first).equals(data)).to.equal(true)
    expect((await compress(data)).equals(first)).to.equal(true)
    // No file name and no mtime in the header: nothing about the host or the time leaks into the digest.
    expect(first.readUInt32LE(4)).to.equal(0)
    expect(first[3] & 0x08).to.equal(0)
  })

  it('refuses levels outside the range of each algorithm', () => {
    expect(() => createCompressor('gzip', {level: 0})).to.throw(/1–9/)
    expect(() => createCompressor('gzip', {level: 10})).to.throw(/1–9/)
    expect(() => createCompressor('zstd', {level: 20})).to.throw(/1–19/)
    expect(() => createCompressor('none', {level: 3})).to.throw(/does not apply/)
  })

  it('writes gzip as independent members at fixed offsets: any reader, same bytes for any parallelism', async () => {
    const big = Buffer.concat(Array.from({length: 5}, (_, i) => Buffer.concat([randomBytes(1024 * 1024), Buffer.alloc(1024 * 1024, i)])))
    const one = await compressWith(big, 'gzip', {parallelism: 1})
    const four = await compressWith(big, 'gzip', {parallelism: 4})
    expect(four.equals(one)).to.equal(true)
    expect(gunzipSync(one).equals(big)).to.equal(true)
    // Three members for 10 MiB: 4 + 4 + 2.
    let members = 0
    for (let at = one.indexOf(GZIP_MAGIC); at !== -1; at = one.indexOf(GZIP_MAGIC, at + 1)) members++
    expect(members).to.be.at.least(3)
    execFileSync('gzip', ['-t'], {input: one})
  })

  it('writes a gzip member with the same bytes on the main thread (a layer of one member) as on a worker', async () => {
    const member = (bytes: Buffer): Buffer => gzipSync(bytes, {chunkSize: 1024 * 1024, level: 6, memLevel: 9})
    // One member: compressed without a worker.
    expect((await compress(data)).equals(member(data))).to.equal(true)
    // Two: each on a worker, as the main thread would have written it.
    const two = Buffer.concat([randomBytes(MEMBER_BYTES), data])
    expect((await compress(two)).equals(Buffer.concat([member(two.subarray(0, MEMBER_BYTES)), member(data)]))).to.equal(true)
    expect(await compress(Buffer.alloc(0))).to.have.length(0)
  })

  it('writes zstd that the zstd command reads back, deterministically, whoever compresses', async function () {
    requireTools(this, 'zstd')
    // Node 20 has only the command; Node ≥ 22.15 has zlib's zstd too, and both must hold.
    const implementations = defaultZstdImplementation() === 'zlib' ? (['zlib', 'command'] as const) : (['command'] as const)
    for (const zstd of implementations) {
      const first = await compressWith(data, 'zstd', {zstd})
      // A zstd frame with the checksum flag set (frame header descriptor bit 2), as the command writes by default.
      expect(first.readUInt32LE(0)).to.equal(0xFD_2F_B5_28)
      expect(first[4] & 0x04).to.equal(0x04)
      expect(execFileSync('zstd', ['-d', '-c'], {input: first}).equals(data)).to.equal(true)
      expect((await compressWith(data, 'zstd', {zstd})).equals(first), zstd).to.equal(true)
    }

    expect(LAYER_MEDIA_TYPES.zstd).to.equal('application/vnd.oci.image.layer.v1.tar+zstd')
  })

  it('uses zlib\'s zstd where Node has it (≥ 22.15): independent frames, the same bytes for any parallelism', async () => {
    const [major, minor] = process.versions.node.split('.').map(Number)
    const hasZlibZstd = major > 22 || (major === 22 && minor >= 15)
    expect(defaultZstdImplementation()).to.equal(hasZlibZstd ? 'zlib' : 'command')
    if (!hasZlibZstd) {
      expect(() => createCompressor('zstd', {zstd: 'zlib'})).to.throw(/no zstd in zlib/)
      return
    }

    // No zstd binary needed: with an empty PATH the default still compresses (the command would fail ENOENT).
    const path0 = process.env.PATH
    let withoutBinary: Buffer
    try {
      process.env.PATH = ''
      withoutBinary = await compressWith(data, 'zstd')
    } finally {
      process.env.PATH = path0
    }

    expect(execFileSync('zstd', ['-d', '-c'], {input: withoutBinary}).equals(data)).to.equal(true)
    const big = Buffer.concat(Array.from({length: 6}, (_, i) => Buffer.concat([randomBytes(1024 * 1024), Buffer.alloc(1024 * 1024, i)])))
    const one = await compressWith(big, 'zstd', {parallelism: 1, zstd: 'zlib'})
    const four = await compressWith(big, 'zstd', {parallelism: 4, zstd: 'zlib'})
    expect(four.equals(one)).to.equal(true)
    expect(execFileSync('zstd', ['-d', '-c'], {input: one, maxBuffer: 64 * 1024 * 1024}).equals(big)).to.equal(true)
    // Three frames for 12 MiB of input (one per 4 MiB), each a standard frame the command lists.
    const file = path.join(tempDir(), 'layer.zst')
    writeFileSync(file, one)
    const frames = execFileSync('zstd', ['-l', '-v', file]).toString()
    expect(frames).to.match(/# Zstandard Frames: 3\b/)
  })

  it('names the OCI media types', () => {
    expect(LAYER_MEDIA_TYPES.gzip).to.equal('application/vnd.oci.image.layer.v1.tar+gzip')
    expect(LAYER_MEDIA_TYPES.none).to.equal('application/vnd.oci.image.layer.v1.tar')
  })
})
