/**
 * What the command line puts inside frames. The transport carries frames as
 * opaque bytes; `punktfunk host` tags each with one leading byte so that
 * `punktfunk connect` knows how to write it out:
 *
 * - `0x01` bytes: the rest is a piece of a byte stream (stdin).
 * - `0x02` datagrams: the rest is a sequence of `u16 big-endian length ‖ bytes`,
 *   one per source datagram, boundaries kept.
 * - `0x03` synthetic: `u32 sequence ‖ u32 offset ‖ body`, where the body is
 *   `pattern()[offset … offset + body length]`, so a receiver can check it.
 */
import { createCipheriv } from 'node:crypto'

export const TAG_BYTES = 0x01
export const TAG_DATAGRAMS = 0x02
export const TAG_SYNTHETIC = 0x03

/** Header bytes of a synthetic frame (tag, sequence, offset). */
export const SYNTHETIC_HEADER = 9
const PATTERN_BYTES = 32 << 20
/** The pattern is built in blocks of this size, each when first used. */
const PATTERN_BLOCK = 1 << 20
const PATTERN_KEY = Buffer.alloc(16, 0x70)
const PATTERN_IV = Buffer.alloc(16, 0x66)
let pattern: Buffer | undefined
let built: Uint8Array | undefined

/** The counter block that starts keystream byte `offset` (a multiple of 16): the IV plus `offset / 16`, big-endian. */
function counterAt(offset: number): Buffer {
  const iv = Buffer.from(PATTERN_IV)
  let carry = offset / 16
  for (let i = 15; i >= 0 && carry > 0; i--) {
    const sum = iv[i]! + (carry % 256)
    iv[i] = sum % 256
    carry = Math.floor(carry / 256) + (sum >= 256 ? 1 : 0)
  }
  return iv
}

/**
 * Bytes `from … to` of 32 MiB of AES-128-CTR keystream under a fixed, public
 * key: the same bytes in every process, incompressible and without any
 * repeating structure a transport bug could hide behind. Built 1 MiB at a
 * time as frames first touch it (CTR mode can start anywhere): all 32 MiB at
 * once took ~100 ms on the first frame, which then left late, with the next
 * six in a burst behind it, just as the session's rate ramp began.
 */
function patternRange(from: number, to: number): Buffer {
  pattern ??= Buffer.allocUnsafe(PATTERN_BYTES)
  built ??= new Uint8Array(PATTERN_BYTES / PATTERN_BLOCK)
  for (let b = Math.floor(from / PATTERN_BLOCK); b * PATTERN_BLOCK < to; b++) {
    if (built[b]) continue
    const at = b * PATTERN_BLOCK
    const c = createCipheriv('aes-128-ctr', PATTERN_KEY, counterAt(at))
    c.update(Buffer.alloc(PATTERN_BLOCK)).copy(pattern, at)
    built[b] = 1
  }
  return pattern.subarray(from, to)
}

/** The largest synthetic frame. */
export const MAX_SYNTHETIC_FRAME = PATTERN_BYTES / 2

/** Builds synthetic frame `seq` of `len` bytes (at least the header). */
export function syntheticFrame(seq: number, len: number): Buffer {
  const body = Math.max(0, Math.min(len, MAX_SYNTHETIC_FRAME) - SYNTHETIC_HEADER)
  // Spread the bodies over the pattern so consecutive frames differ.
  const offset = ((seq * 2_654_435_761) >>> 0) % (PATTERN_BYTES - body)
  const f = Buffer.allocUnsafe(SYNTHETIC_HEADER + body)
  f[0] = TAG_SYNTHETIC
  f.writeUInt32BE(seq >>> 0, 1)
  f.writeUInt32BE(offset, 5)
  patternRange(offset, offset + body).copy(f, SYNTHETIC_HEADER)
  return f
}

/** True if `f` is a well-formed synthetic frame whose body matches the pattern. */
export function syntheticIntact(f: Uint8Array): boolean {
  if (f.length < SYNTHETIC_HEADER || f[0] !== TAG_SYNTHETIC) return false
  const b = Buffer.from(f.buffer, f.byteOffset, f.byteLength)
  const offset = b.readUInt32BE(5)
  const body = b.length - SYNTHETIC_HEADER
  if (offset + body > PATTERN_BYTES) return false
  return b.compare(patternRange(offset, offset + body), 0, body, SYNTHETIC_HEADER) === 0
}

/** The synthetic frame's sequence number. */
export function syntheticSeq(f: Uint8Array): number {
  return Buffer.from(f.buffer, f.byteOffset, f.byteLength).readUInt32BE(1)
}

/**
 * Frame sizes of a synthetic video stream: an average of `bitrate / fps`, a
 * keyframe every `gop` frames `keyframeScale` times a P-frame, and P-frames
 * varying ±25 % (deterministic), like an encoder's output.
 */
export class FrameSizes {
  readonly gop: number
  readonly #fps: number
  #p = 0
  readonly #scale: number
  #rng = 0x9e3779b9

  constructor(bitrateBps: number, fps: number, gop = Math.max(1, Math.round(fps)), keyframeScale = 4) {
    this.gop = gop
    this.#fps = fps
    this.#scale = keyframeScale
    this.setBitrate(bitrateBps)
  }

  /** Sizes the frames from here on for `bitrateBps`, as an encoder told a new target would. */
  setBitrate(bitrateBps: number): void {
    const avg = bitrateBps / 8 / this.#fps
    this.#p = (avg * this.gop) / (this.#scale + this.gop - 1)
  }

  /** Whether frame `i` is a keyframe. */
  keyframe(i: number): boolean {
    return i % this.gop === 0
  }

  /** The size of a keyframe, bytes. */
  keyframeSize(): number {
    return Math.min(MAX_SYNTHETIC_FRAME, Math.max(SYNTHETIC_HEADER + 1, Math.round(this.#p * this.#scale)))
  }

  /** The size of frame `i`, bytes (at least the synthetic header, at most {@link MAX_SYNTHETIC_FRAME}). */
  size(i: number): number {
    if (this.keyframe(i)) return this.keyframeSize()
    // xorshift32: the same sizes on every run.
    let x = this.#rng
    x ^= x << 13
    x ^= x >>> 17
    x ^= x << 5
    this.#rng = x >>> 0
    const n = this.#p * (0.75 + (this.#rng / 0x1_0000_0000) * 0.5)
    return Math.min(MAX_SYNTHETIC_FRAME, Math.max(SYNTHETIC_HEADER + 1, Math.round(n)))
  }
}

/** The datagrams of a bundle frame, or `null` if it is malformed. */
export function unbundle(f: Uint8Array): Buffer[] | null {
  const b = Buffer.from(f.buffer, f.byteOffset, f.byteLength)
  const out: Buffer[] = []
  let at = 1
  while (at < b.length) {
    if (at + 2 > b.length) return null
    const len = b.readUInt16BE(at)
    at += 2
    if (at + len > b.length) return null
    out.push(b.subarray(at, at + len))
    at += len
  }
  return out
}

/** A bytes frame carrying `chunk`. */
export function bytesFrame(chunk: Buffer): Buffer {
  return Buffer.concat([Buffer.of(TAG_BYTES), chunk])
}
