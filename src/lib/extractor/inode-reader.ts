import {closeSync, openSync, readSync} from 'node:fs'

import type {BlockMap, InodeStat, InodeType} from './debugfs-parse.js'

import {INODE_FLAGS} from './debugfs-parse.js'
import {ImageWindows} from './image-windows.js'

/**
 * Offsets in ext4's `struct ext4_super_block`, `struct ext4_group_desc` and `struct ext4_inode`
 * (Documentation/filesystems/ext4 in the kernel tree; lib/ext2fs/ext2_fs.h in e2fsprogs).
 */
const SB = {
  blocksCountHi: 0x1_50,
  blocksCountLo: 0x04,
  blocksPerGroup: 0x20,
  checksumSeed: 0x2_70,
  creatorOs: 0x48,
  descSize: 0xFE,
  featureIncompat: 0x60,
  featureRoCompat: 0x64,
  firstDataBlock: 0x14,
  inodesCount: 0x00,
  inodeSize: 0x58,
  inodesPerGroup: 0x28,
  logBlockSize: 0x18,
  magic: 0x38,
  revLevel: 0x4C,
  uuid: 0x68,
} as const
const INCOMPAT = {
  bit64: 0x80, csumSeed: 0x20_00, journalDev: 0x8, metaBg: 0x10,
} as const
const RO_COMPAT_METADATA_CSUM = 0x4_00
const GD_INODE_TABLE_LO = 0x08
const GD_INODE_TABLE_HI = 0x28
const I = {
  block: 0x28,
  blocksHi: 0x74,
  blocksLo: 0x1C,
  checksumHi: 0x82,
  checksumLo: 0x7C,
  ctime: 0x0C,
  ctimeExtra: 0x84,
  extraIsize: 0x80,
  fileAclHi: 0x76,
  fileAclLo: 0x68,
  flags: 0x20,
  generation: 0x64,
  gid: 0x18,
  gidHigh: 0x7A,
  links: 0x1A,
  mode: 0x00,
  mtime: 0x10,
  mtimeExtra: 0x88,
  sizeHigh: 0x6C,
  sizeLo: 0x04,
  uid: 0x02,
  uidHigh: 0x78,
} as const
const GOOD_OLD_INODE_SIZE = 128
const EXTENTS_FL = 0x8_00_00
const EXTENT_MAGIC = 0xF3_0A
const EXT_INIT_MAX_LEN = 32_768
const XATTR_MAGIC = 0xEA_02_00_00
/** Inode tables are read in aligned windows (4,096 inodes of 256 bytes), a few kept: see ImageWindows. */
const TABLE_WINDOW = 1024 * 1024
const TYPES: Readonly<Record<number, InodeType>> = {
  0x10_00: 'fifo', 0x20_00: 'char', 0x40_00: 'directory', 0x60_00: 'block', 0x80_00: 'file', 0xA0_00: 'symlink', 0xC0_00: 'socket',
}

/**
 * CRC32C (Castagnoli, reflected) lookup tables for slicing by 8: table k gives the CRC of a byte followed
 * by k zero bytes, so eight bytes are folded per step (an inode is 256 bytes, a million of them are summed).
 */
const CRC32C_TABLES = (() => {
  const tables = Array.from({length: 8}, () => new Uint32Array(256))
  for (let n = 0; n < 256; n++) {
    let c = n
    for (let k = 0; k < 8; k++) c = c & 1 ? 0x82_F6_3B_78 ^ (c >>> 1) : c >>> 1
    tables[0][n] = c >>> 0
  }

  for (let n = 0; n < 256; n++) {
    for (let k = 1; k < 8; k++) tables[k][n] = (tables[0][tables[k - 1][n] & 0xFF] ^ (tables[k - 1][n] >>> 8)) >>> 0
  }

  return tables
})()
const [T0, T1, T2, T3, T4, T5, T6, T7] = CRC32C_TABLES
/** What a checksum field counts as while the checksum is computed. */
const ZERO_16 = Buffer.alloc(2)

