import { UpstreamError, type ChatStream, type StreamEvent, type Usage } from '@keygate/providers';

/**
 * How long a stream may take to its first content before the client is given its HTTP head anyway:
 * a reasoning model can think for a minute before it writes, and clients (and proxies) want headers sooner.
 */
const PRIME_MAX_MS = 2_000;

/**
 * The most events held back before the first content. Providers send a handful (a role chunk,
 * `message_start` and a ping, `response.created`/`in_progress` and an output item's opening);
 * an upstream that sends many more without content (keep-alive events every few milliseconds, a
 * host's progress reports) is handed on as it is, so keygate never buffers an unbounded prelude:
 * a failure after that is no longer retried.
 */
export const MAX_HELD_EVENTS = 64;
/**
 * The most characters of events held back before the first content, likewise: each event may be
 * up to 8 MB (32 MB on the Responses API), and 64 such preludes of two streams held 1.6 GB.
 */
export const MAX_HELD_CHARS = 1024 * 1024;

/** What priming a stream tells its caller along the way. */
export interface Priming {
  /**
   * Called when the priming time is up without content: gives the client the stream's HTTP head
   * (and its keep-alive comments), never an event. Called on every attempt that takes that long, so
   * it must be idempotent; it must not throw (the attempt's read is under way).
   */
  commit(): void;
  /**
   * Given the usage the upstream had reported (Anthropic's `message_start`) when the priming fails
   * (the client left, the upstream failed): those events are never replayed, and it bills the
   * attempt better than an estimate.
   */
  onUsage?(usage: Usage): void;
}

/**
 * A stream read up to its first content (text, reasoning, tool-call arguments, other generated output
 * such as a partial image), its final usage or its end,
 * before any of its events goes to the client: a failure before then (an error the provider sends
 * as the stream's first event, such as Anthropic's in-stream `overloaded_error`; a cut; the upstream
 * going silent for the idle timeout) fails the attempt, which is retried or falls back like the
 * same failure sent as an HTTP status. Past {@link PRIME_MAX_MS} the client is given the HTTP head
 * ({@link Priming.commit}) and the reading goes on, with no time limit of its own (the upstream
 * idle timeout and the stream's `max_stream_seconds` bound it), still before any event: only the
 * first event written to the client is past the point of no return. What was read is replayed.
 * The reading also stops at {@link MAX_HELD_EVENTS} events, or {@link MAX_HELD_CHARS} characters of them, without content.
 */
export async function primed(stream: ChatStream, priming: Priming): Promise<ChatStream> {
  const iterator = stream.events[Symbol.asyncIterator]();
  const head: StreamEvent[] = [];
  let heldChars = 0;
  let ended = false;
  let committed = false;
  const deadline = Date.now() + PRIME_MAX_MS;
  try {
    for (;;) {
      const read = iterator.next();
      let next = committed ? await read : await withinMs(read, deadline - Date.now());
      if (next === undefined) {
        committed = true;
        priming.commit();
        next = await read;
      }
      if (next.done) {
        ended = true;
        break;
      }
      head.push(next.value);
      heldChars += next.value.data?.length ?? 0;
      if (
        next.value.text !== undefined ||
        next.value.usage !== undefined ||
        next.value.output ||
        head.length >= MAX_HELD_EVENTS ||
        heldChars >= MAX_HELD_CHARS
      )
        break;
    }
  } catch (error) {
    const usage = lastUsage(head);
    if (usage) priming.onUsage?.(usage);
    await iterator.return?.();
    throw stalledBeforeContent(error);
  }
  // Replays what was read, then hands the upstream's own iterator on: no extra generator (and no
  // extra promises) per event; a consumer that stops early returns the upstream's iterator.
  let replayed = 0;
  const replay: AsyncIterator<StreamEvent> = {
    next: () => {
      if (replayed < head.length) return Promise.resolve({ value: head[replayed++], done: false });
      if (ended) return Promise.resolve({ value: undefined, done: true });
      return iterator.next();
    },
    return: (value?: unknown) => (iterator.return ? iterator.return(value) : Promise.resolve({ value: undefined, done: true })),
  };
  return { events: { [Symbol.asyncIterator]: () => replay }, headers: stream.headers };
}

/**
 * An idle timeout before the stream's first content is `stalled`, which is retried: the upstream
 * answered and then went silent (an upstream that hangs), and the client has had none of it.
 */
function stalledBeforeContent(error: unknown): unknown {
  return error instanceof UpstreamError && error.kind === 'idle_timeout'
    ? new UpstreamError('stalled', error.provider, error.message)
    : error;
}

/**
 * A stream request's TTFB timeout: retried and fallen back (a stream's headers normally come before
 * the model writes, so the upstream hangs, and the client has had nothing), but logged, answered and
 * billed as a `ttfb_timeout` (504; nothing billed: nothing was answered).
 */
class StreamHeadersTimeout extends UpstreamError {
  override get retryable(): boolean {
    return true;
  }
}

/**
 * A stream's request whose response headers did not come within the TTFB timeout, made retryable
 * (see {@link StreamHeadersTimeout}). A whole answer's headers come with the answer, so its TTFB
 * timeout may cut a finished generation: it stays `ttfb_timeout`, not retried.
 */
export function retryableWhenStreamed(error: unknown): unknown {
  if (!(error instanceof UpstreamError) || error.kind !== 'ttfb_timeout' || error instanceof StreamHeadersTimeout) return error;
  const retryable = new StreamHeadersTimeout('ttfb_timeout', error.provider, error.message);
  retryable.beforeHeaders = error.beforeHeaders;
  return retryable;
}

/** The latest usage among events (a final one, else a running one). */
function lastUsage(events: readonly StreamEvent[]): Usage | undefined {
  for (let i = events.length - 1; i >= 0; i--) {
    const usage = events[i].usage ?? events[i].runningUsage;
    if (usage) return usage;
  }
  return undefined;
}

/** `promise`'s value, or undefined once `ms` have passed (the promise keeps running, and is awaited after). */
function withinMs<T>(promise: Promise<T>, ms: number): Promise<T | undefined> {
  if (ms <= 0) return Promise.resolve(undefined);
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
