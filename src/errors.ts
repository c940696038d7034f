/**
 * Stable error codes. Each names one kind of failure of the core taxonomy and
 * never changes meaning once published; the C ABI has the matching negative
 * status codes.
 *
 * - `ERR_PF_INVALID_ARG`: an argument has the wrong type or is out of range.
 * - `ERR_PF_CLOSED`: the session was closed.
 * - `ERR_PF_IO`: the operating system refused a socket operation.
 * - `ERR_PF_QUEUE_FULL`: the send queue is full and the session rejects instead of waiting.
 * - `ERR_PF_TIMEOUT`: an operation ran out of time.
 * - `ERR_PF_PROTOCOL`: the peer broke the protocol.
 * - `ERR_PF_PIN_MISMATCH`: the host's identity does not match the pinned fingerprint.
 * - `ERR_PF_INTERNAL`: a bug in punktfunk (for example a caught native panic).
 * - `ERR_PF_UNAUTHORIZED`: the host admits only listed clients, and this one is not among them.
 * - `ERR_PF_INSECURE_KEY`: an identity's private key file may be accessed by other users; it is refused.
 */
export type PunktfunkErrorCode =
  | 'ERR_PF_INVALID_ARG'
  | 'ERR_PF_CLOSED'
  | 'ERR_PF_IO'
  | 'ERR_PF_QUEUE_FULL'
  | 'ERR_PF_TIMEOUT'
  | 'ERR_PF_PROTOCOL'
  | 'ERR_PF_PIN_MISMATCH'
  | 'ERR_PF_INTERNAL'
  | 'ERR_PF_UNAUTHORIZED'
  | 'ERR_PF_INSECURE_KEY'

/** Every {@link PunktfunkErrorCode}, in the order of the C status codes (-1, -2, …). */
export const ERROR_CODES: readonly PunktfunkErrorCode[] = Object.freeze([
  'ERR_PF_INVALID_ARG',
  'ERR_PF_CLOSED',
  'ERR_PF_IO',
  'ERR_PF_QUEUE_FULL',
  'ERR_PF_TIMEOUT',
  'ERR_PF_PROTOCOL',
  'ERR_PF_PIN_MISMATCH',
  'ERR_PF_INTERNAL',
  'ERR_PF_UNAUTHORIZED',
  'ERR_PF_INSECURE_KEY',
])

/** The one error class the SDK throws or rejects with. Branch on {@link PunktfunkError.code}. */
export class PunktfunkError extends Error {
  /** Stable machine-readable code. */
  readonly code: PunktfunkErrorCode

  /** Creates an error with a code and a human-readable message. */
  constructor(code: PunktfunkErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options)
    this.name = 'PunktfunkError'
    this.code = code
  }
}

/** True if `value` is a {@link PunktfunkError}, optionally with the given code. */
export function isPunktfunkError(value: unknown, code?: PunktfunkErrorCode): value is PunktfunkError {
  return value instanceof PunktfunkError && (code === undefined || value.code === code)
}

/**
 * @internal Turns anything the native addon threw into a PunktfunkError. The
 * addon's own errors carry their stable code as the `code` property; values
 * napi-rs refuses before our code runs carry a napi status there instead.
 */
export function fromNative(e: unknown): PunktfunkError {
  if (e instanceof PunktfunkError) return e
  const message = e instanceof Error ? e.message : String(e)
  const code = (e as { code?: unknown } | null)?.code
  if (typeof code === 'string' && (ERROR_CODES as readonly string[]).includes(code)) {
    return new PunktfunkError(code as PunktfunkErrorCode, message, { cause: e })
  }
  if (code === 'InvalidArg' || code === 'NumberExpected' || code === 'StringExpected') {
    return new PunktfunkError('ERR_PF_INVALID_ARG', message, { cause: e })
  }
  return new PunktfunkError('ERR_PF_INTERNAL', message, { cause: e })
}

/** @internal Calls into the addon, mapping its errors. */
export function call<T>(f: () => T): T {
  try {
    return f()
  } catch (e) {
    throw fromNative(e)
  }
}

/** @internal Awaits an addon promise, mapping its errors. */
export async function callAsync<T>(p: () => Promise<T>): Promise<T> {
  try {
    return await p()
  } catch (e) {
    throw fromNative(e)
  }
}

/** @internal Shorthand for an invalid-argument error. */
export function invalidArg(message: string): PunktfunkError {
  return new PunktfunkError('ERR_PF_INVALID_ARG', message)
}
