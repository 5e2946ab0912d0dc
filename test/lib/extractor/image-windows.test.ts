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

  it('serves reads from aligned windows, keeps what it handed out intact after evictions until release, and stops where the file ends', () => {
    const windows = new ImageWindows(fd, 1024, 2)
    const first = windows.read(10, 100)
    expect(first.equals(bytes.subarray(10, 110))).to.equal(true)
    // Evict the first window twice over: what was handed out must not change before release().
    for (const offset of [2048, 4096, 6144, 3000]) expect(windows.read(offset, 50).equals(bytes.subarray(offset, offset + 50))).to.equal(true)
    expect(first.equals(bytes.subarray(10, 110))).to.equal(true)
    expect(windows.read(9990, 30).length).to.equal(10)
    expect(windows.read(20_000, 10).length).to.equal(0)
  })

  it('reuses the buffers of dropped windows only after release, and reads right into them', () => {
    const windows = new ImageWindows(fd, 1024, 2)
    const first = windows.read(0, 16)
    const second = windows.read(1024, 16)
    windows.read(2048, 16)
    // Dropped but not released: a new window gets a buffer of its own.
    const third = windows.read(3072, 16)
    expect(third.buffer).to.not.equal(first.buffer)
    expect(first.equals(bytes.subarray(0, 16))).to.equal(true)
    windows.release()
    const reused = windows.read(5120, 16)
    expect([first.buffer, second.buffer]).to.include(reused.buffer)
    expect(reused.equals(bytes.subarray(5120, 5136))).to.equal(true)
  })

  it('refuses a read across a window edge (callers split or read such pieces themselves)', () => {
    expect(() => new ImageWindows(fd, 1024, 2).read(1000, 100)).to.throw(RangeError)
  })
})
