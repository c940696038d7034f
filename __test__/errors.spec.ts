import test from 'ava'

import {
  createLoopbackPair,
  createUdpSession,
  ERROR_CODES,
  generateSecret,
  isPunktfunkError,
  PunktfunkError,
  RATE_STATES,
  rateStateName,
  type SessionStats,
} from '../index'
import { closeAfter, within } from './helpers'

// The addon and the error mapping as loaded by the package entry (internal API).
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { native } = require('../dist/native.js') as typeof import('../src/native')
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { fromNative } = require('../dist/errors.js') as { fromNative(e: unknown): PunktfunkError }

const invalid = { instanceOf: PunktfunkError, code: 'ERR_PF_INVALID_ARG' } as const
const keys = { secret: generateSecret(), context: 'errors test' }

test('the error codes are the core taxonomy, in C status order', (t) => {
  t.deepEqual([...ERROR_CODES], native().errorCodes())
})

test("the adaptive FEC band the SDK and the CLI state is the core's default", (t) => {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { hostSpec } = require('../dist/cli/host.js') as typeof import('../src/cli/host')
  const d = native().defaults()
  t.true(d.adaptiveFecMin <= d.adaptiveFecMax && d.adaptiveFecMax <= 100)
  t.true(hostSpec.flags.fec!.help.includes(`adaptive ${d.adaptiveFecMin}–${d.adaptiveFecMax},`), hostSpec.flags.fec!.help)
})

test('the rate controller states are the core states, in code order', (t) => {
  t.deepEqual([...RATE_STATES], native().rateStateNames())
  t.is(rateStateName(4), 'steady')
  t.is(rateStateName(0), 'none')
  t.is(rateStateName(99), 'none')
})

test('stats() has exactly the core counters', async (t) => {
  // A compile-time list of every SessionStats key: adding or removing a field
  // without updating the interface breaks the type check or this test.
  const keysOf: Record<keyof SessionStats, true> = {
    framesSubmitted: true,
    framesCompleted: true,
    framesDropped: true,
    packetsSent: true,
    packetsReceived: true,
    packetsSendDropped: true,
    recvDroppedAuth: true,
    recvDroppedReplay: true,
    recvDroppedMalformed: true,
    recvDroppedOutOfBounds: true,
    recvDroppedStale: true,
    packetsRedundant: true,
    fecRecoveredShards: true,
    bytesSent: true,
    bytesReceived: true,
    payloadBytesDelivered: true,
    sendSyscalls: true,
    recvSyscalls: true,
    recvWaitSyscalls: true,
    keyRotations: true,
    probePacketsReceived: true,
    recvDroppedForeign: true,
    congestionEvents: true,
    estimatedKbps: true,
    targetKbps: true,
    rttUs: true,
    queueDelayUs: true,
    rateState: true,
    pacingKbps: true,
    deliveryKbps: true,
    competingFlow: true,
    feedbackReports: true,
    feedbackDropped: true,
    staleReports: true,
    delayBaseResets: true,
    randomLossReports: true,
  }
  const { host } = closeAfter(t, createLoopbackPair())
  const stats = host.stats()
  t.deepEqual(Object.keys(stats).sort(), Object.keys(keysOf).sort())
  for (const v of Object.values(stats)) t.is(typeof v, 'number')
})

test('wrong argument types give ERR_PF_INVALID_ARG, not crashes', async (t) => {
  const { host, client } = closeAfter(t, createLoopbackPair())
  const anyHost = host as unknown as Record<string, (...a: unknown[]) => unknown>
  for (const bad of ['text', 42, null, undefined, [1, 2], { length: 3 }]) {
    await t.throwsAsync(async () => anyHost.submitFrame(bad), invalid, `data ${String(bad)}`)
    t.throws(() => anyHost.trySubmitFrame(bad), invalid)
  }
  const data = Buffer.from('ok')
  for (const opts of [null, 'x', { pts: -1 }, { pts: 1.5 }, { pts: 2 ** 60 }, { pts: '3' }, { keyframe: 'yes' }]) {
    await t.throwsAsync(async () => anyHost.submitFrame(data, opts), invalid, JSON.stringify(opts))
  }
  t.throws(() => anyHost.setFecPercent(101), invalid)
  t.throws(() => anyHost.setFecPercent(-1), invalid)
  t.throws(() => anyHost.setFecPercent('10'), invalid)
  t.throws(() => (client as unknown as { connect(p: unknown): void }).connect('127.0.0.1:1'), invalid, 'loopback cannot connect')
  t.throws(() => (client as unknown as { connect(p: unknown): void }).connect(5), invalid)
  // A Uint8Array (not a Buffer) is accepted.
  await host.submitFrame(new Uint8Array([1, 2, 3]))
  const ev = await within(5_000, 'frame', client.nextEvent())
  t.deepEqual(ev?.type === 'frame' ? [...ev.data] : [], [1, 2, 3])
})

