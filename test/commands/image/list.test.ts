import {runCommand} from '@oclif/test'
import {expect} from 'chai'

import {stateWithImages} from '../../helpers/images.js'
import {requireTools} from '../../helpers/tools.js'

describe('image list command', () => {
  before(function () {
    requireTools(this, 'mke2fs')
  })

  it('prints a table of committed images, and "No images." for none', async () => {
    const state = await stateWithImages('local/demo:v1', 'localhost:5000/demo:v2')
    const {error, stdout} = await runCommand(['image', 'list', '--state-dir', state])
    expect(error).to.equal(undefined)
    const lines = stdout.trimEnd().split('\n')
    expect(lines[0]).to.match(/^REFERENCE +DIGEST +PLATFORM +SIZE +CREATED +SOURCE$/)
    const rows = lines.slice(1).map(line => line.split(/ {2,}/))
    expect(rows.map(row => row[0])).to.deep.equal(['local/demo:v1', 'localhost:5000/demo:v2'])
    for (const row of rows) {
      expect(row).to.have.length(6)
      expect(row[1]).to.match(/^sha256:[0-9a-f]{12}$/)
      expect(row[2]).to.match(/^linux\/\w+$/)
      expect(row[3]).to.match(/^\d+(\.\d+)?k?B$/)
      expect(row.slice(4)).to.deep.equal(['2026-01-01T00:00:00Z', 'committed'])
    }

    expect((await runCommand(['image', 'ls', '--state-dir', await stateWithImages()])).stdout.trim()).to.equal('No images.')
  })

  it('prints {images: [...]} with --json', async () => {
    const state = await stateWithImages('local/demo:v1')
    const {stdout} = await runCommand(['image', 'list', '--state-dir', state, '--json'])
    const {images} = JSON.parse(stdout) as {images: {digest: string; reference: string; size_bytes: number; source: string}[]}
    expect(images).to.have.length(1)
    expect(images[0]).to.include({reference: 'local/demo:v1', source: 'oci-layout'})
    expect(images[0].digest).to.match(/^sha256:[0-9a-f]{64}$/)
    expect(images[0].size_bytes).to.be.greaterThan(0)
  })
})
