import {readFileSync} from 'node:fs'

/** Signal 0 probes a pid without touching it; EPERM means it exists under another user. */
export function isPidAlive(pid: number): boolean {
  if (!Number.isSafeInteger(pid) || pid <= 0) return false
  try {
    process.kill(pid, 0)
    return true
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM'
  }
}

/** Linux reports process start times in USER_HZ ticks, 100 per second on every architecture it runs VMs on. */
const USER_HZ = 100

/** When a process started (Linux /proc), or undefined where that cannot be read. */
export function processStartTime(pid: number): Date | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    // The command name (field 2) may hold spaces and parentheses: count fields after its closing one.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    const ticks = Number(fields[19])
    const boot = /\nbtime (\d+)\n/.exec(readFileSync('/proc/stat', 'utf8'))
    if (!boot || !Number.isFinite(ticks)) return undefined
    return new Date((Number(boot[1]) + ticks / USER_HZ) * 1000)
  } catch {
    return undefined
  }
}
