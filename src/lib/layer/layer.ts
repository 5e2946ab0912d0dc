// eslint-disable-next-line n/no-unsupported-features/node-builtins -- crypto.hash is in Node since 20.12 (engines: >= 20.19); a release candidate there, stable from 22
import {createHash, type Hash, hash as sha256Hex} from 'node:crypto'

import type {Entry} from '../extractor/extractor.js'
import type {LayerStats} from './stats.js'

import {extractionError} from '../support/errors.js'
import {
  checkLayerPath, isWhiteout, type LayerItem, whiteoutHeader,
} from './names.js'
import {
  encodePlanned, END_OF_ARCHIVE, type HeaderFields, paddingLength, planHeader, TYPEFLAG, writeHeader,
} from './tar.js'

const SLASH = Buffer.from('/')

/** The header of an entry as a plain member (size 0, no link, no device): `member` fills in the rest. */
function headerFields(entry: Entry, tarPath: Buffer): HeaderFields {
  // One object of one shape per entry, every field present: this runs for every entry of the disk.
  return {
    devMajor: undefined,
    devMinor: undefined,
    gid: entry.gid,
    linkpath: undefined,
    mode: entry.mode,
    mtime: entry.mtime.sec,
    mtimeNsec: entry.mtime.nsec,
    path: tarPath,
    size: 0,
    typeflag: TYPEFLAG.file,
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
const zeroedChunk = (): Buffer => Buffer.allocUnsafe(TAR_CHUNK).fill(0)
const NO_BYTES = Buffer.alloc(0)

/**
 * A file's sha256 as its pieces pass: one call for a file of one piece (most are), which costs about half
 * of a Hash object's life; a Hash only from the second piece on.
 */
class ContentHash {
  private first: Buffer | undefined
  private hash: Hash | undefined

  digest(): string {
    return this.hash ? this.hash.digest('hex') : sha256Hex('sha256', this.first ?? NO_BYTES, 'hex')
  }

  update(piece: Buffer): void {
    if (this.hash) this.hash.update(piece)
    else if (this.first === undefined) this.first = piece
    else this.hash = createHash('sha256').update(this.first).update(piece)
  }
}

/** Whether content can be read without awaiting (the image's block reads are; a debugfs `cat` is not). */
function isSync(source: AsyncIterable<Buffer> | Iterable<Buffer>): source is Iterable<Buffer> {
  return typeof (source as Partial<Iterable<Buffer>>)[Symbol.iterator] === 'function'
}

/** The end of a file's content: it must have given exactly its size. */
function checkContentSize(entry: Entry, seen: number): void {
  if (seen !== entry.size) throw extractionError(`"${entry.path.toString('latin1')}" gave ${seen} bytes, ${entry.size} expected`)
}

/**
 * The tar as it is written. Small pieces (headers, small files, padding) are gathered into chunks of
 * TAR_CHUNK bytes; large pieces go through as they are, after whatever was gathered before them; `ready`
 * holds what can go out. Writing a member is synchronous: a million entries would otherwise pay several
 * promise hops each, so the layer awaits only the entries, content that is not read synchronously and
 * `onArchived`.
 */
class TarWriter {
  /** The first name of each inode archived so far, and the content hashes of multiply-linked ones. */
  readonly firstName = new Map<number, Buffer>()
  ready: Buffer[] = []
  readonly sha256 = new Map<number, string | undefined>()
  /**
   * Zeroed whole when it is made (one memset), so that headers and padding need no zeroing of their own: the
   * bytes past `used` are never written before they are taken.
   */
  private chunk = zeroedChunk()
  /** The file whose content is being written, its bytes so far and their hash. */
  private file: Entry | undefined
  private hash: ContentHash | undefined
  private seen = 0
  private used = 0

  constructor(private readonly stats: LayerStats) {}

  add(piece: Buffer): void {
    if (piece.length >= TAR_CHUNK / 4) {
      this.flush()
      this.ready.push(piece)
      return
    }

    if (this.used + piece.length > TAR_CHUNK) this.flush()
    piece.copy(this.chunk, this.used)
    this.used += piece.length
  }

  /** After the last piece: checks the size, pads the member, returns the hash (when hashing). */
  endContent(): string | undefined {
    const entry = this.file!
    checkContentSize(entry, this.seen)
    this.zeros(paddingLength(entry.size))
    this.stats.contentBytes += entry.size
    this.file = undefined
    const sha256 = this.hash?.digest()
    if ((entry.links ?? 2) > 1) this.sha256.set(entry.inode, sha256)
    return sha256
  }

  flush(): void {
    if (this.used === 0) return
    this.ready.push(this.chunk.subarray(0, this.used))
    this.chunk = zeroedChunk()
    this.used = 0
  }

  /** A member's header, written straight into the chunk being gathered. */
  header(fields: HeaderFields): void {
    const plan = planHeader(fields)
    if (plan.length >= TAR_CHUNK / 4) {
      // Large extended attributes: a buffer of its own, which `add` passes on as it is.
      this.add(encodePlanned(plan))
      return
    }

    if (this.used + plan.length > TAR_CHUNK) this.flush()
    writeHeader(this.chunk, this.used, plan)
    this.used += plan.length
  }

  /**
   * One entry's header (and for a hard link, all of it). Returns whether it was archived, and `content`
   * when its content is to follow (through `piece`, then `endContent`).
   */
  member(entry: Entry, hashing: boolean): 'content' | false | {sha256?: string} {
    const {stats} = this
    const whiteoutName = checkLayerPath(entry.path)
    if (whiteoutName) {
      // Only count the topmost one: its subtree goes with it.
      if (whiteoutName === 'last') stats.skipped.whiteoutNames++
      return false
    }

    const isDir = entry.type === 'directory'
    const fields = headerFields(entry, isDir ? Buffer.concat([entry.path, SLASH]) : entry.path)
    stats.entries++
    const earlier = isDir ? undefined : this.firstName.get(entry.inode)
    if (earlier !== undefined) {
      stats.hardlinks++
      fields.linkpath = earlier
      fields.typeflag = TYPEFLAG.hardlink
      fields.xattrs = []
      this.header(fields)
      return {sha256: this.sha256.get(entry.inode)}
    }

    // A name later entries can link to: only an inode with other links can have later names, so memory stays
    // flat in the number of files.
    if (!isDir && (entry.links === undefined || entry.links > 1)) this.firstName.set(entry.inode, entry.path)
    fields.typeflag = TYPEFLAG[entry.type]
    switch (entry.type) {
    case 'block':
    case 'char': {
      stats.devices++
      fields.devMajor = entry.devMajor
      fields.devMinor = entry.devMinor
      break
    }

    case 'directory': {
      stats.directories++
      break
    }

    case 'fifo': {
      stats.fifos++
      break
    }

    case 'file': {
      stats.files++
      fields.size = entry.size
      this.header(fields)
      this.file = entry
      this.seen = 0
      this.hash = hashing ? new ContentHash() : undefined
      return 'content'
    }

    case 'symlink': {
      stats.symlinks++
      fields.linkpath = entry.linkTarget
      break
    }
    }

    this.header(fields)
    return {}
  }

  /** Takes a piece of the current file's content; false once it gave more than its size (stop reading). */
  piece(chunk: Buffer): boolean {
    this.seen += chunk.length
    if (this.seen > this.file!.size) return false
    this.hash?.update(chunk)
    this.add(chunk)
    return true
  }

  /** The chunks ready to go out, in order; `ready` is empty after. */
  take(): Buffer[] {
    const {ready} = this
    this.ready = []
    return ready
  }

  /** `count` zero bytes (fewer than a block): the chunk's own. */
  zeros(count: number): void {
    if (this.used + count > TAR_CHUNK) this.flush()
    this.used += count
  }
}

/**
 * Copies a file's content into the tar; a chunk goes out as soon as it is ready, so a large file is never
 * held whole. A plain generator for content read synchronously: no promise per file.
 *
 * @yields the chunks that became ready
 */
function * copied(tar: TarWriter, source: Iterable<Buffer>): Generator<Buffer, void, undefined> {
  for (const piece of source) {
    if (!tar.piece(piece)) return
    if (tar.ready.length > 0) yield * tar.take()
  }
}

/**
 * As `copied`, for content that streams (a debugfs `cat`).
 *
 * @yields the chunks that became ready
 */
async function * copiedAsync(tar: TarWriter, source: AsyncIterable<Buffer>): AsyncGenerator<Buffer, void, undefined> {
  for await (const piece of source) {
    if (!tar.piece(piece)) return
    if (tar.ready.length > 0) yield * tar.take()
  }
}

/**
 * Turns entries into a deterministic pax tar: one member per name, in the order given; the first name of
 * a multiply-linked inode carries it, later names are tar hard links to it. Directories end in `/`.
 * Never holds a whole file in memory.
 *
 * @yields the tar, in chunks of about TAR_CHUNK bytes (a large piece of content as it is)
 */
export async function * tarLayer(entries: AsyncIterable<LayerItem>, stats: LayerStats, options: LayerOptions = {}): AsyncGenerator<Buffer, void, undefined> {
  const tar = new TarWriter(stats)
  const kept = options.exclude ? excluding(entries, options.exclude, stats) : entries
  const {onArchived} = options
  for await (const item of kept) {
    if (isWhiteout(item)) {
      stats.whiteouts++
      tar.add(whiteoutHeader(item))
      continue
    }

    let archived = tar.member(item, onArchived !== undefined)
    if (archived === 'content') {
      const source = item.size === 0 ? [] : item.content?.()
      if (!source) throw extractionError(`no content for "${item.path.toString('latin1')}"`)
      if (isSync(source)) for (const chunk of copied(tar, source)) yield chunk
      else for await (const chunk of copiedAsync(tar, source)) yield chunk
      archived = {sha256: tar.endContent()}
    }

    if (tar.ready.length > 0) for (const chunk of tar.take()) yield chunk
    if (archived && onArchived) {
      // Awaited only when it is asynchronous: most entries need no promise hop here.
      const heard = onArchived(item, archived.sha256)
      if (heard) await heard
    }
  }

  tar.add(END_OF_ARCHIVE)
  tar.flush()
  for (const chunk of tar.take()) yield chunk
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

/**
 * The file's content, checked against its size.
 *
 * @yields the content, in the extractor's pieces
 */
export async function * fileContent(entry: Entry): AsyncGenerator<Buffer, void, undefined> {
  if (entry.size === 0) return
  if (!entry.content) throw extractionError(`no content for "${entry.path.toString('latin1')}"`)
  let seen = 0
  for await (const chunk of entry.content()) {
    seen += (chunk as Buffer).length
    if (seen > entry.size) break
    yield chunk as Buffer
  }

  checkContentSize(entry, seen)
}
