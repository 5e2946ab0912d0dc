import {readFile} from 'node:fs/promises'
import path from 'node:path'

import type {LayerContents} from '../layer/layer-contents.js'
import type {SecretScan} from '../publish/secrets.js'

import {readSecrets} from '../publish/secrets-record.js'
import {MicroagentError} from '../support/errors.js'
import {isNumber, isPlainObject, isString} from '../support/guards.js'
import {loadIs} from '../support/is.js'
import {type Descriptor, type ImageManifest, REF_NAME_ANNOTATION} from './image.js'
import {layoutPath, OciLayout, type UntagResult} from './layout.js'
import {ImageRecords} from './records.js'
import {parseTagReference} from './reference.js'

/** One image a state dir holds: a committed one (the OCI layout) or a pulled rootfs (microagent's cache). */
export interface ImageRecord {
  created?: string
  /** Manifest digest for committed images; the registry digest for cached rootfs images. */
  digest: string
  /** For cached rootfs images: when microagent last booted it. */
  last_used_at?: string
  /** `os/arch[/variant]`. */
  platform: string
  reference: string
  /** Committed: manifest, config and compressed layers. Rootfs cache: the ext4 file. */
  size_bytes: number
  source: 'oci-layout' | 'rootfs-cache'
}

export interface ImageInspection {
  config: Record<string, unknown>
  digest: string
  /** With `files`: each layer's members (read with node-tar) and whether its tar matches the config's diff_id. */
  layers: ({contents?: LayerContents & {diff_id_matches: boolean}; digest: string; media_type: string; size_bytes: number})[]
  manifest: ImageManifest
  platform: string
  /** Bytes of the image's local records (secret findings, tree record): kept here, never pushed. */
  records_bytes: number
  reference: string
  /** What the commit's secret scan found; undefined for an image committed without a scan (older versions). */
  secrets?: SecretScan
  size_bytes: number
}

function platformText(platform: unknown): string {
  if (!isPlainObject(platform)) return 'unknown'
  const parts = [platform.os, platform.architecture, platform.variant].filter(p => isString(p) && p !== '')
  return parts.length > 0 ? parts.join('/') : 'unknown'
}

/** A tagged image's manifest and config (both checked against their digests), platform and stored size. */
async function readImage(layout: OciLayout, descriptor: Descriptor): Promise<Pick<ImageInspection, 'config' | 'manifest' | 'platform' | 'size_bytes'>> {
  const {manifest} = await layout.readManifest(descriptor)
  const config = await layout.readJson(manifest.config.digest)
  const size = [descriptor, manifest.config, ...manifest.layers].reduce((sum, blob) => sum + (isNumber(blob.size) ? blob.size : 0), 0)
  return {
    config, manifest, platform: platformText(descriptor.platform ?? config), size_bytes: size,
  }
}

function byReference(a: ImageRecord, b: ImageRecord): number {
  if (a.reference !== b.reference) return a.reference < b.reference ? -1 : 1
  return a.platform === b.platform ? (a.digest < b.digest ? -1 : 1) : (a.platform < b.platform ? -1 : 1)
}

/**
 * The images microagent keeps: `images/index.json` (the rootfs cache `image pull` fills; absent until the
 * first pull) is read as it is, tolerating fields this plugin does not know.
 */
async function rootfsCacheRecords(stateDir: string): Promise<ImageRecord[]> {
  const file = path.join(stateDir, 'images', 'index.json')
  let parsed: unknown
  try {
    parsed = JSON.parse(await readFile(file, 'utf8'))
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return []
    throw new MicroagentError(`cannot read microagent's image index ${file}: ${(error as Error).message}`, {
      cause: error,
      code: 'IMAGE_INDEX_CORRUPT',
      exit: 'layout',
      kind: 'permanent',
      remediation: 'microagent rebuilds it on the next `image pull`; move the damaged file aside.',
    })
  }

  // microagent's file, not ours: checked with @sindresorhus/is, loaded only when the file exists.
  const is = await loadIs()
  const images = is.plainObject(parsed) && is.array(parsed.images) ? parsed.images : []
  return images.filter((image): image is Record<PropertyKey, unknown> => is.plainObject(image) && is.string(image.image_ref)).map(image => ({
    digest: is.string(image.digest) ? image.digest : '',
    ...(is.string(image.last_used_at) ? {last_used_at: image.last_used_at} : {}),
    platform: platformText(image.platform),
    reference: image.image_ref as string,
    size_bytes: is.number(image.size_bytes) ? image.size_bytes : 0,
    source: 'rootfs-cache' as const,
  }))
}

