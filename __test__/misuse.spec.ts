// Bad input at every surface of the SDK: wrong types, numbers the addon's
// integer types cannot hold, and every call after close. Each must give a
// PunktfunkError with a stable code (never a crash, a hang or a wrapped
// value), and the process must go on working. errors.spec.ts and
// close.spec.ts cover the first layer of this (argument types of submits,
// option ranges, the basic calls after close); this file covers the rest.

import { createSocket } from 'node:dgram'
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

import test, { type ExecutionContext } from 'ava'

import {
  Client,
  createLoopbackPair,
  createUdpSession,
  generateSecret,
  Host,
  loadIdentity,
  PunktfunkError,
  type ClientMessage,
  type HostSession,
  type InputEvent,
  type Session,
} from '../index'
import { closeAfter, within } from './helpers'

const invalid = { instanceOf: PunktfunkError, code: 'ERR_PF_INVALID_ARG' } as const
const closedError = { instanceOf: PunktfunkError, code: 'ERR_PF_CLOSED' } as const
const keys = { secret: generateSecret(), context: 'misuse test' }

/** Values that are not usable numbers, whatever the range. */
const NOT_NUMBERS: unknown[] = [Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY, 10n, '10', null, {}, [1]]

/** A value for a failure message (JSON, with BigInts). */
const show = (v: unknown): string => JSON.stringify(v, (_, x: unknown) => (typeof x === 'bigint' ? `${x}n` : x)) ?? String(v)

/** A loose view of an object, for calling its methods with wrong types. */
const loose = (o: object): Record<string, (...args: unknown[]) => unknown> =>
  o as unknown as Record<string, (...args: unknown[]) => unknown>

function tempDir(t: ExecutionContext): string {
  const d = mkdtempSync(join(tmpdir(), 'punktfunk-misuse-'))
  t.teardown(() => rmSync(d, { recursive: true, force: true }))
  return d
}

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

test('a closed UDP session releases its port and keeps its final figures', async (t) => {
  const client = createUdpSession({ role: 'client', bind: '127.0.0.1:0', keys })
  const host = createUdpSession({ role: 'host', bind: '127.0.0.1:0', peer: client.localAddress ?? '', keys })
  closeAfter(t, { client, host })
  client.connect(host.localAddress ?? '')
  await stillStreams(t, host, client)
  const before = { local: host.localAddress, peer: host.peerAddress, buffers: host.socketBuffers(), stats: host.stats() }
  const clientAddress = client.localAddress ?? ''
  await Promise.all([host.close(), client.close()])

  t.deepEqual(
    { local: host.localAddress, peer: host.peerAddress, buffers: host.socketBuffers(), stats: host.stats() },
    before,
    'addresses, buffer sizes and counters read the same after close',
  )
  t.true(before.stats.sendSyscalls > 0, 'the socket counters are kept, not reset')
  t.is(await client.nextEvent(), null)
  t.true((await client.events().next()).done)
  t.true((await client.frames().next()).done)
  t.throws(() => client.connect(clientAddress), closedError)

  // The port is free again at once (it used to stay bound until garbage collection).
  const again = createUdpSession({ role: 'client', bind: clientAddress, keys })
  t.is(again.localAddress, clientAddress)
  await again.close()
  const sock = createSocket('udp4')
  const [ip, port] = [clientAddress.slice(0, clientAddress.lastIndexOf(':')), Number(clientAddress.split(':').pop())]
  await t.notThrowsAsync(
    new Promise<void>((resolve, reject) => {
      sock.once('error', reject)
      sock.bind(port, ip, resolve)
    }),
  )
  sock.close()
})

test('identity paths: empty is refused, unusable is ERR_PF_IO', (t) => {
  const dir = tempDir(t)
  const file = join(dir, 'file')
  writeFileSync(file, 'not a directory')
  const e = t.throws(() => loadIdentity({ identityDir: '' }), invalid)
  t.regex(e?.message ?? '', /identityDir must not be empty/)
  t.false(existsSync(join(process.cwd(), 'host-key.der')), 'no key was written into the current directory')
  t.throws(() => loadIdentity({ identityDir: join(dir, 'a\0b') }), invalid)
  t.throws(() => loadIdentity({ identityDir: join(file, 'identity') }), { instanceOf: PunktfunkError, code: 'ERR_PF_IO' })
  for (const bad of [null, 'dir', 5, []]) t.throws(() => loadIdentity(bad as never), invalid, `options ${String(bad)}`)
  for (const bad of [null, 5, {}, 10n]) {
    t.throws(() => loadIdentity({ identityDir: bad as never }), invalid, `identityDir ${String(bad)}`)
  }
  const id = loadIdentity({ identityDir: join(dir, 'ok') })
  t.true(id.created && /^[0-9a-f]{64}$/.test(id.fingerprint) && existsSync(join(dir, 'ok')))
})

