/**
 * Hard links in the diff. Image-spec `layer.md` lets a layer hold links only to names in the same layer, so
 * a multiply-linked inode is either left alone entirely (same content, same metadata, and exactly the names
 * its parent group had) or archived whole, every name of it, the first carrying the content. A group is
 * judged once all its names were seen (its link count), or at the end of the walk.
 */
import type {Entry} from '../extractor/extractor.js'
import type {TreeNode} from './tree-record.js'

import {
  hashContent, hashingEntry, sameIdentity, sameMeta,
} from './compare.js'
import {nodeFromEntry} from './tree-record.js'

interface Member {
  changed: boolean
  entry: Entry
  parent?: TreeNode
}

/** A multiply-linked inode whose fate is not decided yet. */
interface Group {
  decided?: 'emit' | 'keep'
  /** Its names' link count on disk: once that many were seen, the group can be judged. */
  links: number
  members: Member[]
  seen: number
  sha256?: string
}

/** What the groups need of the merge. */
export interface GroupMerge {
  /** Something of the parent's subtree at the current directory stays as the layers below have it. */
  keep(): void
  /** The node goes to the new tree record. */
  record(node: TreeNode): Promise<void>
  /** Whether the node's identity can stand for its content. */
  trusts(node: TreeNode): boolean
}

export class LinkGroups {
  private readonly groups = new Map<number, Group>()

  constructor(
    /** The parent's groups of two names or more, by the key nodes carry. */
    private readonly parentGroups: Map<string, Buffer[]>,
    private readonly merge: GroupMerge,
  ) {}

  /** Whether the inode has a group open (a name of it was seen). */
  has(inode: number): boolean {
    return this.groups.has(inode)
  }

  /**
   * One name of a grouped inode, against the parent's node at its path (if of the same type).
   *
   * @yields the group's names, once it is known to have changed
   */
  async * member(entry: Entry, node: TreeNode | undefined): AsyncGenerator<Entry, void, undefined> {
    let group = this.groups.get(entry.inode)
    if (!group) {
      group = {links: entry.links ?? 1, members: [], seen: 0}
      this.groups.set(entry.inode, group)
    }

    group.seen++
    if (group.decided === 'emit') {
      yield entry
      await this.merge.record(nodeFromEntry(entry, group.sha256))
      return
    }

    let changed = node === undefined || !sameMeta(entry, node)
    if (!changed && entry.type === 'file') {
      if (group.sha256 === undefined) {
        group.sha256 = this.merge.trusts(node!) && sameIdentity(entry, node!) ? node!.sha256 : (await hashContent(entry)).sha256
      }

      changed = group.sha256 !== node!.sha256
    }

    group.members.push({changed, entry, parent: node})
    // A name seen again after the group was judged unchanged: it has more names than its link count said.
    if (changed || group.decided === 'keep') {
      yield * this.emit(group)
      await this.merge.record(nodeFromEntry(entry, group.sha256))
      return
    }

    this.merge.keep()
    await this.merge.record(nodeFromEntry(entry, group.sha256))
    if (group.seen >= group.links) yield * this.settle(group)
  }

  /**
   * Judges the groups still open at the end of the walk.
   *
   * @yields the names of those that changed
   */
  async * settleAll(): AsyncGenerator<Entry, void, undefined> {
    for (const group of this.groups.values()) if (group.decided === undefined) yield * this.settle(group)
  }

  private async * emit(group: Group): AsyncGenerator<Entry, void, undefined> {
    group.decided = 'emit'
    for (const member of group.members.splice(0)) {
      const {item, sha256} = hashingEntry(member.entry, group.sha256)
      yield item
      group.sha256 ??= sha256?.()
    }
  }

  /**
   * Judges a group all of whose names were seen: unchanged only if its names are exactly the parent group's.
   *
   * @yields every name of the group, when it changed
   */
  private async * settle(group: Group): AsyncGenerator<Entry, void, undefined> {
    const {members} = group
    const key = members[0].parent?.group
    const names = key === undefined ? undefined : this.parentGroups.get(key)
    const clean = members.every(m => !m.changed && m.parent?.group === key) && (
      key === undefined
        ? members.length === 1
        : names !== undefined && names.length === members.length && names.every(name => members.some(m => m.entry.path.equals(name)))
    )
    if (clean) {
      // The members stay: should a name beyond the link count turn up, the whole group is archived after all.
      group.decided = 'keep'
      return
    }

    yield * this.emit(group)
  }
}
