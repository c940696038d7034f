/**
 * The pure parts of the browser SDK (`@punktfunk/core/web`): the H.264
 * Annex B access-unit splitter, frame ordering and loss (docs/WEB.md,
 * Frames), and the wire encodings.
 */
import test from 'ava'

import { isPunktfunkError } from '../src/errors'
import { AnnexBSplitter, codecString, isAnnexB, type AccessUnit } from '../src/web/annexb'
import { FrameOrder, type OrderEvent } from '../src/web/order'
import { decodeFrameHeader, decodeWelcome, encodeInput, encodeMessage, keyframeRequestBody, type InputEvent } from '../src/web/wire'

// ---- Annex B ----------------------------------------------------------------

const SC4 = [0, 0, 0, 1]
const SC3 = [0, 0, 1]
/** A NAL unit: start code, header byte (nal_ref_idc 3 unless given), payload. */
const nal = (type: number, payload: number[], sc = SC4, ref = 3): number[] => [...sc, (ref << 5) | type, ...payload]
/** A slice whose first_mb_in_slice is 0 (top bit set) or not. */
const slice = (type: 1 | 5, first: boolean, sc = SC4): number[] => nal(type, [first ? 0x88 : 0x44, 0x21, 0x0a, 0x11, 0x00, 0x07], sc)
const SPS = nal(7, [0x64, 0x00, 0x1f, 0xac, 0xd9, 0x40])
const PPS = nal(8, [0xeb, 0xe3, 0xcb], SC3)
const SEI = nal(6, [0x05, 0x02, 0xaa, 0xbb, 0x80], SC4, 0)
const AUD = nal(9, [0xf0], SC4, 0)

/** Access units in the shapes encoders produce: with and without delimiters, several slices, mixed start codes. */
const UNITS: Array<{ bytes: number[]; keyframe: boolean; sps: boolean }> = [
  { bytes: [...SPS, ...PPS, ...SEI, ...slice(5, true), ...slice(5, false, SC3)], keyframe: true, sps: true },
  { bytes: slice(1, true), keyframe: false, sps: false },
  { bytes: [...slice(1, true, SC3), ...slice(1, false), ...slice(1, false)], keyframe: false, sps: false },
  { bytes: [...AUD, ...SPS, ...PPS, ...slice(5, true)], keyframe: true, sps: true },
  { bytes: [...AUD, ...slice(1, true)], keyframe: false, sps: false },
  { bytes: [...SEI, ...slice(1, true, SC3)], keyframe: false, sps: false },
  { bytes: [...PPS, ...slice(1, true)], keyframe: false, sps: false },
]
const STREAM = Uint8Array.from(UNITS.flatMap((u) => u.bytes))

function split(chunks: Uint8Array[]): AccessUnit[] {
  const s = new AnnexBSplitter()
  const out = chunks.flatMap((c) => s.push(c))
  const last = s.flush()
  if (last) out.push(last)
  return out
}

function checkUnits(t: import('ava').ExecutionContext, got: AccessUnit[], what: string): void {
  t.is(got.length, UNITS.length, `${what}: number of access units`)
  got.forEach((au, i) => {
    const want = UNITS[i]!
    t.deepEqual(Array.from(au.data), want.bytes, `${what}: access unit ${i} bytes`)
    t.is(au.keyframe, want.keyframe, `${what}: access unit ${i} keyframe`)
    t.is(au.sps !== undefined, want.sps, `${what}: access unit ${i} sps`)
  })
}

test('annexb: splits a stream delivered whole into its access units', (t) => {
  checkUnits(t, split([STREAM]), 'whole')
})

test('annexb: the same access units whatever the chunking (every split point, single bytes, random sizes)', (t) => {
  for (let at = 0; at <= STREAM.length; at++) {
    checkUnits(t, split([STREAM.subarray(0, at), STREAM.subarray(at)]), `split at ${at}`)
  }
  checkUnits(t, split(Array.from(STREAM, (b) => Uint8Array.of(b))), 'single bytes')
  let seed = 7
  for (let round = 0; round < 50; round++) {
    const chunks: Uint8Array[] = []
    for (let i = 0; i < STREAM.length; ) {
      seed = (seed * 1103515245 + 12345) >>> 0
      const n = 1 + (seed % 23)
      chunks.push(STREAM.slice(i, i + n))
      i += n
    }
    checkUnits(t, split(chunks), `random chunks, round ${round}`)
  }
})

