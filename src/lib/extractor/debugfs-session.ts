import {execa, type ResultPromise} from 'execa'
import {randomBytes} from 'node:crypto'
import {Readable} from 'node:stream'

import {extractionError, MicroagentError} from '../errors.js'

/** A delimited reply larger than this is treated as hostile (a 100,000-entry directory lists in ~3 MB). */
export const MAX_REPLY_BYTES = 64 * 1024 * 1024

interface PendingBase {
  command: string
  /** `debugfs: <command>\n`, the echo that opens the stdout reply. */
  echo: Buffer
  /** `debugfs: Command not found x<nonce>-<id>`, the marker's complaint that closes the stderr reply. */
  endErr: Buffer
  /** `debugfs: x<nonce>-<id>\n`, the echo of the marker command that closes it. */
  endOut: Buffer
  errDone: boolean
  errText: string
  outDone: boolean
  started: boolean
}

interface DelimitedRequest extends PendingBase {
  kind: 'delimited'
  reject(error: Error): void
  reply?: Buffer
  resolve(reply: Buffer): void
}

interface SizedRequest extends PendingBase {
  kind: 'sized'
  readable: Readable
  remaining: number
}

type Pending = DelimitedRequest | SizedRequest

/** What debugfs wrote to stderr, less its version banner and blank lines. */
function complaints(stderr: string): string {
  return stderr
  .split('\n')
  .filter(line => line.trim() !== '' && !/^debugfs \d+\.\d+\S* \(.*\)$/.test(line))
  .join('\n')
}

/**
 * One long-lived `debugfs -f - <disk>` process, opened read-only, driven over pipes.
 *
 * Every command is followed by a marker command, `x<nonce>-<id>`, that debugfs does not know: it echoes
 * `debugfs: x<nonce>-<id>` on stdout and complains `Command not found x<nonce>-<id>` on stderr, which
 * frames each reply on *both* streams, so an error message is tied to the command that caused it. The
 * nonce is random per session; the disk's contents cannot contain it except by chance (2^-128), so guest
 * bytes can never forge a frame. Replies come back in request order; several can be in flight.
 */
export class DebugfsSession {
  private closed = false
  private failure: Error | undefined
  private nextId = 1
  private readonly nonce = randomBytes(16).toString('hex')
  private out: Buffer = Buffer.alloc(0)
  private outOfStep = false
  private readonly pending: Pending[] = []
  private readonly proc: ResultPromise<{buffer: false; encoding: 'buffer'; reject: false; stdin: 'pipe'}>
  private searchFrom = 0
  private stderrBuf = ''

  private constructor(
    readonly binary: string,
    readonly disk: string,
  ) {
    // -f - reads commands from stdin and unbuffers stdout/stderr; no -w, so the disk is opened read-only.
    this.proc = execa(binary, ['-f', '-', disk], {
      buffer: false,
      encoding: 'buffer',
      env: {LANG: 'C', LC_ALL: 'C'},
      reject: false,
      stdin: 'pipe',
    })
    this.proc.stdout.on('data', (chunk: Buffer) => this.onStdout(chunk))
    this.proc.stderr.on('data', (chunk: Buffer) => this.onStderr(chunk))
    this.proc.stdin.on('error', () => {
      // EPIPE after debugfs died; the exit handler reports why.
    })
    this.proc.then(result => this.onExit(result as {code?: string; exitCode?: number; signal?: string}))
  }

  static open(binary: string, disk: string): DebugfsSession {
    return new DebugfsSession(binary, disk)
  }

  /** Ends the session: debugfs exits when stdin closes. Safe to call twice. */
  async close(): Promise<void> {
    if (!this.closed) {
      this.closed = true
      this.proc.stdin.end()
    }

    const timer = setTimeout(() => this.proc.kill('SIGKILL'), 5000)
    await this.proc
    clearTimeout(timer)
  }

  /** Sends a command whose reply ends at the marker, and resolves with the reply bytes. */
  request(command: string): Promise<Buffer> {
    return new Promise<Buffer>((resolve, reject) => {
      this.send({
        ...this.frame(command), kind: 'delimited', reject, resolve,
      })
    })
  }

  /**
   * Sends a command whose reply is exactly `size` raw bytes (`cat`), and returns them as a stream with
   * back-pressure: debugfs's stdout is paused while the consumer is slow.
   */
  stream(command: string, size: number): Readable {
    const readable = new Readable({
      highWaterMark: 1024 * 1024,
      read: () => {
        this.proc.stdout.resume()
      },
    })
    this.send({
      ...this.frame(command), kind: 'sized', readable, remaining: size,
    })
    return readable
  }

  /** Kills debugfs at once (abort, or a consumer gave up); pending requests fail with `reason`. */
  terminate(reason: Error): void {
    this.fail(reason)
  }

  private desync(what: string): never {
    throw extractionError(`debugfs output is out of step (${what}); the disk may be corrupt or hostile`)
  }

  private fail(error: Error): void {
    if (this.failure) return
    this.failure = error
    for (const request of this.pending.splice(0)) {
      if (request.kind === 'delimited') request.reject(error)
      else request.readable.destroy(error)
    }

    this.proc.kill('SIGKILL')
  }

