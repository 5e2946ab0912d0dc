/**
 * The parent's tree for the diff: from the tree record our commit kept for it when there is one that is
 * whole and belongs to it, else from its layers, applied in order (whiteouts and opaque directories
 * included) in memory, with every file's content hashed.
 */
import {createHash} from 'node:crypto'
import {stat} from 'node:fs/promises'

import type {EntryType} from '../extractor/extractor.js'
import type {OciLayout} from '../oci/layout.js'
import type {ParentTree} from './changeset.js'
import type {ParentImage} from './parent-image.js'

import {DecompressError, hashedLayerTar} from '../layer/decompress.js'
import {readTar, TarFormatError, type TarMember} from '../layer/tar-reader.js'
import {ImageRecords} from '../oci/records.js'
import {checkParentBlobs, parentError} from './parent-image.js'
import {openTreeRecord, RecordSkips, type TreeRecord} from './tree-record-reader.js'
import {
  OLD_TREE_RECORD, TREE_RECORD, type TreeNode, TreeRecordError,
} from './tree-record.js'

export interface ParentTreeSource extends ParentTree {
  /** Identities of the parent's layer blob files, all checked against their digests (see `checkParentBlobs`). */
  blobs: Map<string, string>
  /** Why the record was not used, when it exists but was not. */
  recordProblem?: string
  source: 'layers' | 'record'
}

/** The parent's tree record, if there is one that is whole and describes its layers; else why not (if it exists). */
async function usableRecord(layout: OciLayout, parent: ParentImage): Promise<{problem?: string; record?: TreeRecord}> {
  const records = new ImageRecords(layout.root)
  const found = (name: string): Promise<boolean> => stat(records.path(parent.descriptor.digest, name)).then(() => true, () => false)
  if (!(await found(TREE_RECORD))) return (await found(OLD_TREE_RECORD)) ? {problem: 'the tree record is of an earlier format'} : {}
  try {
    const record = await openTreeRecord(records.path(parent.descriptor.digest, TREE_RECORD))
    if (record.diffIds.length === parent.diffIds.length && record.diffIds.every((id, i) => id === parent.diffIds[i])) return {record}
    return {problem: 'the tree record describes other layers'}
  } catch (error) {
    return {problem: `the tree record is damaged (${error instanceof TreeRecordError ? error.message : String(error)})`}
  }
}

/**
 * The parent's tree from its tree record, or from its layers when the record is absent, damaged or not its
 * own; its layer blobs checked first (hashed, but for those the record knows unchanged since hashed).
 * `damaged`: the record was found damaged while its nodes streamed (why): read the layers, hash every blob.
 */
export async function readParentTree(layout: OciLayout, parent: ParentImage, damaged?: string): Promise<ParentTreeSource> {
  const {problem, record} = damaged === undefined ? await usableRecord(layout, parent) : {problem: damaged}
  if (record) {
    const blobs = await checkParentBlobs(layout, parent, record.blobs)
    const skips = new RecordSkips(record.file)
    return {
      again: () => record.placed(),
      blobs,
      fsUuid: record.fsUuid,
      groups: record.groups,
      nodes: record.batches(skips),
      skips,
      source: 'record',
      trustedBefore: Math.max(record.newestCtime, record.readAt ?? Number.NEGATIVE_INFINITY) - RACY_SECONDS,
    }
  }

  const blobs = await checkParentBlobs(layout, parent)
  return {
    ...(await treeFromLayers(layout, parent)), blobs, recordProblem: problem, source: 'layers',
  }
}

interface Inode {
  devMajor?: number
  devMinor?: number
  gid: number
  id: number
  linkTarget?: Buffer
  mode: number
  mtime: {nsec: number; sec: number}
  names: number
  sha256?: string
  size: number
  type: EntryType
  uid: number
  xattrs: [string, Buffer][]
}

interface Node {
  children?: Map<string, Node>
  inode: Inode
  /** Index of the layer that put it there. */
  layer: number
}

/**
 * Identities changed within this many seconds before the record was taken are compared by content: a
 * change in the same timestamp tick after the commit would not show in the ctime (git's "racy clean").
 * "When the record was taken" is the later of the host's clock when the commit began reading the disk
 * (under the lease: every later change, the guest's after a restart or a host tool's, comes after it) and
 * the newest ctime in the record (a guest clock running ahead of the host's). The margin covers a
 * whole-second tick (128-byte inodes; debugfs writes whole seconds) and a guest clock up to 2 s behind
 * the host's. Measuring from the newest ctime alone, as before, distrusted every file of a disk built in
 * one go (all its ctimes within 2 s of each other) until something else on it changed.
 */
