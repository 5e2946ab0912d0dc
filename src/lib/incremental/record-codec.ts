/**
 * Byte-level encoding of the tree record: LEB128 unsigned integers (up to 2^53), zigzag for signed ones,
 * length-prefixed bytes. Hand-rolled because the record is read and written once per entry of the disk on
 * every commit: JSON lines cost more than the diff they serve.
 */
export class RecordFormatError extends Error {}

const SAFE_LIMIT = 2 ** 53

/** Appends fields to a growing buffer; `take` hands over what was written and starts a new one. */
export class ByteWriter {
  private buf: Buffer
  private pos = 0

  constructor(private readonly initial = 64 * 1024) {
    this.buf = Buffer.allocUnsafe(initial)
  }

  get length(): number {
    return this.pos
  }

  byte(value: number): void {
    this.room(1)
    this.buf[this.pos++] = value
  }

  bytes(value: Buffer): void {
    this.room(value.length)
    value.copy(this.buf, this.pos)
    this.pos += value.length
  }

  /** `length` bytes that `fill` writes into `target` at `offset` (a file read straight into the buffer). */
  filled(length: number, fill: (target: Buffer, offset: number) => void): void {
    this.room(length)
    fill(this.buf, this.pos)
    this.pos += length
  }

  /** A hex string of exactly `bytes` bytes, as raw bytes. */
  hex(value: string, bytes: number): void {
    this.room(bytes)
    if (value.length !== bytes * 2 || this.buf.write(value, this.pos, bytes, 'hex') !== bytes) throw new RecordFormatError('bad hex field')
    this.pos += bytes
  }

  int(value: number): void {
    this.uint(value >= 0 ? value * 2 : -value * 2 - 1)
  }

  /** Length, then the bytes (from `start` on: no view made of them). */
  sized(value: Buffer, start = 0): void {
    this.uint(value.length - start)
    this.room(value.length - start)
    value.copy(this.buf, this.pos, start)
    this.pos += value.length - start
  }

  /** Writes `body()` as a block: its length first. The length is written in a fixed 4-byte LEB128 (blocks < 256 MiB). */
  sizedBlock(body: () => void): void {
    this.room(4)
    const at = this.pos
    this.pos += 4
    body()
    const length = this.pos - at - 4
    if (length >= 2 ** 28) throw new RecordFormatError('record block too large')
    this.buf[at] = (length & 0x7F) | 0x80
    this.buf[at + 1] = ((length >>> 7) & 0x7F) | 0x80
    this.buf[at + 2] = ((length >>> 14) & 0x7F) | 0x80
    this.buf[at + 3] = (length >>> 21) & 0x7F
  }

  take(): Buffer {
    const out = this.buf.subarray(0, this.pos)
    this.buf = Buffer.allocUnsafe(Math.max(this.initial, this.pos))
    this.pos = 0
    return out
  }

  text(value: string): void {
    this.sized(Buffer.from(value, 'utf8'))
  }

  uint(value: number): void {
    if (!Number.isSafeInteger(value) || value < 0) throw new RecordFormatError(`cannot encode ${value}`)
    this.room(8)
    let rest = value
    while (rest >= 0x80) {
      this.buf[this.pos++] = (rest % 0x80) | 0x80
      rest = Math.floor(rest / 0x80)
    }

    this.buf[this.pos++] = rest
  }

  private room(more: number): void {
    if (this.pos + more <= this.buf.length) return
    const grown = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.pos + more))
    this.buf.copy(grown, 0, 0, this.pos)
    this.buf = grown
  }
}

/** Reads fields from a buffer, one block at a time (`at`); every read is bounds-checked and throws RecordFormatError past the block's end. */
export class ByteReader {
  pos = 0
  private end = 0

  constructor(private readonly buf: Buffer) {}

  get buffer(): Buffer {
    return this.buf
  }

  get done(): boolean {
    return this.pos === this.end
  }

  /** Points the reader at the block in `buf[start, end)`. */
  at(start: number, end: number): this {
    this.pos = start
    this.end = end
    return this
  }

  byte(): number {
    if (this.pos >= this.end) throw new RecordFormatError('truncated field')
    return this.buf[this.pos++]
  }

  /** A new buffer of the next `length` bytes (none of the record's buffer is kept by what it decodes). */
  copied(length: number, into = Buffer.allocUnsafe(length), offset = 0): Buffer {
    this.skip(length)
    const from = this.pos - length
    // Fields are a few bytes to a path: a loop beats Buffer#copy, whose argument checks cost more than such
    // a copy (this runs for every node).
    if (length > 64) this.buf.copy(into, offset, from, this.pos)
    else for (let i = 0; i < length; i++) into[offset + i] = this.buf[from + i]
    return into
  }

  /** The next `bytes` bytes, as hex. */
  hex(bytes: number): string {
    this.skip(bytes)
    return this.buf.toString('hex', this.pos - bytes, this.pos)
  }

  int(): number {
    const z = this.uint()
    return z % 2 === 0 ? z / 2 : -(z + 1) / 2
  }

  /** A length, then that many bytes, copied. */
  sized(): Buffer {
    return this.copied(this.uint())
  }

  /** Passes over `length` bytes. */
  skip(length: number): void {
    if (length > this.end - this.pos) throw new RecordFormatError('truncated field')
    this.pos += length
  }

  text(): string {
    const length = this.uint()
    this.skip(length)
    return this.buf.toString('utf8', this.pos - length, this.pos)
  }

  uint(): number {
    let value = 0
    let scale = 1
    for (;;) {
      if (this.pos >= this.end) throw new RecordFormatError('truncated field')
      const byte = this.buf[this.pos++]
      value += (byte & 0x7F) * scale
      if (byte < 0x80) break
      scale *= 0x80
      if (scale >= SAFE_LIMIT) throw new RecordFormatError('number too large')
    }

    if (value >= SAFE_LIMIT) throw new RecordFormatError('number too large')
    return value
  }
}
