import {BaseCommand} from '../../base-command.js'
import {type ImageRecord, listImages} from '../../lib/oci/catalog.js'
import {formatBytes, formatTable, shortDigest} from '../../lib/support/format.js'

export default class ImageList extends BaseCommand<typeof ImageList> {
  static override aliases = ['image ls']
  // Paragraphs: oclif wraps each to the terminal width.
  static override description = [
    [
      'Lists the images committed into <state-dir>/images/oci (reference, manifest digest, platform, size of the',
      'manifest, config and compressed layers, creation time), then the root filesystems microagent cached from',
      'registries (<state-dir>/images/index.json), marked "rootfs". Both are sorted by reference.',
    ].join(' '),
  ].join('\n\n')
  static override examples = [
    '<%= config.bin %> <%= command.id %>',
    '<%= config.bin %> <%= command.id %> --json',
  ]
  static override summary = 'List committed and cached images.'

  async run(): Promise<{images: ImageRecord[]}> {
    const images = await listImages(this.context.stateDir)
    if (images.length === 0) {
      this.log('No images.')
    } else {
      this.log(formatTable(
        ['REFERENCE', 'DIGEST', 'PLATFORM', 'SIZE', 'CREATED', 'SOURCE'],
        images.map(image => [
          image.reference,
          shortDigest(image.digest),
          image.platform,
          formatBytes(image.size_bytes),
          image.created ?? image.last_used_at ?? '-',
          image.source === 'oci-layout' ? 'committed' : 'rootfs',
        ]),
      ))
    }

    return {images}
  }
}
