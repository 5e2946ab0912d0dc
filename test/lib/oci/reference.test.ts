import {expect} from 'chai'

import {
  isLocalReference, isLoopbackRegistry, parseReference, parseTagReference,
} from '../../../src/lib/oci/reference.js'
import {isMicroagentError} from '../../../src/lib/support/errors.js'

describe('reference', () => {
  const good: [string, {registry: string; repository: string; tag?: string}][] = [
    ['local/demo:v1', {registry: 'docker.io', repository: 'local/demo', tag: 'v1'}],
    ['ubuntu', {registry: 'docker.io', repository: 'library/ubuntu'}],
    ['ubuntu:24.04', {registry: 'docker.io', repository: 'library/ubuntu', tag: '24.04'}],
    ['localhost:5000/demo:v1', {registry: 'localhost:5000', repository: 'demo', tag: 'v1'}],
    ['127.0.0.1:5000/a/b-c__d.e:latest', {registry: '127.0.0.1:5000', repository: 'a/b-c__d.e', tag: 'latest'}],
    ['ghcr.io/acme/app:1.0', {registry: 'ghcr.io', repository: 'acme/app', tag: '1.0'}],
    ['[::1]:5000/demo', {registry: '[::1]:5000', repository: 'demo'}],
    ['  local/demo:v1  ', {registry: 'docker.io', repository: 'local/demo', tag: 'v1'}],
  ]
  for (const [input, expected] of good) {
    it(`parses ${JSON.stringify(input)}`, () => {
      const ref = parseReference(input)
      expect(ref).to.include(expected)
      expect(ref.raw).to.equal(input.trim())
    })
  }

  const bad = ['', '   ', 'INVALID REF', 'Demo:v1', 'local/demo:', 'local/demo:-x', 'local//demo', '/demo', 'demo/', 'a/b@sha256:xyz', `local/${'a'.repeat(300)}`, 'local/demo:v1:v2']
  for (const input of bad) {
    it(`refuses ${JSON.stringify(input)} as a usage error`, () => {
      try {
        parseReference(input)
        expect.fail('parsed')
      } catch (error) {
        expect(isMicroagentError(error)).to.equal(true)
        expect((error as {exitCode: number}).exitCode).to.equal(2)
      }
    })
  }

  it('accepts digests for lookups but not for tags', () => {
    const digest = `sha256:${'a'.repeat(64)}`
    expect(parseReference(`local/demo@${digest}`).digest).to.equal(digest)
    expect(() => parseTagReference(`local/demo@${digest}`)).to.throw(/digest reference/)
  })

  it('knows the local/ pseudo-registry', () => {
    expect(isLocalReference(parseReference('local/demo:v1'))).to.equal(true)
    expect(isLocalReference(parseReference('localhost/demo:v1'))).to.equal(false)
    expect(isLocalReference(parseReference('acme/local:v1'))).to.equal(false)
  })

  const loopback: [string, boolean][] = [
    ['localhost', true],
    ['LOCALHOST:5000', true],
    ['127.0.0.1:5000', true],
    ['127.9.9.9', true],
    ['[::1]:5000', true],
    ['::1', true],
    ['0.0.0.0:5000', false],
    ['10.0.0.1:5000', false],
    ['registry.localhost', false],
    ['ghcr.io', false],
  ]
  for (const [host, expected] of loopback) {
    it(`treats ${host} as ${expected ? '' : 'not '}loopback`, () => expect(isLoopbackRegistry(host)).to.equal(expected))
  }
})
