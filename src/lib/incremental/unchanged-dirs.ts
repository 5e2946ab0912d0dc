/**
 * The directories of an incremental commit's disk that are exactly as the parent's tree record has them,
 * with everything under them: found before the walk, by reading the record once and the disk's inodes and
 * directory blocks in place (a DiskProbe), so that the walk does not list them and the merge keeps their
 * subtrees as the parent's without an entry each. What makes a subtree unchanged is what makes an entry
 * unchanged in the merge, checked on every path under it:
 *
 * - a directory: its metadata, and its names and their inode numbers, read from its blocks, exactly the
 *   record's children (so nothing was added, removed, renamed or left out since: a socket, `lost+found`, a
 *   `.wh.*` name or an excluded path on the disk is a name the record lacks);
 * - a regular file: its metadata, and its identity (inode, generation, ctime) trusted as the merge trusts
 *   it (same filesystem, changed long enough before the record);
 * - other types: their metadata, a symlink's target read from the inode;
 * - no extended attributes and no second name (a hard-link group is judged whole by the merge), nothing
 *   excluded or left as the parent has it (microagent's own files).
 *
 * Only the outermost such directories are kept, never the root. Memory: the open directories' listings.
 */
import type {DiskProbe, ProbedInode} from '../extractor/extractor.js'
import type {ParentTree} from './parent-nodes.js'
import type {TreeNode} from './tree-record.js'

import {isUnder} from './tree-record.js'

export interface UnchangedDirsOptions {
  diskUuid?: string
  /** `--exclude`: a subtree holding an excluded path is walked, so that the merge drops it. */
  exclude?: (path: Buffer) => boolean
  /** Paths the merge leaves as the parent has them (microagent's own files): walked, as before. */
  ignore?: (path: Buffer) => boolean
}

interface Frame {
  /** Outermost unchanged directories found under this one, while this one may still be unchanged. */
  found: Buffer[]
  /** The directory's names, sorted as the record has them, matched one by one against its nodes. */
  listing: undefined | {inode: number; name: Buffer}[]
  matched: number
  path: Buffer
  unchanged: boolean
}

function sameTime(a: {nsec: number; sec: number}, b: {nsec: number; sec: number}): boolean {
  return a.sec === b.sec && a.nsec === b.nsec
}

function sameTarget(inode: ProbedInode, node: TreeNode): boolean {
  return inode.linkTarget !== undefined && node.linkTarget !== undefined && inode.linkTarget.equals(node.linkTarget)
}

/** What `sameMeta` compares, but xattrs and a symlink's target (checked apart). */
function sameMeta(inode: ProbedInode, node: TreeNode): boolean {
  if (inode.type !== node.type || inode.mode !== node.mode || inode.uid !== node.uid || inode.gid !== node.gid) return false
  if (inode.size !== node.size || !sameTime(inode.mtime, node.mtime)) return false
  return (inode.devMajor ?? 0) === (node.devMajor ?? 0) && (inode.devMinor ?? 0) === (node.devMinor ?? 0)
}

export class UnchangedDirs {
  /** Entries under the unchanged directories, which the walk did not visit: counted by the merge as it keeps them. */
  entries = 0
  /** For ExtractOptions.probe: reads the parent's record once (it is checked whole before this returns). */
  readonly probe = async (probe: DiskProbe): Promise<void> => {
    const {parent} = this
    if (!parent.again || parent.fsUuid === undefined || parent.fsUuid !== this.options.diskUuid) return
    const found: Buffer[] = []
    const frames: Frame[] = [{
      found, listing: undefined, matched: 0, path: Buffer.alloc(0), unchanged: false,
    }]
    const close = (): void => {
      const frame = frames.pop()!
      const outer = frames.at(-1)!
      if (frame.unchanged && frame.matched === frame.listing!.length) {
        // Kept by the outer directory while it may be kept whole itself (then this one goes with it).
        (outer.unchanged ? outer.found : found).push(frame.path)
        return
      }

      this.changed(frame, found)
      this.changed(outer, found)
    }

    for await (const batch of parent.again()) {
      for (const node of batch) {
        while (frames.length > 1 && !isUnder(node.path, frames.at(-1)!.path)) close()
        const top = frames.at(-1)!
        // Under a changed directory only directories are worth a look: the walk lists the rest anyway.
        const inode = top.unchanged || node.type === 'directory' ? this.check(node, probe) : undefined
        if (top.unchanged && !(inode && this.listed(top, node))) this.changed(top, found)
        if (node.type !== 'directory') continue
        const listing = inode && this.sorted(probe.listing(node.identity!.inode))
        frames.push({
          found: [], listing, matched: 0, path: node.path, unchanged: listing !== undefined,
        })
      }
    }

    while (frames.length > 1) close()
    for (const dir of found) this.dirs.add(dir.toString('latin1'))
  }
  private readonly dirs = new Set<string>()

  constructor(
    private readonly parent: ParentTree,
    private readonly options: UnchangedDirsOptions,
  ) {}

  /** How many outermost unchanged directories were found. */
  get count(): number {
    return this.dirs.size
  }

  /** Whether the walk may leave the directory at `path` unlisted, its subtree kept as the parent's. */
  has(path: Buffer): boolean {
    return this.dirs.size > 0 && this.dirs.has(path.toString('latin1'))
  }

  /** The frame's directory changed: its subtree is walked, and what was found unchanged in it is kept. */
  private changed(frame: Frame, found: Buffer[]): void {
    if (!frame.unchanged) return
    frame.unchanged = false
    found.push(...frame.found)
    frame.found = []
  }

  /** The disk's inode for the node when it is unchanged by the merge's own rules, else undefined. */
  private check(node: TreeNode, probe: DiskProbe): ProbedInode | undefined {
    const id = node.identity
    if (!id || node.group !== undefined || node.xattrs.length > 0) return undefined
    if (this.options.exclude?.(node.path) || this.options.ignore?.(node.path)) return undefined
    const inode = probe.inode(id.inode)
    if (!inode || inode.generation !== id.generation || !sameMeta(inode, node)) return undefined
    if (node.type === 'directory') return inode
    if (inode.links !== 1 || (node.type === 'symlink' && !sameTarget(inode, node))) return undefined
    if (node.type !== 'file') return inode
    // A file's content is its identity's, as the merge trusts it (see ParentTree.trustedBefore).
    const trusted = id.ctime.sec < (this.parent.trustedBefore ?? Number.POSITIVE_INFINITY)
    return trusted && sameTime(inode.ctime, id.ctime) ? inode : undefined
  }

  /** Matches the node against its directory's next name on the disk. */
  private listed(frame: Frame, node: TreeNode): boolean {
    const next = frame.listing?.[frame.matched++]
    if (!next || next.inode !== node.identity?.inode) return false
    const name = node.path.subarray(frame.path.length === 0 ? 0 : frame.path.length + 1)
    return next.name.equals(name)
  }

  /** Bytewise name order: the record's order for the children of one directory (names hold no `/`). */
  private sorted(listing: undefined | {inode: number; name: Buffer}[]): undefined | {inode: number; name: Buffer}[] {
    return listing?.sort((a, b) => Buffer.compare(a.name, b.name))
  }
}
