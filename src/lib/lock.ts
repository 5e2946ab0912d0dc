import {randomBytes} from 'node:crypto'
import {
  link, open, readFile, rename, stat, unlink,
} from 'node:fs/promises'
import {hostname} from 'node:os'
import {setTimeout as sleep} from 'node:timers/promises'

import {MicroagentError} from './errors.js'
import {isPidAlive} from './pid.js'

export interface LockOptions {
  /** Give up after this long; a live holder this slow is a real conflict. */
  timeoutMs?: number
}

/** A lock file left with no content this long is from a process that died while creating it. */
const EMPTY_LOCK_GRACE_MS = 10_000

function owner(): string {
  return `${process.pid} ${hostname()}\n`
}

/** Whether a lock's recorded owner is gone: its pid is dead on this host, or it never wrote its name. */
async function isStale(lockPath: string, content: string): Promise<boolean> {
  const match = /^(\d+) (\S+)\n$/.exec(content)
  if (match) return match[2] === hostname() && !isPidAlive(Number(match[1]))
  try {
    return Date.now() - (await stat(lockPath)).mtimeMs > EMPTY_LOCK_GRACE_MS
  } catch {
    return true
  }
}

/**
 * Takes over a stale lock without racing another taker: the stale file is renamed away (only one renamer
 * wins), and if what was renamed turns out to be a fresh lock, it is linked back.
 */
async function breakStale(lockPath: string, seen: string): Promise<void> {
  const aside = `${lockPath}.stale-${randomBytes(6).toString('hex')}`
  try {
    await rename(lockPath, aside)
  } catch {
    return
  }

  const moved = await readFile(aside, 'utf8').catch(() => '')
  if (moved !== seen) await link(aside, lockPath).catch(() => {})
  await unlink(aside).catch(() => {})
}

/**
 * Runs `fn` holding an exclusive lock file (`O_EXCL` create, holding pid and host). Works on any local
 * filesystem without native bindings; a holder killed with SIGKILL is detected by its dead pid.
 */
export async function withLock<T>(lockPath: string, fn: () => Promise<T>, options: LockOptions = {}): Promise<T> {
  const deadline = Date.now() + (options.timeoutMs ?? 60_000)
  const me = owner()
  let delay = 5
  for (;;) {
    try {
      const handle = await open(lockPath, 'wx', 0o644)
      try {
        await handle.writeFile(me)
      } finally {
        await handle.close()
      }

      break
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error
    }

    const content = await readFile(lockPath, 'utf8').catch(() => '')

    if (await isStale(lockPath, content)) {
      await breakStale(lockPath, content)
      continue
    }

    if (Date.now() > deadline) {
      throw new MicroagentError(`${lockPath} is held by ${content.trim() || 'another process'}`, {
        code: 'LOCKED',
        exit: 'transient',
        kind: 'transient',
        remediation: 'Another microagent command is writing the image layout; wait for it and retry.',
        retryAfterMs: 1000,
      })
    }

    await sleep(delay + Math.random() * delay)
    delay = Math.min(delay * 2, 200)
  }

  try {
    return await fn()
  } finally {
    const content = await readFile(lockPath, 'utf8').catch(() => '')
    if (content === me) await unlink(lockPath).catch(() => {})
  }
}
