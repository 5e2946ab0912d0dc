import {BaseCommand, committedImageArg} from '../../base-command.js'
import {removeImage, type RemoveResult} from '../../lib/oci/catalog.js'
import {formatBytes} from '../../lib/support/format.js'

export default class ImageRm extends BaseCommand<typeof ImageRm> {
  static override aliases = ['image remove']
  static override args = {
    'image-ref': committedImageArg(),
  }
  // Paragraphs: oclif wraps each to the terminal width.
  static override description = [
    [
      'Removes the tag from <state-dir>/images/oci and deletes the blobs (manifest, config, layers) that no other tag',
      'uses; blobs shared with other tags stay. The index changes atomically under the layout lock, so a commit',
      'or push running at the same time never sees a tag without its blobs.',
    ].join(' '),
  ].join('\n\n')
  static override examples = [
    '<%= config.bin %> <%= command.id %> local/demo:v1',
    '<%= config.bin %> <%= command.id %> local/demo:v1 --json',
  ]
  static override summary = 'Remove a committed image and the blobs no other tag uses.'

  async run(): Promise<RemoveResult> {
    const result = await removeImage(this.context.stateDir, this.args['image-ref'])
    this.log(`Removed ${result.reference} (${result.digest})`)
    this.log(`  blobs: ${result.deleted.length} deleted (${formatBytes(result.reclaimed_bytes)}), ${result.kept} kept for other tags`)
    return result
  }
}
