/** `punktfunk connect`: receives a stream and writes it out byte-exact. */
import { createWriteStream } from 'node:fs'
import { once } from 'node:events'
import { isIPv6 } from 'node:net'

import { native } from '../native'
import type { Frame } from '../session'
import { udpTarget, UsageError, type CommandSpec, type Flags } from './args'
import { bufferAdvice, interrupted, printable } from './common'
import { connectClient, targetOf, TRUST_FLAGS } from './misc'
import { dropReasons, mbps, perfReporter, printSummary, round } from './report'
import { syntheticIntact, TAG_BYTES, TAG_DATAGRAMS, TAG_SYNTHETIC, unbundle } from './stream'

export const connectSpec: CommandSpec = {
  name: 'connect',
  summary: 'Receives a stream from a host and writes it out byte-exact.',
  positionals: ['HOST:PORT'],
  flags: {
    ...TRUST_FLAGS,
    output: { kind: 'string', value: 'OUT', help: 'null (default: count only), - for stdout, a FILE, or udp://HOST:PORT' },
    seconds: { kind: 'number', value: 'N', help: 'leave after N seconds (default: until the host ends the stream)', min: 0.1, max: 31_536_000 },
    'datagram-bytes': { kind: 'number', value: 'B', help: 'udp output of a byte stream: datagram size (default 1316)', min: 1, max: 65507, integer: true },
    raw: { kind: 'boolean', help: 'write frames exactly as received (for hosts that do not tag frames the way punktfunk host does)' },
    json: { kind: 'boolean', help: 'print the summary as one JSON object' },
  },
  notes: [
    'Exits 0 when the host ends the stream (or after --seconds), 1 on a failure or if a frame failed its check.',
    'Datagrams from a udp:// host source keep their boundaries on udp:// output; to a file they are concatenated.',
  ],
}

/** Where received bytes go. */
interface Output {
  /** Writes a byte-stream piece. */
  bytes(b: Buffer): Promise<void>
  /** Writes one datagram (a boundary worth keeping). */
  datagram(d: Buffer): Promise<void>
  /** Sends a whole datagram bundle as its datagrams, where the output keeps boundaries; returns how many. */
  bundle?: (frame: Buffer) => number
  /** Flushes and closes. */
  close(): Promise<void>
  /** Gives up at once: a write waiting for a stalled reader returns. */
  abort(): void
}

function nullOutput(): Output {
  return { bytes: async () => {}, datagram: async () => {}, close: async () => {}, abort: () => {} }
}

function streamOutput(w: NodeJS.WritableStream & { destroy?: () => void }, closeIt: boolean): Output {
  let failed: Error | undefined
  let aborted = false
  let wake: (() => void) | undefined
  w.on('error', (e: Error) => {
    failed = e
    wake?.()
  })
  const write = async (b: Buffer): Promise<void> => {
    if (failed) throw failed
    if (aborted) return
    if (!w.write(b)) {
      await new Promise<void>((r) => {
        wake = r
        w.once('drain', r)
      })
      wake = undefined
      if (failed) throw failed
    }
  }
  return {
    bytes: write,
    datagram: write,
    close: async () => {
      if (failed) throw failed
      if (closeIt && !aborted) {
        w.end()
        await once(w, 'close')
      }
    },
    abort: () => {
      aborted = true
      wake?.()
      // A reader that stopped reading must not keep the process alive.
      w.destroy?.()
    },
  }
}

function udpOutput(target: { host: string; port: number }, datagramBytes: number): Output {
  // Not connected: a receiver that is not there yet (or restarts) costs the
  // datagrams sent meanwhile, not the whole stream. Bundles go out in
  // batched system calls from native code.
  const addr = `${isIPv6(target.host) ? `[${target.host}]` : target.host}:${target.port}`
  const sink = native().udpSinkOpen(addr)
  let closed = false
  return {
    bytes: async (b) => {
      if (!closed) sink.sendBytes(b, datagramBytes)
    },
    datagram: async (d) => {
      if (!closed) sink.sendBytes(d, Math.max(1, d.length))
    },
    bundle: (frame) => (closed ? 0 : sink.sendBundle(frame)),
    close: async () => {
      closed = true
      sink.close()
    },
    abort: () => {
      closed = true
      sink.close()
    },
  }
}

