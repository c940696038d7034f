// The same UDP relay pipeline through SRT and through punktfunk, side by side.
//
//   npm run bench:srt [-- --seconds 3] [--rates 100,200,...] [--json]
//
// Pipeline, all on 127.0.0.1:
//
//   udp_load generator ──udp──► sender ══ transport ══► receiver ──udp──► udp_load sink
//   (1316-byte datagrams, paced)                                          (counts, checks order)
//
// - SRT, twice: `srt-live-transmit udp://:IN srt://:PORT` and
//   `srt-live-transmit srt://127.0.0.1:PORT udp://127.0.0.1:OUT` in live mode,
//   first with its defaults (latency 120 ms, no bandwidth cap), then tuned as
//   an expert would for this pipeline: no bandwidth cap (`maxbw=-1`, well
//   above any offered rate), a flow-control window and SRT buffers of ~128k
//   packets (the defaults, 25 600 packets and ~12 MB, hold 120 ms only up to
//   ~2 Gbit/s), 32 MiB UDP socket buffers inside SRT as well, and a latency
//   sized for the loopback round trip (20 ms: the receiver buffer then needs
//   far less memory at a given rate). The tuned figure is the comparison.
// - punktfunk: `punktfunk host --source udp://IN --abr off` and `punktfunk
//   connect --output udp://OUT` (QUIC handshake, FEC, AES-GCM). Rate adaptation
//   is off, as SRT's live mode has none: every step starts a fresh session, and
//   a ramp from the adaptive default start would be measured instead of the
//   transport.
//
// Both get the same UDP socket buffers on the relay's input and output (32 MiB
// asked; the kernel grants what net.core.*mem_max allows). For each rate the
// generator sends for --seconds; a step is clean when at most 0.1 % of the
// datagrams are lost and the generator really sent at ≥ 95 % of the rate (on a
// saturated machine it falls behind, and that rate is not credited). A
// contender's highest clean rate is the best delivered rate of its clean steps;
// it stops stepping after two unclean steps in a row. CPU is the user + system
// time of the two relay processes during the step, in percent of one core;
// "CPU per Gbit/s" is both together at the clean rate, in cores per Gbit/s.
//
// Needs srt-live-transmit (Debian's srt-tools: installed here with apt-get when
// missing and running as root), cargo (builds the udp_load example) and a built
// CLI (npm run build). Bounded: at most ~12 rates × 2 contenders × (seconds + ~3 s).

import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'

const root = resolve(__dirname, '..')
const CLI = join(root, 'bin', 'punktfunk.js')
const DEFAULT_RATES = [100, 200, 400, 600, 800, 1000, 1200, 1500, 2000, 2500, 3000]

interface Load {
  targetMbps: number
  sentMbps: number
  lossPercent: number
  deliveredMbps: number
  sent: number
  unique: number
  reordered: number
  duplicates: number
}

interface Step {
  contender: string
  targetMbps: number
  sentMbps: number
  deliveredMbps: number
  lossPercent: number
  senderCpuPercent: number
  receiverCpuPercent: number
  clean: boolean
}

function parseArgs(argv: string[]): { seconds: number; rates: number[]; json: boolean } {
  const out = { seconds: 3, rates: DEFAULT_RATES, json: false }
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]
    if (a === '--seconds') out.seconds = Math.min(Math.max(Number(argv[++i]), 0.5), 20)
    else if (a === '--rates') out.rates = String(argv[++i]).split(',').map(Number).filter((r) => r > 0 && r <= 20_000)
    else if (a === '--json') out.json = true
    else {
      console.error(`unknown option ${a}\nusage: srt-compare [--seconds N] [--rates R1,R2,...] [--json]`)
      process.exit(2)
    }
  }
  if (!(out.seconds > 0) || out.rates.length === 0) throw new Error('bad --seconds or --rates')
  return out
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))

/** utime + stime of a process, seconds. */
function cpuSeconds(pid: number | undefined): number {
  if (!pid) return 0
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    return (Number(f[11]) + Number(f[12])) / 100
  } catch {
    return 0
  }
}

function ensureSrt(): void {
  if (spawnSync('srt-live-transmit', ['-version']).error === undefined) return
  if (process.getuid?.() !== 0) throw new Error('srt-live-transmit is missing: install Debian\'s srt-tools (apt-get install srt-tools)')
  console.error('installing srt-tools from Debian…')
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' }
  spawnSync('apt-get', ['update', '-qq'], { stdio: 'inherit', env })
  const r = spawnSync('apt-get', ['install', '-y', '-qq', 'srt-tools'], { stdio: 'inherit', env })
  if (r.status !== 0) throw new Error('apt-get install srt-tools failed')
}

