/**
 * The diff stage of an incremental commit: merges the disk's entries with the parent image's tree (both in
 * layer order) in one pass and yields the OCI changeset between them, for `tarLayer` to archive: added and
 * changed entries in full, whiteouts for deletions, an opaque whiteout where nothing of a directory's
 * lower contents survives. Memory is bounded by the depth of the tree, the names deleted from the open
 * directories, and the hard-link groups still being judged (see LinkGroups); never by the number of entries.
 */
import type {Entry} from '../extractor/extractor.js'
import type {TreeNode} from './tree-record.js'
import type {WalkGate} from './walk-gate.js'

import {isWhiteoutPath, type LayerItem, type Whiteout} from '../layer/names.js'
import {type LayerStats} from '../layer/stats.js'
import {extractionError} from '../support/errors.js'
import {
  hashContent, hashingEntry, sameIdentity, sameMeta,
} from './compare.js'
import {LinkGroups} from './link-groups.js'
import {identityTrust, type ParentTree, Peek} from './parent-nodes.js'
import {type RecordRange} from './tree-record-reader.js'
import {compareTreePaths, isUnder, nodeFromEntry} from './tree-record.js'
import {type UnchangedDirs} from './unchanged-dirs.js'

export type {ParentTree} from './parent-nodes.js'

export interface ChangesetOptions {
  /** UUID of the disk being read (`Extractor.filesystemUuid`). */
  diskUuid?: string
  /**
   * Paths the diff leaves as the parent has them, on both sides: never archived, never whited out (the
   * files microagent itself writes into a rootfs). A directory goes with its subtree.
   */
  ignore?: (path: Buffer) => boolean
  /** Hears each node of the new image's tree, in layer order, for its tree record. */
  onNode?: (node: TreeNode) => Promise<void> | void
  /** Hears, in place of their nodes, the ranges of the parent's record holding unwalked subtrees (see `unchanged`). */
  onRange?: (range: RecordRange) => Promise<void> | void
  /** Counts the disk's `.wh.*` names, which no layer can carry. */
  stats?: LayerStats
  /**
   * Directories the walk did not descend into because they are as the parent has them: their subtrees are
   * kept from the parent's nodes (and counted in its `entries`).
   */
  unchanged?: UnchangedDirs
  /** A gate whose `beforeClose` the extractor was given: hard-link groups are settled before it opens. */
  walk?: WalkGate
}

interface Frame {
  /** Paths of the parent's children of this directory that are gone from the disk. */
  deleted: Buffer[]
  /** The directory itself is archived (new, or its metadata changed). */
  emitted: boolean
  /** The parent has this directory: the layers below hold a version of it. */
  inParent: boolean
  /** Something of the parent's subtree here stays as it is in the layers below. */
  kept: boolean
  path: Buffer
}

/**
 * Yields the changeset that turns the parent's tree into the disk's. `entries` are the disk's entries as
 * a full commit would archive them (after --exclude), in layer order.
 *
 * @yields entries and whiteouts, for `tarLayer`
 */
export async function * changeset(entries: AsyncIterable<Entry>, parent: ParentTree, options: ChangesetOptions = {}): AsyncGenerator<LayerItem, void, undefined> {
  const merge = new Merge(parent, options)
  yield * merge.run(entries)
}

class Merge {
  private readonly frames: Frame[] = [{
    deleted: [], emitted: false, inParent: true, kept: false, path: Buffer.alloc(0),
  }]
  private readonly groups: LinkGroups
  private readonly ignore: (path: Buffer) => boolean
  private readonly parentNodes: Peek
  /** The last disk path seen, to check the walk's order. */
  private previous: Buffer | undefined
  /** A disk directory whose subtree is left out (a `.wh.*` name, or ignored). */
  private skip: Buffer | undefined
  /** Whether the node's identity can stand for its content (see identityTrust). */
  private readonly trusts: (node: TreeNode) => boolean

  constructor(
    private readonly parent: ParentTree,
    private readonly options: ChangesetOptions,
  ) {
    this.ignore = options.ignore ?? (() => false)
    this.parentNodes = new Peek(parent.nodes)
    this.groups = new LinkGroups(parent.groups, {
      keep: () => this.keep(), record: node => this.record(node), trusts: node => this.trusts(node),
    })
    this.trusts = identityTrust(parent, options.diskUuid) ?? (() => false)
  }

