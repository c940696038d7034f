import { spawnSync } from 'node:child_process'
import { join } from 'node:path'

import test from 'ava'

import { createLoopbackPair, createUdpSession, generateSecret, PunktfunkError } from '../index'
import { closeAfter, pseudoRandom, within } from './helpers'

const closedError = { instanceOf: PunktfunkError, code: 'ERR_PF_CLOSED' } as const

test('close ends a pending frames() iterator', async (t) => {
  const { host, client } = closeAfter(t, createLoopbackPair())
  const seen: number[] = []
  const iterating = (async () => {
    for await (const f of client.frames()) seen.push(f.index)
    return 'ended'
  })()
  await host.submitFrame(Buffer.from('one'))
  await host.submitFrame(Buffer.from('two'))
  // Wait until both frames arrived, then close while the iterator waits for a third.
  await within(5_000, 'two frames', (async () => {
    while (seen.length < 2) await new Promise((r) => setTimeout(r, 5))
  })())
  await client.close()
  t.is(await within(5_000, 'iterator end', iterating), 'ended')
  t.deepEqual(seen, [0, 1])
  t.is(await client.nextEvent(), null, 'nextEvent after close resolves null')
})

test('every call after close rejects with ERR_PF_CLOSED; stats stay readable', async (t) => {
  const { host, client } = closeAfter(t, createLoopbackPair())
  await host.submitFrame(pseudoRandom(10_000, 1))
  await within(5_000, 'frame', client.nextEvent())
  await Promise.all([host.close(), client.close()])
  t.true(host.closed && client.closed)
  await t.throwsAsync(host.submitFrame(Buffer.from('x')), closedError)
  t.throws(() => host.trySubmitFrame(Buffer.from('x')), closedError)
  t.throws(() => client.poll(), closedError)
  t.throws(() => host.setFecPercent(20), closedError)
  t.is(host.queuedFrames, 0)
  t.is(host.stats().framesSubmitted, 1, 'final counters survive close')
  t.is(client.stats().framesCompleted, 1)
  await t.notThrowsAsync(host.close(), 'closing twice is fine')
  const udp = createUdpSession({ role: 'client', bind: '127.0.0.1:0', keys: { secret: generateSecret(), context: 'close test' } })
  await udp.close()
  t.throws(() => udp.connect('127.0.0.1:9'), closedError)
})

test('close flushes queued frames before stopping', async (t) => {
  const { host, client } = closeAfter(t, createLoopbackPair({ sendQueue: 16 }))
  const submits = Array.from({ length: 16 }, (_, i) => host.submitFrame(pseudoRandom(300_000, i)))
  await Promise.all(submits)
  await host.close()
  t.is(host.stats().framesSubmitted, 16, 'every queued frame was sent before close resolved')
  let frames = 0
  while (frames < 16) {
    const ev = await within(5_000, 'flushed frame', client.nextEvent())
    if (ev?.type === 'frame') frames++
  }
  t.is(frames, 16)
})

test('a submit waiting for queue room rejects when the session closes', async (t) => {
  const { host } = closeAfter(t, createLoopbackPair({ sendQueue: 1 }))
  const big = pseudoRandom(4_000_000, 9)
  const submits = Array.from({ length: 8 }, () => host.submitFrame(big))
  const closing = host.close()
  const results = await Promise.allSettled(submits)
  await closing
  const rejected = results.filter((r) => r.status === 'rejected')
  for (const r of rejected) {
    t.is((r as PromiseRejectedResult).reason.code, 'ERR_PF_CLOSED')
  }
  t.true(rejected.length > 0, 'with room for one frame, later submits were still waiting')
})

test('the Node process exits by itself after close (no leaked handles or threads)', (t) => {
  const script = `
    const pf = require(${JSON.stringify(join(__dirname, '..', 'index.js'))})
    ;(async () => {
      const { host, client } = pf.createLoopbackPair({ impairment: { lossPercent: 1 } })
      const keys = { secret: pf.generateSecret(), context: 'exit test' }
      const uc = pf.createUdpSession({ role: 'client', bind: '127.0.0.1:0', keys })
      const uh = pf.createUdpSession({ role: 'host', bind: '127.0.0.1:0', peer: uc.localAddress, keys })
      // Borrowing: after the first frame the session holds lent buffers at close.
      const it = client.frames({ borrow: true })
      const first = it.next()
      const ufirst = uc.nextEvent()
      await host.submitFrame(Buffer.alloc(200000, 1))
      await uh.submitFrame(Buffer.alloc(5000, 2))
      await first
      await ufirst
      const pending = it.next() // left waiting: close must end it
      await Promise.all([host.close(), client.close(), uh.close(), uc.close()])
      console.log('closed', (await pending).done)
    })()
  `
  const started = Date.now()
  const r = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', timeout: 15_000 })
  const ms = Date.now() - started
  t.is(r.signal, null, `the child was killed after ${ms} ms: it did not exit by itself`)
  t.is(r.status, 0, r.stderr)
  t.is(r.stdout.trim(), 'closed true')
  t.log(`child ran and exited in ${ms} ms`)
})
