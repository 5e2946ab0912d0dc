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

// Every entry gets a header, often two (a pax record carries the mtime's nanoseconds): this code runs a
// million times on a large disk, so it writes bytes in place instead of building strings and concatenating.

/** `value` in `width - 1` octal digits and a NUL; callers clamp it to fit. Returns the bytes' sum. */
function writeOctal(block: Buffer, offset: number, width: number, value: number): number {
  let rest = value
  let sum = 0
  for (let i = offset + width - 2; i >= offset; i--) {
    // Bit operations while the value fits in 31 bits (all but large sizes and times).
    const digit = rest < 0x80_00_00_00 ? rest & 7 : rest % 8
    rest = rest < 0x80_00_00_00 ? rest >>> 3 : Math.floor(rest / 8)
    block[i] = 0x30 + digit
    sum += 0x30 + digit
  }

  block[offset + width - 1] = 0
  return sum
}

function byteSum(bytes: Buffer, end: number): number {
  let sum = 0
  for (let i = 0; i < end; i++) sum += bytes[i]
  return sum
}

/** Whether raw bytes can go in a ustar text field as they are: short enough, ASCII, no NUL. */
function fitsUstar(value: Buffer, width: number): boolean {
  if (value.length > width) return false
  for (let i = 0; i < value.length; i++) if (value[i] === 0 || value[i] >= 0x80) return false
  return true
}

/** The length of a `<len> <key>=<value>\n` record of `rest` bytes besides the length's own digits. */
function recordLength(rest: number): number {
  const length = rest + String(rest).length
  return String(length).length === String(rest).length ? length : rest + String(length).length
}

/** One `<len> <key>=<value>\n` record; the length counts its own digits. */
export function paxRecord(key: string, value: Buffer): Buffer {
  const length = recordLength(1 + Buffer.byteLength(key) + 1 + value.length + 1)
  return Buffer.concat([Buffer.from(`${length} ${key}=`), value, Buffer.from('\n')])
}

/** A record whose key and value are ASCII text (so its length in bytes is its length as a string). */
function textRecord(key: string, value: string): string {
  return `${recordLength(key.length + value.length + 3)} ${key}=${value}\n`
}

/** pax time: seconds with an optional fraction, exact for negative times too (-1.5 is 1.5 s before 1970). */
export function paxTime(sec: number, nsec: number): string {
  if (sec >= 0 && Number.isSafeInteger(sec) && Number.isInteger(nsec) && nsec >= 0 && nsec < 1_000_000_000) {
    if (nsec === 0) return String(sec)
    return `${sec}.${String(nsec).padStart(9, '0').replace(/0+$/, '')}`
  }

  const total = BigInt(sec) * 1_000_000_000n + BigInt(nsec)
  const negative = total < 0n
  const abs = negative ? -total : total
  const whole = abs / 1_000_000_000n
  const fraction = (abs % 1_000_000_000n).toString().padStart(9, '0').replace(/0+$/, '')
  return `${negative ? '-' : ''}${whole}${fraction ? `.${fraction}` : ''}`
}

const USTAR_MAGIC = Buffer.from('ustar\u000000', 'latin1')
const USTAR_MAGIC_SUM = byteSum(USTAR_MAGIC, USTAR_MAGIC.length)
const PAX_PREFIX = Buffer.from('PaxHeaders/')
const NO_LINK = Buffer.alloc(0)

/**
 * Writes a ustar block at `at` of `block`, whose 512 bytes from there must be zero. The checksum is
 * summed from the fields as they are written: the rest of the block is zeros.
 */
function ustarHeader(block: Buffer, at: number, fields: HeaderFields, {linkname, name}: {linkname: Buffer; name: Buffer}): void {
  const nameLength = Math.min(name.length, 100)
  const linkLength = Math.min(linkname.length, 100)
  name.copy(block, at, 0, nameLength)
  let sum = byteSum(name, nameLength) + byteSum(linkname, linkLength) + USTAR_MAGIC_SUM + 8 * 0x20
  sum += writeOctal(block, at + 100, 8, fields.mode & 0o7777)
  sum += writeOctal(block, at + 108, 8, fields.uid <= MAX_ID ? fields.uid : 0)
  sum += writeOctal(block, at + 116, 8, fields.gid <= MAX_ID ? fields.gid : 0)
  sum += writeOctal(block, at + 124, 12, fields.size <= MAX_SIZE ? fields.size : 0)
  sum += writeOctal(block, at + 136, 12, Math.min(Math.max(fields.mtime, 0), MAX_TIME))
  block.write(fields.typeflag, at + 156, 1, 'latin1')
  sum += block[at + 156]
  linkname.copy(block, at + 157, 0, linkLength)
  USTAR_MAGIC.copy(block, at + 257)
  sum += writeOctal(block, at + 329, 8, fields.devMajor ?? 0)
  sum += writeOctal(block, at + 337, 8, fields.devMinor ?? 0)
  writeOctal(block, at + 148, 7, sum)
  block[at + 155] = 0x20
}

