import {expect} from 'chai'
import {execFileSync} from 'node:child_process'
import {
  lstatSync, mkdirSync, readFileSync, symlinkSync, writeFileSync,
} from 'node:fs'
import path from 'node:path'

import {type CommitResult, commitWorkspace} from '../../../src/lib/commit.js'
import {ownerId, parseDirListing} from '../../../src/lib/extractor/debugfs-parse.js'
import {rejection} from '../../helpers/assert.js'
import {
  buildExt4, debugfsRead, runDebugfsWrite, tempDir,
} from '../../helpers/ext4.js'
import {blobFile, dumpTar, type TarRecord} from '../../helpers/oci.js'
import {addWorkspace, makeStateDir, runtimeRecord} from '../../helpers/state.js'
import {requireRoot, requireTools} from '../../helpers/tools.js'

/** The edges: 16-bit (i_uid_high), ustar's 7 octal digits (2097151), signed 32-bit (debugfs's %d), nfsnobody. */
const IDS = [0, 65_535, 65_536, 2_097_151, 2_097_152, 2 ** 31 - 1, 2 ** 31, 4_294_967_294]
const KINDS = ['f', 'd', 'l'] as const

/** Every id as uid on each kind of inode, with a different id as gid, so a swap of the two shows. */
function owners(): {gid: number; name: string; uid: number}[] {
  return IDS.flatMap((uid, i) => KINDS.map(kind => ({gid: IDS[(i + 3) % IDS.length], name: `${kind}${i}`, uid})))
}

/** The raw `i_uid_high`/`i_gid_high` of an inode (offsets 0x78 and 0x7a), read from the image where `imap` locates it. */
function highBits(image: string, name: string): {gid: number; uid: number} {
  const where = /located at block (\d+), offset 0x([0-9a-f]+)/.exec(debugfsRead(image, `imap /${name}`))
  const blockSize = /Block size:\s+(\d+)/.exec(execFileSync('dumpe2fs', ['-h', image], {encoding: 'latin1', stdio: ['ignore', 'pipe', 'ignore']}))
  if (!where || !blockSize) throw new Error(`cannot locate inode of /${name}`)
  const inode = Number(where[1]) * Number(blockSize[1]) + Number.parseInt(where[2], 16)
  const bytes = readFileSync(image).subarray(inode + 0x78, inode + 0x7C)
  return {gid: bytes.readUInt16LE(2), uid: bytes.readUInt16LE(0)}
}

