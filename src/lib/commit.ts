import type {Extractor} from './extractor/extractor.js'

import {type LayerJob, writeLayer, type WrittenLayer} from './commit-layer.js'
import {DebugfsExtractor} from './extractor/debugfs.js'
import {type DiskView, openDiskView} from './extractor/disk.js'
import {findDebugfs} from './extractor/e2fsprogs.js'
import {isExtractor} from './extractor/extractor.js'
import {
  openSandbox, type Sandbox, type SandboxMode, type SandboxStatus,
} from './extractor/sandbox.js'
import {
  blobIdentity, buildChildConfig, defaultsFromConfig, openParentImage, type ParentImage,
} from './incremental/parent-image.js'
import {type ParentTreeSource, readParentTree} from './incremental/parent-tree.js'
import {PendingTreeRecord, TreeRecordError} from './incremental/tree-record.js'
import {UnchangedDirs} from './incremental/unchanged-dirs.js'
import {type Compression, LAYER_MEDIA_TYPES} from './layer/compress.js'
import {pathMatcher} from './layer/exclude.js'
import {type LayerStats} from './layer/stats.js'
import {applyChanges} from './oci/changes.js'
import {
  buildConfig, buildManifest, canonicalJson, type Descriptor, MEDIA_TYPES,
} from './oci/image.js'
import {type IngestedBlob, layoutPath, OciLayout} from './oci/layout.js'
import {type Architecture, hostArch} from './oci/platform.js'
import {ImageRecords} from './oci/records.js'
import {parseTagReference} from './oci/reference.js'
import {readEgressCa, type RuntimeFileReport} from './publish/runtime-files.js'
import {
  readSecrets, SECRETS_RECORD, type SecretsPolicy, secretsRecord, secretsRefused,
} from './publish/secrets-record.js'
import {type SecretScan} from './publish/secrets.js'
import {usageError} from './support/errors.js'
import {loadIs} from './support/is.js'
import {type CommitProgress} from './support/progress.js'
import {
  leaseStoppedWorkspace, openStoppedWorkspace, validateWorkspaceName, type Workspace, type WorkspaceManifest,
} from './workspace/workspace.js'

export interface CommitOptions {
  /** OCI architecture; defaults to the guest's where recorded, else the host's. */
  arch?: Architecture
  /** `--author`: the config's author. */
  author?: string
  /** bubblewrap binary for the sandbox; `bwrap` on PATH when omitted. */
  bwrap?: string
  /** `--change`: Dockerfile instructions applied to the workspace's image defaults (see `applyChanges`). */
  changes?: string[]
  compression?: Compression
  compressionLevel?: number
  created: Date
  /** debugfs binary; found on PATH when omitted. Used for the journal replay and the default extractor. */
  debugfs?: string
  /** `--exclude`: globs of paths left out of the layer, with their subtrees (see `pathMatcher`). */
  exclude?: string[]
  /** Swappable for tests and other filesystems; defaults to the debugfs extractor. */
  extractor?: Extractor
  /** `--keep-runtime-files`: commit microagent's own files (init, hostname, egress CA...) as the disk has them. */
  keepRuntimeFiles?: boolean
  /** `--label KEY=value`. */
  labels?: string[]
  /** `--message`: the history entry's comment. */
  message?: string
  /** Hears how far the layer is, after every chunk written and once more at the end (`done`). */
  onProgress?: (progress: CommitProgress) => void
  /**
   * `--parent`: an image in the layout to stack on. The new image is its layers plus one layer holding the
   * changes from its tree to the disk's.
   */
  parent?: string
  reference: string
  /**
   * `--sandbox`: how debugfs (extraction and journal replay) is confined: `auto` (default) with bubblewrap
   * where it works, else unconfined with the reason in the result; `require` or fail (exit 8); `off`.
   * Extractors from other plugins are never confined by this.
   */
  sandbox?: SandboxMode
  /** `--secrets`: `warn` (default) records findings and goes on; `refuse` fails before tagging when there are any. */
  secrets?: SecretsPolicy
  signal?: AbortSignal
  stateDir: string
  workspace: string
}

