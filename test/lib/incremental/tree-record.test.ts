import {expect} from 'chai'
import {readFileSync, writeFileSync} from 'node:fs'
import path from 'node:path'
import {gzipSync} from 'node:zlib'

import {openTreeRecord, type RecordRange, RecordSkips} from '../../../src/lib/incremental/tree-record-reader.js'
import {
  compareTreePaths, type TreeNode, TreeRecordError, TreeRecordWriter,
} from '../../../src/lib/incremental/tree-record.js'
import {rejection} from '../../helpers/assert.js'
import {tempDir} from '../../helpers/ext4.js'

const node = (p: Buffer | string, extra: Partial<TreeNode> = {}): TreeNode => ({
  gid: 0, mode: 0o644, mtime: {nsec: 1, sec: -5}, path: Buffer.from(p), size: 0, type: 'directory', uid: 0, xattrs: [], ...extra,
})

async function write(nodes: TreeNode[]): Promise<string> {
  const file = path.join(tempDir(), 'tree.bin')
  const writer = new TreeRecordWriter(file, 'uuid-1')
  for (const n of nodes) await writer.add(n)
  await writer.finish(['sha256:aa'])
  return file
}

async function readAll(file: string): Promise<TreeNode[]> {
  const record = await openTreeRecord(file)
  const nodes: TreeNode[] = []
  for await (const n of record.nodes()) nodes.push(n)
  return nodes
}

const SHA = 'ab'.repeat(32)

const id = (inode: number, sec: number): TreeNode['identity'] => ({ctime: {nsec: 0, sec}, generation: 1, inode})

