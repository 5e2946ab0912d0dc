/** What a queue may keep once empty: room for the replies of a normal directory. */
const SMALL_QUEUE = 1024 * 1024

/** A FIFO of bytes: appends copy into a buffer that grows by doubling, so long replies cost linear time. */
export class ByteQueue {
  private buffer = Buffer.alloc(0)
  private end = 0
  private start = 0

  consume(length: number): void {
    this.start += length
    if (this.start === this.end) {
      this.start = 0
      this.end = 0
      // A large reply (a huge directory's listing) grew the buffer: give it back rather than keep it all along.
      if (this.buffer.length > SMALL_QUEUE) this.buffer = Buffer.alloc(0)
    }
  }

  push(chunk: Buffer): void {
    const used = this.end - this.start
    if (this.end + chunk.length > this.buffer.length) {
      const target = used + chunk.length <= this.buffer.length / 2 ? this.buffer : Buffer.allocUnsafe(Math.max(64 * 1024, 2 * (used + chunk.length)))
      this.buffer.copy(target, 0, this.start, this.end)
      this.buffer = target
      this.start = 0
      this.end = used
    }

    chunk.copy(this.buffer, this.end)
    this.end += chunk.length
  }

  /** The unread bytes; valid until the next push. */
  view(): Buffer {
    return this.buffer.subarray(this.start, this.end)
  }
}
