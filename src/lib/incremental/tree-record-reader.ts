// Reading a tree record (see tree-record.ts): its ends first (header, groups, trailer), then its nodes as a
// stream, each checked as it comes and the whole file's sha256 at the end.
import {createHash} from 'node:crypto'
import {open} from 'node:fs/promises'

import {ByteReader} from './record-codec.js'
import {
  BLOCK, blockBatches, decodeNode, FOOTER_BYTES, MAGIC, nextBlock, readFooterOffset,
} from './record-format.js'
import {compareTreePaths, type TreeNode, TreeRecordError} from './tree-record.js'

/** The header block is tiny (a UUID): read with the start of the file. */
const HEAD_BYTES = 4096

/**
 * A subtree's run of node blocks in a record file, which a record of the next image can copy as it is: the
 * blocks are the same when the subtree is, and the first is encoded against the directory's own path,
 * which comes right before it in both records.
 */
export interface RecordRange {
  /** Nodes in the range. */
  count: number
  /** The directory the subtree is under. */
  dir: Buffer
  /** File offset just past the range's last block. */
  end: number
  first: Buffer
  last: Buffer
  /** The newest ctime (seconds) of the identities in the range. */
  newestCtime: number
  /** File offset of the range's first block. */
  start: number
}

/** Ranges of a record file that a stream of its nodes skips (hashed, not decoded), by their start offsets. */
export class RecordSkips {
  readonly ranges = new Map<number, RecordRange>()

  constructor(readonly file: string) {}
}

/** A chunk's nodes with the file offset of each one's block, and the offset just past the last one. */
export interface PlacedBatch {
  end: number
  nodes: TreeNode[]
  offsets: number[]
}

export interface TreeRecord {
  /**
   * `nodes`, a chunk of the file's nodes at a time; with `skips`, the nodes of its ranges are left out
   * (counted and hashed all the same), which must be filled before the stream begins.
   */
  batches(skips?: RecordSkips): AsyncGenerator<TreeNode[], void, undefined>
  /** Identities of the image's layer blob files (by digest) when they were written or last hashed. */
  blobs: Map<string, string>
  /** The image's diff_ids, as the record's writer saw them. */
  diffIds: string[]
  entries: number
  /** The record's file. */
  file: string
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
  /** `batches` with where each node is in the file, for RecordRange, and without files' sha256. */
  placed(): AsyncGenerator<PlacedBatch, void, undefined>
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

function parseTrailer(block: ByteReader): Omit<TreeRecord, 'batches' | 'file' | 'fsUuid' | 'groups' | 'nodes' | 'placed'> {
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
    async * batches(skips?: RecordSkips) {
      for await (const batch of streamNodes(file, trailer.entries, keyOf, {skips})) yield batch.nodes
    },
    file,
    async * nodes() {
      for await (const batch of streamNodes(file, trailer.entries, keyOf)) yield * batch.nodes
    },
    placed: () => streamNodes(file, trailer.entries, keyOf, {hashes: false}),
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
async function * streamNodes(file: string, entries: number, keyOf: Map<string, string>, how: StreamOptions = {}): AsyncGenerator<PlacedBatch, void, undefined> {
  try {
    yield * checkedNodes(file, entries, keyOf, how)
  } catch (error) {
    if (error instanceof TreeRecordError) throw error
    throw new TreeRecordError((error as Error).message)
  }
}

interface StreamOptions {
  /** False leaves files' sha256 out. */
  hashes?: boolean
  skips?: RecordSkips
}

/** Where a stream is among the ranges it skips. */
class Skipper {
  /** The end of the range being skipped, or -1. */
  private to = -1

  constructor(private readonly skips: RecordSkips | undefined) {}

  /** Whether a skipped range is still open (the blocks ran out inside it). */
  get inside(): boolean {
    return this.to >= 0
  }

  /** For the block at file offset `at`: true inside a skipped range, the range if one starts there, else false. */
  at(at: number): boolean | RecordRange {
    if (this.to >= 0) {
      if (at < this.to) return true
      if (at > this.to) throw new TreeRecordError('a skipped range ends inside a block')
      this.to = -1
    }

    const range = this.skips?.ranges.get(at)
    if (!range) return false
    this.to = range.end
    return range
  }
}

/**
 * @yields the record's nodes in order, checked, a chunk at a time; then checks their count and the sha256 of the file
 */
async function * checkedNodes(file: string, entries: number, keyOf: Map<string, string>, {hashes = true, skips}: StreamOptions): AsyncGenerator<PlacedBatch, void, undefined> {
  const hash = createHash('sha256')
  const batches = blockBatches(file, hash)
  let last: Buffer | undefined
  let count = 0
  let tail = false
  const skipper = new Skipper(skips)
  let next = await batches.next()
  while (!next.done) {
    const {
      base, reader, spans, starts,
    } = next.value
    const nodes: TreeNode[] = []
    const offsets: number[] = []
    let end = base
    for (let i = 0; i < spans.length && !tail; i += 2) {
      const at = base + starts[i / 2]
      const range = skipper.at(at)
      if (range === true) continue
      if (range) {
        count += range.count
        last = range.last
        continue
      }

      const block = reader.at(spans[i], spans[i + 1])
      const kind = block.byte()
      if (kind === BLOCK.header && last === undefined && count === 0) continue
      if (kind !== BLOCK.node) {
        tail = true
        break
      }

      const {grouped, node, shared} = decodeNode(block, last, hashes)
      // The bytes the path shares with the last one are equal by construction: compared from there on.
      if (last && compareTreePaths(last, node.path, shared) >= 0) throw new TreeRecordError('nodes out of order')
      last = node.path
      count++
      const key = grouped ? keyOf.get(node.path.toString('latin1')) : undefined
      if (key !== undefined) node.group = key
      nodes.push(node)
      offsets.push(at)
      end = base + spans[i + 1]
    }

    if (nodes.length > 0) yield {end, nodes, offsets}
    next = await batches.next()
  }

  if (skipper.inside || count !== entries || !next.value.equals(hash.digest())) throw new TreeRecordError('its sha256 does not match its bytes')
}
