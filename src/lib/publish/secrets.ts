import type {LayerItem} from '../layer/names.js'

/**
 * Finds secrets in files as their bytes stream into a layer: private keys, tokens with a fixed shape, and
 * credential files known by their path. A finding names a path, a rule and a line; the secret itself is never
 * kept, printed or stored: matches are looked at and dropped inside this module.
 */

export interface SecretFinding {
  /** Which layer of the image holds the file (0 is the bottom); absent for a single-layer image. */
  layer?: number
  /** 1-based line of the match (of its first byte). */
  line: number
  /** Image path, relative to the root. */
  path: string
  rule: SecretRule
}

/** Rule names, stable for programs. */
export const SECRET_RULES = [
  'anthropic-api-key',
  'aws-access-key-id',
  'aws-credentials-file',
  'docker-config-auth',
  'git-credentials',
  'github-token',
  'gitlab-token',
  'google-api-key',
  'huggingface-token',
  'kubeconfig-credential',
  'netrc-password',
  'npm-token',
  'npmrc-auth-token',
  'openai-api-key',
  'private-key',
  'pypirc-password',
  'slack-token',
  'stripe-live-key',
] as const
export type SecretRule = (typeof SECRET_RULES)[number]

/**
 * Token shapes, each anchored so it does not match inside a longer identifier. The shapes are the issuers'
 * documented prefixes; the bodies are what they issue today (checked against the published formats).
 */
const TOKEN_RULES: readonly [rule: SecretRule, source: string][] = [
  ['aws-access-key-id', String.raw`(?<![A-Z0-9])(?:AKIA|ASIA|ABIA|ACCA)[A-Z2-7]{16}(?![A-Za-z0-9])`],
  ['github-token', String.raw`(?<![A-Za-z0-9_])(?:gh[pousr]_[A-Za-z0-9]{36}|github_pat_[A-Za-z0-9]{22}_[A-Za-z0-9]{59})(?![A-Za-z0-9_])`],
  ['gitlab-token', String.raw`(?<![A-Za-z0-9_-])glpat-[A-Za-z0-9_-]{20,}`],
  ['slack-token', String.raw`(?<![A-Za-z0-9_-])xox[abposr]-[0-9]{6,}-[0-9A-Za-z-]{10,}`],
  ['openai-api-key', String.raw`(?<![A-Za-z0-9_-])sk-(?:(?:proj|svcacct|admin)-)?[A-Za-z0-9_-]{16,}T3BlbkFJ[A-Za-z0-9_-]{16,}`],
  ['anthropic-api-key', String.raw`(?<![A-Za-z0-9_-])sk-ant-(?:api|admin)[0-9]{2}-[A-Za-z0-9_-]{80,}`],
  ['google-api-key', String.raw`(?<![A-Za-z0-9_-])AIza[0-9A-Za-z_-]{35}(?![A-Za-z0-9_-])`],
  ['npm-token', String.raw`(?<![A-Za-z0-9_])npm_[A-Za-z0-9]{36}(?![A-Za-z0-9_])`],
  ['huggingface-token', String.raw`(?<![A-Za-z0-9_])hf_[A-Za-z]{34}(?![A-Za-z0-9_])`],
  ['stripe-live-key', String.raw`(?<![A-Za-z0-9_])(?:sk|rk)_live_[0-9A-Za-z]{24,}`],
]

const PEM_BEGIN = '-----BEGIN '
/** One regex for every rule, so each byte is looked at once; the named group tells which rule matched. */
const SCAN = new RegExp(
  [String.raw`(?<pem>-----BEGIN [A-Z0-9 ]{1,40}-----)`, ...TOKEN_RULES.map(([, source], i) => `(?<t${i}>${source})`)].join('|'),
  'g',
)
/** Tokens the issuers publish as examples in their own docs. */
const EXAMPLE_TOKEN = /EXAMPLE$/
/** Longest token shape, with room: the tail of one chunk scanned again with the next. */
const CARRY = 256
/** A PEM block larger than this is not a key (an RSA-16384 key is about 12 KiB). */
const MAX_PEM = 32 * 1024
/**
 * Files whose first 8 KiB hold a NUL are binary, as git and grep decide: only PEM keys are looked for in
 * them, since a token shape in binary data is noise. Executables and shared libraries (ELF) are not scanned
 * at all: what they hold is compiled in, not left behind (GnuTLS carries its FIPS self-test keys as PEM).
 */
const BINARY_SNIFF = 8192
const ELF_MAGIC = Buffer.from([0x7F, 0x45, 0x4C, 0x46])
/** Credential files are read whole up to this size; larger ones are not what they claim to be. */
const MAX_CREDENTIAL_FILE = 1024 * 1024

