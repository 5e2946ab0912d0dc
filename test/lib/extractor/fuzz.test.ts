import {expect} from 'chai'
import {createHash} from 'node:crypto'
import {
  copyFileSync, readFileSync, rmSync, writeFileSync,
} from 'node:fs'
import path from 'node:path'

import {DebugfsExtractor} from '../../../src/lib/extractor/debugfs.js'
import {tarLayer} from '../../../src/lib/layer/layer.js'
import {emptyLayerStats} from '../../../src/lib/layer/stats.js'
import {isMicroagentError} from '../../../src/lib/support/errors.js'
import {tempDir} from '../../helpers/ext4.js'
import {baseImage, mutate, random} from '../../helpers/fuzz.js'
import {requireTools} from '../../helpers/tools.js'

/**
 * A bounded fuzz run: a small valid image, mutated a few bytes at a time where ext4 keeps its metadata
 * (inode table, directory blocks, group descriptors), extracted into a tar. Every case must end, within a
 * time bound, either with a layer whose every path is safe or with the extraction error (exit 5), and must
 * leave the image file as it was. FUZZ_CASES (default 200) and FUZZ_SEED (default fixed, for a repeatable CI
 * run; any number for a new one) tune it.
 */
const CASES = Number(process.env.FUZZ_CASES ?? 200)
const SEED = Number(process.env.FUZZ_SEED ?? 0x5E_ED)
const CASE_TIMEOUT_MS = 20_000
const PARALLEL = 4

type Outcome = 'extracted' | 'refused'

/** Extracts `file` into a tar (read and dropped); throws on anything but success or the extraction error. */
async function runCase(file: string): Promise<Outcome> {
  const extractor = new DebugfsExtractor({idleTimeoutMs: 5000})
  const paths: Buffer[] = []
  async function * watched(): AsyncGenerator<import('../../../src/lib/extractor/extractor.js').Entry, void, undefined> {
    for await (const entry of extractor.entries(file)) {
      paths.push(entry.path)
      yield entry
    }
  }

  try {
    // eslint-disable-next-line @typescript-eslint/no-unused-vars
    for await (const _chunk of tarLayer(watched(), emptyLayerStats())) {
      // The bytes themselves are checked by the fidelity tests; here only that they end.
    }
  } catch (error) {
    if (isMicroagentError(error) && error.exitCode === 5) {
      if (process.env.FUZZ_VERBOSE) console.log(error.message)
      return 'refused'
    }

    throw error
  }

  for (const entryPath of paths) {
    const text = entryPath.toString('latin1')
    expect(text.startsWith('/') || text.split('/').some(c => c === '' || c === '.' || c === '..') || text.includes('\0'), text).to.equal(false)
  }

  return 'extracted'
}

describe(`extractor fuzz (${CASES} mutated images, seed ${SEED})`, () => {
  it('never crashes, hangs, escapes the root or writes the image: each case extracts safely or is refused with exit 5', async function () {
    requireTools(this, 'debugfs', 'mke2fs')
    this.timeout(CASES * CASE_TIMEOUT_MS)
    const {file: baseFile, regions} = baseImage()
    expect(await runCase(baseFile), 'the unmutated image').to.equal('extracted')
    const base = readFileSync(baseFile)
    const next = random(SEED)
    const dir = tempDir('plugin-image-fuzz-')
    const outcomes: Record<Outcome, number> = {extracted: 0, refused: 0}
    const cases = Array.from({length: CASES}, (_, i) => ({i, ...mutate(base, regions, next)}))
    let cursor = 0
    const worker = async (): Promise<void> => {
      while (cursor < cases.length) {
        const {bytes, edits, i} = cases[cursor++]
        const file = path.join(dir, `case-${i}.ext4`)
        writeFileSync(file, bytes)
        const before = createHash('sha256').update(bytes).digest('hex')
        let timer: NodeJS.Timeout | undefined
        const timeout = new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new Error(`case ${i} (seed ${SEED}, edits ${edits.join(' ')}) did not end within ${CASE_TIMEOUT_MS} ms`)), CASE_TIMEOUT_MS)
        })
        try {
          outcomes[await Promise.race([runCase(file), timeout])]++
        } catch (error) {
          copyFileSync(file, path.join(dir, `failing-${i}.ext4`))
          throw new Error(`fuzz case ${i} (seed ${SEED}, edits ${edits.join(' ')}, image kept in ${dir}): ${(error as Error).stack}`)
        } finally {
          clearTimeout(timer)
        }

        expect(createHash('sha256').update(readFileSync(file)).digest('hex'), `case ${i} changed the image`).to.equal(before)
        rmSync(file)
      }
    }

    await Promise.all(Array.from({length: PARALLEL}, worker))
    // Both outcomes must occur, or the mutations are not reaching anything (or everything breaks).
    expect(outcomes.extracted, JSON.stringify(outcomes)).to.be.above(0)
    expect(outcomes.refused, JSON.stringify(outcomes)).to.be.above(0)
    console.log(`      fuzz: ${CASES} cases, ${outcomes.extracted} extracted safely, ${outcomes.refused} refused with exit 5`)
  })
})
