import {expect} from 'chai'
import {execFile} from 'node:child_process'
import {
  existsSync, readdirSync, readFileSync, statSync, writeFileSync,
} from 'node:fs'
import path from 'node:path'
import {Readable} from 'node:stream'
import {promisify} from 'node:util'

import {sha256Digest} from '../../../src/lib/oci/digest.js'
import {MEDIA_TYPES, REF_NAME_ANNOTATION} from '../../../src/lib/oci/image.js'
import {OciLayout} from '../../../src/lib/oci/layout.js'
import {tempDir} from '../../helpers/ext4.js'

const run = promisify(execFile)

async function layoutWithManifest(): Promise<{descriptor: {digest: string; mediaType: string; size: number}; layout: OciLayout}> {
  const layout = new OciLayout(path.join(tempDir(), 'oci'))
  await layout.init()
  const blob = await layout.writeBlob(Buffer.from('{"schemaVersion":2}'))
  return {descriptor: {...blob, mediaType: MEDIA_TYPES.manifest}, layout}
}

async function * failing(): AsyncGenerator<Buffer> {
  yield Buffer.from('partial')
  throw new Error('source broke')
}

describe('layout', () => {
  it('creates oci-layout, index.json and blobs/sha256', async () => {
    const root = path.join(tempDir(), 'oci')
    await new OciLayout(root).init()
    expect(JSON.parse(readFileSync(path.join(root, 'oci-layout'), 'utf8'))).to.deep.equal({imageLayoutVersion: '1.0.0'})
    expect(JSON.parse(readFileSync(path.join(root, 'index.json'), 'utf8'))).to.deep.equal({
      manifests: [],
      mediaType: MEDIA_TYPES.index,
      schemaVersion: 2,
    })
    expect(statSync(path.join(root, 'blobs', 'sha256')).isDirectory()).to.equal(true)
  })

  it('refuses a layout of another version', async () => {
    const root = path.join(tempDir(), 'oci')
    await new OciLayout(root).init()
    writeFileSync(path.join(root, 'oci-layout'), '{"imageLayoutVersion":"2.0.0"}')
    try {
      await new OciLayout(root).init()
      expect.fail('accepted')
    } catch (error) {
      expect((error as Error).message).to.match(/imageLayoutVersion is "2.0.0"/)
    }
  })

  it('stores blobs by digest, read-only, once', async () => {
    const {layout} = await layoutWithManifest()
    const data = Buffer.from('hello')
    const first = await layout.writeBlob(data)
    const second = await layout.writeBlobStream(Readable.from([data]))
    expect(first).to.deep.equal({digest: sha256Digest(data), size: 5})
    expect(second).to.deep.equal(first)
    expect(statSync(layout.blobPath(first.digest)).mode & 0o777).to.equal(0o444)
    expect(readdirSync(layout.ingestDir())).to.deep.equal([])
  })

  it('stores nothing when the stream fails', async () => {
    const {layout} = await layoutWithManifest()
    const before = readdirSync(path.join(layout.root, 'blobs', 'sha256'))
    try {
      await layout.writeBlobStream(Readable.from(failing()))
      expect.fail('stored')
    } catch (error) {
      expect((error as Error).message).to.equal('source broke')
    }

    expect(readdirSync(path.join(layout.root, 'blobs', 'sha256'))).to.deep.equal(before)
    expect(readdirSync(layout.ingestDir())).to.deep.equal([])
  })

  it('keeps an ingested blob out of blobs/ until it is committed; a discarded one leaves nothing', async () => {
    const {layout} = await layoutWithManifest()
    const blobs = path.join(layout.root, 'blobs', 'sha256')
    const before = readdirSync(blobs)
    const kept = await layout.ingestBlobStream(Readable.from([Buffer.from('kept')]))
    const dropped = await layout.ingestBlobStream(Readable.from([Buffer.from('dropped')]))
    expect(kept).to.include({digest: sha256Digest(Buffer.from('kept')), size: 4})
    expect(readdirSync(blobs)).to.deep.equal(before)
    expect(readdirSync(layout.ingestDir())).to.have.length(2)
    await dropped.discard()
    await kept.commit()
    // Discarding after the commit leaves the committed blob alone.
    await kept.discard()
    expect(readdirSync(blobs).sort()).to.deep.equal([...before, kept.digest.slice('sha256:'.length)].sort())
    expect(await layout.hasBlob(dropped.digest)).to.equal(false)
    expect(readdirSync(layout.ingestDir())).to.deep.equal([])
  })

  it('moves a tag and lets several tags share a manifest', async () => {
    const {descriptor, layout} = await layoutWithManifest()
    await layout.tag('local/a:1', descriptor)
    await layout.tag('local/b:1', descriptor)
    const other = {...(await layout.writeBlob(Buffer.from('{"other":1}'))), mediaType: MEDIA_TYPES.manifest}
    await layout.tag('local/a:1', other)
    const index = await layout.readIndex()
    expect(index.manifests.map(d => [d.annotations?.[REF_NAME_ANNOTATION], d.digest])).to.deep.equal([
      ['local/a:1', other.digest],
      ['local/b:1', descriptor.digest],
    ])
    expect((await layout.resolve('local/b:1')).digest).to.equal(descriptor.digest)
  })

  it('refuses to tag a manifest it does not hold', async () => {
    const {layout} = await layoutWithManifest()
    try {
      await layout.tag('local/a:1', {digest: sha256Digest('missing'), mediaType: MEDIA_TYPES.manifest, size: 7})
      expect.fail('tagged')
    } catch (error) {
      expect((error as Error).message).to.match(/not stored/)
    }
  })

  it('says not found for an unknown ref', async () => {
    const {layout} = await layoutWithManifest()
    try {
      await layout.resolve('local/nope:1')
      expect.fail('resolved')
    } catch (error) {
      expect(error).to.include({exitCode: 3})
      expect((error as Error).message).to.match(/commit/i)
    }
  })

  it('loses no tag when many processes tag at once', async () => {
    const {descriptor, layout} = await layoutWithManifest()
    const script = `
      const {OciLayout} = await import(${JSON.stringify(path.resolve('src/lib/oci/layout.ts'))})
      const layout = new OciLayout(process.argv[1])
      await layout.init()
      for (let i = 0; i < 10; i++) await layout.tag(process.argv[2] + ':' + i, JSON.parse(process.argv[3]))
    `
    await Promise.all(['local/p0', 'local/p1', 'local/p2', 'local/p3'].map(name =>
      run(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script, layout.root, name, JSON.stringify(descriptor)])))
    const refs = (await layout.readIndex()).manifests.map(d => d.annotations?.[REF_NAME_ANNOTATION])
    expect(refs).to.have.length(40)
    expect(existsSync(path.join(layout.root, 'index.json.lock'))).to.equal(false)
  })

  it('removes temp files left by a killed writer', async () => {
    const {layout} = await layoutWithManifest()
    const child = await run(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'])
    const stale = path.join(layout.ingestDir(), `${child.stdout}-deadbeef`)
    writeFileSync(stale, 'half a blob')
    await new OciLayout(layout.root).init()
    expect(existsSync(stale)).to.equal(false)
  })

  it('gives new files to the owner of the state dir when root writes them', async function () {
    if (process.getuid?.() !== 0) {
      // Only root can create files for another user; CI runs as root.
      this.skip()
    }

    const {chownSync, lstatSync} = await import('node:fs')
    const state = tempDir()
    chownSync(state, 1234, 5678)
    const layout = new OciLayout(path.join(state, 'images', 'oci'))
    await layout.init()
    const blob = await layout.writeBlob(Buffer.from('{"schemaVersion":2}'))
    await layout.tag('local/x:1', {...blob, mediaType: MEDIA_TYPES.manifest})
    for (const file of ['images', 'images/oci', 'images/oci/blobs', 'images/oci/blobs/sha256', 'images/oci/ingest', 'images/oci/index.json', 'images/oci/oci-layout']) {
      expect(lstatSync(path.join(state, file)), file).to.include({gid: 5678, uid: 1234})
    }

    expect(lstatSync(layout.blobPath(blob.digest))).to.include({gid: 5678, uid: 1234})
  })
})
