import path from 'node:path'
import {gzipSync} from 'node:zlib'

import {
  buildConfig, buildManifest, canonicalJson, type Descriptor, MEDIA_TYPES,
} from '../../src/lib/oci/image.js'
import {OciLayout} from '../../src/lib/oci/layout.js'
import {tempDir} from './ext4.js'

export interface TinyImage {
  config: {data: Buffer; digest: string}
  layer: {data: Buffer; digest: string}
  layout: string
  manifest: {data: Buffer; digest: string}
  ref: string
}

/** A small valid image in a fresh layout, without ext4 or debugfs: for protocol tests. */
export async function tinyImage(ref = 'local/tiny:v1', layerBytes = 3000): Promise<TinyImage> {
  const layout = new OciLayout(path.join(tempDir('plugin-image-tiny-'), 'oci'))
  await layout.init()
  const layerData = gzipSync(Buffer.alloc(layerBytes, 7))
  const layer = await layout.writeBlob(layerData)
  const configData = canonicalJson(buildConfig({
    architecture: 'amd64', created: new Date(0), defaults: {}, diffId: `sha256:${'0'.repeat(64)}`, workspace: 'tiny',
  }))
  const config = await layout.writeBlob(configData)
  const layerDescriptor: Descriptor = {...layer, mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip'}
  const manifestData = canonicalJson(buildManifest({...config, mediaType: MEDIA_TYPES.config}, [layerDescriptor]))
  const manifest = await layout.writeBlob(manifestData)
  await layout.tag(ref, {...manifest, mediaType: MEDIA_TYPES.manifest})
  return {
    config: {data: configData, digest: config.digest},
    layer: {data: layerData, digest: layer.digest},
    layout: layout.root,
    manifest: {data: manifestData, digest: manifest.digest},
    ref,
  }
}
