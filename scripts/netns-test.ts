/**
 * Impaired-network test: a real `punktfunk host` and `punktfunk connect` in two
 * network namespaces joined by a veth pair, with a tbf shaper and nftables
 * packet loss on the data plane, checked against what an MDS code predicts.
 *
 *   sudo node --import tsx scripts/netns-test.ts
 *
 * Needs root (namespaces, tc, nftables); prints `SKIP: ...` and exits 0 where
 * namespaces cannot be made. As root it installs missing `iproute2` / `nftables`
 * with apt-get. Exit code 1 if any check fails. The CLI must be built (dist/).
 * Environment: PF_NETNS_SECONDS (streaming seconds per case, default 7),
 * PF_NETNS_RATE_MBPS (synthetic rate, default 200).
 *
 * ## The path
 *
 *   pf-h-PID [10.77.0.1, veth pfhPID] ──tbf 1 Gbit/s──► [veth pfcPID, 10.77.0.2] pf-c-PID
 *                                                       nftables input: random / burst drops
 *
 * * tbf on the host's veth (host → client): `rate 1gbit burst 256kb latency 100ms`.
 *   burst 256 KB (~187 datagrams) is well above rate/HZ (1 Gbit/s ÷ 250 Hz =
 *   62.5 KB) so the shaper reaches its rate, and small enough that one release
 *   stays far below the receiving CPU's backlog (net.core.netdev_max_backlog =
 *   1000 packets). latency 100 ms gives a queue of rate × latency + burst ≈ 12.8 MB,
 *   far above the largest frame burst at 200 Mbit/s (a keyframe: ~1300 datagrams,
 *   1.8 MB), so tbf shapes and never drops. Its drop counter is read and reported.
 * * `gso_max_segs 1` on the host's veth: the sender uses UDP GSO, and a veth
 *   hands GSO super-packets (up to 64 datagrams) to the peer namespace whole, so
 *   an nftables drop would remove dozens of consecutive datagrams at once (and the
 *   length match would miss them). With at most one segment per packet the kernel
 *   segments in software before the veth, and the client's input hook sees every
 *   1401-byte datagram on its own.
 *
 * ## The loss rule (client namespace, `inet pf`, input hook)
 *
 *   ip saddr 10.77.0.1 udp sport != QUICPORT udp length 1409 jump data
 *   data: counter data_in; numgen random mod 1000 < PERMILLE counter rand_drop drop
 *
 * A data-plane datagram is exactly shard (1344) + 57 = 1401 bytes, i.e. a UDP
 * length field of 1409, and comes from the host's data socket, never from its
 * QUIC listen port (the port `--port 0` picked, read from the host's
 * `listening on` line; the table is built after it). Both conditions must hold,
 * so the QUIC control connection (sport = QUICPORT, any size) is never touched,
 * even if a QUIC packet happened to be 1409 bytes long. `numgen random` draws a
 * fresh kernel random number per packet: independent (Bernoulli) loss.
 * The counters give the real number of data datagrams that reached the client
 * (data_in) and that were dropped, so the prediction uses the measured loss p̂.
 *
 * ## Burst loss (kernel-only Gilbert-Elliott-like two-state model)
 *
 *   data: ip saddr @burst counter burst_drop drop
 *         numgen random mod 10000 < 3 add @burst { ip saddr timeout 8ms } counter burst_start drop
 *
 * Each data datagram, in the good state, starts a burst with probability 3e-4;
 * the bad state is an element of a timeout set that expires after 8 ms (kernel
 * jiffies, 4 ms granularity at HZ=250): every data datagram meanwhile is dropped.
 * At 200 Mbit/s a frame leaves as a train of ~300 datagrams at the 1 Gbit/s tbf
 * rate (~3.5 ms), so a burst wipes out the rest of a frame's train: real runs of
 * hundreds of consecutive losses, ~5 bursts a second, no user-space timing.
 *
 * ## The prediction
 *
 * The synthetic source is deterministic (dist/cli/stream.js `FrameSizes`, the
 * same code the host runs; `connect` never asks for keyframes), so the size of
 * every frame sent is known exactly. Each frame is laid out as the core does
 * (fec.rs `FrameLayout`: N = ceil(len / 1344) data shards in B = ceil(N / 4096)
 * balanced blocks; each block of k gets m = max(2, ceil(k · F / 100)) recovery
 * shards, `recovery_count`). The number of datagrams this predicts is compared
 * with the data_in counter: any shortfall (sender, tbf or backlog drops) plus the
 * client's UDP receive errors is the count E of losses that are not the random rule.
 *
 * A block is recoverable iff at most m of its n = k + m datagrams are lost; with
 * independent loss p̂ = rand_drop / data_in, P(block) = Σ_{i≤m} C(n,i) p̂^i (1-p̂)^(n-i),
 * P(frame) = Π P(block). Delivered frames D are a sum of independent Bernoulli(P_i):
 * μ = Σ P_i, σ² = Σ P_i (1 - P_i). (Using the p̂ measured on the same datagrams
 * only lowers the variance of D - μ, so σ is conservative.) Pass iff
 *
 *   μ - 4σ - 2 - E  ≤  D  ≤  μ + 4σ + 2
 *
 * where 2 frames allow for the stream's end (the last frames may be cut by the
 * session close) and each of the E non-random losses can cost at most one frame.
 * E itself must stay below 0.2 % of the datagrams (else the measurement is not
 * clean and the case fails), p̂ must agree with the configured rate within 5
 * binomial standard deviations (the rule works), and every case needs zero frames
 * failing the byte-exact check and zero auth/replay/malformed receive drops.
 * The burst case needs framesLost > 0 and D below the independent-loss prediction
 * at its own p̂ by more than 4σ.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { existsSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'

import { FrameSizes } from '../dist/cli/stream'

const ROOT = path.resolve(__dirname, '..')
const CLI = path.join(ROOT, 'bin', 'punktfunk.js')

/** Core defaults (fec.rs `FecConfig::default`, used by the CLI). */
const SHARD_PAYLOAD = 1344
const MAX_DATA_PER_BLOCK = 4096
const DATAGRAM_BYTES = SHARD_PAYLOAD + 57
const UDP_LENGTH = DATAGRAM_BYTES + 8

