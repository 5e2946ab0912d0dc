import {expect} from 'chai'
import {execFileSync} from 'node:child_process'
import {createHash, randomBytes} from 'node:crypto'
import {
  existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync,
} from 'node:fs'
import path from 'node:path'
import {gunzipSync} from 'node:zlib'

import type {Compression} from '../../src/lib/layer/compress.js'
import type {ImageConfig, ImageManifest} from '../../src/lib/oci/image.js'
import type {CommitProgress} from '../../src/lib/support/progress.js'

import {type CommitResult, commitWorkspace} from '../../src/lib/commit.js'
import {type ImageIndex, layoutPath} from '../../src/lib/oci/layout.js'
import {rejection} from '../helpers/assert.js'
import {
  buildExt4, dirtyImage, runDebugfsWrite, tempDir,
} from '../helpers/ext4.js'
import {
  ACL, BIG_XATTR, buildFidelityImage, CAPABILITY, DEEP, type FidelityImage, NAMES,
} from '../helpers/fidelity.js'
import {
  blobFile, dumpTar, hex, readJson, type TarRecord, validateLayout, validateWithClients,
} from '../helpers/oci.js'
import {addWorkspace, makeStateDir, runtimeRecord} from '../helpers/state.js'
import {requireRoot, requireTools} from '../helpers/tools.js'

const CREATED = new Date('2026-01-01T00:00:00Z')
const sha = (data: Buffer | string): string => createHash('sha256').update(data).digest('hex')

function layerRecords(result: CommitResult): Map<string, TarRecord> {
  const records = dumpTar(blobFile(result.layout_path, result.layer_digest))
  return new Map(records.map(r => [Buffer.from(r.path, 'hex').toString('latin1'), r]))
}

function layoutSnapshot(layout: string): string {
  const blobs = existsSync(path.join(layout, 'blobs', 'sha256')) ? readdirSync(path.join(layout, 'blobs', 'sha256')).sort() : []
  const index = existsSync(path.join(layout, 'index.json')) ? readFileSync(path.join(layout, 'index.json'), 'utf8') : ''
  return JSON.stringify({blobs, index})
}

