/**
 * Holds the extractor open after its last entry (pass `beforeClose` in its ExtractOptions) until the
 * changeset has archived what it had to defer.
 */
export class WalkGate {
  readonly beforeClose = (): Promise<void> => {
    this.markEnded()
    return this.released
  }
  readonly ended: Promise<void>
  private hasEnded = false
  private markEnded!: () => void
  private readonly released: Promise<void>
  private unblock!: () => void
  private waiting: ((value: 'ended') => void) | undefined

  constructor() {
    this.ended = new Promise(resolve => {
      this.markEnded = () => {
        this.hasEnded = true
        this.waiting?.('ended')
        resolve()
      }
    })
    this.released = new Promise(resolve => {
      this.unblock = resolve
    })
  }

  /**
   * `next`, or 'ended' if the walk ends first. Not `Promise.race([next, ended])` per entry: each such race
   * leaves a reaction on `ended` holding its result, so every entry of the disk stayed alive until the end
   * (measured: the heap grew by ~1 KiB an entry, and garbage collection was the largest item of the merge).
   */
  race<T>(next: Promise<T>): Promise<'ended' | T> {
    if (this.hasEnded) return Promise.race([next, this.ended.then((): 'ended' => 'ended')])
    return new Promise((resolve, reject) => {
      this.waiting = resolve
      next.then(resolve, reject)
    })
  }

  release(): void {
    this.unblock()
  }
}
