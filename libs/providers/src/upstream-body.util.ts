import { StringDecoder } from 'node:string_decoder';
import { requestContextStorage, type RequestContext } from '@keygate/observability';
import { createParser, type EventSourceMessage } from 'eventsource-parser';
import type { AnswerHold } from './answer-budget';
import type { UpstreamResponse } from './upstream.client';
import { toUpstreamError } from './upstream.client';
import { UpstreamError } from './upstream.error';

/**
 * Most bytes keygate reads of an upstream JSON body. The largest real one is an embeddings answer
 * (2 048 inputs of 3 072 floats as JSON text: ~130 MB); a broken or hostile host sending more
 * would otherwise be buffered, then parsed, until the total timeout.
 */
export const MAX_RESPONSE_BYTES = 256 * 1024 * 1024;
/** Most bytes read of an upstream's error body: only its message is wanted. */
export const MAX_ERROR_BODY_BYTES = 1024 * 1024;

/**
 * The first bytes of an answer are read without counting them against the {@link AnswerBudget}:
 * most answers are a few kilobytes, and a megabyte each cannot add up to trouble before the
 * request limits do. An answer is counted, all of it, once it is longer.
 */
const UNCOUNTED_ANSWER_BYTES = 1024 * 1024;

/** Reads a whole upstream body as text, at most `maxBytes` of it, mapping transport failures. */
export async function readText(res: UpstreamResponse, provider: string, maxBytes = MAX_RESPONSE_BYTES): Promise<string> {
  let hold: AnswerHold | undefined;
  let request: RequestContext | undefined;
  try {
    // A declared length is what the HTTP parser reads, no more: checked before a byte is buffered.
    const declared = res.headers['content-length'];
    if (typeof declared === 'string') {
      if (Number(declared) > maxBytes) throw tooLarge(provider, maxBytes);
      if (Number(declared) <= UNCOUNTED_ANSWER_BYTES) return await res.body.text();
    }
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const chunk of res.body as AsyncIterable<Buffer>) {
      size += chunk.length;
      if (size > maxBytes) throw tooLarge(provider, maxBytes);
      chunks.push(chunk);
      // Counted against the process's budget for buffered answers once past the uncounted part.
      if (hold) {
        if (!hold.tryTake(chunk.length)) await hold.waitFor(chunk.length);
      } else if (size > UNCOUNTED_ANSWER_BYTES && res.answerBudget) {
        request = requestContextStorage.getStore();
        hold = res.answerBudget.open(res.signal.signal, request);
        if (!hold.tryTake(size)) await hold.waitFor(size);
      }
    }
    const text = Buffer.concat(chunks, size).toString('utf8');
    if (hold) {
      // Held until the request's response has closed: the text, its parse and the client's copy live until then.
      hold.doneReading();
      if (request) {
        const read = hold;
        request.atEnd(() => read.release());
        hold = undefined;
      }
    }
    return text;
  } catch (error) {
    if (!res.body.destroyed) {
      res.body.on('error', ignore);
      res.body.destroy();
    }
    throw midResponseError(error, provider, res);
  } finally {
    hold?.release();
    res.signal.dispose();
  }
}

function tooLarge(provider: string, maxBytes: number): UpstreamError {
  return new UpstreamError('protocol', provider, `the response body exceeds ${maxBytes} bytes`);
}

/**
 * Parses an upstream JSON document that must be an object (a response body or a stream chunk).
 * Anything else — not JSON, or JSON `null`, a number, an array — is a protocol error (502), never
 * a TypeError further on (which would be a 500, and would read as "this fallback cannot serve").
 */
export function parseUpstreamObject<T extends object>(text: string, provider: string, what: string): T {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new UpstreamError('protocol', provider, `${what} is not JSON`);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value))
    throw new UpstreamError('protocol', provider, `${what} is not a JSON object`);
  return value as T;
}

/** Above this length (characters), an embeddings answer's usage is read from its end rather than by parsing it whole. */
export const TAIL_READ_LENGTH = 1024 * 1024;

/**
 * The `usage` object an OpenAI embeddings answer ends with, read from the end of its text without
 * parsing the rest: 2 048 inputs of float vectors are tens of megabytes of JSON, whose parse would
 * hold the event loop (and every other request's stream) for hundreds of milliseconds, only to read
 * two numbers. Vectors hold numbers or base64, never a `"usage"` key, so the last one is the
 * answer's own. Undefined when the text does not end that way (the caller then parses it whole).
 */