const SECONDS = Number(process.env.PF_NETNS_SECONDS ?? 7)
const RATE_MBPS = Number(process.env.PF_NETNS_RATE_MBPS ?? 200)
const FPS = 60

const HOST_IP = '10.77.0.1'
const CLIENT_IP = '10.77.0.2'
const NS_H = `pf-h-${process.pid}`
const NS_C = `pf-c-${process.pid}`
const VETH_H = `pfh${process.pid}`
const VETH_C = `pfc${process.pid}`
const TBF = ['rate', '1gbit', 'burst', '256kb', 'latency', '100ms']

/** Burst model: start probability per datagram (in 1/10000) and bad-state length. */
const BURST_START_PER_10K = 3
const BURST_MS = 8

interface Case {
  name: string
  fec: number
  /** Independent loss, per mille (0 for none). */
  lossPermille: number
  burst: boolean
}

const CASES: Case[] = [
  { name: 'random 2%', lossPermille: 20, fec: 5, burst: false },
  { name: 'random 5%', lossPermille: 50, fec: 5, burst: false },
  { name: 'random 10%', lossPermille: 100, fec: 10, burst: false },
  { name: 'random 10%', lossPermille: 100, fec: 25, burst: false },
  { name: 'burst', lossPermille: 0, fec: 10, burst: true },
]

// ---------------------------------------------------------------------------
// Processes and cleanup

const children = new Set<ChildProcess>()
let identityDir: string | undefined
let nsMade = false
let cleaned = false

function run(cmd: string, args: string[], input?: string): { ok: boolean; out: string; err: string } {
  const r = spawnSync(cmd, args, { input, encoding: 'utf8', timeout: 60_000 })
  return { ok: r.status === 0, out: r.stdout ?? '', err: (r.stderr ?? '') + (r.error ? String(r.error) : '') }
}

