/**
 * The demo page `punktfunk host --web` serves: connects, shows live counters
 * and the device fingerprint, and decodes an H.264 Annex B stream onto a
 * canvas with WebCodecs.
 *
 * The session comes from the fragment (`#url=…&hash=…`) or else from
 * `/config.json`. Frames from `punktfunk host` carry one leading tag byte
 * (docs/PROTOCOL.md §11): 0x01 a piece of a byte stream, 0x02 bundled
 * datagrams, 0x03 a synthetic frame; the page reads the stream they carry
 * (the bytes, the datagrams one after another, nothing for synthetic frames).
 * A session whose first frame has no such tag is read as raw bytes.
 *
 * For tests it publishes `window.punktfunkStats` (a plain object, updated
 * live), `window.punktfunkSendInput(events)` and
 * `window.punktfunkRequestKeyframe(index)`; with `?sha256=1` it keeps the
 * stream's bytes and sets `punktfunkStats.sha256` when the session ends.
 */
import { AnnexBSplitter, codecString, connect, deviceFingerprint, isAnnexB, isPunktfunkError, type AccessUnit, type CloseInfo, type InputEvent, type WebClient } from './index.js'

/** What the page publishes as `window.punktfunkStats`. */
export interface PageStats {
  /** Frames delivered. */
  framesReceived: number
  /** Frames reported lost. */
  framesLost: number
  /** Pictures the decoder put out. */
  framesDecoded: number
  /** Frame bytes delivered. */
  bytes: number
  /** Bytes of the stream the frames carry (what `sha256` covers and the decoder reads). */
  streamBytes: number
  /** Delivery rate over the last second, Mbit/s. */
  mbps: number
  /** Host submit → page delivery, median of recent frames, ms (when pts is epoch µs). */
  latencyMsP50: number | null
  /** The same, 99th percentile. */
  latencyMsP99: number | null
  /** This page's device fingerprint. */
  deviceFingerprint: string | null
  /** A session is (or was) open. */
  connected: boolean
  /** How the session ended (the host's code and reason), or why it never opened (code -1). */
  closed: CloseInfo | null
  /** Everything that arrived is handed out and decoded. */
  done: boolean
  /** With `?sha256=1`: SHA-256 of the stream the frames carried, hex, once done. */
  sha256: string | null
  /** The last error, if any. */
  error: string | null
  /** Decoder errors (decoding resumes at the next keyframe). */
  decodeErrors: number
  /** The first runs of lost frames, `[firstIndex, count]`. */
  lostRuns: Array<[number, number]>
  /** When the first frame arrived, ms since the epoch. */
  firstFrameAt: number | null
  /** When the latest frame arrived, ms since the epoch. */
  lastFrameAt: number | null
}

declare global {
  interface Window {
    /** Live counters of the demo page. */
    punktfunkStats: PageStats
    /** Sends input events to the host, in order. */
    punktfunkSendInput: (events: InputEvent[]) => void
    /** Asks the host for a keyframe. */
    punktfunkRequestKeyframe: (firstLost: number) => void
  }
}

const stats: PageStats = {
  framesReceived: 0,
  framesLost: 0,
  framesDecoded: 0,
  bytes: 0,
  streamBytes: 0,
  mbps: 0,
  latencyMsP50: null,
  latencyMsP99: null,
  deviceFingerprint: null,
  connected: false,
  closed: null,
  done: false,
  sha256: null,
  error: null,
  decodeErrors: 0,
  lostRuns: [],
  firstFrameAt: null,
  lastFrameAt: null,
}
window.punktfunkStats = stats

const $ = (id: string): HTMLElement => document.getElementById(id) ?? document.body

/** Recent latency samples, ms. */
const latencies = new Float64Array(4096)
let latencyCount = 0

function percentile(sorted: Float64Array, p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((sorted.length * p) / 100))]!
}

function render(status: string): void {
  const n = Math.min(latencyCount, latencies.length)
  if (n > 0) {
    const sorted = latencies.slice(0, n).sort()
    stats.latencyMsP50 = percentile(sorted, 50)
    stats.latencyMsP99 = percentile(sorted, 99)
  }
  const ms = (v: number | null): string => (v === null ? '–' : v.toFixed(1))
  $('status').textContent = status
  $('frames').textContent = String(stats.framesReceived)
  $('rate').textContent = stats.mbps.toFixed(1)
  $('lost').textContent = String(stats.framesLost)
  $('latency').textContent = `${ms(stats.latencyMsP50)} / ${ms(stats.latencyMsP99)}`
  $('decoded').textContent = String(stats.framesDecoded)
  $('fingerprint').textContent = stats.deviceFingerprint ?? '–'
}

