#!/usr/bin/env node
'use strict'
// Builds the native addon with cargo and copies it next to index.js as
// punktfunk-core.<platform>.node, where the loader looks first.
//
//   node scripts/build-native.js [--debug] [--target <rust-triple>] [--out-dir <dir>]
//
// Honours CARGO_TARGET_DIR. Cargo rebuilds only what changed, so running this
// before every test costs about a second when nothing did.

const { spawnSync } = require('node:child_process')
const { copyFileSync, renameSync, mkdirSync } = require('node:fs')
const { join, resolve } = require('node:path')
const { currentSuffix, suffixForTriple, binaryName } = require('../platform.js')

function parseArgs(argv) {
  const args = { release: true, target: undefined, outDir: resolve(__dirname, '..') }
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]
    if (a === '--debug') args.release = false
    else if (a === '--target') args.target = argv[++i]
    else if (a === '--out-dir') args.outDir = resolve(argv[++i])
    else {
      console.error(`build-native: unknown argument ${a}`)
      process.exit(2)
    }
  }
  return args
}

function main() {
  const args = parseArgs(process.argv.slice(2))
  const root = resolve(__dirname, '..')
  const cargoArgs = ['build', '-p', 'punktfunk-node', '--message-format=json-render-diagnostics']
  if (args.release) cargoArgs.push('--release')
  if (args.target) cargoArgs.push('--target', args.target)
  console.error(`build-native: cargo ${cargoArgs.join(' ')}`)
  const r = spawnSync('cargo', cargoArgs, {
    cwd: root,
    stdio: ['ignore', 'pipe', 'inherit'],
    maxBuffer: 256 * 1024 * 1024,
    encoding: 'utf8',
  })
  if (r.error) {
    console.error(
      `build-native: cannot run cargo (${r.error.message}). ` +
        'Building @punktfunk/core from source needs Rust: https://rustup.rs',
    )
    process.exit(1)
  }
  if (r.status !== 0) {
    console.error(`build-native: cargo failed with status ${r.status}`)
    process.exit(r.status || 1)
  }
  let artifact
  for (const line of r.stdout.split('\n')) {
    if (!line.startsWith('{')) continue
    const msg = JSON.parse(line)
    if (msg.reason === 'compiler-artifact' && msg.target && msg.target.name === 'punktfunk_node') {
      artifact = msg.filenames.find((f) => /\.(so|dylib|dll)$/.test(f))
    }
  }
  if (!artifact) {
    console.error('build-native: cargo did not report the punktfunk_node library')
    process.exit(1)
  }
  const suffix = args.target ? suffixForTriple(args.target) : currentSuffix()
  mkdirSync(args.outDir, { recursive: true })
  const dest = join(args.outDir, binaryName(suffix))
  // Copy then rename, so a process that has the old file loaded is not disturbed.
  const tmp = `${dest}.tmp-${process.pid}`
  copyFileSync(artifact, tmp)
  renameSync(tmp, dest)
  console.error(`build-native: ${dest}`)
}

main()
