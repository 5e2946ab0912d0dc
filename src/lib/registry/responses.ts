import type {Is} from '../support/is.js'
import type {RegistryResponse} from './http.js'

import {isObject} from '../support/guards.js'

// What a registry's answer means for the client: when to retry, how long to wait, what went wrong.

export const RETRYABLE_STATUS = new Set([408, 429, 500, 502, 503, 504])
/** How much of an error body is read: enough for the spec's error JSON, bounded against hostile servers. */
const MAX_ERROR_BODY = 64 * 1024

export function retryAfterMs(response: RegistryResponse): number | undefined {
  const header = response.headers.get('retry-after')
  if (!header) return undefined
  const seconds = Number(header)
  if (Number.isFinite(seconds)) return Math.max(0, seconds * 1000)
  const date = Date.parse(header)
  return Number.isNaN(date) ? undefined : Math.max(0, date - Date.now())
}

/** An error body, bounded. */
export async function readBounded(response: RegistryResponse): Promise<string> {
  return response.text(MAX_ERROR_BODY).catch(() => '')
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
