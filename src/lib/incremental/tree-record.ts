/**
 * The tree record: what an image's tree holds (one node per path, in layer order) plus the ext4 identity
 * of each inode, kept beside the image by our own commits so that the next `commit --parent` can diff
 * against it without reading the parent's layers. A binary file (format 2, see `record-format.ts`): a
 * header, one block per node, one block of hard-link groups, a trailer with the count and the image's
 * diff_ids, then the sha256 of everything before it. A record is read twice: once whole to check it (and to
 * learn the groups), then as a stream for the merge, a chunk at a time.
 */
import {createHash, type Hash} from 'node:crypto'
import {once} from 'node:events'
import {createReadStream, createWriteStream, type WriteStream} from 'node:fs'
import {open, unlink} from 'node:fs/promises'

import type {Entry, EntryType, Timestamp} from '../extractor/extractor.js'
import type {OciLayout} from '../oci/layout.js'

import {ImageRecords} from '../oci/records.js'
import {ByteReader, ByteWriter} from './record-codec.js'
import {
  BLOCK, blockBatches, decodeNode, encodeNode, FOOTER_BYTES, footerOffset, MAGIC, nextBlock, readFooterOffset,
} from './record-format.js'

/** The record's name in `ImageRecords`. */
export const TREE_RECORD = 'tree.bin'
/**
 * The name of records written before format 2 (gzipped NDJSON). They are not read: a parent that only has
 * one is read from its layers (exact, slower), and its children get a record of the current format.
 */
export const OLD_TREE_RECORD = 'tree.ndjson.gz'
const WRITE_BYTES = 256 * 1024
/** The header block is tiny (a UUID): read with the start of the file. */
const HEAD_BYTES = 4096

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
 * sibling that sorts after the directory's name.
 */
export function compareTreePaths(a: Buffer, b: Buffer): number {
  const n = Math.min(a.length, b.length)
  for (let i = 0; i < n; i++) {
    const x = a[i] === 0x2F ? 0 : a[i]
    const y = b[i] === 0x2F ? 0 : b[i]
    if (x !== y) return x - y
  }

  return a.length - b.length
}

