/**
 * H.264 Annex B access units from a byte stream that arrives in arbitrary
 * pieces (a `punktfunk host --source -` frame is any slice of its input).
 * Pure: no DOM, no I/O.
 */

/** One H.264 access unit (one picture), start codes included. */
export interface AccessUnit {
  /** The access unit's bytes, Annex B (start codes included); yours to keep. */
  readonly data: Uint8Array
  /** It holds an IDR slice (NAL type 5): decoding can start here. */
  readonly keyframe: boolean
  /** The first sequence parameter set in it (from its NAL header byte on), if any. */
  readonly sps: Uint8Array | undefined
}

/** NAL unit types that matter here (ITU-T H.264 Table 7-1). */
const NAL = { slice: 1, idr: 5, sei: 6, sps: 7, pps: 8, aud: 9 } as const

/**
 * Splits an Annex B byte stream into access units. An access unit starts at an
 * access unit delimiter, SPS, PPS or SEI that follows a slice of the current
 * one, or at a slice whose `first_mb_in_slice` is 0 when the current one
 * already has a slice (ITU-T H.264 7.4.1.2.3, the cases encoders produce).
 *
 * ```ts
 * const split = new AnnexBSplitter()
 * for (const chunk of chunks) for (const au of split.push(chunk)) decode(au)
 * const last = split.flush()
 * ```
 */
export class AnnexBSplitter {
  /** Bytes of the access unit being gathered, from offset 0. */
  #buf = new Uint8Array(1 << 16)
  #len = 0
  /** Where the start-code search resumes. */
  #scan = 0
  #hasSlice = false
  #keyframe = false
  /** Offset (in #buf) of the current unit's first SPS NAL header byte, or -1. */
  #sps = -1
  /** Largest access unit accepted, bytes. */
  readonly #maxBytes: number

  /**
   * @param maxBytes Largest access unit accepted (default 64 MiB): a stream
   * that never starts a new one fails with a `RangeError` instead of growing
   * without bound.
   */
  constructor(maxBytes = 64 << 20) {
    this.#maxBytes = maxBytes
  }

  /** Adds bytes; returns the access units they completed, in order. */
  push(chunk: Uint8Array): AccessUnit[] {
    this.#append(chunk)
    const out: AccessUnit[] = []
    const buf = this.#buf
    let i = this.#scan
    for (;;) {
      // Start codes end in 0x01 after two zeros; the NAL header follows.
      const one = buf.subarray(0, this.#len).indexOf(1, Math.max(i, 2))
      if (one < 0) {
        i = Math.max(this.#len - 2, 0)
        break
      }
      if (buf[one - 1] !== 0 || buf[one - 2] !== 0) {
        i = one + 1
        continue
      }
      const header = one + 1
      // A slice needs the byte after its header to tell whether it starts a picture.
      if (header + 1 >= this.#len) {
        i = one - 2
        break
      }
      const type = buf[header]! & 0x1f
      const start = one >= 3 && buf[one - 3] === 0 ? one - 3 : one - 2
      const isSlice = type === NAL.slice || type === NAL.idr
      const opens =
        this.#hasSlice &&
        (type === NAL.aud || type === NAL.sps || type === NAL.pps || type === NAL.sei || (isSlice && (buf[header + 1]! & 0x80) !== 0))
      let at = header
      if (opens && start > 0) {
        out.push(this.#cut(start))
        at = header - start
      }
      if (isSlice) this.#hasSlice = true
      if (type === NAL.idr) this.#keyframe = true
      if (type === NAL.sps && this.#sps < 0) this.#sps = at
      i = at + 1
    }
    this.#scan = i
    return out
  }

  /**
   * Forgets the bytes gathered so far: after a gap in the stream (lost
   * frames) they belong to an access unit that cannot be completed.
   */
  reset(): void {
    this.#len = 0
    this.#scan = 0
    this.#hasSlice = false
    this.#keyframe = false
    this.#sps = -1
  }

  /** The end of the stream: returns the last access unit, if any bytes are left. */
  flush(): AccessUnit | undefined {
    if (this.#len === 0) return undefined
    const au = this.#cut(this.#len)
    this.#scan = 0
    return au
  }

  /** Emits `#buf[0, end)` as an access unit and keeps the rest as the start of the next. */
  #cut(end: number): AccessUnit {
    const data = this.#buf.slice(0, end)
    const au: AccessUnit = {
      data,
      keyframe: this.#keyframe,
      sps: this.#sps >= 0 && this.#sps < end ? data.subarray(this.#sps, nalEnd(data, this.#sps)) : undefined,
    }
    this.#buf.copyWithin(0, end, this.#len)
    this.#len -= end
    this.#hasSlice = false
    this.#keyframe = false
    this.#sps = -1
    return au
  }

  #append(chunk: Uint8Array): void {
    const need = this.#len + chunk.length
    if (need > this.#maxBytes) throw new RangeError(`an access unit exceeds ${this.#maxBytes} bytes: not an H.264 Annex B stream?`)
    if (need > this.#buf.length) {
      let cap = this.#buf.length * 2
      while (cap < need) cap *= 2
      const grown = new Uint8Array(cap)
      grown.set(this.#buf.subarray(0, this.#len))
      this.#buf = grown
    }
    this.#buf.set(chunk, this.#len)
    this.#len = need
  }
}

/** The offset where the NAL unit starting at `from` ends: the next start code, or the end. */
function nalEnd(data: Uint8Array, from: number): number {
  for (let one = data.indexOf(1, from + 2); one >= 0; one = data.indexOf(1, one + 1)) {
    if (data[one - 1] === 0 && data[one - 2] === 0) return data[one - 3] === 0 && one - 3 >= from ? one - 3 : one - 2
  }
  return data.length
}

/** True if `data` begins with an Annex B start code (`00 00 01` or `00 00 00 01`). */
export function isAnnexB(data: Uint8Array): boolean {
  return data[0] === 0 && data[1] === 0 && (data[2] === 1 || (data[2] === 0 && data[3] === 1))
}

/**
 * The WebCodecs / RFC 6381 codec string of a stream from its sequence
 * parameter set (starting at the NAL header byte): `avc1.PPCCLL`, profile,
 * constraint flags and level in hex.
 */
export function codecString(sps: Uint8Array): string {
  if (sps.length < 4 || (sps[0]! & 0x1f) !== NAL.sps) throw new RangeError('not an H.264 sequence parameter set')
  const hex = (b: number): string => b.toString(16).padStart(2, '0')
  return `avc1.${hex(sps[1]!)}${hex(sps[2]!)}${hex(sps[3]!)}`
}
