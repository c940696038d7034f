// SDK throughput beside the Rust-only figures, in one run.
//
//   npm run bench:sdk [-- --seconds N] [--rate-mbps R] [--rounds K] [--json]
//
// Runs the Rust example `throughput` (raw UDP and the Rust Session on
// 127.0.0.1) and the same workloads through the TypeScript SDK: 1 MiB frames,
// 10 % FEC, AES-128-GCM, UDP loopback. The comparable cases run in K
// interleaved rounds (Rust, SDK, Rust, SDK, …) and the ratio is the median:
//
// - unpaced: each frame submitted as soon as the send path takes it (the SDK
//   awaits submitFrame with backpressure 'wait'). This is the throughput
//   figure the SDK is held to (≥ 0.9 of Rust's).
// - window 2: the host submits whenever fewer than 2 frames are unfinished on
//   the client. This adds the delivery round trip through JavaScript to every
//   frame, so it also measures the SDK's hand-off latency.
// - paced R Mbit/s: frames submitted on a fixed schedule; latency is submit →
//   delivered to JavaScript, both ends in this process.
//
// The SDK runs host and client in this one Node process, each with its native
// send and receive threads; CPU is the whole process (all threads).

import { spawnSync } from 'node:child_process'
import { resolve } from 'node:path'

import { createLoopbackPair, createUdpSession, generateSecret, type Session } from '../index'

const FRAME_BYTES = 1 << 20

interface Row {
  case: string
  secs: number
  goodput_gbps: number
  frames_sent: number
  frames_lost: number
  send_drops: number
  cpu_percent?: number
  latency_p50_ms?: number
  latency_p99_ms?: number
  tx_cpu_percent?: number
  rx_cpu_percent?: number
}

function parseArgs(argv: string[]): { seconds: number; rateMbps: number; rounds: number; json: boolean } {
  const out = { seconds: 3, rateMbps: 1000, rounds: 3, json: false }
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]
    const value = (): number => {
      const v = Number(argv[++i])
      if (!Number.isFinite(v) || v <= 0) usage(`${a} needs a positive number`)
      return v
    }
    if (a === '--seconds') out.seconds = Math.min(value(), 60)
    else if (a === '--rate-mbps') out.rateMbps = value()
    else if (a === '--rounds') out.rounds = Math.min(Math.round(value()), 20)
    else if (a === '--json') out.json = true
    else usage(`unknown option ${a}`)
  }
  return out
}

function usage(msg: string): never {
  console.error(`${msg}\nusage: sdk-throughput [--seconds N] [--rate-mbps R] [--rounds K] [--json]`)
  process.exit(2)
}

function rustRows(seconds: number, rateMbps: number, only: string): Row[] {
  const r = spawnSync(
    'cargo',
    ['run', '--release', '--quiet', '-p', 'punktfunk-core', '--example', 'throughput', '--', '--json',
      '--seconds', String(seconds), '--rate-mbps', String(rateMbps), '--only', only],
    { cwd: resolve(__dirname, '..'), encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], timeout: 600_000 },
  )
  if (r.status !== 0) throw new Error(`the Rust throughput example failed (status ${r.status})`)
  return (JSON.parse(r.stdout) as Row[]).map((row) => ({ ...row, case: `rust: ${row.case}` }))
}

type Pace = { window: number } | { rateMbps: number } | 'unpaced'

async function sdkCase(
  name: string,
  pair: { host: Session; client: Session },
  seconds: number,
  pace: Pace,
): Promise<Row> {
  const { host, client } = pair
  const frame = Buffer.alloc(FRAME_BYTES, 0xc3)
  let sent = 0
  let finished = 0
  let lost = 0
  let lastDelivery = 0
  let creditWaiter: (() => void) | undefined
  const submittedAt: number[] = []
  const latencies: number[] = []
  const cpu0 = process.cpuUsage()
  const start = performance.now()
  const reading = (async () => {
    for await (const ev of client.events()) {
      if (ev.type === 'frame') {
        finished += 1
        latencies.push(performance.now() - submittedAt[ev.index])
      } else {
        finished += ev.count
        lost += ev.count
      }
      lastDelivery = performance.now()
      creditWaiter?.()
    }
  })()
  const interval = typeof pace === 'object' && 'rateMbps' in pace ? (FRAME_BYTES * 8) / (pace.rateMbps * 1e6) : 0
  while (performance.now() - start < seconds * 1000) {
    if (pace === 'unpaced') {
      // Submit as fast as the send queue takes frames (backpressure: wait).
    } else if ('window' in pace) {
      while (sent >= finished + pace.window) {
        // A frame lost without a trace never finishes: give up waiting after 50 ms.
        await Promise.race([
          new Promise<void>((r) => (creditWaiter = r)),
          new Promise<void>((r) => setTimeout(r, 50)),
        ])
        if (sent >= finished + pace.window && performance.now() - lastDelivery > 50) finished += 1
      }
    } else {
      const due = start + sent * interval * 1000
      const now = performance.now()
      if (due > now) await new Promise((r) => setTimeout(r, due - now))
    }
    submittedAt.push(performance.now())
    await host.submitFrame(frame, { pts: sent })
    sent += 1
  }
  // Drain: wait until every frame is accounted for, or 1 s of silence.
  const drainStart = performance.now()
  while (client.stats().framesCompleted + client.stats().framesDropped < sent && performance.now() - drainStart < 1000) {
    await new Promise((r) => setTimeout(r, 5))
  }
  const cpu = process.cpuUsage(cpu0)
  const hs = host.stats()
  const cs = client.stats()
  await Promise.all([host.close(), client.close()])
  await reading
  const secs = (lastDelivery - start) / 1000
  latencies.sort((a, b) => a - b)
  const pct = (p: number): number => latencies[Math.min(latencies.length - 1, Math.floor(p * latencies.length))] ?? NaN
  return {
    case: name,
    secs,
    goodput_gbps: (cs.payloadBytesDelivered * 8) / secs / 1e9,
    frames_sent: sent,
    frames_lost: sent - cs.framesCompleted,
    send_drops: hs.packetsSendDropped,
    cpu_percent: ((cpu.user + cpu.system) / 1e6 / secs) * 100,
    latency_p50_ms: pct(0.5),
    latency_p99_ms: pct(0.99),
  }
}

