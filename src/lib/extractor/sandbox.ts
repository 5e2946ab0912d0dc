import {
  existsSync, lstatSync, readlinkSync, realpathSync,
} from 'node:fs'
import path from 'node:path'

import {spawnChild} from '../support/child.js'
import {MicroagentError, usageError} from '../support/errors.js'

/**
 * Confinement of the e2fsprogs processes that parse a guest-controlled disk (debugfs for extraction,
 * `debugfs -w -R journal_run` for a replay), with bubblewrap: libext2fs is C, and its maintainers do not
 * treat crafted filesystems as a security boundary.
 */
export const SANDBOX_MODES = ['auto', 'require', 'off'] as const
export type SandboxMode = (typeof SANDBOX_MODES)[number]

/** Where the confined tool sees the disk; the session's nonce path and reply marker are spelled from it. */
export const CONFINED_DISK = '/disk/rootfs.ext4'

/** Whether this commit's e2fsprogs processes run confined, and if not, why. */
export interface SandboxStatus {
  confined: boolean
  mode: SandboxMode
  /** Why they are not confined although the mode allowed it (auto), and how to enable it. */
  reason?: string
}

export interface SandboxOptions {
  /** The bubblewrap binary: `bwrap` on PATH when omitted. */
  bwrap?: string
  /** Default auto. */
  mode?: SandboxMode
}

/** A command line to spawn: the tool itself, or bwrap running it. */
export interface Invocation {
  args: string[]
  /** Variables to set for the tool (unconfined, on top of ours; confined, the tool's whole environment). */
  env: Record<string, string>
  file: string
}

export interface ToolRun {
  /** Arguments for the tool, given the path at which it sees the disk. */
  args: (disk: string) => string[]
  /** The disk on the host. */
  disk: string
  /** The only variables the tool gets when confined. */
  env: Record<string, string>
  /** Path (or bare name, looked up on PATH) of the tool. */
  tool: string
  /** Read-write (a private copy being replayed); otherwise the disk is bound read-only. */
  writable?: boolean
}

/** The top-level folders that merged-/usr systems keep as links into /usr; older ones as real folders. */
const ROOT_DIRS = ['bin', 'sbin', 'lib', 'lib32', 'lib64', 'libx32']
const LOADER_CACHE = '/etc/ld.so.cache'
/** PATH inside the sandbox: nothing outside /usr and its merged-/usr links is there to be found. */
const CONFINED_PATH = '/usr/local/bin:/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin'

export const ENABLE_HINT = [
  'install bubblewrap (Debian/Ubuntu: apt-get install bubblewrap; Fedora: dnf install bubblewrap) and allow',
  'unprivileged user namespaces (sysctl kernel.unprivileged_userns_clone=1 where that sysctl exists,',
  'user.max_user_namespaces > 0; Ubuntu 24.04+: kernel.apparmor_restrict_unprivileged_userns=0 or an AppArmor',
  'profile for bwrap; in a container, a seccomp profile that allows unshare and clone with namespace flags)',
].join(' ')

/**
 * The namespaces, the bounds and the view, shared by the probe and every run: no network, user, pid, ipc,
 * uts and cgroup namespaces of its own, a session of its own (no TIOCSTI into our terminal), killed when
 * we die, every capability dropped and no environment but what is set. bwrap always sets
 * PR_SET_NO_NEW_PRIVS, so nothing run inside can gain privileges through setuid or file capabilities.
 * The view holds /usr (read-only), the merged-/usr links and /etc/ld.so.cache, then whatever `binds` add, on
 * a root that is remounted read-only: no $HOME, no other /etc, no /tmp, no state dir, no /proc or /dev.
 */
function baseArgs(env: Record<string, string>, binds: string[]): string[] {
  const args = ['--unshare-all', '--die-with-parent', '--new-session', '--cap-drop', 'ALL', '--clearenv']
  for (const [key, value] of Object.entries(env)) args.push('--setenv', key, value)
  args.push('--ro-bind', '/usr', '/usr')
  for (const dir of ROOT_DIRS) {
    const host = `/${dir}`
    let stat
    try {
      stat = lstatSync(host)
    } catch {
      continue
    }

    if (stat.isSymbolicLink()) args.push('--symlink', readlinkSync(host), host)
    else if (stat.isDirectory()) args.push('--ro-bind', host, host)
  }

  // The loader's index of library folders: without it, a library found only through /etc/ld.so.conf.d (a
  // /usr/local build, say) would not load. It names folders, nothing of the user's.
  if (existsSync(LOADER_CACHE)) args.push('--ro-bind', LOADER_CACHE, LOADER_CACHE)
  args.push(...binds, '--remount-ro', '/', '--chdir', '/')
  return args
}

