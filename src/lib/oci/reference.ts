import {isIP} from 'node:net'

import {usageError} from '../support/errors.js'

export const DEFAULT_REGISTRY = 'docker.io'
/** A pseudo-registry for images that only live in the local layout: `local/<name>` is never Docker Hub. */
export const LOCAL_NAMESPACE = 'local'

// The distribution reference grammar (distribution/reference), one piece at a time.
const ALNUM = '[a-z0-9]+'
const SEPARATOR = '(?:[._]|__|[-]+)'
const PATH_COMPONENT = `${ALNUM}(?:${SEPARATOR}${ALNUM})*`
const DOMAIN_COMPONENT = '(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])'
const HOST = `(?:${DOMAIN_COMPONENT}(?:\\.${DOMAIN_COMPONENT})*|\\[[0-9a-fA-F:.]+\\])`
const DOMAIN_RE = new RegExp(`^${HOST}(?::[0-9]+)?$`)
const PATH_RE = new RegExp(`^${PATH_COMPONENT}(?:/${PATH_COMPONENT})*$`)
const TAG_RE = /^\w[\w.-]{0,127}$/
const DIGEST_RE = /^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]{32,}$/
const MAX_NAME_LENGTH = 255

export interface Reference {
  digest?: string
  /** The reference as the user typed it, trimmed: the layout's tag (microagent looks images up by it). */
  raw: string
  /** Registry host (with port), `docker.io` when the reference names none. */
  registry: string
  /** Repository path within the registry, with `library/` added for Docker Hub's official images. */
  repository: string
  tag?: string
}

function badReference(raw: string, why: string): Error {
  return usageError(
    `invalid image reference "${raw}": ${why}`,
    'Use [registry/]repository[:tag], lowercase, e.g. local/demo:v1 or localhost:5000/team/app:1.0.',
  )
}

/** Splits `name[:tag]`; a colon before the last slash belongs to a registry port. */
function splitTag(raw: string, rest: string): [name: string, tag: string | undefined] {
  const lastColon = rest.lastIndexOf(':')
  if (lastColon <= rest.lastIndexOf('/')) return [rest, undefined]
  const tag = rest.slice(lastColon + 1)
  if (!TAG_RE.test(tag)) throw badReference(raw, `"${tag}" is not a valid tag`)
  return [rest.slice(0, lastColon), tag]
}

/** Parses `[registry/]repository[:tag][@digest]` strictly, as the distribution grammar does. */
export function parseReference(input: string): Reference {
  const raw = input.trim()
  if (raw === '') throw usageError('image reference is required')
  let rest = raw
  let digest: string | undefined
  const at = rest.indexOf('@')
  if (at !== -1) {
    digest = rest.slice(at + 1)
    rest = rest.slice(0, at)
    if (!DIGEST_RE.test(digest)) throw badReference(raw, `"${digest}" is not a digest`)
  }

  const [name, tag] = splitTag(raw, rest)
  rest = name

  if (rest === '') throw badReference(raw, 'no repository name')
  const slash = rest.indexOf('/')
  const first = slash === -1 ? '' : rest.slice(0, slash)
  const hasDomain = slash !== -1 && (first.includes('.') || first.includes(':') || first === 'localhost' || /[A-Z]/.test(first))
  const registry = hasDomain ? first : DEFAULT_REGISTRY
  let repository = hasDomain ? rest.slice(slash + 1) : rest
  if (hasDomain && !DOMAIN_RE.test(registry)) throw badReference(raw, `"${registry}" is not a valid registry host`)
  if (!PATH_RE.test(repository)) {
    throw badReference(raw, `"${repository}" is not a valid repository name (lowercase letters, digits, separators . _ -)`)
  }

  if (rest.length > MAX_NAME_LENGTH) throw badReference(raw, `the name is longer than ${MAX_NAME_LENGTH} characters`)
  if (registry === DEFAULT_REGISTRY && !repository.includes('/')) repository = `library/${repository}`
  return {
    raw,
    registry,
    repository,
    ...(tag === undefined ? {} : {tag}),
    ...(digest === undefined ? {} : {digest}),
  }
}

/** Whether the reference lives under the `local/` pseudo-registry (typed without a registry host). */
export function isLocalReference(ref: Reference): boolean {
  return ref.registry === DEFAULT_REGISTRY && ref.raw.split('/')[0] === LOCAL_NAMESPACE
}

/** Loopback hosts are the only ones spoken to over plain HTTP without an explicit flag. */
export function isLoopbackRegistry(registry: string): boolean {
  let host = registry
  const bracket = /^\[([^\]]+)\](?::\d+)?$/.exec(host)
  if (bracket) host = bracket[1]
  else if (/:\d+$/.test(host) && host.split(':').length === 2) host = host.slice(0, host.lastIndexOf(':'))
  if (host.toLowerCase() === 'localhost') return true
  if (isIP(host) === 4) return host.startsWith('127.')
  if (isIP(host) === 6) return host === '::1' || /^(0+:){7}0*1$/.test(host)
  return false
}

/** A reference that can name a tag in the layout: a tag (or none, meaning latest) and no digest. */
export function parseTagReference(input: string, verb: 'commit to' | 'tag' = 'commit to'): Reference {
  const ref = parseReference(input)
  if (ref.digest !== undefined) {
    throw usageError(
      `cannot ${verb} "${ref.raw}": a digest reference names existing content, not a tag`,
      'Give a tag instead, e.g. local/demo:v1.',
    )
  }

  return ref
}
