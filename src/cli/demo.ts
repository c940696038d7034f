/** `punktfunk demo`: host and client in one process, over QUIC and real UDP on loopback. */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

import { Client, Host, type HostSession } from '../control'
import { rateStateName, type Frame, type SessionStats } from '../session'
import { onOff, UsageError, type CommandSpec, type Flags } from './args'
import { bufferAdvice, interrupted, nowUs, sleepUntil } from './common'
import { dropReasons, Latencies, mbps, printSummary, rateDetail, rateLine, rates, round, StatusLine } from './report'
import { FrameSizes, syntheticFrame, syntheticIntact, syntheticSeq } from './stream'

export const demoSpec: CommandSpec = {
  name: 'demo',
  summary:
    'Streams synthetic video frames from a host to a client in this process: QUIC handshake with a pinned\n' +
    'fingerprint, then FEC + AES-GCM datagrams over real UDP on 127.0.0.1. Every frame is checked byte for byte.',
  positionals: [],
  flags: {
    seconds: { kind: 'number', value: 'N', help: 'how long to stream (default 5)', min: 0.1, max: 3600 },
    'bitrate-mbps': { kind: 'number', value: 'R', help: 'stream rate, Mbit/s (default 1000)', min: 0.1, max: 2000 },
    fps: { kind: 'number', value: 'F', help: 'frames per second (default 60)', min: 1, max: 1000 },
    fec: { kind: 'number', value: 'PCT', help: 'fixed FEC percentage (default: adaptive, starting at 10)', min: 0, max: 100, integer: true },
    loss: { kind: 'number', value: 'PCT', help: "simulated random loss on the host's datagrams, % (default 1)", min: 0, max: 100 },
    seed: { kind: 'number', value: 'N', help: 'seed of the simulated loss (default 1)', min: 0, max: 2 ** 32, integer: true },
    abr: { kind: 'string', value: 'on|off', help: 'adapt to the path (default on): frames follow the target bitrate, --bitrate-mbps is the ceiling' },
    'initial-mbps': { kind: 'number', value: 'R', help: 'with --abr on: the rate the stream starts at (default 10)', min: 0.1, max: 2000 },
    json: { kind: 'boolean', help: 'print one JSON object instead of the summary' },
  },
  notes: ['Exit code 1 if any frame arrived corrupt (it never should), 0 otherwise.'],
}

