/**
 * The tree record: what an image's tree holds (one node per path, in layer order) plus the ext4 identity
 * of each inode, kept beside the image by our own commits so that the next `commit --parent` can diff
 * against it without reading the parent's layers. Gzipped NDJSON: a header line, one line per node, one
 * line of hard-link groups, and a trailer with the count, the image's diff_ids and the sha256 of every
 * line before it. A record is read twice: once whole to check it (and to learn the groups), then as a
 * stream for the merge.
 */
import {createHash, type Hash} from 'node:crypto'
import {once} from 'node:events'
import {createReadStream, createWriteStream, type WriteStream} from 'node:fs'
import {unlink} from 'node:fs/promises'
import {createGunzip, createGzip, type Gzip} from 'node:zlib'

import type {Entry, EntryType, Timestamp} from './extractor/extractor.js'
import type {OciLayout} from './layout.js'

import {ENTRY_TYPES} from './extractor/extractor.js'
import {checkEntryPath} from './layer.js'
import {ImageRecords} from './records.js'

/** The record's name in `ImageRecords`. */
export const TREE_RECORD = 'tree.ndjson.gz'
const FORMAT = 'microagent-tree'
const WRITE_BYTES = 256 * 1024
const VERSION = 1

/** An inode's ext4 identity: with the filesystem UUID, equal identities mean equal content. */
export interface Identity {
  ctime: Timestamp
  generation: number
  inode: number
}

/** One path of an image's tree, as an unpack of the image would have it. */
export interface TreeNode {
  devMajor?: number
  devMinor?: number
  gid: number
  /** Names sharing one inode share a key; keys are opaque and only meaningful within one tree. */
  group?: string
  identity?: Identity
  linkTarget?: Buffer
  mode: number
  mtime: Timestamp
  path: Buffer
  /** Hex sha256 of a regular file's content. */
  sha256?: string
  size: number
  type: EntryType
  uid: number
  xattrs: [string, Buffer][]
}

/** The node of an archived (or unchanged) entry; `sha256` is its content's, for files. */
export function nodeFromEntry(entry: Entry, sha256?: string): TreeNode {
  const node: TreeNode = {
    gid: entry.gid, mode: entry.mode, mtime: entry.mtime, path: entry.path, size: entry.size, type: entry.type, uid: entry.uid, xattrs: entry.xattrs,
  }
  if (entry.linkTarget) node.linkTarget = entry.linkTarget
  if (entry.type === 'block' || entry.type === 'char') {
    node.devMajor = entry.devMajor ?? 0
    node.devMinor = entry.devMinor ?? 0
  }

  if (entry.type === 'file') node.sha256 = sha256
  if (entry.type !== 'directory' && (entry.links ?? 1) > 1) node.group = `i${entry.inode}`
  if (entry.ctime && entry.generation !== undefined) node.identity = {ctime: entry.ctime, generation: entry.generation, inode: entry.inode}
  return node
}

/**
 * Layer order: depth first, names bytewise. Comparing with `/` taken as the lowest byte gives it, since
 * names hold neither `/` nor NUL: a directory comes right before its subtree, and the subtree before any
 * sibling that sorts after the directory's name.
 */
export function compareTreePaths(a: Buffer, b: Buffer): number {
  const n = Math.min(a.length, b.length)
  for (let i = 0; i < n; i++) {
    const x = a[i] === 0x2F ? 0 : a[i]
    const y = b[i] === 0x2F ? 0 : b[i]
    if (x !== y) return x - y
  }

  return a.length - b.length
}

/** Whether `path` lies under the directory `dir` (not equal to it). */
export function isUnder(path: Buffer, dir: Buffer): boolean {
  if (dir.length === 0) return path.length > 0
  return path.length > dir.length && path[dir.length] === 0x2F && path.subarray(0, dir.length).equals(dir)
}

export class TreeRecordError extends Error {}

interface NodeLine {
  d?: [number, number]
  g: number
  h?: string
  i?: [number, number, number, number]
  k?: string
  l?: string
  m: number
  p: string
  s: number
  t: string
  u: number
  w: [number, number]
  x?: [string, string][]
}

