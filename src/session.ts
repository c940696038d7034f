import { abortable, abortError, signalOf, throwIfAborted, type WaitOptions } from './abort'
import { call, callAsync, invalidArg, PunktfunkError } from './errors'
import {
  native,
  WAKE_EVENT,
  WAKE_READABLE,
  type NativeBufferReport,
  type NativeControlInfo,
  type NativeEvent,
  type NativeSession,
} from './native'
import { describe, isObject, type Backpressure, type Role } from './options'

/** What the sender says about a frame besides its bytes. */
export interface SubmitOptions {
  /** Keyframe flag, delivered with the frame (default false). */
  keyframe?: boolean
  /** Presentation timestamp, carried opaquely; a non-negative safe integer (default 0). */
  pts?: number
  /**
   * Abort waiting for room in the send queue (`backpressure: 'wait'`): the
   * call rejects with an `AbortError` and the frame is not sent.
   */
  signal?: AbortSignal
}

/** A frame delivered whole and byte-exact. */
export interface Frame {
  /** Discriminator in a {@link FrameEvent} stream. */
  readonly type: 'frame'
  /** Index the sender assigned, counting from 0. */
  readonly index: number
  /** Presentation timestamp from {@link SubmitOptions.pts}. */
  readonly pts: number
  /** Keyframe flag from {@link SubmitOptions.keyframe}. */
  readonly keyframe: boolean
  /** Data shards of this frame rebuilt by FEC. */
  readonly recoveredShards: number
  /**
   * The frame's bytes. Handed over from native memory without a copy; yours
   * to keep, except from a borrowing iterator ({@link EventsOptions.borrow}),
   * where they stay valid until the loop asks for the next event or ends.
   */
  readonly data: Buffer
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

/** Options of {@link Session.events} and {@link Session.frames}. */
export interface EventsOptions extends WaitOptions {
  /**
   * Borrow each frame's bytes instead of owning them: `data` stays valid
   * until the loop asks for the next event (or ends), then its memory carries
   * a later frame. Copy it (`Buffer.from(frame.data)`) to keep it longer.
   *
   * The session then copies each frame, on its receive thread, into one of a
   * few buffers it reuses, instead of handing every frame to JavaScript as a
   * new allocation for the garbage collector: at hundreds of megabytes per
   * second that saves the event loop most of its work (see the SDK rows of
   * `punktfunk bench`). The loan is four buffers of about 1.25 × the
   * largest frame seen; a frame larger than them arrives as its own buffer
   * (and the next ones are lent larger). The loan is the session's: a frame
   * taken beside the loop (`poll()`, `nextEvent()`, an iterator that does not
   * borrow) may arrive in a lent buffer, which is then the caller's to keep,
   * and the loop lends a new one in its place. Default `false`.
   */
  borrow?: boolean
}

/** Options of {@link Session.frames}. */
export interface FramesOptions extends EventsOptions {
  /** Called for every run of lost frames (they are skipped by the iterator). */
  onLost?: (lost: LostFrames) => void
}

/**
 * Every counter of a session. Counters only grow, except the four rate gauges
 * at the end, which hold a host session's latest rate-control figures;
 * `stats()` returns a fresh snapshot each time. Sent = received + dropped holds
 * per reason: each `recvDropped*` counter names one reason.
 */
export interface SessionStats {
  /** Frames handed to `submitFrame` and sent. */
  framesSubmitted: number
  /** Frames delivered whole and byte-exact. */
  framesCompleted: number
  /** Frames that will never be delivered (timed out, evicted, superseded, or never seen). */
  framesDropped: number
  /** Datagrams handed to the kernel (or the in-process link). */
  packetsSent: number
  /** Datagrams read, before any check. */
  packetsReceived: number
  /** Datagrams dropped locally on send because the socket buffer was full. */
  packetsSendDropped: number
  /** Received datagrams that failed authentication. */
  recvDroppedAuth: number
  /** Received datagrams already seen (replays, duplicates). */
  recvDroppedReplay: number
  /** Received datagrams with a bad version, length or header. */
  recvDroppedMalformed: number
  /** Authenticated datagrams claiming sizes beyond the configured bounds. */
  recvDroppedOutOfBounds: number
  /** Datagrams too old to be of use. */
  recvDroppedStale: number
  /** Authenticated shards that were not needed. */
  packetsRedundant: number
  /** Data shards rebuilt by FEC. */
  fecRecoveredShards: number
  /** Wire bytes sent (headers, tags and FEC included). */
  bytesSent: number
  /** Wire bytes received. */
  bytesReceived: number
  /** Frame bytes delivered to the application. */
  payloadBytesDelivered: number
  /** Send system calls. */
  sendSyscalls: number
  /** Receive system calls. */
  recvSyscalls: number
  /** Readiness waits (ppoll) before receiving. */
  recvWaitSyscalls: number
  /** Key epochs started on the send side. */
  keyRotations: number
  /** Speed-test probe datagrams received. */
  probePacketsReceived: number
  /** Datagrams from a source other than the peer, dropped before any other check (control-plane sessions). */
  recvDroppedForeign: number
  /** Times the host's rate controller backed off for congestion (host sessions). */
  congestionEvents: number
  /** Gauge: the rate controller's estimate of the path, kbit/s (0 without rate control). */
  estimatedKbps: number
  /** Gauge: the media bitrate the encoder should aim for, kbit/s (host sessions with rate control): the figure `HostSession.targetKbps` returns. */
  targetKbps: number
  /** Gauge: smoothed round-trip time of the control connection, µs (host sessions with rate control). */
  rttUs: number
  /** Gauge: queue delay on the path (one-way delay above its recent minimum), µs. */
  queueDelayUs: number
  /**
   * Gauge: what the host's rate controller is doing, an index into
   * {@link RATE_STATES} (`rateStateName(stats.rateState)`): 1 start-up, 2 probe,
   * 3 drain, 4 steady, 5 back-off, 6 hold (feedback silent), 7 fixed; 0 without a
   * controller of the session's own (client sessions, `adaptive: false`, browser
   * sessions).
   */
  rateState: number
  /** Gauge: the rate datagrams leave at, kbit/s (host sessions with rate control). */
  pacingKbps: number
  /** Gauge: the rate the client last measured arriving, kbit/s (0: no report yet). */
  deliveryKbps: number
  /**
   * Gauge: 1 while a loss-based flow (TCP) shares the bottleneck, else 0. The
   * controller then backs off for loss only, not for the queue that flow keeps.
   */
  competingFlow: number
  /** Client feedback reports the host's rate controller used. */
  feedbackReports: number
  /** Client feedback datagrams refused (undecodable or contradictory); each changes nothing else. */
  feedbackDropped: number
  /** Feedback reports too old to describe the path (held up, or a path that stopped delivering); each round halved the estimate. */
  staleReports: number
  /** Times the rate controller learnt its one-way-delay base again. */
  delayBaseResets: number
  /** Reports with loss judged random (flat delay, path not full): left to FEC, no back-off. */
  randomLossReports: number
}

/** Names of the rate controller's states, indexed by {@link SessionStats.rateState}. */
export const RATE_STATES = Object.freeze(['none', 'startup', 'probe', 'drain', 'steady', 'backoff', 'hold', 'fixed'] as const)

/** A rate controller state by name (see {@link SessionStats.rateState}). */
export type RateStateName = (typeof RATE_STATES)[number]

/** The name of a {@link SessionStats.rateState} code; `'none'` for 0 and codes this version does not know. */
export function rateStateName(code: number): RateStateName {
  return RATE_STATES[code] ?? 'none'
}

/** What the kernel granted for a UDP session's socket buffers. */
export interface SocketBufferReport {
  /** Bytes asked for. */
  requested: number
  /** Send buffer bytes granted. */
  sendGranted: number
  /** Receive buffer bytes granted. */
  recvGranted: number
  /** Whether the privileged `SO_*BUFFORCE` options were used (running as root). */
  forced: boolean
  /** How to raise the limits, when the buffers are smaller than asked. */
  warning?: string
}

const camel = (snake: string): string => snake.replace(/_([a-z])/g, (_, c: string) => c.toUpperCase())

let names: readonly string[] | undefined
/** The camelCase counter names, in core order (asked once from the addon). */
function statsNames(): readonly string[] {
  names ??= Object.freeze(native().statsFields().map(camel))
  return names
}

function toEvent(ev: NativeEvent): FrameEvent {
  if (ev.lost) return { type: 'lost', firstIndex: ev.index, count: ev.count }
  const data = ev.data ?? Buffer.alloc(0)
  return {
    type: 'frame',
    index: ev.index,
    pts: ev.pts,
    keyframe: ev.keyframe,
    recoveredShards: ev.recoveredShards,
    // A lent buffer is larger than the frame it carries.
    data: ev.length < data.length ? data.subarray(0, ev.length) : data,
  }
}

/** Buffers a borrowing iterator keeps on loan to its session at once. */
const LENT_BUFFERS = 4
/** Lent buffers are sized in steps of this, with room for frames a quarter larger than the largest seen. */
const LEND_STEP = 64 * 1024

/**
 * The buffers a session's borrowing iterators lend (see
 * {@link EventsOptions.borrow}), one per session. A lent buffer comes back in
 * an event with `lent: true` and is lent again only once the loop that got
 * it has moved past that event, so bytes a caller may still read are never
 * overwritten. An event that leaves any other way (`poll()`, `nextEvent()`,
 * an iterator that does not borrow) takes its buffer with it for good: the
 * buffer is the caller's and a new one is lent in its place.
 */
class Lender {
  readonly #native: NativeSession
  /** Buffers of the loan: lent, queued in events, or held by a loop. */
  #owned = 0
  /** Size of new buffers: the largest frame seen, plus a quarter, in steps. */
  #size = 0

