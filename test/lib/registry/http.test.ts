import {expect} from 'chai'
import nock from 'nock'
import {execFile} from 'node:child_process'
import {createHash} from 'node:crypto'
import {createServer, type Server} from 'node:http'
import {type AddressInfo, type Socket} from 'node:net'
import {promisify} from 'node:util'

import {fromFetch, httpRequest} from '../../../src/lib/registry/http.js'
import {rejection} from '../../helpers/assert.js'

async function * chunks(count: number, size: number): AsyncGenerator<Uint8Array, void, undefined> {
  for (let i = 0; i < count; i++) yield Buffer.alloc(size, i)
}

async function * failing(): AsyncGenerator<Uint8Array, void, undefined> {
  yield Buffer.alloc(1024)
  throw new Error('the blob is damaged')
}

describe('registry/http (requests over node:http)', () => {
  let server: Server
  let base: string
  const seen: {bytes: number; sha256: string}[] = []
  /** The client sockets the server has seen, to tell a reused connection from a new one. */
  const sockets = new Set<Socket>()

  before(async () => {
    server = createServer((request, response) => {
      sockets.add(request.socket)
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

        if (request.url === '/huge') {
          // Far more than anyone should read: the client must stop and close, not read it all.
          response.writeHead(500, {'content-type': 'text/plain'})
          const piece = Buffer.alloc(64 * 1024, 'x')
          const more = (): void => {
            while (response.write(piece)) {/* until the socket pushes back */}
            response.once('drain', more)
          }

          response.on('close', () => response.off('drain', more))
          more()
          return
        }

        response.setHeader('vary', ['a', 'b'])
        response.writeHead(201, {'docker-content-digest': 'sha256:x', location: '/next'}).end('created')
      })
    })
    await new Promise<void>(resolve => {
      server.listen(0, '127.0.0.1', resolve)
    })
    // Idle connections stay open far longer than any test waits (Node's default closes them after 5 s).
    server.keepAliveTimeout = 120_000
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  })

  after(() => {
    server.closeAllConnections()
    server.close()
  })

  it('streams the body and answers with status, headers, url and body', async () => {
    const response = await httpRequest(new URL('/blob', base), {
      body: chunks(64, 64 * 1024), headers: {'content-length': String(64 * 64 * 1024)}, method: 'PUT',
    })
    expect(response).to.include({ok: true, status: 201, url: `${base}/blob`})
    expect(response.headers.get('Docker-Content-Digest')).to.equal('sha256:x')
    expect(response.headers.get('vary')).to.equal('a, b')
    expect(response.headers.get('x-missing')).to.equal(null)
    expect(await response.text(1024)).to.equal('created')
    const expected = createHash('sha256')
    for await (const chunk of chunks(64, 64 * 1024)) expected.update(chunk)
    expect(seen.at(-1)).to.deep.equal({bytes: 64 * 64 * 1024, sha256: expected.digest('hex')})
  })

  it('sends a buffer body whole, and reads at most the bound of an answer', async () => {
    const response = await httpRequest(new URL('/small', base), {body: Buffer.from('abc'), headers: {'content-length': '3'}, method: 'POST'})
    expect(seen.at(-1)).to.deep.equal({bytes: 3, sha256: createHash('sha256').update('abc').digest('hex')})
    expect(await response.text(4)).to.equal('crea')
  })

  it('answers a 204 with no body', async () => {
    const response = await httpRequest(new URL('/empty', base), {body: chunks(1, 10), headers: {'content-length': '10'}, method: 'PATCH'})
    expect(response.status).to.equal(204)
    expect(await response.text(1024)).to.equal('')
    expect(response.headers.get('x-test')).to.equal('a')
  })

  it('reuses the connection for the next request once an answer is read or discarded', async () => {
    // nock, loaded by other test files of this run, stands in for node:http's sockets: this needs real ones.
    const mocking = nock.isActive()
    if (mocking) nock.restore()
    try {
      sockets.clear()
      // GETs: Node's own server closes the connection after a HEAD whatever the client does (fetch sees the same).
      for (let i = 0; i < 4; i++) {
        const response = await httpRequest(new URL('/small', base), {headers: {}, method: 'GET'})
        await (i === 0 ? response.text(10) : response.discard())
        // The agent takes the socket back once the exchange has ended, a moment after the body's end.
        await new Promise(resolve => {
          setTimeout(resolve, 5)
        })
      }

      expect(sockets.size).to.equal(1)
    } finally {
      if (mocking) nock.activate()
    }
  })

  it('lets the process end with the connection still open (the CLI exits once its push is done)', async function () {
    this.timeout(30_000)
    const module = new URL('../../../src/lib/registry/http.ts', import.meta.url).pathname
    const script = `const {httpRequest} = await import(${JSON.stringify(module)}); await httpRequest(new URL('/small', ${JSON.stringify(base)}), {headers: {}, method: 'HEAD'})`
    const started = Date.now()
    await promisify(execFile)(process.execPath, ['--import', 'tsx/esm', '--input-type=module', '-e', script], {timeout: 20_000})
    // The server keeps the connection open for minutes: exiting at once means it did not hold the process.
    expect(Date.now() - started).to.be.lessThan(15_000)
  })

  it('reads a bounded part of an endless answer and closes its connection instead of reading on', async () => {
    const response = await httpRequest(new URL('/huge', base), {headers: {}, method: 'GET'})
    expect(response).to.include({ok: false, status: 500})
    const text = await response.text(1000)
    expect(text).to.equal('x'.repeat(1000))
  })

  it("rejects with the body's own error, not the broken connection it causes", async () => {
    const error = await rejection(httpRequest(new URL('/blob', base), {body: failing(), headers: {'content-length': '4096'}, method: 'PUT'}))
    expect(error.message).to.equal('the blob is damaged')
  })

  it('rejects with the connection error when nothing listens', async () => {
    const error = await rejection(httpRequest(new URL('http://127.0.0.1:1/'), {body: chunks(1, 1), headers: {}, method: 'PUT'}))
    expect((error as NodeJS.ErrnoException).code).to.equal('ECONNREFUSED')
  })

  it('reads a fetch Response the same way (a fetch given in the options)', async () => {
    const response = fromFetch(await fetch(new URL('/small', base), {body: 'abc', method: 'POST'}))
    expect(response).to.include({ok: true, status: 201, url: `${base}/small`})
    expect(response.headers.get('location')).to.equal('/next')
    expect(await response.text(4)).to.equal('crea')
    await response.discard()
  })
})
