import {
  type ChildProcess, execFile, execFileSync, spawn,
} from 'node:child_process'
import {
  createHash, createPrivateKey, randomUUID, sign, X509Certificate,
} from 'node:crypto'
import {
  closeSync, mkdirSync, openSync, readFileSync, writeFileSync,
} from 'node:fs'
import {createServer, type Server} from 'node:http'
import {createServer as createNetServer} from 'node:net'
import path from 'node:path'
import {setTimeout as sleep} from 'node:timers/promises'
import {promisify} from 'node:util'

import {tempDir} from './ext4.js'

export const USER = 'testuser'
export const PASSWORD = 'testpass-s3cr3t'

export type AuthMode = 'basic' | 'none' | 'token'

export interface TestRegistry {
  /** `127.0.0.1:<port>` */
  host: string
  /** Requests the registry served, from its access log: method and path (no query). */
  requests(): {method: string; path: string}[]
  stop(): Promise<void>
  token?: TokenServer
}

export async function freePort(): Promise<number> {
  const server = createNetServer()
  await new Promise<void>(resolve => {
    server.listen(0, '127.0.0.1', resolve)
  })
  const {port} = server.address() as {port: number}
  await new Promise(resolve => {
    server.close(resolve)
  })
  return port
}

const b64url = (data: Buffer | string): string => Buffer.from(data).toString('base64url')

export interface TokenServer {
  /** Issue the next N tokens already expired (past the registry's 60 s leeway). */
  expireNext: number
  issued: number
  realm: string
  stop(): Promise<void>
}

/**
 * A distribution token server: Basic-authenticated users get the actions they ask for, anonymous callers
 * only pull. Tokens are RS256 JWTs with the certificate in x5c, which the registry checks against its
 * rootcertbundle.
 */
export async function startTokenServer(keyFile: string, certFile: string, issuer: string): Promise<TokenServer> {
  const key = createPrivateKey(readFileSync(keyFile))
  const cert = new X509Certificate(readFileSync(certFile))
  const port = await freePort()
  const state: TokenServer = {
    expireNext: 0, issued: 0, realm: `http://127.0.0.1:${port}/token`, async stop() {},
  }
  const server: Server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', state.realm)
    let user = ''
    const auth = req.headers.authorization
    if (auth?.startsWith('Basic ')) {
      const [name, ...rest] = Buffer.from(auth.slice(6), 'base64').toString().split(':')
      if (name !== USER || rest.join(':') !== PASSWORD) {
        res.writeHead(401, {'content-type': 'application/json'}).end('{"details":"wrong credentials"}')
        return
      }

      user = name
    }

    const access = url.searchParams.getAll('scope').flatMap(scope =>
      scope.split(' ').map(entry => {
        const parts = entry.split(':')
        const actions = parts.pop()!.split(',')
        return {actions: user ? actions : actions.filter(a => a === 'pull'), name: parts.slice(1).join(':'), type: parts[0]}
      }))
    const now = Math.floor(Date.now() / 1000)
    const expired = state.expireNext > 0
    if (expired) state.expireNext--
    const claims = {
      access,
      aud: url.searchParams.get('service'),
      exp: expired ? now - 120 : now + 300,
      iat: expired ? now - 600 : now,
      iss: issuer,
      jti: randomUUID(),
      nbf: expired ? now - 600 : now - 5,
      sub: user,
    }
    const header = {alg: 'RS256', typ: 'JWT', x5c: [cert.raw.toString('base64')]}
    const signingInput = `${b64url(JSON.stringify(header))}.${b64url(JSON.stringify(claims))}`
    const token = `${signingInput}.${b64url(sign('sha256', Buffer.from(signingInput), key))}`
    state.issued++
    res.writeHead(200, {'content-type': 'application/json'}).end(JSON.stringify({
      access_token: token, expires_in: 300, issued_at: new Date().toISOString(), token,
    }))
  })
  await new Promise<void>(resolve => {
    server.listen(port, '127.0.0.1', resolve)
  })
  state.stop = () =>
    new Promise(resolve => {
      server.close(() => resolve())
      server.closeAllConnections()
    })
  return state
}

/**
 * Starts Debian's docker-registry (CNCF Distribution) on 127.0.0.1 with no auth, htpasswd (Basic) or
 * token auth, storing in a temp dir; stops it (and its token server) on `stop()`.
 */
