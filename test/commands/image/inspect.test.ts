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
    const printed = (await runCommand(['image', 'inspect', 'local/demo:v1', '--state-dir', state, '--json'])).stdout
    const json = JSON.parse(printed) as {config: {rootfs: unknown}; manifest: {schemaVersion: number}}
    // The text oclif prints without a colour theme: two-space JSON and a newline.
    expect(printed).to.equal(`${JSON.stringify(json, null, 2)}\n`)
    expect(json.manifest.schemaVersion).to.equal(2)
    expect(json.config.rootfs).to.have.property('type', 'layers')
  })

  it('--files lists each layer\'s members, checked against the diff_ids; without it no layer is read', async () => {
    const state = await stateWithImages('local/demo:v1')
    const {stdout} = await runCommand(['image', 'inspect', 'local/demo:v1', '--state-dir', state, '--files'])
    expect(stdout).to.match(/\n {4}\d+ entries \(\d+ file, \d+ directory[^)]*\), \S+ of file content; diff_id checked\n/)
    expect(stdout).to.match(/\n {4}directory +0755 {2}0:0 +0B {2}\S+\n/)
    type Inspected = {layers: {contents?: {diff_id_matches: boolean; entries: {path: string; type: string}[]}}[]}
    const listed = JSON.parse((await runCommand(['image', 'inspect', 'local/demo:v1', '--state-dir', state, '--files', '--json'])).stdout) as Inspected
    expect(listed.layers[0].contents?.diff_id_matches).to.equal(true)
    expect(listed.layers[0].contents?.entries.length).to.be.greaterThan(0)
    const plain = JSON.parse((await runCommand(['image', 'inspect', 'local/demo:v1', '--state-dir', state, '--json'])).stdout) as Inspected
    expect(plain.layers[0]).to.not.have.property('contents')
  })

  it('exits 3 with a hint for an unknown image', async () => {
    const {error, stderr} = await runCommand(['image', 'inspect', 'local/nope:v1', '--state-dir', await stateWithImages()])
    expect(exitOf(error)).to.equal(3)
    expect(stderr).to.contain('image list')
  })
})
