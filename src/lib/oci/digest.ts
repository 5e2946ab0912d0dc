import {createHash, type Hash} from 'node:crypto'
import {Transform, type TransformCallback} from 'node:stream'

/** `sha256:<hex>` of a whole buffer. */
export function sha256Digest(data: Buffer | string): string {
  return `sha256:${createHash('sha256').update(data).digest('hex')}`
}

export const DIGEST_PATTERN = /^sha256:[0-9a-f]{64}$/

/** A pass-through that hashes and counts what flows by, so one pass yields bytes, digest and size. */
export class DigestCounter extends Transform {
  bytes = 0
  private readonly hash: Hash = createHash('sha256')
  private result: string | undefined

  /** `onBytes` hears the running count after each chunk (progress displays). */
  constructor(private readonly onBytes?: (bytes: number) => void) {
    super()
  }

  override _transform(chunk: Buffer, _encoding: string, callback: TransformCallback): void {
    this.hash.update(chunk)
    this.bytes += chunk.length
    this.onBytes?.(this.bytes)
    callback(null, chunk)
  }

  /** The digest of everything that passed; valid once the stream has ended. */
  digest(): string {
    this.result ??= `sha256:${this.hash.digest('hex')}`
    return this.result
  }
}
