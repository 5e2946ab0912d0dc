import {MicroagentError, usageError} from '../support/errors.js'
import {loadIs} from '../support/is.js'

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
   * requested, and a piece must not be modified (it may be shared). A piece is valid only until the next
   * entry is requested (its memory may then be reused): copy what must be kept longer. It may be called
   * again for a second reading (an incremental commit hashes a file, then archives it), also after later
   * entries were requested, while the extraction is still open: an incremental commit archives a hard-link
   * group's earlier names only once a later name shows that the group changed (a WalkGate keeps the
   * extraction open for the groups still undecided at its end).
   */
  content?: () => AsyncIterable<Buffer> | Iterable<Buffer>
  /**
   * ext4 identity, with `inode` and the filesystem's UUID (`Extractor.filesystemUuid`): the inode's last
   * status change, which user space cannot set. Optional: without it, incremental commits compare content.
   */
  ctime?: Timestamp
  devMajor?: number
  devMinor?: number
  /** ext4 `i_generation`: tells a reused inode number from the inode that had it before. Optional. */
  generation?: number
  gid: number
  /** Identity of the inode within this filesystem. */
  inode: number
  /**
   * The inode's link count (names it has on the filesystem, seen or not), when the extractor knows it. The
   * layer remembers the first name only of inodes with more than one link (of every inode when this is
   * absent), so memory does not grow with the number of files; incremental commits treat an entry without it
   * as having one name unless its inode shows up again.
   */
  links?: number
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

/**
 * An inode as the walk's entries would describe it (the fields an entry takes from its inode; `size` is 0
 * but for regular files), read in place for an inode with no extended attributes.
 */
export interface ProbedInode {
  ctime: Timestamp
  devMajor?: number
  devMinor?: number
  generation: number
  gid: number
  inode: number
  links: number
  /** A symlink's target when the inode holds it; a probe gives no inode for other symlinks. */
  linkTarget?: Buffer
  mode: number
  mtime: Timestamp
  size: number
  type: EntryType
  uid: number
}

/** A directory's names as a DiskProbe reads them, in bytewise name order, compared in place. */
export interface ProbedListing {
  readonly count: number
  /** Whether the `i`-th name is `path` from byte `from` on (a child's own name within its path), with inode `inode`. */
  is(i: number, inode: number, path: Buffer, from: number): boolean
}

/**
 * The disk a walk reads, read in place without the walk: what an incremental commit uses to find the
 * directories that did not change, so that the walk need not list them (see ExtractOptions.probe).
 */
export interface DiskProbe {
  /** The inode, or undefined when the probe cannot say exactly what the walk would (it then lists it). */
  inode(ino: number): ProbedInode | undefined
  /**
   * A directory's names and inode numbers, `.` and `..` left out, in bytewise name order; undefined when
   * the probe cannot read them in place (inline data, encryption, a deep extent tree, damage).
   */
  listing(ino: number): ProbedListing | undefined
}

export interface ExtractOptions {
  /**
   * Awaited once the walk has yielded its last entry, before the disk is released: until it resolves, the
   * content of any entry already yielded can still be read (an incremental commit archives late the
   * hard-link groups it could only judge once all their names were seen). An extractor may ignore it.
   */
  beforeClose?: () => Promise<void>
  /** Called for each thing left out of the image, so the caller can count and report it. */
  onSkip?: (skip: Skip) => void
  /**
   * Called at most once, before the first entry, with a probe of the very disk the walk reads (a replayed
   * copy included), and awaited: the caller may then answer `prune` from what it found. An extractor may
   * ignore it.
   */
  probe?: (probe: DiskProbe) => Promise<void> | void
  /**
   * A hint: directories it returns true for are yielded but not descended into, because the caller drops
   * their subtrees anyway (`--exclude`) or has them already (an incremental commit's unchanged directories,
   * found with `probe`). An extractor may ignore it.
   */
  prune?: (path: Buffer) => boolean
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
  /**
   * The filesystem it reads. `ext4` (or absent) gets a checked view of the disk (superblock magic, a
   * dirty journal replayed on a private copy); any other value gets the workspace disk's path as it is,
   * which the extractor must only read.
   */
  readonly filesystem?: string
  /**
   * The filesystem's UUID, which scopes `inode`/`generation`/`ctime` identities. Optional: without it,
   * incremental commits never trust identities and compare content.
   */
  filesystemUuid?(disk: string): Promise<string | undefined>
  readonly name: string
  /**
   * Optional: regular files' bytes by their paths (raw, relative to the root), symlinks not followed, in
   * the order asked; undefined for a path with no regular file of at most `maxBytes`. Commit reads what it
   * must know before the walk with it (the egress CA, to take it out of trust bundles met earlier in the
   * walk), all in one call so that an extractor can answer from one process.
   */
  readFiles?(disk: string, paths: Buffer[], maxBytes: number): Promise<(Buffer | undefined)[]>
}

/** Whether a value from another plugin (maybe with its own copy of these types) can serve as an Extractor. */
export function isExtractor(value: unknown): value is Extractor {
  const candidate = value as Partial<Extractor> | undefined
  return typeof candidate === 'object' && candidate !== null && typeof candidate.entries === 'function' && typeof candidate.name === 'string'
}

/** What one plugin answered to the `microagent:extractor` hook. */
export interface ExtractorAnswer {
  plugin: string
  result: unknown
}

/**
 * Picks the extractor named `name` from the plugins' answers: exactly one plugin must offer it, and what
 * it offers must look like an Extractor (checked with @sindresorhus/is: an object with a non-empty `name`,
 * an `entries` function and, if any, a string `filesystem`). Errors say what is installed and what to do.
 */
export async function chooseExtractor(name: string, answers: ExtractorAnswer[]): Promise<Extractor> {
  const is = await loadIs()
  const offered = answers.filter(answer => !is.nullOrUndefined(answer.result))
  if (offered.length === 0) {
    throw usageError(
      `no installed plugin provides the extractor "${name}"`,
      'Use --extractor debugfs (the default, for ext4), or install the plugin that provides it (`microagent plugins install <plugin>`).',
    )
  }

  if (offered.length > 1) {
    throw usageError(`several plugins provide the extractor "${name}": ${offered.map(a => a.plugin).join(', ')}`, 'Uninstall all but one of them.')
  }

  const [{plugin, result}] = offered
  const shaped = is.object(result) && isExtractor(result) && is.nonEmptyString(result.name) && is.function(result.entries)
  if (!shaped || !(is.undefined(result.filesystem) || is.string(result.filesystem))) {
    throw new MicroagentError(`plugin ${plugin} answered --extractor "${name}" with something that is not an Extractor (it needs a name, an entries() method and, if any, a string filesystem)`, {
      code: 'BAD_EXTRACTOR',
      exit: 'internal',
      kind: 'permanent',
      remediation: `Report it to the authors of ${plugin}; meanwhile use --extractor debugfs.`,
    })
  }

  return result
}
