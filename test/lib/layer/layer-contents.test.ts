import {expect} from 'chai'
import {execFileSync} from 'node:child_process'
import {createHash} from 'node:crypto'
import {
  createReadStream, mkdirSync, readFileSync, writeFileSync,
} from 'node:fs'
import path from 'node:path'
import {gzipSync} from 'node:zlib'

import {commitWorkspace} from '../../../src/lib/commit.js'
import {readLayerContents} from '../../../src/lib/layer/layer-contents.js'
import {readTar, type TarMember} from '../../../src/lib/layer/tar-reader.js'
import {layoutPath} from '../../../src/lib/oci/layout.js'
import {rejection} from '../../helpers/assert.js'
import {tempDir} from '../../helpers/ext4.js'
import {buildFidelityImage} from '../../helpers/fidelity.js'
import {addWorkspace, makeStateDir, runtimeRecord} from '../../helpers/state.js'
import {requireTools} from '../../helpers/tools.js'

const TYPES: Record<TarMember['type'], string> = {
  block: 'block', char: 'char', directory: 'directory', fifo: 'fifo', file: 'file', hardlink: 'hardlink', symlink: 'symlink',
}

/** What our exact reader finds in a plain tar, as node-tar would show it. */
async function ourMembers(tar: string): Promise<{member: TarMember; path: string}[]> {
  const found: {member: TarMember; path: string}[] = []
  await readTar(createReadStream(tar), async (member, content) => {
    for await (const piece of content) if (piece === undefined) break
    found.push({member, path: member.path.toString('utf8').replace(/^\.\//, '').replace(/\/$/, '') || '.'})
  })
  return found
}

/** A tar made by GNU tar from a tree with a deleted file and an emptied directory, whiteouts as the spec spells them. */
function whiteoutTar(): string {
  const root = path.join(tempDir('plugin-image-wh-'), 'root')
  mkdirSync(path.join(root, 'etc', 'app'), {recursive: true})
  writeFileSync(path.join(root, 'etc', 'kept'), 'kept\n')
  writeFileSync(path.join(root, 'etc', '.wh.gone'), '')
  writeFileSync(path.join(root, 'etc', 'app', '.wh..wh..opq'), '')
  const tar = path.join(path.dirname(root), 'layer.tar')
  execFileSync('tar', ['--sort=name', '--owner=0', '--group=0', '-C', root, '-cf', tar, '.'])
  return tar
}

describe('layer contents (node-tar)', () => {
  before(function () {
    requireTools(this, 'debugfs', 'mke2fs', 'tar', 'zstd')
  })

  it('lists every member our exact reader finds in a committed layer of the fidelity image, and its diff_id', async function () {
    this.timeout(120_000)
    const state = makeStateDir()
    addWorkspace(state, 'fid', {rootfs: buildFidelityImage().file, runtime: runtimeRecord('stopped')})
    const result = await commitWorkspace({
      compression: 'none', created: new Date('2026-01-01T00:00:00Z'), reference: 'local/fid:v1', stateDir: state, workspace: 'fid',
    })
    const blob = path.join(layoutPath(state), 'blobs', 'sha256', result.layer_digest.slice('sha256:'.length))
    const listed = await readLayerContents(blob, result.layer_media_type)
    expect(listed.diff_id).to.equal(result.diff_id)
    const ours = await ourMembers(blob)
    expect(listed.entries).to.have.length(ours.length)
    let compared = 0
    for (const [i, {member, path: name}] of ours.entries()) {
      const entry = listed.entries[i]
      expect(entry).to.include({
        gid: member.gid, mode: member.mode & 0o7777, type: TYPES[member.type], uid: member.uid,
      }, name)
      if (member.type === 'file') expect(entry.size).to.equal(member.size, name)
      // node-tar gives names as UTF-8 text: compared where the bytes are UTF-8 (some of the fidelity image's are not).
      if (Buffer.from(member.path.toString('utf8'), 'utf8').equals(member.path)) {
        expect(entry.path).to.equal(name)
        compared++
      }

      if (member.type === 'symlink' || member.type === 'hardlink') expect(entry.linkpath).to.equal(member.linkpath.toString('utf8').replace(/^\.\//, ''))
    }

    expect(compared).to.be.greaterThan(ours.length / 2)
    expect(listed.summary.file).to.equal(ours.filter(m => m.member.type === 'file').length)
  })

  it('names whiteouts by the path they delete and opaque markers by the directory they empty, from gzip and zstd blobs alike', async () => {
    const tar = whiteoutTar()
    const data = readFileSync(tar)
    const diffId = `sha256:${createHash('sha256').update(data).digest('hex')}`
    const gzip = `${tar}.gz`
    writeFileSync(gzip, gzipSync(data))
    const zstd = `${tar}.zst`
    execFileSync('zstd', ['-q', '-f', tar, '-o', zstd])
    for (const [file, mediaType] of [[tar, 'application/vnd.oci.image.layer.v1.tar'], [gzip, 'application/vnd.oci.image.layer.v1.tar+gzip'], [zstd, 'application/vnd.oci.image.layer.v1.tar+zstd']]) {
      const listed = await readLayerContents(file, mediaType)
      expect(listed.diff_id).to.equal(diffId)
      expect(listed.entries.map(entry => `${entry.type} ${entry.path}`)).to.deep.equal([
        'directory .', 'directory etc', 'deleted etc/gone', 'directory etc/app', 'opaque etc/app', 'file etc/kept',
      ])
      expect(listed.summary).to.include({
        content_bytes: 5, deleted: 1, directory: 3, file: 1, opaque: 1,
      })
    }
  })

  it('fails on a truncated gzip blob or a damaged header instead of listing part of it', async () => {
    const tar = whiteoutTar()
    const data = readFileSync(tar)
    const truncated = `${tar}.cut.gz`
    const gzip = gzipSync(data)
    writeFileSync(truncated, gzip.subarray(0, -20))
    const cut = await rejection(readLayerContents(truncated, 'application/vnd.oci.image.layer.v1.tar+gzip'))
    expect(cut.message).to.match(/unexpected end|incorrect header|invalid/i)
    const damaged = `${tar}.bad`
    const bytes = Buffer.from(data)
    // The first header's checksum field.
    bytes.write('9999999', 148, 'latin1')
    writeFileSync(damaged, bytes)
    const bad = await rejection(readLayerContents(damaged, 'application/vnd.oci.image.layer.v1.tar'))
    expect(bad.message).to.match(/checksum|invalid/i)
  })
})