test('out-of-range options give ERR_PF_INVALID_ARG naming the option', (t) => {
  const cases: Array<[Record<string, unknown>, RegExp]> = [
    [{ fec: { percent: 101 } }, /fec\.percent/],
    [{ fec: { percent: 1.5 } }, /fec\.percent/],
    [{ fec: { shardPayload: 63 } }, /fec\.shardPayload/],
    [{ fec: { shardPayload: 1001 } }, /fec\.shardPayload/],
    [{ fec: { maxDataShards: 0 } }, /fec\.maxDataShards/],
    [{ fec: 'x' }, /fec must be an object/],
    [{ maxFrameBytes: 0 }, /maxFrameBytes/],
    [{ maxFrameBytes: 2 ** 40 }, /maxFrameBytes/],
    [{ maxFramesInFlight: 0 }, /maxFramesInFlight/],
    [{ frameTimeoutMs: 0 }, /frameTimeoutMs/],
    [{ recvCoalesceUs: 20_000 }, /recvCoalesceUs/],
    [{ sendQueue: 0 }, /sendQueue/],
    [{ recvQueue: 5000 }, /recvQueue/],
    [{ backpressure: 'drop' }, /backpressure/],
    [{ keys: { secret: Buffer.alloc(8) } }, /at least 16 bytes/],
    [{ keys: { secret: 'hunter2hunter2hunter2' } }, /keys\.secret/],
    [{ keys: { secret: generateSecret() } }, /key context is empty/],
    [{ keys: { secret: generateSecret(), context: '' } }, /key context is empty/],
    [{ impairment: { lossPercent: 150 } }, /impairment\.lossPercent/],
    [{ impairment: { burst: { goodToBadPercent: 1 } } }, /badToGoodPercent is required/],
    [{ impairment: { seed: -1 } }, /impairment\.seed/],
    [{ pacing: 'fast' }, /pacing must be an object/],
    [{ pacing: { ratePercent: 50 } }, /pacing\.ratePercent/],
    [{ pacing: { chunkBytes: 0 } }, /pacing\.burstBytes and pacing\.chunkBytes/],
    [{ pacing: { fixedRateMbps: -1 } }, /pacing\.fixedRateMbps/],
    [{ udpOffload: 'sometimes' }, /udpOffload must be 'auto', 'on' or 'off'/],
  ]
  for (const [opts, message] of cases) {
    const e = t.throws(() => createLoopbackPair(opts), invalid, JSON.stringify(opts))
    t.regex(e?.message ?? '', message)
  }
})

test('oversize frames are refused with ERR_PF_INVALID_ARG and the session goes on', async (t) => {
  const { host, client } = closeAfter(t, createLoopbackPair({ maxFrameBytes: 1000 }))
  const e = await t.throwsAsync(host.submitFrame(Buffer.alloc(1001)), invalid)
  t.regex(e?.message ?? '', /exceeds maxFrameBytes 1000/)
  t.throws(() => host.trySubmitFrame(Buffer.alloc(5000)), invalid)
  await host.submitFrame(Buffer.alloc(1000, 7))
  const ev = await within(5_000, 'frame', client.nextEvent())
  t.is(ev?.type === 'frame' ? ev.data.length : -1, 1000)
})

test('bad UDP parameters give typed errors', (t) => {
  const any = createUdpSession as unknown as (o: unknown) => unknown
  t.throws(() => any(undefined), invalid)
  t.throws(() => any({ role: 'server', keys }), invalid)
  t.throws(() => any({ role: 'host' }), invalid, 'keys are required over UDP')
  t.throws(() => any({ role: 'host', keys, bind: 'localhost' }), invalid)
  t.throws(() => any({ role: 'host', keys, bind: 5 }), invalid)
  t.throws(() => any({ role: 'host', keys, peer: 'nowhere:1' }), invalid)
  t.throws(() => any({ role: 'host', keys, socketBufferBytes: -1 }), invalid)
  // Binding a non-local address is an OS error.
  t.throws(() => any({ role: 'host', keys, bind: '192.0.2.1:0' }), { instanceOf: PunktfunkError, code: 'ERR_PF_IO' })
})

