#!/usr/bin/env node
'use strict'
// `npm install` hook of @punktfunk/core.
//
// In a source checkout it always builds the native addon (cargo only rebuilds
// what changed). Installed as a dependency, it does nothing when a prebuilt
// binary fits this platform, and builds from the bundled sources otherwise.
// PUNKTFUNK_SKIP_BUILD=1 skips building altogether.

const { existsSync } = require('node:fs')
const { join, resolve, sep } = require('node:path')
const { spawnSync } = require('node:child_process')
const { currentSuffix, binaryName, packageName } = require('../platform.js')

const root = resolve(__dirname, '..')

function prebuiltAvailable(suffix) {
  if (existsSync(join(root, binaryName(suffix)))) return true
  try {
    require.resolve(packageName(suffix), { paths: [root] })
    return true
  } catch {
    return false
  }
}

function main() {
  if (process.env.PUNKTFUNK_SKIP_BUILD === '1') {
    console.error('@punktfunk/core: PUNKTFUNK_SKIP_BUILD=1, not building the native addon')
    return
  }
  const suffix = currentSuffix()
  const asDependency = root.split(sep).includes('node_modules')
  if (asDependency && prebuiltAvailable(suffix)) return
  if (!existsSync(join(root, 'crates', 'punktfunk-node', 'Cargo.toml'))) {
    console.error(`@punktfunk/core: no prebuilt binary for ${suffix} and no sources to build one from`)
    process.exit(1)
  }
  if (asDependency) console.error(`@punktfunk/core: no prebuilt binary for ${suffix}; building from source (needs Rust)`)
  const r = spawnSync(process.execPath, [join(__dirname, 'build-native.js')], { stdio: 'inherit', cwd: root })
  process.exit(r.status === null ? 1 : r.status)
}

main()
