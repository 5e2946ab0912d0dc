import {execa} from 'execa'
import {availableParallelism} from 'node:os'
import {
  Duplex, PassThrough, Transform, type TransformCallback,
} from 'node:stream'
import {promisify} from 'node:util'
import {gzip as gzipCallback} from 'node:zlib'

import {MicroagentError, usageError} from './errors.js'

const gzip = promisify(gzipCallback)

export const COMPRESSIONS = ['gzip', 'zstd', 'none'] as const
export type Compression = (typeof COMPRESSIONS)[number]

export const LAYER_MEDIA_TYPES: Readonly<Record<Compression, string>> = {
  gzip: 'application/vnd.oci.image.layer.v1.tar+gzip',
  none: 'application/vnd.oci.image.layer.v1.tar',
  zstd: 'application/vnd.oci.image.layer.v1.tar+zstd',
}

const LEVELS: Readonly<Record<Compression, {default: number; max: number; min: number}>> = {
  gzip: {default: 6, max: 9, min: 1},
  none: {default: 0, max: 0, min: 0},
  zstd: {default: 3, max: 19, min: 1},
}

export interface CompressorOptions {
  /** gzip 1–9 (default 6, gzip's own), zstd 1–19 (default 3, zstd's own). */
  level?: number
  /** Independent gzip members compressed at once (on libuv's thread pool). */
  parallelism?: number
}

/** Input bytes per gzip member: large enough that the ratio stays within ~1 % of one stream. */
export const GZIP_MEMBER_BYTES = 4 * 1024 * 1024

/**
 * gzip as concatenated independent members (RFC 1952 allows any number; every gzip reader accepts
 * them), each compressed on libuv's thread pool while the main thread extracts and archives. Member
 * boundaries fall at fixed input offsets, so the output depends on the input and the level only: the
 * same tar always gives the same blob, whatever the machine's core count.
 */
export class ParallelGzip extends Transform {
  private buffered: Buffer[] = []
  private bufferedBytes = 0
  private readonly inFlight: Promise<Buffer>[] = []

  constructor(
    private readonly level: number,
    private readonly parallelism: number,
  ) {
    super({highWaterMark: GZIP_MEMBER_BYTES})
  }

  override _flush(callback: TransformCallback): void {
    if (this.bufferedBytes > 0) this.launch(Buffer.concat(this.buffered))
    this.buffered = []
    this.bufferedBytes = 0
    this.drain(0).then(() => callback(), callback)
  }

  override _transform(chunk: Buffer, _encoding: string, callback: TransformCallback): void {
    let rest = chunk
    while (this.bufferedBytes + rest.length >= GZIP_MEMBER_BYTES) {
      const take = GZIP_MEMBER_BYTES - this.bufferedBytes
      this.buffered.push(rest.subarray(0, take))
      rest = rest.subarray(take)
      this.launch(Buffer.concat(this.buffered))
      this.buffered = []
      this.bufferedBytes = 0
    }

    if (rest.length > 0) {
      // Copy: the producer may reuse its buffer once this callback has run.
      this.buffered.push(Buffer.from(rest))
      this.bufferedBytes += rest.length
    }

    // Back-pressure: accept more input only while the pool has room.
    this.drain(this.parallelism - 1).then(() => callback(), callback)
  }

  /** Pushes finished members, in order, until at most `keep` are still compressing. */
  private async drain(keep: number): Promise<void> {
    while (this.inFlight.length > keep) this.push(await this.inFlight.shift())
  }

  private launch(data: Buffer): void {
    const member = gzip(data, {level: this.level, memLevel: 9})
    // Rejections are awaited in order by drain(); mark this one handled so an early one is not "unhandled".
    member.catch(() => {})
    this.inFlight.push(member)
  }
}

/** zstd through the zstd command (Node 20 has no zstd), on as many threads as there are cores. */
function zstdStream(level: number): Duplex {
  const child = execa('zstd', [`-${level}`, '-T0', '-q', '-c', '-'], {
    buffer: false,
    encoding: 'buffer',
    reject: false,
    stderr: 'pipe',
  })
  const duplex = Duplex.from({readable: child.stdout, writable: child.stdin})
  let stderr = ''
  child.stderr.on('data', (chunk: Buffer) => {
    stderr += chunk.toString()
  })
  child.then(result => {
    const missing = (result as {code?: string}).code === 'ENOENT'
    if (missing || result.exitCode !== 0) {
      duplex.destroy(new MicroagentError(missing ? 'zstd is not installed' : `zstd failed (exit ${result.exitCode ?? result.signal}): ${stderr.trim()}`, {
        code: 'COMPRESSOR_FAILED',
        exit: 'layout',
        kind: missing ? 'unsupported' : 'permanent',
        remediation: missing ? 'Install zstd (apt-get install zstd), or use --compression gzip.' : 'Retry; if it persists, use --compression gzip.',
      }))
    }
  })
  duplex.on('close', () => child.kill())
  return duplex
}

/** Checks a level against the algorithm's range; usage error otherwise. */
export function compressionLevel(compression: Compression, level?: number): number {
  const range = LEVELS[compression]
  if (level === undefined) return range.default
  if (!Number.isInteger(level) || level < range.min || level > range.max) {
    throw usageError(compression === 'none' ? '--compression-level does not apply to --compression none' : `${compression} level must be ${range.min}–${range.max}, not ${level}`)
  }

  return level
}

/**
 * A transform that compresses a layer tar. Output depends on the input and the options only (gzip
 * members carry no name and no mtime), so the same tar gives the same blob digest.
 */
export function createCompressor(compression: Compression, options: CompressorOptions = {}): Duplex {
  const level = compressionLevel(compression, options.level)
  if (compression === 'none') return new PassThrough()
  if (compression === 'zstd') return zstdStream(level)
  return new ParallelGzip(level, Math.max(1, options.parallelism ?? availableParallelism()))
}