/** CRC32C as ext4 chains it: no final inversion, the seed is the previous value. */
export function crc32c(seed: number, bytes: Uint8Array, start = 0, end = bytes.length): number {
  let c = seed
  let i = start
  for (; i + 8 <= end; i += 8) {
    const low = c ^ (bytes[i] | (bytes[i + 1] << 8) | (bytes[i + 2] << 16) | (bytes[i + 3] << 24))
    const high = T3[bytes[i + 4]] ^ T2[bytes[i + 5]] ^ T1[bytes[i + 6]] ^ T0[bytes[i + 7]]
    c = T7[low & 0xFF] ^ T6[(low >>> 8) & 0xFF] ^ T5[(low >>> 16) & 0xFF] ^ T4[low >>> 24] ^ high
  }

  for (; i < end; i++) c = T0[(c ^ bytes[i]) & 0xFF] ^ (c >>> 8)
  return c >>> 0
}

function powerOfTwo(n: number): boolean {
  return (n & (n - 1)) === 0
}

/** Why the whole filesystem is left to debugfs, or undefined when the direct reader can serve it. */
function unsupported(sb: Buffer): string | undefined {
  if (sb.readUInt16LE(SB.magic) !== 0xEF_53) return 'no ext2/3/4 superblock magic'
  if (sb.readUInt32LE(SB.creatorOs) !== 0) return 'the filesystem was not created by Linux (the inode layout differs)'
  const incompat = sb.readUInt32LE(SB.featureIncompat)
  if (incompat & INCOMPAT.metaBg) return 'meta_bg places group descriptors the direct reader does not look for'
  if (incompat & INCOMPAT.journalDev) return 'an external journal device'
  if (sb.readUInt32LE(SB.logBlockSize) > 6) return 'a corrupt block size'
  if (sb.readUInt32LE(SB.inodesPerGroup) === 0 || sb.readUInt32LE(SB.blocksPerGroup) === 0) return 'a corrupt group geometry'
  return undefined
}

/**
 * Reads inodes straight from the inode tables of an ext2/3/4 image, as debugfs `stat` would report them,
 * without a round trip per inode. It serves only what it models exactly: an inode with anything else
 * (inline data, encryption, an extent tree deeper than the inode, indirect blocks, extended attributes,
 * a checksum that does not match, a field out of bounds) gets undefined from `stat`, and the caller asks
 * debugfs, which stays the reference. The guest controls every byte: every offset is checked before use.
 */
export class InodeReader {
  private readonly csumSeed: number
  private readonly descSize: number
  private readonly fd: number
  private readonly firstDataBlock: number
  /** Inode-table block of each group read so far. */
  private readonly groupTables = new Map<number, number>()
  private readonly inodesCount: number
  private readonly inodeSize: number
  private readonly inodesPerGroup: number
  private readonly inodeTableBlocks: number
  private readonly metadataCsum: boolean
  /** The inode number and generation, little-endian: what the checksum covers before the inode. */
  private readonly prefix = Buffer.alloc(8)
  private readonly tables: ImageWindows
  private readonly wide: boolean

  private constructor(fd: number, sb: Buffer, readonly blockSize: number, readonly blocksCount: number) {
    this.fd = fd
    const incompat = sb.readUInt32LE(SB.featureIncompat)
    this.wide = (incompat & INCOMPAT.bit64) !== 0
    this.descSize = this.wide ? sb.readUInt16LE(SB.descSize) : 32
    this.firstDataBlock = sb.readUInt32LE(SB.firstDataBlock)
    this.inodesCount = sb.readUInt32LE(SB.inodesCount)
    this.inodesPerGroup = sb.readUInt32LE(SB.inodesPerGroup)
    this.inodeSize = sb.readUInt32LE(SB.revLevel) === 0 ? GOOD_OLD_INODE_SIZE : sb.readUInt16LE(SB.inodeSize)
    this.inodeTableBlocks = Math.ceil((this.inodesPerGroup * this.inodeSize) / blockSize)
    this.metadataCsum = (sb.readUInt32LE(SB.featureRoCompat) & RO_COMPAT_METADATA_CSUM) !== 0
    this.csumSeed = (incompat & INCOMPAT.csumSeed) === 0 ? crc32c(0xFF_FF_FF_FF, sb, SB.uuid, SB.uuid + 16) : sb.readUInt32LE(SB.checksumSeed)
    this.tables = new ImageWindows(fd, TABLE_WINDOW, 4)
  }

