import {runCommand} from '@oclif/test'
import {expect} from 'chai'
import {readFileSync} from 'node:fs'
import path from 'node:path'

import Commit from '../../src/commands/commit.js'
import {FakeExtractor, fakeRootfs} from '../../src/lib/extractor/fake.js'
import {exitOf} from '../helpers/assert.js'
import {keyMaterial, tokens} from '../helpers/secrets.js'
import {addWorkspace, makeStateDir, runtimeRecord} from '../helpers/state.js'
import {requireTools} from '../helpers/tools.js'
import {makeCa} from '../helpers/trust.js'

const base = {
  gid: 0, mtime: {nsec: 0, sec: 1_700_000_000}, size: 0, uid: 0, xattrs: [],
}

describe('commit and push: what an image must not carry (command output)', () => {
  let state: string
  let token: string
  let key: string
  let ca: ReturnType<typeof makeCa>

  before(function () {
    requireTools(this, 'openssl', 'ssh-keygen')
    token = tokens()['github-token']
    key = keyMaterial().secret.id_ed25519
    ca = makeCa()
  })

  beforeEach(() => {
    state = makeStateDir()
    addWorkspace(state, 'demo', {manifest: {name: 'demo'}, runtime: runtimeRecord('stopped')})
    Commit.extractor = new FakeExtractor([
      ...fakeRootfs(),
      {
        ...base, inode: 20, mode: 0o755, path: 'etc', type: 'directory',
      },
      {
        ...base, data: 'demo\n', inode: 21, mode: 0o644, path: 'etc/hostname', type: 'file',
      },
      {
        ...base, inode: 22, mode: 0o755, path: 'etc/microagent', type: 'directory',
      },
      {
        ...base, data: ca.pem, inode: 23, mode: 0o644, path: 'etc/microagent/egress-ca.pem', type: 'file',
      },
      {
        ...base, inode: 24, mode: 0o700, path: 'root', type: 'directory',
      },
      {
        ...base, data: `export GITHUB_TOKEN=${token}\n`, inode: 25, mode: 0o644, path: 'root/.profile', type: 'file',
      },
      {
        ...base, inode: 26, mode: 0o700, path: 'root/.ssh', type: 'directory',
      },
      {
        ...base, data: key, inode: 27, mode: 0o600, path: 'root/.ssh/id_ed25519', type: 'file',
      },
    ])
    process.exitCode = undefined
  })

  afterEach(() => {
    Commit.extractor = undefined
    process.exitCode = undefined
  })

  it('says on stderr what it left out and what it found, without the values, and commits', async () => {
    const {error, stderr, stdout} = await runCommand(['commit', 'demo', 'local/demo:v1', '--state-dir', state])
    expect(error).to.equal(undefined)
    expect(stdout).to.include('Committed local/demo:v1')
    expect(stderr).to.include('note: left out /etc/hostname').and.include('note: left out /etc/microagent/egress-ca.pem').and.include('note: left out /etc/microagent\n')
    expect(stderr).to.include('--keep-runtime-files')
    expect(stderr).to.include('warning: 2 possible secret(s)').and.include('/root/.profile:1  github-token').and.include('/root/.ssh/id_ed25519:1  private-key')
    expect(stderr).to.include('--allow-secrets')
    expect(stderr + stdout).to.not.include(token)
  })

  it('puts the report and the findings in the JSON result', async () => {
    const {stdout} = await runCommand(['commit', 'demo', 'local/demo:v1', '--state-dir', state, '--json'])
    const result = JSON.parse(stdout) as {runtime_files: {action: string; path: string}[]; secrets: {count: number; findings: {line: number; path: string; rule: string}[]}}
    expect(result.runtime_files.map(f => f.path)).to.deep.equal(['etc/hostname', 'etc/microagent/egress-ca.pem', 'etc/microagent'])
    expect(result.secrets).to.deep.equal({
      count: 2,
      findings: [{line: 1, path: 'root/.profile', rule: 'github-token'}, {line: 1, path: 'root/.ssh/id_ed25519', rule: 'private-key'}],
    })
  })

  it('--secrets refuse is exit 8 with an AX envelope of kind policy_denied, and tags nothing', async () => {
    const {stderr, stdout} = await runCommand(['commit', 'demo', 'local/demo:v1', '--state-dir', state, '--secrets', 'refuse', '--mode', 'ax'])
    expect(stdout).to.equal('')
    const envelope = JSON.parse(stderr) as {error: {code: string; exit_code: number; kind: string; message: string; remediation: string}}
    expect(envelope.error).to.include({code: 'SECRETS_FOUND', exit_code: 8, kind: 'policy_denied'})
    expect(envelope.error.message).to.include('/root/.ssh/id_ed25519')
    expect(envelope.error.remediation).to.include("--exclude 'root/.profile'")
    expect(process.exitCode).to.equal(8)
    expect(readFileSync(path.join(state, 'images', 'oci', 'index.json'), 'utf8')).to.not.include('local/demo:v1')
  })

  it('image push refuses the image (exit 8) and names the paths; image inspect lists the findings', async () => {
    await runCommand(['commit', 'demo', 'local/demo:v1', '--state-dir', state])
    const pushed = await runCommand(['image', 'push', 'local/demo:v1', '127.0.0.1:1/demo:v1', '--state-dir', state])
    expect(exitOf(pushed.error)).to.equal(8)
    expect(pushed.stderr).to.include('/root/.profile').and.include('--allow-secrets')
    const inspected = await runCommand(['image', 'inspect', 'local/demo:v1', '--state-dir', state])
    expect(inspected.stdout).to.include('Secrets:   2 possible secret(s)').and.include('/root/.ssh/id_ed25519:1  private-key')
    expect(inspected.stdout).to.not.include(token)
  })

  it('commit --push refuses before any request unless --allow-secrets; --allow-secrets needs --push', async () => {
    const pushed = await runCommand(['commit', 'demo', '127.0.0.1:1/demo:v1', '--state-dir', state, '--push'])
    expect(exitOf(pushed.error)).to.equal(8)
    const lonely = await runCommand(['commit', 'demo', 'local/demo:v2', '--state-dir', state, '--allow-secrets'])
    expect(exitOf(lonely.error)).to.equal(2)
  })

  it('--keep-runtime-files keeps them and says nothing about them', async () => {
    const {stderr, stdout} = await runCommand(['commit', 'demo', 'local/demo:v1', '--state-dir', state, '--keep-runtime-files', '--json'])
    expect((JSON.parse(stdout) as {runtime_files: unknown[]}).runtime_files).to.deep.equal([])
    expect(stderr).to.not.include('left out')
  })

  it('says that microagent cannot create from a zstd image', async function () {
    requireTools(this, 'zstd')
    const {stderr} = await runCommand(['commit', 'demo', 'local/demo:z', '--state-dir', state, '--compression', 'zstd'])
    expect(stderr).to.include("microagent's own create/run cannot unpack zstd layers")
    const gzip = await runCommand(['commit', 'demo', 'local/demo:g', '--state-dir', state])
    expect(gzip.stderr).to.not.include('zstd')
  })
})
