import { randomBytes } from 'node:crypto'

import { invalidArg, PunktfunkError } from './errors'
import { native, type NativeConfig, type NativeDefaults, type NativeImpairment, type NativePacing, type NativeParams } from './native'

/** Which end of the stream a session is. */
export type Role = 'host' | 'client'

/**
 * What `submitFrame` does when the send queue is full:
 * `'wait'` returns a promise that settles once the frame is queued;
 * `'reject'` rejects at once with `ERR_PF_QUEUE_FULL` (the frame is not sent).
 */
export type Backpressure = 'wait' | 'reject'

/** Key material both ends must share. */
export interface SessionKeyOptions {
  /**
   * Shared secret, at least 16 bytes (32 random bytes recommended, see
   * {@link generateSecret}).
   */
  secret: Uint8Array
  /**
   * Context bound into the key derivation, unique to this session (e.g. a
   * random session id both ends agree on; `randomBytes(16)`). Required and
   * non-empty (else `ERR_PF_INVALID_ARG`): the AES-GCM nonces restart with
   * each session, so a secret used again must meet a new context.
   */
  context: string | Uint8Array
}

/** Forward error correction and datagram size. Both ends must use the same `shardPayload` and `maxDataShards`. */
export interface FecOptions {
  /** Recovery shards as a percentage of data shards, `0..100` (default 10). Can change live. */
  percent?: number
  /** Most data shards per Reed-Solomon block, `1..16384` (default 4096). */
  maxDataShards?: number
  /** Frame bytes per datagram, even, `64..16384` (default 1344, giving 1401-byte datagrams). */
  shardPayload?: number
}

/** Options shared by every kind of session. */
export interface SessionOptions {
  /** FEC and shard size. */
  fec?: FecOptions
  /** Largest frame accepted, in bytes (default 16 MiB, at most 256 MiB). Bounds receive memory. */
  maxFrameBytes?: number
  /** Most frames reassembled at once (default 8). */
  maxFramesInFlight?: number
  /** An incomplete frame older than this is reported lost, in ms (default 200). */
  frameTimeoutMs?: number
  /** An incomplete frame this many indices behind the newest is reported lost (default 32). */
  maxIndexLag?: number
  /** Receive coalescing window in µs, `0..10000` (default 50). */
  recvCoalesceUs?: number
  /** Frames the send queue holds before back-pressure applies, `1..1024` (default 8). */
  sendQueue?: number
  /** Received events queued for the application, `1..1024` (default 16). While full, the socket buffer holds the backlog. */
  recvQueue?: number
  /** What `submitFrame` does on a full send queue (default `'wait'`). */
  backpressure?: Backpressure
  /**
   * Sender pacing (host side): send the first `burstBytes` of each frame at
   * once, the rest in `chunkBytes` pieces at `ratePercent` of the measured
   * stream rate (or `fixedRateMbps`), finishing within the frame interval and
   * all at once when the next frame is waiting, so a real NIC sees no
   * line-rate microbursts. `true` for the defaults, `false` for one burst per
   * frame. Default: on for UDP hosts and `Host.listen`, off for loopback pairs.
   */
  pacing?: boolean | PacingOptions
  /**
   * UDP offload: `'auto'` (default) uses GSO on send and GRO on receive where
   * the kernel has them (several times fewer system calls); `'on'` requires
   * them (`ERR_PF_IO` where missing); `'off'` keeps to `sendmmsg`/`recvmmsg`.
   */
  udpOffload?: 'auto' | 'on' | 'off'
  /**
   * Receive busy polling: while waiting for datagrams the receive thread keeps
   * reading instead of sleeping in the kernel: lower wake-up latency for a
   * whole core. Default `false`.
   */
  busyPoll?: boolean
}

/** Tuning of {@link SessionOptions.pacing}. */
export interface PacingOptions {
  /** Bytes sent at once when a frame starts (default 65 536). */
  burstBytes?: number
  /** Bytes per paced send after that (default 32 768). */
  chunkBytes?: number
  /** Pace at this percentage of the measured stream rate, `100..10000` (default 200). */
  ratePercent?: number
  /** Pace at this fixed rate instead, Mbit/s (default: measure the stream). */
  fixedRateMbps?: number
}

