/**
 * The demo page of `punktfunk host --web`: a small HTTP server for the page,
 * its session settings and the browser SDK it runs.
 */
import { readFile, realpath } from 'node:fs/promises'
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import { isIP } from 'node:net'
import path from 'node:path'

/** Options of {@link startWebPage}. */
export interface WebPageOptions {
  /** IP address to listen on. */
  bind: string
  /** TCP port; 0 picks a free one. */
  port: number
  /**
   * The session the page opens: the WebTransport URL and the SHA-256 of the
   * host's web certificate (64 hex digits). Called for every request of
   * `/config.json`, so a rotated certificate reaches pages loaded later.
   */
  config: () => { url: string; certificateHash: string }
}

/** A running demo page server. */
export interface WebPage {
  /** The page's address, `http://IP:PORT/`. */
  url: string
  /** Stops the server; open connections are closed. */
  close(): Promise<void>
}

/** The compiled browser SDK, served under `/sdk/` (this file runs as dist/cli/webpage.js). */
const SDK_ROOT = path.join(__dirname, '..', '..', 'dist', 'web')

const TYPES: Record<string, string> = {
  '.js': 'text/javascript; charset=utf-8',
  '.json': 'application/json; charset=utf-8',
  '.map': 'application/json; charset=utf-8',
  '.ts': 'text/plain; charset=utf-8',
}

const PAGE = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>punktfunk</title>
<style>
  body { font: 15px/1.4 system-ui, sans-serif; margin: 2rem; color: #1d1d1f; background: #fafafa; }
  h1 { font-size: 1.4rem; margin: 0 0 .25rem; }
  #status { color: #555; margin: 0 0 1rem; }
  dl { display: grid; grid-template-columns: repeat(6, auto); gap: .2rem 1.2rem; justify-content: start; margin: 0 0 1rem; }
  dt { color: #666; font-size: .8rem; }
  dd { margin: 0; font: 600 1.1rem ui-monospace, monospace; grid-row: 2; }
  canvas { display: block; width: min(100%, 960px); height: auto; background: #111; }
  footer { margin-top: 1rem; color: #666; font-size: .8rem; }
  code { font-family: ui-monospace, monospace; }
</style>
</head>
<body>
<h1>punktfunk</h1>
<p id="status">loading</p>
<dl>
  <dt>frames</dt><dd id="frames">0</dd>
  <dt>Mbit/s</dt><dd id="rate">0</dd>
  <dt>lost</dt><dd id="lost">0</dd>
  <dt>latency p50 / p99 ms</dt><dd id="latency">–</dd>
  <dt>decoded</dt><dd id="decoded">0</dd>
</dl>
<canvas id="video" width="1280" height="720"></canvas>
<footer>device fingerprint <code id="fingerprint">–</code> (list it with <code>punktfunk host --allow</code>)</footer>
<script type="module" src="/sdk/web/page.js"></script>
</body>
</html>
`

function send(res: ServerResponse, status: number, type: string, body: string | Buffer): void {
  res.writeHead(status, {
    'content-type': type,
    'content-length': Buffer.byteLength(body),
    'cache-control': 'no-store',
    'x-content-type-options': 'nosniff',
  })
  res.end(body)
}

/** A file under {@link SDK_ROOT} for `/sdk/<rest>`, or `undefined` for anything outside it. */
async function sdkFile(rest: string): Promise<string | undefined> {
  let rel: string
  try {
    rel = decodeURIComponent(rest)
  } catch {
    return undefined
  }
  if (rel.includes('\0') || !TYPES[path.extname(rel)]) return undefined
  const file = path.resolve(SDK_ROOT, '.' + path.posix.sep + rel)
  if (!file.startsWith(SDK_ROOT + path.sep)) return undefined
  try {
    // A link inside the folder must not lead out of it either.
    const real = await realpath(file)
    const root = await realpath(SDK_ROOT)
    return real.startsWith(root + path.sep) ? real : undefined
  } catch {
    return undefined
  }
}

async function handle(req: IncomingMessage, res: ServerResponse, options: WebPageOptions): Promise<void> {
  if (req.method !== 'GET' && req.method !== 'HEAD') return send(res, 405, 'text/plain', 'method not allowed\n')
  const { pathname } = new URL(req.url ?? '/', 'http://page')
  if (pathname === '/' || pathname === '/index.html') return send(res, 200, 'text/html; charset=utf-8', PAGE)
  if (pathname === '/favicon.ico') {
    res.writeHead(204, { 'cache-control': 'max-age=86400' })
    return void res.end()
  }
  if (pathname === '/config.json') return send(res, 200, TYPES['.json']!, JSON.stringify(options.config()))
  if (pathname.startsWith('/sdk/')) {
    const file = await sdkFile(pathname.slice('/sdk/'.length))
    if (file) return send(res, 200, TYPES[path.extname(file)]!, await readFile(file))
  }
  send(res, 404, 'text/plain', 'not found\n')
}

/**
 * Serves the demo page on `http://bind:port/`: `/` the page, `/config.json`
 * the session settings (`config()`, read at every request), `/sdk/…` the
 * compiled browser SDK. Rejects if the address cannot be bound.
 *
 * Browsers grant WebTransport and WebCrypto to secure contexts only: over
 * plain http that is a page on localhost (127.0.0.1, ::1). A page on another
 * address needs https in front of it.
 */
export async function startWebPage(options: WebPageOptions): Promise<WebPage> {
  if (isIP(options.bind) === 0) throw new Error(`web page bind address must be an IP, got ${JSON.stringify(options.bind)}`)
  const server = createServer((req, res) => {
    handle(req, res, options).catch((e: unknown) => {
      if (!res.headersSent) send(res, 500, 'text/plain', `${e instanceof Error ? e.message : String(e)}\n`)
      else res.destroy()
    })
  })
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(options.port, options.bind, () => {
      server.off('error', reject)
      resolve()
    })
  })
  const addr = server.address()
  const port = typeof addr === 'object' && addr ? addr.port : options.port
  const host = isIP(options.bind) === 6 ? `[${options.bind}]` : options.bind
  return {
    url: `http://${host}:${port}/`,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve())
        server.closeAllConnections()
      }),
  }
}
