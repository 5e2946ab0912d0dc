import {commitWorkspace} from '../../src/lib/commit.js'
import {FakeExtractor, fakeRootfs} from '../../src/lib/extractor/fake.js'
import {addWorkspace, makeStateDir, runtimeRecord} from './state.js'

/**
 * Commits the fake rootfs of workspace `demo` in `state` as `reference` at `created`; with `extra`, the
 * tree also holds a file of that content, so the layer differs. Returns the manifest digest.
 */
export async function commitFake(state: string, reference: string, created = '2026-01-01T00:00:00Z', extra = ''): Promise<string> {
  const entries = fakeRootfs()
  if (extra) entries.push({
    ...entries[1], data: extra, inode: 99, path: 'extra',
  })
  const result = await commitWorkspace({
    created: new Date(created),
    extractor: new FakeExtractor(entries),
    reference,
    stateDir: state,
    workspace: 'demo',
  })
  return result.digest
}

/** A state dir with a stopped workspace `demo` and the given tags committed from it (fake extractor, fixed time). */
export async function stateWithImages(...references: string[]): Promise<string> {
  const state = makeStateDir()
  addWorkspace(state, 'demo', {runtime: runtimeRecord('stopped')})
  for (const reference of references) await commitFake(state, reference)
  return state
}
