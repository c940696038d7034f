/** `punktfunk identity` and `punktfunk probe`. */
import { Client, loadIdentity, type SpeedTestResult } from '../control'
import { hostPort, UsageError, type CommandSpec, type Flags } from './args'
import { printSummary, round } from './report'

/** `--identity DIR`, shared by `host` and `identity`. */
export const IDENTITY_FLAG: CommandSpec['flags'][string] = {
  kind: 'string',
  value: 'DIR',
  help: 'identity directory (default $PUNKTFUNK_CONFIG_DIR, else ~/.config/punktfunk)',
}

export const identitySpec: CommandSpec = {
  name: 'identity',
  summary:
    "Creates or shows an identity (certificate and key) and prints its fingerprint: clients pin a host's; hosts list clients' with --allow.",
  positionals: [],
  flags: {
    identity: IDENTITY_FLAG,
    json: { kind: 'boolean', help: 'print { dir, fingerprint, created } as JSON' },
  },
}

export async function identity(f: Flags): Promise<number> {
  const id = loadIdentity({ identityDir: f.str('identity') })
  if (f.bool('json')) process.stdout.write(`${JSON.stringify(id)}\n`)
  else {
    process.stdout.write(`fingerprint ${id.fingerprint}\n`)
    process.stderr.write(`identity in ${id.dir}${id.created ? ' (created now)' : ''}\n`)
  }
  return 0
}

/** `--udp-offload`, shared by `host`, `connect` and `probe`. */
export const OFFLOAD_FLAG: CommandSpec['flags'][string] = {
  kind: 'string',
  value: 'MODE',
  help: 'UDP GSO/GRO on the data socket: auto (default: where the kernel has it), on, or off',
}

/** Reads `--udp-offload`. */
export function offloadOf(f: Flags): 'auto' | 'on' | 'off' {
  const v = f.str('udp-offload', 'auto')
  if (v !== 'auto' && v !== 'on' && v !== 'off') throw new UsageError(`--udp-offload must be auto, on or off, got ${JSON.stringify(v)}`)
  return v
}

/** Trust flags shared by `connect` and `probe`. */
export const TRUST_FLAGS: CommandSpec['flags'] = {
  pin: { kind: 'string', value: 'HEX', help: "accept only the host with this fingerprint (see 'punktfunk host' or 'punktfunk identity')" },
  tofu: { kind: 'boolean', help: 'trust on first use: remember the fingerprint, refuse a different one later' },
  'known-hosts': { kind: 'string', value: 'FILE', help: 'known-hosts file for --tofu (default ~/.config/punktfunk/known_hosts)' },
  'timeout-ms': { kind: 'number', value: 'MS', help: 'give up connecting after this long (default 5000)', min: 1, max: 600_000 },
  'udp-offload': OFFLOAD_FLAG,
  identity: {
    kind: 'string',
    value: 'DIR',
    help: "present the identity in DIR to the host (created on first use), for hosts that admit only listed clients (host --allow)",
  },
}

/** Where and how to connect, from the flags (checked before anything is opened). */
export interface Target {
  address: string
  trust: { pin: string } | { trustOnFirstUse: true; knownHosts: string | undefined }
  timeoutMs: number
  udpOffload: 'auto' | 'on' | 'off'
  identityDir: string | undefined
}

/** Reads and checks the address and trust flags of `connect` and `probe`. */
export function targetOf(f: Flags): Target {
  const address = hostPort(f.positional(0), 'host address')
  const pin = f.str('pin')?.replace(/:/g, '')
  if (pin !== undefined && f.bool('tofu')) throw new UsageError('pass either --pin or --tofu, not both')
  if (pin === undefined && !f.bool('tofu')) {
    throw new UsageError("say how to trust the host: --pin HEX (the fingerprint 'punktfunk host' prints) or --tofu")
  }
  if (pin !== undefined && !/^[0-9a-fA-F]{64}$/.test(pin)) {
    throw new UsageError('--pin must be 64 hex digits (SHA-256 of the host certificate)')
  }
  if (f.has('known-hosts') && !f.bool('tofu')) throw new UsageError('--known-hosts goes with --tofu')
  const trust = pin !== undefined ? { pin } : { trustOnFirstUse: true as const, knownHosts: f.str('known-hosts') }
  return { address, trust, timeoutMs: f.num('timeout-ms', 5000), udpOffload: offloadOf(f), identityDir: f.str('identity') }
}

