import {expect} from 'chai'
import {createHash} from 'node:crypto'
import {createServer, type Server} from 'node:http'
import {type AddressInfo} from 'node:net'

import {streamingRequest} from '../../../src/lib/registry/http.js'
import {rejection} from '../../helpers/assert.js'

async function * chunks(count: number, size: number): AsyncGenerator<Uint8Array, void, undefined> {
  for (let i = 0; i < count; i++) yield Buffer.alloc(size, i)
}

async function * failing(): AsyncGenerator<Uint8Array, void, undefined> {
  yield Buffer.alloc(1024)
  throw new Error('the blob is damaged')
}

describe('registry/http (streamed request bodies over node:http)', () => {
  let server: Server
  let base: string
  const seen: {bytes: number; sha256: string}[] = []

  before(async () => {
    server = createServer((request, response) => {
      const hash = createHash('sha256')
      let bytes = 0
      request.on('data', (chunk: Buffer) => {
        hash.update(chunk)
        bytes += chunk.length
      })
      request.on('end', () => {
        seen.push({bytes, sha256: hash.digest('hex')})
        if (request.url === '/empty') {
          response.writeHead(204, {'x-test': 'a'}).end()
          return
        }

        response.writeHead(201, {'docker-content-digest': 'sha256:x', location: '/next'}).end('created')
      })
    })
    await new Promise<void>(resolve => {
      server.listen(0, '127.0.0.1', resolve)
    })
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  })

  after(() => server.close())

  it('streams the body and answers with a fetch Response: status, headers, url, body', async () => {
    const response = await streamingRequest(new URL('/blob', base), {
      body: chunks(64, 64 * 1024), headers: {'content-length': String(64 * 64 * 1024)}, method: 'PUT',
    })
    expect(response.status).to.equal(201)
    expect(response.url).to.equal(`${base}/blob`)
    expect(response.headers.get('docker-content-digest')).to.equal('sha256:x')
    expect(await response.text()).to.equal('created')
    const expected = createHash('sha256')
    for await (const chunk of chunks(64, 64 * 1024)) expected.update(chunk)
    expect(seen.at(-1)).to.deep.equal({bytes: 64 * 64 * 1024, sha256: expected.digest('hex')})
  })

  it('answers a 204 with no body', async () => {
    const response = await streamingRequest(new URL('/empty', base), {body: chunks(1, 10), headers: {'content-length': '10'}, method: 'PATCH'})
    expect(response.status).to.equal(204)
    expect(response.body).to.equal(null)
    expect(response.headers.get('x-test')).to.equal('a')
  })

  it("rejects with the body's own error, not the broken connection it causes", async () => {
    const error = await rejection(streamingRequest(new URL('/blob', base), {body: failing(), headers: {'content-length': '4096'}, method: 'PUT'}))
    expect(error.message).to.equal('the blob is damaged')
  })

  it('rejects with the connection error when nothing listens', async () => {
    const error = await rejection(streamingRequest(new URL('http://127.0.0.1:1/'), {body: chunks(1, 1), headers: {}, method: 'PUT'}))
    expect((error as NodeJS.ErrnoException).code).to.equal('ECONNREFUSED')
  })
})
