import {expect} from 'chai'
import {execFile} from 'node:child_process'
import {existsSync, writeFileSync} from 'node:fs'
import {hostname} from 'node:os'
import path from 'node:path'
import {promisify} from 'node:util'

import {withLock} from '../../src/lib/lock.js'
import {tempDir} from '../helpers/ext4.js'

const run = promisify(execFile)

describe('lock', () => {
  it('runs critical sections one at a time', async () => {
    const lock = path.join(tempDir(), 'x.lock')
    let inside = 0
    let most = 0
    await Promise.all(Array.from({length: 8}, () =>
      withLock(lock, async () => {
        inside++
        most = Math.max(most, inside)
        await new Promise(resolve => {
          setTimeout(resolve, 5)
        })
        inside--
      })))
    expect(most).to.equal(1)
    expect(existsSync(lock)).to.equal(false)
  })

  it('breaks a lock whose holder died', async () => {
    const lock = path.join(tempDir(), 'x.lock')
    const {stdout: deadPid} = await run(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'])
    writeFileSync(lock, `${deadPid} ${hostname()}\n`)
    expect(await withLock(lock, async () => 'got it', {timeoutMs: 2000})).to.equal('got it')
  })

  it('gives up on a live holder with a retryable error', async () => {
    const lock = path.join(tempDir(), 'x.lock')
    writeFileSync(lock, `${process.pid} ${hostname()}\n`)
    try {
      await withLock(lock, async () => 'never', {timeoutMs: 100})
      expect.fail('took a held lock')
    } catch (error) {
      expect(error).to.include({exitCode: 75, kind: 'transient'})
    }
  })
})
