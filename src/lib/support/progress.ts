import {formatBytes, shortDigest} from './format.js'

/** How far a commit is: what the extractor has yielded and what the layer has become so far. */
export interface CommitProgress {
  /** Content bytes of regular files read so far. */
  content_bytes: number
  done: boolean
  entries: number
  /** Compressed layer bytes written so far. */
  layer_bytes: number
  /** Uncompressed tar bytes so far. */
  tar_bytes: number
}

export type BlobState = 'checking' | 'existing' | 'mounted' | 'uploaded' | 'uploading'

export interface BlobProgress {
  digest: string
  /** Bytes the registry has been sent for the current try. */
  sent: number
  size: number
  state: BlobState
}

/** Every blob of a push, in manifest order (config first). */
export interface PushProgress {
  blobs: BlobProgress[]
  done: boolean
}

/** Where the display writes: stderr, or anything with the same shape (tests). */
export interface ProgressOutput {
  columns?: number
  isTTY?: boolean
  write(text: string): unknown
}

export interface ProgressDisplayOptions {
  /** Milliseconds between redraws: 100 on a terminal, 2000 for plain lines (logs, CI). */
  intervalMs?: number
  now?: () => number
}

const rate = (bytes: number, ms: number): string => (ms < 500 ? '' : ` (${formatBytes((bytes * 1000) / ms)}/s)`)

function commitLine(p: CommitProgress, elapsedMs: number): string {
  const verb = p.done ? 'Wrote layer' : 'Writing layer'
  return `${verb}: ${p.entries} entries, tar ${formatBytes(p.tar_bytes)}, compressed ${formatBytes(p.layer_bytes)}${rate(p.tar_bytes, elapsedMs)}`
}

function blobLine(blob: BlobProgress, elapsedMs: number): string {
  const name = shortDigest(blob.digest)
  switch (blob.state) {
  case 'existing': {
    return `${name}  already there`
  }

  case 'mounted': {
    return `${name}  mounted`
  }

  case 'uploaded': {
    return `${name}  uploaded ${formatBytes(blob.size)}`
  }

  case 'uploading': {
    return `${name}  uploading ${formatBytes(blob.sent)} / ${formatBytes(blob.size)}${rate(blob.sent, elapsedMs)}`
  }

  default: {
    return `${name}  checking`
  }
  }
}

/**
 * Draws commit and push progress on stderr. On a terminal it redraws a few live lines in place (ANSI
 * cursor moves) at most every 100 ms; elsewhere it prints one plain line every 2 s, so logs get a
 * heartbeat for long work and nothing at all for short work. Callers leave it out entirely in JSON and
 * agent mode, where stderr is reserved for the error envelope.
 */
export class ProgressDisplay {
  commit = (progress: CommitProgress): void => {
    this.render(progress.done, () => [commitLine(progress, this.now() - this.started)])
  }
  push = (progress: PushProgress): void => {
    const now = this.now()
    for (const blob of progress.blobs) {
      if (blob.state === 'uploading' && !this.uploadStart.has(blob.digest)) this.uploadStart.set(blob.digest, now)
    }

    this.render(progress.done, () => {
      const lines = progress.blobs.map(blob => blobLine(blob, now - (this.uploadStart.get(blob.digest) ?? now)))
      // Plain logs get the blobs still in flight on one line; a terminal gets one line per blob.
      if (this.tty) return lines
      const busy = progress.blobs.map((blob, i) => (blob.state === 'uploading' || blob.state === 'checking' ? lines[i] : '')).filter(Boolean)
      return busy.length > 0 ? [`Pushing: ${busy.join('; ')}`] : []
    })
  }
  private drawn = 0
  private last = Number.NEGATIVE_INFINITY
  private readonly now: () => number
  private readonly started: number
  private readonly tty: boolean
  private readonly uploadStart = new Map<string, number>()

  constructor(
    private readonly out: ProgressOutput,
    private readonly options: ProgressDisplayOptions = {},
  ) {
    this.tty = out.isTTY === true
    this.now = options.now ?? Date.now
    this.started = this.now()
    // A terminal shows progress at once; plain output only once work has run for a whole interval.
    if (!this.tty) this.last = this.started
  }

  /** Leaves the last lines drawn as they are; what is drawn next starts below them. */
  finish(): void {
    this.drawn = 0
  }

  private render(done: boolean, lines: () => string[]): void {
    const now = this.now()
    const interval = this.options.intervalMs ?? (this.tty ? 100 : 2000)
    // Plain output has no final line: the command prints its result next.
    if (done ? !this.tty : now - this.last < interval) return
    this.last = now
    const text = lines()
    if (!this.tty) {
      for (const line of text) this.out.write(`${line}\n`)
      return
    }

    // A pseudo-terminal may report 0 columns.
    const width = Math.max((this.out.columns || 80) - 1, 20)
    const fitted = text.map(line => (line.length > width ? `${line.slice(0, width - 1)}…` : line))
    this.out.write(`${this.drawn > 0 ? this.up(this.drawn) : ''}${fitted.map(line => `\r\u001B[K${line}\n`).join('')}`)
    this.drawn = fitted.length
  }

  private up(lines: number): string {
    return `\u001B[${lines}A`
  }
}
