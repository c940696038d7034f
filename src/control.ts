import { abortable, signalOf, throwIfAborted, type WaitOptions } from './abort'
import { call, callAsync, invalidArg, PunktfunkError } from './errors'
import { native, type NativeHost, type NativeInput, type NativeSession } from './native'
import {
  describe,
  int,
  isObject,
  normaliseImpairment,
  num,
  optionsBag,
  paramsFrom,
  u32,
  type ImpairmentOptions,
  type SessionOptions,
} from './options'
import { Session, waitArgs, Wakeups } from './session'

import type { InputEvent } from './input'
export type { InputEvent }

function constants(kind: 'buttons' | 'axes'): Readonly<Record<string, number>> {
  return Object.freeze(Object.fromEntries(native().inputConstants()[kind]))
}

/** Gamepad button bits for `gamepadButtons` events (`PUNKTFUNK_BTN_*` in C). */
export const BUTTON: Readonly<Record<string, number>> = lazyConstants('buttons')
/** Gamepad axis numbers for `gamepadAxis` events (`PUNKTFUNK_AXIS_*` in C). */
export const AXIS: Readonly<Record<string, number>> = lazyConstants('axes')

function lazyConstants(kind: 'buttons' | 'axes'): Readonly<Record<string, number>> {
  let table: Readonly<Record<string, number>> | undefined
  const get = (): Readonly<Record<string, number>> => (table ??= constants(kind))
  return new Proxy({} as Record<string, number>, {
    get: (_t, p) => (typeof p === 'string' ? get()[p] : undefined),
    ownKeys: () => Reflect.ownKeys(get()),
    getOwnPropertyDescriptor: (_t, p) => Reflect.getOwnPropertyDescriptor(get(), p),
    has: (_t, p) => p in get(),
  })
}

/** How a control-plane session ended. Codes: 0 normal, 1 protocol error, 2 idle timeout, 3 host shut down, 4 application. */
export interface CloseReason {
  /** Machine-readable code. */
  code: number
  /** Text both sides can read. */
  reason: string
}

/** Something a client told its host. */
export type ClientMessage =
  | {
      /** The client sent an input event. */
      type: 'input'
      /** The event. */
      event: InputEvent
    }
  | {
      /** The client lost frames and asks for a keyframe. */
      type: 'keyframeRequest'
      /** The first frame index it lost. */
      firstLost: number
    }
  | {
      /** Adaptive FEC moved the FEC percentage. */
      type: 'fecChanged'
      /** The new percentage. */
      percent: number
    }
  | {
      /** The host's rate controller moved this session's media target: encode at about `kbps`. */
      type: 'targetBitrate'
      /** The new target, kbit/s. */
      kbps: number
    }
  | {
      /** The client left; nothing follows this message. */
      type: 'closed'
      /** Close code (see {@link CloseReason}). */
      code: number
      /** Close reason text. */
      reason: string
    }

