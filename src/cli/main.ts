/**
 * The `punktfunk` command line: demo, host, connect, probe, bench, identity.
 * Usage errors exit with code 2 and one line on stderr; runtime failures
 * (timeouts, refused pins, I/O) exit with code 1 and one line.
 */
import { isPunktfunkError } from '../errors'
import { Flags, helpText, parse, UsageError, type CommandSpec } from './args'
import { bench, benchSpec } from './bench'
import { printable } from './common'
import { connect, connectSpec } from './connect'
import { demo, demoSpec } from './demo'
import { host, hostSpec } from './host'
import { identity, identitySpec, probe, probeSpec } from './misc'

interface Command {
  spec: CommandSpec
  run: (f: Flags) => Promise<number>
}

const COMMANDS: Record<string, Command> = {
  demo: { spec: demoSpec, run: demo },
  host: { spec: hostSpec, run: host },
  connect: { spec: connectSpec, run: connect },
  probe: { spec: probeSpec, run: probe },
  bench: { spec: benchSpec, run: bench },
  identity: { spec: identitySpec, run: identity },
}

function overview(): string {
  const width = Math.max(...Object.keys(COMMANDS).map((k) => k.length))
  return [
    'usage: punktfunk COMMAND [flags]',
    '',
    'Low-latency frame streaming: Reed-Solomon FEC, AES-128-GCM and batched UDP, set up over QUIC.',
    '',
    ...Object.entries(COMMANDS).map(([k, c]) => `  ${k.padEnd(width)}  ${c.spec.summary.split('\n')[0]}`),
    '',
    "'punktfunk COMMAND --help' shows a command's flags. PUNKTFUNK_PERF=1 prints wire rates and drop counters every second.",
  ].join('\n')
}

/** Runs the command line; resolves with the exit code. */
export async function main(argv: readonly string[]): Promise<number> {
  const [name, ...rest] = argv
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(`${overview()}\n`)
    return name === undefined ? 2 : 0
  }
  if (name === '--version' || name === '-V') {
    process.stdout.write(`${(require('../../package.json') as { version: string }).version}\n`)
    return 0
  }
  const cmd = COMMANDS[name]
  if (!cmd) {
    process.stderr.write(`punktfunk: unknown command ${JSON.stringify(name)} (try punktfunk --help)\n`)
    return 2
  }
  if (rest.includes('--help') || rest.includes('-h')) {
    process.stdout.write(`${helpText(cmd.spec)}\n`)
    return 0
  }
  try {
    return await cmd.run(new Flags(parse(cmd.spec, rest)))
  } catch (e) {
    if (e instanceof UsageError) {
      process.stderr.write(`punktfunk ${name}: ${e.message} (see punktfunk ${name} --help)\n`)
      return 2
    }
    const msg = isPunktfunkError(e) ? `${e.message} [${e.code}]` : e instanceof Error ? e.message : String(e)
    process.stderr.write(`punktfunk ${name}: ${printable(msg)}\n`)
    return 1
  }
}

/** Entry point of `bin/punktfunk.js`. */
export function run(): void {
  main(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code
      // Everything is closed by now, so the process ends by itself; should a
      // handle linger (a half-closed pipe), end it anyway, not hang.
      setTimeout(() => process.exit(code), 3000).unref()
    },
    (e: unknown) => {
      process.stderr.write(`punktfunk: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`)
      process.exitCode = 1
    },
  )
}
