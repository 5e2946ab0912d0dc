import type {ImageDefaults} from '../workspace/workspace.js'
import type {Architecture} from './platform.js'

import {usageError} from '../support/errors.js'

export const MEDIA_TYPES = {
  config: 'application/vnd.oci.image.config.v1+json',
  index: 'application/vnd.oci.image.index.v1+json',
  manifest: 'application/vnd.oci.image.manifest.v1+json',
} as const

export const REF_NAME_ANNOTATION = 'org.opencontainers.image.ref.name'

export interface Descriptor {
  annotations?: Record<string, string>
  digest: string
  mediaType: string
  platform?: {architecture: string; os: string}
  size: number
}

export interface ImageConfig {
  architecture: string
  author?: string
  config: Record<string, unknown>
  created: string
  history: {author?: string; comment?: string; created: string; created_by: string}[]
  os: 'linux'
  rootfs: {diff_ids: string[]; type: 'layers'}
}

export interface ImageManifest {
  config: Descriptor
  layers: Descriptor[]
  mediaType: typeof MEDIA_TYPES.manifest
  schemaVersion: 2
}

/** RFC 3339 in UTC with the fraction trimmed, as Go's RFC3339Nano writes it. */
export function formatCreated(date: Date): string {
  return date.toISOString().replace(/\.0+Z$/, 'Z').replace(/(\.\d*?)0+Z$/, '$1Z')
}

/**
 * The image's creation time: an explicit RFC 3339 value, else `SOURCE_DATE_EPOCH` (seconds), else now.
 * A fixed value makes the same disk give the same config and manifest digests.
 */
export function resolveCreated(explicit: string | undefined, env: NodeJS.ProcessEnv = process.env, now = new Date()): Date {
  if (explicit !== undefined) {
    const rfc3339 = /^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$/
    const parsed = new Date(explicit)
    if (!rfc3339.test(explicit) || Number.isNaN(parsed.getTime())) {
      throw usageError(`--created "${explicit}" is not an RFC 3339 time`, 'Use e.g. --created 2026-01-01T00:00:00Z.')
    }

    return parsed
  }

  const epoch = env.SOURCE_DATE_EPOCH?.trim()
  if (epoch) {
    if (!/^\d{1,12}$/.test(epoch)) throw usageError(`SOURCE_DATE_EPOCH "${epoch}" is not a whole number of seconds`)
    return new Date(Number(epoch) * 1000)
  }

  return now
}

function asSet(values: string[] | undefined): Record<string, Record<string, never>> | undefined {
  if (!values || values.length === 0) return undefined
  return Object.fromEntries([...values].sort().map(v => [v, {}]))
}

/** The OCI `config` object from the source image's defaults, in the field order Go writes. */
export function runtimeConfig(defaults: ImageDefaults): Record<string, unknown> {
  const config: Record<string, unknown> = {
    User: defaults.User || undefined,

    ExposedPorts: asSet(defaults.ExposedPorts?.map(p => (p.includes('/') ? p : `${p}/tcp`))),
    Env: defaults.Env?.length ? defaults.Env : undefined,
    Entrypoint: defaults.Entrypoint?.length ? defaults.Entrypoint : undefined,
    Cmd: defaults.Cmd?.length ? defaults.Cmd : undefined,
    Volumes: asSet(defaults.Volumes),
    WorkingDir: defaults.WorkingDir || undefined,
    Labels:
      defaults.Labels && Object.keys(defaults.Labels).length > 0
        ? Object.fromEntries(Object.entries(defaults.Labels).sort(([a], [b]) => (a < b ? -1 : 1)))
        : undefined,
    StopSignal: defaults.StopSignal || undefined,
  }
  for (const key of Object.keys(config)) if (config[key] === undefined) delete config[key]
  return config
}

export interface ConfigInput {
  architecture: Architecture
  /** The image's author (`--author`), in the config and its history entry. */
  author?: string
  /** The history entry's comment (`--message`). */
  comment?: string
  created: Date
  defaults: ImageDefaults
  diffId: string
  workspace: string
}

export function buildConfig(input: ConfigInput): ImageConfig {
  const created = formatCreated(input.created)
  const author = input.author || undefined
  return {
    created,
    // Go's field order: created, author, architecture, os, config, rootfs, history.
    ...(author ? {author} : {}),
    architecture: input.architecture,
    os: 'linux',
    config: runtimeConfig(input.defaults),
    rootfs: {type: 'layers', diff_ids: [input.diffId]},
    history: [{
      created,
      created_by: `microagent commit ${input.workspace}`,
      ...(author ? {author} : {}),
      comment: input.comment || 'rootfs committed by microagent',
    }],
  }
}

export function buildManifest(config: Descriptor, layers: Descriptor[]): ImageManifest {
  return {
    schemaVersion: 2, mediaType: MEDIA_TYPES.manifest, config, layers,
  }
}

/** Compact JSON: the digest covers these exact bytes. */
export function canonicalJson(document: unknown): Buffer {
  return Buffer.from(JSON.stringify(document))
}
