// How the diff compares a disk entry with the parent's node at its path: by metadata, by ext4 identity, by content.
import {createHash} from 'node:crypto'

import type {Entry} from '../extractor/extractor.js'
import type {TreeNode} from './tree-record.js'

import {extractionError} from '../support/errors.js'

/** Files up to this size are kept in memory while hashed, so that a changed one is not read twice. */
const KEEP_BYTES = 1024 * 1024

export const EMPTY_SHA = createHash('sha256').digest('hex')

function sameXattrs(a: [string, Buffer][], b: [string, Buffer][]): boolean {
  return a.length === b.length && a.every(([name, value], i) => name === b[i][0] && value.equals(b[i][1]))
}

/** What sameMeta reads of an entry: an Entry, or an inode a DiskProbe read in place (no xattrs: none read). */
export type EntryMeta = Pick<Entry, 'devMajor' | 'devMinor' | 'gid' | 'linkTarget' | 'mode' | 'mtime' | 'size' | 'type' | 'uid'> & {xattrs?: Entry['xattrs']}

const NO_XATTRS: Entry['xattrs'] = []

/** Everything but content that an unpack sets on a path. */
export function sameMeta(entry: EntryMeta, node: TreeNode): boolean {
  // Comparisons without an array of them: this runs for every entry of the disk.
  if (entry.type !== node.type || entry.mode !== node.mode || entry.uid !== node.uid || entry.gid !== node.gid) return false
  if (entry.mtime.sec !== node.mtime.sec || entry.mtime.nsec !== node.mtime.nsec || entry.size !== node.size) return false
  if ((entry.devMajor ?? 0) !== (node.devMajor ?? 0) || (entry.devMinor ?? 0) !== (node.devMinor ?? 0)) return false
  return sameLink(entry.linkTarget, node.linkTarget) && sameXattrs(entry.xattrs ?? NO_XATTRS, node.xattrs)
}

function sameLink(a: Buffer | undefined, b: Buffer | undefined): boolean {
  return a === undefined ? b === undefined : b !== undefined && a.equals(b)
}

export function sameIdentity(entry: Pick<Entry, 'ctime' | 'generation' | 'inode'>, node: TreeNode): boolean {
  const id = node.identity
  if (id === undefined || entry.ctime === undefined || entry.generation === undefined) return false
  return id.inode === entry.inode && id.generation === entry.generation && id.ctime.sec === entry.ctime.sec && id.ctime.nsec === entry.ctime.nsec
}

/** Reads a file's content once: its sha256, and the bytes themselves when small. */
export async function hashContent(entry: Entry): Promise<{chunks?: Buffer[]; sha256: string}> {
  if (entry.size === 0) return {sha256: EMPTY_SHA}
  if (!entry.content) throw extractionError(`no content for "${entry.path.toString('latin1')}"`)
  const hash = createHash('sha256')
  const keep = entry.size <= KEEP_BYTES
  const chunks: Buffer[] = []
  let seen = 0
  for await (const chunk of entry.content()) {
    const piece = chunk as Buffer
    seen += piece.length
    hash.update(piece)
    if (keep) chunks.push(Buffer.from(piece))
  }

  if (seen !== entry.size) throw extractionError(`"${entry.path.toString('latin1')}" gave ${seen} bytes, ${entry.size} expected`)
  return keep ? {chunks, sha256: hash.digest('hex')} : {sha256: hash.digest('hex')}
}

/**
 * The entry as the layer archives it, with its content's sha256 once archived: `known` when given, else
 * hashed as the layer reads it (from `chunks` when the content was read already).
 */
export function hashingEntry(entry: Entry, known?: string, chunks?: Buffer[]): {item: Entry; sha256?: () => string | undefined} {
  if (entry.type !== 'file') return {item: entry}
  if (entry.size === 0) return {item: entry, sha256: () => EMPTY_SHA}
  if (chunks) return {item: {...entry, content: () => chunks}, sha256: () => known}
  const hash = createHash('sha256')
  const source = entry.content!
  const item: Entry = {
    ...entry,
    async * content() {
      for await (const chunk of source()) {
        hash.update(chunk as Buffer)
        yield chunk as Buffer
      }
    },
  }
  let digest: string | undefined
  const sha256 = (): string => {
    digest ??= hash.digest('hex')
    return digest
  }

  return {item, sha256: () => known ?? sha256()}
}
