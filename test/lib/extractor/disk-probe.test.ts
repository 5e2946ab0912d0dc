import {expect} from 'chai'
import {execFileSync} from 'node:child_process'
import {mkdirSync, writeFileSync} from 'node:fs'
import path from 'node:path'

import type {DiskProbe, Entry, ProbedListing} from '../../../src/lib/extractor/extractor.js'

import {BlockReader} from '../../../src/lib/extractor/block-reader.js'
import {parseDirListing} from '../../../src/lib/extractor/debugfs-parse.js'
import {DebugfsExtractor} from '../../../src/lib/extractor/debugfs.js'
import {DirNames, diskProbe} from '../../../src/lib/extractor/disk-probe.js'
import {InodeReader} from '../../../src/lib/extractor/inode-reader.js'
import {buildExt4, tempDir} from '../../helpers/ext4.js'
import {buildFidelityImage} from '../../helpers/fidelity.js'
import {requireTools} from '../../helpers/tools.js'

function record(inode: number, name: string, length: number): Buffer {
  const out = Buffer.alloc(length)
  out.writeUInt32LE(inode, 0)
  out.writeUInt16LE(length, 4)
  out[6] = name.length
  out[7] = 1
  out.write(name, 8, 'latin1')
  return out
}

/** debugfs's own listing of a directory, `.`, `..` and htree index records (inode 0) left out, in name order. */
function debugfsListing(disk: string, ino: number): {inode: number; name: string}[] {
  const reply = execFileSync('debugfs', ['-R', `ls -p <${ino}>`, disk], {stdio: ['ignore', 'pipe', 'ignore']})
  return parseDirListing(reply)
  .filter(r => r.inode !== 0 && r.name.toString('latin1') !== '.' && r.name.toString('latin1') !== '..')
  .map(r => ({inode: r.inode, name: r.name.toString('latin1')}))
  .sort((a, b) => Buffer.compare(Buffer.from(a.name, 'latin1'), Buffer.from(b.name, 'latin1')))
}

async function withProbe<T>(disk: string, use: (probe: DiskProbe) => T): Promise<T> {
  const inodes = InodeReader.open(disk)
  if (typeof inodes === 'string') throw new Error(inodes)
  const blocks = await BlockReader.open(disk)
  try {
    return use(diskProbe(inodes, blocks))
  } finally {
    inodes.close()
    blocks.close()
  }
}

async function walk(disk: string): Promise<Entry[]> {
  const entries: Entry[] = []
  for await (const entry of new DebugfsExtractor().entries(disk)) entries.push(entry)
  return entries
}

const goodBlock = (): Buffer => Buffer.concat([record(2, '.', 12), record(3, 'a', 4096 - 12)])

