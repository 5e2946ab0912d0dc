/**
 * The tree record: what an image's tree holds (one node per path, in layer order) plus the ext4 identity
 * of each inode, kept beside the image by our own commits so that the next `commit --parent` can diff
 * against it without reading the parent's layers. A binary file (format 2, see `record-format.ts`): a
 * header, one block per node, one block of hard-link groups, a trailer with the count and the image's
 * diff_ids, then the sha256 of everything before it. This module writes it; `tree-record-reader.ts` reads it
 * once, its ends first and then its nodes as a stream for the merge, each checked as it comes.
 */
import {createHash, type Hash} from 'node:crypto'
import {once} from 'node:events'
import {
  closeSync, createWriteStream, openSync, readSync, type WriteStream,
} from 'node:fs'
import {unlink} from 'node:fs/promises'

import type {Entry, EntryType, Timestamp} from '../extractor/extractor.js'
import type {OciLayout} from '../oci/layout.js'
import type {RecordRange} from './tree-record-reader.js'

import {ImageRecords} from '../oci/records.js'
import {fsync} from '../support/files.js'
import {ByteWriter} from './record-codec.js'
import {
  BLOCK, encodeNode, footerOffset, MAGIC,
} from './record-format.js'

/** The record's name in `ImageRecords`. */
export const TREE_RECORD = 'tree.bin'
/**
 * The name of records written before format 2 (gzipped NDJSON). They are not read: a parent that only has
 * one is read from its layers (exact, slower), and its children get a record of the current format.
 */
export const OLD_TREE_RECORD = 'tree.ndjson.gz'
const WRITE_BYTES = 256 * 1024

/** An inode's ext4 identity: with the filesystem UUID, equal identities mean equal content. */
export interface Identity {
  ctime: Timestamp
  generation: number
  inode: number
}

/** One path of an image's tree, as an unpack of the image would have it. */
export interface TreeNode {
  devMajor?: number
  devMinor?: number
  gid: number
  /** Names sharing one inode share a key; keys are opaque and only meaningful within one tree. */
  group?: string
  identity?: Identity
  linkTarget?: Buffer
  mode: number
  mtime: Timestamp
  path: Buffer
  /** Hex sha256 of a regular file's content. */
  sha256?: string
  size: number
  type: EntryType
  uid: number
  xattrs: [string, Buffer][]
}

/** The node of an archived (or unchanged) entry; `sha256` is its content's, for files. */
export function nodeFromEntry(entry: Entry, sha256?: string): TreeNode {
  const node: TreeNode = {
    gid: entry.gid, mode: entry.mode, mtime: entry.mtime, path: entry.path, size: entry.size, type: entry.type, uid: entry.uid, xattrs: entry.xattrs,
  }
  if (entry.linkTarget) node.linkTarget = entry.linkTarget
  if (entry.type === 'block' || entry.type === 'char') {
    node.devMajor = entry.devMajor ?? 0
    node.devMinor = entry.devMinor ?? 0
  }

  if (entry.type === 'file') node.sha256 = sha256
  if (entry.type !== 'directory' && (entry.links ?? 1) > 1) node.group = `i${entry.inode}`
  if (entry.ctime && entry.generation !== undefined) node.identity = {ctime: entry.ctime, generation: entry.generation, inode: entry.inode}
  return node
}

/**
 * Layer order: depth first, names bytewise. Comparing with `/` taken as the lowest byte gives it, since
 * names hold neither `/` nor NUL: a directory comes right before its subtree, and the subtree before any
 * sibling that sorts after the directory's name. `from`: where to start, when the caller knows the bytes
 * before it are the same in both.
 */
export function compareTreePaths(a: Buffer, b: Buffer, from = 0): number {
  const n = Math.min(a.length, b.length)
  for (let i = from; i < n; i++) {
    const x = a[i] === 0x2F ? 0 : a[i]
    const y = b[i] === 0x2F ? 0 : b[i]
    if (x !== y) return x - y
  }

  return a.length - b.length
}

