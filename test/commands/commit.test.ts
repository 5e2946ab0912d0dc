import {runCommand} from '@oclif/test'
import {expect} from 'chai'
import {existsSync, readFileSync} from 'node:fs'
import path from 'node:path'

import type {ImageConfig, ImageManifest} from '../../src/lib/oci/image.js'

import Commit from '../../src/commands/commit.js'
import {FakeExtractor, fakeRootfs} from '../../src/lib/extractor/fake.js'
import {exitOf} from '../helpers/assert.js'
import {blobFile, readJson, validateLayout} from '../helpers/oci.js'
import {addWorkspace, makeStateDir, runtimeRecord} from '../helpers/state.js'
import {requireTools} from '../helpers/tools.js'

interface Envelope {
  error: {code: string; correlation_id: string; exit_code: number; kind: string; message: string; remediation?: string; retryable: boolean}
  ok: false
}

describe('commit command', () => {
  let state: string
  let fake: FakeExtractor
  const saved = {mode: process.env.MICROAGENT_MODE, stateDir: process.env.MICROAGENT_STATE_DIR}

  before(function () {
    requireTools(this, 'mke2fs', 'skopeo', 'umoci', 'oci-image-tool')
  })

  beforeEach(() => {
    state = makeStateDir()
    addWorkspace(state, 'demo', {manifest: {image_cmd: ['serve'], name: 'demo'}, runtime: runtimeRecord('stopped')})
    fake = new FakeExtractor(fakeRootfs())
    Commit.extractor = fake
    delete process.env.MICROAGENT_MODE
    delete process.env.MICROAGENT_STATE_DIR
    process.exitCode = undefined
  })

  afterEach(() => {
    // Every image a test wrote must open in the real clients.
    const layout = path.join(state, 'images', 'oci')
    if (existsSync(path.join(layout, 'index.json'))) validateLayout(layout)
    Commit.extractor = undefined
    process.env.MICROAGENT_MODE = saved.mode
    if (saved.mode === undefined) delete process.env.MICROAGENT_MODE
    if (saved.stateDir === undefined) delete process.env.MICROAGENT_STATE_DIR
    process.exitCode = undefined
  })

  it('commits and prints the reference, digest, size and layout', async () => {
    const {error, stdout} = await runCommand(['commit', 'demo', 'local/demo:v1', '--state-dir', state, '--created', '2026-01-01T00:00:00Z'])
    expect(error).to.equal(undefined)
    const lines = stdout.trim().split('\n')
    expect(lines[0]).to.equal('Committed local/demo:v1')
    expect(lines[1]).to.match(/^ {2}digest: sha256:[0-9a-f]{64}$/)
    expect(lines[2]).to.match(/^ {2}layer: {2}\d+ bytes \(tar \d+ bytes, 3 entries\)$/)
    expect(lines[3]).to.equal(`  layout: ${path.join(state, 'images', 'oci')}`)
    expect(lines[4]).to.match(/image push local\/demo:v1$/)
    expect(fake.disks).to.deep.equal([path.join(state, 'workspaces', 'demo', 'rootfs.ext4')])
  })

  it('prints the documented JSON with --json', async () => {
    const {stdout} = await runCommand(['commit', 'demo', 'local/demo:v1', '--state-dir', state, '--json', '--created', '2026-01-01T00:00:00Z'])
    const result = JSON.parse(stdout) as Record<string, unknown>
    expect(result).to.include({layout_path: path.join(state, 'images', 'oci'), pushed: false, reference: 'local/demo:v1'})
    expect(result.digest).to.match(/^sha256:/)
    expect(result.size_bytes).to.be.a('number')
    expect(result.stats).to.include({entries: 3, files: 1})
    const manifest = readJson<ImageManifest>(blobFile(result.layout_path as string, result.digest as string))
    const config = readJson<ImageConfig>(blobFile(result.layout_path as string, manifest.config.digest))
    expect(config.config).to.deep.equal({Cmd: ['serve']})
  })

  it('passes -m, -a, -c, --label and --exclude through to the image', async () => {
    const {stderr, stdout} = await runCommand([
      'commit',
      'demo',
      'local/demo:v2',
      '--state-dir',
      state,
      '--json',
      '-m',
      'tools',
      '-a',
      'Jane',
      // runCommand joins its arguments and splits them again: quote the ones holding spaces.
      '-c',
      '"ENV A=1"',
      '--change',
      '"WORKDIR /w"',
      '--label',
      'k=v',
      '--exclude',
      'tmp',
      '--exclude',
      'bin/*',
    ])
    expect(stderr).to.equal('')
    const result = JSON.parse(stdout) as {digest: string; layout_path: string; stats: {entries: number; skipped: {excluded: number}}}
    expect(result.stats.skipped.excluded).to.equal(2)
    expect(result.stats.entries).to.equal(1)
    const manifest = readJson<ImageManifest>(blobFile(result.layout_path, result.digest))
    const config = readJson<ImageConfig>(blobFile(result.layout_path, manifest.config.digest))
    expect(config).to.include({author: 'Jane'})
    expect(config.history[0]).to.include({author: 'Jane', comment: 'tools'})
    expect(config.config).to.deep.equal({
      Cmd: ['serve'], Env: ['A=1'], Labels: {k: 'v'}, WorkingDir: '/w',
    })
  })

  it('notes what --exclude left out, on stderr', async () => {
    const {stderr} = await runCommand(['commit', 'demo', 'local/demo:v2', '--state-dir', state, '--exclude', 'tmp'])
    expect(stderr).to.contain('note: left out 1 paths matched by --exclude')
  })

  it('shows live progress on a terminal, and none with --json or in agent mode', async () => {
    const wasTTY = process.stderr.isTTY
    process.stderr.isTTY = true
    try {
      const human = await runCommand(['commit', 'demo', 'local/demo:v1', '--state-dir', state])
      expect(human.stderr).to.match(/Wrote layer: 3 entries, tar \d/)
      const json = await runCommand(['commit', 'demo', 'local/demo:v1', '--state-dir', state, '--json'])
      expect(json.stderr).to.equal('')
      const ax = await runCommand(['commit', 'demo', 'local/demo:v1', '--state-dir', state, '--mode', 'ax'])
      expect(ax.stderr).to.equal('')
      expect(JSON.parse(ax.stdout)).to.include({reference: 'local/demo:v1'})
    } finally {
      process.stderr.isTTY = wasTTY
    }
  })

  it('takes the state dir from MICROAGENT_STATE_DIR', async () => {
    process.env.MICROAGENT_STATE_DIR = state
    const {error, stdout} = await runCommand(['commit', 'demo', 'local/demo:v1'])
    expect(error).to.equal(undefined)
    expect(stdout).to.contain(path.join(state, 'images', 'oci'))
  })

  it('normalises --arch', async () => {
    const {stdout} = await runCommand(['commit', 'demo', 'local/demo:v1', '--state-dir', state, '--arch', 'x86_64', '--json'])
    expect(JSON.parse(stdout)).to.include({architecture: 'amd64'})
  })

  it('is reproducible with SOURCE_DATE_EPOCH', async () => {
    process.env.SOURCE_DATE_EPOCH = '1700000000'
    try {
      const first = JSON.parse((await runCommand(['commit', 'demo', 'local/a:1', '--state-dir', state, '--json'])).stdout) as {created: string; digest: string}
      const second = JSON.parse((await runCommand(['commit', 'demo', 'local/b:1', '--state-dir', state, '--json'])).stdout) as {digest: string}
      expect(first.created).to.equal('2023-11-14T22:13:20Z')
      expect(second.digest).to.equal(first.digest)
    } finally {
      delete process.env.SOURCE_DATE_EPOCH
    }
  })

  describe('errors and exit codes', () => {
    it('refuses a running workspace with exit 4 and a hint', async () => {
      addWorkspace(state, 'live', {runtime: runtimeRecord('running')})
      const {error, stderr, stdout} = await runCommand(['commit', 'live', 'local/live:1', '--state-dir', state])
      expect(exitOf(error)).to.equal(4)
      expect(stderr).to.contain('Error: workspace "live" is running; halt or stop it before committing')
      expect(stderr).to.contain('Hint: Run `microagent stop live`')
      expect(stdout).to.equal('')
      expect(fake.disks).to.deep.equal([])
    })

    it('writes one AX envelope on stderr in agent mode (env or flag)', async () => {
      addWorkspace(state, 'live', {runtime: runtimeRecord('paused')})
      process.env.MICROAGENT_MODE = 'ax'
      const viaEnv = await runCommand(['commit', 'live', 'local/live:1', '--state-dir', state])
      delete process.env.MICROAGENT_MODE
      const viaFlag = await runCommand(['commit', 'live', 'local/live:1', '--state-dir', state, '--mode', 'ax'])
      for (const {error, stderr, stdout} of [viaEnv, viaFlag]) {
        expect(exitOf(error)).to.equal(4)
        expect(stdout).to.equal('')
        const envelope = JSON.parse(stderr) as Envelope
        expect(envelope.ok).to.equal(false)
        expect(envelope.error).to.include({
          code: 'WORKSPACE_IN_USE', exit_code: 4, kind: 'conflict', retryable: false,
        })
        expect(envelope.error.message).to.equal('workspace "live" is paused; halt or stop it before committing')
        expect(envelope.error.correlation_id).to.match(/^req-/)
        expect(envelope.error.remediation).to.be.a('string')
      }
    })

    it('answers --json failures with the envelope too', async () => {
      const {error, stderr} = await runCommand(['commit', 'ghost', 'local/x:1', '--state-dir', state, '--json'])
      expect(exitOf(error)).to.equal(3)
      expect((JSON.parse(stderr) as Envelope).error).to.include({kind: 'not_found'})
    })

    const usage: [string, string[], RegExp][] = [
      ['a bad workspace name', ['commit', '../etc', 'local/x:1'], /invalid workspace name "..\/etc"/],
      ['a reserved workspace name', ['commit', 'images', 'local/x:1'], /reserved for microagent state/],
      ['a bad reference', ['commit', 'demo', 'Local/Demo:v1'], /invalid image reference/],
      ['an unknown backend', ['commit', 'demo', 'local/x:1', '--backend', 'qemu'], /--backend=qemu to be one of: linux-kvm, apple-vf, firecracker/],
      ['an unknown architecture', ['commit', 'demo', 'local/x:1', '--arch', 'sparc'], /--arch=sparc to be one of: amd64, arm64/],
      ['a malformed --created', ['commit', 'demo', 'local/x:1', '--created', 'soon'], /RFC 3339/],
      ['--push to the local/ pseudo-registry', ['commit', 'demo', 'local/x:1', '--push'], /"local\/x:1" names the local\/ pseudo-registry/],
      ['a missing argument', ['commit', 'demo'], /Missing 1 required arg/],
      ['an unknown flag', ['commit', 'demo', 'local/x:1', '--bogus'], /Nonexistent flag/],
    ]
    for (const [what, argv, message] of usage) {
      it(`exits 2 on ${what}, before touching anything`, async () => {
        const {error, stderr} = await runCommand([...argv, '--state-dir', state])
        expect(exitOf(error)).to.equal(2)
        expect(stderr).to.match(message)
        expect(fake.disks).to.deep.equal([])
      })
    }

    it('accepts firecracker as the backend', async () => {
      const {error} = await runCommand(['commit', 'demo', 'local/x:1', '--state-dir', state, '--backend', 'firecracker'])
      expect(error).to.equal(undefined)
    })

    it('exits 3 for a missing workspace and 5 for a missing debugfs', async () => {
      expect(exitOf((await runCommand(['commit', 'ghost', 'local/x:1', '--state-dir', state])).error)).to.equal(3)
      Commit.extractor = undefined
      const {error, stderr} = await runCommand(['commit', 'demo', 'local/x:1', '--state-dir', state, '--debugfs', '/nonexistent/debugfs'])
      expect(exitOf(error)).to.equal(5)
      expect(stderr).to.contain('debugfs not found at "/nonexistent/debugfs"')
      expect(stderr).to.contain('apt-get install e2fsprogs')
    })

    describe('--sandbox', () => {
      const savedSandbox = {bwrap: process.env.MICROAGENT_BWRAP, mode: process.env.MICROAGENT_SANDBOX}

      afterEach(() => {
        for (const [key, value] of [['MICROAGENT_BWRAP', savedSandbox.bwrap], ['MICROAGENT_SANDBOX', savedSandbox.mode]] as const) {
          if (value === undefined) delete process.env[key]
          else process.env[key] = value
        }
      })

      it('require exits 8 before reading when bubblewrap is missing, with the envelope and nothing tagged', async () => {
        process.env.MICROAGENT_BWRAP = '/nonexistent/bwrap'
        const {error, stderr} = await runCommand(['commit', 'demo', 'local/x:1', '--state-dir', state, '--sandbox', 'require', '--json'])
        expect(exitOf(error)).to.equal(8)
        const envelope = JSON.parse(stderr) as Envelope
        expect(envelope.error).to.include({code: 'SANDBOX_UNAVAILABLE', exit_code: 8, kind: 'policy_denied'})
        expect(envelope.error.remediation).to.contain('apt-get install bubblewrap')
        expect(fake.disks).to.deep.equal([])
        expect(existsSync(path.join(state, 'images', 'oci', 'index.json'))).to.equal(false)
      })

      it('takes the mode from MICROAGENT_SANDBOX', async () => {
        process.env.MICROAGENT_BWRAP = '/nonexistent/bwrap'
        process.env.MICROAGENT_SANDBOX = 'require'
        expect(exitOf((await runCommand(['commit', 'demo', 'local/x:1', '--state-dir', state])).error)).to.equal(8)
        expect(exitOf((await runCommand(['commit', 'demo', 'local/x:1', '--state-dir', state, '--sandbox', 'off'])).error)).to.equal(undefined)
      })

      it('auto commits unconfined and warns once, naming how to enable it; the JSON says so too', async () => {
        process.env.MICROAGENT_BWRAP = '/nonexistent/bwrap'
        const human = await runCommand(['commit', 'demo', 'local/x:1', '--state-dir', state])
        expect(human.error).to.equal(undefined)
        const warnings = human.stderr.split('\n').filter(line => line.includes('unconfined'))
        expect(warnings).to.have.length(1)
        expect(warnings[0]).to.match(/^warning: debugfs ran unconfined: bubblewrap is not installed/).and.contain('apt-get install bubblewrap')
        const json = JSON.parse((await runCommand(['commit', 'demo', 'local/x:2', '--state-dir', state, '--json'])).stdout) as {sandbox: unknown}
        expect(json.sandbox).to.deep.include({confined: false, mode: 'auto'})
      })

      it('off says nothing, and an unknown mode is a usage error', async () => {
        process.env.MICROAGENT_BWRAP = '/nonexistent/bwrap'
        const off = await runCommand(['commit', 'demo', 'local/x:1', '--state-dir', state, '--sandbox', 'off'])
        expect(off.stderr).to.not.contain('unconfined')
        expect(exitOf((await runCommand(['commit', 'demo', 'local/x:1', '--state-dir', state, '--sandbox', 'sometimes'])).error)).to.equal(2)
      })
    })

    it('keeps the workspace disk untouched on failure', async () => {
      const rootfs = path.join(state, 'workspaces', 'demo', 'rootfs.ext4')
      const before = readFileSync(rootfs)
      await runCommand(['commit', 'demo', 'local/x:1', '--state-dir', state, '--push'])
      expect(readFileSync(rootfs).equals(before)).to.equal(true)
    })
  })
})