type LineRule = {pattern: RegExp; rule: SecretRule}
/** A value that names an environment variable is a reference, not a secret. */
const ENV_REFERENCE = String.raw`(?!\s*["']?\$\{?[A-Za-z_])`

/**
 * Credential files known by their path (the last components, anchored at a component boundary), and the
 * lines in them that hold a credential. A file without such a line (an .npmrc of registry settings only) is
 * not a finding.
 */
const CREDENTIAL_FILES: readonly {lines?: LineRule[]; suffix: string}[] = [
  {lines: [{pattern: /^\s*aws_(?:secret_access_key|session_token)\s*=\s*\S/, rule: 'aws-credentials-file'}], suffix: '.aws/credentials'},
  {suffix: '.docker/config.json'},
  {suffix: 'containers/auth.json'},
  {lines: [{pattern: /^\s*[a-z][\d+.a-z-]*:\/\/[^\s/:@]*:[^\s@]+@/i, rule: 'git-credentials'}], suffix: '.git-credentials'},
  {lines: [{pattern: /(?:^|\s)password\s+\S/, rule: 'netrc-password'}], suffix: '.netrc'},
  {lines: [{pattern: new RegExp(String.raw`(?:^|:)_(?:authToken|auth|password)\s*=${ENV_REFERENCE}\s*\S`), rule: 'npmrc-auth-token'}], suffix: '.npmrc'},
  {lines: [{pattern: new RegExp(String.raw`^\s*password\s*[:=]${ENV_REFERENCE}\s*\S`), rule: 'pypirc-password'}], suffix: '.pypirc'},
  {
    lines: [{pattern: /^\s*(?:token|client-key-data|password)\s*:\s*["']?[^\s"'#]/, rule: 'kubeconfig-credential'}],
    suffix: '.kube/config',
  },
]

function credentialFile(entryPath: string): (typeof CREDENTIAL_FILES)[number] | undefined {
  return CREDENTIAL_FILES.find(({suffix}) => entryPath === suffix || entryPath.endsWith(`/${suffix}`))
}

/** Newlines in text[from, to). */
function countLines(text: string, from: number, to: number): number {
  let lines = 0
  for (let i = text.indexOf('\n', from); i !== -1 && i < to; i = text.indexOf('\n', i + 1)) lines++
  return lines
}

/** Docker and containers auth files: a credential is a non-empty auth, password or token of a registry in `auths`. */
function dockerAuthLines(text: string): number[] {
  let document: unknown
  try {
    document = JSON.parse(text)
  } catch {
    return []
  }

  const auths = (document as null | {auths?: unknown})?.auths
  if (typeof auths !== 'object' || auths === null) return []
  const lines: number[] = []
  for (const [registry, entry] of Object.entries(auths as Record<string, unknown>)) {
    if (typeof entry !== 'object' || entry === null) continue
    const secretKey = ['auth', 'password', 'identitytoken', 'registrytoken'].find(key => {
      const value = (entry as Record<string, unknown>)[key]
      return typeof value === 'string' && value !== ''
    })
    if (!secretKey) continue
    // The line of the registry's key: the value itself is never located, only where its entry starts.
    const at = text.indexOf(JSON.stringify(registry))
    lines.push(at === -1 ? 1 : countLines(text, 0, at) + 1)
  }

  return lines
}

const BASE64_LINE = /^[\d+/A-Za-z]+={0,2}$/

/**
 * Whether a PEM block (BEGIN line to END line) is an unencrypted private key: its body must decode to the
 * key structure itself, so documentation quoting a header, or a truncated block, is not a finding.
 */
export function isUnencryptedPrivateKey(block: string): boolean {
  const header = /^-----BEGIN ([A-Z0-9 ]+)-----/.exec(block)
  if (!header) return false
  const label = header[1]
  if (!label.endsWith('PRIVATE KEY') || label.includes('ENCRYPTED')) return false
  const lines = block.split(/\r?\n/).slice(1)
  const end = lines.findIndex(line => line.startsWith('-----END '))
  if (end === -1 || lines[end].trim() !== `-----END ${label}-----`) return false
  const bodyLines = lines.slice(0, end).map(line => line.trim())
  // Legacy OpenSSL PEM encryption puts RFC 1421 headers before the body.
  if (bodyLines.some(line => /^Proc-Type:.*ENCRYPTED/i.test(line))) return false
  const body = bodyLines.filter(line => line !== '' && !line.includes(':'))
  if (body.length === 0 || !body.every(line => BASE64_LINE.test(line))) return false
  const der = Buffer.from(body.join(''), 'base64')
  if (label === 'OPENSSH PRIVATE KEY') return isUnencryptedOpensshKey(der)
  return isDerSequence(der)
}

/** PKCS#1, SEC1, PKCS#8 and DSA keys are one DER SEQUENCE whose length is exactly the rest of the bytes. */
function isDerSequence(der: Buffer): boolean {
  if (der.length < 32 || der[0] !== 0x30) return false
  if (der[1] < 0x80) return der.length === 2 + der[1]
  const bytes = der[1] & 0x7F
  if (bytes === 0 || bytes > 3 || der.length < 2 + bytes) return false
  return der.length === 2 + bytes + der.readUIntBE(2, bytes)
}

/** OpenSSH's own format: magic, then the cipher name, `none` when the key is not encrypted. */
function isUnencryptedOpensshKey(data: Buffer): boolean {
  const magic = Buffer.from('openssh-key-v1\0', 'latin1')
  if (data.length < magic.length + 8 || !data.subarray(0, magic.length).equals(magic)) return false
  const length = data.readUInt32BE(magic.length)
  if (length > 64 || magic.length + 4 + length > data.length) return false
  return data.toString('latin1', magic.length + 4, magic.length + 4 + length) === 'none'
}

/**
 * Scans one file, chunk by chunk, keeping only what a match may still need (a short tail, or an open PEM
 * block). `push` every chunk in order, then `end`. Findings are deduplicated per rule and line.
 */
export class FileScanner {
  private binary: boolean | undefined
  private carry = ''
  /** The line `carry` starts on. */
  private carryLine = 1
  /** An ELF object: nothing in it is looked at. */
  private compiled = false
  private readonly credential: (typeof CREDENTIAL_FILES)[number] | undefined
  private readonly found: SecretFinding[] = []
  /** How much of `carry` the previous scan has already looked at. */
  private scannedInCarry = 0
  private readonly seen = new Set<string>()
  private whole: Buffer[] | undefined
  private wholeBytes = 0

  constructor(readonly path: string) {
    this.credential = credentialFile(path)
    if (this.credential) this.whole = []
  }

  end(): SecretFinding[] {
    // Only an open PEM block leaves part of the carry unscanned; otherwise a last scan of the carry finds
    // nothing new (every token in it was judged, every PEM block in it closed), and on small files it was a
    // third of the scanning.
    if (this.scannedInCarry < this.carry.length) this.scan('', true)
    if (this.whole) this.scanCredentialFile(Buffer.concat(this.whole).toString('utf8'))
    return this.found
  }

  push(chunk: Buffer): void {
    if (chunk.length === 0) return
    if (this.whole) {
      this.wholeBytes += chunk.length
      if (this.wholeBytes > MAX_CREDENTIAL_FILE) this.whole = undefined
      else this.whole.push(chunk)
    }

    if (this.binary === undefined) {
      this.binary = chunk.subarray(0, BINARY_SNIFF).includes(0)
      this.compiled = this.binary && chunk.subarray(0, ELF_MAGIC.length).equals(ELF_MAGIC)
    }

    if (this.compiled) return
    if (this.binary) {
      // Binary files: a cheap search for a PEM header first; the full scan only around one.
      const seam = this.carry.slice(-PEM_BEGIN.length) + chunk.toString('latin1', 0, PEM_BEGIN.length)
      if (!this.carry.includes(PEM_BEGIN) && !seam.includes(PEM_BEGIN) && chunk.indexOf(PEM_BEGIN, 0, 'latin1') === -1) {
        this.skip(chunk)
        return
      }
    }

    this.scan(chunk.toString('latin1'), false)
  }

  private add(rule: SecretRule, line: number): void {
    const key = `${rule}:${line}`
    if (this.seen.has(key)) return
    this.seen.add(key)
    this.found.push({line, path: this.path, rule})
  }

  private scan(text: string, final: boolean): void {
    const data = this.carry + text
    SCAN.lastIndex = 0
    // The new carry starts here at the latest; an open PEM block is kept whole for the next chunk.
    let keepFrom = Math.max(0, data.length - CARRY)
    let scannedTo = data.length
    let line = this.carryLine
    let lineAt = 0
    for (let match = SCAN.exec(data); match; match = SCAN.exec(data)) {
      const end = match.index + match[0].length
      line += countLines(data, lineAt, match.index)
      lineAt = match.index
      const groups = match.groups ?? {}
      if (groups.pem === undefined) {
        // A token wholly inside what the previous chunk's scan covered was judged then.
        if (end <= this.scannedInCarry || this.binary) continue
        if (!final && end === data.length) {
          // The shape runs to the end of what has come: the next byte decides whether it ends here (its
          // lookahead), so it is judged with the next chunk, or at the end of the file.
          keepFrom = Math.min(keepFrom, match.index)
          scannedTo = match.index
          break
        }

        const index = TOKEN_RULES.findIndex((_, i) => groups[`t${i}`] !== undefined)
        if (index !== -1 && !EXAMPLE_TOKEN.test(match[0])) this.add(TOKEN_RULES[index][0], line)
        continue
      }

      const close = data.indexOf('-----END ', end)
      const closeEnd = close === -1 ? -1 : data.indexOf('-----', close + 9)
      if (closeEnd === -1) {
        if (!final && data.length - match.index < MAX_PEM) {
          keepFrom = Math.min(keepFrom, match.index)
          scannedTo = match.index
          break
        }

        // Too long to be a key: look on past its header.
        continue
      }

      if (isUnencryptedPrivateKey(data.slice(match.index, closeEnd + 5))) this.add('private-key', line)
      SCAN.lastIndex = closeEnd + 5
    }

    if (final) return
    this.carryLine += countLines(data, 0, keepFrom)
    this.carry = data.slice(keepFrom)
    this.scannedInCarry = Math.max(0, scannedTo - keepFrom)
  }

  private scanCredentialFile(text: string): void {
    const {credential} = this
    if (!credential) return
    if (!credential.lines) {
      for (const line of dockerAuthLines(text)) this.add('docker-config-auth', line)
      return
    }

    const lines = text.split('\n')
    for (const [i, line] of lines.entries()) {
      for (const {pattern, rule} of credential.lines) if (pattern.test(line)) this.add(rule, i + 1)
    }
  }

  /** Moves past a chunk that holds nothing to find, keeping its tail as the carry. */
  private skip(chunk: Buffer): void {
    // The tail of everything so far, not of this chunk alone: chunks may be shorter than a PEM header.
    const tail = (this.carry + chunk.toString('latin1', Math.max(0, chunk.length - CARRY))).slice(-CARRY)
    this.carryLine += countLines(this.carry, 0, this.carry.length) + countNewlines(chunk) - countLines(tail, 0, tail.length)
    this.carry = tail
    this.scannedInCarry = tail.length
  }
}

function countNewlines(chunk: Buffer): number {
  let count = 0
  for (let i = chunk.indexOf(0x0A); i !== -1; i = chunk.indexOf(0x0A, i + 1)) count++
  return count
}

/** What a scan found: the first findings (at most `MAX_FINDINGS`) and how many there were in all. */
export interface SecretScan {
  count: number
  findings: SecretFinding[]
}

export const MAX_FINDINGS = 1000

/**
 * Passes entries through unchanged, scanning each regular file's bytes as the layer reads them: no second
 * read of the disk. A file's findings are added to `scan`, marked with `layer`, when its content has been
 * read to the end. `inherited` are the findings of the layers below (a parent image's): they all stay, even
 * where this layer deletes or replaces the file, because the layer that added it still holds its bytes.
 *
 * @yields the same items, file content observed on its way
 */
export async function * scanningSecrets<T extends LayerItem>(
  items: AsyncIterable<T>,
  scan: SecretScan,
  options: {inherited?: readonly SecretFinding[]; layer?: number} = {},
): AsyncGenerator<T, void, undefined> {
  for (const finding of options.inherited ?? []) add(scan, {...finding, layer: finding.layer ?? 0})
  for await (const item of items) {
    if ('kind' in item || item.type !== 'file' || item.size === 0 || !item.content) {
      yield item
      continue
    }

    const {content} = item
    yield {...item, content: () => scanned(content(), item.path, scan, options.layer)}
  }
}

function add(scan: SecretScan, finding: SecretFinding): void {
  scan.count++
  if (scan.findings.length < MAX_FINDINGS) scan.findings.push(finding)
}

/**
 * The content as it is read, scanned on its way. Content read synchronously (the image's block reads) stays
 * synchronous, so the layer pays no promise per piece.
 */
function scanned(source: AsyncIterable<Buffer> | Iterable<Buffer>, entryPath: Buffer, scan: SecretScan, layer?: number): AsyncIterable<Buffer> | Iterable<Buffer> {
  const scanner = new FileScanner(entryPath.toString('utf8'))
  const end = (): void => {
    for (const finding of scanner.end()) add(scan, layer === undefined ? finding : {...finding, layer})
  }

  return Symbol.iterator in source ? scannedSync(source, scanner, end) : scannedAsync(source, scanner, end)
}

function * scannedSync(source: Iterable<Buffer>, scanner: FileScanner, end: () => void): Generator<Buffer, void, undefined> {
  for (const chunk of source) {
    scanner.push(chunk)
    yield chunk
  }

  end()
}

async function * scannedAsync(source: AsyncIterable<Buffer>, scanner: FileScanner, end: () => void): AsyncGenerator<Buffer, void, undefined> {
  for await (const chunk of source) {
    scanner.push(chunk)
    yield chunk
  }

  end()
}
