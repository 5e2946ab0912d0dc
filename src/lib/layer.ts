import {createHash, type Hash} from 'node:crypto'

import type {Entry, Skip} from './extractor/extractor.js'

import {extractionError} from './errors.js'
import {
  encodeHeader, END_OF_ARCHIVE, type HeaderFields, padding, TYPEFLAG,
} from './tar.js'

export interface LayerStats {
  /** Content bytes of regular files (before tar framing). */
  contentBytes: number
  devices: number
  directories: number
  /** Members in the tar, hard links included. */
  entries: number
  fifos: number
  files: number
  hardlinks: number
  skipped: {
    /** Entries named by --exclude, counting a directory once for its whole subtree. */
    excluded: number
    lostFound: number
    sockets: number
    /** Names that OCI consumers would read as whiteouts (`.wh.*`), left out with their subtrees. */
    whiteoutNames: number
    xattrs: number
  }
  symlinks: number
  /** Whiteouts (`.wh.<name>` and opaque `.wh..wh..opq`) in a diff layer. */
  whiteouts: number
}

/**
 * A deletion in a diff layer: `path` is gone (written as `.wh.<name>` beside it), or, when `opaque`, the
 * directory `path` hides everything the layers below hold in it (written as `path/.wh..wh..opq`).
 */
export interface Whiteout {
  kind: 'whiteout'
  opaque?: boolean
  path: Buffer
}

export type LayerItem = Entry | Whiteout

export function isWhiteout(item: LayerItem): item is Whiteout {
  return (item as Partial<Whiteout>).kind === 'whiteout'
}

export function emptyLayerStats(): LayerStats {
  return {
    contentBytes: 0,
    devices: 0,
    directories: 0,
    entries: 0,
    fifos: 0,
    files: 0,
    hardlinks: 0,
    skipped: {
      excluded: 0, lostFound: 0, sockets: 0, whiteoutNames: 0, xattrs: 0,
    },
    symlinks: 0,
    whiteouts: 0,
  }
}

/** Counts an extractor's skip report into the stats. */
export function countSkip(stats: LayerStats, skip: Skip): void {
  switch (skip.reason) {
  case 'lost+found': {
    stats.skipped.lostFound++
    break;
  }

  case 'socket': {
    stats.skipped.sockets++
    break;
  }

  case 'xattr': {
    stats.skipped.xattrs++
    break;
  }

  default: {stats.skipped.whiteoutNames++
  }
  }
}

const WHITEOUT_PREFIX = Buffer.from('.wh.')

/**
 * Refuses any path a tar reader could place outside the root: absolute, empty or `.`/`..` components,
 * NUL bytes. Extractors promise this already; the layer checks again because it owns the tar.
 */
export function checkEntryPath(entryPath: Buffer): Buffer[] {
  const components: Buffer[] = []
  let start = 0
  for (;;) {
    const slash = entryPath.indexOf(0x2F, start)
    const component = entryPath.subarray(start, slash === -1 ? entryPath.length : slash)
    // Bytes, not text: this runs for every component of every entry.
    const dots = component.length <= 2 && component.every(byte => byte === 0x2E)
    if (component.length === 0 || dots || component.includes(0)) {
      throw extractionError(`refusing an unsafe path in the layer: ${JSON.stringify(entryPath.toString('latin1'))}`)
    }

    components.push(component)
    if (slash === -1) return components
    start = slash + 1
  }
}

/** Whether any component of a path is named `.wh.*`. */
export function isWhiteoutPath(entryPath: Buffer): boolean {
  return isWhiteoutName(checkEntryPath(entryPath))
}

const OPAQUE = Buffer.from('.wh..wh..opq')

/** The tar member of a whiteout: an empty file, owned by root, mode 0, time 0, so that it is deterministic. */
function whiteoutHeader(whiteout: Whiteout): Buffer {
  const components = checkEntryPath(whiteout.path)
  if (isWhiteoutName(components)) throw extractionError(`refusing a whiteout of a whiteout name: "${whiteout.path.toString('latin1')}"`)
  const name = whiteout.opaque ? [...components, OPAQUE] : [...components.slice(0, -1), Buffer.concat([WHITEOUT_PREFIX, components.at(-1)!])]
  return encodeHeader({
    gid: 0, mode: 0, mtime: 0, path: Buffer.concat(name.flatMap((c, i) => (i === 0 ? [c] : [Buffer.from('/'), c]))), size: 0, typeflag: TYPEFLAG.file, uid: 0,
  })
}

