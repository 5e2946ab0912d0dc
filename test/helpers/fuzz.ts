import {mkdirSync, symlinkSync, writeFileSync} from 'node:fs'
import path from 'node:path'

import {buildExt4, debugfsRead, tempDir} from './ext4.js'

/**
 * The fuzz corpus: a small valid image and seeded mutations of it where ext4 keeps its metadata. Shared by
 * the fuzz test and the inode readers' differential test, so both see the same cases.
 */

/** mulberry32: small, seedable, good enough to pick offsets. */
export function random(seed: number): () => number {
  let state = seed >>> 0
  return () => {
    state = (state + 0x6D_2B_79_F5) >>> 0
    let t = state
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296
  }
}

export interface Region {
  end: number
  start: number
  weight: number
}

export function baseImage(): {file: string; regions: Region[]} {
  const file = buildExt4(path.join(tempDir(), 'fuzz-base.ext4'), {
    commands: [
      'cd /dev',
      'mknod null c 1 3',
      'cd /',
      'sif /etc/shadow uid 0',
      'sif /etc/shadow mode 0100640',
      'ea_set /bin/ping security.capability -f /dev/null',
      'ea_set /etc user.note hello',
      'symlink /etc/long-link /' + 'x'.repeat(120),
    ],
    // No checksums: a mutated inode is then parsed, not just refused for its checksum.
    mke2fsOptions: ['-b', '1024', '-N', '128', '-O', '^has_journal,^metadata_csum'],
    sizeMiB: 2,
    tree(root) {
      for (const dir of ['bin', 'dev', 'etc/ssl', 'usr/share/doc/pkg', 'tmp']) mkdirSync(path.join(root, dir), {recursive: true})
      writeFileSync(path.join(root, 'bin', 'ping'), Buffer.alloc(5000, 0x7F))
      writeFileSync(path.join(root, 'etc', 'shadow'), 'root:*:1::::::\n')
      writeFileSync(path.join(root, 'etc', 'ssl', 'cert.pem'), 'c'.repeat(3000))
      writeFileSync(path.join(root, 'usr', 'share', 'doc', 'pkg', 'README'), 'r'.repeat(20_000))
      for (let i = 0; i < 30; i++) writeFileSync(path.join(root, 'usr', 'share', 'doc', `f${i}`), `file ${i}\n`)
      symlinkSync('../etc/shadow', path.join(root, 'tmp', 'link'))
    },
  })
  const blockSize = 1024
  const stats = debugfsRead(file, 'stats')
  const regions: Region[] = [{end: 4 * blockSize, start: blockSize, weight: 1}]
  for (const match of stats.matchAll(/Inode table at (\d+)-(\d+)/g)) {
    regions.push({end: (Number(match[2]) + 1) * blockSize, start: Number(match[1]) * blockSize, weight: 6})
  }

  for (const dir of ['/', '/etc', '/usr/share/doc', '/bin']) {
    for (const block of debugfsRead(file, `blocks ${dir}`).trim().split(/\s+/).map(Number)) {
      regions.push({end: (block + 1) * blockSize, start: block * blockSize, weight: 3})
    }
  }

  return {file, regions}
}

function pickRegion(regions: Region[], point: number): Region {
  let left = point
  for (const region of regions) {
    left -= region.weight
    if (left < 0) return region
  }

  return regions[0]
}

/** A bit flip most often, else the values parsers trip on: all ones, zero, anything. */
function newByte(old: number, next: () => number): number {
  const kind = next()
  if (kind < 0.4) return old ^ (1 << Math.floor(next() * 8))
  if (kind < 0.6) return 0xFF
  if (kind < 0.7) return 0
  return Math.floor(next() * 256)
}

export function mutate(base: Buffer, regions: Region[], next: () => number): {bytes: Buffer; edits: string[]} {
  const bytes = Buffer.from(base)
  const edits: string[] = []
  const total = regions.reduce((sum, r) => sum + r.weight, 0)
  const count = 1 + Math.floor(next() * 4)
  for (let i = 0; i < count; i++) {
    const region = pickRegion(regions, next() * total)
    const offset = region.start + Math.floor(next() * (region.end - region.start))
    const value = newByte(bytes[offset], next)
    edits.push(`${offset}:${bytes[offset]}->${value}`)
    bytes[offset] = value
  }

  return {bytes, edits}
}
