import type {Is} from '../support/is.js'

import {isObject} from '../support/guards.js'

// What a registry's answer means for the client: when to retry, how long to wait, what went wrong.

export const RETRYABLE_STATUS = new Set([408, 429, 500, 502, 503, 504])
/** How much of an error body is read: enough for the spec's error JSON, bounded against hostile servers. */
const MAX_ERROR_BODY = 64 * 1024

export function retryAfterMs(response: Response): number | undefined {
  const header = response.headers.get('retry-after')
  if (!header) return undefined
  const seconds = Number(header)
  if (Number.isFinite(seconds)) return Math.max(0, seconds * 1000)
  const date = Date.parse(header)
  return Number.isNaN(date) ? undefined : Math.max(0, date - Date.now())
}

export async function drain(response: Response): Promise<void> {
  try {
    await response.body?.cancel()
  } catch {
    // Nothing to read is fine.
  }
}

export async function readBounded(response: Response): Promise<string> {
  if (!response.body) return ''
  const reader = response.body.getReader()
  const chunks: Uint8Array[] = []
  let size = 0
  try {
    while (size < MAX_ERROR_BODY) {
      const {done, value} = await reader.read()
      if (done) break
      chunks.push(value)
      size += value.length
    }
  } finally {
    await reader.cancel().catch(() => {})
  }

  return Buffer.concat(chunks).subarray(0, MAX_ERROR_BODY).toString('utf8')
}

/** The distribution spec's error codes in a body, e.g. `BLOB_UNKNOWN: blob unknown to registry`. */
export function specErrors(is: Is, body: string): string {
  try {
    const parsed = JSON.parse(body) as unknown
    if (is.plainObject(parsed) && is.array(parsed.errors)) {
      return parsed.errors
      .map(e => (is.plainObject(e) ? `${String(e.code ?? '')}${e.message ? `: ${String(e.message)}` : ''}` : ''))
      .filter(Boolean)
      .join('; ')
    }
  } catch {
    // Not JSON: fall through to a short excerpt.
  }

  return body.replaceAll(/\s+/g, ' ').trim().slice(0, 200)
}

const NETWORK_ERRORS = new Set(['EAI_AGAIN', 'ECONNREFUSED', 'ECONNRESET', 'EHOSTUNREACH', 'ENETUNREACH', 'EPIPE', 'ETIMEDOUT', 'UND_ERR_CONNECT_TIMEOUT', 'UND_ERR_SOCKET'])

/** A failure of the connection rather than an answer: fetch's TypeError, or a socket error code. */
export function isNetworkError(error: unknown): boolean {
  if (!isObject(error)) return false
  const {cause, code, message, name} = error as {cause?: {code?: string}; code?: string; message?: string; name?: string}
  return (name === 'TypeError' && message === 'fetch failed') || NETWORK_ERRORS.has(code ?? '') || NETWORK_ERRORS.has(cause?.code ?? '')
}
