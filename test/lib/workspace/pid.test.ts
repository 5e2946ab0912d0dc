import {expect} from 'chai'
import {spawn} from 'node:child_process'

import {isPidAlive} from '../../../src/lib/workspace/pid.js'

describe('pid', () => {
  it('tells live from dead processes', async () => {
    expect(isPidAlive(process.pid)).to.equal(true)
    const child = spawn('true')
    await new Promise(resolve => {
      child.on('exit', resolve)
    })
    expect(isPidAlive(child.pid!)).to.equal(false)
  })

  it('never probes pid 0 or negatives (which would mean a process group)', () => {
    expect(isPidAlive(0)).to.equal(false)
    expect(isPidAlive(-1)).to.equal(false)
    expect(isPidAlive(1.5)).to.equal(false)
  })
})
