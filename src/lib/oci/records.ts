/**
 * Local records kept beside each committed image: what this host knows about an image that the image itself
 * must not carry (secret findings, the tree record of incremental commits). They live in the layout's
 * `records/sha256/<manifest hex>/` folder, keyed by the manifest digest, so two tags of one image share them.
 * They are never part of a manifest, so nothing ever pushes them; `untag` removes them with the manifest.
 */
import type {Readable} from 'node:stream'

import {createReadStream, createWriteStream} from 'node:fs'
import {
  mkdir, readdir, readFile, rename, rm, stat, unlink,
} from 'node:fs/promises'
import path from 'node:path'
import {pipeline} from 'node:stream/promises'

import {usageError} from '../support/errors.js'
import {fsync, syncDir, writeAtomic} from '../support/files.js'
import {DIGEST_PATTERN} from './digest.js'

/** Record names are fixed identifiers chosen by this package, never user input. */
const RECORD_NAME = /^[a-z][a-z0-9.-]{0,63}$/

export class ImageRecords {
  /** `layoutRoot` is the OCI layout the images live in (`layoutPath(stateDir)`). */
  constructor(readonly layoutRoot: string) {}

  /**
   * Makes a complete file this process wrote (in the same layout) the record, atomically: synced and renamed
   * into place, not copied (a tree record of a million entries is some 65 MB); copied when the rename
   * crosses filesystems. The file is gone afterwards either way. `synced`: the caller has synced the file
   * since it last wrote it (a second sync would find nothing to write, and still cost a system call).
   */
  async adopt(manifestDigest: string, name: string, file: string, {synced = false} = {}): Promise<number> {
    const target = this.path(manifestDigest, name)
    await mkdir(path.dirname(target), {mode: 0o700, recursive: true})
    if (!synced) await fsync(file)
    try {
      await rename(file, target)
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EXDEV') throw error
      const size = await this.writeStream(manifestDigest, name, createReadStream(file))
      await unlink(file)
      return size
    }

    await syncDir(path.dirname(target))
    return (await stat(target)).size
  }

  /** The folder of one image's records. */
  dir(manifestDigest: string): string {
    if (!DIGEST_PATTERN.test(manifestDigest)) throw usageError(`not a sha256 digest: "${manifestDigest}"`)
    return path.join(this.layoutRoot, 'records', 'sha256', manifestDigest.slice('sha256:'.length))
  }

  /** Where a record is (whether or not it exists). */
  path(manifestDigest: string, name: string): string {
    if (!RECORD_NAME.test(name)) throw usageError(`not a record name: "${name}"`)
    return path.join(this.dir(manifestDigest), name)
  }

  /** A record's bytes, or undefined when the image has none of that name. */
  async read(manifestDigest: string, name: string): Promise<Buffer | undefined> {
    try {
      return await readFile(this.path(manifestDigest, name))
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined
      throw error
    }
  }

  /** Removes every record of an image; nothing happens when it has none. */
  async remove(manifestDigest: string): Promise<void> {
    await rm(this.dir(manifestDigest), {force: true, recursive: true})
  }

  /** Bytes of all the records of an image. */
  async size(manifestDigest: string): Promise<number> {
    let names: string[]
    try {
      names = await readdir(this.dir(manifestDigest))
    } catch {
      return 0
    }

    const sizes = await Promise.all(names.map(name => stat(path.join(this.dir(manifestDigest), name)).then(info => info.size, () => 0)))
    return sizes.reduce((a, b) => a + b, 0)
  }

  /** Replaces a record atomically (temp file, fsync, rename): a reader sees the old bytes or the new, never a mix. */
  async write(manifestDigest: string, name: string, data: Buffer): Promise<void> {
    const file = this.path(manifestDigest, name)
    await mkdir(path.dirname(file), {mode: 0o700, recursive: true})
    await writeAtomic(file, data, 0o600)
  }

  /**
   * Streams a record in, atomically like `write`: the bytes go to a temp file in the same folder that is
   * renamed over the record once flushed, so a kill at any point leaves the old record or the new one.
   * Returns its size.
   */
  async writeStream(manifestDigest: string, name: string, source: AsyncIterable<Buffer> | Readable): Promise<number> {
    const file = this.path(manifestDigest, name)
    await mkdir(path.dirname(file), {mode: 0o700, recursive: true})
    const temp = `${file}.tmp-${process.pid}-${Date.now().toString(36)}`
    try {
      await pipeline(source, createWriteStream(temp, {flags: 'wx', mode: 0o600}))
      await fsync(temp)
      await rename(temp, file)
    } catch (error) {
      await unlink(temp).catch(() => {})
      throw error
    }

    await syncDir(path.dirname(file))
    return (await stat(file)).size
  }
}