const RACY_SECONDS = 2

const WHITEOUT = '.wh.'
const OPAQUE = '.wh..wh..opq'

function unsafe(parent: ParentImage, layer: number, why: string): Error {
  return parentError(`layer ${layer + 1} of --parent ${parent.ref} ${why}`, 'Commit without --parent; the parent image is not one this host can stack on.', 'UNSAFE_PARENT')
}

/** A member's name as components: `./` and a trailing `/` dropped; absolute, `..`, `.`, empty and NUL refused. */
function components(raw: Buffer, refuse: (why: string) => Error): string[] {
  let text = raw.toString('latin1')
  if (text.startsWith('/')) throw refuse(`holds an absolute name ${JSON.stringify(text)}`)
  while (text.startsWith('./')) text = text.slice(2)
  text = text.replace(/\/+$/, '')
  if (text === '' || text === '.') return []
  const parts = text.split('/')
  for (const part of parts) {
    if (part === '' || part === '.' || part === '..' || part.includes('\0')) throw refuse(`holds an unsafe name ${JSON.stringify(raw.toString('latin1'))}`)
  }

  return parts
}

class LayeredTree {
  readonly root: Node
  private nextId = 1

  constructor() {
    this.root = {
      children: new Map(), inode: this.inode({
        gid: 0, mode: 0o755, mtime: {nsec: 0, sec: 0}, size: 0, type: 'directory', uid: 0, xattrs: [],
      }), layer: -1,
    }
  }

  /** The directory at `parts`, made (as plain root-owned directories) where the layer skipped them. */
  dir(parts: string[], layer: number, refuse: (why: string) => Error): Node {
    let node = this.root
    for (const part of parts) {
      let child = node.children!.get(part)
      if (!child) {
        child = {
          children: new Map(), inode: this.inode({
            gid: 0, mode: 0o755, mtime: {nsec: 0, sec: 0}, size: 0, type: 'directory', uid: 0, xattrs: [],
          }), layer,
        }
        node.children!.set(part, child)
      }

      if (!child.children) throw refuse(`puts "${parts.join('/')}" under a non-directory`)
      node = child
    }

    return node
  }

  find(parts: string[]): Node | undefined {
    let node: Node | undefined = this.root
    for (const part of parts) node = node?.children?.get(part)
    return node
  }

  inode(fields: Omit<Inode, 'id' | 'names'>): Inode {
    return {...fields, id: this.nextId++, names: 0}
  }

  /**
   * @yields the tree's nodes in layer order
   */
  * nodes(groups: Map<string, Buffer[]>): Generator<TreeNode, void, undefined> {
    // First pass: count names, so that only inodes with two or more get a group key.
    const count = (node: Node): void => {
      for (const child of node.children!.values()) {
        child.inode.names++
        if (child.children) count(child)
      }
    }

    count(this.root)
    const walk = function * (node: Node, prefix: string): Generator<TreeNode, void, undefined> {
      const names = [...node.children!.keys()].sort((a, b) => (a < b ? -1 : (a > b ? 1 : 0)))
      for (const name of names) {
        const child = node.children!.get(name)!
        const path = Buffer.from(prefix === '' ? name : `${prefix}/${name}`, 'latin1')
        const {inode} = child
        const tree: TreeNode = {
          gid: inode.gid, mode: inode.mode, mtime: inode.mtime, path, size: inode.size, type: inode.type, uid: inode.uid, xattrs: inode.xattrs,
        }
        if (inode.linkTarget) tree.linkTarget = inode.linkTarget
        if (inode.devMajor !== undefined) {
          tree.devMajor = inode.devMajor
          tree.devMinor = inode.devMinor
        }

        if (inode.sha256) tree.sha256 = inode.sha256
        if (inode.type !== 'directory' && inode.names > 1) {
          tree.group = `#${inode.id}`
          const list = groups.get(tree.group)
          if (list) list.push(path)
          else groups.set(tree.group, [path])
        }

        yield tree
        if (child.children) yield * walk(child, path.toString('latin1'))
      }
    }

    yield * walk(this.root, '')
  }