/** Options of {@link Host.listen}. */
export interface HostOptions extends Omit<SessionOptions, 'recvQueue'> {
  /** QUIC listen address (default `0.0.0.0:0`: all interfaces, a free port). */
  bind?: string
  /** Listen port on all interfaces (shorthand for `bind: '0.0.0.0:PORT'`; 0 picks a free one). */
  port?: number
  /** Where the host certificate lives (default `$PUNKTFUNK_CONFIG_DIR`, else `~/.config/punktfunk`). */
  identityDir?: string
  /** Highest bitrate granted to a client, kbit/s (default and cap 2 000 000). */
  maxBitrateKbps?: number
  /** Adaptive FEC band (default `{ min: 3, max: 50 }`, the core's), or `false` for a fixed percentage. */
  adaptiveFec?:
    | {
        /** Lowest FEC percentage. */
        min: number
        /** Highest FEC percentage. */
        max: number
      }
    | false
  /** A silent client is dropped after this long, ms (default 10 000). */
  idleTimeoutMs?: number
  /** Keep-alive interval, ms (default 2 000). */
  keepaliveMs?: number
  /** Data socket buffer size, bytes (default 32 MiB). */
  socketBufferBytes?: number
  /**
   * Simulated network impairment on every client's data path as it leaves
   * the host (loss, bursts, reordering...), for demos and FEC tests over a
   * real socket. Default: none.
   */
  impairment?: ImpairmentOptions
  /**
   * Admit only clients presenting one of these certificate fingerprints (64
   * hex digits each; a client's is what `loadIdentity` or `punktfunk
   * identity` prints for its `identityDir`). Others, and clients presenting
   * none, are refused before a data path opens: their connect rejects with
   * `ERR_PF_UNAUTHORIZED`, and {@link Host.sessions} reports each refusal to
   * `onError`. Default: any client that completes the handshake.
   */
  authorizedClients?: readonly string[]
  /**
   * How each session's bitrate follows its path. By default a session starts
   * at `initialKbps` (10 000), ramps up while the path keeps up, paces every
   * frame at the estimated path rate, and backs off when the queue grows;
   * {@link HostSession.targetKbps} and {@link HostSession.targetChanges} give
   * the media bitrate the encoder should produce (never above
   * `maxBitrateKbps`, never below `minKbps`). `{ adaptive: false }` keeps the
   * application's own rate and paces at a multiple of the stream rate.
   */
  rate?: RateOptions
  /**
   * Ceiling on the wire rate of all sessions together, kbit/s (default: none):
   * shared between the sessions so that none starves.
   */
  maxTotalKbps?: number
  /**
   * Speed-test probes (`Client.speedTest`): `false` refuses them all;
   * `{ ceilingKbps }` caps their rate (default: the session's granted
   * bitrate). Default `true`: one probe at a time per host, 10 s of probe time
   * per client per minute.
   */
  probes?: boolean | ProbeOptions
  /**
   * Serve browsers too (default `false`): WebTransport on the same UDP port,
   * told apart from native clients by ALPN (docs/WEB.md). A browser's
   * session is a {@link HostSession} like any other (its `carrier` is
   * `'web'`); pages connect with `@punktfunk/core/web`, pinning
   * {@link Host.webCertificateHash}. `authorizedClients` then lists browser
   * devices too, by the fingerprint of their key.
   */
  web?: boolean | WebOptions
  /** Abort listening before it starts: the call rejects with an `AbortError` and no port is taken. */
  signal?: AbortSignal
}

/** How browser sessions are served ({@link HostOptions.web}). */
export interface WebOptions {
  /** Frames in flight to one browser at most (sent, not yet acknowledged): 1–256, default 16. */
  window?: number
  /** A frame still in flight this long is given up and reported lost in the page, ms (10–60 000, default 1 000). */
  maxFrameAgeMs?: number
}

/** Limits on speed-test probes ({@link HostOptions.probes}). */
export interface ProbeOptions {
  /** Highest probe rate, kbit/s (default: the session's granted bitrate). */
  ceilingKbps?: number
}

/** Rate adaptation of a host's sessions ({@link HostOptions.rate}). */
export interface RateOptions {
  /** Follow the path (default `true`). */
  adaptive?: boolean
  /** Media bitrate a session starts at, kbit/s (default 10 000). */
  initialKbps?: number
  /** Lowest media bitrate asked of the encoder, kbit/s (default 1 000). */
  minKbps?: number
}

/** A host identity on disk (see {@link loadIdentity}). */
export interface HostIdentity {
  /** The directory holding the certificate and key. */
  dir: string
  /** The certificate fingerprint clients pin (64 hex digits). */
  fingerprint: string
  /** Whether this call created it. */
  created: boolean
}

/**
 * Loads the host identity from `identityDir` (default `$PUNKTFUNK_CONFIG_DIR`,
 * else `~/.config/punktfunk`), creating it if there is none: the same one
 * {@link Host.listen} uses. Throws `ERR_PF_IO` if the directory is unusable.
 */
export function loadIdentity(options: { identityDir?: string } = {}): HostIdentity {
  const { identityDir } = optionsBag(options, 'options')
  if (identityDir !== undefined && typeof identityDir !== 'string') throw invalidArg('identityDir must be a string')
  return call(() => native().loadIdentity(identityDir))
}

