import {execFile} from 'node:child_process'
import {readdir, readFile, stat} from 'node:fs/promises'
import path from 'node:path'

import {type Architecture, normalizeArch} from '../oci/platform.js'
import {MicroagentError, notFoundError, usageError} from '../support/errors.js'
import {type Is, loadIs, stringList} from '../support/is.js'
import {holdLease, type Lease} from './lease.js'
import {isPidAlive, processStartTime} from './pid.js'

/** microagent's `ValidateName` rules (microagent-compat.md §2). */
const NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/
/** Names that collide with folders of the state dir, because the runtime dir is `<state>/<name>/`. */
export const RESERVED_NAMES: readonly string[] = [
  'build',
  'host-workers',
  'images',
  'kernels',
  'models',
  'oci',
  'runners',
  'volumes',
  'workspaces',
]

export const VM_STATES = [
  'unknown',
  'prepared',
  'starting',
  'running',
  'paused',
  'stopping',
  'stopped',
  'halted',
  'quarantined',
  'failed',
] as const
/** States in which a VM may be using the disk: reading it then could capture a torn filesystem. */
export const LIVE_STATES: readonly string[] = ['starting', 'running', 'paused', 'stopping']

/**
 * Checks a workspace name before any path is built from it, so a name can never reach outside the state
 * dir. Messages match microagent's.
 */
export function validateWorkspaceName(name: string): string {
  if (name.trim() === '') throw usageError('workspace name is required')
  if (!NAME_PATTERN.test(name)) {
    throw usageError(`invalid workspace name "${name}": use letters, digits, '.', '_' or '-', starting with a letter or digit, 63 characters max`)
  }

  if (RESERVED_NAMES.includes(name)) throw usageError(`invalid workspace name "${name}": reserved for microagent state`)
  return name
}

export interface WorkspacePaths {
  rootfs: string
  /** `<state>/<name>/`: runtime.json, event.json, .runtime.lock. */
  runtimeDir: string
  /** `<state>/workspaces/<name>/`: workspace.json, rootfs.ext4, artifacts. */
  workspaceDir: string
}

export function workspacePaths(stateDir: string, name: string): WorkspacePaths {
  validateWorkspaceName(name)
  const workspaceDir = path.join(stateDir, 'workspaces', name)
  return {
    rootfs: path.join(workspaceDir, 'rootfs.ext4'),
    runtimeDir: path.join(stateDir, name),
    workspaceDir,
  }
}

export interface RuntimeState {
  pid: number
  /** Which record said so; `none` for a workspace that never started. */
  source: 'event.json' | 'none' | 'runtime.json'
  /** When the recorded VM started (runtime.json `startedAt`), to tell a reused pid from the VM's. */
  startedAt?: string
  state: string
  updatedAt?: string
}

async function readJsonIfExists(file: string): Promise<undefined | unknown> {
  let text: string
  try {
    text = await readFile(file, 'utf8')
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    throw unreadableRecord(file, error)
  }

  try {
    return JSON.parse(text) as unknown
  } catch (error) {
    throw unreadableRecord(file, error)
  }
}

function unreadableRecord(file: string, cause: unknown): MicroagentError {
  const reason = cause instanceof Error ? cause.message : String(cause)
  return new MicroagentError(`cannot read workspace record ${file}: ${reason}`, {
    cause,
    code: 'WORKSPACE_RECORD_UNREADABLE',
    exit: 'inUse',
    kind: 'conflict',
    remediation:
      'The workspace state is unknown, so its disk may be live. Stop the workspace with microagent, or repair the record, then retry.',
  })
}

/**
 * microagent's `LatestStartState`: runtime.json's `event.state` and `pid`, else event.json's `state`;
 * an unreadable record is an error, never "stopped".
 */
export async function readRuntimeState(paths: WorkspacePaths): Promise<RuntimeState> {
  const runtimeFile = path.join(paths.runtimeDir, 'runtime.json')
  const runtime = await readJsonIfExists(runtimeFile)
  if (runtime !== undefined) {
    const is = await loadIs()
    if (!is.plainObject(runtime) || !is.plainObject(runtime.event) || !is.string(runtime.event.state)) {
      throw unreadableRecord(runtimeFile, new Error('no event.state'))
    }

    return {
      pid: is.safeInteger(runtime.pid) ? runtime.pid : 0,
      source: 'runtime.json',
      startedAt: is.string(runtime.startedAt) ? runtime.startedAt : undefined,
      state: runtime.event.state,
      updatedAt: is.string(runtime.updatedAt) ? runtime.updatedAt : undefined,
    }
  }

  const eventFile = path.join(paths.runtimeDir, 'event.json')
  const event = await readJsonIfExists(eventFile)
  if (event !== undefined) {
    const is = await loadIs()
    if (!is.plainObject(event) || !is.string(event.state)) throw unreadableRecord(eventFile, new Error('no state'))
    return {pid: 0, source: 'event.json', state: event.state}
  }

  return {pid: 0, source: 'none', state: ''}
}

