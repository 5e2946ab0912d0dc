import {availableParallelism} from 'node:os'
import {
  Duplex, PassThrough, Transform, type TransformCallback,
} from 'node:stream'
import {Worker} from 'node:worker_threads'
import zlib from 'node:zlib'

import {spawnChild} from '../support/child.js'
import {MicroagentError, usageError} from '../support/errors.js'

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
  /** Independent gzip members (or zstd frames, with zlib's zstd) compressed at once, each on a worker thread. */
  parallelism?: number
  /**
   * Who writes zstd: `zlib` (Node's own, from 22.15) or the `zstd` command. Default: zlib where this
   * Node has it, else the command. Both write one standard zstd frame with a checksum.
   */
  zstd?: ZstdImplementation
}

export type ZstdImplementation = 'command' | 'zlib'

/**
 * Input bytes per gzip member or zstd frame: large enough that the ratio stays within ~1 % of one
 * stream (zstd's window at its default level is 2 MiB anyway).
 */
export const MEMBER_BYTES = 4 * 1024 * 1024

type MemberAlgorithm = 'gzip' | 'zstd'

/** How a gzip member is written, by a worker or (a layer of one member) on the main thread: the same bytes either way. */
const GZIP_MEMBER = {chunkSize: 1024 * 1024, memLevel: 9}

/**
 * The workers' code. Plain CommonJS evaluated in the worker, so that it runs the same from the
 * TypeScript sources (tests, bin/dev.js) and from the build, with no loader in the worker. A zstd frame
 * is compressed on the worker's own thread (nbWorkers 0), with the checksum the zstd command writes, by
 * one zstd stream per worker that ends a frame (ZSTD_e_end) per member: zstdCompressSync sets up a new
 * context for every call, which cost more than the compression (measured on Node 24.22.3, 325 MB of
 * tar in 4 MiB frames: 3.4 s that way, 1.3 s reusing the context, 1.15 s for `zstd -3 -T1`). A frame
 * starts from a clean state whatever came before it, so the bytes do not depend on which worker made it.
 */
const MEMBER_WORKER = `
const {parentPort} = require('node:worker_threads')
const {setFlagsFromString} = require('node:v8')
const {runInNewContext} = require('node:vm')
const zlib = require('node:zlib')
setFlagsFromString('--expose-gc')
const collect = runInNewContext('gc')
const owns = buffer => buffer.byteOffset === 0 && buffer.byteLength === buffer.buffer.byteLength
let zstd
let frame = []
const zstdFrame = (data, level) => new Promise((resolve, reject) => {
  if (!zstd) {
    const c = zlib.constants
    zstd = zlib.createZstdCompress({chunkSize: 1024 * 1024, params: {[c.ZSTD_c_checksumFlag]: 1, [c.ZSTD_c_compressionLevel]: level, [c.ZSTD_c_nbWorkers]: 0}})
    zstd.on('data', chunk => frame.push(chunk))
  }
  zstd.once('error', reject)
  zstd.write(data)
  zstd.flush(zlib.constants.ZSTD_e_end, () => {
    // Output pushed while flushing can reach 'data' on a later tick: take the frame once those have run.
    setImmediate(() => {
      zstd.off('error', reject)
      const output = frame.length === 1 ? frame[0] : Buffer.concat(frame)
      frame = []
      resolve(output)
    })
  })
})
const compress = async (algorithm, data, level) =>
  algorithm === 'gzip' ? zlib.gzipSync(data, {...${JSON.stringify(GZIP_MEMBER)}, level}) : zstdFrame(data, level)
parentPort.on('message', async ({algorithm, data, id, level}) => {
  try {
    let output = await compress(algorithm, data, level)
    // A member of a few KiB can sit in zlib's 1 MiB output chunk, which a message would copy whole: it
    // goes back in a buffer of its own size. Both buffers then move without a copy: the output, and the
    // input for the next member.
    if (!owns(output)) {
      const exact = Buffer.allocUnsafeSlow(output.length)
      output.copy(exact)
      output = exact
    }
    parentPort.postMessage({data, id, output}, [data.buffer, output.buffer])
  } catch (error) {
    parentPort.postMessage({error: String(error), id})
  }
  // zlib's scratch buffers are garbage now. V8 collects a heap this small only after ~64 MiB of such
  // external memory has piled up, per worker. A scavenge frees them (they are young: made for this member)
  // for a fraction of a full collection's cost (500k-entry bench: 1.3 CPU-s less for 280 members).
  collect({type: 'minor'})
})
`

interface MemberTask {
  data: Buffer
  reject(error: Error): void
  resolve(result: MemberResult): void
}

interface MemberResult {
  /** The input buffer, handed back for reuse. */
  data: Buffer
  output: Buffer
}