/** Every committed image of the state dir's layout, then the rootfs cache's records, each sorted by reference. */
export async function listImages(stateDir: string): Promise<ImageRecord[]> {
  const layout = new OciLayout(layoutPath(stateDir))
  const committed: ImageRecord[] = []
  for (const descriptor of (await layout.readIndex()).manifests) {
    const reference = descriptor.annotations?.[REF_NAME_ANNOTATION]
    if (reference === undefined) continue
    const {config, platform, size_bytes} = await readImage(layout, descriptor)
    committed.push({
      ...(isString(config.created) ? {created: config.created} : {}),
      digest: descriptor.digest,
      platform,
      reference,
      size_bytes,
      source: 'oci-layout',
    })
  }

  return [...committed.sort(byReference), ...(await rootfsCacheRecords(stateDir)).sort(byReference)]
}

/** The manifest, config and layer summary of a committed image. */
export async function inspectImage(stateDir: string, reference: string, options: {files?: boolean} = {}): Promise<ImageInspection> {
  const layout = new OciLayout(layoutPath(stateDir))
  const descriptor = await layout.resolve(reference.trim())
  const {config, manifest, platform, size_bytes} = await readImage(layout, descriptor)
  const diffIds = isPlainObject(config.rootfs) && Array.isArray(config.rootfs.diff_ids) ? config.rootfs.diff_ids : []
  const layers: ImageInspection['layers'] = []
  // Loaded only to list files: `image list` and a plain inspect stay off the layer modules.
  const contents = options.files ? await import('../layer/layer-contents.js') : undefined
  for (const [i, layer] of manifest.layers.entries()) {
    const listed = await contents?.readLayerContents(layout.blobPath(layer.digest), layer.mediaType)
    layers.push({
      ...(listed ? {contents: {...listed, diff_id_matches: listed.diff_id === diffIds[i]}} : {}),
      digest: layer.digest,
      media_type: layer.mediaType,
      size_bytes: layer.size,
    })
  }

  return {
    config,
    digest: descriptor.digest,
    layers,
    manifest,
    platform,
    records_bytes: await new ImageRecords(layout.root).size(descriptor.digest),
    reference: reference.trim(),
    secrets: await readSecrets(layout.root, descriptor.digest),
    size_bytes,
  }
}

export interface RemoveResult {
  /** Blobs deleted, with their sizes. */
  deleted: {digest: string; size_bytes: number}[]
  digest: string
  /** Blobs another tag still uses. */
  kept: number
  reclaimed_bytes: number
  reference: string
}

/** Removes a tag from the layout and deletes the blobs no other tag uses. */
export async function removeImage(stateDir: string, reference: string): Promise<RemoveResult> {
  const layout = new OciLayout(layoutPath(stateDir))
  const ref = reference.trim()
  const result: UntagResult = await layout.untag(ref)
  const deleted = result.deleted.map(blob => ({digest: blob.digest, size_bytes: blob.size}))
  return {
    deleted,
    digest: result.removed.digest,
    kept: result.kept.length,
    reclaimed_bytes: deleted.reduce((sum, blob) => sum + blob.size_bytes, 0),
    reference: ref,
  }
}

export interface TagResult {
  digest: string
  reference: string
  /** The tag's previous image, when the target already existed and pointed elsewhere. */
  replaced?: string
  source: string
}

/** Points a new tag at the image `source` names; the blobs are shared, nothing is copied. */
export async function tagImage(stateDir: string, source: string, target: string): Promise<TagResult> {
  const ref = parseTagReference(target, 'tag')
  const layout = new OciLayout(layoutPath(stateDir))
  const descriptor = await layout.resolve(source.trim())
  // tag() replaces the ref-name annotation and keeps any other.
  const previous = await layout.tag(ref.raw, descriptor)
  return {
    digest: descriptor.digest,
    reference: ref.raw,
    ...(previous && previous.digest !== descriptor.digest ? {replaced: previous.digest} : {}),
    source: source.trim(),
  }
}
