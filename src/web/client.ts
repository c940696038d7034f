/**
 * The browser client of `punktfunk-web/1` over WebTransport (docs/WEB.md).
 */
import { PunktfunkError } from '../errors.js'
import { deviceKey, rawPublicKey, signProof } from './device.js'
import { FrameOrder, type OrderEvent } from './order.js'
import {
  CLOSE,
  CONTROL_HEADER,
  decodeClose,
  decodeFrameHeader,
  decodeWelcome,
  encodeInput,
  encodeMessage,
  FRAME_HEADER,
  fromHex,
  keyframeRequestBody,
  MAX_BODY,
  MSG,
  protocolError,
  type FrameHeader,
  type HostClose,
  type InputEvent,
  type Welcome,
} from './wire.js'

/** A frame delivered whole and byte-exact, in index order. */
export interface Frame {
  /** Discriminator in a {@link FrameEvent} stream. */
  readonly type: 'frame'
  /** Index the host assigned, counting from 0. */
  readonly index: number
  /** Keyframe flag the host submitted. */
  readonly keyframe: boolean
  /**
   * The host's presentation timestamp, as a `number` (as in the Node SDK):
   * exact up to 2^53, so microseconds since the epoch fit for the next few
   * centuries.
   */
  readonly pts: number
  /** The frame's bytes; yours to keep. */
  readonly data: Uint8Array
  /** When its last byte was read, ms since the epoch (`performance.timeOrigin + performance.now()`). */
  readonly receivedAt: number
}

/** Frames `firstIndex … firstIndex + count - 1` will never be delivered; a good moment to ask for a keyframe. */
export interface LostFrames {
  /** Discriminator in a {@link FrameEvent} stream. */
  readonly type: 'lost'
  /** First lost frame index. */
  readonly firstIndex: number
  /** Number of consecutive lost frames. */
  readonly count: number
}

/** One outcome of receiving, in frame-index order. */
export type FrameEvent = Frame | LostFrames

/** How a session ended. Codes (docs/PROTOCOL.md §9.2): 0 normal, 1 protocol, 2 connection lost, 3 host shut down, 4 application, 5 unauthorized, 6 internal. */
export interface CloseInfo {
  /** Machine-readable code. */
  readonly code: number
  /** Text both sides can read. */
  readonly reason: string
}

/** Options of {@link connect}. */
export interface ConnectOptions {
  /**
   * SHA-256 of the host's web certificate, 64 hex digits (`punktfunk host
   * --web` prints it). The page pins it (`serverCertificateHashes`) and
   * signs it into its device proof, so it is required.
   */
  certificateHash: string
  /** Abort connecting: the call rejects with an `AbortError` DOMException and the transport is closed. */
  signal?: AbortSignal
  /** Give up connecting after this long, ms (default 10 000): rejects with `ERR_PF_TIMEOUT`. */
  connectTimeoutMs?: number
  /**
   * Called for every run of lost frames as soon as the loss is known,
   * before any later frame can be read. The lost frames are counted in
   * {@link WebStats.framesLost}.
   */
  onLost?: (lost: LostFrames) => void
  /** The device key to prove (default: the page's own, {@link deviceKey}). */
  deviceKey?: CryptoKeyPair
}

/** Options of the waits of a {@link WebClient}. */
export interface WaitOptions {
  /** Abort the wait: it rejects with an `AbortError` DOMException; the session stays open. */
  signal?: AbortSignal
}

/** Counters of a {@link WebClient}; a fresh snapshot each call. */
export interface WebStats {
  /** Frames delivered whole. */
  framesReceived: number
  /** Frames reported lost. */
  framesLost: number
  /** Payload bytes delivered. */
  bytes: number
  /** Streams the host reset (frames it gave up). */
  streamsReset: number
  /** The host's latest media target, kbit/s (0 until it sends one). */
  targetKbps: number
  /** Frames arriving or complete but waiting for an earlier one. */
  framesPending: number
  /** Frames read off the wire and not yet taken by the application. */
  framesQueued: number
}

function abortError(signal: AbortSignal): DOMException {
  const r: unknown = signal.reason
  return r instanceof DOMException && r.name === 'AbortError' ? r : new DOMException('the operation was aborted', 'AbortError')
}