/** Connects to `target`; a timeout becomes a plain-words error. */
export async function connectClient(target: Target): Promise<Client> {
  try {
    return await Client.connect(target.address, {
      ...target.trust,
      connectTimeoutMs: target.timeoutMs,
      udpOffload: target.udpOffload,
      identityDir: target.identityDir,
    })
  } catch (e) {
    if ((e as { code?: string }).code === 'ERR_PF_TIMEOUT') {
      throw new Error(`no host answered at ${target.address} within ${target.timeoutMs} ms (is 'punktfunk host' running there?)`)
    }
    throw e
  }
}

export const probeSpec: CommandSpec = {
  name: 'probe',
  summary: 'Speed test: the host sends filler datagrams at a target rate; prints what arrived, the loss and a verdict.',
  positionals: ['HOST:PORT'],
  flags: {
    ...TRUST_FLAGS,
    mbps: { kind: 'number', value: 'R', help: 'rate to try, Mbit/s (default 100, at most 3000)', min: 1, max: 3000 },
    seconds: { kind: 'number', value: 'S', help: 'how long, seconds (default 2, at most 5)', min: 0.1, max: 5 },
    json: { kind: 'boolean', help: 'print one JSON object' },
  },
}

/** A plain-words reading of a speed test. */
export function verdict(r: SpeedTestResult): string {
  if (r.rateKbps === 0) {
    return 'refused by the host: probes are off there, this client used its probe time, or another probe is running'
  }
  // The host sends at most its ceiling; judge the path at the rate it used.
  const target = Math.min(r.targetKbps, r.rateKbps) / 1000
  const got = r.deliveredKbps / 1000
  if (r.sendDrops > 0 && r.lossPercent > 0.1) {
    return `limited by the host: its socket buffer overflowed ${r.sendDrops} times; raise net.core.wmem_max (scripts/99-punktfunk-net.conf)`
  }
  if (r.lossPercent <= 0.1 && got >= target * 0.95) return `clean: this path carries ${round(target, 1)} Mbit/s`
  if (r.lossPercent <= 5) {
    return `usable with FEC: ${round(r.lossPercent, 2)} % loss at ${round(target, 1)} Mbit/s; stream below ${round(got * 0.8, 1)} Mbit/s for headroom`
  }
  return `too fast for this path: ${round(r.lossPercent, 1)} % loss; try a rate near ${round(got * 0.7, 1)} Mbit/s`
}

export async function probe(f: Flags): Promise<number> {
  const mbpsTarget = f.num('mbps', 100)
  const seconds = f.num('seconds', 2)
  const client = await connectClient(targetOf(f))
  // The host's frames keep coming during the test; read (and drop) them so
  // the receive thread never stalls on a full queue and miscounts the probe.
  const draining = (async () => {
    for await (const ev of client.events()) void ev
  })()
  try {
    const r = await client.speedTest({ targetKbps: Math.round(mbpsTarget * 1000), durationMs: Math.round(seconds * 1000) })
    const result = {
      targetMbps: r.targetKbps / 1000,
      sentAtMbps: r.rateKbps / 1000,
      clamped: r.rateKbps < r.targetKbps,
      deliveredMbps: round(r.deliveredKbps / 1000, 2),
      lossPercent: round(r.lossPercent, 3),
      sendDrops: r.sendDrops,
      packetsSent: r.packetsSent,
      packetsReceived: r.packetsReceived,
      seconds: round(r.durationMs / 1000, 3),
      verdict: verdict(r),
    }
    if (f.bool('json')) process.stdout.write(`${JSON.stringify(result)}\n`)
    else {
      printSummary(`probe ${f.positional(0)}`, [
        ['delivered', `${result.deliveredMbps} of ${result.sentAtMbps} Mbit/s over ${result.seconds} s`],
        ...(result.clamped
          ? [['asked', `${result.targetMbps} Mbit/s; the host's probe ceiling is ${result.sentAtMbps} Mbit/s`] as [string, string]]
          : []),
        ['loss', `${result.lossPercent} % (${r.packetsReceived} of ${r.packetsSent} datagrams)`],
        ['send drops', result.sendDrops],
        ['verdict', result.verdict],
      ])
    }
    return 0
  } finally {
    await client.close('probe finished')
    await draining.catch(() => {})
  }
}
