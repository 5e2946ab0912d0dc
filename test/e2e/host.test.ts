import {expect} from 'chai'
import {existsSync, readFileSync, writeFileSync} from 'node:fs'
import path from 'node:path'

import {tempDir} from '../helpers/ext4.js'
import {
  FIXTURE_PLUGIN, type Host, installedPlugin, makeHost,
} from '../helpers/host.js'
import {dumpTar, hex, validateLayout} from '../helpers/oci.js'
import {startRegistry, type TestRegistry} from '../helpers/registry.js'
import {addWorkspace, makeStateDir, runtimeRecord} from '../helpers/state.js'
import {requireTools} from '../helpers/tools.js'

interface HookRecord {
  data: Record<string, string>
  event: string
}

describe('in a microagent host: help, shell completion and the extension hooks', () => {
  let host: Host

  before(function () {
    requireTools(this, 'python3', 'skopeo', 'umoci', 'oci-image-tool', 'docker-registry')
    host = makeHost([
      installedPlugin('@oclif/plugin-help'),
      installedPlugin('@oclif/plugin-autocomplete'),
      {dir: FIXTURE_PLUGIN, name: 'hook-plugin'},
    ])
  })

  it('lists the image topic and the commands, with summaries, in the host help', () => {
    const top = host.run(['--help'])
    expect(top.status, top.stderr).to.equal(0)
    expect(top.stdout).to.match(/TOPICS\n {2}image +Work with committed OCI images/)
    expect(top.stdout).to.match(/ {2}commit +Commit a stopped workspace's rootfs as an OCI image\./)
    const image = host.run(['image', '--help'])
    for (const command of ['inspect', 'list', 'push', 'rm', 'tag']) expect(image.stdout).to.match(new RegExp(`image ${command} +\\S`))
    const commit = host.run(['commit', '--help'])
    expect(commit.stdout).to.contain('--compression=<option>')
    expect(commit.stdout).to.match(/<options: gzip\|zstd\|none>/)
    expect(commit.stdout).to.contain('EXAMPLES')
  })

  it('builds bash and zsh completions that know our commands, flags and option lists', () => {
    const built = host.run(['autocomplete', '--refresh-cache'])
    expect(built.status, built.stderr).to.equal(0)
    const functions = path.join(host.cacheDir, 'autocomplete', 'functions')
    const bash = readFileSync(path.join(functions, 'bash', 'microagent.bash'), 'utf8')
    const commitLine = bash.split('\n').find(line => line.startsWith('commit '))
    expect(commitLine).to.be.a('string')
    for (const flag of ['--arch',
      '--backend',
      '--change',
      '--compression',
      '--exclude',
      '--extractor',
      '--label',
      '--message',
      '--push',
      '--state-dir',
      '--keep-runtime-files',
      '--secrets',
      '--allow-secrets',
      '--sandbox',
      '--parent']) {
      expect(commitLine).to.contain(flag)
    }

    for (const command of ['image:inspect', 'image:list', 'image:push --json --backend --mode --state-dir --allow-secrets --plain-http', 'image:rm', 'image:tag']) {
      expect(bash).to.contain(`\n${command}`)
    }

    const zsh = readFileSync(path.join(functions, 'zsh', '_microagent'), 'utf8')
    expect(zsh).to.contain('"image[Work with committed OCI images]"')
    expect(zsh).to.contain('--compression"[Layer compression.]:compression options:(gzip zstd none)"')
    expect(zsh).to.match(/--arch"\[[^\]]+\]:arch options:\(amd64 arm64 riscv64 ppc64le s390x 386 arm /)
    expect(zsh).to.match(/--backend"\[[^\]]+\]:backend options:\(linux-kvm apple-vf firecracker\)"/)
    expect(zsh).to.contain('"rm[Remove a committed image and the blobs no other tag uses.]"')
  })

  describe('a fixture plugin answering microagent:extractor, :committed and :pushed', () => {
    let state: string
    let log: string
    let registry: TestRegistry

    before(async () => {
      registry = await startRegistry('none')
      state = makeStateDir()
      // Not ext4 at all: the plugin's extractor reads its own "filesystem", so no superblock check may run.
      const rootfs = addWorkspace(state, 'demo', {rootfs: null, runtime: runtimeRecord('stopped')})
      writeFileSync(rootfs, 'a pretend memfs disk\n')
      log = path.join(tempDir(), 'hooks.jsonl')
    })

    after(async () => {
      await registry?.stop()
    })

    const records = (): HookRecord[] => (existsSync(log) ? readFileSync(log, 'utf8').trim().split('\n').map(line => JSON.parse(line) as HookRecord) : [])

    it('commits through the extractor a plugin provides, and announces the result', () => {
      const committed = host.run(['commit', 'demo', 'local/memfs:v1', '--extractor', 'memfs', '--state-dir', state, '--json'], {HOOK_PLUGIN_LOG: log})
      expect(committed.status, committed.stderr).to.equal(0)
      const result = JSON.parse(committed.stdout) as {digest: string; layer_digest: string; layout_path: string}
      const layout = path.join(state, 'images', 'oci')
      expect(validateLayout(layout)).to.deep.equal(['local/memfs:v1'])
      const tar = dumpTar(path.join(layout, 'blobs', 'sha256', result.layer_digest.slice(7)))
      expect(tar.map(r => [r.type, r.path])).to.deep.equal([['directory', hex('etc/')], ['file', hex('etc/motd')]])
      expect(records()).to.deep.equal([
        {data: {name: 'memfs'}, event: 'extractor'},
        {data: {disk: path.join(state, 'workspaces', 'demo', 'rootfs.ext4')}, event: 'extract'},
        {data: {digest: result.digest, reference: 'local/memfs:v1'}, event: 'committed'},
      ])
    })

    it('announces a push', () => {
      const pushed = host.run(['image', 'push', 'local/memfs:v1', `${registry.host}/memfs:v1`, '--state-dir', state], {HOOK_PLUGIN_LOG: log})
      expect(pushed.status, pushed.stderr).to.equal(0)
      const last = records().at(-1)
      expect(last?.event).to.equal('pushed')
      expect(last?.data.destination).to.equal(`${registry.host}/memfs:v1`)
      expect(last?.data.digest).to.match(/^sha256:[0-9a-f]{64}$/)
    })

    it('turns a failing announcement into a warning, not a failed commit', () => {
      const run = host.run(['commit', 'demo', 'local/memfs:v2', '--extractor', 'memfs', '--state-dir', state], {HOOK_PLUGIN_FAIL: '1'})
      expect(run.status, run.stderr).to.equal(0)
      expect(run.stdout).to.contain('Committed local/memfs:v2')
      // oclif wraps warnings to the terminal width behind a › margin.
      expect(run.stderr.replaceAll(/\s+›?\s*/g, ' ')).to.contain('Warning: plugin hook-plugin failed on microagent:committed: the committed hook failed on purpose')
    })

    it('refuses an extractor nobody provides (exit 2) and a malformed one (exit 1), writing nothing', () => {
      const before = readFileSync(path.join(state, 'images', 'oci', 'index.json'), 'utf8')
      const missing = host.run(['commit', 'demo', 'local/x:v1', '--extractor', 'xfs', '--state-dir', state])
      expect(missing.status).to.equal(2)
      expect(missing.stderr).to.contain('no installed plugin provides the extractor "xfs"')
      const broken = host.run(['commit', 'demo', 'local/x:v1', '--extractor', 'broken', '--state-dir', state, '--json'])
      expect(broken.status).to.equal(1)
      expect(JSON.parse(broken.stderr)).to.deep.include({ok: false})
      expect(broken.stderr).to.contain(String.raw`plugin hook-plugin answered --extractor \"broken\"`)
      expect(readFileSync(path.join(state, 'images', 'oci', 'index.json'), 'utf8')).to.equal(before)
    })
  })
})
