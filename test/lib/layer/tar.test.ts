import {expect} from 'chai'
import {writeFileSync} from 'node:fs'
import path from 'node:path'

import {
  BLOCK, encodeHeader, END_OF_ARCHIVE, paxRecord, paxTime, planHeader, TYPEFLAG, writeHeader,
} from '../../../src/lib/layer/tar.js'
import {tempDir} from '../../helpers/ext4.js'
import {dumpTar, hex} from '../../helpers/oci.js'
import {requireTools} from '../../helpers/tools.js'

const base = {
  gid: 0, mode: 0o644, mtime: 1_700_000_000, size: 0, typeflag: TYPEFLAG.file, uid: 0,
}

function archive(...members: Buffer[]): string {
  const file = path.join(tempDir(), 'a.tar')
  writeFileSync(file, Buffer.concat([...members, END_OF_ARCHIVE]))
  return file
}

describe('tar', () => {
  it('counts its own digits in a pax record length', () => {
    expect(paxRecord('path', Buffer.from('a')).toString()).to.equal('9 path=a\n')
    // 1 + 4 + 1 + 91 + 1 = 98 bytes without the length; with "100 " it is 101 - the digit count changes.
    const record = paxRecord('path', Buffer.alloc(92, 0x61))
    expect(record.length).to.equal(Number(record.toString().split(' ')[0]))
  })

  it('formats pax times exactly, before 1970 too', () => {
    expect(paxTime(1_700_000_000, 123_456_789)).to.equal('1700000000.123456789')
    expect(paxTime(1, 500_000_000)).to.equal('1.5')
    expect(paxTime(-2, 500_000_000)).to.equal('-1.5')
    expect(paxTime(-1, 0)).to.equal('-1')
    expect(paxTime(0, 0)).to.equal('0')
  })

  it('writes a planned header in place over zeros exactly as in a buffer of its own, around what is beside it', () => {
    const headers = [
      {...base, path: Buffer.from('etc/hostname'), size: 5},
      {
        ...base, mtimeNsec: 5, path: Buffer.from('a'.repeat(150)), xattrs: [['user.k', Buffer.from('v')]] as [string, Buffer][],
      },
      {
        ...base, linkpath: Buffer.from('caf\u00E9'), path: Buffer.from('link'), typeflag: TYPEFLAG.symlink, uid: 2 ** 22,
      },
    ]
    for (const fields of headers) {
      const own = encodeHeader(fields)
      const plan = planHeader(fields)
      expect(plan.length).to.equal(own.length)
      const chunk = Buffer.alloc(plan.length + 6, 0xAA)
      chunk.fill(0, 3, 3 + plan.length)
      writeHeader(chunk, 3, plan)
      expect(hex(chunk.subarray(3, 3 + plan.length))).to.equal(hex(own))
      expect([...chunk.subarray(0, 3), ...chunk.subarray(-3)]).to.deep.equal([0xAA, 0xAA, 0xAA, 0xAA, 0xAA, 0xAA])
    }
  })

  it('writes a plain ustar block when everything fits', () => {
    const header = encodeHeader({...base, path: Buffer.from('etc/hostname'), size: 5})
    expect(header.length).to.equal(BLOCK)
    expect(header.subarray(257, 263).toString('latin1')).to.equal('ustar\u0000')
  })

  describe('read back by an independent reader', () => {
    before(function () {
      requireTools(this, 'python3')
    })

    const names = [99, 100, 101, 155, 255].map(n => 'n'.repeat(n))
    for (const name of names) {
      it(`keeps a ${name.length}-byte name`, () => {
        const [record] = dumpTar(archive(encodeHeader({...base, path: Buffer.from(name)})))
        expect(record.path).to.equal(hex(name))
      })
    }

    it('keeps raw non-UTF-8 and control bytes in names and link targets', () => {
      const name = Buffer.from([0x63, 0x61, 0x66, 0xE9, 0x0A, 0x1B, 0x22])
      const target = Buffer.from([0xFF, 0xFE, 0x2F, 0x78])
      const [record] = dumpTar(archive(encodeHeader({
        ...base, linkpath: target, path: name, typeflag: TYPEFLAG.symlink,
      })))
      expect(record.path).to.equal(name.toString('hex'))
      expect(record.link).to.equal(target.toString('hex'))
      expect(record.type).to.equal('symlink')
    })

    it('uses pax for ids over 2,097,151, sizes of 8 GiB and times out of range', () => {
      const [record] = dumpTar(archive(encodeHeader({
        ...base, gid: 4_000_000_000, mtime: -86_400, path: Buffer.from('big'), typeflag: TYPEFLAG.directory, uid: 3_000_000,
      })))
      expect(record).to.include({gid: 4_000_000_000, mtime: '-86400', uid: 3_000_000})
      const header = encodeHeader({...base, path: Buffer.from('huge'), size: 8 * 1024 ** 3})
      expect(header.toString('latin1')).to.contain('size=8589934592')
    })

    it('writes nanoseconds, xattrs with binary values, devices, and no user names', () => {
      const cap = Buffer.from('0100000200200000000000000000000000000000', 'hex')
      const [record] = dumpTar(archive(encodeHeader({
        ...base,
        devMajor: 4095,
        devMinor: 1_048_575,
        mtimeNsec: 5,
        path: Buffer.from('dev/x'),
        typeflag: TYPEFLAG.char,
        xattrs: [
          ['security.capability', cap],
          ['user.bin', Buffer.from([0, 0xFF, 0x0A])],
        ],
      })))
      expect(record).to.include({
        devmajor: 4095, devminor: 1_048_575, gname: '', mtime: '1700000000.000000005', type: 'char', uname: '',
      })
      expect(record.xattrs).to.deep.equal({'security.capability': cap.toString('hex'), 'user.bin': '00ff0a'})
    })

    it('is deterministic', () => {
      const fields = {
        ...base, mtimeNsec: 7, path: Buffer.from('a'.repeat(200)), xattrs: [['user.a', Buffer.from('b')]] as [string, Buffer][],
      }
      expect(encodeHeader(fields).equals(encodeHeader(fields))).to.equal(true)
    })
  })
})
