import {setTimeout as sleep} from 'node:timers/promises'

import {DEFAULT_REGISTRY, isLoopbackRegistry} from '../oci/reference.js'
import {isMicroagentError, MicroagentError} from '../support/errors.js'
import {loadIs} from '../support/is.js'
import {type Credential, describeCredential} from './auth.js'
import {fromFetch, httpRequest, type RegistryResponse} from './http.js'
import {
  isNetworkError, readBounded, RETRYABLE_STATUS, retryAfterMs, specErrors,
} from './responses.js'

/** A request body that can be produced again for a retry: never a consumed stream. */
export type BodyFactory = () => {body: AsyncIterable<Uint8Array> | Buffer; length: number}

export interface RegistryRequest {
  body?: BodyFactory
  headers?: Record<string, string>
  method: 'DELETE' | 'GET' | 'HEAD' | 'PATCH' | 'POST' | 'PUT'
  /** Statuses that mean success; anything else is retried (if transient) or an error. */
  ok: number[]
  /**
   * Tries after a transient failure; the client's setting by default. 0 for a step whose retry is not
   * safe on its own (a blob body cut mid-way leaves the upload session unusable: the caller restarts it).
   */
  retries?: number
  /** Token scopes the request needs, e.g. `repository:team/app:pull,push`. */
  scopes: string[]
  /** Absolute, or a path on the registry (`/v2/...`). */
  url: string | URL
  /** What the request is for, in error messages ("upload blob sha256:…"). */
  what: string
}

export interface RegistryClientOptions {
  credential?: Credential
  /** Sends every request through this fetch instead of node:http (a proxy, a test double). */
  fetch?: typeof fetch
  /** Wait before the first retry; doubles after each, with jitter. */
  initialBackoffMs?: number
  maxBackoffMs?: number
  /** Speak HTTP instead of HTTPS; loopback hosts always do. */
  plainHttp?: boolean
  registry: string
  /** Retries after the first try, for 408, 429, 5xx and connection errors. */
  retries?: number
  signal?: AbortSignal
}

interface Challenge {
  realm?: string
  scheme: 'basic' | 'bearer'
  scope?: string
  service?: string
}

const MAX_REDIRECTS = 5
/** A token service's answer is a small JSON document (a JWT or two); anything larger is not one. */
const MAX_TOKEN_BODY = 1024 * 1024

/** The API host of a registry name: Docker Hub's API is not at docker.io. */
export function apiHost(registry: string): string {
  return registry === DEFAULT_REGISTRY ? 'registry-1.docker.io' : registry
}

/** A URL fit for messages: no query (upload state, signatures) and no user info. */
export function redactUrl(url: string | URL): string {
  const parsed = new URL(url)
  return `${parsed.origin}${parsed.pathname}`
}

/** Parses `WWW-Authenticate: Bearer realm="…",service="…",scope="…"` (or Basic). */
export function parseChallenge(header: null | string): Challenge | undefined {
  if (!header) return undefined
  const match = /^\s*(basic|bearer)\b(.*)$/i.exec(header)
  if (!match) return undefined
  const challenge: Challenge = {scheme: match[1].toLowerCase() as Challenge['scheme']}
  for (const param of match[2].matchAll(/([a-z_]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]+))/gi)) {
    const value = (param[2] ?? param[3]).replaceAll(/\\(.)/g, '$1')
    const key = param[1].toLowerCase()
    if (key === 'realm' || key === 'service' || key === 'scope') challenge[key] = value
  }

  return challenge
}

function basicAuthorization(credential: Credential): string {
  return `Basic ${Buffer.from(`${credential.username ?? ''}:${credential.password ?? ''}`).toString('base64')}`
}

/**
 * HTTP to one registry, as the distribution spec and the best clients do it: a `/v2/` ping to learn the
 * challenge, Basic or Bearer auth with tokens cached per scope set and refreshed once on a 401, retries
 * with backoff (and `Retry-After`) on 408/429/5xx and connection errors, bodies re-opened for every try,
 * redirects followed by hand so that `Authorization` never leaves the registry's origin.
 */
