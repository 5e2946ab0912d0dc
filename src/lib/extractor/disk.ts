import {
  constants, copyFile, open, rm,
} from 'node:fs/promises'

import {extractionError, MicroagentError} from '../support/errors.js'
import {debugfsComplaints, debugfsInvocation, findDebugfs} from './e2fsprogs.js'
import {Sandbox} from './sandbox.js'

/** Where the ext2/3/4 superblock starts, and the offsets of the fields read from it (ext4 `struct ext4_super_block`). */
const SUPERBLOCK_OFFSET = 1024
const BLOCKS_COUNT_LO_OFFSET = 0x04
const LOG_BLOCK_SIZE_OFFSET = 0x18
const BLOCKS_COUNT_HI_OFFSET = 0x1_50
const MAGIC_OFFSET = 0x38
const UUID_OFFSET = 0x68
const EXT_MAGIC = 0xEF_53
const FEATURE_COMPAT_OFFSET = 0x5C
const FEATURE_INCOMPAT_OFFSET = 0x60
const COMPAT_HAS_JOURNAL = 0x4
const INCOMPAT_RECOVER = 0x4
const INCOMPAT_JOURNAL_DEV = 0x8
const INCOMPAT_64BIT = 0x80
/** ext4 allows 1 KiB to 64 KiB blocks. */
const MAX_LOG_BLOCK_SIZE = 6

export interface SuperblockFacts {
  /** Blocks in the filesystem: no block a file maps may lie at or past this. */
  blocksCount: number
  /** Bytes per block (1 KiB–64 KiB). */
  blockSize: number
  /** An external journal device: its transactions are not in this file. */
  externalJournal: boolean
  hasJournal: boolean
  /** The journal holds transactions that were never checkpointed (the VM was killed or crashed). */
  needsRecovery: boolean
  /** `s_uuid`, as dumpe2fs prints it. */
  uuid: string
}

function uuidText(bytes: Buffer): string {
  const hex = bytes.toString('hex')
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`
}

/** Reads the facts that decide how to open the disk; a file that is not ext2/3/4 is an extraction error. */
export async function readSuperblock(file: string): Promise<SuperblockFacts> {
  const handle = await open(file, 'r')
  const block = Buffer.alloc(1024)
  let read = 0
  try {
    ({bytesRead: read} = await handle.read(block, 0, block.length, SUPERBLOCK_OFFSET))
  } finally {
    await handle.close()
  }

  if (read < block.length || block.readUInt16LE(MAGIC_OFFSET) !== EXT_MAGIC) {
    throw extractionError(`${file} is not an ext2/3/4 filesystem (no superblock magic)`, {
      remediation: 'commit reads ext4 root filesystems only; check that the workspace disk is the one microagent created.',
    })
  }

  const compat = block.readUInt32LE(FEATURE_COMPAT_OFFSET)
  const incompat = block.readUInt32LE(FEATURE_INCOMPAT_OFFSET)
  const logBlockSize = block.readUInt32LE(LOG_BLOCK_SIZE_OFFSET)
  if (logBlockSize > MAX_LOG_BLOCK_SIZE) throw extractionError(`${file} has a corrupt superblock (block size 2^${10 + logBlockSize})`)
  const blocksHigh = (incompat & INCOMPAT_64BIT) === 0 ? 0 : block.readUInt32LE(BLOCKS_COUNT_HI_OFFSET)
  return {
    blockSize: 1024 * 2 ** logBlockSize,
    blocksCount: blocksHigh * 2 ** 32 + block.readUInt32LE(BLOCKS_COUNT_LO_OFFSET),
    externalJournal: (incompat & INCOMPAT_JOURNAL_DEV) !== 0,
    hasJournal: (compat & COMPAT_HAS_JOURNAL) !== 0,
    needsRecovery: (incompat & INCOMPAT_RECOVER) !== 0,
    uuid: uuidText(block.subarray(UUID_OFFSET, UUID_OFFSET + 16)),
  }
}

export interface DiskView {
  /** The file to read: the disk itself, or a private replayed copy. */
  path: string
  /** Removes the private copy, if any. */
  release(): Promise<void>
  replayed: boolean
}

export interface DiskViewOptions {
  /** debugfs for the journal replay; found on PATH when omitted (and only when a replay is needed). */
  debugfs?: string
  /** Where a private copy may go: a path on the same filesystem as the disk makes reflinks possible. */
  privateCopyPath: string
  /** How the replay's debugfs is run (the copy bound read-write, nothing else writable): unconfined when omitted. */
  sandbox?: Sandbox
}

/**
 * Copies sparsely, and as a reflink where the filesystem can (btrfs, XFS): GNU cp does both; elsewhere
 * copyFile clones when it can and copies otherwise.
 */
async function privateCopy(source: string, target: string): Promise<void> {
  try {
    // Loaded here, not at the top: its import costs ~0.1 s that commits of clean disks do not need.
    const {execa} = await import('execa')
    await execa('cp', ['--reflink=auto', '--sparse=always', '--', source, target])
  } catch {
    await copyFile(source, target, constants.COPYFILE_FICLONE)
  }
}

/**
 * A read-only view of a workspace disk, which is never written. debugfs does not replay the journal
 * (nor warn), so a disk whose journal needs recovery would be read stale: such a disk is copied privately,
 * the copy's journal is replayed, and the copy is read.
 */
export async function openDiskView(disk: string, options: DiskViewOptions): Promise<DiskView> {
  const facts = await readSuperblock(disk)
  if (facts.externalJournal) {
    throw new MicroagentError(`${disk} uses an external journal device, which commit cannot read`, {
      code: 'UNSUPPORTED_DISK',
      exit: 'extraction',
      kind: 'unsupported',
      remediation: 'Commit a workspace whose rootfs keeps its journal inside the filesystem (microagent creates them so).',
    })
  }

  if (!facts.needsRecovery) return {path: disk, async release() {}, replayed: false}
  const copy = options.privateCopyPath
  const release = (): Promise<void> => rm(copy, {force: true})
  try {
    await privateCopy(disk, copy)
    const {execa} = await import('execa')
    const binary = options.debugfs ?? (await findDebugfs())
    const invocation = debugfsInvocation(options.sandbox ?? Sandbox.off(), {
      args: file => ['-w', '-R', 'journal_run', file], disk: copy, env: {LANG: 'C', LC_ALL: 'C'}, tool: binary, writable: true,
    })

    const result = await execa(invocation.file, invocation.args, {env: invocation.env, reject: false})
    const complaints = debugfsComplaints(result.stderr)
    if (result.failed || complaints !== '' || (await readSuperblock(copy)).needsRecovery) {
      throw extractionError(`replaying the journal of a private copy of ${disk} failed: ${complaints || result.shortMessage || 'the journal still needs recovery'}`)
    }
  } catch (error) {
    await release()
    throw error
  }

  return {path: copy, release, replayed: true}
}
