import type {DiskProbe, ProbedInode} from './extractor.js'
import type {InodeReader} from './inode-reader.js'

import {type BlockReader, ownedBlocks} from './block-reader.js'

/** The smallest directory record: inode, rec_len, name_len, file_type. */
const DIRENT_HEAD = 8

/**
 * One directory block's live records (inode 0 marks free space, htree index blocks and the checksum
 * tail), appended to `out`; false where a record is malformed, which only debugfs may judge.
 */
export function parseDirBlock(block: Buffer, out: {inode: number; name: Buffer}[]): boolean {
  let at = 0
  while (at < block.length) {
    if (at + DIRENT_HEAD > block.length) return false
    const inode = block.readUInt32LE(at)
    const length = block.readUInt16LE(at + 4)
    const nameLength = block[at + 6]
    if (length < DIRENT_HEAD || length % 4 !== 0 || at + length > block.length || DIRENT_HEAD + nameLength > length) return false
    if (inode !== 0) {
      const name = block.subarray(at + DIRENT_HEAD, at + DIRENT_HEAD + nameLength)
      const dots = name.length <= 2 && name.every(byte => byte === 0x2E)
      if (name.length === 0 || name.includes(0) || name.includes(0x2F)) return false
      if (!dots) out.push({inode, name: Buffer.from(name)})
    }

    at += length
  }

  return true
}

/**
 * A DiskProbe over the direct readers the walk uses: it answers only where those readers model the disk
 * exactly (InodeReader's rules, plus no extended attributes and no slow symlinks), so that what it says
 * is what the walk would have said.
 */
export function diskProbe(inodes: InodeReader, blocks: BlockReader): DiskProbe {
  return {
    inode(ino: number): ProbedInode | undefined {
      const stat = inodes.stat(ino, false)
      if (!stat || stat.type === 'bad' || stat.type === 'socket' || stat.xattrs.length > 0) return undefined
      const probed: ProbedInode = {
        ctime: stat.ctime,
        generation: stat.generation,
        gid: stat.gid,
        links: stat.links,
        mode: stat.mode,
        mtime: stat.mtime,
        size: stat.type === 'file' ? stat.size : 0,
        type: stat.type,
        uid: stat.uid,
      }
      if (stat.type === 'symlink') {
        if (stat.fastLink === undefined || stat.fastLink.length === 0) return undefined
        probed.linkTarget = stat.fastLink
      }

      if (stat.type === 'block' || stat.type === 'char') {
        probed.devMajor = stat.devMajor ?? 0
        probed.devMinor = stat.devMinor ?? 0
      }

      return probed
    },

    listing(ino: number): undefined | {inode: number; name: Buffer}[] {
      const stat = inodes.stat(ino)
      const map = stat?.blockMap
      const bs = blocks.blockSize
      // Every block the inode owns must be mapped (no xattr block: `stat` gave none), the size whole blocks.
      if (stat?.type !== 'directory' || !map || stat.size % bs !== 0 || ownedBlocks(stat, bs) !== map.listed) return undefined
      if (map.runs.some(run => run.unwritten)) return undefined
      const out: {inode: number; name: Buffer}[] = []
      let bytes: Buffer
      try {
        bytes = blocks.contiguous(map.runs, stat.size, `directory inode ${ino}`)
      } catch {
        // A map that points outside the image: the walk's debugfs listing reports it.
        return undefined
      }

      for (let at = 0; at < bytes.length; at += bs) if (!parseDirBlock(bytes.subarray(at, at + bs), out)) return undefined
      return out
    },
  }
}
