import {expect} from 'chai'

import {pathMatcher} from '../../../src/lib/layer/exclude.js'
import {rejection} from '../../helpers/assert.js'

const matches = (patterns: string[], paths: string[]): string[] => {
  const matcher = pathMatcher(patterns)!
  return paths.filter(p => matcher(Buffer.from(p, 'latin1')))
}

describe('exclude', () => {
  it('has no matcher without patterns', () => {
    expect(pathMatcher([])).to.equal(undefined)
    expect(pathMatcher()).to.equal(undefined)
  })

  it('anchors at the root; * and ? stay in one component, ** spans several', () => {
    const paths = ['var/cache', 'var/cache/apt/x', 'var/cachex', 'tmp/a', 'tmp/a/b', 'x.log', 'var/log/syslog.log', 'a/c', 'abc']
    expect(matches(['var/cache'], paths)).to.deep.equal(['var/cache'])
    expect(matches(['var/cache/**'], paths)).to.deep.equal(['var/cache/apt/x'])
    expect(matches(['/tmp/*'], paths)).to.deep.equal(['tmp/a'])
    expect(matches(['./**/*.log'], paths)).to.deep.equal(['x.log', 'var/log/syslog.log'])
    expect(matches(['a?c'], paths)).to.deep.equal(['abc'])
    expect(matches(['var/cache/'], paths)).to.deep.equal(['var/cache'])
  })

  it('supports classes, negated classes and escapes, and treats regex characters literally', () => {
    const paths = ['hello', 'hallo', 'hxllo', 'a+b', 'aab', 'f*', 'fx', 'a.b']
    expect(matches(['h[ae]llo'], paths)).to.deep.equal(['hello', 'hallo'])
    expect(matches(['h[!ae]llo'], paths)).to.deep.equal(['hxllo'])
    expect(matches(['a+b'], paths)).to.deep.equal(['a+b'])
    expect(matches([String.raw`f\*`], paths)).to.deep.equal(['f*'])
    expect(matches(['a.b'], paths)).to.deep.equal(['a.b'])
  })

  it('matches raw name bytes, UTF-8 patterns included', () => {
    const matcher = pathMatcher(['caf\u00E9/*', 'raw*'])!
    expect(matcher(Buffer.from('caf\u00E9/menu', 'utf8'))).to.equal(true)
    expect(matcher(Buffer.from([0x72, 0x61, 0x77, 0xFF, 0xFE]))).to.equal(true)
    expect(matcher(Buffer.from('cafe/menu'))).to.equal(false)
  })

  it('refuses patterns that name nothing inside the image', async () => {
    for (const pattern of ['', '/', '../etc', 'a/../../b', '[abc']) {
      const error = await rejection(Promise.resolve().then(() => pathMatcher([pattern])))
      expect(error.exitCode, pattern).to.equal(2)
    }
  })
})
