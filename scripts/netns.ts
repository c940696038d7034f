/**
 * A two-namespace test network for the impaired-network test
 * (scripts/netns-test.ts) and the soak (scripts/soak.ts):
 *
 *   pf-h-PID [10.77.0.1, veth pfhPID] ──tbf──► [veth pfcPID, 10.77.0.2] pf-c-PID
 *
 * with a tbf shaper on the host's side, an nftables table `inet pf` on the
 * client's side (the caller writes its rules), the `punktfunk` CLI started in
 * either namespace, and kernel counters (nft, tc, /proc/net/snmp) read back.
 *
 * Needs root; `preflight()` prints `SKIP: ...` and exits 0 where namespaces
 * cannot be made, and installs missing `iproute2` / `nftables` with apt-get as
 * root. The namespaces, processes and a scratch identity directory are removed
 * on exit, on SIGINT/SIGTERM/SIGHUP and on failure.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { availableParallelism, tmpdir } from 'node:os'
import path from 'node:path'

export const ROOT = path.resolve(__dirname, '..')
const CLI = path.join(ROOT, 'bin', 'punktfunk.js')

export const HOST_IP = '10.77.0.1'
export const CLIENT_IP = '10.77.0.2'
export const NS_H = `pf-h-${process.pid}`
export const NS_C = `pf-c-${process.pid}`
export const VETH_H = `pfh${process.pid}`
export const VETH_C = `pfc${process.pid}`
/** The router between them (`setup(…, { router: true })`): IPv4 forwarding between two veths. */
export const NS_R = `pf-r-${process.pid}`
const VETH_RH = `pfrh${process.pid}`
const VETH_RC = `pfrc${process.pid}`
/** The router's addresses on its links towards the host and the client. */
const ROUTER_IP_H = '10.77.1.1'
const ROUTER_IP_C = '10.77.2.1'

/** Where the tbf bottleneck is: the host's veth, or the router's side towards the client. */
export const bottleneck = { ns: NS_H, dev: VETH_H }
/** `net.core.netdev_max_backlog` before the router raised it, restored at exit. */
let backlogWas: string | undefined
/** Packets a CPU's input backlog holds while the router runs (the default is 1000). */
const ROUTER_BACKLOG = 10_000

/** Core defaults (fec.rs `FecConfig::default`, used by the CLI). */
export const SHARD_PAYLOAD = 1344
export const MAX_DATA_PER_BLOCK = 4096
/** A data-plane datagram: shard + 57 bytes of header and tag. */
export const DATAGRAM_BYTES = SHARD_PAYLOAD + 57
/** Its UDP length field (8-byte UDP header), which the nft rules match. */
export const UDP_LENGTH = DATAGRAM_BYTES + 8

// `npm run` puts node_modules/.bin first on PATH, and a dev dependency ships an
// unrelated `nft` there (a Node file tracer): the system tools must win. Every
// child (also those `ip netns exec` starts) inherits this PATH.
process.env.PATH = [
  ...(process.env.PATH ?? '').split(path.delimiter).filter((d) => d !== '' && !d.includes('node_modules')),
  '/usr/local/sbin',
  '/usr/sbin',
  '/sbin',
].join(path.delimiter)

// ---------------------------------------------------------------------------
// Processes and cleanup

const children = new Set<ChildProcess>()
let scratch: string | undefined
let nsMade = false
let cleaned = false

/** Runs a tool to completion (60 s at most). */
export function run(cmd: string, args: string[], input?: string): { ok: boolean; out: string; err: string } {
  const r = spawnSync(cmd, args, { input, encoding: 'utf8', timeout: 60_000 })
  return { ok: r.status === 0, out: r.stdout ?? '', err: (r.stderr ?? '') + (r.error ? String(r.error) : '') }
}

/** Runs a tool; throws with its stderr if it fails. Returns its stdout. */
export function must(cmd: string, args: string[], input?: string): string {
  const r = run(cmd, args, input)
  if (!r.ok) throw new Error(`${cmd} ${args.join(' ')} failed: ${r.err.trim()}`)
  return r.out
}

/** `must` inside a namespace. */
export const inNs = (ns: string, cmd: string, args: string[], input?: string): string =>
  must('ip', ['netns', 'exec', ns, cmd, ...args], input)

/** Synchronous, idempotent: safe from `exit` and signal handlers. */
export function cleanup(): void {
  if (cleaned) return
  cleaned = true
  for (const c of children) kill(c)
  if (nsMade) {
    // Deleting a namespace removes its veth end, and with it the peer.
    run('ip', ['netns', 'del', NS_H])
    run('ip', ['netns', 'del', NS_C])
    if (bottleneck.ns === NS_R) run('ip', ['netns', 'del', NS_R])
    if (backlogWas !== undefined) run('sysctl', ['-q', '-w', `net.core.netdev_max_backlog=${backlogWas}`])
  }
  if (scratch) rmSync(scratch, { recursive: true, force: true })
}

