import {Readable} from 'node:stream'

import type {Extractor} from './extractor/extractor.js'

import {applyChanges} from './changes.js'
import {type Compression, createCompressor, LAYER_MEDIA_TYPES} from './compress.js'
import {DigestCounter} from './digest.js'
import {type DiskView, openDiskView} from './disk.js'
import {findDebugfs} from './e2fsprogs.js'
import {MicroagentError, usageError} from './errors.js'
import {pathMatcher} from './exclude.js'
import {DebugfsExtractor} from './extractor/debugfs.js'
import {isExtractor} from './extractor/extractor.js'
import {
  buildConfig, buildManifest, canonicalJson, type Descriptor, MEDIA_TYPES,
} from './image.js'
import {
  countSkip, emptyLayerStats, type LayerStats, tarLayer,
} from './layer.js'
import {layoutPath, OciLayout} from './layout.js'
import {type Architecture, hostArch} from './platform.js'
import {type CommitProgress} from './progress.js'
import {ImageRecords} from './records.js'
import {parseTagReference} from './reference.js'
import {EGRESS_CA_FILES, type RuntimeFileReport, withoutRuntimeFiles} from './runtime-files.js'
import {
  openSandbox, type Sandbox, type SandboxMode, type SandboxStatus,
} from './sandbox.js'
import {
  findingPaths, SECRETS_RECORD, secretsAdvice, type SecretsPolicy, secretsRecord,
} from './secrets-record.js'
import {scanningSecrets, type SecretScan} from './secrets.js'
import {pemCertificates} from './trust-bundle.js'
import {leaseStoppedWorkspace, openStoppedWorkspace, validateWorkspaceName} from './workspace.js'

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
  layer_digest: string
  /** The layer's media type (`+gzip`, `+zstd` or plain tar). */
  layer_media_type: string
  layout_path: string
  pushed: boolean
  reference: string
  /** microagent's own files that were left out or rewritten (empty with keepRuntimeFiles). */
  runtime_files: RuntimeFileReport[]
  /** Whether debugfs ran confined; when not, with `auto`, `reason` says why and how to enable it. */
  sandbox: SandboxStatus
  /** What the secret scan found: paths, rules and lines, never the values. */
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

/** The egress CA's certificates (DER), read before the walk from wherever the workspace keeps a copy. */
async function egressCa(extractor: Extractor, disk: string): Promise<Buffer[]> {
  if (!extractor.readFile) return []
  const found: Buffer[] = []
  for (const file of EGRESS_CA_FILES) {
    const data = await extractor.readFile(disk, Buffer.from(file), 1024 * 1024)
    for (const cert of data ? pemCertificates(data) : []) if (!found.some(der => der.equals(cert.der))) found.push(cert.der)
  }

  return found
}

function secretsRefused(reference: string, scan: SecretScan): MicroagentError {
  return new MicroagentError(`refusing to commit ${reference}: ${scan.count} possible secret(s) in ${findingPaths(scan)}`, {
    code: 'SECRETS_FOUND',
    exit: 'policy',
    kind: 'policy_denied',
    remediation: secretsAdvice(scan, '--secrets warn (then image push --allow-secrets)'),
  })
}

