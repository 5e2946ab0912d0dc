/**
 * The layer stage of a commit: the disk's entries (or, with a parent, the changeset from the parent's tree
 * to them) archived, scanned for secrets, hashed and compressed into a blob of the layout, with the tree
 * record of the new image beside it.
 */
import {Readable} from 'node:stream'

import type {CommitOptions} from './commit.js'
import type {Extractor} from './extractor/extractor.js'
import type {ParentTreeSource} from './incremental/parent-tree.js'
import type {IngestedBlob, OciLayout} from './oci/layout.js'
import type {CommitProgress} from './support/progress.js'

import {changeset} from './incremental/changeset.js'
import {PendingTreeRecord} from './incremental/tree-record.js'
import {UnchangedDirs} from './incremental/unchanged-dirs.js'
import {WalkGate} from './incremental/walk-gate.js'
import {type Compression, createCompressor} from './layer/compress.js'
import {excluding, tarLayer} from './layer/layer.js'
import {countSkip, emptyLayerStats, type LayerStats} from './layer/stats.js'
import {DigestCounter} from './oci/digest.js'
import {isRuntimePath, type RuntimeFileReport, withoutRuntimeFiles} from './publish/runtime-files.js'
import {scanningSecrets, type SecretFinding, type SecretScan} from './publish/secrets.js'

/** Progress callbacks over the live counters, or undefined when nobody listens. */
function progressReporter(stats: LayerStats, diffCounter: DigestCounter | undefined, onProgress?: (progress: CommitProgress) => void) {
  if (!onProgress) return
  const report = (written: number, done: boolean): void => onProgress({
    content_bytes: stats.contentBytes, done, entries: stats.entries, layer_bytes: written, tar_bytes: diffCounter?.bytes ?? written,
  })
  return {chunk: (written: number) => report(written, false), done: (size: number) => report(size, true)}
}

interface LayerTarOptions {
  diskUuid?: string
  exclude?: (path: Buffer) => boolean
  /**
   * With a parent: its secret findings (its layers are this image's too, whatever the new layer deletes) and
   * the new layer's index in the image.
   */
  lower?: {findings: SecretFinding[]; layer: number}
  parentTree?: ParentTreeSource
  record: PendingTreeRecord
  /** Where microagent's own files are reported, with the egress CA read ahead; undefined keeps them. */
  runtime?: {ca: Promise<Buffer[]>; report: RuntimeFileReport[]}
  secrets: SecretScan
  signal?: AbortSignal
  /** With a parent's tree record: finds the directories the walk can leave unlisted. */
  unchanged?: UnchangedDirs
}

/**
 * The layer's tar: the whole disk, or with a parent the changeset from its tree to the disk's. microagent's
 * own files are taken out first (with a parent, they stay as the parent has them), and what goes into the
 * layer is scanned for secrets on its way. Either way the new tree goes to `record`.
 */
function layerTar(extractor: Extractor, disk: string, stats: LayerStats, options: LayerTarOptions): AsyncGenerator<Buffer, void, undefined> {
  const {exclude, parentTree, record, runtime, secrets} = options
  const gate = parentTree ? new WalkGate() : undefined
  const ignore = runtime ? isRuntimePath : undefined
  const {unchanged} = options
  const extracted = extractor.entries(disk, {
    beforeClose: gate?.beforeClose,
    onSkip: skip => countSkip(stats, skip),
    probe: unchanged?.probe,
    prune: unchanged ? path => (exclude?.(path) ?? false) || unchanged.has(path) : exclude,
    signal: options.signal,
  })
  // --exclude first: what it drops is neither looked into for the egress CA nor reported as microagent's.
  const kept = exclude ? excluding(extracted, exclude, stats) : extracted
  const entries = runtime ? withoutRuntimeFiles(kept, runtime.report, runtime.ca) : kept
  if (!parentTree) return tarLayer(scanningSecrets(entries, secrets), stats, {onArchived: record.archived})
  const changes = changeset(entries, parentTree, {
    diskUuid: options.diskUuid,
    ignore,
    onNode: record.add,
    onRange: parentTree.skips ? range => record.addRange(range, parentTree.skips!.file) : undefined,
    stats,
    unchanged,
    walk: gate,
  })
  return tarLayer(scanningSecrets(changes, secrets, {inherited: options.lower?.findings, layer: options.lower?.layer}), stats)
}

export interface WrittenLayer {
  diffCounter?: DigestCounter
  /** Still in the ingest folder: the caller commits it into the layout, or discards it. */
  layer: IngestedBlob
  record: PendingTreeRecord
  runtimeFiles: RuntimeFileReport[]
  secrets: SecretScan
  stats: LayerStats
  unchanged?: UnchangedDirs
}

export interface LayerJob {
  /** The egress CA, being read ahead while the walk starts; undefined keeps microagent's own files. */
  ca?: Promise<Buffer[]>
  compression: Compression
  disk: string
  diskUuid?: string
  exclude?: (path: Buffer) => boolean
  extractor: Extractor
  layout: OciLayout
  lower?: {findings: SecretFinding[]; layer: number}
  options: CommitOptions
  readAt: Date
}

/** Writes the layer blob and its tree record, with counters and findings of its own (a retry starts afresh). */
export async function writeLayer(job: LayerJob, parentTree: ParentTreeSource | undefined): Promise<WrittenLayer> {
  const {compression, layout, options} = job
  const stats = emptyLayerStats()
  const runtimeFiles: RuntimeFileReport[] = []
  const secrets: SecretScan = {count: 0, findings: []}
  // An uncompressed layer is its own tar: its blob digest is the diff_id, so the tar is hashed once.
  const diffCounter = compression === 'none' ? undefined : new DigestCounter()
  const progress = progressReporter(stats, diffCounter, options.onProgress)
  const record = PendingTreeRecord.open(layout, job.diskUuid, job.readAt)
  const unchanged = parentTree?.again
    ? new UnchangedDirs(parentTree, {diskUuid: job.diskUuid, exclude: job.exclude, ignore: job.ca ? isRuntimePath : undefined})
    : undefined
  try {
    const compressor = createCompressor(compression, {level: options.compressionLevel})
    const tar = Readable.from(layerTar(job.extractor, job.disk, stats, {
      diskUuid: job.diskUuid,
      exclude: job.exclude,
      lower: job.lower,
      parentTree,
      record,
      runtime: job.ca ? {ca: job.ca, report: runtimeFiles} : undefined,
      secrets,
      signal: options.signal,
      unchanged,
    }), {objectMode: false})
    const layer = await layout.ingestBlobStream(tar, diffCounter ? [diffCounter, compressor] : [compressor], progress?.chunk)
    progress?.done(layer.size)
    return {
      diffCounter, layer, record, runtimeFiles, secrets, stats, unchanged,
    }
  } catch (error) {
    await record.discard()
    throw error
  }
}
