/** Where `punktfunk host` gets its frames: stdin, or UDP datagrams. */
import { isIPv6 } from 'node:net'

import { native, type NativeUdpSource } from '../native'
import { bytesFrame } from './stream'

/** A frame from a source, ready to send. */
export interface SourceFrame {
  data: Buffer
}

/**
 * A bounded queue between a source and the sender. `push` waits for room
 * (stdin: back-pressure up to the writer); `offer` drops when full (UDP: the
 * datagrams would be lost in the socket buffer anyway) and counts it.
 */
export class FrameQueue {
  readonly #items: SourceFrame[] = []
  #ended = false
  #error: Error | undefined
  #readers: Array<() => void> = []
  #writers: Array<() => void> = []
  #endedWaiters: Array<() => void> = []
  /** Frames dropped by `offer` because the queue was full. */
  dropped = 0

  constructor(private readonly capacity: number) {}

  #wakeReaders(): void {
    for (const r of this.#readers.splice(0)) r()
  }

  async push(f: SourceFrame): Promise<void> {
    while (this.#items.length >= this.capacity) await new Promise<void>((r) => this.#writers.push(r))
    this.#items.push(f)
    this.#wakeReaders()
  }

  offer(f: SourceFrame): boolean {
    if (this.#items.length >= this.capacity) {
      this.dropped++
      return false
    }
    this.#items.push(f)
    this.#wakeReaders()
    return true
  }

  /** Frames waiting. */
  get length(): number {
    return this.#items.length
  }

  /** No more frames will come (after those queued); with `error`, the source failed. */
  end(error?: Error): void {
    this.#ended = true
    this.#error ??= error
    this.#wakeReaders()
    for (const w of this.#endedWaiters.splice(0)) w()
  }

  /** Resolves once the source has ended (frames may still be queued). */
  ended(): Promise<void> {
    return this.#ended ? Promise.resolve() : new Promise<void>((r) => this.#endedWaiters.push(r))
  }

  /** The next frame; `null` at the end of input. Rejects if the source failed. */
  async next(): Promise<SourceFrame | null> {
    for (;;) {
      const f = this.#items.shift()
      if (f) {
        this.#writers.shift()?.()
        return f
      }
      if (this.#error) throw this.#error
      if (this.#ended) return null
      await new Promise<void>((r) => this.#readers.push(r))
    }
  }
}

/**
 * Reads a byte stream into bytes frames: whatever is readable at once goes
 * out together (at most `maxFrame` bytes per frame), so nothing waits for a
 * bundle to fill.
 */
export async function readStream(input: NodeJS.ReadableStream, queue: FrameQueue, maxFrame: number): Promise<void> {
  const stream = input
  let ended = false
  let failed: Error | undefined
  let wake: (() => void) | undefined
  const poke = (): void => {
    const w = wake
    wake = undefined
    w?.()
  }
  stream.on('readable', poke)
  stream.on('end', () => {
    ended = true
    poke()
  })
  stream.on('error', (e: Error) => {
    failed = e
    poke()
  })
  const limit = maxFrame - 1
  try {
    for (;;) {
      const parts: Buffer[] = []
      let n = 0
      let c: string | Buffer | null
      while (n < limit && (c = stream.read()) !== null) {
        const b = typeof c === 'string' ? Buffer.from(c) : c
        parts.push(b)
        n += b.length
      }
      if (n > 0) {
        const all = parts.length === 1 ? (parts[0] as Buffer) : Buffer.concat(parts, n)
        for (let at = 0; at < all.length; at += limit) await queue.push({ data: bytesFrame(all.subarray(at, at + limit)) })
        continue
      }
      if (failed) throw failed
      if (ended) break
      await new Promise<void>((r) => (wake = r))
    }
    queue.end()
  } catch (e) {
    queue.end(e instanceof Error ? e : new Error(String(e)))
  }
}

/** A UDP source: its address, its counters and a way to stop it. */
export interface UdpSource {
  /** `HOST:PORT` it listens on. */
  address: string
  /** Datagrams received and passed on. */
  datagrams(): number
  /** Datagrams dropped because no client was connected (`accepting` said no). */
  idleDropped(): number
  /** Datagrams too large for a bundle's 16-bit length, dropped. */
  oversize(): number
  /** Bundles dropped because the sender could not keep up. */
  backlogDropped(): number
  /** Datagrams from senders the filter refused (see `listenUdp`'s `allow`). */
  refused(): number
  close(): void
}

/**
 * Listens for datagrams at `host:port` and bundles them into datagram frames,
 * boundaries kept (in native code, on a thread of its own): a bundle goes out
 * `windowMs` after its first datagram, or sooner when the next datagram would
 * take it past `maxFrame` bytes (a single larger datagram goes alone). An
 * empty datagram ends the input. Only senders `allow` names count (`any`,
 * `loopback`, `IP` or `IP:PORT`); the others' datagrams, empty ones included,
 * are dropped and counted. While `accepting()` says no, bundles are dropped
 * and their datagrams counted.
 */
export async function listenUdp(
  host: string,
  port: number,
  allow: string,
  queue: FrameQueue,
  maxFrame: number,
  windowMs: number,
  accepting: () => boolean,
): Promise<UdpSource> {
  const bind = `${isIPv6(host) ? `[${host}]` : host}:${port}`
  let idle = 0
  let passed = 0
  let closed = false
  let src: NativeUdpSource | undefined
  const drain = (): void => {
    if (!src) return
    for (let b = src.poll(); b && !closed; b = src.poll()) {
      if (b.end) {
        queue.end(b.error ? new Error(`reading datagrams on ${bind} failed: ${b.error}`) : undefined)
        return
      }
      if (!b.data) continue
      if (!accepting()) idle += b.datagrams
      else if (queue.offer({ data: b.data })) passed += b.datagrams
    }
  }
  try {
    src = native().udpSourceOpen(bind, allow, maxFrame, windowMs * 1000, drain)
  } catch (e) {
    throw new Error(`cannot read datagrams on ${bind}: ${e instanceof Error ? e.message : String(e)}`)
  }
  const s = src
  return {
    address: s.address(),
    datagrams: () => passed,
    idleDropped: () => idle,
    oversize: () => s.counters().oversize,
    backlogDropped: () => s.counters().backlogDropped,
    refused: () => s.counters().refused,
    close: () => {
      if (closed) return
      closed = true
      s.close()
      queue.end()
    },
  }
}
