/**
 * The files microagent itself writes into a workspace's rootfs (microagent-compat.md §11–12), and what a
 * commit does with each: an image must carry nothing of the host it was committed on. This table is the one
 * place that knows them; the layer filter, the docs and the incremental commit all read it.
 */
import type {Entry, Extractor} from '../extractor/extractor.js'

import {fileContent} from '../layer/layer.js'
import {onlyCertificates, pemCertificates, withoutCertificates} from './trust-bundle.js'

/** `leave-out`: the path is not in the image. `remove-ca`: a trust bundle, kept without the egress CA's PEM block. */
export type RuntimeAction = 'leave-out' | 'remove-ca'

export interface RuntimeFile {
  action: RuntimeAction
  /** Relative to the image root, no leading `/`. */
  path: string
  /** Why it must not travel with the image. */
  why: string
  /** What writes it, and when. */
  writer: string
}

const EGRESS = 'guest init, when the egress broker intercepts TLS'
const CA_WHY = "the host's TLS-interception CA: an image carrying it trusts this host's broker wherever it runs"

export const RUNTIME_FILES: readonly RuntimeFile[] = [
  {
    action: 'leave-out', path: 'sbin/microagent-init', why: "microagent's own init binary, injected again by every create", writer: 'microagent rootfs builder',
  },
  {
    action: 'leave-out', path: 'etc/hostname', why: "this workspace's host name", writer: 'guest init, at every boot',
  },
  {
    action: 'leave-out', path: 'etc/resolv.conf', why: "this host's DNS settings", writer: 'guest init, at every boot',
  },
  {
    action: 'leave-out', path: 'tmp/microagent-udhcpc.script', why: "microagent's DHCP hook", writer: 'guest init, at every boot',
  },
  {
    action: 'leave-out', path: 'etc/microagent/egress-ca.pem', why: CA_WHY, writer: EGRESS,
  },
  {
    action: 'leave-out', path: 'etc/microagent/egress-ca-bundle.pem', why: CA_WHY, writer: EGRESS,
  },
  {
    action: 'leave-out', path: 'usr/local/share/ca-certificates/microagent-egress.crt', why: CA_WHY, writer: EGRESS,
  },
  {
    action: 'leave-out', path: 'etc/ssl/certs/microagent-egress.pem', why: CA_WHY, writer: 'update-ca-certificates, run by guest init',
  },
  {
    action: 'remove-ca', path: 'etc/ssl/certs/ca-certificates.crt', why: CA_WHY, writer: 'update-ca-certificates, run by guest init',
  },
  {
    action: 'remove-ca', path: 'etc/ssl/cert.pem', why: CA_WHY, writer: 'guest init (system bundle)',
  },
  {
    action: 'remove-ca', path: 'etc/pki/tls/certs/ca-bundle.crt', why: CA_WHY, writer: 'guest init (system bundle)',
  },
]

/** Where the egress CA itself is found on a workspace disk, first choice first. */
export const EGRESS_CA_FILES: readonly string[] = [
  'etc/microagent/egress-ca.pem',
  'usr/local/share/ca-certificates/microagent-egress.crt',
  'etc/ssl/certs/microagent-egress.pem',
]

/** The folder microagent creates for the egress CA; left out when nothing of the user's is in it. */
export const RUNTIME_DIRS: readonly string[] = ['etc/microagent']

/** Where update-ca-certificates links certificates (`<subject-hash>.0` and friends). */
export const CERT_LINK_DIR = 'etc/ssl/certs'

const byPath = new Map(RUNTIME_FILES.map(file => [file.path, file]))
const KNOWN = [...RUNTIME_FILES.map(file => file.path), ...RUNTIME_DIRS]
/** The first bytes and the longest length of the paths above: most paths of a disk are told apart by these alone. */
const FIRST_BYTES = new Set(KNOWN.map(known => known.codePointAt(0)))
const LONGEST = Math.max(...KNOWN.map(known => known.length))

/**
 * False for a path that cannot be one of the table's: a Buffer is checked without making a string of it, a
 * string (latin1, as the filter makes them) without hashing it. This runs for every entry.
 */
function mayBeKnown(entryPath: Buffer | string): boolean {
  const first = typeof entryPath === 'string' ? entryPath.codePointAt(0) : entryPath[0]
  return entryPath.length <= LONGEST && FIRST_BYTES.has(first)
}

function pathText(entryPath: Buffer | string): string {
  return typeof entryPath === 'string' ? entryPath : entryPath.toString('latin1')
}

/** The table's row for a path, if microagent writes it. */
export function runtimeFile(entryPath: Buffer | string): RuntimeFile | undefined {
  return mayBeKnown(entryPath) ? byPath.get(pathText(entryPath)) : undefined
}

