import {runCommand} from '@oclif/test'
import {expect} from 'chai'

import {exitOf} from '../../helpers/assert.js'
import {stateWithImages} from '../../helpers/images.js'
import {requireTools} from '../../helpers/tools.js'

describe('image tag command', () => {
  before(function () {
    requireTools(this, 'mke2fs')
  })

  it('adds a tag for the same digest', async () => {
    const state = await stateWithImages('local/demo:v1')
    const {stdout} = await runCommand(['image', 'tag', 'local/demo:v1', 'localhost:5000/demo:1.0', '--state-dir', state])
    expect(stdout).to.match(/^Tagged local\/demo:v1 as localhost:5000\/demo:1\.0 \(sha256:[0-9a-f]{64}\)\n$/)
    const {images} = JSON.parse((await runCommand(['image', 'list', '--state-dir', state, '--json'])).stdout) as {images: {digest: string; reference: string}[]}
    expect(images.map(i => i.reference)).to.deep.equal(['local/demo:v1', 'localhost:5000/demo:1.0'])
    expect(images[0].digest).to.equal(images[1].digest)
  })

  it('exits 2 for a digest target and 3 for an unknown source', async () => {
    const state = await stateWithImages('local/demo:v1')
    expect(exitOf((await runCommand(['image', 'tag', 'local/demo:v1', `local/demo@sha256:${'c'.repeat(64)}`, '--state-dir', state])).error)).to.equal(2)
    expect(exitOf((await runCommand(['image', 'tag', 'local/nope:v1', 'local/x:v1', '--state-dir', state])).error)).to.equal(3)
  })
})
