import * as Args from '@oclif/core/args'

import {BaseCommand, committedImageArg} from '../../base-command.js'
import {tagImage, type TagResult} from '../../lib/oci/catalog.js'

export default class ImageTag extends BaseCommand<typeof ImageTag> {
  static override args = {
    source: committedImageArg(),
    // Positional order, not alphabetical.

    target: Args.string({description: 'New tag for the same image, e.g. localhost:5000/team/app:1.0.', required: true}),
  }
  // Paragraphs: oclif wraps each to the terminal width.
  static override description = [
    [
      'Adds a second tag to a committed image in <state-dir>/images/oci; both share the same blobs, nothing is',
      'copied. An existing tag of that name is moved to this image.',
    ].join(' '),
  ].join('\n\n')
  static override examples = [
    '<%= config.bin %> <%= command.id %> local/demo:v1 localhost:5000/demo:v1',
    '<%= config.bin %> <%= command.id %> local/demo:v1 local/demo:latest --json',
  ]
  static override summary = 'Add a tag to a committed image.'

  async run(): Promise<TagResult> {
    const result = await tagImage(this.context.stateDir, this.args.source, this.args.target)
    this.log(`Tagged ${result.source} as ${result.reference} (${result.digest})`)
    if (result.replaced) this.log(`  ${result.reference} pointed at ${result.replaced} before`)
    return result
  }
}