/**
 * Whether a path is microagent's in a stacked commit: the `leave-out` rows and microagent's folders, which
 * stay as the parent has them (neither written again nor whited out).
 */
export function isRuntimePath(entryPath: Buffer | string): boolean {
  if (!mayBeKnown(entryPath)) return false
  const text = pathText(entryPath)
  return byPath.get(text)?.action === 'leave-out' || RUNTIME_DIRS.includes(text)
}

/** The egress CA's certificates (DER), read before the walk from wherever the workspace keeps a copy. */
export async function readEgressCa(extractor: Extractor, disk: string): Promise<Buffer[]> {
  if (!extractor.readFiles) return []
  const found: Buffer[] = []
  for (const data of await extractor.readFiles(disk, EGRESS_CA_FILES.map(file => Buffer.from(file)), 1024 * 1024)) addCertificates(found, data)
  return found
}

/** Adds the certificates (DER) of a PEM file to `ca`, each once. */
function addCertificates(ca: Buffer[], data: Buffer | undefined): void {
  for (const cert of data ? pemCertificates(data) : []) if (!ca.some(der => der.equals(cert.der))) ca.push(cert.der)
}

/** Whether a commit leaves this path out by default (the `leave-out` rows). */
export function isLeftOutRuntimePath(entryPath: Buffer | string): boolean {
  return runtimeFile(entryPath)?.action === 'leave-out'
}

/** What a commit did with one of microagent's files. */
export interface RuntimeFileReport {
  /** `kept`: a file that trusts the CA but cannot be rewritten (reported so the user knows). */
  action: 'kept' | 'left-out' | 'rewritten'
  /** Certificates taken out of a rewritten bundle. */
  certificates_removed?: number
  path: string
  why: string
}

/** Bundles are read whole to be rewritten; anything larger is not a trust bundle. */
const MAX_BUNDLE = 64 * 1024 * 1024

async function readAll(entry: Entry, limit: number): Promise<Buffer | undefined> {
  if (entry.size > limit) return undefined
  const chunks: Buffer[] = []
  // The layer's own reader, with its size check.
  for await (const chunk of fileContent(entry)) chunks.push(chunk)
  return Buffer.concat(chunks)
}

/**
 * The entry with other bytes. Its ext4 identity goes: the bytes no longer are the inode's, so an
 * incremental commit must compare them, never take them as unchanged because the inode is.
 */
function withContent(entry: Entry, data: Buffer): Entry {
  return {
    ...entry, content: () => [data], ctime: undefined, generation: undefined, size: data.length,
  }
}

/** A link's target resolved by name from the folder holding the link, or undefined if it leaves the root. */
function resolveLink(linkPath: string, target: string): string | undefined {
  const parts = target.startsWith('/') ? [] : linkPath.split('/').slice(0, -1)
  for (const part of target.split('/')) {
    if (part === '' || part === '.') continue
    if (part === '..') {
      if (parts.length === 0) return undefined
      parts.pop()
    } else parts.push(part)
  }

  return parts.join('/')
}

const CA_FILES = new Set(EGRESS_CA_FILES)
const CERT_LINK_PREFIX = `${CERT_LINK_DIR}/`
const EMPTY_FOLDER_WHY = 'folder microagent made for the egress CA, with nothing else in it'

/**
 * Leaves out the files microagent writes (RUNTIME_FILES), takes the egress CA out of the system trust
 * bundles (matched by DER, as found in the workspace's own copy of the CA), drops the links in
 * /etc/ssl/certs that lead to it, and leaves out microagent's own folders when nothing else is in them.
 * `caCertificates` are CA certificates (DER) read ahead, or the read under way: it is awaited only when an
 * entry concerns microagent, and at the end (so that its failure fails the layer). The CA files met during the
 * walk add to them. Everything done is appended to `report`. A disk without these files passes through untouched.
 *
 * @yields the entries that stay, bundles rewritten
 */
export async function * withoutRuntimeFiles(
  entries: AsyncIterable<Entry>,
  report: RuntimeFileReport[],
  caCertificates: PromiseLike<readonly Buffer[]> | readonly Buffer[] = [],
): AsyncGenerator<Entry, void, undefined> {
  const filter = new RuntimeFilter(report, caCertificates)
  for await (const entry of entries) {
    const name = entry.path.toString('latin1')
    if (filter.inDroppedTree(name)) continue
    const folder = filter.releaseFolder(name)
    if (folder) yield folder
    // Most entries are none of microagent's: they pass without a promise each.
    const kept = filter.concerns(entry, name) ? await filter.decide(entry, name) : entry
    if (kept) yield kept
  }

  filter.releaseFolder()
  await filter.ready()
}

