/**
 * Browsers, end to end: a headless Chromium (Debian's, never a downloaded
 * one) opens the demo page of `punktfunk host --web` and streams over
 * WebTransport (docs/WEB.md).
 *
 *   1. bytes      20 MiB of random bytes through `--source -` arrive
 *                 byte-exact: the page's SHA-256 equals the input's.
 *   2. video      6 s of 720p60 H.264 (ffmpeg, libx264) through `--source -`:
 *                 the page decodes (WebCodecs) as many pictures as ffprobe counts.
 *   3. allow      a host with `--allow` of another device refuses the page
 *                 (close code 5, no frames); with the page's own fingerprint
 *                 (learnt from a host without a list, kept in IndexedDB) it
 *                 admits it.
 *   4. input      an in-process `Host` (`web: true`) with the page served by
 *                 `startWebPage`: 100 key events and a keyframe request from
 *                 the page arrive in order as the session's messages; the
 *                 host's close reaches the page with its code and reason.
 *   5. screenshot the demo page decoding (test 2), as a PNG.
 *
 * Then it measures, into one tab: the received rate and frames lost at
 * synthetic `--bitrate-mbps` 100, 200, 400 and 800 (`--abr off`, 4 s each),
 * and the frame latency p50/p99 at 50 Mbit/s (host submit → page delivery;
 * the synthetic source stamps pts with epoch µs).
 *
 *   node --import tsx scripts/web-test.ts [--docs]
 *
 * `PF_WEB_ONLY=bytes,video` runs only the tests named. `--docs` writes the screenshot to docs/web/demo.png and the figures to
 * docs/web/figures.json; otherwise to a fresh directory under the system's
 * temporary directory (the figures printed instead). Needs the
 * built package (npm run build). Installs Debian's `chromium` and `ffmpeg`
 * with apt-get when missing and running as root; skips (exit 0) otherwise.
 */
// playwright-core's declarations name DOM types (HTMLElement, Node…).
/// <reference lib="dom" />
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { createHash, randomBytes } from 'node:crypto'
import { createSocket } from 'node:dgram'
import { existsSync, mkdirSync, mkdtempSync, openSync, closeSync, rmSync, writeFileSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import path from 'node:path'

import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core'

const ROOT = path.resolve(__dirname, '..')
const CLI = path.join(ROOT, 'bin', 'punktfunk.js')
const CHROMIUM = '/usr/bin/chromium'
const DOCS = process.argv.includes('--docs')
const SCRATCH = mkdtempSync(path.join(tmpdir(), 'pf-web-'))
const OUT = DOCS ? path.join(ROOT, 'docs', 'web') : mkdtempSync(path.join(tmpdir(), 'pf-web-out-'))
/** `PF_WEB_ONLY=video,screenshot` runs only the tests whose names contain one of these words. */
const ONLY = process.env.PF_WEB_ONLY?.split(',').filter(Boolean)
const CHROMIUM_ARGS = ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync']

/** `window.punktfunkStats` of the demo page (src/web/page.ts). */
interface PageStats {
  framesReceived: number
  framesLost: number
  framesDecoded: number
  bytes: number
  streamBytes: number
  mbps: number
  latencyMsP50: number | null
  latencyMsP99: number | null
  deviceFingerprint: string | null
  connected: boolean
  closed: { code: number; reason: string } | null
  done: boolean
  sha256: string | null
  error: string | null
  firstFrameAt: number | null
  lastFrameAt: number | null
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))
const sha256 = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex')
const log = (line: string): void => console.log(`web-test: ${line}`)

function skip(why: string): never {
  console.log(`SKIP web-test: ${why}`)
  process.exit(0)
}

function has(cmd: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }).status === 0
}

