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
 * The network itself (namespaces, veth, tbf, nft table, cleanup) is scripts/netns.ts.
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
import { FrameSizes } from '../dist/cli/stream'
import {
  CLIENT_IP,
  HOST_IP,
  installNft,
  kill,
  listening,
  MAX_DATA_PER_BLOCK,
  nftCounter,
  NS_C,
  NS_H,
  preflight,
  runMain,
  setup,
  SHARD_PAYLOAD,
  start,
  tbfDrops,
  udpInErrors,
  VETH_H,
  within,
  dataPlaneTable,
} from './netns'

const SECONDS = Number(process.env.PF_NETNS_SECONDS ?? 7)
const RATE_MBPS = Number(process.env.PF_NETNS_RATE_MBPS ?? 200)
const FPS = 60

const TBF = ['rate', '1gbit', 'burst', '256kb', 'latency', '100ms']

/** Burst model: start probability per datagram (in 1/10000) and bad-state length. */
const BURST_START_PER_10K = 3
const BURST_MS = 8
/** Path challenges a host sends at most before streaming (`PATH_CHALLENGES` in control/proto/host.rs). */
const PATH_CHALLENGES = 5

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
// Running one case

function nftRules(c: Case, quicPort: number): string {
  const rules: string[] = []
  if (c.lossPermille > 0) rules.push(`numgen random mod 1000 < ${c.lossPermille} counter name "rand_drop" drop`)
  if (c.burst) {
    rules.push(`ip saddr @burst counter name "burst_drop" drop`)
    rules.push(
      `numgen random mod 10000 < ${BURST_START_PER_10K} add @burst { ip saddr timeout ${BURST_MS}ms } counter name "burst_start" drop`,
    )
  }
  const declarations = [
    'counter rand_drop { }',
    'counter burst_drop { }',
    'counter burst_start { }',
    'set burst { type ipv4_addr; flags dynamic,timeout; }',
  ]
  return dataPlaneTable(quicPort, declarations, rules)
}

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

async function runCase(c: Case, identityDir: string): Promise<Result> {
  const host = start(NS_H, [
    'host',
    '--bind', HOST_IP,
    '--port', '0',
    '--identity', identityDir,
    '--bitrate-mbps', String(RATE_MBPS),
    '--fps', String(FPS),
    '--fec', String(c.fec),
    '--seconds', String(SECONDS),
    // A fixed rate: frame sizes must be the deterministic synthetic ones the
    // prediction lays out (rate adaptation has its own test, test:abr).
    '--abr', 'off',
  ])
  const { port, fingerprint } = await listening(host)
  installNft(nftRules(c, port))
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
  // Besides the frames' datagrams, the host's path challenges (PROTOCOL §9.3:
  // sealed, full-size, at most PATH_CHALLENGES of them) pass the same rule.
  if (arrived > expectedDatagrams + PATH_CHALLENGES) {
    checks.push(`more data datagrams (${arrived}) than the layout predicts (${expectedDatagrams} + at most ${PATH_CHALLENGES} path challenges)`)
  }
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
  const identityDir = setup(TBF)
  console.log(
    `namespaces ${NS_H} (${HOST_IP}) and ${NS_C} (${CLIENT_IP}); tbf ${TBF.join(' ')} on ${VETH_H}; ` +
      `${RATE_MBPS} Mbit/s synthetic at ${FPS} fps, ${SECONDS} s per case`,
  )
  const results: Result[] = []
  for (const c of CASES) {
    const t0 = Date.now()
    let r: Result
    try {
      r = await runCase(c, identityDir)
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

runMain(main)
