import {runCommand} from '@oclif/test'
import {expect} from 'chai'

import {exitOf} from '../../helpers/assert.js'
import {stateWithImages} from '../../helpers/images.js'
import {requireTools} from '../../helpers/tools.js'

describe('image inspect command', () => {
  before(function () {
    requireTools(this, 'mke2fs')
  })

  it('prints the digest, platform, layers and history; --json has the documents', async () => {
    const state = await stateWithImages('local/demo:v1')
    const {stdout} = await runCommand(['image', 'inspect', 'local/demo:v1', '--state-dir', state])
    expect(stdout).to.match(/^Reference: local\/demo:v1\nDigest: {4}sha256:[0-9a-f]{64}\nPlatform: {2}linux\/\w+\nCreated: {3}2026-01-01T00:00:00Z\n/)
    expect(stdout).to.match(/Layers:\n {2}sha256:[0-9a-f]{64} {2}\S+ {2}application\/vnd\.oci\.image\.layer\.v1\.tar\+gzip\n/)
    expect(stdout).to.contain('History:\n  microagent commit demo  # rootfs committed by microagent')
    const json = JSON.parse((await runCommand(['image', 'inspect', 'local/demo:v1', '--state-dir', state, '--json'])).stdout) as {config: {rootfs: unknown}; manifest: {schemaVersion: number}}
    expect(json.manifest.schemaVersion).to.equal(2)
    expect(json.config.rootfs).to.have.property('type', 'layers')
  })

  it('exits 3 with a hint for an unknown image', async () => {
    const {error, stderr} = await runCommand(['image', 'inspect', 'local/nope:v1', '--state-dir', await stateWithImages()])
    expect(exitOf(error)).to.equal(3)
    expect(stderr).to.contain('image list')
  })
})