function isWhiteoutName(components: Buffer[]): boolean {
  return components.some(c => c.subarray(0, WHITEOUT_PREFIX.length).equals(WHITEOUT_PREFIX))
}

function headerFields(entry: Entry, tarPath: Buffer): Omit<HeaderFields, 'size' | 'typeflag'> {
  return {
    gid: entry.gid,
    mode: entry.mode,
    mtime: entry.mtime.sec,
    mtimeNsec: entry.mtime.nsec,
    path: tarPath,
    uid: entry.uid,
    xattrs: entry.xattrs,
  }
}

export interface LayerOptions {
  /** Paths to leave out (with their subtrees), e.g. from `pathMatcher`. */
  exclude?: (path: Buffer) => boolean
  /**
   * Hears each entry once archived, with its content's hex sha256 (files only), for the tree record.
   * Setting it makes the layer hash file content as it streams.
   */
  onArchived?: (entry: Entry, sha256: string | undefined) => Promise<void> | void
}

/** Output chunk size: pieces smaller than this are gathered, so the stages after see few, large chunks. */
export const TAR_CHUNK = 1024 * 1024
/** Shared, never modified: most pieces only fill the current chunk. */
const NOTHING_READY: readonly Buffer[] = []

/**
 * Gathers small pieces (headers, small files, padding) into chunks of TAR_CHUNK bytes; large pieces go
 * through as they are, after whatever was gathered before them.
 */
class Gatherer {
  private chunk = Buffer.allocUnsafe(TAR_CHUNK)
  private used = 0

  /** Takes a piece; returns the chunks now ready, in order. */
  add(piece: Buffer): readonly Buffer[] {
    if (piece.length >= TAR_CHUNK / 4) return [...this.flush(), piece]
    const ready = this.used + piece.length > TAR_CHUNK ? this.flush() : NOTHING_READY
    piece.copy(this.chunk, this.used)
    this.used += piece.length
    return ready
  }

  flush(): readonly Buffer[] {
    if (this.used === 0) return NOTHING_READY
    const ready = this.chunk.subarray(0, this.used)
    this.chunk = Buffer.allocUnsafe(TAR_CHUNK)
    this.used = 0
    return [ready]
  }
}

/**
 * Turns entries into a deterministic pax tar: one member per name, in the order given; the first name of
 * a multiply-linked inode carries it, later names are tar hard links to it. Directories end in `/`.
 * Never holds a whole file in memory.
 *
 * @yields header blocks and file content, as they stream
 */
export async function * tarLayer(entries: AsyncIterable<LayerItem>, stats: LayerStats, options: LayerOptions = {}): AsyncGenerator<Buffer, void, undefined> {
  const gatherer = new Gatherer()
  const kept = options.exclude ? excluding(entries, options.exclude, stats) : entries
  for await (const piece of tarPieces(kept, stats, options.onArchived)) {
    // A plain loop: `yield*` over an array wraps it in an async iterator, for each of millions of pieces.
    for (const chunk of gatherer.add(piece)) yield chunk
  }

  for (const chunk of gatherer.flush()) yield chunk
}

/**
 * Drops the entries the matcher names, with the subtrees of matched directories. Entries come depth
 * first, so a subtree is one run of paths under the directory's. This runs before hard links are
 * resolved: when the first name of an inode is excluded, the next kept name carries the content.
 * @yields the entries that stay
 */
export async function * excluding<T extends LayerItem>(entries: AsyncIterable<T>, exclude: (path: Buffer) => boolean, stats: LayerStats): AsyncGenerator<T, void, undefined> {
  let prefix: Buffer | undefined
  for await (const entry of entries) {
    if (isWhiteout(entry)) {
      yield entry
      continue
    }

    if (prefix && entry.path.length > prefix.length && entry.path.subarray(0, prefix.length).equals(prefix)) continue
    prefix = undefined
    if (!exclude(entry.path)) {
      yield entry
      continue
    }

    stats.skipped.excluded++
    if (entry.type === 'directory') prefix = Buffer.concat([entry.path, Buffer.from('/')])
  }
}

