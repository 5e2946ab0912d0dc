import {expect} from 'chai'
import {readFileSync} from 'node:fs'
import path from 'node:path'
import {fileURLToPath} from 'node:url'

import {EXIT_CODES} from '../src/lib/errors.js'

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')

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
})
