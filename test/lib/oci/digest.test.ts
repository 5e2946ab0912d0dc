import {expect} from 'chai'
import {Readable} from 'node:stream'
import {pipeline} from 'node:stream/promises'

import {DigestCounter, sha256Digest} from '../../../src/lib/oci/digest.js'

describe('digest', () => {
  it('hashes and counts what flows through, passing it on unchanged', async () => {
    const counter = new DigestCounter()
    const seen: Buffer[] = []
    await pipeline(Readable.from([Buffer.from('hel'), Buffer.from('lo')]), counter, async (source: AsyncIterable<Buffer>) => {
      for await (const chunk of source) seen.push(chunk)
    })
    expect(Buffer.concat(seen).toString()).to.equal('hello')
    expect(counter.bytes).to.equal(5)
    expect(counter.digest()).to.equal(sha256Digest('hello'))
    expect(counter.digest()).to.equal('sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824')
  })
})
