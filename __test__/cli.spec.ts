// The `punktfunk` command line, run as real processes over UDP and QUIC on 127.0.0.1.
import { spawn, type ChildProcess } from 'node:child_process'
import { createCipheriv } from 'node:crypto'
import { createSocket } from 'node:dgram'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

import test, { type ExecutionContext } from 'ava'

import { Host } from '../index'
import { Flags, parse, UsageError, type CommandSpec } from '../src/cli/args'
import { printable } from '../src/cli/common'
import { syntheticFrame, syntheticIntact } from '../src/cli/stream'
import { pseudoRandom, sha256, within } from './helpers'

const BIN = join(__dirname, '..', 'bin', 'punktfunk.js')

interface Run {
  code: number | null
  stdout: Buffer
  stderr: string
}

/** A CLI process: its exit, its output, and (for hosts) the listening line. */
class Cli {
  readonly proc: ChildProcess
  readonly #out: Buffer[] = []
  #err = ''
  readonly done: Promise<Run>

  constructor(args: string[], opts: { stdin?: 'pipe' | 'ignore'; env?: Record<string, string> } = {}) {
    this.proc = spawn(process.execPath, [BIN, ...args], {
      stdio: [opts.stdin ?? 'ignore', 'pipe', 'pipe'],
      env: { ...process.env, ...opts.env },
    })
    // A process that stops reading its stdin must not crash the test with EPIPE.
    this.proc.stdin?.on('error', () => {})
    this.proc.stdout?.on('data', (d: Buffer) => this.#out.push(d))
    this.proc.stderr?.on('data', (d: Buffer) => (this.#err += d.toString()))
    this.done = new Promise((resolve) =>
      this.proc.on('close', (code) => resolve({ code, stdout: Buffer.concat(this.#out), stderr: this.#err })),
    )
  }

  get stderr(): string {
    return this.#err
  }

  /** Waits for `listening on ADDR fingerprint HEX` on stderr. */
  async listening(): Promise<{ address: string; fingerprint: string }> {
    return within(15_000, 'the listening line', (async () => {
      for (;;) {
        const m = /listening on ([\d.]+):(\d+) fingerprint ([0-9a-f]{64})/.exec(this.#err)
        if (m) return { address: `127.0.0.1:${m[2]}`, fingerprint: m[3] as string }
        if (this.proc.exitCode !== null) throw new Error(`the host exited: ${this.#err}`)
        await new Promise((r) => setTimeout(r, 20))
      }
    })())
  }
}

function cli(t: ExecutionContext, args: string[], opts?: ConstructorParameters<typeof Cli>[1]): Cli {
  const c = new Cli(args, opts)
  t.teardown(() => {
    if (c.proc.exitCode === null) c.proc.kill('SIGKILL')
  })
  return c
}

function tempDir(t: ExecutionContext): string {
  const d = mkdtempSync(join(tmpdir(), 'punktfunk-cli-'))
  t.teardown(() => rmSync(d, { recursive: true, force: true }))
  return d
}

const finished = (c: Cli, ms = 60_000): Promise<Run> => within(ms, 'the process to exit', c.done)

test.serial('demo --json streams every frame byte-exact and reports its numbers', async (t) => {
  const run = await finished(cli(t, ['demo', '--seconds', '1.5', '--bitrate-mbps', '200', '--fps', '60', '--loss', '2', '--fec', '25', '--json']))
  t.is(run.code, 0, run.stderr)
  const r = JSON.parse(run.stdout.toString()) as Record<string, number>
  for (const k of ['framesSent', 'framesDelivered', 'framesLost', 'corruptFrames', 'goodputMbps', 'wireMbps', 'fecRecoveredShards', 'sendDropped', 'latencyP50Ms', 'latencyP99Ms', 'steadyLatencyP50Ms', 'steadyLatencyP99Ms', 'estimatedMbps', 'targetMbps', 'rttMs', 'queueDelayMs', 'congestionEvents']) {
    t.is(typeof r[k], 'number', k)
  }
  t.is(r.framesSent, 90, '1.5 s at 60 fps')
  t.is(r.corruptFrames, 0)
  t.is(r.framesDelivered, 90, `25 % FEC covers 2 % random loss: ${run.stdout.toString()}`)
  t.is(r.framesLost, 0)
  t.true((r.fecRecoveredShards as number) > 0, 'the simulated loss was repaired by FEC')
  t.true((r.packetsReceived as number) < (r.packetsSent as number), 'datagrams really were lost on the way')
  // Frames follow the target as it ramps from 10 Mbit/s: near the 200 asked for after the first fraction of a second.
  t.true((r.goodputMbps as number) > 50 && (r.goodputMbps as number) < 400, `goodput ${r.goodputMbps} near the 200 Mbit/s asked for`)
  t.true((r.targetMbps as number) > 100, `the target ramped past most of the 200 Mbit/s asked for: ${r.targetMbps}`)
  t.true((r.estimatedMbps as number) >= (r.targetMbps as number), 'the path estimate covers the target and its FEC')
  t.true((r.wireMbps as number) > (r.goodputMbps as number), 'the wire carries FEC and headers on top')
  t.true((r.latencyP50Ms as number) > 0 && (r.latencyP99Ms as number) >= (r.latencyP50Ms as number))
  t.is(r.sendDropped, 0)
})

test.serial('host and connect as two processes carry 20 MB from stdin to a file byte-exact; their counters agree', async (t) => {
  const dir = tempDir(t)
  const input = pseudoRandom(20_000_000, 7)
  const out = join(dir, 'out.bin')
  const host = cli(t, ['host', '--port', '0', '--bind', '127.0.0.1', '--identity', join(dir, 'id'), '--source', '-', '--json'], { stdin: 'pipe' })
  const { address, fingerprint } = await host.listening()
  const conn = cli(t, ['connect', address, '--pin', fingerprint, '--output', out, '--json'])
  // The host waits for its first client before it reads stdin.
  host.proc.stdin?.end(input)
  const c = await finished(conn)
  t.is(c.code, 0, c.stderr)
  const summary = JSON.parse(c.stdout.toString()) as {
    bytesWritten: number
    framesDelivered: number
    framesMissing: number
    framesLost: number
    packetsReceived: number
    ended: string
  }
  t.is(summary.bytesWritten, input.length)
  t.is(summary.framesLost, 0)
  t.is(summary.framesMissing, 0, 'every frame the host announced arrived')
  t.regex(summary.ended, /^end of stream \(\d+ frames\) \(code 0\)$/)
  t.is(sha256(readFileSync(out)), sha256(input))
  const h = await finished(host)
  t.is(h.code, 0, h.stderr)
  t.regex(h.stderr, /end of input/)
  // host --json: one line per client, with every counter of its session.
  const lines = h.stdout.toString().trim().split('\n')
  t.is(lines.length, 1, 'one client served')
  const served = JSON.parse(lines[0] ?? '') as { peer: string; framesSent: number; stats: Record<string, number> }
  t.regex(served.peer, /^127\.0\.0\.1:\d+$/)
  t.is(served.framesSent, summary.framesDelivered)
  t.is(served.stats.framesSubmitted, summary.framesDelivered)
  t.is(served.stats.payloadBytesDelivered, 0, 'a host delivers nothing itself')
  // The client read what the host sent (the kernel may drop a few on a full buffer; FEC covers those).
  t.true(summary.packetsReceived <= served.stats.packetsSent && summary.packetsReceived > served.stats.packetsSent * 0.9)
})

test.serial('datagrams in through udp:// come out through udp:// with their boundaries', async (t) => {
  const dir = tempDir(t)
  const sink = createSocket({ type: 'udp4', recvBufferSize: 4 << 20 })
  const got: Buffer[] = []
  sink.on('message', (m) => got.push(m))
  await new Promise<void>((r) => sink.bind(0, '127.0.0.1', () => r()))
  t.teardown(() => sink.close())
  const source = createSocket('udp4')
  await new Promise<void>((r) => source.bind(0, '127.0.0.1', () => r()))
  const sourcePort = source.address().port
  source.close()
  const host = cli(t, ['host', '--port', '0', '--bind', '127.0.0.1', '--identity', join(dir, 'id'), '--source', `udp://127.0.0.1:${sourcePort}`])
  const { address, fingerprint } = await host.listening()
  const conn = cli(t, ['connect', address, '--pin', fingerprint, '--output', `udp://127.0.0.1:${sink.address().port}`, '--json'])
  // Datagrams that arrive before any client is connected are dropped (and counted).
  await within(15_000, 'the client to connect', (async () => {
    while (!/connected, granted/.test(host.stderr)) await new Promise((r) => setTimeout(r, 20))
  })())
  const sender = createSocket('udp4')
  t.teardown(() => sender.close())
  const sent: Buffer[] = []
  for (let i = 0; i < 2000; i++) {
    // 1 … 9000 bytes: tiny datagrams, MPEG-TS sized ones and jumbo ones.
    const d = pseudoRandom(1 + ((i * 7919) % 9000), i)
    sent.push(d)
    await new Promise<void>((r) => sender.send(d, sourcePort, '127.0.0.1', () => r()))
    if (i % 20 === 19) await new Promise((r) => setTimeout(r, 2))
  }
  // An empty datagram ends the input; the host finishes and closes cleanly.
  await new Promise<void>((r) => sender.send(Buffer.alloc(0), sourcePort, '127.0.0.1', () => r()))
  const c = await finished(conn)
  t.is(c.code, 0, c.stderr)
  const summary = JSON.parse(c.stdout.toString()) as { datagramsWritten: number; framesLost: number }
  t.is(summary.datagramsWritten, sent.length)
  await within(5_000, 'the sink to read everything', (async () => {
    while (got.length < sent.length) await new Promise((r) => setTimeout(r, 20))
  })())
  t.is(got.length, sent.length)
  t.true(got.every((g, i) => g.equals(sent[i] as Buffer)), 'same datagrams, same order, same boundaries')
  t.is((await finished(host)).code, 0)
})

test.serial('probe measures a running host and gives a verdict', async (t) => {
  const dir = tempDir(t)
  const host = cli(t, ['host', '--port', '0', '--bind', '127.0.0.1', '--identity', join(dir, 'id'), '--bitrate-mbps', '200'])
  const { address, fingerprint } = await host.listening()
  const run = await finished(cli(t, ['probe', address, '--pin', fingerprint, '--mbps', '100', '--seconds', '1', '--json']))
  t.is(run.code, 0, run.stderr)
  const r = JSON.parse(run.stdout.toString()) as { targetMbps: number; sentAtMbps: number; clamped: boolean; deliveredMbps: number; lossPercent: number; packetsSent: number; verdict: string }
  t.is(r.targetMbps, 100)
  t.is(r.sentAtMbps, 100)
  t.false(r.clamped)
  t.true(r.packetsSent > 5000, `${r.packetsSent} probe datagrams`)
  t.true(r.lossPercent < 1, `loopback loses nothing at 100 Mbit/s: ${r.lossPercent} %`)
  t.true(r.deliveredMbps > 80 && r.deliveredMbps < 120, `${r.deliveredMbps} Mbit/s`)
  t.regex(r.verdict, /^clean/)
  host.proc.kill('SIGINT')
  const h = await finished(host)
  t.is(h.code, 0, 'Ctrl-C stops the host cleanly')
  t.regex(h.stderr, /left: probe finished/)
})

test.serial('a host with a 20 Mbit/s ceiling answers a 3 Gbit/s probe request at 20 Mbit/s', async (t) => {
  const dir = tempDir(t)
  const host = cli(t, ['host', '--port', '0', '--bind', '127.0.0.1', '--identity', join(dir, 'id'), '--bitrate-mbps', '20'])
  const { address, fingerprint } = await host.listening()
  const run = await finished(cli(t, ['probe', address, '--pin', fingerprint, '--mbps', '3000', '--seconds', '1', '--json']))
  t.is(run.code, 0, run.stderr)
  const r = JSON.parse(run.stdout.toString()) as { targetMbps: number; sentAtMbps: number; clamped: boolean; packetsSent: number; seconds: number; verdict: string }
  t.is(r.targetMbps, 3000)
  t.is(r.sentAtMbps, 20, 'sent at the ceiling, not at the rate asked')
  t.true(r.clamped)
  // What left the host: datagrams of 1401 bytes over the probe's duration.
  const sentMbps = (r.packetsSent * 1401 * 8) / r.seconds / 1e6
  t.true(sentMbps <= 21, `${sentMbps.toFixed(1)} Mbit/s left the host`)
  t.regex(r.verdict, /^clean: this path carries 20 Mbit\/s/)
  host.proc.kill('SIGINT')
  t.is((await finished(host)).code, 0)
})

test.serial('connect --seconds leaves a synthetic stream whose frames all pass the check; PUNKTFUNK_PERF prints counters', async (t) => {
  const dir = tempDir(t)
  const host = cli(t, ['host', '--port', '0', '--bind', '127.0.0.1', '--identity', join(dir, 'id'), '--bitrate-mbps', '40', '--fps', '30'])
  const { address, fingerprint } = await host.listening()
  const run = await finished(cli(t, ['connect', address, '--pin', fingerprint, '--seconds', '2.2', '--json'], { env: { PUNKTFUNK_PERF: '1' } }))
  t.is(run.code, 0, run.stderr)
  const r = JSON.parse(run.stdout.toString()) as { framesDelivered: number; framesFailedCheck: number; ended: string; goodputMbps: number }
  t.true(r.framesDelivered >= 40, `${r.framesDelivered} frames at 30 fps`)
  t.is(r.framesFailedCheck, 0)
  t.is(r.ended, 'time is up')
  t.regex(run.stderr, /^perf client\[127\.0\.0\.1:\d+\] tx [\d.]+ Mbit\/s rx [\d.]+ Mbit\/s .*recv-drops none/m)
  host.proc.kill('SIGTERM')
  t.is((await finished(host)).code, 0)
})

test.serial('a cut stream says so: Ctrl-C on the host closes with code 3, and late joiners of a byte stream are turned away', async (t) => {
  const dir = tempDir(t)
  const host = cli(t, ['host', '--port', '0', '--bind', '127.0.0.1', '--identity', join(dir, 'id'), '--source', '-', '--bitrate-mbps', '4'], { stdin: 'pipe' })
  const { address, fingerprint } = await host.listening()
  const first = cli(t, ['connect', address, '--pin', fingerprint, '--json'])
  await within(15_000, 'the first client', (async () => {
    while (!/connected, granted/.test(host.stderr)) await new Promise((r) => setTimeout(r, 20))
  })())
  // 4 Mbit/s of a stream that would take 5 s: still running when the host is stopped.
  host.proc.stdin?.write(pseudoRandom(2_500_000, 3))
  await new Promise((r) => setTimeout(r, 800))
  const late = await finished(cli(t, ['connect', address, '--pin', fingerprint, '--json']))
  t.is(late.code, 1, 'a late joiner is turned away')
  t.regex(late.stdout.toString(), /already started.*\(code 4\)/)
  host.proc.kill('SIGINT')
  const c = await finished(first)
  t.is(c.code, 0, c.stderr)
  const r = JSON.parse(c.stdout.toString()) as { ended: string; framesMissing: number | null; bytesWritten: number }
  t.regex(r.ended, /^host shut down \(\d+ frames\) \(code 3\)$/)
  t.is(r.framesMissing, null, 'no end of stream was announced')
  t.true(r.bytesWritten > 0 && r.bytesWritten < 2_500_000, `${r.bytesWritten} bytes of a cut stream`)
  const h = await finished(host)
  t.is(h.code, 0)
  t.regex(h.stderr, /turned away: the byte stream has already started/)
})

test.serial('a udp source takes datagrams only from --source-from; a stranger can neither inject nor end the stream', async (t) => {
  const dir = tempDir(t)
  const sink = createSocket('udp4')
  const got: Buffer[] = []
  sink.on('message', (m) => got.push(m))
  await new Promise<void>((r) => sink.bind(0, '127.0.0.1', () => r()))
  t.teardown(() => sink.close())
  const bound = async (): Promise<ReturnType<typeof createSocket>> => {
    const s = createSocket('udp4')
    await new Promise<void>((r) => s.bind(0, '127.0.0.1', () => r()))
    t.teardown(() => s.close())
    return s
  }
  const [friend, stranger] = [await bound(), await bound()]
  const host = cli(t, ['host', '--port', '0', '--bind', '127.0.0.1', '--identity', join(dir, 'id'), '--json',
    '--source', 'udp://127.0.0.1:0', '--source-from', `localhost:${friend.address().port}`])
  const { address, fingerprint } = await host.listening()
  // The source's address is logged just after the listening line, maybe in a later chunk.
  await within(15_000, 'the udp source to bind', (async () => {
    while (!/reading datagrams on [\d.]+:\d+/.test(host.stderr)) await new Promise((r) => setTimeout(r, 20))
  })())
  const sourcePort = Number(/reading datagrams on [\d.]+:(\d+)/.exec(host.stderr)?.[1])
  const conn = cli(t, ['connect', address, '--pin', fingerprint, '--output', `udp://127.0.0.1:${sink.address().port}`, '--json'])
  await within(15_000, 'the client to connect', (async () => {
    while (!/connected, granted/.test(host.stderr)) await new Promise((r) => setTimeout(r, 20))
  })())
  const send = (s: ReturnType<typeof createSocket>, d: Buffer): Promise<void> => new Promise((r) => s.send(d, sourcePort, '127.0.0.1', () => r()))
  for (let i = 0; i < 5; i++) await send(stranger, Buffer.from(`injected ${i}`))
  await send(stranger, Buffer.alloc(0))
  await new Promise((r) => setTimeout(r, 200))
  t.is(host.proc.exitCode, null, "the stranger's empty datagram did not end the stream")
  const sent = Array.from({ length: 10 }, (_, i) => Buffer.from(`wanted ${i}`))
  for (const d of sent) await send(friend, d)
  await new Promise((r) => setTimeout(r, 100))
  await send(friend, Buffer.alloc(0))
  const c = await finished(conn)
  t.is(c.code, 0, c.stderr)
  t.is((JSON.parse(c.stdout.toString()) as { datagramsWritten: number }).datagramsWritten, sent.length)
  const h = await finished(host)
  t.is(h.code, 0, h.stderr)
  t.regex(h.stderr, /6 refused \(not from --source-from\)/)
  const lines = h.stdout.toString().trim().split('\n')
  const { udpSource } = JSON.parse(lines[lines.length - 1] ?? '') as { udpSource: { refused: number; datagrams: number } }
  t.deepEqual([udpSource.refused, udpSource.datagrams], [6, sent.length])
  await within(5_000, 'the sink to read everything', (async () => {
    while (got.length < sent.length) await new Promise((r) => setTimeout(r, 20))
  })())
  t.deepEqual(got.map(String), sent.map(String))
})

test('a udp source on a wildcard address without --source-from says so on stderr', async (t) => {
  const dir = tempDir(t)
  const host = cli(t, ['host', '--port', '0', '--bind', '127.0.0.1', '--identity', join(dir, 'id'), '--source', 'udp://0.0.0.0:0', '--seconds', '0.3'])
  const h = await finished(host)
  t.is(h.code, 0, h.stderr)
  t.regex(h.stderr, /takes datagrams from anyone who can reach that port.*--source-from HOST\[:PORT\]/)
  const bad = await finished(cli(t, ['host', '--port', '0', '--source-from', '127.0.0.1']))
  t.is(bad.code, 2)
  t.regex(bad.stderr, /--source-from applies to a udp:\/\/ source only/)
})

test('host --seconds also ends a host still waiting for its first client', async (t) => {
  const dir = tempDir(t)
  const started = Date.now()
  const host = cli(t, ['host', '--port', '0', '--bind', '127.0.0.1', '--identity', join(dir, 'id'), '--source', '-', '--seconds', '1'], { stdin: 'pipe' })
  await host.listening()
  const h = await finished(host, 15_000)
  t.is(h.code, 0, h.stderr)
  t.true(Date.now() - started < 10_000)
  t.regex(h.stderr, /stopping \(time\)/)
})

test('connect checks its flags before touching the output file, and udp output needs no listener', async (t) => {
  const dir = tempDir(t)
  const keep = join(dir, 'keep.ts')
  writeFileSync(keep, 'precious')
  const bad = await finished(cli(t, ['connect', '127.0.0.1:7447', '--output', keep]))
  t.is(bad.code, 2)
  t.is(readFileSync(keep, 'utf8'), 'precious', 'a usage error leaves the file alone')
  const refused = await finished(cli(t, ['connect', '127.0.0.1:9', '--pin', 'ab'.repeat(32), '--timeout-ms', '500', '--output', keep]), 15_000)
  t.is(refused.code, 1)
  t.is(readFileSync(keep, 'utf8'), 'precious', 'so does a host that never answers')
  // Nobody listens on the udp output: the datagrams are lost, the stream is not.
  const host = cli(t, ['host', '--port', '0', '--bind', '127.0.0.1', '--identity', join(dir, 'id'), '--bitrate-mbps', '5', '--seconds', '1.5'])
  const { address, fingerprint } = await host.listening()
  const closedPort = createSocket('udp4')
  await new Promise<void>((r) => closedPort.bind(0, '127.0.0.1', () => r()))
  const port = closedPort.address().port
  closedPort.close()
  const c = await finished(cli(t, ['connect', address, '--pin', fingerprint, '--output', `udp://127.0.0.1:${port}`, '--json']))
  t.is(c.code, 0, c.stderr)
  t.regex(JSON.parse(c.stdout.toString()).ended as string, /^end of stream/)
  await finished(host)
})

test('a wrong pin is refused, and trust on first use remembers the host', async (t) => {
  const dir = tempDir(t)
  const host = cli(t, ['host', '--port', '0', '--bind', '127.0.0.1', '--identity', join(dir, 'id'), '--bitrate-mbps', '5', '--seconds', '20'])
  const { address } = await host.listening()
  const wrong = await finished(cli(t, ['probe', address, '--pin', 'ab'.repeat(32), '--seconds', '0.2']))
  t.is(wrong.code, 1)
  t.regex(wrong.stderr, /ERR_PF_PIN_MISMATCH/)
  const kh = join(dir, 'known_hosts')
  const first = await finished(cli(t, ['probe', address, '--tofu', '--known-hosts', kh, '--mbps', '10', '--seconds', '0.2']))
  t.is(first.code, 0, first.stderr)
  t.regex(readFileSync(kh, 'utf8'), new RegExp(`^${address.replace(/\./g, '\\.')} [0-9a-f]{64}$`, 'm'))
  writeFileSync(kh, `${address} ${'cd'.repeat(32)}\n`)
  const changed = await finished(cli(t, ['probe', address, '--tofu', '--known-hosts', kh, '--seconds', '0.2']))
  t.is(changed.code, 1, 'a host whose fingerprint changed is refused')
  t.regex(changed.stderr, /ERR_PF_PIN_MISMATCH/)
  host.proc.kill('SIGINT')
  await finished(host)
})

test.serial('host --allow admits the client whose identity it lists and turns the others away', async (t) => {
  const dir = tempDir(t)
  const id = await finished(cli(t, ['identity', '--identity', join(dir, 'friend'), '--json']))
  const friend = (JSON.parse(id.stdout.toString()) as { fingerprint: string }).fingerprint
  const host = cli(t, ['host', '--port', '0', '--bind', '127.0.0.1', '--identity', join(dir, 'host'), '--allow', friend, '--seconds', '20'])
  const { address, fingerprint } = await host.listening()
  const stranger = await finished(cli(t, ['connect', address, '--pin', fingerprint, '--identity', join(dir, 'stranger'), '--seconds', '1']))
  t.is(stranger.code, 1, stranger.stderr)
  t.regex(stranger.stderr, /is not authorized on this host/)
  const anonymous = await finished(cli(t, ['connect', address, '--pin', fingerprint, '--seconds', '1']))
  t.is(anonymous.code, 1)
  t.regex(anonymous.stderr, /presented no identity/)
  const ok = await finished(cli(t, ['connect', address, '--pin', fingerprint, '--identity', join(dir, 'friend'), '--seconds', '1.5', '--json']))
  t.is(ok.code, 0, ok.stderr)
  const r = JSON.parse(ok.stdout.toString()) as { framesDelivered: number; framesFailedCheck: number }
  t.true(r.framesDelivered > 0)
  t.is(r.framesFailedCheck, 0)
  host.proc.kill('SIGINT')
  const h = await finished(host)
  t.regex(h.stderr, /not authorized on this host/)
  t.regex(h.stderr, /presented no identity/)
})

test('a close reason a host chose reaches the terminal without control characters', async (t) => {
  const dir = tempDir(t)
  const h = await Host.listen({ bind: '127.0.0.1:0', identityDir: dir })
  t.teardown(() => h.close())
  const accepting = h.accept({ timeoutMs: 15_000 })
  const client = cli(t, ['connect', h.address, '--pin', h.fingerprint])
  const session = await accepting
  if (!session) return t.fail('no session')
  // Clears the screen, sets the window title, reverses the text that follows.
  await session.close('\u001b[2J\u001b]0;pwned\u0007\u009b31m\u202eevil', 7)
  const run = await finished(client)
  t.is(run.code, 1, 'an error code from the host is a failure')
  const out = run.stdout.toString() + run.stderr
  t.regex(out, /ended\s+\\u001b\[2J\\u001b\]0;pwned\\u0007\\u009b31m\\u202eevil \(code 7\)/)
  t.false(/[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u202e]/.test(out), JSON.stringify(out))
})

test('printable escapes what moves a terminal and keeps the rest', (t) => {
  t.is(printable('plain text, ä € 🎮'), 'plain text, ä € 🎮')
  t.is(printable('a\nb\tc\u001b[0m\u007f\u0085\u2028\u2066'), 'a\\u000ab\\u0009c\\u001b[0m\\u007f\\u0085\\u2028\\u2066')
})

test('connect to a closed port fails within its timeout with a clear message', async (t) => {
  const started = Date.now()
  const run = await finished(cli(t, ['connect', '127.0.0.1:9', '--pin', 'ab'.repeat(32), '--timeout-ms', '1000']), 15_000)
  t.is(run.code, 1)
  t.regex(run.stderr, /^punktfunk connect: no host answered at 127\.0\.0\.1:9 within 1000 ms/)
  t.is(run.stderr.trim().split('\n').length, 1, 'one line')
  t.true(Date.now() - started < 10_000)
})

test('usage errors exit 2 with one line naming the problem', async (t) => {
  const cases: Array<[string[], RegExp]> = [
    [['demo', '--bogus'], /unknown flag --bogus/],
    [['demo', '--seconds', 'soon'], /--seconds must be a number/],
    [['demo', '--fec', '101'], /--fec must be between 0 and 100/],
    [['host', '--source', 'tcp://x:1'], /--source must be synthetic, - or udp:\/\/HOST:PORT/],
    [['host', '--bind', '127.0.0.1:5', '--port', '6'], /not both/],
    [['connect'], /missing HOST:PORT/],
    [['connect', '127.0.0.1:7447'], /say how to trust the host/],
    [['connect', '127.0.0.1:7447', '--pin', 'abc'], /--pin must be 64 hex digits/],
    [['connect', '127.0.0.1:7447', '--tofu', '--output', 'udp://nowhere'], /is not udp:\/\/HOST:PORT/],
    [['probe', 'not-an-address', '--tofu'], /is not IP:PORT/],
    [['host', '--udp-offload', 'maybe'], /--udp-offload must be auto, on or off, got "maybe"/],
    [['host', '--allow', 'abc'], /--allow takes 64-hex-digit fingerprints/],
    [['connect', '127.0.0.1:7447', '--tofu', '--udp-offload', 'yes'], /--udp-offload must be auto, on or off/],
    [['host', '--abr', 'maybe'], /--abr takes on or off, got "maybe"/],
    [['host', '--abr', 'off', '--initial-mbps', '5'], /--initial-mbps applies with --abr on only/],
    [['host', '--probes', 'off', '--probe-max-mbps', '5'], /--probe-max-mbps applies with --probes on only/],
    [['demo', '--abr', '1'], /--abr takes on or off/],
    [['frobnicate'], /unknown command "frobnicate"/],
    [[], /usage: punktfunk COMMAND/],
  ]
  await Promise.all(
    cases.map(async ([args, why]) => {
      const run = await finished(cli(t, args), 20_000)
      t.is(run.code, 2, args.join(' '))
      const text = args.length ? run.stderr : run.stdout.toString()
      t.regex(text, why, args.join(' '))
      if (args.length) t.is(run.stderr.trim().split('\n').length, 1, `one line for ${args.join(' ')}`)
    }),
  )
  const help = await finished(cli(t, ['connect', '--help']))
  t.is(help.code, 0)
  t.regex(help.stdout.toString(), /--output OUT/)
})

test('identity creates the host identity once, then shows the same fingerprint', async (t) => {
  const dir = join(tempDir(t), 'id')
  const a = await finished(cli(t, ['identity', '--identity', dir, '--json']))
  const b = await finished(cli(t, ['identity', '--identity', dir, '--json']))
  const ja = JSON.parse(a.stdout.toString()) as { fingerprint: string; created: boolean }
  const jb = JSON.parse(b.stdout.toString()) as { fingerprint: string; created: boolean }
  t.true(ja.created)
  t.false(jb.created)
  t.regex(ja.fingerprint, /^[0-9a-f]{64}$/)
  t.is(jb.fingerprint, ja.fingerprint)
  const host = cli(t, ['host', '--port', '0', '--bind', '127.0.0.1', '--identity', dir, '--seconds', '0.5'])
  t.is((await host.listening()).fingerprint, ja.fingerprint, 'the host serves with that identity')
  t.is((await finished(host)).code, 0, '--seconds ends the host')
})

test.serial('bench --json measures every case, the SDK ratio and one host serving 1, 4 and 16 clients', async (t) => {
  const run = await finished(cli(t, ['bench', '--seconds', '0.3', '--json']), 180_000)
  t.is(run.code, 0, run.stderr)
  const r = JSON.parse(run.stdout.toString()) as {
    rows: Array<{ case: string; path: string; goodputGbps: number; framesSent: number; packetsPerSec: number; latencyP50Ms: number | null; allocationsPerPacket: number | null }>
    sdkOverRust: { unpaced: number; window2: number }
    scale: { runs: Array<{ clients: number; aggregateGoodputGbps: number; minClientGbps: number }>; aggregateVsSingle: number }
  }
  const names = r.rows.map((x) => x.case)
  for (const want of [/^raw UDP, send\/recv/, /^raw UDP, sendmmsg/, /^raw UDP, (GSO\/GRO|sendmmsg)/, /^rust session, unpaced/, /^sdk session, unpaced/, /^rust session, paced/, /^sdk session, paced/, /^sdk loopback pair/]) {
    t.true(names.some((n) => want.test(n)), `${want} in ${names.join(', ')}`)
  }
  for (const row of r.rows) {
    t.true(row.goodputGbps > 0 && row.framesSent > 0 && row.packetsPerSec > 0, JSON.stringify(row))
  }
  const rustPaced = r.rows.find((x) => /^rust session, paced/.test(x.case))
  t.true((rustPaced?.latencyP50Ms ?? 0) > 0, 'paced cases report latency')
  t.is(r.rows.find((x) => /^rust session, unpaced/.test(x.case))?.allocationsPerPacket, 0, 'the Rust session allocates nothing per packet after warm-up')
  t.true(r.sdkOverRust.unpaced > 0)
  t.deepEqual(r.scale.runs.map((x) => x.clients), [1, 4, 16])
  for (const s of r.scale.runs) t.true(s.aggregateGoodputGbps > 0 && s.minClientGbps > 0, JSON.stringify(s))
})

// ---------------------------------------------------------------- pieces

const spec: CommandSpec = {
  name: 'x',
  summary: '',
  positionals: ['A'],
  flags: {
    n: { kind: 'number', value: 'N', help: '', min: 0, max: 10, integer: true },
    s: { kind: 'string', value: 'S', help: '' },
    b: { kind: 'boolean', help: '' },
  },
}

test('the flag parser reads values both ways and refuses the rest', (t) => {
  const f = new Flags(parse(spec, ['pos', '--n', '3', '--s=hi', '--b']))
  t.is(f.positional(0), 'pos')
  t.is(f.num('n'), 3)
  t.is(f.str('s'), 'hi')
  t.true(f.bool('b'))
  t.is(new Flags(parse(spec, ['-'])).positional(0), '-', 'a lone dash is an argument')
  for (const bad of [['p', '--n', '2.5'], ['p', '--n', '11'], ['p', '--n'], ['p', '--b=1'], ['p', '--n', '1', '--n', '2'], ['p', 'q'], []]) {
    t.throws(() => parse(spec, bad), { instanceOf: UsageError }, bad.join(' '))
  }
})

test('a synthetic frame passes its check and any flipped byte fails it', (t) => {
  const f = syntheticFrame(12, 50_000)
  t.true(syntheticIntact(f))
  for (const at of [0, 6, 9, 30_000, 49_999]) {
    const g = Buffer.from(f)
    g[at] = (g[at] as number) ^ 1
    t.false(syntheticIntact(g), `byte ${at}`)
  }
  t.false(syntheticIntact(f.subarray(0, 5)))
})

test('synthetic bodies are the AES-128-CTR keystream at their offset, across the lazily built blocks', (t) => {
  // The pattern is built 1 MiB at a time; every body must still be the one
  // keystream, so hosts and clients of other versions check each other.
  const c = createCipheriv('aes-128-ctr', Buffer.alloc(16, 0x70), Buffer.alloc(16, 0x66))
  const keystream = c.update(Buffer.alloc(32 << 20))
  for (let i = 0; i < 64; i++) {
    const f = syntheticFrame(i, 9 + ((i * 7919 * 131) % (3 << 20)))
    const offset = f.readUInt32BE(5)
    t.is(keystream.compare(f, 9, f.length, offset, offset + f.length - 9), 0, `frame ${i} at ${offset}`)
    t.true(syntheticIntact(f))
  }
})
