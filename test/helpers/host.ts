import {spawnSync} from 'node:child_process'
import {mkdirSync, symlinkSync, writeFileSync} from 'node:fs'
import path from 'node:path'
import {fileURLToPath} from 'node:url'

import {tempDir} from './ext4.js'

const PLUGIN_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..')
export const FIXTURE_PLUGIN = path.join(PLUGIN_ROOT, 'test', 'fixtures', 'hook-plugin')
/** The host's oclif dirname: its data, cache and config folders are named after it. */
const DIRNAME = 'microagent-test-host'

export interface Host {
  cacheDir: string
  root: string
  /** Runs the host's bin like a user would; never throws. */
  run(args: string[], env?: NodeJS.ProcessEnv): {status: null | number; stderr: string; stdout: string}
}

/**
 * A minimal microagent host, as the oclif notes describe one: a package.json naming its core plugins, a
 * bin, and node_modules links. This plugin is installed the way `microagent plugins link` does (a link
 * record in the data dir, so it runs from src through tsx); `corePlugins` are linked into node_modules from
 * this checkout's (or given as folders).
 */
export function makeHost(corePlugins: {dir: string; name: string}[] = []): Host {
  const base = tempDir('plugin-image-host-')
  const root = path.join(base, 'host')
  const xdg = {cache: path.join(base, 'cache'), config: path.join(base, 'config'), data: path.join(base, 'data')}
  mkdirSync(path.join(root, 'bin'), {recursive: true})
  writeFileSync(path.join(root, 'package.json'), JSON.stringify({
    // oclif loads a core plugin only when it is also a dependency.
    dependencies: Object.fromEntries(corePlugins.map(p => [p.name, '*'])),
    name: 'microagent',
    oclif: {
      bin: 'microagent', dirname: DIRNAME, plugins: corePlugins.map(p => p.name), topicSeparator: ' ',
    },
    type: 'module',
    version: '1.0.0',
  }))
  writeFileSync(path.join(root, 'bin', 'run.js'), "import {execute} from '@oclif/core'\nawait execute({dir: import.meta.url})\n")
  for (const {dir, name} of [{dir: path.join(PLUGIN_ROOT, 'node_modules', '@oclif', 'core'), name: '@oclif/core'}, ...corePlugins]) {
    const link = path.join(root, 'node_modules', ...name.split('/'))
    mkdirSync(path.dirname(link), {recursive: true})
    symlinkSync(dir, link)
  }

  mkdirSync(path.join(xdg.data, DIRNAME), {recursive: true})
  writeFileSync(path.join(xdg.data, DIRNAME, 'package.json'), JSON.stringify({
    dependencies: {},
    oclif: {plugins: [{name: '@microagent/plugin-image', root: PLUGIN_ROOT, type: 'link'}], schema: 1},
    private: true,
  }))
  return {
    cacheDir: path.join(xdg.cache, DIRNAME),
    root,
    run(args, env = {}) {
      const result = spawnSync(process.execPath, [path.join(root, 'bin', 'run.js'), ...args], {
        encoding: 'utf8',
        env: {
          ...process.env, NODE_ENV: '', XDG_CACHE_HOME: xdg.cache, XDG_CONFIG_HOME: xdg.config, XDG_DATA_HOME: xdg.data, ...env,
        },
        timeout: 120_000,
      })
      return {status: result.status, stderr: result.stderr, stdout: result.stdout}
    },
  }
}

/** A package of this checkout's node_modules, as a core plugin of the host. */
export function installedPlugin(name: string): {dir: string; name: string} {
  return {dir: path.join(PLUGIN_ROOT, 'node_modules', ...name.split('/')), name}
}
