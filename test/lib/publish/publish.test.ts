import {expect} from 'chai'
import {execFileSync} from 'node:child_process'
import {
  chmodSync, cpSync, existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, readlinkSync, writeFileSync,
} from 'node:fs'
import path from 'node:path'

import {type CommitResult, commitWorkspace} from '../../../src/lib/commit.js'
import {DebugfsExtractor} from '../../../src/lib/extractor/debugfs.js'
import {inspectImage} from '../../../src/lib/oci/catalog.js'
import {layoutPath} from '../../../src/lib/oci/layout.js'
import {ImageRecords} from '../../../src/lib/oci/records.js'
import {RUNTIME_FILES} from '../../../src/lib/publish/runtime-files.js'
import {SECRETS_RECORD} from '../../../src/lib/publish/secrets-record.js'
import {pushImage} from '../../../src/lib/registry/push.js'
import {EXIT_CODES} from '../../../src/lib/support/errors.js'
import {rejection} from '../../helpers/assert.js'
import {runDebugfsWrite, tempDir} from '../../helpers/ext4.js'
import {keyMaterial, tokens} from '../../helpers/secrets.js'
import {addWorkspace, makeStateDir, runtimeRecord} from '../../helpers/state.js'
import {requireRoot, requireTools} from '../../helpers/tools.js'
import {debianTrustStore, makeCa} from '../../helpers/trust.js'

const CREATED = new Date('2026-01-01T00:00:00Z')

/** Unpacks a committed image as root with umoci, the way a runtime would see it. */
function unpack(result: CommitResult): string {
  const bundle = path.join(tempDir('plugin-image-umoci-'), 'bundle')
  execFileSync('umoci', ['unpack', '--image', `${result.layout_path}:${result.reference}`, bundle], {stdio: 'pipe'})
  return path.join(bundle, 'rootfs')
}

function write(root: string, file: string, data: Buffer | string, mode = 0o644): void {
  mkdirSync(path.dirname(path.join(root, file)), {recursive: true})
  writeFileSync(path.join(root, file), data)
  chmodSync(path.join(root, file), mode)
}