test('annexb: the SPS of a unit is the NAL unit from its header byte, and gives the codec string', (t) => {
  const [first] = split([STREAM])
  t.deepEqual(Array.from(first!.sps!), SPS.slice(4))
  t.is(codecString(first!.sps!), 'avc1.64001f')
  t.is(codecString(Uint8Array.of(0x67, 0x42, 0xc0, 0x28)), 'avc1.42c028')
  t.throws(() => codecString(Uint8Array.of(0x68, 0x42, 0xc0, 0x28)), { instanceOf: RangeError })
})

test('annexb: flush hands out the last unit once; nothing is lost or invented', (t) => {
  const s = new AnnexBSplitter()
  t.deepEqual(s.push(Uint8Array.from(UNITS[0]!.bytes)), [], 'a unit is complete only when the next begins')
  const last = s.flush()
  t.deepEqual(Array.from(last!.data), UNITS[0]!.bytes)
  t.is(s.flush(), undefined)
  t.is(new AnnexBSplitter().flush(), undefined)
})

test('annexb: a stream that never starts a new unit is refused beyond the bound', (t) => {
  const s = new AnnexBSplitter(1000)
  t.throws(() => s.push(new Uint8Array(1001).fill(0x55)), { instanceOf: RangeError })
})

test('annexb: start code detection', (t) => {
  t.true(isAnnexB(Uint8Array.of(0, 0, 0, 1, 0x67)))
  t.true(isAnnexB(Uint8Array.of(0, 0, 1, 0x67)))
  t.false(isAnnexB(Uint8Array.of(0, 0, 2, 1)))
  t.false(isAnnexB(Uint8Array.of(0x47, 0x40, 0x11)))
  t.false(isAnnexB(new Uint8Array(0)))
})

// ---- Frame order ------------------------------------------------------------

type Ev = string
const show = (evs: OrderEvent<string>[]): Ev[] => evs.map((e) => (e.type === 'frame' ? `f${e.index}` : `lost${e.firstIndex}+${e.count}`))

/** Opens a stream and reads its header at once; returns what became deliverable. */
function arrive(o: FrameOrder<string>, index: number): Ev[] {
  o.opened()
  const { verdict, events } = o.header(index)
  if (verdict !== 'read') throw new Error(`header ${index}: ${verdict}`)
  return show(events)
}

test('order: frames in order are delivered as they complete', (t) => {
  const o = new FrameOrder<string>(4)
  for (let i = 0; i < 5; i++) {
    t.deepEqual(arrive(o, i), [])
    t.deepEqual(show(o.complete(i, `d${i}`)), [`f${i}`])
  }
  t.is(o.next, 5)
  t.is(o.held, 0)
})

test('order: a frame completing early is held until the earlier one completes', (t) => {
  const o = new FrameOrder<string>(4)
  arrive(o, 0)
  arrive(o, 1)
  arrive(o, 2)
  t.deepEqual(show(o.complete(2, 'c')), [])
  t.deepEqual(show(o.complete(1, 'b')), [])
  t.is(o.held, 2)
  t.is(o.receiving, 1)
  const evs = o.complete(0, 'a')
  t.deepEqual(show(evs), ['f0', 'f1', 'f2'])
  t.deepEqual(
    evs.map((e) => (e.type === 'frame' ? e.frame : '')),
    ['a', 'b', 'c'],
  )
  t.is(o.held, 0)
})

test('order: a reset stream is a lost frame, reported before the next delivered one', (t) => {
  const o = new FrameOrder<string>(4)
  arrive(o, 0)
  arrive(o, 1)
  arrive(o, 2)
  t.deepEqual(show(o.complete(2, 'c')), [])
  t.deepEqual(show(o.complete(0, 'a')), ['f0'])
  t.deepEqual(show(o.reset(1)), ['lost1+1', 'f2'])
  // Resets next to each other make one run.
  arrive(o, 3)
  arrive(o, 4)
  arrive(o, 5)
  t.deepEqual(show(o.reset(4)), [])
  t.deepEqual(show(o.reset(3)), ['lost3+2'])
  t.deepEqual(show(o.complete(5, 'f')), ['f5'])
})

