import {expect} from 'chai'
import {execFileSync} from 'node:child_process'
import {createHash, randomBytes} from 'node:crypto'
import {
  closeSync, linkSync, mkdirSync, openSync, readFileSync, writeFileSync, writeSync,
} from 'node:fs'
import path from 'node:path'

import type {Entry, Skip} from '../../../src/lib/extractor/extractor.js'

import {DebugfsExtractor} from '../../../src/lib/extractor/debugfs.js'
import {rejection} from '../../helpers/assert.js'
import {
  buildExt4, debugfsRead, runDebugfsWrite, tempDir,
} from '../../helpers/ext4.js'
import {
  ACL, BIG_XATTR, buildFidelityImage, CAPABILITY, DEEP, type FidelityImage, NAMES,
} from '../../helpers/fidelity.js'
import {requireTools} from '../../helpers/tools.js'

interface Seen extends Omit<Entry, 'content'> {
  sha256?: string
}

async function extractAll(
  disk: string,
  extractor = new DebugfsExtractor(),
  prune?: (path: Buffer) => boolean,
): Promise<{entries: Map<string, Seen>; order: string[]; skips: Skip[]}> {
  const entries = new Map<string, Seen>()
  const order: string[] = []
  const skips: Skip[] = []
  for await (const entry of extractor.entries(disk, {onSkip: skip => skips.push(skip), prune})) {
    const {content, ...rest} = entry
    const seen: Seen = rest
    if (content) {
      const hash = createHash('sha256')
      for await (const chunk of content()) hash.update(chunk as Buffer)
      seen.sha256 = hash.digest('hex')
    }

    const key = entry.path.toString('latin1')
    order.push(key)
    entries.set(key, seen)
  }

  return {entries, order, skips}
}

function sha(data: Buffer | string): string {
  return createHash('sha256').update(data).digest('hex')
}

/** Every regular file's bytes as `debugfs cat` gives them: the reference the direct reads must match. */
async function expectSameAsCat(file: string): Promise<number> {
  const {entries} = await extractAll(file)
  let files = 0
  for (const [name, entry] of entries) {
    if (entry.type !== 'file' || entry.size === 0) continue
    const cat = Buffer.from(debugfsRead(file, `cat <${entry.inode}>`), 'latin1')
    expect(entry.sha256, name).to.equal(sha(cat))
    files++
  }

  return files
}

/** An image whose root directory block had `from` overwritten with `to` (same length), as a hostile guest could. */
function editedRootEntry(name: string, from: string, to: Buffer): string {
  const file = buildExt4(path.join(tempDir(), `${name}.ext4`), {
    mke2fsOptions: ['-b', '1024', '-O', '^metadata_csum,^dir_index'],
    tree(root) {
      writeFileSync(path.join(root, from), 'x')
      writeFileSync(path.join(root, 'other'), 'y')
    },
  })
  const block = Number(debugfsRead(file, 'bmap <2> 0').trim())
  const disk = readFileSync(file)
  const dirBlock = disk.subarray(block * 1024, (block + 1) * 1024)
  to.copy(dirBlock, dirBlock.indexOf(from))
  writeFileSync(file, disk)
  return file
}

const failure = (disk: string, extractor?: DebugfsExtractor) => rejection(extractAll(disk, extractor))

async function read(entry: Entry): Promise<string> {
  const chunks: Buffer[] = []
  for await (const chunk of entry.content!()) chunks.push(chunk as Buffer)
  return sha(Buffer.concat(chunks))
}

