import * as Args from '@oclif/core/args'
import * as Flags from '@oclif/core/flags'

import type {PushResult} from '../lib/registry/push.js'

import {BaseCommand} from '../base-command.js'
import {type CommitResult, commitWorkspace} from '../lib/commit.js'
import {chooseExtractor, type Extractor} from '../lib/extractor/extractor.js'
import {SANDBOX_MODES, type SandboxMode} from '../lib/extractor/sandbox.js'
import {type Compression, compressionLevel, COMPRESSIONS} from '../lib/layer/compress.js'
import {CHANGE_INSTRUCTIONS} from '../lib/oci/changes.js'
import {resolveCreated} from '../lib/oci/image.js'
import {ARCH_NAMES, ARCHITECTURES, normalizeArch} from '../lib/oci/platform.js'
import {formatFinding, SECRETS_POLICIES, type SecretsPolicy} from '../lib/publish/secrets-record.js'
import {usageError} from '../lib/support/errors.js'

export default class Commit extends BaseCommand<typeof Commit> {
  static override args = {
    workspace: Args.string({description: 'Name of a stopped workspace.', required: true}),
    // Positional order, not alphabetical.

    'image-ref': Args.string({description: 'Tag for the image, e.g. local/demo:v1 or localhost:5000/team/app:1.0.', required: true}),
  }
  // Paragraphs: oclif wraps each to the terminal width.
  static override description = [
    [
      "Reads the workspace's ext4 root filesystem with debugfs, unprivileged and read-only, and writes it as a single-layer",
      'OCI image into <state-dir>/images/oci, tagged <image-ref>. Owners, modes (setuid/setgid/sticky), mtimes, hard links,',
      'devices, fifos and xattrs (file capabilities and ACLs included) are kept; sockets cannot be, and are counted.',
    ].join(' '),
    [
      'A running, paused, starting or stopping workspace is refused, as is one whose VM still holds its runtime lock or',
      'whose recorded pid is alive. A disk whose journal needs recovery is replayed on a private copy: the workspace disk',
      'is never modified.',
    ].join(' '),
    [
      'debugfs (and the journal replay) parses a disk the guest controls, so it runs confined by bubblewrap where it can:',
      'no network, no home, /etc, /tmp or state dir, only /usr and the disk (read-only), no capabilities or new privileges.',
      'See --sandbox.',
    ].join(' '),
  ].join('\n\n')
  static override examples = [
    '<%= config.bin %> <%= command.id %> demo local/demo:v1',
    '<%= config.bin %> <%= command.id %> demo local/demo:v1 --created 2026-01-01T00:00:00Z --json',
    '<%= config.bin %> <%= command.id %> demo localhost:5000/demo:v1 --arch arm64 --state-dir /tmp/state',
    '<%= config.bin %> <%= command.id %> demo local/demo:v2 -m "add tools" -a "Jane <jane@example.com>" --change \'CMD ["bash"]\' --change "ENV LANG=C.UTF-8" --label team=infra',
    '<%= config.bin %> <%= command.id %> demo local/demo:slim --exclude "var/cache/**" --exclude "**/*.log" --exclude tmp',
  ]
  /** Tests swap in a fake; everything else uses debugfs. */
  static extractor: Extractor | undefined
  static override flags = {
    author: Flags.string({
      char: 'a',
      description: 'Written as the config\'s author and in its history entry, e.g. "Jane Doe <jane@example.com>".',
      summary: 'Author of the image.',
    }),
    'allow-secrets': Flags.boolean({
      default: false,
      description: 'With --push: push even if the secret scan found something (image push refuses such an image otherwise).',
      summary: 'Push an image with secret findings.',
    }),
    arch: Flags.string({
      description: [
        `OCI architecture of the image: ${ARCHITECTURES.join(', ')}; uname spellings such as x86_64 and aarch64 are accepted.`,
        "Default: the guest architecture microagent recorded, else the host's.",
      ].join(' '),
      options: [...ARCH_NAMES],
      summary: 'Image architecture (default: the guest architecture).',
    }),
    change: Flags.string({
      char: 'c',
      description: [
        'A Dockerfile instruction applied to the image config, as `docker commit --change` does; repeatable, applied in order.',
        `Accepted: ${CHANGE_INSTRUCTIONS.join(', ')}. CMD and ENTRYPOINT take the exec form (["a","b"]) or the shell form;`,
        'ENTRYPOINT drops an inherited CMD unless CMD is also given.',
      ].join(' '),
      multiple: true,
      summary: 'Apply a Dockerfile instruction (ENV, CMD, ENTRYPOINT, WORKDIR, USER, LABEL, EXPOSE, VOLUME, STOPSIGNAL).',
    }),
    compression: Flags.string({
      default: 'gzip',
      description: [
        'Layer compression: gzip (every client reads it; parallel members on all cores),',
        'zstd (several times faster; written by Node ≥ 22.15, else by the zstd command; for clients that read tar+zstd) or none.',
      ].join(' '),
      options: [...COMPRESSIONS],
      summary: 'Layer compression.',
    }),
    'compression-level': Flags.integer({
      description: 'gzip 1–9 (default 6), zstd 1–19 (default 3).',
      summary: 'Compression level.',
    }),
    created: Flags.string({
      description: 'Creation time written into the image config (RFC 3339). Also read from SOURCE_DATE_EPOCH. The same disk and time give the same digests.',
      summary: 'Image creation time, for reproducible digests.',
    }),
    debugfs: Flags.string({
      description: 'Path of the debugfs binary (e2fsprogs). Default: found on PATH or in the usual sbin folders.',
      summary: 'debugfs binary used to read the rootfs.',
    }),
    exclude: Flags.string({
      description: [
        'Glob of paths to leave out of the layer, anchored at the image root as in .dockerignore; repeatable. `*` and `?`',
        'stay within a path component, `**` spans several. A matched directory goes with its subtree:',
        '`var/cache` drops the folder, `var/cache/**` keeps it empty.',
      ].join(' '),
      multiple: true,
      summary: 'Leave matching paths out of the image (e.g. "var/cache/**", "**/*.log").',
    }),
    'keep-runtime-files': Flags.boolean({
      default: false,
      description: [
        "Commit the disk as it is, with the files microagent itself writes into it: its init, the guest's hostname and",
        "resolv.conf, and the egress broker's TLS-interception CA (left out of the image and taken out of the trust bundles",
        'by default, so the image trusts nothing of this host).',
      ].join(' '),
      summary: "Keep microagent's own files (init, hostname, egress CA) in the image.",
    }),
    label: Flags.string({
      description: 'Adds KEY=value to the config\'s labels (after --change LABEL); repeatable.',
      multiple: true,
      summary: 'Set an image label.',
    }),
    message: Flags.string({
      char: 'm',
      description: 'Written as the comment of the image\'s history entry (default: "rootfs committed by microagent").',
      summary: 'Commit message.',
    }),
    extractor: Flags.string({
      default: 'debugfs',
      description: [
        'How the workspace disk is read. debugfs (e2fsprogs) reads ext4 and is built in; another name is asked of the',
        'installed plugins through the microagent:extractor hook, e.g. for another filesystem.',
      ].join(' '),
      summary: 'Extractor that reads the disk; plugins may add others.',
    }),
    secrets: Flags.string({
      default: 'warn',
      description: [
        'Every file is scanned for private keys, tokens and credential files as it streams into the layer. warn: commit,',
        'print the findings (path, rule, line; never the value) and record them, so image push refuses the image without',
        '--allow-secrets. refuse: fail before tagging (exit 8).',
      ].join(' '),
      options: [...SECRETS_POLICIES],
      summary: 'What to do when the secret scan finds something.',
    }),
    sandbox: Flags.string({
      default: 'auto',
      description: [
        'How debugfs (extraction and journal replay) is confined with bubblewrap (bwrap): auto confines it where bwrap',
        'works and otherwise runs it unconfined with one warning; require fails (exit 8) before reading when it cannot be',
        'confined; off never confines it. Also read from MICROAGENT_SANDBOX; MICROAGENT_BWRAP names another bwrap binary.',
        'Extractors from other plugins are not confined.',
      ].join(' '),
      env: 'MICROAGENT_SANDBOX',
      options: [...SANDBOX_MODES],
      summary: 'Confine debugfs with bubblewrap: auto, require or off.',
    }),
    parent: Flags.string({
      description: [
        'An image in the layout to stack on. The new image is the parent\'s layers, shared, plus one layer holding only',
        "what changed from the parent's tree to the disk (whiteouts for deletions). The parent's tree is read from the",
        'tree record its commit kept, else from its layers. Its runtime config is the base for --change and --label.',
        'At most 120 layers.',
      ].join(' '),
      summary: 'Stack one diff layer on this image instead of writing the whole disk.',
    }),
    push: Flags.boolean({
      default: false,
      description: 'Push the image to its registry right after committing (as `image push <image-ref>` does); the ref must name a registry, not local/.',
      summary: 'Push to the registry after committing.',
    }),
  }
  static override summary = "Commit a stopped workspace's rootfs as an OCI image."

