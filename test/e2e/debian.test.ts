import {expect} from 'chai'
import {execFileSync} from 'node:child_process'
import {
  copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync,
} from 'node:fs'
import path from 'node:path'

import {type CommitResult, commitWorkspace} from '../../src/lib/commit.js'
import {tempDir} from '../helpers/ext4.js'
import {addWorkspace, makeStateDir, runtimeRecord} from '../helpers/state.js'
import {requireRoot, requireTools} from '../helpers/tools.js'
import {makeCa} from '../helpers/trust.js'

/** The Debian mirror apt uses on this machine. */
function mirror(): string {
  const dir = '/etc/apt/sources.list.d'
  const sources = [
    ...(existsSync(dir) ? readdirSync(dir).map(name => readFileSync(path.join(dir, name), 'utf8')) : []),
    existsSync('/etc/apt/sources.list') ? readFileSync('/etc/apt/sources.list', 'utf8') : '',
  ].join('\n')
  return /URIs:\s*(\S+\/debian)\b/.exec(sources)?.[1] ?? /^deb\s+(\S+\/debian)\s/m.exec(sources)?.[1] ?? 'http://deb.debian.org/debian'
}

/**
 * A real Debian tree, as a workspace would hold one: debootstrap minbase with ca-certificates and python3,
 * then what microagent's guest init does with the egress broker: the CA in /etc/microagent and
 * /usr/local/share/ca-certificates, and Debian's own update-ca-certificates run in the chroot.
 */
describe('a real Debian rootfs (debootstrap minbase + ca-certificates + python3)', function () {
  this.timeout(900_000)
  let tree: string
  let bundleBefore: Buffer
  let result: CommitResult
  let ca: ReturnType<typeof makeCa>

  before(async function () {
    requireTools(this, 'debootstrap', 'debugfs', 'mke2fs', 'umoci', 'openssl')
    requireRoot(this, 'debootstrap and chroot a Debian tree')
    tree = path.join(tempDir('plugin-image-debian-'), 'rootfs')
    execFileSync('debootstrap', ['--variant=minbase', '--include=ca-certificates,python3', 'bookworm', tree, mirror()], {stdio: 'ignore'})
    bundleBefore = readFileSync(path.join(tree, 'etc/ssl/certs/ca-certificates.crt'))
    ca = makeCa()
    mkdirSync(path.join(tree, 'etc/microagent'), {recursive: true})
    writeFileSync(path.join(tree, 'etc/microagent/egress-ca.pem'), ca.pem)
    writeFileSync(path.join(tree, 'etc/microagent/egress-ca-bundle.pem'), Buffer.concat([bundleBefore, Buffer.from(ca.pem)]))
    writeFileSync(path.join(tree, 'usr/local/share/ca-certificates/microagent-egress.crt'), ca.pem)
    // The chroot has no view of the host's TMPDIR (CI's Node 24 run sets its own): update-ca-certificates uses mktemp.
    execFileSync('chroot', [tree, 'update-ca-certificates'], {env: {...process.env, TMPDIR: '/tmp'}, stdio: 'ignore'})
    copyFileSync('/etc/hostname', path.join(tree, 'etc/hostname'))
    const state = makeStateDir()
    const rootfs = addWorkspace(state, 'debian', {rootfs: null, runtime: runtimeRecord('stopped')})
    execFileSync('mke2fs', ['-q', '-F', '-t', 'ext4', '-d', tree, rootfs, '1024M'], {stdio: 'ignore'})
    result = await commitWorkspace({
      created: new Date('2026-01-01T00:00:00Z'), reference: 'local/debian:v1', stateDir: state, workspace: 'debian',
    })
    console.log(`      (${result.stats.entries} entries, ${result.stats.files} files, ${result.tar_bytes} tar bytes)`)
  })

  it('has no secret findings: no false positives on a real distribution tree', () => {
    expect(result.secrets).to.deep.equal({count: 0, findings: []})
    expect(result.stats.entries).to.be.greaterThan(5000)
  })

  it('loses the CA its update-ca-certificates added, and nothing else of the trust store', () => {
    const bundle = path.join(tempDir('plugin-image-umoci-'), 'bundle')
    execFileSync('umoci', ['unpack', '--image', `${result.layout_path}:local/debian:v1`, bundle], {stdio: 'pipe'})
    const rootfs = path.join(bundle, 'rootfs')
    expect(readFileSync(path.join(rootfs, 'etc/ssl/certs/ca-certificates.crt')).equals(bundleBefore)).to.equal(true)
    expect(readFileSync(path.join(tree, 'etc/ssl/certs/ca-certificates.crt')).equals(bundleBefore)).to.equal(false)
    const hash = execFileSync('openssl', ['x509', '-hash', '-noout'], {encoding: 'utf8', input: ca.pem}).trim()
    const inTree = readdirSync(path.join(tree, 'etc/ssl/certs'))
    const inImage = readdirSync(path.join(rootfs, 'etc/ssl/certs'))
    expect(inTree).to.include(`${hash}.0`).and.include('microagent-egress.pem')
    expect(inImage.sort()).to.deep.equal(inTree.filter(name => name !== `${hash}.0` && name !== 'microagent-egress.pem').sort())
    for (const gone of ['etc/microagent', 'etc/hostname', 'usr/local/share/ca-certificates/microagent-egress.crt']) expect(existsSync(path.join(rootfs, gone)), gone).to.equal(false)
    expect(existsSync(path.join(rootfs, 'usr/local/share/ca-certificates'))).to.equal(true)
    expect(result.runtime_files.map(f => `${f.action} ${f.path}`).sort()).to.deep.equal([
      'left-out etc/hostname',
      'left-out etc/microagent',
      'left-out etc/microagent/egress-ca-bundle.pem',
      'left-out etc/microagent/egress-ca.pem',
      'left-out etc/resolv.conf',
      `left-out etc/ssl/certs/${hash}.0`,
      'left-out etc/ssl/certs/microagent-egress.pem',
      'left-out usr/local/share/ca-certificates/microagent-egress.crt',
      'rewritten etc/ssl/certs/ca-certificates.crt',
    ])
  })
})
