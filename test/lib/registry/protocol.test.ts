import {expect} from 'chai'
import nock from 'nock'
import {chmodSync, readFileSync, writeFileSync} from 'node:fs'
import path from 'node:path'

import {PushHistory} from '../../../src/lib/registry/history.js'
import {rejection} from '../../helpers/assert.js'
import {tinyImage, type TinyImage} from '../../helpers/image.js'
import {onlyNock, pushWith, stopNock} from '../../helpers/nock.js'

const REGISTRY = 'https://registry.example.com'
const HOST = 'registry.example.com'

/**
 * Protocol edge cases a real registry will not produce on demand, against nock. Each test declares every
 * request it expects; `nock.isDone()` proves they all happened, and disableNetConnect that nothing else did.
 */
describe('registry protocol edge cases (nock)', () => {
  let image: TinyImage

  before(async () => {
    image = await tinyImage()
    onlyNock()
  })

  after(stopNock)

  afterEach(() => {
    nock.cleanAll()
  })

  const push = pushWith(() => image, HOST)

  /** Both blobs missing; uploads accepted monolithically. */
  function blobsMissing(scope: nock.Scope, skip: string[] = []): nock.Scope {
    for (const blob of [image.config, image.layer]) {
      if (skip.includes(blob.digest)) continue
      scope.head(`/v2/team/app/blobs/${blob.digest}`).reply(404)
    }

    return scope
  }

  function manifestAccepted(scope: nock.Scope, digest = image.manifest.digest): nock.Scope {
    return scope
    .put('/v2/team/app/manifests/v1', body => JSON.stringify(body) === image.manifest.data.toString())
    .matchHeader('content-type', 'application/vnd.oci.image.manifest.v1+json')
    .reply(201, '', {'docker-content-digest': digest})
  }

  it('pings once when the blob pool starts several requests at the same time', async () => {
    // A second ping would find no interceptor left and fail the push.
    const scope = nock(REGISTRY).get('/v2/').delay(50).reply(200)
    for (const blob of [image.config, image.layer]) scope.head(`/v2/team/app/blobs/${blob.digest}`).reply(200)
    manifestAccepted(scope)
    const result = await push({concurrency: 3, credential: null})
    expect(result.blobs).to.deep.equal({existing: 2, mounted: 0, uploaded: 0})
    expect(scope.isDone()).to.equal(true)
  })

  it('sends every request, streamed blob bodies included, through a fetch given in the options', async () => {
    const scope = blobsMissing(nock(REGISTRY).get('/v2/').reply(401, '', {'www-authenticate': 'Basic realm="r"'}))
    scope.post('/v2/team/app/blobs/uploads/').times(2).reply(202, '', {location: '/up'})
    scope.put('/up').query(true).times(2).reply(201)
    manifestAccepted(scope)
    const seen: string[] = []
    const result = await push({
      fetch(url, init) {
        seen.push(`${init?.method ?? 'GET'} ${new URL(url as string).pathname}`)
        return fetch(url, init)
      },
    })
    expect(result.blobs.uploaded).to.equal(2)
    expect(scope.isDone()).to.equal(true)
    expect(seen.sort()).to.deep.equal([
      'GET /v2/',
      `HEAD /v2/team/app/blobs/${image.config.digest}`,
      `HEAD /v2/team/app/blobs/${image.layer.digest}`,
      'POST /v2/team/app/blobs/uploads/',
      'POST /v2/team/app/blobs/uploads/',
      'PUT /up',
      'PUT /up',
      'PUT /v2/team/app/manifests/v1',
    ].sort())
  })

  it('falls back to chunked PATCH uploads on 413, honouring OCI-Chunk-Min-Length', async () => {
    const scope = nock(REGISTRY).get('/v2/').reply(200)
    blobsMissing(scope)
    // The config goes up whole; the layer is refused whole (a proxy limit) and sent in chunks.
    scope.post('/v2/team/app/blobs/uploads/').reply(202, '', {location: '/upload/config'})
    scope.put('/upload/config').query({digest: image.config.digest}).reply(201)
    scope.post('/v2/team/app/blobs/uploads/').reply(202, '', {location: '/upload/layer'})
    scope.put('/upload/layer').query({digest: image.layer.digest}).reply(413, 'Request Entity Too Large')
    scope.post('/v2/team/app/blobs/uploads/').reply(202, '', {location: '/upload/chunked', 'oci-chunk-min-length': String(16 * 1024 * 1024)})
    const received: Buffer[] = []
    scope
    .patch('/upload/chunked', (body: string) => {
      received.push(Buffer.from(body, 'hex'))
      return true
    })
    .matchHeader('content-range', `0-${image.layer.data.length - 1}`)
    .reply(202, '', {location: '/upload/chunked-2', range: `0-${image.layer.data.length - 1}`})
    scope.put('/upload/chunked-2').query({digest: image.layer.digest}).reply(201)
    manifestAccepted(scope)
    const result = await push()
    expect(result.blobs.uploaded).to.equal(2)
    expect(scope.isDone()).to.equal(true)
  })

  it('uploads through the session a registry opens when it answers a mount with 202', async () => {
    await new PushHistory(path.join(path.dirname(image.layout), 'push-history.json')).record(HOST, 'team/base', [image.config.digest, image.layer.digest])
    try {
      const scope = nock(REGISTRY).get('/v2/').reply(200)
      blobsMissing(scope)
      for (const blob of [image.config, image.layer]) {
        scope.post('/v2/team/app/blobs/uploads/').query({from: 'team/base', mount: blob.digest}).reply(202, '', {location: `/session/${blob.digest}`})
        scope.put(`/session/${blob.digest}`).query({digest: blob.digest}).reply(201)
      }

      manifestAccepted(scope)
      const result = await push()
      expect(result.blobs).to.deep.equal({existing: 0, mounted: 0, uploaded: 2})
      expect(scope.isDone()).to.equal(true)
    } finally {
      await new PushHistory(path.join(path.dirname(image.layout), 'push-history.json')).record(HOST, 'team/app', [image.config.digest, image.layer.digest])
    }
  })

  it('resolves a relative Location against the request and keeps its query', async () => {
    const scope = nock(REGISTRY).get('/v2/').reply(200)
    blobsMissing(scope)
    for (const blob of [image.config, image.layer]) {
      scope.post('/v2/team/app/blobs/uploads/').reply(202, '', {location: `uploads/${blob.digest}?_state=abc`})
      scope.put(`/v2/team/app/blobs/uploads/uploads/${blob.digest}`).query({_state: 'abc', digest: blob.digest}).reply(201)
    }

    manifestAccepted(scope)
    await push()
    expect(scope.isDone()).to.equal(true)
  })

  it('refreshes a token that expires mid-upload and re-sends the body from the file', async () => {
    const challenge = 'Bearer realm="https://auth.example.com/token",service="registry.example.com"'
    const scope = nock(REGISTRY).get('/v2/').reply(401, '', {'www-authenticate': challenge})
    const auth = nock('https://auth.example.com')
    .get('/token')
    .query(true)
    .basicAuth({pass: 'pw-secret', user: 'u'})
    .reply(200, {expires_in: 300, token: 'token-1'})
    .get('/token')
    .query(true)
    .reply(200, {expires_in: 300, token: 'token-2'})
    scope.head(`/v2/team/app/blobs/${image.config.digest}`).matchHeader('authorization', 'Bearer token-1').reply(200)
    scope.head(`/v2/team/app/blobs/${image.layer.digest}`).matchHeader('authorization', 'Bearer token-1').reply(404)
    scope.post('/v2/team/app/blobs/uploads/').matchHeader('authorization', 'Bearer token-1').reply(202, '', {location: '/up/1'})
    // The same upload twice, each recording the body it received: first with the expired token, then the new one.
    const bodies: string[] = []
    const upload = (token: string): nock.Interceptor =>
      scope
      .put('/up/1', (body: string) => {
        bodies.push(body)
        return true
      })
      .query({digest: image.layer.digest})
      .matchHeader('authorization', `Bearer ${token}`)
    upload('token-1').reply(401, '', {'www-authenticate': `${challenge},error="invalid_token"`})
    upload('token-2').reply(201)
    scope.put('/v2/team/app/manifests/v1').matchHeader('authorization', 'Bearer token-2').reply(201)
    await push()
    expect(bodies).to.have.length(2)
    expect(Buffer.from(bodies[0], 'hex').equals(image.layer.data)).to.equal(true)
    expect(bodies[1]).to.equal(bodies[0])
    expect(scope.isDone() && auth.isDone()).to.equal(true)
  })

  it('retries 5xx (honouring Retry-After) and then succeeds', async () => {
    const scope = nock(REGISTRY).get('/v2/').reply(200)
    scope.head(`/v2/team/app/blobs/${image.config.digest}`).reply(503, '', {'retry-after': '0'})
    scope.head(`/v2/team/app/blobs/${image.config.digest}`).reply(500)
    scope.head(`/v2/team/app/blobs/${image.config.digest}`).reply(200)
    // An Error, as node:http gives (nock 14 never delivers a plain object to a node:http request).
    scope.head(`/v2/team/app/blobs/${image.layer.digest}`).replyWithError(Object.assign(new Error('socket hang up'), {code: 'ECONNRESET'}))
    scope.head(`/v2/team/app/blobs/${image.layer.digest}`).reply(200)
    manifestAccepted(scope)
    const result = await push()
    expect(result.blobs.existing).to.equal(2)
    expect(scope.isDone()).to.equal(true)
  })

  it('gives up on a registry that keeps failing with the retryable exit code, and sends no manifest', async () => {
    const scope = nock(REGISTRY).get('/v2/').reply(200).head(`/v2/team/app/blobs/${image.config.digest}`).times(4).reply(503)
    const manifest = nock(REGISTRY).put('/v2/team/app/manifests/v1').reply(201)
    const error = await rejection(push({retries: 3}))
    expect(error).to.include({exitCode: 75, kind: 'transient'})
    expect(error.message).to.match(/answered 503/)
    expect(scope.isDone()).to.equal(true)
    expect(manifest.isDone()).to.equal(false)
  })

  it('follows an off-host redirect without sending credentials there', async () => {
    const scope = nock(REGISTRY).get('/v2/').reply(401, '', {'www-authenticate': 'Basic realm="r"'})
    blobsMissing(scope, [image.config.digest])
    scope.head(`/v2/team/app/blobs/${image.config.digest}`).reply(200)
    scope.post('/v2/team/app/blobs/uploads/').basicAuth({pass: 'pw-secret', user: 'u'}).reply(202, '', {location: '/up/1'})
    scope.put('/up/1').query(true).basicAuth({pass: 'pw-secret', user: 'u'}).reply(307, '', {location: 'https://storage.example.net/bucket/blob?sig=xyz'})
    let leaked: string | undefined = 'not called'
    const storage = nock('https://storage.example.net')
    .put('/bucket/blob')
    .query({sig: 'xyz'})
    .reply(function () {
      leaked = this.req.headers.authorization
      return [201, '']
    })
    manifestAccepted(scope)
    await push()
    expect(storage.isDone()).to.equal(true)
    expect(leaked).to.equal(undefined)
  })

  it('fails when the registry reports another manifest digest than the one pushed', async () => {
    const scope = nock(REGISTRY).get('/v2/').reply(200)
    for (const blob of [image.config, image.layer]) scope.head(`/v2/team/app/blobs/${blob.digest}`).reply(200)
    manifestAccepted(scope, `sha256:${'f'.repeat(64)}`)
    const error = await rejection(push())
    expect(error.exitCode).to.equal(6)
    expect(error.message).to.match(/stored the manifest as sha256:f+, not sha256:/)
  })

  it('never puts credentials in error messages', async () => {
    // The denial on a POST: an answer to HEAD has no body to carry the spec's error.
    const scope = nock(REGISTRY).get('/v2/').reply(401, '', {'www-authenticate': 'Basic realm="r"'})
    blobsMissing(scope)
    scope.post('/v2/team/app/blobs/uploads/').times(2).reply(403, '{"errors":[{"code":"DENIED","message":"no"}]}')
    const error = await rejection(push())
    expect(error.message).to.contain('DENIED')
    expect(JSON.stringify({...error, message: error.message})).not.to.contain('pw-secret')
  })

  it('exchanges an identity token with the OAuth refresh-token flow', async () => {
    const challenge = 'Bearer realm="https://auth.example.com/token",service="registry.example.com"'
    const scope = nock(REGISTRY).get('/v2/').reply(401, '', {'www-authenticate': challenge})
    const auth = nock('https://auth.example.com')
    .post('/token', (body: Record<string, string>) =>
      body.grant_type === 'refresh_token' && body.refresh_token === 'refresh-secret' && body.service === HOST && body.scope === 'repository:team/app:pull,push')
    .reply(200, {access_token: 'oauth-token', expires_in: 300})
    for (const blob of [image.config, image.layer]) scope.head(`/v2/team/app/blobs/${blob.digest}`).matchHeader('authorization', 'Bearer oauth-token').reply(200)
    manifestAccepted(scope)
    await push({credential: {identityToken: 'refresh-secret', source: 'test'}})
    expect(scope.isDone() && auth.isDone()).to.equal(true)
  })

  it('sends a registry token as the bearer, with no token exchange', async () => {
    const scope = nock(REGISTRY).get('/v2/').reply(401, '', {'www-authenticate': 'Bearer realm="https://auth.example.com/token"'})
    for (const blob of [image.config, image.layer]) scope.head(`/v2/team/app/blobs/${blob.digest}`).matchHeader('authorization', 'Bearer direct').reply(200)
    manifestAccepted(scope)
    await push({credential: {registryToken: 'direct', source: 'test'}})
    expect(scope.isDone()).to.equal(true)
  })

  it('refuses to send credentials to a token service over plain HTTP', async () => {
    nock(REGISTRY).get('/v2/').reply(401, '', {'www-authenticate': 'Bearer realm="http://auth.example.com/token"'})
    const error = await rejection(push())
    expect(error.message).to.match(/refusing to send credentials to the token service http:\/\/auth\.example\.com\/token over plain HTTP/)
    expect(error.exitCode).to.equal(6)
  })

  it('never sends a damaged blob as good: the upload fails, nothing is retried, no manifest is sent', async () => {
    const damaged = await tinyImage('local/damaged:v1')
    const file = path.join(damaged.layout, 'blobs', 'sha256', damaged.layer.digest.slice('sha256:'.length))
    chmodSync(file, 0o644)
    const bytes = readFileSync(file)
    bytes[bytes.length - 1] ^= 0xFF
    writeFileSync(file, bytes)
    const scope = nock(REGISTRY).get('/v2/').reply(200)
    scope.head(`/v2/team/app/blobs/${damaged.config.digest}`).reply(200)
    scope.head(`/v2/team/app/blobs/${damaged.layer.digest}`).reply(404)
    scope.post('/v2/team/app/blobs/uploads/').reply(202, '', {location: '/up/1'})
    scope.put('/up/1').query(true).optionally().reply(400, '{"errors":[{"code":"DIGEST_INVALID"}]}')
    const manifest = nock(REGISTRY).put('/v2/team/app/manifests/v1').reply(201)
    const error = await rejection(push({layoutPath: damaged.layout, source: damaged.ref}))
    expect(error.exitCode).to.equal(6)
    expect(error.message).to.match(/damaged|DIGEST_INVALID/)
    expect(manifest.isDone()).to.equal(false)
  })
})
