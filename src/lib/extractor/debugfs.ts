import type {Entry, ExtractOptions, Extractor} from './extractor.js'

import {extractionError} from '../support/errors.js'
import {BlockReader} from './block-reader.js'
import {parseDirListing, parseStat, TYPE_BITS} from './debugfs-parse.js'
import {DebugfsSession} from './debugfs-session.js'
import {ROOT_INODE, Walk} from './debugfs-walk.js'
import {diskProbe} from './disk-probe.js'
import {readSuperblock} from './disk.js'
import {findDebugfs} from './e2fsprogs.js'
import {InodeReader} from './inode-reader.js'
import {openSandbox, type Sandbox} from './sandbox.js'

export interface DebugfsExtractorOptions {
  /** Path of the debugfs binary; found like microagent does when omitted. */
  binary?: string
  /** See SessionOptions.idleTimeoutMs. */
  idleTimeoutMs?: number
  /**
   * Where inodes are read: `direct` (the default) parses the inode tables in this process and asks debugfs
   * `stat` only for an inode the direct reader does not model (see InodeReader), or for all of them when
   * the filesystem has a feature it does not handle; `debugfs` asks `stat` for every inode (the reference).
   */
  inodes?: 'debugfs' | 'direct'
  /** Hears where each inode was read from: for tests and benchmarks. */
  onInode?: (source: 'debugfs' | 'direct') => void
  /** How debugfs is confined; when omitted, `openSandbox({mode: 'auto'})` (confined where bubblewrap works). */
  sandbox?: Sandbox
}

/**
 * Extracts with one long-lived, read-only `debugfs` process for metadata (`ls -p` per directory, `stat`
 * per inode, `ea_get` per xattr) and reads file content straight from the image through the block maps
 * `stat` prints (`cat` only for inline data and encrypted files). Inodes are always addressed as `<ino>`,
 * so no guest name is ever sent to debugfs or joined to a host path.
 */
export class DebugfsExtractor implements Extractor {
  readonly name = 'debugfs'

  constructor(private readonly options: DebugfsExtractorOptions = {}) {}

  async * entries(disk: string, options: ExtractOptions = {}): AsyncGenerator<Entry, void, undefined> {
    const binary = this.options.binary ?? (await findDebugfs())
    const sandbox = this.options.sandbox ?? (await openSandbox())
    const blocks = await BlockReader.open(disk)
    let session: DebugfsSession
    try {
      session = DebugfsSession.open(binary, disk, {idleTimeoutMs: this.options.idleTimeoutMs, sandbox})
    } catch (error) {
      blocks.close()
      throw error
    }

    const onAbort = (): void => session.terminate(extractionError('extraction was cancelled'))
    options.signal?.addEventListener('abort', onAbort, {once: true})
    let done = false
    let inodes: InodeReader | undefined
    try {
      // Asked first, answered once debugfs is up (bubblewrap, then opening the filesystem: tens of ms); the
      // probe needs only the direct readers, so it runs meanwhile. A failure of either still fails the walk.
      const rootStat = session.request(`stat <${ROOT_INODE}>`)
      rootStat.catch(() => {})
      const direct = this.options.inodes === 'debugfs' ? undefined : InodeReader.open(disk)
      inodes = typeof direct === 'string' ? undefined : direct
      // Without the direct reader there is nothing to probe with: the caller then walks everything.
      if (inodes && options.probe) await options.probe(diskProbe(inodes, blocks))
      const root = parseStat(await rootStat)
      if (root.type !== 'directory') throw extractionError('the root inode is not a directory: the filesystem is corrupt')
      const walk = new Walk(session, blocks, options, {onInode: this.options.onInode, reader: inodes})
      yield * walk.directory(ROOT_INODE, Buffer.alloc(0), 0)
      await options.beforeClose?.()
      done = true
    } finally {
      options.signal?.removeEventListener('abort', onAbort)
      blocks.close()
      inodes?.close()
      if (done) await session.close()
      else {
        session.terminate(extractionError('extraction stopped early'))
        await session.close().catch(() => {})
      }
    }
  }

  async filesystemUuid(disk: string): Promise<string | undefined> {
    return (await readSuperblock(disk)).uuid
  }

  /** Every path through one short session: one process (and one sandbox) for all of them. */
  async readFiles(disk: string, filePaths: Buffer[], maxBytes: number): Promise<(Buffer | undefined)[]> {
    const binary = this.options.binary ?? (await findDebugfs())
    // Confined like the walk: this session parses the same guest-controlled disk.
    const sandbox = this.options.sandbox ?? (await openSandbox())
    const session = DebugfsSession.open(binary, disk, {idleTimeoutMs: this.options.idleTimeoutMs, sandbox})
    try {
      const found: (Buffer | undefined)[] = []
      for (const filePath of filePaths) found.push(await readFileByPath(session, filePath, maxBytes))
      await session.close()
      return found
    } catch (error) {
      session.terminate(extractionError('reading a file failed'))
      await session.close().catch(() => {})
      throw error
    }
  }
}

/**
 * One regular file by path, through its own short debugfs session: each component is looked up in its
 * directory's `ls -p` listing (names are compared as bytes, never sent to debugfs), symlinks are not followed.
 */
async function readFileByPath(session: DebugfsSession, filePath: Buffer, maxBytes: number): Promise<Buffer | undefined> {
  let inode = ROOT_INODE
  const components = filePath.toString('latin1').split('/')
  for (const [i, component] of components.entries()) {
    const name = Buffer.from(component, 'latin1')
    const record = parseDirListing(await session.request(`ls -p <${inode}>`)).find(r => r.inode !== 0 && r.name.equals(name))
    if (!record) return undefined
    const wanted = i === components.length - 1 ? TYPE_BITS.file : TYPE_BITS.directory
    if ((record.mode & 0o17_0000) !== wanted) return undefined
    inode = record.inode
  }

  const stat = parseStat(await session.request(`stat <${inode}>`))
  if (stat.type !== 'file' || stat.size > maxBytes) return undefined
  const chunks: Buffer[] = []
  // As in Walk.content: an inline file `cat`s its whole inline area.
  for await (const chunk of session.stream(`cat <${inode}>`, Math.max(stat.size, stat.inlineDataSize ?? 0))) chunks.push(chunk as Buffer)
  return Buffer.concat(chunks).subarray(0, stat.size)
}