/** Chromium (required) and ffmpeg (tests 2 and 5), from apt-get when missing and root. */
function preflight(): { ffmpeg: boolean } {
  const root = process.getuid?.() === 0
  const missing = [existsSync(CHROMIUM) ? undefined : 'chromium', has('ffmpeg') && has('ffprobe') ? undefined : 'ffmpeg'].filter(
    (x): x is string => x !== undefined,
  )
  if (missing.length > 0 && root && has('apt-get')) {
    log(`installing ${missing.join(' ')} with apt-get`)
    const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' }
    spawnSync('apt-get', ['update', '-qq'], { stdio: 'inherit', env })
    spawnSync('apt-get', ['install', '-y', '-qq', '--no-install-recommends', ...missing], { stdio: 'inherit', env })
  }
  if (!existsSync(CHROMIUM)) skip(`${CHROMIUM} is missing (install Debian's chromium package, or run as root to have it installed)`)
  const ffmpeg = has('ffmpeg') && has('ffprobe')
  if (!ffmpeg) log('ffmpeg is missing: the video and screenshot tests are skipped')
  if (!existsSync(path.join(ROOT, 'dist', 'web', 'web', 'page.js')) || !existsSync(path.join(ROOT, 'dist', 'cli', 'main.js'))) {
    throw new Error('the package is not built: run npm run build')
  }
  const help = spawnSync(process.execPath, [CLI, 'host', '--help'], { encoding: 'utf8' })
  if (!`${help.stdout}${help.stderr}`.includes('--web')) throw new Error("'punktfunk host --help' lists no --web flag")
  return { ffmpeg }
}

async function freeTcpPort(): Promise<number> {
  const s = createServer()
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r))
  const port = (s.address() as { port: number }).port
  await new Promise<void>((r) => s.close(() => r()))
  return port
}

async function freeUdpPort(): Promise<number> {
  const s = createSocket('udp4')
  await new Promise<void>((r) => s.bind(0, '127.0.0.1', r))
  const port = s.address().port
  await new Promise<void>((r) => s.close(r))
  return port
}

