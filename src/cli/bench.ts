/**
 * `punktfunk bench`: the benchmark suite, in one run, on 127.0.0.1. Every
 * case moves 1 MiB frames with 10 % FEC and AES-128-GCM (the raw cases send
 * the same datagrams, plain).
 *
 * - raw UDP: one `send`/`recv` per datagram, `sendmmsg`/`recvmmsg` batches,
 *   and UDP GSO/GRO (Rust threads in the addon): the ceilings.
 * - rust session: the core `Session` driven from Rust threads in the addon,
 *   unpaced over both UDP paths (batched and GSO/GRO), and paced at
 *   `--rate-mbps` with sender pacing on, with frame latency.
 * - sdk session: the same through this SDK, host and client in this process;
 *   `await submitFrame` with back-pressure `'wait'`, frames read with
 *   `events({ borrow: true })` (the Rust cases recycle their frame buffers
 *   too); one row reads them as owned buffers instead, the default.
 * - rounds: unpaced and window-2 cases alternate Rust and SDK for `--rounds`
 *   rounds; the SDK/Rust ratio is the median, so a noisy moment hits both.
 * - scale: one host streaming to 1, 4 and 16 clients sharing `--rate-mbps`.
 *
 * Allocations are the addon's own (Rust) allocations: whole case, and per
 * datagram after warm-up (8 frames).
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
    'no-scale': { kind: 'boolean', help: 'skip the one-host-many-clients runs' },
    json: { kind: 'boolean', help: 'print { rows, sdkOverRust, scale, config } as JSON' },
  },
}

const FRAME_BYTES = 1 << 20

/** One measured case. */
export interface BenchRow {
  case: string
  /** UDP path: `gso` (GSO/GRO) or `batch` (sendmmsg/recvmmsg), or `scalar`/`memory`. */
  path: 'gso' | 'batch' | 'scalar' | 'memory'
  seconds: number
  goodputGbps: number
  wireGbps: number
  packetsPerSec: number
  framesSent: number
  framesLost: number
  sendDrops: number
  /** Send / receive system calls per second (receive includes readiness waits). */
  sendSyscallsPerSec: number | null
  recvSyscallsPerSec: number | null
  /** CPU of the sending and receiving threads, % of one core (Rust cases). */
  txCpuPercent: number | null
  rxCpuPercent: number | null
  /** CPU seconds per GB of frame data delivered, sending and receiving threads (Rust cases). */
  txCpuSecondsPerGb: number | null
  rxCpuSecondsPerGb: number | null
  /** CPU of the whole process, % of one core, and CPU seconds per GB delivered (SDK cases: both ends together). */
  processCpuPercent: number | null
  processCpuSecondsPerGb: number | null
  /** Paced cases: frame latency submit → delivered, and p99 beyond the frame's own send span. */
  latencyP50Ms: number | null
  latencyP99Ms: number | null
  addedLatencyP99Ms: number | null
  /** Rust allocations per datagram after warm-up. */
  allocationsPerPacket: number | null
}

function nativeRow(label: string, path: BenchRow['path'], r: NativeBenchRow): BenchRow {
  const s = r.secs > 0 ? r.secs : 1
  const gb = r.payloadBytes / 1e9
  return {
    case: label,
    path,
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
    txCpuSecondsPerGb: gb > 0 ? round(r.txCpu / gb, 2) : null,
    rxCpuSecondsPerGb: gb > 0 ? round(r.rxCpu / gb, 2) : null,
    processCpuPercent: null,
    processCpuSecondsPerGb: null,
    latencyP50Ms: r.latencyP50Ms == null ? null : round(r.latencyP50Ms, 3),
    latencyP99Ms: r.latencyP99Ms == null ? null : round(r.latencyP99Ms, 3),
    addedLatencyP99Ms: r.addedLatencyP99Ms == null ? null : round(r.addedLatencyP99Ms, 3),
    allocationsPerPacket: r.steadyAllocationsPerPacket ?? null,
  }
}

