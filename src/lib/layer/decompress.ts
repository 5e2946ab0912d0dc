import type {Duplex, Readable} from 'node:stream'

import {spawn} from 'node:child_process'
import {createReadStream} from 'node:fs'
import {PassThrough} from 'node:stream'
import zlib from 'node:zlib'

import {DigestCounter} from '../oci/digest.js'
import {defaultZstdImplementation} from './compress.js'

/** zlib's zstd reader (Node ≥ 22.15, 23.8), which @types/node 20 does not know. */
type ZstdDecompress = () => Duplex

/** A layer blob that does not decompress as its media type says (cut short, or not that format at all). */
export class DecompressError extends Error {}

function through(raw: Readable, decoder: Duplex): Readable {
  raw.on('error', error => decoder.destroy(error))
  const out = new PassThrough()
  decoder.on('error', error => out.destroy(new DecompressError(error.message)))
  return raw.pipe(decoder).pipe(out)
}

/** `zstd -d` on `raw`, for a Node without zstd in zlib (Node 20): its output ends only once it exited 0. */
function zstdCommand(raw: Readable): Readable {
  const child = spawn('zstd', ['-dcq'], {stdio: ['pipe', 'pipe', 'ignore']})
  const out = new PassThrough()
  let code: null | number | undefined
  let ended = false
  const settle = (): void => {
    if (!ended || code === undefined) return
    if (code === 0) out.end()
    else out.destroy(new DecompressError(`zstd -d exited with ${code}`))
  }

  raw.on('error', error => out.destroy(error))
  child.on('error', error => out.destroy(error))
  child.on('exit', exit => {
    code = exit
    settle()
  })
  child.stdout.on('end', () => {
    ended = true
    settle()
  })
  // A zstd that exits early stops reading: its stdin's EPIPE is what the exit code already says.
  child.stdin.on('error', () => {})
  raw.pipe(child.stdin)
  child.stdout.pipe(out, {end: false})
  return out
}

/**
 * A layer blob's tar, decompressed by its media type (`+gzip`, `+zstd`, else a plain tar). zstd is read by
 * Node's zlib where it has it, else by the `zstd` command. A stream that does not decompress fails with a
 * DecompressError; a failure reading the file fails it with that error.
 */
function layerTarStream(file: string, mediaType: string): Readable {
  const raw = createReadStream(file)
  if (mediaType.endsWith('gzip')) return through(raw, zlib.createGunzip())
  if (!mediaType.endsWith('zstd')) return raw
  if (defaultZstdImplementation() === 'command') return zstdCommand(raw)
  // eslint-disable-next-line n/no-unsupported-features/node-builtins -- only reached where zlib has zstd
  return through(raw, (zlib as unknown as {createZstdDecompress: ZstdDecompress}).createZstdDecompress())
}

/**
 * `layerTarStream` through a DigestCounter: read it to its end, and its `digest()` is the tar's diff_id. A
 * failure to read or decompress fails it too (pipe() alone would not pass that on, and the read would stall).
 */
export function hashedLayerTar(file: string, mediaType: string): DigestCounter {
  const diff = new DigestCounter()
  const tar = layerTarStream(file, mediaType)
  tar.on('error', error => diff.destroy(error))
  return tar.pipe(diff)
}
