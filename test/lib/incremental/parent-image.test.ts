import {expect} from 'chai'
import {execFileSync, spawn} from 'node:child_process'
import {createHash} from 'node:crypto'
import {
  existsSync, mkdirSync, readdirSync, readFileSync, renameSync, statSync, unlinkSync, writeFileSync,
} from 'node:fs'
import path from 'node:path'
import {gzipSync} from 'node:zlib'

import type {ImageConfig, ImageManifest} from '../../../src/lib/oci/image.js'

import {type CommitOptions, type CommitResult, commitWorkspace} from '../../../src/lib/commit.js'
import {defaultsFromConfig, MAX_LAYERS} from '../../../src/lib/incremental/parent-image.js'
import {openTreeRecord} from '../../../src/lib/incremental/tree-record-reader.js'
import {OLD_TREE_RECORD, TREE_RECORD} from '../../../src/lib/incremental/tree-record.js'
import {encodeHeader, END_OF_ARCHIVE, TYPEFLAG} from '../../../src/lib/layer/tar.js'
import {removeImage} from '../../../src/lib/oci/catalog.js'
import {canonicalJson, MEDIA_TYPES} from '../../../src/lib/oci/image.js'
import {layoutPath, OciLayout} from '../../../src/lib/oci/layout.js'
import {ImageRecords} from '../../../src/lib/oci/records.js'
import {pushImage} from '../../../src/lib/registry/push.js'
import {loadIs} from '../../../src/lib/support/is.js'
import {rejection} from '../../helpers/assert.js'
import {debugfsRead, runDebugfsWrite, tempDir} from '../../helpers/ext4.js'
import {
  blobFile, dumpTar, readJson, validateWithClients,
} from '../../helpers/oci.js'
import {pullDigest, startRegistry} from '../../helpers/registry.js'
import {addWorkspace, makeStateDir, runtimeRecord} from '../../helpers/state.js'
import {requireTools} from '../../helpers/tools.js'

const CREATED = new Date('2026-01-01T00:00:00Z')

function snapshot(layout: string): string {
  const blobs = readdirSync(path.join(layout, 'blobs', 'sha256')).sort()
  const records = existsSync(path.join(layout, 'records', 'sha256')) ? readdirSync(path.join(layout, 'records', 'sha256')).sort() : []
  return JSON.stringify({blobs, index: readFileSync(path.join(layout, 'index.json'), 'utf8'), records})
}

/** A tar member with the given raw name (and a typeflag), for crafted parent layers. */
function member(name: Buffer | string, typeflag: (typeof TYPEFLAG)[keyof typeof TYPEFLAG] = TYPEFLAG.file): Buffer {
  return encodeHeader({
    gid: 0, mode: 0o644, mtime: 0, path: Buffer.from(name), size: 0, typeflag, uid: 0,
  })
}

/** Tags an image made of the given uncompressed layers, as another tool would have written it. */
async function tagCrafted(layout: OciLayout, ref: string, layers: Buffer[], {architecture = 'amd64', mediaType = 'application/vnd.oci.image.layer.v1.tar'} = {}): Promise<void> {
  const descriptors = []
  const diffIds = []
  for (const layer of layers) {
    const blob = await layout.writeBlob(layer)
    descriptors.push({...blob, mediaType})
    diffIds.push(blob.digest)
  }

  const config = await layout.writeBlob(canonicalJson({
    architecture, config: {Cmd: ['sh'], Env: ['A=1']}, created: '2025-01-01T00:00:00Z', os: 'linux', rootfs: {diff_ids: diffIds, type: 'layers'},
  }))
  const manifest = await layout.writeBlob(canonicalJson({
    config: {...config, mediaType: MEDIA_TYPES.config}, layers: descriptors, mediaType: MEDIA_TYPES.manifest, schemaVersion: 2,
  }))
  await layout.tag(ref, {...manifest, mediaType: MEDIA_TYPES.manifest})
}

