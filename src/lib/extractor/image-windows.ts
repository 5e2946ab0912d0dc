import {readSync} from 'node:fs'

/**
 * Aligned windows of an image file read with one pread each, the last few kept: the walk visits a
 * directory's files (and inodes) in name order, which jumps back and forth over a few MiB of the image,
 * so one window would be read again and again, and one pread per small file costs more than its bytes.
 * A window is never overwritten: what `read` returns may be held by its caller, it is only dropped.
 */
export class ImageWindows {
  /** Most recently used last. */
  private readonly windows: {data: Buffer; start: number}[] = []

  constructor(
    private readonly fd: number,
    private readonly size: number,
    private readonly keep: number,
  ) {}

  /** `length` bytes at `offset`, or fewer where the image ends; `length` must not cross a window edge. */
  read(offset: number, length: number): Buffer {
    const start = offset - (offset % this.size)
    if (offset + length > start + this.size) throw new RangeError('a read crosses a window edge')
    let index = this.windows.findIndex(w => w.start === start)
    if (index === -1) {
      if (this.windows.length >= this.keep) this.windows.shift()
      const data = Buffer.allocUnsafe(this.size)
      this.windows.push({data: data.subarray(0, readSync(this.fd, data, 0, this.size, start)), start})
      index = this.windows.length - 1
    } else if (index !== this.windows.length - 1) {
      this.windows.push(...this.windows.splice(index, 1))
      index = this.windows.length - 1
    }

    const {data} = this.windows[index]
    return data.subarray(Math.min(offset - start, data.length), Math.min(offset - start + length, data.length))
  }
}