function must(cmd: string, args: string[], input?: string): string {
  const r = run(cmd, args, input)
  if (!r.ok) throw new Error(`${cmd} ${args.join(' ')} failed: ${r.err.trim()}`)
  return r.out
}

const inNs = (ns: string, cmd: string, args: string[], input?: string): string => must('ip', ['netns', 'exec', ns, cmd, ...args], input)

/** Synchronous, idempotent: safe from `exit` and signal handlers. */
function cleanup(): void {
  if (cleaned) return
  cleaned = true
  for (const c of children) {
    if (c.exitCode === null && c.signalCode === null && c.pid) {
      try {
        process.kill(c.pid, 'SIGKILL')
      } catch {
        /* already gone */
      }
    }
  }
  if (nsMade) {
    // Deleting a namespace removes its veth end, and with it the peer.
    run('ip', ['netns', 'del', NS_H])
    run('ip', ['netns', 'del', NS_C])
  }
  if (identityDir) rmSync(identityDir, { recursive: true, force: true })
}

process.on('exit', cleanup)
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
  process.on(sig, () => {
    process.stderr.write(`\n${sig}: cleaning up\n`)
    cleanup()
    process.exit(sig === 'SIGINT' ? 130 : 143)
  })
}

function skip(why: string): never {
  console.log(`SKIP: ${why}`)
  cleanup()
  process.exit(0)
}

const have = (bin: string): boolean => run('sh', ['-c', `command -v ${bin}`]).ok

// ---------------------------------------------------------------------------
// Setup

function preflight(): void {
  if (process.platform !== 'linux') skip('network namespaces need Linux')
  if (process.getuid?.() !== 0) skip('needs root (network namespaces, tc, nftables)')
  if (!existsSync(path.join(ROOT, 'dist', 'cli', 'main.js'))) {
    console.error('FAIL: the CLI is not built (run npx tsc -p tsconfig.json)')
    process.exit(1)
  }
  const missing = ['ip', 'tc', 'nft'].filter((b) => !have(b))
  if (missing.length > 0 && have('apt-get')) {
    console.log(`installing iproute2 and nftables (missing: ${missing.join(', ')})`)
    const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' }
    spawnSync('apt-get', ['update', '-qq'], { stdio: 'ignore', env, timeout: 300_000 })
    spawnSync('apt-get', ['install', '-y', '-qq', 'iproute2', 'nftables'], { stdio: 'ignore', env, timeout: 300_000 })
  }
  const still = ['ip', 'tc', 'nft'].filter((b) => !have(b))
  if (still.length > 0) skip(`missing ${still.join(', ')} (apt-get install iproute2 nftables)`)
}

function setup(): void {
  const a = run('ip', ['netns', 'add', NS_H])
  if (!a.ok) skip(`ip netns add failed: ${a.err.trim()}`)
  nsMade = true
  const b = run('ip', ['netns', 'add', NS_C])
  if (!b.ok) skip(`ip netns add failed: ${b.err.trim()}`)
  const v = run('ip', ['link', 'add', VETH_H, 'netns', NS_H, 'type', 'veth', 'peer', 'name', VETH_C, 'netns', NS_C])
  if (!v.ok) skip(`cannot create a veth pair: ${v.err.trim()}`)
  must('ip', ['-n', NS_H, 'addr', 'add', `${HOST_IP}/24`, 'dev', VETH_H])
  must('ip', ['-n', NS_C, 'addr', 'add', `${CLIENT_IP}/24`, 'dev', VETH_C])
  // One datagram per packet on the wire: see the header.
  must('ip', ['-n', NS_H, 'link', 'set', 'dev', VETH_H, 'gso_max_segs', '1'])
  for (const [ns, dev] of [
    [NS_H, 'lo'],
    [NS_C, 'lo'],
    [NS_H, VETH_H],
    [NS_C, VETH_C],
  ] as const) {
    must('ip', ['-n', ns, 'link', 'set', 'dev', dev, 'up'])
  }
  const t = run('ip', ['netns', 'exec', NS_H, 'tc', 'qdisc', 'add', 'dev', VETH_H, 'root', 'tbf', ...TBF])
  if (!t.ok) skip(`tc tbf is not available: ${t.err.trim()}`)
  const n = run('ip', ['netns', 'exec', NS_C, 'nft', '-f', '-'], 'table inet pf {\n}\n')
  if (!n.ok) skip(`nftables is not available: ${n.err.trim()}`)
  identityDir = mkdtempSync(path.join(tmpdir(), 'pf-netns-id-'))
}

