#!/usr/bin/env node
// npm run bench: our commit and push against the classic pipeline, pigz and skopeo, side by side, on the same
// images, several runs each, medians. Fixtures are built once into BENCH_DIR (default /tmp/microagent-bench):
// a Debian minbase rootfs and a larger one (debootstrap; /usr/share instead when debootstrap is unavailable),
// and many-small-files trees (20,000 files; 200,000, incremental rows only), each in an ext4 image. Public tools
// only: Node's timers, /usr/bin/time.
// Options (env): BENCH_RUNS (default 3), BENCH_DIR, BENCH_ONLY (comma list of fixture names), BENCH_SKIP_PUSH=1,
// BENCH_ROWS (comma list of row groups: commit, gzip, push, sandbox, incremental; default all).
// The scale fixtures (scale-500k, scale-1m: directories of 1,000 small files plus one directory of 100,000 empty
// files) are built through the kernel (scripts/scale-fixture.mjs, needs root) and get only the commit rows.
import {execFileSync} from 'node:child_process'
import {
  existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync,
} from 'node:fs'
import {availableParallelism, tmpdir} from 'node:os'
import path from 'node:path'
import {fileURLToPath} from 'node:url'

import {installedBin} from './installed.mjs'
import {startRegistry} from './registry.mjs'
import {buildScaleImage} from './scale-fixture.mjs'

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
/** The plugin as installed (with its oclif manifest), set once it is built. */
let bin
const benchDir = process.env.BENCH_DIR ?? path.join(tmpdir(), 'microagent-bench')
const runs = Number(process.env.BENCH_RUNS ?? 3)
const only = process.env.BENCH_ONLY?.split(',')
const rowGroups = process.env.BENCH_ROWS?.split(',')
/** Whether a row group runs: asked for (all by default), and one the fixture gets (all, unless it lists its own). */
const wanted = (group, fixture) => (!rowGroups || rowGroups.includes(group)) && (!fixture?.rows || fixture.rows.includes(group))
const created = '2026-01-01T00:00:00Z'
mkdirSync(benchDir, {recursive: true})

const sh = (command, options = {}) => execFileSync('sh', ['-c', command], {encoding: 'utf8', maxBuffer: 64 * 1024 * 1024, ...options})
const have = tool => {
  try {
    sh(`command -v ${tool}`, {stdio: 'ignore'})
    return true
  } catch {
    return false
  }
}

const median = values => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]
const duBytes = dir => (existsSync(dir) ? Number(sh(`du -sb ${JSON.stringify(dir)}`).split('\t')[0]) : 0)

/** Runs a shell command under /usr/bin/time; returns wall seconds and peak RSS (KiB). */
function timed(command) {
  const out = path.join(benchDir, 'time.out')
  const start = process.hrtime.bigint()
  execFileSync('/usr/bin/time', ['-f', '%M %U %S', '-o', out, 'sh', '-c', command], {stdio: ['ignore', 'ignore', 'inherit']})
  const seconds = Number(process.hrtime.bigint() - start) / 1e9
  // CPU is user + system of the command and every child it waited for (debugfs, gzip workers are threads).
  const [rss, user, system] = readFileSync(out, 'utf8').trim().split('\n').pop().split(' ').map(Number)
  return {cpuSeconds: user + system, rssKiB: rss, seconds}
}

/** Builds a root filesystem tree once; returns its folder. */
function tree(name, build) {
  const dir = path.join(benchDir, `${name}.tree`)
  if (!existsSync(path.join(dir, '.complete'))) {
    rmSync(dir, {force: true, recursive: true})
    console.error(`building fixture ${name} ...`)
    build(dir)
    writeFileSync(path.join(dir, '.complete'), '')
  }

  return dir
}

