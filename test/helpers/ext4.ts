import {execFileSync} from 'node:child_process'
import {mkdtempSync, rmSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import path from 'node:path'

export interface Ext4Spec {
  /** debugfs -w commands run after mke2fs, for what an unprivileged user cannot create in a tree. */
  commands?: string[]
  /** mke2fs extra options, e.g. ['-I', '128']. */
  mke2fsOptions?: string[]
  sizeMiB?: number
  /** Fills the source tree that `mke2fs -d` copies. */
  tree?: (root: string) => void
}

const created: string[] = []

export function tempDir(prefix = 'plugin-image-test-'): string {
  const dir = mkdtempSync(path.join(tmpdir(), prefix))
  created.push(dir)
  return dir
}

/** The folders tempDir made so far. */
export function tempDirs(): readonly string[] {
  return created
}

/** Removes every folder tempDir made (a full run makes a few GB of images, layouts and registries). */
export function removeTempDirs(): void {
  for (const dir of created.splice(0)) {
    try {
      rmSync(dir, {force: true, maxRetries: 3, recursive: true})
    } catch {
      // A folder a test left unreadable stays; it is in the system's temp folder.
    }
  }
}

/**
 * Builds a real ext4 image without root: `mke2fs -d` copies a tree, then `debugfs -w` sets owners,
 * times, device nodes, xattrs and links. Fails the test on any debugfs complaint.
 */
export function buildExt4(file: string, spec: Ext4Spec = {}): string {
  const root = tempDir('plugin-image-tree-')
  spec.tree?.(root)
  execFileSync('mke2fs', ['-q', '-F', '-t', 'ext4', ...(spec.mke2fsOptions ?? []), '-d', root, file, `${spec.sizeMiB ?? 16}M`], {
    stdio: ['ignore', 'ignore', 'pipe'],
  })
  if (spec.commands && spec.commands.length > 0) runDebugfsWrite(file, spec.commands)
  return file
}

export function runDebugfsWrite(file: string, commands: string[]): void {
  const script = path.join(tempDir('plugin-image-cmds-'), 'cmds')
  writeFileSync(script, commands.join('\n') + '\n')
  execFileSync('debugfs', ['-w', '-f', script, file], {stdio: ['ignore', 'ignore', 'ignore']})
}

/** debugfs -w reports failures on stderr with exit 0, so check the result by reading back. */
export function debugfsRead(file: string, command: string): string {
  return execFileSync('debugfs', ['-R', command, file], {encoding: 'latin1', stdio: ['ignore', 'pipe', 'ignore']})
}

/**
 * Leaves a committed transaction in the journal (needs_recovery set), as a VM killed mid-flight does:
 * the journal holds new bytes for `block` that the filesystem itself does not have yet.
 */
export function dirtyJournal(file: string, block: number, data: Buffer): void {
  const blob = path.join(tempDir('plugin-image-jblock-'), 'block')
  writeFileSync(blob, data)
  runDebugfsWrite(file, ['jo', `jw -b ${block} ${blob}`, 'jc'])
}

/** An image whose journal holds a newer version of /f's first block than the filesystem does. */
export function dirtyImage(): {file: string; journaled: Buffer} {
  const file = buildExt4(path.join(tempDir(), 'dirty.ext4'), {
    mke2fsOptions: ['-b', '4096'],
    tree: root => writeFileSync(path.join(root, 'f'), 'x'.repeat(4096)),
  })
  const block = Number(debugfsRead(file, 'bmap /f 0').trim())
  const journaled = Buffer.alloc(4096, 0x4A)
  dirtyJournal(file, block, journaled)
  return {file, journaled}
}
