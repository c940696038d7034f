/** `punktfunk host`: serves a stream to every client that connects. */
import { lookup } from 'node:dns/promises'
import { isIP } from 'node:net'

import { Host, type HostSession } from '../control'
import { onOff, UsageError, udpTarget, type CommandSpec, type Flags } from './args'
import { bufferAdvice, interrupted, nowUs, printable, sleepUntil } from './common'
import { IDENTITY_FLAG, OFFLOAD_FLAG, offloadOf } from './misc'
import { perfReporter, rateDetail, rateLine } from './report'
import { FrameQueue, listenUdp, readStream, type UdpSource } from './sources'
import { FrameSizes, syntheticFrame } from './stream'
import { startWebPage, type WebPage } from './webpage'

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
    'bitrate-mbps': { kind: 'number', value: 'R', help: 'synthetic: stream rate, the ceiling with --abr on (default 50); stdin/udp: rate cap (default none)', min: 0.01, max: 2000 },
    fps: { kind: 'number', value: 'F', help: 'synthetic frames per second (default 60)', min: 1, max: 1000 },
    fec: { kind: 'number', value: 'PCT', help: 'fixed FEC percentage (default: adaptive 3–50, starting at 10)', min: 0, max: 100, integer: true },
    seconds: { kind: 'number', value: 'N', help: 'stop after N seconds (default: run until the input ends or Ctrl-C)', min: 0.1, max: 31_536_000 },
    'frame-bytes': { kind: 'number', value: 'B', help: 'stdin/udp: largest frame bundled from the input (default 262144)', min: 1024, max: 16 << 20, integer: true },
    'bundle-ms': { kind: 'number', value: 'MS', help: 'udp: longest a datagram waits for others to share its frame (default 2)', min: 0, max: 1000 },
    'source-from': {
      kind: 'string',
      value: 'HOST[:PORT]',
      help: 'udp: take datagrams only from this sender (default: loopback senders when the source is bound to loopback, anyone otherwise)',
    },
    'max-clients': { kind: 'number', value: 'N', help: 'clients served at once; more are turned away (default 8)', min: 1, max: 1024, integer: true },
    'late-join': { kind: 'boolean', help: 'stdin: let clients join after the stream started (they get only the rest)' },
    abr: { kind: 'string', value: 'on|off', help: 'adapt each stream to its path (default on): --bitrate-mbps becomes the ceiling' },
    'initial-mbps': { kind: 'number', value: 'R', help: 'with --abr on: the rate a stream starts at before it ramps (default 10)', min: 0.1, max: 2000 },
    'max-total-mbps': { kind: 'number', value: 'R', help: 'ceiling on all streams together, shared between clients (default none)', min: 0.1, max: 100_000 },
    probes: { kind: 'string', value: 'on|off', help: "answer clients' speed tests (default on, at most the granted bitrate)" },
    'probe-max-mbps': { kind: 'number', value: 'R', help: 'highest speed-test rate (default: the bitrate granted to the client)', min: 0.1, max: 100_000 },
    json: { kind: 'boolean', help: 'when the host stops, print one JSON object per client served on stdout (and one for a udp source)' },
    'udp-offload': OFFLOAD_FLAG,
    allow: {
      kind: 'string',
      value: 'HEX[,HEX]',
      help: "admit only clients presenting these fingerprints ('punktfunk identity' on the client; connect --identity DIR; a browser's device fingerprint, shown on the page)",
    },
    web: { kind: 'boolean', help: 'serve browsers too (WebTransport on the same port) and a page that plays the stream; prints its address' },
    'web-port': { kind: 'number', value: 'P', help: 'with --web: the page\'s HTTP port (default 8080; 0 picks a free one)', min: 0, max: 65535, integer: true },
    'web-bind': { kind: 'string', value: 'IP', help: 'with --web: the page\'s HTTP address (default 127.0.0.1)' },
  },
  notes: [
    "Prints 'listening on HOST:PORT fingerprint HEX' on stderr once ready; clients pin that fingerprint.",
    'stdin and udp sources wait for the first client, then fan out to every connected client. A byte stream',
    'from stdin goes only to the clients present when it starts (unless --late-join); udp datagrams that',
    'arrive while no client is connected are dropped and counted. At the end of input (EOF, or an empty',
    "datagram) the host finishes sending and closes each session with 'end of stream (N frames)', code 0;",
    "Ctrl-C, or --seconds with a stdin/udp source, closes with 'host shut down (N frames)', code 3.",
    'A udp source takes datagrams only from --source-from (refused ones are counted); without it, one bound',
    'to a non-loopback address takes them from anyone who can reach the port, and says so on stderr.',
  ],
}

