import test from 'ava'

import { createLoopbackPair, createUdpSession, generateSecret, type SessionStats } from '../index'
import { closeAfter, pseudoRandom, readEvents, readUntilIndex, sha256, within } from './helpers'

const SIZES = [1, 2, 1343, 1344, 1345, 65_536, 1_000_000, 4 * 1024 * 1024]

test('loopback pair delivers 1 B … 4 MB frames byte-exact, in order, with metadata', async (t) => {
  const { host, client } = closeAfter(t, createLoopbackPair())
  const frames = SIZES.map((n, i) => pseudoRandom(n, i + 1))
  const reading = within(20_000, 'reading frames', readEvents(client, frames.length))
  for (const [i, f] of frames.entries()) await host.submitFrame(f, { pts: 1000 * i, keyframe: i % 3 === 0 })
  const events = await reading
  t.is(events.length, frames.length)
  for (const [i, ev] of events.entries()) {
    if (ev.type !== 'frame') return t.fail(`event ${i} is a loss`)
    t.is(ev.index, i)
    t.is(ev.pts, 1000 * i)
    t.is(ev.keyframe, i % 3 === 0)
    t.is(ev.data.length, frames[i].length)
    t.is(sha256(ev.data), sha256(frames[i]), `frame ${i} (${frames[i].length} B) differs`)
  }
  const hs = host.stats()
  const cs = client.stats()
  const total = SIZES.reduce((a, b) => a + b, 0)
  t.is(hs.framesSubmitted, frames.length)
  t.is(cs.framesCompleted, frames.length)
  t.is(cs.framesDropped, 0)
  t.is(cs.payloadBytesDelivered, total)
  t.true(hs.packetsSent >= Math.ceil(total / 1344), 'at least one datagram per shard')
  t.is(cs.packetsReceived, hs.packetsSent, 'the memory link loses nothing')
  t.is(hs.bytesSent, cs.bytesReceived)
  t.is(cs.fecRecoveredShards, 0, 'no loss, nothing to recover')
  t.is(cs.recvDroppedAuth + cs.recvDroppedMalformed + cs.recvDroppedReplay, 0)
  await Promise.all([host.close(), client.close()])
})

test('random loss is repaired by FEC through the SDK', async (t) => {
  const { host, client } = closeAfter(t, createLoopbackPair({ fec: { percent: 25 }, impairment: { seed: 7, lossPercent: 3 } }))
  const n = 30
  const frames = Array.from({ length: n }, (_, i) => pseudoRandom(200_000 + i * 997, 100 + i))
  const reading = within(20_000, 'reading frames', readUntilIndex(client, n))
  for (const f of frames) await host.submitFrame(f)
  const { frames: got, lost } = await reading
  t.is(lost, 0, '3 % loss is well inside 25 % FEC')
  t.deepEqual(
    got.map((f) => sha256(f.data)),
    frames.map(sha256),
  )
  const s = client.stats()
  t.true(s.fecRecoveredShards > 0, 'some shards were rebuilt')
  t.is(s.fecRecoveredShards, got.reduce((a, f) => a + f.recoveredShards, 0), 'per-frame counts add up')
  t.true(host.stats().packetsSent > s.packetsReceived, 'the link really dropped datagrams')
  await Promise.all([host.close(), client.close()])
})

test('loss beyond FEC is reported, never delivered corrupt', async (t) => {
  const { host, client } = closeAfter(t, createLoopbackPair({
    fec: { percent: 5 },
    frameTimeoutMs: 50,
    impairment: { seed: 3, burst: { goodToBadPercent: 2, badToGoodPercent: 20, lossBadPercent: 60 } },
  }))
  const n = 40
  const frames = Array.from({ length: n }, (_, i) => pseudoRandom(150_000, 500 + i))
  const lostRuns: number[] = []
  const got: string[] = []
  const reading = within(
    20_000,
    'reading frames',
    (async () => {
      for await (const ev of client.events()) {
        if (ev.type === 'lost') lostRuns.push(ev.count)
        else {
          t.is(sha256(ev.data), sha256(frames[ev.index]), `frame ${ev.index} corrupt`)
          got.push(sha256(ev.data))
        }
        if (got.length + lostRuns.reduce((a, b) => a + b, 0) >= n) break
      }
    })(),
  )
  for (const f of frames) await host.submitFrame(f)
  await reading
  const s = client.stats()
  const lost = lostRuns.reduce((a, b) => a + b, 0)
  t.true(lost > 0, 'bursts of 60 % loss defeat 5 % FEC sometimes')
  t.is(got.length + lost, n)
  t.is(s.framesCompleted, got.length)
  t.is(s.framesDropped, lost)
  await Promise.all([host.close(), client.close()])
})

