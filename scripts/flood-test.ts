// Garbage flood: while a host streams to a client (two CLI processes on
// 127.0.0.1), a third process sends random datagrams at ~100 000 per second
// for 5 s to every UDP port both of them hold: the QUIC sockets and the data
// sockets. Checks that nothing crashes, the stream keeps flowing during the
// flood, every frame that arrives is intact, the garbage is dropped and
// counted by reason, memory stays bounded (RSS before / after), and the host
// still accepts a new client afterwards.
//
//   node --import tsx scripts/flood-test.ts [--pps 100000] [--seconds 5]
//
// Needs the built CLI (npm run build) and cargo (builds the udp_load example).

import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'

const root = resolve(__dirname, '..')
const CLI = join(root, 'bin', 'punktfunk.js')
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))

function args(): { pps: number; seconds: number } {
  const a = process.argv.slice(2)
  const out = { pps: 100_000, seconds: 5 }
  for (let i = 0; i < a.length; i++) {
    if (a[i] === '--pps') out.pps = Math.min(Math.max(Number(a[++i]), 1000), 1_000_000)
    else if (a[i] === '--seconds') out.seconds = Math.min(Math.max(Number(a[++i]), 1), 30)
    else {
      console.error(`usage: flood-test [--pps N] [--seconds S]`)
      process.exit(2)
    }
  }
  return out
}

function buildLoad(): string {
  const r = spawnSync('cargo', ['build', '--release', '--quiet', '-p', 'punktfunk-core', '--example', 'udp_load'], {
    cwd: root,
    stdio: ['ignore', 'inherit', 'inherit'],
  })
  if (r.status !== 0) throw new Error('building udp_load failed')
  const bin = join(process.env.CARGO_TARGET_DIR ?? join(root, 'target'), 'release', 'examples', 'udp_load')
  if (!existsSync(bin)) throw new Error(`udp_load not found at ${bin}`)
  return bin
}

/** Resident memory of a process, MiB. */
function rssMiB(pid: number | undefined): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(pid ? readFileSync(`/proc/${pid}/status`, 'utf8') : '')
  return m ? Number(m[1]) / 1024 : Number.NaN
}

/** Every UDP port a process has open (from `ss`), as 127.0.0.1:PORT. */
function udpPorts(pid: number | undefined): string[] {
  const r = spawnSync('ss', ['-Huanp'], { encoding: 'utf8' })
  if (r.status !== 0) throw new Error(`ss failed: ${r.stderr}`)
  const ports = new Set<string>()
  for (const line of r.stdout.split('\n')) {
    if (!line.includes(`pid=${pid},`)) continue
    const local = line.trim().split(/\s+/)[3] ?? ''
    const port = local.slice(local.lastIndexOf(':') + 1)
    if (/^\d+$/.test(port)) ports.add(`127.0.0.1:${port}`)
  }
  return [...ports]
}

function watch(p: ChildProcess): { out: () => string; err: () => string } {
  let out = ''
  let err = ''
  p.stdout?.on('data', (d: Buffer) => (out += d.toString()))
  p.stderr?.on('data', (d: Buffer) => (err += d.toString()))
  return { out: () => out, err: () => err }
}

const exited = (p: ChildProcess): Promise<number | null> =>
  p.exitCode !== null ? Promise.resolve(p.exitCode) : new Promise((r) => p.once('exit', (code) => r(code)))

/** The receive rates (Mbit/s) of `perf client[...]` lines, in order. */
function clientRates(err: string): number[] {
  return [...err.matchAll(/^perf client\[[^\]]+\] tx [\d.]+ Mbit\/s rx ([\d.]+) Mbit\/s/gm)].map((m) => Number(m[1]))
}

/**
 * Datagrams the kernel dropped on each UDP socket of a process (`ss -m`: the
 * `d` field of skmem), by local port. A host's data socket is never read (it
 * expects no input), so garbage sent there is dropped and counted here.
 */
function kernelDrops(pid: number | undefined): Record<string, number> {
  const r = spawnSync('ss', ['-Huanmp'], { encoding: 'utf8' })
  const out: Record<string, number> = {}
  const lines = r.stdout.split('\n')
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i] as string
    if (!line.includes(`pid=${pid},`)) continue
    const local = line.trim().split(/\s+/)[3] ?? ''
    // skmem is on the same line or the next one, depending on the ss version.
    const mem = /skmem:\([^)]*\bd(\d+)\)/.exec(`${line} ${lines[i + 1] ?? ''}`)
    if (mem) out[local.slice(local.lastIndexOf(':') + 1)] = Number(mem[1])
  }
  return out
}

