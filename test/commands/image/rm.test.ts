import {runCommand} from '@oclif/test'
import {expect} from 'chai'

import {exitOf} from '../../helpers/assert.js'
import {stateWithImages} from '../../helpers/images.js'
import {requireTools} from '../../helpers/tools.js'

describe('image rm command', () => {
  before(function () {
    requireTools(this, 'mke2fs')
  })

  it('removes a tag, keeping the blobs the other tag shares, then all of them', async () => {
    const state = await stateWithImages('local/demo:v1', 'local/demo:v2')
    const first = await runCommand(['image', 'rm', 'local/demo:v1', '--state-dir', state])
    // Same files and time: both tags name one manifest, so nothing can go yet.
    expect(first.stdout).to.match(/^Removed local\/demo:v1 \(sha256:[0-9a-f]{64}\)\n {2}blobs: 0 deleted \(0B\), 3 kept for other tags\n$/)
    const second = JSON.parse((await runCommand(['image', 'remove', 'local/demo:v2', '--state-dir', state, '--json'])).stdout) as {deleted: unknown[]; kept: number; reclaimed_bytes: number}
    expect(second.deleted).to.have.length(3)
    expect(second.kept).to.equal(0)
    expect(second.reclaimed_bytes).to.be.greaterThan(0)
    expect((await runCommand(['image', 'list', '--state-dir', state])).stdout.trim()).to.equal('No images.')
  })

  it('exits 3 for an unknown image and changes nothing', async () => {
    const state = await stateWithImages('local/demo:v1')
    const {error} = await runCommand(['image', 'rm', 'local/other:v1', '--state-dir', state])
    expect(exitOf(error)).to.equal(3)
    expect((await runCommand(['image', 'list', '--state-dir', state])).stdout).to.contain('local/demo:v1')
  })
})