/** The tool's real host path (links resolved, bare names looked up on PATH); throws ENOENT like spawn would. */
function hostTool(tool: string): string {
  if (tool.includes('/')) return realpathSync(path.resolve(tool))
  for (const dir of (process.env.PATH ?? '').split(path.delimiter).filter(Boolean)) {
    const candidate = path.join(dir, tool)
    if (existsSync(candidate)) return realpathSync(candidate)
  }

  throw Object.assign(new Error(`${tool} not found on PATH`), {code: 'ENOENT'})
}

function underUsr(file: string): boolean {
  return file.startsWith('/usr/')
}

/** How e2fsprogs tools are run for one commit: confined by bubblewrap, or as they are. */
export class Sandbox {
  /** Use openSandbox, which probes bubblewrap; this trusts `status` as given. */
  constructor(
    readonly status: SandboxStatus,
    private readonly bwrap = 'bwrap',
  ) {}

  /** Not confined and not meant to be (`off`): what callers get when they pass no sandbox. */
  static off(): Sandbox {
    return new Sandbox({confined: false, mode: 'off'})
  }

  get confined(): boolean {
    return this.status.confined
  }

  /** The disk's path as the tool sees it. */
  diskPath(disk: string): string {
    return this.confined ? CONFINED_DISK : disk
  }

  /**
   * The command line that runs `run.tool` on `run.disk`. Confined, the view holds the tool's own file
   * (read-only, at its real path) when it lies outside /usr, and the disk at CONFINED_DISK. Throws
   * ENOENT, as spawn would report it, when the tool does not exist.
   */
  invocation(run: ToolRun): Invocation {
    if (!this.confined) return {args: run.args(run.disk), env: run.env, file: run.tool}
    const tool = hostTool(run.tool)
    const binds = underUsr(tool) ? [] : ['--ro-bind', tool, tool]
    binds.push(run.writable ? '--bind' : '--ro-bind', run.disk, CONFINED_DISK)
    return {
      args: [...baseArgs({PATH: CONFINED_PATH, ...run.env}, binds), '--', tool, ...run.args(CONFINED_DISK)],
      env: {},
      file: this.bwrap,
    }
  }
}

/** The first `true` binary inside the view, for the probe. */
function trueBinary(): string {
  return ['/usr/bin/true', '/bin/true'].find(file => existsSync(file)) ?? 'true'
}

const probes = new Map<string, Promise<string | undefined>>()

/** Runs `bwrap <the same bounds> true` once per bwrap per process: undefined if it works, else why not. */
function probe(bwrap: string): Promise<string | undefined> {
  let answer = probes.get(bwrap)
  if (!answer) {
    answer = (async () => {
      if (process.platform !== 'linux') return `confinement needs Linux namespaces, and this is ${process.platform}`
      const child = spawnChild(bwrap, [...baseArgs({}, []), '--', trueBinary()])
      child.process.stdin.end()
      const timer = setTimeout(() => child.process.kill('SIGKILL'), 10_000)
      const exit = await child.exited
      clearTimeout(timer)
      if (exit.code === 'ENOENT') return `bubblewrap is not installed (no "${bwrap}")`
      if (exit.code) return `bubblewrap ("${bwrap}") cannot be run: ${exit.code}`
      if (exit.exitCode === 0) return
      const said = child.stderr().split('\n')[0] || `exit ${exit.exitCode ?? exit.signal}`
      return `bubblewrap cannot create the namespaces it needs here (${said})`
    })()
    probes.set(bwrap, answer)
  }

  return answer
}

export function parseSandboxMode(value: string): SandboxMode {
  if ((SANDBOX_MODES as readonly string[]).includes(value)) return value as SandboxMode
  throw usageError(`unknown sandbox mode "${value}"`, `Use one of: ${SANDBOX_MODES.join(', ')}.`)
}

/**
 * Decides how this commit runs e2fsprogs: `off` unconfined; `auto` confined where bubblewrap works, else
 * unconfined with the reason; `require` confined, or a policy error (exit 8) before anything is read.
 */
export async function openSandbox(options: SandboxOptions = {}): Promise<Sandbox> {
  const mode = options.mode ?? 'auto'
  const bwrap = options.bwrap ?? 'bwrap'
  if (mode === 'off') return Sandbox.off()
  const reason = await probe(bwrap)
  if (reason === undefined) return new Sandbox({confined: true, mode}, bwrap)
  if (mode === 'require') {
    throw new MicroagentError(`--sandbox require: debugfs cannot be confined: ${reason}`, {
      code: 'SANDBOX_UNAVAILABLE',
      exit: 'policy',
      kind: 'policy_denied',
      remediation: `To confine it, ${ENABLE_HINT}. Or commit with --sandbox auto (confined where possible) or off.`,
    })
  }

  return new Sandbox({confined: false, mode, reason: `${reason}; to confine debugfs, ${ENABLE_HINT}`}, bwrap)
}
