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
import type {DiskProbe, ProbedInode, ProbedListing} from '../extractor/extractor.js'
import type {ParentTree} from './parent-nodes.js'
import type {RecordRange} from './tree-record-reader.js'
import type {TreeNode} from './tree-record.js'

import {sameIdentity, sameMeta} from './compare.js'
import {identityTrust} from './parent-nodes.js'
import {isUnder} from './tree-record.js'

export interface UnchangedDirsOptions {
  diskUuid?: string
  /** `--exclude`: a subtree holding an excluded path is walked, so that the merge drops it. */
  exclude?: (path: Buffer) => boolean
  /** Paths the merge leaves as the parent has them (microagent's own files): walked, as before. */
  ignore?: (path: Buffer) => boolean
}

interface Frame {
  /** The subtree's first node (this directory's first child), when it has one: path, file offset, index. */
  first?: {at: number; path: Buffer; seq: number}
  /** Outermost unchanged directories found under this one, while this one may still be unchanged. */
  found: Found[]
  /** The directory's names, sorted as the record has them, matched one by one against its nodes. */
  listing: ProbedListing | undefined
  matched: number
  /** The newest ctime (seconds) of the identities under it. */
  newest: number
  path: Buffer
  unchanged: boolean
}

interface Found {
  path: Buffer
  /** Where its subtree's nodes are in the record: none for an empty directory. */
  range?: RecordRange
}

function frame(path: Buffer, listing?: ProbedListing): Frame {
  return {
    found: [], listing, matched: 0, newest: 0, path, unchanged: listing !== undefined,
  }
}

/** The frame's directory changed: its subtree is walked, and what was found unchanged in it is kept. */
function changed(dir: Frame, found: Found[]): void {
  if (!dir.unchanged) return
  dir.unchanged = false
  found.push(...dir.found)
  dir.found = []
}

/** Matches the node against its directory's next name on the disk. */
function listed(dir: Frame, node: TreeNode): boolean {
  const inode = node.identity?.inode
  if (!dir.listing || inode === undefined) return false
  return dir.listing.is(dir.matched++, inode, node.path, dir.path.length === 0 ? 0 : dir.path.length + 1)
}

/** One pass over the record's nodes in layer order, with the directories open at each node. */
class Scan {
  /** Outermost unchanged directories found so far. */
  readonly found: Found[] = []
  private readonly frames: Frame[] = [frame(Buffer.alloc(0))]
  private previous: Buffer | undefined
  /** Index of the next node. */
  private seq = 0

  constructor(
    private readonly probe: DiskProbe,
    private readonly check: (node: TreeNode) => ProbedInode | undefined,
  ) {}

  /** The open directories closed, the last node's block ending at `end`; returns what was found. */
  finish(end: number): Found[] {
    while (this.frames.length > 1) this.close(end)
    return this.found
  }

  /** The next node, its block at file offset `at`. */
  node(node: TreeNode, at: number): void {
    const {frames, probe} = this
    while (frames.length > 1 && !isUnder(node.path, frames.at(-1)!.path)) this.close(at)
    const top = frames.at(-1)!
    top.first ??= {at, path: node.path, seq: this.seq}
    if (node.identity && node.identity.ctime.sec > top.newest) top.newest = node.identity.ctime.sec
    // Under a changed directory only directories are worth a look: the walk lists the rest anyway.
    const inode = top.unchanged || node.type === 'directory' ? this.check(node) : undefined
    if (top.unchanged && !(inode && listed(top, node))) changed(top, this.found)
    this.seq++
    this.previous = node.path
    if (node.type !== 'directory') return
    // In bytewise name order: the record's order for the children of one directory (names hold no `/`).
    frames.push(frame(node.path, inode && probe.listing(node.identity!.inode)))
  }

  /** Closes the innermost directory, whose subtree's blocks end at `end`. */
  private close(end: number): void {
    const dir = this.frames.pop()!
    const outer = this.frames.at(-1)!
    outer.newest = Math.max(outer.newest, dir.newest)
    if (!dir.unchanged || dir.matched !== dir.listing!.count) {
      changed(dir, this.found)
      changed(outer, this.found)
      return
    }

    const {first} = dir
    const range = first && {
      count: this.seq - first.seq, dir: dir.path, end, first: first.path, last: this.previous!, newestCtime: dir.newest, start: first.at,
    }
    // Kept by the outer directory while it may be kept whole itself (then this one goes with it).
    if (outer.unchanged) outer.found.push({path: dir.path, range})
    else this.found.push({path: dir.path, range})
  }
}

export class UnchangedDirs {
  /** Entries under the unchanged directories, which the walk did not visit: counted by the merge as it keeps them. */
  entries = 0
  /**
   * Unchanged directories the merge kept (of those found, one renamed or moved since is not: the walk never
   * meets it at its old path, and the parent's node there is whited out).
   */
  kept = 0
  /**
   * For ExtractOptions.probe: reads the parent's record once (it is checked whole before this returns), and
   * leaves the unchanged subtrees' ranges of it in the parent's `skips`, for its nodes stream to skip.
   */
  readonly probe = async (probe: DiskProbe): Promise<void> => {
    const {parent} = this
    const trusts = identityTrust(parent, this.options.diskUuid)
    if (!parent.again || !parent.skips || !trusts) return
    const scan = new Scan(probe, node => this.check(node, probe, trusts))
    let end = 0
    for await (const batch of parent.again()) {
      for (const [i, node] of batch.nodes.entries()) scan.node(node, batch.offsets[i])
      end = batch.end
    }

    for (const {path, range} of scan.finish(end)) {
      this.dirs.set(path.toString('latin1'), range)
      if (range) parent.skips.ranges.set(range.start, range)
    }
  }
  private readonly dirs = new Map<string, RecordRange | undefined>()

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

  /** The range of the parent's record that holds the subtree of an unchanged directory (none if it is empty). */
  range(path: Buffer): RecordRange | undefined {
    return this.dirs.get(path.toString('latin1'))
  }

  /** The disk's inode for the node when it is unchanged by the merge's own rules, else undefined. */
  private check(node: TreeNode, probe: DiskProbe, trusts: (node: TreeNode) => boolean): ProbedInode | undefined {
    const id = node.identity
    if (!id || node.group !== undefined || node.xattrs.length > 0) return undefined
    if (this.options.exclude?.(node.path) || this.options.ignore?.(node.path)) return undefined
    const inode = probe.inode(id.inode)
    // sameMeta covers a symlink's target: a probe gives no inode for a symlink whose target it did not read.
    if (!inode || inode.generation !== id.generation || !sameMeta(inode, node)) return undefined
    if (node.type === 'directory') return inode
    if (inode.links !== 1) return undefined
    // A file's content is its identity's, as the merge trusts it.
    return node.type !== 'file' || (trusts(node) && sameIdentity(inode, node)) ? inode : undefined
  }
}
