import {expect} from 'chai'
import {createHash} from 'node:crypto'
import {writeFileSync} from 'node:fs'
import path from 'node:path'
import {Readable} from 'node:stream'

import type {Entry} from '../../../src/lib/extractor/extractor.js'

import {type FakeEntry, FakeExtractor} from '../../../src/lib/extractor/fake.js'
import {pathMatcher} from '../../../src/lib/layer/exclude.js'
import {tarLayer} from '../../../src/lib/layer/layer.js'
import {checkEntryPath, checkLayerPath} from '../../../src/lib/layer/names.js'
import {emptyLayerStats} from '../../../src/lib/layer/stats.js'
import {tempDir} from '../../helpers/ext4.js'
import {dumpTar, hex} from '../../helpers/oci.js'
import {requireTools} from '../../helpers/tools.js'

const base = {
  gid: 0, mtime: {nsec: 0, sec: 1_700_000_000}, size: 0, uid: 0, xattrs: [],
}

async function layer(items: FakeEntry[], exclude?: string[]): Promise<{file: string; stats: ReturnType<typeof emptyLayerStats>}> {
  const stats = emptyLayerStats()
  const chunks: Buffer[] = []
  for await (const chunk of tarLayer(new FakeExtractor(items).entries('disk'), stats, {exclude: pathMatcher(exclude)})) chunks.push(chunk)
  const file = path.join(tempDir(), 'layer.tar')
  writeFileSync(file, Buffer.concat(chunks))
  return {file, stats}
}

const dir = (p: string, inode: number): FakeEntry => ({
  ...base, inode, mode: 0o755, path: p, type: 'directory',
})
const file = (p: string, inode: number, data = p): FakeEntry => ({
  ...base, data, inode, mode: 0o644, path: p, type: 'file',
})

const same = (p: string, inode: number): FakeEntry => ({
  ...base, data: 'same', inode, mode: 0o644, path: p, type: 'file',
})