/** Options of {@link createUdpSession}. */
export interface UdpSessionOptions extends SessionOptions {
  /** `'host'` sends video (seals with the host→client key), `'client'` receives it. */
  role: Role
  /** Local `IP:port` to bind (default `0.0.0.0:0`, any free port). */
  bind?: string
  /** The other end's `IP:port`. Can also be set later with {@link Session.connect}. */
  peer?: string
  /** Key material, identical on both ends. */
  keys: SessionKeyOptions
  /** Start the receive thread (default: true for clients, false for hosts). */
  receive?: boolean
  /** Socket buffer size to ask the kernel for, bytes (default 32 MiB). */
  socketBufferBytes?: number
}

/** Gilbert-Elliott burst loss: a two-state Markov chain (percentages per packet). */
export interface BurstLossOptions {
  /** Chance of moving from the good to the bad state. */
  goodToBadPercent: number
  /** Chance of moving from the bad back to the good state. */
  badToGoodPercent: number
  /** Loss while in the good state. */
  lossGoodPercent?: number
  /** Loss while in the bad state. */
  lossBadPercent: number
}

/** Simulated network trouble on the host→client direction of a loopback pair. */
export interface ImpairmentOptions {
  /** Seed of the pseudo-random generator (default 1); the same seed gives the same pattern. */
  seed?: number
  /** Independent random loss, percent. */
  lossPercent?: number
  /** Drop exactly every n-th datagram (0 = off). */
  dropEveryNth?: number
  /** Burst loss on top of the rest. */
  burst?: BurstLossOptions
  /** Percent of datagrams delivered out of order. */
  reorderPercent?: number
  /** How many later datagrams overtake a reordered one (default 3). */
  reorderDepth?: number
  /** Percent of datagrams delivered twice. */
  duplicatePercent?: number
  /** Percent of datagrams with one byte flipped (they fail authentication and are counted). */
  corruptPercent?: number
  /** Percent of datagrams cut short. */
  truncatePercent?: number
}

/** Options of {@link createLoopbackPair}. */
export interface LoopbackPairOptions extends SessionOptions {
  /** Key material; a random secret by default. */
  keys?: SessionKeyOptions
  /** Impair host→client datagrams. */
  impairment?: ImpairmentOptions
}

/** 32 random bytes, suitable as {@link SessionKeyOptions.secret}. */
export function generateSecret(): Buffer {
  return randomBytes(32)
}

const SDK_DEFAULT_SEND_QUEUE = 8
const SDK_DEFAULT_RECV_QUEUE = 16

/** @internal */
export function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}

/** @internal Checks an optional options bag. */
export function optionsBag(v: unknown, name: string): Record<string, unknown> {
  if (v === undefined) return {}
  if (!isObject(v)) throw invalidArg(`${name} must be an object`)
  return v
}

/** @internal A finite number, or the default when undefined. */
export function num(bag: Record<string, unknown>, key: string, dflt: number, prefix = ''): number {
  const v = bag[key]
  if (v === undefined) return dflt
  if (typeof v !== 'number' || !Number.isFinite(v)) {
    throw invalidArg(`${prefix}${key} must be a finite number, got ${describe(v)}`)
  }
  return v
}

/** @internal A non-negative safe integer, or the default when undefined. */
export function int(bag: Record<string, unknown>, key: string, dflt: number, prefix = ''): number {
  const v = num(bag, key, dflt, prefix)
  if (!Number.isSafeInteger(v) || v < 0) {
    throw invalidArg(`${prefix}${key} must be a non-negative integer, got ${v}`)
  }
  return v
}

/** Largest value of the addon's `u32` fields. */
const U32_MAX = 0xffff_ffff

/**
 * @internal A non-negative integer that fits a `u32` of the addon, or the
 * default when undefined. Larger values must be refused here: the conversion
 * to `u32` would silently keep only the low 32 bits (2 ** 32 + 10 becomes 10).
 */
export function u32(bag: Record<string, unknown>, key: string, dflt: number, prefix = ''): number {
  const v = int(bag, key, dflt, prefix)
  if (v > U32_MAX) throw invalidArg(`${prefix}${key} must be at most ${U32_MAX}, got ${v}`)
  return v
}

/** Pass `Number.NaN` as the default for a required field. */
function percent(bag: Record<string, unknown>, key: string, dflt: number, prefix = ''): number {
  if (bag[key] === undefined && Number.isNaN(dflt)) throw invalidArg(`${prefix}${key} is required`)
  const v = num(bag, key, dflt, prefix)
  if (v < 0 || v > 100) throw invalidArg(`${prefix}${key} must be within 0..100, got ${v}`)
  return v
}

