import {expect} from 'chai'
import {truncateSync, writeFileSync} from 'node:fs'
import path from 'node:path'

import type {BlockRun} from '../../../src/lib/extractor/debugfs-parse.js'

import {BlockReader, READ_CHUNK} from '../../../src/lib/extractor/block-reader.js'
import {buildExt4, debugfsRead, tempDir} from '../../helpers/ext4.js'
import {requireTools} from '../../helpers/tools.js'

const run = (logical: number, physical: number, length: number, unwritten = false): BlockRun => ({
  length, logical, physical, unwritten,
})

async function read(reader: BlockReader, runs: BlockRun[], size: number): Promise<Buffer> {
  const pieces: Buffer[] = []
  for (const piece of reader.content(runs, size, '"/f"')) {
    expect(piece.length).to.be.at.most(READ_CHUNK)
    pieces.push(Buffer.from(piece))
  }

  return Buffer.concat(pieces)
}

describe('extractor/block-reader', () => {
  let file: string
  let block = 0
  let reader: BlockReader

  before(async function () {
    requireTools(this, 'debugfs', 'mke2fs')
    file = buildExt4(path.join(tempDir(), 'blocks.ext4'), {tree: root => writeFileSync(path.join(root, 'f'), 'abcdefgh'.repeat(512))})
    block = Number(debugfsRead(file, 'bmap /f 0').trim())
    reader = await BlockReader.open(file)
  })

  after(() => reader.close())

  it('knows the geometry from the superblock', () => {
    expect(reader).to.include({blockSize: 1024, blocksCount: 16_384})
  })

  it('reads mapped blocks, fills holes and unwritten runs with zeros, and stops at the size', async () => {
    const data = await read(reader, [run(1, block, 1), run(3, block + 1, 1, true), run(4, block + 2, 2)], 5 * 1024 + 10)
    const expected = Buffer.concat([
      Buffer.alloc(1024),
      Buffer.from('abcdefgh'.repeat(128)),
      Buffer.alloc(2048),
      Buffer.from('abcdefgh'.repeat(256)).subarray(0, 1024 + 10),
    ])
    expect(data.equals(expected)).to.equal(true)
  })

  it('reads a file with no map as one hole, in bounded pieces', async () => {
    expect((await read(reader, [], 3 * READ_CHUNK + 1)).equals(Buffer.alloc(3 * READ_CHUNK + 1))).to.equal(true)
  })

  it('ignores runs past the end of the file', async () => {
    expect((await read(reader, [run(0, block, 1), run(50, 1, 1)], 4)).toString()).to.equal('abcd')
  })

  for (const [what, runs, message] of [
    ['a run past the end of the filesystem', [run(0, 16_380, 10)], /points outside the filesystem/],
    ['block 0', [run(0, 0, 1)], /points outside the filesystem/],
    ['overlapping runs', [run(0, 100, 4), run(2, 200, 1)], /overlaps itself or is out of order/],
    ['runs out of order', [run(4, 100, 1), run(0, 200, 1)], /overlaps itself or is out of order/],
  ] as const) {
    it(`refuses ${what}`, async () => {
      expect(() => [...reader.content([...runs], 8 * 1024, '"/f"')]).to.throw(message)
    })
  }

  it('fails on an image file shorter than its filesystem', async () => {
    const short = path.join(tempDir(), 'short.ext4')
    writeFileSync(short, Buffer.alloc(0))
    buildExt4(short)
    truncateSync(short, 8 * 1024 * 1024)
    const truncated = await BlockReader.open(short)
    try {
      expect(() => [...truncated.content([run(0, 12_000, 1)], 1024, '"/f"')]).to.throw(/past the end of the image file/)
    } finally {
      truncated.close()
    }
  })
})
