import {expect} from 'chai'

import type {Skip} from '../../../src/lib/extractor/extractor.js'

import {parseDirListingCompact} from '../../../src/lib/extractor/debugfs-parse.js'
import {DirChildren} from '../../../src/lib/extractor/dir-children.js'

/** An `ls -p` reply for these (inode, name) records, as debugfs prints files. */
function listing(records: [number, Buffer | string][]): Buffer {
  return Buffer.concat(records.map(([inode, name]) => Buffer.concat([Buffer.from(`/${inode}/100644/0/0/`), Buffer.from(name), Buffer.from('/1/\n')])))
}

describe('extractor/dir-children', () => {
  it('orders names bytewise (shorter prefix first, bytes above 0x7f last), leaving out empty slots, "." and ".."', () => {
    const names = ['b', 'a', 'ab', 'a\nb', Buffer.from([0xC3, 0xA9]), 'B', 'a0', '...']
    const reply = listing([[2, '.'], [2, '..'], [0, 'gone'], ...names.map((name, i): [number, Buffer | string] => [20 + i, name])])
    const children = DirChildren.of(parseDirListingCompact(reply), Buffer.from('dir'))
    const records = children.records(0, 100)
    expect(children.count).to.equal(names.length)
    expect(records.map(r => r.name.toString('latin1'))).to.deep.equal(['...', 'B', 'a', 'a\nb', 'a0', 'ab', 'b', '\u00C3\u00A9'])
    expect(records.map(r => r.inode)).to.deep.equal([27, 25, 21, 23, 26, 22, 20, 24])
    // Batches are slices of the same order.
    expect(children.records(2, 4).map(r => r.inode)).to.deep.equal([21, 23])
    expect(children.records(7, 300).map(r => r.inode)).to.deep.equal([24])
  })

  it('skips lost+found at the root only, and says so', () => {
    const reply = listing([[11, 'lost+found'], [12, 'etc']])
    const skips: Skip[] = []
    const atRoot = DirChildren.of(parseDirListingCompact(reply), Buffer.alloc(0), skip => skips.push(skip))
    expect(atRoot.records(0, 10).map(r => r.name.toString())).to.deep.equal(['etc'])
    expect(skips.map(s => [s.reason, s.path.toString()])).to.deep.equal([['lost+found', 'lost+found']])
    expect(DirChildren.of(parseDirListingCompact(reply), Buffer.from('srv')).records(0, 10).map(r => r.name.toString())).to.deep.equal(['etc', 'lost+found'])
  })

  for (const [what, records, message] of [
    ['two entries with one name', [[3, 'x'], [4, 'y'], [5, 'x']], /holds two entries named "x"/],
    ['an empty name', [[3, '']], /holds an entry named ""/],
    ['a name holding NUL', [[3, Buffer.from([0x61, 0x00])]], /holds an entry named "a\\u0000"/],
  ] as const) {
    it(`refuses ${what}`, () => {
      const reply = listing(records as unknown as [number, Buffer | string][])
      expect(() => DirChildren.of(parseDirListingCompact(reply), Buffer.from('d'))).to.throw(message)
    })
  }
})