export class RegistryClient {
  readonly origin: string
  private challenge: Challenge | null | undefined
  private pinging: Promise<Challenge | null> | undefined
  private readonly tokens = new Map<string, {expiresAt: number; token: string}>()

  constructor(private readonly options: RegistryClientOptions) {
    const host = apiHost(options.registry)
    const plain = options.plainHttp === true || isLoopbackRegistry(host)
    this.origin = `${plain ? 'http' : 'https'}://${host}`
  }

  /** Sends a request, with auth, redirects and retries; returns a response whose status is in `ok`. */
  async send(request: RegistryRequest): Promise<RegistryResponse> {
    return this.withRetries(async () => {
      let response: RegistryResponse
      try {
        response = await this.sendOnce(request)
      } catch (error) {
        // Our own failure inside a request body (a damaged blob) surfaces as fetch's cause: never retried.
        const {cause} = (error as Error)
        if (isMicroagentError(cause)) throw cause
        if (isMicroagentError(error) || this.options.signal?.aborted || !isNetworkError(error)) throw error
        throw this.transient(`${request.what}: ${this.describeNetworkError(error)}`, error)
      }

      if (request.ok.includes(response.status)) return response
      throw await this.responseError(request, response)
    }, request.retries)
  }

  /**
   * Runs `attempt` until it succeeds or fails for good: transient failures (connection errors, 408, 429,
   * 5xx, a /v2/ ping answered so) are tried again after a growing, jittered wait or the server's
   * Retry-After, `retries` times (the client's setting by default), then surface with exit 75.
   */
  async withRetries<T>(attempt: () => Promise<T>, retries = this.options.retries ?? 5): Promise<T> {
    let backoff = this.options.initialBackoffMs ?? 250
    for (let tries = 0; ; tries++) {
      try {
        return await attempt()
      } catch (error) {
        if (!isMicroagentError(error) || error.kind !== 'transient' || tries >= retries || this.options.signal?.aborted) throw error
        await this.wait(Math.min(error.retryAfterMs ?? backoff, 60_000))
        backoff = Math.min(backoff * 2, this.options.maxBackoffMs ?? 10_000)
      }
    }
  }

  private async authorization(scopes: string[], force = false): Promise<string | undefined> {
    const challenge = await this.ping()
    const {credential} = this.options
    if (!challenge) return undefined
    if (challenge.scheme === 'basic') {
      if (!credential?.username) return undefined
      return basicAuthorization(credential)
    }

    if (credential?.registryToken) return `Bearer ${credential.registryToken}`
    const key = [...scopes].sort().join(' ')
    const cached = this.tokens.get(key)
    if (cached && !force && cached.expiresAt > Date.now()) return `Bearer ${cached.token}`
    const token = await this.fetchToken(challenge, scopes)
    this.tokens.set(key, token)
    return `Bearer ${token.token}`
  }

  private describeNetworkError(error: unknown): string {
    const cause = (error as Error).cause as NodeJS.ErrnoException | undefined
    return `cannot reach ${this.origin}: ${cause?.code ?? cause?.message ?? (error as Error).message}`
  }

  /** One exchange, no redirect followed: through node:http (see httpRequest), or the fetch the options give. */
  private async dispatch(url: URL, init: {body?: AsyncIterable<Uint8Array> | Buffer; headers: Record<string, string>; method: string}): Promise<RegistryResponse> {
    const {signal} = this.options
    if (!this.options.fetch) return httpRequest(url, {...init, signal})
    const body = init.body as RequestInit['body']
    return fromFetch(await this.options.fetch(url, {
      ...init, body, ...(body && !Buffer.isBuffer(body) ? {duplex: 'half'} : {}), redirect: 'manual', signal,
    }))
  }

