/**
 * Soak: a real `punktfunk host` streams to a real `punktfunk connect` through
 * two network namespaces (scripts/netns.ts: veth, tbf 1 Gbit/s) for 10 minutes
 * at 500 Mbit/s with 1 % random loss from nftables, and checks that
 *
 * * memory is flat: the resident set of each process, sampled every 5 s, has
 *   a floor (the lowest sample of a minute: what is left after the garbage
 *   collector ran; single samples swing by tens of MiB with Node's collection
 *   of frame buffers) that rises by at most max(8 MiB, 5 %) over the second
 *   half of the run (the minute after half time against the last minute). The
 *   first half may step up: pools such as the reassembly buffers grow to what
 *   the stream needs, within the bounds of docs/SECURITY.md. A leak raises the
 *   floor on and on; the series is printed either way;
 * * every datagram is accounted for, per reason:
 *     host packetsSent = data_in (nft, client side) + tbf drops + veth drops
 *                        + input-backlog drops (softnet_stat)
 *   (the host runs with --udp-offload off so that tbf counts datagrams);
 *     data_in          = rand_drop (nft) + client packetsReceived + client UDP InErrors
 *   and the client's receive drops are reported by reason (auth, replay and
 *   malformed must be 0);
 * * every frame is accounted for: the host's framesSent = its framesSubmitted =
 *   the count in its `end of stream (N frames)`, = delivered + lost + never
 *   seen at the client, 0 fail the byte-exact check, and at most 2 (the end of
 *   the stream) are missing.
 *
 *   sudo node --import tsx scripts/soak.ts        (npm run soak)
 *
 * Environment: PF_SOAK_SECONDS (default 600), PF_SOAK_RATE_MBPS (500),
 * PF_SOAK_LOSS_PERMILLE (10), PF_SOAK_FEC (fixed FEC percentage, 10).
 * Needs root (it prints `SKIP: ...` and exits 0 otherwise) and the built CLI.
 * Exit code 1 if a check fails. Progress is printed every 30 s.
 */
import {
  backlogDrops,
  HOST_IP,
  installNft,
  kill,
  linkDrops,
  listening,
  nftCounter,
  NS_C,
  NS_H,
  parseJson,
  preflight,
  runMain,
  rssBytes,
  setup,
  sleep,
  start,
  tbfDrops,
  udpInErrors,
  VETH_C,
  VETH_H,
  within,
  dataPlaneTable,
} from './netns'
import type { SessionStats } from '../dist/session'

const SECONDS = Number(process.env.PF_SOAK_SECONDS ?? 600)
const RATE_MBPS = Number(process.env.PF_SOAK_RATE_MBPS ?? 500)
const LOSS_PERMILLE = Number(process.env.PF_SOAK_LOSS_PERMILLE ?? 10)
const FEC = Number(process.env.PF_SOAK_FEC ?? 10)
const TBF = ['rate', '1gbit', 'burst', '256kb', 'latency', '100ms']

/** RSS sampling: every 5 s (more often on short runs, to have samples to compare). */
const SAMPLE_MS = Math.min(5_000, (SECONDS * 1000) / 40)
const PROGRESS_MS = 30_000
/** Samples before this are the warm-up (buffers, JIT, allocator arenas). */
const MiB = 1 << 20

interface HostReport {
  peer: string
  framesSent: number
  stats: SessionStats
}

interface ConnectReport {
  framesDelivered: number
  framesLost: number
  framesMissing: number | null
  framesFailedCheck: number
  goodputMbps: number
  wireMbps: number
  fecRecoveredShards: number
  packetsReceived: number
  packetsRedundant: number
  seconds: number
  ended: string
  recvDropped: Record<string, number>
}

interface Sample {
  t: number
  host: number
  client: number
}

function nftRules(quicPort: number): string {
  return dataPlaneTable(quicPort, ['counter rand_drop { }'], [`numgen random mod 1000 < ${LOSS_PERMILLE} counter name "rand_drop" drop`])
}

const mib = (b: number): string => `${(b / MiB).toFixed(1)} MiB`