function buildLoad(): string {
  console.error('building the udp_load example…')
  const r = spawnSync('cargo', ['build', '--release', '--quiet', '-p', 'punktfunk-core', '--example', 'udp_load'], {
    cwd: root,
    stdio: ['ignore', 'inherit', 'inherit'],
  })
  if (r.status !== 0) throw new Error('building udp_load failed')
  const target = process.env.CARGO_TARGET_DIR ?? join(root, 'target')
  const bin = join(target, 'release', 'examples', 'udp_load')
  if (!existsSync(bin)) throw new Error(`udp_load not found at ${bin}`)
  return bin
}

/** A relay under test: two processes, started and ready. */
interface Relay {
  sender: ChildProcess
  receiver: ChildProcess
}

function stop(p: ChildProcess): Promise<void> {
  if (p.exitCode !== null || p.signalCode !== null) return Promise.resolve()
  return new Promise((r) => {
    const t = setTimeout(() => p.kill('SIGKILL'), 3000)
    p.once('exit', () => {
      clearTimeout(t)
      r()
    })
    p.kill('SIGINT')
  })
}

async function waitFor(what: string, f: () => boolean, ms = 10_000): Promise<void> {
  const end = Date.now() + ms
  while (!f()) {
    if (Date.now() > end) throw new Error(`${what}: not ready within ${ms} ms`)
    await sleep(20)
  }
}

function stderrOf(p: ChildProcess): () => string {
  let s = ''
  p.stderr?.on('data', (d: Buffer) => (s += d.toString()))
  return () => s
}

const PORTS = { in: 47_110, srt: 47_120, out: 47_130 }

/** SRT's options: its defaults, or tuned for this pipeline (see the header). */
const SRT_DEFAULT = 'latency=120&maxbw=-1'
const SRT_TUNED = 'latency=20&maxbw=-1&fc=131072&rcvbuf=180000000&sndbuf=180000000&udp_rcvbuf=33554432&udp_sndbuf=33554432'

async function startSrt(opts: string): Promise<Relay> {
  const sender = spawn('srt-live-transmit', ['-q', `udp://127.0.0.1:${PORTS.in}?rcvbuf=33554432`, `srt://:${PORTS.srt}?${opts}`], {
    stdio: ['ignore', 'ignore', 'pipe'],
  })
  const receiver = spawn('srt-live-transmit', ['-q', `srt://127.0.0.1:${PORTS.srt}?${opts}`, `udp://127.0.0.1:${PORTS.out}?sndbuf=33554432`], {
    stdio: ['ignore', 'ignore', 'pipe'],
  })
  // SRT has no readiness line: give the handshake a moment.
  await sleep(1000)
  if (sender.exitCode !== null || receiver.exitCode !== null) throw new Error('srt-live-transmit exited early')
  return { sender, receiver }
}

async function startOurs(identity: string): Promise<Relay> {
  const sender = spawn(process.execPath, [CLI, 'host', '--bind', '127.0.0.1', '--port', '0', '--identity', identity, '--source', `udp://127.0.0.1:${PORTS.in}`, '--max-clients', '1', '--abr', 'off'], {
    stdio: ['ignore', 'ignore', 'pipe'],
  })
  const hostErr = stderrOf(sender)
  await waitFor('punktfunk host', () => /listening on/.test(hostErr()))
  const m = /listening on (\S+) fingerprint ([0-9a-f]{64})/.exec(hostErr())
  if (!m) throw new Error(`no listening line: ${hostErr()}`)
  const receiver = spawn(process.execPath, [CLI, 'connect', m[1] as string, '--pin', m[2] as string, '--output', `udp://127.0.0.1:${PORTS.out}`], {
    stdio: ['ignore', 'ignore', 'pipe'],
  })
  await waitFor('punktfunk connect', () => /connected, granted/.test(hostErr()))
  return { sender, receiver }
}

async function step(contender: string, start: () => Promise<Relay>, load: string, rate: number, seconds: number): Promise<Step> {
  const relay = await start()
  try {
    const c0 = [cpuSeconds(relay.sender.pid), cpuSeconds(relay.receiver.pid)]
    const t0 = performance.now()
    const r = spawnSync(load, ['--to', `127.0.0.1:${PORTS.in}`, '--listen', `127.0.0.1:${PORTS.out}`, '--mbps', String(rate), '--seconds', String(seconds)], {
      encoding: 'utf8',
      timeout: (seconds + 20) * 1000,
    })
    const secs = (performance.now() - t0) / 1000
    const c1 = [cpuSeconds(relay.sender.pid), cpuSeconds(relay.receiver.pid)]
    if (r.status !== 0) throw new Error(`udp_load failed: ${r.stderr}`)
    const l = JSON.parse(r.stdout) as Load
    const clean = l.lossPercent <= 0.1 && l.sentMbps >= 0.95 * rate
    return {
      contender,
      targetMbps: rate,
      sentMbps: l.sentMbps,
      deliveredMbps: l.deliveredMbps,
      lossPercent: l.lossPercent,
      senderCpuPercent: Math.round((((c1[0] as number) - (c0[0] as number)) / secs) * 1000) / 10,
      receiverCpuPercent: Math.round((((c1[1] as number) - (c0[1] as number)) / secs) * 1000) / 10,
      clean,
    }
  } finally {
    await Promise.all([stop(relay.sender), stop(relay.receiver)])
  }
}

