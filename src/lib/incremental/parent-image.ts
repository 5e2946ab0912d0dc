/**
 * The parent of an incremental commit: found in the layout and checked whole before anything is written
 * (single-platform manifest, config, every layer blob present and matching its digest), and the config of
 * the child stacked on it.
 */
import {createHash} from 'node:crypto'
import {createReadStream} from 'node:fs'
import {stat} from 'node:fs/promises'

import type {OciLayout} from '../oci/layout.js'
import type {ImageDefaults} from '../workspace/workspace.js'

import {
  type Descriptor, formatCreated, type ImageManifest, MEDIA_TYPES, runtimeConfig,
} from '../oci/image.js'
import {MicroagentError, usageError} from '../support/errors.js'
import {type Is, stringList} from '../support/is.js'

/** Overlay-based runtimes stop near 128 layers; leave room below that. */
export const MAX_LAYERS = 120

export const PARENT_LAYER_MEDIA_TYPES: readonly string[] = [
  'application/vnd.oci.image.layer.v1.tar',
  'application/vnd.oci.image.layer.v1.tar+gzip',
  'application/vnd.oci.image.layer.v1.tar+zstd',
  'application/vnd.docker.image.rootfs.diff.tar',
  'application/vnd.docker.image.rootfs.diff.tar.gzip',
]

export interface ParentImage {
  architecture: string
  config: Record<string, unknown>
  /** The manifest descriptor the tag points at. */
  descriptor: Descriptor
  diffIds: string[]
  layers: Descriptor[]
  manifest: ImageManifest
  ref: string
}

export function parentError(message: string, remediation: string, code = 'BAD_PARENT'): MicroagentError {
  return new MicroagentError(message, {
    code, exit: 'layout', kind: 'permanent', remediation,
  })
}

const RECOMMIT = 'Commit the parent again (or pull it again), or commit without --parent.'

async function blobDigest(file: string): Promise<string> {
  const hash = createHash('sha256')
  for await (const chunk of createReadStream(file)) hash.update(chunk as Buffer)
  return `sha256:${hash.digest('hex')}`
}

/**
 * A blob file's identity on the host: device, inode, size, mtime and ctime in ns. The same identity as
 * when the blob was written or last hashed means the same bytes: any write to the file, or another file
 * renamed over it, changes its ctime or its inode, and ctime cannot be set from user space.
 */
export async function blobIdentity(file: string): Promise<string> {
  const info = await stat(file, {bigint: true})
  return [info.dev, info.ino, info.size, info.mtimeNs, info.ctimeNs].join(':')
}

/**
 * Checks that every layer blob of the parent matches its digest, hashing only those whose file is not
 * known unchanged (`known`: blob identities by digest, from the parent's tree record). A parent whose
 * layers are damaged would give a child that no one can unpack. Returns the identities of all of them, for
 * the child's record.
 */
export async function checkParentBlobs(layout: OciLayout, parent: ParentImage, known: ReadonlyMap<string, string> = new Map()): Promise<Map<string, string>> {
  const identities = new Map<string, string>()
  for (const layer of parent.layers) {
    const file = layout.blobPath(layer.digest)
    const identity = await blobIdentity(file).catch(() => '')
    if (identity === '' || (known.get(layer.digest) !== identity && (await blobDigest(file)) !== layer.digest)) {
      throw parentError(`layer ${layer.digest} of --parent ${parent.ref} is missing or corrupt in ${layout.root}`, RECOMMIT)
    }

    identities.set(layer.digest, identity)
  }

  return identities
}

/**
 * Finds `ref` in the layout and checks it can be a parent: every layer blob present with its size (their
 * content is checked by `checkParentBlobs`, once it is known which are unchanged since they were hashed).
 */