/** What `--output` names, checked before anything is opened. */
type OutputTarget = { kind: 'null' } | { kind: 'stdout' } | { kind: 'udp'; host: string; port: number } | { kind: 'file'; path: string }

function outputTargetOf(f: Flags): OutputTarget {
  const out = f.str('output', 'null')
  if (out === 'null') return { kind: 'null' }
  if (out === '-') return { kind: 'stdout' }
  if (out.startsWith('udp://')) {
    const t = udpTarget(out, '--output')
    if (t.port === 0) throw new UsageError('--output udp:// needs a port above 0')
    return { kind: 'udp', ...t }
  }
  return { kind: 'file', path: out }
}

async function openOutput(t: OutputTarget, datagramBytes: number): Promise<Output> {
  switch (t.kind) {
    case 'null':
      return nullOutput()
    case 'stdout':
      return streamOutput(process.stdout, false)
    case 'udp':
      return udpOutput(t, datagramBytes)
    case 'file': {
      const file = createWriteStream(t.path)
      await Promise.race([once(file, 'open'), once(file, 'error').then(([e]) => Promise.reject(e as Error))])
      return streamOutput(file, true)
    }
  }
}

/** What `end of stream (N frames)` says about the stream's length. */
function announcedFrames(reason: string | undefined): number | undefined {
  const m = /^end of stream \((\d+) frames\)$/.exec(reason ?? '')
  return m ? Number(m[1]) : undefined
}