export interface CommitResult {
  architecture: Architecture
  /** Digest of the image config blob. */
  config_digest: string
  created: string
  /** sha256 of the uncompressed layer tar (the config's diff_id). */
  diff_id: string
  /** Manifest digest: what the tag points at. */
  digest: string
  /** Whether the disk's journal had to be replayed on a private copy. */
  journal_replayed: boolean
  /** The new layer's digest (with --parent, the diff layer on top of the parent's). */
  layer_digest: string
  /** The new layer's media type (`+gzip`, `+zstd` or plain tar). */
  layer_media_type: string
  /** Layers of the image, the parent's included. */
  layers: number
  layout_path: string
  /** With --parent: the parent, and where its tree was read from (its tree record, or its layers). */
  parent?: {
    digest: string
    layers: number
    reference: string
    tree: 'layers' | 'record'
    tree_note?: string
    /**
     * Entries kept as the parent has them without being walked: the subtrees of the directories found
     * unchanged in place (see UnchangedDirs), and how many such directories.
     */
    unwalked: {directories: number; entries: number}
  }
  pushed: boolean
  /** Bytes of the tree record kept beside the image (never pushed), for the next --parent. */
  record_bytes: number
  reference: string
  /** microagent's own files that were left out or rewritten (empty with keepRuntimeFiles). */
  runtime_files: RuntimeFileReport[]
  /** Whether debugfs ran confined; when not, with `auto`, `reason` says why and how to enable it. */
  sandbox: SandboxStatus
  /** What the secret scan found, the parent's layers' findings included with --parent: never the values. */
  secrets: SecretScan
  /** Compressed layer size, in bytes. */
  size_bytes: number
  stats: LayerStats
  /** Uncompressed layer tar size, in bytes. */
  tar_bytes: number
  workspace: string
}

/** Only ext4 gets the superblock checks and the journal replay; other extractors read the disk as it is. */
async function diskFor(extractor: Extractor, rootfs: string, layout: OciLayout, tools: {debugfs?: string; sandbox: Sandbox}): Promise<DiskView> {
  if ((extractor.filesystem ?? 'ext4') === 'ext4') return openDiskView(rootfs, {...tools, privateCopyPath: layout.ingestPath('.ext4')})
  return {path: rootfs, async release() {}, replayed: false}
}

/** What the image starts from: the parent, if any (checked, its tree opened), its architecture and runtime config. */
async function imageBase(layout: OciLayout, options: CommitOptions, manifest: WorkspaceManifest) {
  const parent = options.parent === undefined ? undefined : await openParentImage(layout, options.parent)
  const defaults = applyChanges(parent ? defaultsFromConfig(parent.config, await loadIs()) : manifest.imageDefaults, options.changes, options.labels)
  const architecture = options.arch ?? manifest.arch ?? (parent?.architecture as Architecture | undefined) ?? hostArch()
  if (parent && parent.architecture !== architecture) {
    throw usageError(
      `--parent ${parent.ref} is ${parent.architecture}, this commit is ${architecture}: one image cannot mix them`,
      'Give --parent an image of the same architecture, or commit without --parent.',
    )
  }

  const parentTree = parent ? await readParentTree(layout, parent) : undefined
  return {
    architecture,
    blobs: parentTree?.blobs ?? new Map<string, string>(),
    defaults,
    /** The parent's diff_ids and layer descriptors, which the new image starts with. */
    diffIds: parent?.diffIds ?? [],
    layers: parent?.layers ?? [],
    parent,
    parentTree,
  }
}

/** The image config: the parent's with one more layer, or a new one. */
function configFor(base: Awaited<ReturnType<typeof imageBase>>, options: CommitOptions, diffId: string, workspace: string): {created: string} {
  const {architecture, defaults, parent} = base
  const common = {
    author: options.author, comment: options.message, created: options.created, defaults, diffId, workspace,
  }
  return parent ? (buildChildConfig({...common, parent}) as {created: string}) : buildConfig({...common, architecture})
}