  /**
   * A reader for `image`, or a reason why its inodes are left to debugfs (a filesystem feature or a
   * geometry this reader does not handle: each would be refused or misread, never guessed at).
   */
  static open(image: string): InodeReader | string {
    const fd = openSync(image, 'r')
    const sb = Buffer.alloc(1024)
    const read = readSync(fd, sb, 0, sb.length, 1024)
    const why = read < sb.length ? 'a truncated superblock' : unsupported(sb)
    const blockSize = 1024 * 2 ** sb.readUInt32LE(SB.logBlockSize)
    const inodeSize = sb.readUInt32LE(SB.revLevel) === 0 ? GOOD_OLD_INODE_SIZE : sb.readUInt16LE(SB.inodeSize)
    const descSize = (sb.readUInt32LE(SB.featureIncompat) & INCOMPAT.bit64) === 0 ? 32 : sb.readUInt16LE(SB.descSize)
    const badShape = inodeSize < GOOD_OLD_INODE_SIZE || inodeSize > blockSize || !powerOfTwo(inodeSize) || descSize < 32 || descSize > 1024 || !powerOfTwo(descSize)
    if (why !== undefined || badShape) {
      closeSync(fd)
      return why ?? `an inode size of ${inodeSize} or descriptor size of ${descSize} bytes`
    }

    const high = (sb.readUInt32LE(SB.featureIncompat) & INCOMPAT.bit64) === 0 ? 0 : sb.readUInt32LE(SB.blocksCountHi)
    return new InodeReader(fd, sb, blockSize, high * 2 ** 32 + sb.readUInt32LE(SB.blocksCountLo))
  }

  close(): void {
    closeSync(this.fd)
  }

  /**
   * Inode `ino` as debugfs `stat` would describe it, or undefined when debugfs must be asked. `content:
   * false` leaves out the block map of a regular file or a directory (a DiskProbe's inode needs none): a file
   * is then described even when its map is one this reader does not model.
   */
  stat(ino: number, content = true): InodeStat | undefined {
    const raw = this.inode(ino)
    if (!raw) return undefined
    const flags = raw.readUInt32LE(I.flags)
    if ((flags & (INODE_FLAGS.inlineData | INODE_FLAGS.encrypted)) !== 0) return undefined
    const large = this.inodeSize > GOOD_OLD_INODE_SIZE
    const extraIsize = large ? raw.readUInt16LE(I.extraIsize) : 0
    if (!this.noXattrs(raw, extraIsize)) return undefined
    const xattrBlock = raw.readUInt16LE(I.fileAclHi) * 2 ** 32 + raw.readUInt32LE(I.fileAclLo)
    if (xattrBlock !== 0) return undefined
    const modeBits = raw.readUInt16LE(I.mode)
    const type = TYPES[modeBits & 0xF0_00] ?? 'bad'
    const wideSize = type === 'file' || type === 'directory'
    const sizeHigh = raw.readUInt32LE(I.sizeHigh)
    // debugfs prints the 64-bit size only for these two types, and larger than 2^53 is refused there.
    if (wideSize && sizeHigh >= 2 ** 21) return undefined
    const size = (wideSize ? sizeHigh * 2 ** 32 : 0) + raw.readUInt32LE(I.sizeLo)
    // debugfs reads the extra time bits only when the inode's extra area reaches i_crtime_extra.
    const mtimeExtra = large && extraIsize >= 24 ? raw.readUInt32LE(I.mtimeExtra) : 0
    const ctimeExtra = large && extraIsize >= 24 ? raw.readUInt32LE(I.ctimeExtra) : 0
    const stat: InodeStat = {
      blockCount: raw.readUInt16LE(I.blocksHi) * 2 ** 32 + raw.readUInt32LE(I.blocksLo),
      ctime: {nsec: Math.min(ctimeExtra >>> 2, 999_999_999), sec: raw.readInt32LE(I.ctime) + (ctimeExtra & 3) * 2 ** 32},
      flags,
      generation: raw.readUInt32LE(I.generation),
      gid: (raw.readUInt16LE(I.gidHigh) * 65_536) + raw.readUInt16LE(I.gid),
      inode: ino,
      links: raw.readUInt16LE(I.links),
      mode: modeBits & 0o7777,
      mtime: {nsec: Math.min(mtimeExtra >>> 2, 999_999_999), sec: raw.readInt32LE(I.mtime) + (mtimeExtra & 3) * 2 ** 32},
      size,
      type,
      uid: (raw.readUInt16LE(I.uidHigh) * 65_536) + raw.readUInt16LE(I.uid),
      xattrBlock,
      xattrs: [],
    }
    // (uid_t)-1 is refused by the debugfs path (statId): let it say so.
    if (stat.uid === 0xFF_FF_FF_FF || stat.gid === 0xFF_FF_FF_FF) return undefined
    return this.typeDetails(stat, raw, content) ? stat : undefined
  }

