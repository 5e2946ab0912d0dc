import {access, constants} from 'node:fs/promises'
import path from 'node:path'

import {MicroagentError} from '../support/errors.js'
import {type Invocation, type Sandbox, type ToolRun} from './sandbox.js'

const SEARCH_DIRS = ['/usr/sbin', '/sbin', '/opt/homebrew/opt/e2fsprogs/sbin', '/usr/local/opt/e2fsprogs/sbin']

/** microagent's lookup: PATH, then the usual sbin and Homebrew keg folders. */
export async function findDebugfs(env: NodeJS.ProcessEnv = process.env): Promise<string> {
  const dirs = [...(env.PATH ?? '').split(path.delimiter).filter(Boolean), ...SEARCH_DIRS]
  for (const dir of dirs) {
    const candidate = path.join(dir, 'debugfs')
    try {
      await access(candidate, constants.X_OK)
      return candidate
    } catch {
      continue
    }
  }

  throw new MicroagentError('debugfs not found on PATH or in the usual sbin folders', {
    code: 'DEBUGFS_NOT_FOUND',
    exit: 'extraction',
    kind: 'unsupported',
    remediation: 'Install e2fsprogs (Debian: apt-get install e2fsprogs; macOS: brew install e2fsprogs) or pass --debugfs <path>.',
  })
}

/** debugfs is not where we were told (or found it): the same error from every place that runs it. */
export function debugfsNotFound(binary: string): MicroagentError {
  return new MicroagentError(`debugfs not found at "${binary}"`, {
    code: 'DEBUGFS_NOT_FOUND',
    exit: 'extraction',
    kind: 'unsupported',
    remediation: 'Install e2fsprogs (apt-get install e2fsprogs) or pass --debugfs <path>.',
  })
}

/** The command line that runs debugfs (`run.tool`) under `sandbox`; a binary that is not there is DEBUGFS_NOT_FOUND. */
export function debugfsInvocation(sandbox: Sandbox, run: ToolRun): Invocation {
  try {
    return sandbox.invocation(run)
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') throw debugfsNotFound(run.tool)
    throw error
  }
}

/** What debugfs wrote to stderr, less its version banner and blank lines: debugfs exits 0 on errors, so this is the verdict. */
export function debugfsComplaints(stderr: string): string {
  return stderr
  .split('\n')
  .filter(line => line.trim() !== '' && !/^debugfs \d+\.\d+\S* \(.*\)$/.test(line))
  .join('\n')
}