export async function openParentImage(layout: OciLayout, ref: string): Promise<ParentImage> {
  const descriptor = await layout.resolve(ref)
  if (descriptor.mediaType !== MEDIA_TYPES.manifest) {
    throw usageError(
      `--parent ${ref} is ${descriptor.mediaType === MEDIA_TYPES.index ? 'an image index' : `a ${descriptor.mediaType}`}, not a single-platform image`,
      'Give --parent the tag of a single-platform image (one `microagent commit` wrote, or one platform of a multi-platform image).',
    )
  }

  const {manifest} = await layout.readManifest(descriptor)
  const config = await layout.readJson(manifest.config.digest)
  const rootfs = config.rootfs as undefined | {diff_ids?: unknown}
  const diffIds = Array.isArray(rootfs?.diff_ids) ? (rootfs.diff_ids as unknown[]) : undefined
  if (!diffIds || !diffIds.every(id => typeof id === 'string') || diffIds.length !== manifest.layers.length || typeof config.architecture !== 'string') {
    throw parentError(`the config of --parent ${ref} does not match its manifest (diff_ids, layers or architecture)`, RECOMMIT)
  }

  for (const layer of manifest.layers) {
    if (!PARENT_LAYER_MEDIA_TYPES.includes(layer.mediaType)) {
      throw parentError(`--parent ${ref} has a layer of type ${layer.mediaType}, which commit cannot read`, 'Commit without --parent.', 'UNSUPPORTED_PARENT')
    }

    if (!(await layout.hasBlob(layer.digest, layer.size))) {
      throw parentError(`layer ${layer.digest} of --parent ${ref} is missing or corrupt in ${layout.root}`, RECOMMIT)
    }
  }

  if (manifest.layers.length + 1 > MAX_LAYERS) {
    throw new MicroagentError(`--parent ${ref} has ${manifest.layers.length} layers; one more would pass the limit of ${MAX_LAYERS}`, {
      code: 'TOO_MANY_LAYERS',
      exit: 'policy',
      kind: 'policy_denied',
      remediation: 'Commit without --parent: a full commit is one layer again, and later commits can stack on it (overlay-based runtimes stop near 128 layers).',
    })
  }

  return {
    architecture: config.architecture, config, descriptor, diffIds: diffIds as string[], layers: manifest.layers, manifest, ref,
  }
}

/**
 * The parent's runtime config as image defaults, so that --change and --label apply on top of it. The
 * config may come from anywhere (a pulled image): checked with @sindresorhus/is, as other JSON from elsewhere.
 */
export function defaultsFromConfig(config: Record<string, unknown>, is: Is): ImageDefaults {
  const runtime = is.plainObject(config.config) ? config.config : {}
  const defaults: ImageDefaults = {}
  const text = (key: string): string | undefined => (is.nonEmptyString(runtime[key]) ? runtime[key] : undefined)
  const keys = (value: unknown): string[] | undefined => (is.plainObject(value) ? Object.keys(value) : undefined)
  if (text('User')) defaults.User = text('User')
  if (text('WorkingDir')) defaults.WorkingDir = text('WorkingDir')
  if (text('StopSignal')) defaults.StopSignal = text('StopSignal')
  const env = stringList(is, runtime.Env)
  if (env?.length) defaults.Env = env
  const cmd = stringList(is, runtime.Cmd)
  if (cmd?.length) defaults.Cmd = cmd
  const entrypoint = stringList(is, runtime.Entrypoint)
  if (entrypoint?.length) defaults.Entrypoint = entrypoint
  const ports = keys(runtime.ExposedPorts)
  if (ports?.length) defaults.ExposedPorts = ports
  const volumes = keys(runtime.Volumes)
  if (volumes?.length) defaults.Volumes = volumes
  const labels = runtime.Labels
  if (is.plainObject(labels) && Object.values(labels).every(value => is.string(value))) defaults.Labels = labels as Record<string, string>
  return defaults
}

export interface ChildConfigInput {
  author?: string
  comment?: string
  created: Date
  defaults: ImageDefaults
  diffId: string
  parent: ParentImage
  workspace: string
}

/**
 * The child's config: the parent's, with the new creation time, author and runtime config, one more
 * diff_id and one more history entry. Fields of the parent's config this package does not know are kept.
 */
export function buildChildConfig(input: ChildConfigInput): Record<string, unknown> {
  const created = formatCreated(input.created)
  const author = input.author || undefined
  const {parent} = input
  const history = Array.isArray(parent.config.history) ? parent.config.history : []
  const rest = Object.fromEntries(Object.entries(parent.config).filter(([key]) => !['architecture', 'author', 'config', 'created', 'history', 'os', 'rootfs'].includes(key)))
  return {
    created,
    ...(author ? {author} : {}),
    architecture: parent.architecture,
    os: parent.config.os ?? 'linux',
    ...rest,
    config: runtimeConfig(input.defaults),
    rootfs: {type: 'layers', diff_ids: [...parent.diffIds, input.diffId]},
    history: [
      ...history,
      {
        created,
        created_by: `microagent commit ${input.workspace}`,
        ...(author ? {author} : {}),
        comment: input.comment || 'changes committed by microagent',
      },
    ],
  }
}