test('UDP sessions on 127.0.0.1 stream frames exactly and count syscalls', async (t) => {
  const keys = { secret: generateSecret(), context: 'udp test' }
  const client = createUdpSession({ role: 'client', bind: '127.0.0.1:0', keys })
  const host = createUdpSession({ role: 'host', bind: '127.0.0.1:0', peer: client.localAddress ?? '', keys })
  closeAfter(t, { host, client })
  client.connect(host.localAddress ?? '')
  t.regex(host.localAddress ?? '', /^127\.0\.0\.1:\d+$/)
  t.is(client.peerAddress, host.localAddress)
  const buffers = client.socketBuffers()
  t.truthy(buffers)
  t.true((buffers?.recvGranted ?? 0) > 0)
  if (buffers?.warning) t.log(buffers.warning)

  const frames = [1, 50_000, 3_000_000, 777].map((n, i) => pseudoRandom(n, 40 + i))
  const reading = within(20_000, 'reading UDP frames', readUntilIndex(client, frames.length))
  for (const f of frames) {
    await host.submitFrame(f)
    // Spread the frames a little so the 3 MB one does not overrun small socket buffers.
    await new Promise((r) => setTimeout(r, 20))
  }
  const { frames: got, lost } = await reading
  t.is(lost, 0)
  t.deepEqual(got.map((f) => sha256(f.data)), frames.map(sha256))
  const hs: SessionStats = host.stats()
  t.true(hs.sendSyscalls > 0 && hs.sendSyscalls < hs.packetsSent, 'datagrams go out in batches')
  t.true(client.stats().recvSyscalls > 0)
  t.is(hs.packetsSendDropped, 0)

  // Idle, the receive thread sleeps in ppoll: a bounded number of timed waits
  // (it wakes every 20 ms to check for close and age out frames), no reads.
  const idle0 = client.stats()
  await new Promise((r) => setTimeout(r, 300))
  const idle1 = client.stats()
  t.true(idle1.recvSyscalls - idle0.recvSyscalls <= 2, 'no empty recvmmsg calls while idle')
  const waits = idle1.recvWaitSyscalls - idle0.recvWaitSyscalls
  t.true(waits >= 1 && waits <= 60, `${waits} ppoll waits in 300 ms idle`)
  await Promise.all([host.close(), client.close()])
})

test('every UDP path carries frames exactly: GSO/GRO or sendmmsg, paced or not', async (t) => {
  const frames = [1, 70_000, 1_500_000, 333].map((n, i) => pseudoRandom(n, 90 + i))
  const paths = [
    { udpOffload: 'off' as const, pacing: false },
    { udpOffload: 'auto' as const, pacing: true },
    { udpOffload: 'auto' as const, pacing: { burstBytes: 8192, chunkBytes: 8192, fixedRateMbps: 400 } },
  ]
  for (const path of paths) {
    const keys = { secret: generateSecret(), context: 'paths' }
    const client = createUdpSession({ role: 'client', bind: '127.0.0.1:0', keys, udpOffload: path.udpOffload })
    const host = createUdpSession({ role: 'host', bind: '127.0.0.1:0', peer: client.localAddress ?? '', keys, ...path })
    closeAfter(t, { host, client })
    client.connect(host.localAddress ?? '')
    const reading = within(20_000, 'frames', readUntilIndex(client, frames.length))
    const t0 = performance.now()
    for (const f of frames) await host.submitFrame(f)
    const { frames: got, lost } = await reading
    const ms = performance.now() - t0
    t.is(lost, 0, JSON.stringify(path))
    t.deepEqual(got.map((f) => sha256(f.data)), frames.map(sha256), JSON.stringify(path))
    const hs = host.stats()
    t.is(hs.packetsSendDropped, 0)
    if (typeof path.pacing === 'object') {
      // Frames queued back to back hurry the pacer along (no queueing delay);
      // a frame on its own is spread: 1.65 MB of datagrams at a fixed 400
      // Mbit/s take about 33 ms.
      const big = pseudoRandom(1_500_000, 99)
      const t1 = performance.now()
      await host.submitFrame(big)
      const ev = await within(10_000, 'the paced frame', client.nextEvent())
      const spread = performance.now() - t1
      t.is(ev?.type === 'frame' ? sha256(ev.data) : '', sha256(big))
      t.true(spread >= 25, `paced at 400 Mbit/s, a lone 1.5 MB frame took ${spread.toFixed(1)} ms`)
    }
    t.log(`${JSON.stringify(path)}: ${hs.packetsSent} datagrams in ${hs.sendSyscalls} send calls, ${ms.toFixed(1)} ms`)
    await Promise.all([host.close(), client.close()])
  }
})

test('frames() and events() see the same stream; poll() never waits', async (t) => {
  const { host, client } = closeAfter(t, createLoopbackPair())
  t.is(client.poll(), null, 'nothing sent yet')
  await host.submitFrame(Buffer.from('hello'), { pts: 42 })
  const ev = await within(5_000, 'event', client.nextEvent())
  t.is(ev?.type, 'frame')
  if (ev?.type === 'frame') t.is(ev.data.toString(), 'hello')
  await host.submitFrame(Buffer.from('again'))
  let polled = null
  for (let i = 0; i < 200 && polled === null; i++) {
    polled = client.poll()
    if (polled === null) await new Promise((r) => setTimeout(r, 5))
  }
  t.is(polled?.type === 'frame' ? polled.data.toString() : null, 'again')
  await Promise.all([host.close(), client.close()])
})

