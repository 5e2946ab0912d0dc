import {expect} from 'chai'
import {execFileSync} from 'node:child_process'
import {createHash} from 'node:crypto'
import {existsSync, readFileSync, writeFileSync} from 'node:fs'
import path from 'node:path'
import {fileURLToPath} from 'node:url'

import {DebugfsExtractor} from '../../../src/lib/extractor/debugfs.js'
import {crc32c, InodeReader} from '../../../src/lib/extractor/inode-reader.js'
import {isMicroagentError} from '../../../src/lib/support/errors.js'
import {tempDir} from '../../helpers/ext4.js'
import {buildFidelityImage} from '../../helpers/fidelity.js'
import {baseImage, mutate, random} from '../../helpers/fuzz.js'
import {requireRoot, requireTools} from '../../helpers/tools.js'

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..')

interface Sources {
  debugfs: number
  direct: number
}

/**
 * Everything an extraction yields, in order, as comparable text: every Entry field, the content's digest,
 * and the skips; or the refusal (exit 5) when the extraction fails.
 */
async function extract(file: string, inodes: 'debugfs' | 'direct', sources: Sources): Promise<string[]> {
  const extractor = new DebugfsExtractor({idleTimeoutMs: 10_000, inodes, onInode: source => sources[source]++})
  const lines: string[] = []
  try {
    for await (const entry of extractor.entries(file, {onSkip: skip => lines.push(`skip ${skip.reason} ${skip.path.toString('hex')} ${skip.detail ?? ''}`)})) {
      const hash = createHash('sha256')
      let bytes = 0
      if (entry.content) {
        for await (const piece of entry.content()) {
          hash.update(piece)
          bytes += piece.length
        }
      }

      const {content, linkTarget, path: entryPath, xattrs, ...rest} = entry
      lines.push(JSON.stringify({
        ...rest,
        content: content ? `${bytes}:${hash.digest('hex')}` : undefined,
        linkTarget: linkTarget?.toString('hex'),
        path: entryPath.toString('hex'),
        xattrs: xattrs.map(([name, value]) => [name, value.toString('hex')]),
      }))
    }
  } catch (error) {
    if (!isMicroagentError(error) || error.exitCode !== 5) throw error
    // Which reader noticed first may differ (the message names what it read), the outcome may not.
    lines.push('refused')
  }

  return lines
}

/** Fails on the first line where the two readers differ, showing it. */
async function expectSame(file: string, what: string): Promise<{direct: Sources; lines: string[]}> {
  const reference = await extract(file, 'debugfs', {debugfs: 0, direct: 0})
  const sources = {debugfs: 0, direct: 0}
  const direct = await extract(file, 'direct', sources)
  // A refused disk commits nothing: how far each got before the refusal depends on when debugfs's complaint
  // about a listing fetched ahead arrives, so only the outcome is compared.
  if (reference.includes('refused') || direct.includes('refused')) {
    expect(direct.includes('refused') && reference.includes('refused'), `${what}: only one reader refused: debugfs ${reference.at(-1)}, direct ${direct.at(-1)}`).to.equal(true)
    return {direct: sources, lines: reference}
  }

  for (let i = 0; i < Math.max(reference.length, direct.length); i++) {
    expect(direct[i], `${what}: entry ${i} differs (debugfs stat vs direct inode reads)`).to.equal(reference[i])
  }

  return {direct: sources, lines: reference}
}

describe('InodeReader against debugfs stat (differential)', function () {
  this.timeout(600_000)

  beforeEach(function () {
    requireTools(this, 'debugfs', 'mke2fs')
  })

  it('computes CRC32C as ext4 does (RFC 3720 check value, with the final inversion applied here)', () => {
    expect((crc32c(0xFF_FF_FF_FF, Buffer.from('123456789')) ^ 0xFF_FF_FF_FF) >>> 0).to.equal(0xE3_06_92_83)
  })

  it('computes CRC32C by slices of 8 bytes exactly as bit by bit, for every length, offset and seed', () => {
    const bitwise = (seed: number, bytes: Buffer, start: number, end: number): number => {
      let c = seed
      for (let i = start; i < end; i++) {
        c ^= bytes[i]
        for (let k = 0; k < 8; k++) c = c & 1 ? 0x82_F6_3B_78 ^ (c >>> 1) : c >>> 1
      }

      return c >>> 0
    }

    const next = random(0xC4_C3)
    const bytes = Buffer.from(Array.from({length: 300}, () => Math.floor(next() * 256)))
    for (let length = 0; length <= 40; length++) {
      for (const start of [0, 1, 3, 7, 8, 255]) {
        const seed = Math.floor(next() * 2 ** 32)
        expect(crc32c(seed, bytes, start, start + length), `length ${length} at ${start}`).to.equal(bitwise(seed, bytes, start, start + length))
      }
    }
  })

  it('yields exactly what debugfs stat yields on the fidelity image, reading most inodes directly', async () => {
    const {file} = buildFidelityImage()
    const {direct, lines} = await expectSame(file, 'fidelity image')
    expect(lines).to.not.include('refused')
    // Files with xattrs go to debugfs; everything else is read directly.
    expect(direct.direct, JSON.stringify(direct)).to.be.above(30)
    expect(direct.debugfs, JSON.stringify(direct)).to.be.above(0)
  })

  it('yields exactly what debugfs stat yields (or refuses alike) on every image of the fuzz corpus', async () => {
    const cases = Number(process.env.FUZZ_CASES ?? 200)
    const seed = Number(process.env.FUZZ_SEED ?? 0x5E_ED)
    const {file: baseFile, regions} = baseImage()
    const base = (await expectSame(baseFile, 'fuzz base image')).lines
    expect(base).to.not.include('refused')
    const baseBytes = readFileSync(baseFile)
    const next = random(seed)
    const dir = tempDir('plugin-image-diff-')
    const outcomes = {extracted: 0, refused: 0}
    for (let i = 0; i < cases; i++) {
      const {bytes, edits} = mutate(baseBytes, regions, next)
      const file = path.join(dir, `case-${i}.ext4`)
      writeFileSync(file, bytes)
      const {lines} = await expectSame(file, `fuzz case ${i} (seed ${seed}, edits ${edits.join(' ')}, image ${file})`)
      outcomes[lines.includes('refused') ? 'refused' : 'extracted']++
    }

    expect(outcomes.extracted, JSON.stringify(outcomes)).to.be.above(0)
    expect(outcomes.refused, JSON.stringify(outcomes)).to.be.above(0)
  })

  it('yields exactly what debugfs stat yields on the scale shape (a kernel-built tree), with no inode left to debugfs', async function () {
    requireRoot(this, 'loop-mount an image to build the scale fixture')
    // SCALE_IMAGE compares a bench fixture instead (e.g. /tmp/microagent-bench/scale-500k.state/workspaces/bench/rootfs.ext4).
    let file = process.env.SCALE_IMAGE
    if (!file) {
      file = path.join(tempDir('plugin-image-scale-'), 'scale.ext4')
      execFileSync('node', [path.join(root, 'scripts', 'scale-fixture.mjs'), file, '20', '1000', '10000'])
    }

    expect(existsSync(file)).to.equal(true)
    const {direct, lines} = await expectSame(file, 'scale fixture')
    expect(lines).to.not.include('refused')
    expect(direct.debugfs).to.equal(0)
    expect(direct.direct).to.equal(lines.filter(line => !line.startsWith('skip ')).length)
  })

  it('leaves a filesystem whose layout it does not model to debugfs', () => {
    expect(InodeReader.open('/dev/null')).to.equal('a truncated superblock')
  })
})
