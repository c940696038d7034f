import { createSocket } from 'node:dgram'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

import test, { type ExecutionContext } from 'ava'

import { AbortError, Client, createLoopbackPair, Host, type FrameEvent } from '../index'
import { closeAfter, connected, within } from './helpers'

/** An aborted wait rejects with an AbortError carrying the signal's reason. */
function isAbort(t: ExecutionContext, e: unknown, reason?: unknown): void {
  t.true(e instanceof AbortError, `an AbortError, got ${String(e)}`)
  t.is((e as AbortError).name, 'AbortError')
  t.is((e as AbortError).code, 'ABORT_ERR')
  if (reason !== undefined) t.is((e as AbortError).cause, reason)
}

/** Aborts `c` after `ms`; returns the abort reason. */
function abortLater(c: AbortController, ms: number): Error {
  const reason = new Error('enough')
  setTimeout(() => c.abort(reason), ms)
  return reason
}

function tempDir(t: ExecutionContext): string {
  const d = mkdtempSync(join(tmpdir(), 'punktfunk-abort-'))
  t.teardown(() => rmSync(d, { recursive: true, force: true }))
  return d
}


test('nextEvent: an aborted wait rejects with AbortError, loses nothing, and the session goes on', async (t) => {
  const { host, client } = closeAfter(t, createLoopbackPair())
  const c = new AbortController()
  const reason = abortLater(c, 50)
  const started = Date.now()
  const e = await t.throwsAsync(within(2_000, 'aborted nextEvent', client.nextEvent({ signal: c.signal })))
  isAbort(t, e, reason)
  t.true(Date.now() - started < 1_000, 'rejects when aborted, not later')
  // An already aborted signal rejects at once.
  isAbort(t, await t.throwsAsync(client.nextEvent({ signal: c.signal })), reason)
  await host.submitFrame(Buffer.from('after'), { pts: 1 })
  const ev = await within(5_000, 'frame after abort', client.nextEvent())
  t.is(ev?.type === 'frame' ? ev.data.toString() : '', 'after')
  // A wait that is not aborted is not disturbed by a signal.
  const d = new AbortController()
  const next = client.nextEvent({ signal: d.signal })
  await host.submitFrame(Buffer.from('with signal'))
  const ev2 = await within(5_000, 'frame with signal', next)
  t.is(ev2?.type === 'frame' ? ev2.data.toString() : '', 'with signal')
  d.abort()
})

test('frames() and events(): aborting ends the iteration with AbortError; a new one reads on', async (t) => {
  const { host, client } = closeAfter(t, createLoopbackPair())
  await host.submitFrame(Buffer.from('one'), { pts: 1 })
  const c = new AbortController()
  const got: string[] = []
  const e = await t.throwsAsync(
    within(5_000, 'aborted frames()', (async () => {
      for await (const f of client.frames({ signal: c.signal })) {
        got.push(f.data.toString())
        abortLater(c, 30)
      }
    })()),
  )
  isAbort(t, e)
  t.deepEqual(got, ['one'])

  const d = new AbortController()
  const events: FrameEvent[] = []
  const reading = (async () => {
    for await (const ev of client.events({ signal: d.signal })) {
      events.push(ev)
      if (events.length === 1) d.abort('stop')
    }
  })()
  await host.submitFrame(Buffer.from('two'), { pts: 2 })
  isAbort(t, await t.throwsAsync(within(5_000, 'aborted events()', reading)), 'stop')
  t.deepEqual(events.map((ev) => (ev.type === 'frame' ? ev.pts : -1)), [2])

  const b = new AbortController()
  const borrowed: string[] = []
  const borrowing = (async () => {
    for await (const f of client.frames({ signal: b.signal, borrow: true })) {
      borrowed.push(f.data.toString())
      b.abort('stop borrowing')
    }
  })()
  await host.submitFrame(Buffer.from('borrowed'), { pts: 3 })
  isAbort(t, await t.throwsAsync(within(5_000, 'aborted borrowing frames()', borrowing)), 'stop borrowing')
  t.deepEqual(borrowed, ['borrowed'])

  await host.submitFrame(Buffer.from('three'), { pts: 4 })
  for await (const f of client.frames()) {
    t.is(f.data.toString(), 'three', 'the session still delivers after the aborts')
    break
  }
})

test('submitFrame: aborting a wait on back-pressure rejects it, sends nothing, and keeps the order of the rest', async (t) => {
  const { host, client } = closeAfter(t, createLoopbackPair({ sendQueue: 1, recvQueue: 64 }))
  const n = 10
  const controllers = Array.from({ length: n }, () => new AbortController())
  const submits = Array.from({ length: n }, (_, i) =>
    host.submitFrame(Buffer.alloc(2_000_000, i), { pts: i, signal: controllers[i].signal }),
  )
  // Frame 5 is still waiting for its turn: a one-frame queue cannot take 10 MB at once.
  controllers[5].abort('changed my mind')
  const outcomes = await within(20_000, 'submits', Promise.allSettled(submits))
  outcomes.forEach((o, i) => {
    if (i === 5) isAbort(t, (o as PromiseRejectedResult).reason, 'changed my mind')
    else t.is(o.status, 'fulfilled', `frame ${i} queued`)
  })
  const pts: number[] = []
  while (pts.length < n - 1) {
    const ev = await within(10_000, 'frame', client.nextEvent())
    if (ev?.type === 'frame') pts.push(ev.pts)
  }
  t.deepEqual(pts, [0, 1, 2, 3, 4, 6, 7, 8, 9], 'the aborted frame was never sent; the others kept their order')
  // An already aborted signal never queues anything.
  isAbort(t, await t.throwsAsync(host.submitFrame(Buffer.from('x'), { signal: AbortSignal.abort() })))
  t.is(host.queuedFrames, 0)
})

