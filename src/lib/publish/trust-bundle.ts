/**
 * PEM certificate bundles (`ca-certificates.crt` and friends) as bytes: certificates are found by their DER
 * encoding, never by name or comment, and removing one touches no byte outside its own block.
 */

const BEGIN = Buffer.from('-----BEGIN CERTIFICATE-----')
const END = Buffer.from('-----END CERTIFICATE-----')

export interface PemCertificate {
  der: Buffer
  /** Offsets of the block in the bundle: BEGIN line to END line, plus the newline that ends it. */
  end: number
  start: number
}

/** The certificate blocks of a bundle, in order; a block whose body is not base64 is not a certificate. */
export function pemCertificates(bundle: Buffer): PemCertificate[] {
  const found: PemCertificate[] = []
  for (let start = bundle.indexOf(BEGIN); start !== -1; start = bundle.indexOf(BEGIN, start + 1)) {
    const close = bundle.indexOf(END, start + BEGIN.length)
    if (close === -1) break
    // A BEGIN inside this block means the first one was never closed: start again from the inner one.
    const inner = bundle.indexOf(BEGIN, start + BEGIN.length)
    if (inner !== -1 && inner < close) continue
    const body = bundle.toString('latin1', start + BEGIN.length, close).replaceAll(/\s/g, '')
    let end = close + END.length
    if (bundle[end] === 0x0D) end++
    if (bundle[end] === 0x0A) end++
    if (/^[\d+/A-Za-z]+={0,2}$/.test(body)) found.push({der: Buffer.from(body, 'base64'), end, start})
  }

  return found
}

/**
 * The bundle without the certificates whose DER is in `remove`: each such block goes with the newline that
 * ends it, every other byte stays as it was. Returns the bundle itself when none is there.
 */
export function withoutCertificates(bundle: Buffer, remove: readonly Buffer[]): {bundle: Buffer; removed: number} {
  const drop = pemCertificates(bundle).filter(cert => remove.some(der => der.equals(cert.der)))
  if (drop.length === 0) return {bundle, removed: 0}
  const pieces: Buffer[] = []
  let at = 0
  for (const cert of drop) {
    pieces.push(bundle.subarray(at, cert.start))
    at = cert.end
  }

  pieces.push(bundle.subarray(at))
  return {bundle: Buffer.concat(pieces), removed: drop.length}
}

/** Whether a file holds certificates and nothing but the given ones (a copy of the CA, under any name). */
export function onlyCertificates(file: Buffer, certificates: readonly Buffer[]): boolean {
  const found = pemCertificates(file)
  return found.length > 0 && found.every(cert => certificates.some(der => der.equals(cert.der)))
}
