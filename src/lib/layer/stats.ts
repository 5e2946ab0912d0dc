import type {Skip} from '../extractor/extractor.js'

// What a layer holds, counted as it is written: the figures commit reports.

export interface LayerStats {
  /** Content bytes of regular files (before tar framing). */
  contentBytes: number
  devices: number
  directories: number
  /** Members in the tar, hard links included. */
  entries: number
  fifos: number
  files: number
  hardlinks: number
  skipped: {
    /** Entries named by --exclude, counting a directory once for its whole subtree. */
    excluded: number
    lostFound: number
    sockets: number
    /** Names that OCI consumers would read as whiteouts (`.wh.*`), left out with their subtrees. */
    whiteoutNames: number
    xattrs: number
  }
  symlinks: number
  /** Whiteouts (`.wh.<name>` and opaque `.wh..wh..opq`) in a diff layer. */
  whiteouts: number
}

export function emptyLayerStats(): LayerStats {
  return {
    contentBytes: 0,
    devices: 0,
    directories: 0,
    entries: 0,
    fifos: 0,
    files: 0,
    hardlinks: 0,
    skipped: {
      excluded: 0, lostFound: 0, sockets: 0, whiteoutNames: 0, xattrs: 0,
    },
    symlinks: 0,
    whiteouts: 0,
  }
}

/** Counts an extractor's skip report into the stats. */
export function countSkip(stats: LayerStats, skip: Skip): void {
  switch (skip.reason) {
  case 'lost+found': {
    stats.skipped.lostFound++
    break;
  }

  case 'socket': {
    stats.skipped.sockets++
    break;
  }

  case 'xattr': {
    stats.skipped.xattrs++
    break;
  }

  default: {stats.skipped.whiteoutNames++
  }
  }
}
