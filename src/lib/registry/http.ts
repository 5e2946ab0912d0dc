import type http from 'node:http'
import type https from 'node:https'

import {createRequire} from 'node:module'
import {Readable} from 'node:stream'
import {pipeline} from 'node:stream/promises'

// Loaded as CommonJS, not imported: an ES import of node:http builds its ES facade from every export,
// and on Node 24 that reads the lazy WebSocket, CloseEvent and MessageEvent getters, which load all of
// undici (measured: 20 ms against 2.4 ms, on every push). Each is loaded on first use: a plain-HTTP
// (loopback) registry never pays for TLS (node:https, 2-4 ms more).
const load = createRequire(import.meta.url)
const transport = (url: URL): typeof http | typeof https => (url.protocol === 'https:' ? load('node:https') as typeof https : load('node:http') as typeof http)

/**
 * A registry's answer, as the client reads it: what both node:http (the default) and a fetch given in the
 * options can give. Bodies are small (errors, tokens, nothing at all) and read with a bound.
 */
export interface RegistryResponse {
  /** Drops what is left of the body; never rejects (a body cut short is nothing to report). */
  discard(): Promise<void>
  readonly headers: {get(name: string): null | string}
  readonly ok: boolean
  readonly status: number
  /** The body as UTF-8, at most `limit` bytes of it (the rest is dropped). */
  text(limit: number): Promise<string>
  /** The URL the request went to, which a relative Location resolves against. */
  readonly url: string
}

export interface HttpRequestInit {
  /** Sent as it is given; an iterable is streamed and may fail with an error of its own. */
  body?: AsyncIterable<Uint8Array> | Buffer
  headers: Record<string, string>
  method: string
  signal?: AbortSignal
}

/**
 * How much of an answer is kept: enough for the largest body the client reads (a token service's JSON).
 * A longer one is cut and its connection closed rather than read to its end.
 */
const MAX_BODY = 1024 * 1024
/** As fetch's own limits (undici's headers and body timeouts): a registry silent this long is gone. */
const IDLE_TIMEOUT_MS = 300_000

/**
 * Reads an answer's body as it arrives, up to MAX_BODY, so that its connection goes back to the pool (and lets the
 * process exit) whether or not anyone reads the body.
 */
function collect(incoming: http.IncomingMessage): Promise<Buffer> {
  return new Promise<Buffer>(resolve => {
    const chunks: Buffer[] = []
    let size = 0
    const done = (): void => resolve(Buffer.concat(chunks))
    incoming.on('data', (chunk: Buffer) => {
      if (size >= MAX_BODY) return
      chunks.push(chunk)
      size += chunk.length
      if (size >= MAX_BODY) incoming.destroy()
    })
    incoming.once('end', done)
    incoming.once('close', done)
    // A body cut short is what it is: the status and headers have arrived and say what happened.
    incoming.once('error', done)
  })
}

/** An answer read from node:http. */
class HttpResponse implements RegistryResponse {
  readonly headers: {get(name: string): null | string}
  readonly ok: boolean
  readonly status: number
  private readonly body: Promise<Buffer>

  constructor(incoming: http.IncomingMessage, readonly url: string) {
    this.status = incoming.statusCode ?? 0
    this.ok = this.status >= 200 && this.status <= 299
    // node:http joins repeated headers with ", " (set-cookie aside, which a registry does not need).
    this.headers = {
      get(name: string): null | string {
        const value = incoming.headers[name.toLowerCase()]
        return value === undefined ? null : (Array.isArray(value) ? value.join(', ') : value)
      },
    }
    this.body = collect(incoming)
  }

  async discard(): Promise<void> {
    await this.body
  }

  async text(limit: number): Promise<string> {
    return (await this.body).subarray(0, limit).toString('utf8')
  }
}

/**
 * One request through node:http(s). Why not fetch: its first use loads undici and compiles its HTTP parser,
 * about 30 ms of every push's start (measured: two GETs 36–40 ms with fetch, 9–10 ms with node:http, in a
 * fresh process); and in Node 20 it keeps every chunk of a streamed request body alive until the exchange
 * ends (a 230 MB blob held whole in memory), while node:http lets each chunk go once the socket has taken it.
 * Redirects are not followed (the client follows them itself). A failure of a streamed body (a blob that no
 * longer hashes right) rejects with that error, not with the broken connection it leads to.
 */
export function httpRequest(url: URL, init: HttpRequestInit): Promise<RegistryResponse> {
  return new Promise<RegistryResponse>((resolve, reject) => {
    let bodyError: unknown
    const request = transport(url).request(url, {headers: init.headers, method: init.method, signal: init.signal})
    request.setTimeout(IDLE_TIMEOUT_MS, () => {
      request.destroy(Object.assign(new Error(`no answer from ${url.origin} in ${IDLE_TIMEOUT_MS / 1000} s`), {code: 'ETIMEDOUT'}))
    })
    request.on('error', error => reject(bodyError ?? error))
    request.on('response', incoming => resolve(new HttpResponse(incoming, url.toString())))
    const {body} = init
    if (body === undefined || Buffer.isBuffer(body)) {
      request.end(body)
      return
    }

    async function * guarded(): AsyncGenerator<Uint8Array, void, undefined> {
      try {
        yield * body as AsyncIterable<Uint8Array>
      } catch (error) {
        bodyError = error
        throw error
      }
    }

    // Once the server has answered, a body it stopped reading is no failure: the answer says why.
    pipeline(Readable.from(guarded()), request).catch((error: unknown) => reject(bodyError ?? error))
  })
}

/** A fetch Response (from a fetch given in the client's options) read the same way. */
export function fromFetch(response: Response): RegistryResponse {
  const read = async (limit: number): Promise<Buffer> => {
    if (!response.body) return Buffer.alloc(0)
    const reader = response.body.getReader()
    const chunks: Uint8Array[] = []
    let size = 0
    try {
      while (size < limit) {
        const {done, value} = await reader.read()
        if (done) break
        chunks.push(value)
        size += value.length
      }
    } finally {
      await reader.cancel().catch(() => {})
    }

    return Buffer.concat(chunks).subarray(0, limit)
  }

  return {
    async discard() {
      await response.body?.cancel().catch(() => {})
    },
    headers: response.headers,
    ok: response.ok,
    status: response.status,
    text: async limit => (await read(limit)).toString('utf8'),
    url: response.url,
  }
}
