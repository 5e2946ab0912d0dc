import type {Timestamp} from './extractor.js'

import {extractionError} from '../support/errors.js'

/** One record of `ls -p`: `/<ino>/<mode>/<uid>/<gid>/<name>/<size>/`. */
export interface DirRecord {
  inode: number
  /** The full mode from the directory listing (type bits included), octal. */
  mode: number
  name: Buffer
}

const SLASH = 0x2F
const NEWLINE = 0x0A
const DIGIT_0 = 0x30
const MINUS = 0x2D

function refuse(what: string): never {
  throw extractionError(`cannot parse a debugfs directory listing: ${what}`)
}

/** `(uid_t)-1`: chown's "leave unchanged", so no file can be given it as an owner. */
const NO_ID = 2 ** 32 - 1

/**
 * An owner id as debugfs prints it. ext4 ids are 32-bit unsigned (16 low bits plus `i_uid_high`), but
 * debugfs 1.42–1.47 prints them with `%d`, so ids from 2^31 on come out negative: `-2` is 4294967294.
 * Returns undefined for anything that is not a 32-bit id.
 */
export function ownerId(text: string): number | undefined {
  if (!/^-?\d{1,10}$/.test(text)) return undefined
  const value = Number(text)
  if (value < -(2 ** 31) || value > NO_ID) return undefined
  return value < 0 ? value + 2 ** 32 : value
}

/**
 * `ls -p` output parsed with no object per record (a huge directory lists 100,000 names): record `i` is
 * `inodes[i]`, `modes[i]` and the name `bytes[nameStarts[i]..nameEnds[i]]`.
 */
export interface DirListing {
  bytes: Buffer
  count: number
  inodes: Float64Array
  /** The full mode from the directory listing (type bits included). */
  modes: Uint32Array
  nameEnds: Uint32Array
  nameStarts: Uint32Array
}

/** Reads the listing's fields in place: numbers from their digits, the name as a range. */
class ListingCursor {
  pos = 0

  constructor(private readonly buf: Buffer) {}

  /** The end of the field that starts here (the `/` closing it). */
  end(): number {
    const end = this.buf.indexOf(SLASH, this.pos)
    if (end === -1) refuse('truncated record')
    return end
  }

  /** A field of `radix` digits (at most `max` of them, at least `min`), and the `/` after it. */
  number(radix: number, min: number, max: number, what: string): number {
    const {buf} = this
    const end = this.end()
    let value = 0
    for (let i = this.pos; i < end; i++) {
      const digit = buf[i] - DIGIT_0
      if (digit < 0 || digit >= radix) refuse(`bad ${what} "${buf.toString('latin1', this.pos, end)}"`)
      value = value * radix + digit
    }

    if (end - this.pos < min || end - this.pos > max) refuse(`bad ${what} "${buf.toString('latin1', this.pos, end)}"`)
    this.pos = end + 1
    return value
  }

  /** An owner id field, checked as `ownerId` checks it. */
  owner(what: string): void {
    const end = this.end()
    const negative = this.buf[this.pos] === MINUS
    const start = this.pos
    if (negative) this.pos++
    const value = this.number(10, 1, 10, what)
    const id = negative ? -value : value
    if (id < -(2 ** 31) || id > NO_ID) refuse(`bad ${what} "${this.buf.toString('latin1', start, end)}"`)
  }
}

/**
 * Parses `ls -p` output: `/<ino>/<mode>/<uid>/<gid>/<name>/<size>/` and a newline per record. Names are raw
 * bytes and may hold newlines, but a name holding `/` (possible only on a byte-edited disk) makes the
 * record ambiguous: such a listing is refused, never guessed at.
 */