const PATH_LABEL = { gso: 'GSO/GRO', batch: 'sendmmsg/recvmmsg', scalar: 'send/recv', memory: 'in-process link' } as const

async function rust(kase: string, path: 'gso' | 'batch', seconds: number, rateMbps: number): Promise<BenchRow> {
  const r = await native().benchRun(kase, seconds, rateMbps, path === 'gso')
  // The addon says which path the sender really used (no GSO where the kernel lacks it).
  const used: BenchRow['path'] = kase === 'raw-scalar' ? 'scalar' : r.offload ? 'gso' : 'batch'
  const what = kase.startsWith('raw') ? 'raw UDP' : `rust session, ${caseLabel(kase, rateMbps)}`
  return nativeRow(`${what}, ${PATH_LABEL[used]}`, used, r)
}

function caseLabel(kase: string, rateMbps: number): string {
  return kase === 'paced' ? `paced ${rateMbps} Mbit/s` : kase === 'window' ? 'window 2' : 'unpaced'
}

type Pace = { window: number } | { rateMbps: number } | 'unpaced'

/** Frames sent before the steady state is measured (allocations). */
const WARMUP_FRAMES = 8

/** Runs one SDK case on `pair`, closing it at the end. */
async function sdk(label: string, path: BenchRow['path'], pair: { host: Session; client: Session }, seconds: number, pace: Pace, borrow = true): Promise<BenchRow> {
  const { host, client } = pair
  const frame = Buffer.alloc(FRAME_BYTES, 0xc3)
  let sent = 0
  let finished = 0
  let lastDelivery = performance.now()
  let creditWaiter: (() => void) | undefined
  const submittedAt: number[] = []
  const latencies: number[] = []
  let warm: { allocations: number | null; packets: number } | undefined
  const cpu0 = process.cpuUsage()
  const start = performance.now()
  let readError: unknown
  const reading = (async () => {
    for await (const ev of client.events({ borrow })) {
      if (ev.type === 'frame') {
        finished += 1
        latencies.push(performance.now() - (submittedAt[ev.index] ?? start))
      } else finished += ev.count
      lastDelivery = performance.now()
      const waiter = creditWaiter
      creditWaiter = undefined
      waiter?.()
    }
  })().catch((e: unknown) => {
    readError = e
  })
  const interval = typeof pace === 'object' && 'rateMbps' in pace ? (FRAME_BYTES * 8) / (pace.rateMbps * 1e3) : 0
  while (performance.now() - start < seconds * 1000) {
    if (typeof pace === 'object' && 'window' in pace) {
      while (sent >= finished + pace.window) {
        // A frame lost without a trace never finishes: stop waiting for it after 50 ms.
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, 50)
          creditWaiter = () => {
            clearTimeout(timer)
            resolve()
          }
        })
        if (sent >= finished + pace.window && performance.now() - lastDelivery > 50) finished += 1
      }
    } else if (interval > 0) {
      const due = start + sent * interval
      const now = performance.now()
      if (due > now) await new Promise((r) => setTimeout(r, due - now))
    }
    if (sent === WARMUP_FRAMES) warm = { allocations: native().allocationCount() ?? null, packets: host.stats().packetsSent }
    submittedAt.push(performance.now())
    await host.submitFrame(frame, { pts: sent })
    sent += 1
  }
  const drainStart = performance.now()
  while (client.stats().framesCompleted + client.stats().framesDropped < sent && performance.now() - drainStart < 1000) {
    await new Promise((r) => setTimeout(r, 5))
  }
  const allocsNow = native().allocationCount() ?? null
  const steadyAllocations = warm && warm.allocations !== null && allocsNow !== null ? allocsNow - warm.allocations : undefined
  const cpu = process.cpuUsage(cpu0)
  const hs = host.stats()
  const cs = client.stats()
  await Promise.all([host.close(), client.close()])
  await reading
  if (readError) throw readError
  const secs = Math.max(1e-3, (lastDelivery - start) / 1000)
  const sorted = Float64Array.from(latencies).sort()
  const paced = interval > 0
  const steadyPackets = warm ? hs.packetsSent - warm.packets : 0
  return {
    case: label,
    path,
    seconds: round(secs, 3),
    goodputGbps: round((cs.payloadBytesDelivered * 8) / secs / 1e9, 3),
    wireGbps: round((cs.bytesReceived * 8) / secs / 1e9, 3),
    packetsPerSec: Math.round(cs.packetsReceived / secs),
    framesSent: sent,
    framesLost: sent - cs.framesCompleted,
    sendDrops: hs.packetsSendDropped,
    sendSyscallsPerSec: path === 'memory' ? null : Math.round(hs.sendSyscalls / secs),
    recvSyscallsPerSec: path === 'memory' ? null : Math.round((cs.recvSyscalls + cs.recvWaitSyscalls) / secs),
    txCpuPercent: null,
    rxCpuPercent: null,
    txCpuSecondsPerGb: null,
    rxCpuSecondsPerGb: null,
    processCpuPercent: round(((cpu.user + cpu.system) / 1e6 / secs) * 100, 1),
    processCpuSecondsPerGb: cs.payloadBytesDelivered > 0 ? round((cpu.user + cpu.system) / 1e6 / (cs.payloadBytesDelivered / 1e9), 2) : null,
    latencyP50Ms: paced ? round(percentile(sorted, 0.5), 3) : null,
    latencyP99Ms: paced ? round(percentile(sorted, 0.99), 3) : null,
    addedLatencyP99Ms: null,
    allocationsPerPacket: steadyAllocations !== undefined && steadyPackets > 0 ? round(steadyAllocations / steadyPackets, 6) : null,
  }
}

