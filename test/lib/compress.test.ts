import {expect} from 'chai'
import {randomBytes} from 'node:crypto'
import {Readable} from 'node:stream'
import {pipeline} from 'node:stream/promises'
import {gunzipSync} from 'node:zlib'

import {createCompressor, LAYER_MEDIA_TYPES} from '../../src/lib/compress.js'

async function compress(data: Buffer, level?: number): Promise<Buffer> {
  const out: Buffer[] = []
  await pipeline(Readable.from([data]), createCompressor('gzip', {level}), async (source: AsyncIterable<Buffer>) => {
    for await (const chunk of source) out.push(chunk)
  })
  return Buffer.concat(out)
}

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

  it('refuses levels outside 1–9', () => {
    expect(() => createCompressor('gzip', {level: 0})).to.throw(/1–9/)
    expect(() => createCompressor('gzip', {level: 10})).to.throw(/1–9/)
  })

  it('names the OCI media types', () => {
    expect(LAYER_MEDIA_TYPES.gzip).to.equal('application/vnd.oci.image.layer.v1.tar+gzip')
    expect(LAYER_MEDIA_TYPES.none).to.equal('application/vnd.oci.image.layer.v1.tar')
  })
})