  async run(): Promise<CommitResult & {push?: PushResult}> {
    // Only a --push loads the registry client (its modules cost start-up time).
    const registry = this.flags.push ? await import('../lib/registry/push.js') : undefined
    // Refuse what cannot work before committing, not after.
    if (registry) registry.pushDestination(this.args['image-ref'])
    else if (this.flags['allow-secrets']) throw usageError('--allow-secrets applies to --push', 'Add --push, or push later with `image push <image-ref> --allow-secrets`.')
    compressionLevel(this.flags.compression as Compression, this.flags['compression-level'])
    const display = this.progressDisplay()
    const result = await commitWorkspace({
      arch: this.flags.arch === undefined ? undefined : normalizeArch(this.flags.arch),
      author: this.flags.author,
      bwrap: process.env.MICROAGENT_BWRAP || undefined,
      changes: this.flags.change,
      compression: this.flags.compression as Compression,
      compressionLevel: this.flags['compression-level'],
      created: resolveCreated(this.flags.created),
      debugfs: this.flags.debugfs,
      exclude: this.flags.exclude,
      extractor: await this.extractor(this.flags.extractor),
      keepRuntimeFiles: this.flags['keep-runtime-files'],
      labels: this.flags.label,
      message: this.flags.message,
      onProgress: display?.commit,
      parent: this.flags.parent,
      reference: this.args['image-ref'],
      secrets: this.flags.secrets as SecretsPolicy,
      sandbox: this.flags.sandbox as SandboxMode,
      signal: this.interrupt.signal,
      stateDir: this.context.stateDir,
      workspace: this.args.workspace,
    })
    display?.finish()
    const {stats} = result
    this.log(`Committed ${result.reference}`)
    this.log(`  digest: ${result.digest}`)
    this.log(`  layer:  ${result.size_bytes} bytes (tar ${result.tar_bytes} bytes, ${stats.entries} entries${result.parent ? `, ${stats.whiteouts} whiteouts` : ''})`)
    if (result.parent) {
      this.log(`  parent: ${result.parent.reference} (${result.parent.layers} layers, tree read from its ${result.parent.tree === 'record' ? 'tree record' : 'layers'}); ${result.layers} layers now`)
      if (result.parent.tree_note) this.logToStderr(`note: ${result.parent.tree_note}; read the parent's layers instead`)
      this.log(`  tree record: ${result.record_bytes} bytes (kept locally for the next --parent, never pushed)`)
    }

    this.log(`  layout: ${result.layout_path}`)
    if (!result.sandbox.confined && result.sandbox.reason) this.logToStderr(`warning: debugfs ran unconfined: ${result.sandbox.reason}`)
    if (result.journal_replayed) this.logToStderr('note: the disk journal needed recovery; it was replayed on a private copy')
    const skipped = [
      [stats.skipped.excluded, 'paths matched by --exclude (subtrees counted once)'],
      [stats.skipped.sockets, 'sockets (OCI layers cannot hold them)'],
      [stats.skipped.whiteoutNames, 'entries named .wh.* (OCI reads them as whiteouts)'],
      [stats.skipped.xattrs, 'extended attributes outside user.*, security.*, trusted.* and ACLs'],
    ] as const
    for (const [count, what] of skipped) if (count > 0) this.logToStderr(`note: left out ${count} ${what}`)
    this.reportPublishing(result)
    await this.announce('microagent:committed', {result})
    if (!registry) {
      this.log(`Push it with: ${this.config.bin} image push ${result.reference}`)
      return result
    }

    const pushed = await registry.pushImage({
      allowSecrets: this.flags['allow-secrets'],
      layoutPath: result.layout_path, onProgress: display?.push, signal: this.interrupt.signal, source: result.reference,
    })
    display?.finish()
    this.log(`Pushed ${result.reference} to ${pushed.destination}`)
    await this.announce('microagent:pushed', {result: pushed})
    return {...result, push: pushed, pushed: true}
  }

