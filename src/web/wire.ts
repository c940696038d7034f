/**
 * The byte layouts of `punktfunk-web/1` (docs/WEB.md): control messages,
 * frame headers and the 12-byte input event (docs/PROTOCOL.md §9.5). Pure.
 */
import { PunktfunkError } from '../errors.js'

/** Protocol name, also the prefix of the device proof. */
export const PROTOCOL = 'punktfunk-web/1'

/** Control message types. */
export const MSG = {
  challenge: 1,
  welcome: 2,
  target: 3,
  close: 4,
  hello: 16,
  input: 17,
  keyframeRequest: 18,
} as const

/** Largest control message body. */
export const MAX_BODY = 1024

/** Bytes of a control message header: type u8, length u16. */
export const CONTROL_HEADER = 3

/** Bytes of a frame stream header. */
export const FRAME_HEADER = 24

/** Session close codes (docs/PROTOCOL.md §9.2). */
export const CLOSE = { normal: 0, protocol: 1, idle: 2, hostShutdown: 3, application: 4, unauthorized: 5, internal: 6 } as const

/** What Welcome grants. */
export interface Welcome {
  /** Session id, 32 hex digits. */
  sessionId: string
  /** Largest frame the host sends, bytes. */
  maxFrameBytes: number
  /** Bitrate granted, kbit/s. */
  grantedKbps: number
  /** Frames in flight at most. */
  window: number
}

/** The header of a frame stream. */
export interface FrameHeader {
  /** Keyframe flag. */
  keyframe: boolean
  /** Payload bytes. */
  length: number
  /** Frame index. */
  index: number
  /** The submitter's timestamp. */
  pts: number
}

import type { InputEvent } from '../input.js'
export type { InputEvent }

/** Gamepad button bits of `gamepadButtons` events (`PUNKTFUNK_BTN_*` in C). */
export const BUTTON: Readonly<Record<string, number>> = Object.freeze({
  A: 1 << 0,
  B: 1 << 1,
  X: 1 << 2,
  Y: 1 << 3,
  LEFT_SHOULDER: 1 << 4,
  RIGHT_SHOULDER: 1 << 5,
  BACK: 1 << 6,
  START: 1 << 7,
  GUIDE: 1 << 8,
  LEFT_STICK: 1 << 9,
  RIGHT_STICK: 1 << 10,
  DPAD_UP: 1 << 11,
  DPAD_DOWN: 1 << 12,
  DPAD_LEFT: 1 << 13,
  DPAD_RIGHT: 1 << 14,
})

/** Gamepad axis numbers of `gamepadAxis` events (`PUNKTFUNK_AXIS_*` in C). */
export const AXIS: Readonly<Record<string, number>> = Object.freeze({
  LEFT_X: 0,
  LEFT_Y: 1,
  RIGHT_X: 2,
  RIGHT_Y: 3,
  LEFT_TRIGGER: 4,
  RIGHT_TRIGGER: 5,
})

const KIND = {
  keyDown: 1,
  keyUp: 2,
  mouseMove: 3,
  mouseMoveAbsolute: 4,
  mouseButton: 5,
  scroll: 6,
  gamepadButtons: 7,
  gamepadAxis: 8,
} as const

function invalid(message: string): PunktfunkError {
  return new PunktfunkError('ERR_PF_INVALID_ARG', message)
}

function field(e: Record<string, unknown>, key: string, min: number, max: number): number {
  const v = e[key]
  if (typeof v !== 'number' || !Number.isInteger(v)) throw invalid(`input ${String(e.type)}: ${key} must be an integer, got ${String(v)}`)
  if (v < min || v > max) throw invalid(`input ${String(e.type)}: ${key} ${v} is out of range ${min}..${max}`)
  return v
}

const U8: [number, number] = [0, 0xff]
const U16: [number, number] = [0, 0xffff]
const I16: [number, number] = [-0x8000, 0x7fff]
const U32: [number, number] = [0, 0xffff_ffff]
const I32: [number, number] = [-0x8000_0000, 0x7fff_ffff]