describe('safe to publish: microagent files, the egress CA and secrets (real debugfs, real ext4, umoci)', () => {
  let ca: ReturnType<typeof makeCa>
  let trust: ReturnType<typeof debianTrustStore>
  let state: string
  let planted: Record<string, string>
  let keys: ReturnType<typeof keyMaterial>

  before(function () {
    requireTools(this, 'debugfs', 'mke2fs', 'umoci', 'openssl', 'ssh-keygen', 'update-ca-certificates')
    requireRoot(this, 'unpack images with their owners (umoci unpack)')
    ca = makeCa()
    trust = debianTrustStore(ca.pem)
    keys = keyMaterial()
    planted = tokens()
    const tree = (root: string): void => {
      cpSync(trust.root, root, {recursive: true, verbatimSymlinks: true})
      // What microagent writes (microagent-compat.md §11–12).
      write(root, 'sbin/microagent-init', '\u007FELF init', 0o755)
      write(root, 'etc/hostname', 'demo\n')
      write(root, 'etc/resolv.conf', 'nameserver 10.0.2.3\n')
      write(root, 'tmp/microagent-udhcpc.script', '#!/bin/sh\n', 0o755)
      write(root, 'etc/microagent/egress-ca.pem', ca.pem)
      write(root, 'etc/microagent/egress-ca-bundle.pem', Buffer.concat([trust.before, Buffer.from(ca.pem)]))
      write(root, 'etc/ssl/cert.pem', Buffer.concat([Buffer.from(ca.pem), trust.before]))
      // What the agent left behind.
      write(root, 'root/.ssh/id_ed25519', keys.secret.id_ed25519, 0o600)
      write(root, 'root/.ssh/id_ed25519.pub', keys.harmless['id_ed25519.pub'])
      write(root, 'home/agent/.bashrc', `export PATH=$PATH:~/bin\nexport GITHUB_TOKEN=${planted['github-token']}\n`)
      write(root, 'home/agent/.docker/config.json', JSON.stringify({auths: {'ghcr.io': {auth: Buffer.from(`agent:${planted['npm-token']}`).toString('base64')}}}, null, 2))
      write(root, 'usr/share/doc/openssl/HOWTO', 'Keys start with -----BEGIN PRIVATE KEY-----\n')
    }

    state = makeStateDir()
    addWorkspace(state, 'demo', {runtime: runtimeRecord('stopped'), spec: {sizeMiB: 64, tree}})
  })

  describe('by default', () => {
    let result: CommitResult
    let rootfs: string

    before(async () => {
      result = await commitWorkspace({
        created: CREATED, reference: 'local/demo:v1', stateDir: state, workspace: 'demo',
      })
      rootfs = unpack(result)
    })

    it('leaves out every file microagent writes, and its folder', () => {
      for (const file of RUNTIME_FILES.filter(f => f.action === 'leave-out')) expect(existsSync(path.join(rootfs, file.path)), file.path).to.equal(false)
      expect(existsSync(path.join(rootfs, 'etc/microagent'))).to.equal(false)
      expect(existsSync(path.join(rootfs, 'etc'))).to.equal(true)
    })

    it("takes the CA out of every trust bundle and nothing else: the bundle is byte for byte the one Debian's tool wrote before the CA", () => {
      expect(readFileSync(path.join(rootfs, 'etc/ssl/certs/ca-certificates.crt')).equals(trust.before)).to.equal(true)
      expect(readFileSync(path.join(rootfs, 'etc/ssl/cert.pem')).equals(trust.before)).to.equal(true)
    })

    it('drops the links in /etc/ssl/certs that lead to the CA, and keeps every other one', () => {
      const hash = execFileSync('openssl', ['x509', '-hash', '-noout'], {encoding: 'utf8', input: ca.pem}).trim()
      const names = readdirSync(path.join(trust.root, 'etc/ssl/certs'))
      expect(names).to.include(`${hash}.0`)
      for (const name of names) {
        const gone = name === `${hash}.0` || name === 'microagent-egress.pem'
        expect(existsSync(path.join(rootfs, 'etc/ssl/certs', name)) || isLink(path.join(rootfs, 'etc/ssl/certs', name)), name).to.equal(!gone)
      }

      const other = names.find(name => name.endsWith('.0') && name !== `${hash}.0`) ?? ''
      expect(readlinkSync(path.join(rootfs, 'etc/ssl/certs', other))).to.equal(readlinkSync(path.join(trust.root, 'etc/ssl/certs', other)))
    })

    it('reports each file left out or rewritten', () => {
      const byPath = new Map(result.runtime_files.map(f => [f.path, f]))
      for (const file of ['sbin/microagent-init',
        'etc/hostname',
        'etc/resolv.conf',
        'tmp/microagent-udhcpc.script',
        'etc/microagent/egress-ca.pem',
        'etc/microagent/egress-ca-bundle.pem',
        'usr/local/share/ca-certificates/microagent-egress.crt',
        'etc/ssl/certs/microagent-egress.pem',
        'etc/microagent']) {
        expect(byPath.get(file)?.action, file).to.equal('left-out')
      }

      expect(byPath.get('etc/ssl/certs/ca-certificates.crt')).to.include({action: 'rewritten', certificates_removed: 1})
      expect(byPath.get('etc/ssl/cert.pem')).to.include({action: 'rewritten', certificates_removed: 1})
      expect(result.runtime_files).to.have.length(12)
    })

    it('finds the secrets the agent left, by path, rule and line, and nothing in public keys or docs', () => {
      expect(result.secrets.findings.map(f => `${f.path}:${f.line}:${f.rule}`).sort()).to.deep.equal([
        'home/agent/.bashrc:2:github-token',
        'home/agent/.docker/config.json:3:docker-config-auth',
        'root/.ssh/id_ed25519:1:private-key',
      ])
      expect(result.secrets.count).to.equal(3)
    })

    it('keeps the findings in a local record beside the image, never in it, and shows them in image inspect', async () => {
      const record = await new ImageRecords(result.layout_path).read(result.digest, SECRETS_RECORD)
      expect(JSON.parse(String(record))).to.include({count: 3})
      const inspection = await inspectImage(state, 'local/demo:v1')
      expect(inspection.secrets?.count).to.equal(3)
      expect(inspection.secrets?.findings.map(f => f.path)).to.include('root/.ssh/id_ed25519')
      expect(existsSync(path.join(rootfs, 'root/.ssh/id_ed25519'))).to.equal(true)
    })

    it('refuses to push it (exit 8, the paths named) unless --allow-secrets, before any request', async () => {
      const error = await rejection(pushImage({
        credential: null, destination: '127.0.0.1:1/demo:v1', layoutPath: layoutPath(state), source: 'local/demo:v1',
      }))
      expect(error.exitCode).to.equal(EXIT_CODES.policy)
      expect(String(error)).to.include('/root/.ssh/id_ed25519').and.include('/home/agent/.bashrc')
      expect((error as {remediation?: string}).remediation).to.include('--allow-secrets').and.include("--exclude 'root/.ssh/id_ed25519'")
      // Allowed, it gets as far as the (absent) registry.
      const allowed = await rejection(pushImage({
        allowSecrets: true, credential: null, destination: '127.0.0.1:1/demo:v1', layoutPath: layoutPath(state), retries: 0, source: 'local/demo:v1',
      }))
      expect(allowed.exitCode).to.not.equal(EXIT_CODES.policy)
    })
  })

  it('--keep-runtime-files commits the disk as it is', async () => {
    const result = await commitWorkspace({
      created: CREATED, keepRuntimeFiles: true, reference: 'local/demo:kept', stateDir: state, workspace: 'demo',
    })
    const rootfs = unpack(result)
    expect(result.runtime_files).to.deep.equal([])
    expect(readFileSync(path.join(rootfs, 'etc/hostname'), 'utf8')).to.equal('demo\n')
    expect(readFileSync(path.join(rootfs, 'etc/ssl/certs/ca-certificates.crt')).equals(readFileSync(path.join(trust.root, 'etc/ssl/certs/ca-certificates.crt')))).to.equal(true)
    expect(readFileSync(path.join(rootfs, 'etc/microagent/egress-ca.pem'), 'latin1')).to.equal(ca.pem)
  })

  it('--secrets refuse fails before tagging (exit 8) and leaves the index as it was', async () => {
    const index = readFileSync(path.join(layoutPath(state), 'index.json'), 'utf8')
    const error = await rejection(commitWorkspace({
      created: CREATED, reference: 'local/demo:refused', secrets: 'refuse', stateDir: state, workspace: 'demo',
    }))
    expect(error.exitCode).to.equal(EXIT_CODES.policy)
    expect(String(error)).to.include('/root/.ssh/id_ed25519')
    expect(readFileSync(path.join(layoutPath(state), 'index.json'), 'utf8')).to.equal(index)
  })

  it('--secrets refuse keeps the layer that holds them out of the layout: no blob is stored, nothing is left in ingest', async () => {
    const fresh = makeStateDir()
    addWorkspace(fresh, 'demo', {rootfs: path.join(state, 'workspaces', 'demo', 'rootfs.ext4'), runtime: runtimeRecord('stopped')})
    const error = await rejection(commitWorkspace({
      created: CREATED, reference: 'local/demo:refused', secrets: 'refuse', stateDir: fresh, workspace: 'demo',
    }))
    expect(error.exitCode).to.equal(EXIT_CODES.policy)
    const layout = layoutPath(fresh)
    expect(readdirSync(path.join(layout, 'blobs', 'sha256'))).to.deep.equal([])
    expect(readdirSync(path.join(layout, 'ingest'))).to.deep.equal([])
    expect(JSON.parse(readFileSync(path.join(layout, 'index.json'), 'utf8')).manifests).to.deep.equal([])
    // The same disk, committed with the default policy, stores its layer.
    const result = await commitWorkspace({
      created: CREATED, reference: 'local/demo:warned', stateDir: fresh, workspace: 'demo',
    })
    expect(readdirSync(path.join(layout, 'blobs', 'sha256'))).to.include(result.layer_digest.slice('sha256:'.length))
  })

  it('commits a workspace without any of these files exactly as before, with a clean record', async () => {
    const plain = makeStateDir()
    addWorkspace(plain, 'plain', {runtime: runtimeRecord('stopped'), spec: {tree: root => write(root, 'etc/ssl/certs/ca-certificates.crt', trust.before)}})
    const [filtered, kept] = [
      await commitWorkspace({
        created: CREATED, reference: 'local/plain:a', stateDir: plain, workspace: 'plain',
      }),
      await commitWorkspace({
        created: CREATED, keepRuntimeFiles: true, reference: 'local/plain:b', stateDir: plain, workspace: 'plain',
      }),
    ]
    expect(filtered.digest).to.equal(kept.digest)
    expect(filtered.runtime_files).to.deep.equal([])
    expect(filtered.secrets).to.deep.equal({count: 0, findings: []})
  })

  it('takes the CA out of a bundle that comes before any copy of the CA in the walk (read ahead)', async () => {
    const early = makeStateDir()
    // Only /usr/local holds the CA, and /etc/ssl/cert.pem is walked before it.
    const tree = (root: string): void => {
      write(root, 'etc/ssl/cert.pem', Buffer.concat([trust.before, Buffer.from(ca.pem)]))
      write(root, 'usr/local/share/ca-certificates/microagent-egress.crt', ca.pem)
    }

    addWorkspace(early, 'early', {runtime: runtimeRecord('stopped'), spec: {sizeMiB: 32, tree}})
    const result = await commitWorkspace({
      created: CREATED, reference: 'local/early:v1', stateDir: early, workspace: 'early',
    })
    expect(readFileSync(path.join(unpack(result), 'etc/ssl/cert.pem')).equals(trust.before)).to.equal(true)
  })

  describe('the CA is read while the walk runs', () => {
    /** The real extractor, its CA read held back `ms` and then answered or failed. */
    class SlowCaRead extends DebugfsExtractor {
      walked = 0
      /** Entries the walk had given when the CA read answered. */
      walkedBeforeAnswer = -1

      constructor(private readonly ms: number, private readonly failure?: Error) {
        super()
      }

      override async * entries(...args: Parameters<DebugfsExtractor['entries']>): ReturnType<DebugfsExtractor['entries']> {
        for await (const entry of super.entries(...args)) {
          this.walked++
          yield entry
        }
      }

      override async readFiles(...args: Parameters<DebugfsExtractor['readFiles']>): ReturnType<DebugfsExtractor['readFiles']> {
        const found = await super.readFiles(...args)
        await new Promise(resolve => {
          setTimeout(resolve, this.ms)
        })
        this.walkedBeforeAnswer = this.walked
        if (this.failure) throw this.failure
        return found
      }
    }

    it('a bundle met before the read is answered waits for it, and loses the CA all the same', async () => {
      const slow = new SlowCaRead(400)
      const result = await commitWorkspace({
        created: CREATED, extractor: slow, reference: 'local/slow:v1', stateDir: state, workspace: 'demo',
      })
      // The walk had started before the answer: the read no longer holds it up.
      expect(slow.walkedBeforeAnswer).to.be.greaterThan(0)
      expect(readFileSync(path.join(unpack(result), 'etc/ssl/cert.pem')).equals(trust.before)).to.equal(true)
      expect(result.runtime_files.find(report => report.path === 'etc/ssl/cert.pem')).to.include({action: 'rewritten', certificates_removed: 1})
    })

    it('a read that fails fails the commit, nothing tagged and no blob left in the ingest folder', async () => {
      const index = readFileSync(path.join(layoutPath(state), 'index.json'), 'utf8')
      const error = await rejection(commitWorkspace({
        created: CREATED, extractor: new SlowCaRead(50, new Error('debugfs went away')), reference: 'local/failed:v1', stateDir: state, workspace: 'demo',
      }))
      expect(error.message).to.contain('debugfs went away')
      expect(readFileSync(path.join(layoutPath(state), 'index.json'), 'utf8')).to.equal(index)
      expect(readdirSync(path.join(layoutPath(state), 'ingest'))).to.deep.equal([])
    })
  })

  it('a stacked commit keeps every finding of the parent\'s layers (a deleted file stays in the layer that added it), and keeps the CA out', async () => {
    const stacked = makeStateDir()
    const rootfs = addWorkspace(stacked, 'demo', {rootfs: path.join(state, 'workspaces', 'demo', 'rootfs.ext4'), runtime: runtimeRecord('stopped')})
    const parent = await commitWorkspace({
      created: CREATED, reference: 'local/demo:base', stateDir: stacked, workspace: 'demo',
    })
    expect(parent.secrets.count).to.equal(3)
    // The agent goes on: removes its key, writes a token elsewhere; microagent's files are untouched.
    runDebugfsWrite(rootfs, ['rm /root/.ssh/id_ed25519'])
    const child = await commitWorkspace({
      created: CREATED, parent: 'local/demo:base', reference: 'local/demo:child', stateDir: stacked, workspace: 'demo',
    })
    // Deleted on the disk, the key is still in layer 0, which the child carries: it stays a finding.
    expect(child.secrets.findings.map(f => `${f.layer}:${f.path}:${f.rule}`).sort()).to.deep.equal([
      '0:home/agent/.bashrc:github-token',
      '0:home/agent/.docker/config.json:docker-config-auth',
      '0:root/.ssh/id_ed25519:private-key',
    ])
    const refused = await rejection(pushImage({
      credential: null, destination: '127.0.0.1:1/demo:child', layoutPath: layoutPath(stacked), source: 'local/demo:child',
    }))
    expect(refused.exitCode).to.equal(EXIT_CODES.policy)
    expect(refused.remediation).to.include('commit without --parent')
    const unpacked = unpack(child)
    expect(existsSync(path.join(unpacked, 'root/.ssh/id_ed25519'))).to.equal(false)
    expect(readFileSync(path.join(unpacked, 'etc/ssl/certs/ca-certificates.crt')).equals(trust.before)).to.equal(true)
    expect(existsSync(path.join(unpacked, 'etc/microagent'))).to.equal(false)
    expect(child.stats.whiteouts).to.equal(1)
  })

  it('image rm removes the record with the image', async () => {
    const {removeImage} = await import('../../../src/lib/oci/catalog.js')
    const result = await commitWorkspace({
      created: new Date('2026-02-02T00:00:00Z'), reference: 'local/demo:gone', stateDir: state, workspace: 'demo',
    })
    const records = new ImageRecords(result.layout_path)
    expect(await records.read(result.digest, SECRETS_RECORD)).to.not.equal(undefined)
    await removeImage(state, 'local/demo:gone')
    expect(existsSync(records.dir(result.digest))).to.equal(false)
  })
})

function isLink(file: string): boolean {
  try {
    return lstatSync(file).isSymbolicLink()
  } catch {
    return false
  }
}
