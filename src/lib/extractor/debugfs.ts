import {Readable} from 'node:stream'
import {finished} from 'node:stream/promises'

import type {Entry, ExtractOptions, Extractor} from './extractor.js'

import {findDebugfs} from '../e2fsprogs.js'
import {extractionError} from '../errors.js'
import {
  type DirRecord, type InodeStat, parseDirListing, parseStat, TYPE_BITS,
} from './debugfs-parse.js'
import {DebugfsSession} from './debugfs-session.js'

const ROOT_INODE = 2
/** Stats requested together: enough to hide round trips, few enough to bound memory on huge dirs. */
const STAT_BATCH = 256
/** `cat`s queued ahead of the consumer: enough to hide the round trips, bounded by the pipe's back-pressure. */
const PREFETCH = 64
/** Deeper trees are refused: no real root filesystem nests this deep, a crafted one may. */
export const MAX_DEPTH = 1024
/** ext4 symlink targets fit in one block; anything longer is corrupt. */
const MAX_LINK_TARGET = 65_536
/** Names libss can take inside double quotes; xattr names outside this set are refused. */
const SAFE_XATTR_NAME = /^[\u0021\u0023-\u003C\u003E-\u007E]+$/
/** xattrs an image may carry. `trusted.overlay.*` is overlayfs bookkeeping that would change meaning in a layer. */
function keepXattr(name: string): boolean {
  if (name.startsWith('trusted.overlay.')) return false
  return (
    name.startsWith('user.')
    || name.startsWith('security.')
    || name.startsWith('trusted.')
    || name === 'system.posix_acl_access'
    || name === 'system.posix_acl_default'
  )
}

/** ACL entry tags whose id field means nothing; the kernel reports it as -1. */
const ACL_OWNERLESS_TAGS = new Set([0x01, 0x04, 0x10, 0x20])

/**
 * `ea_get` converts ACLs from ext4's on-disk form to the VFS form (version 2) that tar and OCI carry, but
 * writes 0 where the kernel writes 0xffffffff in ids that mean nothing; set them as the kernel does, so
 * the layer holds the bytes `getfattr` and GNU tar would.
 */
function vfsAcl(value: Buffer, entryPath: Buffer): Buffer {
  if (value.length < 4 || (value.length - 4) % 8 !== 0 || value.readUInt32LE(0) !== 2) {
    throw extractionError(`"/${entryPath.toString('latin1')}" has a malformed POSIX ACL`)
  }

  const acl = Buffer.from(value)
  for (let offset = 4; offset < acl.length; offset += 8) {
    if (ACL_OWNERLESS_TAGS.has(acl.readUInt16LE(offset))) acl.writeUInt32LE(0xFF_FF_FF_FF, offset + 4)
  }

  return acl
}

export interface DebugfsExtractorOptions {
  /** Path of the debugfs binary; found like microagent does when omitted. */
  binary?: string
}

function join(prefix: Buffer, name: Buffer): Buffer {
  return prefix.length === 0 ? name : Buffer.concat([prefix, Buffer.from('/'), name])
}

function checkName(name: Buffer, dir: Buffer): void {
  const text = name.toString('latin1')
  if (name.length === 0 || name.includes(0) || text === '.' || text === '..') {
    throw extractionError(
      `directory "/${dir.toString('latin1')}" holds an entry named ${JSON.stringify(text)}, which no valid ext4 filesystem has`,
      {remediation: 'The disk is corrupt or was edited by hand; run `e2fsck -fn <rootfs>` on a copy to see the damage.'},
    )
  }
}

/**
 * Extracts with one long-lived, read-only `debugfs` process: `ls -p` per directory, `stat` per inode,
 * `ea_get` per xattr, `cat` per file streamed straight to the consumer. Inodes are always addressed as
 * `<ino>`, so no guest name is ever sent to debugfs or joined to a host path.
 */
export class DebugfsExtractor implements Extractor {
  readonly name = 'debugfs'

  constructor(private readonly options: DebugfsExtractorOptions = {}) {}

  async * entries(disk: string, options: ExtractOptions = {}): AsyncGenerator<Entry, void, undefined> {
    const binary = this.options.binary ?? (await findDebugfs())
    const session = DebugfsSession.open(binary, disk)
    const onAbort = (): void => session.terminate(extractionError('extraction was cancelled'))
    options.signal?.addEventListener('abort', onAbort, {once: true})
    let done = false
    try {
      const root = parseStat(await session.request(`stat <${ROOT_INODE}>`))
      if (root.type !== 'directory') throw extractionError('the root inode is not a directory: the filesystem is corrupt')
      const walk = new Walk(session, options)
      yield * walk.directory(ROOT_INODE, Buffer.alloc(0), 0)
      done = true
    } finally {
      options.signal?.removeEventListener('abort', onAbort)
      if (done) await session.close()
      else {
        session.terminate(extractionError('extraction stopped early'))
        await session.close().catch(() => {})
      }
    }
  }
}

class Walk {
  private readonly visitedDirs = new Set<number>([ROOT_INODE])

  constructor(
    private readonly session: DebugfsSession,
    private readonly options: ExtractOptions,
  ) {}

