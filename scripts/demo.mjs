#!/usr/bin/env node
// Builds a sample stopped workspace in a temp state dir, commits it with the plugin as a user would, lists and
// tags the image, and pushes it to a throwaway local registry when Debian's docker-registry is installed.
// Needs e2fsprogs (mke2fs, debugfs); everything it creates stays under the printed temp folder.
// Every time in the sample is fixed, so the digests printed are the same on every run (the README quotes them).
// DEMO_CLI runs another entry point (the tests use bin/dev.js, which needs no build).
import {execFileSync} from 'node:child_process'
import {
  chmodSync, linkSync, lutimesSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, symlinkSync, writeFileSync,
} from 'node:fs'
import {tmpdir} from 'node:os'
import path from 'node:path'
import {fileURLToPath} from 'node:url'

import {startRegistry} from './registry.mjs'

const here = path.dirname(fileURLToPath(import.meta.url))
const root = path.resolve(here, '..')
const state = mkdtempSync(path.join(tmpdir(), 'microagent-demo-'))
const tree = path.join(state, 'tree')
const workspace = path.join(state, 'workspaces', 'demo')
mkdirSync(workspace, {recursive: true})

// A tiny root filesystem with what a real one has: owners, setuid, a sticky /tmp, links, a device, a capability.
for (const dir of ['bin', 'etc', 'tmp', 'dev', 'home/agent', 'usr/bin']) mkdirSync(path.join(tree, dir), {recursive: true})
chmodSync(path.join(tree, 'tmp'), 0o1777)
writeFileSync(path.join(tree, 'etc/os-release'), 'NAME="microagent demo"\nID=demo\n')
writeFileSync(path.join(tree, 'bin/hello'), '#!/bin/sh\necho "hello from a committed workspace"\n', {mode: 0o755})
writeFileSync(path.join(tree, 'usr/bin/passwd'), 'pretend setuid binary\n', {mode: 0o4755})
linkSync(path.join(tree, 'bin/hello'), path.join(tree, 'bin/hi'))
symlinkSync('/bin/hello', path.join(tree, 'usr/bin/hello'))
writeFileSync(path.join(tree, 'home/agent/notes.md'), '# work done inside the VM\n')
writeFileSync(path.join(state, 'cap'), Buffer.from('0100000200200000000000000000000000000000', 'hex'))
const FIXED = new Date('2026-01-01T00:00:00Z')
const touchAll = dir => {
  for (const entry of readdirSync(dir, {withFileTypes: true})) {
    const full = path.join(dir, entry.name)
    if (entry.isDirectory()) touchAll(full)
    lutimesSync(full, FIXED, FIXED)
  }

  lutimesSync(dir, FIXED, FIXED)
}

touchAll(tree)
const rootfs = path.join(workspace, 'rootfs.ext4')
execFileSync('mke2fs', ['-q', '-F', '-t', 'ext4', '-d', tree, rootfs, '32M'], {stdio: ['ignore', 'ignore', 'inherit']})
// What an unprivileged tree cannot hold: another owner, a device node, a file capability.
writeFileSync(
  path.join(state, 'debugfs.cmds'),
  [
    'sif /home/agent uid 1000',
    'sif /home/agent gid 1000',
    'sif /home/agent/notes.md uid 1000',
    'sif /home/agent/notes.md gid 1000',
    'cd /dev',
    'mknod null c 1 3',
    'sif null mode 020666',
    'sif null mtime 20260101000000',
    `ea_set -f ${path.join(state, 'cap')} /usr/bin/passwd security.capability`,
  ].join('\n') + '\n',
)
execFileSync('debugfs', ['-w', '-f', path.join(state, 'debugfs.cmds'), rootfs], {stdio: 'ignore'})
writeFileSync(path.join(workspace, 'workspace.json'), JSON.stringify({image_cmd: ['/bin/hello'], image_env: ['PATH=/usr/bin:/bin'], name: 'demo'}))
mkdirSync(path.join(state, 'demo'))
writeFileSync(
  path.join(state, 'demo', 'runtime.json'),
  JSON.stringify({event: {identity: {backend: 'linux-kvm', runtimeID: 'demo'}, state: 'stopped'}, updatedAt: new Date().toISOString()}),
)

const cli = process.env.DEMO_CLI ?? path.join(root, 'bin', 'run.js')
const quote = arg => (/^[\w./:@=-]+$/.test(arg) ? arg : `'${arg.replaceAll("'", String.raw`'\''`)}'`)
const run = args => {
  console.log(`\n$ microagent ${args.map(arg => quote(arg)).join(' ')}`)
  execFileSync(process.execPath, [cli, ...args], {env: {...process.env, MICROAGENT_STATE_DIR: state}, stdio: 'inherit'})
}

/** A throwaway registry on 127.0.0.1, or undefined when docker-registry is not installed. */
async function localRegistry() {
  try {
    execFileSync('sh', ['-c', 'command -v docker-registry'], {stdio: 'ignore'})
  } catch {
    return
  }

  return startRegistry(state)
}

console.log(`Sample stopped workspace "demo" in ${state}`)
console.log(`\n$ export MICROAGENT_STATE_DIR=${state}`)
run(['commit', 'demo', 'local/demo:v1', '--created', '2026-01-01T00:00:00Z', '-m', 'first snapshot', '--change', 'ENV LANG=C.UTF-8'])
run(['image', 'list'])
const registry = await localRegistry()
if (registry) {
  try {
    run(['image', 'push', 'local/demo:v1', `${registry.host}/demo:v1`])
    run(['image', 'push', 'local/demo:v1', `${registry.host}/demo:v1`])
  } finally {
    registry.stop()
  }
} else {
  console.log('\n(docker-registry is not installed, so no push; `bash .ci/run` installs it)')
}

const layout = path.join(state, 'images', 'oci')
const index = JSON.parse(readFileSync(path.join(layout, 'index.json'), 'utf8'))
const manifest = JSON.parse(readFileSync(path.join(layout, 'blobs', 'sha256', index.manifests[0].digest.slice(7)), 'utf8'))
const layer = path.join(layout, 'blobs', 'sha256', manifest.layers[0].digest.slice(7))
console.log('\n$ tar -tvzf <layer> --numeric-owner --xattrs --xattrs-include=\'*\'   # what the image holds')
console.log(execFileSync('tar', ['-tvzf', layer, '--numeric-owner', '--xattrs', '--xattrs-include=*'], {encoding: 'utf8', env: {...process.env, TZ: 'UTC'}}))
