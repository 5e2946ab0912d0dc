// @sindresorhus/is checks every piece of JSON this plugin did not write itself: workspace records, credential
// files and helpers' answers, registry responses, other plugins' hook answers. Its import costs about 13 ms (Node 20
// and 24, warm), so it is imported on first use, off the start path: `image list`, `inspect`, `tag` and `rm` read
// only the layout this plugin writes (checked by ./guards.js) and never load it.
import type {default as IsModule} from '@sindresorhus/is'

export type Is = typeof IsModule

let loading: Promise<Is> | undefined

/** The `is` function of @sindresorhus/is, imported once, on the first call. */
export function loadIs(): Promise<Is> {
  loading ??= import('@sindresorhus/is').then(module => module.default)
  return loading
}

/** An array of strings, as it is, or undefined for anything else. */
export function stringList(is: Is, value: unknown): string[] | undefined {
  return is.array(value, is.string) ? value : undefined
}
