import {execFileSync} from 'node:child_process'
import {
  cpSync, mkdirSync, readFileSync, rmSync, writeFileSync,
} from 'node:fs'
import path from 'node:path'

import {tempDir} from './ext4.js'

/** A CA made by openssl, as the egress broker would make its TLS-interception authority. */
export function makeCa(name = 'microagent egress CA'): {der: Buffer; pem: string} {
  const dir = tempDir('plugin-image-ca-')
  execFileSync('openssl', [
    'req',
    '-x509',
    '-newkey',
    'ec',
    '-pkeyopt',
    'ec_paramgen_curve:prime256v1',
    '-nodes',
    '-keyout',
    path.join(dir, 'key.pem'),
    '-subj',
    `/CN=${name}`,
    '-days',
    '2',
    '-out',
    path.join(dir, 'ca.pem'),
  ], {stdio: 'ignore'})
  const pem = readFileSync(path.join(dir, 'ca.pem'), 'latin1')
  const der = execFileSync('openssl', ['x509', '-in', path.join(dir, 'ca.pem'), '-outform', 'DER'])
  return {der, pem}
}

export interface TrustStore {
  /** The system bundle Debian's update-ca-certificates wrote before the CA was added. */
  before: Buffer
  /** The tree (etc/ssl/certs, usr/local/share/ca-certificates) after it ran again with the CA. */
  root: string
}

/**
 * Runs Debian's own update-ca-certificates (with --sysroot, on this machine's Mozilla certificates) once
 * without and once with `ca` in /usr/local/share/ca-certificates, as the guest init does, into a fresh
 * tree. --sysroot writes the sysroot into the absolute link it makes; that link is made again with the
 * guest's path, the only thing changed by hand.
 */
export function debianTrustStore(ca: string): TrustStore {
  const root = tempDir('plugin-image-trust-')
  mkdirSync(path.join(root, 'etc/ssl/certs'), {recursive: true})
  mkdirSync(path.join(root, 'etc/ca-certificates/update.d'), {recursive: true})
  mkdirSync(path.join(root, 'usr/local/share/ca-certificates'), {recursive: true})
  cpSync('/etc/ca-certificates.conf', path.join(root, 'etc/ca-certificates.conf'))
  cpSync('/usr/share/ca-certificates', path.join(root, 'usr/share/ca-certificates'), {recursive: true})
  const run = (): void => {
    execFileSync('update-ca-certificates', ['--sysroot', root], {stdio: 'ignore'})
  }

  run()
  const before = readFileSync(path.join(root, 'etc/ssl/certs/ca-certificates.crt'))
  writeFileSync(path.join(root, 'usr/local/share/ca-certificates/microagent-egress.crt'), ca)
  run()
  const link = path.join(root, 'etc/ssl/certs/microagent-egress.pem')
  rmSync(link)
  execFileSync('ln', ['-s', '/usr/local/share/ca-certificates/microagent-egress.crt', link])
  return {before, root}
}
