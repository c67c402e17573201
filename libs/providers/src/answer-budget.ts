/**
 * The bytes of whole upstream answers in memory, across every request of the process.
 *
 * A plain (not streamed) answer is buffered whole before keygate parses, translates and counts it:
 * up to 256 MB each (a 2 048-input embeddings answer is ~130 MB of JSON). Each is bounded; their sum
 * was not, and a batch job sending a few such requests at once took a pod past its memory limit,
 * where the kernel kills it with every other request in flight. An answer's bytes are held from the
 * first chunk until its request's response has closed (its parse, translation and the client's copy
 * come from them). Past the budget, an answer's reader waits before taking its next chunk (undici
 * stops reading the socket, and the upstream's TCP window holds the rest) until answers ahead of it
 * are done. The reader that began first among those still reading waits only for answers already
 * read (their requests end on their own: sent, failed or timed out); once none is held it goes on
 * whatever its size. A request that already holds an answer read whole reads its next ones without
 * waiting (see {@link tryTake}). So one answer always progresses, nothing deadlocks, and one answer
 * larger than the budget still completes. A waiting reader still ends on its request's abort or
 * total timeout.
 */
export class AnswerBudget {
  private heldBytes = 0;
  /** Of {@link heldBytes}, those of answers read whole and not yet released. */
  private readBytes = 0;
  /** Of {@link readBytes}, those of each request (holds opened with an owner). */
  private readonly readBytesOf = new Map<object, number>();
  /** Holds whose answer is still being read, in the order they began; the first never waits. */
  private readonly reading = new Set<AnswerHold>();
  private wakers: Array<() => void> = [];
  private waitCount = 0;

  constructor(readonly limitBytes: number) {}

  /**
   * Starts accounting one answer's bytes, for the request `owner` when there is one;
   * {@link AnswerHold.release} it whatever happens.
   */
  open(signal: AbortSignal, owner?: object): AnswerHold {
    const hold = new AnswerHold(this, signal, owner);
    this.reading.add(hold);
    return hold;
  }

  /** Bytes held by answers in memory now. */
  get held(): number {
    return this.heldBytes;
  }

  /** How many answers had to wait for room (a counter, for metrics). */
  get waits(): number {
    return this.waitCount;
  }

  countWait(): void {
    this.waitCount++;
  }

  /**
   * Takes `bytes` for `hold` when they fit and no reader ahead of it waits, or when it is the oldest
   * reader and no answer read whole is held; false when it must wait. Readers are served in turn: a
   * large answer first in line is not starved by later ones that would each fit. A reader for a
   * request that already holds an answer read whole (a Gemini embeddings request's next batch, a
   * retry after an answer that could not be read) never waits: the request is under way, and only
   * its end gives those bytes back, so making it wait could hold every reader up.
   */
  tryTake(hold: AnswerHold, bytes: number): boolean {
    if (this.ownReadBytes(hold) === 0) {
      let first = true;
      for (const ahead of this.reading) {
        if (ahead === hold) break;
        first = false;
        if (ahead.waiting) return false;
      }
      if (this.heldBytes + bytes > this.limitBytes && (!first || this.readBytes > 0)) return false;
    }
    this.heldBytes += bytes;
    hold.bytes += bytes;
    return true;
  }

  /** Resolves at the next change that may make room (or make a waiter the oldest reader), or when `signal` aborts. */
  nextChange(signal: AbortSignal): Promise<void> {
    if (signal.aborted) return Promise.resolve();
    return new Promise((resolve) => {
      const done = (): void => {
        signal.removeEventListener('abort', done);
        resolve();
      };
      signal.addEventListener('abort', done, { once: true });
      this.wakers.push(done);
    });
  }

  /** The hold's answer is read whole: it keeps its bytes, but no longer stands first in line. */
  doneReading(hold: AnswerHold): void {
    if (!this.reading.delete(hold)) return;
    this.readBytes += hold.bytes;
    if (hold.owner) this.readBytesOf.set(hold.owner, this.ownReadBytes(hold) + hold.bytes);
    this.wake();
  }

  release(hold: AnswerHold): void {
    if (!this.reading.delete(hold)) {
      this.readBytes -= hold.bytes;
      if (hold.owner) {
        const left = this.ownReadBytes(hold) - hold.bytes;
        if (left > 0) this.readBytesOf.set(hold.owner, left);
        else this.readBytesOf.delete(hold.owner);
      }
    }
    this.heldBytes -= hold.bytes;
    hold.bytes = 0;
    this.wake();
  }

  private ownReadBytes(hold: AnswerHold): number {
    return hold.owner ? (this.readBytesOf.get(hold.owner) ?? 0) : 0;
  }

  /** Lets every waiting reader check again. */
  wake(): void {
    const wakers = this.wakers;
    this.wakers = [];
    for (const wake of wakers) wake();
  }
}

/** One answer's share of an {@link AnswerBudget}. */
export class AnswerHold {
  bytes = 0;
  /** Whether the reader is waiting for room now. */
  waiting = false;
  private released = false;

  constructor(
    private readonly budget: AnswerBudget,
    private readonly signal: AbortSignal,
    /** The request the answer is read for (its other answers never hold this one back). */
    readonly owner?: object,
  ) {}

  /** Takes room for a chunk of `bytes` when there is some now (or this is the oldest reader). */
  tryTake(bytes: number): boolean {
    return this.budget.tryTake(this, bytes);
  }

  /**
   * Waits until a chunk of `bytes` fits (after {@link tryTake} said no), as answers ahead of this one
   * are done. Returns without taking them once the request is aborted (its read then fails).
   */
  async waitFor(bytes: number): Promise<void> {
    // An aborted read (a chunk that was already buffered) neither waits nor counts as waiting.
    if (this.signal.aborted) return;
    this.budget.countWait();
    this.waiting = true;
    try {
      do {
        if (this.signal.aborted) return;
        await this.budget.nextChange(this.signal);
      } while (!this.budget.tryTake(this, bytes));
    } finally {
      this.waiting = false;
      // A reader behind this one may have been held back only by its waiting.
      this.budget.wake();
    }
  }

  /** The answer is read whole; its bytes stay held until {@link release}. */
  doneReading(): void {
    this.budget.doneReading(this);
  }

  /** Gives the answer's bytes back (once; later calls do nothing). */
  release(): void {
    if (this.released) return;
    this.released = true;
    this.budget.release(this);
  }
}