/** Whether `path` lies under the directory `dir` (not equal to it). */
export function isUnder(path: Buffer, dir: Buffer): boolean {
  if (dir.length === 0) return path.length > 0
  if (path.length <= dir.length || path[dir.length] !== 0x2F) return false
  // Compared here, from the end (where siblings differ): six times faster than a view and equals() or
  // compare() with ranges, whose argument checks cost more than a path's bytes (this runs for every node).
  for (let i = dir.length - 1; i >= 0; i--) if (path[i] !== dir[i]) return false
  return true
}

export class TreeRecordError extends Error {}

/**
 * Streams a tree record to a file. `add` nodes in layer order, then `finish` with the image's diff_ids;
 * the file is only complete (and only readable as a record) once `finish` has resolved.
 */
export class TreeRecordWriter {
  /**
   * Set when the nodes came out of layer order (an extractor that does not sort) or a file came without its
   * sha256: the record is not written.
   */
  invalid = false
  private count = 0
  private failure: Error | undefined
  private readonly groups = new Map<string, Buffer[]>()
  private readonly hash: Hash = createHash('sha256')
  private last: Buffer | undefined
  /** The newest ctime (seconds) among the identities: what the guest's clock said when it last changed anything. */
  private newestCtime = 0
  private readonly out: WriteStream
  private readonly pending = new ByteWriter(WRITE_BYTES + 64 * 1024)
  /** The record `addRange` copies from, kept open between ranges. */
  private source: undefined | {fd: number; file: string}
  /** Bytes handed to the file so far. */
  private written = 0

  /** `readAt`: when the disk began to be read, on the host's clock (see `TreeRecord.readAt`). */
  constructor(file: string, fsUuid: string | undefined, private readonly readAt?: Date) {
    this.out = createWriteStream(file, {flags: 'wx', mode: 0o600})
    this.out.on('error', error => {
      this.failure ??= error
    })
    this.pending.bytes(MAGIC)
    this.pending.sizedBlock(() => {
      this.pending.byte(BLOCK.header)
      this.pending.text(fsUuid ?? '')
    })
  }

  /** Abandons the file (the caller removes it) once its handle is closed. */
  async abort(): Promise<void> {
    this.closeSource()
    if (this.out.closed) return
    const closed = once(this.out, 'close').catch(() => {})
    this.out.destroy()
    await closed
  }

  /** Returns a promise only when the file's buffer is full: most nodes cost no await. */
  add(node: TreeNode): Promise<void> | undefined {
    if (this.invalid) return
    const {last} = this
    if ((last && compareTreePaths(last, node.path) >= 0) || (node.type === 'file' && node.sha256 === undefined)) {
      this.invalid = true
      return
    }

    this.last = node.path
    this.count++
    if (node.identity && node.identity.ctime.sec > this.newestCtime) this.newestCtime = node.identity.ctime.sec
    if (node.group !== undefined) {
      const names = this.groups.get(node.group)
      if (names) names.push(node.path)
      else this.groups.set(node.group, [node.path])
    }

    encodeNode(this.pending, node, last)
    if (this.pending.length >= WRITE_BYTES) return this.flush()
  }

  /**
   * Copies a range of another record's node blocks (a subtree as it is there), right after its directory's
   * node: the blocks then decode to the same nodes here. Anything else makes the record invalid. Returns a
   * promise only when the file's buffer is full, as `add` does (ranges are as many as unchanged directories).
   */
  addRange(range: RecordRange, file: string): Promise<void> | undefined {
    if (this.invalid) return
    if (!this.last?.equals(range.dir) || range.count === 0 || compareTreePaths(range.dir, range.first) >= 0) {
      this.invalid = true
      return
    }

    this.last = range.last
    this.count += range.count
    if (range.newestCtime > this.newestCtime) this.newestCtime = range.newestCtime
    if (this.source?.file !== file) {
      if (this.source) closeSync(this.source.fd)
      this.source = {fd: openSync(file, 'r'), file}
    }

    return this.copy(this.source.fd, range.start, range.end)
  }

