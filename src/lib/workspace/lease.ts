import {access} from 'node:fs/promises'

import {spawnChild} from '../support/child.js'
import {MicroagentError} from '../support/errors.js'

/** Exit status flock(1) is told to use when the lock is taken. */
const CONFLICT = 75

export interface Lease {
  /** Lets the lock go; the workspace may start again. */
  release(): Promise<void>
}

/**
 * Holds a shared flock on a workspace's `.runtime.lock` while its disk is read. A running VM holds that
 * file exclusively (microagent's runtime lease), so while a commit holds it shared no VM can start on the
 * disk, and a VM that is running makes this fail. Node has no flock: util-linux's flock(1) takes the lock
 * and keeps it in a child that waits on its stdin, which closes when we release or when this process dies.
 *
 * Undefined when there is nothing to hold: no lock file (the workspace never ran, so there is no lease to
 * take) or no flock(1) on the machine; the caller's checks of the record and of /proc/locks still apply.
 * Throws `conflict` when a VM holds the lease.
 */
export async function holdLease(lockFile: string, conflict: () => MicroagentError): Promise<Lease | undefined> {
  try {
    await access(lockFile)
  } catch {
    return undefined
  }

  const {exited, process: child, stderr} = spawnChild('flock', [
    '--shared', '--nonblock', '--conflict-exit-code', String(CONFLICT), lockFile, 'sh', '-c', 'echo held && exec cat',
  ])
  const held = await new Promise<boolean>(resolve => {
    child.stdout.once('data', () => resolve(true))
    exited.then(() => resolve(false))
  })
  if (!held) {
    const result = await exited
    if (result.code === 'ENOENT') return undefined
    if (result.exitCode === CONFLICT) throw conflict()
    throw new MicroagentError(`cannot hold ${lockFile} while reading the disk: ${stderr() || `flock exited ${result.exitCode ?? result.signal}`}`, {
      code: 'LEASE_FAILED',
      exit: 'internal',
      kind: 'permanent',
      remediation: 'Check that you can read the workspace runtime folder (the same user as microagent, or root).',
    })
  }

  return {
    async release() {
      child.stdin.end()
      await exited
    },
  }
}
