import {expect} from 'chai'

import {
  decodeTime, parseBlockMap, parseDirListing, parseStat,
} from '../../../src/lib/extractor/debugfs-parse.js'

const STAT_FILE = `Inode: 32   Type: regular    Mode:  04755   Flags: 0x80000
Generation: 3735928559    Version: 0x00000000:00000000
User:  1000   Group:  1000   Project:     0   Size: 1900
File ACL: 0
Links: 4   Blockcount: 8
Fragment:  Address: 0    Number: 0    Size: 0
 ctime: 0x6b0d39a5:0940ce1c -- Mon Nov 30 08:54:29 2026
 atime: 0x6b0d39a5:0940ce1c -- Mon Nov 30 08:54:29 2026
 mtime: 0x6553f100:1d6f3454 -- Tue Nov 14 22:13:20 2023
crtime: 0x6b0d39a5:0940ce1c -- Mon Nov 30 08:54:29 2026
Size of extra inode fields: 32
Extended attributes:
  user.x (5) = "hello"
  user.binary (4) = 00 ff 01 0a
  user.large (3000)
Inode checksum: 0x8f2a7b4c
EXTENTS:
(0):33294
`

const stat = (map: string): string => `Inode: 12   Type: regular    Mode:  0644   Flags: 0x80000\nSize of extra inode fields: 32\n${map}`
const run = (logical: number, physical: number, length: number, unwritten = false): object => ({
  length, logical, physical, unwritten,
})

