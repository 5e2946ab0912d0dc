import {Readable} from 'node:stream'

import type {
  Entry, ExtractOptions, Extractor, Skip,
} from './extractor.js'

export interface FakeEntry extends Omit<Entry, 'content' | 'path'> {
  /** Content of a regular file; `size` is taken from it. */
  data?: Buffer | string
  path: Buffer | string
}

/**
 * An in-memory extractor for command-level tests: it yields the given entries in the given order and
 * records the disks it was asked to read. Real extraction is tested against debugfs itself.
 */
export class FakeExtractor implements Extractor {
  readonly disks: string[] = []
  readonly name = 'fake'

  constructor(
    private readonly items: FakeEntry[],
    private readonly skips: Skip[] = [],
  ) {}

  async * entries(disk: string, options: ExtractOptions = {}): AsyncGenerator<Entry, void, undefined> {
    this.disks.push(disk)
    for (const skip of this.skips) options.onSkip?.(skip)
    for (const item of this.items) {
      const {data, ...rest} = item
      const bytes = data === undefined ? undefined : Buffer.from(data)
      yield {
        ...rest,
        ...(bytes ? {content: () => Readable.from([bytes]), size: bytes.length} : {}),
        path: Buffer.from(item.path),
      }
    }
  }

  async readFiles(disk: string, filePaths: Buffer[], maxBytes: number): Promise<(Buffer | undefined)[]> {
    return filePaths.map(filePath => {
      const item = this.items.find(candidate => Buffer.from(candidate.path).equals(filePath))
      if (item?.type !== 'file' || item.data === undefined) return
      const bytes = Buffer.from(item.data)
      return bytes.length > maxBytes ? undefined : bytes
    })
  }
}

/** A minimal, valid rootfs for fake extractions. */
export function fakeRootfs(): FakeEntry[] {
  const base = {
    gid: 0, mtime: {nsec: 0, sec: 1_700_000_000}, size: 0, uid: 0, xattrs: [],
  }
  return [
    {
      ...base, inode: 10, mode: 0o755, path: 'bin', type: 'directory',
    },
    {
      ...base, data: '#!/bin/sh\necho hello\n', inode: 11, mode: 0o755, path: 'bin/hello', type: 'file',
    },
    {
      ...base, inode: 12, mode: 0o1777, path: 'tmp', type: 'directory',
    },
  ]
}
