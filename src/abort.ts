import { invalidArg } from './errors'
import { describe } from './options'

/**
 * What an aborted wait rejects with: `name` is `'AbortError'` and `code` is
 * `'ABORT_ERR'`, as for Node.js's own abortable APIs; `cause` is the
 * signal's `reason`. Aborting only ends the wait: the session (or host) it was
 * waiting on stays usable, except for {@link Client.connect}, whose connection
 * is closed as soon as it would have been made.
 */
export class AbortError extends Error {
  /** Always `'ABORT_ERR'`. */
  readonly code = 'ABORT_ERR'

  /** Creates an abort error; `cause` is usually the signal's `reason`. */
  constructor(message = 'the operation was aborted', options?: { cause?: unknown }) {
    super(message, options)
    this.name = 'AbortError'
  }
}

/** Options of every method that waits. */
export interface WaitOptions {
  /** Abort the wait: the call rejects with an {@link AbortError}. */
  signal?: AbortSignal
}

/** @internal The `signal` option, checked. */
export function signalOf(bag: Record<string, unknown>): AbortSignal | undefined {
  const s = bag.signal
  if (s === undefined) return undefined
  if (!(s instanceof AbortSignal)) throw invalidArg(`signal must be an AbortSignal, got ${describe(s)}`)
  return s
}

/** @internal The error an aborted `signal` rejects a wait with. */
export function abortError(signal: AbortSignal): AbortError {
  return new AbortError(undefined, { cause: signal.reason })
}

/** @internal Throws an {@link AbortError} if `signal` is aborted. */
export function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw abortError(signal)
}

/**
 * @internal Settles like `p`, or rejects with an {@link AbortError} as soon as
 * `signal` aborts (`p` then runs on; its outcome is left to `onAbandoned`).
 */
export function abortable<T>(p: Promise<T>, signal: AbortSignal | undefined, onAbandoned?: (value: T) => void): Promise<T> {
  if (!signal) return p
  return new Promise<T>((resolve, reject) => {
    let abandoned = false
    const onAbort = (): void => {
      abandoned = true
      reject(abortError(signal))
    }
    if (signal.aborted) onAbort()
    else signal.addEventListener('abort', onAbort, { once: true })
    p.then(
      (v) => {
        signal.removeEventListener('abort', onAbort)
        if (abandoned) onAbandoned?.(v)
        else resolve(v)
      },
      (e: unknown) => {
        signal.removeEventListener('abort', onAbort)
        if (!abandoned) reject(e)
      },
    )
  })
}
