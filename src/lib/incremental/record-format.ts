/**
 * Format 2 of the tree record, block by block. The file is `MAGIC`, then blocks (a LEB128 length, then the
 * body, whose first byte is its kind), then a footer: where the groups block starts, and the sha256 of all
 * bytes before it. A reader takes the header and the tail first, then streams the nodes once:
 *
 * - `H` header: the filesystem UUID (empty: none);
 * - `N` one per node, in layer order: flags (type, and whether xattrs, an identity or a hard-link group
 *   follow), the path as the bytes it shares with the previous node's path plus the rest, mode, uid, gid,
 *   mtime, size; then a file's raw sha256, a symlink's target, a device's numbers, xattrs, identity;
 * - `G` the hard-link groups of two names or more, each as its list of paths;
 * - `E` the trailer: node count, newest ctime, when the disk was read (0/1 flag, then seconds), diff_ids,
 *   the identities of the layer blob files by digest (see `blobIdentity`).
 *
 * Decoding checks every field (a record is never trusted blindly) and copies what it keeps out of the
 * read buffer.
 */
import type {Hash} from 'node:crypto'

import {
  closeSync, fstatSync, openSync, readSync,
} from 'node:fs'

import type {EntryType} from '../extractor/extractor.js'
import type {TreeNode} from './tree-record.js'

import {ENTRY_TYPES} from '../extractor/extractor.js'
import {scanLayerPath} from '../layer/names.js'
import {
  ByteReader, type ByteWriter, RecordFormatError,
} from './record-codec.js'

/**
 * The blocks of one chunk of a record file: a reader over them, each block's body as `[start, end)` pairs,
 * where each block starts (its length first), and the file offset of the reader's first byte.
 */
export interface BlockBatch {
  base: number
  reader: ByteReader
  spans: number[]
  starts: number[]
}

export const MAGIC = Buffer.from('MATREE\0\u0002', 'latin1')

export const BLOCK = {
  end: 0x45, groups: 0x47, header: 0x48, node: 0x4E,
} as const

const TYPE_BITS = 0x07
const XATTRS = 0x08
const IDENTITY = 0x10
const GROUPED = 0x20
const KNOWN_FLAGS = 0x3F
const NSEC_MAX = 999_999_999
const DIGEST_BYTES = 32
const OFFSET_BYTES = 8
/** After the blocks: the offset of the groups block, then the sha256 of every byte before the sha256. */
export const FOOTER_BYTES = OFFSET_BYTES + DIGEST_BYTES
/** Small enough that the nodes of one chunk die young. */
const READ_BYTES = 64 * 1024
const DEVICE_TYPES = new Set<EntryType>(['block', 'char'])

function sharedPrefix(a: Buffer, b: Buffer): number {
  const n = Math.min(a.length, b.length)
  let i = 0
  while (i < n && a[i] === b[i]) i++
  return i
}

/** Writes one node block; `previous` is the path of the node before it, if any. */
export function encodeNode(out: ByteWriter, node: TreeNode, previous: Buffer | undefined): void {
  out.sizedBlock(() => {
    let flags = ENTRY_TYPES.indexOf(node.type)
    if (node.xattrs.length > 0) flags |= XATTRS
    if (node.identity) flags |= IDENTITY
    if (node.group !== undefined) flags |= GROUPED
    out.byte(BLOCK.node)
    out.byte(flags)
    const shared = previous ? sharedPrefix(previous, node.path) : 0
    out.uint(shared)
    out.sized(node.path, shared)
    out.uint(node.mode)
    out.uint(node.uid)
    out.uint(node.gid)
    out.int(node.mtime.sec)
    out.uint(node.mtime.nsec)
    out.uint(node.size)
    if (node.type === 'file') out.hex(node.sha256 ?? '', 32)
    if (node.type === 'symlink') out.sized(node.linkTarget ?? Buffer.alloc(0))
    if (DEVICE_TYPES.has(node.type)) {
      out.uint(node.devMajor ?? 0)
      out.uint(node.devMinor ?? 0)
    }

    if (node.xattrs.length > 0) {
      out.uint(node.xattrs.length)
      for (const [name, value] of node.xattrs) {
        out.text(name)
        out.sized(value)
      }
    }

    if (node.identity) {
      out.uint(node.identity.inode)
      out.uint(node.identity.generation)
      out.int(node.identity.ctime.sec)
      out.uint(node.identity.ctime.nsec)
    }
  })
}

/** Refuses what no layer may hold, by the layer's own rules (`scanLayerPath`). */
function checkPath(path: Buffer): void {
  if (scanLayerPath(path) === 'unsafe') throw new RecordFormatError('unsafe path')
}

function time(input: ByteReader): {nsec: number; sec: number} {
  const sec = input.int()
  const nsec = input.uint()
  if (nsec > NSEC_MAX) throw new RecordFormatError('bad time')
  return {nsec, sec}
}

/**
 * Reads the body of a node block (after its kind byte). Whether the node is in a group is left to the
 * caller, which knows the groups: `grouped` says the writer put it in one; `shared`, how many of its first
 * bytes are the previous path's. `hashes: false` leaves files'
 * sha256 out (a hex string per file is most of what a pass that needs none would allocate).
 */
