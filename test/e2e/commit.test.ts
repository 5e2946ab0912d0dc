import {expect} from 'chai'
import {execFile, spawn} from 'node:child_process'
import {randomBytes} from 'node:crypto'
import {
  existsSync, readdirSync, readFileSync, writeFileSync,
} from 'node:fs'
import path from 'node:path'
import {setTimeout as sleep} from 'node:timers/promises'
import {fileURLToPath} from 'node:url'
import {promisify} from 'node:util'

import {validateLayout} from '../helpers/oci.js'
import {addWorkspace, makeStateDir, runtimeRecord} from '../helpers/state.js'
import {requireTools} from '../helpers/tools.js'

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..')
const dev = path.join(root, 'bin', 'dev.js')
const run = promisify(execFile)

/** Runs the plugin as a user types it, through bin/dev.js, and never throws. */
async function cli(args: string[], env: NodeJS.ProcessEnv = {}): Promise<{code: number; stderr: string; stdout: string}> {
  try {
    const {stderr, stdout} = await run(dev, args, {env: {...process.env, ...env, NODE_ENV: 'development'}})
    return {code: 0, stderr, stdout}
  } catch (error) {
    const failed = error as {code: number; stderr: string; stdout: string}
    return {code: failed.code, stderr: failed.stderr, stdout: failed.stdout}
  }
}

describe('commit end to end (bin/dev.js)', () => {
  before(function () {
    requireTools(this, 'debugfs', 'mke2fs', 'skopeo', 'umoci', 'oci-image-tool')
  })

  it('commits, then prints JSON and the AX envelope as documented', async () => {
    const state = makeStateDir()
    addWorkspace(state, 'demo', {runtime: runtimeRecord('stopped')})
    const ok = await cli(['commit', 'demo', 'local/demo:v1', '--state-dir', state, '--json'])
    expect(ok.code).to.equal(0)
    expect(JSON.parse(ok.stdout)).to.include({pushed: false, reference: 'local/demo:v1'})
    expect(validateLayout(path.join(state, 'images', 'oci'))).to.deep.equal(['local/demo:v1'])
    addWorkspace(state, 'live', {runtime: runtimeRecord('running')})
    const refused = await cli(['commit', 'live', 'local/live:v1', '--state-dir', state], {MICROAGENT_MODE: 'ax'})
    expect(refused.code).to.equal(4)
    expect(refused.stdout).to.equal('')
    expect(JSON.parse(refused.stderr)).to.deep.include({ok: false})
  })

  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    it(`stops on ${signal} with exit 130, leaving no temp file and no tag`, async () => {
      const state = makeStateDir()
      // Incompressible content keeps gzip busy long enough to interrupt it mid-layer.
      addWorkspace(state, 'big', {
        runtime: runtimeRecord('stopped'),
        spec: {sizeMiB: 256, tree: dir => writeFileSync(path.join(dir, 'random'), randomBytes(160 * 1024 * 1024))},
      })
      const child = spawn(dev, ['commit', 'big', 'local/big:v1', '--state-dir', state], {env: {...process.env, NODE_ENV: 'development'}, stdio: 'pipe'})
      let stderr = ''
      child.stderr.on('data', (chunk: Buffer) => {
        stderr += chunk.toString()
      })
      const ingest = path.join(state, 'images', 'oci', 'ingest')
      for (let i = 0; i < 600 && !(existsSync(ingest) && readdirSync(ingest).length > 0); i++) await sleep(25)
      expect(readdirSync(ingest).length, 'a layer was being written').to.be.greaterThan(0)
      const exited = new Promise<null | number>(resolve => {
        child.on('exit', resolve)
      })
      child.kill(signal)
      const code = await exited
      expect(code).to.equal(130)
      expect(stderr).to.contain('interrupted; nothing was committed')
      expect(readdirSync(ingest)).to.deep.equal([])
      expect(readFileSync(path.join(state, 'images', 'oci', 'index.json'), 'utf8')).not.to.contain('local/big')
      expect(validateLayout(path.join(state, 'images', 'oci'))).to.deep.equal([])
    })
  }

  it('loses no tag when eight commits write one layout at once', async () => {
    const state = makeStateDir()
    addWorkspace(state, 'demo', {runtime: runtimeRecord('stopped')})
    addWorkspace(state, 'other', {runtime: runtimeRecord('stopped'), spec: {tree: dir => writeFileSync(path.join(dir, 'other'), 'other\n')}})
    const refs = ['local/a:1', 'local/a:1', 'local/b:1', 'local/c:1', 'local/d:1', 'local/e:1', 'local/f:1', 'local/f:2']
    const results = await Promise.all(refs.map((ref, i) => cli(['commit', i % 2 === 0 ? 'demo' : 'other', ref, '--state-dir', state, '--json'])))
    expect(results.map(r => r.code)).to.deep.equal(refs.map(() => 0))
    const tagged = validateLayout(path.join(state, 'images', 'oci'))
    expect([...tagged].sort()).to.deep.equal([...new Set(refs)].sort())
    expect(readdirSync(path.join(state, 'images', 'oci', 'ingest'))).to.deep.equal([])
  })

  it('survives commits killed with SIGKILL at random points: the layout stays valid, the next run cleans up', async () => {
    const state = makeStateDir()
    addWorkspace(state, 'big', {
      runtime: runtimeRecord('stopped'),
      spec: {sizeMiB: 128, tree: dir => writeFileSync(path.join(dir, 'random'), randomBytes(48 * 1024 * 1024))},
    })
    const layout = path.join(state, 'images', 'oci')
    const killedAt: number[] = []
    for (let i = 0; i < 5; i++) {
      const child = spawn(dev, ['commit', 'big', `local/killed:${i}`, '--state-dir', state], {env: {...process.env, NODE_ENV: 'development'}, stdio: 'ignore'})
      // Listen before killing: a run may finish before its kill comes.
      const exited = new Promise(resolve => {
        child.on('exit', resolve)
      })
      const delay = Math.floor(Math.random() * 2500)
      killedAt.push(delay)
      await sleep(delay)
      child.kill('SIGKILL')
      await exited
      // Whatever the moment, what is tagged is whole.
      if (existsSync(path.join(layout, 'index.json'))) validateLayout(layout)
    }

    const after = await cli(['commit', 'big', 'local/after:1', '--state-dir', state])
    expect(after.code, `killed at ${killedAt.join(', ')} ms`).to.equal(0)
    expect(readdirSync(path.join(layout, 'ingest')), 'leftovers of killed runs are removed').to.deep.equal([])
    expect(validateLayout(layout)).to.include('local/after:1')
  })
})
