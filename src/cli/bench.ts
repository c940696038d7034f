/**
 * `punktfunk bench`: raw UDP, the Rust session and the TypeScript SDK measured
 * side by side in one run, on 127.0.0.1. Every case moves 1 MiB frames with
 * 10 % FEC and AES-128-GCM (the raw cases send the same datagrams, plain).
 *
 * - raw scalar / raw batched: plain datagrams, one `send`/`recv` per datagram
 *   or `sendmmsg`/`recvmmsg` batches (Rust threads in the addon).
 * - rust unpaced / window 2 / paced: the core `Session` driven from Rust
 *   threads in the addon.
 * - sdk unpaced / window 2 / paced: the same through this SDK, host and client
 *   in this process; `await submitFrame` with back-pressure `'wait'`.
 *
 * Unpaced and window-2 cases alternate Rust and SDK for `--rounds` rounds and
 * the SDK/Rust ratio is the median, so a noisy moment hits both sides.
 */
import { createLoopbackPair, createUdpSession } from '../index'
import { native, type NativeBenchRow } from '../native'
import { generateSecret } from '../options'
import type { Session } from '../session'
import type { CommandSpec, Flags } from './args'
import { percentile, round, StatusLine } from './report'

export const benchSpec: CommandSpec = {
  name: 'bench',
  summary: 'Measures raw UDP, the Rust session and the TypeScript SDK side by side on loopback; prints a table.',
  positionals: [],
  flags: {
    seconds: { kind: 'number', value: 'N', help: 'seconds per case (default 2)', min: 0.2, max: 60 },
    'rate-mbps': { kind: 'number', value: 'R', help: 'goodput of the paced cases, Mbit/s (default 1000)', min: 1, max: 10_000 },
    rounds: { kind: 'number', value: 'K', help: 'interleaved Rust/SDK rounds of the unpaced and window cases (default 1)', min: 1, max: 20, integer: true },
    json: { kind: 'boolean', help: 'print { rows, sdkOverRust } as JSON' },
  },
}

const FRAME_BYTES = 1 << 20

/** One measured case. */
export interface BenchRow {
  case: string
  seconds: number
  goodputGbps: number
  wireGbps: number
  packetsPerSec: number
  framesSent: number
  framesLost: number
  sendDrops: number
  /** Send / receive system calls per second (null where not counted). */
  sendSyscallsPerSec: number | null
  recvSyscallsPerSec: number | null
  /** CPU of the sending and receiving threads, % of one core (Rust cases). */
  txCpuPercent: number | null
  rxCpuPercent: number | null
  /** CPU of the whole process, % of one core (SDK cases). */
  processCpuPercent: number | null
  latencyP50Ms: number | null
  latencyP99Ms: number | null
}

function nativeRow(label: string, r: NativeBenchRow): BenchRow {
  const s = r.secs > 0 ? r.secs : 1
  return {
    case: label,
    seconds: round(r.secs, 3),
    goodputGbps: round((r.payloadBytes * 8) / s / 1e9, 3),
    wireGbps: round((r.wireBytes * 8) / s / 1e9, 3),
    packetsPerSec: Math.round(r.packetsReceived / s),
    framesSent: r.framesSent,
    framesLost: r.framesLost,
    sendDrops: r.sendDrops,
    sendSyscallsPerSec: Math.round(r.sendSyscalls / s),
    recvSyscallsPerSec: Math.round((r.recvSyscalls + r.polls) / s),
    txCpuPercent: round((r.txCpu / s) * 100, 1),
    rxCpuPercent: round((r.rxCpu / s) * 100, 1),
    processCpuPercent: null,
    latencyP50Ms: null,
    latencyP99Ms: null,
  }
}

async function rust(kase: string, seconds: number, rateMbps: number): Promise<BenchRow> {
  const r = await native().benchRun(kase, seconds, rateMbps)
  const label = kase.startsWith('raw') ? `raw UDP, ${kase === 'raw-scalar' ? 'send/recv' : 'sendmmsg/recvmmsg'}` : `rust session, ${caseLabel(kase, rateMbps)}`
  return nativeRow(label, r)
}

function caseLabel(kase: string, rateMbps: number): string {
  return kase === 'paced' ? `paced ${rateMbps} Mbit/s` : kase === 'window' ? 'window 2' : 'unpaced'
}

type Pace = { window: number } | { rateMbps: number } | 'unpaced'