describe('commit (real debugfs, real ext4, real OCI clients)', () => {
  let image: FidelityImage
  let state: string
  let result: CommitResult
  let records: Map<string, TarRecord>

  before(async function () {
    requireTools(this, 'debugfs', 'mke2fs', 'python3', 'mkfifo', 'skopeo', 'umoci', 'oci-image-tool')
    image = buildFidelityImage()
    state = makeStateDir()
    addWorkspace(state, 'demo', {
      manifest: {
        image_defaults: {
          Cmd: ['serve'], Env: ['PATH=/usr/bin:/bin'], User: '1000:1000', WorkingDir: '/srv',
        }, name: 'demo',
      },
      rootfs: image.file,
      runtime: runtimeRecord('stopped'),
    })
    result = await commitWorkspace({
      arch: 'arm64', created: CREATED, reference: 'local/demo:v1', stateDir: state, workspace: 'demo',
    })
    records = layerRecords(result)
  })

  const get = (p: string): TarRecord => {
    const record = records.get(p)
    if (!record) throw new Error(`no tar member ${JSON.stringify(p)}`)
    return record
  }

  it('writes an image that skopeo, umoci (rootless) and oci-image-tool accept', () => {
    validateWithClients(result.layout_path, 'local/demo:v1')
  })

  it('reports what it wrote', () => {
    expect(result).to.include({layout_path: layoutPath(state), pushed: false, reference: 'local/demo:v1'})
    expect(result.digest).to.match(/^sha256:[0-9a-f]{64}$/)
    expect(result.size_bytes).to.equal(readFileSync(blobFile(result.layout_path, result.layer_digest)).length)
    expect(result.stats.skipped).to.deep.equal({
      excluded: 0, lostFound: 1, sockets: 1, whiteoutNames: 1, xattrs: 1,
    })
  })

  it('tags the manifest in index.json with the raw reference', () => {
    const index = readJson<ImageIndex>(path.join(result.layout_path, 'index.json'))
    const tagged = index.manifests.find(d => d.annotations?.['org.opencontainers.image.ref.name'] === 'local/demo:v1')
    expect(tagged).to.include({digest: result.digest, mediaType: 'application/vnd.oci.image.manifest.v1+json'})
  })

  it('writes a gzip layer whose uncompressed sha256 is the diff_id in the config', () => {
    const manifest = readJson<ImageManifest>(blobFile(result.layout_path, result.digest))
    expect(manifest.layers).to.have.length(1)
    expect(manifest.layers[0].mediaType).to.equal('application/vnd.oci.image.layer.v1.tar+gzip')
    const tar = gunzipSync(readFileSync(blobFile(result.layout_path, manifest.layers[0].digest)))
    const config = readJson<ImageConfig>(blobFile(result.layout_path, manifest.config.digest))
    expect(config.rootfs.diff_ids).to.deep.equal([`sha256:${sha(tar)}`])
    expect(config).to.include({architecture: 'arm64', created: '2026-01-01T00:00:00Z', os: 'linux'})
    expect(config.config).to.deep.equal({
      Cmd: ['serve'], Env: ['PATH=/usr/bin:/bin'], User: '1000:1000', WorkingDir: '/srv',
    })
    expect(config.history[0]).to.include({created: '2026-01-01T00:00:00Z'})
  })

  it('keeps content, owners and modes (setuid, setgid, sticky, 000)', () => {
    expect(get('etc/motd')).to.include({gid: 0, sha256: sha('demo\n'), uid: 0})
    expect(get('data/random')).to.include({gid: 200_000, sha256: image.random.sha256, uid: 100_000})
    expect(get('data/sparse')).to.include({sha256: image.sparse.sha256, size: image.sparse.size})
    expect(get('data/empty')).to.include({gid: 3_000_001, size: 0, uid: 3_000_000})
    expect(get('home/user/')).to.include({
      gid: 1000, mode: 0o700, type: 'directory', uid: 1000,
    })
    expect(get('bin/su').mode).to.equal(0o4755)
    expect(get('bin/wall')).to.include({gid: 5, mode: 0o2755})
    expect(get('bin/both').mode).to.equal(0o6755)
    expect(get('tmp/').mode).to.equal(0o1777)
    expect(get('var/mail/').mode).to.equal(0o2775)
    expect(get('secret').mode).to.equal(0)
  })

  it('writes no user or group names, so the layer is the same on every host', () => {
    for (const record of records.values()) expect([record.uname, record.gname]).to.deep.equal(['', ''])
  })

  it('keeps real mtimes: nanoseconds, before 1970, after 2038', () => {
    expect(get('etc/motd').mtime).to.equal('1700000000.123456789')
    expect(get('data/old').mtime).to.equal('-1')
    expect(get('data/future').mtime).to.equal('4102444800')
  })

  it('writes hard links as tar hard links', () => {
    expect(get('usr/bin/perl')).to.include({sha256: sha('perl!'), type: 'file'})
    expect(get('usr/bin/perl5.36')).to.include({link: hex('usr/bin/perl'), type: 'hardlink'})
  })

  it('keeps symlinks raw', () => {
    expect(get('links/escape')).to.include({link: hex('../../../../etc/passwd'), type: 'symlink'})
    expect(get('links/long')).to.include({link: hex('x'.repeat(200)), type: 'symlink'})
  })

  it('keeps character and block devices and fifos; leaves out the socket, lost+found and .wh.* names', () => {
    expect(get('dev/null')).to.include({
      devmajor: 1, devminor: 3, mode: 0o666, type: 'char',
    })
    expect(get('dev/sda')).to.include({devmajor: 8, devminor: 0, type: 'block'})
    expect(get('dev/wide')).to.include({devmajor: 4095, devminor: 1_048_575})
    expect(get('run/fifo').type).to.equal('fifo')
    expect(records.has('run/sock')).to.equal(false)
    expect([...records.keys()].some(p => p.startsWith('lost+found'))).to.equal(false)
    expect(records.has('.wh.lookalike')).to.equal(false)
  })

  it('keeps xattrs as SCHILY.xattr records: capability, ACL, binary and large values, on directories', () => {
    expect(get('bin/ping').xattrs).to.deep.equal({'security.capability': CAPABILITY.toString('hex')})
    expect(get('data/').xattrs).to.deep.equal({'system.posix_acl_access': ACL.toString('hex')})
    expect(get('etc/motd').xattrs).to.deep.equal({'user.big': BIG_XATTR.toString('hex'), 'user.comment': hex('hello')})
    expect(get('tmp/').xattrs).to.deep.equal({'user.dirattr': hex('yes')})
    expect(get('var/').xattrs).to.deep.equal({})
  })

  it('keeps long, control-character and non-UTF-8 names (pax path records)', () => {
    for (const name of Object.values(NAMES)) expect(get(`names/${name.toString('latin1')}`).sha256).to.equal(sha(name))
    const deep = get(`${DEEP.join('/')}/leaf`)
    expect(deep.pax_keys).to.include('path')
    expect(get(`names/${NAMES.nonUtf8.toString('latin1')}`).path).to.equal(hex(Buffer.from('names/')) + NAMES.nonUtf8.toString('hex'))
  })

  it('never lets a member escape the root', () => {
    for (const name of records.keys()) {
      expect(name.startsWith('/')).to.equal(false)
      expect(name.split('/')).not.to.include('..')
    }
  })

  it('gives the same digests for the same disk and created time, and another ref shares every blob', async () => {
    const blobs = readdirSync(path.join(result.layout_path, 'blobs', 'sha256')).length
    const again = await commitWorkspace({
      arch: 'arm64', created: CREATED, reference: 'local/other:v2', stateDir: state, workspace: 'demo',
    })
    expect(again.digest).to.equal(result.digest)
    expect(again.layer_digest).to.equal(result.layer_digest)
    expect(readdirSync(path.join(result.layout_path, 'blobs', 'sha256'))).to.have.length(blobs)
    const refs = readJson<ImageIndex>(path.join(result.layout_path, 'index.json')).manifests.map(d => d.annotations?.['org.opencontainers.image.ref.name'])
    expect(refs).to.include.members(['local/demo:v1', 'local/other:v2'])
    validateWithClients(result.layout_path, 'local/other:v2')
  })

  /** The fidelity image committed with `compression` into a layout of its own (the shared one keeps only gzip). */
  async function commitInOwnLayout(compression: Compression, reference: string): Promise<{committed: CommitResult; manifest: ImageManifest; stateDir: string}> {
    const stateDir = makeStateDir()
    addWorkspace(stateDir, 'demo', {rootfs: image.file})
    const committed = await commitWorkspace({
      arch: 'arm64', compression, created: CREATED, reference, stateDir, workspace: 'demo',
    })
    return {committed, manifest: readJson<ImageManifest>(blobFile(committed.layout_path, committed.digest)), stateDir}
  }

  it('writes tar+zstd layers with --compression zstd: skopeo verifies them, the tar is the same', async function () {
    requireTools(this, 'zstd')
    // A layout of its own, so that the shared one keeps only images every validator reads.
    const {committed: zstd, manifest, stateDir: zstdState} = await commitInOwnLayout('zstd', 'local/demo:zstd')
    expect(manifest.layers[0].mediaType).to.equal('application/vnd.oci.image.layer.v1.tar+zstd')
    // The same tar as the gzip image: only the compression differs.
    expect(zstd.diff_id).to.equal(result.diff_id)
    const tar = execFileSync('zstd', ['-d', '-c', blobFile(zstd.layout_path, zstd.layer_digest)], {maxBuffer: 1024 * 1024 * 1024})
    expect(`sha256:${sha(tar)}`).to.equal(zstd.diff_id)
    // umoci 0.4.7 and oci-image-tool 1.0.0-rc predate zstd layers; skopeo reads and digest-checks them.
    execFileSync('skopeo', ['copy', '--quiet', `oci:${zstd.layout_path}:local/demo:zstd`, `dir:${path.join(tempDir(), 'out')}`])
    const again = await commitWorkspace({
      arch: 'arm64', compression: 'zstd', created: CREATED, reference: 'local/demo:zstd2', stateDir: zstdState, workspace: 'demo',
    })
    expect(again.digest).to.equal(zstd.digest)
  })

  it('writes a plain tar layer with --compression none: its digest is the diff_id, the tar the same', async () => {
    const {committed: plain, manifest} = await commitInOwnLayout('none', 'local/demo:tar')
    expect(manifest.layers[0].mediaType).to.equal('application/vnd.oci.image.layer.v1.tar')
    expect(plain.diff_id).to.equal(result.diff_id)
    expect(plain.layer_digest).to.equal(result.diff_id)
    expect(plain.tar_bytes).to.equal(plain.size_bytes)
    expect(`sha256:${sha(readFileSync(blobFile(plain.layout_path, plain.layer_digest)))}`).to.equal(plain.diff_id)
    expect(readJson<ImageConfig>(blobFile(plain.layout_path, manifest.config.digest)).rootfs.diff_ids).to.deep.equal([plain.diff_id])
    validateLayout(plain.layout_path)
  })

  it('applies --exclude, --change, --label, --author and --message like docker commit', async () => {
    const custom = await commitWorkspace({
      arch: 'arm64',
      author: 'Jane Doe <jane@example.com>',
      changes: ['ENV PATH=/opt/bin:/usr/bin:/bin LANG=C.UTF-8', 'ENTRYPOINT ["/init"]', 'EXPOSE 8080'],
      created: CREATED,
      exclude: ['links', 'usr/bin/perl', '**/sparse'],
      labels: ['team=infra'],
      message: 'add tools',
      reference: 'local/demo:custom',
      stateDir: state,
      workspace: 'demo',
    })
    const kept = layerRecords(custom)
    expect([...kept.keys()].filter(p => p.startsWith('links') || p.endsWith('sparse') || p === 'usr/bin/perl')).to.deep.equal([])
    // perl's other name now carries the content, not a link to a member that is not there.
    expect(kept.get('usr/bin/perl5.36')).to.include({sha256: get('usr/bin/perl').sha256, type: 'file'})
    expect(custom.stats.skipped.excluded).to.equal(3)
    const manifest = readJson<ImageManifest>(blobFile(custom.layout_path, custom.digest))
    const config = readJson<ImageConfig>(blobFile(custom.layout_path, manifest.config.digest))
    expect(config.author).to.equal('Jane Doe <jane@example.com>')
    expect(config.history).to.deep.equal([{
      author: 'Jane Doe <jane@example.com>', comment: 'add tools', created: '2026-01-01T00:00:00Z', created_by: 'microagent commit demo',
    }])
    expect(config.config).to.deep.equal({
      Entrypoint: ['/init'],
      Env: ['PATH=/opt/bin:/usr/bin:/bin', 'LANG=C.UTF-8'],
      ExposedPorts: {'8080/tcp': {}},
      Labels: {team: 'infra'},
      User: '1000:1000',
      WorkingDir: '/srv',
    })
    validateWithClients(custom.layout_path, 'local/demo:custom')
  })

  it('reports progress as the layer grows, ending with the totals', async () => {
    const events: CommitProgress[] = []
    const again = await commitWorkspace({
      arch: 'arm64', created: CREATED, onProgress: p => events.push(p), reference: 'local/demo:progress', stateDir: state, workspace: 'demo',
    })
    expect(events.length).to.be.greaterThan(1)
    expect(events.at(-1)).to.deep.equal({
      content_bytes: again.stats.contentBytes, done: true, entries: again.stats.entries, layer_bytes: again.size_bytes, tar_bytes: again.tar_bytes,
    })
    expect(events.slice(0, -1).every(e => !e.done)).to.equal(true)
    const layerBytes = events.map(e => e.layer_bytes)
    expect(layerBytes).to.deep.equal([...layerBytes].sort((a, b) => a - b))
  })

  it('refuses a bad --change or --exclude before reading anything', async () => {
    const before = layoutSnapshot(result.layout_path)
    for (const options of [{changes: ['RUN make']}, {exclude: ['../etc']}, {labels: ['x']}]) {
      const error = await rejection(commitWorkspace({
        ...options, created: CREATED, reference: 'local/demo:bad', stateDir: state, workspace: 'demo',
      }))
      expect(error.exitCode, JSON.stringify(options)).to.equal(2)
    }

    expect(layoutSnapshot(result.layout_path)).to.equal(before)
  })

  it('moves a tag committed again with another created time', async () => {
    const moved = await commitWorkspace({
      arch: 'arm64', created: new Date('2026-06-01T00:00:00Z'), reference: 'local/other:v2', stateDir: state, workspace: 'demo',
    })
    expect(moved.digest).not.to.equal(result.digest)
    expect(moved.layer_digest).to.equal(result.layer_digest)
    const index = readJson<ImageIndex>(path.join(result.layout_path, 'index.json'))
    const tags = index.manifests.filter(d => d.annotations?.['org.opencontainers.image.ref.name'] === 'local/other:v2')
    expect(tags.map(d => d.digest)).to.deep.equal([moved.digest])
  })

  it('replays a dirty journal on a private copy: the image has the journaled data, the disk is untouched', async () => {
    const {file, journaled} = dirtyImage()
    const dirtyState = makeStateDir()
    const rootfs = addWorkspace(dirtyState, 'dirty', {event: {state: 'halted'}, rootfs: file})
    const before = sha(readFileSync(rootfs))
    const committed = await commitWorkspace({
      created: CREATED, reference: 'local/dirty:1', stateDir: dirtyState, workspace: 'dirty',
    })
    expect(committed.journal_replayed).to.equal(true)
    expect(layerRecords(committed).get('f')?.sha256).to.equal(sha(journaled))
    expect(sha(readFileSync(rootfs))).to.equal(before)
    expect(readdirSync(path.join(committed.layout_path, 'ingest'))).to.deep.equal([])
    validateWithClients(committed.layout_path, 'local/dirty:1')
  })

  it('leaves the workspace disk byte for byte as it was', async () => {
    const rootfs = path.join(state, 'workspaces', 'demo', 'rootfs.ext4')
    const before = sha(readFileSync(rootfs))
    await commitWorkspace({
      created: CREATED, reference: 'local/demo:again', stateDir: state, workspace: 'demo',
    })
    expect(sha(readFileSync(rootfs))).to.equal(before)
  })

  describe('failures lose nothing', () => {
    it('refuses a running workspace before touching the layout', async () => {
      const fresh = makeStateDir()
      addWorkspace(fresh, 'live', {runtime: runtimeRecord('running')})
      const error = await rejection(commitWorkspace({
        created: CREATED, reference: 'local/live:1', stateDir: fresh, workspace: 'live',
      }))
      expect(error.exitCode).to.equal(4)
      expect(existsSync(layoutPath(fresh))).to.equal(false)
    })

    it('refuses a bad name or reference before reading anything', async () => {
      const fresh = makeStateDir()
      expect((await rejection(commitWorkspace({
        created: CREATED, reference: 'local/x:1', stateDir: fresh, workspace: '../../etc',
      }))).exitCode).to.equal(2)
      expect((await rejection(commitWorkspace({
        created: CREATED, reference: 'Bad Ref', stateDir: fresh, workspace: 'ghost',
      }))).exitCode).to.equal(2)
      expect(readdirSync(fresh)).to.deep.equal([])
    })

    it('keeps the layout as it was when extraction fails on a broken disk', async () => {
      const layout = result.layout_path
      const snapshot = layoutSnapshot(layout)
      const broken = buildExt4(path.join(tempDir(), 'broken.ext4'), {tree: root => writeFileSync(path.join(root, 'f'), 'x'.repeat(10_000))})
      runDebugfsWrite(broken, ['sif /f block[0] 0'])
      addWorkspace(state, 'broken', {rootfs: broken})
      const error = await rejection(commitWorkspace({
        created: CREATED, reference: 'local/broken:1', stateDir: state, workspace: 'broken',
      }))
      expect(error.exitCode).to.equal(5)
      expect(error.message).to.match(/debugfs failed on "cat <\d+>"/)
      expect(layoutSnapshot(layout)).to.equal(snapshot)
      expect(readdirSync(path.join(layout, 'ingest'))).to.deep.equal([])
      validateWithClients(layout, 'local/demo:v1')
    })

    it('fails with exit 7 and changes nothing when the disk fills up while the layer is written', async function () {
      requireRoot(this, 'mount a 1 MiB tmpfs to fill up')
      requireTools(this, 'mount', 'umount')
      const fresh = makeStateDir()
      const images = path.join(fresh, 'images')
      mkdirSync(images)
      execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', images])
      try {
        addWorkspace(fresh, 'small')
        await commitWorkspace({
          created: CREATED, reference: 'local/small:1', stateDir: fresh, workspace: 'small',
        })
        const layout = layoutPath(fresh)
        const snapshot = layoutSnapshot(layout)
        // 3 MiB of random bytes cannot compress into what is left of 1 MiB.
        addWorkspace(fresh, 'big', {spec: {tree: root => writeFileSync(path.join(root, 'noise'), randomBytes(3 * 1024 * 1024))}})
        const error = await rejection(commitWorkspace({
          created: CREATED, reference: 'local/big:1', stateDir: fresh, workspace: 'big',
        }))
        expect(error.exitCode).to.equal(7)
        expect(error.message).to.match(/^no space left on the device holding .*images\/oci: ENOSPC/)
        expect(error.remediation).to.match(/Free disk space/)
        expect(layoutSnapshot(layout)).to.equal(snapshot)
        expect(readdirSync(path.join(layout, 'ingest'))).to.deep.equal([])
        validateLayout(layout)
      } finally {
        execFileSync('umount', [images])
      }
    })

    it('says clearly when the rootfs is not ext4', async () => {
      const fresh = makeStateDir()
      addWorkspace(fresh, 'junk', {rootfs: null})
      writeFileSync(path.join(fresh, 'workspaces', 'junk', 'rootfs.ext4'), Buffer.alloc(65_536, 1))
      const error = await rejection(commitWorkspace({
        created: CREATED, reference: 'local/junk:1', stateDir: fresh, workspace: 'junk',
      }))
      expect(error.message).to.match(/not an ext2\/3\/4 filesystem/)
      expect(error.exitCode).to.equal(5)
    })
  })

  it('defaults the architecture to the one microagent recorded for the guest', async () => {
    const fresh = makeStateDir()
    addWorkspace(fresh, 'guest', {manifest: {name: 'guest'}})
    mkdirSync(path.join(fresh, 'workspaces', 'guest', 'artifacts'))
    writeFileSync(path.join(fresh, 'workspaces', 'guest', 'artifacts', 'microagent-guestinit-aarch64'), '')
    const committed = await commitWorkspace({
      created: CREATED, reference: 'local/guest:1', stateDir: fresh, workspace: 'guest',
    })
    expect(committed.architecture).to.equal('arm64')
    expect(execFileSync('skopeo', ['inspect', '--override-arch', 'arm64', `oci:${committed.layout_path}:local/guest:1`], {encoding: 'utf8'})).to.contain('"Architecture": "arm64"')
  })
})