/** Whether `path` lies under the directory `dir` (not equal to it). */
export function isUnder(path: Buffer, dir: Buffer): boolean {
  if (dir.length === 0) return path.length > 0
  return path.length > dir.length && path[dir.length] === 0x2F && path.subarray(0, dir.length).equals(dir)
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
   * Closes the file and returns its size in bytes. `blobs`: the identities of the image's layer blobs
   * (`blobIdentity`, by digest) as they were when written or hashed.
   */
  async finish(diffIds: string[], blobs: ReadonlyMap<string, string> = new Map()): Promise<number> {
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

  private async flush(): Promise<void> {
    if (this.failure) throw this.failure
    const chunk = this.pending.take()
    this.written += chunk.length
    this.hash.update(chunk)
    if (!this.out.write(chunk)) await once(this.out, 'drain')
  }
}

export interface TreeRecord {
  /** `nodes`, a chunk of the file's nodes at a time. */
  batches(): AsyncGenerator<TreeNode[], void, undefined>
  /** Identities of the image's layer blob files (by digest) when they were written or last hashed. */
  blobs: Map<string, string>
  /** The image's diff_ids, as the record's writer saw them. */
  diffIds: string[]
  entries: number
  /** UUID of the filesystem the identities come from, if any. */
  fsUuid?: string
  /** Hard-link groups of two names or more, by key. */
  groups: Map<string, Buffer[]>
  /** The newest ctime (seconds) of any identity in the record. */
  newestCtime: number
  /**
   * Streams the nodes in layer order, checking each, and at the end their count and the sha256 of the whole
   * file: throws TreeRecordError when anything is wrong, and what was read from it must not be used then.
   */
  nodes(): AsyncGenerator<TreeNode, void, undefined>
  /**
   * When the commit began reading the disk (seconds, host clock): every change made after the record has a
   * ctime from then on, whatever the disk's newest ctime says.
   */
  readAt?: number
}

function parseGroups(block: ByteReader): Map<string, Buffer[]> {
  const groups = new Map<string, Buffer[]>()
  const count = block.uint()
  for (let i = 0; i < count; i++) {
    const names: Buffer[] = []
    const size = block.uint()
    if (size < 2) throw new TreeRecordError('bad group')
    for (let j = 0; j < size; j++) names.push(block.sized())
    groups.set(`#${i}`, names)
  }

  return groups
}

function parseTrailer(block: ByteReader): Omit<TreeRecord, 'batches' | 'fsUuid' | 'groups' | 'nodes'> {
  const entries = block.uint()
  const newestCtime = block.int()
  const readAt = block.byte() === 1 ? block.int() : undefined
  const diffIds: string[] = []
  const count = block.uint()
  for (let i = 0; i < count; i++) diffIds.push(block.text())
  const blobs = new Map<string, string>()
  const blobCount = block.uint()
  for (let i = 0; i < blobCount; i++) blobs.set(block.text(), block.text())
  return {
    blobs, diffIds, entries, newestCtime, ...(readAt === undefined ? {} : {readAt}),
  }
}

/** Reads the block of `kind` that `reader` is at; throws unless it is one, whole. */
function expectBlock<T>(reader: ByteReader, kind: number, parse: (block: ByteReader) => T): T {
  const body = nextBlock(reader.buffer, reader.pos)
  if (!body) throw new TreeRecordError('truncated')
  const block = new ByteReader(reader.buffer).at(body.start, body.end)
  if (block.byte() !== kind) throw new TreeRecordError('unexpected block')
  const value = parse(block)
  if (!block.done) throw new TreeRecordError('bad block')
  reader.at(body.end, reader.buffer.length)
  return value
}

/**
 * Opens a tree record: its header, and its tail (groups, trailer), found through the footer. The nodes are
 * checked as `nodes()` streams them, and the sha256 of the whole file at its end: a record is read once.
 * Throws TreeRecordError when what it reads is wrong; the caller then reads the image's layers instead.
 */
export async function openTreeRecord(file: string): Promise<TreeRecord> {
  let head: {fsUuid?: string; groups: Map<string, Buffer[]>; trailer: ReturnType<typeof parseTrailer>}
  try {
    head = await readEnds(file)
  } catch (error) {
    if (error instanceof TreeRecordError) throw error
    throw new TreeRecordError((error as Error).message)
  }

  const {fsUuid, groups, trailer} = head
  // Group keys are the record's own: a node's key is found through the names the groups list, so that a
  // key names exactly the group listed.
  const keyOf = new Map<string, string>()
  for (const [key, names] of groups) for (const name of names) keyOf.set(name.toString('latin1'), key)
  return {
    ...trailer,
    fsUuid,
    groups,
    batches: () => streamNodes(file, trailer.entries, keyOf),
    async * nodes() {
      for await (const batch of streamNodes(file, trailer.entries, keyOf)) yield * batch
    },
  }
}

async function readEnds(file: string): Promise<{fsUuid?: string; groups: Map<string, Buffer[]>; trailer: ReturnType<typeof parseTrailer>}> {
  const handle = await open(file, 'r')
  try {
    const {size} = await handle.stat()
    const read = async (from: number, length: number): Promise<Buffer> => {
      const buf = Buffer.alloc(length)
      const {bytesRead} = await handle.read(buf, 0, length, from)
      if (bytesRead !== length) throw new TreeRecordError('truncated')
      return buf
    }

    if (size < MAGIC.length + FOOTER_BYTES) throw new TreeRecordError('truncated')
    const tail = readFooterOffset(await read(size - FOOTER_BYTES, FOOTER_BYTES))
    if (tail < MAGIC.length || tail > size - FOOTER_BYTES) throw new TreeRecordError('bad footer')
    const start = await read(0, Math.min(HEAD_BYTES, tail))
    if (!start.subarray(0, MAGIC.length).equals(MAGIC)) throw new TreeRecordError('not a tree record of this format')
    const fs = expectBlock(new ByteReader(start).at(MAGIC.length, start.length), BLOCK.header, block => block.text())
    const ends = new ByteReader(await read(tail, size - FOOTER_BYTES - tail)).at(0, size - FOOTER_BYTES - tail)
    const groups = expectBlock(ends, BLOCK.groups, parseGroups)
    const trailer = expectBlock(ends, BLOCK.end, parseTrailer)
    if (!ends.done) throw new TreeRecordError('data after the trailer')
    return {fsUuid: fs === '' ? undefined : fs, groups, trailer}
  } finally {
    await handle.close()
  }
}

/**
 * @yields the record's nodes in order, checked, a chunk at a time (errors as TreeRecordError)
 */
async function * streamNodes(file: string, entries: number, keyOf: Map<string, string>): AsyncGenerator<TreeNode[], void, undefined> {
  try {
    yield * checkedNodes(file, entries, keyOf)
  } catch (error) {
    if (error instanceof TreeRecordError) throw error
    throw new TreeRecordError((error as Error).message)
  }
}

/**
 * @yields the record's nodes in order, checked, a chunk at a time; then checks their count and the sha256 of the file
 */
async function * checkedNodes(file: string, entries: number, keyOf: Map<string, string>): AsyncGenerator<TreeNode[], void, undefined> {
  const hash = createHash('sha256')
  const batches = blockBatches(file, hash)
  let last: Buffer | undefined
  let count = 0
  let tail = false
  let next = await batches.next()
  while (!next.done) {
    const {reader, spans} = next.value
    const nodes: TreeNode[] = []
    for (let i = 0; i < spans.length && !tail; i += 2) {
      const block = reader.at(spans[i], spans[i + 1])
      const kind = block.byte()
      if (kind === BLOCK.header && last === undefined && count === 0) continue
      if (kind !== BLOCK.node) {
        tail = true
        break
      }

      const {grouped, node} = decodeNode(block, last)
      if (last && compareTreePaths(last, node.path) >= 0) throw new TreeRecordError('nodes out of order')
      last = node.path
      count++
      const key = grouped ? keyOf.get(node.path.toString('latin1')) : undefined
      if (key !== undefined) node.group = key
      nodes.push(node)
    }

    if (nodes.length > 0) yield nodes
    next = await batches.next()
  }

  if (count !== entries || !next.value.equals(hash.digest())) throw new TreeRecordError('its sha256 does not match its bytes')
}

/**
 * A tree record being written during a commit: streamed to a temp file in the layout's ingest folder (a
 * killed commit leaves it to the next layout's clean-up), then stored under the image's manifest digest,
 * atomically, before the tag moves.
 */
export class PendingTreeRecord {
  readonly add = (node: TreeNode): Promise<void> | undefined => this.writer.add(node)
  /** For `tarLayer`'s `onArchived`. */
  readonly archived = (entry: Entry, sha256: string | undefined): Promise<void> | undefined => this.writer.add(nodeFromEntry(entry, sha256))
  private readonly writer: TreeRecordWriter

  private constructor(private readonly temp: string, fsUuid: string | undefined, readAt: Date) {
    this.writer = new TreeRecordWriter(temp, fsUuid, readAt)
  }

  /** `readAt`: when the disk began to be read (no VM can change it from then on until the commit ends). */
  static open(layout: OciLayout, fsUuid: string | undefined, readAt: Date): PendingTreeRecord {
    return new PendingTreeRecord(layout.ingestPath('.tree'), fsUuid, readAt)
  }

  async discard(): Promise<void> {
    await this.writer.abort()
    await unlink(this.temp).catch(() => {})
  }

  /**
   * Completes the record and stores it as the image's; returns its size in bytes, or 0 when no record
   * could be kept (the extractor's entries were not in layer order).
   */
  async store(layout: OciLayout, manifestDigest: string, diffIds: string[], blobs: ReadonlyMap<string, string>): Promise<number> {
    if (this.writer.invalid) {
      await this.discard()
      return 0
    }

    await this.writer.finish(diffIds, blobs)
    const size = await new ImageRecords(layout.root).writeStream(manifestDigest, TREE_RECORD, createReadStream(this.temp))
    await unlink(this.temp).catch(() => {})
    return size
  }
}