describe('extractor/debugfs (real debugfs, real ext4)', () => {
  let image: FidelityImage
  let result: Awaited<ReturnType<typeof extractAll>>

  before(async function () {
    requireTools(this, 'debugfs', 'mke2fs', 'python3', 'mkfifo')
    image = buildFidelityImage()
    result = await extractAll(image.file)
  })

  const get = (p: string): Seen => {
    const entry = result.entries.get(p)
    if (!entry) throw new Error(`no entry ${JSON.stringify(p)}`)
    return entry
  }

  it('walks depth first with names sorted bytewise, parents first', () => {
    const {order} = result
    expect(order.indexOf('bin')).to.be.below(order.indexOf('bin/both'))
    expect(order.slice(order.indexOf('bin'), order.indexOf('bin') + 5)).to.deep.equal(['bin', 'bin/both', 'bin/ping', 'bin/su', 'bin/wall'])
    const names = order.filter(p => !p.includes('/'))
    expect(names).to.deep.equal([...names].sort((a, b) => Buffer.compare(Buffer.from(a, 'latin1'), Buffer.from(b, 'latin1'))))
  })

  it('yields a pruned directory but not what is under it', async () => {
    const pruned = await extractAll(image.file, undefined, p => p.toString() === 'usr' || p.toString() === 'links')
    expect(pruned.order).to.include.members(['usr', 'links'])
    expect(pruned.order.filter(p => p.startsWith('usr/') || p.startsWith('links/'))).to.deep.equal([])
    expect(pruned.order).to.deep.equal(result.order.filter(p => !p.startsWith('usr/') && !p.startsWith('links/')))
  })

  it('keeps content, byte for byte, sparse and empty files included', () => {
    expect(get('etc/motd').sha256).to.equal(sha('demo\n'))
    expect(get('data/random')).to.include({sha256: image.random.sha256, size: image.random.size})
    expect(get('data/sparse')).to.include({sha256: image.sparse.sha256, size: image.sparse.size})
    expect(get('data/empty').size).to.equal(0)
  })

  it('keeps setuid, setgid, sticky and mode 000', () => {
    expect(get('bin/su').mode).to.equal(0o4755)
    expect(get('bin/wall').mode).to.equal(0o2755)
    expect(get('bin/both').mode).to.equal(0o6755)
    expect(get('tmp').mode).to.equal(0o1777)
    expect(get('var/mail').mode).to.equal(0o2775)
    expect(get('secret').mode).to.equal(0)
  })

  it('keeps the original owners, not the current user', () => {
    expect(get('home/user')).to.include({gid: 1000, uid: 1000})
    expect(get('home/user/notes')).to.include({gid: 1000, uid: 1000})
    expect(get('data/random')).to.include({gid: 200_000, uid: 100_000})
    expect(get('data/empty')).to.include({gid: 3_000_001, uid: 3_000_000})
    expect(get('bin/wall')).to.include({gid: 5, uid: 0})
  })

  it('keeps mtimes with nanoseconds, before 1970 and after 2038', () => {
    expect(get('etc/motd').mtime).to.deep.equal({nsec: 123_456_789, sec: 1_700_000_000})
    expect(get('data/old').mtime).to.deep.equal({nsec: 0, sec: -1})
    expect(get('data/future').mtime).to.deep.equal({nsec: 0, sec: 4_102_444_800})
  })

  it('reports both names of a hard-linked inode with one inode number', () => {
    expect(get('usr/bin/perl').inode).to.equal(get('usr/bin/perl5.36').inode)
  })

  it('keeps symlink targets raw and never follows them', () => {
    expect(get('links/abs').linkTarget?.toString()).to.equal('/etc/motd')
    expect(get('links/rel').linkTarget?.toString()).to.equal('../etc/motd')
    expect(get('links/dangling').linkTarget?.toString()).to.equal('nowhere')
    expect(get('links/escape').linkTarget?.toString()).to.equal('../../../../etc/passwd')
    expect(get('links/long').linkTarget?.toString()).to.equal('x'.repeat(200))
    expect(get('links/dir')).to.include({type: 'symlink'})
  })

  it('keeps devices and fifos, skips the socket and lost+found', () => {
    expect(get('dev/null')).to.include({
      devMajor: 1, devMinor: 3, mode: 0o666, type: 'char',
    })
    expect(get('dev/sda')).to.include({
      devMajor: 8, devMinor: 0, gid: 6, mode: 0o660, type: 'block',
    })
    expect(get('dev/wide')).to.include({devMajor: 4095, devMinor: 1_048_575, type: 'char'})
    expect(get('run/fifo').type).to.equal('fifo')
    expect(result.entries.has('run/sock')).to.equal(false)
    expect(result.entries.has('lost+found')).to.equal(false)
    expect(result.skips.map(s => [s.reason, s.path.toString()])).to.deep.include.members([
      ['lost+found', 'lost+found'],
      ['socket', 'run/sock'],
    ])
  })

  it('keeps xattrs: text, 100-byte binary, file capability, ACL, on a directory', () => {
    expect(Object.fromEntries(get('etc/motd').xattrs.map(([k, v]) => [k, v.toString('hex')]))).to.deep.equal({
      'user.big': BIG_XATTR.toString('hex'),
      'user.comment': Buffer.from('hello').toString('hex'),
    })
    expect(get('bin/ping').xattrs).to.deep.equal([['security.capability', CAPABILITY]])
    expect(get('data').xattrs).to.deep.equal([['system.posix_acl_access', ACL]])
    expect(get('tmp').xattrs).to.deep.equal([['user.dirattr', Buffer.from('yes')]])
  })

  it('leaves out overlayfs bookkeeping xattrs and reports them', () => {
    expect(get('var').xattrs).to.deep.equal([])
    expect(result.skips.some(s => s.reason === 'xattr' && s.detail === 'trusted.overlay.opaque')).to.equal(true)
  })

  it('keeps long, control-character and non-UTF-8 names as raw bytes', () => {
    for (const name of Object.values(NAMES)) {
      expect(get(`names/${name.toString('latin1')}`).sha256).to.equal(sha(name))
    }

    expect(get(`${DEEP.join('/')}/leaf`).sha256).to.equal(sha('deep'))
  })

  it('yields .wh.* names as they are (the layer decides)', () => {
    expect(result.entries.has('.wh.lookalike')).to.equal(true)
  })

  it('reads an image with 128-byte inodes (no nanoseconds, no extra fields)', async () => {
    const file = buildExt4(path.join(tempDir(), 'small.ext4'), {
      commands: ['sif /f mtime 0x6553f100'],
      mke2fsOptions: ['-I', '128'],
      tree: root => writeFileSync(path.join(root, 'f'), 'x'),
    })
    const {entries} = await extractAll(file)
    expect(entries.get('f')?.mtime).to.deep.equal({nsec: 0, sec: 1_700_000_000})
  })

  it('never writes to the disk', async () => {
    const before = sha(readFileSync(image.file))
    await extractAll(image.file)
    expect(sha(readFileSync(image.file))).to.equal(before)
  })

  describe('hostile and broken disks', () => {
    it('refuses a directory entry whose name holds "/" (it cannot be parsed safely)', async () => {
      const file = buildExt4(path.join(tempDir(), 'slash.ext4'), {tree: root => writeFileSync(path.join(root, 'f'), 'x')})
      // debugfs's mknod takes its argument as a raw name: "/escape" becomes one entry named "/escape".
      runDebugfsWrite(file, ['mknod /escape p'])
      expect(debugfsRead(file, 'ls -p /')).to.contain('//escape/')
      const error = await failure(file)
      expect(error.message).to.match(/a name holds "\/"/)
      expect(error.exitCode).to.equal(5)
    })

    it('refuses a hard-linked directory (a loop in the directory graph)', async () => {
      const file = buildExt4(path.join(tempDir(), 'loop.ext4'), {tree: root => writeFileSync(path.join(root, 'f'), 'x')})
      runDebugfsWrite(file, ['mkdir /a', 'mkdir /a/b', 'link /a /a/b/up'])
      const error = await failure(file)
      expect(error.message).to.match(/appears twice|loop/)
    })

    it('refuses two entries with the same name', async () => {
      const file = buildExt4(path.join(tempDir(), 'dup.ext4'), {
        mke2fsOptions: ['-b', '1024', '-O', '^metadata_csum,^dir_index'],
        tree(root) {
          writeFileSync(path.join(root, 'fa'), 'a')
          writeFileSync(path.join(root, 'fb'), 'b')
        },
      })
      // Rename "fb" to "fa" in the root directory block itself, as a hostile guest could.
      const block = Number(debugfsRead(file, 'bmap <2> 0').trim())
      const disk = readFileSync(file)
      const dirBlock = disk.subarray(block * 1024, (block + 1) * 1024)
      dirBlock.write('fa', dirBlock.indexOf('fb'), 'latin1')
      writeFileSync(file, disk)
      const error = await failure(file)
      expect(error.message).to.match(/two entries named "fa"/)
    })

    it('reads a name holding NUL cut at the NUL, as C strings (and the kernel) see it: never a separator', async () => {
      const file = editedRootEntry('nul', 'abc', Buffer.from([0x61, 0x00, 0x63]))
      const {entries} = await extractAll(file)
      expect([...entries.keys()].sort()).to.deep.equal(['a', 'other'])
      expect(entries.get('a')).to.include({sha256: sha('x')})
    })

    it('skips a second ".." entry that points elsewhere: no path component is ever ".."', async () => {
      const file = editedRootEntry('dotdot', 'ab', Buffer.from('..'))
      const {entries} = await extractAll(file)
      expect([...entries.keys()].sort()).to.deep.equal(['other'])
    })

    it('keeps content and hard links right when link counts lie', async () => {
      const file = buildExt4(path.join(tempDir(), 'links.ext4'), {
        commands: ['sif /single links_count 7', 'sif /pair links_count 1'],
        tree(root) {
          writeFileSync(path.join(root, 'single'), 'one name\n')
          writeFileSync(path.join(root, 'pair'), 'two names\n')
          linkSync(path.join(root, 'pair'), path.join(root, 'pair2'))
        },
      })
      const {entries} = await extractAll(file)
      expect(entries.get('single')).to.include({sha256: sha('one name\n')})
      expect(entries.get('pair')?.inode).to.equal(entries.get('pair2')?.inode)
      expect(entries.get('pair2')).to.include({sha256: sha('two names\n')})
    })

    it('walks a directory of 5,000 entries in bounded batches, in name order', async () => {
      // 5,000: mke2fs -d needs ~20 s for 20,000 names in one folder (the walk itself reads those in 0.7 s).
      const file = buildExt4(path.join(tempDir(), 'wide.ext4'), {
        mke2fsOptions: ['-N', '6000'],
        sizeMiB: 32,
        tree(root) {
          mkdirSync(path.join(root, 'wide'))
          for (let i = 0; i < 5000; i++) writeFileSync(path.join(root, 'wide', `entry-${i}`), `${i}`)
        },
      })
      const {entries, order} = await extractAll(file)
      const wide = order.filter(p => p.startsWith('wide/'))
      expect(wide).to.have.length(5000)
      expect(wide).to.deep.equal([...wide].sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b))))
      expect(entries.get('wide/entry-4321')).to.include({sha256: sha('4321')})
    })

    it('fails on a file that is not ext4', async () => {
      const file = path.join(tempDir(), 'junk.img')
      writeFileSync(file, Buffer.alloc(4 * 1024 * 1024, 0x41))
      const error = await failure(file)
      expect(error.exitCode).to.equal(5)
      expect(error.message).to.match(/is not an ext2\/3\/4 filesystem/)
    })

    it('fails cleanly when debugfs is missing', async () => {
      const error = await failure(image.file, new DebugfsExtractor({binary: '/nonexistent/debugfs'}))
      expect(error.message).to.match(/debugfs not found at "\/nonexistent\/debugfs"/)
      expect(error.exitCode).to.equal(5)
    })

    it('refuses a file claiming more bytes than the whole filesystem, at once', async () => {
      const file = buildExt4(path.join(tempDir(), 'huge.ext4'), {commands: ['sif /f size 0x10000000000'], tree: root => writeFileSync(path.join(root, 'f'), 'x')})
      expect(debugfsRead(file, 'stat /f')).to.match(/Size: 1099511627776\n/)
      const error = await failure(file)
      expect(error.exitCode).to.equal(5)
      expect(error.message).to.match(/"\/f" claims 1099511627776 bytes, more than the whole filesystem/)
    })

    it('fails when an inode is damaged (corrupt extent)', async () => {
      const file = buildExt4(path.join(tempDir(), 'corrupt.ext4'), {tree: root => writeFileSync(path.join(root, 'f'), 'x'.repeat(10_000))})
      // Zero the extent header's magic: the inode still stats, its content cannot be read.
      runDebugfsWrite(file, ['sif /f block[0] 0'])
      const error = await failure(file)
      expect(error.exitCode).to.equal(5)
    })
  })

  describe('content read through block maps', () => {
    it('reads unwritten extents as zeros, not the stale blocks under them, and ignores blocks past the end', async () => {
      const file = buildExt4(path.join(tempDir(), 'unwritten.ext4'), {
        commands: ['rm /junk', 'write /dev/null /fresh', 'fallocate /fresh 0 63', 'sif /fresh size 65536', 'fallocate /keep 10 19'],
        tree(root) {
          writeFileSync(path.join(root, 'junk'), Buffer.alloc(65_536, 0xAA))
          writeFileSync(path.join(root, 'keep'), 'k'.repeat(5000))
        },
      })
      const fresh = debugfsRead(file, 'stat /fresh')
      expect(fresh).to.match(/\(0-63\[u\]\):\d+-\d+/)
      expect(debugfsRead(file, 'stat /keep')).to.match(/\(10-19\[u\]\):/)
      // The test can fail: the blocks under the unwritten extent still hold the deleted file's bytes.
      const first = Number(/\(0-63\[u\]\):(\d+)/.exec(fresh)![1])
      expect(readFileSync(file).subarray(first * 1024, first * 1024 + 16)).to.deep.equal(Buffer.alloc(16, 0xAA))
      const {entries} = await extractAll(file)
      expect(entries.get('fresh')).to.include({sha256: sha(Buffer.alloc(65_536)), size: 65_536})
      expect(entries.get('keep')).to.include({sha256: sha('k'.repeat(5000)), size: 5000})
    })

    it('reads files with an extent tree, holes and a partial last block as cat does', async () => {
      const file = buildExt4(path.join(tempDir(), 'fragmented.ext4'), {
        tree(root) {
          const fd = openSync(path.join(root, 'fragmented'), 'w')
          // A block of data every other 8 KiB: 40 extents, more than the inode holds, so a tree.
          for (let i = 0; i < 40; i++) writeSync(fd, Buffer.alloc(1024, 65 + (i % 26)), 0, 1024, i * 8192)
          closeSync(fd)
          writeFileSync(path.join(root, 'odd'), randomBytes(300_001))
        },
      })
      expect(debugfsRead(file, 'stat /fragmented')).to.match(/\(ETB0\):/)
      expect(await expectSameAsCat(file)).to.equal(2)
    })

    it('reads block-mapped files (no extents: indirect and double-indirect blocks) as cat does', async () => {
      const file = buildExt4(path.join(tempDir(), 'blockmapped.ext4'), {
        mke2fsOptions: ['-O', '^extent,^64bit'],
        tree(root) {
          writeFileSync(path.join(root, 'big'), randomBytes(300_000))
          const fd = openSync(path.join(root, 'sparse'), 'w')
          writeSync(fd, Buffer.from('end'), 0, 3, 200_000)
          closeSync(fd)
        },
      })
      expect(debugfsRead(file, 'stat /big')).to.match(/BLOCKS:\n.*\(DIND\)/)
      expect(await expectSameAsCat(file)).to.equal(2)
    })

    it('reads inline data through cat', async () => {
      const file = buildExt4(path.join(tempDir(), 'inline.ext4'), {
        mke2fsOptions: ['-O', 'inline_data'],
        tree: root => writeFileSync(path.join(root, 'tiny'), 'inline bytes\n'),
      })
      expect(debugfsRead(file, 'stat /tiny')).to.match(/Size of inline data/)
      const {entries} = await extractAll(file)
      expect(entries.get('tiny')).to.include({sha256: sha('inline bytes\n')})
    })
  })

  it('gives each inode its ctime, generation and link count, and the disk its UUID', async () => {
    const file = buildExt4(path.join(tempDir(), 'ids.ext4'), {
      tree(root) {
        writeFileSync(path.join(root, 'a'), 'x')
        linkSync(path.join(root, 'a'), path.join(root, 'b'))
      },
    })
    runDebugfsWrite(file, ['sif /a generation 77', 'sif /a ctime 0x12345678'])
    const extractor = new DebugfsExtractor()
    const uuid = /Filesystem UUID:\s+(\S+)/.exec(execFileSync('dumpe2fs', ['-h', file], {encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore']}))![1]
    expect(await extractor.filesystemUuid(file)).to.equal(uuid)
    const found: Entry[] = []
    for await (const entry of extractor.entries(file)) found.push(entry)
    const a = found.find(e => e.path.toString() === 'a')!
    expect(a).to.deep.include({ctime: {nsec: 0, sec: 0x12_34_56_78}, generation: 77, links: 2})
  })

  it('lets content be read again, before the next entry and after the walk until beforeClose resolves', async () => {
    for (const options of [[], ['-O', 'inline_data']]) {
      const file = buildExt4(path.join(tempDir(), 'again.ext4'), {
        mke2fsOptions: options,
        tree(root) {
          writeFileSync(path.join(root, 'small'), 'inline bytes\n')
          writeFileSync(path.join(root, 'z-big'), Buffer.alloc(200_000, 9))
        },
      })
      const kept: Entry[] = []
      const late: string[] = []
      const extractor = new DebugfsExtractor()
      for await (const entry of extractor.entries(file, {
        async beforeClose() {
          for (const earlier of kept) late.push(await read(earlier))
        },
      })) {
        if (entry.type !== 'file') continue
        expect(await read(entry), entry.path.toString()).to.equal(await read(entry))
        kept.push(entry)
      }

      expect(late, options.join(' ')).to.deep.equal([sha('inline bytes\n'), sha(Buffer.alloc(200_000, 9))])
    }
  })

  it('is usable from a shell pipeline check: e2fsck agrees the fixture is clean', () => {
    execFileSync('e2fsck', ['-fn', image.file], {stdio: 'ignore'})
  })
})