/** Options of {@link Client.connect}. */
export interface ClientOptions extends Omit<SessionOptions, 'fec' | 'sendQueue' | 'backpressure' | 'pacing'> {
  /** The host's fingerprint (64 hex digits) to accept, and no other. */
  pin?: string
  /**
   * Trust on first use (instead of `pin`): accept a host seen for the first
   * time and remember its fingerprint in `knownHosts`; later connects to the
   * same address must present the same one.
   */
  trustOnFirstUse?: boolean
  /** The known-hosts file for `trustOnFirstUse` (default `~/.config/punktfunk/known_hosts`). */
  knownHosts?: string
  /** Bitrate to ask for, kbit/s (default: as much as the host grants). */
  requestedBitrateKbps?: number
  /** Give up connecting after this long, ms (default 5 000). */
  connectTimeoutMs?: number
  /**
   * Present the identity in this directory (created on first use, as a host's
   * is) to the host, for hosts that admit only listed clients
   * (`authorizedClients`). Default: present none.
   */
  identityDir?: string
  /** A silent host is dropped after this long, ms (default 10 000). */
  idleTimeoutMs?: number
  /** Keep-alive interval, ms (default 2 000). */
  keepaliveMs?: number
  /** Data socket buffer size, bytes (default 32 MiB). */
  socketBufferBytes?: number
  /**
   * Abort connecting: the call rejects with an `AbortError` at once, and a
   * connection the handshake still completes is closed right away.
   */
  signal?: AbortSignal
}

/** Options of {@link Host.accept}. */
export interface AcceptOptions extends WaitOptions {
  /** How long to wait for a client, ms (default 1 000). */
  timeoutMs?: number
}

/** Options of {@link Client.speedTest}. */
export interface SpeedTestOptions extends WaitOptions {
  /** Rate to send probes at, kbit/s (at most 3 000 000). */
  targetKbps: number
  /** How long the host sends, ms (default 2 000, at most 5 000). */
  durationMs?: number
}

/** Result of {@link Client.speedTest}. */
export interface SpeedTestResult {
  /** Rate asked for, kbit/s. */
  targetKbps: number
  /** Rate that arrived, kbit/s. */
  deliveredKbps: number
  /** Probe datagrams that did not arrive, percent. */
  lossPercent: number
  /** Probe datagrams the host dropped locally (its socket buffer was full). */
  sendDrops: number
  /** Probe datagrams sent. */
  packetsSent: number
  /** Probe datagrams received. */
  packetsReceived: number
  /** How long the host sent, ms. */
  durationMs: number
  /**
   * The rate the host sent at, kbit/s: below `targetKbps` when the host
   * clamped the test to its probe ceiling (by default the bitrate it granted
   * this session), 0 when it refused the test (probes switched off, the
   * client's probe budget spent, another probe running on the host).
   */
  rateKbps: number
}

/**
 * Input fields and the integer type the addon takes them as (`i32` or `u32`).
 * A value outside it must be refused here: the conversion would keep only the
 * low 32 bits (a key code of -1 would arrive as 4294967295). The core checks
 * the narrower ranges (axis numbers, 16-bit coordinates) itself.
 */
const INPUT_FIELDS = {
  code: 'u32',
  dx: 'i32',
  dy: 'i32',
  x: 'u32',
  y: 'u32',
  button: 'u32',
  pad: 'u32',
  buttons: 'u32',
  axis: 'u32',
  value: 'i32',
} as const

function toInput(e: unknown): NativeInput {
  if (!isObject(e) || typeof e.type !== 'string') throw invalidArg(`input must be an object with a type, got ${describe(e)}`)
  const out: NativeInput = { type: e.type }
  for (const [k, ty] of Object.entries(INPUT_FIELDS) as Array<[keyof typeof INPUT_FIELDS, 'i32' | 'u32']>) {
    const v = e[k]
    if (v === undefined) continue
    if (typeof v !== 'number' || !Number.isInteger(v)) throw invalidArg(`input ${e.type}: ${k} must be an integer, got ${describe(v)}`)
    const [min, max] = ty === 'i32' ? [-0x8000_0000, 0x7fff_ffff] : [0, 0xffff_ffff]
    if (v < min || v > max) throw invalidArg(`input ${e.type}: ${k} ${v} is out of range`)
    out[k] = v
  }
  if (e.down !== undefined) {
    if (typeof e.down !== 'boolean') throw invalidArg(`input ${e.type}: down must be a boolean`)
    out.down = e.down
  }
  return out
}

