import { execFileSync, spawnSync } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
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
  for (const must of ['bin/punktfunk.js', 'dist/cli/main.js', 'index.js', 'index.d.ts', 'platform.js', 'dist/index.js', 'dist/index.d.ts', 'dist/session.d.ts', 'scripts/install.js', 'crates/punktfunk-node/src/lib.rs', 'Cargo.lock']) {
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
    `import { createLoopbackPair, type Frame, type SessionStats, PunktfunkError } from '@punktfunk/core'
export async function main(): Promise<number> {
  const { host, client } = createLoopbackPair({ fec: { percent: 20 } })
  await host.submitFrame(new Uint8Array(10), { keyframe: false })
  const f: Frame | undefined = await client.frames().next().then((r) => (r.done ? undefined : r.value))
  const s: SessionStats = client.stats()
  const e = new PunktfunkError('ERR_PF_CLOSED', 'x')
  await host.close()
  return (f?.data.length ?? 0) + s.framesCompleted + e.code.length
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

test('every prebuilt platform has a package that the release lists as an optional dependency', (t) => {
  const out = execFileSync(process.execPath, [join(root, 'scripts', 'prepublish.js'), '--print'], { encoding: 'utf8' })
  const released = JSON.parse(out) as { version: string; optionalDependencies: Record<string, string> }
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const platform = require('../platform.js') as {
    TARGETS: Record<string, string>
    currentSuffix(): string
    packageName(s: string): string
  }
  const expected = Object.values(platform.TARGETS).map((s) => platform.packageName(s)).sort()
  t.deepEqual(Object.keys(released.optionalDependencies).sort(), expected)
  for (const v of Object.values(released.optionalDependencies)) t.is(v, released.version)
  t.true(expected.includes(platform.packageName(platform.currentSuffix())), 'this machine is a prebuilt target')
})