export async function connect(f: Flags): Promise<number> {
  const raw = f.bool('raw')
  const json = f.bool('json')
  const seconds = f.num('seconds')
  // Every flag is checked before a file is truncated or a host is contacted.
  const target = targetOf(f)
  const outTarget = outputTargetOf(f)
  const advice = bufferAdvice()
  if (advice) process.stderr.write(`${advice}\n`)
  const client = await connectClient(target)
  let output: Output
  try {
    output = await openOutput(outTarget, f.num('datagram-bytes', 1316))
  } catch (e) {
    await client.close('cannot open the output', 4).catch(() => {})
    throw e
  }
  if (!json) process.stderr.write(`connected to ${target.address}, fingerprint ${client.fingerprint}\n`)
  const stopPerf = perfReporter('client', () => [[target.address, client.stats()] as const])
  const signal = interrupted()
  let leaving: string | undefined
  const leave = (why: string, code = 0): void => {
    if (leaving) return
    leaving = why
    output.abort()
    client.close(why, code).catch(() => {})
  }
  void signal.promise.then((s) => leave(`interrupted (${s})`))
  const timer = seconds === undefined ? undefined : setTimeout(() => leave('time is up'), seconds * 1000)

  let delivered = 0
  let lost = 0
  let failedCheck = 0
  let written = 0
  let datagrams = 0
  const t0 = performance.now()
  let firstAt: number | undefined
  let lastAt = t0
  const write = async (fr: Frame): Promise<void> => {
    const d = fr.data
    if (raw) {
      await output.bytes(d)
      written += d.length
      return
    }
    switch (d[0]) {
      case TAG_BYTES:
        await output.bytes(d.subarray(1))
        written += d.length - 1
        return
      case TAG_DATAGRAMS: {
        const parts = unbundle(d)
        if (!parts) {
          failedCheck++
          return
        }
        if (output.bundle) output.bundle(d)
        // To a file or stdout the datagrams are concatenated, one write per bundle.
        else if (parts.length > 0) await output.bytes(parts.length === 1 ? (parts[0] as Buffer) : Buffer.concat(parts))
        for (const p of parts) written += p.length
        datagrams += parts.length
        return
      }
      case TAG_SYNTHETIC:
        if (!syntheticIntact(d)) failedCheck++
        await output.bytes(d)
        written += d.length
        return
      default:
        failedCheck++
    }
  }
  let failure: unknown
  try {
    // Writes to a stream or socket may hold a frame's bytes after they return;
    // with nowhere to write, each frame is checked and done with before the
    // next, so the loop can borrow them (no allocation per frame).
    for await (const ev of client.events({ borrow: outTarget.kind === 'null' })) {
      if (leaving) break
      if (ev.type === 'lost') {
        lost += ev.count
        if (!json) process.stderr.write(`lost frames ${ev.firstIndex}…${ev.firstIndex + ev.count - 1}: the output has a gap there\n`)
        continue
      }
      delivered++
      lastAt = performance.now()
      firstAt ??= lastAt
      await write(ev)
    }
  } catch (e) {
    failure = e
    leave('the output failed', 4)
  } finally {
    if (timer) clearTimeout(timer)
    signal.dispose()
    stopPerf()
  }
  // Read before closing: afterwards the session no longer holds the host's reason.
  const reason = client.closeReason
  await client.close(leaving ?? 'closed').catch(() => {})
  if (failure) {
    output.abort()
    throw failure
  }
  await output.close()

  const stats = client.stats()
  const announced = announcedFrames(reason?.reason)
  // Goodput over the time frames were arriving (first to last); when that is
  // too short to measure (one frame, or none), over the whole session, like
  // the wire rate: a rate is never a byte count over a near-zero interval.
  const sessionSecs = Math.max(1e-3, (performance.now() - t0) / 1000)
  const framesSecs = (lastAt - (firstAt ?? lastAt)) / 1000
  const active = framesSecs >= 0.1 ? framesSecs : sessionSecs
  const result = {
    framesDelivered: delivered,
    framesLost: lost,
    framesMissing: announced === undefined ? null : Math.max(0, announced - delivered - lost),
    framesFailedCheck: failedCheck,
    bytesWritten: written,
    datagramsWritten: datagrams,
    goodputMbps: round(mbps(stats.payloadBytesDelivered, active)),
    wireMbps: round(mbps(stats.bytesReceived, sessionSecs)),
    fecRecoveredShards: stats.fecRecoveredShards,
    packetsReceived: stats.packetsReceived,
    packetsRedundant: stats.packetsRedundant,
    seconds: round(active, 3),
    sessionSeconds: round(sessionSecs, 3),
    ended: leaving ?? (reason ? `${printable(reason.reason)} (code ${reason.code})` : 'closed'),
    recvDropped: {
      auth: stats.recvDroppedAuth,
      replay: stats.recvDroppedReplay,
      malformed: stats.recvDroppedMalformed,
      outOfBounds: stats.recvDroppedOutOfBounds,
      stale: stats.recvDroppedStale,
      foreign: stats.recvDroppedForeign,
    },
  }
  // With the stream on stdout, the summary goes to stderr.
  const sink = outTarget.kind === 'stdout' ? process.stderr : process.stdout
  if (json) sink.write(`${JSON.stringify(result)}\n`)
  else {
    printSummary(
      'connect summary',
      [
        ['frames', `${delivered} delivered, ${lost} lost${result.framesMissing ? `, ${result.framesMissing} never seen` : ''}, ${failedCheck} failed the check`],
        ['written', `${written} bytes${datagrams ? ` in ${datagrams} datagrams` : ''}`],
        ['rate', `${result.goodputMbps} Mbit/s goodput, ${result.wireMbps} Mbit/s on the wire over the ${result.sessionSeconds} s session`],
        ['FEC', `${stats.fecRecoveredShards} shards rebuilt`],
        ['dropped on receive', dropReasons(stats)],
        ['ended', result.ended],
      ],
      sink,
    )
  }
  if (failedCheck > 0) return 1
  // The session died rather than being ended (idle timeout, protocol error):
  // codes 0 (end of stream) and 3 (host shut down) are ends the host chose.
  if (!leaving && reason && reason.code !== 0 && reason.code !== 3) return 1
  return 0
}