/**
 * Writes the config and the manifest, then the image's records under the manifest's digest (the tree record
 * and the secret findings): all of it before the tag moves, so a tagged image always has its records and a
 * push can never see it without its findings. A failure discards the tree record.
 */
async function storeImage(
  layout: OciLayout,
  /** The new layer, still in the ingest folder, and its tree record. */
  written: {layer: IngestedBlob; record: PendingTreeRecord},
  /** `blobs`: the identities of the parent's layer blobs (the new layer's is added). */
  image: {blobs: ReadonlyMap<string, string>; config: object; diffIds: string[]; layers: Descriptor[]; secrets: SecretScan},
  signal?: AbortSignal,
): Promise<{configDigest: string; manifest: {digest: string; size: number}; recordBytes: number}> {
  const {config, diffIds, layers} = image
  const {layer, record} = written
  try {
    // Past this point nothing is visible until the tag moves; stop here if the user asked to.
    signal?.throwIfAborted()
    await layer.commit()
    // The next --parent need not hash these blobs again while their files stay as they are now.
    const blobs = new Map(image.blobs).set(layer.digest, await blobIdentity(layout.blobPath(layer.digest)))
    // The tree record is completed and synced while the config and manifest are written.
    const completing = record.complete(diffIds, blobs)
    completing.catch(() => {})
    const configBlob = await layout.writeBlob(canonicalJson(config))
    const manifest = await layout.writeBlob(canonicalJson(buildManifest({...configBlob, mediaType: MEDIA_TYPES.config}, layers)))
    await completing
    const [recordBytes] = await Promise.all([
      record.store(layout, manifest.digest, diffIds, blobs),
      new ImageRecords(layout.root).write(manifest.digest, SECRETS_RECORD, secretsRecord(image.secrets)),
    ])
    return {configDigest: configBlob.digest, manifest, recordBytes}
  } catch (error) {
    await Promise.all([record.discard(), layer.discard()])
    throw error
  }
}

function parentSummary(parent: ParentImage, tree: ParentTreeSource, unchanged: UnchangedDirs | undefined): NonNullable<CommitResult['parent']> {
  return {
    digest: parent.descriptor.digest,
    layers: parent.layers.length,
    reference: parent.ref,
    tree: tree.source,
    ...(tree.recordProblem ? {tree_note: tree.recordProblem} : {}),
    unwalked: {directories: unchanged?.kept ?? 0, entries: unchanged?.entries ?? 0},
  }
}

interface DiskJob extends Omit<LayerJob, 'ca' | 'disk' | 'diskUuid' | 'readAt'> {
  parent?: ParentImage
  parentTree?: ParentTreeSource
  sandbox: Sandbox
}

/**
 * The layer, written from the workspace's disk under its lease (no VM can start on it meanwhile). The
 * record's nodes are checked as they stream, its sha256 at their end: one found damaged only then leaves
 * nothing behind (the blob is not stored), and the parent's layers are read instead.
 */
async function readDisk(workspace: Workspace, job: DiskJob): Promise<{parentTree?: ParentTreeSource; replayed: boolean; written: WrittenLayer}> {
  const {extractor, layout, options, parent} = job
  let {parentTree} = job
  const lease = await leaseStoppedWorkspace(workspace)
  const readAt = new Date()
  try {
    // The UUID is the disk's own: a replayed private copy has the same superblock.
    const diskUuid = await extractor.filesystemUuid?.(workspace.paths.rootfs)
    const view = await diskFor(extractor, workspace.paths.rootfs, layout, {debugfs: options.debugfs, sandbox: job.sandbox})
    // Read in a debugfs session of its own while the walk's starts; awaited when the walk first meets one of
    // microagent's files, at its end, and (settled) before the view is released.
    const ca = options.keepRuntimeFiles ? undefined : readEgressCa(extractor, view.path)
    ca?.catch(() => {})
    try {
      const write = (tree?: ParentTreeSource): Promise<WrittenLayer> => writeLayer({
        ...job, ca, disk: view.path, diskUuid, readAt,
      }, tree)
      const written = await write(parentTree).catch(async (error: unknown) => {
        if (!(error instanceof TreeRecordError) || !parent) throw error
        parentTree = await readParentTree(layout, parent, `the tree record is damaged (${error.message})`)
        return write(parentTree)
      })
      return {parentTree, replayed: view.replayed, written}
    } finally {
      await ca?.catch(() => {})
      await view.release()
    }
  } finally {
    await lease?.release()
  }
}

