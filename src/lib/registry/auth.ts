import {readFile} from 'node:fs/promises'
import {homedir} from 'node:os'
import path from 'node:path'

import {DEFAULT_REGISTRY} from '../oci/reference.js'
import {MicroagentError} from '../support/errors.js'
import {type Is, loadIs} from '../support/is.js'

/** What a config file or helper holds for one registry. Never printed: see `describeCredential`. */
export interface Credential {
  /** An OAuth refresh token (`identitytoken`), exchanged at the token realm. */
  identityToken?: string
  password?: string
  /** A bearer token sent as it is (`registrytoken`). */
  registryToken?: string
  /** Where it came from, for messages: a file path, or `docker-credential-<name>`. */
  source: string
  username?: string
}

export interface AuthFile {
  kind: 'containers' | 'docker' | 'microagent' | 'registry-auth-file'
  path: string
}

/** Docker Hub's names: credentials may be stored under any of them. */
const DOCKER_HUB = new Set(['docker.io', 'index.docker.io', 'registry-1.docker.io'])
/** The key `docker login` writes for Docker Hub, and the server address helpers expect. */
export const DOCKER_HUB_KEY = 'https://index.docker.io/v1/'

/**
 * The credential files, in the order they are consulted; the first one that holds a credential for the
 * registry wins. `$REGISTRY_AUTH_FILE` is an explicit choice; Docker's config is the documented default;
 * then microagent's own file (always under HOME); then the containers (podman, skopeo) files.
 */
export function authFiles(env: NodeJS.ProcessEnv = process.env): AuthFile[] {
  const home = env.HOME ?? homedir()
  const files: AuthFile[] = []
  if (env.REGISTRY_AUTH_FILE?.trim()) files.push({kind: 'registry-auth-file', path: env.REGISTRY_AUTH_FILE.trim()})
  const dockerDir = env.DOCKER_CONFIG?.trim() || path.join(home, '.docker')
  files.push(
    {kind: 'docker', path: path.join(dockerDir, 'config.json')},
    {kind: 'microagent', path: path.join(home, '.microagent', 'auth.json')},
  )
  if (env.XDG_RUNTIME_DIR?.trim()) files.push({kind: 'containers', path: path.join(env.XDG_RUNTIME_DIR.trim(), 'containers', 'auth.json')})
  const configHome = env.XDG_CONFIG_HOME?.trim() || path.join(home, '.config')
  files.push({kind: 'containers', path: path.join(configHome, 'containers', 'auth.json')})
  return files
}

