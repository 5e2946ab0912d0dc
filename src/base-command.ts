// oclif's subpaths, not its index, here and in every command and hook: the index loads all of
// @oclif/core (48 modules more), which made `image list` 9 ms slower on Node 24 (no change on Node 20).
import type * as Interfaces from '@oclif/core/interfaces'

import * as Args from '@oclif/core/args'
import {Command} from '@oclif/core/command'
import {ExitError} from '@oclif/core/errors'
import * as Flags from '@oclif/core/flags'

import type {MicroagentHookEvents} from './hook-events.js'

import {
  asMicroagentError, EXIT_CODES, isMicroagentError, MicroagentError, toEnvelope, usageError,
} from './lib/support/errors.js'
import {ProgressDisplay} from './lib/support/progress.js'
import {
  BACKEND_NAMES, type Context, currentContext, resolveContext, setCurrentContext,
} from './lib/workspace/context.js'

export type BaseFlags<T extends typeof Command> = Interfaces.InferredFlags<(typeof BaseCommand)['baseFlags'] & T['flags']>
export type BaseArgs<T extends typeof Command> = Interfaces.InferredArgs<T['args']>

/** The argument naming an image committed into the state dir's layout (image push, inspect, rm, tag). */
export function committedImageArg() {
  return Args.string({description: 'Tag of a committed image in <state-dir>/images/oci.', required: true})
}

/** The package name oclif records as the plugin of our commands; the prerun hook filters on it. */
export const PLUGIN_NAME = '@microagent/plugin-image'

interface OclifError extends Error {
  oclif?: {exit?: false | number}
  parse?: unknown
}

/** oclif's own errors: parse failures carry `parse`; `this.exit()` and help carry `oclif.exit`. */
function fromOclif(error: OclifError): MicroagentError | undefined {
  if (error.parse !== undefined) {
    return usageError(error.message.replace(/\n\s*See more help with --help$/, ''), 'Run the command with --help to see its arguments and flags.')
  }

  return undefined
}

/**
 * What every command of this plugin shares: the global flags (`--state-dir`, `--backend`, `--mode`,
 * `--json`), their resolution (also when no prerun hook ran), one error path (human text or the AX
 * envelope on stderr, and the documented exit code), and cancellation on SIGINT/SIGTERM.
 */
export abstract class BaseCommand<T extends typeof Command> extends Command {
  static override baseFlags = {
    backend: Flags.string({
      description: 'VM backend of the workspace: linux-kvm or apple-vf (firecracker is an alias of linux-kvm). Env: MICROAGENT_BACKEND.',
      helpGroup: 'GLOBAL',
      options: [...BACKEND_NAMES],
      summary: 'VM backend (linux-kvm, apple-vf; alias firecracker).',
    }),
    mode: Flags.string({
      description: 'ax (agent mode) prints results as JSON and failures as one JSON envelope on stderr. Env: MICROAGENT_MODE.',
      helpGroup: 'GLOBAL',
      options: ['ux', 'ax'],
      summary: 'Output mode for people (ux) or agents (ax).',
    }),
    'state-dir': Flags.string({
      description: 'microagent state directory. Env: MICROAGENT_STATE_DIR. Default: ~/.microagent.',
      helpGroup: 'GLOBAL',
      summary: 'microagent state directory.',
    }),
  }
  static override enableJsonFlag = true
  protected args!: BaseArgs<T>
  protected context!: Context
  protected flags!: BaseFlags<T>
  /** Aborted on SIGINT/SIGTERM; long operations take it as their signal. */
  protected readonly interrupt = new AbortController()
  private readonly onSignal = (): void => {
    // A second Ctrl-C means "now": cleanup is already under way, do not wait for it.
    // eslint-disable-next-line n/no-process-exit, unicorn/no-process-exit -- the user asked twice to stop now
    if (this.interrupt.signal.aborted) process.exit(EXIT_CODES.interrupted)
    this.interrupt.abort()
  }

