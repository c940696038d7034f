import { execFileSync, spawnSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'

import test from 'ava'

const root = resolve(__dirname, '..')
const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm'

const roundTrip = (imports: string): string => `${imports}
const { host, client } = createLoopbackPair({ impairment: { dropEveryNth: 30 } })
const data = Buffer.alloc(500000).map((_, i) => (i * 7) & 255)
const reading = (async () => { for await (const f of client.frames()) return f })()
await host.submitFrame(data, { keyframe: true, pts: 9 })
const f = await reading
if (!f || !f.data.equals(data) || f.pts !== 9 || !f.keyframe) throw new Error('round trip mismatch')
let code = ''
try { await host.submitFrame('nope') } catch (e) { code = e instanceof PunktfunkError ? e.code : 'wrong class' }
await Promise.all([host.close(), client.close()])
console.log('ok', f.recoveredShards > 0, code)
`

test('npm pack installs into a fresh project and works from ESM, CommonJS and TypeScript', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'punktfunk-pack-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const packed = JSON.parse(
    execFileSync(npm, ['pack', '--json', '--ignore-scripts', '--pack-destination', dir], { cwd: root, encoding: 'utf8' }),
  ) as Array<{ filename: string; files: Array<{ path: string }> }>
  const files = packed[0].files.map((f) => f.path)
  for (const must of ['bin/punktfunk.js', 'dist/cli/main.js', 'index.js', 'index.d.ts', 'binding.js', 'binding.d.ts', 'dist/index.js', 'dist/index.d.ts', 'dist/session.d.ts', 'scripts/install.js', 'crates/punktfunk-node/src/lib.rs', 'Cargo.lock', 'dist/web/package.json', 'dist/web/web/index.js', 'dist/web/web/index.d.ts', 'dist/web/web/page.js', 'dist/cli/webpage.js']) {
    t.true(files.includes(must), `the package contains ${must}`)
  }
  t.true(files.some((f) => /^punktfunk-core\..+\.node$/.test(f)), 'the package contains the built addon')
  t.false(files.some((f) => f.startsWith('__test__/') || f.startsWith('src/') || f.includes('target/')), 'no tests, TS sources or build output')

  const app = join(dir, 'app')
  execFileSync('mkdir', ['-p', app])
  writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'app', version: '1.0.0', private: true }))
  execFileSync(npm, ['install', '--no-audit', '--no-fund', '--omit=optional', join(dir, packed[0].filename)], {
    cwd: app,
    stdio: 'pipe',
  })

  writeFileSync(join(app, 'esm.mjs'), roundTrip(`import { createLoopbackPair, PunktfunkError } from '@punktfunk/core'`))
  writeFileSync(
    join(app, 'cjs.cjs'),
    `(async () => {${roundTrip(`const { createLoopbackPair, PunktfunkError } = require('@punktfunk/core')`)}})().catch((e) => { console.error(e); process.exit(1) })`,
  )
  for (const script of ['esm.mjs', 'cjs.cjs']) {
    const r = spawnSync(process.execPath, [script], { cwd: app, encoding: 'utf8', timeout: 30_000 })
    t.is(r.status, 0, `${script}: ${r.stderr}`)
    t.is(r.stdout.trim(), 'ok true ERR_PF_INVALID_ARG', script)
  }

  // The browser SDK is an ES module under its own subpath (it touches no browser API when loaded).
  const web = spawnSync(
    process.execPath,
    ['--input-type=module', '-e', "const m = await import('@punktfunk/core/web'); console.log(typeof m.connect, typeof m.AnnexBSplitter, m.codecString(Uint8Array.of(0x67, 0x64, 0, 0x1f)))"],
    { cwd: app, encoding: 'utf8', timeout: 30_000 },
  )
  t.is(web.status, 0, web.stderr)
  t.is(web.stdout.trim(), 'function function avc1.64001f')

  // The command line is installed as the package's bin.
  const cli = spawnSync(join(app, 'node_modules', '.bin', 'punktfunk'), ['identity', '--json', '--identity', join(dir, 'identity')], {
    cwd: app,
    encoding: 'utf8',
    timeout: 30_000,
  })
  t.is(cli.status, 0, cli.stderr)
  t.regex(cli.stdout, /"fingerprint":"[0-9a-f]{64}","created":true/)

  // The shipped declarations type-check a consumer under strict settings.
  writeFileSync(
    join(app, 'use.ts'),
    `import { AbortError, createLoopbackPair, type Frame, type SessionStats, PunktfunkError } from '@punktfunk/core'
export async function main(): Promise<number> {
  const { host, client } = createLoopbackPair({ fec: { percent: 20 } })
  await host.submitFrame(new Uint8Array(10), { keyframe: false, signal: AbortSignal.timeout(1000) })
  const signal: AbortSignal = new AbortController().signal
  const f: Frame | undefined = await client.frames({ signal }).next().then((r) => (r.done ? undefined : r.value))
  const aborted: boolean = (await client.nextEvent({ signal: AbortSignal.abort() }).catch((e: unknown) => e)) instanceof AbortError
  const s: SessionStats = client.stats()
  const e = new PunktfunkError('ERR_PF_CLOSED', 'x')
  await host.close()
  return (f?.data.length ?? 0) + s.framesCompleted + e.code.length + (aborted ? 1 : 0)
}
`,
  )
  const tsc = join(root, 'node_modules', 'typescript', 'bin', 'tsc')
  const r = spawnSync(
    process.execPath,
    [tsc, '--strict', '--noEmit', '--target', 'es2022', '--module', 'node16', '--moduleResolution', 'node16',
      '--typeRoots', join(root, 'node_modules', '@types'), '--types', 'node', 'use.ts'],
    { cwd: app, encoding: 'utf8' },
  )
  t.is(r.status, 0, r.stdout + r.stderr)
})

