import {expect} from 'chai'
import {createHash} from 'node:crypto'
import {
  copyFileSync, mkdirSync, readFileSync, rmSync, symlinkSync, writeFileSync,
} from 'node:fs'
import path from 'node:path'

import {isMicroagentError} from '../../../src/lib/errors.js'
import {DebugfsExtractor} from '../../../src/lib/extractor/debugfs.js'
import {emptyLayerStats, tarLayer} from '../../../src/lib/layer.js'
import {buildExt4, debugfsRead, tempDir} from '../../helpers/ext4.js'
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

/** mulberry32: small, seedable, good enough to pick offsets. */
function random(seed: number): () => number {
  let state = seed >>> 0
  return () => {
    state = (state + 0x6D_2B_79_F5) >>> 0
    let t = state
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296
  }
}

interface Region {
  end: number
  start: number
  weight: number
}

function baseImage(): {file: string; regions: Region[]} {
  const file = buildExt4(path.join(tempDir(), 'fuzz-base.ext4'), {
    commands: [
      'cd /dev',
      'mknod null c 1 3',
      'cd /',
      'sif /etc/shadow uid 0',
      'sif /etc/shadow mode 0100640',
      'ea_set /bin/ping security.capability -f /dev/null',
      'ea_set /etc user.note hello',
      'symlink /etc/long-link /' + 'x'.repeat(120),
    ],
    // No checksums: a mutated inode is then parsed, not just refused for its checksum.
    mke2fsOptions: ['-b', '1024', '-N', '128', '-O', '^has_journal,^metadata_csum'],
    sizeMiB: 2,
    tree(root) {
      for (const dir of ['bin', 'dev', 'etc/ssl', 'usr/share/doc/pkg', 'tmp']) mkdirSync(path.join(root, dir), {recursive: true})
      writeFileSync(path.join(root, 'bin', 'ping'), Buffer.alloc(5000, 0x7F))
      writeFileSync(path.join(root, 'etc', 'shadow'), 'root:*:1::::::\n')
      writeFileSync(path.join(root, 'etc', 'ssl', 'cert.pem'), 'c'.repeat(3000))
      writeFileSync(path.join(root, 'usr', 'share', 'doc', 'pkg', 'README'), 'r'.repeat(20_000))
      for (let i = 0; i < 30; i++) writeFileSync(path.join(root, 'usr', 'share', 'doc', `f${i}`), `file ${i}\n`)
      symlinkSync('../etc/shadow', path.join(root, 'tmp', 'link'))
    },
  })
  const blockSize = 1024
  const stats = debugfsRead(file, 'stats')
  const regions: Region[] = [{end: 4 * blockSize, start: blockSize, weight: 1}]
  for (const match of stats.matchAll(/Inode table at (\d+)-(\d+)/g)) {
    regions.push({end: (Number(match[2]) + 1) * blockSize, start: Number(match[1]) * blockSize, weight: 6})
  }

  for (const dir of ['/', '/etc', '/usr/share/doc', '/bin']) {
    for (const block of debugfsRead(file, `blocks ${dir}`).trim().split(/\s+/).map(Number)) {
      regions.push({end: (block + 1) * blockSize, start: block * blockSize, weight: 3})
    }
  }

  return {file, regions}
}

function pickRegion(regions: Region[], point: number): Region {
  let left = point
  for (const region of regions) {
    left -= region.weight
    if (left < 0) return region
  }

  return regions[0]
}

/** A bit flip most often, else the values parsers trip on: all ones, zero, anything. */
function newByte(old: number, next: () => number): number {
  const kind = next()
  if (kind < 0.4) return old ^ (1 << Math.floor(next() * 8))
  if (kind < 0.6) return 0xFF
  if (kind < 0.7) return 0
  return Math.floor(next() * 256)
}

function mutate(base: Buffer, regions: Region[], next: () => number): {bytes: Buffer; edits: string[]} {
  const bytes = Buffer.from(base)
  const edits: string[] = []
  const total = regions.reduce((sum, r) => sum + r.weight, 0)
  const count = 1 + Math.floor(next() * 4)
  for (let i = 0; i < count; i++) {
    const region = pickRegion(regions, next() * total)
    const offset = region.start + Math.floor(next() * (region.end - region.start))
    const value = newByte(bytes[offset], next)
    edits.push(`${offset}:${bytes[offset]}->${value}`)
    bytes[offset] = value
  }

  return {bytes, edits}
}

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
