/** `punktfunk host`: serves a stream to every client that connects. */
import { Host, type HostSession } from '../control'
import { UsageError, udpTarget, type CommandSpec, type Flags } from './args'
import { bufferAdvice, interrupted, nowUs, sleepUntil } from './common'
import { IDENTITY_FLAG } from './misc'
import { perfReporter } from './report'
import { FrameQueue, listenUdp, readStream, type UdpSource } from './sources'
import { FrameSizes, syntheticFrame } from './stream'

/** The port `punktfunk host` listens on unless told otherwise. */
export const DEFAULT_PORT = 7447

export const hostSpec: CommandSpec = {
  name: 'host',
  summary: 'Serves a stream to every client that connects (QUIC control, FEC + AES-GCM datagrams).',
  positionals: [],
  flags: {
    bind: { kind: 'string', value: 'ADDR', help: 'listen address, IP or IP:PORT (default 0.0.0.0)' },
    port: { kind: 'number', value: 'P', help: `listen port; 0 picks a free one (default ${DEFAULT_PORT})`, min: 0, max: 65535, integer: true },
    identity: IDENTITY_FLAG,
    source: { kind: 'string', value: 'SRC', help: "synthetic (default), - for stdin, or udp://HOST:PORT to listen for datagrams" },
    'bitrate-mbps': { kind: 'number', value: 'R', help: 'synthetic: stream rate (default 50); stdin/udp: rate cap (default none)', min: 0.01, max: 2000 },
    fps: { kind: 'number', value: 'F', help: 'synthetic frames per second (default 60)', min: 1, max: 1000 },
    fec: { kind: 'number', value: 'PCT', help: 'fixed FEC percentage (default: adaptive 5–50, starting at 10)', min: 0, max: 100, integer: true },
    seconds: { kind: 'number', value: 'N', help: 'stop after N seconds (default: run until the input ends or Ctrl-C)', min: 0.1, max: 31_536_000 },
    'frame-bytes': { kind: 'number', value: 'B', help: 'stdin/udp: largest frame bundled from the input (default 262144)', min: 1024, max: 16 << 20, integer: true },
    'bundle-ms': { kind: 'number', value: 'MS', help: 'udp: longest a datagram waits for others to share its frame (default 2)', min: 0, max: 1000 },
  },
  notes: [
    "Prints 'listening on HOST:PORT fingerprint HEX' on stderr once ready; clients pin that fingerprint.",
    'stdin and udp sources wait for the first client, then fan out to every connected client. At the end of',
    'input (EOF, or an empty datagram for udp) the host finishes sending and closes each session cleanly.',
  ],
}

type Source = { kind: 'synthetic' } | { kind: 'stdin' } | { kind: 'udp'; host: string; port: number }

function sourceOf(v: string): Source {
  if (v === 'synthetic') return { kind: 'synthetic' }
  if (v === '-') return { kind: 'stdin' }
  if (v.startsWith('udp://')) return { kind: 'udp', ...udpTarget(v, '--source') }
  throw new UsageError(`--source must be synthetic, - or udp://HOST:PORT, got ${JSON.stringify(v)}`)
}

function bindOf(f: Flags): string {
  const bind = f.str('bind', '0.0.0.0')
  const port = f.num('port')
  const m = /^(\[[0-9a-fA-F:.]+\]|[0-9.]+)(?::(\d+))?$/.exec(bind)
  if (!m) throw new UsageError(`--bind ${JSON.stringify(bind)} is not an IP or IP:PORT`)
  if (m[2] !== undefined && port !== undefined) throw new UsageError('give the port in --bind or --port, not both')
  return m[2] !== undefined ? bind : `${m[1]}:${port ?? DEFAULT_PORT}`
}

/** One connected client and what it was sent. */
interface Served {
  session: HostSession
  /** The client's address (kept: a closed session no longer knows it). */
  peer: string
  frames: number
  /** Next frame must be a keyframe (the client asked). */
  wantKeyframe: boolean
}

const log = (line: string): void => void process.stderr.write(`${line}\n`)

