import {expect} from 'chai'
import {execFileSync} from 'node:child_process'
import {
  appendFileSync, chmodSync, linkSync, lstatSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, symlinkSync,
  truncateSync, unlinkSync, utimesSync, writeFileSync,
} from 'node:fs'
import path from 'node:path'

import {commitWorkspace} from '../../../src/lib/commit.js'
import {TREE_RECORD} from '../../../src/lib/incremental/tree-record.js'
import {layoutPath} from '../../../src/lib/oci/layout.js'
import {ImageRecords} from '../../../src/lib/oci/records.js'
import {tempDir} from '../../helpers/ext4.js'
import {random as prng} from '../../helpers/fuzz.js'
import {addWorkspace, makeStateDir, runtimeRecord} from '../../helpers/state.js'
import {requireRoot, requireTools} from '../../helpers/tools.js'
import {treeDifferences, unpackAndDescribe} from '../../helpers/unpacked.js'

type Random = () => number

const pick = <T>(random: Random, items: readonly T[]): T => items[Math.floor(random() * items.length)]

function bytes(random: Random, size: number): Buffer {
  const out = Buffer.alloc(size)
  const seed = Math.floor(random() * 256)
  for (let i = 0; i < size; i++) out[i] = (seed + i * 31 + (i >> 9)) & 0xFF
  return out
}

/** Every path under `root` (lost+found left out), relative, split by kind. */
function inventory(root: string): {all: string[]; dirs: string[]; files: string[]; links: string[];} {
  const found = {
    all: [] as string[], dirs: [''], files: [] as string[], links: [] as string[],
  }
  const walk = (rel: string): void => {
    for (const name of readdirSync(path.join(root, rel)).sort()) {
      if (rel === '' && name === 'lost+found') continue
      const child = rel ? `${rel}/${name}` : name
      const info = lstatSync(path.join(root, child))
      found.all.push(child)
      if (info.isDirectory()) {
        found.dirs.push(child)
        walk(child)
      } else if (info.isSymbolicLink()) found.links.push(child)
      else if (info.isFile()) found.files.push(child)
    }
  }

  walk('')
  return found
}

const NAMES = ['a', 'b', 'c', 'dd', 'e.txt', 'f-g', 'z', 'Z', 'long-name-here']

interface Context {
  at: (rel: string) => string
  dir?: string
  file?: string
  fresh: () => string
  random: Random
  tree: ReturnType<typeof inventory>
}

/** Whether anything is at `file`, a dangling symlink included (existsSync follows links, and calls one absent). */
function present(file: string): boolean {
  return lstatSync(file, {throwIfNoEntry: false}) !== undefined
}

