/**
 * Reads tar archives (ustar, pax, GNU long names) exactly: names and link targets as raw bytes, mtimes
 * with nanoseconds, `SCHILY.xattr.*` values as raw bytes. node-tar, the package the design card names,
 * decodes names as UTF-8, keeps mtimes in milliseconds and drops xattrs, so a tree read through it would
 * not be the tree the layers hold; this reader is what `commit --parent` uses for parents without a
 * tree record.
 */
import type {Timestamp} from '../extractor/extractor.js'

import {BLOCK} from './tar.js'

export type TarMemberType = 'block' | 'char' | 'directory' | 'fifo' | 'file' | 'hardlink' | 'symlink'

export interface TarMember {
  devMajor: number
  devMinor: number
  gid: number
  /** Link target (symlinks) or linked name (hard links), raw bytes. */
  linkpath: Buffer
  mode: number
  mtime: Timestamp
  /** Raw name bytes as the archive holds them (maybe with `./` or a trailing `/`). */
  path: Buffer
  size: number
  type: TarMemberType
  uid: number
  xattrs: [string, Buffer][]
}

export class TarFormatError extends Error {}

const TYPES: Readonly<Record<string, TarMemberType>> = {
  '\0': 'file', 0: 'file', 1: 'hardlink', 2: 'symlink', 3: 'char', 4: 'block', 5: 'directory', 6: 'fifo', 7: 'file',
}

/** Reads exact byte counts from a stream of chunks. */
class ByteSource {
  private buffered: Buffer[] = []
  private done = false
  private readonly iterator: AsyncIterator<Buffer>
  private length = 0

  constructor(source: AsyncIterable<Buffer>) {
    this.iterator = source[Symbol.asyncIterator]()
  }

  /** Exactly `n` bytes, or fewer only at the end of the stream. */
  async read(n: number): Promise<Buffer> {
    while (this.length < n && !this.done) await this.fill()
    const all = Buffer.concat(this.buffered)
    const out = all.subarray(0, n)
    this.buffered = all.length > n ? [all.subarray(n)] : []
    this.length = all.length - out.length
    return out
  }

  /**
   * @yields `n` bytes in pieces, as they arrive
   */
  async * stream(n: number): AsyncGenerator<Buffer, void, undefined> {
    let left = n
    while (left > 0) {
      if (this.length === 0) {
        if (this.done) throw new TarFormatError('archive ends inside a member')
        await this.fill()
        continue
      }

      const head = this.buffered[0]
      const piece = head.subarray(0, left)
      if (piece.length === head.length) this.buffered.shift()
      else this.buffered[0] = head.subarray(piece.length)
      this.length -= piece.length
      left -= piece.length
      yield piece
    }
  }

  private async fill(): Promise<void> {
    const next = await this.iterator.next()
    if (next.done) {
      this.done = true
      return
    }

    this.buffered.push(next.value)
    this.length += next.value.length
  }
}

function field(block: Buffer, offset: number, width: number): Buffer {
  const raw = block.subarray(offset, offset + width)
  const nul = raw.indexOf(0)
  return nul === -1 ? raw : raw.subarray(0, nul)
}

function numeric(block: Buffer, offset: number, width: number): number {
  const raw = block.subarray(offset, offset + width)
  if ((raw[0] & 0x80) !== 0) {
    // base-256, big-endian, two's complement
    let value = BigInt(raw[0] & 0x7F) - ((raw[0] & 0x40) === 0 ? 0n : 128n)
    for (const byte of raw.subarray(1)) value = value * 256n + BigInt(byte)
    return Number(value)
  }

  const text = raw.toString('latin1').replaceAll('\0', ' ').trim()
  if (text === '') return 0
  if (!/^[0-7]+$/.test(text)) throw new TarFormatError(`bad number field ${JSON.stringify(text)}`)
  return Number.parseInt(text, 8)
}

function checksumOk(block: Buffer): boolean {
  let sum = 0
  for (let i = 0; i < BLOCK; i++) sum += i >= 148 && i < 156 ? 0x20 : block[i]
  return numeric(block, 148, 8) === sum
}

/** pax time `[-]sec[.fraction]`, exact. */
export function parsePaxTime(text: string): Timestamp {
  const found = /^(-?)(\d+)(?:\.(\d+))?$/.exec(text)
  if (!found) throw new TarFormatError(`bad pax time ${JSON.stringify(text)}`)
  const fraction = (found[3] ?? '').slice(0, 9).padEnd(9, '0')
  let total = BigInt(found[2]) * 1_000_000_000n + BigInt(fraction)
  if (found[1] === '-') total = -total
  let sec = total / 1_000_000_000n
  let nsec = total % 1_000_000_000n
  if (nsec < 0n) {
    sec -= 1n
    nsec += 1_000_000_000n
  }

  return {nsec: Number(nsec), sec: Number(sec)}
}

function paxRecords(body: Buffer): Map<string, Buffer> {
  const records = new Map<string, Buffer>()
  let pos = 0
  while (pos < body.length) {
    const space = body.indexOf(0x20, pos)
    if (space === -1) break
    const length = Number(body.toString('latin1', pos, space))
    if (!Number.isSafeInteger(length) || length <= space - pos || pos + length > body.length || body[pos + length - 1] !== 0x0A) {
      throw new TarFormatError('bad pax record')
    }

    const record = body.subarray(space + 1, pos + length - 1)
    const eq = record.indexOf(0x3D)
    if (eq === -1) throw new TarFormatError('bad pax record')
    records.set(record.toString('utf8', 0, eq), Buffer.from(record.subarray(eq + 1)))
    pos += length
  }

  return records
}

