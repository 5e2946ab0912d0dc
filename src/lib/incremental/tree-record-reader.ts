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
