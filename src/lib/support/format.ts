// Human output helpers shared by the commands: sizes, rates and aligned tables. JSON output never uses them.

const UNITS = ['B', 'kB', 'MB', 'GB', 'TB']

/** Decimal units with three significant digits, as docker and crane print sizes: 84.5MB. */
export function formatBytes(bytes: number): string {
  let value = bytes
  let unit = 0
  while (value >= 1000 && unit < UNITS.length - 1) {
    value /= 1000
    unit++
  }

  return unit === 0 ? `${bytes}B` : `${value.toPrecision(3).replace(/\.?0+$/, '')}${UNITS[unit]}`
}

/** Columns padded to their widest cell, two spaces apart; the last column is not padded. */
export function formatTable(header: string[], rows: string[][]): string {
  const widths = header.map((cell, i) => Math.max(cell.length, ...rows.map(row => row[i]?.length ?? 0)))
  return [header, ...rows]
  .map(row => row.map((cell, i) => (i === row.length - 1 ? cell : cell.padEnd(widths[i]))).join('  ').trimEnd())
  .join('\n')
}

/** `sha256:0123456789ab`: enough to tell images apart, as `docker images` shows them. */
export function shortDigest(digest: string): string {
  const [algorithm, hex] = digest.split(':')
  return hex === undefined ? digest : `${algorithm}:${hex.slice(0, 12)}`
}