  /**
   * Closes the file and returns its size in bytes. `blobs`: the identities of the image's layer blobs
   * (`blobIdentity`, by digest) as they were when written or hashed.
   */
  async finish(diffIds: string[], blobs: ReadonlyMap<string, string> = new Map()): Promise<number> {
    this.closeSource()
    const {pending} = this
    const groups = [...this.groups.values()].filter(names => names.length > 1)
    const tail = this.written + pending.length
    pending.sizedBlock(() => {
      pending.byte(BLOCK.groups)
      pending.uint(groups.length)
      for (const names of groups) {
        pending.uint(names.length)
        for (const name of names) pending.sized(name)
      }
    })
    pending.sizedBlock(() => {
      pending.byte(BLOCK.end)
      pending.uint(this.count)
      pending.int(this.newestCtime)
      pending.byte(this.readAt ? 1 : 0)
      if (this.readAt) pending.int(Math.floor(this.readAt.getTime() / 1000))
      pending.uint(diffIds.length)
      for (const id of diffIds) pending.text(id)
      pending.uint(blobs.size)
      for (const [digest, identity] of blobs) {
        pending.text(digest)
        pending.text(identity)
      }
    })
    pending.bytes(footerOffset(tail))
    await this.flush()
    this.out.end(this.hash.digest())
    await once(this.out, 'close')
    if (this.failure) throw this.failure
    return this.out.bytesWritten
  }

  private closeSource(): void {
    if (this.source) closeSync(this.source.fd)
    this.source = undefined
  }

  private copy(fd: number, start: number, end: number): Promise<void> | undefined {
    for (let at = start; at < end;) {
      const length = Math.min(WRITE_BYTES, end - at)
      // Read straight into the pending bytes: a subtree's blocks are copied once, not twice.
      this.pending.filled(length, (target, offset) => {
        if (readSync(fd, target, offset, length, at) !== length) throw new TreeRecordError('truncated')
      })
      at += length
      if (this.pending.length >= WRITE_BYTES) return this.flush().then(() => this.copy(fd, at, end))
    }
  }

  private async flush(): Promise<void> {
    if (this.failure) throw this.failure
    const chunk = this.pending.take()
    this.written += chunk.length
    this.hash.update(chunk)
    if (!this.out.write(chunk)) await once(this.out, 'drain')
  }
}

/**
 * A tree record being written during a commit: streamed to a temp file in the layout's ingest folder (a
 * killed commit leaves it to the next layout's clean-up), then stored under the image's manifest digest,
 * atomically, before the tag moves.
 */
export class PendingTreeRecord {
  readonly add = (node: TreeNode): Promise<void> | undefined => this.writer.add(node)
  readonly addRange = (range: RecordRange, file: string): Promise<void> | undefined => this.writer.addRange(range, file)
  /** For `tarLayer`'s `onArchived`. */
  readonly archived = (entry: Entry, sha256: string | undefined): Promise<void> | undefined => this.writer.add(nodeFromEntry(entry, sha256))
  private completed = false
  private readonly writer: TreeRecordWriter

  private constructor(private readonly temp: string, fsUuid: string | undefined, readAt: Date) {
    this.writer = new TreeRecordWriter(temp, fsUuid, readAt)
  }

  /** `readAt`: when the disk began to be read (no VM can change it from then on until the commit ends). */
  static open(layout: OciLayout, fsUuid: string | undefined, readAt: Date): PendingTreeRecord {
    return new PendingTreeRecord(layout.ingestPath('.tree'), fsUuid, readAt)
  }

  /**
   * Completes the file and syncs it to disk, ahead of `store` (which then only moves it into place), so
   * that its sync runs while the config and manifest are written.
   */
  async complete(diffIds: string[], blobs: ReadonlyMap<string, string>): Promise<void> {
    if (this.writer.invalid || this.completed) return
    await this.writer.finish(diffIds, blobs)
    await fsync(this.temp)
    this.completed = true
  }

  async discard(): Promise<void> {
    await this.writer.abort()
    await unlink(this.temp).catch(() => {})
  }

  /**
   * Completes the record (unless `complete` did) and stores it as the image's; returns its size in bytes,
   * or 0 when no record could be kept (the extractor's entries were not in layer order).
   */
  async store(layout: OciLayout, manifestDigest: string, diffIds: string[], blobs: ReadonlyMap<string, string>): Promise<number> {
    if (this.writer.invalid) {
      await this.discard()
      return 0
    }

    await this.complete(diffIds, blobs)
    return new ImageRecords(layout.root).adopt(manifestDigest, TREE_RECORD, this.temp, {synced: true})
  }
}
