import {randomBytes} from 'node:crypto'
import {
  open, readFile, stat, unlink,
} from 'node:fs/promises'
import {hostname} from 'node:os'
import {setTimeout as sleep} from 'node:timers/promises'

import {isPidAlive} from '../workspace/pid.js'
import {MicroagentError} from './errors.js'

export interface LockOptions {
  /** Give up after this long; a live holder this slow is a real conflict. */
  timeoutMs?: number
}

/** A lock file left with no content this long is from a process that died while creating it. */
const EMPTY_LOCK_GRACE_MS = 10_000

/** Unique per acquisition, so a release or a break can tell this lock from a later one of the same process. */
function owner(): string {
  return `${process.pid} ${hostname()} ${randomBytes(6).toString('hex')}\n`
}

/** Whether a lock's recorded owner is gone: its pid is dead on this host, or it never wrote its name. */
async function isStale(lockPath: string, content: string): Promise<boolean> {
  const match = /^(\d+) (\S+) [0-9a-f]+\n$/.exec(content)
  if (match) return match[2] === hostname() && !isPidAlive(Number(match[1]))
  try {
    return Date.now() - (await stat(lockPath)).mtimeMs > EMPTY_LOCK_GRACE_MS
  } catch {
    // Gone already: not stale, just released.
    return false
  }
}

/**
 * Removes a stale lock. Breakers take turns through a second lock file and re-read the lock under it,
 * so a lock that was replaced since it was judged stale is never removed; a breaker that died is
 * detected by the age of its file.
 */
async function breakStale(lockPath: string, seen: string): Promise<void> {
  const breaker = `${lockPath}.break`
  try {
    await (await open(breaker, 'wx', 0o644)).close()
  } catch {
    const age = await stat(breaker).then(info => Date.now() - info.mtimeMs, () => 0)
    if (age > EMPTY_LOCK_GRACE_MS) await unlink(breaker).catch(() => {})
    return
  }

  try {
    const current = await readFile(lockPath, 'utf8').catch(() => {})
    if (current === seen) await unlink(lockPath).catch(() => {})
  } finally {
    await unlink(breaker).catch(() => {})
  }
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

    const content = await readFile(lockPath, 'utf8').catch(() => {})
    // Released between our attempt and the read: try again at once.
    if (content === undefined) continue
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
