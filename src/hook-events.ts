import type * as Interfaces from '@oclif/core/interfaces'

import type {CommitResult} from './lib/commit.js'
import type {Extractor} from './lib/extractor/extractor.js'
import type {PushResult} from './lib/registry/push.js'

/**
 * The custom hook events this plugin fires, for other plugins to answer. Declare a handler in your
 * package.json (`"oclif": {"hooks": {"microagent:committed": "./dist/hooks/committed.js"}}`) and type it with
 * `Hook<'microagent:committed', MicroagentHooks>`.
 */
export interface MicroagentHookEvents {
  /** After a commit's tag is written: the same result `commit --json` prints. Failures become warnings. */
  'microagent:committed': {
    options: {result: CommitResult}
    return: void
  }
  /**
   * `commit --extractor <name>` asks every plugin for an extractor of that name. Answer with an Extractor
   * when `name` is yours, `undefined` otherwise; exactly one plugin may answer.
   */
  'microagent:extractor': {
    options: {name: string}
    return: Extractor | undefined
  }
  /** After an image's manifest is in the registry (`image push`, `commit --push`). Failures become warnings. */
  'microagent:pushed': {
    options: {result: PushResult}
    return: void
  }
}

export interface MicroagentHooks extends Interfaces.Hooks, MicroagentHookEvents {}