  constructor(native: NativeSession) {
    this.#native = native
  }

  /** Notes a frame's size and tops the loan up to {@link LENT_BUFFERS}. */
  observe(ev: NativeEvent): void {
    if (ev.lost) return
    const want = Math.ceil((ev.length * 1.25) / LEND_STEP) * LEND_STEP
    if (want > this.#size) {
      this.#size = want
      // Buffers still waiting that this frame outgrew make room for larger ones.
      this.#owned -= call(() => this.#native.retireLent(want))
    }
    while (this.#owned < LENT_BUFFERS) {
      if (!call(() => this.#native.lend(Buffer.alloc(this.#size)))) break
      this.#owned++
    }
  }

  /** Lends `buf` again, or lets it go when frames have outgrown it (a larger one replaces it). */
  giveBack(buf: Buffer): void {
    if (buf.length < this.#size || !call(() => this.#native.lend(buf))) this.#owned--
  }

  /** A lent buffer left with an event that no borrowing loop holds: it is no longer ours. */
  escaped(ev: NativeEvent | null): void {
    if (ev?.lent && ev.data) this.#owned--
  }
}

function frameArgs(data: unknown, options: unknown): { pts: number; keyframe: boolean; signal?: AbortSignal } {
  if (!(data instanceof Uint8Array)) {
    throw invalidArg(`frame data must be a Buffer or Uint8Array, got ${describe(data)}`)
  }
  if (options === undefined) return { pts: 0, keyframe: false }
  if (!isObject(options)) throw invalidArg(`submit options must be an object, got ${describe(options)}`)
  const { pts = 0, keyframe = false } = options
  const signal = signalOf(options)
  if (typeof pts !== 'number' || !Number.isSafeInteger(pts) || pts < 0) {
    throw invalidArg(`pts must be a non-negative safe integer, got ${describe(pts)}`)
  }
  if (typeof keyframe !== 'boolean') throw invalidArg(`keyframe must be a boolean, got ${describe(keyframe)}`)
  return { pts, keyframe, signal }
}

/** The `borrow` option of an iterator, checked. */
function borrowOf(options: unknown): boolean {
  if (!isObject(options)) return false
  const { borrow = false } = options
  if (typeof borrow !== 'boolean') throw invalidArg(`borrow must be a boolean, got ${describe(borrow)}`)
  return borrow
}

/** @internal The options bag of a wait, with its checked signal. */
export function waitArgs(options: unknown): AbortSignal | undefined {
  if (options === undefined) return undefined
  if (!isObject(options)) throw invalidArg(`options must be an object, got ${describe(options)}`)
  return signalOf(options)
}

/**
 * @internal Promises that the addon's wake-up callback resolves. The callback
 * runs on the JS thread (queued from the native threads), so a waiter
 * registered right after a failed poll cannot miss the wake-up for it.
 */
export class Wakeups {
  #waiters: Record<'read' | 'write' | 'event', Array<() => void>> = { read: [], write: [], event: [] }

  /** The callback handed to the addon. */
  readonly onWake = (kind: number): void => {
    this.#release(kind === WAKE_READABLE ? 'read' : kind === WAKE_EVENT ? 'event' : 'write')
  }

  #release(which: 'read' | 'write' | 'event'): void {
    const list = this.#waiters[which]
    this.#waiters[which] = []
    for (const resolve of list) resolve()
  }

  /**
   * Resolves at the next wake-up of `which`; rejects with an AbortError when
   * `signal` aborts first, and then leaves the waiter list. A rejection nobody
   * awaits (the caller found its event ready) is not reported as unhandled.
   */
  #wait(which: 'read' | 'write' | 'event', signal: AbortSignal | undefined): Promise<void> {
    if (!signal) return new Promise((resolve) => this.#waiters[which].push(resolve))
    const p = new Promise<void>((resolve, reject) => {
      if (signal.aborted) return reject(abortError(signal))
      const done = (): void => {
        signal.removeEventListener('abort', onAbort)
        resolve()
      }
      const onAbort = (): void => {
        const list = this.#waiters[which]
        const i = list.indexOf(done)
        if (i >= 0) list.splice(i, 1)
        reject(abortError(signal))
      }
      signal.addEventListener('abort', onAbort, { once: true })
      this.#waiters[which].push(done)
    })
    p.catch(() => undefined)
    return p
  }

  /** Resolves at the next "events may be ready" wake-up. */
  readable(signal?: AbortSignal): Promise<void> {
    return this.#wait('read', signal)
  }

  /** Resolves at the next "send queue has room" wake-up. */
  writable(signal?: AbortSignal): Promise<void> {
    return this.#wait('write', signal)
  }

  /** Resolves at the next "control event queued" wake-up. */
  event(signal?: AbortSignal): Promise<void> {
    return this.#wait('event', signal)
  }

  /** Releases every waiter (on close). */
  releaseAll(): void {
    this.#release('read')
    this.#release('write')
    this.#release('event')
  }
}

/**
 * One end of a data-plane stream. Sending runs on a native thread behind a
 * bounded queue, receiving on another that waits in the kernel; the event loop
 * never blocks on I/O. Create sessions with {@link createUdpSession} or
 * {@link createLoopbackPair}; call {@link Session.close} when done: like an
 * open socket, an open session keeps the Node.js process running.
 */
export class Session {
  /** Which end this is. */
  readonly role: Role
  readonly #native: NativeSession
  readonly #wakeups: Wakeups
  /** The buffers borrowing iterators lend, once one has run. */
  #lender: Lender | undefined
  readonly #backpressure: Backpressure
  #closed = false
  #closing: Promise<void> | undefined
  /** Submits waiting for queue room, in call order. */
  #waiting = 0
  #tail: Promise<void> = Promise.resolve()
  /**
   * Facts as they were when the session closed; the addon forgets them (and
   * releases the socket) when it closes.
   */
  #final:
    | {
        info: NativeControlInfo | null
        reason: { code: number; reason: string } | null
        local: string | null
        peer: string | null
        buffers: NativeBufferReport | null
      }
    | undefined

  /** @internal Use {@link createUdpSession} or {@link createLoopbackPair}. */
  constructor(role: Role, nativeSession: NativeSession, wakeups: Wakeups, backpressure: Backpressure) {
    this.role = role
    this.#native = nativeSession
    this.#wakeups = wakeups
    this.#backpressure = backpressure
  }

  /** @internal The addon's session, for subclasses. */
  protected get native(): NativeSession {
    return this.#native
  }

  /** @internal Control-plane session facts (peer, fingerprint, bitrate); kept past close. */
  protected controlInfo(): NativeControlInfo | null {
    return this.#final ? this.#final.info : call(() => this.#native.controlInfo())
  }

  #orNull<T>(f: () => T | null): T | null {
    try {
      return f()
    } catch {
      return null
    }
  }

  /** @internal How a control-plane session ended; kept past close. */
  protected endReason(): { code: number; reason: string } | null {
    return this.#final ? this.#final.reason : call(() => this.#native.closeReason())
  }

  /** @internal The wake-ups, for subclasses. */
  protected get wakeups(): Wakeups {
    return this.#wakeups
  }

  /** True once {@link Session.close} was called. */
  get closed(): boolean {
    return this.#closed
  }

  #checkOpen(): void {
    if (this.#closed) throw new PunktfunkError('ERR_PF_CLOSED', 'the session is closed')
  }

  /** @internal Throws ERR_PF_CLOSED after close, for subclasses. */
  protected checkOpen(): void {
    this.#checkOpen()
  }

  /**
   * Sends a frame. The bytes are copied when the frame is queued, so `data` may
   * be reused once the promise settles. Resolves when the frame is queued (not
   * when it reaches the peer). With `backpressure: 'wait'` (the default) a full
   * queue makes the promise wait, and concurrent calls keep their order; with
   * `'reject'` it rejects with `ERR_PF_QUEUE_FULL`. Rejects with
   * `ERR_PF_INVALID_ARG` for bad arguments or a frame over `maxFrameBytes`, and
   * `ERR_PF_CLOSED` after {@link Session.close}. Aborting `signal` while the
   * call waits for room rejects it with an `AbortError`; the frame is then not
   * sent, and the frames submitted after it keep their order.
   */
  async submitFrame(data: Uint8Array, options?: SubmitOptions): Promise<void> {
    const { pts, keyframe, signal } = frameArgs(data, options)
    this.#checkOpen()
    throwIfAborted(signal)
    if (this.#waiting === 0) {
      if (call(() => this.#native.trySubmit(data, pts, keyframe))) return
      if (this.#backpressure === 'reject') {
        throw new PunktfunkError('ERR_PF_QUEUE_FULL', 'the send queue is full (backpressure: reject)')
      }
    }
    this.#waiting++
    const turn = this.#tail.then(async () => {
      for (;;) {
        this.#checkOpen()
        // Aborted while waiting for its turn: give the turn to the next frame.
        throwIfAborted(signal)
        const room = this.#wakeups.writable(signal)
        if (call(() => this.#native.trySubmit(data, pts, keyframe))) return
        await room
      }
    })
    this.#tail = turn.catch(() => undefined)
    try {
      await abortable(turn, signal)
    } finally {
      this.#waiting--
    }
  }

  /**
   * Queues a frame if there is room right now and returns true; returns false
   * (sending nothing) if the queue is full. Never waits. Throws like
   * {@link Session.submitFrame} rejects.
   */
  trySubmitFrame(data: Uint8Array, options?: SubmitOptions): boolean {
    const { pts, keyframe } = frameArgs(data, options)
    this.#checkOpen()
    if (this.#waiting > 0) return false
    return call(() => this.#native.trySubmit(data, pts, keyframe))
  }

  /** Frames waiting in the send queue. */
  get queuedFrames(): number {
    if (this.#closed) return 0
    return call(() => this.#native.sendQueued())
  }

  /**
   * The next received event if one is ready, else `null`; never waits.
   * Throws `ERR_PF_CLOSED` after close, or the error that stopped the
   * receive thread (e.g. `ERR_PF_IO`).
   */
  poll(): FrameEvent | null {
    this.#checkOpen()
    const ev = call(() => this.#native.poll())
    this.#lender?.escaped(ev)
    return ev ? toEvent(ev) : null
  }

  /**
   * Waits for the next event; `null` once the session is closed, here or by
   * the peer (a control-plane session's `closeReason` says why). Every event
   * received before the end is handed out first. Aborting `signal` rejects
   * the wait with an `AbortError`; no event is lost and the session stays
   * usable.
   */
  async nextEvent(options?: WaitOptions): Promise<FrameEvent | null> {
    const ev = await this.#nextNative(waitArgs(options))
    this.#lender?.escaped(ev)
    return ev ? toEvent(ev) : null
  }

  /** {@link Session.nextEvent} before conversion: the addon's event, lent buffer and all. */
  async #nextNative(signal: AbortSignal | undefined): Promise<NativeEvent | null> {
    // The common case, an event already waiting, costs no promise and no waiter.
    let waited = false
    for (;;) {
      if (this.#closed) return null
      throwIfAborted(signal)
      // Register for the wake-up before the poll that may find nothing, so a
      // frame arriving in between still wakes this wait.
      const ready = waited ? this.#wakeups.readable(signal) : undefined
      let ev: NativeEvent | null
      try {
        this.#checkOpen()
        ev = call(() => this.#native.poll())
      } catch (e) {
        if (e instanceof PunktfunkError && e.code === 'ERR_PF_CLOSED') return null
        throw e
      }
      if (ev) return ev
      if (ready) await ready
      waited = true
    }
  }

  /**
   * Every event (frames and losses) in index order, until the session closes
   * (either side). Aborting `signal` ends the iteration with an `AbortError`;
   * the session stays usable.
   */
  async *events(options?: EventsOptions): AsyncGenerator<FrameEvent, void, undefined> {
    const signal = waitArgs(options)
    const borrow = borrowOf(options)
    const lender = borrow ? (this.#lender ??= new Lender(this.#native)) : undefined
    // The lent buffer behind the event the loop holds: lent again when the loop moves on.
    let held: Buffer | undefined
    try {
      for (;;) {
        if (held) lender?.giveBack(held)
        held = undefined
        const ev = await this.#nextNative(signal)
        if (ev === null) return
        if (lender) {
          if (ev.lent && ev.data) held = ev.data
          lender.observe(ev)
        } else {
          this.#lender?.escaped(ev)
        }
        yield toEvent(ev)
      }
    } finally {
      if (held) lender?.giveBack(held)
    }
  }

  /**
   * Received frames in index order, until the session closes:
   * `for await (const frame of client.frames()) { … }`. Lost frames are
   * skipped; pass `onLost` to hear about them. Aborting `signal` ends the
   * iteration with an `AbortError`; the session stays usable.
   */
  async *frames(options: FramesOptions = {}): AsyncGenerator<Frame, void, undefined> {
    if (!isObject(options)) throw invalidArg('frames() options must be an object')
    const { onLost } = options
    if (onLost !== undefined && typeof onLost !== 'function') throw invalidArg('onLost must be a function')
    const signal = signalOf(options)
    const borrow = borrowOf(options)
    for await (const ev of this.events({ signal, borrow })) {
      if (ev.type === 'frame') yield ev
      else onLost?.(ev)
    }
  }

  /** Changes the FEC percentage (`0..100`) for frames submitted from now on; the peer needs no notice. */
  setFecPercent(percent: number): void {
    if (typeof percent !== 'number' || !Number.isInteger(percent) || percent < 0 || percent > 100) {
      throw invalidArg(`FEC percent must be an integer within 0..100, got ${describe(percent)}`)
    }
    this.#checkOpen()
    call(() => this.#native.setFecPercent(percent))
  }

  /** A snapshot of every counter; still available after close (the final figures). */
  stats(): SessionStats {
    const values = call(() => this.#native.stats())
    const names = statsNames()
    const out: Record<string, number> = {}
    names.forEach((name, i) => {
      out[name] = values[i] ?? 0
    })
    return out as unknown as SessionStats
  }

  /** Sets or changes the peer `IP:port` of a UDP session. */
  connect(peer: string): void {
    if (typeof peer !== 'string') throw invalidArg(`peer must be an "IP:port" string, got ${describe(peer)}`)
    this.#checkOpen()
    call(() => this.#native.connect(peer))
  }

  /** The bound local `IP:port` of a UDP session (`null` for loopback sessions); kept past close. */
  get localAddress(): string | null {
    return this.#final ? this.#final.local : call(() => this.#native.localAddress())
  }

  /** The peer `IP:port` of a UDP session, once known (`null` otherwise); kept past close. */
  get peerAddress(): string | null {
    return this.#final ? this.#final.peer : call(() => this.#native.peerAddress())
  }

  /** What the kernel granted for the socket buffers (`null` for loopback sessions); kept past close. */
  socketBuffers(): SocketBufferReport | null {
    const r = this.#final ? this.#final.buffers : call(() => this.#native.bufferReport())
    if (!r) return null
    const { requested, sendGranted, recvGranted, forced, warning } = r
    return warning ? { requested, sendGranted, recvGranted, forced, warning } : { requested, sendGranted, recvGranted, forced }
  }

  /**
   * Closes the session: frames already queued are still sent, then both
   * threads stop and the socket is released. Pending `frames()` iterators
   * end, waiting submits reject with `ERR_PF_CLOSED`, and later calls fail
   * with `ERR_PF_CLOSED` (`stats()` and the address getters keep working).
   * Resolves when the threads have stopped and the port is free; rejects
   * with the error that had stopped the session early, if any. Safe to call
   * twice.
   */
  close(): Promise<void> {
    return this.closeWith(undefined, undefined)
  }

  /** @internal Closes with a control-plane code and reason. */
  protected closeWith(code: number | undefined, reason: string | undefined): Promise<void> {
    if (!this.#closed) {
      // A reason the peer gave first stays; otherwise this close is the reason.
      const info = this.#orNull(() => this.#native.controlInfo())
      const ended = this.#orNull(() => this.#native.closeReason())
      this.#final = {
        info,
        reason: ended ?? (info ? { code: code ?? 0, reason: reason ?? 'closed' } : null),
        local: this.#orNull(() => this.#native.localAddress()),
        peer: this.#orNull(() => this.#native.peerAddress()),
        buffers: this.#orNull(() => this.#native.bufferReport()),
      }
    }
    this.#closed = true
    this.#closing ??= callAsync(() => this.#native.close(code, reason))
    this.#wakeups.releaseAll()
    return this.#closing
  }
}