function fromInput(n: NativeInput): InputEvent {
  switch (n.type) {
    case 'keyDown':
    case 'keyUp':
      return { type: n.type, code: n.code ?? 0 }
    case 'mouseMove':
    case 'scroll':
      return { type: n.type, dx: n.dx ?? 0, dy: n.dy ?? 0 }
    case 'mouseMoveAbsolute':
      return { type: n.type, x: n.x ?? 0, y: n.y ?? 0 }
    case 'mouseButton':
      return { type: n.type, button: n.button ?? 0, down: n.down ?? false }
    case 'gamepadButtons':
      return { type: n.type, pad: n.pad ?? 0, buttons: n.buttons ?? 0 }
    default:
      return { type: 'gamepadAxis', pad: n.pad ?? 0, axis: n.axis ?? 0, value: n.value ?? 0 }
  }
}

/**
 * A close reason and code as the peer will read them, or the error for bad
 * ones. Checked before anything is closed: a code of -1 or 2 ** 32 + 4 would
 * otherwise wrap into some other `u32`, and a call the addon refuses would
 * leave the session marked closed while its threads and socket run on.
 */
function closeArgs(reason: unknown, code: unknown): PunktfunkError | undefined {
  if (typeof reason !== 'string') return invalidArg(`close reason must be a string, got ${describe(reason)}`)
  if (typeof code !== 'number' || !Number.isInteger(code) || code < 0 || code > 0xffff_ffff) {
    return invalidArg(`close code must be an integer within 0..4294967295, got ${describe(code)}`)
  }
  return undefined
}

/**
 * One client's session on a host: send frames with `submitFrame` (the
 * {@link Session} API), read what the client sends with `messages()`.
 */
export class HostSession extends Session {
  /** The client's `closed` message was handed out: nothing follows it. */
  #ended = false
  /** The target bitrate last read, kbit/s (kept after close). */
  #target = 0

  /** @internal */
  constructor(s: NativeSession, w: Wakeups, backpressure: 'wait' | 'reject') {
    super('host', s, w, backpressure)
    this.carrier = call(() => s.carrier()) === 'web' ? 'web' : 'native'
  }

  /**
   * How this session's frames travel: `'native'` (a native client: FEC and
   * AES-GCM datagrams) or `'web'` (a browser: one WebTransport stream per
   * frame; `setFecPercent` does not apply).
   */
  readonly carrier: 'native' | 'web'

