import {ImageRecords} from '../oci/records.js'
/**
 * The secret findings of a committed image, kept as a local record beside it (never in the image) so that
 * `image inspect` can show them and `image push` can refuse the image without being told again.
 */
import {MicroagentError} from '../support/errors.js'
import {isNumber, isPlainObject, isString} from '../support/guards.js'
import {
  SECRET_RULES, type SecretFinding, type SecretRule, type SecretScan,
} from './secrets.js'

export const SECRETS_RECORD = 'secrets.json'
export const SECRETS_POLICIES = ['warn', 'refuse'] as const
export type SecretsPolicy = (typeof SECRETS_POLICIES)[number]

/** The record's bytes: the findings (path, rule, line) and their count; a clean scan is recorded too. */
export function secretsRecord(scan: SecretScan): Buffer {
  return Buffer.from(`${JSON.stringify({
    count: scan.count, findings: scan.findings, scanned: true, version: 1,
  }, null, 2)}\n`)
}

function isFinding(value: unknown): value is SecretFinding {
  if (!isPlainObject(value) || (value.layer !== undefined && !isNumber(value.layer))) return false
  return isString(value.path) && isNumber(value.line) && SECRET_RULES.includes(value.rule as SecretRule)
}

/**
 * The findings recorded for an image, or undefined when it has no record (committed by an older version,
 * or not committed here). A damaged record counts as findings: it is safer to refuse than to trust it.
 */
export async function readSecrets(layoutRoot: string, manifestDigest: string): Promise<SecretScan | undefined> {
  const bytes = await new ImageRecords(layoutRoot).read(manifestDigest, SECRETS_RECORD)
  if (!bytes) return undefined
  let document: unknown
  try {
    document = JSON.parse(bytes.toString('utf8'))
  } catch {
    document = undefined
  }

  if (!isPlainObject(document) || !isNumber(document.count) || !Array.isArray(document.findings) || !document.findings.every(f => isFinding(f))) {
    return {count: 1, findings: [{line: 0, path: `(damaged record ${SECRETS_RECORD})`, rule: 'private-key'}]}
  }

  return {count: document.count, findings: document.findings}
}

/** The paths of a scan's findings, each once, in the order found. */
function uniquePaths(scan: SecretScan): string[] {
  return [...new Set(scan.findings.map(f => f.path))]
}

/** The paths of a scan, each once, for messages. */
export function findingPaths(scan: SecretScan, limit = 10): string {
  const paths = uniquePaths(scan).map(p => `/${p}`)
  return paths.slice(0, limit).join(', ') + (paths.length > limit ? `, and ${paths.length - limit} more` : '')
}

/** One finding as commit and image inspect print it: where, what, and in which layer of a stacked image. */
export function formatFinding(finding: SecretFinding): string {
  return `/${finding.path}:${finding.line}  ${finding.rule}${finding.layer === undefined ? '' : `  (layer ${finding.layer})`}`
}

/** What to do about findings, said the same way by commit and push. */
export function secretsAdvice(scan: SecretScan, allowFlag: string): string {
  const paths = uniquePaths(scan)
  return [
    'Remove the files from the workspace, or commit again leaving them out',
    `(${paths.slice(0, 3).map(p => `--exclude '${p}'`).join(' ')}${paths.length > 3 ? ' ...' : ''});`,
    `to publish them anyway, add ${allowFlag}. \`microagent image inspect <ref>\` lists every finding.`,
    ...(scan.findings.some(f => f.layer !== undefined)
      ? ['A file in a lower layer stays in the image even when a later commit deletes it: commit without --parent to drop it.']
      : []),
  ].join(' ')
}

/** Refuses to let an image with findings leave this host unless the user allowed it. */
export async function checkPublishable(layoutRoot: string, manifestDigest: string, reference: string, allow: boolean): Promise<SecretScan | undefined> {
  const scan = await readSecrets(layoutRoot, manifestDigest)
  if (!scan || scan.count === 0 || allow) return scan
  throw new MicroagentError(`refusing to push ${reference}: it holds ${scan.count} possible secret(s) in ${findingPaths(scan)}`, {
    code: 'SECRETS_FOUND',
    exit: 'policy',
    kind: 'policy_denied',
    remediation: secretsAdvice(scan, '--allow-secrets'),
  })
}

/** `commit --secrets refuse` with findings: nothing is tagged. */
export function secretsRefused(reference: string, scan: SecretScan): MicroagentError {
  return new MicroagentError(`refusing to commit ${reference}: ${scan.count} possible secret(s) in ${findingPaths(scan)}`, {
    code: 'SECRETS_FOUND',
    exit: 'policy',
    kind: 'policy_denied',
    remediation: secretsAdvice(scan, '--secrets warn (then image push --allow-secrets)'),
  })
}
