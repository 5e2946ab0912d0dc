import type {Readable} from 'node:stream'

import {finished} from 'node:stream/promises'

import type {Entry, ExtractOptions} from './extractor.js'

import {extractionError} from '../support/errors.js'
import {BlockReader, ownedBlocks} from './block-reader.js'
import {
  type DirListing, type DirRecord, INODE_FLAGS, type InodeStat, parseDirListingCompact, parseStat, TYPE_BITS,
} from './debugfs-parse.js'
import {DebugfsSession} from './debugfs-session.js'
import {DirChildren} from './dir-children.js'
import {InodeReader} from './inode-reader.js'
import {keepXattr, SAFE_XATTR_NAME, vfsAcl} from './xattrs.js'

// The walk of one disk through a debugfs session: directories listed ahead, inodes read directly (debugfs
// `stat` as the fallback), xattrs and symlink targets fetched in batches, entries yielded depth first in name order.

/** ext4's root directory. */
export const ROOT_INODE = 2
/** Stats requested together: enough to hide round trips, few enough to bound memory on huge dirs. */
const STAT_BATCH = 256
/**
 * Directories whose listing and first stats are fetched ahead of the walk: enough that the walk seldom
 * waits for debugfs, few enough to bound memory (each holds at most two batches).
 */
const DIRS_AHEAD = 128
/**
 * With inodes read directly, debugfs only lists directories: a few listings ahead keep it busy, and
 * each load held ahead costs memory (a 100,000-entry directory's listing is ~20 MB of records).
 */
const DIRS_AHEAD_DIRECT = 8
/** Deeper trees are refused: no real root filesystem nests this deep, a crafted one may. */
export const MAX_DEPTH = 1024
/** ext4 symlink targets fit in one block; anything longer is corrupt. */
const MAX_LINK_TARGET = 65_536
/**
 * The first `size` bytes of a stream; the rest is read and dropped.
 *
 * @yields pieces of the first `size` bytes
 */
async function * leading(stream: Readable, size: number): AsyncGenerator<Buffer, void, undefined> {
  let left = size
  for await (const chunk of stream) {
    const piece = (chunk as Buffer).subarray(0, left)
    left -= piece.length
    if (piece.length > 0) yield piece
  }
}

function join(prefix: Buffer, name: Buffer): Buffer {
  if (prefix.length === 0) return name
  const joined = Buffer.allocUnsafe(prefix.length + 1 + name.length)
  prefix.copy(joined, 0)
  joined[prefix.length] = 0x2F
  name.copy(joined, prefix.length + 1)
  return joined
}

/** A directory's child with everything but its content. */
interface Child {
  linkTarget?: Buffer
  path: Buffer
  stat: InodeStat
  xattrs: [string, Buffer][]
}

/**
 * One directory's metadata, fetched from the moment it is created: the listing, then the children's
 * stats, xattrs and symlink targets in batches, each batch requested when the one before is taken.
 */
class DirLoad {
  private readonly batches: Promise<Child[]>[] = []
  private readonly records: Promise<DirChildren>

  constructor(
    private readonly walk: Walk,
    inode: number,
    private readonly prefix: Buffer,
  ) {
    this.records = walk.session.request(`ls -p <${inode}>`).then(reply => walk.children(parseDirListingCompact(reply), prefix))
    // Once the first children are known, their own directories can be fetched ahead too.
    this.batch(0).then(children => walk.fetchAhead(children), () => {})
  }

  /**
   * @yields the children in batches, in name order
   */
  async * children(): AsyncGenerator<Child[], void, undefined> {
    const records = await this.records
    for (let i = 0; i * STAT_BATCH < records.count; i++) {
      const batch = this.batch(i)
      if ((i + 1) * STAT_BATCH < records.count) this.batch(i + 1).catch(() => {})
      yield await batch
      delete this.batches[i]
    }
  }

  private batch(i: number): Promise<Child[]> {
    this.batches[i] ??= this.records.then(records => this.walk.load(records.records(i * STAT_BATCH, (i + 1) * STAT_BATCH), this.prefix))
    return this.batches[i]
  }
}

