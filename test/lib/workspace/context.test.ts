import {expect} from 'chai'
import path from 'node:path'

import {
  defaultStateDir, hostBackend, normalizeBackend, resolveContext,
} from '../../../src/lib/workspace/context.js'

describe('context', () => {
  it('resolves flag, then env, then default', () => {
    const env = {
      HOME: '/home/u', MICROAGENT_BACKEND: 'apple-vf', MICROAGENT_MODE: 'ax', MICROAGENT_STATE_DIR: '/env/state',
    }
    expect(resolveContext({env, platform: 'linux'})).to.deep.equal({backend: 'apple-vf', mode: 'ax', stateDir: '/env/state'})
    expect(resolveContext({
      backend: 'linux-kvm', env, mode: 'ux', platform: 'linux', stateDir: '/flag',
    })).to.deep.equal({
      backend: 'linux-kvm',
      mode: 'ux',
      stateDir: '/flag',
    })
    expect(resolveContext({env: {HOME: '/home/u'}, platform: 'linux'})).to.deep.equal({
      backend: 'linux-kvm',
      mode: 'ux',
      stateDir: '/home/u/.microagent',
    })
  })

  it('makes a relative --state-dir absolute', () => {
    expect(resolveContext({env: {}, platform: 'linux', stateDir: 'rel'}).stateDir).to.equal(path.resolve('rel'))
  })

  it('treats firecracker as linux-kvm, case and spaces aside', () => {
    expect(normalizeBackend(' Firecracker ')).to.equal('linux-kvm')
    expect(normalizeBackend('LINUX-KVM')).to.equal('linux-kvm')
  })

  it('names the valid backends when given an unknown one', () => {
    expect(() => normalizeBackend('qemu')).to.throw(/unknown backend "qemu": valid backends are linux-kvm, apple-vf/)
    expect(() => resolveContext({env: {MICROAGENT_BACKEND: 'hyperv'}, platform: 'linux'})).to.throw(/hyperv/)
  })

  it('picks the host backend by platform', () => {
    expect(hostBackend('linux')).to.equal('linux-kvm')
    expect(hostBackend('darwin')).to.equal('apple-vf')
    expect(() => hostBackend('win32')).to.throw(/no VM backend/)
  })

  it('falls back to the temp dir without a home', () => {
    expect(defaultStateDir({HOME: '  '})).to.match(/microagent$/)
    expect(defaultStateDir({HOME: '  '})).not.to.contain('.microagent')
  })
})
