import {runCommand} from '@oclif/test'
import {expect} from 'chai'
import {writeFileSync} from 'node:fs'
import path from 'node:path'

import {exitOf} from '../../helpers/assert.js'
import {tempDir} from '../../helpers/ext4.js'
import {
  dockerConfig, PASSWORD, startRegistry, type TestRegistry, USER,
} from '../../helpers/registry.js'
import {addWorkspace, makeStateDir, runtimeRecord} from '../../helpers/state.js'
import {requireTools} from '../../helpers/tools.js'

describe('image push command and commit --push (real registry, htpasswd auth)', () => {
  let registry: TestRegistry
  let state: string
  const saved = {DOCKER_CONFIG: process.env.DOCKER_CONFIG, HOME: process.env.HOME, MICROAGENT_MODE: process.env.MICROAGENT_MODE}
  const outputs: string[] = []

  before(async function () {
    requireTools(this, 'docker-registry', 'htpasswd', 'mke2fs', 'debugfs')
    registry = await startRegistry('basic')
    state = makeStateDir()
    addWorkspace(state, 'demo', {runtime: runtimeRecord('stopped'), spec: {tree: root => writeFileSync(path.join(root, 'f'), 'pushed\n')}})
    process.env.HOME = tempDir()
    process.env.DOCKER_CONFIG = dockerConfig(registry.host)
    const {error} = await runCommand(['commit', 'demo', 'local/demo:v1', '--state-dir', state])
    expect(error).to.equal(undefined)
  })

  after(async () => {
    await registry?.stop()
    for (const [key, value] of Object.entries(saved)) {
      if (value === undefined) delete process.env[key]
      else process.env[key] = value
    }

    // The credential in use must never have reached any output of these runs.
    for (const output of outputs) expect(output).not.to.contain(PASSWORD)
  })

  async function cli(args: string[]): Promise<Awaited<ReturnType<typeof runCommand>>> {
    const result = await runCommand([...args, '--state-dir', state])
    outputs.push(result.stdout, result.stderr, JSON.stringify(result.error ?? null))
    return result
  }

  it('pushes a committed image to a destination and prints JSON', async () => {
    const {error, stdout} = await cli(['image', 'push', 'local/demo:v1', `${registry.host}/team/demo:v1`, '--json'])
    expect(error).to.equal(undefined)
    expect(JSON.parse(stdout)).to.deep.include({destination: `${registry.host}/team/demo:v1`, pushed: true, reference: 'local/demo:v1'})
  })

  it('prints what it did for people', async () => {
    const {stdout} = await cli(['image', 'push', 'local/demo:v1', `${registry.host}/team/demo:v1`])
    expect(stdout).to.contain(`Pushed local/demo:v1 to ${registry.host}/team/demo:v1`)
    expect(stdout).to.match(/0 uploaded \(0 bytes\), 0 mounted, 2 already there/)
  })

  it('commits and pushes with commit --push', async () => {
    const {error, stdout} = await cli(['commit', 'demo', `${registry.host}/team/direct:v1`, '--push', '--json'])
    expect(error).to.equal(undefined)
    const result = JSON.parse(stdout) as {push: {destination: string}; pushed: boolean}
    expect(result.pushed).to.equal(true)
    expect(result.push.destination).to.equal(`${registry.host}/team/direct:v1`)
  })

  it('refuses to send local/ refs anywhere without a destination (exit 2)', async () => {
    const {error, stderr} = await cli(['image', 'push', 'local/demo:v1'])
    expect(exitOf(error)).to.equal(2)
    expect(stderr).to.contain('local/ pseudo-registry')
    expect(stderr).to.contain('image push local/demo:v1 <registry>/<repository>:<tag>')
  })

  it('says to commit first for an image not in the layout (exit 3)', async () => {
    const {error, stderr} = await cli(['image', 'push', 'local/nope:v1', `${registry.host}/x:1`])
    expect(exitOf(error)).to.equal(3)
    expect(stderr).to.contain('commit it first')
  })

  it('reports a refused credential in the AX envelope without the secret', async () => {
    process.env.DOCKER_CONFIG = dockerConfig(registry.host, {password: 'wrong-password', username: USER})
    process.env.MICROAGENT_MODE = 'ax'
    try {
      const {error, stderr} = await cli(['image', 'push', 'local/demo:v1', `${registry.host}/team/denied:v1`])
      expect(exitOf(error)).to.equal(6)
      const envelope = JSON.parse(stderr) as {error: {kind: string; message: string}}
      expect(envelope.error.kind).to.equal('policy_denied')
      expect(stderr).not.to.contain('wrong-password')
    } finally {
      process.env.DOCKER_CONFIG = dockerConfig(registry.host)
      delete process.env.MICROAGENT_MODE
    }
  })

  it('names a malformed config.json and the problem', async () => {
    const dir = tempDir()
    writeFileSync(path.join(dir, 'config.json'), '{"auths": ')
    process.env.DOCKER_CONFIG = dir
    try {
      const {error, stderr} = await cli(['image', 'push', 'local/demo:v1', `${registry.host}/team/x:v1`])
      expect(exitOf(error)).to.equal(6)
      expect(stderr).to.contain(path.join(dir, 'config.json'))
      expect(stderr).to.contain('not valid JSON')
    } finally {
      process.env.DOCKER_CONFIG = dockerConfig(registry.host)
    }
  })
})