/** Settles like `p`, or rejects with an `AbortError` as soon as `signal` aborts. */
function abortable<T>(p: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (!signal) return p
  if (signal.aborted) return Promise.reject(abortError(signal))
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => reject(abortError(signal))
    signal.addEventListener('abort', onAbort, { once: true })
    p.then(
      (v) => {
        signal.removeEventListener('abort', onAbort)
        resolve(v)
      },
      (e: unknown) => {
        signal.removeEventListener('abort', onAbort)
        reject(e)
      },
    )
  })
}

/** The error a session ending with `info` means for a call that needed it open; its `cause` is `info`. */
function closeError(info: CloseInfo, during: string): PunktfunkError {
  const text = `${during}: the host closed the session (code ${info.code}${info.reason ? `: ${info.reason}` : ''})`
  const code = info.code === CLOSE.unauthorized ? 'ERR_PF_UNAUTHORIZED' : info.code === CLOSE.protocol ? 'ERR_PF_PROTOCOL' : 'ERR_PF_CLOSED'
  return new PunktfunkError(code, text, { cause: info })
}

/** Reads exact byte counts off a stream that arrives in chunks of any size. */
class ByteReader {
  #chunk: Uint8Array = new Uint8Array(0)
  #off = 0
  constructor(readonly reader: ReadableStreamDefaultReader<Uint8Array>) {}

