import type {Duplex, Readable} from 'node:stream'

import {
  chmod, chown, mkdir, readFile, rename, rm, stat, unlink,
} from 'node:fs/promises'
import path from 'node:path'

import {MicroagentError, noSpaceError, notFoundError} from '../support/errors.js'
import {syncDir, writeAtomic, writeNewFile} from '../support/files.js'
import {isPlainObject} from '../support/guards.js'
import {withLock} from '../support/lock.js'
import {DIGEST_PATTERN, sha256Digest} from './digest.js'
import {
  type Descriptor, type ImageManifest, MEDIA_TYPES, REF_NAME_ANNOTATION,
} from './image.js'
import {IngestFolder} from './ingest.js'
import {ImageRecords} from './records.js'

export const LAYOUT_VERSION = '1.0.0'

/** Where the committed images of a state dir live (microagent's `create`/`run` look there). */
export function layoutPath(stateDir: string): string {
  return path.join(stateDir, 'images', 'oci')
}

/** What `untag` did: the tag's descriptor, the blobs it deleted, and those another tag still uses. */
export interface UntagResult {
  deleted: Descriptor[]
  kept: Descriptor[]
  removed: Descriptor
}

/** A blob written and flushed in the ingest folder, not yet in the layout: `commit` moves it in, `discard` drops it. */
export interface IngestedBlob {
  commit(): Promise<void>
  digest: string
  /** Removes the bytes, unless they were committed. */
  discard(): Promise<void>
  size: number
}

export interface ImageIndex {
  manifests: Descriptor[]
  mediaType: typeof MEDIA_TYPES.index
  schemaVersion: 2
}

function corrupt(file: string, why: string): MicroagentError {
  return new MicroagentError(`the image layout is damaged: ${file}: ${why}`, {
    code: 'LAYOUT_CORRUPT',
    exit: 'layout',
    kind: 'permanent',
    remediation: 'Move the damaged layout aside (it is under <state-dir>/images/oci) and commit again.',
  })
}

function imageNotFound(ref: string, root: string): MicroagentError {
  return notFoundError(
    `image "${ref}" not found in ${root}; commit it first`,
    'Commit it first with `microagent commit <workspace> <ref>`, or list the images with `microagent image list`.',
    'IMAGE_NOT_FOUND',
  )
}

async function nearestOwner(dir: string): Promise<undefined | {gid: number; uid: number}> {
  for (let current = dir; ; current = path.dirname(current)) {
    try {
      const info = await stat(current)
      return info.uid === 0 ? undefined : {gid: info.gid, uid: info.uid}
    } catch {
      if (path.dirname(current) === current) return undefined
    }
  }
}

/**
 * An OCI image layout (image-spec `image-layout.md`) on disk: `oci-layout`, `index.json` and
 * `blobs/sha256/`. Blobs are content-addressed and written by temp file, fsync and rename, so a blob is
 * either whole or absent. Tags live in `index.json` as manifest descriptors annotated with
 * `org.opencontainers.image.ref.name`, replaced atomically under `index.json.lock`. Writing a blob never
 * touches `index.json`; tagging never writes a blob.
 */
export class OciLayout {
  private readonly ingest: IngestFolder
  private owner: undefined | {gid: number; uid: number}

  constructor(readonly root: string) {
    this.ingest = new IngestFolder(root)
  }

  blobPath(digest: string): string {
    if (!DIGEST_PATTERN.test(digest)) throw corrupt(this.root, `unsupported digest "${digest}"`)
    return path.join(this.root, 'blobs', 'sha256', digest.slice('sha256:'.length))
  }

  /** Whether a blob of that digest (and size, if given) is stored. */
  async hasBlob(digest: string, size?: number): Promise<boolean> {
    try {
      const info = await stat(this.blobPath(digest))
      return info.isFile() && (size === undefined || info.size === size)
    } catch {
      return false
    }
  }

