import {Command, Config} from '@oclif/core'
import {runHook} from '@oclif/test'
import {expect} from 'chai'
import path from 'node:path'
import {fileURLToPath} from 'node:url'

import {currentContext, setCurrentContext} from '../../src/lib/workspace/context.js'

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..')

describe('prerun hook', () => {
  let CommitCommand: Command.Class

  before(async () => {
    const config = await Config.load(root)
    CommitCommand = await config.findCommand('commit')!.load()
  })

  beforeEach(() => setCurrentContext(undefined))

  afterEach(() => setCurrentContext(undefined))

  it("resolves --state-dir, --backend and --mode for this plugin's commands", async () => {
    const {error} = await runHook('prerun', {argv: ['demo', 'local/x:1', '--state-dir', '/tmp/s', '--backend', 'firecracker', '--mode', 'ax'], Command: CommitCommand}, {root})
    expect(error).to.equal(undefined)
    expect(currentContext()).to.deep.equal({backend: 'linux-kvm', mode: 'ax', stateDir: '/tmp/s'})
  })

  it('falls back to the environment', async () => {
    process.env.MICROAGENT_STATE_DIR = '/tmp/from-env'
    try {
      await runHook('prerun', {argv: ['demo', 'local/x:1', '--json'], Command: CommitCommand}, {root})
      expect(currentContext()?.stateDir).to.equal('/tmp/from-env')
    } finally {
      delete process.env.MICROAGENT_STATE_DIR
    }
  })

  it('leaves bad input to the command (which reports it with the right exit code)', async () => {
    const {error} = await runHook('prerun', {argv: ['demo', 'local/x:1', '--backend', 'qemu'], Command: CommitCommand}, {root})
    expect(error).to.equal(undefined)
    expect(currentContext()).to.equal(undefined)
  })

  it("ignores other plugins' commands", async () => {
    class Foreign extends Command {
      static override flags = {}

      async run(): Promise<void> {}
    }

    Object.assign(Foreign, {id: 'foreign', plugin: {name: 'some-other-plugin'}})
    await runHook('prerun', {argv: ['--state-dir', '/tmp/s'], Command: Foreign}, {root})
    expect(currentContext()).to.equal(undefined)
  })
})