async function main(): Promise<void> {
  const { seconds, rates, json } = parseArgs(process.argv.slice(2))
  if (!existsSync(join(root, 'dist', 'cli', 'main.js'))) throw new Error('build the CLI first: npm run build')
  ensureSrt()
  const load = buildLoad()
  const identity = mkdtempSync(join(tmpdir(), 'punktfunk-srt-compare-'))
  const contenders: Array<[string, () => Promise<Relay>]> = [
    ['srt (defaults)', () => startSrt(SRT_DEFAULT)],
    ['srt (tuned)', () => startSrt(SRT_TUNED)],
    ['punktfunk', () => startOurs(identity)],
  ]
  const steps: Step[] = []
  try {
    for (const [name, start] of contenders) {
      let unclean = 0
      for (const rate of rates) {
        const s = await step(name, start, load, rate, seconds)
        steps.push(s)
        console.error(
          `${name.padEnd(18)} ${String(rate).padStart(5)} Mbit/s: sent ${s.sentMbps.toFixed(0)}, delivered ${s.deliveredMbps.toFixed(0)}, ` +
            `loss ${s.lossPercent.toFixed(3)} %, cpu ${s.senderCpuPercent} % + ${s.receiverCpuPercent} %${s.clean ? '' : '  (not clean)'}`,
        )
        unclean = s.clean ? 0 : unclean + 1
        if (unclean >= 2) break
      }
    }
  } finally {
    rmSync(identity, { recursive: true, force: true })
  }
  const best = (name: string): Step | undefined =>
    steps.filter((s) => s.contender === name && s.clean).sort((a, b) => b.deliveredMbps - a.deliveredMbps)[0]
  const srtDefault = best('srt (defaults)')
  const srt = best('srt (tuned)')
  const ours = best('punktfunk')
  const ratio = srt && ours ? ours.deliveredMbps / srt.deliveredMbps : null
  /** Both relay processes' CPU at the clean rate, cores per Gbit/s delivered. */
  const perGbit = (x: Step | undefined): number | null =>
    x ? Math.round(((x.senderCpuPercent + x.receiverCpuPercent) / 100 / (x.deliveredMbps / 1000)) * 100) / 100 : null
  const summary = {
    seconds,
    datagramBytes: 1316,
    srtDefaultCleanMbps: srtDefault?.deliveredMbps ?? null,
    srtCleanMbps: srt?.deliveredMbps ?? null,
    punktfunkCleanMbps: ours?.deliveredMbps ?? null,
    ratio: ratio === null ? null : Math.round(ratio * 100) / 100,
    srtDefaultCoresPerGbit: perGbit(srtDefault),
    srtCoresPerGbit: perGbit(srt),
    punktfunkCoresPerGbit: perGbit(ours),
    srtCpuAtClean: srt ? { sender: srt.senderCpuPercent, receiver: srt.receiverCpuPercent } : null,
    punktfunkCpuAtClean: ours ? { sender: ours.senderCpuPercent, receiver: ours.receiverCpuPercent } : null,
  }
  if (json) {
    console.log(JSON.stringify({ steps, summary }, null, 2))
    return
  }
  console.log(`\nhighest clean rate (≤ 0.1 % loss, generator at pace), 1316-byte datagrams, ${seconds} s per step:`)
  const line = (x: Step | undefined): string =>
    x ? `${x.deliveredMbps.toFixed(0)} Mbit/s (cpu ${x.senderCpuPercent} % + ${x.receiverCpuPercent} %, ${perGbit(x)} cores per Gbit/s)` : 'none'
  console.log(`  srt (defaults)     ${line(srtDefault)}`)
  console.log(`  srt (tuned)        ${line(srt)}`)
  console.log(`  punktfunk          ${line(ours)}`)
  if (ratio !== null) console.log(`  punktfunk / tuned SRT  ${ratio.toFixed(2)}×`)
}

main().catch((e: unknown) => {
  console.error(e instanceof Error ? e.message : e)
  process.exit(1)
})