/** Flatness of one process's RSS series over the second half; failures appended to `checks`. */
function flat(name: string, samples: Sample[], pick: (s: Sample) => number, checks: string[]): string {
  const end = samples.length ? samples[samples.length - 1]!.t : 0
  const span = Math.min(60, end / 6)
  const second = samples.filter((s) => s.t >= end / 2 && pick(s) > 0)
  if (second.length < 4) {
    checks.push(`${name}: only ${second.length} RSS samples in the second half`)
    return `${name}: too few samples`
  }
  const mid = Math.min(...second.filter((s) => s.t < end / 2 + span).map(pick))
  const last = Math.min(...second.filter((s) => s.t > end - span).map(pick))
  const all = samples.map(pick).filter((v) => v > 0)
  const margin = Math.max(8 * MiB, mid * 0.05)
  if (last - mid > margin) checks.push(`${name}: the RSS floor rose from ${mib(mid)} at half time to ${mib(last)} (margin ${mib(margin)})`)
  return (
    `${name} RSS floor: ${mib(mid)} at half time, ${mib(last)} at the end (margin ${mib(margin)}); ` +
    `whole run ${mib(Math.min(...all))}…${mib(Math.max(...all))}`
  )
}

async function main(): Promise<number> {
  preflight()
  const identityDir = setup(TBF)
  console.log(
    `soak: ${SECONDS} s at ${RATE_MBPS} Mbit/s, ${LOSS_PERMILLE / 10} % random loss (nftables), FEC ${FEC} %, ` +
      `tbf ${TBF.join(' ')}; host ${NS_H}, client ${NS_C}`,
  )
  const host = start(NS_H, [
    'host',
    '--bind', HOST_IP,
    '--port', '0',
    '--identity', identityDir,
    '--bitrate-mbps', String(RATE_MBPS),
    '--fec', String(FEC),
    '--seconds', String(SECONDS),
    '--json',
    // Without UDP GSO every datagram crosses tbf on its own, so its drop
    // counter counts datagrams (with GSO it counts super-packets of up to 64).
    '--udp-offload', 'off',
  ])
  const { port, fingerprint } = await listening(host)
  installNft(nftRules(port))
  const errors0 = udpInErrors()
  const tbf0 = tbfDrops()
  const veth0 = linkDrops(NS_H, VETH_H).tx + linkDrops(NS_C, VETH_C).rx
  const backlog0 = backlogDrops()
  const client = start(NS_C, ['connect', `${HOST_IP}:${port}`, '--pin', fingerprint, '--json', '--seconds', String(SECONDS + 60)])

  // Sample RSS until both have exited; print progress as it goes.
  const samples: Sample[] = []
  const t0 = Date.now()
  let exited = false
  const bothDone = Promise.all([client.done, host.done]).then(() => void (exited = true))
  let nextProgress = PROGRESS_MS
  while (!exited && Date.now() - t0 < (SECONDS + 90) * 1000) {
    await Promise.race([sleep(SAMPLE_MS), bothDone])
    const t = (Date.now() - t0) / 1000
    const s = { t, host: rssBytes(host.child.pid), client: rssBytes(client.child.pid) }
    if (s.host > 0 && s.client > 0) samples.push(s)
    if (t * 1000 >= nextProgress && s.host > 0 && s.client > 0) {
      nextProgress += PROGRESS_MS
      console.log(
        `${t.toFixed(0).padStart(4)} s: host RSS ${mib(s.host)}, client RSS ${mib(s.client)}; ` +
          `${nftCounter('data_in')} data datagrams in, ${nftCounter('rand_drop')} dropped by nft`,
      )
    }
  }
  const [clientCode, hostCode] = await within(Promise.all([client.done, host.done]), 30_000, 'the end of the stream', () => {
    kill(client.child)
    kill(host.child)
  })

  const checks: string[] = []
  if (hostCode !== 0) checks.push(`host exited ${hostCode}`)
  if (clientCode !== 0) checks.push(`connect exited ${clientCode}`)
  const c = parseJson<ConnectReport>('connect', client.out().trim().split('\n').pop() ?? '')
  const h = parseJson<HostReport>('host', host.out().trim().split('\n').pop() ?? '')
  const hs = h.stats
  const dataIn = nftCounter('data_in')
  const randDrop = nftCounter('rand_drop')
  const tbf = tbfDrops() - tbf0
  const udpErrors = udpInErrors() - errors0
  const veth = linkDrops(NS_H, VETH_H).tx + linkDrops(NS_C, VETH_C).rx - veth0
  const backlog = backlogDrops() - backlog0

  const received = c.packetsReceived
  const drops = Object.entries(c.recvDropped)
    .filter(([, v]) => v > 0)
    .map(([k, v]) => `${k}=${v}`)
  drops.push(`redundant=${c.packetsRedundant}`)
  for (const k of ['auth', 'replay', 'malformed'] as const) {
    if ((c.recvDropped[k] ?? 0) !== 0) checks.push(`recvDropped.${k} = ${c.recvDropped[k]}`)
  }

  // Frames.
  const announced = /^end of stream \((\d+) frames\)/.exec(c.ended)
  const n = announced ? Number(announced[1]) : NaN
  if (!announced) checks.push(`the stream did not end normally: ${c.ended}`)
  if (h.framesSent !== n || hs.framesSubmitted !== n) {
    checks.push(`frames: host sent ${h.framesSent}, submitted ${hs.framesSubmitted}, announced ${n}`)
  }
  const missing = c.framesMissing ?? NaN
  if (c.framesDelivered + c.framesLost + missing !== n) checks.push('frames: delivered + lost + missing ≠ sent')
  if (c.framesFailedCheck !== 0) checks.push(`${c.framesFailedCheck} frames failed the byte-exact check`)
  if (!(missing <= 2)) checks.push(`${missing} frames never seen`)

  // Datagrams.
  const wireGap = hs.packetsSent - dataIn - tbf - veth - backlog
  if (wireGap !== 0) {
    checks.push(
      `host sent ${hs.packetsSent} datagrams: ${dataIn} reached the client, ${tbf} tbf drops, ${veth} veth drops, ` +
        `${backlog} backlog drops, ${wireGap} unaccounted`,
    )
  }
  const sockGap = dataIn - randDrop - received - udpErrors
  if (sockGap !== 0) {
    checks.push(`${dataIn} datagrams in: ${randDrop} dropped by nft, ${received} received, ${udpErrors} UDP errors, ${sockGap} unaccounted`)
  }
  const p = dataIn > 0 ? randDrop / dataIn : 0
  const sdP = Math.sqrt(((LOSS_PERMILLE / 1000) * (1 - LOSS_PERMILLE / 1000)) / Math.max(1, dataIn))
  if (Math.abs(p - LOSS_PERMILLE / 1000) > 5 * sdP) checks.push(`measured loss ${(p * 100).toFixed(3)} % is not the configured rate`)

  // Memory.
  const hostRss = flat('host', samples, (s) => s.host, checks)
  const clientRss = flat('client', samples, (s) => s.client, checks)

  console.log('')
  console.log(`frames:    ${n} sent, ${c.framesDelivered} delivered, ${c.framesLost} lost, ${missing} never seen, ${c.framesFailedCheck} failed the check`)
  console.log(`rate:      ${c.goodputMbps} Mbit/s goodput, ${c.wireMbps} Mbit/s on the wire over ${c.seconds} s; ${c.fecRecoveredShards} shards rebuilt by FEC`)
  console.log(
    `datagrams: host sent ${hs.packetsSent} (send drops ${hs.packetsSendDropped}) = ${dataIn} in + ${tbf} tbf drops` +
      ` + ${veth} veth drops + ${backlog} input-backlog drops` +
      `${wireGap ? ` + ${wireGap} unaccounted` : ''}`,
  )
  console.log(
    `           ${dataIn} in = ${randDrop} nft drops (${(p * 100).toFixed(3)} %) + ${received} received + ${udpErrors} UDP errors` +
      `${sockGap ? ` + ${sockGap} unaccounted` : ''}; receive drops by reason: ${drops.join(' ')}`,
  )
  console.log(hostRss)
  console.log(clientRss)
  console.log(`RSS samples (s: host/client MiB): ${samples.map((s) => `${s.t.toFixed(0)}: ${(s.host / MiB).toFixed(0)}/${(s.client / MiB).toFixed(0)}`).join(', ')}`)
  console.log('')
  for (const ch of checks) console.log(`FAIL: ${ch}`)
  console.log(checks.length ? `soak FAILED (${checks.length})` : 'soak passed')
  if (checks.length) console.log(`host stderr (tail):\n${host.err().slice(-2000)}\nconnect stderr (tail):\n${client.err().slice(-2000)}`)
  return checks.length ? 1 : 0
}

runMain(main)