export function trailingUsage(text: string): Record<string, unknown> | undefined {
  const end = text.trimEnd();
  if (!end.endsWith('}') || !text.trimStart().startsWith('{')) return undefined;
  const at = end.lastIndexOf('"usage"');
  if (at === -1) return undefined;
  let member: unknown;
  try {
    member = JSON.parse(`{${end.slice(at, -1)}}`);
  } catch {
    return undefined;
  }
  const usage = (member as { usage?: unknown }).usage;
  return typeof usage === 'object' && usage !== null && !Array.isArray(usage) ? (usage as Record<string, unknown>) : undefined;
}

/**
 * Turns a non-2xx upstream answer into an {@link UpstreamError} with the provider's own message
 * (and `upstreamRequestId`, the answer's id as the provider's adapter reads it).
 */
export async function failFromStatus(res: UpstreamResponse, provider: string, upstreamRequestId?: string): Promise<never> {
  const text = await readText(res, provider, MAX_ERROR_BODY_BYTES).catch(() => '');
  throw new UpstreamError(
    'http',
    provider,
    upstreamMessage(text) ?? `status ${res.statusCode}`,
    res.statusCode,
    retryAfter(res.headers['retry-after']),
    upstreamParam(text),
    upstreamCode(text),
    upstreamRequestId,
  );
}

/**
 * A string field of an OpenAI(-compatible) error body's `error` object, when it is a sane name; for
 * `code`, Anthropic's `error.details.error_code` when there is no `error.code` (Anthropic's bodies
 * have none).
 */
function errorField(text: string, field: 'param' | 'code'): string | undefined {
  try {
    const doc = JSON.parse(text) as { error?: Record<string, unknown> };
    const error = typeof doc.error === 'object' && doc.error !== null ? doc.error : undefined;
    const details = field === 'code' && error && typeof error.details === 'object' && error.details !== null ? error.details : undefined;
    const value = error?.[field] ?? (details as Record<string, unknown> | undefined)?.error_code;
    return typeof value === 'string' && /^[\w.[\]-]{1,128}$/.test(value) ? value : undefined;
  } catch {
    return undefined;
  }
}

/** The request field an OpenAI(-compatible) error body names (`error.param`), when it is a sane field path. */
export function upstreamParam(text: string): string | undefined {
  return errorField(text, 'param');
}

/** The error code an OpenAI(-compatible) error body gives (`error.code`; Anthropic's `error.details.error_code`), when it is a sane name. */
export function upstreamCode(text: string): string | undefined {
  return errorField(text, 'code');
}

/** Extracts the message of an OpenAI, Anthropic or Gemini error body. */
export function upstreamMessage(text: string): string | undefined {
  try {
    const doc = JSON.parse(text) as { error?: { message?: unknown } | string; message?: unknown };
    const m = typeof doc.error === 'object' ? doc.error?.message : (doc.error ?? doc.message);
    return typeof m === 'string' ? m.slice(0, 500) : undefined;
  } catch {
    return undefined;
  }
}

/** `Retry-After` in seconds (delta-seconds or HTTP date), if present and sane. */
export function retryAfter(header: string | string[] | undefined): number | undefined {
  const value = Array.isArray(header) ? header[0] : header;
  if (!value) return undefined;
  if (/^\d+$/.test(value)) return Number(value);
  const at = Date.parse(value);
  return Number.isNaN(at) ? undefined : Math.max(0, Math.ceil((at - Date.now()) / 1000));
}

/**
 * Whether a stream's read failed only for want of its closing marker: the upstream went silent or
 * dropped the connection after the answer was whole (every choice finished, the stop reason given),
 * as a host that leaves out `[DONE]` or `message_stop` and holds its connection open does. Such a
 * stream ends as if the marker had come; any other failure (a client abort, the total timeout)
 * stays one.
 */
export function cutAfterAnswer(error: unknown): boolean {
  return error instanceof UpstreamError && (error.kind === 'idle_timeout' || error.kind === 'connection_lost');
}

/** A failure while reading a body whose headers had arrived: a dropped connection is `connection_lost`. */
export function midResponseError(error: unknown, provider: string, res: UpstreamResponse): Error {
  const mapped = toUpstreamError(error, provider, res.signal);
  return mapped instanceof UpstreamError && mapped.kind === 'connect'
    ? new UpstreamError('connection_lost', provider, 'connection lost')
    : mapped;
}

/**
 * Most bytes an upstream may send without completing an event. The parser buffers an unfinished
 * event, so an upstream sending one endless line would otherwise grow the buffer until the total
 * timeout; real events (a chunk, a tool call's argument delta) are far smaller.
 */
export const MAX_SSE_EVENT_BYTES = 8 * 1024 * 1024;

/**
 * Content types of a whole answer, which a stream's body never has: a host that ignores
 * `stream: true` answers JSON, and a proxy in front of one may answer an HTML page. Such a body is
 * a protocol error at once (not read as events until it ends, then taken for a dropped stream and
 * retried: a whole answer is generated, and billed, each time).
 */
