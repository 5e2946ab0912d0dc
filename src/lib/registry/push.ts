import {createHash} from 'node:crypto'
import {createReadStream} from 'node:fs'
import path from 'node:path'
import {Transform} from 'node:stream'

import type {Descriptor} from '../oci/image.js'
import type {RegistryResponse} from './http.js'

import {OciLayout} from '../oci/layout.js'
import {isLocalReference, parseReference, type Reference} from '../oci/reference.js'
import {checkPublishable} from '../publish/secrets-record.js'
import {MicroagentError, usageError} from '../support/errors.js'
import {type BlobProgress, type BlobState, type PushProgress} from '../support/progress.js'
import {type Credential, resolveCredential} from './auth.js'
import {type BodyFactory, RegistryClient, type RegistryClientOptions} from './client.js'
import {PushHistory} from './history.js'
import {
  chunkSize, MOUNT_REFUSED, parseRange, PATCH_ACCEPTED, rangeReaches,
} from './quirks.js'

export interface PushOptions extends Pick<RegistryClientOptions, 'fetch' | 'initialBackoffMs' | 'maxBackoffMs' | 'plainHttp' | 'retries' | 'signal'> {
  /** `--allow-secrets`: push an image whose commit found possible secrets (refused otherwise, exit 8). */
  allowSecrets?: boolean
  /** Bytes per PATCH when a blob must go in chunks (default 8 MiB); a larger OCI-Chunk-Min-Length wins. */
  chunkBytes?: number
  /** Blobs uploaded at once. */
  concurrency?: number
  /** Use this credential instead of looking one up; `null` for anonymous. */
  credential?: Credential | null
  /** Where to push; defaults to the source reference itself. */
  destination?: string
  env?: NodeJS.ProcessEnv
  /** The layout holding the image (`<state>/images/oci`). */
  layoutPath: string
  /** Hears every blob's state after each change and each piece sent, and once more at the end (`done`). */
  onProgress?: (progress: PushProgress) => void
  /** The image's tag in the layout. */
  source: string
}

export interface PushResult {
  blobs: {existing: number; mounted: number; uploaded: number}
  bytes_uploaded: number
  /** Where the image went: `registry/repository:tag`. */
  destination: string
  /** Manifest digest, as the registry confirmed it. */
  digest: string
  pushed: true
  /** The layout tag that was pushed. */
  reference: string
  registry: string
  repository: string
  tag: string
}

/** Chunks for the chunked fallback: big enough to be quick, small enough for proxies that refused the whole blob. */
const DEFAULT_CHUNK = 8 * 1024 * 1024

type BlobOutcome = 'existing' | 'mounted' | 'uploaded'

function pushFailed(message: string, remediation: string): MicroagentError {
  return new MicroagentError(message, {
    code: 'PUSH_FAILED', exit: 'push', kind: 'permanent', remediation,
  })
}

/** Where a push goes: never the `local/` pseudo-registry, always a tag. */
export function pushDestination(source: string, destination?: string): Reference & {tag: string} {
  const ref = parseReference(destination ?? source)
  if (isLocalReference(ref)) {
    throw usageError(
      `"${ref.raw}" names the local/ pseudo-registry, which exists only on this machine`,
      `Give a destination: microagent image push ${source} <registry>/<repository>:<tag> (e.g. localhost:5000/demo:v1).`,
    )
  }

  if (ref.digest !== undefined) throw usageError(`cannot push to "${ref.raw}": give a tag, not a digest`)
  return {...ref, tag: ref.tag ?? 'latest'}
}

/** Runs `task` over `items`, at most `limit` at a time; the first failure stops new work and is thrown. */
async function pool<T, R>(items: T[], limit: number, task: (item: T) => Promise<R>): Promise<R[]> {
  const results: R[] = []
  let next = 0
  let failed = false
  const worker = async (): Promise<void> => {
    while (!failed && next < items.length) {
      const index = next++
      try {
        results[index] = await task(items[index])
      } catch (error) {
        failed = true
        throw error
      }
    }
  }

  await Promise.all(Array.from({length: Math.min(limit, items.length)}, () => worker()))
  return results
}

/**
 * Passes a blob's bytes on as they are read for upload, telling `onPosition` how far into the blob they
 * reach; with `verifyDigest`, hashes them and fails at the end on a mismatch, so a damaged blob is never
 * sent as good.
 */