/** Runs the demo; resolves with the exit code. */
export async function demo(f: Flags): Promise<number> {
  const seconds = f.num('seconds', 5)
  const bitrate = f.num('bitrate-mbps', 1000)
  const fps = f.num('fps', 60)
  const loss = f.num('loss', 1)
  const fixedFec = f.num('fec')
  const json = f.bool('json')
  const abr = onOff(f, 'abr')
  const initial = f.num('initial-mbps')
  if (!abr && initial !== undefined) throw new UsageError('--initial-mbps applies with --abr on only')
  const total = Math.max(1, Math.round(seconds * fps))
  const sizes = new FrameSizes(bitrate * 1e6, fps)

  const advice = bufferAdvice()
  if (advice) process.stderr.write(`${advice}\n`)

  const identityDir = mkdtempSync(join(tmpdir(), 'punktfunk-demo-'))
  let host: Host | undefined
  let client: Client | undefined
  let session: HostSession | undefined
  try {
    host = await Host.listen({
      bind: '127.0.0.1:0',
      identityDir,
      fec: { percent: fixedFec ?? 10 },
      adaptiveFec: fixedFec === undefined ? undefined : false,
      impairment: loss > 0 ? { lossPercent: loss, seed: f.num('seed', 1) } : undefined,
      sendQueue: 4,
      rate: { adaptive: abr, initialKbps: initial === undefined ? undefined : Math.round(initial * 1000) },
    })
    let acceptError: unknown
    const accepted = host.accept({ timeoutMs: 5000 }).catch((e: unknown) => {
      acceptError = e
      return null
    })
    client = await Client.connect(host.address, { pin: host.fingerprint, connectTimeoutMs: 5000 })
    session = (await accepted) ?? undefined
    if (!session) throw acceptError ?? new Error('the host did not accept the client')
    const hs = session
    const c = client
    if (!json) {
      process.stderr.write(
        `host ${host.address} fingerprint ${host.fingerprint.slice(0, 16)}…, client pinned it; ` +
          `streaming ${total} frames at ${bitrate} Mbit/s, ${fps} fps, ${loss} % simulated loss\n`,
      )
    }

    const lat = new Latencies()
    /** Latencies of the frames sent from the end of the first second on (after the start-up ramp). */
    const steady = new Latencies()
    /** Frame index from which `steady` counts. */
    const steadyFrom = Math.ceil(fps)
    let delivered = 0
    let lost = 0
    let corrupt = 0
    let sent = 0
    let deliveredBytes = 0
    /** Runs of frames reported lost, `[first index, count]` (the first 16). */
    const lostRuns: Array<[number, number]> = []
    const accounted = (): number => delivered + lost + corrupt

    const onFrame = (fr: Frame): void => {
      const arrived = nowUs()
      if (syntheticIntact(fr.data) && syntheticSeq(fr.data) === fr.index >>> 0) {
        delivered++
        deliveredBytes += fr.data.length
        lat.add((arrived - fr.pts) / 1000)
        if (fr.index >= steadyFrom) steady.add((arrived - fr.pts) / 1000)
      } else corrupt++
    }
    let lastEventAt = 0
    let receiveError: unknown
    const receiving = (async () => {
      // onFrame checks each frame before the loop moves on: it can borrow them.
      for await (const ev of c.events({ borrow: true })) {
        lastEventAt = performance.now()
        if (ev.type === 'frame') onFrame(ev)
        else {
          lost += ev.count
          if (lostRuns.length < 16) lostRuns.push([ev.firstIndex, ev.count])
        }
      }
    })().catch((e: unknown) => {
      receiveError = e
    })

    const status = new StatusLine()
    let prevHost = hs.stats()
    let prevClient = c.stats()
    let prevFrames = 0
    let prevAt = performance.now()
    const tick = (): void => {
      const now = performance.now()
      const secs = (now - prevAt) / 1000
      const hst = hs.stats()
      const cst = c.stats()
      const wire = rates(prevHost, hst, secs).wireMbps
      const good = rates(prevClient, cst, secs).goodputMbps
      const q = lat.takeWindow()
      status.show(
        `wire ${wire.toFixed(0)} Mbit/s  goodput ${good.toFixed(0)} Mbit/s  ${((delivered - prevFrames) / secs).toFixed(0)} frames/s  ` +
          `lost ${lost}  fec-recovered ${cst.fecRecoveredShards}  send-drops ${hst.packetsSendDropped}  ` +
          `latency p50 ${q.p50.toFixed(1)} ms p99 ${q.p99.toFixed(1)} ms` +
          (abr ? `  ${rateLine(hst)}` : ''),
      )
      ;[prevHost, prevClient, prevFrames, prevAt] = [hst, cst, delivered, now]
    }
    const timer = json ? undefined : setInterval(tick, status.intervalMs)
    // Ctrl-C ends the stream early; the summary and the clean-up still run.
    const signal = interrupted()
    let stopped = false
    void signal.promise.then(() => (stopped = true))

    const t0 = performance.now()
    let sendEnd = t0
    try {
      for (let i = 0; i < total && !stopped; i++) {
        await sleepUntil(t0 + (i * 1000) / fps)
        // As an encoder would: frames sized for the target, which follows the path.
        if (abr) sizes.setBitrate(Math.min(bitrate * 1e6, hs.targetKbps * 1000))
        await hs.submitFrame(syntheticFrame(i, sizes.size(i)), { keyframe: sizes.keyframe(i), pts: nowUs() })
        sent++
      }
      sendEnd = performance.now()
      // Wait until every frame is delivered or reported lost (bounded).
      const deadline = performance.now() + 2000
      while (accounted() < sent && performance.now() < deadline && !stopped) await sleepUntil(performance.now() + 5)
    } finally {
      signal.dispose()
      if (timer) {
        clearInterval(timer)
        tick()
        status.end()
      }
    }
    // The stream lasted from the first submit to the last frame sent or accounted for.
    const elapsed = (Math.max(sendEnd, lastEventAt) - t0) / 1000
    const hostStats: SessionStats = hs.stats()
    const clientStats: SessionStats = c.stats()
    const fecPercent = hs.fecPercent
    await c.close('demo finished')
    await receiving
    await hs.close('demo finished')
    if (receiveError) throw receiveError

    const q = lat.total()
    const qs = steady.total()
    const result = {
      framesSent: sent,
      framesDelivered: delivered,
      framesLost: sent - delivered - corrupt,
      corruptFrames: corrupt,
      goodputMbps: round(mbps(deliveredBytes, elapsed)),
      wireMbps: round(mbps(hostStats.bytesSent, elapsed)),
      fecRecoveredShards: clientStats.fecRecoveredShards,
      sendDropped: hostStats.packetsSendDropped,
      latencyP50Ms: round(q.p50, 3),
      latencyP99Ms: round(q.p99, 3),
      steadyLatencyP50Ms: round(qs.p50, 3),
      steadyLatencyP99Ms: round(qs.p99, 3),
      abr,
      estimatedMbps: round(hostStats.estimatedKbps / 1000),
      targetMbps: round(hostStats.targetKbps / 1000),
      rttMs: round(hostStats.rttUs / 1000, 3),
      queueDelayMs: round(hostStats.queueDelayUs / 1000, 3),
      congestionEvents: hostStats.congestionEvents,
      rateState: rateStateName(hostStats.rateState),
      feedbackReports: hostStats.feedbackReports,
      feedbackDropped: hostStats.feedbackDropped,
      staleReports: hostStats.staleReports,
      seconds: round(elapsed, 3),
      bitrateMbps: bitrate,
      fps,
      lossPercent: loss,
      fecPercent,
      lostRuns,
      packetsSent: hostStats.packetsSent,
      packetsReceived: clientStats.packetsReceived,
      recvDropped: {
        auth: clientStats.recvDroppedAuth,
        replay: clientStats.recvDroppedReplay,
        malformed: clientStats.recvDroppedMalformed,
        outOfBounds: clientStats.recvDroppedOutOfBounds,
        stale: clientStats.recvDroppedStale,
        foreign: clientStats.recvDroppedForeign,
      },
    }
    if (json) process.stdout.write(`${JSON.stringify(result)}\n`)
    else {
      printSummary('demo summary', [
        ['frames', `${result.framesDelivered}/${result.framesSent} delivered byte-exact, ${result.framesLost} lost, ${corrupt} corrupt`],
        ['goodput', `${result.goodputMbps} Mbit/s (wire ${result.wireMbps} Mbit/s) over ${result.seconds} s`],
        ['FEC', `${result.fecRecoveredShards} shards rebuilt, ${fecPercent} % at the end`],
        ['packets', `${result.packetsSent} sent, ${result.packetsReceived} received, ${result.sendDropped} send drops`],
        ['dropped on receive', dropReasons(clientStats)],
        [
          'latency',
          `p50 ${result.latencyP50Ms} ms, p99 ${result.latencyP99Ms} ms (submit → delivered); after the first second ` +
            `p50 ${result.steadyLatencyP50Ms} ms, p99 ${result.steadyLatencyP99Ms} ms`,
        ],
        ...(abr
          ? ([['rate control', `${rateLine(hostStats)} at the end; ${rateDetail(hostStats)}`]] as Array<[string, string]>)
          : ([['pacing', `at a multiple of the stream rate (--abr off)`]] as Array<[string, string]>)),
      ])
    }
    return corrupt > 0 ? 1 : 0
  } finally {
    await client?.close().catch(() => {})
    await session?.close().catch(() => {})
    await host?.close().catch(() => {})
    rmSync(identityDir, { recursive: true, force: true })
  }
}