  /** Hides what lower layers hold under `node` (an opaque whiteout in layer `layer`). */
  opaque(node: Node, layer: number): void {
    for (const [name, child] of node.children!) {
      if (child.layer < layer) node.children!.delete(name)
      else if (child.children) this.opaque(child, layer)
    }
  }
}

interface Applying {
  layer: number
  refuse: (why: string) => Error
  tree: LayeredTree
}

/** A whiteout hides what lower layers hold, never what its own layer adds. */
function applyWhiteout(at: Applying, dir: Node, name: string, member: TarMember): void {
  if (name === OPAQUE) {
    at.tree.opaque(dir, at.layer)
    return
  }

  const target = name.slice(WHITEOUT.length)
  if (target === '' || target === '.' || target === '..') throw at.refuse(`holds a whiteout of the root or of "..": ${JSON.stringify(member.path.toString('latin1'))}`)
  const existing = dir.children!.get(target)
  if (existing && existing.layer < at.layer) dir.children!.delete(target)
}

async function applyMember(at: Applying, member: TarMember, content: AsyncIterable<Buffer>): Promise<void> {
  const {layer, refuse, tree} = at
  const parts = components(member.path, refuse)
  if (parts.length === 0) return
  const name = parts.at(-1)!
  const dir = tree.dir(parts.slice(0, -1), layer, refuse)
  if (name.startsWith(WHITEOUT)) {
    applyWhiteout(at, dir, name, member)
    return
  }

  const existing = dir.children!.get(name)
  if (member.type === 'hardlink') {
    const target = tree.find(components(member.linkpath, refuse))
    if (!target || target.children) throw refuse(`links "${parts.join('/')}" to ${JSON.stringify(member.linkpath.toString('latin1'))}, which is not a file of the tree`)
    dir.children!.set(name, {inode: target.inode, layer})
    return
  }

  let sha256: string | undefined
  if (member.type === 'file') {
    const hash = createHash('sha256')
    for await (const piece of content) hash.update(piece)
    sha256 = hash.digest('hex')
  }

  const inode = tree.inode({
    gid: member.gid,
    mode: member.mode,
    mtime: member.mtime,
    size: member.size,
    type: member.type as EntryType,
    uid: member.uid,
    xattrs: member.xattrs,
    ...(member.type === 'symlink' ? {linkTarget: member.linkpath} : {}),
    ...(member.type === 'block' || member.type === 'char' ? {devMajor: member.devMajor, devMinor: member.devMinor} : {}),
    ...(sha256 ? {sha256} : {}),
  })
  if (member.type === 'directory' && existing?.children) {
    // A directory over a directory changes its attributes only; what is in it stays.
    existing.inode = inode
    existing.layer = layer
    return
  }

  dir.children!.set(name, {...(member.type === 'directory' ? {children: new Map()} : {}), inode, layer})
}

/** Applies the parent's layers in order, checking each against its digest and diff_id as it streams. */
export async function treeFromLayers(layout: OciLayout, parent: ParentImage): Promise<ParentTree> {
  const tree = new LayeredTree()
  for (const [i, layer] of parent.layers.entries()) {
    const refuse = (why: string): Error => unsafe(parent, i, why)
    const source = hashedLayerTar(layout.blobPath(layer.digest), layer.mediaType)
    try {
      await readTar(source, (member, content) => applyMember({layer: i, refuse, tree}, member, content))
      // A tar's end blocks may be followed by padding: read it, so that the diff_id covers the whole stream.
      for await (const piece of source) if (piece === undefined) break
    } catch (error) {
      if (error instanceof TarFormatError) throw refuse(`is not a readable tar archive (${error.message})`)
      if (error instanceof DecompressError) throw refuse(`cannot be decompressed as ${layer.mediaType} (${error.message})`)
      throw error
    }

    if (source.digest() !== parent.diffIds[i]) throw refuse(`does not match its diff_id ${parent.diffIds[i]}`)
  }

  const groups = new Map<string, Buffer[]>()
  // Groups are known only after the walk: collect the nodes first (the tree is in memory anyway).
  const nodes = [...tree.nodes(groups)]
  return {
    groups, nodes: (async function * () {
      yield nodes
    })(),
  }
}