  /**
   * @yields the changeset, in the order `tarLayer` archives it
   */
  async * run(entries: AsyncIterable<Entry>): AsyncGenerator<LayerItem, void, undefined> {
    const disk = entries[Symbol.asyncIterator]()
    const gate = this.options.walk
    let settled = false
    try {
      let loaded = false
      for (;;) {
        const next = disk.next()
        const result = gate ? await gate.race(next) : await next
        if (!loaded) {
          // Only once the walk gave its first answer: the extractor probed the disk before it (UnchangedDirs),
          // and the parent's nodes then skip the subtrees found unchanged.
          await this.parentNodes.load()
          loaded = true
        }

        if (result === 'ended' || result.done) {
          // The extractor is still open (or has nothing to close): settle the groups while content can be read.
          yield * this.groups.settleAll()
          settled = true
          this.options.walk?.release()
          if (result === 'ended') await next
          break
        }

        const quiet = this.quiet(result.value)
        if (quiet === true || (quiet !== false && (await quiet))) continue
        yield * this.step(result.value)
      }

      yield * this.deleteBefore()
      yield * this.closeFrames()
    } finally {
      if (!settled) this.options.walk?.release()
      await disk.return?.()
      await this.parentNodes.close()
    }
  }

  private async * closeFrames(next?: Buffer): AsyncGenerator<Whiteout, void, undefined> {
    while (this.frames.length > (next === undefined ? 0 : 1)) {
      const frame = this.frames.at(-1)!
      if (next !== undefined && isUnder(next, frame.path)) return
      this.frames.pop()
      const outer = this.frames.at(-1)
      if (outer) outer.kept ||= frame.kept || (frame.inParent && !frame.emitted)
      if (frame.deleted.length === 0) continue
      // Never opaque at the root: every layer below would be hidden, which some appliers mishandle.
      if (frame.inParent && !frame.kept && outer) {
        yield {kind: 'whiteout', opaque: true, path: frame.path}
      } else {
        for (const path of frame.deleted) yield {kind: 'whiteout', path}
      }
    }
  }

  /**
   * Parent nodes before `path` (all that are left, if undefined) are gone from the disk.
   *
   * @yields the whiteouts of directories closed on the way
   */
  private async * deleteBefore(path?: Buffer): AsyncGenerator<Whiteout, void, undefined> {
    for (;;) {
      const node = this.parentNodes.head
      if (!node || (path !== undefined && compareTreePaths(node.path, path) >= 0)) return
      yield * this.closeFrames(node.path)
      await this.parentNodes.load()
      if (this.ignore(node.path)) {
        await this.keepParent(node)
        continue
      }

      this.frames.at(-1)!.deleted.push(node.path)
      if (node.type === 'directory') await this.dropParentSubtree(node.path)
    }
  }

  private async dropParentSubtree(dir: Buffer): Promise<void> {
    while (this.parentNodes.head && isUnder(this.parentNodes.head.path, dir)) await this.parentNodes.load()
  }

  private async * entry(entry: Entry, node: TreeNode | undefined): AsyncGenerator<LayerItem, void, undefined> {
    if (node && node.type !== entry.type && node.type === 'directory') await this.dropParentSubtree(node.path)
    const same = node !== undefined && node.type === entry.type
    if (entry.type === 'directory') {
      const emitted = !same || !sameMeta(entry, node)
      if (emitted) yield entry
      await this.record(nodeFromEntry(entry))
      this.frames.push({
        deleted: [], emitted, inParent: same, kept: false, path: entry.path,
      })
      if (this.options.unchanged?.has(entry.path)) await this.keepUnwalked(entry.path)
      return
    }

    const grouped = (entry.links ?? 1) > 1 || node?.group !== undefined || this.groups.has(entry.inode)
    if (grouped) {
      yield * this.groups.member(entry, same ? node : undefined)
      return
    }

    if (!same || !sameMeta(entry, node)) {
      const {item, sha256} = hashingEntry(entry)
      yield item
      await this.record(nodeFromEntry(entry, sha256?.()))
      return
    }

    yield * this.unchangedMeta(entry, node)
  }

  private keep(): void {
    this.frames.at(-1)!.kept = true
  }

  /** The parent's node (and subtree) stay as the layers below have them, and are part of the new tree. */
  private async keepParent(node: TreeNode): Promise<void> {
    this.keep()
    // Identities and groups describe the parent's disk, not this one: a kept node carries neither.
    const copy = (kept: TreeNode): TreeNode => {
      const rest = {...kept}
      delete rest.group
      delete rest.identity
      return rest
    }

    await this.record(copy(node))
    if (node.type !== 'directory') return
    while (this.parentNodes.head && isUnder(this.parentNodes.head.path, node.path)) {
      await this.record(copy(this.parentNodes.head))
      await this.parentNodes.load()
    }
  }

  /** An entry `quiet` found unchanged: kept, and recorded (a promise only when the record's writer waits). */
  private keepQuietly(entry: Entry, node: TreeNode): Promise<true> | true {
    let recorded: Promise<void> | void
    if (entry.type === 'directory') {
      recorded = this.options.onNode?.(nodeFromEntry(entry))
      this.frames.push({
        deleted: [], emitted: false, inParent: true, kept: false, path: entry.path,
      })
      if (this.options.unchanged?.has(entry.path)) {
        const before = recorded
        recorded = before ? before.then(() => this.keepUnwalked(entry.path)) : this.keepUnwalked(entry.path)
      }
    } else {
      this.keep()
      recorded = this.options.onNode?.(nodeFromEntry(entry, node.sha256))
    }

    return recorded ? recorded.then((): true => true) : true
  }