const WHOLE_BODY_TYPE = /^\s*(?:application\/(?:[\w.+-]+\+)?json|text\/html)\s*(?:;|$)/i;

/** How long an upstream may take to end its body after the event that ends the stream. */
export const BODY_END_GRACE_MS = 1000;

/**
 * Iterates the server-sent events of an upstream body (parsed by eventsource-parser), mapping
 * transport failures. Ends when the body ends.
 *
 * `isLast` names the event after which the stream is complete (OpenAI's `[DONE]`). A consumer that
 * stops there leaves the rest of the body to be read to its end (at most {@link BODY_END_GRACE_MS},
 * then it is destroyed): no AbortError is made for a stream that ended well, and a response whose
 * last bytes are still on their way is not aborted (which would cost its keep-alive connection).
 * A consumer that stops anywhere else (the client left, the stream ran out of time) destroys the
 * body at once.
 */
export async function* sseEvents(
  res: UpstreamResponse,
  provider: string,
  { maxEventBytes = MAX_SSE_EVENT_BYTES, isLast }: { maxEventBytes?: number; isLast?: (event: EventSourceMessage) => boolean } = {},
): AsyncGenerator<EventSourceMessage> {
  const pending: EventSourceMessage[] = [];
  const parser = createParser({ onEvent: (event) => pending.push(event) });
  // StringDecoder, not TextDecoder: Node 20's streaming TextDecoder goes through ICU on every chunk.
  const decoder = new StringDecoder('utf8');
  // A body may start with a byte-order mark, which the SSE format allows and the parser, fed
  // decoded text, would read as part of the first field name (dropping the first event).
  let start = true;
  // Bytes received since the last complete event (approximately: a chunk that completes one
  // resets the count, whatever of it follows that event).
  let unfinished = 0;
  // SSE ends a line with CRLF, LF or a bare CR. The parser cannot tell a CR that ends a chunk from
  // the first half of a CRLF, so it holds that line back until more arrives: the last event of a
  // stream written with bare CRs (its closing blank line a CR) would never be read, and one held
  // back until the body ends. Such a CR is read as a complete line end (a LF is fed after it) and
  // the LF the next chunk may begin with, the rest of its CRLF, is dropped.
  let endedInCr = false;
  let lastSeen = false;
  let outcome: 'ended' | 'failed' | 'left' = 'left';
  try {
    const type = res.headers['content-type'];
    if (typeof type === 'string' && WHOLE_BODY_TYPE.test(type))
      throw new UpstreamError(
        'protocol',
        provider,
        `answered a stream with a whole ${type.split(';')[0].trim()} body, not server-sent events (does the host take stream: true?)`,
      );
    for await (const chunk of res.body.iterator({ destroyOnReturn: false }) as AsyncIterable<Buffer>) {
      unfinished += chunk.length;
      let text = decoder.write(chunk);
      if (start && text !== '') {
        start = false;
        if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
      }
      if (text !== '') {
        if (endedInCr && text.charCodeAt(0) === 0x0a) text = text.slice(1);
        endedInCr = text.charCodeAt(text.length - 1) === 0x0d;
        parser.feed(endedInCr ? `${text}\n` : text);
      }
      if (pending.length) unfinished = 0;
      else if (unfinished > maxEventBytes)
        throw new UpstreamError('protocol', provider, `an event of the stream exceeded ${maxEventBytes} bytes`);
      while (pending.length) {
        const event = pending.shift() as EventSourceMessage;
        if (isLast?.(event)) lastSeen = true;
        yield event;
      }
    }
    parser.feed(decoder.end());
    while (pending.length) yield pending.shift() as EventSourceMessage;
    outcome = 'ended';
  } catch (error) {
    outcome = 'failed';
    throw midResponseError(error, provider, res);
  } finally {
    res.signal.dispose();
    if (outcome === 'left' && lastSeen) finishReading(res.body);
    else if (!res.body.destroyed) {
      // A body given up before its end fails with "Request aborted": nobody is left to read it.
      res.body.on('error', ignore);
      res.body.destroy();
    }
  }
}

function ignore(): void {}

/** Reads what is left of a body to its end, or destroys it after {@link BODY_END_GRACE_MS}. */
function finishReading(body: UpstreamResponse['body']): void {
  if (body.destroyed || body.readableEnded) return;
  const deadline = setTimeout(() => body.destroy(), BODY_END_GRACE_MS).unref();
  body.once('close', () => clearTimeout(deadline));
  // Nobody reads the failure of a body that was complete as far as the client is concerned.
  body.on('error', ignore);
  body.resume();
}
