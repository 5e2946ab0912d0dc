import {expect} from 'chai'
import nock from 'nock'
import {readFileSync} from 'node:fs'
import path from 'node:path'

import {PushHistory} from '../../../src/lib/registry/history.js'
import {
  chunkSize, parseRange, QUIRK_IDS, type QuirkId, REGISTRY_QUIRKS,
} from '../../../src/lib/registry/quirks.js'
import {rejection} from '../../helpers/assert.js'
import {tinyImage, type TinyImage} from '../../helpers/image.js'
import {onlyNock, pushWith, stopNock} from '../../helpers/nock.js'

const REGISTRY = 'https://registry.example.com'
const HOST = 'registry.example.com'
/** Bytes per PATCH in these tests: the tiny layer (~40 bytes of gzip) goes in several chunks. */
const CHUNK = 10

interface ChunkReply {
  /** The Range header to answer, given the chunk's bytes (default `0-<end>`); null for none. */
  range?: (offset: number, end: number) => null | string
  status?: number
}

/**
 * Each quirk of src/lib/registry/quirks.ts, acted out by nock: every request the push is expected to make
 * is declared (nock.isDone() proves they all came), and disableNetConnect refuses any other.
 */
describe('registry quirks (nock)', () => {
  let image: TinyImage

  before(onlyNock)

  after(stopNock)

  afterEach(() => {
    nock.cleanAll()
  })

  beforeEach(async () => {
    // A fresh layout each time: no push history carries over.
    image = await tinyImage('local/quirks:v1', 4000)
  })

  const push = pushWith(() => image, HOST, {chunkBytes: CHUNK})

  function manifestAccepted(scope: nock.Scope): nock.Scope {
    return scope.put('/v2/team/app/manifests/v1').reply(201, '', {'docker-content-digest': image.manifest.digest})
  }

  /** The config is there already; the layer is refused whole (413, a proxy's limit) and a chunked session opened. */
  function layerRefusedWhole(scope: nock.Scope, postHeaders: Record<string, string> = {}): nock.Scope {
    scope.head(`/v2/team/app/blobs/${image.config.digest}`).reply(200)
    scope.head(`/v2/team/app/blobs/${image.layer.digest}`).reply(404)
    scope.post('/v2/team/app/blobs/uploads/').reply(202, '', {location: '/up/whole'})
    scope.put('/up/whole').query({digest: image.layer.digest}).reply(413, 'Request Entity Too Large')
    return scope.post('/v2/team/app/blobs/uploads/').reply(202, '', {location: '/up/c0', ...postHeaders})
  }

  /** Expects the layer's PATCHes in `size`-byte chunks at /up/c0, /up/c1, …; returns the last Location. */
  function chunks(scope: nock.Scope, size: number, reply: (index: number) => ChunkReply = () => ({})): string {
    const total = image.layer.data.length
    let index = 0
    for (let offset = 0; offset < total; offset += size, index++) {
      const end = Math.min(offset + size, total) - 1
      const {range = (_start: number, last: number) => `0-${last}`, status = 202} = reply(index)
      const headers: Record<string, string> = {location: `/up/c${index + 1}`}
      const answered = range(offset, end)
      if (answered !== null) headers.range = answered
      scope
      .patch(`/up/c${index}`)
      .matchHeader('content-range', `${offset}-${end}`)
      .matchHeader('content-length', String(end - offset + 1))
      .reply(status, '', headers)
    }

    return `/up/c${index}`
  }

  /** A chunked upload whose every PATCH is answered with `status` instead of 202, and still completes. */
  function patchAnsweredWith(status: number): () => Promise<void> {
    return async () => {
      const scope = layerRefusedWhole(nock(REGISTRY).get('/v2/').reply(200))
      scope.put(chunks(scope, CHUNK, () => ({status}))).query({digest: image.layer.digest}).reply(201)
      manifestAccepted(scope)
      await push()
      expect(scope.isDone()).to.equal(true)
    }
  }

  const scenarios: Record<QuirkId, () => Promise<void>> = {
    async 'chunk-min-length'() {
      // 25 bytes asked for: chunks of 25, not of 10.
      const scope = layerRefusedWhole(nock(REGISTRY).get('/v2/').reply(200), {'oci-chunk-min-length': '25'})
      scope.put(chunks(scope, 25)).query({digest: image.layer.digest}).reply(201)
      manifestAccepted(scope)
      await push()
      expect(scope.isDone()).to.equal(true)
      // Nor from the caller: a chunk of 0 bytes would never end.
      for (const chunkBytes of [0, -1, Number.NaN, 1.5]) expect((await rejection(push({chunkBytes}))).exitCode, String(chunkBytes)).to.equal(2)
      // A value that is not a positive integer is ignored, never a chunk of NaN bytes.
      expect([chunkSize(CHUNK, 'abc'), chunkSize(CHUNK, '-5'), chunkSize(CHUNK, '1e9'), chunkSize(CHUNK, null), chunkSize(CHUNK, '4')]).to.deep.equal([10, 10, 10, 10, 10])
    },

    async 'location-opaque'() {
      const scope = nock(REGISTRY).get('/v2/').reply(200)
      scope.head(`/v2/team/app/blobs/${image.config.digest}`).reply(404)
      scope.head(`/v2/team/app/blobs/${image.layer.digest}`).reply(404)
      // Relative, outside /v2/, with a query to keep (Google Artifact Registry's shape).
      scope.post('/v2/team/app/blobs/uploads/').reply(202, '', {location: '/artifacts-uploads/namespaces/p/uploads/one?_state=s1'})
      scope.put('/artifacts-uploads/namespaces/p/uploads/one').query({_state: 's1', digest: image.config.digest}).reply(201)
      // Absolute, on another host: followed, without the credentials.
      scope.post('/v2/team/app/blobs/uploads/').reply(202, '', {location: 'https://uploads.example.net/session/two?sig=abc'})
      const other = nock('https://uploads.example.net', {badheaders: ['authorization']})
      .put('/session/two')
      .query({digest: image.layer.digest, sig: 'abc'})
      .reply(201)
      manifestAccepted(scope)
      await push()
      expect(scope.isDone() && other.isDone()).to.equal(true)
    },

    async 'mount-refused'() {
      for (const status of [401, 403, 404]) {
        nock.cleanAll()
        image = await tinyImage('local/quirks:v1', 4000)
        await new PushHistory(path.join(path.dirname(image.layout), 'push-history.json')).record(HOST, 'team/base', [image.config.digest, image.layer.digest])
        const scope = nock(REGISTRY).get('/v2/').reply(200)
        for (const [i, blob] of [image.config, image.layer].entries()) {
          scope.head(`/v2/team/app/blobs/${blob.digest}`).reply(404)
          // A 401 is tried once more with a fresh token (it may be an expired one) before it counts as a refusal.
          scope.post('/v2/team/app/blobs/uploads/').query({from: 'team/base', mount: blob.digest}).times(status === 401 ? 2 : 1).reply(status)
          scope.post('/v2/team/app/blobs/uploads/').reply(202, '', {location: `/up/${i}`})
          scope.put(`/up/${i}`).query({digest: blob.digest}).reply(201)
        }

        manifestAccepted(scope)
        const result = await push()
        expect(result.blobs, String(status)).to.deep.equal({existing: 0, mounted: 0, uploaded: 2})
        expect(scope.isDone(), String(status)).to.equal(true)
      }
    },

    async 'mount-scope'() {
      await new PushHistory(path.join(path.dirname(image.layout), 'push-history.json')).record(HOST, 'team/base', [image.config.digest, image.layer.digest])
      const challenge = 'Bearer realm="https://auth.example.com/token",service="registry.example.com"'
      const scope = nock(REGISTRY).get('/v2/').reply(401, '', {'www-authenticate': challenge})
      const auth = nock('https://auth.example.com')
      .get('/token')
      .query(query => query.scope === 'repository:team/app:pull,push')
      .reply(200, {token: 'push-only'})
      .get('/token')
      .query(query => Array.isArray(query.scope) && query.scope.includes('repository:team/app:pull,push') && query.scope.includes('repository:team/base:pull'))
      .reply(200, {token: 'push-and-source'})
      for (const blob of [image.config, image.layer]) {
        scope.head(`/v2/team/app/blobs/${blob.digest}`).matchHeader('authorization', 'Bearer push-only').reply(404)
        scope
        .post('/v2/team/app/blobs/uploads/')
        .query({from: 'team/base', mount: blob.digest})
        .matchHeader('authorization', 'Bearer push-and-source')
        .reply(201)
      }

      scope.put('/v2/team/app/manifests/v1').matchHeader('authorization', 'Bearer push-only').reply(201)
      const result = await push()
      expect(result.blobs.mounted).to.equal(2)
      expect(scope.isDone() && auth.isDone()).to.equal(true)
    },

    'patch-201': patchAnsweredWith(201),
    'patch-204': patchAnsweredWith(204),

    async 'patch-range-stalls'() {
      // ECR as reported: the first PATCH lands, the second is answered 201 but its Range stays where it was.
      const scope = layerRefusedWhole(nock(REGISTRY).get('/v2/').reply(200))
      scope.patch('/up/c0').matchHeader('content-range', `0-${CHUNK - 1}`).reply(201, '', {location: '/up/c1', range: `0-${CHUNK - 1}`})
      scope.patch('/up/c1').matchHeader('content-range', `${CHUNK}-${2 * CHUNK - 1}`).reply(201, '', {location: '/up/c2', range: `0-${CHUNK - 1}`})
      scope.delete('/up/c2').reply(204)
      // No further PATCH, no closing PUT, no manifest: nock refuses any of them.
      const error = await rejection(push())
      expect(error.exitCode).to.equal(6)
      expect(error.message).to.contain(`lost part of blob ${image.layer.digest}: after sending bytes ${CHUNK}-${2 * CHUNK - 1} of ${image.layer.data.length}`)
      expect(error.message).to.contain(`holds "0-${CHUNK - 1}"`)
      expect(error.remediation).to.contain('aws/containers-roadmap#2831')
      expect(scope.isDone()).to.equal(true)
    },

    async 'range-missing'() {
      // No Range on the PATCHes: each upload's status is asked; the first answers with a Range, the rest without.
      let scope = layerRefusedWhole(nock(REGISTRY).get('/v2/').reply(200))
      const last = chunks(scope, CHUNK, () => ({range: () => null}))
      const count = Math.ceil(image.layer.data.length / CHUNK)
      for (let i = 1; i <= count; i++) scope.get(`/up/c${i}`).reply(204, '', i === 1 ? {range: `0-${CHUNK - 1}`} : {})

      scope.put(last).query({digest: image.layer.digest}).reply(201)
      manifestAccepted(scope)
      await push()
      expect(scope.isDone()).to.equal(true)

      // A chunk's own range (`<start>-<end>`) is fine when it ends at the last byte sent.
      nock.cleanAll()
      scope = layerRefusedWhole(nock(REGISTRY).get('/v2/').reply(200))
      scope.put(chunks(scope, CHUNK, () => ({range: (start, end) => `${start}-${end}`}))).query({digest: image.layer.digest}).reply(201)
      manifestAccepted(scope)
      await push()
      expect(scope.isDone()).to.equal(true)

      // A status that shows less than was sent fails the push, as a stalled Range does.
      nock.cleanAll()
      scope = layerRefusedWhole(nock(REGISTRY).get('/v2/').reply(200))
      scope.patch('/up/c0').reply(202, '', {location: '/up/c1'})
      scope.get('/up/c1').reply(204, '', {range: '0-3'})
      scope.delete('/up/c1').reply(204)
      const error = await rejection(push())
      expect(error.exitCode).to.equal(6)
      expect(error.message).to.contain('holds "0-3"')
      expect(scope.isDone()).to.equal(true)
    },
  }

  for (const quirk of REGISTRY_QUIRKS) {
    it(`${quirk.id} (${quirk.registries}): ${quirk.behaviour}`, scenarios[quirk.id])
  }

  it('lists every quirk once, each with what it does about it and public reports', () => {
    expect(REGISTRY_QUIRKS.map(q => q.id)).to.have.members([...QUIRK_IDS])
    expect(REGISTRY_QUIRKS).to.have.length(QUIRK_IDS.length)
    for (const quirk of REGISTRY_QUIRKS) {
      expect(quirk.handling, quirk.id).not.to.equal('')
      expect(quirk.sources.length, quirk.id).to.be.at.least(1)
      for (const source of quirk.sources) expect(source, quirk.id).to.match(/^https:\/\/github\.com\/[\w.-]+\/[\w.-]+\/(issues|pull)\/\d+$/)
    }
  })

  it('are all in the README\'s table, with their reports', () => {
    const readme = readFileSync(new URL('../../../README.md', import.meta.url), 'utf8')
    for (const quirk of REGISTRY_QUIRKS) {
      expect(readme, quirk.id).to.contain(`| \`${quirk.id}\` | ${quirk.registries} | ${quirk.behaviour} | ${quirk.handling} |`)
      for (const source of quirk.sources) expect(readme, source).to.contain(`](${source})`)
    }
  })

  it('reads Range headers strictly', () => {
    expect(parseRange('0-99')).to.deep.equal({end: 99, start: 0})
    expect(parseRange('bytes=0-99')).to.deep.equal({end: 99, start: 0})
    expect(parseRange('10-19')).to.deep.equal({end: 19, start: 10})
    for (const bad of [null, '', '99', '0-', '-5', '9-3', '0-99, 200-300', 'abc']) expect(parseRange(bad), String(bad)).to.equal(undefined)
  })
})