function udpPair(path: 'gso' | 'batch', pacing: boolean): { host: Session; client: Session } {
  const keys = { secret: generateSecret(), context: 'bench' }
  const udpOffload = path === 'gso' ? 'auto' : 'off'
  const client = createUdpSession({ role: 'client', bind: '127.0.0.1:0', keys, udpOffload })
  const host = createUdpSession({ role: 'host', bind: '127.0.0.1:0', peer: client.localAddress ?? '', keys, udpOffload, pacing })
  client.connect(host.localAddress ?? '')
  return { host, client }
}

const median = (xs: number[]): number => {
  const v = [...xs].sort((a, b) => a - b)
  return v.length === 0 ? Number.NaN : (v[Math.floor((v.length - 1) / 2)] as number)
}

/** One host streaming to several clients. */
export interface ScaleResult {
  clients: number
  aggregateGoodputGbps: number
  minClientGbps: number
  maxClientGbps: number
  hostCpuSeconds: number
  /** Host CPU seconds per GB delivered. */
  hostCpuSecondsPerGb: number | null
  framesSent: number
  framesLost: number
  sendDrops: number
}

/** What one bench run measured. */
export interface BenchResult {
  rows: BenchRow[]
  /** SDK goodput over Rust goodput, median over the rounds, and each round's. */
  sdkOverRust: { unpaced: number; window2: number; rounds: { unpaced: number[]; window2: number[] } }
  /** 1, 4 and 16 clients sharing `rateMbps`; `aggregateVsSingle` is the 16-client aggregate over the 1-client one. */
  scale: { rateMbps: number; runs: ScaleResult[]; aggregateVsSingle: number | null }
  config: { seconds: number; rateMbps: number; rounds: number; frameBytes: number; fecPercent: number }
}