  /**
   * Content runs from an extent tree that fits in the inode, or from direct block pointers; undefined
   * for deeper trees, indirect blocks and anything malformed, which debugfs reports (or refuses) itself.
   */
  private blockMap(raw: Buffer, flags: number): BlockMap | undefined {
    const map: BlockMap = {listed: 0, runs: []}
    if ((flags & EXTENTS_FL) === 0) {
      for (let i = 12; i < 15; i++) if (raw.readUInt32LE(I.block + 4 * i) !== 0) return undefined
      for (let i = 0; i < 12; i++) {
        const physical = raw.readUInt32LE(I.block + 4 * i)
        if (physical === 0) continue
        map.listed++
        map.runs.push({
          length: 1, logical: i, physical, unwritten: false,
        })
      }

      return map
    }

    let empty = true
    for (let i = 0; i < 60; i += 4) if (raw.readUInt32LE(I.block + i) !== 0) empty = false
    if (empty) return map
    const entries = raw.readUInt16LE(I.block + 2)
    const max = raw.readUInt16LE(I.block + 4)
    // libext2fs's header check for the inode root (room for 4 entries, 2 may be spared), depth 0 only.
    if (raw.readUInt16LE(I.block) !== EXTENT_MAGIC || entries > max || max > 4 || max < 2 || raw.readUInt16LE(I.block + 6) !== 0) return undefined
    for (let i = 0; i < entries; i++) {
      const at = I.block + 12 + 12 * i
      const rawLength = raw.readUInt16LE(at + 4)
      const unwritten = rawLength > EXT_INIT_MAX_LEN
      const length = unwritten ? rawLength - EXT_INIT_MAX_LEN : rawLength
      if (length === 0) continue
      map.listed += length
      map.runs.push({
        length, logical: raw.readUInt32LE(at), physical: raw.readUInt16LE(at + 6) * 2 ** 32 + raw.readUInt32LE(at + 8), unwritten,
      })
    }

    return map
  }

  private checksumOk(ino: number, raw: Buffer): boolean {
    if (!this.metadataCsum) return true
    const hasHi = this.inodeSize > GOOD_OLD_INODE_SIZE && raw.readUInt16LE(I.extraIsize) >= 4
    const le = this.prefix
    le.writeUInt32LE(ino, 0)
    le.writeUInt32LE(raw.readUInt32LE(I.generation), 4)
    // The checksum fields count as zeros: the inode is hashed around them, not copied to zero them.
    let calculated = crc32c(crc32c(this.csumSeed, le), raw, 0, I.checksumLo)
    calculated = crc32c(calculated, ZERO_16, 0, 2)
    if (hasHi) {
      calculated = crc32c(calculated, raw, I.checksumLo + 2, I.checksumHi)
      calculated = crc32c(calculated, ZERO_16, 0, 2)
      calculated = crc32c(calculated, raw, I.checksumHi + 2, this.inodeSize)
    } else {
      calculated = crc32c(calculated, raw, I.checksumLo + 2, this.inodeSize)
    }

    const provided = raw.readUInt16LE(I.checksumLo) + (hasHi ? raw.readUInt16LE(I.checksumHi) * 65_536 : 0)
    if (provided === (hasHi ? calculated : calculated & 0xFF_FF)) return true
    // libext2fs passes an inode whose first 128 bytes are all zero; debugfs decides what that means.
    return false
  }