export class Walk {
  /** Directory loads started ahead of the walk, by inode. */
  private readonly ahead = new Map<number, DirLoad>()
  private readonly dirsAhead: number
  /** The `cat` the current entry's content came from, if any: drained before the walk goes on. */
  private streamed: Readable | undefined
  private readonly visitedDirs = new Set<number>([ROOT_INODE])

  constructor(
    readonly session: DebugfsSession,
    private readonly blocks: BlockReader,
    private readonly options: ExtractOptions,
    private readonly inodes: {onInode?: (source: 'debugfs' | 'direct') => void; reader?: InodeReader},
  ) {
    this.dirsAhead = inodes.reader ? DIRS_AHEAD_DIRECT : DIRS_AHEAD
  }

  children(listing: DirListing, prefix: Buffer): DirChildren {
    return DirChildren.of(listing, prefix, this.options.onSkip)
  }

  /**
   * The walk, depth first, with a stack of open directories instead of recursion: an entry deep in the
   * tree then passes through one generator, not one per level (a million entries pay for each).
   *
   * @yields the entries under the directory, parents before children
   */
  async * directory(inode: number, prefix: Buffer, depth: number): AsyncGenerator<Entry, void, undefined> {
    const open: {batch: Child[]; batches: AsyncGenerator<Child[], void, undefined>; depth: number; next: number}[] = []
    const enter = (dirInode: number, dirPrefix: Buffer, dirDepth: number): void => {
      if (dirDepth > MAX_DEPTH) throw extractionError(`directories nest deeper than ${MAX_DEPTH} levels at "/${dirPrefix.toString('latin1')}"`)
      const load = this.ahead.get(dirInode) ?? new DirLoad(this, dirInode, dirPrefix)
      this.ahead.delete(dirInode)
      open.push({
        batch: [], batches: load.children(), depth: dirDepth, next: 0,
      })
    }

    enter(inode, prefix, depth)
    while (open.length > 0) {
      const top = open.at(-1)!
      if (top.next === top.batch.length) {
        const batch = await top.batches.next()
        if (batch.done) {
          open.pop()
          continue
        }

        top.batch = batch.value
        top.next = 0
        // While this batch is archived, debugfs lists the directories it holds.
        this.fetchAhead(top.batch)
        continue
      }

      const child = top.batch[top.next++]
      const {path: entryPath, stat} = child
      if (stat.type === 'socket') {
        this.options.onSkip?.({path: entryPath, reason: 'socket'})
        continue
      }

      this.streamed = undefined
      yield this.entry(child)
      // The consumer asked for the next entry: it holds no piece of the content read so far.
      this.blocks.release()
      if (this.streamed) await this.settle(this.streamed)
      if (stat.type === 'directory') {
        if (this.visitedDirs.has(stat.inode)) {
          throw extractionError(
            `directory inode ${stat.inode} appears twice (at "/${entryPath.toString('latin1')}"): a hard-linked directory or a loop`,
            {remediation: 'The disk is corrupt or hostile; run `e2fsck -fn <rootfs>` on a copy to see the damage.'},
          )
        }

        this.visitedDirs.add(stat.inode)
        if (!this.options.prune?.(entryPath)) enter(stat.inode, entryPath, top.depth + 1)
      }
    }
  }

  /**
   * Starts loading the directories among `children` (at most DIRS_AHEAD loads wait at once), so that
   * debugfs always has work queued and the walk seldom waits for a reply. Loads start in the order the
   * walk will want them only roughly; a directory not fetched ahead is fetched when the walk reaches it.
   */
  fetchAhead(children: Child[]): void {
    for (const child of children) {
      if (this.ahead.size >= this.dirsAhead) return
      const {inode, type} = child.stat
      if (type !== 'directory' || this.visitedDirs.has(inode) || this.ahead.has(inode) || this.options.prune?.(child.path)) continue
      this.ahead.set(inode, new DirLoad(this, inode, child.path))
    }
  }

