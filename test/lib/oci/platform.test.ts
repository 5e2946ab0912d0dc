import {expect} from 'chai'

import {hostArch, normalizeArch} from '../../../src/lib/oci/platform.js'

describe('platform', () => {
  const cases: [string, string][] = [
    ['x86_64', 'amd64'],
    ['x64', 'amd64'],
    ['AMD64', 'amd64'],
    ['aarch64', 'arm64'],
    ['arm64', 'arm64'],
    ['riscv64', 'riscv64'],
  ]
  for (const [raw, arch] of cases) it(`normalises ${raw} to ${arch}`, () => expect(normalizeArch(raw)).to.equal(arch))

  it('refuses unknown architectures, listing the valid ones', () => {
    expect(() => normalizeArch('sparc')).to.throw(/valid architectures are amd64, arm64/)
  })

  it("maps Node's process.arch", () => {
    expect(hostArch('x64')).to.equal('amd64')
    expect(hostArch('arm64')).to.equal('arm64')
  })
})
