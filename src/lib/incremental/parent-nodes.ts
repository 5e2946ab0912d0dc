import type {PlacedBatch, RecordSkips} from './tree-record-reader.js'
import type {TreeNode} from './tree-record.js'

/** The parent image's tree, from its tree record or from its layers. */
export interface ParentTree {
  /** The nodes once more, placed in the record file, in a stream of their own (a record can be read again; layers not). */
  again?: () => AsyncIterable<PlacedBatch>
  /** UUID of the filesystem the nodes' identities come from; identities are trusted only on the same one. */
  fsUuid?: string
  /** Hard-link groups of two names or more, by the key nodes carry in `group`. */
  groups: Map<string, Buffer[]>
  /** The nodes in layer order, in batches; read once. */
  nodes: AsyncIterable<TreeNode[]>
  /** With a record: the ranges of it that `nodes` leaves out, to be filled before `nodes` is first read. */
  skips?: RecordSkips
  /**
   * Identities whose ctime (seconds) is this or later are not trusted. A timestamp has a granularity (a
   * second on 128-byte inodes, a clock tick otherwise): a file changed again after the record, within the
   * same tick as the recorded change, would keep its ctime. Only changes older than the record by a margin
   * are safe (see parent-tree.ts for the margin and the clocks).
   */
  trustedBefore?: number
}

/**
 * The parent's rule for identities on this disk: whether a node's identity can stand for its content (same
 * filesystem, changed long enough before the record); undefined when none can (another filesystem, no UUID).
 */
export function identityTrust(parent: ParentTree, diskUuid: string | undefined): ((node: TreeNode) => boolean) | undefined {
  if (parent.fsUuid === undefined || parent.fsUuid !== diskUuid) return undefined
  const before = parent.trustedBefore ?? Number.POSITIVE_INFINITY
  return node => node.identity !== undefined && node.identity.ctime.sec < before
}

/** The parent's nodes, one at a time, from batches: only a batch boundary costs an await. */
export class Peek {
  head: TreeNode | undefined
  private at = 0
  private batch: TreeNode[] = []
  private readonly iterator: AsyncIterator<TreeNode[]>

  constructor(source: AsyncIterable<TreeNode[]>) {
    this.iterator = source[Symbol.asyncIterator]()
  }

  async close(): Promise<void> {
    await this.iterator.return?.()
  }

  /** Moves to the next node; returns a promise only when a new batch has to be read. */
  load(): Promise<void> | undefined {
    if (this.at < this.batch.length) {
      this.head = this.batch[this.at++]
      return
    }

    return this.iterator.next().then(next => {
      this.batch = next.done ? [] : next.value
      this.at = 0
      this.head = undefined
      return next.done ? undefined : this.load()
    })
  }
}
