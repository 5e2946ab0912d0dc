import {expect} from 'chai'

import {
  buildConfig, buildManifest, canonicalJson, formatCreated, MEDIA_TYPES, resolveCreated, runtimeConfig,
} from '../../../src/lib/oci/image.js'

describe('image', () => {
  it('formats created like Go RFC3339Nano', () => {
    expect(formatCreated(new Date(1_000_000))).to.equal('1970-01-01T00:16:40Z')
    expect(formatCreated(new Date('2026-01-01T00:00:00.120Z'))).to.equal('2026-01-01T00:00:00.12Z')
  })

  it('resolves created from the flag, then SOURCE_DATE_EPOCH, then now', () => {
    const now = new Date('2030-01-01T00:00:00Z')
    expect(resolveCreated('2026-01-01T00:00:00Z', {SOURCE_DATE_EPOCH: '1'}, now).toISOString()).to.equal('2026-01-01T00:00:00.000Z')
    expect(resolveCreated('2026-01-01T02:00:00+02:00', {}, now).toISOString()).to.equal('2026-01-01T00:00:00.000Z')
    expect(resolveCreated(undefined, {SOURCE_DATE_EPOCH: '1000'}, now).toISOString()).to.equal('1970-01-01T00:16:40.000Z')
    expect(resolveCreated(undefined, {}, now)).to.equal(now)
  })

  it('refuses malformed times as usage errors', () => {
    expect(() => resolveCreated('yesterday', {})).to.throw(/not an RFC 3339 time/).with.property('exitCode', 2)
    expect(() => resolveCreated('2026-13-01T00:00:00Z', {})).to.throw(/RFC 3339/)
    expect(() => resolveCreated(undefined, {SOURCE_DATE_EPOCH: '-5'})).to.throw(/SOURCE_DATE_EPOCH/)
  })

  it('carries the source image config in Go field order', () => {
    const config = runtimeConfig({
      Cmd: ['serve'], Env: ['A=1'], ExposedPorts: ['8080', '53/udp'], User: 'app', Volumes: ['/data'], WorkingDir: '/srv',
    })
    expect(Object.keys(config)).to.deep.equal(['User', 'ExposedPorts', 'Env', 'Cmd', 'Volumes', 'WorkingDir'])
    expect(config.ExposedPorts).to.deep.equal({'53/udp': {}, '8080/tcp': {}})
    expect(runtimeConfig({})).to.deep.equal({})
  })

  it('builds a config and manifest whose bytes are stable', () => {
    const input = {
      architecture: 'arm64' as const, created: new Date(1_000_000), defaults: {}, diffId: `sha256:${'1'.repeat(64)}`, workspace: 'demo',
    }
    const config = buildConfig(input)
    const expected = {
      created: '1970-01-01T00:16:40Z',
      architecture: 'arm64',
      os: 'linux',
      config: {},
      rootfs: {type: 'layers', diff_ids: [`sha256:${'1'.repeat(64)}`]},
      history: [{created: '1970-01-01T00:16:40Z', created_by: 'microagent commit demo', comment: 'rootfs committed by microagent'}],
    }
    // Key order is part of the bytes, so compare the serialisation, not just the objects.
    expect(canonicalJson(config).toString()).to.equal(JSON.stringify(expected))
    const manifest = buildManifest({digest: 'sha256:c', mediaType: MEDIA_TYPES.config, size: 1}, [])
    expect(canonicalJson(manifest).toString()).to.match(/^\{"schemaVersion":2,"mediaType":"application\/vnd\.oci\.image\.manifest\.v1\+json"/)
  })
})