/** Rejects if `p` has not settled within `ms`. */
async function within<T>(ms: number, what: string, p: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  try {
    return await Promise.race([
      p,
      new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what}: no result within ${ms} ms`)), ms))),
    ])
  } finally {
    clearTimeout(timer)
  }
}

/** A `punktfunk host --web` child process. */
class HostProcess {
  stderr = ''
  readonly exited: Promise<number | null>
  private constructor(readonly proc: ChildProcess) {
    proc.stderr?.setEncoding('utf8')
    proc.stderr?.on('data', (d: string) => (this.stderr += d))
    proc.stdout?.resume()
    this.exited = new Promise((r) => proc.once('exit', (code) => r(code)))
  }

  /** Starts a host on the given ports; `stdin` a file to feed `--source -`, or a buffer. */
  static start(ports: { web: number; quic: number }, identity: string, extra: string[], stdin?: { file: string } | Buffer): HostProcess {
    const args = [CLI, 'host', '--web', '--web-port', String(ports.web), '--port', String(ports.quic), '--identity', identity, ...extra]
    const fd = stdin !== undefined && 'file' in stdin ? openSync(stdin.file, 'r') : undefined
    const proc = spawn(process.execPath, args, { cwd: ROOT, stdio: [fd ?? 'pipe', 'pipe', 'pipe'] })
    if (fd !== undefined) closeSync(fd)
    const h = new HostProcess(proc)
    if (stdin instanceof Buffer) {
      proc.stdin?.on('error', () => undefined)
      proc.stdin?.end(stdin)
    } else if (proc.stdin) proc.stdin.end()
    return h
  }

  /** The page address the host prints, on 127.0.0.1 (a secure context for WebTransport), and its fingerprint. */
  async ready(timeoutMs = 20_000): Promise<{ page: URL; fingerprint: string }> {
    const deadline = Date.now() + timeoutMs
    for (;;) {
      const web = /web:.*?(http:\/\/\S+)/.exec(this.stderr)
      const listening = /listening on \S+ fingerprint ([0-9a-f]{64})/.exec(this.stderr)
      if (web && listening) return { page: onLoopback(new URL(web[1]!)), fingerprint: listening[1]! }
      if (this.proc.exitCode !== null) throw new Error(`the host exited (${this.proc.exitCode}) before it was ready:\n${this.stderr}`)
      if (Date.now() > deadline) throw new Error(`the host printed no 'web: http://…' and 'listening on …' lines within ${timeoutMs} ms:\n${this.stderr}`)
      await sleep(50)
    }
  }

  /** Stops the host (SIGINT, then SIGKILL after 5 s) and waits for it. */
  async stop(): Promise<void> {
    if (this.proc.exitCode === null && this.proc.signalCode === null) {
      this.proc.kill('SIGINT')
      const t = setTimeout(() => this.proc.kill('SIGKILL'), 5_000)
      await this.exited
      clearTimeout(t)
    }
  }
}

/** The page URL with the page and the WebTransport URL in its fragment moved to 127.0.0.1 if the host printed a wildcard. */
function onLoopback(u: URL): URL {
  const wildcard = (h: string): boolean => h === '0.0.0.0' || h === '[::]' || h === '::'
  if (wildcard(u.hostname)) u.hostname = '127.0.0.1'
  const frag = new URLSearchParams(u.hash.slice(1))
  const wt = frag.get('url')
  if (wt) {
    const w = new URL(wt)
    if (wildcard(w.hostname)) {
      w.hostname = '127.0.0.1'
      frag.set('url', w.toString())
      u.hash = frag.toString()
    }
  }
  return u
}

async function stats(page: Page): Promise<PageStats | null> {
  return page.evaluate<PageStats | null>('window.punktfunkStats ?? null')
}

/** Polls the page's stats until `pred` holds; fails with the last stats and the page's console. */
async function waitStats(page: Page, what: string, ms: number, pred: (s: PageStats) => boolean): Promise<PageStats> {
  const deadline = Date.now() + ms
  let last: PageStats | null = null
  for (;;) {
    last = await stats(page)
    if (last && pred(last)) return last
    if (Date.now() > deadline) {
      throw new Error(`${what}: not within ${ms} ms; page stats ${JSON.stringify(last)}\npage console:\n${consoleOf(page)}`)
    }
    await sleep(100)
  }
}

const consoles = new WeakMap<Page, string[]>()
const consoleOf = (p: Page): string => (consoles.get(p) ?? []).slice(-20).join('\n')

async function openPage(ctx: BrowserContext, url: URL | string): Promise<Page> {
  const page = await ctx.newPage()
  const lines: string[] = []
  consoles.set(page, lines)
  page.on('console', (m) => lines.push(`${m.type()}: ${m.text()}`))
  page.on('pageerror', (e) => lines.push(`pageerror: ${e.message}`))
  await page.goto(url.toString())
  return page
}

const mbitPerS = (s: PageStats): number =>
  s.firstFrameAt !== null && s.lastFrameAt !== null && s.lastFrameAt > s.firstFrameAt ? (s.bytes * 8) / ((s.lastFrameAt - s.firstFrameAt) * 1000) : 0

interface Env {
  browser: Browser
  ctx: BrowserContext
  ports: { web: number; quic: number }
  identity: string
  ffmpeg: boolean
  figures: Record<string, unknown>
  screenshot?: Buffer
}

async function testBytes(env: Env): Promise<void> {
  const input = randomBytes(20 << 20)
  const want = sha256(input)
  const host = HostProcess.start(env.ports, env.identity, ['--source', '-'], input)
  try {
    const { page: url } = await host.ready()
    url.search = '?sha256=1'
    const page = await openPage(env.ctx, url)
    const s = await waitStats(page, 'the 20 MiB stream to end', 90_000, (x) => x.done)
    if (s.error) throw new Error(`page error: ${s.error}`)
    if (s.closed?.code !== 0) throw new Error(`the session closed with ${JSON.stringify(s.closed)}, expected code 0`)
    if (s.streamBytes !== input.length) {
      throw new Error(`the page received ${s.streamBytes} stream bytes of ${input.length} (${s.framesReceived} frames, ${s.framesLost} lost)`)
    }
    if (s.sha256 !== want) throw new Error(`sha256 mismatch: page ${s.sha256}, input ${want}`)
    const rate = mbitPerS(s)
    env.figures.bytes = { bytes: s.bytes, frames: s.framesReceived, mbps: Math.round(rate) }
    log(`1 bytes: ${input.length} bytes byte-exact in ${s.framesReceived} frames, ${rate.toFixed(0)} Mbit/s (first to last frame)`)
    await page.close()
  } finally {
    await host.stop()
  }
}

async function testVideo(env: Env): Promise<void> {
  const file = path.join(SCRATCH, 'testsrc2.h264')
  const enc = spawnSync(
    'ffmpeg',
    ['-hide_banner', '-loglevel', 'error', '-y', '-f', 'lavfi', '-i', 'testsrc2=size=1280x720:rate=60', '-t', '6', '-pix_fmt', 'yuv420p',
      '-c:v', 'libx264', '-preset', 'ultrafast', '-g', '60', '-f', 'h264', file],
    { encoding: 'utf8' },
  )
  if (enc.status !== 0) throw new Error(`ffmpeg failed: ${enc.stderr}`)
  const probe = spawnSync('ffprobe', ['-v', 'error', '-select_streams', 'v:0', '-count_frames', '-show_entries', 'stream=nb_read_frames', '-of', 'csv=p=0', file], {
    encoding: 'utf8',
  })
  const pictures = Number(probe.stdout.trim())
  if (!(pictures > 0)) throw new Error(`ffprobe counted no frames: ${probe.stdout}${probe.stderr}`)
  const host = HostProcess.start(env.ports, env.identity, ['--source', '-'], { file })
  try {
    const { page: url } = await host.ready()
    const page = await openPage(env.ctx, url)
    // The screenshot (test 5) is taken while the video plays, else at its end.
    let decoding = false
    await waitStats(page, 'the video to start decoding', 60_000, (x) => (decoding = x.framesDecoded >= 60) || x.done)
    if (decoding) env.screenshot = await page.screenshot()
    const s = await waitStats(page, 'the video to be decoded', 120_000, (x) => x.done)
    env.screenshot ??= await page.screenshot()
    if (s.error) throw new Error(`page error: ${s.error}; page stats ${JSON.stringify(s)}`)
    if (s.closed?.code !== 0) throw new Error(`the session closed with ${JSON.stringify(s.closed)}, expected code 0`)
    if (s.framesDecoded !== pictures) {
      throw new Error(`the page decoded ${s.framesDecoded} pictures, ffprobe counts ${pictures} (${s.framesReceived} frames, ${s.framesLost} lost)`)
    }
    env.figures.video = { pictures, frames: s.framesReceived, bytes: s.bytes }
    log(`2 video: ${pictures} of ${pictures} pictures decoded (${s.framesReceived} frames, ${(s.bytes / 1e6).toFixed(1)} MB)`)
    await page.close()
  } finally {
    await host.stop()
  }
}

async function testScreenshot(env: Env): Promise<void> {
  if (!env.screenshot) throw new Error('no screenshot of the page playing (the video test failed before it decoded)')
  mkdirSync(OUT, { recursive: true })
  const file = path.join(OUT, 'demo.png')
  writeFileSync(file, env.screenshot)
  log(`5 screenshot: ${file}`)
}

async function testAllow(env: Env): Promise<void> {
  // A host without a list: the page connects and shows its fingerprint.
  let host = HostProcess.start(env.ports, env.identity, ['--seconds', '30'])
  let fingerprint: string
  try {
    const { page: url } = await host.ready()
    const page = await openPage(env.ctx, url)
    const s = await waitStats(page, 'frames from a host without a list', 20_000, (x) => x.framesReceived > 0 && x.deviceFingerprint !== null)
    fingerprint = s.deviceFingerprint!
    await page.close()
  } finally {
    await host.stop()
  }
  const other = sha256(Buffer.from('some other device'))
  host = HostProcess.start(env.ports, env.identity, ['--seconds', '30', '--allow', other])
  try {
    const { page: url } = await host.ready()
    const page = await openPage(env.ctx, url)
    const s = await waitStats(page, 'the refusal', 20_000, (x) => x.closed !== null)
    if (s.deviceFingerprint !== fingerprint) throw new Error(`the device fingerprint changed: ${fingerprint} → ${s.deviceFingerprint} (IndexedDB not kept?)`)
    if (s.closed?.code !== 5) throw new Error(`a host listing another device closed with ${JSON.stringify(s.closed)}, expected code 5`)
    if (s.framesReceived !== 0) throw new Error(`the refused page received ${s.framesReceived} frames`)
    log(`3 allow: an unlisted device is refused (code 5: ${s.closed.reason})`)
    await page.close()
  } finally {
    await host.stop()
  }
  host = HostProcess.start(env.ports, env.identity, ['--seconds', '30', '--allow', fingerprint])
  try {
    const { page: url } = await host.ready()
    const page = await openPage(env.ctx, url)
    const s = await waitStats(page, 'frames from a host listing the device', 20_000, (x) => x.framesReceived >= 10 || x.closed !== null)
    if (s.closed !== null) throw new Error(`a host listing the device closed the session: ${JSON.stringify(s.closed)}`)
    log(`3 allow: the listed device ${fingerprint.slice(0, 16)}… is admitted (${s.framesReceived} frames)`)
    await page.close()
  } finally {
    await host.stop()
  }
}

async function testInput(env: Env): Promise<void> {
  // Loaded here, so the other tests run (and report) without the addon's in-process API.
  const { Host } = await import('../index')
  const { startWebPage } = await import('../src/cli/webpage')
  const identityDir = mkdtempSync(path.join(SCRATCH, 'sdk-host-'))
  const host = await Host.listen({ identityDir, bind: '127.0.0.1:0', web: true })
  const hash = host.webCertificateHash
  if (!hash) throw new Error('Host.listen({ web: true }) has no webCertificateHash')
  const port = Number(host.address.split(':').pop())
  const web = await startWebPage({ bind: '127.0.0.1', port: 0, config: () => ({ url: `https://127.0.0.1:${port}/punktfunk`, certificateHash: hash }) })
  try {
    const page = await openPage(env.ctx, web.url)
    let session = null
    const deadline = Date.now() + 20_000
    while (!session && Date.now() < deadline) session = await host.accept({ timeoutMs: 1_000 })
    if (!session) throw new Error(`no browser session within 20 s; page stats ${JSON.stringify(await stats(page))}\n${consoleOf(page)}`)
    for (let i = 0; i < 5; i++) {
      await session.submitFrame(Buffer.alloc(1000 + i, i), { keyframe: i === 0, pts: Math.round((performance.timeOrigin + performance.now()) * 1000) })
    }
    await waitStats(page, 'the 5 frames submitted', 10_000, (x) => x.framesReceived >= 5)
    const events = Array.from({ length: 100 }, (_, code) => ({ type: 'keyDown', code }))
    await page.evaluate(`window.punktfunkSendInput(${JSON.stringify(events)})`)
    await page.evaluate('window.punktfunkRequestKeyframe(7)')
    const codes: number[] = []
    let keyframe: number | undefined
    const signal = AbortSignal.timeout(10_000)
    try {
      for await (const m of session.messages({ signal })) {
        if (m.type === 'input') {
          if (m.event.type !== 'keyDown') throw new Error(`unexpected input ${JSON.stringify(m.event)}`)
          codes.push(m.event.code)
        } else if (m.type === 'keyframeRequest') keyframe = m.firstLost
        else if (m.type === 'closed') throw new Error(`the page left: ${JSON.stringify(m)}`)
        if (codes.length >= 100 && keyframe !== undefined) break
      }
    } catch (e) {
      if (!signal.aborted) throw e
    }
    const inOrder = codes.length === 100 && codes.every((c, i) => c === i)
    if (!inOrder) throw new Error(`the host read ${codes.length} key events${codes.length ? ` (${codes.slice(0, 10).join(',')}…)` : ''}, expected codes 0..99 in order`)
    if (keyframe !== 7) throw new Error(`the host read keyframeRequest ${String(keyframe)}, expected firstLost 7`)
    await session.close('input test over', 4)
    const s = await waitStats(page, 'the host close to reach the page', 10_000, (x) => x.closed !== null)
    if (s.closed?.code !== 4 || s.closed.reason !== 'input test over') {
      throw new Error(`the page saw the host's close as ${JSON.stringify(s.closed)}, expected code 4 'input test over'`)
    }
    log(`4 input: 100 key events in order, keyframeRequest 7, the host's close (4 'input test over') reached the page`)
    await page.close()
  } finally {
    await web.close()
    await host.close()
  }
}

/** One synthetic run into one tab: its stats once the host ends the stream. */
async function synthetic(env: Env, mbps: number, seconds: number): Promise<PageStats> {
  const host = HostProcess.start(env.ports, env.identity, ['--bitrate-mbps', String(mbps), '--abr', 'off', '--seconds', String(seconds)])
  try {
    const { page: url } = await host.ready()
    const page = await openPage(env.ctx, url)
    const s = await waitStats(page, `the ${mbps} Mbit/s run to end`, (seconds + 20) * 1000, (x) => x.done)
    await page.close()
    return s
  } finally {
    await host.stop()
  }
}

async function measure(env: Env): Promise<void> {
  const steps: Array<{ mbps: number; receivedMbps: number; frames: number; lost: number; closed: string }> = []
  for (const mbps of [100, 200, 400, 800]) {
    const s = await synthetic(env, mbps, 5)
    const step = {
      mbps,
      receivedMbps: Math.round(mbitPerS(s)),
      frames: s.framesReceived,
      lost: s.framesLost,
      closed: s.closed ? `${s.closed.code} ${s.closed.reason}` : 'open',
    }
    steps.push(step)
    log(`rate ${mbps} Mbit/s: received ${step.receivedMbps} Mbit/s, ${step.frames} frames, ${step.lost} lost (${step.closed})`)
  }
  const clean = steps.filter((s) => s.lost === 0 && s.receivedMbps >= 0.9 * s.mbps).map((s) => s.mbps)
  const l = await synthetic(env, 50, 5)
  const latency = { mbps: 50, p50Ms: l.latencyMsP50, p99Ms: l.latencyMsP99, frames: l.framesReceived, lost: l.framesLost }
  log(`highest clean rate into one tab: ${clean.length ? `${Math.max(...clean)} Mbit/s` : 'none of the steps'}`)
  log(`latency at 50 Mbit/s: p50 ${latency.p50Ms?.toFixed(2)} ms, p99 ${latency.p99Ms?.toFixed(2)} ms over ${latency.frames} frames (${latency.lost} lost)`)
  env.figures.rate = { seconds: 5, steps, highestCleanMbps: clean.length ? Math.max(...clean) : null }
  env.figures.latency = latency
}

async function main(): Promise<number> {
  const { ffmpeg } = preflight()
  const env: Env = {
    browser: await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS }),
    ctx: undefined as unknown as BrowserContext,
    // One page origin (http://127.0.0.1:web) for every CLI host: the device key lives in its IndexedDB.
    ports: { web: await freeTcpPort(), quic: await freeUdpPort() },
    identity: mkdtempSync(path.join(SCRATCH, 'identity-')),
    ffmpeg,
    figures: { chromium: spawnSync(CHROMIUM, ['--version'], { encoding: 'utf8' }).stdout.trim() },
  }
  env.ctx = await env.browser.newContext({ viewport: { width: 1040, height: 760 } })
  const tests: Array<[string, number, (e: Env) => Promise<void>, boolean]> = [
    ['1 bytes', 120_000, testBytes, true],
    ['2 video', 180_000, testVideo, ffmpeg],
    ['5 screenshot', 20_000, testScreenshot, ffmpeg],
    ['3 allow', 120_000, testAllow, true],
    ['4 input', 90_000, testInput, true],
    ['measure', 240_000, measure, true],
  ]
  const failed: string[] = []
  for (const [name, ms, run, enabled] of tests) {
    if (ONLY && !ONLY.some((o) => name.includes(o))) continue
    if (!enabled) {
      log(`${name}: SKIPPED (no ffmpeg)`)
      continue
    }
    const t0 = Date.now()
    try {
      await within(ms, name, run(env))
      log(`${name}: ok (${((Date.now() - t0) / 1000).toFixed(1)} s)`)
    } catch (e) {
      failed.push(name)
      console.error(`web-test: ${name}: FAILED: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`)
    }
  }
  await env.browser.close()
  if (DOCS) {
    mkdirSync(OUT, { recursive: true })
    writeFileSync(path.join(OUT, 'figures.json'), `${JSON.stringify(env.figures, null, 2)}\n`)
    log(`figures: ${path.join(OUT, 'figures.json')}`)
  } else {
    log(`figures: ${JSON.stringify(env.figures)}`)
  }
  if (failed.length) {
    console.error(`web-test: FAILED: ${failed.join(', ')}`)
    return 1
  }
  log('all passed')
  return 0
}

main().then(
  (code) => {
    rmSync(SCRATCH, { recursive: true, force: true })
    process.exit(code)
  },
  (e: unknown) => {
    console.error(`web-test: ${e instanceof Error ? e.message : String(e)}`)
    process.exit(1)
  },
)
