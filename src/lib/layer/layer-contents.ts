import type {ReadEntry} from 'tar'

import {once} from 'node:events'

import {hashedLayerTar} from './decompress.js'

/** What a layer member is; `deleted` is a whiteout (`.wh.<name>`), `opaque` a directory's `.wh..wh..opq`. */
export type LayerEntryType = 'block' | 'char' | 'deleted' | 'directory' | 'fifo' | 'file' | 'hardlink' | 'opaque' | 'other' | 'symlink'

export interface LayerEntry {
  gid: number
  /** Hard links and symlinks: what they point at. */
  linkpath?: string
  mode: number
  mtime?: string
  /** The member's path; for a whiteout, the path it deletes; for an opaque marker, the directory it empties. */
  path: string
  size: number
  type: LayerEntryType
  uid: number
}

export interface LayerContents {
  /** sha256 of the uncompressed tar: the config's diff_id for this layer, if the blob is whole. */
  diff_id: string
  entries: LayerEntry[]
  summary: Record<LayerEntryType, number> & {content_bytes: number}
}

const TYPES: Readonly<Partial<Record<ReadEntry['type'], LayerEntryType>>> = {
  BlockDevice: 'block',
  CharacterDevice: 'char',
  ContiguousFile: 'file',
  Directory: 'directory',
  FIFO: 'fifo',
  File: 'file',
  Link: 'hardlink',
  OldFile: 'file',
  SymbolicLink: 'symlink',
}

const WHITEOUT = '.wh.'
const OPAQUE = '.wh..wh..opq'

function entryOf(entry: ReadEntry): LayerEntry {
  const path = entry.path.replace(/^\.\//, '').replace(/\/$/, '') || '.'
  const slash = path.lastIndexOf('/')
  const base = path.slice(slash + 1)
  const dir = path.slice(0, slash + 1)
  let type = TYPES[entry.type] ?? 'other'
  let shown = path
  if (base === OPAQUE) {
    type = 'opaque'
    shown = dir.replace(/\/$/, '') || '.'
  } else if (base.startsWith(WHITEOUT)) {
    type = 'deleted'
    shown = dir + base.slice(WHITEOUT.length)
  }

  return {
    gid: entry.gid ?? 0,
    ...(entry.linkpath ? {linkpath: entry.linkpath} : {}),
    mode: (entry.mode ?? 0) & 0o7777,
    ...(entry.mtime ? {mtime: entry.mtime.toISOString()} : {}),
    path: shown,
    size: entry.size,
    type,
    uid: entry.uid ?? 0,
  }
}

/**
 * Lists a layer blob's members, read with node-tar (the design card's tar reader), whiteouts named for what
 * they delete, and hashes the tar on the way so the caller can check it against the config's diff_id. For
 * display: node-tar gives names as UTF-8 text and mtimes in milliseconds, which is why `commit --parent` reads
 * parent layers with its own exact reader (../layer/tar-reader.ts) instead.
 */
export async function readLayerContents(file: string, mediaType: string): Promise<LayerContents> {
  const {Parser} = await import('tar')
  const entries: LayerEntry[] = []
  // strict: a damaged or truncated member is an error, not a warning.
  const parser = new Parser({
    onReadEntry(entry: ReadEntry) {
      entries.push(entryOf(entry))
      entry.resume()
    },
    strict: true,
  })
  const ended = new Promise<void>((resolve, reject) => {
    parser.on('end', () => resolve())
    parser.on('error', reject)
  })
  ended.catch(() => {})
  const diff = hashedLayerTar(file, mediaType)
  for await (const chunk of diff as AsyncIterable<Buffer>) {
    // once() drops its listeners when either event comes (a listener pair per wait would pile up); an error the
    // parser gave inside write() has already settled `ended`.
    if (!parser.write(chunk)) await Promise.race([once(parser, 'drain'), ended])
  }

  parser.end()
  await ended
  const summary = {
    block: 0, char: 0, content_bytes: 0, deleted: 0, directory: 0, fifo: 0, file: 0, hardlink: 0, opaque: 0, other: 0, symlink: 0,
  }
  for (const entry of entries) {
    summary[entry.type]++
    if (entry.type === 'file') summary.content_bytes += entry.size
  }

  return {diff_id: diff.digest(), entries, summary}
}