/** Runs every case; `progress` hears each case's name before it starts. */
export async function runBench(
  opts: { seconds: number; rateMbps: number; rounds: number; scale: boolean },
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
  const paced = `paced ${rateMbps} Mbit/s`
  await step('raw UDP, send/recv', () => rust('raw-scalar', 'batch', seconds, rateMbps))
  await step('raw UDP, sendmmsg/recvmmsg', () => rust('raw-batch', 'batch', seconds, rateMbps))
  await step('raw UDP, GSO/GRO', () => rust('raw-gso', 'gso', seconds, rateMbps))
  await step('rust session, unpaced, sendmmsg/recvmmsg', () => rust('unpaced', 'batch', seconds, rateMbps))
  await step(`rust session, ${paced}, GSO/GRO`, () => rust('paced', 'gso', seconds, rateMbps))
  await step(`sdk session, ${paced}, GSO/GRO`, () =>
    sdk(`sdk session, ${paced}, GSO/GRO`, 'gso', udpPair('gso', true), seconds, { rateMbps }),
  )
  await step('sdk session, unpaced, sendmmsg/recvmmsg', () =>
    sdk('sdk session, unpaced, sendmmsg/recvmmsg', 'batch', udpPair('batch', false), seconds, 'unpaced'),
  )
  await step('sdk loopback pair, unpaced', () =>
    sdk('sdk loopback pair, unpaced, in-process link', 'memory', createLoopbackPair(), seconds, 'unpaced'),
  )
  await step('sdk session, unpaced, GSO/GRO, owned frames', () =>
    sdk('sdk session, unpaced, GSO/GRO, owned frames', 'gso', udpPair('gso', false), seconds, 'unpaced', false),
  )
  const ratios = { unpaced: [] as number[], window2: [] as number[] }
  for (let i = 0; i < rounds; i++) {
    const tag = rounds > 1 ? ` #${i + 1}` : ''
    const named = (r: BenchRow, name: string): BenchRow => ({ ...r, case: name })
    const ru = await step(`rust session, unpaced, GSO/GRO${tag}`, async () => named(await rust('unpaced', 'gso', seconds, rateMbps), `rust session, unpaced, GSO/GRO${tag}`))
    const su = await step(`sdk session, unpaced, GSO/GRO${tag}`, () => sdk(`sdk session, unpaced, GSO/GRO${tag}`, 'gso', udpPair('gso', false), seconds, 'unpaced'))
    const rw = await step(`rust session, window 2, GSO/GRO${tag}`, async () => named(await rust('window', 'gso', seconds, rateMbps), `rust session, window 2, GSO/GRO${tag}`))
    const sw = await step(`sdk session, window 2, GSO/GRO${tag}`, () => sdk(`sdk session, window 2, GSO/GRO${tag}`, 'gso', udpPair('gso', false), seconds, { window: 2 }))
    ratios.unpaced.push(su.goodputGbps / ru.goodputGbps)
    ratios.window2.push(sw.goodputGbps / rw.goodputGbps)
  }
  const runs: ScaleResult[] = []
  if (opts.scale) {
    for (const clients of [1, 4, 16]) {
      progress(`one host, ${clients} client${clients > 1 ? 's' : ''} sharing ${rateMbps} Mbit/s`)
      const r = await native().benchScale(clients, rateMbps, seconds)
      const gb = (r.aggregateGoodputGbps * r.seconds) / 8
      runs.push({
        clients: r.clients,
        aggregateGoodputGbps: round(r.aggregateGoodputGbps, 3),
        minClientGbps: round(Math.min(...r.perClientGbps), 4),
        maxClientGbps: round(Math.max(...r.perClientGbps), 4),
        hostCpuSeconds: round(r.hostCpuSeconds, 3),
        hostCpuSecondsPerGb: gb > 0 ? round(r.hostCpuSeconds / gb, 2) : null,
        framesSent: r.framesSent,
        framesLost: r.framesLost,
        sendDrops: r.sendDrops,
      })
    }
  }
  const one = runs.find((r) => r.clients === 1)
  const sixteen = runs.find((r) => r.clients === 16)
  return {
    rows,
    sdkOverRust: { unpaced: round(median(ratios.unpaced), 3), window2: round(median(ratios.window2), 3), rounds: ratios },
    scale: {
      rateMbps,
      runs,
      aggregateVsSingle: one && sixteen && one.aggregateGoodputGbps > 0 ? round(sixteen.aggregateGoodputGbps / one.aggregateGoodputGbps, 3) : null,
    },
    config: { seconds, rateMbps, rounds, frameBytes: FRAME_BYTES, fecPercent: 10 },
  }
}

