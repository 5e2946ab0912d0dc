import {execFileSync} from 'node:child_process'

/** Whether an executable is on PATH (or in the sbin folders e2fsprogs uses). */
export function haveTool(name: string): boolean {
  try {
    execFileSync('sh', ['-c', `command -v ${name} || test -x /usr/sbin/${name} || test -x /sbin/${name}`], {stdio: 'ignore'})
    return true
  } catch {
    return false
  }
}

/**
 * Skips the calling suite or test when a system tool is missing, loudly, on a developer machine. In CI
 * (CI set) a missing tool is a failure: .ci/run installs every tool the tests need.
 */
export function requireTools(context: {skip(): void}, ...names: string[]): void {
  const missing = names.filter(name => !haveTool(name))
  if (missing.length === 0) return
  const message = `missing system tools: ${missing.join(', ')} (bash .ci/run installs them)`
  if (process.env.CI) throw new Error(message)
  console.warn(`\n  !!! SKIPPED: ${message}\n`)
  // eslint-disable-next-line mocha/no-skipped-tests -- the loud, local-only skip the guide allows
  context.skip()
}

/** Like requireTools, for tests that must be root (mounting a small tmpfs): CI runs as root. */
export function requireRoot(context: {skip(): void}, why: string): void {
  if (process.getuid?.() === 0) return
  const message = `not root: cannot ${why}`
  if (process.env.CI) throw new Error(message)
  console.warn(`\n  !!! SKIPPED: ${message}\n`)
  // eslint-disable-next-line mocha/no-skipped-tests -- the loud, local-only skip the guide allows
  context.skip()
}
