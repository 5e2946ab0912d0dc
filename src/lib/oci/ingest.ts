import type {Duplex, Readable} from 'node:stream'

import {randomBytes} from 'node:crypto'
import {createWriteStream} from 'node:fs'
import {readdir, rm, unlink} from 'node:fs/promises'
import path from 'node:path'
import {pipeline} from 'node:stream/promises'

import {fsync} from '../support/files.js'
import {isPidAlive} from '../workspace/pid.js'
import {DigestCounter} from './digest.js'

/**
 * A layout's ingest folder: temp files on the blobs' filesystem (so that renames into `blobs/` are atomic),
 * each named after the process writing it, so that a later run can tell a dead writer's leftovers.
 */
export class IngestFolder {
  readonly dir: string

  constructor(root: string) {
    this.dir = path.join(root, 'ingest')
  }

  /** Removes temp files whose writer process is gone (a killed commit). */
  async clean(): Promise<void> {
    let names: string[]
    try {
      names = await readdir(this.dir)
    } catch {
      return
    }

    await Promise.all(names.map(async name => {
      const pid = Number(/^(\d+)-/.exec(name)?.[1] ?? 0)
      if (pid !== process.pid && !isPidAlive(pid)) await rm(path.join(this.dir, name), {force: true, recursive: true})
    }))
  }

  /** A new temp path, named after this process. */
  path(suffix = ''): string {
    return path.join(this.dir, `${process.pid}-${randomBytes(6).toString('hex')}${suffix}`)
  }

  /**
   * Streams `source` through `transforms` into a new temp file, hashing what is written, and flushes it. A
   * failure anywhere in the chain removes the file.
   */
  async write(source: Readable, transforms: Duplex[], onBytes?: (written: number) => void): Promise<{digest: string; size: number; temp: string}> {
    const temp = this.path()
    const counter = new DigestCounter(onBytes)
    try {
      await pipeline([source, ...transforms, counter, createWriteStream(temp, {flags: 'wx', mode: 0o444})])
      await fsync(temp)
    } catch (error) {
      await unlink(temp).catch(() => {})
      throw error
    }

    return {digest: counter.digest(), size: counter.bytes, temp}
  }
}