function mirror() {
  try {
    const sources = sh('cat /etc/apt/sources.list.d/*.sources /etc/apt/sources.list 2>/dev/null || true')
    return /URIs:\s*(\S+\/debian)\b/.exec(sources)?.[1] ?? /^deb\s+(\S+\/debian)\s/m.exec(sources)?.[1] ?? 'http://deb.debian.org/debian'
  } catch {
    return 'http://deb.debian.org/debian'
  }
}

function fixtures() {
  const list = []
  const want = name => !only || only.includes(name)
  const canDebootstrap = have('debootstrap') && process.getuid?.() === 0
  // Fixtures not asked for are not built.
  const realistic = want('minbase') || want('large') || want('usr-share')
  if (realistic && canDebootstrap) {
    const minbase = tree('minbase', dir => sh(`debootstrap --variant=minbase bookworm ${dir} ${mirror()} > ${dir}.log 2>&1`))
    list.push({name: 'minbase', tree: minbase})
    // Built only when wanted: it takes minutes.
    if (!only || only.includes('large')) list.push({
      name: 'large',
      tree: tree('large', dir => {
        sh(`cp -a ${minbase} ${dir} && rm -f ${dir}/.complete`)
        sh(`mount -t proc proc ${dir}/proc && (chroot ${dir} sh -c 'DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3 build-essential git perl' > ${dir}.log 2>&1; rc=$?; umount ${dir}/proc; exit $rc)`)
        sh(`chroot ${dir} apt-get clean`)
      }),
    })
  } else if (realistic) {
    console.error('debootstrap unavailable (or not root): using /usr/share as the realistic tree')
    list.push({name: 'usr-share', tree: '/usr/share'})
  }

  // Two sizes of the same shape: at 20,000 files a commit's fixed cost (start-up, opening the disk) is a
  // large part of it; at 200,000 (a node_modules or a Python environment) the per-entry costs show. The larger
  // one gets the incremental rows only.
  for (const [name, dirs, rows] of [['small-files', 200], ['small-files-200k', 2000, ['incremental']]]) {
    if (want(name)) list.push({
      inodes: dirs * 130, name, rows, tree: tree(name, dir => {
        for (let d = 0; d < dirs; d++) {
          mkdirSync(path.join(dir, `d${d}`), {recursive: true})
          for (let f = 0; f < 100; f++) writeFileSync(path.join(dir, `d${d}`, `f${f}.txt`), `file ${d}/${f}\n`.repeat(1 + ((d * f) % 40)))
        }
      }),
    })
  }

  // Opt-in: building them takes minutes and GBs of disk.
  for (const [name, dirs] of [['scale-500k', 400], ['scale-1m', 900]]) {
    if (only?.includes(name)) list.push({name, scale: {bigDirFiles: 100_000, dirs, filesPerDir: 1000}})
  }

  return list.filter(f => !only || only.includes(f.name))
}

/** A scale fixture's state dir, its image built once through the kernel. */
function scaleWorkspace(fixture) {
  const state = path.join(benchDir, `${fixture.name}.state`)
  const image = path.join(state, 'workspaces', 'bench', 'rootfs.ext4')
  if (!existsSync(image)) {
    mkdirSync(path.dirname(image), {recursive: true})
    console.error(`building fixture ${fixture.name} (loop mount) ...`)
    buildScaleImage(image, fixture.scale)
  }

  const {bigDirFiles, dirs, filesPerDir} = fixture.scale
  return {entries: dirs * (filesPerDir + 1) + bigDirFiles + 1, image, state}
}

/** An ext4 image of a tree, and a state dir whose stopped workspace uses it. */
function workspace(fixture) {
  const state = path.join(benchDir, `${fixture.name}.state`)
  const image = path.join(state, 'workspaces', 'bench', 'rootfs.ext4')
  if (!existsSync(image)) {
    mkdirSync(path.dirname(image), {recursive: true})
    const bytes = duBytes(fixture.tree)
    const size = Math.ceil((2 * bytes) / 1024 / 1024) + 256
    console.error(`mke2fs -d ${fixture.name} (${size} MiB) ...`)
    // Small files need more inodes than mke2fs's default ratio gives.
    sh(`mke2fs -q -F -t ext4${fixture.inodes ? ` -N ${fixture.inodes}` : ''} -d ${fixture.tree} ${image} ${size}M`)
  }

  return {image, state}
}