  /** The inode's bytes (valid until the next call), or undefined where libext2fs would fail to read it. */
  private inode(ino: number): Buffer | undefined {
    if (!Number.isSafeInteger(ino) || ino < 1 || ino > this.inodesCount) return undefined
    const group = Math.floor((ino - 1) / this.inodesPerGroup)
    const table = this.inodeTable(group)
    if (table === undefined || table === 0 || table < this.firstDataBlock || table + this.inodeTableBlocks - 1 >= this.blocksCount) return undefined
    const offset = table * this.blockSize + ((ino - 1) % this.inodesPerGroup) * this.inodeSize
    // The previous inode's bytes are no longer needed: `stat` copies what it keeps.
    this.tables.release()
    const raw = this.tables.read(offset, this.inodeSize)
    if (raw.length < this.inodeSize) return undefined
    return this.checksumOk(ino, raw) ? raw : undefined
  }

  /** The group's inode-table block from its descriptor; undefined when the descriptor lies outside the image. */
  private inodeTable(group: number): number | undefined {
    const known = this.groupTables.get(group)
    if (known !== undefined) return known
    const desc = Buffer.alloc(this.descSize)
    const offset = (this.firstDataBlock + 1) * this.blockSize + group * this.descSize
    if (readSync(this.fd, desc, 0, desc.length, offset) !== desc.length) return undefined
    const high = this.wide && this.descSize >= 64 ? desc.readUInt32LE(GD_INODE_TABLE_HI) : 0
    const table = high * 2 ** 32 + desc.readUInt32LE(GD_INODE_TABLE_LO)
    this.groupTables.set(group, table)
    return table
  }

  /**
   * Whether the inode has no in-inode extended attributes, as libext2fs reads them (an area that is
   * malformed or holds any attribute is left to debugfs, which prints what it can read).
   */
  private noXattrs(raw: Buffer, extraIsize: number): boolean {
    if (extraIsize < 2 || this.inodeSize <= GOOD_OLD_INODE_SIZE + extraIsize + 4) return true
    if ((extraIsize & 3) !== 0) return false
    const at = GOOD_OLD_INODE_SIZE + extraIsize
    if (raw.readUInt32LE(at) !== XATTR_MAGIC) return true
    const storage = this.inodeSize - at - 4
    return storage < 16 || raw.readUInt32LE(at + 4) === 0
  }

  /** Adds what `stat` prints for the inode's type; false when debugfs must be asked instead. */
  private typeDetails(stat: InodeStat, raw: Buffer, content: boolean): boolean {
    const {size, type} = stat
    switch (type) {
    case 'block':
    case 'char': {
      const b0 = raw.readUInt32LE(I.block)
      const b1 = raw.readUInt32LE(I.block + 4)
      // The old (8:8) and new (12:20) encodings, as the kernel's old_decode_dev/new_decode_dev.
      stat.devMajor = b0 === 0 ? (b1 & 0xF_FF_00) >>> 8 : (b0 >>> 8) & 0xFF
      stat.devMinor = b0 === 0 ? (b1 & 0xFF) | ((b1 >>> 12) & 0xF_FF_00) : b0 & 0xFF
      break
    }

    case 'directory': {
      // Only a DiskProbe's listing reads directories' blocks; a map this reader cannot give leaves them to debugfs.
      if (content) stat.blockMap = this.blockMap(raw, stat.flags)
      break
    }

    case 'file': {
      if (!content) break
      const map = this.blockMap(raw, stat.flags)
      if (!map) return false
      stat.blockMap = map
      break
    }

    case 'symlink': {
      if (size > 0 && size < 60) {
        const target = Buffer.from(raw.subarray(I.block, I.block + size))
        // debugfs prints the target as a C string: one holding NUL is reported as what it is there.
        if (target.includes(0)) return false
        stat.fastLink = target
      }

      break
    }

    default:
    }

    return true
  }
}
