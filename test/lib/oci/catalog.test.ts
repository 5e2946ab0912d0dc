import {expect} from 'chai'
import {
  existsSync, mkdirSync, readdirSync, rmSync, writeFileSync,
} from 'node:fs'
import path from 'node:path'

import type {ImageIndex} from '../../../src/lib/oci/layout.js'

import {
  inspectImage, listImages, removeImage, tagImage,
} from '../../../src/lib/oci/catalog.js'
import {layoutPath, OciLayout} from '../../../src/lib/oci/layout.js'
import {rejection} from '../../helpers/assert.js'
import {commitFake} from '../../helpers/images.js'
import {blobFile, readJson, validateWithClients} from '../../helpers/oci.js'
import {addWorkspace, makeStateDir, runtimeRecord} from '../../helpers/state.js'
import {requireTools} from '../../helpers/tools.js'

describe('catalog (image list, inspect, tag, rm)', () => {
  let state: string
  let layout: string

  const commit = (reference: string, created: string, extra = ''): Promise<string> => commitFake(state, reference, created, extra)

  const blobs = (): string[] => readdirSync(path.join(layout, 'blobs', 'sha256')).sort()

  before(function () {
    requireTools(this, 'mke2fs', 'skopeo', 'umoci', 'oci-image-tool')
  })

  beforeEach(() => {
    state = makeStateDir()
    layout = layoutPath(state)
    addWorkspace(state, 'demo', {manifest: {arch: 'arm64', name: 'demo'}, runtime: runtimeRecord('stopped')})
  })

  it('lists nothing for a fresh state dir, without creating the layout', async () => {
    expect(await listImages(state)).to.deep.equal([])
    expect(existsSync(layout)).to.equal(false)
  })

  it('lists committed images sorted by reference, then the rootfs cache records', async () => {
    const v2 = await commit('local/demo:v2', '2026-02-01T00:00:00Z')
    const v1 = await commit('local/demo:v1', '2026-01-01T00:00:00Z')
    writeFileSync(path.join(state, 'images', 'index.json'), JSON.stringify({
      images: [{
        digest: 'sha256:' + 'a'.repeat(64),
        image_ref: 'docker.io/library/ubuntu:24.04',
        last_used_at: '2026-06-01T12:00:00Z',
        output_path: '/x.ext4',
        platform: {architecture: 'amd64', os: 'linux'},
        size_bytes: 268_435_456,
      }, {not: 'a record'}],
    }))
    const images = await listImages(state)
    expect(images.map(i => [i.reference, i.source, i.platform, i.created ?? i.last_used_at])).to.deep.equal([
      ['local/demo:v1', 'oci-layout', 'linux/arm64', '2026-01-01T00:00:00Z'],
      ['local/demo:v2', 'oci-layout', 'linux/arm64', '2026-02-01T00:00:00Z'],
      ['docker.io/library/ubuntu:24.04', 'rootfs-cache', 'linux/amd64', '2026-06-01T12:00:00Z'],
    ])
    expect(images[0].digest).to.equal(v1)
    expect(images[1].digest).to.equal(v2)
    const inspected = await inspectImage(state, 'local/demo:v1')
    expect(images[0].size_bytes).to.equal(inspected.size_bytes)
    expect(images[2].size_bytes).to.equal(268_435_456)
  })

  it('reports a damaged rootfs cache index with the layout exit code', async () => {
    mkdirSync(path.join(state, 'images'), {recursive: true})
    writeFileSync(path.join(state, 'images', 'index.json'), '{not json')
    const error = await rejection(listImages(state))
    expect(error.exitCode).to.equal(7)
    expect(error.message).to.include('index.json')
  })

  it('inspects the manifest, config and layers', async () => {
    const digest = await commit('local/demo:v1', '2026-01-01T00:00:00Z')
    const image = await inspectImage(state, ' local/demo:v1 ')
    expect(image.digest).to.equal(digest)
    expect(image.reference).to.equal('local/demo:v1')
    expect(image.config.architecture).to.equal('arm64')
    expect(image.layers).to.have.length(1)
    expect(image.layers[0].media_type).to.equal('application/vnd.oci.image.layer.v1.tar+gzip')
    expect(image.manifest.layers[0].digest).to.equal(image.layers[0].digest)
    const sizes = [image.manifest.config.size, image.manifest.layers[0].size]
    expect(image.size_bytes).to.be.greaterThan(sizes[0] + sizes[1])
    expect((await rejection(inspectImage(state, 'local/none:v1'))).exitCode).to.equal(3)
  })

  it('tags an image without copying blobs; the new tag opens in real clients', async () => {
    const digest = await commit('local/demo:v1', '2026-01-01T00:00:00Z')
    const before = blobs()
    const result = await tagImage(state, 'local/demo:v1', 'localhost:5000/team/demo:1.0')
    expect(result).to.deep.equal({digest, reference: 'localhost:5000/team/demo:1.0', source: 'local/demo:v1'})
    expect(blobs()).to.deep.equal(before)
    validateWithClients(layout, 'localhost:5000/team/demo:1.0')
    // Moving an existing tag says where it pointed before.
    const other = await commit('local/demo:v2', '2026-02-01T00:00:00Z')
    const moved = await tagImage(state, 'local/demo:v2', 'local/demo:v1')
    expect(moved.replaced).to.equal(digest)
    expect((await inspectImage(state, 'local/demo:v1')).digest).to.equal(other)
  })

  it('refuses a digest as the new tag, and an unknown source', async () => {
    await commit('local/demo:v1', '2026-01-01T00:00:00Z')
    const digestTarget = await rejection(tagImage(state, 'local/demo:v1', `local/demo@sha256:${'b'.repeat(64)}`))
    expect(digestTarget.exitCode).to.equal(2)
    expect(digestTarget.message).to.match(/^cannot tag/)
    expect((await rejection(tagImage(state, 'local/nope:v1', 'local/x:v1'))).exitCode).to.equal(3)
  })

  it('rm keeps the blobs another tag shares and deletes them with the last tag', async () => {
    // v1 and v2 share the layer (same files) but not the config (another created time); v3 shares nothing.
    const v1 = await commit('local/demo:v1', '2026-01-01T00:00:00Z')
    await commit('local/demo:v2', '2026-02-01T00:00:00Z')
    await commit('local/demo:v3', '2026-03-01T00:00:00Z', 'different\n')
    const v1Manifest = await new OciLayout(layout).readManifest(await new OciLayout(layout).resolve('local/demo:v1'))
    const sharedLayer = v1Manifest.manifest.layers[0].digest
    const v1Config = v1Manifest.manifest.config.digest

    const first = await removeImage(state, 'local/demo:v1')
    expect(first.digest).to.equal(v1)
    expect(first.deleted.map(b => b.digest).sort()).to.deep.equal([v1, v1Config].sort())
    expect(first.kept).to.equal(1)
    expect(first.reclaimed_bytes).to.equal(first.deleted.reduce((sum, b) => sum + b.size_bytes, 0))
    expect(existsSync(blobFile(layout, sharedLayer))).to.equal(true)
    expect(existsSync(blobFile(layout, v1))).to.equal(false)
    validateWithClients(layout, 'local/demo:v2')

    const second = await removeImage(state, 'local/demo:v2')
    expect(second.deleted.map(b => b.digest)).to.include(sharedLayer)
    expect(second.kept).to.equal(0)
    expect(existsSync(blobFile(layout, sharedLayer))).to.equal(false)
    const index = readJson<ImageIndex>(path.join(layout, 'index.json'))
    expect(index.manifests.map(d => d.annotations?.['org.opencontainers.image.ref.name'])).to.deep.equal(['local/demo:v3'])
    validateWithClients(layout, 'local/demo:v3')
    expect((await rejection(removeImage(state, 'local/demo:v1'))).exitCode).to.equal(3)
  })

  it('keeps every blob when two tags name the same manifest', async () => {
    await commit('local/demo:v1', '2026-01-01T00:00:00Z')
    await tagImage(state, 'local/demo:v1', 'local/demo:latest')
    const before = blobs()
    const result = await removeImage(state, 'local/demo:v1')
    expect(result.deleted).to.deep.equal([])
    expect(result.kept).to.equal(3)
    expect(blobs()).to.deep.equal(before)
    validateWithClients(layout, 'local/demo:latest')
  })

  it('refuses to tag a manifest whose blobs are gone (what a racing rm would leave)', async () => {
    await commit('local/demo:v1', '2026-01-01T00:00:00Z')
    const store = new OciLayout(layout)
    const descriptor = await store.resolve('local/demo:v1')
    const {manifest} = await store.readManifest(descriptor)
    rmSync(blobFile(layout, manifest.layers[0].digest), {force: true})
    const error = await rejection(store.tag('local/demo:v2', descriptor))
    expect(error.code).to.equal('LAYOUT_CONFLICT')
    expect(error.exitCode).to.equal(75)
    expect((await store.readIndex()).manifests).to.have.length(1)
  })
})