  /**
   * As writeBlobStream, but the flushed bytes wait in the ingest folder until `commit`: a blob that must not
   * be kept (a layer refused for its secrets) never enters the layout.
   */
  async ingestBlobStream(source: Readable, transforms: Duplex[] = [], onBytes?: (written: number) => void): Promise<IngestedBlob> {
    const {digest, size, temp} = await this.ingest.write(source, transforms, onBytes).catch((error: unknown) => {
      throw this.writeFailure(error)
    })
    let settled = false
    return {
      commit: async () => {
        settled = true
        await this.commitBlob(temp, digest)
      },
      digest,
      async discard() {
        if (settled) return
        settled = true
        await unlink(temp).catch(() => {})
      },
      size,
    }
  }

  /** A private temp folder of this layout, on the same filesystem as the blobs, so renames are atomic. */
  ingestDir(): string {
    return this.ingest.dir
  }

  /** A temp path in the ingest folder, named after this process so a later run can tell it is stale. */
  ingestPath(suffix = ''): string {
    return this.ingest.path(suffix)
  }

  /**
   * Creates the layout if missing, or checks the one there. Leftover temp files of processes that died
   * are removed. Safe to run concurrently.
   */
  async init(): Promise<void> {
    // Root committing into a user's state dir must not leave files the user cannot remove: everything
    // new is given to the owner of the nearest folder that already exists.
    if (process.getuid?.() === 0) this.owner = await nearestOwner(this.root)
    const blobs = path.join(this.root, 'blobs', 'sha256')
    const firstCreated = await mkdir(blobs, {recursive: true})
    await mkdir(this.ingestDir(), {recursive: true})
    if (this.owner) {
      // mkdir returns the topmost folder it created: give away every folder from there down to blobs/sha256.
      if (firstCreated !== undefined) {
        for (let dir = blobs; ; dir = path.dirname(dir)) {
          await chown(dir, this.owner.uid, this.owner.gid)
          if (dir === firstCreated || dir === path.dirname(dir)) break
        }
      }

      await chown(this.ingestDir(), this.owner.uid, this.owner.gid)
    }

    const marker = path.join(this.root, 'oci-layout')
    const existing = await readFile(marker, 'utf8').catch((error: NodeJS.ErrnoException) => {
      if (error.code === 'ENOENT') return
      throw error
    })
    if (existing === undefined) {
      await this.writeOwned(marker, Buffer.from(JSON.stringify({imageLayoutVersion: LAYOUT_VERSION})), 0o644)
    } else {
      let version: unknown
      try {
        version = (JSON.parse(existing) as {imageLayoutVersion?: unknown}).imageLayoutVersion
      } catch {
        version = undefined
      }

      if (version !== LAYOUT_VERSION) throw corrupt(marker, `imageLayoutVersion is ${JSON.stringify(version)}, expected ${LAYOUT_VERSION}`)
    }

    await withLock(this.lockPath(), async () => {
      try {
        await stat(this.indexPath())
      } catch {
        await this.writeIndex({manifests: [], mediaType: MEDIA_TYPES.index, schemaVersion: 2})
      }
    })
    await this.ingest.clean()
  }

  /** A stored blob's bytes, checked against its digest. */
  async readBlob(digest: string): Promise<Buffer> {
    const file = this.blobPath(digest)
    const bytes = await readFile(file).catch((error: NodeJS.ErrnoException) => {
      throw error.code === 'ENOENT' ? corrupt(file, 'blob missing') : error
    })
    if (sha256Digest(bytes) !== digest) throw corrupt(file, 'content does not match its digest')
    return bytes
  }

  async readIndex(): Promise<ImageIndex> {
    const file = this.indexPath()
    let text: string
    try {
      text = await readFile(file, 'utf8')
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return {manifests: [], mediaType: MEDIA_TYPES.index, schemaVersion: 2}
      throw error
    }

    let index: unknown
    try {
      index = JSON.parse(text)
    } catch (error) {
      throw corrupt(file, (error as Error).message)
    }

    if (!isPlainObject(index) || index.schemaVersion !== 2 || !Array.isArray(index.manifests)) throw corrupt(file, 'not an OCI image index')
    return index as unknown as ImageIndex
  }

