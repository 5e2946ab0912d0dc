import {expect} from 'chai'
import {createHash} from 'node:crypto'

import type {Entry} from '../../../src/lib/extractor/extractor.js'
import type {TreeNode} from '../../../src/lib/incremental/tree-record.js'

import {changeset, type ChangesetOptions, type ParentTree} from '../../../src/lib/incremental/changeset.js'
import {nodeFromEntry} from '../../../src/lib/incremental/tree-record.js'
import {isWhiteout, type LayerItem} from '../../../src/lib/layer/names.js'
import {rejection} from '../../helpers/assert.js'

const sha = (data: string): string => createHash('sha256').update(data).digest('hex')
const TIME = {nsec: 5, sec: 1_700_000_000}

interface Spec {
  ctime?: number
  data?: string
  inode?: number
  links?: number
  mode?: number
}

let nextInode = 100
function entry(path: string, type: Entry['type'], spec: Spec = {}): Entry {
  const data = spec.data ?? ''
  return {
    ...(type === 'file' ? {content: () => [Buffer.from(data)], size: data.length} : {size: 0}),
    ...(spec.ctime === undefined ? {} : {ctime: {nsec: 0, sec: spec.ctime}, generation: 1}),
    ...(type === 'symlink' ? {linkTarget: Buffer.from('t')} : {}),
    gid: 0,
    inode: spec.inode ?? nextInode++,
    links: spec.links ?? 1,
    mode: spec.mode ?? (type === 'directory' ? 0o755 : 0o644),
    mtime: TIME,
    path: Buffer.from(path),
    type,
    uid: 0,
    xattrs: [],
  }
}

/** The parent's tree as a record would give it: the node of each entry, groups by the entries' inodes. */
function parentOf(entries: Entry[], fsUuid?: string): ParentTree {
  const nodes: TreeNode[] = entries.map(e => nodeFromEntry(e, e.type === 'file' ? sha(Buffer.concat([...(e.content!() as Buffer[])]).toString()) : undefined))
  const groups = new Map<string, Buffer[]>()
  for (const node of nodes) {
    if (node.group === undefined) continue
    groups.set(node.group, [...(groups.get(node.group) ?? []), node.path])
  }

  for (const node of nodes) if (node.group !== undefined && groups.get(node.group)!.length < 2) delete node.group
  return {
    fsUuid, groups, nodes: (async function * () {
      yield nodes
    })(),
  }
}

async function diff(disk: Entry[], parent: ParentTree, options: ChangesetOptions = {}): Promise<{items: string[]; tree: string[]}> {
  const tree: string[] = []
  const items: string[] = []
  const source = (async function * () {
    yield * disk
  })()
  for await (const item of changeset(source, parent, {
    ...options, onNode(node) {
      tree.push(node.path.toString())
    },
  })) items.push(label(item))
  return {items, tree}
}

function label(item: LayerItem): string {
  if (isWhiteout(item)) return `${item.opaque ? 'opaque' : 'whiteout'} ${item.path.toString()}`
  return `${item.type} ${item.path.toString()} #${item.inode}`
}

const RUNTIME = new Set(['etc/hostname', 'etc/new-runtime', 'etc/resolv.conf'])
const ignore = (path: Buffer): boolean => RUNTIME.has(path.toString())

