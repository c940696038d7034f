#!/usr/bin/env node
'use strict'
// Adds the per-platform packages (npm/<platform>/) to @punktfunk/core's
// optionalDependencies, pinned to the release version, right before publishing.
//
//   node scripts/prepublish.js            rewrites package.json in place
//   node scripts/prepublish.js --print    prints the resulting package.json only
//
// They are not listed in the checked-in package.json because they do not exist
// in the registry until the release publishes them, and `npm ci` refuses a
// lockfile that cannot contain them. This is the napi-rs convention (its CLI's
// `prepublish` step does the same). The script also checks that every platform
// package agrees with platform.js and carries the release version.

const { readFileSync, writeFileSync } = require('node:fs')
const { join, resolve } = require('node:path')
const { TARGETS, binaryName, packageName } = require('../platform.js')

const root = resolve(__dirname, '..')

function expectedFields(suffix) {
  const [os, cpu, abi] = suffix.split('-')
  const fields = { os: [os], cpu: [cpu] }
  if (abi === 'gnu') fields.libc = ['glibc']
  if (abi === 'musl') fields.libc = ['musl']
  return fields
}

function main() {
  const print = process.argv.includes('--print')
  const pkgPath = join(root, 'package.json')
  const pkg = JSON.parse(readFileSync(pkgPath, 'utf8'))
  const problems = []
  const optional = {}
  for (const suffix of Object.values(TARGETS)) {
    const sub = JSON.parse(readFileSync(join(root, 'npm', suffix, 'package.json'), 'utf8'))
    const want = { name: packageName(suffix), version: pkg.version, main: binaryName(suffix), ...expectedFields(suffix) }
    for (const [k, v] of Object.entries(want)) {
      if (JSON.stringify(sub[k]) !== JSON.stringify(v)) {
        problems.push(`npm/${suffix}/package.json: ${k} is ${JSON.stringify(sub[k])}, expected ${JSON.stringify(v)}`)
      }
    }
    optional[sub.name] = pkg.version
  }
  if (problems.length) {
    console.error(problems.join('\n'))
    process.exit(1)
  }
  pkg.optionalDependencies = optional
  const text = JSON.stringify(pkg, null, 2) + '\n'
  if (print) process.stdout.write(text)
  else writeFileSync(pkgPath, text)
}

main()
