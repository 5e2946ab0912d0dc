import {execFileSync} from 'node:child_process'
import {
  copyFileSync, linkSync, mkdirSync, readdirSync, readFileSync, writeFileSync,
} from 'node:fs'
import path from 'node:path'
import {fileURLToPath} from 'node:url'

import {tempDir} from './ext4.js'

const here = path.dirname(fileURLToPath(import.meta.url))

export interface TarRecord {
  devmajor: number
  devminor: number
  gid: number
  gname: string
  /** hex of the raw link target bytes */
  link: string
  mode: number
  mtime: string
  /** hex of the raw path bytes */
  path: string
  pax_keys: string[]
  sha256?: string
  size: number
  type: string
  uid: number
  uname: string
  xattrs: Record<string, string>
}

export const hex = (text: Buffer | string): string => Buffer.from(text).toString('hex')

/** Reads a tar(.gz) with Python's tarfile, an implementation independent of ours. */
export function dumpTar(file: string): TarRecord[] {
  const out = execFileSync('python3', [path.join(here, 'tar_dump.py'), file], {encoding: 'utf8', maxBuffer: 256 * 1024 * 1024})
  return out
  .split('\n')
  .filter(Boolean)
  .map(line => JSON.parse(line) as TarRecord)
}

export function readJson<T>(file: string): T {
  return JSON.parse(readFileSync(file, 'utf8')) as T
}

export function blobFile(layout: string, digest: string): string {
  return path.join(layout, 'blobs', 'sha256', digest.replace('sha256:', ''))
}

/**
 * Checks a layout image with real clients: skopeo parses and re-reads every blob (verifying digests),
 * umoci unpacks it rootless, oci-image-tool validates it against the image spec.
 */
export function validateWithClients(layout: string, ref: string): void {
  execFileSync('skopeo', ['inspect', `oci:${layout}:${ref}`], {stdio: 'pipe'})
  execFileSync('skopeo', ['copy', '--quiet', `oci:${layout}:${ref}`, `dir:${path.join(tempDir('plugin-image-skopeo-'), 'out')}`], {stdio: 'pipe'})
  const bundle = path.join(tempDir('plugin-image-umoci-'), 'bundle')
  execFileSync('umoci', ['unpack', '--rootless', '--image', `${layout}:${ref}`, bundle], {stdio: 'pipe'})
  execFileSync('oci-image-tool', ['validate', '--type', 'image', '--ref', `name=${ref}`, singleRefView(layout, ref)], {stdio: 'pipe'})
}

/**
 * The layout as oci-image-tool 1.0.0-rc can read it: its ref filter deletes from a slice while walking it
 * with i++, so with three or more tags a non-matching descriptor survives and it reports "not unique". The
 * view holds the same oci-layout and blobs (hard links, or copies across filesystems) and an index.json with just the ref's descriptor.
 */
function singleRefView(layout: string, ref: string): string {
  const view = path.join(tempDir('plugin-image-view-'), 'oci')
  mkdirSync(path.join(view, 'blobs', 'sha256'), {recursive: true})
  copyFileSync(path.join(layout, 'oci-layout'), path.join(view, 'oci-layout'))
  for (const blob of readdirSync(path.join(layout, 'blobs', 'sha256'))) {
    const [from, to] = [path.join(layout, 'blobs', 'sha256', blob), path.join(view, 'blobs', 'sha256', blob)]
    try {
      linkSync(from, to)
    } catch {
      // Another filesystem (a layout on a test tmpfs): copy.
      copyFileSync(from, to)
    }
  }

  const index = readJson<{manifests: {annotations?: Record<string, string>}[]}>(path.join(layout, 'index.json'))
  index.manifests = index.manifests.filter(d => d.annotations?.['org.opencontainers.image.ref.name'] === ref)
  writeFileSync(path.join(view, 'index.json'), JSON.stringify(index))
  return view
}

/** Validates every tagged image of a layout with the real clients (see validateWithClients). */
export function validateLayout(layout: string): string[] {
  const index = readJson<{manifests: {annotations?: Record<string, string>}[]}>(path.join(layout, 'index.json'))
  const refs = index.manifests.map(d => d.annotations?.['org.opencontainers.image.ref.name']).filter((r): r is string => r !== undefined)
  for (const ref of refs) validateWithClients(layout, ref)
  return refs
}
