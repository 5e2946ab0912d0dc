#!/usr/bin/env node
// npm run bench:startup: the fixed cost of `image list` and of a no-op `image push` (every blob already there), on
// each Node given, with Node's module compile cache off (NODE_DISABLE_COMPILE_CACHE=1) and on (bin/run.js turns it
// on where Node has it, ≥ 22.1). Commands run round-robin, so that load from elsewhere hits them all alike; medians of
// wall time and of CPU time (user + sys, from /usr/bin/time, 10 ms steps).
// Options (env): STARTUP_NODES (comma list of node binaries; default this one), STARTUP_RUNS (default 20).
import {execFileSync, spawnSync} from 'node:child_process'
import {
  mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync,
} from 'node:fs'
import {tmpdir} from 'node:os'
import path from 'node:path'
import {fileURLToPath} from 'node:url'

import {installedBin} from './installed.mjs'
import {startRegistry} from './registry.mjs'

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
const nodes = (process.env.STARTUP_NODES ?? process.execPath).split(',')
const runs = Number(process.env.STARTUP_RUNS ?? 20)
const dir = mkdtempSync(path.join(tmpdir(), 'microagent-startup-'))
const state = path.join(dir, 'state')
const timeOut = path.join(dir, 'time.out')

function timed(argv, env) {
  const start = process.hrtime.bigint()
  const result = spawnSync('/usr/bin/time', ['-f', '%U %S', '-o', timeOut, ...argv], {env: {...process.env, ...env}, stdio: 'ignore'})
  if (result.status !== 0) throw new Error(`failed: ${argv.join(' ')}`)
  const [user, sys] = readFileSync(timeOut, 'utf8').trim().split('\n').pop().split(' ').map(Number)
  return {cpu: (user + sys) * 1000, wall: Number(process.hrtime.bigint() - start) / 1e6}
}

const median = values => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]

execFileSync('npm', ['run', 'build', '--silent'], {cwd: root, stdio: 'inherit'})
// The plugin as installed, with its oclif manifest.
const bin = installedBin(root, dir)
const tree = path.join(dir, 'tree')
mkdirSync(path.join(tree, 'etc'), {recursive: true})
writeFileSync(path.join(tree, 'etc', 'hostname'), 'startup\n')
mkdirSync(path.join(state, 'workspaces', 'demo'), {recursive: true})
execFileSync('mke2fs', ['-q', '-F', '-t', 'ext4', '-d', tree, path.join(state, 'workspaces', 'demo', 'rootfs.ext4'), '8M'])
execFileSync(process.execPath, [bin, 'commit', 'demo', 'local/startup:v1', '--state-dir', state, '--created', '2026-01-01T00:00:00Z'], {stdio: 'ignore'})
const registry = await startRegistry(dir)
try {
  const push = ['image', 'push', 'local/startup:v1', `${registry.host}/startup:v1`, '--state-dir', state]
  execFileSync(process.execPath, [bin, ...push], {stdio: 'ignore'})
  const cases = nodes.flatMap(node => {
    const version = execFileSync(node, ['--version'], {encoding: 'utf8'}).trim()
    return [['off', {NODE_DISABLE_COMPILE_CACHE: '1'}], ['on', {}]].flatMap(([cache, env]) => [
      {argv: [node, bin, 'image', 'list', '--state-dir', state], env, name: `${version} image list, compile cache ${cache}`},
      {argv: [node, bin, ...push], env, name: `${version} no-op image push, compile cache ${cache}`},
    ])
  })
  for (const c of cases) {
    c.results = []
    // Warm-up: the disk cache, and the compile cache's first fill.
    for (let i = 0; i < 3; i++) timed(c.argv, c.env)
  }

  for (let r = 0; r < runs; r++) for (const c of cases) c.results.push(timed(c.argv, c.env))
  console.log(`${runs} runs each, round-robin, medians; load average at the end: ${readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ')}`)
  for (const c of cases) {
    console.log(`${c.name.padEnd(52)} wall ${median(c.results.map(x => x.wall)).toFixed(0).padStart(4)} ms  cpu ${median(c.results.map(x => x.cpu)).toFixed(0).padStart(4)} ms`)
  }
} finally {
  registry.stop()
  rmSync(dir, {force: true, recursive: true})
}
