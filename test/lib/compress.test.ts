import {expect} from 'chai'
import {execFileSync} from 'node:child_process'
import {randomBytes} from 'node:crypto'
import {Readable} from 'node:stream'
import {pipeline} from 'node:stream/promises'
import {gunzipSync} from 'node:zlib'

import {
  type Compression, type CompressorOptions, createCompressor, LAYER_MEDIA_TYPES,
} from '../../src/lib/compress.js'
import {requireTools} from '../helpers/tools.js'

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

  it('writes zstd that the zstd command reads back, deterministically', async function () {
    requireTools(this, 'zstd')
    const first = await compressWith(data, 'zstd')
    expect(execFileSync('zstd', ['-d', '-c'], {input: first}).equals(data)).to.equal(true)
    expect((await compressWith(data, 'zstd')).equals(first)).to.equal(true)
    expect(LAYER_MEDIA_TYPES.zstd).to.equal('application/vnd.oci.image.layer.v1.tar+zstd')
  })

  it('names the OCI media types', () => {
    expect(LAYER_MEDIA_TYPES.gzip).to.equal('application/vnd.oci.image.layer.v1.tar+gzip')
    expect(LAYER_MEDIA_TYPES.none).to.equal('application/vnd.oci.image.layer.v1.tar')
  })
})