  private failure(message: string, kind: 'permanent' | 'policy_denied' | 'transient'): MicroagentError {
    if (kind === 'transient') return this.transient(message)
    return new MicroagentError(message, {
      code: kind === 'policy_denied' ? 'REGISTRY_DENIED' : 'PUSH_FAILED',
      exit: 'push',
      kind,
      remediation:
        kind === 'policy_denied'
          ? `Log in to ${this.options.registry} (docker login, podman login) or check the credentials file, then retry.`
          : 'See the message; fix the registry or the reference, then retry.',
    })
  }

  private async fetchToken(challenge: Challenge, scopes: string[]): Promise<{expiresAt: number; token: string}> {
    if (!challenge.realm) throw this.failure(`${this.origin} asked for a bearer token without saying where to get one`, 'permanent')
    const realm = new URL(challenge.realm)
    const {credential} = this.options
    const realmIsSafe = realm.protocol === 'https:' || isLoopbackRegistry(realm.host) || this.options.plainHttp === true
    if (credential && !realmIsSafe) {
      throw this.failure(`refusing to send credentials to the token service ${redactUrl(realm)} over plain HTTP`, 'policy_denied')
    }

    const response = await this.requestToken(realm, challenge, scopes)
    const is = await loadIs()
    if (!response.ok) {
      const detail = specErrors(is, await readBounded(response))
      const kind = response.status === 401 || response.status === 403 ? 'policy_denied' : (RETRYABLE_STATUS.has(response.status) ? 'transient' : 'permanent')
      throw this.failure(
        `the token service ${redactUrl(realm)} refused ${describeCredential(credential)} (${response.status}${detail ? `: ${detail}` : ''})`,
        kind,
      )
    }

    let body: unknown
    try {
      body = JSON.parse(await response.text(MAX_TOKEN_BODY))
    } catch {
      body = undefined
    }

    if (!is.plainObject(body)) throw this.failure(`the token service ${redactUrl(realm)} answered something that is not a JSON object`, 'permanent')
    const token = is.nonEmptyString(body.token) ? body.token : (is.nonEmptyString(body.access_token) ? body.access_token : undefined)
    if (!token) throw this.failure(`the token service ${redactUrl(realm)} returned no token`, 'permanent')
    // The token spec's default lifetime is 60 s; renew a little early so a request never carries a dead token.
    const lifetime = Math.max(is.number(body.expires_in) ? body.expires_in : 60, 60)
    return {expiresAt: Date.now() + (lifetime - 10) * 1000, token}
  }

  /**
   * GET /v2/ once, to learn how the registry wants to be spoken to (no auth, Basic or Bearer). Requests
   * made at the same time (the blob pool) share one ping; a failed one is tried again by the next request.
   */
  private async ping(): Promise<Challenge | null> {
    if (this.challenge !== undefined) return this.challenge
    this.pinging ??= this.pingOnce().finally(() => {
      this.pinging = undefined
    })
    return this.pinging
  }

  private async pingOnce(): Promise<Challenge | null> {
    const response = await this.dispatch(new URL(`${this.origin}/v2/`), {headers: {'user-agent': 'microagent-plugin-image'}, method: 'GET'})
    await response.discard()
    if (response.status === 401) {
      this.challenge = parseChallenge(response.headers.get('www-authenticate')) ?? null
    } else if (response.ok) {
      this.challenge = null
    } else if (RETRYABLE_STATUS.has(response.status)) {
      throw this.transient(`${this.origin}/v2/ answered ${response.status}`)
    } else {
      throw this.failure(`${this.origin} does not look like a registry: GET /v2/ answered ${response.status}`, 'permanent')
    }

    return this.challenge
  }

