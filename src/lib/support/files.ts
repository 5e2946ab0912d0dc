/** Durable, atomic file writes: what the layout and the push history share. */
import {randomBytes} from 'node:crypto'
import {open, rename, unlink} from 'node:fs/promises'
import path from 'node:path'

/** Creates `file` (which must not exist), writes and flushes it; on any failure it is removed again. */
export async function writeNewFile(file: string, data: Buffer, mode: number): Promise<void> {
  const handle = await open(file, 'wx', mode)
  try {
    await handle.writeFile(data)
    await handle.sync()
  } catch (error) {
    await handle.close().catch(() => {})
    await unlink(file).catch(() => {})
    throw error
  }

  await handle.close()
}

/** Writes a file by temp name, fsync and rename, so readers see the old or the new bytes, never a mix. */
export async function writeAtomic(file: string, data: Buffer, mode: number): Promise<void> {
  const temp = `${file}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`
  await writeNewFile(temp, data, mode)
  try {
    await rename(temp, file)
  } catch (error) {
    await unlink(temp).catch(() => {})
    throw error
  }

  await syncDir(path.dirname(file))
}

/** Flushes a file written through another handle (a stream) to disk. */
export async function fsync(file: string): Promise<void> {
  const handle = await open(file, 'r')
  try {
    await handle.sync()
  } finally {
    await handle.close()
  }
}

/** Makes a rename durable: a crash after this cannot bring back the old name. */
export async function syncDir(dir: string): Promise<void> {
  const handle = await open(dir, 'r')
  try {
    await handle.sync()
  } catch {
    // Some filesystems cannot fsync a directory; the rename is still atomic.
  } finally {
    await handle.close()
  }
}

