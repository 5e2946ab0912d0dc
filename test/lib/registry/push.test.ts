import {expect} from 'chai'
import {writeFileSync} from 'node:fs'
import path from 'node:path'

import type {PushProgress} from '../../../src/lib/support/progress.js'

import {type CommitResult, commitWorkspace} from '../../../src/lib/commit.js'
import {pushImage, type PushResult} from '../../../src/lib/registry/push.js'
import {rejection} from '../../helpers/assert.js'
import {tempDir} from '../../helpers/ext4.js'
import {
  type AuthMode, dockerConfig, PASSWORD, pullDigest, startRegistry, type TestRegistry, USER,
} from '../../helpers/registry.js'
import {addWorkspace, makeStateDir, runtimeRecord} from '../../helpers/state.js'
import {requireTools} from '../../helpers/tools.js'

const uploads = (registry: TestRegistry): number =>
  registry.requests().filter(r => (r.method === 'PUT' || r.method === 'PATCH') && r.path.includes('/blobs/uploads/')).length

/** The blob states a push ended with; exactly one event, the last, says done. */
function finalStates(events: PushProgress[]): string[] {
  expect(events.at(-1)?.done).to.equal(true)
  expect(events.filter(e => e.done)).to.have.length(1)
  return events.at(-1)!.blobs.map(b => b.state)
}