test('every release target has its npm/<platform> package and a place in the generated loader', (t) => {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const pkg = require('../package.json') as { version: string; napi: { binaryName: string; packageName: string; targets: string[] } }
  const loader = readFileSync(join(root, 'binding.js'), 'utf8')
  const suffix = (triple: string): string => {
    const [arch, , os, abi] = triple.split('-')
    const a = arch === 'x86_64' ? 'x64' : arch === 'aarch64' ? 'arm64' : arch
    if (os === 'linux') return `linux-${a}-${abi}`
    if (os === 'windows') return `win32-${a}-${abi}`
    return `darwin-${a}`
  }
  t.true(pkg.napi.targets.includes('x86_64-unknown-linux-musl') && pkg.napi.targets.includes('aarch64-unknown-linux-musl'))
  for (const triple of pkg.napi.targets) {
    const s = suffix(triple)
    const sub = JSON.parse(readFileSync(join(root, 'npm', s, 'package.json'), 'utf8')) as Record<string, unknown>
    t.is(sub.name, `${pkg.napi.packageName}-${s}`)
    t.is(sub.version, pkg.version, `npm/${s} carries the release version`)
    t.is(sub.main, `${pkg.napi.binaryName}.${s}.node`)
    if (s.startsWith('linux-')) t.deepEqual(sub.libc, [s.endsWith('-musl') ? 'musl' : 'glibc'])
    t.true(loader.includes(`'${pkg.napi.packageName}-${s}'`), `the loader knows ${s}`)
    t.true(loader.includes(`'./${pkg.napi.binaryName}.${s}.node'`), `the loader looks for a local ${s} build`)
  }
  // On this glibc machine the loader picks the gnu build, not the musl one.
  if (process.platform === 'linux' && process.arch === 'x64') {
    const r = spawnSync(
      process.execPath,
      ['-e', "require('./binding.js'); console.log(Object.keys(require.cache).filter((f) => f.endsWith('.node')).join(','))"],
      { cwd: root, encoding: 'utf8' },
    )
    const glibc = (process.report.getReport() as { header: { glibcVersionRuntime?: string } }).header.glibcVersionRuntime
    t.regex(r.stdout, glibc ? /punktfunk-core\.linux-x64-gnu\.node/ : /punktfunk-core\.linux-x64-musl\.node/, r.stderr)
  }
})

test('a missing addon fails with ERR_PF_NATIVE_MISSING and says how to build one', (t) => {
  const r = spawnSync(
    process.execPath,
    ['-e', "try { require('./index.js') } catch (e) { console.log(e.code); console.log(e.message) }"],
    { cwd: root, encoding: 'utf8', env: { ...process.env, PUNKTFUNK_NATIVE_PATH: join(root, 'no-such-addon.node') } },
  )
  t.is(r.status, 0, r.stderr)
  const [code, ...message] = r.stdout.split('\n')
  t.is(code, 'ERR_PF_NATIVE_MISSING')
  t.regex(message.join('\n'), /no-such-addon\.node[\s\S]*npm install/)
})
