import {expect} from 'chai'

import {chooseExtractor, isExtractor} from '../../../src/lib/extractor/extractor.js'
import {FakeExtractor} from '../../../src/lib/extractor/fake.js'
import {rejection} from '../../helpers/assert.js'

const choose = async (answers: {plugin: string; result: unknown}[]) => rejection(chooseExtractor('xfs', answers))

describe('extractor (choosing one a plugin offers)', () => {
  it('recognises an extractor by shape, whichever copy of the types made it', () => {
    expect(isExtractor(new FakeExtractor([]))).to.equal(true)
    expect(isExtractor({async * entries() {}, name: 'x'})).to.equal(true)
    for (const value of [undefined, null, 'debugfs', {name: 'x'}, {entries: 1, name: 'x'}, {entries() {}}]) expect(isExtractor(value)).to.equal(false)
  })

  it('takes the one plugin that offers the name, ignoring those that decline', async () => {
    const offered = new FakeExtractor([])
    expect(await chooseExtractor('xfs', [{plugin: 'a', result: undefined}, {plugin: 'b', result: null}, {plugin: 'c', result: offered}])).to.equal(offered)
  })

  it('refuses no offer (exit 2), two offers (exit 2) and a malformed offer (exit 1)', async () => {
    const none = await choose([{plugin: 'a', result: undefined}])
    expect(none.exitCode).to.equal(2)
    expect(none.message).to.equal('no installed plugin provides the extractor "xfs"')
    const two = await choose([{plugin: 'a', result: new FakeExtractor([])}, {plugin: 'b', result: new FakeExtractor([])}])
    expect(two.exitCode).to.equal(2)
    expect(two.message).to.contain('a, b')
    const bad = await choose([{plugin: 'a', result: {name: 'xfs'}}])
    expect(bad.exitCode).to.equal(1)
    expect(bad.remediation).to.contain('a')
    // Checked beyond isExtractor's shape: an empty name, or a filesystem that is not a string.
    for (const result of [{async * entries() {}, name: ''}, {async * entries() {}, filesystem: 4, name: 'xfs'}]) {
      expect((await choose([{plugin: 'a', result}])).exitCode).to.equal(1)
    }
  })
})
