'use strict'
// Entry point of @punktfunk/core: loads the native addon, then exposes the
// typed API compiled from src/ (see index.d.ts).
//
// The addon is found by binding.js, the loader `napi build --platform`
// generates: punktfunk-core.<platform>.node next to this file (built from
// source by `npm install` in a checkout, or shipped inside the package), else
// the prebuilt package @punktfunk/core-<platform> (an optional dependency).
// PUNKTFUNK_NATIVE_PATH, if set, names a .node file to load instead.

function loadNative() {
  const override = process.env.PUNKTFUNK_NATIVE_PATH
  try {
    return override ? require(override) : require('./binding.js')
  } catch (e) {
    const tried = []
    for (let c = e; c && tried.length < 16; c = c.cause) tried.push(String(c.message || c).split('\n')[0])
    const where = override ? `PUNKTFUNK_NATIVE_PATH=${override}` : `${process.platform}-${process.arch}`
    const err = new Error(
      `@punktfunk/core: no native addon for ${where}.\n` +
        `Tried:\n  ${tried.join('\n  ')}\n` +
        'Build it from source with `npm install` in a checkout (needs Rust: https://rustup.rs), ' +
        'or set PUNKTFUNK_NATIVE_PATH to a built punktfunk-core .node file.',
      { cause: e },
    )
    err.code = 'ERR_PF_NATIVE_MISSING'
    throw err
  }
}

require('./dist/native.js').setNativeBinding(loadNative())
module.exports = require('./dist/index.js')