async function main(): Promise<void> {
  const { pps, seconds } = args()
  if (!existsSync(join(root, 'dist', 'cli', 'main.js'))) throw new Error('build the CLI first: npm run build')
  if (spawnSync('ss', ['-V']).error) throw new Error('ss (iproute2) is needed to find the sockets')
  const load = buildLoad()
  const dir = mkdtempSync(join(tmpdir(), 'punktfunk-flood-'))
  const env = { ...process.env, PUNKTFUNK_PERF: '1' }
  const streamSeconds = seconds + 7
  const host = spawn(process.execPath, [CLI, 'host', '--bind', '127.0.0.1', '--port', '0', '--identity', join(dir, 'id'), '--bitrate-mbps', '100', '--fec', '20'], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env,
  })
  const hostIo = watch(host)
  const failures: string[] = []
  const check = (ok: boolean, what: string): void => {
    console.log(`${ok ? 'ok  ' : 'FAIL'} ${what}`)
    if (!ok) failures.push(what)
  }
  let client: ChildProcess | undefined
  try {
    const deadline = Date.now() + 15_000
    while (!/listening on/.test(hostIo.err()) && Date.now() < deadline) await sleep(20)
    const m = /listening on (\S+) fingerprint ([0-9a-f]{64})/.exec(hostIo.err())
    if (!m) throw new Error(`the host did not start: ${hostIo.err()}`)
    const [, address, fingerprint] = m as unknown as [string, string, string]
    client = spawn(process.execPath, [CLI, 'connect', address, '--pin', fingerprint, '--json', '--seconds', String(streamSeconds)], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env,
    })
    const clientIo = watch(client)
    await sleep(2000)
    const targets = [...new Set([...udpPorts(host.pid), ...udpPorts(client.pid)])]
    check(targets.length >= 4, `found the QUIC and data sockets of both processes: ${targets.join(' ')}`)
    const rss0 = { host: rssMiB(host.pid), client: rssMiB(client.pid) }
    const ratesBefore = clientRates(clientIo.err()).length
    // Asynchronously: the event loop must keep reading both processes' output meanwhile.
    const flooder = spawn(load, ['--flood', targets.join(','), '--pps', String(pps), '--seconds', String(seconds)], {
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    const floodIo = watch(flooder)
    const floodCode = await Promise.race([exited(flooder), sleep((seconds + 20) * 1000).then(() => -1)])
    if (floodCode !== 0) throw new Error(`the flood failed: ${floodIo.err()}`)
    await sleep(300)
    const sent = JSON.parse(floodIo.out()) as { sent: number; pps: number }
    console.log(`flood: ${sent.sent} random datagrams at ${Math.round(sent.pps)}/s to ${targets.length} ports for ${seconds} s`)
    const during = clientRates(clientIo.err()).slice(ratesBefore)
    await sleep(1500)
    const rss1 = { host: rssMiB(host.pid), client: rssMiB(client.pid) }
    check(host.exitCode === null && client.exitCode === null, 'host and client survived the flood')
    check(sent.pps >= pps * 0.5, `the flood reached ${Math.round(sent.pps)} datagrams/s (asked ${pps})`)
    check(
      during.length >= seconds - 1 && during.every((r) => r > 30),
      `the stream kept flowing during the flood: ${during.map((r) => r.toFixed(0)).join(', ')} Mbit/s (100 Mbit/s sent)`,
    )
    check(rss1.host - rss0.host < 64 && rss1.client - rss0.client < 64, `memory stayed bounded: host ${rss0.host.toFixed(1)} → ${rss1.host.toFixed(1)} MiB, client ${rss0.client.toFixed(1)} → ${rss1.client.toFixed(1)} MiB`)
    const drops = kernelDrops(host.pid)
    check(
      Object.values(drops).reduce((a, b) => a + b, 0) > 0,
      `the host's data socket (never read, 64 KiB buffer) had its garbage dropped and counted by the kernel: ${JSON.stringify(drops)} by port`,
    )

    // A new client still gets in (the QUIC socket was flooded too).
    const probe = spawnSync(process.execPath, [CLI, 'probe', address, '--pin', fingerprint, '--mbps', '20', '--seconds', '0.5', '--json'], {
      encoding: 'utf8',
      timeout: 30_000,
    })
    check(probe.status === 0, `a new client connects after the flood${probe.status === 0 ? '' : `: ${probe.stderr}`}`)

    const code = await Promise.race([exited(client), sleep((streamSeconds + 15) * 1000).then(() => -1)])
    check(code === 0, `the client ended cleanly (exit ${code})`)
    const summary = JSON.parse(clientIo.out().trim().split('\n').at(-1) ?? '{}') as {
      framesDelivered?: number
      framesFailedCheck?: number
      recvDropped?: Record<string, number>
    }
    const expected = 60 * streamSeconds
    check(summary.framesFailedCheck === 0, 'no frame failed its byte-for-byte check')
    check((summary.framesDelivered ?? 0) >= expected * 0.9, `${summary.framesDelivered} of ~${expected} frames delivered`)
    const foreign = summary.recvDropped?.foreign ?? 0
    check(foreign > 0, `the client dropped and counted garbage on its data socket: ${JSON.stringify(summary.recvDropped)}`)
  } finally {
    client?.kill('SIGKILL')
    host.kill('SIGINT')
    await Promise.race([exited(host), sleep(5000)])
    host.kill('SIGKILL')
    rmSync(dir, { recursive: true, force: true })
  }
  if (failures.length) {
    console.error(`${failures.length} check(s) failed`)
    process.exit(1)
  }
  console.log('garbage flood: all checks passed')
}

main().catch((e: unknown) => {
  console.error(e instanceof Error ? e.message : e)
  process.exit(1)
})