/** Structured clone turns Buffers into plain Uint8Arrays; view the same memory as a Buffer again. */
function asBuffer(bytes: Uint8Array): Buffer {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)
}

/**
 * Worker threads that compress whole buffers. A member is handed over (its memory transferred, not copied)
 * and compressed in one call, so the main thread is not involved until the member is done: it keeps
 * extracting and archiving meanwhile. (zlib's own async API needs the main thread for every output chunk.)
 */
class MemberPool {
  private readonly idle: Worker[] = []
  private nextId = 0
  private readonly queue: MemberTask[] = []
  private readonly running = new Map<number, MemberTask>()
  private readonly workers: Worker[] = []

  constructor(
    private readonly algorithm: MemberAlgorithm,
    private readonly level: number,
    private readonly size: number,
  ) {}

  close(): void {
    for (const worker of this.workers) worker.terminate().catch(() => {})
    this.workers.length = 0
    this.idle.length = 0
  }

  /** Compresses `data`, which must own its whole ArrayBuffer: it is moved to the worker and back. */
  compress(data: Buffer): Promise<MemberResult> {
    return new Promise<MemberResult>((resolve, reject) => {
      this.queue.push({data, reject, resolve})
      this.dispatch()
    })
  }

  private dispatch(): void {
    while (this.queue.length > 0) {
      const worker = this.idle.pop() ?? this.spawn()
      if (!worker) return
      const task = this.queue.shift()!
      const id = this.nextId++
      this.running.set(id, task)
      worker.postMessage({
        algorithm: this.algorithm, data: task.data, id, level: this.level,
      }, [task.data.buffer as ArrayBuffer])
    }
  }

  private fail(error: Error): void {
    for (const task of this.running.values()) task.reject(error)
    for (const task of this.queue.splice(0)) task.reject(error)
    this.running.clear()
    this.close()
  }

  private spawn(): undefined | Worker {
    if (this.workers.length >= this.size) return undefined
    const worker = new Worker(MEMBER_WORKER, {eval: true})
    worker.on('message', (message: {data?: Uint8Array; error?: string; id: number; output?: Uint8Array}) => {
      const task = this.running.get(message.id)
      if (!task) return
      this.running.delete(message.id)
      const {data, output} = message
      if (data && output) task.resolve({data: asBuffer(data), output: asBuffer(output)})
      else task.reject(new Error(`${this.algorithm} failed: ${message.error}`))
      this.idle.push(worker)
      this.dispatch()
    })
    worker.on('error', error => this.fail(error))
    this.workers.push(worker)
    return worker
  }
}

/**
 * gzip as concatenated independent members (RFC 1952 allows any number; every gzip reader accepts
 * them), or zstd as concatenated frames (RFC 8878: a zstd stream is one or more frames), each
 * compressed on a worker thread while the main thread extracts and archives. Member boundaries fall at
 * fixed input offsets, so the output depends on the input and the level only (and, for zstd, on the
 * zstd inside this Node): the same tar always gives the same blob, whatever the machine's core count.
 */
export class ParallelMembers extends Transform {
  private filled = 0
  private readonly inFlight: Promise<MemberResult>[] = []
  /** Whether a member went to a worker: until then the pool has started no thread. */
  private launched = false
  private member: Buffer
  private readonly pool: MemberPool
  /** Member buffers back from the workers, reused so that memory stays flat whatever the layer's size. */
  private readonly spare: Buffer[] = []

  constructor(private readonly algorithm: MemberAlgorithm, private readonly level: number, private readonly parallelism: number) {
    super({highWaterMark: MEMBER_BYTES})
    this.pool = new MemberPool(algorithm, level, parallelism)
    this.member = this.freshMember()
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    this.pool.close()
    callback(error)
  }

  override _flush(callback: TransformCallback): void {
    if (!this.launched && this.algorithm === 'gzip') {
      // A layer of one member (a diff layer, most often) is compressed here: starting a worker thread cost
      // more than that (measured: ~40 ms of a 0.26 s commit of a small disk).
      if (this.filled > 0) this.push(zlib.gzipSync(this.member.subarray(0, this.filled), {...GZIP_MEMBER, level: this.level}))
      this.pool.close()
      callback()
      return
    }

    if (this.filled > 0) {
      const last = Buffer.allocUnsafeSlow(this.filled)
      this.member.copy(last, 0, 0, this.filled)
      this.launch(last)
    }

    this.drain(0).then(() => {
      this.pool.close()
      callback()
    }, callback)
  }

