import {commitWorkspace} from '../../src/lib/commit.js'
import {FakeExtractor, fakeRootfs} from '../../src/lib/extractor/fake.js'
import {addWorkspace, makeStateDir, runtimeRecord} from './state.js'

/** A state dir with a stopped workspace `demo` and the given tags committed from it (fake extractor, fixed time). */
export async function stateWithImages(...references: string[]): Promise<string> {
  const state = makeStateDir()
  addWorkspace(state, 'demo', {runtime: runtimeRecord('stopped')})
  for (const reference of references) {
    await commitWorkspace({
      created: new Date('2026-01-01T00:00:00Z'),
      extractor: new FakeExtractor(fakeRootfs()),
      reference,
      stateDir: state,
      workspace: 'demo',
    })
  }

  return state
}