describe('changeset', () => {
  it('yields nothing for an unchanged tree, and the whole tree for its record', async () => {
    const disk = [entry('a', 'directory'), entry('a/f', 'file', {data: 'x'}), entry('a/l', 'symlink'), entry('b', 'fifo')]
    const {items, tree} = await diff(disk, parentOf(disk))
    expect(items).to.deep.equal([])
    expect(tree).to.deep.equal(['a', 'a/f', 'a/l', 'b'])
  })

  it('re-emits metadata-only changes and changed content, and whites out deletions after their siblings', async () => {
    const parent = [entry('a', 'directory'), entry('a/f', 'file', {data: 'x'}), entry('a/g', 'file', {data: 'y'}), entry('a/h', 'file'), entry('b', 'file', {data: 'z'})]
    const disk = [{...parent[0], mode: 0o700}, {...parent[1], content: () => [Buffer.from('X')]}, parent[2], parent[4]]
    const {items} = await diff(disk, parentOf(parent))
    expect(items).to.deep.equal([`directory a #${parent[0].inode}`, `file a/f #${parent[1].inode}`, 'whiteout a/h'])
  })

  it('uses an opaque whiteout when nothing of a directory stays from below, explicit whiteouts otherwise', async () => {
    const parent = [entry('d', 'directory'), entry('d/x', 'file', {data: '1'}), entry('d/y', 'directory'), entry('d/y/z', 'file'), entry('e', 'directory'), entry('e/x', 'file'), entry('e/y', 'file')]
    const disk = [parent[0], entry('d/new', 'file', {data: 'n'}), parent[4], parent[5]]
    const {items} = await diff(disk, parentOf(parent))
    expect(items).to.deep.equal([items[0], 'opaque d', 'whiteout e/y'])
    expect(items[0]).to.match(/^file d\/new /)
  })

  it('replaces a directory by a file without whiting out what was in it, and the reverse', async () => {
    const parent = [entry('d', 'directory'), entry('d/x', 'file'), entry('f', 'file', {data: 'f'})]
    const file = entry('d', 'file', {data: 'now a file'})
    const dir = entry('f', 'directory')
    const {items} = await diff([file, dir, entry('f/in', 'file')], parentOf(parent))
    expect(items.map(i => i.split(' #')[0])).to.deep.equal(['file d', 'directory f', 'file f/in'])
  })

  it('leaves ignored paths as the parent has them, on both sides, and keeps them in the new tree', async () => {
    const parent = [entry('etc', 'directory'), entry('etc/hostname', 'file', {data: 'old'}), entry('etc/resolv.conf', 'file', {data: 'dns'})]
    const disk = [parent[0], entry('etc/hostname', 'file', {data: 'new'}), entry('etc/new-runtime', 'file', {data: 'x'})]
    const {items, tree} = await diff(disk, parentOf(parent), {ignore})
    expect(items).to.deep.equal([])
    expect(tree).to.deep.equal(['etc', 'etc/hostname', 'etc/resolv.conf'])
  })

  it('trusts an unchanged identity on the same filesystem without reading content, and reads it otherwise', async () => {
    const before = entry('f', 'file', {ctime: 10, data: 'same'})
    const unreadable = {
      ...before, content(): never {
        throw new Error('content was read')
      },
    }
    expect((await diff([unreadable], parentOf([before], 'uuid-1'), {diskUuid: 'uuid-1'})).items).to.deep.equal([])
    expect(await rejection(diff([unreadable], parentOf([before], 'uuid-1'), {diskUuid: 'uuid-2'}))).to.have.property('message', 'content was read')
    const rewritten = {...before, content: () => [Buffer.from('SAME')], ctime: {nsec: 0, sec: 11}}
    expect((await diff([rewritten], parentOf([before], 'uuid-1'), {diskUuid: 'uuid-1'})).items).to.have.length(1)
    const sameBytes = {...before, content: () => [Buffer.from('same')], ctime: {nsec: 0, sec: 11}}
    expect((await diff([sameBytes], parentOf([before], 'uuid-1'), {diskUuid: 'uuid-1'})).items).to.deep.equal([])
  })

  it('does not trust an identity changed too close to the parent\'s newest change (a second change in the same tick keeps the ctime)', async () => {
    const before = entry('f', 'file', {ctime: 10, data: 'same'})
    const unreadable = {
      ...before, content(): never {
        throw new Error('content was read')
      },
    }
    const parent = (trustedBefore: number): ParentTree => ({...parentOf([before], 'uuid-1'), trustedBefore})
    expect((await diff([unreadable], parent(11), {diskUuid: 'uuid-1'})).items).to.deep.equal([])
    expect(await rejection(diff([unreadable], parent(10), {diskUuid: 'uuid-1'}))).to.have.property('message', 'content was read')
  })

  describe('hard links', () => {
    it('leaves an unchanged group alone', async () => {
      const a = entry('a', 'file', {data: 'x', inode: 7, links: 2})
      const b = {...a, path: Buffer.from('b')}
      expect((await diff([a, b], parentOf([a, b]))).items).to.deep.equal([])
    })

    it('archives every name of a group that gained a name, the first carrying the content', async () => {
      const a = entry('a', 'file', {data: 'x', inode: 7, links: 2})
      const b = {...a, path: Buffer.from('b')}
      const disk = [a, b, {...a, path: Buffer.from('c')}].map(e => ({...e, links: 3}))
      expect((await diff(disk, parentOf([a, b]))).items).to.deep.equal(['file a #7', 'file b #7', 'file c #7'])
    })

    it('archives names that were linked and no longer are, even with the same content', async () => {
      const a = entry('a', 'file', {data: 'x', inode: 7, links: 2})
      const b = {...a, path: Buffer.from('b')}
      const disk = [{...a, links: 1}, {...b, inode: 8, links: 1}]
      expect((await diff(disk, parentOf([a, b]))).items).to.deep.equal(['file a #7', 'file b #8'])
    })

    it('archives names that are linked now and were not, even with the same content', async () => {
      const a = entry('a', 'file', {data: 'x', inode: 7})
      const b = entry('b', 'file', {data: 'x', inode: 8})
      const disk = [{...a, links: 2}, {...a, links: 2, path: Buffer.from('b')}]
      expect((await diff(disk, parentOf([a, b]))).items).to.deep.equal(['file a #7', 'file b #7'])
    })

    it('judges a group only once all its names are seen, and archives late the names it had held back', async () => {
      const a = entry('a', 'file', {data: 'x', inode: 7, links: 2})
      const z = {...a, path: Buffer.from('z')}
      const parent = [a, entry('m', 'file', {data: 'm'}), z]
      // a keeps its link count of 2, but its other name is not in the image; z is another inode now.
      const disk = [a, entry('m', 'file', {data: 'changed'}), {...z, inode: 8, links: 1}]
      const {items} = await diff(disk, parentOf(parent))
      // z is judged at once; a only at the end of the walk, since its second name never showed up.
      expect(items).to.deep.equal([items[0], 'file z #8', 'file a #7'])
      expect(items[0]).to.match(/^file m /)
    })

    it('keeps a single visible name of an inode whose other names are not in the image', async () => {
      const a = entry('a', 'file', {data: 'x', inode: 7, links: 1})
      expect((await diff([{...a, links: 2}], parentOf([a]))).items).to.deep.equal([])
    })
  })

  it('refuses entries out of layer order', async () => {
    const error = await rejection(diff([entry('b', 'file'), entry('a', 'file')], parentOf([])))
    expect(error.message).to.match(/out of layer order/)
  })

  it('drops .wh.* names on the disk with their subtrees, counting them', async () => {
    const stats = {skipped: {whiteoutNames: 0}} as unknown as ChangesetOptions['stats']
    const {items} = await diff([entry('.wh.x', 'directory'), entry('.wh.x/f', 'file'), entry('y', 'file')], parentOf([]), {stats})
    expect(items.map(i => i.split(' #')[0])).to.deep.equal(['file y'])
    expect(stats!.skipped.whiteoutNames).to.equal(1)
  })
})
