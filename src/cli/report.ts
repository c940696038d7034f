/** Live status lines, summaries and the `PUNKTFUNK_PERF` counters of the command line. */
import { rateStateName, type SessionStats } from '../session'

/** The value below which `p` (0…1) of the sorted `samples` lie; 0 for none. */
export function percentile(sorted: ArrayLike<number>, p: number): number {
  if (sorted.length === 0) return 0
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1))
  return sorted[i] as number
}

/** Latency samples, ms; bounded (the newest `limit` are kept). */
export class Latencies {
  #all: number[] = []
  #window: number[] = []

  constructor(private readonly limit = 1_000_000) {}

  add(ms: number): void {
    if (this.#all.length < this.limit) this.#all.push(ms)
    if (this.#window.length < this.limit) this.#window.push(ms)
  }

  /** p50 and p99 of every sample so far. */
  total(): { p50: number; p99: number } {
    return quantiles(this.#all)
  }

  /** p50 and p99 since the last call. */
  takeWindow(): { p50: number; p99: number } {
    const q = quantiles(this.#window)
    this.#window = []
    return q
  }
}

function quantiles(v: number[]): { p50: number; p99: number } {
  const s = Float64Array.from(v).sort()
  return { p50: percentile(s, 0.5), p99: percentile(s, 0.99) }
}

/** Rounds for output: `digits` decimals. */
export function round(v: number, digits = 2): number {
  const f = 10 ** digits
  return Math.round(v * f) / f
}

/** Mbit/s from bytes over seconds. */
export function mbps(bytes: number, seconds: number): number {
  return seconds > 0 ? (bytes * 8) / seconds / 1e6 : 0
}

/**
 * A status line on stderr: rewritten in place on a terminal, a plain line
 * every `plainEveryMs` otherwise (logs, pipes, CI).
 */
export class StatusLine {
  readonly #tty: boolean
  #lastPlain = 0
  #shown = false

  constructor(
    private readonly out: NodeJS.WriteStream = process.stderr,
    private readonly plainEveryMs = 1000,
  ) {
    this.#tty = out.isTTY === true
  }

  /** How often the caller should refresh, ms. */
  get intervalMs(): number {
    return this.#tty ? 250 : this.plainEveryMs
  }

  show(line: string): void {
    if (this.#tty) {
      this.out.write(`\r\x1b[2K${line}`)
      this.#shown = true
    } else {
      const now = Date.now()
      if (now - this.#lastPlain < this.plainEveryMs * 0.8) return
      this.#lastPlain = now
      this.out.write(`${line}\n`)
    }
  }

  /** Ends the in-place line so later output starts on a fresh one. */
  end(): void {
    if (this.#tty && this.#shown) this.out.write('\n')
    this.#shown = false
  }
}

/** Counter differences between two snapshots, per second. */
export function rates(prev: SessionStats, cur: SessionStats, seconds: number): { wireMbps: number; goodputMbps: number } {
  return {
    wireMbps: mbps(Math.max(cur.bytesSent - prev.bytesSent, cur.bytesReceived - prev.bytesReceived), seconds),
    goodputMbps: mbps(cur.payloadBytesDelivered - prev.payloadBytesDelivered, seconds),
  }
}

/** Every receive-drop counter by reason, non-zero ones only. */
export function dropReasons(s: SessionStats): string {
  const reasons: Array<[string, number]> = [
    ['auth', s.recvDroppedAuth],
    ['replay', s.recvDroppedReplay],
    ['malformed', s.recvDroppedMalformed],
    ['bounds', s.recvDroppedOutOfBounds],
    ['stale', s.recvDroppedStale],
    ['foreign', s.recvDroppedForeign],
  ]
  const nz = reasons.filter(([, n]) => n > 0)
  return nz.length ? nz.map(([k, n]) => `${k}=${n}`).join(' ') : 'none'
}

/**
 * With `PUNKTFUNK_PERF=1`, prints `label` wire rates and drop counters of the
 * sessions `stats()` returns (each under a name of its own, such as the peer's
 * address, and with an optional text of its own at the end of its line), every
 * second on stderr. Returns a stop function.
 */
export function perfReporter(label: string, stats: () => ReadonlyArray<readonly [string, SessionStats, string?]>): () => void {
  if (process.env.PUNKTFUNK_PERF !== '1') return () => {}
  const every = Number(process.env.PUNKTFUNK_PERF_MS ?? 1000)
  const intervalMs = Number.isFinite(every) && every >= 50 ? every : 1000
  let prev = new Map<string, SessionStats>()
  let t = performance.now()
  const timer = setInterval(() => {
    const now = performance.now()
    const secs = (now - t) / 1000
    t = now
    const next = new Map<string, SessionStats>()
    stats().forEach(([i, s, extra]) => {
      const p = prev.get(i)
      next.set(i, s)
      const tx = p ? mbps(s.bytesSent - p.bytesSent, secs) : 0
      const rx = p ? mbps(s.bytesReceived - p.bytesReceived, secs) : 0
      const good = p ? mbps(s.payloadBytesDelivered - p.payloadBytesDelivered, secs) : 0
      process.stderr.write(
        `perf ${label}[${i}] tx ${tx.toFixed(1)} Mbit/s rx ${rx.toFixed(1)} Mbit/s goodput ${good.toFixed(1)} Mbit/s ` +
          `packets tx ${s.packetsSent} rx ${s.packetsReceived} send-drops ${s.packetsSendDropped} ` +
          `recv-drops ${dropReasons(s)} fec-recovered ${s.fecRecoveredShards} frames ${s.framesCompleted} frames-lost ${s.framesDropped}` +
          (s.targetKbps > 0 ? ` ${rateLine(s)} ${rateDetail(s)}` : '') +
          (extra ? ` ${extra}` : '') +
          '\n',
      )
    })
    prev = next
  }, intervalMs)
  timer.unref()
  return () => clearInterval(timer)
}

/**
 * A host session's rate control at a glance: path estimate, media target,
 * round trip, queue delay, congestion back-offs and the controller's state
 * (`competing` while it shares the bottleneck with a loss-based flow).
 */
export function rateLine(s: SessionStats): string {
  return (
    `estimate ${(s.estimatedKbps / 1000).toFixed(1)} Mbit/s target ${(s.targetKbps / 1000).toFixed(1)} Mbit/s ` +
    `rtt ${(s.rttUs / 1000).toFixed(1)} ms queue ${(s.queueDelayUs / 1000).toFixed(1)} ms congestion ${s.congestionEvents} ` +
    `state ${rateStateName(s.rateState)}${s.competingFlow ? ' competing' : ''}`
  )
}

/**
 * The rest of a host session's rate control, for `PUNKTFUNK_PERF` and end
 * summaries: pacing and delivery rates and the feedback the controller used,
 * refused, found stale or read as random loss, and how often it learnt its
 * delay base again.
 */
export function rateDetail(s: SessionStats): string {
  return (
    `pacing ${(s.pacingKbps / 1000).toFixed(1)} Mbit/s delivery ${(s.deliveryKbps / 1000).toFixed(1)} Mbit/s ` +
    `feedback ${s.feedbackReports} feedback-dropped ${s.feedbackDropped} stale-reports ${s.staleReports} ` +
    `random-loss-reports ${s.randomLossReports} base-resets ${s.delayBaseResets}`
  )
}

/** Prints `rows` as an aligned two-column list. */
export function printSummary(title: string, rows: Array<[string, string | number]>, out: NodeJS.WritableStream = process.stdout): void {
  const width = Math.max(...rows.map(([k]) => k.length))
  out.write(`${title}\n`)
  for (const [k, v] of rows) out.write(`  ${k.padEnd(width)}  ${v}\n`)
}