/** Runs one SDK case on `pair`, closing it at the end. */
async function sdk(label: string, pair: { host: Session; client: Session }, seconds: number, pace: Pace): Promise<BenchRow> {
  const { host, client } = pair
  const frame = Buffer.alloc(FRAME_BYTES, 0xc3)
  let sent = 0
  let finished = 0
  let lastDelivery = performance.now()
  let creditWaiter: (() => void) | undefined
  const submittedAt: number[] = []
  const latencies: number[] = []
  const cpu0 = process.cpuUsage()
  const start = performance.now()
  let readError: unknown
  const reading = (async () => {
    for await (const ev of client.events()) {
      if (ev.type === 'frame') {
        finished += 1
        latencies.push(performance.now() - (submittedAt[ev.index] ?? start))
      } else finished += ev.count
      lastDelivery = performance.now()
      creditWaiter?.()
    }
  })().catch((e: unknown) => {
    readError = e
  })
  const interval = typeof pace === 'object' && 'rateMbps' in pace ? (FRAME_BYTES * 8) / (pace.rateMbps * 1e3) : 0
  while (performance.now() - start < seconds * 1000) {
    if (typeof pace === 'object' && 'window' in pace) {
      while (sent >= finished + pace.window) {
        // A frame lost without a trace never finishes: stop waiting for it after 50 ms.
        await Promise.race([new Promise<void>((r) => (creditWaiter = r)), new Promise<void>((r) => setTimeout(r, 50))])
        if (sent >= finished + pace.window && performance.now() - lastDelivery > 50) finished += 1
      }
    } else if (interval > 0) {
      const due = start + sent * interval
      const now = performance.now()
      if (due > now) await new Promise((r) => setTimeout(r, due - now))
    }
    submittedAt.push(performance.now())
    await host.submitFrame(frame, { pts: sent })
    sent += 1
  }
  const drainStart = performance.now()
  while (client.stats().framesCompleted + client.stats().framesDropped < sent && performance.now() - drainStart < 1000) {
    await new Promise((r) => setTimeout(r, 5))
  }
  const cpu = process.cpuUsage(cpu0)
  const hs = host.stats()
  const cs = client.stats()
  await Promise.all([host.close(), client.close()])
  await reading
  if (readError) throw readError
  const secs = Math.max(1e-3, (lastDelivery - start) / 1000)
  const sorted = Float64Array.from(latencies).sort()
  const paced = interval > 0
  return {
    case: label,
    seconds: round(secs, 3),
    goodputGbps: round((cs.payloadBytesDelivered * 8) / secs / 1e9, 3),
    wireGbps: round((cs.bytesReceived * 8) / secs / 1e9, 3),
    packetsPerSec: Math.round(cs.packetsReceived / secs),
    framesSent: sent,
    framesLost: sent - cs.framesCompleted,
    sendDrops: hs.packetsSendDropped,
    sendSyscallsPerSec: Math.round(hs.sendSyscalls / secs),
    recvSyscallsPerSec: Math.round((cs.recvSyscalls + cs.recvWaitSyscalls) / secs),
    txCpuPercent: null,
    rxCpuPercent: null,
    processCpuPercent: round(((cpu.user + cpu.system) / 1e6 / secs) * 100, 1),
    latencyP50Ms: paced ? round(percentile(sorted, 0.5), 3) : null,
    latencyP99Ms: paced ? round(percentile(sorted, 0.99), 3) : null,
  }
}

function udpPair(): { host: Session; client: Session } {
  const keys = { secret: generateSecret(), context: 'bench' }
  const client = createUdpSession({ role: 'client', bind: '127.0.0.1:0', keys })
  const host = createUdpSession({ role: 'host', bind: '127.0.0.1:0', peer: client.localAddress ?? '', keys })
  client.connect(host.localAddress ?? '')
  return { host, client }
}

const median = (xs: number[]): number => {
  const v = [...xs].sort((a, b) => a - b)
  return v.length === 0 ? Number.NaN : (v[Math.floor((v.length - 1) / 2)] as number)
}

/** What one bench run measured. */
export interface BenchResult {
  rows: BenchRow[]
  /** SDK goodput over Rust goodput, median over the rounds, and each round's. */
  sdkOverRust: { unpaced: number; window2: number; rounds: { unpaced: number[]; window2: number[] } }
  config: { seconds: number; rateMbps: number; rounds: number; frameBytes: number; fecPercent: number }
}