/** Writes a stand-in for a name that only the pax record holds: printable ASCII, at most `room` bytes. */
function fallbackName(target: Buffer, at: number, value: Buffer, room: number): void {
  const end = Math.min(value.length, room)
  for (let i = 0; i < end; i++) target[at + i] = value[i] > 0x20 && value[i] < 0x7F ? value[i] : 0x5F
}

/** A pax record: bytes, or ASCII text (written as it is, with no Buffer made for it). */
type PaxRecord = Buffer | string

/** One member's header, planned: its pax records and its length (the pax header, if any, and the ustar block). */
export interface HeaderPlan {
  fields: HeaderFields
  length: number
  linkFits: boolean
  linkpath: Buffer
  pathFits: boolean
  paxLength: number
  records: PaxRecord[]
}

/**
 * Plans one archive member's header: a plain ustar block when every field fits, else a pax `x` header
 * first (path, linkpath, size, uid, gid, mtime with nanoseconds, xattrs). Deterministic: the same
 * fields give the same bytes; no user or group names, no atime or ctime.
 */
export function planHeader(fields: HeaderFields): HeaderPlan {
  const records: PaxRecord[] = []
  const linkpath = fields.linkpath ?? NO_LINK
  const pathFits = fitsUstar(fields.path, 100)
  const linkFits = fitsUstar(linkpath, 100)
  if (!pathFits) records.push(paxRecord('path', fields.path))
  if (!linkFits) records.push(paxRecord('linkpath', linkpath))
  if (fields.size > MAX_SIZE) records.push(textRecord('size', String(fields.size)))
  if (fields.uid > MAX_ID) records.push(textRecord('uid', String(fields.uid)))
  if (fields.gid > MAX_ID) records.push(textRecord('gid', String(fields.gid)))
  const nsec = fields.mtimeNsec ?? 0
  if (nsec !== 0 || fields.mtime < 0 || fields.mtime > MAX_TIME) records.push(textRecord('mtime', paxTime(fields.mtime, nsec)))
  for (const [name, value] of fields.xattrs ?? []) records.push(paxRecord(`SCHILY.xattr.${name}`, value))
  let bodyLength = 0
  for (const record of records) bodyLength += record.length
  const paxLength = records.length === 0 ? 0 : BLOCK + bodyLength + ((BLOCK - (bodyLength % BLOCK)) % BLOCK)
  return {
    fields, length: paxLength + BLOCK, linkFits, linkpath, pathFits, paxLength, records,
  }
}

/**
 * Writes a planned header at `at` of `out`, whose `plan.length` bytes from there must be zero: a
 * member's header goes straight into the tar's chunk, with no buffer of its own (a million entries,
 * most with a pax header too, made that allocation, its zeroing and its copy a large part of the work).
 */
export function writeHeader(out: Buffer, at: number, plan: HeaderPlan): void {
  const {fields, linkpath, paxLength, records} = plan
  let name = fields.path
  let linkname = linkpath
  if (!plan.pathFits) {
    fallbackName(out, at + paxLength, fields.path, 100)
    name = out.subarray(at + paxLength, at + paxLength + Math.min(fields.path.length, 100))
  }

  if (!plan.linkFits) {
    fallbackName(out, at + paxLength + 157, linkpath, 100)
    linkname = out.subarray(at + paxLength + 157, at + paxLength + 157 + Math.min(linkpath.length, 100))
  }

  ustarHeader(out, at + paxLength, fields, {linkname, name})
  if (records.length === 0) return
  PAX_PREFIX.copy(out, at)
  fallbackName(out, at + PAX_PREFIX.length, fields.path, 100 - PAX_PREFIX.length)
  const paxName = out.subarray(at, at + PAX_PREFIX.length + Math.min(fields.path.length, 100 - PAX_PREFIX.length))
  let body = at + BLOCK
  for (const record of records) body += typeof record === 'string' ? out.write(record, body, 'latin1') : record.copy(out, body)
  ustarHeader(
    out,
    at,
    {
      gid: 0, mode: 0o644, mtime: Math.min(Math.max(fields.mtime, 0), MAX_TIME), path: paxName, size: body - at - BLOCK, typeflag: TYPEFLAG.pax, uid: 0,
    },
    {linkname: NO_LINK, name: paxName},
  )
}

/** A planned header in a buffer of its own. */
export function encodePlanned(plan: HeaderPlan): Buffer {
  const out = Buffer.alloc(plan.length)
  writeHeader(out, 0, plan)
  return out
}

/** One member's header in a buffer of its own (see `planHeader`). */
export function encodeHeader(fields: HeaderFields): Buffer {
  return encodePlanned(planHeader(fields))
}

/** How many zero bytes round `size` up to a whole block. */
export function paddingLength(size: number): number {
  const rest = size % BLOCK
  return rest === 0 ? 0 : BLOCK - rest
}
