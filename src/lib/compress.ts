import {PassThrough, type Transform} from 'node:stream'
import {constants, createGzip} from 'node:zlib'

import {usageError} from './errors.js'

export const COMPRESSIONS = ['gzip', 'none'] as const
export type Compression = (typeof COMPRESSIONS)[number]

export const LAYER_MEDIA_TYPES: Readonly<Record<Compression, string>> = {
  gzip: 'application/vnd.oci.image.layer.v1.tar+gzip',
  none: 'application/vnd.oci.image.layer.v1.tar',
}

export interface CompressorOptions {
  /** zlib level 1–9; 6 is gzip's default. */
  level?: number
}

/**
 * A transform that compresses a layer tar. Output is a function of the input and options only (zlib
 * writes no name and no mtime in the gzip header), so the same tar gives the same blob digest.
 */
export function createCompressor(compression: Compression, options: CompressorOptions = {}): Transform {
  if (compression === 'none') return new PassThrough()
  const level = options.level ?? 6
  if (!Number.isInteger(level) || level < 1 || level > 9) throw usageError(`gzip level must be 1–9, not ${level}`)
  return createGzip({
    chunkSize: 256 * 1024, level, memLevel: 9, strategy: constants.Z_DEFAULT_STRATEGY,
  })
}