export async function host(f: Flags): Promise<number> {
  const source = sourceOf(f.str('source', 'synthetic'))
  const bind = bindOf(f)
  const fixedFec = f.num('fec')
  const fps = f.num('fps', 60)
  const seconds = f.num('seconds')
  const maxFrame = f.num('frame-bytes', 256 << 10)
  const bitrate = f.num('bitrate-mbps', source.kind === 'synthetic' ? 50 : 0)
  if (source.kind !== 'synthetic' && f.has('fps')) throw new UsageError('--fps applies to the synthetic source only')

  const advice = bufferAdvice()
  if (advice) log(advice)
  const h = await Host.listen({
    bind,
    identityDir: f.str('identity'),
    fec: { percent: fixedFec ?? 10 },
    adaptiveFec: fixedFec === undefined ? { min: 5, max: 50 } : false,
    maxBitrateKbps: bitrate > 0 ? Math.round(bitrate * 1000) : undefined,
  })
  log(`listening on ${h.address} fingerprint ${h.fingerprint}`)

  const served = new Set<Served>()
  const everyone: Served[] = []
  let clientArrived: () => void = () => {}
  let arrival = new Promise<void>((r) => (clientArrived = r))
  let stopping = false
  const stopPerf = perfReporter('host', () => [...served].map((s) => s.session.stats()))
  const signal = interrupted()

  const endSession = async (s: Served, reason: string): Promise<void> => {
    served.delete(s)
    await s.session.close(reason).catch(() => {})
  }

  /** Reads what a client says: keyframe requests, and its leaving. */
  const listen = async (s: Served): Promise<void> => {
    for await (const m of s.session.messages()) {
      if (m.type === 'keyframeRequest') s.wantKeyframe = true
      else if (m.type === 'closed') {
        log(`client ${s.peer} left: ${m.reason || 'no reason'} (code ${m.code}) after ${s.frames} frames`)
        served.delete(s)
        await s.session.close().catch(() => {})
      }
    }
  }

  /** Streams synthetic frames to one client until it leaves or the host stops. */
  const synthetic = async (s: Served): Promise<void> => {
    const sizes = new FrameSizes(bitrate * 1e6, fps)
    const t0 = performance.now()
    for (let i = 0; !stopping && served.has(s); i++) {
      await sleepUntil(t0 + (i * 1000) / fps)
      const key = sizes.keyframe(i) || s.wantKeyframe
      s.wantKeyframe = false
      const size = key && !sizes.keyframe(i) ? sizes.keyframeSize() : sizes.size(i)
      try {
        await s.session.submitFrame(syntheticFrame(i, size), { keyframe: key, pts: nowUs() })
        s.frames++
      } catch {
        served.delete(s)
      }
    }
  }

  const accepting = (async () => {
    for await (const session of h.sessions({ onError: (e) => log(`a client failed to connect: ${e.message}`) })) {
      if (stopping) {
        await session.close('host shut down', 3)
        continue
      }
      const s: Served = { session, peer: session.peer, frames: 0, wantKeyframe: true }
      served.add(s)
      if (everyone.length < 1000) everyone.push(s)
      log(`client ${s.peer} connected, granted ${session.grantedBitrateKbps / 1000} Mbit/s`)
      clientArrived()
      arrival = new Promise<void>((r) => (clientArrived = r))
      void listen(s)
      if (source.kind === 'synthetic') void synthetic(s)
    }
  })()

  const stop = async (): Promise<void> => {
    stopping = true
    await Promise.all([...served].map((s) => endSession(s, `end of stream (${s.frames} frames)`)))
    await h.close('host shut down')
    await accepting
  }

  const timeLimit = seconds === undefined ? undefined : new Promise<string>((r) => setTimeout(() => r('time'), seconds * 1000).unref())
  let why: string
  let udp: UdpSource | undefined
  try {
    if (source.kind === 'synthetic') {
      why = await Promise.race([signal.promise, timeLimit ?? new Promise<string>(() => {})])
    } else {
      const queue = new FrameQueue(source.kind === 'udp' ? 256 : 8)
      await Promise.race([arrival, signal.promise])
      if (served.size > 0) {
        if (source.kind === 'udp') {
          udp = await listenUdp(source.host, source.port, queue, maxFrame, f.num('bundle-ms', 2))
          log(`reading datagrams on ${source.host}:${udp.socket.address().port}`)
        } else void readStream(process.stdin, queue, maxFrame)
      } else queue.end()
      const pumped = pump(queue, served, () => arrival, bitrate)
      why = await Promise.race([pumped.then(() => 'end of input'), signal.promise, timeLimit ?? new Promise<string>(() => {})])
      if (udp && queue.dropped > 0) log(`dropped ${queue.dropped} bundles: the clients did not keep up with the udp source`)
      if (udp) log(`${udp.datagrams()} datagrams read`)
    }
  } finally {
    signal.dispose()
    stopPerf()
    udp?.close()
  }
  log(why === 'end of input' ? 'end of input: finishing delivery' : `stopping (${why})`)
  await stop()
  for (const s of everyone) log(`client ${s.peer}: ${s.frames} frames sent`)
  if (why !== 'end of input' && source.kind === 'stdin') process.stdin.destroy()
  return 0
}

/**
 * Sends queued source frames to every connected client (waiting for one when
 * there are none), at most `rateMbps` on average when set.
 */
async function pump(queue: FrameQueue, served: Set<Served>, arrival: () => Promise<void>, rateMbps: number): Promise<void> {
  const t0 = performance.now()
  let bytes = 0
  for (;;) {
    const fr = await queue.next()
    if (!fr) return
    while (served.size === 0) await arrival()
    if (rateMbps > 0) await sleepUntil(t0 + (bytes * 8) / (rateMbps * 1e3))
    bytes += fr.data.length
    const pts = nowUs()
    await Promise.all(
      [...served].map(async (s) => {
        const keyframe = s.wantKeyframe
        s.wantKeyframe = false
        try {
          await s.session.submitFrame(fr.data, { pts, keyframe })
          s.frames++
        } catch {
          served.delete(s)
        }
      }),
    )
  }
}