/** Progress callbacks over the live counters, or undefined when nobody listens. */
function progressReporter(stats: LayerStats, diffCounter: DigestCounter | undefined, onProgress?: (progress: CommitProgress) => void) {
  if (!onProgress) return
  const report = (written: number, done: boolean): void => onProgress({
    content_bytes: stats.contentBytes, done, entries: stats.entries, layer_bytes: written, tar_bytes: diffCounter?.bytes ?? written,
  })
  return {chunk: (written: number) => report(written, false), done: (size: number) => report(size, true)}
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
  const workspace = await openStoppedWorkspace(options.stateDir, options.workspace)
  const defaults = applyChanges(workspace.manifest.imageDefaults, options.changes, options.labels)
  const architecture = options.arch ?? workspace.manifest.arch ?? hostArch()
  // Before anything is read: `require` fails here when bubblewrap cannot confine debugfs.
  const sandbox = await openSandbox({bwrap: options.bwrap, mode: options.sandbox})
  const extractor = options.extractor ?? new DebugfsExtractor({binary: options.debugfs ?? (await findDebugfs()), sandbox})
  if (!isExtractor(extractor)) throw usageError('the extractor given is not an Extractor (it needs a name and an entries() method)')
  const compression = options.compression ?? 'gzip'

  const layout = new OciLayout(layoutPath(options.stateDir))
  await layout.init()
  options.signal?.throwIfAborted()
  const stats = emptyLayerStats()
  const runtimeFiles: RuntimeFileReport[] = []
  const secrets: SecretScan = {count: 0, findings: []}
  // An uncompressed layer is its own tar: its blob digest is the diff_id, so the tar is hashed once.
  const diffCounter = compression === 'none' ? undefined : new DigestCounter()
  const progress = progressReporter(stats, diffCounter, options.onProgress)
  // From here until the disk has been read, no VM can start on it.
  const lease = await leaseStoppedWorkspace(workspace)
  let layer: {digest: string; size: number}
  let replayed: boolean
  try {
    const view = await diskFor(extractor, workspace.paths.rootfs, layout, {debugfs: options.debugfs, sandbox})
    replayed = view.replayed
    try {
      const compressor = createCompressor(compression, {level: options.compressionLevel})
      const extracted = extractor.entries(view.path, {onSkip: skip => countSkip(stats, skip), prune: exclude, signal: options.signal})
      const published = options.keepRuntimeFiles ? extracted : withoutRuntimeFiles(extracted, runtimeFiles, await egressCa(extractor, view.path))
      const tar = Readable.from(tarLayer(scanningSecrets(published, secrets), stats, {exclude}), {objectMode: false})
      layer = await layout.writeBlobStream(tar, diffCounter ? [diffCounter, compressor] : [compressor], progress?.chunk)
    } finally {
      await view.release()
    }
  } finally {
    await lease?.release()
  }

  const diffId = diffCounter?.digest() ?? layer.digest
  progress?.done(layer.size)

  const config = buildConfig({
    architecture,
    author: options.author,
    comment: options.message,
    created: options.created,
    defaults,
    diffId,
    workspace: workspace.name,
  })
  // Past this point nothing is visible until the tag moves; stop here if the user asked to.
  options.signal?.throwIfAborted()
  const configBlob = await layout.writeBlob(canonicalJson(config))
  const layerDescriptor: Descriptor = {digest: layer.digest, mediaType: LAYER_MEDIA_TYPES[compression], size: layer.size}
  const manifest = buildManifest({...configBlob, mediaType: MEDIA_TYPES.config}, [layerDescriptor])
  const manifestBlob = await layout.writeBlob(canonicalJson(manifest))
  if (secrets.count > 0 && options.secrets === 'refuse') throw secretsRefused(ref.raw, secrets)
  // The findings are recorded before the tag exists, so a push can never see the image without them.
  await new ImageRecords(layout.root).write(manifestBlob.digest, SECRETS_RECORD, secretsRecord(secrets))
  options.signal?.throwIfAborted()
  await layout.tag(ref.raw, {
    ...manifestBlob,
    mediaType: MEDIA_TYPES.manifest,
    platform: {architecture, os: 'linux'},
  })
  return {
    architecture,

    config_digest: configBlob.digest,
    created: config.created,

    diff_id: diffId,
    digest: manifestBlob.digest,

    journal_replayed: replayed,

    layer_digest: layer.digest,
    layer_media_type: layerDescriptor.mediaType,

    layout_path: layout.root,
    pushed: false,
    reference: ref.raw,
    runtime_files: runtimeFiles,
    secrets,
    sandbox: sandbox.status,
    size_bytes: layer.size,
    stats,

    tar_bytes: diffCounter?.bytes ?? layer.size,
    workspace: workspace.name,
  }
}
