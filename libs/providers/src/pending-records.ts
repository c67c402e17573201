/**
 * The records a stream's event started (whose a stored id is: a response, a thread, a container),
 * which the event waits on before it goes on to the client. Taken once per event; an event that
 * started none costs nothing.
 */
export class PendingRecords {
  private pending: Array<Promise<void>> = [];

  /** Adds what a record call returned (nothing when it finished at once). */
  add(record: Promise<void> | void): void {
    if (record instanceof Promise) this.pending.push(record);
  }

  /** What was added since the last take, to wait on: undefined when nothing was. */
  take(): Promise<void> | undefined {
    if (!this.pending.length) return undefined;
    const pending = this.pending;
    this.pending = [];
    return pending.length === 1 ? pending[0] : Promise.all(pending).then(() => undefined);
  }
}