const rows = []
function row(fixture, what, ours, theirs, extra = '') {
  const ratio = theirs ? (ours.seconds / theirs.seconds).toFixed(2) : '-'
  rows.push([fixture, what, ours.seconds.toFixed(2), theirs ? theirs.seconds.toFixed(2) : '-', ratio, String(Math.round(ours.rssKiB / 1024)), extra])
  console.error(`  ${fixture} ${what}: ${ours.seconds.toFixed(2)} s vs ${theirs ? theirs.seconds.toFixed(2) : '-'} s (${ratio}x)`)
}

/** Medians over the runs of several commands (strings, or functions giving one) measured in turn, so drift hits them all alike. */
function sideBySide(commands, before = () => {}) {
  const results = commands.map(() => [])
  for (let r = 0; r < runs; r++) {
    for (const [i, command] of commands.entries()) {
      before(i)
      results[i].push(timed(typeof command === 'function' ? command() : command))
    }
  }

  return results.map(list => ({
    cpuSeconds: median(list.map(x => x.cpuSeconds)), rssKiB: Math.max(...list.map(x => x.rssKiB)), seconds: median(list.map(x => x.seconds)),
  }))
}

/** The scale rows: commit against the classic pipeline side by side, peak RSS, and CPU per entry. */
function scaleRows(fixture) {
  const {entries, image, state} = scaleWorkspace(fixture)
  const layout = path.join(state, 'images', 'oci')
  const staging = path.join(benchDir, 'rdump')
  const commit = `node ${bin} commit bench local/bench:gzip --state-dir ${state} --created ${created} > /dev/null`
  const classic = `debugfs -R 'rdump / ${staging}' ${image} 2>/dev/null && tar -C ${staging} -cf - . | gzip -6 | sha256sum > /dev/null`
  const clean = () => {
    rmSync(staging, {force: true, recursive: true})
    mkdirSync(staging)
    rmSync(layout, {force: true, recursive: true})
    sh('sync')
  }

  const [ours, theirs] = sideBySide([commit, classic], clean)
  const perEntry = (1e6 * ours.cpuSeconds) / entries
  row(fixture.name, 'commit gzip vs rdump+tar+gzip -6+sha256sum', ours, theirs, `${entries} entries; ${perEntry.toFixed(1)} us CPU per entry (ours, debugfs included), classic ${((1e6 * theirs.cpuSeconds) / entries).toFixed(1)}; goals: ratio <= 0.40, RSS <= 256 MiB`)
  rmSync(staging, {force: true, recursive: true})
  rmSync(layout, {force: true, recursive: true})
}

/** Names of regular files on the disk, the first `count` in name order under the largest directory listing. */
function someFiles(image, count) {
  const listing = sh(`debugfs -R 'ls -p /d0' ${image} 2>/dev/null || true`)
  const names = listing.split('\n').map(line => line.split('/')).filter(f => f.length > 5 && f[2].startsWith('10')).map(f => `/d0/${f[5]}`)
  return names.slice(0, count)
}

/**
 * commit --parent after a small change vs a full commit of the same disk, side by side: on realistic trees
 * one 1 MiB file changed, one added, one deleted; on the many-small-files tree 10 files changed. Also the
 * diff layer's size and what a push of the child sends to a registry that holds the parent.
 */
