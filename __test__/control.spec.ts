import { spawnSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { createSocket } from 'node:dgram'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

import test from 'ava'

import { AXIS, BUTTON, Client, Host, loadIdentity, PunktfunkError, rateStateName, type ClientMessage, type InputEvent } from '../index'
import { connected, pseudoRandom, sha256, within } from './helpers'

function tempDir(t: { teardown(f: () => void): void }): string {
  const d = mkdtempSync(join(tmpdir(), 'punktfunk-ctl-'))
  t.teardown(() => rmSync(d, { recursive: true, force: true }))
  return d
}


test('a pinned client gets frames; input, keyframe requests and close reasons reach the host', async (t) => {
  const host = await Host.listen({ bind: '127.0.0.1:0', identityDir: tempDir(t) })
  t.teardown(() => host.close())
  t.regex(host.fingerprint, /^[0-9a-f]{64}$/)
  const accepting = host.accept({ timeoutMs: 10_000 })
  const client = await Client.connect(host.address, { pin: host.fingerprint, requestedBitrateKbps: 80_000 })
  const session = await accepting
  if (!session) return t.fail('no session')
  t.teardown(() => session.close())
  t.is(session.grantedBitrateKbps, 80_000)
  t.is(client.grantedBitrateKbps, 80_000)
  t.is(client.fingerprint, host.fingerprint)

  const frames = [10, 1_500_000, 70_000].map((n, i) => pseudoRandom(n, 70 + i))
  for (const [i, f] of frames.entries()) await session.submitFrame(f, { pts: i, keyframe: i === 0 })
  const got: string[] = []
  for await (const f of client.frames()) {
    got.push(sha256(f.data))
    if (got.length === frames.length) break
  }
  t.deepEqual(got, frames.map(sha256))

  const inputs: InputEvent[] = [
    { type: 'keyDown', code: 30 },
    { type: 'mouseMove', dx: 5, dy: -2 },
    { type: 'mouseMoveAbsolute', x: 1000, y: 65535 },
    { type: 'mouseButton', button: 1, down: true },
    { type: 'scroll', dx: 0, dy: -120 },
    { type: 'gamepadButtons', pad: 0, buttons: (BUTTON.A ?? 0) | (BUTTON.START ?? 0) },
    { type: 'gamepadAxis', pad: 0, axis: AXIS.RIGHT_TRIGGER ?? 5, value: 32767 },
    { type: 'keyUp', code: 30 },
  ]
  for (const ev of inputs) client.sendInput(ev)
  client.requestKeyframe(2)
  const seen: ClientMessage[] = []
  t.is(typeof session.inputs, 'function')
  await within(10_000, 'client messages', (async () => {
    for await (const m of session.messages()) {
      if (m.type === 'fecChanged' || m.type === 'targetBitrate') continue
      seen.push(m)
      if (seen.length === inputs.length + 1) break
    }
  })())
  const events = seen.flatMap((m) => (m.type === 'input' ? [m.event] : []))
  t.deepEqual([...events].sort(byJson), [...inputs].sort(byJson), 'every input arrives exactly once')
  t.deepEqual(
    events.filter((e) => ['keyDown', 'keyUp', 'mouseButton', 'gamepadButtons'].includes(e.type)),
    [inputs[0], inputs[3], inputs[5], inputs[7]],
    'edges in order',
  )
  t.true(seen.some((m) => m.type === 'keyframeRequest' && m.firstLost === 2))

  await client.close('user quit', 4)
  const last = await within(10_000, 'closed message', session.nextMessage())
  t.deepEqual(last, { type: 'closed', code: 4, reason: 'user quit' })
  t.is(await within(2_000, 'after closed', session.nextMessage()), null, 'nothing follows closed')
  t.deepEqual(session.closeReason, { code: 4, reason: 'user quit' })
  await t.throwsAsync(session.submitFrame(Buffer.from('late')), { instanceOf: PunktfunkError })
})

test('a burst of client input wakes the host once until it reads, not once per event', async (t) => {
  // Without rate adaptation: target-bitrate changes wake the host on every
  // change by design (a reader of the target may not read messages).
  const { client, session } = await connected(t, { rate: { adaptive: false } })
  // Read what the handshake queued: the next event wakes the host again.
  while (session.pollMessage()) {}
  // Each wake-up from the addon resolves the waiter registered at that moment.
  const wakeups = (session as unknown as { wakeups: { event(): Promise<void> } }).wakeups
  let wakes = 0
  let counting = true
  void (async () => {
    while (counting) {
      await wakeups.event()
      if (counting) wakes++
    }
  })()
  const burst = 3000
  // In batches the client's control stream takes; the host reads nothing meanwhile.
  for (let i = 0; i < burst; i++) {
    client.sendInput({ type: 'keyDown', code: i })
    if (i % 50 === 49) await new Promise((r) => setTimeout(r, 5))
  }
  await new Promise((r) => setTimeout(r, 1000))
  counting = false
  t.true(wakes >= 1 && wakes <= 2, `${wakes} wake-ups for a burst of ${burst} inputs`)
  let inputs = 0
  for (let m = session.pollMessage(); m; m = session.pollMessage()) if (m.type === 'input') inputs++
  t.is(inputs, burst, 'every input is read after the one wake-up')
})

const byJson = (a: unknown, b: unknown): number => JSON.stringify(a).localeCompare(JSON.stringify(b))

test('the host close reason ends the client frames() iterator', async (t) => {
  const host = await Host.listen({ bind: '127.0.0.1:0', identityDir: tempDir(t) })
  t.teardown(() => host.close())
  const accepting = host.accept({ timeoutMs: 10_000 })
  const client = await Client.connect(host.address, { pin: host.fingerprint })
  t.teardown(() => client.close())
  const session = await accepting
  if (!session) return t.fail('no session')
  await session.submitFrame(Buffer.from('last words'))
  const got: string[] = []
  const reading = (async () => {
    for await (const f of client.frames()) got.push(f.data.toString())
    return 'ended'
  })()
  await new Promise((r) => setTimeout(r, 100))
  await session.close('end of stream')
  const result = await within(10_000, 'iterator end', reading.catch((e: PunktfunkError) => e.code))
  t.is(result, 'ended', 'the iterator ends without an error; closeReason says why')
  t.deepEqual(got, ['last words'])
  t.deepEqual(client.closeReason, { code: 0, reason: 'end of stream' })
})

test('a wrong pin is refused with ERR_PF_PIN_MISMATCH and the host gets no session', async (t) => {
  const host = await Host.listen({ bind: '127.0.0.1:0', identityDir: tempDir(t) })
  t.teardown(() => host.close())
  const accepting = host.accept({ timeoutMs: 3_000 }).catch(() => null)
  const e = await t.throwsAsync(Client.connect(host.address, { pin: 'ab'.repeat(32) }), {
    instanceOf: PunktfunkError,
    code: 'ERR_PF_PIN_MISMATCH',
  })
  t.regex(e?.message ?? '', new RegExp(host.fingerprint))
  t.is(await accepting, null)
})

test('a host with authorizedClients admits the listed client and refuses the rest with ERR_PF_UNAUTHORIZED', async (t) => {
  const dir = tempDir(t)
  const friend = loadIdentity({ identityDir: join(dir, 'friend') })
  const host = await Host.listen({ bind: '127.0.0.1:0', identityDir: join(dir, 'host'), authorizedClients: [friend.fingerprint] })
  t.teardown(() => host.close())
  const refusals: PunktfunkError[] = []
  const admitted = (async () => {
    for await (const s of host.sessions({ onError: (e) => refusals.push(e) })) return s
    return null
  })()
  for (const identityDir of [undefined, join(dir, 'stranger')]) {
    const e = await t.throwsAsync(Client.connect(host.address, { pin: host.fingerprint, identityDir }), {
      instanceOf: PunktfunkError,
      code: 'ERR_PF_UNAUTHORIZED',
    })
    t.regex(e?.message ?? '', identityDir ? /is not authorized/ : /presented no identity/)
  }
  const c = await Client.connect(host.address, { pin: host.fingerprint, identityDir: join(dir, 'friend') })
  t.teardown(() => c.close())
  const s = await within(10_000, 'the admitted session', admitted)
  t.is(s?.clientFingerprint, friend.fingerprint)
  await s?.submitFrame(Buffer.from('welcome'))
  const ev = await within(5_000, 'frame', c.nextEvent())
  t.is(ev?.type === 'frame' ? ev.data.toString() : '', 'welcome')
  t.is(refusals.length, 2)
  for (const r of refusals) t.is(r.code, 'ERR_PF_UNAUTHORIZED')
  const bad = { bind: '127.0.0.1:0', identityDir: join(dir, 'host') }
  await t.throwsAsync(Host.listen({ ...bad, authorizedClients: ['xyz'] }), { code: 'ERR_PF_INVALID_ARG', message: /authorizedClients\[0\]/ })
  await t.throwsAsync(Host.listen({ ...bad, authorizedClients: 'ab' as unknown as string[] }), { code: 'ERR_PF_INVALID_ARG' })
  await t.throwsAsync(Client.connect(host.address, { pin: host.fingerprint, identityDir: '' }), { code: 'ERR_PF_INVALID_ARG' })
})

test('without authorizedClients a host reports whether a client presented an identity', async (t) => {
  const dir = tempDir(t)
  const host = await Host.listen({ bind: '127.0.0.1:0', identityDir: join(dir, 'host') })
  t.teardown(() => host.close())
  const me = loadIdentity({ identityDir: join(dir, 'me') })
  for (const identityDir of [join(dir, 'me'), undefined]) {
    const accepting = host.accept({ timeoutMs: 10_000 })
    const c = await Client.connect(host.address, { pin: host.fingerprint, identityDir })
    const s = await accepting
    t.is(s?.clientFingerprint, identityDir ? me.fingerprint : null)
    await s?.close('bye')
    await c.close()
  }
})

test('trust on first use remembers the host and refuses an impostor at the same address', async (t) => {
  const dir = tempDir(t)
  const host = await Host.listen({ bind: '127.0.0.1:0', identityDir: join(dir, 'host-a') })
  const serving = (async () => {
    for (let i = 0; i < 2; i++) {
      const s = await host.accept({ timeoutMs: 10_000 })
      await s?.close('bye')
    }
  })()
  const c1 = await Client.connect(host.address, { trustOnFirstUse: true, knownHosts: join(dir, 'client', 'known_hosts') })
  t.is(c1.fingerprint, host.fingerprint)
  await c1.close()
  const known = readFileSync(join(dir, 'client', 'known_hosts'), 'utf8')
  t.true(known.includes(`${host.address} ${host.fingerprint}`))
  const c2 = await Client.connect(host.address, { trustOnFirstUse: true, knownHosts: join(dir, 'client', 'known_hosts') })
  t.is(c2.fingerprint, host.fingerprint)
  await c2.close()
  await serving
  const address = host.address
  await host.close()
  // Same address, different identity: refused.
  const impostor = await Host.listen({ bind: address, identityDir: join(dir, 'host-b') })
  t.teardown(() => impostor.close())
  t.not(impostor.fingerprint, host.fingerprint)
  const accepting = impostor.accept({ timeoutMs: 3_000 }).catch(() => null)
  await t.throwsAsync(Client.connect(address, { trustOnFirstUse: true, knownHosts: join(dir, 'client', 'known_hosts') }), { code: 'ERR_PF_PIN_MISMATCH' })
  await accepting
})

test('speed test reports what arrived and frames keep their indices', async (t) => {
  const { client, session } = await connected(t)
  const r = await client.speedTest({ targetKbps: 150_000, durationMs: 400 })
  t.true(r.packetsReceived > 0 && r.packetsSent >= r.packetsReceived, JSON.stringify(r))
  t.true(r.deliveredKbps > 75_000 && r.deliveredKbps < 225_000, JSON.stringify(r))
  t.true(r.lossPercent < 5, JSON.stringify(r))
  await session.submitFrame(Buffer.from('frame after probe'))
  const ev = await within(5_000, 'frame', client.nextEvent())
  t.true(ev?.type === 'frame' && ev.index === 0 && ev.data.toString() === 'frame after probe')
  t.true(client.stats().probePacketsReceived >= r.packetsReceived)
  await t.throwsAsync(client.speedTest({ targetKbps: 3_000_001, durationMs: 100 }), { code: 'ERR_PF_INVALID_ARG' })
  await t.throwsAsync(client.speedTest({ targetKbps: 1000, durationMs: 6_000 }), { code: 'ERR_PF_INVALID_ARG' })
})

test('connecting to nothing fails with ERR_PF_TIMEOUT within the timeout', async (t) => {
  const silent = createSocket('udp4')
  await new Promise<void>((r) => silent.bind(0, '127.0.0.1', r))
  t.teardown(() => silent.close())
  const { port } = silent.address()
  const started = Date.now()
  const e = await t.throwsAsync(
    Client.connect(`127.0.0.1:${port}`, { pin: '00'.repeat(32), connectTimeoutMs: 700 }),
    { code: 'ERR_PF_TIMEOUT' },
  )
  t.regex(e?.message ?? '', new RegExp(`127.0.0.1:${port}`))
  t.true(Date.now() - started < 3_000)
})

test('bad control-plane arguments give ERR_PF_INVALID_ARG', async (t) => {
  const invalid = { instanceOf: PunktfunkError, code: 'ERR_PF_INVALID_ARG' } as const
  const anyConnect = Client.connect as unknown as (a: unknown, o?: unknown) => Promise<Client>
  await t.throwsAsync(anyConnect(42), invalid)
  await t.throwsAsync(anyConnect('nowhere'), invalid)
  await t.throwsAsync(anyConnect('127.0.0.1:1', { pin: 'xyz' }), invalid)
  await t.throwsAsync(anyConnect('127.0.0.1:1', { pin: 'ab'.repeat(32), trustOnFirstUse: true }), invalid)
  await t.throwsAsync(anyConnect('127.0.0.1:1', {}), invalid, 'no trust decision')
  const anyListen = Host.listen as unknown as (o: unknown) => Promise<Host>
  await t.throwsAsync(anyListen({ bind: 'localhost' }), invalid)
  await t.throwsAsync(anyListen({ adaptiveFec: { min: 60, max: 10 } }), invalid)

  const host = await Host.listen({ bind: '127.0.0.1:0', identityDir: tempDir(t) })
  t.teardown(() => host.close())
  const accepting = host.accept({ timeoutMs: 10_000 })
  const client = await Client.connect(host.address, { pin: host.fingerprint })
  t.teardown(() => client.close())
  await accepting.then((s) => s?.close())
  const send = client.sendInput.bind(client) as unknown as (e: unknown) => void
  t.throws(() => send({ type: 'teleport' }), invalid)
  t.throws(() => send({ type: 'keyDown' }), invalid)
  t.throws(() => send({ type: 'gamepadAxis', pad: 0, axis: 99, value: 0 }), invalid)
  t.throws(() => send({ type: 'scroll', dx: 1e6, dy: 0 }), invalid)
  t.throws(() => send('keyDown'), invalid)
  await t.throwsAsync(client.submitFrame(Buffer.from('x')), invalid, 'clients receive; hosts submit')
})

test('the process exits by itself after host and client close', (t) => {
  const script = `
    const pf = require(${JSON.stringify(join(__dirname, '..', 'index.js'))})
    ;(async () => {
      const host = await pf.Host.listen({ bind: '127.0.0.1:0', identityDir: ${JSON.stringify(join(tmpdir(), `pf-exit-${process.pid}`))} })
      const accepting = host.accept({ timeoutMs: 5000 })
      const client = await pf.Client.connect(host.address, { pin: host.fingerprint })
      const s = await accepting
      await s.submitFrame(Buffer.alloc(100000, 1))
      const it = client.frames()
      await it.next()
      const pending = it.next()
      await s.close('done')
      await client.close()
      await host.close()
      console.log('closed', (await pending).done)
    })()
  `
  const started = Date.now()
  const r = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', timeout: 20_000 })
  t.is(r.signal, null, `killed after ${Date.now() - started} ms: the process did not exit by itself`)
  t.is(r.status, 0, r.stderr)
  t.is(r.stdout.trim(), 'closed true')
})

test('host.sessions() yields clients and reports failed handshakes to onError', async (t) => {
  const host = await Host.listen({ bind: '127.0.0.1:0', identityDir: tempDir(t) })
  t.teardown(() => host.close())
  const errors: string[] = []
  const it = host.sessions({ onError: (e) => errors.push(e.code) })
  const first = it.next()
  await t.throwsAsync(Client.connect(host.address, { pin: 'cd'.repeat(32) }), { code: 'ERR_PF_PIN_MISMATCH' })
  const client = await Client.connect(host.address, { pin: host.fingerprint })
  t.teardown(() => client.close())
  const s = await within(10_000, 'session', first)
  t.false(s.done)
  t.is(errors.length, 1, 'the refused client was reported, not silently dropped')
  await s.value?.close()
  await host.close()
  t.true((await it.next()).done, 'the iterator ends when the host closes')
})

test('rate adaptation: the target starts at initialKbps, ramps on a fast path, and targetChanges ends on abort', async (t) => {
  const { client, session } = await connected(t, { maxBitrateKbps: 40_000, rate: { initialKbps: 2_000, minKbps: 500 } })
  const draining = (async () => {
    for await (const _ of client.frames()) void _
  })().catch(() => {})

  const ac = new AbortController()
  const seen: number[] = []
  const watching = (async () => {
    for await (const kbps of session.targetChanges({ signal: ac.signal })) {
      seen.push(kbps)
      if (kbps >= 20_000) ac.abort()
    }
  })().catch((e: unknown) => {
    if (!(e instanceof Error && e.name === 'AbortError')) throw e
  })
  // Frames as an encoder following the target would send them, for at most 8 s.
  const deadline = Date.now() + 8_000
  for (let i = 0; !ac.signal.aborted && Date.now() < deadline; i++) {
    await session.submitFrame(Buffer.alloc(Math.max(100, Math.round((session.targetKbps * 1000) / 8 / 60))), { pts: i })
    await new Promise((r) => setTimeout(r, 16))
  }
  ac.abort()
  await within(2_000, 'targetChanges ends with an AbortError on abort', watching)
  t.true(seen.length >= 2, `the target moved: ${seen.join(', ')}`)
  // The session pads from the moment it starts, so by the time this reader
  // runs the ramp may have taken a few 5 ms rounds (3.4 Mbit/s seen on a
  // loaded machine); a session opened at its ceiling would show 40.
  t.true((seen[0] ?? 0) <= 10_000, `the first target seen is near initialKbps, far below the ceiling: ${seen[0]}`)
  t.true(Math.max(...seen) >= 20_000, `it ramped towards the 40 Mbit/s ceiling on loopback: ${seen.join(', ')}`)
  t.true(Math.max(...seen) <= 40_000, 'never above maxBitrateKbps')
  const st = session.stats()
  t.true(st.estimatedKbps >= st.targetKbps && st.rttUs > 0, JSON.stringify(st))
  // The controller's own account: a state, the rate it paces at, the
  // client's reports it used (one every 5 ms at first; the loop above may
  // end after a few frames, once the target has moved twice).
  t.not(rateStateName(st.rateState), 'none', JSON.stringify(st))
  t.true(st.pacingKbps > 0, JSON.stringify(st))
  t.true(st.feedbackReports >= 5, `feedback reports used: ${st.feedbackReports}`)
  t.is(st.feedbackDropped, 0)
  t.is(st.competingFlow, 0)
  // The getter and stats() read the same figure; the controller may move it
  // between two calls, so compare a reading taken while it stood still.
  let agreed: [number, number] | undefined
  for (let i = 0; i < 50 && !agreed; i++) {
    const before = session.stats().targetKbps
    const getter = session.targetKbps
    if (session.stats().targetKbps === before) agreed = [getter, before]
  }
  t.truthy(agreed, 'the target stood still between two reads at least once in 50')
  t.is(agreed?.[0], agreed?.[1])
  await session.close()
  await draining
})

test('rate adaptation off keeps the granted bitrate; probes: false refuses speed tests; bad rate options are refused', async (t) => {
  const invalid = { instanceOf: PunktfunkError, code: 'ERR_PF_INVALID_ARG' } as const
  const anyListen = Host.listen as unknown as (o: unknown) => Promise<Host>
  await t.throwsAsync(anyListen({ rate: { adaptive: 'no' } }), invalid)
  await t.throwsAsync(anyListen({ rate: { initialKbps: -1 } }), invalid)
  await t.throwsAsync(anyListen({ maxTotalKbps: 2 ** 33 }), invalid)
  await t.throwsAsync(anyListen({ probes: { ceilingKbps: 'fast' } }), invalid)

  const { client, session } = await connected(t, { maxBitrateKbps: 30_000, rate: { adaptive: false }, probes: false })
  t.is(session.targetKbps, 30_000, 'without adaptation the target is the granted bitrate')
  const ac = new AbortController()
  const it = session.targetChanges({ signal: ac.signal })
  t.deepEqual(await it.next(), { value: 30_000, done: false })
  const pending = it.next()
  ac.abort()
  const e = await t.throwsAsync(within(2_000, 'rejects on abort', pending))
  t.is(e?.name, 'AbortError')
  t.true(session.targetKbps === 30_000, 'the session stays usable after an aborted wait')
  const r = await client.speedTest({ targetKbps: 10_000, durationMs: 200 })
  t.is(r.rateKbps, 0, `the host refused the probe: ${JSON.stringify(r)}`)
  t.is(r.packetsReceived, 0)
})

test('a host serving browsers pins a certificate of its own; native sessions are native', async (t) => {
  const dir = tempDir(t)
  const host = await Host.listen({ bind: '127.0.0.1:0', identityDir: dir, web: { window: 8, maxFrameAgeMs: 500 } })
  t.teardown(() => host.close())
  const hash = host.webCertificateHash
  t.regex(hash ?? '', /^[0-9a-f]{64}$/)
  t.not(hash, host.fingerprint)
  // Kept beside the identity: a second host on the same directory pins the same.
  const again = await Host.listen({ bind: '127.0.0.1:0', identityDir: dir, web: true })
  t.is(again.webCertificateHash, hash)
  await again.close()
  // Native clients use the same port as before.
  const accepting = host.accept({ timeoutMs: 10_000 })
  const client = await Client.connect(host.address, { pin: host.fingerprint })
  t.teardown(() => client.close())
  const session = await accepting
  if (!session) return t.fail('no session')
  t.teardown(() => session.close())
  t.is(session.carrier, 'native')
  const plain = await Host.listen({ bind: '127.0.0.1:0', identityDir: dir })
  t.is(plain.webCertificateHash, undefined)
  await plain.close()
  for (const web of [{ window: 0 }, { window: 300 }, { maxFrameAgeMs: 1 }]) {
    const e = await t.throwsAsync(Host.listen({ bind: '127.0.0.1:0', identityDir: dir, web }))
    t.is((e as PunktfunkError).code, 'ERR_PF_INVALID_ARG', JSON.stringify(web))
  }
})