describe('ownership ids from 0 to 4294967294 (real debugfs images)', () => {
  let image: string
  let state: string
  let result: CommitResult
  let records: Map<string, TarRecord>

  before(async function () {
    requireTools(this, 'debugfs', 'mke2fs', 'dumpe2fs', 'python3')
    const commands: string[] = []
    image = buildExt4(path.join(tempDir(), 'ids.ext4'), {
      tree(root) {
        for (const {name} of owners()) {
          if (name.startsWith('f')) writeFileSync(path.join(root, name), `${name}\n`)
          else if (name.startsWith('d')) mkdirSync(path.join(root, name))
          else symlinkSync(`target-${name}`, path.join(root, name))
        }
      },
    })
    for (const {gid, name, uid} of owners()) commands.push(`sif /${name} uid ${uid}`, `sif /${name} gid ${gid}`)
    runDebugfsWrite(image, commands)
    state = makeStateDir()
    addWorkspace(state, 'ids', {manifest: {name: 'ids'}, rootfs: image, runtime: runtimeRecord('stopped')})
    result = await commitWorkspace({
      created: new Date('2026-01-01T00:00:00Z'), reference: 'local/ids:v1', stateDir: state, workspace: 'ids',
    })
    records = new Map(dumpTar(blobFile(result.layout_path, result.layer_digest)).map(r => [Buffer.from(r.path, 'hex').toString('latin1'), r]))
  })

  it('debugfs stored the ids, high 16 bits included, and prints the large ones signed', () => {
    // f7: uid 4294967294, gid 65536; d6: uid 2^31, gid 65535; l1: uid 65535, gid 2097152 (0x200000).
    expect(highBits(image, 'f7')).to.deep.equal({gid: 1, uid: 0xFF_FF})
    expect(highBits(image, 'd6')).to.deep.equal({gid: 0, uid: 0x80_00})
    expect(highBits(image, 'l1')).to.deep.equal({gid: 0x20, uid: 0})
    expect(debugfsRead(image, 'stat /f7')).to.match(/User:\s+-2\s+Group:\s+65536\s/)
    expect(debugfsRead(image, 'ls -p /')).to.include('/-2147483648/')
  })

  it('writes every uid and gid exactly, on files, directories and symlinks (read back by Python tarfile)', () => {
    for (const {gid, name, uid} of owners()) {
      const key = name.startsWith('d') ? `${name}/` : name
      const record = records.get(key)
      expect(record, key).to.not.equal(undefined)
      expect({gid: record!.gid, uid: record!.uid}, key).to.deep.equal({gid, uid})
    }
  })

  it('uses pax uid/gid records exactly for ids past the octal field (2097151)', () => {
    for (const {gid, name, uid} of owners()) {
      const record = records.get(name.startsWith('d') ? `${name}/` : name)!
      expect(record.pax_keys.includes('uid'), `${name} uid ${uid}`).to.equal(uid > 2_097_151)
      expect(record.pax_keys.includes('gid'), `${name} gid ${gid}`).to.equal(gid > 2_097_151)
    }
  })

  it('unpacks with umoci as root to files owned by those ids', function () {
    requireRoot(this, 'unpack with umoci keeping owners')
    requireTools(this, 'umoci')
    const bundle = path.join(tempDir('plugin-image-umoci-ids-'), 'bundle')
    execFileSync('umoci', ['unpack', '--image', `${result.layout_path}:local/ids:v1`, bundle], {stdio: 'pipe'})
    for (const {gid, name, uid} of owners()) {
      const stat = lstatSync(path.join(bundle, 'rootfs', name), {bigint: true})
      expect({gid: Number(stat.gid), uid: Number(stat.uid)}, name).to.deep.equal({gid, uid})
    }
  })

  it('refuses an owner of 4294967295, (uid_t)-1, naming the inode (exit 5)', async () => {
    const bad = buildExt4(path.join(tempDir(), 'minus-one.ext4'), {tree: root => writeFileSync(path.join(root, 'f'), 'x')})
    runDebugfsWrite(bad, ['sif /f uid 4294967295'])
    const badState = makeStateDir()
    addWorkspace(badState, 'bad', {manifest: {name: 'bad'}, rootfs: bad, runtime: runtimeRecord('stopped')})
    const error = await rejection(commitWorkspace({
      created: new Date(0), reference: 'local/bad:v1', stateDir: badState, workspace: 'bad',
    }))
    expect(error).to.include({exitCode: 5})
    expect(error.message).to.match(/uid 4294967295.*names no owner/)
  })

  describe('ownerId (debugfs prints ids with %d)', () => {
    it('reads negative ids as the unsigned 32-bit id they are', () => {
      expect(ownerId('-2')).to.equal(4_294_967_294)
      expect(ownerId('-2147483648')).to.equal(2 ** 31)
      expect(ownerId('2147483647')).to.equal(2 ** 31 - 1)
      expect(ownerId('0')).to.equal(0)
    })

    it('refuses what is no 32-bit id', () => {
      for (const text of ['-2147483649', '4294967296', '', '1.5', '0x10', '--1', '12345678901']) expect(ownerId(text), text).to.equal(undefined)
    })

    it('lets a directory listing hold negative ids', () => {
      const records = parseDirListing(Buffer.from('/13/100644/-2/-2147483648/f/3/\n'))
      expect(records).to.have.length(1)
      expect(records[0]).to.include({inode: 13})
    })
  })
})
