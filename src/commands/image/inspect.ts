import * as Flags from '@oclif/core/flags'

import {BaseCommand, committedImageArg} from '../../base-command.js'
import {type LayerEntry} from '../../lib/layer/layer-contents.js'
import {type ImageInspection, inspectImage} from '../../lib/oci/catalog.js'
import {formatFinding} from '../../lib/publish/secrets-record.js'
import {formatBytes} from '../../lib/support/format.js'

export default class ImageInspect extends BaseCommand<typeof ImageInspect> {
  static override args = {
    'image-ref': committedImageArg(),
  }
  // Paragraphs: oclif wraps each to the terminal width.
  static override description = [
    [
      "Prints a committed image's manifest digest, platform, creation time, runtime config (user, env, entrypoint,",
      'cmd, working dir, labels...) and layers. --json prints the manifest and config documents in full.',
    ].join(' '),
    [
      '--files reads every layer and lists what it holds: files, directories, links, and the paths it deletes',
      '(whiteouts), so a stacked image shows what each commit changed; each layer is also checked against its',
      'diff_id. Names are shown as UTF-8 text.',
    ].join(' '),
  ].join('\n\n')
  static override examples = [
    '<%= config.bin %> <%= command.id %> local/demo:v1',
    '<%= config.bin %> <%= command.id %> local/demo:v2 --files',
    '<%= config.bin %> <%= command.id %> local/demo:v1 --json',
  ]
  static override flags = {
    files: Flags.boolean({
      description: 'Reads every layer (with node-tar), lists its members and the paths it deletes, and checks its tar against its diff_id.',
      summary: "List each layer's files and whiteouts.",
    }),
  }
  static override summary = 'Show the manifest, config and layers of a committed image.'

  async run(): Promise<ImageInspection> {
    const image = await inspectImage(this.context.stateDir, this.args['image-ref'], {files: this.flags.files})
    const {config} = image
    this.log(`Reference: ${image.reference}`)
    this.log(`Digest:    ${image.digest}`)
    this.log(`Platform:  ${image.platform}`)
    this.log(`Created:   ${String(config.created ?? '-')}`)
    if (typeof config.author === 'string') this.log(`Author:    ${config.author}`)
    this.log(`Size:      ${formatBytes(image.size_bytes)} (${image.size_bytes} bytes)`)
    const runtime = (config.config ?? {}) as Record<string, unknown>
    const keys = Object.keys(runtime)
    if (keys.length > 0) {
      this.log('Config:')
      for (const key of keys) this.log(`  ${key}: ${JSON.stringify(runtime[key])}`)
    }

    this.log('Layers:')
    for (const layer of image.layers) {
      this.log(`  ${layer.digest}  ${formatBytes(layer.size_bytes)}  ${layer.media_type}`)
      const {contents} = layer
      if (!contents) continue
      const {summary} = contents
      const counts = (['file', 'directory', 'symlink', 'hardlink', 'deleted', 'opaque'] as const).filter(type => summary[type] > 0).map(type => `${summary[type]} ${type}`)
      const check = contents.diff_id_matches ? 'diff_id checked' : `DOES NOT MATCH its diff_id (its tar hashes to ${contents.diff_id})`
      this.log(`    ${contents.entries.length} entries (${counts.join(', ') || 'none'}), ${formatBytes(summary.content_bytes)} of file content; ${check}`)
      for (const entry of contents.entries) this.log(`    ${entryLine(entry)}`)
    }

    const history = Array.isArray(config.history) ? (config.history as {comment?: string; created_by?: string}[]) : []
    if (history.length > 0) {
      this.log('History:')
      for (const step of history) this.log(`  ${step.created_by ?? ''}${step.comment ? `  # ${step.comment}` : ''}`)
    }

    const {secrets} = image
    if (secrets === undefined) this.log('Secrets:   not scanned (committed by an older version)')
    else if (secrets.count === 0) this.log('Secrets:   none found')
    else {
      this.log(`Secrets:   ${secrets.count} possible secret(s); image push refuses the image without --allow-secrets`)
      for (const finding of secrets.findings) this.log(`  ${formatFinding(finding)}`)
    }

    return image
  }
}

/** `file      0644  0:0     1.2 kB  etc/hostname`, `deleted  tmp/old`, `symlink ... -> target`. */
function entryLine(entry: LayerEntry): string {
  if (entry.type === 'deleted' || entry.type === 'opaque') return `${entry.type.padEnd(10)}${entry.type === 'opaque' ? `${entry.path}/* (emptied)` : entry.path}`
  const link = entry.linkpath ? ` -> ${entry.linkpath}` : ''
  const owner = `${entry.uid}:${entry.gid}`
  return `${entry.type.padEnd(10)}${entry.mode.toString(8).padStart(4, '0')}  ${owner.padEnd(11)} ${formatBytes(entry.size).padStart(8)}  ${entry.path}${link}`
}
