import type {DirListing, DirRecord} from './debugfs-parse.js'
import type {Skip} from './extractor.js'

import {extractionError} from '../support/errors.js'
import {listingRecord} from './debugfs-parse.js'

const DOT = 0x2E
const LOST_FOUND = Buffer.from('lost+found')

/** Bytewise order of two records' names, by index. */
function byName({bytes, nameEnds, nameStarts}: DirListing): (a: number, b: number) => number {
  return (a, b) => {
    const a0 = nameStarts[a]
    const b0 = nameStarts[b]
    const aLength = nameEnds[a] - a0
    const bLength = nameEnds[b] - b0
    const n = Math.min(aLength, bLength)
    for (let k = 0; k < n; k++) {
      const d = bytes[a0 + k] - bytes[b0 + k]
      if (d !== 0) return d
    }

    return aLength - bLength
  }
}

function isDotOrDotDot(bytes: Buffer, start: number, end: number): boolean {
  return (end - start === 1 && bytes[start] === DOT) || (end - start === 2 && bytes[start] === DOT && bytes[start + 1] === DOT)
}

/** Refuses an empty name or one holding NUL, which no valid ext4 filesystem has (`.` and `..` are left out before). */
function checkName(bytes: Buffer, start: number, end: number, dir: Buffer): void {
  let bad = start === end
  for (let k = start; k < end && !bad; k++) bad = bytes[k] === 0
  if (bad) {
    throw extractionError(
      `directory "/${dir.toString('latin1')}" holds an entry named ${JSON.stringify(bytes.toString('latin1', start, end))}, which no valid ext4 filesystem has`,
      {remediation: 'The disk is corrupt or was edited by hand; run `e2fsck -fn <rootfs>` on a copy to see the damage.'},
    )
  }
}

/**
 * A directory's children in bytewise name order, which makes the tar independent of the htree hash order
 * debugfs lists in: empty slots, `.` and `..` left out, and `lost+found` at the root (reported as a
 * skip). The order is an index into the listing; records are made a batch at a time, so a directory of
 * 100,000 names costs no object per name until the walk reaches it.
 */
export class DirChildren {
  private constructor(
    private readonly listing: DirListing,
    private readonly order: Uint32Array,
  ) {}

  /** Sorts and checks a listing of the directory at `prefix` (names with NUL, empty names and duplicates are refused). */
  static of(listing: DirListing, prefix: Buffer, onSkip?: (skip: Skip) => void): DirChildren {
    const {
      bytes, count, inodes, nameEnds: ends, nameStarts: starts,
    } = listing
    const kept: number[] = []
    for (let i = 0; i < count; i++) {
      // Empty dirent slots list as inode 0.
      if (inodes[i] === 0 || isDotOrDotDot(bytes, starts[i], ends[i])) continue
      checkName(bytes, starts[i], ends[i], prefix)
      if (prefix.length === 0 && bytes.subarray(starts[i], ends[i]).equals(LOST_FOUND)) {
        onSkip?.({path: Buffer.from(LOST_FOUND), reason: 'lost+found'})
        continue
      }

      kept.push(i)
    }

    const compare = byName(listing)
    const order = Uint32Array.from(kept).sort(compare)
    for (let k = 1; k < order.length; k++) {
      const b = order[k]
      if (compare(order[k - 1], b) === 0) {
        throw extractionError(
          `directory "/${prefix.toString('latin1')}" holds two entries named "${bytes.toString('latin1', starts[b], ends[b])}"`,
          {remediation: 'The disk is corrupt or hostile; run `e2fsck -fn <rootfs>` on a copy to see the damage.'},
        )
      }
    }

    return new DirChildren(listing, order)
  }

  get count(): number {
    return this.order.length
  }

  /** The records of children `from` to `to` (exclusive), in name order. */
  records(from: number, to: number): DirRecord[] {
    const end = Math.min(to, this.order.length)
    return Array.from({length: Math.max(0, end - from)}, (_, k) => listingRecord(this.listing, this.order[from + k]))
  }
}
