import {expect} from 'chai'
import {closeSync, openSync, writeFileSync} from 'node:fs'
import path from 'node:path'

import {ImageWindows} from '../../../src/lib/extractor/image-windows.js'
import {tempDir} from '../../helpers/ext4.js'

describe('extractor/image-windows', () => {
  const bytes = Buffer.from(Array.from({length: 10_000}, (_, i) => (i * 31) % 251))
  let fd: number

  before(() => {
    const file = path.join(tempDir(), 'image')
    writeFileSync(file, bytes)
    fd = openSync(file, 'r')
  })

  after(() => closeSync(fd))

  it('serves reads from aligned windows, keeps what it handed out intact after evictions, and stops where the file ends', () => {
    const windows = new ImageWindows(fd, 1024, 2)
    const first = windows.read(10, 100)
    expect(first.equals(bytes.subarray(10, 110))).to.equal(true)
    // Evict the first window twice over: what was handed out must not change (windows are never reused).
    for (const offset of [2048, 4096, 6144, 3000]) expect(windows.read(offset, 50).equals(bytes.subarray(offset, offset + 50))).to.equal(true)
    expect(first.equals(bytes.subarray(10, 110))).to.equal(true)
    expect(windows.read(9990, 30).length).to.equal(10)
    expect(windows.read(20_000, 10).length).to.equal(0)
  })

  it('refuses a read across a window edge (callers split or read such pieces themselves)', () => {
    expect(() => new ImageWindows(fd, 1024, 2).read(1000, 100)).to.throw(RangeError)
  })
})