  /**
   * The parent's nodes under `dir`, a directory the walk did not descend into (UnchangedDirs found its
   * subtree as the parent has it), go to the new tree as they are: their identities are this disk's too.
   * A promise only when the record's writer or the next batch of nodes has to be waited for.
   */
  private keepUnwalked(dir: Buffer): Promise<void> | void {
    this.keep()
    // Should the extractor yield the subtree after all, it is the parent's already.
    this.skip = dir
    const unchanged = this.options.unchanged!
    unchanged.kept++
    const range = unchanged.range(dir)
    const {head} = this.parentNodes
    if (range && !(head && isUnder(head.path, dir))) {
      // The parent's nodes stream skipped the subtree: its record blocks are copied as they are.
      unchanged.entries += range.count
      return this.options.onRange?.(range)
    }

    const next = (): Promise<void> | void => {
      for (;;) {
        const node = this.parentNodes.head
        if (!node || !isUnder(node.path, dir)) return
        unchanged.entries++
        const recorded = this.options.onNode?.(node)
        const loading = this.parentNodes.load()
        if (recorded || loading) return Promise.all([recorded, loading]).then(next)
      }
    }

    return next()
  }

  /** Checks the walk's order; whether the entry is left out (under a skipped directory, or a `.wh.*` name). */
  private leftOut(entry: Entry): boolean {
    if (this.previous && compareTreePaths(this.previous, entry.path) >= 0) {
      throw extractionError(`the extractor gave "${entry.path.toString('latin1')}" out of layer order`, {
        remediation: 'commit --parent needs entries depth first with names sorted bytewise, as the Extractor interface asks; commit without --parent.',
      })
    }

    this.previous = entry.path
    if (this.skip && isUnder(entry.path, this.skip)) return true
    this.skip = undefined
    if (isWhiteoutPath(entry.path)) {
      if (this.options.stats) this.options.stats.skipped.whiteoutNames++
      if (entry.type === 'directory') this.skip = entry.path
      return true
    }

    return false
  }

  /**
   * What needs no changeset item, settled without the generators of `step` (their cost, per entry, was most
   * of the merge): an entry left out (out of a skipped subtree, a `.wh.*` name), or one at the parent's next
   * path, with nothing to delete or close before it, and unchanged by its metadata and, for a file, by its
   * identity. Returns false for `step` to take the entry; a promise only when it has to wait (a new batch
   * of the parent's nodes, the record's writer), so that most entries cost no await.
   */
  private quiet(entry: Entry): boolean | Promise<boolean> {
    if (this.leftOut(entry)) return true
    const node = this.parentNodes.head
    if (!node || !node.path.equals(entry.path) || node.type !== entry.type || this.ignore(entry.path)) return false
    if (this.frames.length > 1 && !isUnder(entry.path, this.frames.at(-1)!.path)) return false
    const grouped = entry.type !== 'directory' && ((entry.links ?? 1) > 1 || node.group !== undefined || this.groups.has(entry.inode))
    if (grouped || !sameMeta(entry, node)) return false
    if (entry.type === 'file' && !(this.trusts(node) && sameIdentity(entry, node))) return false
    const loading = this.parentNodes.load()
    return loading ? loading.then(() => this.keepQuietly(entry, node)) : this.keepQuietly(entry, node)
  }

  private async record(node: TreeNode): Promise<void> {
    await this.options.onNode?.(node)
  }

  /**
   * One disk entry: first the parent's paths before it (deleted), then the entry against the parent's
   * node at its path, if any.
   *
   * @yields what the entry and the deletions before it add to the changeset
   */
  private async * step(entry: Entry): AsyncGenerator<LayerItem, void, undefined> {
    yield * this.deleteBefore(entry.path)
    yield * this.closeFrames(entry.path)
    const {head} = this.parentNodes
    const node = head && head.path.equals(entry.path) ? head : undefined
    if (node) await this.parentNodes.load()
    if (this.ignore(entry.path)) {
      if (entry.type === 'directory') this.skip = entry.path
      if (node) await this.keepParent(node)
      return
    }

    yield * this.entry(entry, node)
  }

  /**
   * A path whose metadata is as the parent has it: unchanged unless a file's content differs, which an
   * unchanged identity rules out without reading it.
   *
   * @yields the entry, when its content changed
   */
  private async * unchangedMeta(entry: Entry, node: TreeNode): AsyncGenerator<Entry, void, undefined> {
    if (entry.type !== 'file') {
      this.keep()
      await this.record(nodeFromEntry(entry))
      return
    }

    if (this.trusts(node) && sameIdentity(entry, node)) {
      this.keep()
      await this.record(nodeFromEntry(entry, node.sha256))
      return
    }

    const {chunks, sha256} = await hashContent(entry)
    if (sha256 === node.sha256) this.keep()
    else yield hashingEntry(entry, sha256, chunks).item
    await this.record(nodeFromEntry(entry, sha256))
  }
}
