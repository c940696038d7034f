import { createHash } from 'node:crypto'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

import type { ExecutionContext } from 'ava'

import { Client, Host, type Frame, type FrameEvent, type HostOptions, type HostSession, type Session } from '../index'

/** Deterministic pseudo-random bytes (xorshift), so a failure can be replayed. */
export function pseudoRandom(len: number, seed: number): Buffer {
  const out = Buffer.allocUnsafe(len)
  let x = (seed * 2654435761) >>> 0 || 1
  for (let i = 0; i < len; i++) {
    x ^= x << 13
    x >>>= 0
    x ^= x >>> 17
    x ^= x << 5
    x >>>= 0
    out[i] = x & 0xff
  }
  return out
}

export const sha256 = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex')

/** Rejects if `p` has not settled within `ms`, so a hang fails the test with a reason. */
export async function within<T>(ms: number, what: string, p: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no result within ${ms} ms`)), ms)
  })
  try {
    return await Promise.race([p, timeout])
  } finally {
    clearTimeout(timer)
  }
}

/** Reads `count` events from a session (frames and losses), in order. */
export async function readEvents(session: Session, count: number): Promise<FrameEvent[]> {
  const events: FrameEvent[] = []
  while (events.length < count) {
    const ev = await session.nextEvent()
    if (ev === null) break
    events.push(ev)
  }
  return events
}

/** Reads frames until `count` frame indices are accounted for (delivered or lost). */
export async function readUntilIndex(session: Session, count: number): Promise<{ frames: Frame[]; lost: number }> {
  const frames: Frame[] = []
  let lost = 0
  while (frames.length + lost < count) {
    const ev = await session.nextEvent()
    if (ev === null) break
    if (ev.type === 'frame') frames.push(ev)
    else lost += ev.count
  }
  return { frames, lost }
}

/** Closes the sessions when the test ends, pass or fail, so no thread outlives it. */
export function closeAfter<T extends Record<string, Session>>(t: ExecutionContext, sessions: T): T {
  t.teardown(async () => {
    await Promise.allSettled(Object.values(sessions).map((s) => s.close()))
  })
  return sessions
}

/**
 * A host on 127.0.0.1 with its identity in a scratch directory (and
 * `options`), one client pinning it, and the host's session for that client;
 * all closed, and the directory removed, at teardown.
 */
export async function connected(
  t: { teardown(f: () => unknown): void },
  options: HostOptions = {},
): Promise<{ host: Host; client: Client; session: HostSession }> {
  const dir = mkdtempSync(join(tmpdir(), 'punktfunk-pair-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const host = await Host.listen({ bind: '127.0.0.1:0', identityDir: dir, ...options })
  t.teardown(() => host.close())
  const accepting = host.accept({ timeoutMs: 10_000 })
  const client = await Client.connect(host.address, { pin: host.fingerprint })
  t.teardown(() => client.close())
  const session = await accepting
  if (!session) throw new Error('the host accepted no session')
  t.teardown(() => session.close())
  return { host, client, session }
}