test('order: a never-seen frame is lost once a frame ≥ i + window arrived and no stream waits for its header', (t) => {
  const o = new FrameOrder<string>(4)
  // Frame 1 never arrives.
  arrive(o, 0)
  t.deepEqual(show(o.complete(0, 'a')), ['f0'])
  for (const i of [2, 3, 4]) {
    arrive(o, i)
    t.deepEqual(show(o.complete(i, String(i))), [], `frame ${i} waits for 1`)
  }
  // 5 = 1 + window arrives, but another opened stream has not told its index yet: it may be frame 1.
  o.opened()
  arrive(o, 5)
  t.is(o.awaitingHeader, 1)
  t.deepEqual(show(o.complete(5, '5')), [])
  // That stream fails before its header: now 1 is lost.
  t.deepEqual(show(o.reset(undefined)), ['lost1+1', 'f2', 'f3', 'f4', 'f5'])
})

test('order: the window rule reaches only as far as the highest index allows', (t) => {
  const o = new FrameOrder<string>(4)
  // 0..2 never seen; 6 arrives: 0, 1, 2 are lost (6 ≥ i + 4 for i ≤ 2), 3..5 may still come.
  t.deepEqual(arrive(o, 6), ['lost0+3'])
  t.deepEqual(arrive(o, 4), [])
  t.deepEqual(show(o.complete(4, '4')), [])
  // 8 arrives: 3 is lost (8 ≥ 3 + 4) and the held 4 goes out; 5 is lost only once 9 arrives.
  t.deepEqual(arrive(o, 8), ['lost3+1', 'f4'])
  t.is(o.next, 5)
  t.deepEqual(arrive(o, 9), ['lost5+1'])
  t.is(o.next, 6)
})

test('order: a header far ahead is one lost run, not a loop over every index', (t) => {
  const o = new FrameOrder<string>(16)
  const far = 1e12
  t.deepEqual(arrive(o, far), [`lost0+${far - 15}`])
  t.deepEqual(show(o.complete(far, 'x')), [])
  t.deepEqual(show(o.finish()), ['lost999999999985+15', `f${far}`])
})

test('order: stale and duplicate headers', (t) => {
  const o = new FrameOrder<string>(4)
  arrive(o, 0)
  o.complete(0, 'a')
  o.opened()
  t.is(o.header(0).verdict, 'stale')
  arrive(o, 1)
  o.opened()
  t.is(o.header(1).verdict, 'duplicate')
  t.is(o.awaitingHeader, 0)
})

test('order: finish hands out held frames and reports the gaps and unfinished frames', (t) => {
  const o = new FrameOrder<string>(8)
  arrive(o, 0)
  arrive(o, 1)
  arrive(o, 3)
  arrive(o, 4)
  o.complete(1, 'b')
  o.complete(4, 'e')
  // 0 still receiving, 2 never seen, 3 receiving.
  t.deepEqual(show(o.finish()), ['lost0+1', 'f1', 'lost2+2', 'f4'])
  t.deepEqual(show(o.finish()), [])
})

test('order: completes and resets of unknown or settled frames are ignored', (t) => {
  const o = new FrameOrder<string>(4)
  t.deepEqual(show(o.complete(3, 'x')), [])
  t.deepEqual(show(o.reset(3)), [])
  arrive(o, 0)
  t.deepEqual(show(o.complete(0, 'a')), ['f0'])
  t.deepEqual(show(o.complete(0, 'a')), [])
})

// ---- Wire -------------------------------------------------------------------