function nftRules(c: Case, quicPort: number): string {
  const rules = [`  counter name "data_in"`]
  if (c.lossPermille > 0) rules.push(`  numgen random mod 1000 < ${c.lossPermille} counter name "rand_drop" drop`)
  if (c.burst) {
    rules.push(`  ip saddr @burst counter name "burst_drop" drop`)
    rules.push(
      `  numgen random mod 10000 < ${BURST_START_PER_10K} add @burst { ip saddr timeout ${BURST_MS}ms } counter name "burst_start" drop`,
    )
  }
  return [
    'table inet pf {',
    ' counter data_in { }',
    ' counter rand_drop { }',
    ' counter burst_drop { }',
    ' counter burst_start { }',
    ' set burst {',
    '  type ipv4_addr',
    '  flags dynamic,timeout',
    ' }',
    ' chain input {',
    '  type filter hook input priority -10; policy accept;',
    `  ip saddr ${HOST_IP} udp sport != ${quicPort} udp length ${UDP_LENGTH} jump data`,
    ' }',
    ' chain data {',
    ...rules,
    ' }',
    '}',
    '',
  ].join('\n')
}

function installNft(c: Case, quicPort: number): void {
  // A fresh table per case: zero counters, this case's QUIC port.
  run('ip', ['netns', 'exec', NS_C, 'nft', 'delete', 'table', 'inet', 'pf'])
  inNs(NS_C, 'nft', ['-f', '-'], nftRules(c, quicPort))
}

/** Parses a tool's JSON output, saying which tool and what it printed when that fails. */
function parseJson<T>(what: string, text: string): T {
  try {
    return JSON.parse(text) as T
  } catch (e) {
    throw new Error(`${what} printed no JSON (${e instanceof Error ? e.message : String(e)}): ${JSON.stringify(text.slice(0, 300))}`)
  }
}

function nftCounter(name: string): number {
  const j = parseJson<{ nftables: Array<{ counter?: { packets: number } }> }>(
    `nft list counter ${name}`,
    inNs(NS_C, 'nft', ['-j', 'list', 'counter', 'inet', 'pf', name]),
  )
  const c = j.nftables.find((e) => e.counter)?.counter
  if (!c) throw new Error(`nft counter ${name} not found`)
  return c.packets
}

/** UDP receive errors in the client namespace (RcvbufErrors are part of InErrors). */
function udpInErrors(): number {
  const lines = inNs(NS_C, 'cat', ['/proc/net/snmp']).split('\n').filter((l) => l.startsWith('Udp:'))
  const names = (lines[0] ?? '').split(/\s+/)
  const vals = (lines[1] ?? '').split(/\s+/)
  return Number(vals[names.indexOf('InErrors')] ?? 0)
}

function tbfDrops(): number {
  const j = parseJson<Array<{ kind: string; drops?: number }>>(
    `tc qdisc show dev ${VETH_H}`,
    inNs(NS_H, 'tc', ['-s', '-j', 'qdisc', 'show', 'dev', VETH_H]),
  )
  return j.find((q) => q.kind === 'tbf')?.drops ?? 0
}

// ---------------------------------------------------------------------------
// Running one case