/** WebCodecs decoding of an Annex B stream onto the canvas. */
class Video {
  readonly #split = new AnnexBSplitter()
  readonly #canvas = $('video') as HTMLCanvasElement
  readonly #ctx = this.#canvas.getContext('2d')
  #decoder: VideoDecoder | undefined
  #timestamp = 0
  /** After a gap or a decoder error, decoding resumes at the next keyframe. */
  #awaitKey = true

  push(data: Uint8Array): void {
    for (const au of this.#split.push(data)) this.#decode(au)
  }

  /** Frames were lost: the access unit being gathered is incomplete, and later ones refer to what is missing. */
  gap(): void {
    this.#split.reset()
    this.#awaitKey = true
  }

  /** The stream ended: decodes the last access unit if the end was clean, then drains the decoder. */
  async end(clean: boolean): Promise<void> {
    const last = clean ? this.#split.flush() : undefined
    if (last) this.#decode(last)
    if (this.#decoder?.state === 'configured') await this.#decoder.flush()
  }

  #decode(au: AccessUnit): void {
    if (this.#awaitKey) {
      // Decoding (re)starts at a keyframe, carrying its sequence parameter set when there is no decoder yet.
      if (!au.keyframe || (!this.#decoder && !au.sps)) return
      this.#awaitKey = false
    }
    if (!this.#decoder) {
      if (!au.sps) return
      const decoder: VideoDecoder = new VideoDecoder({
        output: (frame) => {
          if (this.#canvas.width !== frame.displayWidth || this.#canvas.height !== frame.displayHeight) {
            this.#canvas.width = frame.displayWidth
            this.#canvas.height = frame.displayHeight
          }
          this.#ctx?.drawImage(frame, 0, 0)
          frame.close()
          stats.framesDecoded++
        },
        error: (e) => {
          stats.decodeErrors++
          stats.error = `decoder: ${e.message}`
          if (this.#decoder === decoder) {
            this.#decoder = undefined
            this.#awaitKey = true
          }
        },
      })
      decoder.configure({ codec: codecString(au.sps), optimizeForLatency: true })
      this.#decoder = decoder
    }
    if (this.#decoder.state !== 'configured') return
    // Timestamps only order the pictures here: one per access unit.
    this.#decoder.decode(new EncodedVideoChunk({ type: au.keyframe ? 'key' : 'delta', timestamp: this.#timestamp++, data: au.data }))
  }
}

/** How frames carry the stream: tagged by `punktfunk host`, or raw. */
type Carriage = 'tagged' | 'raw'

const TAG_BYTES = 0x01
const TAG_DATAGRAMS = 0x02
const TAG_SYNTHETIC = 0x03

/** The stream bytes a frame carries. */
function streamOf(frame: Uint8Array, carriage: Carriage): Uint8Array[] {
  if (carriage === 'raw') return [frame]
  switch (frame[0]) {
    case TAG_BYTES:
      return [frame.subarray(1)]
    case TAG_DATAGRAMS: {
      // u16 big-endian length ‖ bytes, repeated.
      const out: Uint8Array[] = []
      for (let at = 1; at + 2 <= frame.length; ) {
        const len = (frame[at]! << 8) | frame[at + 1]!
        out.push(frame.subarray(at + 2, Math.min(frame.length, at + 2 + len)))
        at += 2 + len
      }
      return out
    }
    default:
      return []
  }
}

async function session(): Promise<{ url: string; hash: string }> {
  const fragment = new URLSearchParams(location.hash.slice(1))
  const url = fragment.get('url')
  const hash = fragment.get('hash')
  if (url && hash) return { url, hash }
  const r = await fetch('/config.json', { cache: 'no-store' })
  if (!r.ok) throw new Error(`/config.json: HTTP ${r.status}`)
  const c = (await r.json()) as { url?: unknown; certificateHash?: unknown }
  if (typeof c.url !== 'string' || typeof c.certificateHash !== 'string') throw new Error('/config.json lacks url or certificateHash')
  return { url: c.url, hash: c.certificateHash }
}

async function hex(data: Uint8Array<ArrayBuffer>): Promise<string> {
  const d = new Uint8Array(await crypto.subtle.digest('SHA-256', data))
  return Array.from(d, (b) => b.toString(16).padStart(2, '0')).join('')
}

async function main(): Promise<void> {
  if (!window.isSecureContext || typeof WebTransport === 'undefined') {
    throw new Error('this page needs WebTransport in a secure context: open it on localhost or over https')
  }
  const keep = new URLSearchParams(location.search).get('sha256') === '1'
  stats.deviceFingerprint = await deviceFingerprint()
  render('connecting')
  const { url, hash } = await session()
  let client: WebClient | undefined
  try {
    client = await connect(url, {
      certificateHash: hash,
      onLost: (lost) => {
        stats.framesLost += lost.count
        if (stats.lostRuns.length < 20) stats.lostRuns.push([lost.firstIndex, lost.count])
        // Losses reported as the session ends need no keyframe.
        if (client && !stats.closed) client.requestKeyframe(lost.firstIndex)
      },
    })
  } catch (e) {
    // The host's close, when it refused the session; -1 when no session opened.
    const cause: unknown = isPunktfunkError(e) ? e.cause : undefined
    const info = cause as Partial<CloseInfo> | undefined
    const closed = !(cause instanceof Error) && typeof info?.code === 'number' && typeof info.reason === 'string'
    stats.closed = closed ? { code: info.code!, reason: info.reason! } : { code: -1, reason: e instanceof Error ? e.message : String(e) }
    throw e
  }
  const c = client
  stats.connected = true
  window.punktfunkSendInput = (events) => events.forEach((e) => c.sendInput(e))
  window.punktfunkRequestKeyframe = (n) => c.requestKeyframe(n)
  void c.closed.then((info) => (stats.closed = info))
  render(`connected, session ${c.sessionId.slice(0, 8)}…`)

  const kept: Uint8Array[] = []
  let video: Video | undefined
  let carriage: Carriage | undefined
  let first = true
  let lastBytes = 0
  let lastAt = performance.now()
  const timer = setInterval(() => {
    const now = performance.now()
    stats.mbps = ((stats.bytes - lastBytes) * 8) / ((now - lastAt) * 1000)
    lastBytes = stats.bytes
    lastAt = now
    render(stats.closed ? `closed (${stats.closed.code}${stats.closed.reason ? `: ${stats.closed.reason}` : ''})` : 'streaming')
  }, 500)

  for (;;) {
    const f = await c.nextEvent()
    if (f === null) break
    if (f.type === 'lost') {
      video?.gap()
      continue
    }
    stats.framesReceived++
    stats.bytes += f.data.length
    stats.firstFrameAt ??= f.receivedAt
    stats.lastFrameAt = f.receivedAt
    // A pts within an hour of now is taken for microseconds since the epoch.
    const latency = f.receivedAt - f.pts / 1000
    if (Math.abs(latency) < 3_600_000) latencies[latencyCount++ % latencies.length] = latency
    carriage ??= f.data[0] === TAG_BYTES || f.data[0] === TAG_DATAGRAMS || f.data[0] === TAG_SYNTHETIC ? 'tagged' : 'raw'
    for (const piece of streamOf(f.data, carriage)) {
      if (piece.length === 0) continue
      stats.streamBytes += piece.length
      if (keep) kept.push(piece)
      if (first) {
        first = false
        if (isAnnexB(piece)) video = new Video()
      }
      video?.push(piece)
    }
  }
  const info = await c.closed
  stats.closed = info
  await video?.end(info.code === 0).catch((e: unknown) => (stats.error = `decoder: ${String(e)}`))
  if (keep) {
    const all = new Uint8Array(kept.reduce((n, b) => n + b.length, 0))
    let at = 0
    for (const b of kept) {
      all.set(b, at)
      at += b.length
    }
    stats.sha256 = await hex(all)
  }
  clearInterval(timer)
  stats.done = true
  render(`done: closed (${info.code}${info.reason ? `: ${info.reason}` : ''})`)
}

main().catch((e: unknown) => {
  stats.error = e instanceof Error ? e.message : String(e)
  stats.done = true
  render(`failed: ${stats.error}`)
})
