import {Config} from '@oclif/core'
import {expect} from 'chai'
import path from 'node:path'
import {fileURLToPath} from 'node:url'

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..')

describe('help text of every command', () => {
  let config: Config

  before(async () => {
    config = await Config.load(root)
  })

  it('declares the image topic and finds every command', () => {
    expect(config.topics.find(t => t.name === 'image')?.description).to.equal('Work with committed OCI images')
    expect(config.commands.filter(c => c.pluginName === '@microagent/plugin-image').map(c => c.id).sort()).to.deep.equal([
      'commit', 'image:inspect', 'image:list', 'image:ls', 'image:push', 'image:remove', 'image:rm', 'image:tag',
    ])
  })

  it('gives each command a summary, a description and examples, and each flag a summary and a description', () => {
    for (const command of config.commands.filter(c => c.pluginName === '@microagent/plugin-image')) {
      expect(command.summary, command.id).to.match(/^[A-Z].*\.$/)
      expect(command.description?.length ?? 0, command.id).to.be.greaterThan(80)
      expect(command.examples?.length ?? 0, command.id).to.be.greaterThan(0)
      for (const [name, flag] of Object.entries(command.flags)) {
        // --json comes from oclif with its own text.
        if (name === 'json') continue
        expect(flag.summary, `${command.id} --${name}`).to.be.a('string').and.not.equal('')
        expect(flag.description, `${command.id} --${name}`).to.be.a('string').and.not.equal('')
      }

      for (const [name, arg] of Object.entries(command.args)) expect(arg.description, `${command.id} <${name}>`).to.be.a('string').and.not.equal('')
    }
  })

  it('lists the options of --arch, --backend and --compression', () => {
    const commit = config.findCommand('commit')!
    expect(commit.flags.compression).to.include({type: 'option'})
    expect((commit.flags.compression as {options?: string[]}).options).to.deep.equal(['gzip', 'zstd', 'none'])
    expect((commit.flags.arch as {options?: string[]}).options).to.include.members(['amd64', 'arm64', 'x86_64', 'aarch64'])
    expect((commit.flags.backend as {options?: string[]}).options).to.deep.equal(['linux-kvm', 'apple-vf', 'firecracker'])
  })
})