function nodeLine(node: TreeNode): NodeLine {
  const line: NodeLine = {
    g: node.gid, m: node.mode, p: node.path.toString('hex'), s: node.size, t: node.type, u: node.uid, w: [node.mtime.sec, node.mtime.nsec],
  }
  if (node.xattrs.length > 0) line.x = node.xattrs.map(([name, value]) => [name, value.toString('base64')])
  if (node.linkTarget) line.l = node.linkTarget.toString('hex')
  if (node.devMajor !== undefined) line.d = [node.devMajor, node.devMinor ?? 0]
  if (node.sha256) line.h = node.sha256
  if (node.group) line.k = node.group
  if (node.identity) line.i = [node.identity.inode, node.identity.generation, node.identity.ctime.sec, node.identity.ctime.nsec]
  return line
}

const HEX = /^(?:[0-9a-f]{2})*$/
const SHA = /^[0-9a-f]{64}$/

function int(value: unknown, min = 0): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min) throw new TreeRecordError(`bad number ${JSON.stringify(value)}`)
  return value
}

function hexBytes(value: unknown): Buffer {
  if (typeof value !== 'string' || !HEX.test(value)) throw new TreeRecordError('bad hex field')
  return Buffer.from(value, 'hex')
}

function timestamp(value: unknown): Timestamp {
  if (!Array.isArray(value) || value.length !== 2) throw new TreeRecordError('bad time')
  const nsec = int(value[1])
  if (nsec > 999_999_999) throw new TreeRecordError('bad time')
  return {nsec, sec: int(value[0], -(2 ** 40))}
}

function parseXattrs(raw: unknown): [string, Buffer][] {
  if (!Array.isArray(raw)) throw new TreeRecordError('bad xattrs')
  return raw.map(pair => {
    if (!Array.isArray(pair) || typeof pair[0] !== 'string' || typeof pair[1] !== 'string') throw new TreeRecordError('bad xattr')
    return [pair[0], Buffer.from(pair[1], 'base64')]
  })
}

function parseIdentity(raw: unknown): Identity {
  if (!Array.isArray(raw) || raw.length !== 4) throw new TreeRecordError('bad identity')
  return {ctime: timestamp([raw[2], raw[3]]), generation: int(raw[1]), inode: int(raw[0])}
}

function parseNode(raw: unknown): TreeNode {
  if (typeof raw !== 'object' || raw === null) throw new TreeRecordError('not an object')
  const line = raw as Record<string, unknown>
  const type = line.t as EntryType
  if (!ENTRY_TYPES.includes(type)) throw new TreeRecordError(`bad type ${JSON.stringify(line.t)}`)
  const path = hexBytes(line.p)
  try {
    checkEntryPath(path)
  } catch {
    throw new TreeRecordError('unsafe path')
  }

  const node: TreeNode = {
    gid: int(line.g), mode: int(line.m), mtime: timestamp(line.w), path, size: int(line.s), type, uid: int(line.u), xattrs: [],
  }
  if (node.mode > 0o7777 || (type !== 'file' && node.size > 0)) throw new TreeRecordError('bad mode or size')
  if (line.x !== undefined) node.xattrs = parseXattrs(line.x)
  if (line.l !== undefined) node.linkTarget = hexBytes(line.l)
  if ((type === 'symlink') !== (node.linkTarget !== undefined)) throw new TreeRecordError('symlink without target')
  if (line.d !== undefined) {
    if (!Array.isArray(line.d)) throw new TreeRecordError('bad device')
    node.devMajor = int(line.d[0])
    node.devMinor = int(line.d[1])
  }

  if (line.h !== undefined) {
    if (typeof line.h !== 'string' || !SHA.test(line.h)) throw new TreeRecordError('bad sha256')
    node.sha256 = line.h
  }

  if ((type === 'file') !== (node.sha256 !== undefined)) throw new TreeRecordError('file without sha256')
  if (line.k !== undefined) {
    if (typeof line.k !== 'string') throw new TreeRecordError('bad group')
    node.group = line.k
  }

  if (line.i !== undefined) node.identity = parseIdentity(line.i)
  return node
}

/**
 * Streams a tree record to a file. `add` nodes in layer order, then `finish` with the image's diff_ids;
 * the file is only complete (and only readable as a record) once `finish` has resolved.
 */
export class TreeRecordWriter {
  /** Set when the nodes came out of layer order (an extractor that does not sort): the record is not written. */
  invalid = false
  private count = 0
  private readonly groups = new Map<string, Buffer[]>()
  private readonly gzip: Gzip
  private readonly hash: Hash = createHash('sha256')
  private last: Buffer | undefined
  /** The newest ctime (seconds) among the identities: what the guest's clock said when it last changed anything. */
  private newestCtime = 0
  private readonly out: WriteStream
  private pending = ''