  /**
   * Tells other plugins about a result (`microagent:committed`, `microagent:pushed`). Their failures do
   * not undo what was done: they become warnings (silent in JSON mode, where stdout is the result).
   */
  protected async announce<E extends 'microagent:committed' | 'microagent:pushed'>(event: E, options: MicroagentHookEvents[E]['options']): Promise<void> {
    const {failures} = await this.config.runHook(event, options)
    for (const failure of failures) this.warn(`plugin ${failure.plugin.name} failed on ${event}: ${failure.error.message}`)
  }

  override async catch(error: Error & {exitCode?: number}): Promise<unknown> {
    const {oclif} = (error as OclifError)
    // `this.exit()` and --help are not failures.
    if (oclif?.exit === 0 || (error.constructor.name === 'ExitError' && !isMicroagentError(error))) throw error
    let failure = isMicroagentError(error) ? error : (fromOclif(error) ?? asMicroagentError(error))
    if (this.interrupt.signal.aborted) {
      failure = new MicroagentError('interrupted; nothing was committed', {
        cause: error,
        code: 'INTERRUPTED',
        exit: 'interrupted',
        kind: 'transient',
        remediation: 'Run the command again.',
      })
    }

    if (this.jsonEnabled()) {
      process.stderr.write(`${JSON.stringify(toEnvelope(failure), null, 2)}\n`)
    } else {
      process.stderr.write(`Error: ${failure.message}\n${failure.remediation ? `Hint: ${failure.remediation}\n` : ''}`)
    }

    process.exitCode = failure.exitCode
    // A host may load another copy of @oclif/core, whose handler does not recognise our ExitError class
    // and would print it; this flag and `oclif.exit` are what every copy reads.
    throw Object.assign(new ExitError(failure.exitCode), {skipOclifErrorHandling: true})
  }

  protected override async finally(error: Error | undefined): Promise<unknown> {
    process.off('SIGINT', this.onSignal)
    process.off('SIGTERM', this.onSignal)
    return super.finally(error)
  }

  override async init(): Promise<void> {
    await super.init()
    // `on`, not `once`: signal-exit (execa's child cleanup) re-raises a signal that no other listener is
    // left to handle, which would kill the process before its temp files are removed.
    process.on('SIGINT', this.onSignal)
    process.on('SIGTERM', this.onSignal)
    const {args, flags} = await this.parse({
      args: this.ctor.args,
      baseFlags: (this.ctor as typeof BaseCommand).baseFlags,
      enableJsonFlag: this.ctor.enableJsonFlag,
      flags: this.ctor.flags,
      strict: this.ctor.strict,
    })
    this.flags = flags as BaseFlags<T>
    this.args = args as BaseArgs<T>
    // The prerun hook resolved the same inputs already, when it ran; take its answer once.
    const hooked = currentContext()
    setCurrentContext(undefined)
    this.context = hooked ?? resolveContext({backend: this.flags.backend, mode: this.flags.mode, stateDir: this.flags['state-dir']})
  }

  /** JSON output, by --json or AX mode: results print as JSON and failures as the envelope. */
  override jsonEnabled(): boolean {
    return super.jsonEnabled() || this.isAxMode()
  }

  /**
   * The same text as oclif's (JSON.stringify with 2 spaces) without its tokenizer, which takes seconds on a large
   * result (`image inspect --files` of a 202,000-entry layer: 6.4 s against 2.8 s for the text); a JSON colour
   * theme configured for the CLI still goes through oclif.
   */
  override logJson(json: unknown): void {
    if (this.config.theme?.json) super.logJson(json)
    else process.stdout.write(`${JSON.stringify(json, null, 2)}\n`)
  }

  /** A progress display on stderr for people; none in JSON or agent mode, where stderr carries only the envelope. */
  protected progressDisplay(): ProgressDisplay | undefined {
    return this.jsonEnabled() ? undefined : new ProgressDisplay(process.stderr)
  }

  private isAxMode(): boolean {
    if (this.context) return this.context.mode === 'ax'
    // Before the flags parse (or when parsing failed), read the raw inputs.
    const index = this.argv.indexOf('--mode')
    const fromArgv = index === -1 ? this.argv.find(a => a.startsWith('--mode='))?.slice('--mode='.length) : this.argv[index + 1]
    return (fromArgv ?? process.env.MICROAGENT_MODE ?? '').trim().toLowerCase() === 'ax'
  }
}
