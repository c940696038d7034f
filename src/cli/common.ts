/** Small helpers shared by the commands. */
import { readFileSync } from 'node:fs'

/** Wall-clock time in whole microseconds (comparable between processes on one machine). */
export function nowUs(): number {
  return Math.round((performance.timeOrigin + performance.now()) * 1000)
}

/** Resolves at `at` (a `performance.now()` time), at once if that has passed. */
export function sleepUntil(at: number): Promise<void> {
  const ms = at - performance.now()
  return ms > 0.5 ? new Promise((r) => setTimeout(r, ms)) : Promise.resolve()
}

/** Wanted socket buffer size (what the sessions ask for). */
const WANTED = 32 << 20

/**
 * A one-line warning when the kernel will cap socket buffers below what a
 * fast stream needs (not root and `net.core.rmem_max` below 32 MiB), else null.
 */
export function bufferAdvice(): string | null {
  if (process.platform !== 'linux' || process.getuid?.() === 0) return null
  let max: number
  try {
    max = Number(readFileSync('/proc/sys/net/core/rmem_max', 'utf8').trim())
  } catch {
    return null
  }
  if (!(max < WANTED)) return null
  return (
    `note: socket buffers are capped at ${Math.round(max / 1024)} KiB (net.core.rmem_max); fast streams may lose ` +
    'datagrams. Install scripts/99-punktfunk-net.conf into /etc/sysctl.d/ (32 MiB) or run as root.'
  )
}

/** Resolves on SIGINT or SIGTERM (once), with the signal's name. */
export function interrupted(): { promise: Promise<string>; dispose: () => void } {
  let done: (s: string) => void = () => {}
  const promise = new Promise<string>((r) => (done = r))
  const onInt = (): void => done('SIGINT')
  const onTerm = (): void => done('SIGTERM')
  process.once('SIGINT', onInt)
  process.once('SIGTERM', onTerm)
  return {
    promise,
    dispose: () => {
      process.off('SIGINT', onInt)
      process.off('SIGTERM', onTerm)
    },
  }
}

/**
 * `text` safe to write to a terminal: control characters (C0, DEL, C1, which
 * can move the cursor, rewrite the screen or the window title) and the Unicode
 * line separators and bidirectional overrides are shown as `\uXXXX` escapes.
 * Anything a peer chose (close reasons, error messages carrying them) goes
 * through this before it is printed.
 */
export function printable(text: string): string {
  return text.replace(/[\u0000-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`)
}