  /** Everything a batch of children needs besides file content, fetched together. */
  async load(records: DirRecord[], prefix: Buffer): Promise<Child[]> {
    // Inodes read directly need no promise each; the others are asked for together (one write to debugfs).
    const stats: (InodeStat | undefined)[] = records.map(record => this.inodes.reader?.stat(record.inode))
    const asked: Promise<void>[] = []
    for (const [j, record] of records.entries()) {
      this.inodes.onInode?.(stats[j] ? 'direct' : 'debugfs')
      if (!stats[j]) {
        asked.push(this.session.request(`stat <${record.inode}>`).then(reply => {
          stats[j] = parseStat(reply)
        }))
      }
    }

    if (asked.length > 0) await Promise.all(asked)
    const children: Child[] = []
    const extras: Promise<void>[] = []
    for (const [j, record] of records.entries()) {
      const stat = this.checkStat(stats[j]!, record, prefix)
      const child: Child = {path: join(prefix, record.name), stat, xattrs: []}
      children.push(child)
      // Sockets are left out of the layer: nothing of theirs is worth a request.
      const xattrs = stat.type !== 'socket' && stat.xattrs.length > 0
      if (xattrs || stat.type === 'symlink') {
        extras.push((async () => {
          const [values, target] = await Promise.all([
            xattrs ? this.xattrs(stat, child.path) : [],
            stat.type === 'symlink' ? this.linkTarget(stat, child.path) : undefined,
          ])
          child.xattrs = values
          child.linkTarget = target
        })())
      }
    }

    if (extras.length > 0) await Promise.all(extras)
    return children
  }

  private checkStat(stat: InodeStat, record: DirRecord, prefix: Buffer): InodeStat {
    // Only errors need it: building it for every entry costs a string each.
    const where = (): string => `"/${join(prefix, record.name).toString('latin1')}"`
    if (stat.type === 'bad' || (record.mode & 0o17_0000) !== TYPE_BITS[stat.type]) {
      throw extractionError(`inode ${record.inode} at ${where()} has an invalid or inconsistent type`)
    }

    if (stat.inode !== record.inode) throw extractionError(`debugfs answered for inode ${stat.inode} instead of ${record.inode}`)
    // A tar has no holes: a file larger than the whole filesystem would be that many bytes of zeros in the
    // layer. A crafted inode gets there in one field; a real one is a sparse file nobody wants in an image.
    const fsBytes = this.blocks.blocksCount * this.blocks.blockSize
    if (stat.type === 'file' && stat.size > fsBytes) {
      throw extractionError(`${where()} claims ${stat.size} bytes, more than the whole filesystem (${fsBytes} bytes)`, {
        remediation: 'A sparse file this large cannot go in a layer (tar stores its holes as zeros); remove it from the workspace, or check the disk with `e2fsck -fn <rootfs>` on a copy.',
      })
    }

    return stat
  }

  /**
   * A regular file's content: read from the image through its block map when the map accounts for every
   * block the inode owns; otherwise (inline data, encryption, or a map stat could not print, as for a
   * corrupt extent tree) streamed by `cat`, which fails loudly where the map is broken. A `cat` is kept
   * in `streamed`, so that the walk can drain it.
   */
  private content(stat: InodeStat, entryPath: Buffer): () => AsyncIterable<Buffer> | Iterable<Buffer> {
    if (stat.size === 0) return () => []
    const map = stat.blockMap
    const mappable = map !== undefined && (stat.flags & (INODE_FLAGS.inlineData | INODE_FLAGS.encrypted)) === 0
    const readable = mappable && ownedBlocks(stat, this.blocks.blockSize) === map.listed + (stat.xattrBlock === 0 ? 0 : 1)
    if (!readable) {
      return () => {
        // debugfs 1.47 `cat`s an inline file's whole inline area, padding included: take `size` bytes.
        const stream = this.session.stream(`cat <${stat.inode}>`, Math.max(stat.size, stat.inlineDataSize ?? 0))
        this.streamed = stream
        return stat.size < (stat.inlineDataSize ?? 0) ? leading(stream, stat.size) : stream
      }
    }

    return () => this.blocks.content(map.runs, stat.size, `"/${entryPath.toString('latin1')}"`)
  }