type Source = { kind: 'synthetic' } | { kind: 'stdin' } | { kind: 'udp'; host: string; port: number }

/** `--allow HEX[,HEX...]`: the client fingerprints admitted, or `undefined` (anyone). */
function allowOf(f: Flags): string[] | undefined {
  const v = f.str('allow')
  if (v === undefined) return undefined
  const list = v.split(',').map((x) => x.trim().replace(/:/g, ''))
  for (const fp of list) {
    if (!/^[0-9a-fA-F]{64}$/.test(fp)) throw new UsageError(`--allow takes 64-hex-digit fingerprints separated by commas, got ${JSON.stringify(fp)}`)
  }
  return list
}

/** Whether `host` names a loopback address. */
function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\./.test(host) || /^::ffff:127\./i.test(host)
}

/**
 * `--source-from HOST[:PORT]` as the native source filter (`IP`, `IP:PORT`),
 * names resolved; without it, `loopback` for a source bound to loopback, else
 * `any` with a warning for stderr.
 */
async function sourceFilterOf(f: Flags, source: Source): Promise<{ allow: string; warning?: string }> {
  const v = f.str('source-from')
  if (source.kind !== 'udp') {
    if (v !== undefined) throw new UsageError('--source-from applies to a udp:// source only')
    return { allow: 'any' }
  }
  if (v === undefined) {
    if (isLoopback(source.host)) return { allow: 'loopback' }
    return {
      allow: 'any',
      warning:
        `note: --source udp://${source.host}:${source.port} takes datagrams from anyone who can reach that port, and an ` +
        'empty datagram from any of them ends the stream for every client; name the sender with --source-from HOST[:PORT]',
    }
  }
  const m = /^\[([0-9a-fA-F:.]+)\](?::(\d+))?$/.exec(v) ?? (isIP(v) === 6 ? [v, v] : /^([^:\s]+)(?::(\d+))?$/.exec(v))
  const port = m?.[2] === undefined ? undefined : Number(m[2])
  if (!m || (port !== undefined && !(port >= 1 && port <= 65535))) {
    throw new UsageError(`--source-from ${JSON.stringify(v)} is not HOST or HOST:PORT`)
  }
  let ip = m[1] as string
  if (!isIP(ip)) {
    try {
      // The address family of the socket the datagrams arrive on.
      ip = (await lookup(ip, { family: isIP(source.host) === 6 ? 6 : 4 })).address
    } catch {
      throw new UsageError(`--source-from: cannot resolve ${JSON.stringify(ip)}`)
    }
  }
  const host = isIP(ip) === 6 ? `[${ip}]` : ip
  return { allow: port === undefined ? ip : `${host}:${port}` }
}

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
  if (m[2] !== undefined && Number(m[2]) > 65535) throw new UsageError(`--bind port ${m[2]} is above 65535`)
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

/** Why the host stops: how each session is closed. */
type Ending = 'end of input' | 'time' | 'signal' | 'no clients' | 'failed'

const log = (line: string): void => void process.stderr.write(`${line}\n`)

/** The clients being served, and a way to wait for the next one. */
class Clients {
  readonly served = new Set<Served>()
  readonly everyone: Served[] = []
  #arrived: () => void = () => {}
  #arrival = new Promise<void>((r) => (this.#arrived = r))

  add(s: Served): void {
    this.served.add(s)
    if (this.everyone.length < 1000) this.everyone.push(s)
    this.#arrived()
    this.#arrival = new Promise<void>((r) => (this.#arrived = r))
  }

  /** Resolves when the next client arrives. */
  arrival(): Promise<void> {
    return this.#arrival
  }
}

