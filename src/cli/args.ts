/**
 * Flag parsing for the `punktfunk` command line. Every command declares its
 * flags; anything else is a usage error (exit code 2, one line).
 */

/** A mistake in how the command was called: printed as one line, exit code 2. */
export class UsageError extends Error {
  override name = 'UsageError'
}

/** How one flag is read. */
export type FlagSpec =
  | { kind: 'boolean'; help: string }
  | { kind: 'string'; help: string; value: string }
  | { kind: 'number'; help: string; value: string; min: number; max: number; integer?: boolean }

/** A command's flags and positional arguments. */
export interface CommandSpec {
  name: string
  summary: string
  /** Positional argument names, all required (e.g. `HOST:PORT`). */
  positionals: string[]
  flags: Record<string, FlagSpec>
  /** Extra lines for `--help`. */
  notes?: string[]
}

/** What was given on the command line. */
export interface Parsed {
  positionals: string[]
  flags: Map<string, string | number | boolean>
}

/** Parses `argv` against `spec`; throws {@link UsageError} on anything unknown or malformed. */
export function parse(spec: CommandSpec, argv: readonly string[]): Parsed {
  const positionals: string[] = []
  const flags = new Map<string, string | number | boolean>()
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] as string
    if (arg === '--') {
      positionals.push(...argv.slice(i + 1))
      break
    }
    if (!arg.startsWith('--') || arg === '-') {
      positionals.push(arg)
      continue
    }
    const eq = arg.indexOf('=')
    const name = arg.slice(2, eq < 0 ? undefined : eq)
    const f = spec.flags[name]
    if (!f) throw new UsageError(`unknown flag --${name}`)
    if (flags.has(name)) throw new UsageError(`--${name} given twice`)
    if (f.kind === 'boolean') {
      if (eq >= 0) throw new UsageError(`--${name} takes no value`)
      flags.set(name, true)
      continue
    }
    let raw: string | undefined
    if (eq >= 0) raw = arg.slice(eq + 1)
    else {
      raw = argv[++i]
      if (raw === undefined) throw new UsageError(`--${name} needs a value (${f.value})`)
    }
    if (f.kind === 'string') {
      if (raw === '') throw new UsageError(`--${name} needs a value (${f.value})`)
      flags.set(name, raw)
      continue
    }
    const n = raw.trim() === '' ? Number.NaN : Number(raw)
    if (!Number.isFinite(n) || (f.integer && !Number.isInteger(n))) {
      throw new UsageError(`--${name} must be ${f.integer ? 'an integer' : 'a number'}, got ${JSON.stringify(raw)}`)
    }
    if (n < f.min || n > f.max) throw new UsageError(`--${name} must be between ${f.min} and ${f.max}, got ${n}`)
    flags.set(name, n)
  }
  if (positionals.length < spec.positionals.length) {
    throw new UsageError(`missing ${spec.positionals[positionals.length]}`)
  }
  if (positionals.length > spec.positionals.length) {
    throw new UsageError(`unexpected argument ${JSON.stringify(positionals[spec.positionals.length])}`)
  }
  return { positionals, flags }
}

/** Typed reads of parsed flags. */
export class Flags {
  constructor(private readonly parsed: Parsed) {}

  num(name: string, fallback: number): number
  num(name: string): number | undefined
  num(name: string, fallback?: number): number | undefined {
    const v = this.parsed.flags.get(name)
    return typeof v === 'number' ? v : fallback
  }

  str(name: string, fallback: string): string
  str(name: string): string | undefined
  str(name: string, fallback?: string): string | undefined {
    const v = this.parsed.flags.get(name)
    return typeof v === 'string' ? v : fallback
  }

  bool(name: string): boolean {
    return this.parsed.flags.get(name) === true
  }

  has(name: string): boolean {
    return this.parsed.flags.has(name)
  }

  positional(i: number): string {
    return this.parsed.positionals[i] ?? ''
  }
}

/** The `--help` text of a command. */
export function helpText(spec: CommandSpec): string {
  const lines = [`usage: punktfunk ${spec.name}${spec.positionals.map((p) => ` ${p}`).join('')} [flags]`, '', spec.summary, '']
  const rows = Object.entries(spec.flags).map(([name, f]) => [
    `--${name}${f.kind === 'boolean' ? '' : ` ${f.value}`}`,
    f.help,
  ])
  rows.push(['--help', 'show this help'])
  const width = Math.max(...rows.map(([l]) => (l as string).length))
  for (const [l, h] of rows) lines.push(`  ${(l as string).padEnd(width)}  ${h}`)
  if (spec.notes?.length) lines.push('', ...spec.notes)
  return lines.join('\n')
}

/** `udp://HOST:PORT` → `HOST:PORT`, validated. */
export function udpTarget(v: string, flag: string): { host: string; port: number } {
  const m = /^udp:\/\/(\[[^\]]+\]|[^:/]+):(\d+)$/.exec(v)
  const port = m ? Number(m[2]) : Number.NaN
  if (!m || !(port >= 0 && port <= 65535)) {
    throw new UsageError(`${flag} ${JSON.stringify(v)} is not udp://HOST:PORT`)
  }
  return { host: (m[1] as string).replace(/^\[|\]$/g, ''), port }
}

/** Checks a `HOST:PORT` argument (IPv4, or IPv6 in brackets). */
export function hostPort(v: string, what: string): string {
  const m = /^(\[[0-9a-fA-F:.]+\]|[0-9.]+|localhost):(\d+)$/.exec(v)
  const port = m ? Number(m[2]) : Number.NaN
  if (!m || !(port >= 1 && port <= 65535)) throw new UsageError(`${what} ${JSON.stringify(v)} is not IP:PORT`)
  return m[1] === 'localhost' ? `127.0.0.1:${port}` : v
}

/** An `on|off` flag (default on): whether it is on. */
export function onOff(f: Flags, name: string): boolean {
  const v = f.str(name, 'on')
  if (v !== 'on' && v !== 'off') throw new UsageError(`--${name} takes on or off, got ${JSON.stringify(v)}`)
  return v === 'on'
}