function start(ns: string, args: string[]): { child: ChildProcess; out: () => string; err: () => string; done: Promise<number> } {
  const child = spawn('ip', ['netns', 'exec', ns, process.execPath, CLI, ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] })
  children.add(child)
  let out = ''
  let err = ''
  child.stdout?.on('data', (d: Buffer) => (out += d.toString()))
  child.stderr?.on('data', (d: Buffer) => (err += d.toString()))
  const done = new Promise<number>((resolve) => {
    child.on('close', (code, sig) => {
      children.delete(child)
      resolve(code ?? (sig ? 128 : 1))
    })
  })
  return { child, out: () => out, err: () => err, done }
}

async function within<T>(p: Promise<T>, ms: number, what: string, onTimeout: () => void): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const t = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      onTimeout()
      reject(new Error(`${what} took longer than ${ms} ms`))
    }, ms)
  })
  try {
    return await Promise.race([p, t])
  } finally {
    clearTimeout(timer)
  }
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))

interface Summary {
  framesDelivered: number
  framesLost: number
  framesMissing: number | null
  framesFailedCheck: number
  fecRecoveredShards: number
  ended: string
  recvDropped: Record<string, number>
}

interface Result {
  c: Case
  sent: number
  delivered: number
  lost: number
  missing: number
  failedCheck: number
  fecRecovered: number
  expectedDatagrams: number
  arrived: number
  dropped: number
  bursts: number
  other: number
  tbfDrops: number
  udpErrors: number
  pHat: number
  mu: number
  sigma: number
  checks: string[]
}