export function parseDirListingCompact(buf: Buffer): DirListing {
  let capacity = 64
  let listing: DirListing = {
    bytes: buf, count: 0, inodes: new Float64Array(capacity), modes: new Uint32Array(capacity), nameEnds: new Uint32Array(capacity), nameStarts: new Uint32Array(capacity),
  }
  const at = new ListingCursor(buf)
  while (at.pos < buf.length) {
    if (buf[at.pos] === NEWLINE) {
      at.pos++
      continue
    }

    if (buf[at.pos] !== SLASH) refuse('record does not start with "/"')
    at.pos++
    const inode = at.number(10, 1, 15, 'inode')
    const mode = at.number(8, 1, 7, 'mode')
    at.owner('uid')
    at.owner('gid')
    const nameStart = at.pos
    const nameEnd = at.end()
    at.pos = nameEnd + 1
    const sizeEnd = at.end()
    for (let i = at.pos; i < sizeEnd; i++) if (buf[i] < DIGIT_0 || buf[i] > DIGIT_0 + 9) at.pos = -1
    if (at.pos === -1 || buf[sizeEnd + 1] !== NEWLINE) {
      throw extractionError(`cannot parse a debugfs directory listing near "${buf.toString('latin1', nameStart, nameEnd)}": a name holds "/" (the disk was edited by hand or is corrupt)`)
    }

    at.pos = sizeEnd + 2
    if (listing.count === capacity) {
      capacity *= 2
      listing = grown(listing, capacity)
    }

    const i = listing.count++
    listing.inodes[i] = inode
    listing.modes[i] = mode
    listing.nameStarts[i] = nameStart
    listing.nameEnds[i] = nameEnd
  }

  return listing
}

function grown(listing: DirListing, capacity: number): DirListing {
  const copy = <T extends Float64Array | Uint32Array>(from: T, to: T): T => {
    to.set(from)
    return to
  }

  return {
    bytes: listing.bytes,
    count: listing.count,
    inodes: copy(listing.inodes, new Float64Array(capacity)),
    modes: copy(listing.modes, new Uint32Array(capacity)),
    nameEnds: copy(listing.nameEnds, new Uint32Array(capacity)),
    nameStarts: copy(listing.nameStarts, new Uint32Array(capacity)),
  }
}

/** Record `i` of a listing as an object (its name copied out of the reply). */
export function listingRecord(listing: DirListing, i: number): DirRecord {
  return {inode: listing.inodes[i], mode: listing.modes[i], name: Buffer.from(listing.bytes.subarray(listing.nameStarts[i], listing.nameEnds[i]))}
}

/** Parses `ls -p` output into one record per entry (see parseDirListingCompact). */
export function parseDirListing(buf: Buffer): DirRecord[] {
  const listing = parseDirListingCompact(buf)
  return Array.from({length: listing.count}, (_, i) => listingRecord(listing, i))
}

export type InodeType = 'bad' | 'block' | 'char' | 'directory' | 'fifo' | 'file' | 'socket' | 'symlink'

const TYPE_NAMES: Readonly<Record<string, InodeType>> = {
  'block special': 'block',
  'character special': 'char',
  directory: 'directory',
  FIFO: 'fifo',
  regular: 'file',
  socket: 'socket',
  symlink: 'symlink',
}

/** The `S_IFMT` bits of each type, to cross-check a listing against the inode. */
export const TYPE_BITS: Readonly<Record<Exclude<InodeType, 'bad'>, number>> = {
  block: 0o06_0000,
  char: 0o02_0000,
  directory: 0o04_0000,
  fifo: 0o01_0000,
  file: 0o10_0000,
  socket: 0o14_0000,
  symlink: 0o12_0000,
}

/** A run of a file's blocks: `length` logical blocks from `logical` stored from `physical` on. */
export interface BlockRun {
  length: number
  logical: number
  physical: number
  /** An unwritten (fallocated) extent: reads as zeros whatever its blocks hold. */
  unwritten: boolean
}

/** `i_flags` bits that decide how a file's content can be read. */
export const INODE_FLAGS = {
  encrypted: 0x8_00,
  hugeFile: 0x4_00_00,
  inlineData: 0x10_00_00_00,
} as const

/** A regular file's block map as `stat` prints it (EXTENTS or BLOCKS). */
export interface BlockMap {
  /** Every block the map lists: data, extent-tree and indirect blocks. */
  listed: number
  /** The data blocks, in logical order; holes absent. */
  runs: BlockRun[]
}