  /** The next message from the client if one is waiting, else `null`. */
  pollMessage(): ClientMessage | null {
    if (this.closed || this.#ended) return null
    const e = call(() => this.native.pollHostEvent())
    if (!e) return null
    if (e.kind === 'closed') this.#ended = true
    switch (e.kind) {
      case 'input':
        return { type: 'input', event: fromInput(e.input ?? { type: 'keyDown' }) }
      case 'keyframeRequest':
        return { type: 'keyframeRequest', firstLost: e.firstLost ?? 0 }
      case 'fecChanged':
        return { type: 'fecChanged', percent: e.percent ?? 0 }
      case 'targetBitrate':
        return { type: 'targetBitrate', kbps: e.kbps ?? 0 }
      default:
        return { type: 'closed', code: e.code ?? 0, reason: e.reason ?? '' }
    }
  }

  /**
   * Waits for the next message; `null` after the session closed or after the
   * client's `closed` message. Aborting `signal` rejects the wait with an
   * `AbortError`; no message is lost and the session stays usable.
   */
  async nextMessage(options?: WaitOptions): Promise<ClientMessage | null> {
    const signal = waitArgs(options)
    for (;;) {
      if (this.closed || this.#ended) return null
      throwIfAborted(signal)
      // A message already queued is taken without registering a waiter (a
      // burst read in a loop would otherwise leave one abort listener per call).
      const queued = this.pollMessage()
      if (queued) return queued
      const ready = this.wakeups.event(signal)
      const m = this.pollMessage()
      if (m) return m
      await ready
    }
  }

  /**
   * Messages from the client (input, keyframe requests, FEC changes), ending
   * after `closed`. Aborting `signal` ends the iteration with an
   * `AbortError`; the session stays usable.
   */
  async *messages(options?: WaitOptions): AsyncGenerator<ClientMessage, void, undefined> {
    const signal = waitArgs(options)
    for (;;) {
      const m = await this.nextMessage({ signal })
      if (m === null) return
      yield m
      if (m.type === 'closed') return
    }
  }

  /** Just the input events from the client, in arrival order, until it leaves (or `signal` aborts, as for {@link HostSession.messages}). */
  async *inputs(options?: WaitOptions): AsyncGenerator<InputEvent, void, undefined> {
    for await (const m of this.messages(options)) if (m.type === 'input') yield m.event
  }

  /**
   * The media bitrate the encoder should produce now, kbit/s: the path
   * estimate less FEC and header overhead, within the granted bitrate (see
   * {@link HostOptions.rate}). Without rate adaptation, the granted bitrate.
   */
  get targetKbps(): number {
    if (this.closed) return this.#target
    try {
      this.#target = call(() => this.native.targetKbps())
    } catch (e) {
      // Closed underneath (the client left): the last value, as stats() keeps its final figures.
      if (!(e instanceof PunktfunkError && e.code === 'ERR_PF_CLOSED')) throw e
    }
    return this.#target
  }

  /**
   * The target bitrate, kbit/s: first its current value, then each change,
   * until the session closes (either side). Aborting `signal` ends the
   * iteration with an `AbortError`, as for {@link HostSession.messages}.
   * Reading it does not consume {@link HostSession.messages}: both see every
   * change.
   */
  async *targetChanges(options?: WaitOptions): AsyncGenerator<number, void, undefined> {
    const signal = waitArgs(options)
    let last = -1
    for (;;) {
      if (this.closed || this.closeReason) return
      throwIfAborted(signal)
      const woken = this.wakeups.event(signal)
      const now = this.targetKbps
      if (now !== last) {
        last = now
        yield now
        continue
      }
      await woken
    }
  }

  /** The FEC percentage in use (moves with adaptive FEC). */
  get fecPercent(): number {
    return call(() => this.native.fecPercent())
  }

  /** The client's QUIC address. */
  get peer(): string {
    return this.controlInfo()?.peer ?? ''
  }

  /**
   * The fingerprint of the certificate the client presented (see
   * `ClientOptions.identityDir`), or `null` if it presented none.
   */
  get clientFingerprint(): string | null {
    return this.controlInfo()?.fingerprint ?? null
  }

  /** The bitrate granted to this client, kbit/s. */
  get grantedBitrateKbps(): number {
    return this.controlInfo()?.grantedBitrateKbps ?? 0
  }

  /** How the session ended, once it did. */
  get closeReason(): CloseReason | null {
    return this.endReason()
  }

  /**
   * Sends what is queued, then closes with a reason the client reads (default:
   * normal, `"closed"`). Rejects with `ERR_PF_INVALID_ARG`, closing nothing,
   * for a reason that is not a string or a code that is not a `u32`.
   */
  override close(reason = 'closed', code = 0): Promise<void> {
    const bad = closeArgs(reason, code)
    return bad ? Promise.reject(bad) : this.closeWith(code, reason)
  }
}

/** How long one native accept waits when the caller may abort, ms. */
const ACCEPT_SLICE_MS = 100

/** A host: listens for clients over QUIC and gives each its own {@link HostSession}. */
export class Host {
  readonly #native: NativeHost
  readonly #backpressure: 'wait' | 'reject'
  #closed = false
  /** Clients accepted after the `accept` that waited for them was aborted, for the next one. */
  readonly #ready: HostSession[] = []
  /** The address clients connect to (`IP:port`). */
  readonly address: string
  /** The certificate fingerprint clients pin (64 hex digits). */
  readonly fingerprint: string

  /**
   * SHA-256 of the certificate browsers pin now (64 hex digits; a page passes
   * it to `connect` as `certificateHash`), or `undefined` when the host does
   * not serve browsers ({@link HostOptions.web}). The host renews the
   * certificate before it expires (it is valid 13 days), so read this when
   * handing it out rather than once.
   */
  get webCertificateHash(): string | undefined {
    if (this.#closed) return undefined
    return call(() => this.#native.webCertificateHash()) ?? undefined
  }

  private constructor(h: NativeHost, backpressure: 'wait' | 'reject') {
    this.#native = h
    this.#backpressure = backpressure
    this.address = call(() => h.address())
    this.fingerprint = call(() => h.fingerprint())
  }

  /** Loads (or creates) the host identity and starts listening. */
  static async listen(options: HostOptions = {}): Promise<Host> {
    const o = optionsBag(options, 'options')
    throwIfAborted(signalOf(o))
    const { identityDir, adaptiveFec } = o
    if (o.port !== undefined && o.bind !== undefined) throw invalidArg('pass either bind or port, not both')
    const bind = o.port !== undefined ? `0.0.0.0:${int(o, 'port', 0)}` : (o.bind ?? '0.0.0.0:0')
    if (typeof bind !== 'string') throw invalidArg('bind must be an "IP:port" string')
    if (identityDir !== undefined && typeof identityDir !== 'string') throw invalidArg('identityDir must be a string')
    const { authorizedClients } = o
    if (
      authorizedClients !== undefined &&
      (!Array.isArray(authorizedClients) || !authorizedClients.every((f): f is string => typeof f === 'string'))
    ) {
      throw invalidArg('authorizedClients must be an array of fingerprint strings')
    }
    const d = native().defaults()
    let adaptiveMin: number | undefined
    let adaptiveMax: number | undefined
    if (adaptiveFec === undefined) [adaptiveMin, adaptiveMax] = [d.adaptiveFecMin, d.adaptiveFecMax]
    else if (adaptiveFec !== false) {
      const band = optionsBag(adaptiveFec, 'adaptiveFec')
      if (band.min === undefined || band.max === undefined) throw invalidArg('adaptiveFec needs min and max')
      adaptiveMin = u32(band, 'min', 0, 'adaptiveFec.')
      adaptiveMax = u32(band, 'max', 0, 'adaptiveFec.')
    }
    const rate = o.rate === undefined ? {} : optionsBag(o.rate, 'rate')
    if (rate.adaptive !== undefined && typeof rate.adaptive !== 'boolean') throw invalidArg('rate.adaptive must be a boolean')
    const probes = o.probes === undefined || typeof o.probes === 'boolean' ? { enabled: o.probes ?? true } : { enabled: true, ...optionsBag(o.probes, 'probes') }
    const optU32 = (bag: Record<string, unknown>, key: string, prefix: string): number | undefined =>
      bag[key] === undefined ? undefined : u32(bag, key, 0, prefix)
    if (o.web !== undefined && typeof o.web !== 'boolean' && !isObject(o.web)) throw invalidArg('web must be a boolean or { window, maxFrameAgeMs }')
    const web: Record<string, unknown> & { enabled: boolean } =
      o.web === undefined || typeof o.web === 'boolean' ? { enabled: o.web ?? false } : { ...optionsBag(o.web, 'web'), enabled: true }
    const { params, sendQueue, backpressure } = paramsFrom(o, d, true)
    const h = call(() =>
      native().hostListen({
        identityDir,
        bind,
        params,
        maxBitrateKbps: int(o, 'maxBitrateKbps', 2_000_000),
        idleTimeoutMs: num(o, 'idleTimeoutMs', 10_000),
        keepaliveMs: num(o, 'keepaliveMs', 2_000),
        adaptiveMin,
        adaptiveMax,
        socketBuffer: int(o, 'socketBufferBytes', d.socketBuffer),
        sendQueue,
        impairment: normaliseImpairment(o.impairment),
        authorizedClients: authorizedClients === undefined ? undefined : [...authorizedClients],
        adaptiveRate: rate.adaptive as boolean | undefined,
        initialKbps: optU32(rate, 'initialKbps', 'rate.'),
        minKbps: optU32(rate, 'minKbps', 'rate.'),
        maxTotalKbps: optU32(o, 'maxTotalKbps', ''),
        probes: probes.enabled,
        probeCeilingKbps: optU32(probes, 'ceilingKbps', 'probes.'),
        web: web.enabled,
        webWindow: optU32(web, 'window', 'web.'),
        webMaxFrameAgeMs: web.maxFrameAgeMs === undefined ? undefined : num(web, 'maxFrameAgeMs', 1000),
      }),
    )
    return new Host(h, backpressure)
  }

  /**
   * Waits up to `timeoutMs` (default 1 s) for a client; its session, or `null`
   * on timeout. Aborting `signal` rejects the wait with an `AbortError`; the
   * host goes on listening, and a client whose handshake was already under
   * way is handed to the next `accept`.
   */
  async accept(options: AcceptOptions = {}): Promise<HostSession | null> {
    if (this.#closed) throw new PunktfunkError('ERR_PF_CLOSED', 'the host is closed')
    const o = optionsBag(options, 'options')
    const timeoutMs = num(o, 'timeoutMs', 1000)
    if (!(timeoutMs > 0 && timeoutMs <= 86_400_000)) {
      throw invalidArg(`timeoutMs must be a positive number of milliseconds, got ${timeoutMs}`)
    }
    const signal = signalOf(o)
    throwIfAborted(signal)
    const early = this.#ready.shift()
    if (early) return early
    const w = new Wakeups()
    // With a signal, the native wait runs in short slices, so that an aborted
    // accept gives its libuv pool thread back within one slice. Handshakes
    // run in the background either way; a slice only takes a finished one.
    const deadline = Date.now() + timeoutMs
    const accepting = (async (): Promise<HostSession | null> => {
      for (;;) {
        const left = Math.max(deadline - Date.now(), 1)
        const slice = signal ? Math.min(left, ACCEPT_SLICE_MS) : left
        const s = await callAsync(() => this.#native.accept(slice, w.onWake))
        if (s) return new HostSession(s, w, this.#backpressure)
        if (signal?.aborted || this.#closed || Date.now() >= deadline) return null
      }
    })()
    return abortable(accepting, signal, (s) => {
      if (!s) return
      if (this.#closed) void s.close('host shut down', 3).catch(() => undefined)
      else this.#ready.push(s)
    })
  }

  /**
   * Every client that connects, until the host closes. A client whose
   * handshake fails (wrong protocol, timeout, refused pin) is skipped; pass
   * `onError` to hear about it.
   */
  async *sessions(
    options: WaitOptions & { onError?: (error: PunktfunkError) => void } = {},
  ): AsyncGenerator<HostSession, void, undefined> {
    const o = optionsBag(options, 'options')
    const { onError } = o
    if (onError !== undefined && typeof onError !== 'function') throw invalidArg('onError must be a function')
    const signal = signalOf(o)
    while (!this.#closed) {
      let s: HostSession | null = null
      try {
        s = await this.accept({ signal })
      } catch (e) {
        if (e instanceof Error && e.name === 'AbortError') throw e
        if (this.#closed || (e as { code?: string }).code === 'ERR_PF_CLOSED') return
        if (onError) (onError as (error: PunktfunkError) => void)(e as PunktfunkError)
        continue
      }
      if (s) yield s
    }
  }

  /**
   * Stops listening and closes every session with `reason`; a pending
   * `accept` rejects with `ERR_PF_CLOSED`. Rejects with `ERR_PF_INVALID_ARG`,
   * closing nothing, if `reason` is not a string. Closing twice is a no-op.
   */
  async close(reason = 'host shut down'): Promise<void> {
    const bad = closeArgs(reason, 0)
    if (bad) throw bad
    if (this.#closed) return
    this.#closed = true
    const ready = this.#ready.splice(0)
    await Promise.all([
      callAsync(() => this.#native.close(reason)),
      ...ready.map((s) => s.close(reason, 3).catch(() => undefined)),
    ])
  }
}

/**
 * A client connected to a host over QUIC: `for await (const frame of
 * client.frames())` (the {@link Session} API), plus input, keyframe requests
 * and speed tests.
 */
export class Client extends Session {
  /** @internal */
  constructor(s: NativeSession, w: Wakeups) {
    super('client', s, w, 'wait')
  }

  /**
   * Connects to a host at `address` (`IP:port`), checks its identity (`pin`,
   * else trust on first use), runs the handshake and starts receiving. Rejects
   * with `ERR_PF_PIN_MISMATCH` for a wrong fingerprint, `ERR_PF_TIMEOUT` when
   * nothing answers within `connectTimeoutMs`, `ERR_PF_UNAUTHORIZED` when the
   * host admits only listed clients and this one is not among them.
   */
  static async connect(address: string, options: ClientOptions = {}): Promise<Client> {
    if (typeof address !== 'string') throw invalidArg(`address must be an "IP:port" string, got ${describe(address)}`)
    const o = optionsBag(options, 'options')
    const signal = signalOf(o)
    throwIfAborted(signal)
    const { pin, trustOnFirstUse = false, knownHosts } = o
    if (pin !== undefined && typeof pin !== 'string') throw invalidArg('pin must be a hex string')
    if (typeof trustOnFirstUse !== 'boolean') throw invalidArg('trustOnFirstUse must be a boolean')
    if (knownHosts !== undefined && typeof knownHosts !== 'string') throw invalidArg('knownHosts must be a file path')
    const { identityDir } = o
    if (identityDir !== undefined && typeof identityDir !== 'string') throw invalidArg('identityDir must be a string')
    if (pin !== undefined && trustOnFirstUse) throw invalidArg('pass either pin or trustOnFirstUse, not both')
    if (pin === undefined && !trustOnFirstUse) {
      throw invalidArg('say how to trust the host: { pin } or { trustOnFirstUse: true, knownHosts? }')
    }
    const d = native().defaults()
    const { params, recvQueue } = paramsFrom(o, d)
    const w = new Wakeups()
    const connecting = callAsync(() =>
      native().clientConnect(
        address,
        {
          pin,
          trustOnFirstUse,
          knownHosts,
          requestedBitrateKbps: int(o, 'requestedBitrateKbps', 0),
          connectTimeoutMs: num(o, 'connectTimeoutMs', 5_000),
          idleTimeoutMs: num(o, 'idleTimeoutMs', 10_000),
          keepaliveMs: num(o, 'keepaliveMs', 2_000),
          params,
          socketBuffer: int(o, 'socketBufferBytes', d.socketBuffer),
          recvQueue,
          identityDir,
        },
        w.onWake,
      ),
    ).then((s) => new Client(s, w))
    // Aborted: the connection the handshake still makes is closed at once.
    return abortable(connecting, signal, (c) => void c.close('aborted', 4).catch(() => undefined))
  }

  /** The host's fingerprint (as pinned or first seen). */
  get fingerprint(): string {
    return this.controlInfo()?.fingerprint ?? ''
  }

  /** The bitrate the host granted, kbit/s. */
  get grantedBitrateKbps(): number {
    return this.controlInfo()?.grantedBitrateKbps ?? 0
  }

  /** How the session ended, once it did. */
  get closeReason(): CloseReason | null {
    return this.endReason()
  }

  /** Sends an input event to the host. */
  sendInput(event: InputEvent): void {
    this.checkOpen()
    const n = toInput(event)
    call(() => this.native.sendInput(n))
  }

  /** Asks the host for a keyframe (frames from `firstLost` on were lost). */
  requestKeyframe(firstLost: number): void {
    this.checkOpen()
    if (typeof firstLost !== 'number' || !Number.isSafeInteger(firstLost) || firstLost < 0) {
      throw invalidArg(`firstLost must be a non-negative integer, got ${describe(firstLost)}`)
    }
    call(() => this.native.requestKeyframe(firstLost))
  }

  /**
   * Speed test: the host sends probe filler through the data plane at
   * `targetKbps` (≤ 3 000 000) for `durationMs` (≤ 5 000); frames keep flowing.
   * Keep reading frames meanwhile: the receive thread counts the probe
   * datagrams, and it waits while the received-event queue is full.
   * Aborting `signal` rejects the call with an `AbortError` at once; the
   * host finishes the probe it started, and the session stays usable.
   */
  async speedTest(options: SpeedTestOptions): Promise<SpeedTestResult> {
    this.checkOpen()
    const o = optionsBag(options, 'options')
    if (o.targetKbps === undefined) throw invalidArg('targetKbps is required')
    const targetKbps = int(o, 'targetKbps', 0)
    const durationMs = num(o, 'durationMs', 2_000)
    const signal = signalOf(o)
    throwIfAborted(signal)
    return abortable(
      callAsync(() => this.native.speedTest(targetKbps, durationMs)),
      signal,
    )
  }

  /**
   * Closes with a reason the host reads (default: normal, `"closed"`).
   * Rejects with `ERR_PF_INVALID_ARG`, closing nothing, for a reason that is
   * not a string or a code that is not a `u32`.
   */
  override close(reason = 'closed', code = 0): Promise<void> {
    const bad = closeArgs(reason, code)
    return bad ? Promise.reject(bad) : this.closeWith(code, reason)
  }
}