describe('registry push against a real registry (docker-registry on 127.0.0.1)', () => {
  let state: string
  let committed: CommitResult

  before(async function () {
    requireTools(this, 'docker-registry', 'htpasswd', 'openssl', 'skopeo', 'mke2fs', 'debugfs')
    state = makeStateDir()
    addWorkspace(state, 'demo', {
      runtime: runtimeRecord('stopped'),
      spec: {tree: root => writeFileSync(path.join(root, 'hello'), 'hello from the registry test\n')},
    })
    committed = await commitWorkspace({
      created: new Date('2026-01-01T00:00:00Z'), reference: 'local/demo:v1', stateDir: state, workspace: 'demo',
    })
  })

  for (const mode of ['none', 'basic', 'token'] as AuthMode[]) {
    describe(`auth: ${mode}`, () => {
      let registry: TestRegistry
      let env: NodeJS.ProcessEnv

      before(async () => {
        registry = await startRegistry(mode)
        env = {DOCKER_CONFIG: dockerConfig(registry.host), HOME: tempDir()}
      })

      after(async () => {
        await registry?.stop()
      })

      const push = (destination: string, extra: Partial<Parameters<typeof pushImage>[0]> = {}): Promise<PushResult> =>
        pushImage({
          destination, env, layoutPath: committed.layout_path, source: 'local/demo:v1', ...extra,
        })

      it('pushes, and skopeo pulls back the same manifest digest', async () => {
        const events: PushProgress[] = []
        const result = await push(`${registry.host}/team/demo:v1`, {onProgress: p => events.push(p)})
        expect(finalStates(events)).to.deep.equal(['uploaded', 'uploaded'])
        expect(events.at(-1)!.blobs.map(b => b.sent)).to.deep.equal(events.at(-1)!.blobs.map(b => b.size))
        const layer = committed.layer_digest
        expect(events.some(e => e.blobs.some(b => b.digest === layer && b.state === 'uploading' && b.sent > 0))).to.equal(true)
        expect(result).to.include({
          digest: committed.digest, pushed: true, registry: registry.host, repository: 'team/demo', tag: 'v1',
        })
        expect(result.blobs).to.deep.equal({existing: 0, mounted: 0, uploaded: 2})
        expect(result.bytes_uploaded).to.be.greaterThan(committed.size_bytes)
        expect(await pullDigest(registry.host, 'team/demo:v1')).to.equal(committed.digest)
      })

      it('uploads no blob the second time', async () => {
        const before = uploads(registry)
        const events: PushProgress[] = []
        const again = await push(`${registry.host}/team/demo:v1`, {onProgress: p => events.push(p)})
        expect(finalStates(events)).to.deep.equal(['existing', 'existing'])
        expect(again.blobs).to.deep.equal({existing: 2, mounted: 0, uploaded: 0})
        expect(uploads(registry)).to.equal(before)
      })

      it('mounts blobs into a second repository instead of uploading them', async () => {
        const before = uploads(registry)
        const events: PushProgress[] = []
        const other = await push(`${registry.host}/team/other:v2`, {onProgress: p => events.push(p)})
        expect(finalStates(events)).to.deep.equal(['mounted', 'mounted'])
        expect(other.blobs).to.deep.equal({existing: 0, mounted: 2, uploaded: 0})
        expect(uploads(registry)).to.equal(before)
        expect(registry.requests().filter(r => r.method === 'POST' && r.path === '/v2/team/other/blobs/uploads/')).to.have.length(2)
        expect(await pullDigest(registry.host, 'team/other:v2')).to.equal(committed.digest)
      })

      if (mode !== 'none') {
        it('is refused without credentials, with the push exit code and no secret in the message', async () => {
          const error = await rejection(push(`${registry.host}/team/anon:v1`, {env: {HOME: tempDir()}}))
          expect(error.exitCode).to.equal(6)
          expect(error.kind).to.equal('policy_denied')
          expect(error.message).not.to.contain(PASSWORD)
        })

        it('is refused with a wrong password, which never appears in the message', async () => {
          const wrong = dockerConfig(registry.host, {auth: Buffer.from(`${USER}:not-the-password`).toString('base64')})
          const error = await rejection(push(`${registry.host}/team/wrong:v1`, {env: {DOCKER_CONFIG: wrong, HOME: tempDir()}}))
          expect(error.exitCode).to.equal(6)
          expect(error.message).to.contain(USER)
          expect(error.message).not.to.contain('not-the-password')
        })
      }

      if (mode === 'token') {
        it('fetches a new token when the registry rejects an expired one mid-push', async () => {
          registry.token!.expireNext = 1
          const {issued} = (registry.token!)
          const result = await push(`${registry.host}/team/expiry:v1`)
          expect(result.pushed).to.equal(true)
          expect(registry.token!.issued).to.be.greaterThan(issued + 1)
          expect(await pullDigest(registry.host, 'team/expiry:v1')).to.equal(committed.digest)
        })
      }
    })
  }

  it('follows relative upload Locations', async () => {
    const registry = await startRegistry('none', {relativeUrls: true})
    try {
      const result = await pushImage({
        destination: `${registry.host}/rel/demo:v1`, env: {HOME: tempDir()}, layoutPath: committed.layout_path, source: 'local/demo:v1',
      })
      expect(result.blobs.uploaded).to.equal(2)
      expect(await pullDigest(registry.host, 'rel/demo:v1')).to.equal(committed.digest)
    } finally {
      await registry.stop()
    }
  })

  it('refuses local/ destinations and names the way out', async () => {
    const error = await rejection(pushImage({layoutPath: committed.layout_path, source: 'local/demo:v1'}))
    expect(error.exitCode).to.equal(2)
    expect(error.message).to.match(/local\/ pseudo-registry/)
  })

  it('says to commit first when the image is not in the layout', async () => {
    const error = await rejection(pushImage({destination: '127.0.0.1:1/x:1', layoutPath: committed.layout_path, source: 'local/nope:v1'}))
    expect(error.exitCode).to.equal(3)
    expect(error.message).to.match(/commit it first/)
  })

  it('gives the retryable exit code when the registry cannot be reached', async () => {
    const error = await rejection(pushImage({
      destination: '127.0.0.1:1/x:1', env: {HOME: tempDir()}, initialBackoffMs: 1, layoutPath: committed.layout_path, retries: 2, source: 'local/demo:v1',
    }))
    expect(error.exitCode).to.equal(75)
    expect(error.kind).to.equal('transient')
  })
})