export async function host(f: Flags): Promise<number> {
  const source = sourceOf(f.str('source', 'synthetic'))
  const bind = bindOf(f)
  const fixedFec = f.num('fec')
  const fps = f.num('fps', 60)
  const seconds = f.num('seconds')
  const maxFrame = f.num('frame-bytes', 256 << 10)
  const maxClients = f.num('max-clients', 8)
  const bitrate = f.num('bitrate-mbps', source.kind === 'synthetic' ? 50 : 0)
  if (source.kind !== 'synthetic' && f.has('fps')) throw new UsageError('--fps applies to the synthetic source only')
  if (source.kind !== 'stdin' && f.bool('late-join')) throw new UsageError('--late-join applies to the stdin source only')
  const lateJoin = source.kind !== 'stdin' || f.bool('late-join')
  const udpOffload = offloadOf(f)
  const allow = allowOf(f)
  const abr = onOff(f, 'abr')
  const probes = onOff(f, 'probes')
  const web = f.bool('web')
  if (!web && (f.num('web-port') !== undefined || f.str('web-bind') !== undefined)) {
    throw new UsageError('--web-port and --web-bind apply with --web only')
  }
  if (!abr && f.has('initial-mbps')) throw new UsageError('--initial-mbps applies with --abr on only')
  if (!probes && f.has('probe-max-mbps')) throw new UsageError('--probe-max-mbps applies with --probes on only')
  const kbps = (name: string): number | undefined => {
    const v = f.num(name)
    return v === undefined ? undefined : Math.round(v * 1000)
  }

  const advice = bufferAdvice()
  if (advice) log(advice)
  const clients = new Clients()
  const queue = source.kind === 'synthetic' ? undefined : new FrameQueue(source.kind === 'udp' ? 256 : 8)
  // The udp source is bound first, so a busy port fails before anyone connects.
  let udp: UdpSource | undefined
  const filter = await sourceFilterOf(f, source)
  if (source.kind === 'udp' && queue) {
    if (filter.warning) log(filter.warning)
    udp = await listenUdp(source.host, source.port, filter.allow, queue, maxFrame, f.num('bundle-ms', 2), () => clients.served.size > 0)
  }
  let h: Host
  try {
    h = await Host.listen({
      bind,
      identityDir: f.str('identity'),
      fec: { percent: fixedFec ?? 10 },
      adaptiveFec: fixedFec === undefined ? undefined : false,
      maxBitrateKbps: bitrate > 0 ? Math.round(bitrate * 1000) : undefined,
      udpOffload,
      authorizedClients: allow,
      rate: { adaptive: abr, initialKbps: kbps('initial-mbps') },
      maxTotalKbps: kbps('max-total-mbps'),
      probes: probes ? { ceilingKbps: kbps('probe-max-mbps') } : false,
      web,
    })
  } catch (e) {
    udp?.close()
    throw e
  }
  log(`listening on ${h.address} fingerprint ${h.fingerprint}`)
  let page: WebPage | undefined
  if (web) {
    try {
      page = await servePage(h, f)
    } catch (e) {
      udp?.close()
      await h.close('host shut down')
      throw e
    }
  }
  if (udp) log(`reading datagrams on ${udp.address}`)

  let started = false
  let stopping = false
  const stopPerf = perfReporter('host', () => [...clients.served].map((s) => [s.peer, s.session.stats(), `fec ${s.session.fecPercent} %`] as const))
  const signal = interrupted()

  /** Reads what a client says: keyframe requests, and its leaving. */
  const listen = async (s: Served): Promise<void> => {
    for await (const m of s.session.messages()) {
      if (m.type === 'keyframeRequest') s.wantKeyframe = true
      else if (m.type === 'closed') {
        log(`client ${s.peer} left: ${printable(m.reason) || 'no reason'} (code ${m.code}) after ${s.frames} frames`)
        clients.served.delete(s)
        await s.session.close().catch(() => {})
      }
    }
  }

  /** Streams synthetic frames to one client until it leaves or the host stops. */
  const synthetic = async (s: Served): Promise<void> => {
    // As an encoder would: frames sized for the session's target bitrate
    // (which follows the path), never above --bitrate-mbps.
    const sizes = new FrameSizes(bitrate * 1e6, fps)
    const t0 = performance.now()
    for (let i = 0; !stopping && clients.served.has(s); i++) {
      await sleepUntil(t0 + (i * 1000) / fps)
      if (abr) sizes.setBitrate(Math.min(bitrate * 1e6, s.session.targetKbps * 1000))
      const key = sizes.keyframe(i) || s.wantKeyframe
      s.wantKeyframe = false
      const size = key && !sizes.keyframe(i) ? sizes.keyframeSize() : sizes.size(i)
      try {
        await s.session.submitFrame(syntheticFrame(i, size), { keyframe: key, pts: nowUs() })
        s.frames++
      } catch {
        clients.served.delete(s)
      }
    }
  }

  const accepting = (async () => {
    for await (const session of h.sessions({
      onError: (e) => log(printable(e.code === 'ERR_PF_UNAUTHORIZED' ? e.message : `a client failed to connect: ${e.message}`)),
    })) {
      const peer = session.peer
      const refuse = stopping
        ? 'host shut down'
        : clients.served.size >= maxClients
          ? `the host is full (${maxClients} clients)`
          : started && !lateJoin
            ? 'the byte stream has already started (the host allows no late joining)'
            : undefined
      if (refuse) {
        log(`client ${peer} turned away: ${refuse}`)
        await session.close(refuse, stopping ? 3 : 4).catch(() => {})
        continue
      }
      const s: Served = { session, peer, frames: 0, wantKeyframe: true }
      clients.add(s)
      log(`client ${peer} connected, granted ${session.grantedBitrateKbps / 1000} Mbit/s`)
      listen(s).catch((e: unknown) => log(`client ${peer}: ${e instanceof Error ? e.message : String(e)}`))
      if (source.kind === 'synthetic') void synthetic(s)
    }
  })().catch((e: unknown) => log(`accepting clients failed: ${e instanceof Error ? e.message : String(e)}`))

  const forever = new Promise<never>(() => {})
  const timeLimit = seconds === undefined ? forever : new Promise<Ending>((r) => setTimeout(() => r('time'), seconds * 1000).unref())
  const signalled = signal.promise.then((): Ending => 'signal')
  let why: Ending = 'failed'
  let failure: unknown
  let undelivered = 0
  try {
    if (source.kind === 'synthetic' || !queue) {
      why = await Promise.race([signalled, timeLimit])
    } else {
      // Wait for the first client before reading: stdin is not consumed for nobody.
      const first = await Promise.race([clients.arrival().then((): Ending | null => null), signalled, timeLimit])
      if (first) why = first
      else {
        started = true
        if (source.kind === 'stdin') void readStream(process.stdin, queue, maxFrame)
        const pumped = pump(queue, clients, bitrate, lateJoin, abr).then((r): Ending => {
          undelivered = r.undelivered
          return r.clientsGone ? 'no clients' : 'end of input'
        })
        why = await Promise.race([pumped, signalled, timeLimit])
      }
    }
  } catch (e) {
    failure = e
  } finally {
    signal.dispose()
    stopPerf()
    udp?.close()
  }
  if (udp) {
    log(
      `${udp.datagrams()} datagrams read, ${udp.idleDropped()} dropped while no client was connected, ` +
        `${udp.oversize()} too large to carry, ${udp.refused()} refused (not from --source-from)`,
    )
    const behind = (queue?.dropped ?? 0) + udp.backlogDropped()
    if (behind > 0) log(`dropped ${behind} bundles: the clients did not keep up with the udp source`)
  }
  if (why === 'no clients') log('every client left and the byte stream allows no late joining: the rest of the input is not read')
  else if (undelivered > 0) log(`${undelivered} frames of input were not delivered: no client was connected`)
  log(why === 'end of input' ? 'end of input: finishing delivery' : `stopping (${failure ? 'failed' : why})`)
  // A planned end (input exhausted, or a synthetic stream's --seconds) is an end of stream;
  // anything else cuts the stream short and says so.
  const clean = why === 'end of input' || (why === 'time' && source.kind === 'synthetic')
  stopping = true
  await Promise.all(
    [...clients.served].map(async (s) => {
      clients.served.delete(s)
      const reason = clean ? `end of stream (${s.frames} frames)` : `host shut down (${s.frames} frames)`
      await s.session.close(reason, clean ? 0 : 3).catch(() => {})
    }),
  )
  await h.close('host shut down')
  await page?.close()
  await accepting
  for (const s of clients.everyone) {
    // Every counter of the client's data session (stats() outlives close()).
    if (f.bool('json')) process.stdout.write(`${JSON.stringify({ peer: s.peer, framesSent: s.frames, stats: s.session.stats() })}\n`)
    else {
      const st = s.session.stats()
      log(`client ${s.peer}: ${s.frames} frames sent${abr && st.targetKbps > 0 ? `; at the end ${rateLine(st)}; ${rateDetail(st)}` : ''}`)
    }
  }
  if (udp && f.bool('json')) {
    const udpSource = {
      address: udp.address,
      datagrams: udp.datagrams(),
      idleDropped: udp.idleDropped(),
      oversize: udp.oversize(),
      refused: udp.refused(),
      backlogDropped: (queue?.dropped ?? 0) + udp.backlogDropped(),
    }
    process.stdout.write(`${JSON.stringify({ udpSource })}\n`)
  }
  if (source.kind === 'stdin' && why !== 'end of input') process.stdin.destroy()
  if (failure) throw failure
  return 0
}