describe('layer', () => {
  before(function () {
    requireTools(this, 'python3')
  })

  it('writes the first name of an inode with its content and later names as hard links', async () => {
    const {file, stats} = await layer([
      {
        ...base, data: 'perl', inode: 7, mode: 0o755, path: 'perl', type: 'file',
      },
      {
        ...base, data: 'perl', inode: 7, mode: 0o755, path: 'perl5', type: 'file',
      },
      {
        ...base, inode: 8, mode: 0o644, path: 'fifo', type: 'fifo',
      },
      {
        ...base, inode: 8, mode: 0o644, path: 'fifo2', type: 'fifo',
      },
    ])
    const records = dumpTar(file)
    expect(records.map(r => [r.type, Buffer.from(r.path, 'hex').toString(), Buffer.from(r.link, 'hex').toString()])).to.deep.equal([
      ['file', 'perl', ''],
      ['hardlink', 'perl5', 'perl'],
      ['fifo', 'fifo', ''],
      ['hardlink', 'fifo2', 'fifo'],
    ])
    expect(stats).to.include({entries: 4, files: 1, hardlinks: 2})
  })

  it('remembers names only for inodes the extractor says have other links (when it says so)', async () => {
    const {file, stats} = await layer([
      {...same('a', 7), links: 2},
      {...same('b', 7), links: 2},
      // A corrupt count of 1 for a shared inode gives two whole files, never a link to a forgotten name.
      {...same('c', 9), links: 1},
      {...same('d', 9), links: 1},
    ])
    expect(dumpTar(file).map(r => [r.type, Buffer.from(r.path, 'hex').toString()])).to.deep.equal([
      ['file', 'a'], ['hardlink', 'b'], ['file', 'c'], ['file', 'd'],
    ])
    expect(stats).to.include({files: 3, hardlinks: 1})
  })

  it('leaves out excluded paths with their subtrees; a hard link whose first name is excluded keeps its content', async () => {
    const {file: tar, stats} = await layer([
      dir('var', 2),
      dir('var/cache', 3),
      dir('var/cache/apt', 4),
      file('var/cache/apt/pkg', 5),
      file('var/cache/link', 6, 'shared'),
      file('var/cachex', 7),
      dir('var/log', 8),
      file('var/log/a.log', 9),
      file('var/log/keep.txt', 10),
      file('var/same', 6, 'shared'),
    ], ['var/cache', '**/*.log'])
    const records = dumpTar(tar)
    expect(records.map(r => [r.type, Buffer.from(r.path, 'hex').toString()])).to.deep.equal([
      ['directory', 'var/'],
      ['file', 'var/cachex'],
      ['directory', 'var/log/'],
      ['file', 'var/log/keep.txt'],
      ['file', 'var/same'],
    ])
    expect(records.at(-1)?.sha256).to.equal(createHash('sha256').update('shared').digest('hex'))
    expect(stats.skipped.excluded).to.equal(2)
    expect(stats).to.include({entries: 5, hardlinks: 0})
  })

  it('keeps directories apart from hard links even when they share an inode number', async () => {
    const {file} = await layer([
      {
        ...base, inode: 9, mode: 0o755, path: 'd', type: 'directory',
      },
      {
        ...base, data: 'x', inode: 10, mode: 0o4755, path: 'd/su', type: 'file', uid: 0,
      },
    ])
    const [dir, su] = dumpTar(file)
    expect(dir).to.include({mode: 0o755, path: hex('d/'), type: 'directory'})
    expect(su).to.include({mode: 0o4755, type: 'file'})
  })

  it('leaves out .wh.* names and their subtrees, counting the top one', async () => {
    const {file, stats} = await layer([
      {
        ...base, inode: 2, mode: 0o755, path: '.wh.dir', type: 'directory',
      },
      {
        ...base, data: 'x', inode: 3, mode: 0o644, path: '.wh.dir/f', type: 'file',
      },
      {
        ...base, data: 'y', inode: 4, mode: 0o644, path: 'keep', type: 'file',
      },
    ])
    expect(dumpTar(file).map(r => r.path)).to.deep.equal([hex('keep')])
    expect(stats.skipped.whiteoutNames).to.equal(1)
  })

  for (const bad of ['/etc/passwd', '../x', 'a/../../x', 'a//b', './a', 'a/.', 'a\u0000b', '']) {
    it(`refuses the unsafe path ${JSON.stringify(bad)}`, async () => {
      try {
        await layer([{
          ...base, data: 'x', inode: 5, mode: 0o644, path: bad, type: 'file',
        }])
        expect.fail('accepted')
      } catch (error) {
        expect((error as Error).message).to.match(/unsafe path/)
        expect((error as {exitCode: number}).exitCode).to.equal(5)
      }
    })
  }

  it('accepts names that only look odd', () => {
    expect(checkEntryPath(Buffer.from('...')).length).to.equal(1)
    expect(checkEntryPath(Buffer.from('a/..b/.c')).length).to.equal(3)
    for (const name of ['...', 'a/..b/.c', '.wh', 'a/.whx/b', 'a/x.wh.b']) expect(checkLayerPath(Buffer.from(name)), name).to.equal(undefined)
  })

  it('says where a path first has a .wh.* name, in one pass that refuses what checkEntryPath refuses', () => {
    expect(checkLayerPath(Buffer.from('.wh.')), '.wh.').to.equal('last')
    expect(checkLayerPath(Buffer.from('a/b/.wh.c')), 'a/b/.wh.c').to.equal('last')
    expect(checkLayerPath(Buffer.from('a/.wh.b/c')), 'a/.wh.b/c').to.equal('ancestor')
    expect(checkLayerPath(Buffer.from('.wh.a/.wh.b')), '.wh.a/.wh.b').to.equal('ancestor')
    for (const bad of ['/etc/passwd', '../x', 'a/../../x', 'a//b', './a', 'a/.', 'a/..', 'a\u0000b', '', 'a/']) {
      expect(() => checkLayerPath(Buffer.from(bad)), JSON.stringify(bad)).to.throw(/unsafe path/)
      expect(() => checkEntryPath(Buffer.from(bad)), JSON.stringify(bad)).to.throw(/unsafe path/)
    }
  })

  it('writes the same tar and hashes from content read synchronously or streamed, in one piece or many, small or large', async () => {
    const big = Buffer.alloc(3 * 1024 * 1024 + 5, 7)
    const contents = [Buffer.from('one piece'), Buffer.concat([Buffer.from('x'.repeat(1000)), Buffer.from('y'.repeat(700))]), big]
    const pieces = (data: Buffer): Buffer[] => (data.length < 100 ? [data] : [data.subarray(0, 1), data.subarray(1, 513), data.subarray(513)])
    const run = async (read: 'stream' | 'sync'): Promise<{hashes: (string | undefined)[]; tar: Buffer}> => {
      const entries: Entry[] = contents.map((data, i) => ({
        ...base,
        content: () => (read === 'sync' ? pieces(data) : Readable.from(pieces(data))),
        inode: 10 + i,
        links: 1,
        mode: 0o644,
        path: Buffer.from(`f${i}`),
        size: data.length,
        type: 'file',
      }))
      async function * all(): AsyncGenerator<Entry> {
        yield * entries
      }

      const hashes: (string | undefined)[] = []
      const chunks: Buffer[] = []
      for await (const chunk of tarLayer(all(), emptyLayerStats(), {
        onArchived(_, sha256) {
          hashes.push(sha256)
        },
      })) chunks.push(Buffer.from(chunk))
      return {hashes, tar: Buffer.concat(chunks)}
    }

    const sync = await run('sync')
    const streamed = await run('stream')
    expect(sync.tar.equals(streamed.tar)).to.equal(true)
    expect(sync.hashes).to.deep.equal(contents.map(data => createHash('sha256').update(data).digest('hex')))
    expect(streamed.hashes).to.deep.equal(sync.hashes)
    // The big file is in the tar whole, at a block boundary after its header.
    expect(sync.tar.indexOf(big)).to.be.above(0)
    expect(sync.tar.indexOf(big) % 512).to.equal(0)
  })

  it('fails when a file read synchronously yields more bytes than its size', async () => {
    const entry: Entry = {
      ...base, content: () => [Buffer.from('abcd')], inode: 6, mode: 0o644, path: Buffer.from('long'), size: 3, type: 'file',
    }
    async function * one(): AsyncGenerator<Entry> {
      yield entry
    }

    try {
      for await (const chunk of tarLayer(one(), emptyLayerStats())) expect(chunk).to.be.instanceOf(Buffer)
      expect.fail('accepted')
    } catch (error) {
      expect((error as Error).message).to.match(/gave 4 bytes, 3 expected/)
    }
  })

  it('fails when a file yields fewer bytes than its size', async () => {
    const entry: Entry = {
      ...base,
      content: () => Readable.from([Buffer.from('ab')]),
      inode: 6,
      mode: 0o644,
      path: Buffer.from('short'),
      size: 3,
      type: 'file',
    }
    const stats = emptyLayerStats()
    async function * one(): AsyncGenerator<Entry> {
      yield entry
    }

    try {
      for await (const chunk of tarLayer(one(), stats)) expect(chunk).to.be.instanceOf(Buffer)
      expect.fail('accepted')
    } catch (error) {
      expect((error as Error).message).to.match(/gave 2 bytes, 3 expected/)
    }
  })
})
