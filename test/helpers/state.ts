import {copyFileSync, mkdirSync, writeFileSync} from 'node:fs'
import path from 'node:path'

import {buildExt4, type Ext4Spec, tempDir} from './ext4.js'

export interface WorkspaceFixture {
  event?: unknown
  manifest?: unknown
  /** Copy this image as rootfs.ext4; else build a small one from `spec`; `null` for no disk. */
  rootfs?: null | string
  runtime?: unknown
  spec?: Ext4Spec
}

export function makeStateDir(): string {
  return tempDir('plugin-image-state-')
}

/** Lays out a workspace as microagent does: `workspaces/<name>/` and the runtime dir `<name>/`. */
export function addWorkspace(stateDir: string, name: string, fixture: WorkspaceFixture = {}): string {
  const workspaceDir = path.join(stateDir, 'workspaces', name)
  mkdirSync(workspaceDir, {recursive: true})
  const rootfs = path.join(workspaceDir, 'rootfs.ext4')
  if (fixture.rootfs) copyFileSync(fixture.rootfs, rootfs)
  else if (fixture.rootfs !== null) buildExt4(rootfs, fixture.spec ?? {tree: root => writeFileSync(path.join(root, 'hello'), 'hi\n')})
  if (fixture.manifest !== undefined) writeFileSync(path.join(workspaceDir, 'workspace.json'), JSON.stringify(fixture.manifest))
  const runtimeDir = path.join(stateDir, name)
  if (fixture.runtime !== undefined || fixture.event !== undefined) mkdirSync(runtimeDir, {recursive: true})
  if (fixture.runtime !== undefined) {
    writeFileSync(path.join(runtimeDir, 'runtime.json'), typeof fixture.runtime === 'string' ? fixture.runtime : JSON.stringify(fixture.runtime))
  }

  if (fixture.event !== undefined) writeFileSync(path.join(runtimeDir, 'event.json'), JSON.stringify(fixture.event))
  return rootfs
}

/** A runtime.json as microagent's Firecracker writer leaves it. */
export function runtimeRecord(state: string, pid = 0): unknown {
  return {
    config: {cpuCount: 1, memoryMiB: 256},
    event: {
      identity: {
        backend: 'linux-kvm', requestID: 'req-1', role: 'workload', runtimeID: 'demo',
      }, observedAt: '2026-08-01T12:00:00Z', state,
    },
    ...(pid ? {pid} : {}),
    updatedAt: '2026-08-01T12:00:00Z',
  }
}