export function decodeNode(input: ByteReader, previous: Buffer | undefined, hashes = true): {grouped: boolean; node: TreeNode; shared: number} {
  const flags = input.byte()
  const type = ENTRY_TYPES[flags & TYPE_BITS]
  if (type === undefined || (flags & ~KNOWN_FLAGS) !== 0) throw new RecordFormatError('bad type')
  const shared = input.uint()
  if (shared > (previous?.length ?? 0)) throw new RecordFormatError('bad path')
  const rest = input.uint()
  const path = Buffer.allocUnsafe(shared + rest)
  // The shared part is a few dozen bytes: copied here, not through Buffer#copy's argument checks.
  for (let i = 0; i < shared; i++) path[i] = previous![i]
  input.copied(rest, path, shared)
  checkPath(path)
  // Fields in the order they were written.
  const mode = input.uint()
  const uid = input.uint()
  const gid = input.uint()
  const mtime = time(input)
  const node: TreeNode = {
    gid, mode, mtime, path, size: input.uint(), type, uid, xattrs: [],
  }
  if (node.mode > 0o7777 || (type !== 'file' && node.size > 0)) throw new RecordFormatError('bad mode or size')
  if (type === 'file' && hashes) node.sha256 = input.hex(32)
  else if (type === 'file') input.skip(32)
  if (type === 'symlink') node.linkTarget = input.sized()
  if (DEVICE_TYPES.has(type)) {
    node.devMajor = input.uint()
    node.devMinor = input.uint()
  }

  if (flags & XATTRS) {
    const count = input.uint()
    for (let i = 0; i < count; i++) node.xattrs.push([input.text(), input.sized()])
  }

  if (flags & IDENTITY) {
    const inode = input.uint()
    const generation = input.uint()
    node.identity = {ctime: time(input), generation, inode}
  }

  if (!input.done) throw new RecordFormatError('bad node')
  return {grouped: (flags & GROUPED) !== 0, node, shared}
}

/**
 * @yields the blocks of a record, a chunk of the file at a time (valid until the next chunk is asked for);
 *   the sha256 of the bytes they came from, and of the footer's offset, goes to `hash`
 * @returns the digest stored at the end of the file
 */
export async function * blockBatches(file: string, hash: Hash): AsyncGenerator<BlockBatch, Buffer, undefined> {
  // Synchronous reads, as the layer's block reads: a local file's chunk costs less than a thread-pool round
  // trip, and the commit had nothing else to do meanwhile (measured: most of 0.26 s idle on 200,000 nodes).
  const fd = openSync(file, 'r')
  try {
    const {size} = fstatSync(fd)
    const blocksEnd = size - FOOTER_BYTES
    if (blocksEnd < MAGIC.length) throw new RecordFormatError('truncated')
    let buf = Buffer.alloc(0)
    /** File offset of `buf[0]`. */
    let base = 0
    let pos = 0
    while (base + pos < blocksEnd) {
      const from = base + buf.length
      const want = Math.min(READ_BYTES, blocksEnd - from)
      if (want <= 0) throw new RecordFormatError('truncated')
      const chunk = Buffer.allocUnsafe(want)
      if (readSync(fd, chunk, 0, want, from) !== want) throw new RecordFormatError('truncated')
      hash.update(chunk)
      buf = pos < buf.length ? Buffer.concat([buf.subarray(pos), chunk]) : chunk
      base += pos
      pos = 0
      if (base === 0) {
        if (buf.length < MAGIC.length) continue
        if (!buf.subarray(0, MAGIC.length).equals(MAGIC)) throw new RecordFormatError('not a tree record of this format')
        pos = MAGIC.length
      }

      const spans: number[] = []
      const starts: number[] = []
      for (;;) {
        const block = nextBlock(buf, pos)
        if (block === undefined) break
        spans.push(block.start, block.end)
        starts.push(pos)
        pos = block.end
      }

      if (spans.length > 0) {
        yield {
          base, reader: new ByteReader(buf), spans, starts,
        }
      }
    }

    const footer = Buffer.alloc(FOOTER_BYTES)
    readSync(fd, footer, 0, FOOTER_BYTES, blocksEnd)
    hash.update(footer.subarray(0, OFFSET_BYTES))
    return footer.subarray(OFFSET_BYTES)
  } finally {
    closeSync(fd)
  }
}

/** The footer's first part: where the groups block starts (6 bytes little-endian, then 2 zero bytes). */
export function footerOffset(offset: number): Buffer {
  const out = Buffer.alloc(OFFSET_BYTES)
  out.writeUIntLE(offset, 0, 6)
  return out
}

export function readFooterOffset(footer: Buffer): number {
  if (footer[6] !== 0 || footer[7] !== 0) throw new RecordFormatError('bad footer')
  return footer.readUIntLE(0, 6)
}

/** The body of the block at `pos`, if the buffer holds all of it. */
export function nextBlock(buf: Buffer, pos: number): undefined | {end: number; start: number} {
  let length = 0
  let scale = 1
  for (let at = pos; at < buf.length && at < pos + 5; at++) {
    length += (buf[at] & 0x7F) * scale
    if (buf[at] < 0x80) {
      const start = at + 1
      return start + length <= buf.length ? {end: start + length, start} : undefined
    }

    scale *= 0x80
  }

  if (buf.length - pos >= 5) throw new RecordFormatError('bad block length')
}
