import {expect} from 'chai'
import {type ChildProcess, spawn, spawnSync} from 'node:child_process'
import {mkdirSync, writeFileSync} from 'node:fs'
import path from 'node:path'
import {setTimeout as sleep} from 'node:timers/promises'

import {loadIs} from '../../../src/lib/support/is.js'
import {
  imageDefaultsFrom,
  isFileLocked,
  leaseStoppedWorkspace,
  openStoppedWorkspace,
  readRuntimeState,
  readWorkspaceManifest,
  validateWorkspaceName,
  workspacePaths,
} from '../../../src/lib/workspace/workspace.js'
import {rejection} from '../../helpers/assert.js'
import {addWorkspace, makeStateDir, runtimeRecord} from '../../helpers/state.js'
import {requireTools} from '../../helpers/tools.js'

/** A halted workspace whose runtime folder has its (unlocked) `.runtime.lock`, as after a VM ran. */
function haltedWithLockFile(): {lock: string; state: string} {
  const state = makeStateDir()
  addWorkspace(state, 'demo', {event: {state: 'halted'}})
  const lock = path.join(state, 'demo', '.runtime.lock')
  writeFileSync(lock, '')
  return {lock, state}
}

/** A process holding `lock` exclusively, as a running VM holds its lease. */
async function holdExclusively(lock: string): Promise<ChildProcess> {
  const child = spawn('flock', ['--exclusive', lock, 'sleep', '30'], {stdio: 'ignore'})
  for (let i = 0; i < 100 && !(await isFileLocked(lock)); i++) await sleep(20)
  return child
}

