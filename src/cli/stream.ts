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
let pattern: Buffer | undefined

/**
 * 32 MiB of AES-128-CTR keystream under a fixed, public key: the same bytes in
 * every process, incompressible and without any repeating structure a
 * transport bug could hide behind.
 */
export function patternBytes(): Buffer {
  if (!pattern) {
    const c = createCipheriv('aes-128-ctr', Buffer.alloc(16, 0x70), Buffer.alloc(16, 0x66))
    pattern = Buffer.concat([c.update(Buffer.alloc(PATTERN_BYTES)), c.final()])
  }
  return pattern
}

/** The largest synthetic frame. */
export const MAX_SYNTHETIC_FRAME = PATTERN_BYTES / 2

/** Builds synthetic frame `seq` of `len` bytes (at least the header). */
export function syntheticFrame(seq: number, len: number): Buffer {
  const p = patternBytes()
  const body = Math.max(0, Math.min(len, MAX_SYNTHETIC_FRAME) - SYNTHETIC_HEADER)
  // Spread the bodies over the pattern so consecutive frames differ.
  const offset = ((seq * 2_654_435_761) >>> 0) % (p.length - body)
  const f = Buffer.allocUnsafe(SYNTHETIC_HEADER + body)
  f[0] = TAG_SYNTHETIC
  f.writeUInt32BE(seq >>> 0, 1)
  f.writeUInt32BE(offset, 5)
  p.copy(f, SYNTHETIC_HEADER, offset, offset + body)
  return f
}

/** True if `f` is a well-formed synthetic frame whose body matches the pattern. */
export function syntheticIntact(f: Uint8Array): boolean {
  if (f.length < SYNTHETIC_HEADER || f[0] !== TAG_SYNTHETIC) return false
  const b = Buffer.from(f.buffer, f.byteOffset, f.byteLength)
  const offset = b.readUInt32BE(5)
  const body = b.length - SYNTHETIC_HEADER
  const p = patternBytes()
  if (offset + body > p.length) return false
  return b.compare(p, offset, offset + body, SYNTHETIC_HEADER) === 0
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
