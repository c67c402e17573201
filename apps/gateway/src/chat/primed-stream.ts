import type { ChatStream, StreamEvent, Usage } from '@keygate/providers';

/**
 * How long a stream may take to its first content before its headers go out anyway: a reasoning
 * model can think for a minute before it writes, and clients (and proxies) want headers sooner.
 */
const PRIME_MAX_MS = 2_000;

/**
 * A stream read up to its first content (text or tool-call arguments), its final usage or its end,
 * for at most {@link PRIME_MAX_MS}, before a byte goes to the client: an error the provider sends
 * as the stream's first event (Anthropic's in-stream `overloaded_error`, Gemini's error chunk) then
 * fails the attempt, which is retried or falls back like the same error sent as an HTTP status.
 * What was read is replayed. When the priming fails (the client left, the upstream failed), the
 * usage the upstream had reported by then (Anthropic's `message_start`) is handed to `onUsage`,
 * since those events are never replayed: it bills the attempt better than an estimate.
 */
export async function primed(stream: ChatStream, onUsage?: (usage: Usage) => void): Promise<ChatStream> {
  const iterator = stream.events[Symbol.asyncIterator]();
  const head: StreamEvent[] = [];
  let ended = false;
  // A read still running when the priming time is up: the replay hands it on first.
  let pending: Promise<IteratorResult<StreamEvent>> | undefined;
  const deadline = Date.now() + PRIME_MAX_MS;
  try {
    for (;;) {
      const read = iterator.next();
      const next = await withinMs(read, deadline - Date.now());
      if (next === undefined) {
        pending = read;
        break;
      }
      if (next.done) {
        ended = true;
        break;
      }
      head.push(next.value);
      if (next.value.text !== undefined || next.value.usage !== undefined) break;
    }
  } catch (error) {
    const usage = lastUsage(head);
    if (usage && onUsage) onUsage(usage);
    await iterator.return?.();
    throw error;
  }
  // Replays what was read, then hands the upstream's own iterator on: no extra generator (and no
  // extra promises) per event; a consumer that stops early returns the upstream's iterator.
  let replayed = 0;
  const replay: AsyncIterator<StreamEvent> = {
    next: () => {
      if (replayed < head.length) return Promise.resolve({ value: head[replayed++], done: false });
      if (ended) return Promise.resolve({ value: undefined, done: true });
      if (pending) {
        const read = pending;
        pending = undefined;
        return read;
      }
      return iterator.next();
    },
    return: (value?: unknown) => (iterator.return ? iterator.return(value) : Promise.resolve({ value: undefined, done: true })),
  };
  return { events: { [Symbol.asyncIterator]: () => replay }, headers: stream.headers };
}

/** The latest usage among events (a final one, else a running one). */
function lastUsage(events: readonly StreamEvent[]): Usage | undefined {
  for (let i = events.length - 1; i >= 0; i--) {
    const usage = events[i].usage ?? events[i].runningUsage;
    if (usage) return usage;
  }
  return undefined;
}

/** `promise`'s value, or undefined once `ms` have passed (the promise keeps running). */
function withinMs<T>(promise: Promise<T>, ms: number): Promise<T | undefined> {
  if (ms <= 0) {
    promise.catch(() => undefined); // read later by the replay; never an unhandled rejection meanwhile
    return Promise.resolve(undefined);
  }
  return new Promise<T | undefined>((resolve, reject) => {
    const timer = setTimeout(() => resolve(undefined), ms);
    promise.then(
      (value) => {
        clearTimeout(timer);
        resolve(value);
      },
      (error: unknown) => {
        clearTimeout(timer);
        reject(error instanceof Error ? error : new Error(String(error)));
      },
    );
  });
}