/**
 * Whether a process holds an exclusive lock on `file`, as a VM holds its runtime lease. Shared locks do not
 * count: commits hold one while they read the disk (see lease.ts), and two commits may read at once. Linux
 * lists every flock/POSIX lock in /proc/locks by inode, which answers without opening (or creating) the
 * file; elsewhere util-linux `flock -n` is asked.
 */
export async function isFileLocked(file: string): Promise<boolean> {
  let ino: bigint
  try {
    ino = (await stat(file, {bigint: true})).ino
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return false
    throw error
  }

  let locks: string | undefined
  try {
    locks = await readFile('/proc/locks', 'utf8')
  } catch {
    locks = undefined
  }

  if (locks !== undefined) {
    // Each line: `1: FLOCK ADVISORY WRITE <pid> <maj>:<min>:<ino> <start> <end>`; blocked waiters carry `->`.
    return locks.split('\n').some(line => {
      const match = /\sWRITE\s.*?\s[\da-f]+:[\da-f]+:(\d+)\s/i.exec(line)
      return match !== null && !line.includes('->') && BigInt(match[1]) === ino
    })
  }

  return new Promise(resolve => {
    execFile('flock', ['--nonblock', '--conflict-exit-code', '99', file, 'true'], error => {
      resolve((error as null | {code?: unknown})?.code === 99)
    })
  })
}

/** The parts of the source image's config that `workspace.json` records (`image_defaults`, else `image_*`). */
export interface ImageDefaults {
  Cmd?: string[]
  Entrypoint?: string[]
  Env?: string[]
  ExposedPorts?: string[]
  Labels?: Record<string, string>
  StopSignal?: string
  User?: string
  Volumes?: string[]
  WorkingDir?: string
}

export interface WorkspaceManifest {
  arch?: Architecture
  imageDefaults: ImageDefaults
}

function pick(record: Record<PropertyKey, unknown>, ...keys: string[]): unknown {
  for (const key of keys) if (record[key] !== undefined) return record[key]
  return undefined
}

/** Reads `image_defaults` with Go's field names or snake_case keys: the JSON spelling upstream is inferred. */
export function imageDefaultsFrom(is: Is, manifest: Record<PropertyKey, unknown>): ImageDefaults {
  const raw = manifest.image_defaults
  const defaults: ImageDefaults = {}
  if (is.plainObject(raw)) {
    const user = pick(raw, 'User', 'user')
    const workingDir = pick(raw, 'WorkingDir', 'working_dir', 'workdir')
    const stopSignal = pick(raw, 'StopSignal', 'stop_signal')
    const labels = pick(raw, 'Labels', 'labels')
    if (is.string(user)) defaults.User = user
    if (is.string(workingDir)) defaults.WorkingDir = workingDir
    if (is.string(stopSignal)) defaults.StopSignal = stopSignal
    if (is.plainObject<string>(labels) && Object.values(labels).every(v => is.string(v))) {
      defaults.Labels = labels as Record<string, string>
    }

    defaults.Env = stringList(is, pick(raw, 'Env', 'env'))
    defaults.Entrypoint = stringList(is, pick(raw, 'Entrypoint', 'entrypoint'))
    defaults.Cmd = stringList(is, pick(raw, 'Cmd', 'cmd'))
    defaults.ExposedPorts = stringList(is, pick(raw, 'ExposedPorts', 'exposed_ports'))
    defaults.Volumes = stringList(is, pick(raw, 'Volumes', 'volumes'))
  }

  defaults.Env ??= stringList(is, manifest.image_env)
  defaults.Entrypoint ??= stringList(is, manifest.image_entrypoint)
  defaults.Cmd ??= stringList(is, manifest.image_cmd)
  for (const key of Object.keys(defaults) as (keyof ImageDefaults)[]) {
    if (defaults[key] === undefined) delete defaults[key]
  }

  return defaults
}

/**
 * The guest architecture, where microagent recorded it: an `arch` field, or the name of the guest-init
 * artifact it injected (`artifacts/microagent-guestinit-<arch>[-<sha>]`).
 */
async function recordedArch(is: Is, paths: WorkspacePaths, manifest: Record<PropertyKey, unknown>): Promise<Architecture | undefined> {
  const field = pick(manifest, 'arch', 'architecture', 'guest_arch')
  if (is.string(field)) return normalizeArch(field)
  let names: string[] = []
  try {
    names = await readdir(path.join(paths.workspaceDir, 'artifacts'))
  } catch {
    return undefined
  }

  for (const name of names.sort()) {
    const match = /^microagent-guestinit-([a-z0-9_]+?)(?:-[0-9a-f]{7,})?$/.exec(name)
    if (match) {
      try {
        return normalizeArch(match[1])
      } catch {
        continue
      }
    }
  }

  return undefined
}