  private finishIfDone(): void {
    while (this.pending.length > 0) {
      const head = this.pending[0]
      if (head.errDone && head.errText !== '') {
        // Earlier requests have completed; this one failed. Any complaint makes the whole extraction
        // untrustworthy: stop rather than write a partial layer, and do not wait for stdout, which a
        // failed `cat` leaves short.
        this.fail(extractionError(`debugfs failed on "${head.command}": ${head.errText}`))
        return
      }

      if (!head.outDone || !head.errDone) return
      this.pending.shift()
      if (head.kind === 'delimited') head.resolve(head.reply ?? Buffer.alloc(0))
      else head.readable.push(null)
    }
  }

  private frame(command: string): PendingBase {
    if (/[\n\r\0]/.test(command)) throw new Error(`refusing to send a debugfs command with a line break: ${JSON.stringify(command)}`)
    const marker = `x${this.nonce}-${this.nextId++}`
    return {
      command,
      echo: Buffer.from(`debugfs: ${command}\n`),
      endErr: Buffer.from(`debugfs: Command not found ${marker}`),
      endOut: Buffer.from(`debugfs: ${marker}\n`),
      errDone: false,
      errText: '',
      outDone: false,
      started: false,
    }
  }

  private onExit(result: {code?: string; exitCode?: number; signal?: string}): void {
    if (this.pending.length === 0 && this.closed) return
    const stderr = complaints(this.stderrBuf)
    const missing = result.code === 'ENOENT'
    const error = missing
      ? new MicroagentError(`debugfs not found at "${this.binary}"`, {
        code: 'DEBUGFS_NOT_FOUND',
        exit: 'extraction',
        kind: 'unsupported',
        remediation: 'Install e2fsprogs (apt-get install e2fsprogs) or pass --debugfs <path>.',
      })
      : extractionError(`debugfs exited unexpectedly (${result.signal ?? `exit ${result.exitCode}`})${stderr ? `: ${stderr}` : ''}`)
    this.fail(error)
  }

  private onStderr(chunk: Buffer): void {
    this.stderrBuf += chunk.toString('latin1')
    for (;;) {
      const head = this.pending.find(p => !p.errDone)
      if (!head) break
      const marker = head.endErr.toString('latin1')
      const at = this.stderrBuf.indexOf(marker)
      if (at === -1) break
      head.errText = complaints(this.stderrBuf.slice(0, at))
      head.errDone = true
      this.stderrBuf = this.stderrBuf.slice(at + marker.length).replace(/^\n/, '')
    }

    this.finishIfDone()
  }

  private onStdout(chunk: Buffer): void {
    this.out = this.out.length === 0 ? chunk : Buffer.concat([this.out, chunk])
    if (this.outOfStep) return
    try {
      this.pump()
    } catch (error) {
      // Out of step usually means a command failed halfway (a short `cat`); its complaint on stderr
      // explains it better, so give stderr a moment to arrive before failing with the bare symptom.
      this.outOfStep = true
      setTimeout(() => this.fail(error as Error), 200).unref()
      return
    }

    this.finishIfDone()
  }

  private pump(): void {
    for (;;) {
      const head = this.pending.find(p => !p.outDone)
      if (!head) {
        if (this.out.length > 0) this.desync('unexpected output')
        return
      }

      if (!head.started) {
        if (this.out.length < head.echo.length) return
        if (!this.out.subarray(0, head.echo.length).equals(head.echo)) this.desync(`expected the echo of "${head.command}"`)
        this.out = this.out.subarray(head.echo.length)
        head.started = true
        this.searchFrom = 0
      }

      if (head.kind === 'sized') {
        if (head.remaining > 0) {
          if (this.out.length === 0) return
          const take = Math.min(head.remaining, this.out.length)
          const piece = this.out.subarray(0, take)
          // Content can only hold the nonce if debugfs stopped short and its own marker followed.
          if (piece.includes(this.nonce, 0, 'latin1')) this.desync(`short output from "${head.command}"`)
          this.out = this.out.subarray(take)
          head.remaining -= take
          if (!head.readable.push(Buffer.from(piece))) this.proc.stdout.pause()
          if (head.remaining > 0) return
        }

        if (this.out.length < head.endOut.length) return
        if (!this.out.subarray(0, head.endOut.length).equals(head.endOut)) this.desync(`"${head.command}" wrote more than expected`)
        this.out = this.out.subarray(head.endOut.length)
        head.outDone = true
        continue
      }

      const at = this.out.indexOf(head.endOut, Math.max(0, this.searchFrom - head.endOut.length))
      if (at === -1) {
        this.searchFrom = this.out.length
        if (this.out.length > MAX_REPLY_BYTES) this.desync(`reply to "${head.command}" exceeds ${MAX_REPLY_BYTES} bytes`)
        return
      }

      head.reply = Buffer.from(this.out.subarray(0, at))
      this.out = this.out.subarray(at + head.endOut.length)
      head.outDone = true
    }
  }

  private send(request: Pending): void {
    if (this.failure) {
      if (request.kind === 'delimited') request.reject(this.failure)
      else request.readable.destroy(this.failure)
      return
    }

    if (this.closed) throw new Error('debugfs session is closed')
    this.pending.push(request)
    const marker = request.endOut.subarray('debugfs: '.length, -1).toString('latin1')
    this.proc.stdin.write(`${request.command}\n${marker}\n`)
  }
}