  private entry(child: Child): Entry {
    const {linkTarget, path: entryPath, stat, xattrs} = child
    // One object of one shape per entry: this runs for every inode of the disk.
    const entry: Entry = {
      content: undefined,
      ctime: stat.ctime,
      devMajor: undefined,
      devMinor: undefined,
      generation: stat.generation,
      gid: stat.gid,
      inode: stat.inode,
      linkTarget: undefined,
      links: stat.links,
      mode: stat.mode,
      mtime: stat.mtime,
      path: entryPath,
      size: 0,
      type: 'file',
      uid: stat.uid,
      xattrs,
    }
    switch (stat.type) {
    case 'block':
    case 'char': {
      entry.devMajor = stat.devMajor ?? 0
      entry.devMinor = stat.devMinor ?? 0
      entry.type = stat.type
      return entry
    }

    case 'directory':
    case 'fifo': {
      entry.type = stat.type
      return entry
    }

    case 'file': {
      entry.content = this.content(stat, entryPath)
      entry.size = stat.size
      return entry
    }

    case 'symlink': {
      entry.linkTarget = linkTarget
      entry.type = 'symlink'
      return entry
    }

    default: {
      throw extractionError(`inode ${stat.inode} has an unsupported type ${stat.type}`)
    }
    }
  }

  private async linkTarget(stat: InodeStat, entryPath: Buffer): Promise<Buffer> {
    let target = stat.fastLink
    if (target === undefined) {
      if (stat.size > MAX_LINK_TARGET) throw extractionError(`symlink "/${entryPath.toString('latin1')}" has an impossible length ${stat.size}`)
      const chunks: Buffer[] = []
      for await (const chunk of this.session.stream(`cat <${stat.inode}>`, stat.size)) chunks.push(chunk as Buffer)
      target = Buffer.concat(chunks)
    }

    if (target.length === 0 || target.includes(0)) {
      throw extractionError(`symlink "/${entryPath.toString('latin1')}" has an empty target or one holding NUL`)
    }

    return target
  }

  /** A `cat` the consumer did not read to its end is drained, so the replies behind it flow. */
  private async settle(content: Readable): Promise<void> {
    if (content.readableEnded) return
    content.resume()
    await finished(content)
  }

  private async xattrs(stat: InodeStat, entryPath: Buffer): Promise<[string, Buffer][]> {
    const wanted = stat.xattrs.filter(x => {
      if (keepXattr(x.name)) return true
      // system.data is ext4's inline-data store, not an attribute of the file.
      if (x.name !== 'system.data') this.options.onSkip?.({detail: x.name, path: entryPath, reason: 'xattr'})
      return false
    })
    const values = await Promise.all(wanted.map(async ({length, name}): Promise<[string, Buffer]> => {
      if (!SAFE_XATTR_NAME.test(name)) {
        throw extractionError(`"/${entryPath.toString('latin1')}" has an extended attribute with an unsafe name ${JSON.stringify(name)}`)
      }

      const reply = await this.session.request(`ea_get -V <${stat.inode}> "${name}"`)
      // -V prints the raw value and a newline.
      if (reply.at(-1) !== 0x0A) throw extractionError(`"/${entryPath.toString('latin1')}": cannot read xattr ${name}`)
      const value = Buffer.from(reply.subarray(0, -1))
      // ACLs list at their on-disk size but come back in the (longer) VFS form.
      if (name.startsWith('system.posix_acl_')) return [name, vfsAcl(value, entryPath)]
      if (value.length !== length) {
        throw extractionError(`"/${entryPath.toString('latin1')}": xattr ${name} is ${value.length} bytes, stat said ${length}`)
      }

      return [name, value]
    }))
    return values.sort((a, b) => (a[0] < b[0] ? -1 : (a[0] > b[0] ? 1 : 0)))
  }
}