/** Guest-like changes through the kernel; each returns what it did, for the failure message. */
const OPS: ((c: Context) => string)[] = [
  ({at, fresh, random}: Context): string => {
    const rel = fresh()
    if (present(at(rel))) return 'nothing'
    const size = random() < 0.1 ? 1024 * 1024 + Math.floor(random() * 512 * 1024) : Math.floor(random() * 9000)
    writeFileSync(at(rel), bytes(random, size))
    return `write ${rel} (${size})`
  },
  ({at, file, random}: Context): string => {
    if (!file) return 'nothing'
    appendFileSync(at(file), bytes(random, 1 + Math.floor(random() * 3000)))
    return `append ${file}`
  },
  ({at, file}: Context): string => {
    if (!file) return 'nothing'
    truncateSync(at(file), Math.floor(lstatSync(at(file)).size / 2))
    return `truncate ${file}`
  },
  ({at, file}: Context): string => {
    if (!file) return 'nothing'
    unlinkSync(at(file))
    return `delete ${file}`
  },
  ({at, dir}: Context): string => {
    if (!dir) return 'nothing'
    rmSync(at(dir), {recursive: true})
    return `delete tree ${dir}`
  },
  ({at, fresh, random, tree}: Context): string => {
    const source = pick(random, tree.all)
    const target = fresh()
    if (!source || present(at(target)) || target.startsWith(`${source}/`)) return 'nothing'
    renameSync(at(source), at(target))
    return `rename ${source} ${target}`
  },
  ({at, file}: Context): string => {
    if (!file) return 'nothing'
    unlinkSync(at(file))
    mkdirSync(at(file))
    writeFileSync(at(`${file}/inside`), 'now a directory\n')
    return `file->dir ${file}`
  },
  ({at, dir}: Context): string => {
    if (!dir) return 'nothing'
    rmSync(at(dir), {recursive: true})
    writeFileSync(at(dir), 'now a file\n')
    return `dir->file ${dir}`
  },
  ({at, random, tree}: Context): string => {
    const target = pick(random, [...tree.files, ...tree.dirs.slice(1)])
    if (!target) return 'nothing'
    const mode = pick(random, [0o644, 0o600, 0o755, 0o4755, 0o1777, 0o2750])
    chmodSync(at(target), mode)
    return `chmod ${target} ${mode.toString(8)}`
  },
  ({at, random, tree}: Context): string => {
    const target = pick(random, tree.all)
    if (!target) return 'nothing'
    const id = pick(random, [0, 1, 1000, 65_534, 100_000])
    execFileSync('chown', ['-h', `${id}:${pick(random, [0, 5, id])}`, at(target)])
    return `chown ${target} ${id}`
  },
  ({at, random, tree}: Context): string => {
    const target = pick(random, [...tree.files, ...tree.dirs.slice(1)])
    if (!target) return 'nothing'
    if (random() < 0.3) {
      const had = execFileSync('getfattr', ['-h', '-d', '-m', '-', at(target)], {encoding: 'utf8'}).includes('user.tag')
      if (!had) return 'nothing'
      execFileSync('setfattr', ['-h', '-x', 'user.tag', at(target)])
      return `setfattr -x ${target}`
    }

    execFileSync('setfattr', ['-h', '-n', 'user.tag', '-v', `v${Math.floor(random() * 1000)}`, at(target)])
    return `setfattr ${target}`
  },
  ({at, file, fresh}: Context): string => {
    const target = fresh()
    if (!file || present(at(target))) return 'nothing'
    linkSync(at(file), at(target))
    return `link ${file} ${target}`
  },
  ({at, random, tree}: Context): string => {
    const linked = tree.files.filter(f => lstatSync(at(f)).nlink > 1)
    if (linked.length === 0) return 'nothing'
    const victim = pick(random, linked)
    unlinkSync(at(victim))
    return `unlink ${victim}`
  },
  ({at, fresh, random, tree}: Context): string => {
    const link = tree.links.length > 0 && random() < 0.7 ? pick(random, tree.links) : fresh()
    if (present(at(link)) && !lstatSync(at(link)).isSymbolicLink()) return 'nothing'
    rmSync(at(link), {force: true})
    symlinkSync(pick(random, ['target-a', '../up', '/abs/path', 'b/c/d']), at(link))
    return `symlink ${link}`
  },
  ({at, random, tree}: Context): string => {
    const target = pick(random, [...tree.files, ...tree.dirs.slice(1)])
    if (!target) return 'nothing'
    const when = 1_600_000_000 + Math.floor(random() * 1e6) + 0.25
    utimesSync(at(target), when, when)
    return `touch ${target}`
  },
  ({at, file}: Context): string => {
    if (!file) return 'nothing'
    // The same bytes written again and the mtime put back: a new ctime, nothing an image would show.
    const info = lstatSync(at(file), {bigint: true})
    writeFileSync(at(file), readFileSync(at(file)))
    const ns = info.mtimeNs
    execFileSync('touch', ['-m', '-d', `@${ns / 1_000_000_000n}.${(ns % 1_000_000_000n).toString().padStart(9, '0')}`, at(file)])
    return `rewrite ${file} unchanged`
  },
  ({at, fresh, random}: Context): string => {
    const rel = fresh()
    if (present(at(rel))) return 'nothing'
    if (random() < 0.5) execFileSync('mkfifo', [at(rel)])
    else execFileSync('mknod', [at(rel), 'c', '1', String(3 + Math.floor(random() * 5))])
    return `mknod ${rel}`
  },
  ({at, fresh, random}: Context): string => {
    const rel = fresh()
    if (present(at(rel))) return 'nothing'
    mkdirSync(at(rel))
    for (let i = 0; i < 3; i++) writeFileSync(at(`${rel}/f${i}`), bytes(random, Math.floor(random() * 500)))
    return `mkdir ${rel}`
  },
]

/** One random change from OPS. */
function change(root: string, random: Random): string {
  const tree = inventory(root)
  const at = (rel: string): string => path.join(root, rel)
  const fresh = (): string => {
    const dir = pick(random, tree.dirs)
    const name = `${pick(random, NAMES)}${Math.floor(random() * 5)}`
    const rel = dir ? `${dir}/${name}` : name
    return present(at(rel)) ? `${rel}-n` : rel
  }

  const file = tree.files.length > 0 ? pick(random, tree.files) : undefined
  const dir = tree.dirs.length > 1 ? pick(random, tree.dirs.slice(1)) : undefined
  return pick(random, OPS)({
    at, dir, file, fresh, random, tree,
  })
}

