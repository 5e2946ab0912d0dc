import type {Entry} from '../extractor/extractor.js'

import {extractionError} from '../support/errors.js'
import {encodeHeader, TYPEFLAG} from './tar.js'

// The names a layer may hold: paths that stay under the root, whiteouts and the `.wh.*` names they use.

/**
 * A deletion in a diff layer: `path` is gone (written as `.wh.<name>` beside it), or, when `opaque`, the
 * directory `path` hides everything the layers below hold in it (written as `path/.wh..wh..opq`).
 */
export interface Whiteout {
  kind: 'whiteout'
  opaque?: boolean
  path: Buffer
}

export type LayerItem = Entry | Whiteout

export function isWhiteout(item: LayerItem): item is Whiteout {
  return (item as Partial<Whiteout>).kind === 'whiteout'
}

const WHITEOUT_PREFIX = Buffer.from('.wh.')

/**
 * The rules for a path a layer may hold, in one pass over its bytes with no view per component (this runs for
 * every entry of a disk, and every node of a tree record): `unsafe` for anything a tar reader could place
 * outside the root (absolute, empty or `.`/`..` components, NUL bytes); else which component is the first named
 * `.wh.*`, the last one or one of its directories, or undefined when none is.
 */
export function scanLayerPath(entryPath: Buffer): 'ancestor' | 'last' | 'unsafe' | undefined {
  let found: 'ancestor' | 'last' | undefined
  let start = 0
  const {length} = entryPath
  for (let i = 0; i <= length; i++) {
    const byte = i === length ? 0x2F : entryPath[i]
    if (byte === 0) return 'unsafe'
    if (byte !== 0x2F) continue
    const size = i - start
    if (size === 0 || (size <= 2 && entryPath[start] === 0x2E && entryPath[i - 1] === 0x2E)) return 'unsafe'
    if (found === undefined && size >= 4 && entryPath[start] === 0x2E && entryPath[start + 1] === 0x77 && entryPath[start + 2] === 0x68 && entryPath[start + 3] === 0x2E) {
      found = i === length ? 'last' : 'ancestor'
    }

    start = i + 1
  }

  return found
}

/** `scanLayerPath`, refusing an unsafe path. Extractors promise safe paths already; the layer checks again because it owns the tar. */
export function checkLayerPath(entryPath: Buffer): 'ancestor' | 'last' | undefined {
  const found = scanLayerPath(entryPath)
  if (found === 'unsafe') throw unsafePath(entryPath)
  return found
}

/** A checked path's components (see `scanLayerPath` for what is refused). */
export function checkEntryPath(entryPath: Buffer): Buffer[] {
  checkLayerPath(entryPath)
  const components: Buffer[] = []
  for (let start = 0; ;) {
    const slash = entryPath.indexOf(0x2F, start)
    components.push(entryPath.subarray(start, slash === -1 ? entryPath.length : slash))
    if (slash === -1) return components
    start = slash + 1
  }
}

function unsafePath(entryPath: Buffer): Error {
  return extractionError(`refusing an unsafe path in the layer: ${JSON.stringify(entryPath.toString('latin1'))}`)
}

/** Whether any component of a path is named `.wh.*`. */
export function isWhiteoutPath(entryPath: Buffer): boolean {
  return checkLayerPath(entryPath) !== undefined
}

const OPAQUE = Buffer.from('.wh..wh..opq')

/** The tar member of a whiteout: an empty file, owned by root, mode 0, time 0, so that it is deterministic. */
export function whiteoutHeader(whiteout: Whiteout): Buffer {
  const components = checkEntryPath(whiteout.path)
  if (isWhiteoutName(components)) throw extractionError(`refusing a whiteout of a whiteout name: "${whiteout.path.toString('latin1')}"`)
  const name = whiteout.opaque ? [...components, OPAQUE] : [...components.slice(0, -1), Buffer.concat([WHITEOUT_PREFIX, components.at(-1)!])]
  return encodeHeader({
    gid: 0, mode: 0, mtime: 0, path: Buffer.concat(name.flatMap((c, i) => (i === 0 ? [c] : [Buffer.from('/'), c]))), size: 0, typeflag: TYPEFLAG.file, uid: 0,
  })
}

export function isWhiteoutName(components: Buffer[]): boolean {
  return components.some(c => c.subarray(0, WHITEOUT_PREFIX.length).equals(WHITEOUT_PREFIX))
}