/** `https://host:port/v1/` → `host:port`; Docker Hub's aliases → `docker.io`. */
export function normalizeRegistryKey(key: string): string {
  const host = key
  .trim()
  .replace(/^[a-z]+:\/\//i, '')
  .replace(/\/.*$/, '')
  .toLowerCase()
  return DOCKER_HUB.has(host) ? DEFAULT_REGISTRY : host
}

function badFile(file: string, why: string): MicroagentError {
  return new MicroagentError(`cannot use credentials file ${file}: ${why}`, {
    code: 'AUTH_FILE_INVALID',
    exit: 'push',
    kind: 'permanent',
    remediation: `Fix or remove ${file} (it must be JSON like {"auths": {"<registry>": {"auth": "<base64 user:password>"}}}).`,
  })
}

function decodeAuth(value: string, file: string): {password: string; username: string} {
  const decoded = Buffer.from(value, 'base64').toString('utf8')
  const colon = decoded.indexOf(':')
  if (colon <= 0) throw badFile(file, 'an "auth" value is not base64 of "user:password"')
  // docker/cli trims NULs some tools leave at the end of the password.
  return {password: decoded.slice(colon + 1).replace(/\0+$/, ''), username: decoded.slice(0, colon)}
}

function fromAuthsEntry(is: Is, entry: unknown, file: string): Credential | undefined {
  if (!is.plainObject(entry)) return undefined
  const credential: Credential = {source: file}
  if (is.nonEmptyString(entry.auth)) Object.assign(credential, decodeAuth(entry.auth, file))
  if (is.nonEmptyString(entry.username) && is.string(entry.password)) {
    credential.username = entry.username
    credential.password = entry.password
  }

  if (is.nonEmptyString(entry.identitytoken)) credential.identityToken = entry.identitytoken
  if (is.nonEmptyString(entry.registrytoken)) credential.registryToken = entry.registrytoken
  // `{}` is what Docker writes beside a credential helper: no credential here.
  return credential.username || credential.identityToken || credential.registryToken ? credential : undefined
}

/** Runs `docker-credential-<name> get`; "credentials not found" means anonymous, anything else is an error. */
export async function runCredentialHelper(name: string, serverUrl: string, file: string): Promise<Credential | undefined> {
  const helper = `docker-credential-${name}`
  // Loaded here, not at the top: its import costs ~0.1 s that pushes without a helper do not need.
  const {execa} = await import('execa')
  const result = await execa(helper, ['get'], {input: serverUrl, reject: false, timeout: 30_000})
  if ((result as {code?: string}).code === 'ENOENT') {
    throw new MicroagentError(`credential helper ${helper} (configured in ${file}) is not installed or not on PATH`, {
      code: 'CREDENTIAL_HELPER_MISSING',
      exit: 'push',
      kind: 'permanent',
      remediation: `Install ${helper}, or remove it from ${file} and log in again.`,
    })
  }

  const output = `${result.stdout}\n${result.stderr}`
  if (result.exitCode !== 0) {
    if (/credentials not found/i.test(output)) return undefined
    throw new MicroagentError(`credential helper ${helper} failed (exit ${result.exitCode ?? result.signal})`, {
      code: 'CREDENTIAL_HELPER_FAILED',
      exit: 'push',
      kind: 'permanent',
      remediation: `Run \`echo ${serverUrl} | ${helper} get\` to see why, or log in again.`,
    })
  }

  let answer: unknown
  try {
    answer = JSON.parse(result.stdout)
  } catch {
    throw new MicroagentError(`credential helper ${helper} printed something that is not JSON`, {
      code: 'CREDENTIAL_HELPER_FAILED',
      exit: 'push',
      kind: 'permanent',
      remediation: `Check ${helper}; it must print {"ServerURL", "Username", "Secret"}.`,
    })
  }

  const is = await loadIs()
  if (!is.plainObject(answer) || !is.nonEmptyString(answer.Secret)) return undefined
  // A helper answers Username "<token>" for an identity (refresh) token.
  if (answer.Username === '<token>') return {identityToken: answer.Secret, source: helper}
  return {password: answer.Secret, source: helper, username: is.string(answer.Username) ? answer.Username : ''}
}

async function readAuthFile(is: Is, file: string): Promise<Record<PropertyKey, unknown> | undefined> {
  let text: string
  try {
    text = await readFile(file, 'utf8')
  } catch (error) {
    const {code} = error as NodeJS.ErrnoException
    if (code === 'ENOENT' || code === 'ENOTDIR') return undefined
    throw badFile(file, (error as Error).message)
  }

  let config: unknown
  try {
    config = JSON.parse(text)
  } catch (error) {
    throw badFile(file, `not valid JSON (${(error as Error).message})`)
  }

  if (!is.plainObject(config)) throw badFile(file, 'not a JSON object')
  return config
}

/**
 * The credential for `registry` from one file: `credHelpers[registry]`, then `credsStore`, then `auths`,
 * as docker/cli ranks them. Keys match after normalisation (scheme and path dropped, Docker Hub aliases).
 */
export async function credentialFromFile(file: AuthFile, registry: string): Promise<Credential | undefined> {
  const is = await loadIs()
  const config = await readAuthFile(is, file.path)
  if (!config) return undefined
  const target = normalizeRegistryKey(registry)
  const serverUrl = target === DEFAULT_REGISTRY ? DOCKER_HUB_KEY : target
  const find = (map: unknown): [string, unknown] | undefined => {
    if (!is.plainObject(map)) return undefined
    const entries = Object.entries(map)
    return entries.find(([key]) => key === registry) ?? entries.find(([key]) => normalizeRegistryKey(key) === target)
  }

  const helper = find(config.credHelpers)
  if (helper && is.nonEmptyString(helper[1])) return runCredentialHelper(helper[1], serverUrl, file.path)
  if (is.nonEmptyString(config.credsStore)) {
    const stored = await runCredentialHelper(config.credsStore, serverUrl, file.path)
    if (stored) return stored
  }

  const auth = find(config.auths)
  return auth ? fromAuthsEntry(is, auth[1], file.path) : undefined
}

/** The first credential any file holds for `registry`, or undefined for anonymous access. */
export async function resolveCredential(registry: string, env: NodeJS.ProcessEnv = process.env): Promise<Credential | undefined> {
  for (const file of authFiles(env)) {
    const credential = await credentialFromFile(file, registry)
    if (credential) return credential
  }

  return undefined
}

/** A safe description of a credential for messages: the user name and the source, never a secret. */
export function describeCredential(credential?: Credential): string {
  if (!credential) return 'anonymous'
  if (credential.username) return `user "${credential.username}" from ${credential.source}`
  return `a token from ${credential.source}`
}