  constructor(file: string, fsUuid: string | undefined) {
    this.gzip = createGzip({level: 6})
    this.out = createWriteStream(file, {flags: 'wx', mode: 0o600})
    this.gzip.pipe(this.out)
    this.out.on('error', error => this.gzip.destroy(error))
    this.line({format: FORMAT, fs: fsUuid ?? null, version: VERSION})
  }

  /** Abandons the file (the caller removes it) once its handle is closed. */
  async abort(): Promise<void> {
    if (this.out.closed) return
    const closed = once(this.out, 'close').catch(() => {})
    this.gzip.destroy()
    this.out.destroy()
    await closed
  }

  async add(node: TreeNode): Promise<void> {
    if (this.invalid) return
    if (this.last && compareTreePaths(this.last, node.path) >= 0) {
      this.invalid = true
      return
    }

    this.last = node.path
    this.count++
    if (node.identity && node.identity.ctime.sec > this.newestCtime) this.newestCtime = node.identity.ctime.sec
    if (node.group !== undefined) {
      const names = this.groups.get(node.group)
      if (names) names.push(node.path)
      else this.groups.set(node.group, [node.path])
    }

    if (!this.line(nodeLine(node))) await once(this.gzip, 'drain')
  }

  /** Closes the file and returns its size in bytes. */
  async finish(diffIds: string[]): Promise<number> {
    const groups = [...this.groups.values()].filter(names => names.length > 1).map(names => names.map(name => name.toString('hex')))
    this.line({groups})
    this.flush()
    const digest = this.hash.digest('hex')
    const end = {
      diff_ids: diffIds, entries: this.count, newest_ctime: this.newestCtime, sha256: digest,
    }
    this.gzip.end(`${JSON.stringify({end})}\n`)
    await once(this.out, 'close')
    return this.out.bytesWritten
  }

  /** Lines are gathered into large writes: a zlib call per line costs more than the compression. */
  private flush(): boolean {
    const text = this.pending
    this.pending = ''
    this.hash.update(text)
    return this.gzip.write(text)
  }

  private line(value: unknown): boolean {
    this.pending += `${JSON.stringify(value)}\n`
    return this.pending.length < WRITE_BYTES || this.flush()
  }
}

/**
 * @yields the lines of a gzipped text file, without their newline
 */
async function * lines(file: string): AsyncGenerator<string, void, undefined> {
  let rest = ''
  const raw = createReadStream(file)
  const stream = createGunzip()
  raw.on('error', error => stream.destroy(error))
  raw.pipe(stream)
  for await (const chunk of stream) {
    rest += (chunk as Buffer).toString('latin1')
    let at = rest.indexOf('\n')
    let start = 0
    while (at !== -1) {
      yield rest.slice(start, at)
      start = at + 1
      at = rest.indexOf('\n', start)
    }

    rest = rest.slice(start)
  }

  if (rest !== '') throw new TreeRecordError('truncated')
}

export interface TreeRecord {
  /** The image's diff_ids, as the record's writer saw them. */
  diffIds: string[]
  entries: number
  /** UUID of the filesystem the identities come from, if any. */
  fsUuid?: string
  /** Hard-link groups of two names or more, by key. */
  groups: Map<string, Buffer[]>
  /** The newest ctime (seconds) of any identity in the record. */
  newestCtime: number
  /** Streams the nodes again, in layer order. The file must not change in between. */
  nodes(): AsyncGenerator<TreeNode, void, undefined>
}

/** Checks a record line by line, in one pass: what each line must be depends on the lines before it. */
class RecordCheck {
  count = 0
  end: undefined | {diff_ids: string[]; entries: number; newestCtime: number}
  groups: Map<string, Buffer[]> | undefined
  header: undefined | {fs: null | string}
  private readonly hash = createHash('sha256')
  private last: Buffer | undefined

  take(text: string): void {
    if (this.end) throw new TreeRecordError('data after the trailer')
    const value = JSON.parse(text) as Record<string, unknown>
    if (!this.header) this.takeHeader(value)
    else if ('end' in value) {
      this.takeTrailer(value.end as {diff_ids?: unknown; entries?: unknown; newest_ctime?: unknown; sha256?: unknown})
      return
    } else if ('groups' in value) this.takeGroups(value.groups)
    else this.takeNode(value)
    this.hash.update(`${text}\n`)
  }