/**
 * Commits a stopped workspace's rootfs as a single-layer OCI image tagged `reference` in the state dir's
 * layout. Names and the reference are checked before any file is read; the workspace disk is only ever
 * read; the layer is extracted, archived, hashed, compressed and written in one streaming pass.
 */
export async function commitWorkspace(options: CommitOptions): Promise<CommitResult> {
  validateWorkspaceName(options.workspace)
  const ref = parseTagReference(options.reference)
  // Bad options fail before anything is read.
  applyChanges({}, options.changes, options.labels)
  const exclude = pathMatcher(options.exclude)
  // bubblewrap is tried while the workspace is looked at; the workspace's own errors come first.
  const sandboxing = openSandbox({bwrap: options.bwrap, mode: options.sandbox})
  sandboxing.catch(() => {})
  const workspace = await openStoppedWorkspace(options.stateDir, options.workspace)
  // Before anything is read: `require` fails here when bubblewrap cannot confine debugfs.
  const sandbox = await sandboxing
  const extractor = options.extractor ?? new DebugfsExtractor({binary: options.debugfs ?? (await findDebugfs()), sandbox})
  if (!isExtractor(extractor)) throw usageError('the extractor given is not an Extractor (it needs a name and an entries() method)')
  const compression = options.compression ?? 'gzip'

  const layout = new OciLayout(layoutPath(options.stateDir))
  await layout.init()
  const base = await imageBase(layout, options, workspace.manifest)
  const {architecture, parent} = base
  options.signal?.throwIfAborted()
  const lower = parent ? {findings: (await readSecrets(layout.root, parent.descriptor.digest))?.findings ?? [], layer: base.layers.length} : undefined
  const read = await readDisk(workspace, {
    compression, exclude, extractor, layout, lower, options, parent, parentTree: base.parentTree, sandbox,
  })
  const {parentTree, replayed, written} = read
  const {diffCounter, layer, record, runtimeFiles, secrets, stats, unchanged} = written
  const diffId = diffCounter?.digest() ?? layer.digest
  if (secrets.count > 0 && options.secrets === 'refuse') {
    // The layer holds the secrets: it never enters the layout.
    await Promise.all([record.discard(), layer.discard()])
    throw secretsRefused(ref.raw, secrets)
  }

  const config = configFor(base, options, diffId, workspace.name)
  const layerDescriptor: Descriptor = {digest: layer.digest, mediaType: LAYER_MEDIA_TYPES[compression], size: layer.size}
  const stored = await storeImage(layout, {layer, record}, {
    blobs: base.blobs, config, diffIds: [...base.diffIds, diffId], layers: [...base.layers, layerDescriptor], secrets,
  }, options.signal)
  options.signal?.throwIfAborted()
  await layout.tag(ref.raw, {
    ...stored.manifest,
    mediaType: MEDIA_TYPES.manifest,
    platform: {architecture, os: 'linux'},
  })
  return {
    architecture,

    config_digest: stored.configDigest,
    created: config.created,

    diff_id: diffId,
    digest: stored.manifest.digest,

    journal_replayed: replayed,

    layer_digest: layer.digest,
    layer_media_type: layerDescriptor.mediaType,
    layers: base.layers.length + 1,

    layout_path: layout.root,
    ...(parent && parentTree ? {parent: parentSummary(parent, parentTree, unchanged)} : {}),
    pushed: false,
    record_bytes: stored.recordBytes,
    reference: ref.raw,
    runtime_files: runtimeFiles,
    sandbox: sandbox.status,
    secrets,
    size_bytes: layer.size,
    stats,

    tar_bytes: diffCounter?.bytes ?? layer.size,
    workspace: workspace.name,
  }
}