  async * directory(inode: number, prefix: Buffer, depth: number): AsyncGenerator<Entry, void, undefined> {
    if (depth > MAX_DEPTH) throw extractionError(`directories nest deeper than ${MAX_DEPTH} levels at "/${prefix.toString('latin1')}"`)
    const children = this.children(parseDirListing(await this.session.request(`ls -p <${inode}>`)), prefix)
    for (let i = 0; i < children.length; i += STAT_BATCH) {
      const batch = children.slice(i, i + STAT_BATCH)
      const stats = await Promise.all(batch.map(child => this.session.request(`stat <${child.inode}>`)))
      const parsed = stats.map((reply, j) => this.checkStat(parseStat(reply), batch[j], prefix))
      const paths = batch.map(child => join(prefix, child.name))
      // Everything a batch needs besides file content, fetched together before any `cat` is queued.
      const [xattrs, targets] = await Promise.all([
        Promise.all(parsed.map((stat, j) => this.xattrs(stat, paths[j]))),
        Promise.all(parsed.map((stat, j) => (stat.type === 'symlink' ? this.linkTarget(stat, paths[j]) : undefined))),
      ])
      const prefetched = new Map<number, Readable>()
      for (const [j, stat] of parsed.entries()) {
        if (stat.type === 'socket') {
          this.options.onSkip?.({path: paths[j], reason: 'socket'})
          continue
        }

        if (stat.type === 'file' && !prefetched.has(j)) this.prefetch(parsed, j, prefetched)
        const content = prefetched.get(j)
        yield this.entry(stat, paths[j], xattrs[j], {content, linkTarget: targets[j]})
        prefetched.delete(j)
        if (content) await this.settle(content)
        if (stat.type === 'directory') {
          if (this.visitedDirs.has(stat.inode)) {
            throw extractionError(
              `directory inode ${stat.inode} appears twice (at "/${paths[j].toString('latin1')}"): a hard-linked directory or a loop`,
              {remediation: 'The disk is corrupt or hostile; run `e2fsck -fn <rootfs>` on a copy to see the damage.'},
            )
          }

          this.visitedDirs.add(stat.inode)
          yield * this.directory(stat.inode, paths[j], depth + 1)
        }
      }
    }
  }

  private checkStat(stat: InodeStat, record: DirRecord, prefix: Buffer): InodeStat {
    const where = `"/${join(prefix, record.name).toString('latin1')}"`
    if (stat.type === 'bad' || (record.mode & 0o17_0000) !== TYPE_BITS[stat.type]) {
      throw extractionError(`inode ${record.inode} at ${where} has an invalid or inconsistent type`)
    }

    if (stat.inode !== record.inode) throw extractionError(`debugfs answered for inode ${stat.inode} instead of ${record.inode}`)
    return stat
  }

  private children(records: DirRecord[], prefix: Buffer): DirRecord[] {
    const children: DirRecord[] = []
    for (const record of records) {
      // Empty dirent slots list as inode 0.
      if (record.inode === 0) continue
      const name = record.name.toString('latin1')
      if (name === '.' || name === '..') continue
      checkName(record.name, prefix)
      if (prefix.length === 0 && name === 'lost+found') {
        this.options.onSkip?.({path: record.name, reason: 'lost+found'})
        continue
      }

      children.push(record)
    }

    // Bytewise order makes the tar independent of the htree hash order debugfs lists in.
    children.sort((a, b) => Buffer.compare(a.name, b.name))
    for (let i = 1; i < children.length; i++) {
      if (children[i].name.equals(children[i - 1].name)) {
        throw extractionError(
          `directory "/${prefix.toString('latin1')}" holds two entries named "${children[i].name.toString('latin1')}"`,
          {remediation: 'The disk is corrupt or hostile; run `e2fsck -fn <rootfs>` on a copy to see the damage.'},
        )
      }
    }

    return children
  }

  /** `content` is the file's `cat`, already in flight (none for an empty file). */
  private entry(stat: InodeStat, entryPath: Buffer, xattrs: [string, Buffer][], extra: {content?: Readable; linkTarget?: Buffer}): Entry {
    const {content, linkTarget} = extra
    const base = {
      gid: stat.gid,
      inode: stat.inode,
      mode: stat.mode,
      mtime: stat.mtime,
      path: entryPath,
      size: 0,
      uid: stat.uid,
      xattrs,
    }
    switch (stat.type) {
    case 'block':
    case 'char': {
      return {
        ...base, devMajor: stat.devMajor ?? 0, devMinor: stat.devMinor ?? 0, type: stat.type,
      }
    }

    case 'directory':
    case 'fifo': {
      return {...base, type: stat.type}
    }

    case 'file': {
      return {
        ...base, content: (): Readable => content ?? Readable.from([]), size: stat.size, type: 'file',
      }
    }

    case 'symlink': {
      return {...base, linkTarget, type: 'symlink'}
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

  /**
   * Queues `cat` for the regular files from `start` up to the next directory (at most PREFETCH), so
   * debugfs reads ahead while the consumer compresses. Never past a directory: its `ls` would queue behind
   * content nobody reads until the recursion returns. Every file gets its `cat` in order, later names of
   * a hard-linked inode too, since a `cat` sent later would queue behind content not yet read.
   */
  private prefetch(stats: InodeStat[], start: number, into: Map<number, Readable>): void {
    for (let j = start, queued = 0; j < stats.length && queued < PREFETCH; j++) {
      const stat = stats[j]
      if (stat.type === 'directory') return
      if (stat.type !== 'file' || stat.size === 0) continue
      into.set(j, this.session.stream(`cat <${stat.inode}>`, stat.size))
      queued++
    }
  }

  /** Content the consumer did not read (a hard link, a name it left out) is drained, so the replies behind it flow. */
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
