import {readdirSync, readFileSync} from 'node:fs'
import path from 'node:path'

import {removeTempDirs, tempDirs} from './helpers/ext4.js'
import {PASSWORD} from './helpers/registry.js'
import {planted} from './helpers/secrets.js'

// oclif picks src (not dist) only when NODE_ENV says test; set it before any Config.load().
process.env.NODE_ENV = 'test'

/**
 * Everything this process writes to stdout and stderr (in-process command runs, the reporter): at the end
 * of the run none of it may hold the password the registry tests use. Child processes' output is checked
 * by the tests that run them.
 */
const written: string[] = []
for (const stream of [process.stdout, process.stderr]) {
  const write = stream.write.bind(stream) as (...args: unknown[]) => boolean
  stream.write = ((...args: unknown[]) => {
    written.push(String(args[0]))
    return write(...args)
  }) as typeof stream.write
}

/** Logs, and the files of local image records (`records/sha256/<hex>/*`), under a temp folder. */
function logFiles(dir: string, depth = 0): string[] {
  if (depth > 6) return []
  let names: string[]
  try {
    names = readdirSync(dir)
  } catch {
    return []
  }

  return names.flatMap(name => {
    const file = path.join(dir, name)
    const isRecord = dir.includes(`${path.sep}records${path.sep}sha256${path.sep}`)
    return name.endsWith('.log') || isRecord ? [file] : logFiles(file, depth + 1)
  })
}

/** Mocha root hooks: secrets are checked, then temp folders go (unless KEEP_TEST_TMP=1 keeps them to look at). */
export const mochaHooks = {
  afterAll(): void {
    const secrets = [PASSWORD, ...planted]
    const leaks = [
      ...written.filter(text => secrets.some(secret => text.includes(secret))).map(text => `output: ${text.slice(0, 200)}`),
      ...tempDirs().flatMap(dir => logFiles(dir)).filter(file => {
        const text = readFileSync(file, 'latin1')
        return secrets.some(secret => text.includes(secret))
      }).map(file => `log or record: ${file}`),
    ]
    if (process.env.KEEP_TEST_TMP !== '1' && leaks.length === 0) removeTempDirs()
    if (leaks.length > 0) throw new Error(`the test registry password or a planted secret appeared where it must not:\n${leaks.join('\n')}`)
  },
}
