import {expect} from 'chai'
import {chmodSync, writeFileSync} from 'node:fs'
import path from 'node:path'

import {DebugfsSession} from '../../../src/lib/extractor/debugfs-session.js'
import {rejection} from '../../helpers/assert.js'
import {buildExt4, tempDir} from '../../helpers/ext4.js'
import {requireTools} from '../../helpers/tools.js'

/** A stand-in for debugfs that misbehaves in one scripted way: what a real debugfs will not do on demand. */
function fakeDebugfs(body: string): string {
  const file = path.join(tempDir(), 'debugfs')
  writeFileSync(file, `#!/bin/sh\necho "debugfs 1.47.0 (5-Feb-2023)" >&2\n${body}\n`)
  chmodSync(file, 0o755)
  return file
}

describe('extractor/debugfs-session', () => {
  describe('with real debugfs', () => {
    let disk: string

    before(function () {
      requireTools(this, 'debugfs', 'mke2fs')
      disk = buildExt4(path.join(tempDir(), 's.ext4'), {
        tree(root) {
          for (let i = 0; i < 50; i++) writeFileSync(path.join(root, `f${i}`), `content ${i}`)
        },
      })
    })

    it('answers many requests in flight, in order', async () => {
      const session = DebugfsSession.open('debugfs', disk)
      const replies = await Promise.all(Array.from({length: 50}, (_, i) => session.request(`ls -p <${i % 2 === 0 ? 2 : 11}>`)))
      for (const [i, reply] of replies.entries()) expect(reply.toString()).to.contain(i % 2 === 0 ? '/f49/' : '/..//')
      await session.close()
    })

    it('ties an error message to the command that caused it, and stops', async () => {
      const session = DebugfsSession.open('debugfs', disk)
      const ok = session.request('stat <2>')
      const bad = rejection(session.request('stat <999999>'))
      expect((await ok).toString()).to.match(/^Inode: 2 /)
      const error = await bad
      expect(error.message).to.equal('debugfs failed on "stat <999999>": <999999>: File not found by ext2_lookup ')
      expect(error.exitCode).to.equal(5)
      await rejection(session.request('stat <2>'))
      await session.close()
    })

    it('streams exactly the requested number of bytes', async () => {
      const session = DebugfsSession.open('debugfs', disk)
      const listing = (await session.request('ls -p <2>')).toString()
      const ino = /\/(\d+)\/100644\/0\/0\/f7\/(\d+)\//.exec(listing)!
      const chunks: Buffer[] = []
      for await (const chunk of session.stream(`cat <${ino[1]}>`, Number(ino[2]))) chunks.push(chunk as Buffer)
      expect(Buffer.concat(chunks).toString()).to.equal('content 7')
      expect((await session.request('stat <2>')).toString()).to.match(/^Inode: 2 /)
      await session.close()
    })

    it('refuses to send a command with a line break (no command injection)', async () => {
      const session = DebugfsSession.open('debugfs', disk)
      expect((await rejection(session.request('stat <2>\nrdump / /tmp/x'))).message).to.match(/line break/)
      await session.close()
    })
  })

  it('fails when debugfs prints what nobody asked for', async () => {
    const reply = String.raw`debugfs:  Inode: 2\ndebugfs:  Open mode: read-only\nFilesystem in use: %s\ndebugfs:  `
    const session = DebugfsSession.open(fakeDebugfs(`read cmd; read params; printf "${reply}" "$1"; sleep 0.2; echo this is no reply to anything; exec sleep 5`), '/dev/null')
    expect((await session.request('stat <2>')).toString()).to.equal('Inode: 2\n')
    await new Promise(resolve => {
      setTimeout(resolve, 600)
    })
    const error = await rejection(session.request('stat <2>'))
    expect(error.message).to.match(/out of step \(unexpected output\)/)
    await session.close()
  })

  it('fails close() with a complaint that came while no request was waiting (the reply before it looked fine)', async () => {
    const reply = String.raw`debugfs:  Inode: 2\ndebugfs:  Open mode: read-only\nFilesystem in use: %s\ndebugfs:  `
    const session = DebugfsSession.open(fakeDebugfs(`read cmd; read params; printf "${reply}" "$1"; sleep 0.1; echo "ls: EXT2 directory corrupted" >&2; exec sleep 5`), '/dev/null')
    expect((await session.request('stat <2>')).toString()).to.equal('Inode: 2\n')
    await new Promise(resolve => {
      setTimeout(resolve, 400)
    })
    expect((await rejection(session.close())).message).to.match(/EXT2 directory corrupted/)
  })

  it('fails when debugfs stops answering', async () => {
    const session = DebugfsSession.open(fakeDebugfs('printf "debugfs:  "; exec sleep 30'), '/dev/null', {idleTimeoutMs: 300})
    const started = Date.now()
    const error = await rejection(session.request('stat <2>'))
    expect(error.message).to.match(/debugfs stopped answering on "stat <2>"/)
    expect(error.exitCode).to.equal(5)
    expect(Date.now() - started).to.be.below(5000)
    await session.close()
  })

  it('fails when debugfs dies', async () => {
    const session = DebugfsSession.open(fakeDebugfs('exit 3'), '/dev/null')
    const error = await rejection(session.request('stat <2>'))
    expect(error.message).to.match(/debugfs exited unexpectedly \(exit 3\)/)
    await session.close()
  })

  it('fails when a cat stops short and the marker lands inside the content', async () => {
    // The prompt, then at once the reply of `params` with no content: the stream must not swallow it.
    const script = String.raw`read cmd; read params; printf "debugfs:  debugfs:  Open mode: read-only\nFilesystem in use: %s\ndebugfs:  " "$1"; exec sleep 5`
    const session = DebugfsSession.open(fakeDebugfs(script), '/dev/null')
    const stream = session.stream('cat <12>', 1000)
    const error = await rejection((async () => {
      for await (const chunk of stream) expect(chunk).to.be.instanceOf(Buffer)
    })())
    expect(error.message).to.match(/out of step \(short output from "cat <12>"\)/)
    await session.close()
  })
})
