import {expect} from 'chai'
import {randomBytes} from 'node:crypto'
import {writeFileSync} from 'node:fs'
import path from 'node:path'

import {type CommitResult, commitWorkspace} from '../../../src/lib/commit.js'
import {pushImage, type PushOptions} from '../../../src/lib/registry/push.js'
import {rejection} from '../../helpers/assert.js'
import {type Fault, type FaultProxy, startFaultProxy} from '../../helpers/fault-proxy.js'
import {pullDigest, startRegistry, type TestRegistry} from '../../helpers/registry.js'
import {addWorkspace, makeStateDir, runtimeRecord} from '../../helpers/state.js'
import {requireTools} from '../../helpers/tools.js'

const blobUpload = (method: string, p: string): boolean => (method === 'PUT' || method === 'PATCH') && p.includes('/blobs/uploads/')
const manifestPut = (method: string, p: string): boolean => method === 'PUT' && p.includes('/manifests/')
const anything = (): boolean => true

describe('registry faults (a fault-injecting proxy in front of a real registry)', () => {
  let state: string
  let committed: CommitResult
  let registry: TestRegistry | undefined
  let proxy: FaultProxy | undefined

  before(async function () {
    requireTools(this, 'docker-registry', 'skopeo', 'mke2fs', 'debugfs')
    state = makeStateDir()
    // 3 MiB of noise: a layer big enough to be cut in the middle.
    addWorkspace(state, 'demo', {
      runtime: runtimeRecord('stopped'),
      spec: {sizeMiB: 16, tree: root => writeFileSync(path.join(root, 'noise'), randomBytes(3 * 1024 * 1024))},
    })
    committed = await commitWorkspace({
      created: new Date('2026-01-01T00:00:00Z'), reference: 'local/demo:v1', stateDir: state, workspace: 'demo',
    })
  })

  afterEach(async () => {
    await proxy?.stop()
    await registry?.stop()
    proxy = undefined
    registry = undefined
  })

  /** A fresh registry behind a proxy with `faults`, so that no blob is there (or mountable) before. */
  async function through(faults: Fault[]): Promise<FaultProxy> {
    registry = await startRegistry('none')
    proxy = await startFaultProxy(registry.host, faults)
    return proxy
  }

  const push = (host: string, options: Partial<PushOptions> = {}): ReturnType<typeof pushImage> => pushImage({
    credential: null,
    destination: `${host}/team/app:v1`,
    initialBackoffMs: 5,
    layoutPath: committed.layout_path,
    maxBackoffMs: 40,
    source: 'local/demo:v1',
    ...options,
  })

  /** The manifest digest skopeo gets from the registry itself (not through the proxy), or undefined. */
  async function stored(): Promise<string | undefined> {
    try {
      return await pullDigest(registry!.host, 'team/app:v1')
    } catch {
      return undefined
    }
  }

  it('survives a connection reset in the middle of a blob upload', async () => {
    const {host, log} = await through([{
      afterBytes: 1024 * 1024, kind: 'reset', match: blobUpload, times: 1,
    }])
    const result = await push(host)
    expect(log.filter(r => r.fault === 'reset')).to.have.length(1)
    expect(result.blobs.uploaded).to.equal(2)
    expect(await stored()).to.equal(committed.digest)
  })

  it('survives bursts of 500 and 503 answers', async () => {
    const {host, log} = await through([
      {
        kind: 'status', match: anything, status: 503, times: 3,
      },
      {
        kind: 'status', match: blobUpload, status: 500, times: 2,
      },
      {
        kind: 'status', match: manifestPut, status: 503, times: 2,
      },
    ])
    await push(host)
    expect(log.filter(r => r.fault === 'status')).to.have.length(7)
    expect(await stored()).to.equal(committed.digest)
  })

  it('survives slow answers', async () => {
    const {host, log} = await through([{
      kind: 'delay', match: anything, ms: 150, times: Number.POSITIVE_INFINITY,
    }])
    await push(host)
    expect(log.every(r => r.fault === 'delay')).to.equal(true)
    expect(await stored()).to.equal(committed.digest)
  })

  it('sends a blob refused whole (413, a proxy limit) in chunks whose Range the registry confirms, and the image arrives intact', async () => {
    // Every PUT with a body is refused, as a proxy with a small body limit would; a PUT closing a chunked upload
    // goes to a session that received PATCHes, and passes.
    const patched = new Set<string>()
    const wholePut = (method: string, p: string): boolean => {
      if (method === 'PATCH') patched.add(p)
      return method === 'PUT' && p.includes('/blobs/uploads/') && !patched.has(p)
    }

    const {host, log} = await through([{
      kind: 'status', match: wholePut, status: 413, times: Number.POSITIVE_INFINITY,
    }])
    const result = await push(host, {chunkBytes: 1024 * 1024})
    expect(result.blobs.uploaded).to.equal(2)
    expect(log.filter(r => r.fault === 'status')).to.have.length(2)
    // The 3 MiB layer (noise: gzip cannot shrink it) in four PATCHes at least, the config in one.
    expect(log.filter(r => r.method === 'PATCH').length).to.be.at.least(5)
    expect(await stored()).to.equal(committed.digest)
  })

  it('gives the retryable exit code and stores no manifest when the registry keeps failing', async () => {
    const {host} = await through([{
      kind: 'status', match: manifestPut, status: 503, times: Number.POSITIVE_INFINITY,
    }])
    const error = await rejection(push(host, {retries: 2}))
    expect(error.exitCode).to.equal(75)
    expect(error.message).to.match(/push manifest .* answered 503/)
    expect(await stored()).to.equal(undefined)
  })

  it('gives the retryable exit code and stores no manifest when every blob upload is cut', async () => {
    const {host} = await through([{
      afterBytes: 64 * 1024, kind: 'reset', match: blobUpload, times: Number.POSITIVE_INFINITY,
    }])
    const error = await rejection(push(host, {retries: 2}))
    expect(error.exitCode).to.equal(75)
    expect(await stored()).to.equal(undefined)
  })
})