function bool(bag: Record<string, unknown>, key: string, dflt: boolean): boolean {
  const v = bag[key]
  if (v === undefined) return dflt
  if (typeof v !== 'boolean') throw invalidArg(`${key} must be a boolean, got ${describe(v)}`)
  return v
}

/** @internal */
export function describe(v: unknown): string {
  if (v === null) return 'null'
  if (Array.isArray(v)) return 'an array'
  if (typeof v === 'string') return `the string ${JSON.stringify(v.length > 40 ? v.slice(0, 40) + '…' : v)}`
  return typeof v === 'object' ? (v.constructor?.name ?? 'an object') : `${typeof v} ${String(v)}`
}

function keyBytes(keys: unknown, required: boolean): { secret: Buffer; context: Buffer } {
  if (keys === undefined && !required) return { secret: generateSecret(), context: randomBytes(16) }
  if (!isObject(keys)) throw invalidArg('keys must be an object { secret, context }')
  const { secret, context } = keys
  if (!(secret instanceof Uint8Array)) throw invalidArg(`keys.secret must be a Uint8Array or Buffer, got ${describe(secret)}`)
  if (secret.length < 16) throw invalidArg(`keys.secret must be at least 16 bytes, got ${secret.length}`)
  let ctx: Buffer
  if (context === undefined) ctx = Buffer.alloc(0)
  else if (typeof context === 'string') ctx = Buffer.from(context, 'utf8')
  else if (context instanceof Uint8Array) ctx = Buffer.from(context)
  else throw invalidArg(`keys.context must be a string or Uint8Array, got ${describe(context)}`)
  return { secret: Buffer.from(secret), context: ctx }
}

/** @internal Normalised SDK-level settings. */
export interface Normalised {
  config: NativeConfig
  backpressure: Backpressure
}

/** @internal The session parameters, queue sizes and back-pressure mode from an options bag. */
export function paramsFrom(
  opts: Record<string, unknown>,
  defaults: NativeDefaults,
  pacingByDefault = false,
): { params: NativeParams; sendQueue: number; recvQueue: number; backpressure: Backpressure } {
  const d = defaults.params
  const fec = optionsBag(opts.fec, 'fec')
  const backpressure = opts.backpressure ?? 'wait'
  if (backpressure !== 'wait' && backpressure !== 'reject') {
    throw invalidArg(`backpressure must be 'wait' or 'reject', got ${describe(backpressure)}`)
  }
  const queue = (key: string, dflt: number): number => {
    const v = int(opts, key, dflt)
    const max = defaults.maxQueue
    if (v < 1 || v > max) throw invalidArg(`${key} must be within 1..${max}, got ${v}`)
    return v
  }
  return {
    backpressure,
    sendQueue: queue('sendQueue', SDK_DEFAULT_SEND_QUEUE),
    recvQueue: queue('recvQueue', SDK_DEFAULT_RECV_QUEUE),
    params: {
      fecPercent: u32(fec, 'percent', d.fecPercent, 'fec.'),
      maxDataShards: u32(fec, 'maxDataShards', d.maxDataShards, 'fec.'),
      shardPayload: u32(fec, 'shardPayload', d.shardPayload, 'fec.'),
      maxFrameBytes: int(opts, 'maxFrameBytes', d.maxFrameBytes),
      maxFramesInFlight: u32(opts, 'maxFramesInFlight', d.maxFramesInFlight),
      frameTimeoutMs: num(opts, 'frameTimeoutMs', d.frameTimeoutMs),
      maxIndexLag: int(opts, 'maxIndexLag', d.maxIndexLag),
      recvCoalesceUs: num(opts, 'recvCoalesceUs', d.recvCoalesceUs),
      pacing: pacingFrom(opts.pacing, pacingByDefault),
      offload: offloadFrom(opts.udpOffload),
      busyPoll: bool(opts, 'busyPoll', false),
    },
  }
}

const PACING_DEFAULTS = { burstBytes: 65_536, chunkBytes: 32_768, ratePercent: 200 }