export interface InodeStat {
  /** `i_blocks` as stored: 512-byte sectors, or filesystem blocks when the HUGE_FILE flag is set. */
  blockCount: number
  /** Undefined for types other than regular files and (read directly, when the map fits the inode) directories. */
  blockMap?: BlockMap
  /** The inode's last status change. */
  ctime: Timestamp
  devMajor?: number
  devMinor?: number
  /** Raw bytes of a fast symlink's target (stored in the inode), exactly `size` of them. */
  fastLink?: Buffer
  /** The inode's `i_flags`. */
  flags: number
  /** `i_generation`. */
  generation: number
  gid: number
  /** Bytes of the inline data area (inode and system.data), which `cat` prints in full for inline files. */
  inlineDataSize?: number
  inode: number
  links: number
  mode: number
  mtime: Timestamp
  size: number
  type: InodeType
  uid: number
  /** The external xattr block, 0 if none. */
  xattrBlock: number
  /** Names and lengths of the extended attributes; values are fetched with `ea_get`. */
  xattrs: {length: number; name: string}[]
}

function match(text: string, pattern: RegExp, what: string): RegExpExecArray {
  const found = pattern.exec(text)
  if (!found) throw extractionError(`cannot parse debugfs stat output: no ${what}`)
  return found
}

/**
 * ext4 time: the low 32 bits are signed seconds; the extra field adds 2 epoch bits and 30 bits of ns.
 * The human-readable date debugfs prints is wrong after 2038 in 1.47.0, so only the hex is read.
 */
export function decodeTime(lo: string, extra: string | undefined): Timestamp {
  const unsigned = Number.parseInt(lo, 16)
  const low = unsigned > 0x7F_FF_FF_FF ? unsigned - 2 ** 32 : unsigned
  const ext = extra === undefined ? 0 : Number.parseInt(extra, 16) >>> 0
  return {nsec: Math.min(ext >>> 2, 999_999_999), sec: low + (ext & 3) * 2 ** 32}
}

/**
 * An owner from `stat`. `(uid_t)-1` is refused rather than written: an unpacker's chown would take it as
 * "leave unchanged", and the file (setuid bits and all) would stay owned by whoever unpacks it, often root.
 */
function statId(text: string, what: 'gid' | 'uid', inode: string): number {
  const id = ownerId(text)
  if (id === undefined) throw extractionError(`cannot parse debugfs stat output: bad ${what} "${text}" for inode ${inode}`)
  if (id === NO_ID) {
    throw extractionError(`inode ${inode} is owned by ${what} 4294967295, which is (uid_t)-1 and names no owner`, {
      remediation: 'Give the file a real owner in the workspace (chown; 0 to 4294967294), or leave it out with --exclude; check the disk with `e2fsck -fn <rootfs>` on a copy.',
    })
  }

  return id
}

