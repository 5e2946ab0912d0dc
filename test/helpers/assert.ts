/** The error a promise rejects with; fails the test if it resolves. */
export async function rejection(promise: Promise<unknown>): Promise<Error & {code?: string; exitCode?: number; kind?: string; remediation?: string}> {
  try {
    await promise
  } catch (error) {
    return error as Error & {code?: string; exitCode?: number; kind?: string; remediation?: string}
  }

  throw new Error('expected a rejection, but the promise resolved')
}

/** The exit code a command run through @oclif/test's runCommand failed with (undefined when it did not fail). */
export function exitOf(error: unknown): number | undefined {
  return (error as undefined | {oclif?: {exit?: number}})?.oclif?.exit
}