async function incremental(fixture, image, pushing) {
  const state = path.join(benchDir, `${fixture.name}.incremental`)
  rmSync(state, {force: true, recursive: true})
  const disk = path.join(state, 'workspaces', 'bench', 'rootfs.ext4')
  mkdirSync(path.dirname(disk), {recursive: true})
  sh(`cp --sparse=always ${image} ${disk}`)
  const mib = path.join(benchDir, 'one-mib')
  const write = commands => {
    writeFileSync(path.join(benchDir, 'debugfs.cmds'), commands.join('\n') + '\n')
    sh(`debugfs -w -f ${path.join(benchDir, 'debugfs.cmds')} ${disk} > /dev/null 2>&1`)
  }

  const small = fixture.name.startsWith('small-files')
  let changedBytes
  if (small) {
    const files = someFiles(disk, 10)
    if (files.length < 10) throw new Error('small-files: cannot find 10 files to change')
    sh(`node ${bin} commit bench local/bench:parent --state-dir ${state} --created ${created} > /dev/null`)
    writeFileSync(mib, 'changed\n')
    write(files.flatMap(f => [`rm ${f}`, `write ${mib} ${f}`]))
    changedBytes = 10 * 8
  } else {
    sh(`head -c 1048576 /dev/urandom > ${mib}`)
    write([`write ${mib} /bench-changed`, `write ${mib} /bench-deleted`])
    sh(`node ${bin} commit bench local/bench:parent --state-dir ${state} --created ${created} > /dev/null`)
    sh(`head -c 1048576 /dev/urandom > ${mib}`)
    write(['rm /bench-changed', `write ${mib} /bench-changed`, 'rm /bench-deleted', `write ${mib} /bench-added`])
    changedBytes = 2 * 1024 * 1024
  }

  const child = `node ${bin} commit bench local/bench:child --parent local/bench:parent --state-dir ${state} --created ${created} > /dev/null`
  const full = `node ${bin} commit bench local/bench:full --state-dir ${state} --created ${created} > /dev/null`
  const [ours, theirs] = sideBySide([child, full], () => sh('sync'))
  const result = JSON.parse(sh(`node ${bin} commit bench local/bench:child --parent local/bench:parent --state-dir ${state} --created ${created} --json`))
  const what = small ? 'commit --parent after 10 changed files vs full commit' : 'commit --parent after 1 MiB changed+added+deleted vs full commit'
  let pushed = ''
  if (pushing) {
    const registry = await startRegistry(benchDir)
    try {
      sh(`node ${bin} image push local/bench:parent ${registry.host}/bench:parent --state-dir ${state} > /dev/null`)
      const push = JSON.parse(sh(`node ${bin} image push local/bench:child ${registry.host}/bench:child --state-dir ${state} --json`))
      pushed = `, push of the child sends ${push.bytes_uploaded} B`
    } finally {
      registry.stop()
    }
  }

  row(fixture.name, what, ours, theirs, `diff layer ${result.size_bytes} B (changed ${changedBytes} B + 128 KiB = ${changedBytes + 131_072} B), tree record ${result.record_bytes} B${pushed}`)
  rmSync(state, {force: true, recursive: true})
}