/** Parses the fixed layout of `stat <ino>` (debugfs 1.42–1.47). */
export function parseStat(buf: Buffer): InodeStat {
  const text = buf.toString('latin1')
  const head = match(text, /^Inode: (\d+)\s+Type: ([^\n]*?)\s+Mode:\s+([0-7]+)\s/, 'inode header')
  const owner = match(text, /\nUser:\s+(-?\d+)\s+Group:\s+(-?\d+)\s+(?:Project:\s+\d+\s+)?Size: (\d+)\n/, 'owner and size')
  const links = match(text, /\nLinks: (\d+)\s+Blockcount: (\d+)\n/, 'link count')
  const xattrBlock = /\nFile ACL: (\d+)/.exec(text)
  const flags = match(text, /\sFlags: 0x([0-9a-f]{1,8})\n/, 'flags')
  const mtime = /\n\s*mtime: 0x([0-9a-f]{8})(?::([0-9a-f]{8}))? /.exec(text)
  const ctime = /\n\s*ctime: 0x([0-9a-f]{8})(?::([0-9a-f]{8}))? /.exec(text)
  const generation = /\nGeneration: (\d+)\s/.exec(text)
  const stat: InodeStat = {
    blockCount: Number(links[2]),
    ctime: ctime ? decodeTime(ctime[1], ctime[2]) : {nsec: 0, sec: 0},
    flags: Number.parseInt(flags[1], 16),
    generation: generation ? Number(generation[1]) : 0,
    gid: statId(owner[2], 'gid', head[1]),
    inode: Number(head[1]),
    links: Number(links[1]),
    mode: Number.parseInt(head[3], 8) & 0o7777,
    mtime: mtime ? decodeTime(mtime[1], mtime[2]) : {nsec: 0, sec: 0},
    size: Number(owner[3]),
    type: TYPE_NAMES[head[2]] ?? 'bad',
    uid: statId(owner[1], 'uid', head[1]),
    xattrBlock: xattrBlock ? Number(xattrBlock[1]) : 0,
    xattrs: [],
  }
  if (!Number.isSafeInteger(stat.size)) throw extractionError(`inode ${stat.inode} has an impossible size ${owner[3]}`)

  if (stat.type === 'file') stat.blockMap = parseBlockMap(text, stat.inode)
  const inline = /\nSize of inline data: (\d+)\n/.exec(text)
  if (inline) stat.inlineDataSize = Number(inline[1])
  const device = /\n(?:\(New-style\) )?Device major\/minor number: (\d+):(\d+) /.exec(text)
  if (device) {
    stat.devMajor = Number(device[1])
    stat.devMinor = Number(device[2])
  }

  const fast = text.indexOf('\nFast link dest: "')
  if (fast !== -1) {
    const start = fast + '\nFast link dest: "'.length
    stat.fastLink = Buffer.from(buf.subarray(start, start + stat.size))
    if (stat.fastLink.length !== stat.size || buf[start + stat.size] !== 0x22) {
      throw extractionError(`inode ${stat.inode}: fast symlink target does not match its size ${stat.size}`)
    }
  }

  const xattrStart = text.indexOf('\nExtended attributes:\n')
  if (xattrStart !== -1) {
    const lines = text.slice(xattrStart + '\nExtended attributes:\n'.length).split('\n')
    for (const line of lines) {
      if (!line.startsWith('  ')) break
      // `  name (len) = value` or, for values of 40 bytes or more, `  name (len)`.
      const xattr = /^ {2}(\S+) \((\d+)\)(?: = .*)?$/.exec(line)
      if (!xattr) throw extractionError(`inode ${stat.inode}: cannot parse extended attribute line ${JSON.stringify(line)}`)
      stat.xattrs.push({length: Number(xattr[2]), name: xattr[1]})
    }
  }

  return stat
}

const MAP_ENTRY = /^\((?:(\d+)(?:-(\d+))?(\[u\])?|ETB\d+|IND|DIND|TIND)\):(\d+)(?:-(\d+))?$/

/**
 * The block map on `stat`'s `EXTENTS:` (extent-mapped) or `BLOCKS:` (block-mapped) line, e.g.
 * `(ETB0):4682, (0-3[u]):100-103, (8):200`. Extent-tree and indirect blocks (`ETB0`, `IND`...) are
 * counted but are not content. No such line means no blocks: the file is one hole, or its map is
 * unreadable (stat then prints nothing), which the caller tells apart by the inode's block count.
 */
export function parseBlockMap(text: string, inode: number): BlockMap {
  const map: BlockMap = {listed: 0, runs: []}
  const header = /\n(?:EXTENTS|BLOCKS):\n/.exec(text)
  if (!header) return map
  const start = header.index + header[0].length
  const end = text.indexOf('\n', start)
  const line = text.slice(start, end === -1 ? text.length : end)
  if (line === '' || line.startsWith('TOTAL:')) return map
  for (const item of line.split(', ')) {
    const found = MAP_ENTRY.exec(item)
    if (!found) throw extractionError(`inode ${inode}: cannot parse block map entry ${JSON.stringify(item)}`)
    const [, first, last, unwritten, physical, physicalLast] = found
    const physicalLength = (physicalLast === undefined ? 0 : Number(physicalLast) - Number(physical)) + 1
    if (first === undefined) {
      map.listed += physicalLength
      continue
    }

    const length = (last === undefined ? 0 : Number(last) - Number(first)) + 1
    if (length < 1 || length !== physicalLength) throw extractionError(`inode ${inode}: inconsistent block map entry ${JSON.stringify(item)}`)
    map.listed += length
    map.runs.push({
      length, logical: Number(first), physical: Number(physical), unwritten: unwritten !== undefined,
    })
  }

  return map
}
