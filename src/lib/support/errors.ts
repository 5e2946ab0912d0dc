import {randomBytes} from 'node:crypto'

/** The error kinds of microagent's AX envelope (microagent-compat.md §4). */
export const ERROR_KINDS = [
  'transient',
  'permanent',
  'conflict',
  'not_found',
  'resource_exhausted',
  'unsupported',
  'policy_denied',
] as const
export type ErrorKind = (typeof ERROR_KINDS)[number]

/**
 * Failure classes, each with one exit code. The README's exit-code table is generated from this list's
 * meaning, so keep the two in step.
 */
export const EXIT_CODES = {
  ok: 0,
  internal: 1,
  usage: 2,
  notFound: 3,
  inUse: 4,
  extraction: 5,
  push: 6,
  layout: 7,
  policy: 8,
  interrupted: 130,
  transient: 75,
} as const
export type ExitClass = keyof typeof EXIT_CODES

export interface MicroagentErrorOptions {
  cause?: unknown
  /** A stable identifier for programs, e.g. `WORKSPACE_IN_USE`. */
  code: string
  exit: ExitClass
  kind: ErrorKind
  remediation?: string
  retryAfterMs?: number
}

/**
 * The one error type that reaches users. Commands map it once (human text or the AX envelope) and exit
 * with `exitCode`; nothing else prints errors.
 */
export class MicroagentError extends Error {
  readonly code: string
  readonly exitCode: number
  readonly kind: ErrorKind
  readonly remediation: string | undefined
  readonly retryAfterMs: number | undefined

  constructor(message: string, options: MicroagentErrorOptions) {
    super(message, options.cause === undefined ? undefined : {cause: options.cause})
    this.name = 'MicroagentError'
    this.code = options.code
    this.kind = options.kind
    this.exitCode = EXIT_CODES[options.exit]
    this.remediation = options.remediation
    this.retryAfterMs = options.retryAfterMs
  }

  get retryable(): boolean {
    return this.kind === 'transient' || this.kind === 'resource_exhausted'
  }
}

// Plugins may load their own copy of this module, so recognise the shape rather than the class.
export function isMicroagentError(error: unknown): error is MicroagentError {
  return (
    error instanceof Error
    && error.name === 'MicroagentError'
    && typeof (error as Partial<MicroagentError>).exitCode === 'number'
    && typeof (error as Partial<MicroagentError>).kind === 'string'
  )
}

export function usageError(message: string, remediation = 'Correct the command arguments and retry.'): MicroagentError {
  return new MicroagentError(message, {
    code: 'USAGE', exit: 'usage', kind: 'permanent', remediation,
  })
}

export function notFoundError(message: string, remediation: string, code = 'NOT_FOUND'): MicroagentError {
  return new MicroagentError(message, {
    code, exit: 'notFound', kind: 'not_found', remediation,
  })
}

export function extractionError(message: string, options: {cause?: unknown; remediation?: string} = {}): MicroagentError {
  return new MicroagentError(message, {
    cause: options.cause,
    code: 'EXTRACTION_FAILED',
    exit: 'extraction',
    kind: 'permanent',
    remediation:
      options.remediation
      ?? 'Check the disk with `e2fsck -fn <rootfs>`; if the workspace is healthy, report this with the message above.',
  })
}

export interface AxEnvelope {
  error: {
    code: string
    correlation_id: string
    exit_code: number
    kind: ErrorKind
    message: string
    remediation?: string
    retry_after_ms?: number
    retryable: boolean
  }
  ok: false
}

/** microagent's `req-<unix-nanos>` request ids, with random low digits so two failures in one ns differ. */
export function newCorrelationId(now: bigint = process.hrtime.bigint()): string {
  const nanos = BigInt(Date.now()) * 1_000_000n + (now % 1_000_000n)
  return `req-${nanos}-${randomBytes(3).toString('hex')}`
}

export function toEnvelope(error: MicroagentError, correlationId = newCorrelationId()): AxEnvelope {
  return {
    error: {
      code: error.code,
      correlation_id: correlationId,
      exit_code: error.exitCode,
      kind: error.kind,
      message: error.message,
      ...(error.remediation ? {remediation: error.remediation} : {}),
      ...(error.retryAfterMs === undefined ? {} : {retry_after_ms: error.retryAfterMs}),
      retryable: error.retryable,
    },
    ok: false,
  }
}

/** A full disk (or quota) while writing: a layout error, and the place that filled up when it is known. */
export function noSpaceError(error: unknown, where?: string): MicroagentError {
  const message = error instanceof Error ? error.message : String(error)
  return new MicroagentError(`no space left${where ? ` on the device holding ${where}` : ''}: ${message}`, {
    cause: error,
    code: 'NO_SPACE',
    exit: 'layout',
    kind: 'resource_exhausted',
    remediation: 'Free disk space under the state directory and retry; nothing was tagged, and what was already stored is intact.',
  })
}

/** Wraps anything thrown into a MicroagentError, keeping the original as `cause`. */
export function asMicroagentError(error: unknown): MicroagentError {
  if (isMicroagentError(error)) return error
  const code = (error as NodeJS.ErrnoException | undefined)?.code
  const message = error instanceof Error ? error.message : String(error)
  if (code === 'ENOSPC' || code === 'EDQUOT') return noSpaceError(error)

  if (code === 'EACCES' || code === 'EPERM' || code === 'EROFS') {
    return new MicroagentError(`permission denied: ${message}`, {
      cause: error,
      code: 'PERMISSION_DENIED',
      exit: 'internal',
      kind: 'policy_denied',
      remediation: 'Check the ownership and permissions of the state directory and the workspace files.',
    })
  }

  return new MicroagentError(message, {
    cause: error,
    code: 'INTERNAL',
    exit: 'internal',
    kind: 'permanent',
    remediation: 'This is a bug or an unexpected condition; rerun with DEBUG=microagent:* and report it.',
  })
}