export async function startRegistry(mode: AuthMode, options: {relativeUrls?: boolean} = {}): Promise<TestRegistry> {
  const dir = tempDir('plugin-image-registry-')
  const port = await freePort()
  const host = `127.0.0.1:${port}`
  let auth = ''
  let token: TokenServer | undefined
  if (mode === 'basic') {
    writeFileSync(path.join(dir, 'htpasswd'), execFileSync('htpasswd', ['-Bbn', USER, PASSWORD]))
    auth = `auth: {htpasswd: {realm: basic-realm, path: ${path.join(dir, 'htpasswd')}}}`
  } else if (mode === 'token') {
    const key = path.join(dir, 'key.pem')
    const cert = path.join(dir, 'cert.pem')
    execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert, '-days', '2', '-subj', '/CN=test-token-issuer'], {stdio: 'ignore'})
    token = await startTokenServer(key, cert, 'test-issuer')
    auth = `auth: {token: {realm: ${token.realm}, service: test-registry, issuer: test-issuer, rootcertbundle: ${cert}}}`
  }

  mkdirSync(path.join(dir, 'data'))
  const config = path.join(dir, 'config.yml')
  writeFileSync(
    config,
    [
      'version: 0.1',
      'log: {level: info, accesslog: {disabled: false}}',
      `storage: {filesystem: {rootdirectory: ${path.join(dir, 'data')}}, delete: {enabled: true}}`,
      `http: {addr: ${host}, secret: test-secret${options.relativeUrls ? ', relativeurls: true' : ''}}`,
      auth,
      '',
    ].join('\n'),
  )
  const logFile = path.join(dir, 'registry.log')
  const log = openSync(logFile, 'w')
  const child: ChildProcess = spawn('docker-registry', ['serve', config], {stdio: ['ignore', log, log]})
  closeSync(log)
  for (let i = 0; ; i++) {
    try {
      await fetch(`http://${host}/v2/`)
      break
    } catch {
      if (i > 250 || child.exitCode !== null) throw new Error(`docker-registry did not start: ${readFileSync(logFile, 'utf8').slice(-2000)}`)
      await sleep(20)
    }
  }

  return {
    host,
    requests() {
      // One "response completed" line per request; other lines (auth decisions) repeat the request fields.
      // logfmt quotes a value only when it needs to: `uri=/v2/` but `uri="/v2/x?mount=…"`.
      return readFileSync(logFile, 'utf8')
      .split('\n')
      .filter(line => line.includes('msg="response completed"'))
      .map(line => /http\.request\.method=([A-Z]+) .*?http\.request\.uri=(?:"([^"?]*)|([^\s"?]+))/.exec(line))
      .filter((m): m is RegExpExecArray => m !== null)
      .map(m => ({method: m[1], path: m[2] ?? m[3]}))
    },
    async stop() {
      await token?.stop()
      if (child.exitCode === null) {
        child.kill('SIGTERM')
        await new Promise(resolve => {
          child.once('exit', resolve)
          setTimeout(() => child.kill('SIGKILL'), 5000).unref()
        })
      }
    },
    token,
  }
}

/** Writes a Docker config.json holding a credential for `host`, and returns its folder (for DOCKER_CONFIG). */
export function dockerConfig(host: string, entry?: Record<string, unknown>): string {
  entry ??= {auth: Buffer.from(`${USER}:${PASSWORD}`).toString('base64')}
  const dir = tempDir('plugin-image-dockercfg-')
  writeFileSync(path.join(dir, 'config.json'), JSON.stringify({auths: {[host]: entry}}))
  return dir
}

/** The sha256 a blob upload of `data` would carry, for assertions. */
export const digestOf = (data: Buffer | string): string => `sha256:${createHash('sha256').update(data).digest('hex')}`

/**
 * Pulls an image back with skopeo, straight from the registry at `host`, and returns the manifest digest it
 * got. Asynchronous: the token server runs in this process and must keep answering while skopeo runs.
 */
export async function pullDigest(host: string, ref: string): Promise<string> {
  const out = path.join(tempDir('plugin-image-pull-'), 'oci')
  await promisify(execFile)('skopeo', ['copy', '--quiet', '--src-tls-verify=false', '--src-creds', `${USER}:${PASSWORD}`, `docker://${host}/${ref}`, `oci:${out}:pulled`], {
    env: {...process.env, HOME: tempDir(), XDG_RUNTIME_DIR: ''},
  })
  const index = JSON.parse(readFileSync(path.join(out, 'index.json'), 'utf8')) as {manifests: {digest: string}[]}
  return index.manifests[0].digest
}
