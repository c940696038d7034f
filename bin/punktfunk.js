#!/usr/bin/env node
'use strict'
// The `punktfunk` command line (TypeScript in src/cli, built to dist/cli).
// Loading the package entry first finds the native addon.
require('../index.js')
require('../dist/cli/main.js').run()
