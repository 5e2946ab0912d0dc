import {type ChildProcessWithoutNullStreams, spawn} from 'node:child_process'

/** How a child process ended: a spawn error (`code`, e.g. ENOENT), or an exit status or signal. */
export interface ChildExit {
  code?: string
  exitCode?: number
  signal?: string
}

export interface Child {
  /** Settles once, when the process has ended and its pipes are closed; never rejects. */
  exited: Promise<ChildExit>
  process: ChildProcessWithoutNullStreams
  /** What the child wrote on stderr so far, trimmed: for error messages. */
  stderr(): string
}

/**
 * Starts a long-lived helper (debugfs, zstd) on pipes with node:child_process. The hot paths use this
 * rather than execa, whose import alone costs ~0.1 s of start-up, a tenth of a small commit.
 */
export function spawnChild(file: string, args: string[], env: Record<string, string> = {}): Child {
  const child = spawn(file, args, {env: {...process.env, ...env}, stdio: ['pipe', 'pipe', 'pipe']})
  const exited = new Promise<ChildExit>(resolve => {
    child.once('error', (error: NodeJS.ErrnoException) => resolve({code: error.code}))
    child.once('close', (exitCode: null | number, signal: NodeJS.Signals | null) => resolve({exitCode: exitCode ?? undefined, signal: signal ?? undefined}))
  })
  // EPIPE once the child has gone: its exit says why.
  child.stdin.on('error', () => {})
  let stderr = ''
  child.stderr.on('data', (chunk: Buffer) => {
    stderr += chunk.toString()
  })
  return {exited, process: child, stderr: () => stderr.trim()}
}
