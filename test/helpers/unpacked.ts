import {execFileSync} from 'node:child_process'
import {createHash} from 'node:crypto'
import {
  lstatSync, readdirSync, readFileSync, readlinkSync,
} from 'node:fs'
import path from 'node:path'

import {tempDir} from './ext4.js'

/** Everything an unpacked tree says about one path; hard links as the first path of their group. */
export interface UnpackedNode {
  content?: string
  gid: number
  link?: string
  linkedTo?: string
  mode: string
  mtime: string
  rdev?: string
  type: string
  uid: number
  xattrs: Record<string, string>
}

function typeOf(mode: bigint): string {
  const bits = Number(mode & 0o17_0000n)
  return ({
    0o01_0000: 'fifo', 0o02_0000: 'char', 0o04_0000: 'dir', 0o06_0000: 'block', 0o10_0000: 'file', 0o12_0000: 'symlink', 0o14_0000: 'socket',
  } as Record<number, string>)[bits] ?? 'unknown'
}

/** All xattrs under `root` in one getfattr run: path → name → hex value. */
function xattrsUnder(root: string): Map<string, Record<string, string>> {
  const out = execFileSync('getfattr', ['-R', '-h', '-d', '-m', '-', '-e', 'hex', '--absolute-names', root], {encoding: 'latin1', maxBuffer: 64 * 1024 * 1024})
  const result = new Map<string, Record<string, string>>()
  let current: Record<string, string> | undefined
  for (const line of out.split('\n')) {
    if (line.startsWith('# file: ')) {
      current = {}
      result.set(line.slice('# file: '.length), current)
    } else if (current && line.includes('=')) {
      const eq = line.indexOf('=')
      current[line.slice(0, eq)] = line.slice(eq + 1)
    }
  }

  return result
}

/** A deterministic description of the tree under `root` (root itself excluded), names as latin1. */
export function describeTree(root: string): Map<string, UnpackedNode> {
  const xattrs = xattrsUnder(root)
  const firstName = new Map<bigint, string>()
  const nodes = new Map<string, UnpackedNode>()
  const walk = (dir: string, prefix: string): void => {
    const names = readdirSync(dir, {encoding: 'buffer'}).map(n => n.toString('latin1')).sort()
    for (const name of names) {
      const full = path.join(dir, name)
      const rel = prefix ? `${prefix}/${name}` : name
      const info = lstatSync(Buffer.from(full, 'latin1'), {bigint: true})
      const type = typeOf(info.mode)
      const node: UnpackedNode = {
        gid: Number(info.gid),
        mode: (info.mode & 0o7777n).toString(8),
        mtime: `${info.mtimeNs}`,
        type,
        uid: Number(info.uid),
        xattrs: xattrs.get(full) ?? {},
      }
      if (type !== 'dir' && info.nlink > 1n) {
        const first = firstName.get(info.ino)
        if (first) node.linkedTo = first
        else firstName.set(info.ino, rel)
      }

      if (type === 'file') node.content = createHash('sha256').update(readFileSync(Buffer.from(full, 'latin1'))).digest('hex')
      if (type === 'symlink') node.link = readlinkSync(Buffer.from(full, 'latin1'), {encoding: 'buffer'}).toString('hex')
      if (type === 'char' || type === 'block') node.rdev = `${info.rdev}`
      nodes.set(rel, node)
      if (type === 'dir') walk(full, rel)
    }
  }

  walk(root, '')
  return nodes
}

/** Unpacks `layout:ref` with umoci as root (owners, devices and xattrs as they are) and describes its rootfs. */
export function unpackAndDescribe(layout: string, ref: string): Map<string, UnpackedNode> {
  const bundle = path.join(tempDir('plugin-image-unpack-'), 'bundle')
  execFileSync('umoci', ['unpack', '--image', `${layout}:${ref}`, bundle], {stdio: 'pipe'})
  return describeTree(path.join(bundle, 'rootfs'))
}

/** The paths whose descriptions differ, with both sides, for a readable failure. */
export function treeDifferences(a: Map<string, UnpackedNode>, b: Map<string, UnpackedNode>): string[] {
  const differences: string[] = []
  for (const key of new Set([...a.keys(), ...b.keys()])) {
    const left = JSON.stringify(a.get(key))
    const right = JSON.stringify(b.get(key))
    if (left !== right) differences.push(`${JSON.stringify(key)}: ${left} != ${right}`)
  }

  return differences
}
