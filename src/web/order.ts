/**
 * Frame ordering of `punktfunk-web/1`: frames arrive on streams of their own,
 * possibly out of order; the page hands them out in index order, or reports
 * them lost. Pure state, no I/O and no clock, so it can be tested event by
 * event.
 *
 * The rule (docs/WEB.md, Frames): frame *i* is lost when its stream was
 * reset, or when it was never seen and a frame with index ≥ *i* + window has
 * arrived while no opened stream is still waiting for its header.
 */

/** Frames `firstIndex … firstIndex + count - 1` will never be delivered. */
export interface LostRun {
  /** Discriminator. */
  readonly type: 'lost'
  /** First lost frame index. */
  readonly firstIndex: number
  /** Number of consecutive lost frames, at least 1. */
  readonly count: number
}

/** A frame ready to be handed out, in index order. */
export interface Ready<T> {
  /** Discriminator. */
  readonly type: 'frame'
  /** Frame index. */
  readonly index: number
  /** What was stored for it with {@link FrameOrder.complete}. */
  readonly frame: T
}

/** One outcome, in index order. */
export type OrderEvent<T> = Ready<T> | LostRun

/** What to do with a stream whose header named `index` ({@link FrameOrder.header}). */
export type HeaderVerdict =
  /** Read its payload. */
  | 'read'
  /** The index is already delivered or reported lost: drop the stream. */
  | 'stale'
  /** Another stream already carries this index: the host broke the protocol. */
  | 'duplicate'

/** A seen frame: its payload is still arriving, or it is complete and waits for an earlier one. */
type Slot<T> = { state: 'receiving' } | { state: 'complete'; frame: T } | { state: 'reset' }

/**
 * Puts frames carried on separate streams back in index order.
 *
 * Feed it what happens to the streams: {@link opened} when a stream appears,
 * {@link header} once its header names its index, then {@link complete} or
 * {@link reset}; a stream that fails before its header is `reset(undefined)`.
 * Each call returns what became deliverable, lost runs before the frames that
 * follow them. Memory: one entry per seen frame not yet handed out.
 */
export class FrameOrder<T> {
  /** Frames whose header arrived and that were not yet handed out, by index. */
  readonly #slots = new Map<number, Slot<T>>()
  /** Streams opened whose header has not arrived. */
  #awaitingHeader = 0
  /** The next index to hand out. */
  #next = 0
  /** Highest index a header named, or -1. */
  #highest = -1
  /** Frames in {@link #slots} still receiving. */
  #receiving = 0
  /** Frames in {@link #slots} complete. */
  #held = 0

  /**
   * @param window The host's window (Welcome): the most frames it has in
   * flight. A positive integer.
   */
  constructor(readonly window: number) {
    if (!Number.isSafeInteger(window) || window < 1) throw new RangeError(`window must be a positive integer, got ${window}`)
  }

  /** The next index to be handed out. */
  get next(): number {
    return this.#next
  }

  /** Streams opened that have not yet named their frame. */
  get awaitingHeader(): number {
    return this.#awaitingHeader
  }

  /** Frames whose payload is still arriving. */
  get receiving(): number {
    return this.#receiving
  }

  /** Complete frames held until an earlier frame is delivered or lost. */
  get held(): number {
    return this.#held
  }

  /** A stream was opened; its header has not arrived yet. */
  opened(): void {
    this.#awaitingHeader++
  }

  /**
   * The header of a stream opened earlier arrived and names frame `index`.
   * Returns what to do with the stream and what became deliverable (the
   * stream no longer holds back the loss of never-seen frames).
   */
  header(index: number): { verdict: HeaderVerdict; events: OrderEvent<T>[] } {
    if (this.#awaitingHeader > 0) this.#awaitingHeader--
    let verdict: HeaderVerdict
    if (index < this.#next) verdict = 'stale'
    else if (this.#slots.has(index)) verdict = 'duplicate'
    else {
      verdict = 'read'
      this.#slots.set(index, { state: 'receiving' })
      this.#receiving++
      if (index > this.#highest) this.#highest = index
    }
    return { verdict, events: this.#drain() }
  }

  /** Frame `index` (a stream whose header said `read`) arrived whole. */
  complete(index: number, frame: T): OrderEvent<T>[] {
    const slot = this.#slots.get(index)
    if (slot?.state !== 'receiving') return []
    this.#receiving--
    this.#held++
    this.#slots.set(index, { state: 'complete', frame })
    return this.#drain()
  }

  /**
   * A stream was reset: frame `index` is lost, or with `undefined` a stream
   * that failed before naming its frame (the window rule finds that frame).
   */
  reset(index: number | undefined): OrderEvent<T>[] {
    if (index === undefined) {
      if (this.#awaitingHeader > 0) this.#awaitingHeader--
      return this.#drain()
    }
    const slot = this.#slots.get(index)
    if (slot?.state !== 'receiving') return []
    this.#receiving--
    this.#slots.set(index, { state: 'reset' })
    return this.#drain()
  }

  /**
   * The session ended: hands out every complete frame still held, each gap
   * before one reported lost; frames still receiving are lost too. Frames
   * past the highest index seen were never sent as far as the page knows and
   * are not reported.
   */
  finish(): OrderEvent<T>[] {
    const out: OrderEvent<T>[] = []
    while (this.#next <= this.#highest) {
      const slot = this.#slots.get(this.#next)
      if (slot?.state === 'complete') {
        this.#slots.delete(this.#next)
        this.#held--
        out.push({ type: 'frame', index: this.#next, frame: slot.frame })
        this.#next++
      } else {
        this.#lostUntil(this.#nextSeen(), out)
      }
    }
    this.#slots.clear()
    this.#receiving = 0
    this.#held = 0
    this.#awaitingHeader = 0
    return out
  }

  /** Hands out what the rule allows, from {@link #next} on. */
  #drain(): OrderEvent<T>[] {
    const out: OrderEvent<T>[] = []
    for (;;) {
      const slot = this.#slots.get(this.#next)
      if (slot?.state === 'complete') {
        this.#slots.delete(this.#next)
        this.#held--
        out.push({ type: 'frame', index: this.#next, frame: slot.frame })
        this.#next++
      } else if (slot?.state === 'reset') {
        this.#lostUntil(this.#next + 1, out)
      } else if (slot === undefined && this.#awaitingHeader === 0 && this.#highest >= this.#next + this.window) {
        // Never seen, and no opened stream could still carry it: lost, and
        // so is every unseen index after it up to the next seen frame, as far
        // as the rule reaches (`highest - window`), in one run.
        const limit = Math.min(this.#nextSeen(), this.#highest - this.window + 1)
        this.#lostUntil(limit, out)
      } else {
        return out
      }
    }
  }

  /** Reports `#next … end - 1` lost (joining a run just reported), dropping their slots. */
  #lostUntil(end: number, out: OrderEvent<T>[]): void {
    const first = this.#next
    // The run can span far more indices than there are slots: walk the slots.
    for (const i of [...this.#slots.keys()]) if (i >= first && i < end) this.#slots.delete(i)
    this.#next = end
    const last = out[out.length - 1]
    if (last?.type === 'lost' && last.firstIndex + last.count === first) {
      out[out.length - 1] = { type: 'lost', firstIndex: last.firstIndex, count: last.count + (end - first) }
    } else {
      out.push({ type: 'lost', firstIndex: first, count: end - first })
    }
  }

  /** The smallest seen index above {@link #next}, or `highest + 1`. */
  #nextSeen(): number {
    let min = this.#highest + 1
    for (const i of this.#slots.keys()) if (i > this.#next && i < min) min = i
    return min
  }
}
