/** POSIX pax (ustar + extended headers) encoding: headers only, no knowledge of files or filesystems. */

export const BLOCK = 512
export const END_OF_ARCHIVE = Buffer.alloc(BLOCK * 2)

export const TYPEFLAG = {
  block: '4',
  char: '3',
  directory: '5',
  fifo: '6',
  file: '0',
  hardlink: '1',
  pax: 'x',
  symlink: '2',
} as const
export type Typeflag = (typeof TYPEFLAG)[keyof typeof TYPEFLAG]

/** Largest value of an octal field of `width` bytes (width-1 digits and a NUL). */
function octalMax(width: number): number {
  return 8 ** (width - 1) - 1
}

const MAX_ID = octalMax(8)
const MAX_SIZE = octalMax(12)
const MAX_TIME = octalMax(12)

export interface HeaderFields {
  devMajor?: number
  devMinor?: number
  gid: number
  linkpath?: Buffer
  mode: number
  /** Seconds since the epoch, may be negative. */
  mtime: number
  mtimeNsec?: number
  path: Buffer
  size: number
  typeflag: Typeflag
  uid: number
  /** Written as `SCHILY.xattr.<name>` records, in the given order. */
  xattrs?: [string, Buffer][]
}

function writeOctal(block: Buffer, offset: number, width: number, value: number): void {
  block.write(value.toString(8).padStart(width - 1, '0'), offset, width - 1, 'latin1')
  block[offset + width - 1] = 0
}

/** Whether raw bytes can go in a ustar text field as they are: short enough, ASCII, no NUL. */
function fitsUstar(value: Buffer, width: number): boolean {
  return value.length <= width && value.every(byte => byte > 0 && byte < 0x80)
}

/** One `<len> <key>=<value>\n` record; the length counts its own digits. */
export function paxRecord(key: string, value: Buffer): Buffer {
  const rest = 1 + Buffer.byteLength(key) + 1 + value.length + 1
  let length = rest + String(rest).length
  if (String(length).length !== String(rest).length) length = rest + String(length).length
  return Buffer.concat([Buffer.from(`${length} ${key}=`), value, Buffer.from('\n')])
}

/** pax time: seconds with an optional fraction, exact for negative times too (-1.5 is 1.5 s before 1970). */
export function paxTime(sec: number, nsec: number): string {
  const total = BigInt(sec) * 1_000_000_000n + BigInt(nsec)
  const negative = total < 0n
  const abs = negative ? -total : total
  const whole = abs / 1_000_000_000n
  const fraction = (abs % 1_000_000_000n).toString().padStart(9, '0').replace(/0+$/, '')
  return `${negative ? '-' : ''}${whole}${fraction ? `.${fraction}` : ''}`
}

function ustarHeader(fields: HeaderFields, name: Buffer, linkname: Buffer): Buffer {
  const block = Buffer.alloc(BLOCK)
  name.copy(block, 0, 0, Math.min(name.length, 100))
  writeOctal(block, 100, 8, fields.mode & 0o7777)
  writeOctal(block, 108, 8, fields.uid <= MAX_ID ? fields.uid : 0)
  writeOctal(block, 116, 8, fields.gid <= MAX_ID ? fields.gid : 0)
  writeOctal(block, 124, 12, fields.size <= MAX_SIZE ? fields.size : 0)
  writeOctal(block, 136, 12, Math.min(Math.max(fields.mtime, 0), MAX_TIME))
  block.write(fields.typeflag, 156, 1, 'latin1')
  linkname.copy(block, 157, 0, Math.min(linkname.length, 100))
  block.write('ustar\u000000', 257, 8, 'latin1')
  writeOctal(block, 329, 8, fields.devMajor ?? 0)
  writeOctal(block, 337, 8, fields.devMinor ?? 0)
  block.fill(0x20, 148, 156)
  let sum = 0
  for (const byte of block) sum += byte
  block.write(`${sum.toString(8).padStart(6, '0')}\u0000 `, 148, 8, 'latin1')
  return block
}

/** A stand-in for a name that only the pax record holds: printable ASCII, at most 100 bytes. */
function fallbackName(value: Buffer): Buffer {
  const ascii = Buffer.from(value.subarray(0, 100).map(byte => (byte > 0x20 && byte < 0x7F ? byte : 0x5F)))
  return ascii
}

/**
 * Encodes one archive member's header: a plain ustar block when every field fits, else a pax `x` header
 * first (path, linkpath, size, uid, gid, mtime with nanoseconds, xattrs). Deterministic: the same
 * fields give the same bytes; no user or group names, no atime or ctime.
 */
export function encodeHeader(fields: HeaderFields): Buffer {
  const records: Buffer[] = []
  const linkpath = fields.linkpath ?? Buffer.alloc(0)
  if (!fitsUstar(fields.path, 100)) records.push(paxRecord('path', fields.path))
  if (!fitsUstar(linkpath, 100)) records.push(paxRecord('linkpath', linkpath))
  if (fields.size > MAX_SIZE) records.push(paxRecord('size', Buffer.from(String(fields.size))))
  if (fields.uid > MAX_ID) records.push(paxRecord('uid', Buffer.from(String(fields.uid))))
  if (fields.gid > MAX_ID) records.push(paxRecord('gid', Buffer.from(String(fields.gid))))
  const nsec = fields.mtimeNsec ?? 0
  if (nsec !== 0 || fields.mtime < 0 || fields.mtime > MAX_TIME) {
    records.push(paxRecord('mtime', Buffer.from(paxTime(fields.mtime, nsec))))
  }

  for (const [name, value] of fields.xattrs ?? []) records.push(paxRecord(`SCHILY.xattr.${name}`, value))
  const name = fitsUstar(fields.path, 100) ? fields.path : fallbackName(fields.path)
  const linkname = fitsUstar(linkpath, 100) ? linkpath : fallbackName(linkpath)
  const header = ustarHeader(fields, name, linkname)
  if (records.length === 0) return header
  const body = Buffer.concat(records)
  const paxName = Buffer.concat([Buffer.from('PaxHeaders/'), fallbackName(fields.path)]).subarray(0, 100)
  const paxHeader = ustarHeader(
    {
      gid: 0, mode: 0o644, mtime: Math.min(Math.max(fields.mtime, 0), MAX_TIME), path: paxName, size: body.length, typeflag: TYPEFLAG.pax, uid: 0,
    },
    paxName,
    Buffer.alloc(0),
  )
  return Buffer.concat([paxHeader, body, padding(body.length), header])
}

/** Zero bytes that round `size` up to a whole block. */
export function padding(size: number): Buffer {
  const rest = size % BLOCK
  return rest === 0 ? Buffer.alloc(0) : Buffer.alloc(BLOCK - rest)
}