function uploadTap(file: string, start: number, options: {onPosition?: (position: number) => void; verifyDigest?: string}): Transform {
  const hash = options.verifyDigest ? createHash('sha256') : undefined
  let position = start
  options.onPosition?.(position)
  return new Transform({
    flush(callback) {
      const actual = hash && `sha256:${hash.digest('hex')}`
      callback(actual === options.verifyDigest ? null : pushFailed(`blob ${options.verifyDigest} in ${path.dirname(file)} is damaged (its content hashes to ${actual})`, 'Commit the image again.'))
    },
    transform(chunk: Buffer, _encoding, callback) {
      hash?.update(chunk)
      position += chunk.length
      options.onPosition?.(position)
      callback(null, chunk)
    },
  })
}

/**
 * A blob range read from its file for every try (never a consumed stream), in 1 MiB reads; optionally
 * checked against its digest, and reported as it is read (for progress).
 */
function fileBody(file: string, start: number, length: number, options: {onPosition?: (position: number) => void; verifyDigest?: string} = {}): BodyFactory {
  return () => {
    if (length === 0) return {body: Buffer.alloc(0), length}
    const source = createReadStream(file, {end: start + length - 1, highWaterMark: 1024 * 1024, start})
    if (!options.onPosition && !options.verifyDigest) return {body: source, length}
    const tap = uploadTap(file, start, options)
    source.on('error', error => tap.destroy(error))
    return {body: source.pipe(tap), length}
  }
}

function withDigest(location: string, digest: string): URL {
  const url = new URL(location)
  url.searchParams.set('digest', digest)
  return url
}

interface UploadSession {
  location: string
  /** OCI-Chunk-Min-Length as the registry sent it, if it did. */
  minChunk: null | string
}

/** The upload's next Location, resolved against the request it answers (quirk `location-opaque`). */
function sessionOf(response: RegistryResponse, fallback?: string): UploadSession {
  return {
    location: new URL(response.headers.get('location') ?? fallback ?? '', response.url).toString(),
    minChunk: response.headers.get('oci-chunk-min-length'),
  }
}

/** The blob steps of the distribution protocol, one request each (HEAD, POST or mount, PUT, PATCH). */
class UploadSteps {
  private readonly push: string

  constructor(
    private readonly client: RegistryClient,
    private readonly repository: string,
    /** Hears how far into a blob the upload has read (progress). */
    private readonly onSent?: (digest: string, position: number) => void,
    private readonly chunkBytes = DEFAULT_CHUNK,
  ) {
    // A chunk of 0 bytes (or NaN) would never reach the end of the blob.
    if (!Number.isSafeInteger(chunkBytes) || chunkBytes < 1) throw usageError(`chunkBytes must be a positive integer, not ${chunkBytes}`)
    this.push = `repository:${repository}:pull,push`
  }

  async exists(blob: Descriptor): Promise<boolean> {
    const response = await this.client.send({
      method: 'HEAD', ok: [200, 404], scopes: [this.push], url: `/v2/${this.repository}/blobs/${blob.digest}`, what: `check blob ${blob.digest}`,
    })
    return response.status === 200
  }

  /**
   * Sends the blob in chunks of at least the registry's minimum, checking after every PATCH that the
   * registry's Range reached the last byte sent (quirk `patch-range-stalls`), then closes the upload.
   */
  async putChunked(blob: Descriptor, file: string): Promise<void> {
    const session = await this.start(blob)
    if (session === 'mounted') return
    let {location} = session
    const chunk = chunkSize(this.chunkBytes, session.minChunk)
    for (let offset = 0; offset < blob.size; offset += chunk) {
      const length = Math.min(chunk, blob.size - offset)
      const end = offset + length - 1
      const patch = await this.client.send({
        body: fileBody(file, offset, length, {onPosition: this.sent(blob)}),
        headers: {'content-range': `${offset}-${end}`, 'content-type': 'application/octet-stream'},
        method: 'PATCH',
        ok: [...PATCH_ACCEPTED],
        retries: 0,
        scopes: [this.push],
        url: location,
        what: `upload blob ${blob.digest} (bytes ${offset}-${end})`,
      })
      await patch.discard()
      // Always the newest Location: a stale one is refused (BLOB_UPLOAD_INVALID).
      location = sessionOf(patch, location).location
      await this.checkRange(patch, location, blob, {end, offset})
    }

    const done = await this.client.send({
      method: 'PUT', ok: [201], retries: 0, scopes: [this.push], url: withDigest(location, blob.digest), what: `finish upload of blob ${blob.digest}`,
    })
    await done.discard()
  }

