import {expect} from 'chai'
import {execFileSync} from 'node:child_process'
import {
  mkdirSync, readFileSync, symlinkSync, writeFileSync,
} from 'node:fs'
import path from 'node:path'

import type {Entry} from '../../../src/lib/extractor/extractor.js'

import {tarLayer} from '../../../src/lib/layer/layer.js'
import {emptyLayerStats} from '../../../src/lib/layer/stats.js'
import {
  parsePaxTime, readTar, TarFormatError, type TarMember,
} from '../../../src/lib/layer/tar-reader.js'
import {rejection} from '../../helpers/assert.js'
import {tempDir} from '../../helpers/ext4.js'
import {requireTools} from '../../helpers/tools.js'

async function members(data: Buffer): Promise<{content: string; member: TarMember}[]> {
  const found: {content: string; member: TarMember}[] = []
  await readTar((async function * () {
    // Odd piece sizes: headers and content cross chunk boundaries.
    for (let i = 0; i < data.length; i += 777) yield data.subarray(i, i + 777)
  })(), async (member, content) => {
    const chunks: Buffer[] = []
    for await (const chunk of content) chunks.push(chunk)
    found.push({content: Buffer.concat(chunks).toString('latin1'), member})
  })
  return found
}

async function ourTar(entries: Entry[]): Promise<Buffer> {
  const pieces: Buffer[] = []
  for await (const piece of tarLayer((async function * () {
    yield * entries
  })(), emptyLayerStats())) pieces.push(piece)
  return Buffer.concat(pieces)
}

const base = {
  gid: 7, mode: 0o4755, mtime: {nsec: 123_456_789, sec: -2}, size: 0, uid: 100_000_000, xattrs: [] as [string, Buffer][],
}

describe('tar-reader', () => {
  it('reads back exactly what our layers write: raw names, ns and negative times, large ids, xattrs, links, devices', async () => {
    const name = Buffer.concat([Buffer.from('d/'), Buffer.from([0x63, 0x61, 0x66, 0xE9]), Buffer.from('\nx'.repeat(80))])
    const xattr = Buffer.from([0, 1, 2, 0x0A, 0xFF])
    const tar = await ourTar([
      {
        ...base, inode: 1, path: Buffer.from('d'), type: 'directory',
      },
      {
        ...base, content: () => [Buffer.from('hello')], inode: 2, path: name, size: 5, type: 'file', xattrs: [['user.bin', xattr], ['user.text', Buffer.from('a=b')]],
      },
      {
        ...base, inode: 2, path: Buffer.from('d/link'), size: 5, type: 'file',
      },
      {
        ...base, devMajor: 4, devMinor: 64, inode: 3, path: Buffer.from('d/tty'), type: 'char',
      },
      {
        ...base, inode: 4, linkTarget: Buffer.from('../'.repeat(60)), path: Buffer.from('d/sym'), type: 'symlink',
      },
    ])
    const found = await members(tar)
    expect(found.map(f => [f.member.type, f.member.path.toString('latin1'), f.content])).to.deep.equal([
      ['directory', 'd/', ''],
      ['file', name.toString('latin1'), 'hello'],
      ['hardlink', 'd/link', ''],
      ['char', 'd/tty', ''],
      ['symlink', 'd/sym', ''],
    ])
    const file = found[1].member
    expect(file).to.include({
      gid: 7, mode: 0o4755, size: 5, uid: 100_000_000,
    })
    expect(file.mtime).to.deep.equal({nsec: 123_456_789, sec: -2})
    expect(file.xattrs).to.deep.equal([['user.bin', xattr], ['user.text', Buffer.from('a=b')]])
    expect(found[2].member.linkpath.toString('latin1')).to.equal(name.toString('latin1'))
    expect(found[3].member).to.include({devMajor: 4, devMinor: 64})
    expect(found[4].member.linkpath.toString()).to.equal('../'.repeat(60))
  })

  it('reads GNU tar archives (long names, old-style headers)', async function () {
    requireTools(this, 'tar')
    const root = tempDir()
    mkdirSync(path.join(root, 'src', 'a'.repeat(120)), {recursive: true})
    writeFileSync(path.join(root, 'src', 'a'.repeat(120), 'f'), 'gnu\n')
    symlinkSync('b'.repeat(150), path.join(root, 'src', 'l'))
    const file = path.join(root, 'gnu.tar')
    execFileSync('tar', ['--format=gnu', '-C', path.join(root, 'src'), '-cf', file, '.'])
    const found = await members(readFileSync(file))
    const byName = new Map(found.map(f => [f.member.path.toString(), f]))
    expect(byName.get(`./${'a'.repeat(120)}/f`)?.content).to.equal('gnu\n')
    expect(byName.get('./l')?.member.linkpath.toString()).to.equal('b'.repeat(150))
  })

  it('parses pax times exactly', () => {
    expect(parsePaxTime('1700000000.5')).to.deep.equal({nsec: 500_000_000, sec: 1_700_000_000})
    expect(parsePaxTime('-1.5')).to.deep.equal({nsec: 500_000_000, sec: -2})
    expect(parsePaxTime('12')).to.deep.equal({nsec: 0, sec: 12})
    expect(() => parsePaxTime('1e9')).to.throw(TarFormatError)
  })

  it('refuses a damaged header and a truncated member', async () => {
    const tar = await ourTar([{
      ...base, content: () => [Buffer.alloc(3000, 1)], inode: 1, path: Buffer.from('f'), size: 3000, type: 'file',
    }])
    const bad = Buffer.from(tar)
    bad[0] ^= 1
    const error = await rejection(members(bad))
    expect(error).to.be.instanceOf(TarFormatError)
    expect(error.message).to.match(/checksum/)
    expect((await rejection(members(tar.subarray(0, 1024 + 512)))).message).to.match(/ends inside/)
  })
})