/** Runs every case; `progress` hears each case's name before it starts. */
export async function runBench(
  opts: { seconds: number; rateMbps: number; rounds: number },
  progress: (what: string) => void,
): Promise<BenchResult> {
  const { seconds, rateMbps, rounds } = opts
  const rows: BenchRow[] = []
  const step = async (what: string, f: () => Promise<BenchRow>): Promise<BenchRow> => {
    progress(what)
    const r = await f()
    rows.push(r)
    return r
  }
  await step('raw UDP, send/recv', () => rust('raw-scalar', seconds, rateMbps))
  await step('raw UDP, sendmmsg/recvmmsg', () => rust('raw-batch', seconds, rateMbps))
  await step(`rust session, paced ${rateMbps} Mbit/s`, () => rust('paced', seconds, rateMbps))
  await step(`sdk session, paced ${rateMbps} Mbit/s`, () =>
    sdk(`sdk session, paced ${rateMbps} Mbit/s`, udpPair(), seconds, { rateMbps }),
  )
  await step('sdk loopback pair (in-process link), unpaced', () =>
    sdk('sdk loopback pair (in-process link), unpaced', createLoopbackPair(), seconds, 'unpaced'),
  )
  const ratios = { unpaced: [] as number[], window2: [] as number[] }
  for (let i = 0; i < rounds; i++) {
    const tag = rounds > 1 ? ` #${i + 1}` : ''
    const ru = await step(`rust session, unpaced${tag}`, async () => ({ ...(await rust('unpaced', seconds, rateMbps)), case: `rust session, unpaced${tag}` }))
    const su = await step(`sdk session, unpaced${tag}`, () => sdk(`sdk session, unpaced${tag}`, udpPair(), seconds, 'unpaced'))
    const rw = await step(`rust session, window 2${tag}`, async () => ({ ...(await rust('window', seconds, rateMbps)), case: `rust session, window 2${tag}` }))
    const sw = await step(`sdk session, window 2${tag}`, () => sdk(`sdk session, window 2${tag}`, udpPair(), seconds, { window: 2 }))
    ratios.unpaced.push(su.goodputGbps / ru.goodputGbps)
    ratios.window2.push(sw.goodputGbps / rw.goodputGbps)
  }
  return {
    rows,
    sdkOverRust: { unpaced: round(median(ratios.unpaced), 3), window2: round(median(ratios.window2), 3), rounds: ratios },
    config: { seconds, rateMbps, rounds, frameBytes: FRAME_BYTES, fecPercent: 10 },
  }
}

const dash = (v: number | null, unit = ''): string => (v === null ? '–' : `${v}${unit}`)

/** The result as a table. */
export function benchTable(r: BenchResult): string {
  const head = ['case', 'goodput', 'wire', 'pkts/s', 'send sc/s', 'recv sc/s', 'cpu tx/rx or proc', 'frames', 'lost', 'drops', 'latency p50/p99']
  const body = r.rows.map((x) => [
    x.case,
    `${x.goodputGbps.toFixed(2)} Gbit/s`,
    `${x.wireGbps.toFixed(2)} Gbit/s`,
    String(x.packetsPerSec),
    dash(x.sendSyscallsPerSec),
    dash(x.recvSyscallsPerSec),
    x.processCpuPercent !== null ? `${x.processCpuPercent} % proc` : `${dash(x.txCpuPercent)} / ${dash(x.rxCpuPercent)} %`,
    String(x.framesSent),
    String(x.framesLost),
    String(x.sendDrops),
    x.latencyP50Ms === null ? '' : `${x.latencyP50Ms} / ${x.latencyP99Ms} ms`,
  ])
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => (b[i] as string).length)))
  const line = (cells: string[]): string => cells.map((c, i) => c.padEnd(widths[i] as number)).join('  ').trimEnd()
  const s = r.sdkOverRust
  const fmt = (xs: number[]): string => xs.map((x) => x.toFixed(3)).join(', ')
  return [
    `1 MiB frames, ${r.config.fecPercent} % FEC, AES-128-GCM, 127.0.0.1, ${r.config.seconds} s per case`,
    line(head),
    ...body.map(line),
    '',
    `SDK / Rust goodput (median of ${r.config.rounds} round${r.config.rounds > 1 ? 's' : ''}): unpaced ${s.unpaced.toFixed(3)} (${fmt(s.rounds.unpaced)}), window 2 ${s.window2.toFixed(3)} (${fmt(s.rounds.window2)})`,
  ].join('\n')
}

export async function bench(f: Flags): Promise<number> {
  const opts = { seconds: f.num('seconds', 2), rateMbps: f.num('rate-mbps', 1000), rounds: f.num('rounds', 1) }
  const status = new StatusLine()
  const result = await runBench(opts, (what) => status.show(`measuring ${what}…`))
  status.end()
  process.stdout.write(f.bool('json') ? `${JSON.stringify(result, null, 2)}\n` : `${benchTable(result)}\n`)
  return 0
}