class RuntimeFilter {
  private readonly ca: Buffer[] = []
  /** Links already dropped, so that a link to a dropped link goes too. */
  private readonly droppedLinks = new Set<string>()
  private droppedTree: string | undefined
  /** microagent's folder, held back until something not microagent's shows up in it. */
  private held: Entry | undefined
  /** The read-ahead certificates until they are in `ca`. */
  private pending: PromiseLike<readonly Buffer[]> | undefined

  constructor(
    private readonly report: RuntimeFileReport[],
    caCertificates: PromiseLike<readonly Buffer[]> | readonly Buffer[],
  ) {
    if ('then' in caCertificates) this.pending = caCertificates
    else this.ca.push(...caCertificates)
  }

  /** Whether `decide` may do anything but keep the entry as it is. */
  concerns(entry: Entry, name: string): boolean {
    return runtimeFile(name) !== undefined || (entry.type === 'directory' && RUNTIME_DIRS.includes(name)) || name.startsWith(CERT_LINK_PREFIX)
  }

  /** The entry as it goes into the image, or undefined when it stays out. */
  async decide(entry: Entry, name: string): Promise<Entry | undefined> {
    await this.ready()
    const row = runtimeFile(name)
    if (row?.action === 'leave-out') {
      if (entry.type === 'file' && CA_FILES.has(name)) await this.learnCa(entry)
      if (entry.type === 'directory') this.droppedTree = `${name}/`
      this.report.push({action: 'left-out', path: name, why: row.why})
      return
    }

    if (entry.type === 'directory' && RUNTIME_DIRS.includes(name)) {
      this.held = entry
      return
    }

    const inCertDir = name.startsWith(CERT_LINK_PREFIX)
    if (this.ca.length > 0 && entry.type === 'file' && (row?.action === 'remove-ca' || inCertDir)) return this.bundle(entry, name, row === undefined)
    if (entry.type === 'symlink' && entry.linkTarget && inCertDir) {
      const target = resolveLink(name, entry.linkTarget.toString('latin1'))
      if (target !== undefined && (isLeftOutRuntimePath(target) || this.droppedLinks.has(target))) {
        this.droppedLinks.add(name)
        this.report.push({action: 'left-out', path: name, why: `link to ${target}: ${CA_WHY}`})
        return
      }
    }

    return entry
  }

  inDroppedTree(name: string): boolean {
    if (this.droppedTree !== undefined && name.startsWith(this.droppedTree)) return true
    this.droppedTree = undefined
    return false
  }

  /** The read-ahead certificates are in `ca` (a failed read throws here). */
  async ready(): Promise<void> {
    const {pending} = this
    if (!pending) return
    this.pending = undefined
    for (const der of await pending) if (!this.ca.some(known => known.equals(der))) this.ca.push(der)
  }

  /**
   * Called with each name (undefined at the end): the held folder is given back when a name inside it is
   * kept, and reported as left out when its subtree ends without one.
   */
  releaseFolder(name?: string): Entry | undefined {
    const {held} = this
    if (!held) return
    const heldName = held.path.toString('latin1')
    if (name !== undefined && name.startsWith(`${heldName}/`)) {
      if (isLeftOutRuntimePath(name)) return
      this.held = undefined
      return held
    }

    this.held = undefined
    this.report.push({action: 'left-out', path: heldName, why: EMPTY_FOLDER_WHY})
  }

  /** A bundle without the CA; a file in /etc/ssl/certs that is nothing but the CA (`copy`) stays out. */
  private async bundle(entry: Entry, name: string, copy: boolean): Promise<Entry | undefined> {
    const data = await readAll(entry, MAX_BUNDLE)
    if (!data) {
      this.report.push({action: 'kept', path: name, why: 'too large to look into for the egress CA'})
      return entry
    }

    if (copy && onlyCertificates(data, this.ca)) {
      this.report.push({action: 'left-out', path: name, why: CA_WHY})
      return
    }

    const {bundle, removed} = withoutCertificates(data, this.ca)
    if (removed > 0) this.report.push({
      action: 'rewritten', certificates_removed: removed, path: name, why: CA_WHY,
    })
    else if (this.ca.some(der => data.includes(der))) {
      this.report.push({action: 'kept', path: name, why: 'holds the egress CA in a form commit cannot edit (e.g. a Java keystore)'})
    }

    return withContent(entry, bundle)
  }

  private async learnCa(entry: Entry): Promise<void> {
    addCertificates(this.ca, await readAll(entry, MAX_BUNDLE))
  }
}