test('Host.listen and Client.connect refuse bad values before touching the network', async (t) => {
  const dir = tempDir(t)
  const listen = Host.listen as unknown as (o: unknown) => Promise<Host>
  const connect = Client.connect as unknown as (a: unknown, o?: unknown) => Promise<Client>
  for (const port of [...NOT_NUMBERS, -1, 1.5, 70_000, 2 ** 53]) {
    await t.throwsAsync(listen({ port, identityDir: dir }), invalid, `port ${String(port)}`)
  }
  for (const opts of [
    null,
    'x',
    { identityDir: '' },
    { adaptiveFec: { min: 2 ** 32 + 5, max: 2 ** 32 + 50 } },
    { adaptiveFec: { min: 5 } },
    { adaptiveFec: true },
    { maxBitrateKbps: Number.NaN },
    { idleTimeoutMs: Number.POSITIVE_INFINITY },
    { keepaliveMs: 0 },
    { socketBufferBytes: 10n },
    { sendQueue: 2 ** 32 + 1 },
  ]) {
    await t.throwsAsync(listen(opts && typeof opts === 'object' ? { identityDir: dir, bind: '127.0.0.1:0', ...opts } : opts), invalid, show(opts))
  }
  await t.throwsAsync(listen({ bind: '127.0.0.1:0', identityDir: join(dir, 'a\0b') }), invalid, 'a NUL byte in a path')
  const pin = 'ab'.repeat(32)
  for (const [address, opts] of [
    ['127.0.0.1:1', null],
    ['127.0.0.1:1', 'x'],
    ['127.0.0.1:1', { trustOnFirstUse: true, knownHosts: '' }],
    ['127.0.0.1:1', { pin, connectTimeoutMs: Number.NaN }],
    ['127.0.0.1:1', { pin, connectTimeoutMs: Number.POSITIVE_INFINITY }],
    ['127.0.0.1:1', { pin, requestedBitrateKbps: 10n }],
    ['127.0.0.1:1', { pin, recvQueue: 2 ** 32 + 16 }],
    [null, { pin }],
    ['', { pin }],
  ] as Array<[unknown, unknown]>) {
    await t.throwsAsync(connect(address, opts), invalid, `${show(address)} ${show(opts)}`)
  }
})

/** A host and one connected client, closed when the test ends. */
async function pair(t: ExecutionContext, host: Host): Promise<{ session: HostSession; client: Client }> {
  const accepting = host.accept({ timeoutMs: 10_000 })
  const client = await Client.connect(host.address, { pin: host.fingerprint })
  t.teardown(() => client.close())
  const session = await accepting
  if (!session) throw new Error('no session')
  t.teardown(() => session.close())
  return { session, client }
}

test('control-plane calls refuse bad values; bad close arguments close nothing', async (t) => {
  const host = await Host.listen({ bind: '127.0.0.1:0', identityDir: tempDir(t) })
  t.teardown(() => host.close())
  for (const opts of [null, 'x', { timeoutMs: 0 }, { timeoutMs: -1 }, ...NOT_NUMBERS.map((timeoutMs) => ({ timeoutMs }))]) {
    await t.throwsAsync(loose(host).accept(opts) as Promise<unknown>, invalid, `accept(${String(opts)})`)
  }
  const { session, client } = await pair(t, host)

  // Input fields cross as i32/u32: values beyond them used to wrap (-1 became key 4294967295).
  const c = loose(client)
  const badInputs: unknown[] = [
    { type: 'keyDown', code: -1 },
    { type: 'keyDown', code: 2 ** 32 + 30 },
    { type: 'keyUp', code: Number.NaN },
    { type: 'mouseMove', dx: 2 ** 31, dy: 0 },
    { type: 'mouseMove', dx: 0, dy: -(2 ** 40) },
    { type: 'mouseMoveAbsolute', x: 2 ** 32 + 5, y: 0 },
    { type: 'mouseMoveAbsolute', x: 0, y: 65_536 },
    { type: 'mouseButton', button: 2 ** 32 + 1, down: true },
    { type: 'mouseButton', button: 1, down: 'yes' },
    { type: 'gamepadButtons', pad: 0, buttons: -1 },
    { type: 'gamepadAxis', pad: 0, axis: 2 ** 32 + 1, value: 0 },
    { type: 'gamepadAxis', pad: 0, axis: 0, value: 2 ** 31 + 7 },
    { type: 'scroll', dx: 10n, dy: 0 },
    { type: 5 },
    null,
    [],
  ]
  for (const ev of badInputs) {
    t.throws(() => c.sendInput(ev), invalid, show(ev))
  }
  for (const bad of [...NOT_NUMBERS, -1, 1.5, 2 ** 53]) {
    t.throws(() => c.requestKeyframe(bad), invalid, `requestKeyframe(${String(bad)})`)
  }
  for (const opts of [
    null,
    'x',
    {},
    { targetKbps: 0 },
    { targetKbps: 2 ** 40 },
    ...NOT_NUMBERS.map((targetKbps) => ({ targetKbps })),
    { targetKbps: 1000, durationMs: 0 },
    { targetKbps: 1000, durationMs: Number.POSITIVE_INFINITY },
  ]) {
    await t.throwsAsync(c.speedTest(opts) as Promise<unknown>, invalid, `speedTest(${show(opts)})`)
  }

  // Bad close arguments reject and close nothing (the session used to be marked
  // closed while its threads and socket ran on).
  const s = loose(session)
  for (const [reason, code] of [['x', -1], ['x', 2 ** 32 + 4], ['x', 1.5], ['x', Number.NaN], [5, 0], [null, 0]]) {
    await t.throwsAsync(s.close(reason, code) as Promise<unknown>, invalid, `session.close(${String(reason)}, ${String(code)})`)
    await t.throwsAsync(c.close(reason, code) as Promise<unknown>, invalid, `client.close(${String(reason)}, ${String(code)})`)
  }
  await t.throwsAsync(loose(host).close(5) as Promise<unknown>, invalid)
  t.false(session.closed || client.closed)
  t.is(client.closeReason, null)

  // Everything still works: input arrives exactly as sent, frames flow.
  const sent: InputEvent[] = [
    { type: 'keyDown', code: 4_294_967_295 },
    { type: 'mouseMove', dx: -2_147_483_648, dy: 2_147_483_647 },
    { type: 'keyUp', code: 0 },
  ]
  for (const ev of sent) client.sendInput(ev)
  const got: InputEvent[] = []
  await within(10_000, 'inputs', (async () => {
    for await (const ev of session.inputs()) {
      got.push(ev)
      if (got.length === sent.length) break
    }
  })())
  // Edges take the reliable stream, motion the datagrams: compare as sets.
  const byJson = (a: unknown, b: unknown): number => JSON.stringify(a).localeCompare(JSON.stringify(b))
  t.deepEqual([...got].sort(byJson), [...sent].sort(byJson), 'only the valid inputs arrived, unchanged')
  await stillStreams(t, session, client)

  // And a valid close goes through with its code and reason.
  await client.close('bye', 4)
  let last: ClientMessage | null = null
  for (let m = await within(10_000, 'message', session.nextMessage()); m; m = await within(10_000, 'message', session.nextMessage())) last = m
  t.deepEqual(last, { type: 'closed', code: 4, reason: 'bye' })
})