async function main() {
  for (const tool of ['debugfs', 'mke2fs', 'gzip', 'pigz', 'zstd', 'sha256sum']) if (!have(tool)) throw new Error(`bench needs ${tool} (bash .ci/run installs it)`)
  execFileSync('npm', ['run', 'build', '--silent'], {cwd: root, stdio: 'inherit'})
  bin = installedBin(root, benchDir)
  console.error(`bench: ${runs} runs each, medians; ${availableParallelism()} cores; fixtures in ${benchDir}`)
  const pushing = !process.env.BENCH_SKIP_PUSH && have('docker-registry') && have('skopeo')
  try {
    for (const fixture of fixtures()) {
      if (fixture.scale) {
        scaleRows(fixture)
        continue
      }

      const {image, state} = workspace(fixture)
      const layout = path.join(state, 'images', 'oci')
      const staging = path.join(benchDir, 'rdump')
      const classicOut = path.join(benchDir, 'classic.tar.gz')
      const commit = (compression, extra = '') =>
        `node ${bin} commit bench local/bench:${compression} --state-dir ${state} --created ${created} --compression ${compression}${extra} > /dev/null`
      const classic = `debugfs -R 'rdump / ${staging}' ${image} 2>/dev/null && tar -C ${staging} -cf - . | gzip -6 | tee ${classicOut} | sha256sum > /dev/null`
      const clean = () => {
        rmSync(staging, {force: true, recursive: true})
        mkdirSync(staging)
        rmSync(layout, {force: true, recursive: true})
        // Each run starts with nothing left to write back: the previous run's output must not slow the next.
        sh('sync')
      }

      const rootfsBytes = duBytes(fixture.tree)
      console.error(`${fixture.name}: tree ${(rootfsBytes / 1e6).toFixed(0)} MB`)
      if (wanted('sandbox', fixture)) {
        // The cost of confining debugfs: the same commit with bubblewrap (auto) and without (off), in turn; gzip is
        // the default commit, none leaves only the extraction, which is all that confinement touches.
        clean()
        const probe = JSON.parse(sh(`node ${bin} commit bench local/bench:probe --state-dir ${state} --created ${created} --sandbox auto --json`))
        const confined = probe.sandbox.confined ? 'yes' : `no (${probe.sandbox.reason})`
        for (const compression of ['gzip', 'none']) {
          const [auto, off] = sideBySide([commit(compression, ' --sandbox auto'), commit(compression, ' --sandbox off')], clean)
          const cost = ((100 * (auto.seconds - off.seconds)) / off.seconds).toFixed(1)
          row(fixture.name, `commit ${compression} --sandbox auto vs --sandbox off`, auto, off, `confined: ${confined}; cost ${cost} %`)
        }
      }

      if (wanted('incremental', fixture)) await incremental(fixture, image, pushing)

      if (wanted('commit', fixture)) {
        const [ours, theirs, zstd] = sideBySide([commit('gzip'), classic, commit('zstd')], clean)
        // Disk beyond the output: the classic pipeline stages the whole tree; commit streams (its temp blob is the output).
        clean()
        sh(classic)
        const stagingBytes = duBytes(staging)
        row(fixture.name, 'commit gzip vs rdump+tar+gzip -6+sha256sum', ours, theirs, `staging: ours 0 B, classic ${(stagingBytes / 1e6).toFixed(0)} MB (${((100 * stagingBytes) / rootfsBytes).toFixed(0)} % of the rootfs)`)
        row(fixture.name, 'commit zstd vs rdump+tar+gzip -6+sha256sum', zstd, theirs)

        // The secret scan's share: the scanner's own time over the same files' bytes, read in the commit's 1 MiB
        // pieces (reading them is not counted), against the commit it runs inside.
        const scanScript = path.join(benchDir, 'scan.mjs')
        writeFileSync(scanScript, [
          "import {lstatSync, readdirSync, readFileSync} from 'node:fs'",
          "import path from 'node:path'",
          `import {FileScanner} from ${JSON.stringify(path.join(root, 'dist', 'lib', 'publish', 'secrets.js'))}`,
          'let ns = 0n; let bytes = 0; let findings = 0',
          'const walk = dir => { for (const name of readdirSync(dir)) { const file = path.join(dir, name); const info = lstatSync(file)',
          '  if (info.isDirectory()) walk(file); else if (info.isFile() && info.size > 0) { const data = readFileSync(file); bytes += data.length',
          '    const start = process.hrtime.bigint(); const scanner = new FileScanner(file)',
          '    for (let i = 0; i < data.length; i += 1 << 20) scanner.push(data.subarray(i, i + (1 << 20)))',
          '    findings += scanner.end().length; ns += process.hrtime.bigint() - start } } }',
          'walk(process.argv[2])',
          'console.log(JSON.stringify({bytes, findings, seconds: Number(ns) / 1e9}))',
        ].join('\n'))
        const scans = Array.from({length: runs}, () => JSON.parse(sh(`node ${scanScript} ${fixture.tree}`)))
        const scan = {rssKiB: 0, seconds: median(scans.map(x => x.seconds))}
        row(fixture.name, 'secret scan (scanner time, same files) vs commit gzip', scan, ours, `${(scans[0].bytes / 1e6).toFixed(0)} MB scanned, ${scans[0].findings} findings; goal <= 0.05`)
      }

      if (wanted('gzip', fixture)) {
        // Compression alone, on the same tar: our parallel gzip vs pigz on both cores.
        sh(`node ${bin} commit bench local/bench:tar --state-dir ${state} --created ${created} --compression none > /dev/null`)
        const index = JSON.parse(readFileSync(path.join(layout, 'index.json'), 'utf8'))
        const tarDescriptor = index.manifests.find(m => m.annotations['org.opencontainers.image.ref.name'] === 'local/bench:tar')
        const manifest = JSON.parse(readFileSync(path.join(layout, 'blobs', 'sha256', tarDescriptor.digest.slice(7)), 'utf8'))
        const tar = path.join(layout, 'blobs', 'sha256', manifest.layers[0].digest.slice(7))
        const gzipScript = path.join(benchDir, 'gzip.mjs')
        writeFileSync(
          gzipScript,
          `import {createReadStream, createWriteStream} from 'node:fs'\nimport {pipeline} from 'node:stream/promises'\nimport {createCompressor} from ${JSON.stringify(path.join(root, 'dist', 'lib', 'layer', 'compress.js'))}\nawait pipeline(createReadStream(process.argv[2]), createCompressor('gzip'), createWriteStream('/dev/null'))\n`,
        )
        const [ourGzip, pigz] = sideBySide([`node ${gzipScript} ${tar}`, `pigz -6 -p 2 -c ${tar} > /dev/null`])
        row(fixture.name, 'gzip -6 of the tar vs pigz -6 -p 2', ourGzip, pigz, `tar ${(statSync(tar).size / 1e6).toFixed(0)} MB`)
      }

      if (pushing && wanted('push', fixture)) {
        sh(commit('gzip'))
        // A fresh registry for every push, so that neither tool can skip or mount a blob it saw before
        // (skopeo keeps a blob-info cache, we keep a push history).
        const registries = []
        const fresh = async () => {
          const registry = await startRegistry(benchDir)
          registries.push(registry)
          return registry.host
        }

        const targets = []
        for (let r = 0; r < runs * 2; r++) targets.push(await fresh())
        let t = 0
        const [ourPush, skopeo] = sideBySide([
          () => `node ${bin} image push local/bench:gzip ${targets[t++]}/bench:v1 --state-dir ${state} > /dev/null`,
          () => `skopeo copy --quiet --dest-tls-verify=false oci:${layout}:local/bench:gzip docker://${targets[t++]}/bench:v1`,
        ])
        row(fixture.name, 'push to an empty registry vs skopeo copy', ourPush, skopeo)
        const repush = JSON.parse(sh(`node ${bin} image push local/bench:gzip ${targets[0]}/bench:v1 --state-dir ${state} --json`))
        const [noop] = sideBySide([`node ${bin} image push local/bench:gzip ${targets[0]}/bench:v1 --state-dir ${state} > /dev/null`])
        row(fixture.name, 'no-op re-push', noop, undefined, `blob bytes sent: ${repush.bytes_uploaded}`)
        for (const registry of registries) registry.stop()
      }

      rmSync(staging, {force: true, recursive: true})
      rmSync(classicOut, {force: true})
      rmSync(layout, {force: true, recursive: true})
    }
  } finally {
    for (const entry of readdirSync(benchDir)) if (entry.startsWith('registry-')) rmSync(path.join(benchDir, entry), {force: true, recursive: true})
  }

  const header = ['fixture', 'what (ours vs theirs)', 'ours s', 'theirs s', 'ratio', 'our peak RSS MiB', 'notes']
  const table = [header, header.map(() => '---'), ...rows]
  console.log(table.map(r => `| ${r.join(' | ')} |`).join('\n'))
}

await main()