  private takeGroups(raw: unknown): void {
    if (this.groups || !Array.isArray(raw)) throw new TreeRecordError('bad groups')
    this.groups = new Map()
    for (const [i, names] of (raw as unknown[]).entries()) {
      if (!Array.isArray(names) || names.length < 2) throw new TreeRecordError('bad group')
      this.groups.set(`#${i}`, names.map(name => hexBytes(name)))
    }
  }

  private takeHeader(value: Record<string, unknown>): void {
    if (value.format !== FORMAT || value.version !== VERSION) throw new TreeRecordError('not a tree record of this version')
    this.header = {fs: typeof value.fs === 'string' ? value.fs : null}
  }

  private takeNode(value: Record<string, unknown>): void {
    if (this.groups) throw new TreeRecordError('node after the groups')
    const node = parseNode(value)
    if (this.last && compareTreePaths(this.last, node.path) >= 0) throw new TreeRecordError('nodes out of order')
    this.last = node.path
    this.count++
  }

  private takeTrailer(trailer: {diff_ids?: unknown; entries?: unknown; newest_ctime?: unknown; sha256?: unknown}): void {
    if (!this.groups || trailer.sha256 !== this.hash.digest('hex') || trailer.entries !== this.count || !Array.isArray(trailer.diff_ids)) {
      throw new TreeRecordError('trailer does not match the record')
    }

    this.end = {diff_ids: trailer.diff_ids as string[], entries: this.count, newestCtime: int(trailer.newest_ctime, -(2 ** 40))}
  }
}

/**
 * Reads and checks a whole tree record: format, order, every field, the hash of its lines. Throws
 * TreeRecordError when anything is wrong; the caller then reads the image's layers instead.
 */
export async function openTreeRecord(file: string): Promise<TreeRecord> {
  const check = new RecordCheck()
  try {
    for await (const text of lines(file)) check.take(text)
  } catch (error) {
    if (error instanceof TreeRecordError) throw error
    throw new TreeRecordError((error as Error).message)
  }

  const {end, groups, header} = check
  if (!header || !groups || !end) throw new TreeRecordError('truncated')
  // Group keys are renamed on reading: the writer's keys index its own inodes; a node's key is mapped
  // through the names listed, so that a key names exactly the group the trailer lists.
  const keyOf = new Map<string, string>()
  for (const [key, names] of groups) for (const name of names) keyOf.set(name.toString('latin1'), key)
  return {
    diffIds: end.diff_ids,
    entries: end.entries,
    newestCtime: end.newestCtime,
    fsUuid: header.fs ?? undefined,
    groups,
    async * nodes() {
      let first = true
      for await (const text of lines(file)) {
        if (first) {
          first = false
          continue
        }

        const value = JSON.parse(text) as Record<string, unknown>
        if ('groups' in value) return
        const node = parseNode(value)
        const key = keyOf.get(node.path.toString('latin1'))
        if (key === undefined) delete node.group
        else node.group = key
        yield node
      }
    },
  }
}

/**
 * A tree record being written during a commit: streamed to a temp file in the layout's ingest folder (a
 * killed commit leaves it to the next layout's clean-up), then stored under the image's manifest digest,
 * atomically, before the tag moves.
 */
export class PendingTreeRecord {
  readonly add = (node: TreeNode): Promise<void> => this.writer.add(node)
  /** For `tarLayer`'s `onArchived`. */
  readonly archived = (entry: Entry, sha256: string | undefined): Promise<void> => this.writer.add(nodeFromEntry(entry, sha256))
  private readonly writer: TreeRecordWriter

  private constructor(private readonly temp: string, fsUuid: string | undefined) {
    this.writer = new TreeRecordWriter(temp, fsUuid)
  }

  static open(layout: OciLayout, fsUuid: string | undefined): PendingTreeRecord {
    return new PendingTreeRecord(layout.ingestPath('.tree'), fsUuid)
  }

  async discard(): Promise<void> {
    await this.writer.abort()
    await unlink(this.temp).catch(() => {})
  }

  /**
   * Completes the record and stores it as the image's; returns its size in bytes, or 0 when no record
   * could be kept (the extractor's entries were not in layer order).
   */
  async store(layout: OciLayout, manifestDigest: string, diffIds: string[]): Promise<number> {
    if (this.writer.invalid) {
      await this.discard()
      return 0
    }

    await this.writer.finish(diffIds)
    const size = await new ImageRecords(layout.root).writeStream(manifestDigest, TREE_RECORD, createReadStream(this.temp))
    await unlink(this.temp).catch(() => {})
    return size
  }
}