function baseTree(root: string): void {
  for (const dir of ['usr', 'usr/bin', 'usr/lib', 'etc', 'var', 'var/log', 'home', 'home/u']) mkdirSync(path.join(root, dir))
  for (let i = 0; i < 30; i++) writeFileSync(path.join(root, pick(() => (i * 0.37) % 1, ['usr/bin', 'usr/lib', 'etc', 'var/log', 'home/u']), `file${i}`), `content ${i}\n`.repeat(i * 40))
  writeFileSync(path.join(root, 'usr/bin/big'), Buffer.alloc(1536 * 1024, 7))
  linkSync(path.join(root, 'usr/bin/file0'), path.join(root, 'usr/bin/file0-link'))
  linkSync(path.join(root, 'usr/bin/file0'), path.join(root, 'home/u/file0-link'))
  symlinkSync('file0', path.join(root, 'usr/bin/sym'))
  symlinkSync('/etc', path.join(root, 'home/u/etc-link'))
}

describe('commit --parent equals a full commit (property test: random guest changes through the kernel, unpacked by umoci as root)', function () {
  this.timeout(240_000)
  const seed = Number(process.env.CHANGESET_SEED ?? Date.now() % 1_000_000)
  const random = prng(seed)

  before(function () {
    requireRoot(this, 'loop-mount ext4 images and unpack as root')
    requireTools(this, 'debugfs', 'mke2fs', 'umoci', 'getfattr', 'setfattr', 'mount')
    console.log(`      seed ${seed} (CHANGESET_SEED=${seed} to replay)`)
  })

  it('gives the same tree for every sequence, from the tree record and from the layers alike', async () => {
    const state = makeStateDir()
    const rootfs = addWorkspace(state, 'demo', {runtime: runtimeRecord('stopped'), spec: {sizeMiB: 64, tree: baseTree}})
    const layout = layoutPath(state)
    const mnt = tempDir('plugin-image-mnt-')
    const created = new Date('2026-01-01T00:00:00Z')
    const commit = (reference: string, parent?: string) => commitWorkspace({
      created, parent, reference, stateDir: state, workspace: 'demo',
    })
    let parent = 'local/stack:0'
    // Identities are trusted only when older than the record by a margin: past it, the base's untouched
    // directories are left unwalked (UnchangedDirs), and that path is checked too.
    await new Promise(resolve => {
      setTimeout(resolve, 3000)
    })
    await commit(parent)
    let unwalked = 0
    const steps = Number(process.env.CHANGESET_STEPS ?? 20)
    for (let step = 1; step <= steps; step++) {
      const count = step === 1 ? 0 : 1 + Math.floor(random() * 6)
      const done: string[] = []
      execFileSync('mount', ['-o', 'loop', rootfs, mnt])
      try {
        for (let i = 0; i < count; i++) done.push(change(mnt, random))
      } finally {
        execFileSync('umount', [mnt])
      }

      const what = `seed ${seed}, step ${step}: ${done.join('; ') || 'nothing changed'}`
      if (process.env.CHANGESET_VERBOSE) console.log(`      ${what}`)
      const stacked = await commit(`local/stack:${step}`, parent)
      await commit(`local/full:${step}`)
      expect(stacked.parent?.tree, what).to.equal('record')
      unwalked += stacked.parent!.unwalked.entries
      expect(stacked.layers, what).to.equal(step + 1)
      const differences = treeDifferences(unpackAndDescribe(layout, `local/stack:${step}`), unpackAndDescribe(layout, `local/full:${step}`))
      expect(differences, what).to.deep.equal([])

      // Without the parent's tree record, the layers are read instead, and the diff layer is the same, byte for byte.
      const parentDigest = stacked.parent!.digest
      const records = new ImageRecords(layout)
      const kept = await records.read(parentDigest, TREE_RECORD)
      await records.remove(parentDigest)
      const fromLayers = await commit(`local/stack-layers:${step}`, parent)
      await records.write(parentDigest, TREE_RECORD, kept!)
      expect(fromLayers.parent?.tree, what).to.equal('layers')
      expect(fromLayers.diff_id, what).to.equal(stacked.diff_id)
      expect(fromLayers.digest, what).to.equal(stacked.digest)
      parent = `local/stack:${step}`
    }

    expect(unwalked, 'entries left unwalked over all steps').to.be.greaterThan(0)
  })
})
