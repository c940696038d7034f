/**
 * `@punktfunk/core`: low-latency frame transport for game and desktop streaming.
 *
 * Frames go in on the host, come out byte-exact (or reported lost) on the
 * client: Reed-Solomon FEC over GF(2^16), AES-128-GCM per datagram and batched
 * UDP, all in native code on threads of their own.
 *
 * @packageDocumentation
 */
import { call, invalidArg } from './errors'
import { native } from './native'
import {
  describe,
  normalise,
  normaliseImpairment,
  optionsBag,
  withOptionNames, type LoopbackPairOptions, type UdpSessionOptions } from './options'
import { Session, Wakeups } from './session'

export { AbortError, type WaitOptions } from './abort'
export { ERROR_CODES, isPunktfunkError, PunktfunkError, type PunktfunkErrorCode } from './errors'
export {
  generateSecret,
  type Backpressure,
  type BurstLossOptions,
  type FecOptions,
  type ImpairmentOptions,
  type LoopbackPairOptions,
  type PacingOptions,
  type Role,
  type SessionKeyOptions,
  type SessionOptions,
  type UdpSessionOptions,
} from './options'
export {
  AXIS,
  BUTTON,
  Client,
  Host,
  HostSession,
  loadIdentity,
  type AcceptOptions,
  type ClientMessage,
  type ClientOptions,
  type CloseReason,
  type HostIdentity,
  type HostOptions,
  type WebOptions,
  type InputEvent,
  type ProbeOptions,
  type RateOptions,
  type SpeedTestOptions,
  type SpeedTestResult,
} from './control'
export {
  RATE_STATES,
  rateStateName,
  Session,
  type EventsOptions,
  type Frame,
  type FrameEvent,
  type FramesOptions,
  type LostFrames,
  type RateStateName,
  type SessionStats,
  type SocketBufferReport,
  type SubmitOptions,
} from './session'

/**
 * Opens a session on a UDP socket. Both ends need the same keys and FEC shard
 * size; the host sends frames, the client receives them.
 *
 * ```ts
 * const client = createUdpSession({ role: 'client', bind: '0.0.0.0:9000', peer: '192.0.2.1:9000', keys })
 * for await (const frame of client.frames()) decode(frame.data)
 * ```
 *
 * Throws `ERR_PF_INVALID_ARG` for bad options and `ERR_PF_IO` if the socket
 * cannot be opened.
 */
export function createUdpSession(options: UdpSessionOptions): Session {
  const opts = optionsBag(options, 'options')
  const { role, bind = '0.0.0.0:0', peer, socketBufferBytes } = opts
  if (role !== 'host' && role !== 'client') throw invalidArg(`role must be 'host' or 'client', got ${describe(role)}`)
  if (typeof bind !== 'string') throw invalidArg('bind must be an "IP:port" string')
  if (peer !== undefined && typeof peer !== 'string') throw invalidArg('peer must be an "IP:port" string')
  const n = normalise(opts, true, role === 'client', role === 'host')
  const buf = socketBufferBytes === undefined ? native().defaults().socketBuffer : socketBufferBytes
  if (typeof buf !== 'number' || !Number.isSafeInteger(buf) || buf < 0) {
    throw invalidArg('socketBufferBytes must be a non-negative integer')
  }
  const wakeups = new Wakeups()
  const s = withOptionNames(() =>
    call(() => native().createUdpSession(role, bind, peer, buf, n.config, wakeups.onWake)),
  )
  return new Session(role, s, wakeups, n.backpressure)
}

/**
 * An in-process host and client joined by a memory link, optionally impaired
 * (loss, bursts, reordering, duplicates, corruption) on the host→client side.
 * The whole data plane runs as over UDP: FEC, encryption, reassembly.
 */
export function createLoopbackPair(options: LoopbackPairOptions = {}): {
  /** The sending end. */
  host: Session
  /** The receiving end. */
  client: Session
} {
  const opts = optionsBag(options, 'options')
  const n = normalise(opts, false, true)
  const impairment = normaliseImpairment(opts.impairment)
  const hw = new Wakeups()
  const cw = new Wakeups()
  const [host, client] = withOptionNames(() =>
    call(() => native().createLoopbackPair(n.config, impairment, hw.onWake, cw.onWake)),
  )
  return {
    host: new Session('host', host, hw, n.backpressure),
    client: new Session('client', client, cw, n.backpressure),
  }
}
