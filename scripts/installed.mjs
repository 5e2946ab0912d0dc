// The plugin as a user installs it, for the benches: what `npm pack` ships (package.json, bin, dist and the oclif
// manifest that `prepack` writes) in a folder of its own, with this checkout's node_modules linked in. Without the
// manifest oclif imports every command at start-up to learn their flags, which a user's install never does; a bench
// run from the checkout would time that.
import {execFileSync} from 'node:child_process'
import {
  cpSync, mkdirSync, rmSync, symlinkSync,
} from 'node:fs'
import path from 'node:path'

/** Builds the installed copy under `parent` (replacing an earlier one) and returns its bin/run.js. */
export function installedBin(root, parent) {
  const dir = path.join(parent, 'installed-plugin')
  rmSync(dir, {force: true, recursive: true})
  mkdirSync(dir, {recursive: true})
  for (const entry of ['package.json', 'bin', 'dist']) cpSync(path.join(root, entry), path.join(dir, entry), {recursive: true})
  symlinkSync(path.join(root, 'node_modules'), path.join(dir, 'node_modules'))
  execFileSync(process.execPath, [path.join(root, 'node_modules', 'oclif', 'bin', 'run.js'), 'manifest'], {cwd: dir, stdio: 'ignore'})
  return path.join(dir, 'bin', 'run.js')
}