describe('diskProbe', () => {
  before(function () {
    requireTools(this, 'debugfs', 'mke2fs', 'e2fsck')
  })

  it('parses directory blocks: live names only, in name order, free records, `.`, `..` and the checksum tail left out', () => {
    const block = Buffer.concat([
      record(2, '.', 12), record(2, '..', 12), record(0, 'gone', 16), record(15, 'last', 16), record(14, 'kept', 4096 - 68), record(0, '', 12),
    ])
    const names = DirNames.parse(Buffer.concat([block, Buffer.concat([record(16, 'a', 12), record(17, 'zz', 4096 - 12)])]), 4096)!
    expect(namesOf(names).map(e => [e.inode, e.name])).to.deep.equal([[16, 'a'], [14, 'kept'], [15, 'last'], [17, 'zz']])
    expect(names.is(1, 14, Buffer.from('dir/kept'), 4)).to.equal(true)
    expect(names.is(1, 14, Buffer.from('dir/kepT'), 4)).to.equal(false)
    expect(names.is(1, 99, Buffer.from('dir/kept'), 4)).to.equal(false)
    expect(names.is(1, 14, Buffer.from('dir/kept2'), 4)).to.equal(false)
    expect(names.is(4, 14, Buffer.from('dir/kept'), 4)).to.equal(false)
  })

  it('refuses a malformed directory block instead of guessing', () => {
    const cases: [string, (b: Buffer) => void][] = [
      ['a record length of zero (a hole reads as zeros)', b => b.fill(0)],
      ['a record length past the block', b => b.writeUInt16LE(8192, 16)],
      ['a record length not a multiple of 4', b => b.writeUInt16LE(4094 - 12, 16)],
      ['a name longer than its record', b => b.writeUInt16LE(8, 16)],
      ['a name holding a slash', b => b.write('/', 20)],
      ['a name holding NUL', b => {
        b[18] = 2
        b[21] = 0
      }],
    ]
    for (const [what, damage] of cases) {
      const block = goodBlock()
      damage(block)
      expect(DirNames.parse(block, 4096), what).to.equal(undefined)
    }
  })

  it('lists every directory as debugfs does, htree directories included, and describes inodes as the walk does', async () => {
    const disk = path.join(tempDir(), 'probe.ext4')
    buildExt4(disk, {
      sizeMiB: 64,
      tree(root) {
        mkdirSync(path.join(root, 'big'))
        // Enough names for an htree index (several leaf blocks), some deleted below.
        for (let i = 0; i < 3000; i++) writeFileSync(path.join(root, 'big', `name-${i}-${'x'.repeat(i % 40)}`), '')
        mkdirSync(path.join(root, 'a/b/c'), {recursive: true})
        writeFileSync(path.join(root, 'a/b/c/file'), 'content\n')
      },
    })
    // e2fsck -D indexes the large directory (mke2fs -d writes it linear): the probe must read past the index.
    execFileSync('e2fsck', ['-fyD', disk], {stdio: 'ignore'})
    const flags = /Flags: 0x([\da-f]+)/.exec(execFileSync('debugfs', ['-R', 'stat /big', disk], {encoding: 'latin1', stdio: ['ignore', 'pipe', 'ignore']}))
    // EXT4_INDEX_FL
    expect(Number.parseInt(flags![1], 16) & 0x10_00).to.equal(0x10_00)
    execFileSync('debugfs', ['-w', '-R', 'unlink /big/name-7-xxxxxxx', disk], {stdio: 'ignore'})
    const walked = await walk(disk)
    const dirs = [2, ...walked.filter(e => e.type === 'directory').map(e => e.inode)]
    await withProbe(disk, probe => {
      for (const ino of dirs) {
        const listed = probe.listing(ino)
        expect(listed && namesOf(listed), `directory inode ${ino}`).to.deep.equal(debugfsListing(disk, ino))
      }

      expect(probe.listing(dirs.find(ino => walked.find(e => e.inode === ino)?.path.toString() === 'big')!)?.count).to.equal(2999)
      for (const entry of walked) expect(probe.inode(entry.inode), entry.path.toString()).to.deep.equal(described(entry))
    })
  })

  it('gives no inode where the walk reads more than the inode (xattrs, slow symlinks)', async () => {
    const {file} = buildFidelityImage()
    const entries = await walk(file)
    await withProbe(file, probe => {
      let answered = 0
      for (const entry of entries) {
        const probed = probe.inode(entry.inode)
        const inlineTarget = entry.type === 'symlink' && entry.linkTarget!.length < 60
        if (entry.xattrs.length > 0 || (entry.type === 'symlink' && !inlineTarget)) {
          expect(probed, entry.path.toString('latin1')).to.equal(undefined)
          continue
        }

        // Hard links, devices, fifos, old and future times: described exactly, or not at all.
        if (probed) {
          answered++
          expect(probed, entry.path.toString('latin1')).to.deep.equal(described(entry))
        }
      }

      expect(answered).to.be.greaterThan(entries.length / 2)
      // Every directory the walk met is listed in place or left to debugfs; none is listed wrongly.
      for (const dir of entries.filter(e => e.type === 'directory')) {
        const listed = probe.listing(dir.inode)
        if (listed) expect(namesOf(listed), dir.path.toString('latin1')).to.deep.equal(debugfsListing(file, dir.inode))
      }
    })
  })
})

/** A probed listing's entries, names as latin1. */
function namesOf(listing: DirNames | ProbedListing): {inode: number; name: string}[] {
  return Array.from({length: listing.count}, (_, i) => {
    const {inode, name} = (listing as DirNames).entry(i)
    return {inode, name: name.toString('latin1')}
  })
}

/** What a probe must say of the entry's inode. */
function described(entry: Entry): Record<string, unknown> {
  const expected: Record<string, unknown> = {
    ctime: entry.ctime, generation: entry.generation, gid: entry.gid, inode: entry.inode, links: entry.links, mode: entry.mode, mtime: entry.mtime, size: entry.size, type: entry.type, uid: entry.uid,
  }
  if (entry.type === 'symlink') expected.linkTarget = entry.linkTarget
  if (entry.type === 'block' || entry.type === 'char') {
    expected.devMajor = entry.devMajor
    expected.devMinor = entry.devMinor
  }

  return expected
}
