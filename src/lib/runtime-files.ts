/**
 * The files microagent itself writes into a workspace's rootfs (microagent-compat.md §11–12), and what a
 * commit does with each: an image must carry nothing of the host it was committed on. This table is the one
 * place that knows them; the layer filter, the docs and the incremental commit all read it.
 */

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

/** The table's row for a path, if microagent writes it. */
export function runtimeFile(entryPath: Buffer | string): RuntimeFile | undefined {
  return byPath.get(typeof entryPath === 'string' ? entryPath : entryPath.toString('latin1'))
}

/** Whether a commit leaves this path out by default (the `leave-out` rows). */
export function isLeftOutRuntimePath(entryPath: Buffer | string): boolean {
  return runtimeFile(entryPath)?.action === 'leave-out'
}