  /** A stored JSON document (a manifest or a config), checked against its digest. */
  async readJson(digest: string): Promise<Record<string, unknown>> {
    return this.parseJson(await this.readBlob(digest), digest)
  }

  /** The single-platform image manifest a descriptor points at, with its exact bytes. */
  async readManifest(descriptor: Descriptor): Promise<{bytes: Buffer; manifest: ImageManifest}> {
    const bytes = await this.readBlob(descriptor.digest)
    const manifest = this.parseJson(bytes, descriptor.digest)
    if (!isPlainObject(manifest.config) || !Array.isArray(manifest.layers)) {
      throw corrupt(this.blobPath(descriptor.digest), 'not a single-platform OCI image manifest')
    }

    return {bytes, manifest: manifest as unknown as ImageManifest}
  }

  /** The manifest descriptor tagged `ref` (the raw reference, as committed). */
  async resolve(ref: string): Promise<Descriptor> {
    const found = (await this.readIndex()).manifests.find(d => d.annotations?.[REF_NAME_ANNOTATION] === ref)
    if (!found) throw imageNotFound(ref, this.root)
    return found
  }

  /**
   * Points `ref` at `descriptor`, replacing the tag if it exists; other tags may share its blobs. The
   * manifest blob must already be stored, so a reader never sees a tag without its content. Returns what
   * the tag pointed at before, if anything.
   */
  async tag(ref: string, descriptor: Descriptor): Promise<Descriptor | undefined> {
    if (!(await this.hasBlob(descriptor.digest, descriptor.size))) {
      throw corrupt(this.blobPath(descriptor.digest), 'cannot tag a manifest that is not stored')
    }

    return withLock(this.lockPath(), async () => {
      // Checked under the lock that `untag` holds while it deletes: a tag never points at a missing blob.
      // Only image manifests are looked into; anything else (an index a plugin tags) is checked as a blob.
      const read = await this.readManifest(descriptor).catch(() => {})
      for (const blob of [descriptor, ...(read ? [read.manifest.config, ...read.manifest.layers] : [])]) {
        if (!(await this.hasBlob(blob.digest, blob.size))) {
          throw new MicroagentError(`blob ${blob.digest} of ${descriptor.digest} vanished before it was tagged (an image rm ran at the same time)`, {
            code: 'LAYOUT_CONFLICT',
            exit: 'transient',
            kind: 'transient',
            remediation: 'Run the command again.',
          })
        }
      }

      const index = await this.readIndex()
      const previous = index.manifests.find(d => d.annotations?.[REF_NAME_ANNOTATION] === ref)
      const others = index.manifests.filter(d => d !== previous)
      const tagged: Descriptor = {...descriptor, annotations: {...descriptor.annotations, [REF_NAME_ANNOTATION]: ref}}
      const manifests = [...others, tagged].sort((a, b) => {
        const ra = a.annotations?.[REF_NAME_ANNOTATION] ?? ''
        const rb = b.annotations?.[REF_NAME_ANNOTATION] ?? ''
        return ra === rb ? (a.digest < b.digest ? -1 : 1) : (ra < rb ? -1 : 1)
      })
      await this.writeIndex({...index, manifests})
      return previous
    })
  }