test('a host without a peer refuses to send until connected', async (t) => {
  const client = createUdpSession({ role: 'client', bind: '127.0.0.1:0', keys })
  const host = createUdpSession({ role: 'host', bind: '127.0.0.1:0', keys })
  closeAfter(t, { client, host })
  await t.throwsAsync(host.submitFrame(Buffer.from('x')), { code: 'ERR_PF_INVALID_ARG', message: /connect/ })
  host.connect(client.localAddress ?? '')
  await host.submitFrame(Buffer.from('now'))
  const ev = await within(5_000, 'frame', client.nextEvent())
  t.is(ev?.type === 'frame' ? ev.data.toString() : '', 'now')
  t.throws(() => host.poll(), invalid, 'hosts do not receive unless asked to')
})

test('the addon throws its stable code as the error property, not inside the message', async (t) => {
  const sync = t.throws(() => native().createUdpSession('host', 'not an address', null, 0, config(), () => {}))
  t.is((sync as Error & { code?: string }).code, 'ERR_PF_INVALID_ARG')
  t.notRegex(sync?.message ?? '', /ERR_PF/)
  t.regex(sync?.message ?? '', /bind address/)
  // Async work (on the libuv pool) rejects the same way: nothing listens on
  // a fresh port, so connecting times out.
  const probe = createUdpSession({ role: 'client', keys, bind: '127.0.0.1:0' })
  const port = probe.localAddress
  await probe.close()
  const d = native().defaults()
  const opts = {
    pin: '00'.repeat(32),
    trustOnFirstUse: false,
    requestedBitrateKbps: 0,
    connectTimeoutMs: 300,
    idleTimeoutMs: 1000,
    keepaliveMs: 500,
    params: d.params,
    socketBuffer: 0,
    recvQueue: 8,
  }
  const async = await t.throwsAsync(native().clientConnect(port ?? '', opts, () => {}))
  t.is((async as Error & { code?: string }).code, 'ERR_PF_TIMEOUT')
  t.notRegex(async?.message ?? '', /^ERR_PF/)
})

function config(): Parameters<ReturnType<typeof native>['createUdpSession']>[4] {
  const d = native().defaults()
  return { secret: Buffer.alloc(32, 1), context: Buffer.alloc(0), params: d.params, sendQueue: 4, recvQueue: 4, receive: true }
}

test('a native panic becomes ERR_PF_INTERNAL and the process lives on', async (t) => {
  // The panic message still goes to stderr; skip the backtrace in test logs.
  process.env.RUST_BACKTRACE = '0'
  const e = t.throws(() => {
    try {
      native().debugPanic()
    } catch (err) {
      // The SDK maps native errors the same way for every call.
      throw fromNative(err)
    }
  })
  t.true(isPunktfunkError(e, 'ERR_PF_INTERNAL'))
  t.regex(e?.message ?? '', /panic/)
  const { host, client } = closeAfter(t, createLoopbackPair())
  await host.submitFrame(Buffer.from('still alive'))
  const ev = await within(5_000, 'frame', client.nextEvent())
  t.is(ev?.type === 'frame' ? ev.data.toString() : '', 'still alive')
})

test('backpressure: reject fails fast with ERR_PF_QUEUE_FULL, wait keeps order', async (t) => {
  const r = closeAfter(t, createLoopbackPair({ sendQueue: 1, backpressure: 'reject' }))
  const big = Buffer.alloc(4_000_000, 1)
  const outcomes = await Promise.allSettled(Array.from({ length: 20 }, () => r.host.submitFrame(big)))
  const full = outcomes.filter((o) => o.status === 'rejected')
  t.true(full.length > 0, 'a one-frame queue fills under 80 MB at once')
  for (const o of full) t.is((o as PromiseRejectedResult).reason.code, 'ERR_PF_QUEUE_FULL')
  t.false(
    Array.from({ length: 20 }).every(() => r.host.trySubmitFrame(big)),
    'trySubmitFrame reports a full queue with false',
  )

  const w = closeAfter(t, createLoopbackPair({ sendQueue: 1, recvQueue: 64 }))
  const n = 40
  await Promise.all(Array.from({ length: n }, (_, i) => w.host.submitFrame(Buffer.alloc(100_000 + i, i), { pts: i })))
  const pts: number[] = []
  while (pts.length < n) {
    const ev = await within(10_000, 'ordered frame', w.client.nextEvent())
    if (ev?.type === 'frame') pts.push(ev.pts)
    else t.fail(`unexpected ${JSON.stringify(ev)}`)
  }
  t.deepEqual(pts, Array.from({ length: n }, (_, i) => i), 'concurrent waiting submits keep call order')
})