/** A member's fields from its header block and the pax records and GNU long names before it. */
function memberOf(block: Buffer, records: Map<string, Buffer>, longName?: Buffer, longLink?: Buffer): TarMember {
  const typeflag = String.fromCodePoint(block[156])
  const type = TYPES[typeflag]
  if (!type) throw new TarFormatError(`unsupported member type ${JSON.stringify(typeflag)}`)
  const ustar = block.toString('latin1', 257, 263) === 'ustar\0'
  const prefix = ustar ? field(block, 345, 155) : Buffer.alloc(0)
  const name = field(block, 0, 100)
  const decimal = (key: string, fallback: number): number => {
    const value = records.has(key) ? Number(records.get(key)!.toString()) : fallback
    if (!Number.isSafeInteger(value) || value < 0) throw new TarFormatError(`bad ${key}`)
    return value
  }

  const xattrs = [...records]
  .filter(([key]) => key.startsWith('SCHILY.xattr.'))
  .map(([key, value]): [string, Buffer] => [key.slice('SCHILY.xattr.'.length), value])
  return {
    devMajor: numeric(block, 329, 8),
    devMinor: numeric(block, 337, 8),
    gid: decimal('gid', numeric(block, 116, 8)),
    linkpath: records.get('linkpath') ?? longLink ?? Buffer.from(field(block, 157, 100)),
    mode: numeric(block, 100, 8) & 0o7777,
    mtime: records.has('mtime') ? parsePaxTime(records.get('mtime')!.toString('latin1')) : {nsec: 0, sec: numeric(block, 136, 12)},
    path: records.get('path') ?? longName ?? Buffer.from(prefix.length > 0 ? Buffer.concat([prefix, Buffer.from('/'), name]) : name),
    size: decimal('size', numeric(block, 124, 12)),
    type,
    uid: decimal('uid', numeric(block, 108, 8)),
    xattrs: xattrs.sort((a, b) => (a[0] < b[0] ? -1 : (a[0] > b[0] ? 1 : 0))),
  }
}

/**
 * Reads an uncompressed tar stream. For each member, `onMember` gets the member and its content (which it
 * must read to the end, or not at all: what it leaves is skipped).
 */
export async function readTar(
  source: AsyncIterable<Buffer>,
  onMember: (member: TarMember, content: AsyncIterable<Buffer>) => Promise<void>,
): Promise<void> {
  const bytes = new ByteSource(source)
  const meta: Meta = {global: new Map(), pax: new Map()}
  for (;;) {
    const block = await bytes.read(BLOCK)
    if (block.length === 0 || (block.length === BLOCK && block.every(byte => byte === 0))) return
    if (block.length < BLOCK) throw new TarFormatError('archive ends inside a header')
    if (!checksumOk(block)) throw new TarFormatError('header checksum mismatch')
    const typeflag = String.fromCodePoint(block[156])
    const size = numeric(block, 124, 12)
    if (META_TYPES.has(typeflag)) {
      const body = await exactly(bytes, Math.ceil(size / BLOCK) * BLOCK)
      readMeta(meta, typeflag, body.subarray(0, size))
      continue
    }

    const member = memberOf(block, new Map([...meta.global, ...meta.pax]), meta.longName, meta.longLink)
    meta.pax = new Map()
    meta.longName = undefined
    meta.longLink = undefined
    // Only regular files carry content: a hard link's pax size is its target's, and nothing follows it.
    const dataSize = member.type === 'file' ? member.size : 0
    if (member.type !== 'file') member.size = 0
    let consumed = 0
    const content = (async function * () {
      for await (const piece of bytes.stream(dataSize)) {
        consumed += piece.length
        yield piece
      }
    })()
    await onMember(member, content)
    // What the consumer left (it may stop early) is skipped, with the padding; so are bytes a non-file
    // member's size field announces (GNU never writes them; other writers may).
    const announced = member.type === 'file' || typeflag === '1' ? 0 : Math.ceil(size / BLOCK) * BLOCK
    await exactly(bytes, Math.ceil(dataSize / BLOCK) * BLOCK - consumed + announced)
  }
}

const META_TYPES = new Set(['g', 'K', 'L', 'x'])

/** What the headers before a member say about it: pax records (its own and global), GNU long names. */
interface Meta {
  global: Map<string, Buffer>
  longLink?: Buffer
  longName?: Buffer
  pax: Map<string, Buffer>
}

function readMeta(meta: Meta, typeflag: string, body: Buffer): void {
  switch (typeflag) {
  case 'g': {
    meta.global = new Map([...meta.global, ...paxRecords(body)])
    break
  }

  case 'K': {
    meta.longLink = field(body, 0, body.length)
    break
  }

  case 'L': {
    meta.longName = field(body, 0, body.length)
    break
  }

  default: {
    meta.pax = paxRecords(body)
  }
  }
}

async function exactly(bytes: ByteSource, n: number): Promise<Buffer> {
  if (n <= 0) return Buffer.alloc(0)
  const out = await bytes.read(n)
  if (out.length < n) throw new TarFormatError('archive ends inside a member')
  return out
}
