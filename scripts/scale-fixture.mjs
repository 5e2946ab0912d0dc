#!/usr/bin/env node
// Builds the scale bench's ext4 image through the kernel: mke2fs an empty image, loop-mount it, create the tree
// in this one process (no process per file), unmount. `mke2fs -d` is quadratic in directory size, so it is not
// used for this shape. Needs root (mount). Usage: node scripts/scale-fixture.mjs <image> <dirs> <files per dir> <big dir files>
// The shape is a workspace after `npm install` or a Python env: many directories of small files, and one huge
// directory of empty files.
import {execFileSync} from 'node:child_process'
import {
  closeSync, existsSync, mkdirSync, mkdtempSync, openSync, renameSync, rmdirSync, rmSync, writeSync,
} from 'node:fs'
import path from 'node:path'

/** Builds `image` (atomically: a half-built image is never left under its name). */
export function buildScaleImage(image, {bigDirFiles, dirs, filesPerDir}) {
  const entries = dirs * (filesPerDir + 1) + bigDirFiles + 1
  const partial = `${image}.partial`
  rmSync(partial, {force: true})
  // 4 KiB per small file, the inode tables (256 B each) and room for the journal and directories.
  const mib = Math.ceil((dirs * filesPerDir * 4096 + entries * 256 * 1.3) / 1024 / 1024) + 512
  execFileSync('mke2fs', ['-q', '-F', '-t', 'ext4', '-N', String(Math.ceil(entries * 1.1) + 1024), partial, `${mib}M`], {stdio: 'inherit'})
  const mnt = mkdtempSync(path.join(path.dirname(image), 'mnt-'))
  execFileSync('mount', ['-o', 'loop', partial, mnt])
  try {
    const line = Buffer.from('module.exports = require("./lib");\n')
    for (let d = 0; d < dirs; d++) {
      const dir = path.join(mnt, 'node_modules', `pkg${String(d).padStart(4, '0')}`)
      mkdirSync(dir, {recursive: true})
      for (let f = 0; f < filesPerDir; f++) {
        const fd = openSync(path.join(dir, `f${f}.js`), 'w', 0o644)
        const repeat = 1 + ((d * 7 + f) % 40)
        writeSync(fd, Buffer.concat(Array.from({length: repeat}, () => line)))
        closeSync(fd)
      }
    }

    const big = path.join(mnt, 'big')
    mkdirSync(big)
    for (let f = 0; f < bigDirFiles; f++) closeSync(openSync(path.join(big, `e${f}`), 'w', 0o644))
  } finally {
    execFileSync('umount', [mnt])
    rmdirSync(mnt)
  }

  renameSync(partial, image)
  return entries
}

if (process.argv[1] && path.resolve(process.argv[1]) === new URL(import.meta.url).pathname) {
  const [image, dirs, filesPerDir, bigDirFiles] = process.argv.slice(2)
  if (!existsSync(image)) {
    const start = Date.now()
    const entries = buildScaleImage(image, {bigDirFiles: Number(bigDirFiles), dirs: Number(dirs), filesPerDir: Number(filesPerDir)})
    console.error(`built ${image}: ${entries} entries in ${((Date.now() - start) / 1000).toFixed(0)} s`)
  }
}