describe('workspace', () => {
  describe('names', () => {
    for (const name of ['A1', 'x', 'has.dot', '0starts-with-digit', 'a'.repeat(63), 'under_score']) {
      it(`accepts ${name.length > 20 ? '63 × a' : name}`, () => expect(validateWorkspaceName(name)).to.equal(name))
    }

    const refused: [string, RegExp][] = [
      ['', /workspace name is required/],
      ['  ', /workspace name is required/],
      ['m2*', /invalid workspace name "m2\*": use letters/],
      ['a b', /use letters/],
      ['-leading-hyphen', /use letters/],
      ['.hidden', /use letters/],
      ['..', /use letters/],
      ['sub/dir', /use letters/],
      ['../../etc', /use letters/],
      ['café', /use letters/],
      ['a'.repeat(64), /63 characters max/],
      ['images', /reserved for microagent state/],
      ['workspaces', /reserved/],
    ]
    for (const [name, message] of refused) {
      it(`refuses ${JSON.stringify(name.length > 20 ? '64 × a' : name)} with a usage error`, () => {
        expect(() => validateWorkspaceName(name)).to.throw(message).with.property('exitCode', 2)
      })
    }

    it('never builds a path for a bad name', () => {
      expect(() => workspacePaths('/state', '../x')).to.throw(/invalid workspace name/)
    })
  })

  describe('runtime state (LatestStartState)', () => {
    it('prefers runtime.json, with its pid', async () => {
      const state = makeStateDir()
      addWorkspace(state, 'demo', {event: {state: 'running'}, rootfs: null, runtime: runtimeRecord('halted', 4242)})
      expect(await readRuntimeState(workspacePaths(state, 'demo'))).to.include({pid: 4242, source: 'runtime.json', state: 'halted'})
    })

    it('falls back to event.json', async () => {
      const state = makeStateDir()
      addWorkspace(state, 'demo', {event: {state: 'stopped'}, rootfs: null})
      expect(await readRuntimeState(workspacePaths(state, 'demo'))).to.include({pid: 0, source: 'event.json', state: 'stopped'})
    })

    it('reports a workspace that never started', async () => {
      const state = makeStateDir()
      addWorkspace(state, 'demo', {rootfs: null})
      expect(await readRuntimeState(workspacePaths(state, 'demo'))).to.include({source: 'none', state: ''})
    })

    it('treats a malformed record as an error, never as stopped', async () => {
      const state = makeStateDir()
      addWorkspace(state, 'demo', {rootfs: null, runtime: '{"event": '})
      const error = await rejection(readRuntimeState(workspacePaths(state, 'demo')))
      expect(error.message).to.match(/cannot read workspace record .*runtime\.json/)
      expect(error.exitCode).to.equal(4)
    })
  })

  describe('openStoppedWorkspace', () => {
    before(function () {
      requireTools(this, 'mke2fs')
    })

    it('opens a stopped workspace', async () => {
      const state = makeStateDir()
      addWorkspace(state, 'demo', {runtime: runtimeRecord('stopped')})
      const ws = await openStoppedWorkspace(state, 'demo')
      expect(ws.paths.rootfs).to.equal(path.join(state, 'workspaces', 'demo', 'rootfs.ext4'))
    })

    it('opens a workspace that was never started', async () => {
      const state = makeStateDir()
      addWorkspace(state, 'demo')
      expect((await openStoppedWorkspace(state, 'demo')).runtime.source).to.equal('none')
    })

    for (const live of ['running', 'paused', 'starting', 'stopping']) {
      it(`refuses a ${live} workspace`, async () => {
        const state = makeStateDir()
        addWorkspace(state, 'demo', {runtime: runtimeRecord(live)})
        const error = await rejection(openStoppedWorkspace(state, 'demo'))
        expect(error.message).to.equal(`workspace "demo" is ${live}; halt or stop it before committing`)
        expect(error.exitCode).to.equal(4)
        expect(error.code).to.equal('WORKSPACE_IN_USE')
      })
    }

    it('refuses a workspace whose recorded pid is alive, whatever the record says', async () => {
      const state = makeStateDir()
      addWorkspace(state, 'demo', {runtime: runtimeRecord('stopped', process.pid)})
      const error = await rejection(openStoppedWorkspace(state, 'demo'))
      expect(error.message).to.match(/live VM process \(pid \d+\) although its record says "stopped"/)
      expect(error.exitCode).to.equal(4)
    })

    it('refuses a live recorded pid that started with the VM, and not one reused by a later process', async () => {
      // This process started seconds ago: as the pid of a VM recorded an hour ago it can only be a reused one.
      const hourAgo = new Date(Date.now() - 3_600_000).toISOString()
      const now = new Date().toISOString()
      for (const [startedAt, refused] of [[hourAgo, false], [now, true]] as const) {
        const state = makeStateDir()
        addWorkspace(state, 'demo', {runtime: {...(runtimeRecord('stopped', process.pid) as object), startedAt}})
        if (refused) expect((await rejection(openStoppedWorkspace(state, 'demo'))).exitCode).to.equal(4)
        else expect((await openStoppedWorkspace(state, 'demo')).name).to.equal('demo')
      }
    })

    it('accepts a stopped workspace whose recorded pid is gone', async () => {
      const state = makeStateDir()
      const child = spawn('true')
      await new Promise(resolve => {
        child.on('exit', resolve)
      })
      addWorkspace(state, 'demo', {runtime: runtimeRecord('stopped', child.pid)})
      expect((await openStoppedWorkspace(state, 'demo')).name).to.equal('demo')
    })

    describe('runtime lock', () => {
      let holder: ChildProcess | undefined

      afterEach(() => holder?.kill('SIGKILL'))

      it('refuses a workspace whose VM holds .runtime.lock', async function () {
        requireTools(this, 'flock')
        const {lock, state} = haltedWithLockFile()
        expect(await isFileLocked(lock)).to.equal(false)
        holder = await holdExclusively(lock)
        const error = await rejection(openStoppedWorkspace(state, 'demo'))
        expect(error.message).to.match(/locked by a running VM/)
        expect(error.exitCode).to.equal(4)
      })

      it('holds the lease while the disk is read: no VM can start, another commit can still read', async function () {
        requireTools(this, 'flock')
        const {lock, state} = haltedWithLockFile()
        const tryExclusive = (): number => spawnSync('flock', ['--exclusive', '--nonblock', lock, 'true']).status ?? -1
        const workspace = await openStoppedWorkspace(state, 'demo')
        const lease = await leaseStoppedWorkspace(workspace)
        try {
          expect(lease).to.not.equal(undefined)
          expect(tryExclusive(), 'a VM start (exclusive lock) while the disk is read').to.not.equal(0)
          // A second commit sees only a shared lock, which is not a VM.
          expect(await isFileLocked(lock)).to.equal(false)
          const second = await leaseStoppedWorkspace(await openStoppedWorkspace(state, 'demo'))
          await second?.release()
        } finally {
          await lease?.release()
        }

        expect(tryExclusive(), 'a VM start once the lease is released').to.equal(0)
      })

      it('refuses to read when a VM took the lease after the first look', async function () {
        requireTools(this, 'flock')
        const {lock, state} = haltedWithLockFile()
        const workspace = await openStoppedWorkspace(state, 'demo')
        holder = await holdExclusively(lock)
        const error = await rejection(leaseStoppedWorkspace(workspace))
        expect(error.message).to.match(/locked by a running VM/)
        expect(error.exitCode).to.equal(4)
      })

      it('refuses to read when the record turned live after the first look', async () => {
        const {state} = haltedWithLockFile()
        const workspace = await openStoppedWorkspace(state, 'demo')
        writeFileSync(path.join(state, 'demo', 'event.json'), JSON.stringify({state: 'running'}))
        const error = await rejection(leaseStoppedWorkspace(workspace))
        expect(error.message).to.match(/is running/)
        expect(error.exitCode).to.equal(4)
      })
    })

    it('says not found for an unknown workspace', async () => {
      const error = await rejection(openStoppedWorkspace(makeStateDir(), 'ghost'))
      expect(error.message).to.match(/workspace "ghost" not found/)
      expect(error.exitCode).to.equal(3)
    })

    it('says the rootfs is missing when the workspace has none', async () => {
      const state = makeStateDir()
      addWorkspace(state, 'demo', {rootfs: null})
      const error = await rejection(openStoppedWorkspace(state, 'demo'))
      expect(error.message).to.match(/workspace rootfs not found: .*rootfs\.ext4/)
      expect(error.exitCode).to.equal(3)
    })
  })

  describe('manifest', () => {
    it('carries image_defaults (Go field names)', async () => {
      const defaults = imageDefaultsFrom(await loadIs(), {
        image_cmd: ['ignored'],
        image_defaults: {
          Cmd: ['serve'], Env: ['A=1'], ExposedPorts: ['8080/tcp'], Labels: {a: 'b'}, StopSignal: 'SIGTERM', User: 'app', Volumes: ['/data'], WorkingDir: '/srv',
        },
      })
      expect(defaults).to.deep.equal({
        Cmd: ['serve'],
        Env: ['A=1'],
        ExposedPorts: ['8080/tcp'],
        Labels: {a: 'b'},
        StopSignal: 'SIGTERM',
        User: 'app',
        Volumes: ['/data'],
        WorkingDir: '/srv',
      })
    })

    it('falls back to image_env, image_entrypoint, image_cmd', async () => {
      expect(imageDefaultsFrom(await loadIs(), {image_cmd: ['serve'], image_entrypoint: ['/init'], image_env: ['PATH=/usr/bin']})).to.deep.equal({
        Cmd: ['serve'],
        Entrypoint: ['/init'],
        Env: ['PATH=/usr/bin'],
      })
    })

    it('finds the guest architecture from the guest-init artifact', async () => {
      const state = makeStateDir()
      addWorkspace(state, 'demo', {manifest: {name: 'demo'}, rootfs: null})
      const paths = workspacePaths(state, 'demo')
      mkdirSync(path.join(paths.workspaceDir, 'artifacts'))
      writeFileSync(path.join(paths.workspaceDir, 'artifacts', 'microagent-guestinit-aarch64-0123abcd'), '')
      expect((await readWorkspaceManifest(paths)).arch).to.equal('arm64')
    })

    it('prefers an explicit arch field', async () => {
      const state = makeStateDir()
      addWorkspace(state, 'demo', {manifest: {arch: 'x86_64'}, rootfs: null})
      expect((await readWorkspaceManifest(workspacePaths(state, 'demo'))).arch).to.equal('amd64')
    })
  })
})