  /** Fills `out` completely; false if the stream ended first (having filled `filled` bytes). */
  async fill(out: Uint8Array): Promise<{ ok: boolean; filled: number }> {
    let filled = 0
    while (filled < out.length) {
      if (this.#off === this.#chunk.length) {
        const r = await this.reader.read()
        if (r.done) return { ok: false, filled }
        this.#chunk = r.value
        this.#off = 0
        continue
      }
      const n = Math.min(out.length - filled, this.#chunk.length - this.#off)
      out.set(this.#chunk.subarray(this.#off, this.#off + n), filled)
      this.#off += n
      filled += n
    }
    return { ok: true, filled }
  }

  /** True if the stream ends here (no byte beyond what was read). */
  async atEnd(): Promise<boolean> {
    if (this.#off < this.#chunk.length) return false
    for (;;) {
      const r = await this.reader.read()
      if (r.done) return true
      if (r.value.length > 0) {
        this.#chunk = r.value
        this.#off = 0
        return false
      }
    }
  }
}

/** Resolves once, with the value of the first `set`. */
class Latch<T> {
  #resolve!: (v: T) => void
  readonly promise = new Promise<T>((r) => (this.#resolve = r))
  value: T | undefined
  set(v: T): void {
    if (this.value !== undefined) return
    this.value = v
    this.#resolve(v)
  }
}

/**
 * Opens a session with a `punktfunk host --web` (or a `Host` listening with
 * `web: true`) at `url` (`https://HOST:PORT/punktfunk`): pins the host's
 * web certificate, proves the page's device key, and waits for Welcome.
 *
 * Rejects with `ERR_PF_UNAUTHORIZED` (the host's reason names the device
 * fingerprint) when the host admits only listed devices and this one is not
 * among them, `ERR_PF_PROTOCOL` when the host breaks the protocol,
 * `ERR_PF_CLOSED` when it closes for another reason (for these three the
 * error's `cause` is the host's {@link CloseInfo}), `ERR_PF_IO` when no
 * session opens (unreachable, or a certificate that does not match
 * `certificateHash`: browsers do not tell the two apart), `ERR_PF_TIMEOUT`
 * after `connectTimeoutMs`, `ERR_PF_INVALID_ARG` for bad options, and an
 * `AbortError` DOMException when `signal` aborts.
 */
export async function connect(url: string, options: ConnectOptions): Promise<WebClient> {
  if (typeof url !== 'string') throw new PunktfunkError('ERR_PF_INVALID_ARG', 'url must be a string')
  const { certificateHash, signal, onLost, connectTimeoutMs = 10_000 } = options
  const certHash = typeof certificateHash === 'string' && certificateHash.length === 64 ? fromHex(certificateHash) : undefined
  if (!certHash) throw new PunktfunkError('ERR_PF_INVALID_ARG', 'certificateHash must be 64 hex digits')
  if (!(connectTimeoutMs > 0)) throw new PunktfunkError('ERR_PF_INVALID_ARG', 'connectTimeoutMs must be a positive number')
  if (signal?.aborted) throw abortError(signal)
  if (typeof WebTransport === 'undefined') {
    throw new PunktfunkError('ERR_PF_INTERNAL', 'this browser has no WebTransport (it needs a secure context: https, or http on localhost)')
  }
  const key = options.deviceKey ?? (await abortable(deviceKey(), signal))

  let transport: WebTransport
  try {
    transport = new WebTransport(url, {
      serverCertificateHashes: [{ algorithm: 'sha-256', value: certHash }],
    })
  } catch (e) {
    throw new PunktfunkError('ERR_PF_INVALID_ARG', `cannot open ${url}: ${(e as Error).message}`, { cause: e })
  }
  const closed = closeInfoOf(transport)
  // While connecting, the host's close (an unlisted device: code 5) explains
  // the failure; a stream error that comes first does not.
  let hostClose: CloseInfo | undefined
  const closedCleanly = transport.closed.then(
    (info) => (hostClose = { code: info.closeCode ?? 0, reason: info.reason ?? '' }),
    () => undefined,
  )
  const closedEarly = closedCleanly.then((info) =>
    Promise.reject(info ? closeError(info, 'connecting') : new PunktfunkError('ERR_PF_IO', `the connection to ${url} failed`)),
  )
  closedEarly.catch(() => undefined)
  const timeout = new AbortController()
  const timer = setTimeout(() => timeout.abort(), connectTimeoutMs)
  const timedOut = new Promise<never>((_, reject) =>
    timeout.signal.addEventListener('abort', () =>
      reject(new PunktfunkError('ERR_PF_TIMEOUT', `no session with the host within ${connectTimeoutMs} ms`)),
    ),
  )
  timedOut.catch(() => undefined)
  const step = <T>(p: Promise<T>): Promise<T> => abortable(Promise.race([p, closedEarly, timedOut]), signal)

  try {
    await step(
      transport.ready.catch((e: unknown) => {
        throw new PunktfunkError('ERR_PF_IO', `no WebTransport session with ${url} (unreachable, or not the certificate ${certificateHash}): ${(e as Error)?.message ?? e}`, { cause: e })
      }),
    )
    const bidi = await step(transport.createBidirectionalStream())
    const writer = bidi.writable.getWriter()
    const control = new ControlReader(bidi.readable.getReader())
    const challenge = await step(control.next())
    if (!challenge || challenge.type !== MSG.challenge || challenge.body.length !== 32) {
      throw protocolError(`expected Challenge (type 1, 32 bytes), got ${challenge ? `type ${challenge.type}, ${challenge.body.length} bytes` : 'the end of the stream'}`)
    }
    const [publicKey, signature] = await step(Promise.all([rawPublicKey(key), signProof(key, challenge.body, certHash)]))
    const hello = new Uint8Array(publicKey.length + signature.length)
    hello.set(publicKey, 0)
    hello.set(signature, publicKey.length)
    await step(writer.write(encodeMessage(MSG.hello, hello)))
    const welcome = await step(control.next())
    if (!welcome || welcome.type !== MSG.welcome) {
      throw protocolError(`expected Welcome (type 2), got ${welcome ? `type ${welcome.type}` : 'the end of the stream'}`)
    }
    return new WebClient(transport, closed, writer, control, decodeWelcome(welcome.body), onLost)
  } catch (e) {
    let err = e
    const aborted = e instanceof DOMException && e.name === 'AbortError'
    const ownError = e instanceof PunktfunkError && (e.code === 'ERR_PF_TIMEOUT' || e.code === 'ERR_PF_IO')
    if (!aborted && !ownError) {
      // A failed read usually means the host closed the session: give its close a moment to arrive.
      await Promise.race([closedCleanly, new Promise((r) => setTimeout(r, 250))])
      if (hostClose) err = closeError(hostClose, 'connecting')
    }
    const code = aborted ? CLOSE.application : err instanceof PunktfunkError && err.code === 'ERR_PF_PROTOCOL' ? CLOSE.protocol : CLOSE.application
    try {
      transport.close({ closeCode: code, reason: aborted ? 'aborted' : err instanceof Error ? err.message.slice(0, 200) : 'connect failed' })
    } catch {
      // already closed
    }
    throw err
  } finally {
    clearTimeout(timer)
  }
}

/** The session's end as {@link CloseInfo}: the host's code and reason, or code 2 when the connection just went away. */
function closeInfoOf(t: WebTransport): Promise<CloseInfo> {
  return t.closed.then(
    (info) => ({ code: info.closeCode ?? 0, reason: info.reason ?? '' }),
    (e: unknown) => ({ code: CLOSE.idle, reason: `connection lost: ${(e as Error)?.message ?? String(e)}` }),
  )
}

/** Control messages off the control stream. */
class ControlReader {
  readonly #bytes: ByteReader
  constructor(reader: ReadableStreamDefaultReader<Uint8Array>) {
    this.#bytes = new ByteReader(reader)
  }

  /** The next message, `undefined` at the end of the stream; a protocol error for a bad one. */
  async next(): Promise<{ type: number; body: Uint8Array } | undefined> {
    const head = new Uint8Array(CONTROL_HEADER)
    const h = await this.#bytes.fill(head)
    if (!h.ok) {
      if (h.filled === 0) return undefined
      throw protocolError('control stream ended inside a message header')
    }
    const length = (head[1]! << 8) | head[2]!
    if (length > MAX_BODY) throw protocolError(`control message of ${length} bytes exceeds ${MAX_BODY}`)
    const body = new Uint8Array(length)
    if (!(await this.#bytes.fill(body)).ok) throw protocolError('control stream ended inside a message')
    return { type: head[0]!, body }
  }

  cancel(): void {
    this.#bytes.reader.cancel().catch(() => undefined)
  }
}

type Queued = Frame | LostFrames

/**
 * A session with a host: frames in index order (`for await (const frame of
 * client.frames())`), input and keyframe requests back, counters, close.
 * Made by {@link connect}.
 *
 * Memory is bounded: at most `window` frames are read at once, at most
 * `window` delivered frames wait for the application, plus the complete
 * frames held for an earlier one the host has not finished or given up
 * (its max frame age bounds those). A tab that does not take its frames
 * holds back the host, as a slow path does.
 */
export class WebClient {
  /** The session id the host assigned, 32 hex digits. */
  readonly sessionId: string
  /** Largest frame the host sends, bytes; a larger header is a protocol error. */
  readonly maxFrameBytes: number
  /** Frames the host has in flight at most. */
  readonly window: number
  /** Bitrate the host granted, kbit/s. */
  readonly grantedKbps: number
  /** Resolves once the session ended, with the close code and reason (the host's, or the ones given to {@link close}). */
  readonly closed: Promise<CloseInfo>

  readonly #transport: WebTransport
  readonly #writer: WritableStreamDefaultWriter<Uint8Array>
  readonly #control: ControlReader
  readonly #order: FrameOrder<Frame>
  readonly #onLost: ((lost: LostFrames) => void) | undefined
  readonly #end = new Latch<CloseInfo>()
  readonly #queue: Queued[] = []
  #queuedFrames = 0
  /** Wakes whoever waits in {@link nextEvent}. */
  #wakers: Array<() => void> = []
  /** The frame readers running. */
  readonly #reading = new Set<Promise<void>>()
  /** Wakes the stream reader when the queue or the readers make room. */
  #room: (() => void) | undefined
  #target = 0
  #framesReceived = 0
  #framesLost = 0
  #bytes = 0
  #resets = 0
  #finished = false
  /** The host's Close, until every frame before its index is settled. */
  #closing: HostClose | undefined

  /** @internal Made by {@link connect}. */
  constructor(
    transport: WebTransport,
    closed: Promise<CloseInfo>,
    writer: WritableStreamDefaultWriter<Uint8Array>,
    control: ControlReader,
    welcome: Welcome,
    onLost: ((lost: LostFrames) => void) | undefined,
  ) {
    this.#transport = transport
    this.#writer = writer
    this.#control = control
    this.#onLost = onLost
    this.sessionId = welcome.sessionId
    this.maxFrameBytes = welcome.maxFrameBytes
    this.window = welcome.window
    this.grantedKbps = welcome.grantedKbps
    this.#order = new FrameOrder<Frame>(welcome.window)
    this.closed = this.#end.promise
    void closed.then((info) => this.#ended(info))
    void this.#readControl()
    void this.#readStreams()
  }

  /** The host's latest media target, kbit/s (0 until the first Target message). */
  get targetKbps(): number {
    return this.#target
  }

  /** A snapshot of the counters. */
  stats(): WebStats {
    return {
      framesReceived: this.#framesReceived,
      framesLost: this.#framesLost,
      bytes: this.#bytes,
      streamsReset: this.#resets,
      targetKbps: this.#target,
      framesPending: this.#order.receiving + this.#order.held,
      framesQueued: this.#queuedFrames,
    }
  }

  /**
   * The next frame or lost run, in index order; `null` once the session
   * ended and everything that arrived was handed out.
   */
  async nextEvent(options: WaitOptions = {}): Promise<FrameEvent | null> {
    const { signal } = options
    for (;;) {
      if (signal?.aborted) throw abortError(signal)
      const item = this.#queue.shift()
      if (item) {
        if (item.type === 'frame') {
          this.#queuedFrames--
          this.#room?.()
        }
        return item
      }
      if (this.#finished) return null
      await abortable(new Promise<void>((r) => this.#wakers.push(r)), signal)
    }
  }

  /** Frames in index order until the session ends (lost ones skipped, see {@link ConnectOptions.onLost}). */
  async *frames(options: WaitOptions = {}): AsyncGenerator<Frame, void, undefined> {
    for (;;) {
      const ev = await this.nextEvent(options)
      if (ev === null) return
      if (ev.type === 'frame') yield ev
    }
  }

  /** Sends an input event to the host, reliably and in order. `ERR_PF_INVALID_ARG` for a bad event, `ERR_PF_CLOSED` once closed. */
  sendInput(event: InputEvent): void {
    this.#send(MSG.input, encodeInput(event))
  }

  /** Asks the host for a keyframe: frames from `firstLost` on were lost. */
  requestKeyframe(firstLost: number): void {
    if (!Number.isSafeInteger(firstLost) || firstLost < 0) {
      throw new PunktfunkError('ERR_PF_INVALID_ARG', `firstLost must be a non-negative integer, got ${String(firstLost)}`)
    }
    this.#send(MSG.keyframeRequest, keyframeRequestBody(firstLost))
  }

  /**
   * Closes the session with a code (default 0, normal) and a reason the host
   * reads; {@link closed} then resolves with them. Closing twice is a no-op.
   */
  close(code = 0, reason = ''): void {
    if (!Number.isInteger(code) || code < 0 || code > 0xffff_ffff) {
      throw new PunktfunkError('ERR_PF_INVALID_ARG', `close code must be a u32, got ${String(code)}`)
    }
    if (this.#end.value !== undefined) return
    this.#ended({ code, reason })
    try {
      this.#transport.close({ closeCode: code, reason })
    } catch {
      // already closed
    }
  }

  #send(type: number, body: Uint8Array): void {
    if (this.#end.value !== undefined) throw new PunktfunkError('ERR_PF_CLOSED', 'the session is closed')
    // Writes queue in order; a failed one means the session is going away, which `closed` reports.
    this.#writer.write(encodeMessage(type, body)).catch(() => undefined)
  }

  /** The host broke the protocol: close with code 1. */
  #protocol(message: string): void {
    this.close(CLOSE.protocol, message.slice(0, 200))
  }

  #ended(info: CloseInfo): void {
    if (this.#end.value !== undefined) return
    this.#end.set(info)
    this.#control.cancel()
    this.#room?.()
    // Frames still being read may yet complete from what the browser holds;
    // then what is left is handed out, gaps reported lost.
    const settle = Promise.allSettled([...this.#reading])
    void Promise.race([settle, new Promise((r) => setTimeout(r, 1_000))]).then(() => {
      this.#emit(this.#order.finish())
      this.#finished = true
      this.#wakeAll()
    })
  }

  #wakeAll(): void {
    for (const w of this.#wakers.splice(0)) w()
  }

  async #readControl(): Promise<void> {
    try {
      for (;;) {
        const m = await this.#control.next()
        if (!m) return
        if (m.type === MSG.target && m.body.length === 4) {
          this.#target = new DataView(m.body.buffer).getUint32(0)
        } else if (m.type === MSG.close) {
          this.#closing = decodeClose(m.body)
          this.#settleClose()
        } else {
          throw protocolError(`unexpected control message type ${m.type} of ${m.body.length} bytes`)
        }
      }
    } catch (e) {
      if (this.#end.value === undefined && e instanceof PunktfunkError) this.#protocol(e.message)
    }
  }

  /** Accepts the host's frame streams, at most `window` read at once and `window` frames queued. */
  async #readStreams(): Promise<void> {
    const incoming = this.#transport.incomingUnidirectionalStreams.getReader()
    try {
      for (;;) {
        while (this.#reading.size >= this.window || this.#queuedFrames >= this.window) {
          if (this.#end.value !== undefined) return
          await new Promise<void>((r) => (this.#room = r))
        }
        const r = await incoming.read()
        if (r.done || this.#end.value !== undefined) return
        this.#order.opened()
        const reading: Promise<void> = this.#readFrame(r.value as ReadableStream<Uint8Array>).finally(() => {
          this.#reading.delete(reading)
          this.#room?.()
        })
        this.#reading.add(reading)
      }
    } catch {
      // The session ended; `closed` says how.
    } finally {
      incoming.releaseLock()
    }
  }

  async #readFrame(stream: ReadableStream<Uint8Array>): Promise<void> {
    const bytes = new ByteReader(stream.getReader())
    let header: FrameHeader | undefined
    try {
      const head = new Uint8Array(FRAME_HEADER)
      if (!(await bytes.fill(head)).ok) throw protocolError('a frame stream ended inside its header')
      header = decodeFrameHeader(head, this.maxFrameBytes)
      const { verdict, events } = this.#order.header(header.index)
      this.#emit(events)
      if (verdict === 'duplicate') throw protocolError(`two streams carry frame ${header.index}`)
      if (verdict === 'stale') {
        bytes.reader.cancel().catch(() => undefined)
        header = undefined
        return
      }
      const data = new Uint8Array(header.length)
      if (!(await bytes.fill(data)).ok) throw protocolError(`frame ${header.index} ended before its ${header.length} bytes`)
      if (!(await bytes.atEnd())) throw protocolError(`frame ${header.index} carries more than its ${header.length} bytes`)
      const frame: Frame = {
        type: 'frame',
        index: header.index,
        keyframe: header.keyframe,
        pts: header.pts,
        data,
        receivedAt: performance.timeOrigin + performance.now(),
      }
      this.#emit(this.#order.complete(header.index, frame))
    } catch (e) {
      if (this.#end.value !== undefined) return
      if (e instanceof PunktfunkError) {
        this.#protocol(e.message)
        return
      }
      // The session is ending: `closed` reports it, and the frame counts as lost only when it is over.
      if (typeof WebTransportError !== 'undefined' && e instanceof WebTransportError && e.source === 'session') return
      // The host reset the stream: it gave up this frame.
      this.#resets++
      this.#emit(this.#order.reset(header?.index))
    }
  }

  /**
   * Once the host said it is done (Close) and every frame before its last
   * index is delivered or reported lost, ends the session with the host's
   * code and reason: closing earlier would discard frames the browser holds
   * but the page has not read.
   */
  #settleClose(): void {
    const c = this.#closing
    if (!c || this.#end.value !== undefined || this.#order.next < c.nextIndex) return
    this.#ended({ code: c.code, reason: c.reason })
    try {
      this.#transport.close({ closeCode: c.code, reason: c.reason })
    } catch {
      // already closed
    }
  }

  #emit(events: OrderEvent<Frame>[]): void {
    if (events.length === 0) return
    for (const ev of events) {
      if (ev.type === 'frame') {
        this.#framesReceived++
        this.#bytes += ev.frame.data.length
        this.#queue.push(ev.frame)
        this.#queuedFrames++
      } else {
        const lost: LostFrames = { type: 'lost', firstIndex: ev.firstIndex, count: ev.count }
        this.#framesLost += ev.count
        this.#queue.push(lost)
        try {
          this.#onLost?.(lost)
        } catch (e) {
          // A throwing callback must not stop delivery; surface it asynchronously.
          setTimeout(() => {
            throw e
          })
        }
      }
    }
    this.#wakeAll()
    this.#settleClose()
  }
}