async function runCase(c: Case): Promise<Result> {
  const host = start(NS_H, [
    'host',
    '--bind', HOST_IP,
    '--port', '0',
    '--identity', identityDir!,
    '--bitrate-mbps', String(RATE_MBPS),
    '--fps', String(FPS),
    '--fec', String(c.fec),
    '--seconds', String(SECONDS),
  ])
  const kill = (p: ChildProcess): void => {
    try {
      if (p.pid && p.exitCode === null) process.kill(p.pid, 'SIGKILL')
    } catch {
      /* gone */
    }
  }
  let port = 0
  let fingerprint = ''
  for (let t0 = Date.now(); ; ) {
    const m = /listening on [0-9.]+:(\d+) fingerprint ([0-9a-f]+)/.exec(host.err())
    if (m) {
      port = Number(m[1])
      fingerprint = m[2]!
      break
    }
    if (host.child.exitCode !== null || Date.now() - t0 > 15_000) {
      kill(host.child)
      throw new Error(`the host did not start listening:\n${host.err()}`)
    }
    await sleep(20)
  }
  installNft(c, port)
  const errors0 = udpInErrors()
  const tbf0 = tbfDrops()

  const client = start(NS_C, [
    'connect', `${HOST_IP}:${port}`,
    '--pin', fingerprint,
    '--json',
    '--seconds', String(SECONDS + 15),
  ])
  const limit = (SECONDS + 25) * 1000
  const clientCode = await within(client.done, limit, 'connect', () => kill(client.child))
  await within(host.done, 10_000, 'host shutdown', () => kill(host.child))

  const checks: string[] = []
  const line = client.out().trim().split('\n').pop() ?? ''
  let s: Summary
  try {
    s = JSON.parse(line) as Summary
  } catch {
    throw new Error(`connect printed no summary (exit ${clientCode}):\n${client.out()}\n${client.err()}\nhost:\n${host.err()}`)
  }
  if (clientCode !== 0) checks.push(`connect exited ${clientCode}`)
  const announced = /^end of stream \((\d+) frames\)/.exec(s.ended)
  if (!announced) checks.push(`stream did not end normally: ${s.ended}`)
  const sent = announced ? Number(announced[1]) : s.framesDelivered + s.framesLost + (s.framesMissing ?? 0)

  // The frames the host sent, laid out as the core does.
  const sizes = new FrameSizes(RATE_MBPS * 1e6, FPS)
  const frames: Array<Array<[number, number]>> = []
  let expectedDatagrams = 0
  for (let i = 0; i < sent; i++) {
    const len = sizes.size(i)
    const n = Math.max(1, Math.ceil(len / SHARD_PAYLOAD))
    const b = Math.ceil(n / MAX_DATA_PER_BLOCK)
    const blocks: Array<[number, number]> = []
    for (let j = 0; j < b; j++) {
      const k = Math.floor(n / b) + (j < n % b ? 1 : 0)
      const m = c.fec === 0 ? 0 : Math.max(2, Math.ceil((k * c.fec) / 100))
      blocks.push([k, m])
      expectedDatagrams += k + m
    }
    frames.push(blocks)
  }

  const arrived = nftCounter('data_in')
  const randDrop = nftCounter('rand_drop')
  const burstDrop = nftCounter('burst_drop')
  const bursts = nftCounter('burst_start')
  const dropped = randDrop + burstDrop + bursts
  const udpErrors = udpInErrors() - errors0
  const tbf = tbfDrops() - tbf0
  const rd = s.recvDropped
  const other = Math.max(0, expectedDatagrams - arrived) + udpErrors + (rd.stale ?? 0) + (rd.outOfBounds ?? 0)
  const pHat = arrived > 0 ? dropped / arrived : 0

  // Prediction under independent loss at the measured rate.
  const cache = new Map<string, number>()
  let mu = 0
  let variance = 0
  for (const blocks of frames) {
    let pf = 1
    for (const [k, m] of blocks) {
      const key = `${k},${m}`
      let pb = cache.get(key)
      if (pb === undefined) {
        pb = binomCdf(m, k + m, pHat)
        cache.set(key, pb)
      }
      pf *= pb
    }
    mu += pf
    variance += pf * (1 - pf)
  }
  const sigma = Math.sqrt(variance)
  const d = s.framesDelivered

  if (s.framesFailedCheck !== 0) checks.push(`${s.framesFailedCheck} frames failed the byte-exact check`)
  for (const k of ['auth', 'replay', 'malformed'] as const) {
    if ((rd[k] ?? 0) !== 0) checks.push(`recvDropped.${k} = ${rd[k]}`)
  }
  if (arrived > expectedDatagrams) checks.push(`more data datagrams (${arrived}) than the layout predicts (${expectedDatagrams})`)
  if (other > Math.max(10, expectedDatagrams * 0.002)) {
    checks.push(`${other} datagrams lost outside the nft rule (tbf ${tbf}, udp errors ${udpErrors}): not a clean measurement`)
  }
  if (sent < SECONDS * FPS * 0.5) checks.push(`only ${sent} frames were sent`)

  if (!c.burst) {
    const p = c.lossPermille / 1000
    const sdP = Math.sqrt((p * (1 - p)) / Math.max(1, arrived))
    if (Math.abs(pHat - p) > 5 * sdP) checks.push(`measured loss ${pct(pHat)} far from ${pct(p)}: the nft rule misbehaves`)
    const lo = mu - 4 * sigma - 2 - other
    const hi = mu + 4 * sigma + 2
    if (d < lo || d > hi) checks.push(`delivered ${d} outside [${lo.toFixed(1)}, ${hi.toFixed(1)}] (MDS prediction ${mu.toFixed(1)})`)
  } else {
    if (bursts === 0) checks.push('no burst started')
    if (s.framesLost === 0) checks.push('bursts cost no frames reported lost')
    if (!(d < mu - 4 * sigma)) {
      checks.push(`delivered ${d} not below the independent-loss prediction ${mu.toFixed(1)} - 4σ (${(mu - 4 * sigma).toFixed(1)})`)
    }
  }

  return {
    c,
    sent,
    delivered: d,
    lost: s.framesLost,
    missing: s.framesMissing ?? 0,
    failedCheck: s.framesFailedCheck,
    fecRecovered: s.fecRecoveredShards,
    expectedDatagrams,
    arrived,
    dropped,
    bursts,
    other,
    tbfDrops: tbf,
    udpErrors,
    pHat,
    mu,
    sigma,
    checks,
  }
}

// ---------------------------------------------------------------------------
// Statistics and output

