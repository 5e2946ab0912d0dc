import {expect} from 'chai'
import {execFile} from 'node:child_process'
import {existsSync, readFileSync, writeFileSync} from 'node:fs'
import {hostname} from 'node:os'
import path from 'node:path'
import {promisify} from 'node:util'

import {withLock} from '../../../src/lib/support/lock.js'
import {tempDir} from '../../helpers/ext4.js'

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
    writeFileSync(lock, `${deadPid} ${hostname()} 0123456789ab\n`)
    expect(await withLock(lock, async () => 'got it', {timeoutMs: 2000})).to.equal('got it')
  })

  it('gives up on a live holder with a retryable error', async () => {
    const lock = path.join(tempDir(), 'x.lock')
    writeFileSync(lock, `${process.pid} ${hostname()} 0123456789ab\n`)
    try {
      await withLock(lock, async () => 'never', {timeoutMs: 100})
      expect.fail('took a held lock')
    } catch (error) {
      expect(error).to.include({exitCode: 75, kind: 'transient'})
    }
  })

  it('keeps read-modify-write exclusive across processes, with stale locks being broken meanwhile', async () => {
    const dir = tempDir()
    const lock = path.join(dir, 'x.lock')
    const counter = path.join(dir, 'counter')
    writeFileSync(counter, '0')
    const {stdout: deadPid} = await run(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'])
    const script = `
      const {withLock} = await import(${JSON.stringify(path.resolve('src/lib/support/lock.ts'))})
      const fs = await import('node:fs/promises')
      for (let i = 0; i < 25; i++) {
        await withLock(process.argv[1], async () => {
          const n = Number(await fs.readFile(process.argv[2], 'utf8'))
          await new Promise((resolve) => setImmediate(resolve))
          await fs.writeFile(process.argv[2], String(n + 1))
        })
        // Now and then leave a dead holder's lock behind, as a killed process would.
        if (i % 10 === 5) await fs.writeFile(process.argv[1], ${JSON.stringify(`${deadPid} ${hostname()} 0123456789ab
`)}, {flag: 'wx'}).catch(() => {})
      }
    `
    await Promise.all(Array.from({length: 4}, () => run(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script, lock, counter])))
    expect(readFileSync(counter, 'utf8')).to.equal('100')
  })
})