/** Reads a tree record through to its sha256: throws unless it is whole. */
async function wholeRecord(file: string): Promise<void> {
  for await (const node of (await openTreeRecord(file)).nodes()) expect(node.path).to.be.instanceOf(Buffer)
}

async function refusal(layout: OciLayout, attempt: () => Promise<unknown>, pattern: RegExp, exit: number): Promise<void> {
  const before = snapshot(layout.root)
  const error = await rejection(attempt())
  expect(error.message).to.match(pattern)
  expect(error.exitCode).to.equal(exit)
  expect(error.remediation).to.be.a('string').and.not.equal('')
  expect(snapshot(layout.root)).to.equal(before)
}

describe('commit --parent (real debugfs, real ext4, real clients)', () => {
  let state: string
  let rootfs: string
  let layout: OciLayout
  let base: CommitResult
  let child: CommitResult
  const commit = (reference: string, extra: Partial<CommitOptions> = {}): Promise<CommitResult> => commitWorkspace({
    arch: 'amd64', created: CREATED, reference, stateDir: state, workspace: 'demo', ...extra,
  })

  /** Commits another workspace of the same state dir, optionally on a parent. */
  const commitIn = (workspace: string) => (reference: string, parent?: string): Promise<CommitResult> => commit(reference, {parent, workspace})

  const refuses = (parent: string, pattern: RegExp, exit: number, extra: Partial<CommitOptions> = {}): Promise<void> =>
    refusal(layout, () => commit('local/demo:bad', {parent, ...extra}), pattern, exit)

  before(async function () {
    requireTools(this, 'debugfs', 'mke2fs', 'python3', 'skopeo', 'umoci', 'oci-image-tool', 'tune2fs')
    state = makeStateDir()
    rootfs = addWorkspace(state, 'demo', {
      manifest: {image_defaults: {Cmd: ['serve'], Env: ['A=1']}, name: 'demo'},
      runtime: runtimeRecord('stopped'),
      spec: {
        sizeMiB: 32,
        tree(root) {
          for (let i = 0; i < 50; i++) writeFileSync(path.join(root, `f${i}`), `file ${i}\n`.repeat(1000))
          mkdirSync(path.join(root, 'etc'))
          writeFileSync(path.join(root, 'etc', 'hostname'), 'base\n')
        },
      },
    })
    layout = new OciLayout(layoutPath(state))
    base = await commit('local/demo:base', {changes: ['ENV B=2'], message: 'base'})
    // etc/hostname is microagent's own (runtime-files.ts): a changed one stays as the parent has it.
    runDebugfsWrite(rootfs, ['rm /f1', 'write /etc/hosts /new-file', 'sif /f2 mode 0100600', 'rm /etc/hostname', 'write /etc/os-release /etc/hostname'])
    child = await commit('local/demo:child', {
      author: 'Jane', changes: ['CMD ["run"]'], labels: ['team=infra'], message: 'second', parent: 'local/demo:base',
    })
  })

  it('takes from a parent\'s config (JSON from anywhere) only the runtime fields of the right shape', async () => {
    const is = await loadIs()
    const odd = {
      Cmd: 'run', Entrypoint: ['/bin/sh', 2], Env: ['A=1'], ExposedPorts: ['80/tcp'], Labels: {a: 'b', n: 1}, StopSignal: '', User: 7, Volumes: {'/data': {}}, WorkingDir: '/w',
    }
    expect(defaultsFromConfig({config: odd}, is)).to.deep.equal({Env: ['A=1'], Volumes: ['/data'], WorkingDir: '/w'})
    for (const config of [{}, {config: null}, {config: []}, {config: 'x'}]) expect(defaultsFromConfig(config, is), JSON.stringify(config)).to.deep.equal({})
  })

  it('stacks one diff layer on the parent\'s layers, with its config, history and runtime config', () => {
    expect(child).to.include({layers: 2})
    expect(child.parent).to.deep.include({
      digest: base.digest, layers: 1, reference: 'local/demo:base', tree: 'record',
    })
    expect(child.record_bytes).to.be.greaterThan(0)
    const manifest = readJson<ImageManifest>(blobFile(child.layout_path, child.digest))
    const parentManifest = readJson<ImageManifest>(blobFile(base.layout_path, base.digest))
    expect(manifest.layers[0]).to.deep.equal(parentManifest.layers[0])
    const config = readJson<ImageConfig>(blobFile(child.layout_path, manifest.config.digest))
    expect(config.rootfs.diff_ids).to.deep.equal([base.diff_id, child.diff_id])
    expect(config.history.map(h => h.comment)).to.deep.equal(['base', 'second'])
    expect(config.author).to.equal('Jane')
    expect(config.config).to.deep.equal({Cmd: ['run'], Env: ['A=1', 'B=2'], Labels: {team: 'infra'}})
    const members = dumpTar(blobFile(child.layout_path, child.layer_digest)).map(r => Buffer.from(r.path, 'hex').toString())
    expect(members.sort()).to.deep.equal(['.wh.f1', 'f2', 'new-file'])
    validateWithClients(child.layout_path, 'local/demo:child')
  })

  it('whites out what --exclude leaves out now, as a full commit would not have it', async () => {
    const result = await commit('local/demo:excluded', {exclude: ['f3', 'f4*'], parent: 'local/demo:child'})
    const members = dumpTar(blobFile(result.layout_path, result.layer_digest)).map(r => Buffer.from(r.path, 'hex').toString())
    expect(members.sort()).to.deep.equal(['.wh.f3', '.wh.f4', '.wh.f40', '.wh.f41', '.wh.f42', '.wh.f43', '.wh.f44', '.wh.f45', '.wh.f46', '.wh.f47', '.wh.f48', '.wh.f49'])
    expect(result.stats.whiteouts).to.equal(12)
  })

  it('gives the same digests for the same disk, parent and --created', async () => {
    const again = await commit('local/demo:again', {
      author: 'Jane', changes: ['CMD ["run"]'], labels: ['team=infra'], message: 'second', parent: 'local/demo:base',
    })
    expect(again.digest).to.equal(child.digest)
    expect(again.layer_digest).to.equal(child.layer_digest)
  })

  it('reads the layers instead of a damaged tree record, and compares content where the record is of another disk, with the same result', async () => {
    const records = new ImageRecords(layout.root)
    const recordFile = records.path(base.digest, TREE_RECORD)
    const kept = readFileSync(recordFile)
    const damaged = Buffer.from(kept)
    damaged[damaged.length - 10] ^= 0xFF
    writeFileSync(recordFile, damaged)
    const fromLayers = await commit('local/demo:x', {
      author: 'Jane', changes: ['CMD ["run"]'], labels: ['team=infra'], message: 'second', parent: 'local/demo:base',
    })
    expect(fromLayers.parent).to.include({tree: 'layers'})
    expect(fromLayers.parent?.tree_note).to.match(/damaged/)
    expect(fromLayers.digest).to.equal(child.digest)
    // Damage among the nodes is found only as they stream, during the diff: the layer written so far is
    // dropped and the diff made again from the layers.
    const middle = Buffer.from(kept)
    middle[Math.floor(middle.length / 2)] ^= 0xFF
    writeFileSync(recordFile, middle)
    await openTreeRecord(recordFile)
    const again = await commit('local/demo:x', {
      author: 'Jane', changes: ['CMD ["run"]'], labels: ['team=infra'], message: 'second', parent: 'local/demo:base',
    })
    expect(again.parent).to.include({tree: 'layers'})
    expect(again.parent?.tree_note).to.match(/damaged/)
    expect(again.digest).to.equal(child.digest)
    // A record of the earlier format (gzipped NDJSON) is not read either.
    renameSync(recordFile, records.path(base.digest, OLD_TREE_RECORD))
    const fromOld = await commit('local/demo:x', {
      author: 'Jane', changes: ['CMD ["run"]'], labels: ['team=infra'], message: 'second', parent: 'local/demo:base',
    })
    expect(fromOld.parent).to.include({tree: 'layers', tree_note: 'the tree record is of an earlier format'})
    expect(fromOld.digest).to.equal(child.digest)
    unlinkSync(records.path(base.digest, OLD_TREE_RECORD))
    writeFileSync(recordFile, kept)

    execFileSync('tune2fs', ['-U', 'random', rootfs], {stdio: 'ignore'})
    const otherDisk = await commit('local/demo:y', {
      author: 'Jane', changes: ['CMD ["run"]'], labels: ['team=infra'], message: 'second', parent: 'local/demo:base',
    })
    expect(otherDisk.parent).to.include({tree: 'record'})
    expect(otherDisk.digest).to.equal(child.digest)
  })

  it('takes a file whose identity is unchanged (same UUID, inode, generation, old ctime) as unchanged without reading it', async () => {
    const disk = addWorkspace(state, 'ids', {
      runtime: runtimeRecord('stopped'),
      spec: {
        tree(root) {
          writeFileSync(path.join(root, 'old'), 'original content\n')
          writeFileSync(path.join(root, 'new'), 'x\n')
        },
      },
    })
    // An old ctime, well before the newest change on the disk; then its bytes edited behind the filesystem's back,
    // which no guest can do (a write through the kernel sets ctime).
    runDebugfsWrite(disk, ['sif /old ctime 0x10000000'])
    const ids = commitIn('ids')
    await ids('local/ids:1')
    runDebugfsWrite(disk, ['zap_block -f /old -p 0x41 -o 0 -l 4 0'])
    const trusted = await ids('local/ids:2', 'local/ids:1')
    expect(dumpTar(blobFile(trusted.layout_path, trusted.layer_digest))).to.deep.equal([])
    // On another filesystem (a new UUID) the identity means nothing: the content is compared, and the edit shows.
    execFileSync('tune2fs', ['-U', 'random', disk], {stdio: 'ignore'})
    const compared = await ids('local/ids:3', 'local/ids:1')
    expect(dumpTar(blobFile(compared.layout_path, compared.layer_digest)).map(r => Buffer.from(r.path, 'hex').toString())).to.deep.equal(['old'])
    // Nor is any directory left unwalked on the strength of such identities.
    expect(compared.parent?.unwalked).to.deep.equal({directories: 0, entries: 0})
  })

  it('archives a hard-link group whose earlier name is read again after later entries: an inline-data file (a debugfs cat) that gained a name', async () => {
    const disk = addWorkspace(state, 'inline', {
      runtime: runtimeRecord('stopped'),
      spec: {
        mke2fsOptions: ['-O', 'inline_data', '-I', '256'],
        tree(root) {
          mkdirSync(path.join(root, 'd'))
          writeFileSync(path.join(root, 'd', 'a'), 'inline content\n')
          writeFileSync(path.join(root, 'd', 'z'), 'after the links\n')
        },
      },
    })
    // Inline data is not in any block map: its content can only come through debugfs `cat`.
    expect(debugfsRead(disk, 'stat /d/a')).to.match(/Flags: 0x10000000/)
    const inline = commitIn('inline')
    await inline('local/inline:1')
    // `a` is unchanged when the walk reaches it; only `b`, its new second name, shows that the group changed, so `a`
    // is archived (and its content read) after the walk has moved past it.
    runDebugfsWrite(disk, ['ln /d/a /d/b', 'sif /d/a links_count 2'])
    const stacked = await inline('local/inline:2', 'local/inline:1')
    const records = dumpTar(blobFile(stacked.layout_path, stacked.layer_digest))
    expect(records.map(r => [Buffer.from(r.path, 'hex').toString(), r.type, r.sha256 ?? Buffer.from(r.link, 'hex').toString()])).to.deep.equal([
      ['d/a', 'file', createHash('sha256').update('inline content\n').digest('hex')],
      ['d/b', 'hardlink', 'd/a'],
    ])
  })

  it('trusts identities on a disk built in one go (every ctime old and within a second of the others): the guard counts from when the disk was read', async () => {
    const disk = addWorkspace(state, 'built', {
      runtime: runtimeRecord('stopped'),
      spec: {
        tree(root) {
          mkdirSync(path.join(root, 'd'))
          writeFileSync(path.join(root, 'd', 'a'), 'original content\n')
          writeFileSync(path.join(root, 'b'), 'more\n')
        },
      },
    })
    // Every inode the walk sees, the root and lost+found included, changed in the same second long ago.
    runDebugfsWrite(disk, ['/', '/lost+found', '/d', '/d/a', '/b'].map(p => `sif ${p} ctime 0x10000000`))
    const built = commitIn('built')
    await built('local/built:1')
    // Bytes edited behind the filesystem's back (no guest can: a write through the kernel sets ctime) go
    // unseen only if the identities were trusted without reading the content.
    runDebugfsWrite(disk, ['zap_block -f /d/a -p 0x41 -o 0 -l 4 0'])
    const trusted = await built('local/built:2', 'local/built:1')
    expect(dumpTar(blobFile(trusted.layout_path, trusted.layer_digest))).to.deep.equal([])
  })

  for (const compression of ['zstd', 'none'] as const) {
    it(`reads a ${compression} parent's layers when it has no tree record, to the same diff`, async function () {
      requireTools(this, 'zstd')
      const parent = await commit(`local/demo:${compression}`, {compression, created: new Date('2025-06-01T00:00:00Z')})
      runDebugfsWrite(rootfs, ['write /etc/os-release /added-later'])
      const withRecord = await commit(`local/demo:${compression}-child`, {parent: `local/demo:${compression}`})
      await new ImageRecords(layout.root).remove(parent.digest)
      const fromLayers = await commit(`local/demo:${compression}-child2`, {parent: `local/demo:${compression}`})
      runDebugfsWrite(rootfs, ['rm /added-later'])
      expect(fromLayers.parent).to.include({tree: 'layers'})
      expect(fromLayers.diff_id).to.equal(withRecord.diff_id)
      expect(fromLayers.digest).to.equal(withRecord.digest)
    })
  }

  it('pushes only the new layer and the config when the registry holds the parent', async function () {
    requireTools(this, 'docker-registry')
    const registry = await startRegistry('none')
    try {
      const env = {HOME: tempDir()}
      await pushImage({
        destination: `${registry.host}/team/demo:base`, env, layoutPath: layout.root, source: 'local/demo:base',
      })
      const before = registry.requests().length
      const pushed = await pushImage({
        destination: `${registry.host}/team/demo:child`, env, layoutPath: layout.root, source: 'local/demo:child',
      })
      const manifest = readJson<ImageManifest>(blobFile(child.layout_path, child.digest))
      expect(pushed.blobs).to.deep.equal({existing: 1, mounted: 0, uploaded: 2})
      expect(pushed.bytes_uploaded).to.equal(child.size_bytes + manifest.config.size)
      const uploads = registry.requests().slice(before).filter(r => r.method === 'PUT' && r.path.includes('/blobs/uploads/'))
      expect(uploads).to.have.length(2)
      expect(await pullDigest(registry.host, 'team/demo:child')).to.equal(child.digest)
    } finally {
      await registry.stop()
    }
  })

  it('removes the tree record with its image', async () => {
    const records = new ImageRecords(layout.root)
    await commit('local/demo:gone', {parent: 'local/demo:base'})
    const {digest} = await layout.resolve('local/demo:gone')
    expect(await records.size(digest)).to.be.greaterThan(0)
    await removeImage(state, 'local/demo:gone')
    expect(existsSync(records.dir(digest))).to.equal(false)
  })

  it('keeps a whole tree record or none when a commit is killed (kill -9) at any point', async function () {
    this.timeout(120_000)
    const script = `
      import {commitWorkspace} from ${JSON.stringify(path.resolve('src/lib/commit.ts'))}
      await commitWorkspace({arch: 'amd64', created: new Date(0), parent: 'local/demo:base', reference: 'local/demo:killed', stateDir: ${JSON.stringify(state)}, workspace: 'demo'})
    `
    // Later and later, until one commit got as far as its tag: every kill before hit it somewhere on the way
    // (loading through tsx takes about half a second, the commit itself a fraction of one: steps of 50 ms).
    let tagged = false
    for (let delay = 300; delay <= 8000 && !tagged; delay += delay < 1500 ? 50 : 1000) {
      const child = spawn(process.execPath, ['--import', 'tsx/esm', '--input-type=module', '-e', script], {stdio: 'ignore'})
      const exited = new Promise(resolve => {
        child.on('exit', resolve)
      })
      await new Promise(resolve => {
        setTimeout(resolve, delay)
      })
      child.kill('SIGKILL')
      await exited
      const index = JSON.parse(readFileSync(path.join(layout.root, 'index.json'), 'utf8')) as {manifests: {annotations: Record<string, string>; digest: string}[]}
      const tag = index.manifests.find(m => m.annotations['org.opencontainers.image.ref.name'] === 'local/demo:killed')
      if (tag) {
        // Tagged means its record was stored first, whole.
        const record = await openTreeRecord(new ImageRecords(layout.root).path(tag.digest, TREE_RECORD))
        expect(record.entries, `killed after ${delay} ms`).to.be.greaterThan(0)
        await wholeRecord(new ImageRecords(layout.root).path(tag.digest, TREE_RECORD))
        tagged = true
        continue
      }

      for (const hex of readdirSync(path.join(layout.root, 'records', 'sha256'))) {
        // A whole record or none, never a torn one (temp files beside it are not records).
        const file = path.join(layout.root, 'records', 'sha256', hex, TREE_RECORD)
        if (existsSync(file)) await wholeRecord(file)
      }
    }

    // Otherwise every commit failed or was killed, and nothing above was tested.
    expect(tagged, 'a commit got as far as its tag').to.equal(true)
  })

  describe('refuses bad parents with a clear error, tags nothing and leaves the layout as it was', () => {
    it('a parent that is not in the layout', () => refuses('local/nope:1', /not found/, 3))

    it('a parent that is an index', async () => {
      const manifest = await layout.resolve('local/demo:base')
      const index = await layout.writeBlob(canonicalJson({manifests: [manifest], mediaType: MEDIA_TYPES.index, schemaVersion: 2}))
      await layout.tag('local/index:1', {...index, mediaType: MEDIA_TYPES.index})
      await refuses('local/index:1', /an image index/, 2)
    })

    it('a parent of another architecture', () => refuses('local/demo:base', /is amd64, this commit is arm64/, 2, {arch: 'arm64'}))

    it('a parent whose layer blob is missing or corrupt', async () => {
      await tagCrafted(layout, 'local/corrupt:1', [Buffer.concat([member('a'), END_OF_ARCHIVE])])
      const {digest} = (await layout.readManifest(await layout.resolve('local/corrupt:1'))).manifest.layers[0]
      const file = layout.blobPath(digest)
      const bytes = readFileSync(file)
      execFileSync('chmod', ['u+w', file])
      writeFileSync(file, Buffer.concat([bytes.subarray(0, 10), Buffer.from('X'), bytes.subarray(11)]))
      await refuses('local/corrupt:1', /missing or corrupt/, 7)
      execFileSync('rm', ['-f', file])
      await refuses('local/corrupt:1', /missing or corrupt/, 7)
    })

    it('a parent whose layer blob was edited in place since its tree record was written, even with its size and mtime kept', async () => {
      const parent = await commit('local/demo:edited')
      const file = layout.blobPath(parent.layer_digest)
      const bytes = readFileSync(file)
      const {mtimeNs} = statSync(file, {bigint: true})
      execFileSync('chmod', ['u+w', file])
      writeFileSync(file, Buffer.concat([bytes.subarray(0, 10), Buffer.from([bytes[10] ^ 0xFF]), bytes.subarray(11)]))
      // The mtime put back to the ns: only the ctime tells.
      const ns = mtimeNs.toString().padStart(10, '0')
      execFileSync('touch', ['-m', '-d', `@${ns.slice(0, -9)}.${ns.slice(-9)}`, file])
      expect(statSync(file, {bigint: true}).mtimeNs).to.equal(mtimeNs)
      try {
        await refuses('local/demo:edited', /missing or corrupt/, 7)
      } finally {
        writeFileSync(file, bytes)
        execFileSync('chmod', ['a-w', file])
      }

      // Put back, it is hashed again (its file is not as the record knew it) and found whole.
      expect((await commit('local/demo:edited-child', {parent: 'local/demo:edited'})).parent).to.include({tree: 'record'})
    })

    for (const [what, name, pattern] of [
      ['".."', '../escape', /unsafe name/],
      ['an absolute name', '/etc/passwd', /absolute name/],
      ['a NUL in a name', Buffer.from('a\u0000b'), /unsafe name/],
      ['a whiteout of the root', '.wh..', /whiteout of the root/],
      ['an empty whiteout', 'dir/.wh.', /whiteout of the root/],
    ] as const) {
      it(`a parent layer holding ${what}`, async () => {
        const ref = `local/unsafe:${Math.random().toString(36).slice(2, 8)}`
        // A NUL only fits in a pax path record: encodeHeader writes those for names that are not plain ASCII.
        await tagCrafted(layout, ref, [Buffer.concat([member('dir/', TYPEFLAG.directory), member(name), END_OF_ARCHIVE])])
        await refuses(ref, pattern, 7)
      })
    }

    for (const [compression, compress] of [['gzip', gzipSync], ['zstd', (tar: Buffer) => execFileSync('zstd', ['-q', '-c'], {input: tar})]] as const) {
      it(`a parent layer whose ${compression} stream breaks off (its blob digest right): refused, not left waiting`, async function () {
        requireTools(this, 'zstd')
        const whole = compress(Buffer.concat([member('dir/', TYPEFLAG.directory), member('dir/a'), END_OF_ARCHIVE]))
        const ref = `local/cut:${compression}`
        await tagCrafted(layout, ref, [whole.subarray(0, -12)], {mediaType: `application/vnd.oci.image.layer.v1.tar+${compression}`})
        await refuses(ref, /cannot be decompressed|is not a readable tar archive/, 7)
      })
    }

    it(`a chain that would pass ${MAX_LAYERS} layers, with advice to commit without --parent`, async () => {
      const layer = Buffer.concat([member('a'), END_OF_ARCHIVE])
      await tagCrafted(layout, 'local/tall:1', Array.from({length: MAX_LAYERS}, () => layer))
      await refuses('local/tall:1', /pass the limit of 120/, 8)
      const error = await rejection(commit('local/demo:bad', {parent: 'local/tall:1'}))
      expect(error.remediation).to.match(/without --parent/)
    })
  })

  it('stacks on an image committed elsewhere (no tree record): reads its layers, whiteouts applied', async () => {
    await tagCrafted(layout, 'local/foreign:1', [
      Buffer.concat([member('old'), member('gone'), END_OF_ARCHIVE]),
      Buffer.concat([member('.wh.gone'), END_OF_ARCHIVE]),
    ])
    const result = await commit('local/demo:on-foreign', {parent: 'local/foreign:1'})
    expect(result.parent).to.include({tree: 'layers'})
    expect(result.parent?.tree_note).to.equal(undefined)
    const members = dumpTar(blobFile(result.layout_path, result.layer_digest)).map(r => Buffer.from(r.path, 'hex').toString())
    expect(members).to.include('.wh.old')
    expect(members).to.not.include('.wh.gone')
    const config = readJson<ImageConfig>(blobFile(result.layout_path, readJson<ImageManifest>(blobFile(result.layout_path, result.digest)).config.digest))
    expect(config.config).to.deep.equal({Cmd: ['sh'], Env: ['A=1']})
    expect(config.rootfs.diff_ids).to.have.length(3)
  })
})
