import {expect} from 'chai'
import {execFileSync} from 'node:child_process'
import {createHash} from 'node:crypto'
import {existsSync, readFileSync, writeFileSync} from 'node:fs'
import path from 'node:path'

import {openDiskView, readSuperblock} from '../../../src/lib/extractor/disk.js'
import {
  buildExt4, debugfsRead, dirtyImage, tempDir,
} from '../../helpers/ext4.js'
import {requireTools} from '../../helpers/tools.js'

const sha = (file: string): string => createHash('sha256').update(readFileSync(file)).digest('hex')

describe('disk', () => {
  before(function () {
    requireTools(this, 'debugfs', 'mke2fs')
  })

  it('reads the superblock facts of a clean disk', async () => {
    const file = buildExt4(path.join(tempDir(), 'clean.ext4'))
    const uuid = /Filesystem UUID:\s+(\S+)/.exec(execFileSync('dumpe2fs', ['-h', file], {encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore']}))![1]
    expect(await readSuperblock(file)).to.deep.equal({
      blockSize: 1024, blocksCount: 16_384, externalJournal: false, hasJournal: true, needsRecovery: false, uuid,
    })
    const large = buildExt4(path.join(tempDir(), 'large.ext4'), {mke2fsOptions: ['-b', '4096', '-O', '64bit'], sizeMiB: 64})
    expect(await readSuperblock(large)).to.include({blockSize: 4096, blocksCount: 16_384})
  })

  it('refuses a file that is not ext2/3/4', async () => {
    const file = path.join(tempDir(), 'junk')
    writeFileSync(file, Buffer.alloc(8192))
    try {
      await readSuperblock(file)
      expect.fail('accepted')
    } catch (error) {
      expect((error as Error).message).to.match(/not an ext2\/3\/4 filesystem/)
      expect(error).to.include({exitCode: 5})
    }
  })

  it('reads a clean disk as it is', async () => {
    const file = buildExt4(path.join(tempDir(), 'clean.ext4'))
    const view = await openDiskView(file, {privateCopyPath: path.join(tempDir(), 'copy.ext4')})
    expect(view).to.include({path: file, replayed: false})
  })

  it('replays a dirty journal on a private copy and leaves the original byte for byte', async () => {
    const {file, journaled} = dirtyImage()
    expect((await readSuperblock(file)).needsRecovery).to.equal(true)
    const before = sha(file)
    const copy = path.join(tempDir(), 'copy.ext4')
    const view = await openDiskView(file, {privateCopyPath: copy})
    expect(view).to.include({path: copy, replayed: true})
    expect((await readSuperblock(copy)).needsRecovery).to.equal(false)
    expect(Buffer.from(debugfsRead(copy, 'cat /f'), 'latin1').equals(journaled)).to.equal(true)
    // The original still has the stale block: what a reader that ignores the journal would see.
    expect(debugfsRead(file, 'cat /f')).to.equal('x'.repeat(4096))
    await view.release()
    expect(existsSync(copy)).to.equal(false)
    expect(sha(file)).to.equal(before)
  })
})