test('wire: input events encode as the 12 bytes of PROTOCOL.md §9.5', (t) => {
  const hex = (e: InputEvent): string => Buffer.from(encodeInput(e)).toString('hex')
  t.is(hex({ type: 'keyDown', code: 0x01020304 }), '010102030400000000000000')
  t.is(hex({ type: 'keyUp', code: 65 }), '020000004100000000000000')
  t.is(hex({ type: 'mouseMove', dx: -1, dy: 2 }), '03ffffffff00000002000000')
  t.is(hex({ type: 'mouseMoveAbsolute', x: 65535, y: 256 }), '04ffff010000000000000000')
  t.is(hex({ type: 'mouseButton', button: 3, down: true }), '050301000000000000000000')
  t.is(hex({ type: 'scroll', dx: -120, dy: 240 }), '06ff8800f000000000000000')
  t.is(hex({ type: 'gamepadButtons', pad: 1, buttons: 0x4001 }), '070100004001000000000000')
  t.is(hex({ type: 'gamepadAxis', pad: 2, axis: 4, value: -32768 }), '080204800000000000000000')
  const bad: unknown[] = [
    { type: 'keyDown', code: -1 },
    { type: 'keyDown', code: 2 ** 32 },
    { type: 'keyDown', code: 1.5 },
    { type: 'mouseMoveAbsolute', x: 65536, y: 0 },
    { type: 'scroll', dx: 40000, dy: 0 },
    { type: 'mouseButton', button: 1 },
    { type: 'gamepadAxis', pad: 0, axis: 6, value: 0 },
    { type: 'teleport' },
    null,
  ]
  for (const e of bad) {
    const err = t.throws(() => encodeInput(e as InputEvent))
    t.true(isPunktfunkError(err, 'ERR_PF_INVALID_ARG'), `${JSON.stringify(e)} is refused with ERR_PF_INVALID_ARG`)
  }
})

test('wire: control messages, Welcome, frame headers and keyframe requests', (t) => {
  t.deepEqual(Array.from(encodeMessage(17, Uint8Array.of(9, 8))), [17, 0, 2, 9, 8])
  t.deepEqual(Array.from(keyframeRequestBody(7)), [0, 0, 0, 0, 0, 0, 0, 7])
  t.throws(() => encodeMessage(17, new Uint8Array(1025)), { instanceOf: RangeError })

  const w = new Uint8Array(26)
  w.set(Array.from({ length: 16 }, (_, i) => i))
  new DataView(w.buffer).setUint32(16, 16 << 20)
  new DataView(w.buffer).setUint32(20, 50_000)
  new DataView(w.buffer).setUint16(24, 16)
  t.deepEqual(decodeWelcome(w), { sessionId: '000102030405060708090a0b0c0d0e0f', maxFrameBytes: 16 << 20, grantedKbps: 50_000, window: 16 })
  t.true(isPunktfunkError(t.throws(() => decodeWelcome(new Uint8Array(25))), 'ERR_PF_PROTOCOL'))

  const h = new Uint8Array(24)
  const v = new DataView(h.buffer)
  h[0] = 1
  h[1] = 1
  v.setUint32(4, 1000)
  v.setBigUint64(8, 42n)
  v.setBigUint64(16, 1_765_000_000_000_000n)
  t.deepEqual(decodeFrameHeader(h, 1000), { keyframe: true, length: 1000, index: 42, pts: 1_765_000_000_000_000 })
  t.true(isPunktfunkError(t.throws(() => decodeFrameHeader(h, 999)), 'ERR_PF_PROTOCOL'), 'a frame above maxFrameBytes is a protocol error')
  h[0] = 2
  t.true(isPunktfunkError(t.throws(() => decodeFrameHeader(h, 1000)), 'ERR_PF_PROTOCOL'), 'an unknown version is a protocol error')

  // The host's own vector (frame_header in the core): index 0x0102030405060708 is beyond 2^53.
  const vector = Uint8Array.from(Buffer.from('01010000000005dc010203040506070800060a24181e4000', 'hex'))
  t.true(isPunktfunkError(t.throws(() => decodeFrameHeader(vector, 1 << 20)), 'ERR_PF_PROTOCOL'), 'an index beyond 2^53 is a protocol error')
  vector.fill(0, 8, 16)
  vector[15] = 9
  t.deepEqual(decodeFrameHeader(vector, 1 << 20), { keyframe: true, length: 1500, index: 9, pts: 1_700_000_000_000_000 })
})

test('annexb: reset forgets a unit cut short by a gap', (t) => {
  const s = new AnnexBSplitter()
  t.deepEqual(s.push(STREAM.subarray(0, 20)), [])
  s.reset()
  // The stream resumes at the fourth unit (delimiter, SPS, PPS, IDR).
  const rest = Uint8Array.from(UNITS.slice(3).flatMap((u) => u.bytes))
  const got = [...s.push(rest), s.flush()!]
  t.deepEqual(
    got.map((au) => Array.from(au.data)),
    UNITS.slice(3).map((u) => u.bytes),
  )
})
