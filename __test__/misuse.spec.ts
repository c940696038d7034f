// Bad input at every surface of the SDK: wrong types, numbers the addon's
// integer types cannot hold, and every call after close. Each must give a
// PunktfunkError with a stable code (never a crash, a hang or a wrapped
// value), and the process must go on working. errors.spec.ts and
// close.spec.ts cover the first layer of this (argument types of submits,
// option ranges, the basic calls after close); this file covers the rest.

import test, { type ExecutionContext } from 'ava'

import { createLoopbackPair, createUdpSession, generateSecret, PunktfunkError, type Session } from '../index'
import { closeAfter, within } from './helpers'

const invalid = { instanceOf: PunktfunkError, code: 'ERR_PF_INVALID_ARG' } as const
const keys = { secret: generateSecret() }

/** Values that are not usable numbers, whatever the range. */
const NOT_NUMBERS: unknown[] = [Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY, 10n, '10', null, {}, [1]]

/** A value for a failure message (JSON, with BigInts). */
const show = (v: unknown): string => JSON.stringify(v, (_, x: unknown) => (typeof x === 'bigint' ? `${x}n` : x)) ?? String(v)

/** A loose view of an object, for calling its methods with wrong types. */
const loose = (o: object): Record<string, (...args: unknown[]) => unknown> =>
  o as unknown as Record<string, (...args: unknown[]) => unknown>

/** Sends one frame from `host` and checks that `client` gets it: the pair still works. */
async function stillStreams(t: ExecutionContext, host: Session, client: Session, text = 'still working'): Promise<void> {
  await host.submitFrame(Buffer.from(text))
  for (;;) {
    const ev = await within(10_000, 'frame after misuse', client.nextEvent())
    if (ev === null) return void t.fail('the session ended')
    if (ev.type === 'frame') return void t.is(ev.data.toString(), text)
  }
}

test('numbers beyond the addon integer types are refused, not wrapped', async (t) => {
  // Each of these crossed into a u32 as its low 32 bits: 2 ** 32 + 10 % FEC ran as 10 %.
  const big = 2 ** 32
  const cases: Array<[Record<string, unknown>, RegExp]> = [
    [{ fec: { percent: big + 10 } }, /fec\.percent/],
    [{ fec: { maxDataShards: big + 1 } }, /fec\.maxDataShards/],
    [{ fec: { shardPayload: big + 1344 } }, /fec\.shardPayload/],
    [{ maxFramesInFlight: big + 8 }, /maxFramesInFlight/],
    [{ pacing: { burstBytes: big + 1000 } }, /pacing\.burstBytes/],
    [{ pacing: { chunkBytes: big + 1000 } }, /pacing\.chunkBytes/],
    [{ pacing: { ratePercent: big + 200 } }, /pacing\.ratePercent/],
    [{ impairment: { reorderDepth: big + 3 } }, /impairment\.reorderDepth/],
    [{ maxIndexLag: 2 ** 53 }, /maxIndexLag/],
  ]
  for (const [opts, name] of cases) {
    const e = t.throws(() => createLoopbackPair(opts), invalid, JSON.stringify(opts))
    t.regex(e?.message ?? '', name)
  }
  for (const bad of NOT_NUMBERS) {
    t.throws(() => createLoopbackPair({ maxFrameBytes: bad as number }), invalid, `maxFrameBytes ${String(bad)}`)
    t.throws(() => createLoopbackPair({ fec: { percent: bad as number } }), invalid, `fec.percent ${String(bad)}`)
  }
  const { host, client } = closeAfter(t, createLoopbackPair())
  await stillStreams(t, host, client)
})

test('durations out of range are refused, not a native panic', async (t) => {
  // 1e300 ms overflowed the conversion to a Duration (a caught panic, ERR_PF_INTERNAL);
  // a negative coalescing window was quietly taken as 0.
  const cases: Array<[Record<string, unknown>, RegExp]> = [
    [{ frameTimeoutMs: 1e300 }, /frameTimeoutMs/],
    [{ frameTimeoutMs: Number.MAX_VALUE }, /frameTimeoutMs/],
    [{ frameTimeoutMs: -5 }, /frameTimeoutMs/],
    [{ recvCoalesceUs: 1e300 }, /recvCoalesceUs/],
    [{ recvCoalesceUs: -1 }, /recvCoalesceUs/],
  ]
  for (const [opts, name] of cases) {
    const e = t.throws(() => createLoopbackPair(opts), invalid, JSON.stringify(opts))
    t.regex(e?.message ?? '', name)
  }
  const any = createUdpSession as unknown as (o: unknown) => Session
  t.throws(() => any({ role: 'client', bind: '127.0.0.1:0', keys, frameTimeoutMs: 1e300 }), invalid)
  const { host, client } = closeAfter(t, createLoopbackPair())
  await stillStreams(t, host, client)
})

test('session methods refuse every kind of wrong value', async (t) => {
  const { host, client } = closeAfter(t, createLoopbackPair())
  const h = loose(host)
  const c = loose(client)
  const data = Buffer.from('x')
  for (const bad of [...NOT_NUMBERS, undefined, -1, 1.5, 2 ** 53, 101]) {
    t.throws(() => h.setFecPercent(bad), invalid, `setFecPercent(${String(bad)})`)
  }
  for (const pts of [...NOT_NUMBERS, -1, 0.5, 2 ** 53]) {
    await t.throwsAsync(async () => h.submitFrame(data, { pts }), invalid, `submitFrame pts ${String(pts)}`)
    t.throws(() => h.trySubmitFrame(data, { pts }), invalid, `trySubmitFrame pts ${String(pts)}`)
  }
  for (const options of [null, 'x', 5, [1], { keyframe: 1 }, { keyframe: null }]) {
    t.throws(() => h.trySubmitFrame(data, options), invalid, `trySubmitFrame options ${show(options)}`)
  }
  for (const bad of [new Float32Array(4), new DataView(new ArrayBuffer(4)), new ArrayBuffer(4), 10n]) {
    t.throws(() => h.trySubmitFrame(bad), invalid, `frame data ${Object.prototype.toString.call(bad)}`)
  }
  for (const peer of [null, undefined, {}, ['127.0.0.1:1'], 10n]) {
    t.throws(() => c.connect(peer), invalid, `connect(${String(peer)})`)
  }
  for (const options of [null, 'x', { onLost: 5 }]) {
    const frames = client.frames(options as never)
    await t.throwsAsync(frames.next(), invalid, `frames(${show(options)})`)
  }
  // A bad call changes nothing: the next frame is index 0.
  await host.submitFrame(Buffer.from('first'))
  const ev = await within(5_000, 'frame', client.nextEvent())
  t.true(ev?.type === 'frame' && ev.index === 0 && ev.data.toString() === 'first', JSON.stringify(ev))
})

test('bad UDP peers are typed errors and the session keeps its socket', async (t) => {
  const s = createUdpSession({ role: 'host', bind: '127.0.0.1:0', keys })
  const client = createUdpSession({ role: 'client', bind: '127.0.0.1:0', keys })
  closeAfter(t, { s, client })
  for (const peer of ['', 'localhost:1', '127.0.0.1:99999', '127.0.0.1', `${'9'.repeat(100)}:1`]) {
    t.throws(() => s.connect(peer), invalid, peer)
  }
  t.throws(() => s.connect('[::1]:9'), { instanceOf: PunktfunkError, code: 'ERR_PF_IO' }, 'an IPv6 peer for an IPv4 socket')
  t.is(s.peerAddress, null, 'no peer after failed connects')
  s.connect(client.localAddress ?? '')
  await stillStreams(t, s, client)
})