test('the FEC percentage changes live', async (t) => {
  const { host, client } = closeAfter(t, createLoopbackPair({ fec: { percent: 0 } }))
  await host.submitFrame(pseudoRandom(134_400, 1)) // exactly 100 shards
  await within(5_000, 'frame 0', client.nextEvent())
  const before = host.stats().packetsSent
  t.is(before, 100, '0 % FEC still sends at least the data shards')
  host.setFecPercent(50)
  await host.submitFrame(pseudoRandom(134_400, 2))
  await within(5_000, 'frame 1', client.nextEvent())
  t.is(host.stats().packetsSent - before, 150, '50 % adds 50 recovery shards')
  await Promise.all([host.close(), client.close()])
})

test('a borrowing frames() loop gets every frame byte-exact in a few reused buffers, growing them for larger frames', async (t) => {
  const { host, client } = closeAfter(t, createLoopbackPair({ recvQueue: 2 }))
  // Small frames first, then keyframe-sized ones the first lent buffers cannot hold.
  const sizes = [...Array.from({ length: 24 }, (_, i) => 20_000 + i * 101), ...Array.from({ length: 16 }, (_, i) => 300_000 + i * 7)]
  const frames = sizes.map((n, i) => pseudoRandom(n, 500 + i))
  const sending = (async () => {
    for (const [i, f] of frames.entries()) await host.submitFrame(f, { pts: i })
  })()
  const memory = new Set<ArrayBuffer>()
  let i = 0
  for await (const f of client.frames({ borrow: true })) {
    t.is(f.pts, i)
    t.is(f.data.length, frames[i].length)
    t.is(sha256(f.data), sha256(frames[i]), `frame ${i} (${frames[i].length} B) differs`)
    memory.add(f.data.buffer as ArrayBuffer)
    if (++i === frames.length) break
  }
  await sending
  // Owned frames would bring 40 allocations; lent ones come back in at most
  // four buffers per size, plus the frames that arrived before a large enough one.
  t.log(`${memory.size} distinct buffers for ${frames.length} frames`)
  t.true(memory.size <= 14, `${memory.size} distinct buffers for ${frames.length} frames`)

  // After the loop, frames are the caller's to keep again.
  await host.submitFrame(Buffer.from('owned'))
  const ev = await within(5_000, 'event after the loop', client.nextEvent())
  t.is(ev?.type === 'frame' ? ev.data.toString() : null, 'owned')
  await t.throwsAsync(client.frames({ borrow: 1 as unknown as boolean }).next(), { code: 'ERR_PF_INVALID_ARG' })
  await Promise.all([host.close(), client.close()])
})

test('frames taken by poll() or nextEvent() beside a borrowing loop keep their bytes, and the loop keeps borrowing', async (t) => {
  const { host, client } = closeAfter(t, createLoopbackPair())
  const loop = client.events({ borrow: true })[Symbol.asyncIterator]()
  // A lent buffer is far larger than these frames; an owned one is the frame.
  const lent = (b: Buffer): boolean => b.buffer.byteLength > 2 * b.length
  const kept: Array<{ data: Buffer; hash: string }> = []
  const loopLent: boolean[] = []
  for (let i = 0; i < 24; i++) {
    const data = pseudoRandom(4_000 + i, 900 + i)
    await host.submitFrame(data, { pts: i })
    let got: Buffer
    if (i % 2 === 0) {
      const r = await within(5_000, `frame ${i} in the loop`, loop.next())
      if (r.done || r.value.type !== 'frame') return t.fail(`frame ${i}: ${JSON.stringify(r)}`)
      got = r.value.data
      loopLent.push(lent(got))
    } else if (i % 4 === 1) {
      const ev = await within(5_000, `frame ${i} by nextEvent`, client.nextEvent())
      if (ev?.type !== 'frame') return t.fail(`frame ${i}: ${JSON.stringify(ev)}`)
      got = ev.data
      kept.push({ data: got, hash: sha256(data) })
    } else {
      let ev = client.poll()
      for (let tries = 0; ev === null && tries < 500; tries++) {
        await new Promise((r) => setTimeout(r, 2))
        ev = client.poll()
      }
      if (ev?.type !== 'frame') return t.fail(`frame ${i}: ${JSON.stringify(ev)}`)
      got = ev.data
      kept.push({ data: got, hash: sha256(data) })
    }
    t.is(sha256(got), sha256(data), `frame ${i}`)
  }
  await loop.return(undefined)
  // Twelve frames left beside the loop, most in lent buffers: the loop lent new
  // ones in their place (without that it would run dry after four) and never
  // wrote over a buffer that left.
  t.true(kept.filter((k) => lent(k.data)).length >= 6, 'frames beside the loop arrived in lent buffers')
  t.deepEqual(loopLent.slice(-6), [true, true, true, true, true, true], `the loop's frames borrowed: ${loopLent.join(' ')}`)
  for (const [j, k] of kept.entries()) t.is(sha256(k.data), k.hash, `kept frame ${j} was overwritten`)
  await Promise.all([host.close(), client.close()])
})
