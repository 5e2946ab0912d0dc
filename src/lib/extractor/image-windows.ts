import {readSync} from 'node:fs'

/**
 * Aligned windows of an image file read with one pread each, the last few kept: the walk visits a
 * directory's files (and inodes) in name order, which jumps back and forth over a few MiB of the image,
 * so one window would be read again and again, and one pread per small file costs more than its bytes.
 * What `read` returns may be held by its caller until `release()`: a window dropped from the few kept is
 * only reused for another window after that call (a fresh buffer per window would be a MiB of garbage
 * for every few hundred small files).
 */
export class ImageWindows {
  /** Buffers of dropped windows that may be overwritten. */
  private readonly free: Buffer[] = []
  /** Buffers of dropped windows that callers may still hold. */
  private retired: Buffer[] = []
  /** Most recently used last. */
  private readonly windows: {buffer: Buffer; data: Buffer; start: number}[] = []

  constructor(
    private readonly fd: number,
    private readonly size: number,
    private readonly keep: number,
  ) {}

  /** `length` bytes at `offset`, or fewer where the image ends; `length` must not cross a window edge. */
  read(offset: number, length: number): Buffer {
    const start = offset - (offset % this.size)
    if (offset + length > start + this.size) throw new RangeError('a read crosses a window edge')
    // Most reads hit the window used last: looked at first, then the others (no closure per read).
    let index = this.windows.length - 1
    while (index >= 0 && this.windows[index].start !== start) index--
    if (index === -1) {
      if (this.windows.length >= this.keep) {
        // Reads with no release between them (content read once the walk is over) keep only a few:
        // the others are left to the garbage collector, never reused.
        if (this.retired.length >= this.keep) this.retired.shift()
        this.retired.push(this.windows.shift()!.buffer)
      }

      const buffer = this.free.pop() ?? Buffer.allocUnsafeSlow(this.size)
      this.windows.push({buffer, data: buffer.subarray(0, readSync(this.fd, buffer, 0, this.size, start)), start})
      index = this.windows.length - 1
    } else if (index !== this.windows.length - 1) {
      this.windows.push(...this.windows.splice(index, 1))
      index = this.windows.length - 1
    }

    const {data} = this.windows[index]
    return data.subarray(Math.min(offset - start, data.length), Math.min(offset - start + length, data.length))
  }

  /** Nothing returned so far is held any more: dropped windows' buffers may be reused. */
  release(): void {
    if (this.retired.length === 0) return
    this.free.push(...this.retired)
    this.retired = []
  }
}