/**
 * `--web`: serves the page that plays the stream, and prints where it is. The
 * page opens `https://IP:PORT/punktfunk` on the host's own port, pinning the
 * host's web certificate; a host listening on every address is reached at
 * the page's own address.
 */
async function servePage(h: Host, f: Flags): Promise<WebPage> {
  const pageBind = f.str('web-bind') ?? '127.0.0.1'
  if (!isIP(pageBind)) throw new UsageError(`--web-bind takes an IP address, got ${JSON.stringify(pageBind)}`)
  const [ip, port] = splitAddress(h.address)
  const unspecified = ip === '0.0.0.0' || ip === '::'
  const hostIp = unspecified ? pageBind === '0.0.0.0' || pageBind === '::' ? '127.0.0.1' : pageBind : ip
  const wt = `https://${isIP(hostIp) === 6 ? `[${hostIp}]` : hostIp}:${port}/punktfunk`
  const config = (): { url: string; certificateHash: string } => {
    const certificateHash = h.webCertificateHash
    if (!certificateHash) throw new Error('the host does not serve browsers')
    return { url: wt, certificateHash }
  }
  const page = await startWebPage({ bind: pageBind, port: f.num('web-port', 8080), config })
  const c = config()
  log(`web: ${page.url}#url=${encodeURIComponent(c.url)}&hash=${c.certificateHash}`)
  return page
}

