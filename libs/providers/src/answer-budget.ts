/**
 * The bytes of whole upstream answers being read into memory, across every request of the process.
 *
 * A plain (not streamed) answer is buffered whole before keygate parses, translates and counts it:
 * up to 256 MB each (a 2 048-input embeddings answer is ~130 MB of JSON). Each is bounded; their sum
 * was not, and a batch job sending a few such requests at once took a pod past its memory limit,
 * where the kernel kills it with every other request in flight. Past the budget, an answer's reader
 * waits before taking its next chunk (undici stops reading the socket, and the upstream's TCP window
 * holds the rest), until answers ahead of it are done. The reader that began first never waits, so
 * the oldest answer always progresses: memory stays within the budget plus that one answer, and
 * nothing deadlocks. A waiting reader still ends on its request's abort, total timeout or the
 * upstream's idle timeout.
 */
export class AnswerBudget {
  private heldBytes = 0;
  /** Readers in the order they began; the first never waits. */
  private readonly readers = new Set<AnswerHold>();
  private wakers: Array<() => void> = [];
  private waitCount = 0;

  constructor(readonly limitBytes: number) {}

  /** Starts accounting one answer's bytes; release it with {@link AnswerHold.release} whatever happens. */
  open(signal: AbortSignal): AnswerHold {
    const hold = new AnswerHold(this, signal);
    this.readers.add(hold);
    return hold;
  }

  /** Bytes held by answers being read now. */
  get held(): number {
    return this.heldBytes;
  }

  /** How many times a reader had to wait for room (a counter, for metrics). */
  get waits(): number {
    return this.waitCount;
  }

  countWait(): void {
    this.waitCount++;
  }

  /** Takes `bytes` for `hold` when they fit (or it is the oldest reader); false when it must wait. */
  tryTake(hold: AnswerHold, bytes: number): boolean {
    if (this.heldBytes + bytes > this.limitBytes && this.readers.values().next().value !== hold) return false;
    this.heldBytes += bytes;
    hold.bytes += bytes;
    return true;
  }

  /** Resolves once an answer ahead was released, or at once when the reader's signal is aborted. */
  nextRelease(signal: AbortSignal): Promise<void> {
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

  release(hold: AnswerHold): void {
    if (!this.readers.delete(hold)) return;
    this.heldBytes -= hold.bytes;
    hold.bytes = 0;
    const wakers = this.wakers;
    this.wakers = [];
    for (const wake of wakers) wake();
  }
}

/** One answer's share of an {@link AnswerBudget}. */
export class AnswerHold {
  bytes = 0;

  constructor(
    private readonly budget: AnswerBudget,
    private readonly signal: AbortSignal,
  ) {}

  /** Takes room for a chunk of `bytes` when there is some now (or this is the oldest reader). */
  tryTake(bytes: number): boolean {
    return this.budget.tryTake(this, bytes);
  }

  /**
   * Waits until a chunk of `bytes` fits (after {@link tryTake} said no), as answers ahead of this one
   * are released. Returns without taking them once the request is aborted (its read then fails).
   */
  async waitFor(bytes: number): Promise<void> {
    this.budget.countWait();
    do {
      if (this.signal.aborted) return;
      await this.budget.nextRelease(this.signal);
    } while (!this.budget.tryTake(this, bytes));
  }

  release(): void {
    this.budget.release(this);
  }
}
