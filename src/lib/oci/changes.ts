import type {ImageDefaults} from '../workspace/workspace.js'

import {usageError} from '../support/errors.js'

/** The Dockerfile instructions `docker commit --change` accepts, and so do we. */
export const CHANGE_INSTRUCTIONS = ['CMD', 'ENTRYPOINT', 'ENV', 'EXPOSE', 'LABEL', 'STOPSIGNAL', 'USER', 'VOLUME', 'WORKDIR'] as const

function badChange(change: string, why: string): Error {
  return usageError(
    `--change "${change}": ${why}`,
    `Use a Dockerfile instruction: ${CHANGE_INSTRUCTIONS.join(', ')}; e.g. --change 'ENV PATH=/usr/local/bin:/usr/bin' --change 'CMD ["bash"]'.`,
  )
}

/** Splits on unquoted whitespace, removing quotes and backslash escapes, as Dockerfile `ENV a=b c="d e"` does. */
function words(text: string, change: string): string[] {
  const result: string[] = []
  let current: string | undefined
  let quote: string | undefined
  for (let i = 0; i < text.length; i++) {
    const char = text[i]
    if (char === '\\' && i + 1 < text.length && quote !== "'") {
      current = (current ?? '') + text[++i]
    } else if (quote) {
      if (char === quote) quote = undefined
      else current = (current ?? '') + char
    } else if (char === '"' || char === "'") {
      quote = char
      current ??= ''
    } else if (/\s/.test(char)) {
      if (current !== undefined) result.push(current)
      current = undefined
    } else {
      current = (current ?? '') + char
    }
  }

  if (quote) throw badChange(change, `unterminated ${quote} quote`)
  if (current !== undefined) result.push(current)
  return result
}

/** `["a", "b"]` (exec form) as it is; anything else (shell form) runs through /bin/sh -c, as Docker does. */
function command(argument: string, change: string): string[] {
  if (argument.startsWith('[')) {
    let parsed: unknown
    try {
      parsed = JSON.parse(argument)
    } catch {
      throw badChange(change, 'the exec form must be a JSON array of strings')
    }

    if (!Array.isArray(parsed) || !parsed.every(item => typeof item === 'string')) throw badChange(change, 'the exec form must be a JSON array of strings')
    return parsed as string[]
  }

  return ['/bin/sh', '-c', argument]
}

/** `KEY=value ...`, or the legacy `KEY value with spaces` form when there is no `=` in the first word. */
function pairs(argument: string, change: string): [string, string][] {
  const first = /^\S+/.exec(argument)?.[0] ?? ''
  if (!first.includes('=')) {
    const value = argument.slice(first.length).trim()
    if (first === '' || value === '') throw badChange(change, 'expected KEY=value')
    return [[first, value]]
  }

  return words(argument, change).map(word => {
    const eq = word.indexOf('=')
    if (eq <= 0) throw badChange(change, `"${word}" is not KEY=value`)
    return [word.slice(0, eq), word.slice(eq + 1)]
  })
}

type Instruction = (typeof CHANGE_INSTRUCTIONS)[number]

/** Where an instruction writes: the defaults being built, and whether CMD was given (ENTRYPOINT needs it). */
interface ChangeState {
  cmdGiven: boolean
  defaults: ImageDefaults
}

const APPLY: Record<Instruction, (state: ChangeState, argument: string, change: string) => void> = {
  CMD(state, argument, change) {
    state.defaults.Cmd = command(argument, change)
    state.cmdGiven = true
  },
  ENTRYPOINT(state, argument, change) {
    state.defaults.Entrypoint = command(argument, change)
    if (!state.cmdGiven) delete state.defaults.Cmd
  },
  ENV({defaults}, argument, change) {
    const env = [...(defaults.Env ?? [])]
    for (const [key, value] of pairs(argument, change)) {
      const at = env.findIndex(item => item.split('=')[0] === key)
      if (at === -1) env.push(`${key}=${value}`)
      else env[at] = `${key}=${value}`
    }

    defaults.Env = env
  },
  EXPOSE({defaults}, argument, change) {
    const ports = words(argument, change).map(port => {
      if (!/^\d{1,5}(-\d{1,5})?(\/(tcp|udp|sctp))?$/i.test(port)) throw badChange(change, `"${port}" is not a port, e.g. 8080 or 53/udp`)
      return port.includes('/') ? port.toLowerCase() : `${port}/tcp`
    })
    defaults.ExposedPorts = [...new Set([...(defaults.ExposedPorts ?? []), ...ports])]
  },
  LABEL({defaults}, argument, change) {
    defaults.Labels = {...defaults.Labels, ...Object.fromEntries(pairs(argument, change))}
  },
  STOPSIGNAL({defaults}, argument, change) {
    if (!/^(SIG[A-Z0-9+]+|\d+)$/i.test(argument)) throw badChange(change, `"${argument}" is not a signal, e.g. SIGTERM or 15`)
    defaults.StopSignal = argument
  },
  USER({defaults}, argument) {
    defaults.User = argument
  },
  VOLUME({defaults}, argument, change) {
    const volumes = argument.startsWith('[') ? command(argument, change) : words(argument, change)
    defaults.Volumes = [...new Set([...(defaults.Volumes ?? []), ...volumes])]
  },
  WORKDIR({defaults}, argument) {
    // Relative paths resolve against the current one, as in a Dockerfile.
    const base = defaults.WorkingDir || '/'
    defaults.WorkingDir = argument.startsWith('/') ? argument : `${base.replace(/\/$/, '')}/${argument}`
  },
}

/**
 * Applies `--change` instructions and `--label`s to the workspace's image defaults, in order, as
 * `docker commit` does: ENV replaces a variable of the same name, LABEL and EXPOSE add, and ENTRYPOINT drops
 * an inherited CMD unless CMD is also given. Throws a usage error naming the bad instruction.
 */
export function applyChanges(base: ImageDefaults, changes: readonly string[] = [], labels: readonly string[] = []): ImageDefaults {
  const state: ChangeState = {cmdGiven: false, defaults: structuredClone(base)}
  for (const change of changes) {
    const match = /^\s*(\w+)\s*([^]*)$/.exec(change)
    const instruction = match?.[1].toUpperCase() ?? ''
    const argument = match?.[2].trim() ?? ''
    if (!(CHANGE_INSTRUCTIONS as readonly string[]).includes(instruction)) throw badChange(change, `"${instruction || change}" is not an instruction commit can apply`)
    if (argument === '') throw badChange(change, `${instruction} needs an argument`)
    APPLY[instruction as Instruction](state, argument, change)
  }

  for (const label of labels) {
    const eq = label.indexOf('=')
    if (eq <= 0) throw usageError(`--label "${label}" is not KEY=value`, 'Give labels as --label KEY=value, e.g. --label org.opencontainers.image.source=https://example.com/repo.')
    state.defaults.Labels = {...state.defaults.Labels, [label.slice(0, eq)]: label.slice(eq + 1)}
  }

  return state.defaults
}