describe('tree-record', () => {
  it('orders paths as layers do: a directory, its subtree, then siblings sorting after its name', () => {
    const paths = ['a-c', 'a/b', 'a', 'a/b/c', 'b', 'a.b'].map(p => Buffer.from(p)).sort(compareTreePaths).map(String)
    expect(paths).to.deep.equal(['a', 'a/b', 'a/b/c', 'a-c', 'a.b', 'b'])
  })

  it('writes and reads back every field, raw names, groups and identities', async () => {
    const name = Buffer.from([0x64, 0xE9, 0x0A])
    const nodes = [
      node('d', {xattrs: [['user.x', Buffer.from([0, 255])]]}),
      node(Buffer.concat([Buffer.from('d/'), name]), {
        group: 'i7', identity: {ctime: {nsec: 9, sec: 10}, generation: 3, inode: 7}, sha256: SHA, size: 4, type: 'file',
      }),
      node('d/l', {
        group: 'i7', sha256: SHA, size: 4, type: 'file',
      }),
      node('d/s', {linkTarget: Buffer.from('/x'), type: 'symlink'}),
      node('d/t', {devMajor: 1, devMinor: 3, type: 'char'}),
      node('d/u', {group: 'i9', sha256: SHA, type: 'file'}),
    ]
    const file = await write(nodes)
    const record = await openTreeRecord(file)
    expect(record).to.include({entries: 6, fsUuid: 'uuid-1', newestCtime: 10})
    expect(record.diffIds).to.deep.equal(['sha256:aa'])
    expect([...record.groups.values()].map(names => names.map(n => n.toString('latin1')))).to.deep.equal([[`d/${name.toString('latin1')}`, 'd/l']])
    const back = await readAll(file)
    const key = [...record.groups.keys()][0]
    // Group keys are the record's own; a name alone in its group has none.
    expect(back).to.deep.equal(nodes.map(n => {
      const copy = {...n}
      if (n.group === 'i7') copy.group = key
      else delete copy.group
      return copy
    }))
  })

  it('refuses a record that is truncated, edited, or not one at all', async () => {
    const file = await write([node('a'), node('b', {sha256: SHA, type: 'file'})])
    const bytes = readFileSync(file)
    const edited = Buffer.from(bytes)
    // The mode of "a" (0o644, LEB128 a4 03) becomes 0o645: a valid record but for its sha256.
    const mode = edited.indexOf(Buffer.from([0xA4, 0x03]))
    expect(mode).to.be.greaterThan(0)
    edited[mode] = 0xA5
    const cases: [string, Buffer][] = [
      ['no sha256 at the end', bytes.subarray(0, -32)],
      ['cut in a block', bytes.subarray(0, 20)],
      ['edited', edited],
      ['empty', Buffer.alloc(0)],
      ['the earlier format (gzipped NDJSON)', gzipSync('{"format":"microagent-tree","fs":null,"version":1}\n')],
      ['a block past the end', Buffer.concat([bytes.subarray(0, 8), Buffer.from([0x7F]), bytes.subarray(9)])],
    ]
    for (const [what, damaged] of cases) {
      writeFileSync(file, damaged)
      expect(await rejection(readAll(file)), what).to.be.instanceOf(TreeRecordError)
    }
  })

  it('refuses a record whose paths no layer may hold, with its sha256 right (written by hand, not by us)', async () => {
    for (const bad of ['a/..', '..', 'a//b', 'a/./b', 'a\u0000b']) {
      const file = await write([node(bad)])
      const error = await rejection(readAll(file))
      expect(error, bad).to.be.instanceOf(TreeRecordError)
      expect((error as Error).message, bad).to.match(/unsafe path/)
    }

    expect(await readAll(await write([node('.wh.x'), node('a'), node('a/...')])), 'odd but safe names').to.have.length(3)
  })

  it('keeps when the disk was read, and reads a record without it as one that does not say', async () => {
    const file = path.join(tempDir(), 'tree.bin')
    const writer = new TreeRecordWriter(file, 'uuid-1', new Date('2026-01-02T03:04:05.600Z'))
    await writer.add(node('a'))
    await writer.finish([])
    expect(await openTreeRecord(file)).to.include({readAt: Date.UTC(2026, 0, 2, 3, 4, 5) / 1000})
    expect(await openTreeRecord(await write([node('a')]))).to.not.have.property('readAt')
  })

  it('reads back names that share long prefixes, and large numbers', async () => {
    const deep = ['x', 'x/yy', 'x/yy/zzz', 'x/yy/zzz/a', 'x/yy/zzz/b', 'x/yy/zzzz', 'x/yyy', 'xa']
    const nodes = deep.map((p, i) => node(p, {
      gid: 2 ** 32 - 1, identity: {ctime: {nsec: 999_999_999, sec: -(2 ** 33) + i}, generation: 2 ** 32 - 1, inode: 2 ** 32 - 2}, mtime: {nsec: i, sec: 2 ** 40}, uid: 65_534,
    }))
    expect(await readAll(await write(nodes))).to.deep.equal(nodes)
  })

  it('leaves out a record whose nodes came out of order', async () => {
    const file = path.join(tempDir(), 'tree.bin')
    const writer = new TreeRecordWriter(file, undefined)
    await writer.add(node('b'))
    await writer.add(node('a'))
    expect(writer.invalid).to.equal(true)
    await writer.abort()
  })

  describe('ranges of a record (a subtree copied as it is into the next record)', () => {
    const tree = [
      node('a', {identity: id(2, 5)}),
      node('a/b', {identity: id(3, 5)}),
      node('a/b/c', {
        identity: id(4, 40), sha256: SHA, size: 1, type: 'file',
      }),
      node('a/b/d', {identity: id(5, 7)}),
      node('a/e', {linkTarget: Buffer.from('x'), type: 'symlink'}),
      node('z', {identity: id(6, 5)}),
    ]

    /** The range holding `a`'s subtree, from the record's placed nodes. */
    async function rangeOfA(file: string): Promise<RecordRange> {
      const placed: {at: number; node: TreeNode}[] = []
      let end = 0
      for await (const batch of (await openTreeRecord(file)).placed()) {
        for (const [i, n] of batch.nodes.entries()) placed.push({at: batch.offsets[i], node: n})
        end = batch.end
      }

      expect(placed.every(p => p.node.sha256 === undefined), 'placed() leaves hashes out').to.equal(true)
      const z = placed.findIndex(p => p.node.path.toString() === 'z')
      expect(end).to.be.greaterThan(placed[z].at)
      return {
        count: 4, dir: Buffer.from('a'), end: placed[z].at, first: Buffer.from('a/b'), last: Buffer.from('a/e'), newestCtime: 40, start: placed[1].at,
      }
    }

    it('skips a range while streaming (counted and hashed, not decoded), and copies it into another record', async () => {
      const file = await write(tree)
      const range = await rangeOfA(file)
      const skips = new RecordSkips(file)
      skips.ranges.set(range.start, range)
      const streamed: string[] = []
      for await (const batch of (await openTreeRecord(file)).batches(skips)) for (const n of batch) streamed.push(n.path.toString())
      expect(streamed).to.deep.equal(['a', 'z'])

      const copy = path.join(tempDir(), 'copy.bin')
      const writer = new TreeRecordWriter(copy, 'uuid-1')
      await writer.add(tree[0])
      await writer.addRange(range, file)
      await writer.add(tree[5])
      await writer.finish(['sha256:aa'])
      expect(writer.invalid).to.equal(false)
      expect(await readAll(copy)).to.deep.equal(await readAll(file))
      expect(await openTreeRecord(copy)).to.include({entries: 6, newestCtime: 40})
    })

    it('refuses a range that does not end on a block, and one that is not right after its directory', async () => {
      const file = await write(tree)
      const range = await rangeOfA(file)
      const skips = new RecordSkips(file)
      skips.ranges.set(range.start, {...range, end: range.end - 1})
      const stream = async (): Promise<void> => {
        for await (const batch of (await openTreeRecord(file)).batches(skips)) expect(batch).to.be.an('array')
      }

      expect(await rejection(stream())).to.be.instanceOf(TreeRecordError)
      const writer = new TreeRecordWriter(path.join(tempDir(), 'bad.bin'), 'uuid-1')
      await writer.add(tree[5])
      await writer.addRange(range, file)
      expect(writer.invalid).to.equal(true)
      await writer.abort()
    })
  })
})