  override _transform(chunk: Buffer, _encoding: string, callback: TransformCallback): void {
    // Copied into the member being filled: the producer may reuse its buffer once this callback has run.
    for (let at = 0; at < chunk.length;) {
      const take = Math.min(MEMBER_BYTES - this.filled, chunk.length - at)
      chunk.copy(this.member, this.filled, at, at + take)
      this.filled += take
      at += take
      if (this.filled === MEMBER_BYTES) {
        this.launch(this.member)
        this.member = this.freshMember()
        this.filled = 0
      }
    }

    // Back-pressure: accept more input only while the pool has room.
    this.drain(this.parallelism).then(() => callback(), callback)
  }

  /** Pushes finished members, in order, until at most `keep` are still compressing. */
  private async drain(keep: number): Promise<void> {
    while (this.inFlight.length > keep) {
      const {data, output} = await this.inFlight.shift()!
      if (data.length === MEMBER_BYTES) this.spare.push(data)
      this.push(output)
    }
  }

  private freshMember(): Buffer {
    // Slow (unpooled) allocation: a member must own its ArrayBuffer to be moved to a worker.
    return this.spare.pop() ?? Buffer.allocUnsafeSlow(MEMBER_BYTES)
  }

  private launch(data: Buffer): void {
    this.launched = true
    const member = this.pool.compress(data)
    // Rejections are awaited in order by drain(); mark this one handled so an early one is not "unhandled".
    member.catch(() => {})
    this.inFlight.push(member)
  }
}

/** Whether this Node's zlib writes zstd (Node ≥ 22.15, 23.8); @types/node 20 does not know the API. */
function zlibHasZstd(): boolean {
  // eslint-disable-next-line n/no-unsupported-features/node-builtins -- feature detection: absent on Node 20
  return typeof (zlib as unknown as {zstdCompressSync?: unknown}).zstdCompressSync === 'function'
}

/** What writes zstd here by default: Node's zlib when it has zstd, else the zstd command. */
export function defaultZstdImplementation(): ZstdImplementation {
  return zlibHasZstd() ? 'zlib' : 'command'
}

/** zstd through the zstd command (Node 20 has no zstd), on as many threads as there are cores. */
function commandZstdStream(level: number): Duplex {
  const {exited, process: child, stderr} = spawnChild('zstd', [`-${level}`, '-T0', '-q', '-c', '-'])
  const duplex = Duplex.from({readable: child.stdout, writable: child.stdin})
  exited.then(result => {
    const missing = result.code === 'ENOENT'
    if (missing || result.exitCode !== 0) {
      duplex.destroy(new MicroagentError(missing ? 'zstd is not installed' : `zstd failed (exit ${result.exitCode ?? result.signal ?? result.code}): ${stderr()}`, {
        code: 'COMPRESSOR_FAILED',
        exit: 'layout',
        kind: missing ? 'unsupported' : 'permanent',
        remediation: missing
          ? 'Install zstd (apt-get install zstd), run on Node ≥ 22.15 (its zlib writes zstd), or use --compression gzip.'
          : 'Retry; if it persists, use --compression gzip.',
      }))
    }
  })
  duplex.on('close', () => child.kill())
  return duplex
}

/**
 * zlib's zstd runs as independent frames on worker threads, like gzip. Not zlib's streaming zstd with
 * its own threads (nbWorkers ≥ 1): on Node 24.22.3 that stream fails with ERR_STREAM_PUSH_AFTER_EOF,
 * and single-threaded it would be one core.
 */
function zstdStream(level: number, options: CompressorOptions): Duplex {
  const implementation = options.zstd ?? defaultZstdImplementation()
  if (implementation === 'command') return commandZstdStream(level)
  if (!zlibHasZstd()) {
    throw new MicroagentError(`this Node (${process.version}) has no zstd in zlib`, {
      code: 'COMPRESSOR_FAILED',
      exit: 'layout',
      kind: 'unsupported',
      remediation: 'Use Node ≥ 22.15, or let the zstd command compress (the default on older Node).',
    })
  }

  return new ParallelMembers('zstd', level, Math.max(1, options.parallelism ?? availableParallelism()))
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
 * A transform that compresses a layer tar. Output depends on the input, the options and, for zstd, on
 * who compresses (see `defaultZstdImplementation`): gzip members carry no name and no mtime, and zstd
 * is written by one implementation per Node version, so the same tar on the same Node and zstd gives
 * the same blob digest. zlib's zstd (Node ≥ 22.15) and the zstd command write the same format, but
 * their bytes differ (other zstd versions and settings): a zstd layer's digest may change with Node.
 */
export function createCompressor(compression: Compression, options: CompressorOptions = {}): Duplex {
  const level = compressionLevel(compression, options.level)
  if (compression === 'none') return new PassThrough()
  if (compression === 'zstd') return zstdStream(level, options)
  return new ParallelMembers('gzip', level, Math.max(1, options.parallelism ?? availableParallelism()))
}
