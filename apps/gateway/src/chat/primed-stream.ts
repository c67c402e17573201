import type { ChatStream, StreamEvent } from '@keygate/providers';

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
 * What was read is replayed.
 */
export async function primed(stream: ChatStream): Promise<ChatStream> {
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
  return { events: { [Symbol.asyncIterator]: () => replay } };
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
