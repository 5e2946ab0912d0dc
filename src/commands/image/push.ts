import * as Args from '@oclif/core/args'
import * as Flags from '@oclif/core/flags'

import {BaseCommand, committedImageArg} from '../../base-command.js'
import {layoutPath} from '../../lib/oci/layout.js'
import {pushImage, type PushResult} from '../../lib/registry/push.js'

export default class ImagePush extends BaseCommand<typeof ImagePush> {
  static override args = {
    'image-ref': committedImageArg(),
    destination: Args.string({description: 'Where to push it, if not to <image-ref> itself, e.g. localhost:5000/team/app:1.0.'}),
  }
  // Paragraphs: oclif wraps each to the terminal width.
  static override description = [
    [
      'Copies a committed image from <state-dir>/images/oci to a registry: blobs the registry has are skipped, blobs another',
      'repository of the registry got from an earlier push are mounted, the rest are uploaded (three at a time); the manifest',
      'goes last and its digest is checked. Failed requests are retried with backoff.',
    ].join(' '),
    [
      'Credentials come from, in order: $REGISTRY_AUTH_FILE, $DOCKER_CONFIG/config.json (else ~/.docker/config.json),',
      '~/.microagent/auth.json, $XDG_RUNTIME_DIR/containers/auth.json, ~/.config/containers/auth.json; credHelpers and',
      'credsStore are honoured. No credential means anonymous. Plain HTTP is used for loopback registries only, unless',
      '--plain-http names another.',
    ].join(' '),
  ].join('\n\n')
  static override examples = [
    '<%= config.bin %> <%= command.id %> localhost:5000/demo:v1',
    '<%= config.bin %> <%= command.id %> local/demo:v1 ghcr.io/acme/demo:v1',
    '<%= config.bin %> <%= command.id %> local/demo:v1 registry.lan:5000/demo:v1 --plain-http --json',
  ]
  static override flags = {
    'allow-secrets': Flags.boolean({
      default: false,
      description: 'Push even though the commit found possible secrets in the image (listed by image inspect); without it such an image is refused with exit 8.',
      summary: 'Push an image with secret findings.',
    }),
    'plain-http': Flags.boolean({
      aliases: ['insecure'],
      default: false,
      description: 'Speak plain HTTP to the registry even though it is not a loopback host (--insecure is an alias).',
      summary: 'Use HTTP, not HTTPS, for a non-loopback registry.',
    }),
  }
  static override summary = 'Push a committed image to a registry.'

  async run(): Promise<PushResult> {
    const display = this.progressDisplay()
    const result = await pushImage({
      allowSecrets: this.flags['allow-secrets'],
      destination: this.args.destination,
      layoutPath: layoutPath(this.context.stateDir),
      onProgress: display?.push,
      plainHttp: this.flags['plain-http'],
      signal: this.interrupt.signal,
      source: this.args['image-ref'],
    })
    display?.finish()
    this.log(`Pushed ${result.reference} to ${result.destination}`)
    this.log(`  digest: ${result.digest}`)
    this.log(`  blobs:  ${result.blobs.uploaded} uploaded (${result.bytes_uploaded} bytes), ${result.blobs.mounted} mounted, ${result.blobs.existing} already there`)
    await this.announce('microagent:pushed', {result})
    return result
  }
}