  /**
   * Asks the token realm: the OAuth2 refresh-token flow for identity tokens, else the distribution token
   * GET, with Basic credentials when there are some (anonymous otherwise).
   */
  private async requestToken(realm: URL, challenge: Challenge, scopes: string[]): Promise<RegistryResponse> {
    const {credential} = this.options
    const headers: Record<string, string> = {'user-agent': 'microagent-plugin-image'}
    if (credential?.identityToken) {
      const form = new URLSearchParams({
        client_id: 'microagent',
        grant_type: 'refresh_token',
        refresh_token: credential.identityToken,
        scope: scopes.join(' '),
        service: challenge.service ?? '',
      })
      const body = Buffer.from(form.toString())
      return this.dispatch(realm, {
        body,
        headers: {...headers, 'content-length': String(body.length), 'content-type': 'application/x-www-form-urlencoded'},
        method: 'POST',
      })
    }

    if (challenge.service) realm.searchParams.set('service', challenge.service)
    for (const scope of scopes) realm.searchParams.append('scope', scope)
    if (credential?.username) {
      realm.searchParams.set('account', credential.username)
      headers.authorization = basicAuthorization(credential)
    }

    return this.dispatch(realm, {headers, method: 'GET'})
  }

  private async responseError(request: RegistryRequest, response: RegistryResponse): Promise<MicroagentError> {
    const detail = specErrors(await loadIs(), await readBounded(response))
    const message = `${request.what}: ${request.method} ${redactUrl(response.url || new URL(request.url, this.origin))} answered ${response.status}${detail ? ` (${detail})` : ''}`
    if (RETRYABLE_STATUS.has(response.status)) return this.transient(message, undefined, retryAfterMs(response))
    if (response.status === 401 || response.status === 403) {
      return this.failure(`${message}; authenticated as ${describeCredential(this.options.credential)}`, 'policy_denied')
    }

    return this.failure(message, 'permanent')
  }

  /** One try: auth, the request, one token refresh on a 401, redirects. Bodies are re-opened each time. */
  private async sendOnce(request: RegistryRequest): Promise<RegistryResponse> {
    let url = new URL(request.url, this.origin)
    let {method} = request
    let withBody = request.body !== undefined
    let refreshed = false
    for (let hop = 0; ;) {
      const sameOrigin = url.origin === this.origin
      const headers: Record<string, string> = {'user-agent': 'microagent-plugin-image', ...request.headers}
      // Credentials go to the registry's own origin only: never to a redirect or Location elsewhere.
      const authorization = sameOrigin ? await this.authorization(request.scopes, refreshed) : undefined
      if (authorization) headers.authorization = authorization
      let body: AsyncIterable<Uint8Array> | Buffer | undefined
      if (withBody && request.body) {
        const made = request.body()
        body = made.body
        headers['content-length'] = String(made.length)
      } else if (method === 'PUT' || method === 'POST' || method === 'PATCH') {
        headers['content-length'] = '0'
      }

      const response = await this.dispatch(url, {body, headers, method})
      if (response.status === 401 && sameOrigin && !refreshed) {
        const challenge = parseChallenge(response.headers.get('www-authenticate'))
        await response.discard()
        if (challenge) this.challenge = {...challenge, scope: undefined}
        refreshed = true
        continue
      }

      const location = response.headers.get('location')
      if ([301, 302, 303, 307, 308].includes(response.status) && location) {
        await response.discard()
        if (++hop > MAX_REDIRECTS) throw this.failure(`${request.what}: too many redirects`, 'permanent')
        url = new URL(location, url)
        if (response.status === 303) {
          method = 'GET'
          withBody = false
        }

        continue
      }

      return response
    }
  }

  private transient(message: string, cause?: unknown, retryAfter?: number): MicroagentError {
    return new MicroagentError(message, {
      cause,
      code: 'REGISTRY_UNAVAILABLE',
      exit: 'transient',
      kind: 'transient',
      remediation: 'The registry or the network failed repeatedly; retry later. The push resumes: blobs already uploaded are skipped.',
      retryAfterMs: retryAfter,
    })
  }

  private async wait(ms: number): Promise<void> {
    await sleep(ms * (0.9 + Math.random() * 0.2), undefined, {signal: this.options.signal})
  }
}