/** P(X ≤ m) for X ~ Binomial(n, p), summed in log space (no underflow for large n·p). */
function binomCdf(m: number, n: number, p: number): number {
  if (p <= 0 || m >= n) return 1
  if (p >= 1) return 0
  const logs: number[] = []
  let l = n * Math.log1p(-p)
  const ratio = Math.log(p) - Math.log1p(-p)
  for (let i = 0; i <= m; i++) {
    logs.push(l)
    l += Math.log(n - i) - Math.log(i + 1) + ratio
  }
  const max = Math.max(...logs)
  let sum = 0
  for (const x of logs) sum += Math.exp(x - max)
  return Math.min(1, Math.exp(max) * sum)
}

const pct = (x: number, digits = 2): string => `${(x * 100).toFixed(digits)}%`

function table(results: Result[]): string {
  const head = ['case', 'loss cfg', 'loss meas', 'FEC', 'sent', 'deliv', 'lost', 'miss', 'delivered frac', 'predicted frac ± err', 'other drops', 'verdict']
  const rows = results.map((r) => {
    const err = r.c.burst ? 4 * r.sigma : 4 * r.sigma + 2
    return [
      r.c.name,
      r.c.burst ? `burst ${BURST_MS}ms@${BURST_START_PER_10K}e-4` : pct(r.c.lossPermille / 1000, 1),
      pct(r.pHat),
      `${r.c.fec}%`,
      String(r.sent),
      String(r.delivered),
      String(r.lost),
      String(r.missing),
      (r.delivered / Math.max(1, r.sent)).toFixed(4),
      `${r.c.burst ? '(indep) ' : ''}${(r.mu / Math.max(1, r.sent)).toFixed(4)} ± ${(err / Math.max(1, r.sent)).toFixed(4)}`,
      String(r.other),
      r.checks.length === 0 ? 'PASS' : 'FAIL',
    ]
  })
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)))
  const fmt = (cells: string[]): string => cells.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd()
  return [fmt(head), fmt(widths.map((w) => '-'.repeat(w))), ...rows.map(fmt)].join('\n')
}

async function main(): Promise<number> {
  preflight()
  setup()
  console.log(
    `namespaces ${NS_H} (${HOST_IP}) and ${NS_C} (${CLIENT_IP}); tbf ${TBF.join(' ')} on ${VETH_H}; ` +
      `${RATE_MBPS} Mbit/s synthetic at ${FPS} fps, ${SECONDS} s per case`,
  )
  const results: Result[] = []
  for (const c of CASES) {
    const t0 = Date.now()
    let r: Result
    try {
      r = await runCase(c)
    } catch (e) {
      console.log(`${c.name} FEC ${c.fec}%: FAIL: ${e instanceof Error ? e.message : String(e)}`)
      return 1
    }
    results.push(r)
    console.log(
      `${c.name.padEnd(10)} FEC ${String(c.fec).padStart(2)}%: ${r.sent} frames, ${r.expectedDatagrams} datagrams predicted, ` +
        `${r.arrived} reached the nft rule, ${r.dropped} dropped${c.burst ? ` in ${r.bursts} bursts` : ''}; ` +
        `${r.delivered} delivered (predicted ${r.mu.toFixed(1)} ± 4σ=${(4 * r.sigma).toFixed(1)}), ${r.fecRecovered} shards rebuilt; ` +
        `tbf drops ${r.tbfDrops}, udp errors ${r.udpErrors} (${((Date.now() - t0) / 1000).toFixed(1)} s)` +
        (r.checks.length ? `\n  FAIL: ${r.checks.join('\n  FAIL: ')}` : ''),
    )
  }
  console.log('')
  console.log(table(results))
  const failed = results.filter((r) => r.checks.length > 0).length
  console.log('')
  console.log(`${results.length - failed} passed, ${failed} failed`)
  return failed > 0 ? 1 : 0
}

main()
  .then((code) => {
    cleanup()
    process.exit(code)
  })
  .catch((e: unknown) => {
    console.error(`FAIL: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`)
    cleanup()
    process.exit(1)
  })