async function * tarPieces(entries: AsyncIterable<LayerItem>, stats: LayerStats, onArchived?: LayerOptions['onArchived']): AsyncGenerator<Buffer, void, undefined> {
  const links: Links = {firstName: new Map(), sha256: new Map()}
  for await (const entry of entries) {
    if (isWhiteout(entry)) {
      stats.whiteouts++
      yield whiteoutHeader(entry)
      continue
    }

    const archived = yield * entryPieces(entry, stats, links, onArchived !== undefined)
    if (archived) await onArchived?.(entry, archived.sha256)
  }

  yield END_OF_ARCHIVE
}

/** The first name of each inode archived so far, and the content hashes of multiply-linked ones. */
interface Links {
  firstName: Map<number, Buffer>
  sha256: Map<number, string | undefined>
}

/**
 * One entry's header and content. Returns whether it was archived and, when `hashing`, a file's sha256.
 *
 * @yields the entry's tar pieces
 */
async function * entryPieces(entry: Entry, stats: LayerStats, links: Links, hashing: boolean): AsyncGenerator<Buffer, false | {sha256?: string}, undefined> {
  const components = checkEntryPath(entry.path)
  if (isWhiteoutName(components)) {
    // Only count the topmost one: its subtree goes with it.
    if (!isWhiteoutName(components.slice(0, -1))) stats.skipped.whiteoutNames++
    return false
  }

  const isDir = entry.type === 'directory'
  const tarPath = isDir ? Buffer.concat([entry.path, Buffer.from('/')]) : entry.path
  const fields = headerFields(entry, tarPath)
  stats.entries++
  const earlier = isDir ? undefined : links.firstName.get(entry.inode)
  if (earlier !== undefined) {
    stats.hardlinks++
    yield encodeHeader({
      ...fields, linkpath: earlier, size: 0, typeflag: TYPEFLAG.hardlink, xattrs: [],
    })
    return {sha256: links.sha256.get(entry.inode)}
  }

  // A name later entries can link to: only an inode with other links can have later names, so memory stays
  // flat in the number of files.
  if (!isDir && (entry.links === undefined || entry.links > 1)) links.firstName.set(entry.inode, entry.path)
  switch (entry.type) {
  case 'block':
  case 'char': {
    stats.devices++
    yield encodeHeader({
      ...fields, devMajor: entry.devMajor, devMinor: entry.devMinor, size: 0, typeflag: TYPEFLAG[entry.type],
    })
    break
  }

  case 'directory': {
    stats.directories++
    yield encodeHeader({...fields, size: 0, typeflag: TYPEFLAG.directory})
    break
  }

  case 'fifo': {
    stats.fifos++
    yield encodeHeader({...fields, size: 0, typeflag: TYPEFLAG.fifo})
    break
  }

  case 'file': {
    stats.files++
    yield encodeHeader({...fields, size: entry.size, typeflag: TYPEFLAG.file})
    const hash = hashing ? createHash('sha256') : undefined
    yield * fileContent(entry, hash)
    yield padding(entry.size)
    stats.contentBytes += entry.size
    const sha256 = hash?.digest('hex')
    if ((entry.links ?? 2) > 1) links.sha256.set(entry.inode, sha256)
    return {sha256}
  }

  case 'symlink': {
    stats.symlinks++
    yield encodeHeader({
      ...fields, linkpath: entry.linkTarget, size: 0, typeflag: TYPEFLAG.symlink,
    })
    break
  }
  }

  return {}
}

/**
 * The file's content, checked against its size, hashed into `hash` when given (for the tree record).
 *
 * @yields the content, in the extractor's pieces
 */
export async function * fileContent(entry: Entry, hash?: Hash): AsyncGenerator<Buffer, void, undefined> {
  if (entry.size === 0) return
  if (!entry.content) throw extractionError(`no content for "${entry.path.toString('latin1')}"`)
  let seen = 0
  for await (const chunk of entry.content()) {
    seen += (chunk as Buffer).length
    if (seen > entry.size) break
    hash?.update(chunk as Buffer)
    yield chunk as Buffer
  }

  if (seen !== entry.size) {
    throw extractionError(`"${entry.path.toString('latin1')}" gave ${seen} bytes, ${entry.size} expected`)
  }
}
