import {execa, type ResultPromise} from 'execa'
import {randomBytes} from 'node:crypto'
import {Readable} from 'node:stream'

import {debugfsComplaints} from '../e2fsprogs.js'
import {extractionError, MicroagentError} from '../errors.js'

/** A delimited reply larger than this is treated as hostile (a 100,000-entry directory lists in ~3 MB). */
export const MAX_REPLY_BYTES = 64 * 1024 * 1024

interface PendingBase {
  command: string
  /** `debugfs: <command>\n`, the echo that opens the stdout reply. */
  echo: Buffer
  /** `# <nonce>-<id>\n`: a comment line, which debugfs echoes verbatim after the reply. */
  endOut: Buffer
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

/**
 * One long-lived `debugfs -f - <disk>` process, opened read-only, driven over pipes.
 *
 * Every command is followed by a comment line, `# <nonce>-<id>`, which debugfs echoes verbatim on stdout
 * once the command is done: it closes the reply. The nonce is random per session; the disk's contents
 * cannot contain it except by chance (2^-128), so guest bytes can never forge a frame. Replies come back in
 * request order; many can be in flight. debugfs reports errors on stderr (with exit status 0): any such
 * complaint fails the session, at once if it arrives while requests are pending, and at `close()` at the
 * latest, so an extraction can never finish on a reply that debugfs complained about.
 */
export class DebugfsSession {
  private closed = false
  private complaintScheduled = false
  private failure: Error | undefined
  private flushScheduled = false
  private nextId = 1
  private readonly nonce = randomBytes(16).toString('hex')
  private out: Buffer = Buffer.alloc(0)
  private outgoing = ''
  private outOfStep = false
  private readonly pending: Pending[] = []
  private readonly proc: ResultPromise<{buffer: false; encoding: 'buffer'; reject: false; stdin: 'pipe'}>
  private searchFrom = 0
  private stderrBuf = ''
  /** The command at the head of the queue when debugfs first complained: almost always the culprit. */
  private suspect: string | undefined

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

  /**
   * Ends the session: debugfs exits when stdin closes. Throws if debugfs complained about anything that no
   * request has failed with yet, so a caller that finishes cleanly knows every reply was good.
   */
  async close(): Promise<void> {
    if (!this.closed) {
      this.closed = true
      // After any batched commands: the microtask that writes them runs before this one ends stdin.
      await Promise.resolve()
      this.proc.stdin.end()
    }

    const timer = setTimeout(() => this.proc.kill('SIGKILL'), 5000)
    await this.proc
    clearTimeout(timer)
    // A failure was already delivered to the requests; a complaint nobody heard yet must not be lost.
    const text = debugfsComplaints(this.stderrBuf)
    if (!this.failure && text !== '') throw this.complaint(text)
  }

  /** Sends a command that prints something when it succeeds, and resolves with the reply bytes. */
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

  private complaint(text: string): Error {
    return extractionError(`debugfs failed${this.suspect ? ` on "${this.suspect}"` : ''}: ${text}`)
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
    while (this.pending.length > 0 && this.pending[0].outDone) {
      const head = this.pending[0]
      if (head.kind === 'delimited' && (head.reply?.length ?? 0) === 0) {
        // Every command sent as a delimited request prints something when it succeeds: an empty reply is
        // a failure whose explanation is on its way to stderr. Blame this command, and fail.
        this.suspect = head.command
        if (!this.complaintScheduled) {
          this.complaintScheduled = true
          setTimeout(() => this.fail(this.complaint(debugfsComplaints(this.stderrBuf) || 'no output')), 20).unref()
        }

        return
      }

      this.pending.shift()
      if (head.kind === 'delimited') head.resolve(head.reply!)
      else head.readable.push(null)
    }
  }

  private frame(command: string): PendingBase {
    if (/[\n\r\0]/.test(command)) throw new Error(`refusing to send a debugfs command with a line break: ${JSON.stringify(command)}`)
    return {
      command,
      echo: Buffer.from(`debugfs: ${command}\n`),
      endOut: Buffer.from(`# ${this.nonce}-${this.nextId++}\n`),
      outDone: false,
      started: false,
    }
  }

  private onExit(result: {code?: string; exitCode?: number; signal?: string}): void {
    if (this.pending.length === 0 && this.closed) return
    const stderr = debugfsComplaints(this.stderrBuf)
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
    if (this.complaintScheduled || debugfsComplaints(this.stderrBuf) === '') return
    this.complaintScheduled = true
    this.suspect ??= this.pending[0]?.command
    // A moment for the rest of the message; the stdout of a failed `cat` is short, so do not wait for it.
    setTimeout(() => this.fail(this.complaint(debugfsComplaints(this.stderrBuf))), 20).unref()
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
    // Commands sent in the same tick go out in one write: a batch of stats is one syscall, not hundreds.
    this.outgoing += `${request.command}\n${request.endOut.toString('latin1')}`
    if (!this.flushScheduled) {
      this.flushScheduled = true
      queueMicrotask(() => {
        this.flushScheduled = false
        const text = this.outgoing
        this.outgoing = ''
        if (!this.failure) this.proc.stdin.write(text)
      })
    }
  }
}