function pacingFrom(v: unknown, byDefault: boolean): NativePacing | undefined {
  if (v === undefined) v = byDefault
  if (v === false) return undefined
  if (v === true) return { ...PACING_DEFAULTS, fixedRateKbps: 0 }
  const p = optionsBag(v, 'pacing')
  const fixed = p.fixedRateMbps === undefined ? 0 : num(p, 'fixedRateMbps', 0, 'pacing.')
  if (!(fixed >= 0 && fixed <= 4_000_000)) throw invalidArg(`pacing.fixedRateMbps must be within 0..4000000, got ${fixed}`)
  return {
    burstBytes: u32(p, 'burstBytes', PACING_DEFAULTS.burstBytes, 'pacing.'),
    chunkBytes: u32(p, 'chunkBytes', PACING_DEFAULTS.chunkBytes, 'pacing.'),
    ratePercent: u32(p, 'ratePercent', PACING_DEFAULTS.ratePercent, 'pacing.'),
    fixedRateKbps: Math.round(fixed * 1000),
  }
}

function offloadFrom(v: unknown): 'auto' | 'on' | 'off' | undefined {
  if (v === undefined || v === 'auto' || v === 'on' || v === 'off') return v
  throw invalidArg(`udpOffload must be 'auto', 'on' or 'off', got ${describe(v)}`)
}

/** @internal Validates types and fills defaults; ranges are checked by the core. */
export function normalise(
  opts: Record<string, unknown>,
  keysRequired: boolean,
  receive: boolean,
  pacingByDefault = false,
): Normalised {
  const { params, sendQueue, recvQueue, backpressure } = paramsFrom(opts, native().defaults(), pacingByDefault)
  const { secret, context } = keyBytes(opts.keys, keysRequired)
  return {
    backpressure,
    config: { secret, context, params, sendQueue, recvQueue, receive: bool(opts, 'receive', receive) },
  }
}

/** @internal */
export function normaliseImpairment(v: unknown): NativeImpairment | undefined {
  if (v === undefined) return undefined
  const i = optionsBag(v, 'impairment')
  const p = 'impairment.'
  let burst: NativeImpairment['burst']
  if (i.burst !== undefined) {
    const b = optionsBag(i.burst, 'impairment.burst')
    const bp = 'impairment.burst.'
    burst = {
      goodToBadPercent: percent(b, 'goodToBadPercent', Number.NaN, bp),
      badToGoodPercent: percent(b, 'badToGoodPercent', Number.NaN, bp),
      lossGoodPercent: percent(b, 'lossGoodPercent', 0, bp),
      lossBadPercent: percent(b, 'lossBadPercent', Number.NaN, bp),
    }
  }
  return {
    seed: int(i, 'seed', 1, p),
    lossPercent: percent(i, 'lossPercent', 0, p),
    dropEveryNth: int(i, 'dropEveryNth', 0, p),
    burst,
    reorderPercent: percent(i, 'reorderPercent', 0, p),
    reorderDepth: u32(i, 'reorderDepth', 3, p),
    duplicatePercent: percent(i, 'duplicatePercent', 0, p),
    corruptPercent: percent(i, 'corruptPercent', 0, p),
    truncatePercent: percent(i, 'truncatePercent', 0, p),
  }
}

/** Core parameter names → the SDK option that sets them. */
const OPTION_NAMES: ReadonlyArray<[RegExp, string]> = [
  [/\bfec_percent\b/g, 'fec.percent'],
  [/\bmax_data_per_block\b/g, 'fec.maxDataShards'],
  [/\bshard_payload\b/g, 'fec.shardPayload'],
  [/\bmax_frame_bytes\b/g, 'maxFrameBytes'],
  [/\bmax_frames_in_flight\b/g, 'maxFramesInFlight'],
  [/\bframe_timeout\b/g, 'frameTimeoutMs'],
  [/\bmax_index_lag\b/g, 'maxIndexLag'],
  [/\brecv_coalesce\b/g, 'recvCoalesceUs'],
  [/\bpacing burst_bytes and chunk_bytes\b/g, 'pacing.burstBytes and pacing.chunkBytes'],
  [/\bpacing rate_percent\b/g, 'pacing.ratePercent'],
]

/** @internal Rewrites core field names in an option error into the SDK's option names. */
export function withOptionNames<T>(f: () => T): T {
  try {
    return f()
  } catch (e) {
    if (e instanceof PunktfunkError && e.code === 'ERR_PF_INVALID_ARG') {
      let msg = e.message
      for (const [re, name] of OPTION_NAMES) msg = msg.replace(re, name)
      throw new PunktfunkError(e.code, msg, { cause: e.cause })
    }
    throw e
  }
}