describe('extractor/debugfs-parse', () => {
  describe('ls -p', () => {
    it('parses records, raw names with newlines included, and empty slots', () => {
      const listing = Buffer.concat([
        Buffer.from('/2/040755/0/0/.//\n/2/040755/0/0/..//\n/0/000000/0/0//0/\n'),
        Buffer.from('/32/104755/1000/1000/a\nb/1900/\n'),
        Buffer.from('/46/060640/0/6/'),
        Buffer.from([0xFF, 0xFE]),
        Buffer.from('/0/\n\n'),
      ])
      const records = parseDirListing(listing)
      expect(records.map(r => [r.inode, r.mode.toString(8), r.name.toString('latin1')])).to.deep.equal([
        [2, '40755', '.'],
        [2, '40755', '..'],
        [0, '0', ''],
        [32, '104755', 'a\nb'],
        [46, '60640', '\u00FF\u00FE'],
      ])
    })

    for (const [what, listing] of [
      ['a name holding "/"', '/19/020000/0/0//dev1/0/\n'],
      ['a name holding "/" and digits', '/19/100644/0/0/a/5/100/\n'],
      ['a truncated record', '/19/100644/0/0/abc'],
      ['a bad mode', '/19/10x644/0/0/a/1/\n'],
      ['a record not starting with "/"', 'junk\n'],
    ] as const) {
      it(`refuses ${what}`, () => {
        expect(() => parseDirListing(Buffer.from(listing))).to.throw(/cannot parse a debugfs directory listing/)
      })
    }
  })

  describe('stat', () => {
    it('reads type, mode bits, owner, size, links, ns mtime, ctime, generation and xattr names', () => {
      expect(parseStat(Buffer.from(STAT_FILE))).to.deep.equal({
        blockCount: 8,
        blockMap: {
          listed: 1,
          runs: [{
            length: 1, logical: 0, physical: 33_294, unwritten: false,
          }],
        },
        ctime: {nsec: 0x09_40_CE_1C >>> 2, sec: 0x6B_0D_39_A5},
        flags: 0x8_00_00,
        generation: 3_735_928_559,
        gid: 1000,
        inode: 32,
        links: 4,
        mode: 0o4755,
        mtime: {nsec: 123_456_789, sec: 1_700_000_000},
        size: 1900,
        type: 'file',
        uid: 1000,
        xattrBlock: 0,
        xattrs: [
          {length: 5, name: 'user.x'},
          {length: 4, name: 'user.binary'},
          {length: 3000, name: 'user.large'},
        ],
      })
    })

    it('takes exactly size bytes of a fast symlink target, quotes and newlines included', () => {
      const target = 'a"b\nc'
      const text = [
        'Inode: 15   Type: symlink    Mode:  0777   Flags: 0x0',
        `User:     0   Group:     0   Project:     0   Size: ${target.length}`,
        'Links: 1   Blockcount: 0',
        `Fast link dest: "${target}"`,
        '',
      ].join('\n')
      expect(parseStat(Buffer.from(text)).fastLink?.toString()).to.equal(target)
    })

    it('reads old- and new-style device numbers', () => {
      const head = 'Inode: 20   Type: character special    Mode:  0666   Flags: 0x0\nUser:     0   Group:     0   Project:     0   Size: 0\nLinks: 1   Blockcount: 0\n'
      expect(parseStat(Buffer.from(`${head}Device major/minor number: 01:03 (hex 01:03)\n`))).to.include({devMajor: 1, devMinor: 3, type: 'char'})
      expect(parseStat(Buffer.from(`${head}(New-style) Device major/minor number: 4095:1048575 (hex fff:fffff)\n`))).to.include({
        devMajor: 4095,
        devMinor: 1_048_575,
      })
    })

    it('reads 128-byte inodes, whose times have no extra field', () => {
      const text = 'Inode: 12   Type: directory    Mode:  0755   Flags: 0x0\nUser:     0   Group:     0   Size: 1024\nLinks: 2   Blockcount: 2\n mtime: 0x6553f100 -- Tue Nov 14 22:13:20 2023\n'
      expect(parseStat(Buffer.from(text))).to.include({type: 'directory'})
      expect(parseStat(Buffer.from(text)).mtime).to.deep.equal({nsec: 0, sec: 1_700_000_000})
    })

    it('refuses output it does not understand', () => {
      expect(() => parseStat(Buffer.from(''))).to.throw(/cannot parse debugfs stat output/)
      expect(() => parseStat(Buffer.from(STAT_FILE.replace('  user.x (5)', '  user x (5)')))).to.throw(/extended attribute line/)
    })
  })

  describe('block map', () => {
    it('reads extents, single blocks, unwritten extents and skips tree blocks', () => {
      expect(parseBlockMap(stat('EXTENTS:\n(ETB0):4682, (0-3[u]):100-103, (8):200, (9[u]):7, (10-4881):9000-13871\n'), 12)).to.deep.equal({
        listed: 1 + 4 + 1 + 1 + 4872,
        runs: [run(0, 100, 4, true), run(8, 200, 1), run(9, 7, 1, true), run(10, 9000, 4872)],
      })
    })

    it('reads the block list of a block-mapped file, indirect blocks skipped', () => {
      expect(parseBlockMap(stat('BLOCKS:\n(0-11):4899-4910, (IND):4911, (12-267):4912-5167, (DIND):5168, (IND):5169, (268-292):5170-5194\nTOTAL: 296\n'), 12))
      .to.deep.equal({listed: 296, runs: [run(0, 4899, 12), run(12, 4912, 256), run(268, 5170, 25)]})
    })

    it('reads no map as one hole', () => {
      expect(parseBlockMap(stat('Inode checksum: 0x1\n'), 12)).to.deep.equal({listed: 0, runs: []})
    })

    for (const [what, map] of [
      ['ranges of different lengths', '(0-3):100-101'],
      ['a reversed range', '(5-3):100-98'],
      ['an unknown label', '(XYZ):100'],
      ['junk', '(0):100 junk'],
    ] as const) {
      it(`refuses ${what}`, () => {
        expect(() => parseBlockMap(stat(`EXTENTS:\n${map}\n`), 12)).to.throw(/inode 12: .*block map entry/)
      })
    }
  })

  describe('time', () => {
    const cases: [string, string | undefined, {nsec: number; sec: number}][] = [
      ['f4865700', '00000001', {nsec: 0, sec: 4_102_444_800}],
      ['ffffffff', '00000000', {nsec: 0, sec: -1}],
      ['80000000', '00000000', {nsec: 0, sec: -(2 ** 31)}],
      ['6553f100', '1d6f3454', {nsec: 123_456_789, sec: 1_700_000_000}],
      ['00000000', '00000003', {nsec: 0, sec: 3 * 2 ** 32}],
      ['6553f100', undefined, {nsec: 0, sec: 1_700_000_000}],
    ]
    for (const [lo, extra, expected] of cases) {
      it(`decodes 0x${lo}:${extra ?? '-'}`, () => expect(decodeTime(lo, extra)).to.deep.equal(expected))
    }
  })
})