  /**
   * Removes the tag `ref` and deletes the blobs of its image that no other tag uses, all under the index
   * lock: a concurrent `tag` either lands first (and its blobs are kept) or finds a blob gone and fails.
   * The index is rewritten before any blob goes, so a crash in between leaves unused blobs, never a tag
   * pointing at nothing.
   */
  async untag(ref: string): Promise<UntagResult> {
    return withLock(this.lockPath(), async () => {
      const index = await this.readIndex()
      const removed = index.manifests.find(d => d.annotations?.[REF_NAME_ANNOTATION] === ref)
      if (!removed) throw imageNotFound(ref, this.root)
      const remaining = index.manifests.filter(d => d !== removed)
      const inUse = new Set<string>()
      for (const other of remaining) {
        inUse.add(other.digest)
        // A damaged image elsewhere must not cost this one its removal, nor make us delete what it uses:
        // its manifest stays, and blobs shared with it are kept only if it can be read.
        const read = await this.readManifest(other).catch(() => {})
        if (read) for (const blob of [read.manifest.config, ...read.manifest.layers]) inUse.add(blob.digest)
      }

      const {manifest} = await this.readManifest(removed).catch(() => ({manifest: {config: undefined, layers: []}}))
      const candidates = [removed, ...(manifest.config ? [manifest.config] : []), ...manifest.layers]
      const unique = candidates.filter((blob, i) => candidates.findIndex(b => b.digest === blob.digest) === i)
      await this.writeIndex({...index, manifests: remaining})
      const result: UntagResult = {deleted: [], kept: [], removed}
      for (const blob of unique) {
        if (inUse.has(blob.digest)) {
          result.kept.push(blob)
          continue
        }

        await rm(this.blobPath(blob.digest), {force: true})
        result.deleted.push(blob)
      }

      if (result.deleted.length > 0) await syncDir(path.join(this.root, 'blobs', 'sha256'))
      // The image's local records (secret findings, tree record) go with its manifest, not with a tag.
      if (result.deleted.some(blob => blob.digest === removed.digest)) await new ImageRecords(this.root).remove(removed.digest)
      return result
    })
  }

  /** Stores bytes as a blob; returns its digest and size. Idempotent. */
  async writeBlob(data: Buffer): Promise<{digest: string; size: number}> {
    const digest = sha256Digest(data)
    if (await this.hasBlob(digest, data.length)) return {digest, size: data.length}
    const temp = this.ingestPath()
    await writeNewFile(temp, data, 0o444).catch((error: unknown) => {
      throw this.writeFailure(error)
    })
    await this.commitBlob(temp, digest)
    return {digest, size: data.length}
  }

  /**
   * Streams a blob in through `transforms`, hashing as it writes; the digest is known only at the end, so
   * the bytes go to a temp file that is renamed into place once flushed. An error anywhere in the chain
   * removes the temp file and stores nothing.
   */
  async writeBlobStream(source: Readable, transforms: Duplex[] = [], onBytes?: (written: number) => void): Promise<{digest: string; size: number}> {
    const blob = await this.ingestBlobStream(source, transforms, onBytes)
    await blob.commit()
    return {digest: blob.digest, size: blob.size}
  }

  private async commitBlob(temp: string, digest: string): Promise<void> {
    const target = this.blobPath(digest)
    if (this.owner) await chown(temp, this.owner.uid, this.owner.gid)
    // Same digest, same bytes: an existing blob is kept and the copy dropped.
    if (await this.hasBlob(digest)) {
      await unlink(temp)
      return
    }

    await rename(temp, target)
    await syncDir(path.dirname(target))
  }

  private indexPath(): string {
    return path.join(this.root, 'index.json')
  }

  private lockPath(): string {
    return path.join(this.root, 'index.json.lock')
  }

  private parseJson(bytes: Buffer, digest: string): Record<string, unknown> {
    let document: unknown
    try {
      document = JSON.parse(bytes.toString('utf8'))
    } catch (error) {
      throw corrupt(this.blobPath(digest), (error as Error).message)
    }

    if (!isPlainObject(document)) throw corrupt(this.blobPath(digest), 'not a JSON object')
    return document
  }

  /** A full disk names the layout; any other failure goes on as it is. */
  private writeFailure(error: unknown): unknown {
    const code = (error as NodeJS.ErrnoException | undefined)?.code
    return code === 'ENOSPC' || code === 'EDQUOT' ? noSpaceError(error, this.root) : error
  }

  private async writeIndex(index: ImageIndex): Promise<void> {
    await this.writeOwned(this.indexPath(), Buffer.from(JSON.stringify(index)), 0o644).catch((error: unknown) => {
      throw this.writeFailure(error)
    })
  }

  private async writeOwned(file: string, data: Buffer, mode: number): Promise<void> {
    await writeAtomic(file, data, mode)
    if (this.owner) await chown(file, this.owner.uid, this.owner.gid)
    await chmod(file, mode)
  }
}