export async function readWorkspaceManifest(paths: WorkspacePaths): Promise<WorkspaceManifest> {
  const file = path.join(paths.workspaceDir, 'workspace.json')
  let manifest: unknown
  try {
    manifest = JSON.parse(await readFile(file, 'utf8'))
  } catch (error) {
    // The manifest is optional: it only carries the source image's config.
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return {imageDefaults: {}}
    throw new MicroagentError(`cannot read ${file}: ${(error as Error).message}`, {
      cause: error,
      code: 'WORKSPACE_RECORD_UNREADABLE',
      exit: 'usage',
      kind: 'permanent',
      remediation: 'Repair or remove workspace.json (it only carries the source image config), then retry.',
    })
  }

  const is = await loadIs()
  if (!is.plainObject(manifest)) return {imageDefaults: {}}
  return {arch: await recordedArch(is, paths, manifest), imageDefaults: imageDefaultsFrom(is, manifest)}
}

export interface Workspace {
  manifest: WorkspaceManifest
  name: string
  paths: WorkspacePaths
  runtime: RuntimeState
}

/** How much later than the recorded start the VM's process may itself have started. */
const START_SLACK_MS = 60_000

/**
 * Whether the recorded pid now belongs to another process: one that started well after the VM did. Only
 * when both times are known; otherwise a live pid is taken for the VM.
 */
function pidReused(runtime: RuntimeState): boolean {
  const recorded = runtime.startedAt ? Date.parse(runtime.startedAt) : Number.NaN
  const started = processStartTime(runtime.pid)
  return !Number.isNaN(recorded) && started !== undefined && started.getTime() > recorded + START_SLACK_MS
}

/** A record that says the VM may be live refuses the commit. */
function refuseLive(name: string, runtime: RuntimeState): void {
  if (LIVE_STATES.includes(runtime.state)) throw inUse(name, `is ${runtime.state}`)
}

function inUse(name: string, detail: string): MicroagentError {
  return new MicroagentError(`workspace "${name}" ${detail}; halt or stop it before committing`, {
    code: 'WORKSPACE_IN_USE',
    exit: 'inUse',
    kind: 'conflict',
    remediation: `Run \`microagent stop ${name}\` (or wait for it to stop), then retry the commit.`,
  })
}

/**
 * Holds the workspace's runtime lease, shared, for as long as its disk is read (see lease.ts), then reads
 * its record again: a VM that started after openStoppedWorkspace looked is refused too. Release it when
 * the disk has been read.
 */
export async function leaseStoppedWorkspace(workspace: Workspace): Promise<Lease | undefined> {
  const lease = await holdLease(
    path.join(workspace.paths.runtimeDir, '.runtime.lock'),
    () => inUse(workspace.name, 'is locked by a running VM (.runtime.lock is held)'),
  )
  try {
    refuseLive(workspace.name, await readRuntimeState(workspace.paths))
  } catch (error) {
    await lease?.release()
    throw error
  }

  return lease
}

/**
 * Opens a workspace for reading its disk: it must exist, have a rootfs, and be stopped. A workspace is
 * refused when its record says it may be live, when its VM holds `.runtime.lock`, or when its recorded pid
 * is alive, whatever the record says.
 */
export async function openStoppedWorkspace(stateDir: string, name: string): Promise<Workspace> {
  const paths = workspacePaths(stateDir, name)
  const runtime = await readRuntimeState(paths)
  let rootfsIsFile = false
  try {
    rootfsIsFile = (await stat(paths.rootfs)).isFile()
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error
  }

  if (!rootfsIsFile) {
    let hasDir = true
    try {
      await stat(paths.workspaceDir)
    } catch {
      hasDir = false
    }

    if (!hasDir && runtime.source === 'none') {
      throw notFoundError(
        `workspace "${name}" not found in ${stateDir}`,
        'Check the workspace name (`microagent list`) and --state-dir / MICROAGENT_STATE_DIR.',
        'WORKSPACE_NOT_FOUND',
      )
    }

    throw notFoundError(
      `workspace rootfs not found: ${paths.rootfs}`,
      'The workspace has no disk to commit; create or start it once with microagent, then stop it and retry.',
      'ROOTFS_NOT_FOUND',
    )
  }

  refuseLive(name, runtime)
  if (await isFileLocked(path.join(paths.runtimeDir, '.runtime.lock'))) {
    throw inUse(name, 'is locked by a running VM (.runtime.lock is held)')
  }

  if (isPidAlive(runtime.pid) && !pidReused(runtime)) {
    throw inUse(name, `has a live VM process (pid ${runtime.pid}) although its record says "${runtime.state}"`)
  }

  return {
    manifest: await readWorkspaceManifest(paths), name, paths, runtime,
  }
}
