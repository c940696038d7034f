'use strict'
// Which native binary fits this machine. Shared by the loader (index.js) and
// the build scripts, so the names cannot drift apart.

/** Rust target triple → napi-rs platform suffix, for every prebuilt target. */
const TARGETS = {
  'x86_64-unknown-linux-gnu': 'linux-x64-gnu',
  'aarch64-unknown-linux-gnu': 'linux-arm64-gnu',
  'x86_64-apple-darwin': 'darwin-x64',
  'aarch64-apple-darwin': 'darwin-arm64',
  'x86_64-pc-windows-msvc': 'win32-x64-msvc',
}

function isMusl() {
  if (process.platform !== 'linux') return false
  try {
    const header = process.report.getReport().header
    return !header.glibcVersionRuntime
  } catch {
    return false
  }
}

/** The platform suffix of the running Node.js, e.g. `linux-x64-gnu`. */
function currentSuffix() {
  const { platform, arch } = process
  if (platform === 'linux') return `linux-${arch}-${isMusl() ? 'musl' : 'gnu'}`
  if (platform === 'win32') return `win32-${arch}-msvc`
  return `${platform}-${arch}`
}

/** The suffix for a Rust target triple (prebuilt targets only). */
function suffixForTriple(triple) {
  const suffix = TARGETS[triple]
  if (!suffix) throw new Error(`unknown target ${triple}; known: ${Object.keys(TARGETS).join(', ')}`)
  return suffix
}

const binaryName = (suffix) => `punktfunk-core.${suffix}.node`
const packageName = (suffix) => `@punktfunk/core-${suffix}`

module.exports = { TARGETS, currentSuffix, suffixForTriple, binaryName, packageName }
