import {expect} from 'chai'
import {execFileSync} from 'node:child_process'
import {readFileSync, rmSync} from 'node:fs'
import path from 'node:path'
import {fileURLToPath} from 'node:url'

import {EXIT_CODES} from '../src/lib/support/errors.js'
import {requireTools} from './helpers/tools.js'

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')

/** Demo output without what changes from run to run: the temp folder, the registry port, the progress lines. */
function normalize(text: string): string[] {
  return text
  // Any temp dir: CI's Node 24 run has its own TMPDIR.
  .replaceAll(/(?:\/[\w.-]+)*\/microagent-demo-\w+/g, '<state>')
  .replaceAll(/127\.0\.0\.1:\d+/g, '<registry>')
  .split('\n')
  .filter(line => !/^(Wrote layer: |Writing layer: |sha256:[0-9a-f]{12} {2}\S)/.test(line))
}

/** The lines from `$ export` up to the tar listing. */
function session(text: string): string[] {
  const lines = normalize(text)
  return lines.slice(lines.findIndex(l => l.startsWith('$ export')), lines.findIndex(l => l.startsWith('$ tar'))).join('\n').trim().split('\n')
}

describe('README', () => {
  const readme = readFileSync(path.join(root, 'README.md'), 'utf8')

  it('documents every exit code the code uses, and no other', () => {
    const table = readme.slice(readme.indexOf('| code | class |'))
    const documented = [...table.matchAll(/^\| (\d+) \|/gm)].map(m => Number(m[1]))
    expect(documented.sort((a, b) => a - b)).to.deep.equal(Object.values(EXIT_CODES).sort((a, b) => a - b))
  })

  it('starts with the two commands, install-and-demo and tests', () => {
    const firstBlock = /```sh\n([\s\S]*?)```/.exec(readme)?.[1] ?? ''
    expect(firstBlock).to.match(/^npm ci && npm run demo/m)
    expect(firstBlock).to.match(/^npm test/m)
    const {scripts} = (JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8')) as {scripts: Record<string, string>})
    expect(scripts.demo).to.be.a('string')
    expect(readFileSync(path.join(root, '.ci', 'run'), 'utf8')).to.match(/^npm test$/m)
  })

  it('quotes the type-checked examples in test/fixtures/readme verbatim', () => {
    for (const name of ['lib-api.ts', 'extractor-hook.ts', 'committed-hook.ts']) {
      expect(readme, name).to.contain(readFileSync(path.join(root, 'test', 'fixtures', 'readme', name), 'utf8'))
    }
  })

  describe('session transcript', () => {
    before(function () {
      requireTools(this, 'mke2fs', 'debugfs', 'docker-registry', 'tar')
    })

    it('matches a fresh `npm run demo`, except the temp folder, the port and the progress lines on stderr', () => {
      const section = readme.slice(readme.indexOf('## A session, exactly as printed'))
      const documented = /```console\n([\s\S]*?)```/.exec(section)?.[1] ?? ''
      const fresh = execFileSync(process.execPath, [path.join(root, 'scripts', 'demo.mjs')], {
        encoding: 'utf8', env: {...process.env, DEMO_CLI: path.join(root, 'bin', 'dev.js'), NODE_ENV: 'development'}, stdio: ['ignore', 'pipe', 'pipe'],
      })
      const state = /in ((?:\/[\w.-]+)*\/microagent-demo-\w+)/.exec(fresh)?.[1]
      if (state) rmSync(state, {force: true, recursive: true})
      expect(session(`${documented}\n$ tar`)).to.deep.equal(session(fresh))
      expect(documented).to.match(/^Wrote layer: 15 entries/m)
    })
  })
})