  /**
   * The whole blob in one PUT with its Content-Length. False on 413: something in the way (a proxy)
   * refused a body that big, and the caller falls back to chunks.
   */
  async putWhole(session: UploadSession, blob: Descriptor, file: string): Promise<boolean> {
    const response = await this.client.send({
      body: fileBody(file, 0, blob.size, {onPosition: this.sent(blob), verifyDigest: blob.digest}),
      headers: {'content-type': 'application/octet-stream'},
      method: 'PUT',
      ok: [201, 413],
      retries: 0,
      scopes: [this.push],
      url: withDigest(session.location, blob.digest),
      what: `upload blob ${blob.digest}`,
    })
    await response.discard()
    return response.status === 201
  }

  /**
   * Opens an upload session, or mounts the blob from `mountFrom` (a 202 there means "upload instead"; a
   * refusal means the same, quirk `mount-refused`). The mount's token also asks to pull the source
   * repository, as Docker Hub requires (quirk `mount-scope`).
   */
  async start(blob: Descriptor, mountFrom?: string): Promise<'mounted' | UploadSession> {
    const base = `/v2/${this.repository}/blobs/uploads/`
    const response = await this.client.send({
      method: 'POST',
      ok: mountFrom ? [201, 202, ...MOUNT_REFUSED] : [202],
      scopes: mountFrom ? [this.push, `repository:${mountFrom}:pull`] : [this.push],
      url: mountFrom ? `${base}?mount=${blob.digest}&from=${encodeURIComponent(mountFrom)}` : base,
      what: mountFrom ? `mount blob ${blob.digest} from ${mountFrom}` : `start upload of blob ${blob.digest}`,
    })
    await response.discard()
    if (mountFrom && MOUNT_REFUSED.includes(response.status)) return this.start(blob)
    return response.status === 201 ? 'mounted' : sessionOf(response)
  }

  /**
   * Fails the upload unless the registry holds bytes 0–`end`: by the PATCH's Range, else by the upload's
   * status (quirk `range-missing`). A registry that answers neither is left to its digest check at the PUT.
   */
  private async checkRange(patch: RegistryResponse, location: string, blob: Descriptor, {end, offset}: {end: number; offset: number}): Promise<void> {
    let header = patch.headers.get('range')
    if (header === null) {
      const status = await this.client.send({
        method: 'GET', ok: [200, 204, 404, 405], scopes: [this.push], url: location, what: `check upload of blob ${blob.digest}`,
      })
      await status.discard()
      if (status.status === 404 || status.status === 405) return
      header = status.headers.get('range')
      if (header === null) return
    }

    const range = parseRange(header)
    if (range && rangeReaches(range, offset, end)) return
    // The session is useless now; deleting it is a courtesy, and its failure changes nothing.
    await this.client.send({
      method: 'DELETE', ok: [200, 202, 204, 404, 405], retries: 0, scopes: [this.push], url: location, what: `cancel upload of blob ${blob.digest}`,
    }).then(response => response.discard(), () => {})
    throw pushFailed(
      `${this.client.origin} lost part of blob ${blob.digest}: after sending bytes ${offset}-${end} of ${blob.size} in chunks, `
      + `its upload holds "${header}" (it should end at ${end}); the upload was abandoned and no manifest was sent`,
      'The registry drops chunk data (Amazon ECR does: aws/containers-roadmap#2831). Chunks are used only after the registry '
      + 'or a proxy refused the blob in one request (413): raise that size limit so the blob goes whole, or push elsewhere.',
    )
  }

  private sent(blob: Descriptor): ((position: number) => void) | undefined {
    const {onSent} = this
    return onSent && ((position: number) => onSent(blob.digest, position))
  }
}

/** Keeps every blob's state for `onProgress` and reports each change; undefined when nobody listens. */
function pushProgress(blobs: Descriptor[], onProgress?: (progress: PushProgress) => void) {
  if (!onProgress) return
  const states: BlobProgress[] = blobs.map(blob => ({
    digest: blob.digest, sent: 0, size: blob.size, state: 'checking',
  }))
  const find = (digest: string): BlobProgress | undefined => states.find(blob => blob.digest === digest)
  const report = (done: boolean): void => onProgress({blobs: states.map(blob => ({...blob})), done})
  return {
    done: () => report(true),
    sent(digest: string, position: number): void {
      const blob = find(digest)
      if (blob) Object.assign(blob, {sent: position, state: 'uploading'})
      report(false)
    },
    state(digest: string, state: BlobState): void {
      const blob = find(digest)
      if (blob) Object.assign(blob, {sent: state === 'uploaded' ? blob.size : blob.sent, state})
      report(false)
    },
  }
}

