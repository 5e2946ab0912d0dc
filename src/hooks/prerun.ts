import type {Hook} from '@oclif/core/hooks'

import * as Flags from '@oclif/core/flags'
import * as Parser from '@oclif/core/parser'

import {PLUGIN_NAME} from '../base-command.js'
import {resolveContext, setCurrentContext} from '../lib/workspace/context.js'

/**
 * Resolves `--state-dir`, `--backend` and `--mode` (flag, then env, then default) for this plugin's
 * commands before they run, into the shared context. Other plugins' commands are left alone. Bad input is
 * not reported here: a hook error would bypass the command's error path (and the AX envelope), so the
 * command resolves again and reports it.
 */
const hook: Hook.Prerun = async function (options) {
  const command = options.Command
  if (command.plugin?.name !== PLUGIN_NAME) return
  setCurrentContext(undefined)
  try {
    const {flags} = await Parser.parse(options.argv, {
      args: command.args,
      // Every flag the command knows must be declared, or the parser rejects it even when not strict.
      flags: {...command.baseFlags, ...command.flags, json: Flags.boolean()},
      strict: false,
    })
    setCurrentContext(resolveContext({
      backend: flags.backend as string | undefined,
      mode: flags.mode as string | undefined,
      stateDir: flags['state-dir'] as string | undefined,
    }))
  } catch {
    // Left to the command, which parses and resolves again and reports the problem properly.
  }
}

export default hook
