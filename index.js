'use strict'
// Entry point of @punktfunk/core: finds the native addon, then exposes the
// typed API compiled from src/ (see index.d.ts).
//
// Search order:
//   1. PUNKTFUNK_NATIVE_PATH, if set (a path to a .node file);
//   2. punktfunk-core.<platform>.node next to this file (built from source by
//      `npm install` in a checkout, or shipped inside the package);
//   3. the prebuilt package @punktfunk/core-<platform> (an optional dependency).

const { existsSync } = require('node:fs')
const { join } = require('node:path')
const { currentSuffix, binaryName, packageName } = require('./platform.js')

function loadNative() {
  const suffix = currentSuffix()
  const tried = []
  const candidates = []
  if (process.env.PUNKTFUNK_NATIVE_PATH) candidates.push(process.env.PUNKTFUNK_NATIVE_PATH)
  const local = join(__dirname, binaryName(suffix))
  if (existsSync(local)) candidates.push(local)
  candidates.push(packageName(suffix))
  for (const c of candidates) {
    try {
      return require(c)
    } catch (e) {
      tried.push(`${c}: ${e && e.message ? e.message.split('\n')[0] : e}`)
    }
  }
  const err = new Error(
    `@punktfunk/core: no native addon for ${suffix}.\n` +
      `Tried:\n  ${tried.join('\n  ')}\n` +
      'Build it from source with `npm install` in a checkout (needs Rust: https://rustup.rs), ' +
      'or set PUNKTFUNK_NATIVE_PATH to a built punktfunk-core .node file.',
  )
  err.code = 'ERR_PF_NATIVE_MISSING'
  throw err
}

require('./dist/native.js').setNativeBinding(loadNative())
module.exports = require('./dist/index.js')