process.on('exit', cleanup)
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
  process.on(sig, () => {
    process.stderr.write(`\n${sig}: cleaning up\n`)
    cleanup()
    process.exit(sig === 'SIGINT' ? 130 : 143)
  })
}

/** Prints `SKIP: why`, cleans up and exits 0. */
export function skip(why: string): never {
  console.log(`SKIP: ${why}`)
  cleanup()
  process.exit(0)
}

/** Runs `main`, cleans up, and exits with its code (1, with the error, if it throws). */
export function runMain(main: () => Promise<number>): void {
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
}

/** SIGKILL, if still running. */
export function kill(p: ChildProcess): void {
  try {
    if (p.pid && p.exitCode === null && p.signalCode === null) process.kill(p.pid, 'SIGKILL')
  } catch {
    /* already gone */
  }
}

const have = (bin: string): boolean => run('sh', ['-c', `command -v ${bin}`]).ok

// ---------------------------------------------------------------------------
// Setup

/** Skips where namespaces cannot work; fails if the CLI is not built. */
export function preflight(): void {
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

/**
 * Makes the namespaces, the veth pair (one datagram per packet: GSO
 * super-packets would cross a veth whole, so an nft drop would remove dozens at
 * once), the tbf shaper with `tbf` arguments on the host's end, and an empty
 * nft table in the client's namespace. Returns a scratch directory (removed
 * at exit) for the host's identity.
 */
export function setup(tbf: string[], opts: { router?: boolean } = {}): string {
  const a = run('ip', ['netns', 'add', NS_H])
  if (!a.ok) skip(`ip netns add failed: ${a.err.trim()}`)
  nsMade = true
  const b = run('ip', ['netns', 'add', NS_C])
  if (!b.ok) skip(`ip netns add failed: ${b.err.trim()}`)
  const links: Array<readonly [string, string]> = [
    [NS_H, 'lo'],
    [NS_C, 'lo'],
    [NS_H, VETH_H],
    [NS_C, VETH_C],
  ]
  if (opts.router) {
    // host ─ veth ─ [router: IPv4 forwarding] ─ veth ─ client, the bottleneck
    // on the router's port towards the client: the queue is in the network,
    // not in the sending host's own qdisc. The router routes rather than
    // bridges: a packet's memory stays charged to the socket that sent it
    // until something orphans it, and only the IP layer does (on receipt).
    // Through a bridge every packet in the router's tbf queue still counted
    // against the sender's TCP small-queue limit (about 1 ms of its own
    // pacing rate), so a TCP flow beside a queue of a few ms sent a handful
    // of packets per queue delay, never filled its window and so never grew
    // it (measured: CUBIC at 23-39 Mbit/s of a 500 Mbit/s link for 20 s,
    // no retransmit, no drop at the bottleneck, its window stuck at 37
    // packets); a router on a real path releases them as they arrive.
    must('ip', ['netns', 'add', NS_R])
    bottleneck.ns = NS_R
    bottleneck.dev = VETH_RC
    const v1 = run('ip', ['link', 'add', VETH_H, 'netns', NS_H, 'type', 'veth', 'peer', 'name', VETH_RH, 'netns', NS_R])
    if (!v1.ok) skip(`cannot create a veth pair: ${v1.err.trim()}`)
    must('ip', ['link', 'add', VETH_RC, 'netns', NS_R, 'type', 'veth', 'peer', 'name', VETH_C, 'netns', NS_C])
    links.push([NS_R, 'lo'], [NS_R, VETH_RH], [NS_R, VETH_RC])
    // Each packet the host sends enters the router through a CPU's input
    // backlog (1000 packets by default, for the whole machine) before the
    // router queues it at the bottleneck: a sender's burst (a keyframe at the
    // probed rate) overflowed it (4521 drops in one 13 s run), where a
    // router would have queued. Raised while the test runs.
    const was = run('sysctl', ['-n', 'net.core.netdev_max_backlog'])
    if (was.ok && Number(was.out.trim()) < ROUTER_BACKLOG) {
      backlogWas = was.out.trim()
      must('sysctl', ['-q', '-w', `net.core.netdev_max_backlog=${ROUTER_BACKLOG}`])
    }
  } else {
    const v = run('ip', ['link', 'add', VETH_H, 'netns', NS_H, 'type', 'veth', 'peer', 'name', VETH_C, 'netns', NS_C])
    if (!v.ok) skip(`cannot create a veth pair: ${v.err.trim()}`)
  }
  if (opts.router) {
    // Each end keeps its address (a /32) and reaches the other through the
    // router's address on its link; the router has a route to each end.
    must('ip', ['-n', NS_H, 'addr', 'add', `${HOST_IP}/32`, 'dev', VETH_H])
    must('ip', ['-n', NS_C, 'addr', 'add', `${CLIENT_IP}/32`, 'dev', VETH_C])
    must('ip', ['-n', NS_R, 'addr', 'add', `${ROUTER_IP_H}/32`, 'dev', VETH_RH])
    must('ip', ['-n', NS_R, 'addr', 'add', `${ROUTER_IP_C}/32`, 'dev', VETH_RC])
    must('ip', ['netns', 'exec', NS_R, 'sysctl', '-q', '-w', 'net.ipv4.ip_forward=1'])
  } else {
    must('ip', ['-n', NS_H, 'addr', 'add', `${HOST_IP}/24`, 'dev', VETH_H])
    must('ip', ['-n', NS_C, 'addr', 'add', `${CLIENT_IP}/24`, 'dev', VETH_C])
  }
  must('ip', ['-n', NS_H, 'link', 'set', 'dev', VETH_H, 'gso_max_segs', '1'])
  for (const [ns, dev] of links) {
    must('ip', ['-n', ns, 'link', 'set', 'dev', dev, 'up'])
  }
  // A veth hands each packet to the backlog of the CPU that sent it, and tbf
  // sends from whichever CPU runs it: one TCP flow's packets then overtake
  // each other between two CPUs' backlogs, and TCP reads the reordering as
  // loss (measured: ~190 fast retransmits in 20 s, every one undone by a
  // DSACK, the flow's window at 4-12 packets). Receive packet steering keeps
  // a flow on one CPU, as a real NIC's receive hashing does.
  const cpus = Math.min(31, availableParallelism())
  const mask = ((1 << cpus) - 1).toString(16)
  for (const [ns, dev] of links.filter(([, d]) => d !== 'lo')) {
    const r = run('ip', ['netns', 'exec', ns, 'sh', '-c', `echo ${mask} > /sys/class/net/${dev}/queues/rx-0/rps_cpus`])
    if (!r.ok) console.log(`note: receive packet steering unavailable on ${dev} (${r.err.trim()}); TCP may see reordering`)
  }
  if (opts.router) {
    // Routes need their devices up.
    must('ip', ['-n', NS_H, 'route', 'add', `${CLIENT_IP}/32`, 'via', ROUTER_IP_H, 'dev', VETH_H, 'onlink'])
    must('ip', ['-n', NS_C, 'route', 'add', `${HOST_IP}/32`, 'via', ROUTER_IP_C, 'dev', VETH_C, 'onlink'])
    must('ip', ['-n', NS_R, 'route', 'add', `${HOST_IP}/32`, 'dev', VETH_RH])
    must('ip', ['-n', NS_R, 'route', 'add', `${CLIENT_IP}/32`, 'dev', VETH_RC])
  }
  const t = run('ip', ['netns', 'exec', bottleneck.ns, 'tc', 'qdisc', 'add', 'dev', bottleneck.dev, 'root', 'tbf', ...tbf])
  if (!t.ok) skip(`tc tbf is not available: ${t.err.trim()}`)
  const n = run('ip', ['netns', 'exec', NS_C, 'nft', '-f', '-'], 'table inet pf {\n}\n')
  if (!n.ok) skip(`nftables is not available: ${n.err.trim()}`)
  scratch = mkdtempSync(path.join(tmpdir(), 'pf-netns-'))
  return scratch
}

/**
 * The client namespace's `inet pf` table: every data-plane datagram from the
 * host (UDP length `UDP_LENGTH`, not from its QUIC port, so the control
 * connection is never touched) is counted by `data_in` and then meets
 * `dataRules`. `declarations` declares the counters and sets those rules use.
 */
export function dataPlaneTable(quicPort: number, declarations: string[], dataRules: string[]): string {
  return [
    'table inet pf {',
    ' counter data_in { }',
    ...declarations.map((d) => ` ${d}`),
    ' chain input {',
    '  type filter hook input priority -10; policy accept;',
    `  ip saddr ${HOST_IP} udp sport != ${quicPort} udp length ${UDP_LENGTH} jump data`,
    ' }',
    ' chain data {',
    '  counter name "data_in"',
    ...dataRules.map((r) => `  ${r}`),
    ' }',
    '}',
    '',
  ].join('\n')
}

/** Replaces the client namespace's `inet pf` table (fresh counters). */
export function installNft(ruleset: string): void {
  run('ip', ['netns', 'exec', NS_C, 'nft', 'delete', 'table', 'inet', 'pf'])
  inNs(NS_C, 'nft', ['-f', '-'], ruleset)
}

// ---------------------------------------------------------------------------
// The CLI in a namespace

/** A `punktfunk` process and what it printed so far. */
export interface Peer {
  child: ChildProcess
  out: () => string
  err: () => string
  /** Resolves with the exit code (128 for a signal). */
  done: Promise<number>
}

/** Starts `punktfunk ARGS` in namespace `ns` (`ip netns exec` execs node: same pid). */
export function start(ns: string, args: string[], env?: NodeJS.ProcessEnv): Peer {
  const child = spawn('ip', ['netns', 'exec', ns, process.execPath, CLI, ...args], {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: env ? { ...process.env, ...env } : process.env,
  })
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

/** Waits for the host's `listening on` line: its QUIC port and fingerprint. */
export async function listening(host: Peer, timeoutMs = 15_000): Promise<{ port: number; fingerprint: string }> {
  for (let t0 = Date.now(); ; ) {
    const m = /listening on [0-9.]+:(\d+) fingerprint ([0-9a-f]+)/.exec(host.err())
    if (m) return { port: Number(m[1]), fingerprint: m[2]! }
    if (host.child.exitCode !== null || Date.now() - t0 > timeoutMs) {
      kill(host.child)
      throw new Error(`the host did not start listening:\n${host.err()}`)
    }
    await sleep(20)
  }
}

/** `p`, or a rejection naming `what` after `ms` (calling `onTimeout` first). */
export async function within<T>(p: Promise<T>, ms: number, what: string, onTimeout: () => void): Promise<T> {
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

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))

/** Parses a tool's JSON output, saying which tool and what it printed when that fails. */
export function parseJson<T>(what: string, text: string): T {
  try {
    return JSON.parse(text) as T
  } catch (e) {
    throw new Error(`${what} printed no JSON (${e instanceof Error ? e.message : String(e)}): ${JSON.stringify(text.slice(0, 300))}`)
  }
}

// ---------------------------------------------------------------------------
// Kernel counters

/** Packets counted by the named counter of the client namespace's `inet pf` table. */
export function nftCounter(name: string): number {
  const j = parseJson<{ nftables: Array<{ counter?: { packets: number } }> }>(
    `nft list counter ${name}`,
    inNs(NS_C, 'nft', ['-j', 'list', 'counter', 'inet', 'pf', name]),
  )
  const c = j.nftables.find((e) => e.counter)?.counter
  if (!c) throw new Error(`nft counter ${name} not found`)
  return c.packets
}

/** UDP receive errors in the client namespace (RcvbufErrors are part of InErrors). */
export function udpInErrors(): number {
  const lines = inNs(NS_C, 'cat', ['/proc/net/snmp']).split('\n').filter((l) => l.startsWith('Udp:'))
  const names = (lines[0] ?? '').split(/\s+/)
  const vals = (lines[1] ?? '').split(/\s+/)
  return Number(vals[names.indexOf('InErrors')] ?? 0)
}

/** Packets the host's tbf shaper dropped. */
export function tbfDrops(): number {
  const j = parseJson<Array<{ kind: string; drops?: number }>>(
    `tc qdisc show dev ${VETH_H}`,
    inNs(NS_H, 'tc', ['-s', '-j', 'qdisc', 'show', 'dev', VETH_H]),
  )
  return j.find((q) => q.kind === 'tbf')?.drops ?? 0
}

/** Packets a link dropped (a veth counts what its peer's backlog refused as tx drops). */
export function linkDrops(ns: string, dev: string): { rx: number; tx: number } {
  const j = parseJson<Array<{ stats64?: { rx: { dropped: number }; tx: { dropped: number } } }>>(
    `ip -s link show dev ${dev}`,
    must('ip', ['-n', ns, '-s', '-j', 'link', 'show', 'dev', dev]),
  )
  const st = j[0]?.stats64
  return { rx: st?.rx.dropped ?? 0, tx: st?.tx.dropped ?? 0 }
}

/**
 * Packets dropped because a CPU's input backlog was full
 * (`net.core.netdev_max_backlog`), summed over CPUs: the second column of
 * /proc/net/softnet_stat. The count is machine-wide, not per namespace.
 */
export function backlogDrops(): number {
  return readFileSync('/proc/net/softnet_stat', 'utf8')
    .split('\n')
    .filter((l) => l.trim() !== '')
    .reduce((sum, l) => sum + parseInt(l.trim().split(/\s+/)[1] ?? '0', 16), 0)
}

/** Resident set size of a process, bytes (0 once it has gone). */
export function rssBytes(pid: number | undefined): number {
  if (!pid) return 0
  try {
    const m = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
    return m ? Number(m[1]) * 1024 : 0
  } catch {
    return 0
  }
}