/** `IP:PORT` or `[IP]:PORT` as its parts. */
function splitAddress(a: string): [string, number] {
  const i = a.lastIndexOf(':')
  return [a.slice(0, i).replace(/^\[|\]$/g, ''), Number(a.slice(i + 1))]
}

/**
 * Sends queued source frames to every connected client, at most `rateMbps` on
 * average when set. With no client connected it waits for one (when late
 * joining is allowed) or gives up; frames left when the input ends with nobody
 * there are counted as undelivered.
 */
async function pump(
  queue: FrameQueue,
  clients: Clients,
  rateMbps: number,
  lateJoin: boolean,
  abr: boolean,
): Promise<{ undelivered: number; clientsGone: boolean }> {
  const t0 = performance.now()
  let bytes = 0
  // A byte stream or datagrams cannot lower their rate: the sessions pace
  // them at the path's rate, and the host says once when the source is faster.
  const outrun = new OutrunCheck()
  for (;;) {
    const fr = await queue.next()
    if (!fr) return { undelivered: 0, clientsGone: false }
    if (clients.served.size === 0) {
      if (!lateJoin) return { undelivered: 1 + queue.length, clientsGone: true }
      const came = await Promise.race([clients.arrival().then(() => true), queue.ended().then(() => false)])
      if (!came && clients.served.size === 0) return { undelivered: 1 + queue.length, clientsGone: false }
    }
    if (rateMbps > 0) await sleepUntil(t0 + (bytes * 8) / (rateMbps * 1e3))
    bytes += fr.data.length
    if (abr) outrun.add(fr.data.length, clients)
    const pts = nowUs()
    await Promise.all(
      [...clients.served].map(async (s) => {
        const keyframe = s.wantKeyframe
        s.wantKeyframe = false
        try {
          await s.session.submitFrame(fr.data, { pts, keyframe })
          s.frames++
        } catch {
          clients.served.delete(s)
        }
      }),
    )
  }
}

/**
 * Watches a source that cannot follow the target bitrate: over windows of two
 * seconds, compares what it produced with the slowest session's target, and
 * says once, with figures, when the source outruns the path by more than 10 %.
 */
class OutrunCheck {
  #windowStart = performance.now()
  #bytes = 0
  #said = false

  add(bytes: number, clients: Clients): void {
    if (this.#said) return
    this.#bytes += bytes
    const now = performance.now()
    const secs = (now - this.#windowStart) / 1000
    if (secs < 2) return
    const sourceMbps = (this.#bytes * 8) / secs / 1e6
    this.#windowStart = now
    this.#bytes = 0
    let slowest: Served | undefined
    for (const s of clients.served) if (!slowest || s.session.targetKbps < slowest.session.targetKbps) slowest = s
    if (!slowest) return
    const pathMbps = slowest.session.targetKbps / 1000
    if (pathMbps > 0 && sourceMbps > pathMbps * 1.1) {
      this.#said = true
      log(
        `the source sends ${sourceMbps.toFixed(1)} Mbit/s but the path to ${slowest.peer} carries about ${pathMbps.toFixed(1)} Mbit/s ` +
          `(${Math.round((sourceMbps / pathMbps - 1) * 100)} % more): frames are paced at the path's rate and wait; ` +
          'lower the source rate, or expect its buffer to fill and drop',
      )
    }
  }
}
