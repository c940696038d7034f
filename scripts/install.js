#!/usr/bin/env node
'use strict'
// `npm install` hook of @punktfunk/core: what the napi-rs CLI does not do.
//
// In a source checkout it always builds the native addon with `napi build`
// (cargo only rebuilds what changed). Installed as a dependency, it does
// nothing when the generated loader finds an addon for this platform (shipped
// or a prebuilt optional package), and otherwise builds one from the bundled
// sources, saying so. PUNKTFUNK_SKIP_BUILD=1 skips building altogether.

const { existsSync } = require('node:fs')
const { join, resolve, sep } = require('node:path')
const { spawnSync } = require('node:child_process')

const root = resolve(__dirname, '..')
const pkg = require('../package.json')

/** The same `napi build` as `npm run build:native`. */
const BUILD_ARGS = pkg.scripts['build:native'].split(/\s+/).slice(1)

function addonLoads() {
  try {
    require(join(root, 'binding.js'))
    return true
  } catch {
    return false
  }
}

/** The napi CLI: the local devDependency, else the pinned version from the registry. */
function napiCommand() {
  try {
    const cliPkg = require.resolve('@napi-rs/cli/package.json', { paths: [root] })
    const bin = require(cliPkg).bin
    return [process.execPath, [join(cliPkg, '..', typeof bin === 'string' ? bin : bin.napi)]]
  } catch {
    const version = pkg.devDependencies['@napi-rs/cli'].replace(/^[~^]/, '')
    const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm'
    return [npm, ['exec', '--yes', `--package=@napi-rs/cli@${version}`, '--', 'napi']]
  }
}

function main() {
  if (process.env.PUNKTFUNK_SKIP_BUILD === '1') {
    console.error('@punktfunk/core: PUNKTFUNK_SKIP_BUILD=1, not building the native addon')
    return
  }
  const where = `${process.platform}-${process.arch}`
  const asDependency = root.split(sep).includes('node_modules')
  if (asDependency && addonLoads()) return
  if (!existsSync(join(root, 'crates', 'punktfunk-node', 'Cargo.toml'))) {
    console.error(`@punktfunk/core: no prebuilt binary for ${where} and no sources to build one from`)
    process.exit(1)
  }
  if (asDependency) console.error(`@punktfunk/core: no prebuilt binary for ${where}; building from source (needs Rust)`)
  const probe = spawnSync('cargo', ['--version'], { stdio: 'ignore' })
  if (probe.error || probe.status !== 0) {
    console.error(
      '@punktfunk/core: building the native addon from source needs Rust (cargo), which is not on PATH: ' +
        'https://rustup.rs. Or set PUNKTFUNK_NATIVE_PATH to a built punktfunk-core .node file.',
    )
    process.exit(1)
  }
  const [cmd, pre] = napiCommand()
  const r = spawnSync(cmd, [...pre, ...BUILD_ARGS], { stdio: 'inherit', cwd: root })
  if (r.status !== 0) console.error('@punktfunk/core: building the native addon failed (see above)')
  process.exit(r.status === null ? 1 : r.status)
}

main()