/** Encodes an input event as its 12 bytes (§9.5); `ERR_PF_INVALID_ARG` for a bad one. */
export function encodeInput(event: InputEvent): Uint8Array {
  if (typeof event !== 'object' || event === null) throw invalid('input must be an object with a type')
  const e = event as unknown as Record<string, unknown>
  const kind = typeof e.type === 'string' && Object.hasOwn(KIND, e.type) ? KIND[e.type as keyof typeof KIND] : undefined
  if (kind === undefined) throw invalid(`unknown input type ${String(e.type)}`)
  const out = new Uint8Array(12)
  const v = new DataView(out.buffer)
  out[0] = kind
  switch (event.type) {
    case 'keyDown':
    case 'keyUp':
      v.setUint32(1, field(e, 'code', ...U32))
      break
    case 'mouseMove':
      v.setInt32(1, field(e, 'dx', ...I32))
      v.setInt32(5, field(e, 'dy', ...I32))
      break
    case 'mouseMoveAbsolute':
      v.setUint16(1, field(e, 'x', ...U16))
      v.setUint16(3, field(e, 'y', ...U16))
      break
    case 'mouseButton':
      if (typeof e.down !== 'boolean') throw invalid('input mouseButton: down must be a boolean')
      out[1] = field(e, 'button', ...U8)
      out[2] = e.down ? 1 : 0
      break
    case 'scroll':
      v.setInt16(1, field(e, 'dx', ...I16))
      v.setInt16(3, field(e, 'dy', ...I16))
      break
    case 'gamepadButtons':
      out[1] = field(e, 'pad', ...U8)
      v.setUint32(2, field(e, 'buttons', ...U32))
      break
    case 'gamepadAxis':
      out[1] = field(e, 'pad', ...U8)
      out[2] = field(e, 'axis', 0, 5)
      v.setInt16(3, field(e, 'value', ...I16))
      break
  }
  return out
}

/** A control message: type, big-endian u16 length, body. */
export function encodeMessage(type: number, body: Uint8Array): Uint8Array {
  if (body.length > MAX_BODY) throw new RangeError(`control message body of ${body.length} bytes exceeds ${MAX_BODY}`)
  const out = new Uint8Array(CONTROL_HEADER + body.length)
  out[0] = type
  out[1] = body.length >> 8
  out[2] = body.length & 0xff
  out.set(body, CONTROL_HEADER)
  return out
}

/** KeyframeRequest's body: the first lost index, u64 big-endian. */
export function keyframeRequestBody(firstLost: number): Uint8Array {
  const out = new Uint8Array(8)
  new DataView(out.buffer).setBigUint64(0, BigInt(firstLost))
  return out
}

/** Hex of bytes, lower case. */
export function toHex(bytes: Uint8Array): string {
  let s = ''
  for (const b of bytes) s += b.toString(16).padStart(2, '0')
  return s
}

/** Bytes of a hex string of even length; `undefined` if it is not one. */
export function fromHex(hex: string): Uint8Array<ArrayBuffer> | undefined {
  if (!/^(?:[0-9a-fA-F]{2})*$/.test(hex)) return undefined
  const out = new Uint8Array(hex.length / 2)
  for (let i = 0; i < out.length; i++) out[i] = parseInt(hex.slice(2 * i, 2 * i + 2), 16)
  return out
}

/** A protocol violation by the host: what the page closes the session with (code 1). */
export function protocolError(message: string): PunktfunkError {
  return new PunktfunkError('ERR_PF_PROTOCOL', message)
}

/** Decodes Welcome's body; throws a protocol error for a malformed one. */
export function decodeWelcome(body: Uint8Array): Welcome {
  if (body.length !== 26) throw protocolError(`Welcome of ${body.length} bytes, expected 26`)
  const v = view(body)
  const window = v.getUint16(24)
  if (window < 1) throw protocolError('Welcome grants a window of 0 frames')
  return { sessionId: toHex(body.subarray(0, 16)), maxFrameBytes: v.getUint32(16), grantedKbps: v.getUint32(20), window }
}

/** Decodes a frame stream's header; throws a protocol error for a malformed one. */
export function decodeFrameHeader(h: Uint8Array, maxFrameBytes: number): FrameHeader {
  const v = view(h)
  if (h[0] !== 1) throw protocolError(`frame header version ${h[0]}, expected 1`)
  const length = v.getUint32(4)
  if (length > maxFrameBytes) throw protocolError(`frame of ${length} bytes exceeds the ${maxFrameBytes} Welcome allows`)
  const index = v.getBigUint64(8)
  if (index > BigInt(Number.MAX_SAFE_INTEGER)) throw protocolError(`frame index ${index} beyond 2^53`)
  return { keyframe: (h[1]! & 1) !== 0, length, index: Number(index), pts: Number(v.getBigUint64(16)) }
}

function view(b: Uint8Array): DataView {
  return new DataView(b.buffer, b.byteOffset, b.byteLength)
}

/** A host's Close: the index after its last frame, and the code and reason to close with once every earlier frame is settled. */
export interface HostClose {
  /** The index the next frame would have had. */
  readonly nextIndex: number
  /** Close code. */
  readonly code: number
  /** Close reason. */
  readonly reason: string
}

/** Decodes a Close body (`next index u64 | code u32 | reason`). */
export function decodeClose(body: Uint8Array): HostClose {
  if (body.length < 12 || body.length > 12 + 256) throw protocolError(`close message of ${body.length} bytes`)
  const v = new DataView(body.buffer, body.byteOffset, body.byteLength)
  const next = v.getBigUint64(0)
  if (next > BigInt(Number.MAX_SAFE_INTEGER)) throw protocolError(`close message names frame ${next}`)
  return { nextIndex: Number(next), code: v.getUint32(8), reason: new TextDecoder().decode(body.subarray(12)) }
}
