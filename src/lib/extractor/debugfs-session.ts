import type {ChildProcessWithoutNullStreams} from 'node:child_process'

import {randomBytes} from 'node:crypto'
import {Readable} from 'node:stream'

import {ByteQueue} from '../support/byte-queue.js'
import {type ChildExit, spawnChild} from '../support/child.js'
import {extractionError} from '../support/errors.js'
import {debugfsComplaints, debugfsInvocation, debugfsNotFound} from './e2fsprogs.js'
import {Sandbox} from './sandbox.js'

/** A delimited reply larger than this is treated as hostile (a 100,000-entry directory lists in ~3 MB). */
export const MAX_REPLY_BYTES = 64 * 1024 * 1024

interface PendingBase {
  command: string
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

/** libss's prompt, printed (and flushed) each time debugfs is about to read a command. */
const PROMPT = 'debugfs:  '
/** How long debugfs may leave pending requests unanswered before the session fails. */
export const DEFAULT_IDLE_TIMEOUT_MS = 60_000
/** How long a session failed before its first output may take to quit on its own before it is killed. */
const STARTUP_KILL_MS = 2000

export interface SessionOptions {
  /** Pending requests with no output from debugfs for this long fail the session (a crafted disk can make it spin). */
  idleTimeoutMs?: number
  /** How debugfs is run: unconfined when omitted. */
  sandbox?: Sandbox
}

/** Bits of the per-session nonce. */
const NONCE_BITS = 96

/**
 * The disk's path spelled with a random nonce that the kernel resolves to the same file: after the
 * directory, one `./` for each 1 bit and one `/` for each 0 bit (`/a/b.ext4` → `/a/.///./b.ext4`).
 */
export function noncePath(disk: string, nonce: Buffer): string {
  const slash = disk.lastIndexOf('/')
  const dir = slash === -1 ? '.' : disk.slice(0, slash)
  let tokens = ''
  for (let bit = 0; bit < nonce.length * 8; bit++) tokens += (nonce[bit >> 3] >> (bit & 7)) & 1 ? './' : '/'
  return `${dir}/${tokens}${disk.slice(slash + 1)}`
}

/**
 * One long-lived, interactive `debugfs <disk>` process, opened read-only, driven over pipes.
 *
 * Every command is followed by `params`, which prints the path debugfs opened. That path carries a
 * random nonce (see noncePath), so `params`'s reply can only come from `params`: the guest's bytes (names,
 * link targets, xattrs, file content) cannot forge it except by chance (2^-96), and it closes the reply
 * before it. Interactive mode, not `-f -`, because `-f` unbuffers stdout (a write per line, a wake-up per
 * write), while libss flushes once per prompt. Replies come back in request order; many can be in flight.
 * debugfs reports errors on stderr (with exit status 0): any such complaint fails the session, at once if
 * it arrives while requests are pending, and at `close()` at the latest, so an extraction can never finish
 * on a reply that debugfs complained about.
 */
export class DebugfsSession {
  private closed = false
  private complaintScheduled = false
  private readonly exited: Promise<ChildExit>
  private failure: Error | undefined
  /** The failure came while no request was waiting for a reply: only close() can report it. */
  private failureUnheard = false
  private flushScheduled = false
  /** Index in `pending` of the first request whose reply has not been read yet. */
  private head = 0
  private lastOutput = Date.now()
  /** The text that ends every reply: a prompt, `params`'s reply, the next prompt. */
  private readonly marker: Buffer
  private readonly out = new ByteQueue()
  private outgoing = ''
  private outOfStep = false
  private readonly pending: Pending[] = []
  private readonly proc: ChildProcessWithoutNullStreams
  private sawFirstPrompt = false
  private searchFrom = 0
  /** Whether debugfs has printed anything: only then is it safe to kill (see `kill`). */
  private started = false
  private stderrBuf = ''
  /** The command at the head of the queue when debugfs first complained: almost always the culprit. */
  private suspect: string | undefined
  private readonly watchdog: NodeJS.Timeout

  private constructor(
    readonly binary: string,
    readonly disk: string,
    options: SessionOptions,
  ) {
    const sandbox = options.sandbox ?? Sandbox.off()
    // debugfs echoes the path it opened, so the marker is spelled as the (maybe confined) process sees it.
    const opened = noncePath(sandbox.diskPath(disk), randomBytes(NONCE_BITS / 8))
    this.marker = Buffer.from(`${PROMPT}Open mode: read-only\nFilesystem in use: ${opened}\n${PROMPT}`, 'latin1')
    // No -w: the disk is opened read-only. SS_READLINE_PATH=none keeps libss from loading readline; stat
    // prints local times that are never read (the raw hex is), and UTC spares glibc a look at
    // /etc/localtime for each of them. Confined, these four are debugfs's whole environment (and PATH).
    const invocation = debugfsInvocation(sandbox, {
      args: () => [opened], disk, env: {
        LANG: 'C', LC_ALL: 'C', SS_READLINE_PATH: 'none', TZ: 'UTC',
      }, tool: binary,
    })

    const child = spawnChild(invocation.file, invocation.args, invocation.env)
    this.proc = child.process
    this.exited = child.exited
    this.proc.stdout.on('data', (chunk: Buffer) => this.onStdout(chunk))
    this.proc.stderr.on('data', (chunk: Buffer) => this.onStderr(chunk))
    this.exited.then(result => this.onExit(result))
    const idle = options.idleTimeoutMs ?? DEFAULT_IDLE_TIMEOUT_MS
    this.watchdog = setInterval(() => this.checkIdle(idle), Math.min(1000, idle / 4))
    this.watchdog.unref()
    this.exited.then(() => clearInterval(this.watchdog))
  }

