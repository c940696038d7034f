#!/usr/bin/env node
'use strict'
// After `tsc -p tsconfig.web.json`: marks dist/web as ES modules, so Node and
// bundlers read `@punktfunk/core/web` as ESM inside this CommonJS package.
const { writeFileSync } = require('node:fs')
const { join } = require('node:path')

writeFileSync(join(__dirname, '..', 'dist', 'web', 'package.json'), '{ "type": "module" }\n')
