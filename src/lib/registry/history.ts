import {readFile} from 'node:fs/promises'

import {writeAtomic} from '../support/files.js'
import {isPlainObject} from '../support/guards.js'
import {withLock} from '../support/lock.js'

/** How many blobs per registry are remembered; the oldest are forgotten first. */
const MAX_BLOBS = 10_000

type Records = Record<string, Record<string, string>>

/**
 * Which repository of which registry last received each blob, so a push to another repository of the
 * same registry can mount instead of uploading. Only a hint: a failed mount falls back to an upload.
 */
export class PushHistory {
  constructor(readonly file: string) {}

  /** Blob digest → repository, for one registry. */
  async read(registry: string): Promise<Record<string, string>> {
    return (await this.readAll())[registry] ?? {}
  }

  async record(registry: string, repository: string, digests: string[]): Promise<void> {
    await withLock(`${this.file}.lock`, async () => {
      const all = await this.readAll()
      const known = {...all[registry]}
      for (const digest of digests) {
        delete known[digest]
        known[digest] = repository
      }

      const entries = Object.entries(known)
      all[registry] = Object.fromEntries(entries.slice(Math.max(0, entries.length - MAX_BLOBS)))
      await writeAtomic(this.file, Buffer.from(JSON.stringify(all)), 0o600)
    })
  }

  private async readAll(): Promise<Records> {
    try {
      const parsed = JSON.parse(await readFile(this.file, 'utf8')) as unknown
      return isPlainObject(parsed) ? (parsed as Records) : {}
    } catch {
      // Missing or damaged: it is only a hint.
      return {}
    }
  }
}
