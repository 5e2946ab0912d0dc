import {homedir, tmpdir} from 'node:os'
import path from 'node:path'

import {usageError} from '../support/errors.js'

/** microagent's VM backends; `firecracker` is the deprecated name of `linux-kvm` (microagent-compat.md §3). */
export const BACKENDS = ['linux-kvm', 'apple-vf'] as const
export type Backend = (typeof BACKENDS)[number]
const BACKEND_ALIASES: Readonly<Record<string, Backend>> = {firecracker: 'linux-kvm'}
/** Every name `--backend` accepts (for help and shell completion). */
export const BACKEND_NAMES: readonly string[] = [...BACKENDS, ...Object.keys(BACKEND_ALIASES)]

export const MODES = ['ux', 'ax'] as const
export type Mode = (typeof MODES)[number]

export interface Context {
  backend: Backend
  mode: Mode
  stateDir: string
}

export interface ContextInput {
  backend?: string
  env?: NodeJS.ProcessEnv
  mode?: string
  platform?: NodeJS.Platform
  stateDir?: string
}

export function normalizeBackend(raw: string): Backend {
  const name = raw.trim().toLowerCase()
  const resolved = BACKEND_ALIASES[name] ?? (BACKENDS as readonly string[]).find(b => b === name)
  if (resolved === undefined) {
    throw usageError(
      `unknown backend "${raw}": valid backends are ${BACKENDS.join(', ')} (firecracker is an alias of linux-kvm)`,
      'Pass one of the valid backends with --backend or MICROAGENT_BACKEND.',
    )
  }

  return resolved as Backend
}

export function hostBackend(platform: NodeJS.Platform = process.platform): Backend {
  if (platform === 'darwin') return 'apple-vf'
  if (platform === 'linux') return 'linux-kvm'
  throw usageError(
    `microagent has no VM backend for platform "${platform}"`,
    `Pass --backend explicitly (${BACKENDS.join(', ')}).`,
  )
}

/** microagent's default: `$HOME/.microagent`, or `<tmpdir>/microagent` when no home can be found. */
export function defaultStateDir(env: NodeJS.ProcessEnv = process.env): string {
  let home = ''
  try {
    home = (env.HOME ?? homedir()).trim()
  } catch {
    home = ''
  }

  return home === '' ? path.join(tmpdir(), 'microagent') : path.join(home, '.microagent')
}

function nonEmpty(value: string | undefined): string | undefined {
  return value === undefined || value.trim() === '' ? undefined : value
}

export function normalizeMode(raw: string): Mode {
  const mode = raw.trim().toLowerCase()
  if (mode === 'ax' || mode === 'agent') return 'ax'
  if (mode === 'ux' || mode === 'human' || mode === 'text') return 'ux'
  throw usageError(`unknown mode "${raw}": valid modes are ux, ax`)
}

/**
 * Resolves the context of a command: a flag wins, then `MICROAGENT_*`, then the default. The prerun hook
 * and the command both call this, so a command run without the hook resolves the same way.
 */
export function resolveContext(input: ContextInput = {}): Context {
  const env = input.env ?? process.env
  const stateDirRaw = nonEmpty(input.stateDir) ?? nonEmpty(env.MICROAGENT_STATE_DIR)
  const backendRaw = nonEmpty(input.backend) ?? nonEmpty(env.MICROAGENT_BACKEND)
  const modeRaw = nonEmpty(input.mode) ?? nonEmpty(env.MICROAGENT_MODE)
  return {
    backend: backendRaw === undefined ? hostBackend(input.platform) : normalizeBackend(backendRaw),
    mode: modeRaw === undefined ? 'ux' : normalizeMode(modeRaw),
    stateDir: path.resolve(stateDirRaw ?? defaultStateDir(env)),
  }
}

let current: Context | undefined

/** The context the prerun hook resolved for the running command, if it ran. */
export function currentContext(): Context | undefined {
  return current
}

export function setCurrentContext(context: Context | undefined): void {
  current = context
}