test('Host.listen with an aborted signal rejects and takes no port; accept and sessions() abort and the host goes on', async (t) => {
  isAbort(t, await t.throwsAsync(Host.listen({ bind: '127.0.0.1:0', identityDir: tempDir(t), signal: AbortSignal.abort('no') })), 'no')

  const host = await Host.listen({ bind: '127.0.0.1:0', identityDir: tempDir(t) })
  t.teardown(() => host.close())
  const c = new AbortController()
  const reason = abortLater(c, 50)
  const started = Date.now()
  isAbort(t, await t.throwsAsync(within(3_000, 'aborted accept', host.accept({ timeoutMs: 10_000, signal: c.signal }))), reason)
  t.true(Date.now() - started < 1_000, 'accept rejects when aborted, not at its timeout')

  const d = new AbortController()
  abortLater(d, 50)
  const iterating = (async () => {
    for await (const s of host.sessions({ signal: d.signal })) await s.close()
  })()
  isAbort(t, await t.throwsAsync(within(3_000, 'aborted sessions()', iterating)))

  // The host still accepts after aborted accepts (a client that arrives for an
  // aborted one is handed to the next).
  const e = new AbortController()
  const abandoned = host.accept({ timeoutMs: 10_000, signal: e.signal })
  e.abort()
  isAbort(t, await t.throwsAsync(abandoned))
  const client = await Client.connect(host.address, { pin: host.fingerprint })
  t.teardown(() => client.close())
  let session = null
  for (let i = 0; i < 20 && !session; i++) session = await host.accept({ timeoutMs: 500 })
  if (!session) return t.fail('no session after the aborted accepts')
  t.teardown(() => session.close())
  await session.submitFrame(Buffer.from('hello'))
  const ev = await within(5_000, 'frame', client.nextEvent())
  t.is(ev?.type === 'frame' ? ev.data.toString() : '', 'hello')
})

test('Client.connect: aborting rejects at once, and a connection made anyway is closed', async (t) => {
  // Nothing answers on this socket: without the signal the connect would wait its full timeout.
  const silent = createSocket('udp4')
  await new Promise<void>((r) => silent.bind(0, '127.0.0.1', r))
  t.teardown(() => silent.close())
  const c = new AbortController()
  const reason = abortLater(c, 100)
  const started = Date.now()
  const e = await t.throwsAsync(
    within(3_000, 'aborted connect', Client.connect(`127.0.0.1:${silent.address().port}`, { pin: 'ab'.repeat(32), connectTimeoutMs: 10_000, signal: c.signal })),
  )
  isAbort(t, e, reason)
  t.true(Date.now() - started < 1_500, 'rejects when aborted, not at the connect timeout')
  isAbort(t, await t.throwsAsync(Client.connect('127.0.0.1:1', { pin: 'ab'.repeat(32), signal: AbortSignal.abort() })))

  // Aborted after the handshake started: the host sees the client arrive and leave.
  const host = await Host.listen({ bind: '127.0.0.1:0', identityDir: tempDir(t) })
  t.teardown(() => host.close())
  const accepting = host.accept({ timeoutMs: 10_000 })
  const d = new AbortController()
  const connecting = Client.connect(host.address, { pin: host.fingerprint, signal: d.signal })
  d.abort()
  isAbort(t, await t.throwsAsync(connecting))
  const session = await accepting
  if (!session) return t.fail('the handshake did not complete')
  t.teardown(() => session.close())
  let m = await within(5_000, 'closed message', session.nextMessage())
  while (m && m.type !== 'closed') m = await within(5_000, 'closed message', session.nextMessage())
  t.deepEqual(m, { type: 'closed', code: 4, reason: 'aborted' })
})

test('speedTest and messages(): aborting rejects with AbortError and the session stays usable', async (t) => {
  const { client, session } = await connected(t)
  const c = new AbortController()
  const reason = abortLater(c, 100)
  const started = Date.now()
  isAbort(t, await t.throwsAsync(within(3_000, 'aborted speed test', client.speedTest({ targetKbps: 20_000, durationMs: 3_000, signal: c.signal }))), reason)
  t.true(Date.now() - started < 1_500, 'the speed test rejects when aborted, not when the probe ends')

  const d = new AbortController()
  abortLater(d, 50)
  const iterating = (async () => {
    for await (const m of session.messages({ signal: d.signal })) t.log(m)
  })()
  isAbort(t, await t.throwsAsync(within(3_000, 'aborted messages()', iterating)))
  isAbort(t, await t.throwsAsync(session.nextMessage({ signal: AbortSignal.abort() })))

  client.sendInput({ type: 'keyDown', code: 30 })
  let m = await within(5_000, 'input after abort', session.nextMessage())
  while (m && m.type !== 'input') m = await within(5_000, 'input after abort', session.nextMessage())
  t.deepEqual(m, { type: 'input', event: { type: 'keyDown', code: 30 } })
  await session.submitFrame(Buffer.from('still here'))
  const ev = await within(5_000, 'frame after aborts', client.nextEvent())
  t.is(ev?.type === 'frame' ? ev.data.toString() : '', 'still here')
})

test('a signal that is not an AbortSignal is refused', async (t) => {
  const { client } = closeAfter(t, createLoopbackPair())
  const bad = { signal: 'soon' } as unknown as { signal: AbortSignal }
  await t.throwsAsync(client.nextEvent(bad), { code: 'ERR_PF_INVALID_ARG', message: /signal must be an AbortSignal/ })
})