test('every control-plane call after close: ERR_PF_CLOSED or the final value', async (t) => {
  const dir = tempDir(t)
  const host = await Host.listen({ bind: '127.0.0.1:0', identityDir: dir })
  t.teardown(() => host.close())
  const { session, client } = await pair(t, host)
  await stillStreams(t, session, client)
  const facts = {
    fingerprint: client.fingerprint,
    granted: client.grantedBitrateKbps,
    peer: session.peer,
    sessionGranted: session.grantedBitrateKbps,
  }
  await client.close('leaving', 4)
  await session.close('done')
  await t.notThrowsAsync(client.close(), 'closing twice is fine')
  await t.notThrowsAsync(session.close())

  // The client.
  t.throws(() => client.sendInput({ type: 'keyDown', code: 1 }), closedError)
  t.throws(() => client.requestKeyframe(0), closedError)
  await t.throwsAsync(client.speedTest({ targetKbps: 1000 }), closedError)
  await t.throwsAsync(client.submitFrame(Buffer.from('x')), closedError)
  t.throws(() => client.poll(), closedError)
  t.is(await client.nextEvent(), null)
  t.true((await client.frames().next()).done)
  t.deepEqual(
    { fingerprint: client.fingerprint, granted: client.grantedBitrateKbps },
    { fingerprint: facts.fingerprint, granted: facts.granted },
  )
  t.deepEqual(client.closeReason, { code: 4, reason: 'leaving' })
  t.is(client.stats().framesCompleted, 1)

  // The host's session.
  await t.throwsAsync(session.submitFrame(Buffer.from('x')), closedError)
  t.throws(() => session.trySubmitFrame(Buffer.from('x')), closedError)
  t.throws(() => session.setFecPercent(20), closedError)
  t.throws(() => session.fecPercent, closedError)
  t.throws(() => session.poll(), closedError)
  t.is(session.pollMessage(), null)
  t.is(await session.nextMessage(), null)
  t.true((await session.messages().next()).done)
  t.true((await session.inputs().next()).done)
  t.deepEqual({ peer: session.peer, sessionGranted: session.grantedBitrateKbps }, { peer: facts.peer, sessionGranted: facts.sessionGranted })
  t.deepEqual(session.closeReason, { code: 4, reason: 'leaving' }, "the client's reason came first")
  t.is(session.stats().framesSubmitted, 1)

  // The host: a pending accept ends promptly with the close, not at its timeout.
  const pending = host.accept({ timeoutMs: 20_000 })
  const started = Date.now()
  await host.close()
  await t.throwsAsync(within(5_000, 'pending accept', pending), closedError)
  t.true(Date.now() - started < 5_000)
  await t.throwsAsync(host.accept(), closedError)
  t.true((await host.sessions().next()).done)
  await t.notThrowsAsync(host.close(), 'closing twice is fine')
  t.regex(host.fingerprint, /^[0-9a-f]{64}$/)
  // The port is free again, and a new host on it serves clients.
  const again = await Host.listen({ bind: host.address, identityDir: dir })
  t.teardown(() => again.close())
  const p = await pair(t, again)
  await stillStreams(t, p.session, p.client)
})
