import {expect} from 'chai'
import {mkdirSync, writeFileSync} from 'node:fs'
import path from 'node:path'

import type {TreeNode} from '../../../src/lib/incremental/tree-record.js'

import {type CommitOptions, type CommitResult, commitWorkspace} from '../../../src/lib/commit.js'
import {openTreeRecord} from '../../../src/lib/incremental/tree-record-reader.js'
import {TREE_RECORD} from '../../../src/lib/incremental/tree-record.js'
import {ImageRecords} from '../../../src/lib/oci/records.js'
import {debugfsRead, runDebugfsWrite, tempDir} from '../../helpers/ext4.js'
import {blobFile, dumpTar} from '../../helpers/oci.js'
import {addWorkspace, makeStateDir, runtimeRecord} from '../../helpers/state.js'
import {requireTools} from '../../helpers/tools.js'

const CREATED = new Date('2026-01-01T00:00:00Z')
const DIRS = ['keep', 'keep/a', 'keep/b', 'other', 'other/x', 'attrs', 'links']

/** The image's tree as its record has it, without what only this disk knows (identities, group keys). */
async function treeOf(result: CommitResult): Promise<object[]> {
  const record = await openTreeRecord(new ImageRecords(result.layout_path).path(result.digest, TREE_RECORD))
  const nodes: object[] = []
  for await (const node of record.nodes()) {
    const rest: Partial<TreeNode> = {...node}
    delete rest.identity
    delete rest.group
    nodes.push({...rest, grouped: node.group !== undefined, path: node.path.toString('latin1')})
  }

  return nodes
}

const members = (result: CommitResult): string[] =>
  dumpTar(blobFile(result.layout_path, result.layer_digest)).map(r => Buffer.from(r.path, 'hex').toString('latin1'))

describe('commit --parent leaves unchanged directories unlisted (UnchangedDirs)', function () {
  this.timeout(120_000)
  let state: string
  let disk: string
  let serial = 0

  const commit = (extra: Partial<CommitOptions> = {}): Promise<CommitResult> =>
    commitWorkspace({
      created: CREATED, reference: `local/u:${++serial}`, stateDir: state, workspace: 'demo', ...extra,
    })

  /** A child of `parent`, and a full commit of the same disk with the same options: their trees must be equal. */
  async function stacked(parent: CommitResult, extra: Partial<CommitOptions> = {}): Promise<CommitResult> {
    const child = await commit({parent: parent.reference, ...extra})
    const full = await commit(extra)
    expect(await treeOf(child)).to.deep.equal(await treeOf(full))
    return child
  }

  beforeEach(function () {
    requireTools(this, 'debugfs', 'mke2fs', 'python3')
    state = makeStateDir()
    disk = addWorkspace(state, 'demo', {
      runtime: runtimeRecord('stopped'),
      spec: {
        sizeMiB: 32,
        tree(root) {
          for (const dir of DIRS) mkdirSync(path.join(root, dir))
          for (const dir of ['keep/a', 'keep/b', 'other/x']) for (let i = 0; i < 5; i++) writeFileSync(path.join(root, dir, `f${i}`), `${dir} ${i}\n`)
          writeFileSync(path.join(root, 'attrs', 'tagged'), 'x\n')
          writeFileSync(path.join(root, 'links', 'one'), 'linked\n')
        },
      },
    })
    // Old ctimes everywhere (the record trusts only identities older than when it was taken, by a margin).
    const paths = ['/', '/lost+found', ...DIRS.map(d => `/${d}`), '/attrs/tagged', '/links/one']
    for (const dir of ['keep/a', 'keep/b', 'other/x']) for (let i = 0; i < 5; i++) paths.push(`/${dir}/f${i}`)
    runDebugfsWrite(disk, ['ea_set /attrs/tagged user.tag yes', 'ln /links/one /links/two', 'sif /links/one links_count 2', ...paths.map(p => `sif ${p} ctime 0x10000000`)])
  })

  it('keeps the subtrees of unchanged directories from the parent without walking them, to the tree a full commit gives', async () => {
    const parent = await commit()
    const child = await stacked(parent)
    expect(members(child)).to.deep.equal([])
    // keep and other whole; attrs (an xattr) and links (a hard-link group) are walked, as is the root.
    expect(child.parent?.unwalked).to.deep.equal({directories: 2, entries: 2 + 10 + 1 + 5})
    // The child's record serves the next commit just as well.
    const grandchild = await stacked(child)
    expect(grandchild.parent?.unwalked).to.deep.equal({directories: 2, entries: 18})
  })

  it('walks a directory whose names changed behind the kernel\'s back (debugfs -w keeps its times): the listing is compared, not the times', async () => {
    const parent = await commit()
    const times = (dir: string): string => debugfsRead(disk, `stat /${dir}`).match(/[cm]time: .*/g)!.join('\n')
    const before = times('keep/a')
    const one = path.join(tempDir(), 'one')
    writeFileSync(one, 'added\n')
    runDebugfsWrite(disk, [`write ${one} /keep/a/added`, 'rm /keep/b/f1'])
    expect(times('keep/a')).to.equal(before)
    const child = await stacked(parent)
    expect(members(child)).to.deep.equal(['keep/a/added', 'keep/b/.wh.f1'])
    // Only other is left unwalked now.
    expect(child.parent?.unwalked).to.deep.equal({directories: 1, entries: 6})
  })

  it('whites out an unchanged directory that was renamed: found unchanged at its old path, never met there, not counted', async () => {
    const parent = await commit()
    runDebugfsWrite(disk, ['ln /keep/a /keep/z', 'unlink /keep/a'])
    const child = await stacked(parent)
    // The whiteouts of a directory come when it closes.
    expect(members(child)).to.deep.equal(['keep/z/', ...[0, 1, 2, 3, 4].map(i => `keep/z/f${i}`), 'keep/.wh.a'])
    // keep/b and other are kept whole; keep itself (a name changed) and keep/z (new to the record) are walked.
    expect(child.parent?.unwalked).to.deep.equal({directories: 2, entries: 11})
  })

  it('walks a directory holding a path that --exclude now leaves out, so that it is whited out', async () => {
    const parent = await commit()
    const child = await stacked(parent, {exclude: ['other/x/f3']})
    expect(members(child)).to.deep.equal(['other/x/.wh.f3'])
    expect(child.parent?.unwalked).to.deep.equal({directories: 1, entries: 12})
  })

  it('finds nothing unchanged where identities cannot be trusted: a changed file in each directory', async () => {
    const parent = await commit()
    // New ctimes (a change through debugfs sets one), content and metadata as they were.
    runDebugfsWrite(disk, ['sif /keep/a/f0 ctime 0x20000000', 'sif /keep/b/f0 ctime 0x20000000', 'sif /other/x/f0 ctime 0x20000000'])
    const child = await stacked(parent)
    expect(members(child)).to.deep.equal([])
    expect(child.parent?.unwalked).to.deep.equal({directories: 0, entries: 0})
  })
})