function udpPair(): { host: Session; client: Session } {
  const keys = { secret: generateSecret(), context: 'bench' }
  const client = createUdpSession({ role: 'client', bind: '127.0.0.1:0', keys })
  const host = createUdpSession({ role: 'host', bind: '127.0.0.1:0', peer: client.localAddress ?? '', keys })
  client.connect(host.localAddress ?? '')
  const warning = client.socketBuffers()?.warning
  if (warning) console.error(`warning: ${warning}`)
  return { host, client }
}

const median = (xs: number[]): number => {
  const v = [...xs].sort((a, b) => a - b)
  return v.length === 0 ? Number.NaN : v[Math.floor((v.length - 1) / 2)]
}

async function main(): Promise<void> {
  const { seconds, rateMbps, rounds, json } = parseArgs(process.argv.slice(2))
  const rows: Row[] = []
  console.error(`${seconds} s per case; raw UDP and paced cases once, then ${rounds} interleaved rounds of Rust and SDK`)
  rows.push(...rustRows(seconds, rateMbps, 'raw-scalar,raw-batch,paced'))
  rows.push(await sdkCase(`sdk: session over UDP, paced ${rateMbps} Mbit/s`, udpPair(), seconds, { rateMbps }))
  rows.push(await sdkCase('sdk: loopback pair (in-process), window 2', createLoopbackPair(), seconds, { window: 2 }))
  // The comparable cases alternate, so a noisy minute on a shared machine hits both sides.
  const ratios = { unpaced: [] as number[], window2: [] as number[] }
  for (let i = 0; i < rounds; i++) {
    console.error(`round ${i + 1}/${rounds}`)
    const [rustUnpaced, rustWindow] = rustRows(seconds, rateMbps, 'unpaced,window')
    const sdkUnpaced = await sdkCase('sdk: session over UDP, unpaced', udpPair(), seconds, 'unpaced')
    const sdkWindow = await sdkCase('sdk: session over UDP, window 2', udpPair(), seconds, { window: 2 })
    for (const r of [rustUnpaced, sdkUnpaced, rustWindow, sdkWindow]) rows.push({ ...r, case: `${r.case} #${i + 1}` })
    ratios.unpaced.push(sdkUnpaced.goodput_gbps / rustUnpaced.goodput_gbps)
    ratios.window2.push(sdkWindow.goodput_gbps / rustWindow.goodput_gbps)
  }
  const summary = { unpaced: median(ratios.unpaced), window2: median(ratios.window2), rounds: ratios }
  if (json) {
    console.log(JSON.stringify({ rows, sdkOverRust: summary }, null, 2))
    return
  }
  const pad = (s: string, n: number): string => s.padEnd(n)
  console.log(
    `${pad('case', 55)} ${pad('goodput', 12)} ${pad('frames', 7)} ${pad('lost', 5)} ${pad('drops', 6)} ${pad('cpu', 6)} latency p50/p99`,
  )
  for (const r of rows) {
    const cpu = r.cpu_percent ?? (r.tx_cpu_percent ?? 0) + (r.rx_cpu_percent ?? 0)
    console.log(
      `${pad(r.case, 55)} ${pad(`${r.goodput_gbps.toFixed(2)} Gbit/s`, 12)} ${pad(String(r.frames_sent), 7)} ` +
        `${pad(String(r.frames_lost), 5)} ${pad(String(r.send_drops), 6)} ${pad(`${cpu.toFixed(0)} %`, 6)} ` +
        (r.latency_p50_ms === undefined ? '' : `${r.latency_p50_ms.toFixed(2)} / ${(r.latency_p99_ms ?? NaN).toFixed(2)} ms`),
    )
  }
  const fmt = (xs: number[]): string => xs.map((x) => x.toFixed(3)).join(', ')
  console.log(`\nSDK / Rust goodput over UDP (median of ${rounds} rounds; target ≥ 0.90):`)
  console.log(`  unpaced  ${summary.unpaced.toFixed(3)}   (rounds: ${fmt(ratios.unpaced)})`)
  console.log(`  window 2 ${summary.window2.toFixed(3)}   (rounds: ${fmt(ratios.window2)})`)
}

main().catch((e) => {
  console.error(e)
  process.exit(1)
})
