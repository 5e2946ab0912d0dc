export const ENTRY_TYPES = ['file', 'directory', 'symlink', 'char', 'block', 'fifo'] as const
export type EntryType = (typeof ENTRY_TYPES)[number]

export interface Timestamp {
  /** Nanoseconds, 0–999,999,999. */
  nsec: number
  /** Seconds since the epoch; negative before 1970 (ext4 stores 34 bits). */
  sec: number
}

/**
 * One inode as found under one name. An inode with several names (a hard link) is yielded once per name
 * with the same `inode`; the layer decides which name carries the content.
 */
export interface Entry {
  /**
   * The regular file's bytes, exactly `size` of them, read only when called, in pieces of any size.
   * What it returns must be read to its end (or the extraction abandoned) before the next entry is
   * requested, and a piece must not be modified (it may be shared).
   */
  content?: () => AsyncIterable<Buffer> | Iterable<Buffer>
  devMajor?: number
  devMinor?: number
  gid: number
  /** Identity of the inode within this filesystem. */
  inode: number
  /** For symlinks: the target's raw bytes, never interpreted or followed. */
  linkTarget?: Buffer
  /** Permission bits with setuid, setgid and sticky (0o7777). */
  mode: number
  mtime: Timestamp
  /**
   * Raw name bytes relative to the root, components joined by `/`, no leading `/` or `./`. Each component
   * is non-empty, is not `.` or `..` and holds no NUL: extractors guarantee it, the layer checks again.
   */
  path: Buffer
  /** Content length of a regular file; 0 for everything else. */
  size: number
  type: EntryType
  uid: number
  /** Extended attributes (user.*, security.*, trusted.*, system.posix_acl_*), sorted by name. */
  xattrs: [name: string, value: Buffer][]
}

export type SkipReason = 'lost+found' | 'socket' | 'whiteout-name' | 'xattr'

export interface Skip {
  detail?: string
  path: Buffer
  reason: SkipReason
}

export interface ExtractOptions {
  /** Called for each thing left out of the image, so the caller can count and report it. */
  onSkip?: (skip: Skip) => void
  signal?: AbortSignal
}

/**
 * Reads a filesystem image and yields its entries in a deterministic order (depth first, names sorted
 * bytewise), parents before children. Implementations never write to the image, never create host paths
 * from guest names, and fail with a MicroagentError of the extraction class.
 */
export interface Extractor {
  /** Yields the entries of the filesystem in `disk`; closing the iterator early releases everything. */
  entries(disk: string, options?: ExtractOptions): AsyncGenerator<Entry, void, undefined>
  readonly name: string
}