const dash = (v: number | null, unit = ''): string => (v === null ? '–' : `${v}${unit}`)

function table(head: string[], body: string[][]): string[] {
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => (b[i] ?? '').length)))
  const line = (cells: string[]): string => cells.map((c, i) => c.padEnd(widths[i] as number)).join('  ').trimEnd()
  return [line(head), ...body.map(line)]
}

/** The result as tables. */
export function benchTable(r: BenchResult): string {
  const main = table(
    ['case', 'goodput', 'wire', 'pkts/s', 'send sc/s', 'recv sc/s', 'cpu tx/rx', 'cpu s/GB tx/rx', 'frames', 'lost', 'drops', 'latency p50/p99', 'added p99', 'allocs/pkt'],
    r.rows.map((x) => [
      x.case,
      `${x.goodputGbps.toFixed(2)} Gbit/s`,
      `${x.wireGbps.toFixed(2)} Gbit/s`,
      String(x.packetsPerSec),
      dash(x.sendSyscallsPerSec),
      dash(x.recvSyscallsPerSec),
      x.processCpuPercent !== null ? `${x.processCpuPercent} % proc` : `${dash(x.txCpuPercent)} / ${dash(x.rxCpuPercent)} %`,
      x.txCpuSecondsPerGb !== null
        ? `${x.txCpuSecondsPerGb} / ${dash(x.rxCpuSecondsPerGb)}`
        : x.processCpuSecondsPerGb !== null
          ? `${x.processCpuSecondsPerGb} proc`
          : '–',
      String(x.framesSent),
      String(x.framesLost),
      String(x.sendDrops),
      x.latencyP50Ms === null ? '' : `${x.latencyP50Ms} / ${x.latencyP99Ms} ms`,
      x.addedLatencyP99Ms === null ? '' : `${x.addedLatencyP99Ms} ms`,
      x.allocationsPerPacket === null ? '' : String(x.allocationsPerPacket),
    ]),
  )
  const s = r.sdkOverRust
  const fmt = (xs: number[]): string => xs.map((x) => x.toFixed(3)).join(', ')
  const out = [
    `1 MiB frames, ${r.config.fecPercent} % FEC, AES-128-GCM, 127.0.0.1, ${r.config.seconds} s per case`,
    ...main,
    '',
    `SDK / Rust goodput (median of ${r.config.rounds} round${r.config.rounds > 1 ? 's' : ''}): unpaced ${s.unpaced.toFixed(3)} (${fmt(s.rounds.unpaced)}), window 2 ${s.window2.toFixed(3)} (${fmt(s.rounds.window2)})`,
  ]
  if (r.scale.runs.length > 0) {
    out.push(
      '',
      `one host, clients sharing ${r.scale.rateMbps} Mbit/s (256 KiB frames):`,
      ...table(
        ['clients', 'aggregate', 'per client min / max', 'host cpu', 'host cpu s/GB', 'frames', 'lost', 'drops'],
        r.scale.runs.map((x) => [
          String(x.clients),
          `${x.aggregateGoodputGbps.toFixed(3)} Gbit/s`,
          `${x.minClientGbps} / ${x.maxClientGbps} Gbit/s`,
          `${x.hostCpuSeconds} s`,
          dash(x.hostCpuSecondsPerGb),
          String(x.framesSent),
          String(x.framesLost),
          String(x.sendDrops),
        ]),
      ),
      `16 clients / 1 client aggregate: ${dash(r.scale.aggregateVsSingle)}`,
    )
  }
  return out.join('\n')
}

export async function bench(f: Flags): Promise<number> {
  const opts = { seconds: f.num('seconds', 2), rateMbps: f.num('rate-mbps', 1000), rounds: f.num('rounds', 1), scale: !f.bool('no-scale') }
  const status = new StatusLine()
  const result = await runBench(opts, (what) => status.show(`measuring ${what}…`))
  status.end()
  process.stdout.write(f.bool('json') ? `${JSON.stringify(result, null, 2)}\n` : `${benchTable(result)}\n`)
  return 0
}