/**
 * Copies one image from the layout to a registry: blobs first (each at most once, skipped when the
 * registry has it, mounted from another repository of the same registry when one is known to hold it),
 * in a small pool; the manifest last, with its media type, and its digest checked against the one the
 * registry reports. A push that fails part-way leaves no manifest, and a retry skips what arrived.
 */
export async function pushImage(options: PushOptions): Promise<PushResult> {
  const dest = pushDestination(options.source, options.destination)
  const layout = new OciLayout(options.layoutPath)
  const descriptor = await layout.resolve(options.source)
  // Before any credential is looked up or any byte leaves the host.
  await checkPublishable(layout.root, descriptor.digest, options.source, options.allowSecrets ?? false)
  const {bytes: manifestBytes, manifest} = await layout.readManifest(descriptor)
  const credential = options.credential === null ? undefined : (options.credential ?? (await resolveCredential(dest.registry, options.env)))
  const client = new RegistryClient({...options, credential, registry: dest.registry})
  const history = new PushHistory(path.join(path.dirname(layout.root), 'push-history.json'))
  const known = await history.read(dest.registry)
  let bytesUploaded = 0

  const blobs = [manifest.config, ...manifest.layers]
  const unique = blobs.filter((blob, i) => blobs.findIndex(b => b.digest === blob.digest) === i)
  const progress = pushProgress(unique, options.onProgress)
  const steps = new UploadSteps(client, dest.repository, progress?.sent, options.chunkBytes)
  const uploadBlob = async (blob: Descriptor): Promise<BlobOutcome> => {
    progress?.state(blob.digest, 'checking')
    if (await steps.exists(blob)) {
      progress?.state(blob.digest, 'existing')
      return 'existing'
    }

    const file = layout.blobPath(blob.digest)
    const from = known[blob.digest]
    // A body cut mid-way leaves the upload session unusable (the registry answers BLOB_UPLOAD_INVALID to
    // a resend), so a failed upload starts over with a new session instead.
    const outcome = await client.withRetries(async (): Promise<BlobOutcome> => {
      const session = await steps.start(blob, from && from !== dest.repository ? from : undefined)
      if (session === 'mounted') return 'mounted'
      if (!(await steps.putWhole(session, blob, file))) await steps.putChunked(blob, file)
      return 'uploaded'
    })
    if (outcome === 'uploaded') bytesUploaded += blob.size
    progress?.state(blob.digest, outcome)
    return outcome
  }

  const outcomes = await pool(unique, options.concurrency ?? 3, uploadBlob)
  const response = await client.send({
    body: () => ({body: manifestBytes, length: manifestBytes.length}),
    headers: {'content-type': descriptor.mediaType},
    method: 'PUT',
    ok: [200, 201, 202],
    scopes: [`repository:${dest.repository}:pull,push`],
    url: `/v2/${dest.repository}/manifests/${dest.tag}`,
    what: `push manifest ${descriptor.digest}`,
  })
  await response.discard()
  const confirmed = response.headers.get('docker-content-digest')
  if (confirmed && confirmed !== descriptor.digest) {
    throw pushFailed(
      `the registry stored the manifest as ${confirmed}, not ${descriptor.digest}: it altered the image`,
      'Check the registry (it must store manifests byte for byte), or push elsewhere.',
    )
  }

  await history.record(dest.registry, dest.repository, unique.map(b => b.digest))
  progress?.done()
  const count = (outcome: BlobOutcome): number => outcomes.filter(o => o === outcome).length
  return {
    blobs: {existing: count('existing'), mounted: count('mounted'), uploaded: count('uploaded')},
    bytes_uploaded: bytesUploaded,
    destination: `${dest.registry}/${dest.repository}:${dest.tag}`,
    digest: descriptor.digest,
    pushed: true,
    reference: options.source,
    registry: dest.registry,
    repository: dest.repository,
    tag: dest.tag,
  }
}
