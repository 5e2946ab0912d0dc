import {expect} from 'chai'

import {type CommitProgress, ProgressDisplay, type PushProgress} from '../../../src/lib/support/progress.js'

function output(isTTY: boolean): {columns: number; isTTY: boolean; text: string[]; write(text: string): void} {
  const out = {
    columns: 60,
    isTTY,
    text: [] as string[],
    write(text: string): void {
      out.text.push(text)
    },
  }
  return out
}

/** The text of each line a redraw writes, without its cursor moves. */
const liveLines = (text: string): string[] => text.split('\n').filter(Boolean).map(line => line.slice(line.lastIndexOf('\u001B[K') + 3))

const commit = (entries: number, done = false): CommitProgress => ({
  content_bytes: entries * 1000, done, entries, layer_bytes: entries * 400, tar_bytes: entries * 1500,
})

const push = (sent: number, done = false): PushProgress => ({
  blobs: [
    {
      digest: `sha256:${'a'.repeat(64)}`, sent: 0, size: 500, state: 'existing',
    },
    {
      digest: `sha256:${'b'.repeat(64)}`, sent, size: 50_000_000, state: sent === 50_000_000 ? 'uploaded' : 'uploading',
    },
  ],
  done,
})

describe('progress display', () => {
  let clock: number
  const now = (): number => clock

  /** Runs each step after advancing the clock by its milliseconds. */
  const feed = (steps: [number, () => void][]): void => {
    for (const [ms, step] of steps) {
      clock += ms
      step()
    }
  }

  beforeEach(() => {
    clock = 1_000_000
  })

  it('redraws one live line in place on a terminal, at most every 100 ms, and always the final state', () => {
    const out = output(true)
    const display = new ProgressDisplay(out, {now})
    feed([[0, () => display.commit(commit(10))], [50, () => display.commit(commit(20))], [60, () => display.commit(commit(30))], [10, () => display.commit(commit(40, true))]])
    expect(out.text).to.deep.equal([
      '\r\u001B[KWriting layer: 10 entries, tar 15kB, compressed 4kB\n',
      '\u001B[1A\r\u001B[KWriting layer: 30 entries, tar 45kB, compressed 12kB\n',
      '\u001B[1A\r\u001B[KWrote layer: 40 entries, tar 60kB, compressed 16kB\n',
    ])
  })

  it('shows one line per blob with the upload rate, and cuts lines to the terminal width', () => {
    const out = output(true)
    const display = new ProgressDisplay(out, {now})
    display.push(push(0))
    clock += 1000
    display.push(push(20_000_000))
    const last = out.text.at(-1)!
    expect(last.startsWith('\u001B[2A')).to.equal(true)
    const lines = liveLines(last)
    expect(lines).to.deep.equal(['sha256:aaaaaaaaaaaa  already there', 'sha256:bbbbbbbbbbbb  uploading 20MB / 50MB (20MB/s)'])
    out.columns = 30
    clock += 1000
    display.push(push(50_000_000, true))
    expect(liveLines(out.text.at(-1)!)).to.deep.equal([
      'sha256:aaaaaaaaaaaa  already…', 'sha256:bbbbbbbbbbbb  uploade…',
    ])
  })

  it('starts below what it drew before once finished, so commit --push keeps the commit line', () => {
    const out = output(true)
    const display = new ProgressDisplay(out, {now})
    display.commit(commit(40, true))
    display.finish()
    clock += 1000
    display.push(push(0))
    expect(out.text.at(-1)!.startsWith('\r')).to.equal(true)
  })

  it('prints plain lines only every 2 s when stderr is not a terminal, and no final line', () => {
    const out = output(false)
    const display = new ProgressDisplay(out, {now})
    feed([[0, () => display.commit(commit(10))], [1999, () => display.commit(commit(20))]])
    expect(out.text).to.deep.equal([])
    feed([[1, () => display.commit(commit(30))], [2000, () => display.push(push(20_000_000))], [10, () => display.push(push(50_000_000, true))]])
    expect(out.text).to.deep.equal([
      'Writing layer: 30 entries, tar 45kB, compressed 12kB (22.5kB/s)\n',
      'Pushing: sha256:bbbbbbbbbbbb  uploading 20MB / 50MB\n',
    ])
  })
})