  /** debugfs is built in (tests swap in a fake); other names come from plugins answering microagent:extractor. */
  private async extractor(name: string): Promise<Extractor | undefined> {
    if (name === 'debugfs') return Commit.extractor
    const {successes} = await this.config.runHook('microagent:extractor', {name})
    return chooseExtractor(name, successes.map(success => ({plugin: success.plugin.name, result: success.result})))
  }

  /** What stayed out of the image for safety, and what the scan found: stderr, so stdout keeps its shape. */
  private reportPublishing(result: CommitResult): void {
    for (const file of result.runtime_files) {
      const what = {
        kept: `kept /${file.path}: ${file.why}`,
        'left-out': `left out /${file.path}`,
        rewritten: `rewrote /${file.path} without the egress CA (${file.certificates_removed} certificate(s))`,
      }
      this.logToStderr(`note: ${what[file.action]}`)
    }

    if (result.runtime_files.length > 0) this.logToStderr("note: these are microagent's own files; --keep-runtime-files keeps them")
    const {secrets} = result
    if (secrets.count > 0) {
      this.logToStderr(`warning: ${secrets.count} possible secret(s) in the image (values not shown):`)
      for (const finding of secrets.findings.slice(0, 20)) this.logToStderr(`  ${formatFinding(finding)}`)
      if (secrets.count > 20) this.logToStderr(`  ... and ${secrets.count - 20} more (microagent image inspect ${result.reference})`)
      this.logToStderr('warning: image push refuses this image unless --allow-secrets is given; leave files out with --exclude \'<path>\'')
    }

    if (result.layer_media_type.endsWith('+zstd')) {
      this.logToStderr("note: microagent's own create/run cannot unpack zstd layers (it gunzips gzip layers only); commit with --compression gzip to create workspaces from this image")
    }
  }
}