  static open(binary: string, disk: string, options: SessionOptions = {}): DebugfsSession {
    return new DebugfsSession(binary, disk, options)
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
    await this.exited
    clearTimeout(timer)
    // A failure that came while no request was waiting reached nobody yet; nor did a late complaint.
    if (this.failure) {
      if (this.failureUnheard) throw this.failure
      return
    }

    const text = debugfsComplaints(this.stderrBuf)
    if (text !== '') throw this.complaint(text)
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

  /** Fails the session when debugfs owes replies and has printed nothing for `idle` ms (not while we hold it back). */
  private checkIdle(idle: number): void {
    if (this.head >= this.pending.length || this.proc.stdout.isPaused()) {
      this.lastOutput = Date.now()
      return
    }

    if (Date.now() - this.lastOutput < idle) return
    this.suspect ??= this.pending[this.head]?.command
    this.fail(extractionError(`debugfs stopped answering${this.suspect ? ` on "${this.suspect}"` : ''} (no output for ${Math.round(idle / 1000)} s); the disk may be corrupt or hostile`))
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
    this.failureUnheard = this.pending.length === 0
    for (const request of this.pending.splice(0)) {
      if (request.kind === 'delimited') request.reject(error)
      else request.readable.destroy(error)
    }

    this.head = 0
    this.kill()
  }

  /** Hands out, in order, the replies read so far. */
  private finishIfDone(): void {
    let done = 0
    for (; done < this.head; done++) {
      const request = this.pending[done]
      if (request.kind === 'delimited' && request.reply!.length === 0) {
        // Every command sent as a delimited request prints something when it succeeds: an empty reply is
        // a failure whose explanation is on its way to stderr. Blame this command, and fail.
        this.suspect = request.command
        if (!this.complaintScheduled) {
          this.complaintScheduled = true
          setTimeout(() => this.fail(this.complaint(debugfsComplaints(this.stderrBuf) || 'no output')), 20).unref()
        }

        break
      }

      if (request.kind === 'delimited') request.resolve(request.reply!)
      else request.readable.push(null)
    }

    this.pending.splice(0, done)
    this.head -= done
  }

  private frame(command: string): PendingBase {
    if (/[\n\r\0]/.test(command)) throw new Error(`refusing to send a debugfs command with a line break: ${JSON.stringify(command)}`)
    return {command}
  }

  /**
   * Kills the session's process. Not while bubblewrap may still be setting up its sandbox (before debugfs's
   * first output): killed then, bubblewrap can leave the sandbox's init behind, orphaned, holding our pipes,
   * and the session never closes (seen in CI, and made to happen under load by terminating sessions as they
   * start). Until then stdin is ended instead (debugfs quits when it reads that), with the kill following its
   * first output, or STARTUP_KILL_MS later at the latest.
   */
  private kill(): void {
    if (this.started) {
      this.proc.kill('SIGKILL')
      return
    }

    this.proc.stdin.end()
    const timer = setTimeout(() => this.proc.kill('SIGKILL'), STARTUP_KILL_MS)
    this.exited.then(() => clearTimeout(timer))
  }

  private onExit(result: ChildExit): void {
    if (this.pending.length === 0 && this.closed) return
    const stderr = debugfsComplaints(this.stderrBuf)
    const missing = result.code === 'ENOENT'
    const error = missing
      ? debugfsNotFound(this.binary)
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
    if (!this.started) {
      this.started = true
      if (this.failure) this.proc.kill('SIGKILL')
    }

    this.lastOutput = Date.now()
    this.out.push(chunk)
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

  /** Reads replies off the output, for requests from `head` on, as far as the output goes. */
  private pump(): void {
    if (!this.sawFirstPrompt) {
      const out = this.out.view()
      if (out.length < PROMPT.length) return
      if (out.toString('latin1', 0, PROMPT.length) !== PROMPT) this.desync('no prompt')
      this.out.consume(PROMPT.length)
      this.sawFirstPrompt = true
    }

    const {marker} = this
    for (;;) {
      const out = this.out.view()
      const request = this.pending[this.head]
      if (!request) {
        if (out.length > 0) this.desync('unexpected output')
        return
      }

      if (request.kind === 'sized') {
        if (request.remaining > 0) {
          if (out.length === 0) return
          const take = Math.min(request.remaining, out.length)
          const piece = Buffer.from(out.subarray(0, take))
          // Content can only hold the marker if debugfs stopped short and `params` followed.
          if (piece.includes(marker)) this.desync(`short output from "${request.command}"`)
          this.out.consume(take)
          request.remaining -= take
          if (!request.readable.push(piece)) this.proc.stdout.pause()
          if (request.remaining > 0) return
          continue
        }

        if (out.length < marker.length) return
        if (!out.subarray(0, marker.length).equals(marker)) this.desync(`"${request.command}" wrote more than expected`)
        this.out.consume(marker.length)
      } else {
        const at = out.indexOf(marker, Math.max(0, this.searchFrom - marker.length))
        if (at === -1) {
          this.searchFrom = out.length
          if (out.length > MAX_REPLY_BYTES) this.desync(`reply to "${request.command}" exceeds ${MAX_REPLY_BYTES} bytes`)
          return
        }

        request.reply = Buffer.from(out.subarray(0, at))
        this.out.consume(at + marker.length)
        this.searchFrom = 0
      }

      this.head++
    }
  }

  private send(request: Pending): void {
    if (this.failure) {
      this.failureUnheard = false
      if (request.kind === 'delimited') request.reject(this.failure)
      else request.readable.destroy(this.failure)
      return
    }

    if (this.closed) throw new Error('debugfs session is closed')
    this.pending.push(request)
    // Commands sent in the same tick go out in one write: a batch of stats is one syscall, not hundreds.
    this.outgoing += `${request.command}\nparams\n`
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
