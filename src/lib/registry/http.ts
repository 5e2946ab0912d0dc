import http from 'node:http'
import https from 'node:https'
import {Readable} from 'node:stream'
import {pipeline} from 'node:stream/promises'

export interface StreamingRequestInit {
  body: AsyncIterable<Uint8Array>
  headers: Record<string, string>
  method: string
  signal?: AbortSignal
}

/** Statuses whose responses have no body, by the fetch spec's rules (a Response with one cannot be built). */
const NULL_BODY_STATUS = new Set([101, 103, 204, 205, 304])

function responseHeaders(incoming: http.IncomingMessage): Headers {
  const headers = new Headers()
  for (const [name, value] of Object.entries(incoming.headers)) {
    if (Array.isArray(value)) for (const item of value) headers.append(name, item)
    else if (value !== undefined) headers.set(name, value)
  }

  return headers
}

/**
 * Sends a request with a streamed body through node:http(s) and answers with a fetch `Response`, so the
 * client treats it like any other. Why not fetch: in Node 20 it keeps every chunk of a streamed request
 * body alive until the exchange ends (measured: a 230 MB blob held whole in memory), while node:http
 * lets each chunk go once the socket has taken it. Redirects are not followed, as with `redirect: manual`.
 * A failure of the body itself (a blob that no longer hashes right) rejects with that error.
 */
export function streamingRequest(url: URL, init: StreamingRequestInit): Promise<Response> {
  return new Promise<Response>((resolve, reject) => {
    // The body's own failure is the one to report, not the broken connection it leads to.
    let bodyError: unknown
    async function * body(): AsyncGenerator<Uint8Array, void, undefined> {
      try {
        yield * init.body
      } catch (error) {
        bodyError = error
        throw error
      }
    }

    const request = (url.protocol === 'https:' ? https : http).request(url, {headers: init.headers, method: init.method, signal: init.signal})
    request.on('error', error => reject(bodyError ?? error))
    request.on('response', incoming => {
      const status = incoming.statusCode ?? 0
      const empty = init.method === 'HEAD' || NULL_BODY_STATUS.has(status)
      if (empty) incoming.resume()
      const body = empty ? null : (Readable.toWeb(incoming) as ReadableStream<Uint8Array>)
      const response = new Response(body, {headers: responseHeaders(incoming), status, statusText: incoming.statusMessage})
      Object.defineProperty(response, 'url', {value: url.toString()})
      resolve(response)
    })
    // Once the server has answered, a body it stopped reading is no failure: the answer says why.
    pipeline(Readable.from(body()), request).catch((error: unknown) => reject(bodyError ?? error))
  })
}
