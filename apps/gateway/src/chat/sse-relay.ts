import { once } from 'node:events';
import type { ServerResponse } from 'node:http';
import { Inject, Injectable } from '@nestjs/common';
import { GatewayConfig } from '@keygate/config';
import { GatewayError } from '@keygate/errors';
import { JsonLogger, KEYGATE_LOGGER, MetricsService, type RequestContext, type TokenCounts } from '@keygate/observability';
import {
  CACHE_WRITE_1H_TOKENS,
  CACHE_WRITE_TOKENS,
  ClientAbortedError,
  countTokens,
  tokenCount,
  UpstreamError,
  type ChatStream,
  type Usage,
} from '@keygate/providers';
import type { FastifyReply } from 'fastify';
import { endStream } from './stream-end';

const SSE_HEADERS = {
  'content-type': 'text/event-stream; charset=utf-8',
  'cache-control': 'no-cache',
  // Tells nginx-style proxies in front of keygate not to buffer the stream.
  'x-accel-buffering': 'no',
};

/** How one API's streams are written: OpenAI's chunks end with `[DONE]`, Anthropic's with their own `message_stop`. */
export interface RelayDialect {
  /** Written after the upstream's last event. */
  done: string;
  /** The stream's error event for a failure after the first byte. */
  errorEvent(error: GatewayError, stream: StreamPosition): string;
  /** Written when the stream has been silent for a keep-alive period; undefined where the API's clients read nothing but its events. */
  keepAlive: string | undefined;
}

/** An SSE comment, which a client that parses SSE as the standard says skips. */
export const SSE_KEEP_ALIVE = ': keep-alive\n\n';

/** Where a stream stands when it fails: the request id the client was given, and what went out before. */
export interface StreamPosition {
  requestId: string;
  /** How many events went out. */
  eventsSent: number;
  /** The `sequence_number` the next event takes: one after the last one sent, else {@link eventsSent}. */
  nextSequence: number;
}

/** OpenAI's chat-completion stream: `data:` chunks, `data: [DONE]`, an error object as a chunk (the SDKs raise it as an APIError). */
export const OPENAI_STREAM: RelayDialect = {
  done: 'data: [DONE]\n\n',
  errorEvent: (error) => `data: ${JSON.stringify(error.toBody())}\n\n`,
  keepAlive: SSE_KEEP_ALIVE,
};

/**
 * The most of a stream's text kept to estimate its answer when the upstream reports no usage: a
 * million characters is a quarter of a million tokens, beyond what models answer. Past it (a host
 * gone wrong), characters are counted at {@link CHARS_PER_TOKEN_BEYOND} a token.
 */
const KEPT_TEXT_CHARS = 1_000_000;
const CHARS_PER_TOKEN_BEYOND = 4;

/**
 * Records the usage an upstream reported on the request's context (the audit, the token quotas, the
 * cost); returns whether it did. An OpenAI-compatible host's usage is passed on as it wrote it, so
 * a prompt or completion count that is missing or not a count (a string, a negative number) is not
 * taken: the caller bills keygate's estimate instead. Taken, a string reached the Prometheus
 * counters (which throw on it, and the process with them) and the audit line as text, a missing
 * count left `tokens_in` out of the line, and a negative one refunded quota and priced below zero.
 */
export function recordUsage(ctx: TokenCounts, usage: Usage | null | undefined): boolean {
  const prompt = tokenCount(usage?.prompt_tokens);
  const completion = tokenCount(usage?.completion_tokens);
  if (!usage || prompt === null || completion === null) return false;
  ctx.tokensIn = prompt;
  ctx.tokensOut = completion;
  recordUsageDetails(ctx, usage);
  return true;
}

/**
 * Records how the reported tokens split (cache reads and writes, reasoning), which providers bill
 * at other rates: what the audit and the cost need. The counts come as the upstream wrote them (an
 * OpenAI-compatible host's JSON is passed on as it is), so anything but a count reads as not said,
 * and so does a part larger than its whole (1,000 cached tokens of a 10-token prompt): a chargeback
 * that reads the split fields would take it as said.
 */
function recordUsageDetails(ctx: TokenCounts, usage: Usage): void {
  const prompt = ctx.tokensIn ?? 0;
  ctx.tokensCached = partOf(tokenCount(usage.prompt_tokens_details?.cached_tokens), prompt);
  ctx.tokensCacheWrite = partOf(tokenCount(usage[CACHE_WRITE_TOKENS]), prompt);
  ctx.tokensCacheWrite1h = partOf(tokenCount(usage[CACHE_WRITE_1H_TOKENS]), ctx.tokensCacheWrite ?? 0);
  ctx.tokensReasoning = partOf(tokenCount(usage.completion_tokens_details?.reasoning_tokens), ctx.tokensOut ?? 0);
}

/** `part` when it is no larger than its `whole`, else null (not said). */
function partOf(part: number | null, whole: number): number | null {
  return part !== null && part <= whole ? part : null;
}

/**
 * A client's SSE response whose HTTP head (200 and the SSE headers) is out, and nothing else yet
 * perhaps: its time limit (`max_stream_seconds`) and its keep-alive comments run from then, whether
 * events flow or keygate still waits for an attempt's first content.
 */
export class SseStream {
  /** Whether the stream's time limit ended it. */
  overLimit = false;
  /** How many events went out. */
  eventsSent = 0;
  /** The `sequence_number` of the last event sent that had one. */
  lastSequence: number | undefined;
  /** Whether something was written in the current keep-alive period. */
  wrote = true;
  private headFlushed = false;
  /** Frames queued by {@link send} and not yet written. */
  private pending = '';
  private readonly flushPending = (): void => this.flush();
  private readonly limit: NodeJS.Timeout;
  private readonly keepAlive: NodeJS.Timeout | undefined;

  constructor(
    ctx: RequestContext,
    readonly res: ServerResponse,
    readonly dialect: RelayDialect,
    readonly maxStreamSeconds: number,
    keepAliveMs: number,
  ) {
    this.limit = setTimeout(() => {
      this.overLimit = true;
      ctx.abort.abort();
    }, maxStreamSeconds * 1000);
    this.limit.unref();
    // A model may think for minutes before it writes (Anthropic's pings, which say so, have no
    // OpenAI chunk), and keygate may wait for a retry's first content: a comment, which SSE clients
    // skip, keeps proxies with an idle timeout from cutting a silent stream. Checked once per
    // period, so an event costs one assignment.
    const comment = dialect.keepAlive;
    this.keepAlive =
      keepAliveMs > 0 && comment !== undefined
        ? setInterval(() => {
            if (!this.wrote && !res.writableEnded && !res.destroyed && res.writableLength === 0) res.write(comment);
            this.wrote = false;
          }, keepAliveMs)
        : undefined;
    this.keepAlive?.unref();
  }

  /** Where the stream stands, for its error event. */
  position(requestId: string): StreamPosition {
    return {
      requestId,
      eventsSent: this.eventsSent,
      nextSequence: this.lastSequence === undefined ? this.eventsSent : this.lastSequence + 1,
    };
  }

  /**
   * Sends the HTTP head now, where no event may follow for a while (keygate waits for an attempt's
   * first content). Otherwise the head leaves with the first event, in one write.
   */
  flushHead(): void {
    // Once: `headersSent` is true from writeHead on, before the head has left.
    if (this.headFlushed || this.res.destroyed) return;
    this.headFlushed = true;
    this.res.flushHeaders();
  }

  /**
   * Writes an event's frame. Once a write went out in this turn of the event loop (Node's HTTP
   * response corks its socket until the next tick then), the frames of the other events read with it
   * (many, when the upstream writes faster than keygate reads) are queued and go out in one write on
   * the next tick, once the relay's iteration (promise jobs, which run first) has handed on all it
   * had read. A write per event cost the socket a chunk header, two CRLFs and the frame each: most of
   * a long stream's CPU. An event read alone is written at once, as before. The client reads the same
   * bytes, in fewer HTTP chunks.
   */
  send(frame: string): void {
    if (this.pending !== '') this.pending += frame;
    else if (this.res.socket?.writableCorked) {
      this.pending = frame;
      process.nextTick(this.flushPending);
    } else this.res.write(frame);
  }

  /** Writes the queued frames now. */
  flush(): void {
    const text = this.take();
    if (text !== '' && !this.res.destroyed && !this.res.writableEnded) this.res.write(text);
  }

  /** The queued frames, taken to be written with the stream's last bytes. */
  take(): string {
    const text = this.pending;
    this.pending = '';
    return text;
  }

  /** Stops the timers, and drops what is still queued: the stream has ended (or its client left). */
  close(): void {
    this.pending = '';
    clearTimeout(this.limit);
    clearInterval(this.keepAlive);
  }
}

/**
 * Writes an upstream stream to the client as server-sent events, in the route's dialect. Errors
 * before the client's HTTP head went out are thrown by the caller (the filter answers them as JSON
 * with their real status); after it they end the stream with the dialect's error event, since the
 * 200 is already on the wire.
 */
@Injectable()
export class SseRelay {
  private readonly keepAliveMs: number;

  constructor(
    @Inject(GatewayConfig) config: GatewayConfig,
    private readonly metrics: MetricsService,
    @Inject(KEYGATE_LOGGER) private readonly logger: JsonLogger,
  ) {
    this.keepAliveMs = config.sseKeepAliveSeconds * 1000;
  }

  /**
   * Gives the client the stream's HTTP head (written with the first event, or at once by
   * {@link SseStream.flushHead}), and starts the stream's time limit and keep-alive comments. Every
   * stream is opened once, and ended by {@link relay} or {@link fail}.
   */
  open(ctx: RequestContext, reply: FastifyReply, dialect: RelayDialect, maxStreamSeconds: number): SseStream {
    reply.hijack();
    this.metrics.activeStreams.inc();
    const res = reply.raw;
    // Headers set on the reply before the hijack (CORS, from @fastify/cors) go out with the stream.
    res.writeHead(200, { ...definedHeaders(reply.getHeaders()), ...SSE_HEADERS });
    ctx.answer(200);
    return new SseStream(ctx, res, dialect, maxStreamSeconds, this.keepAliveMs);
  }

  /**
   * Streams `upstream` to the client through `out`, and ends it. `estimatePrompt` bills the prompt
   * of a stream that ends before the upstream reported any usage.
   */
  async relay(ctx: RequestContext, upstream: ChatStream, out: SseStream, estimatePrompt: () => number): Promise<void> {
    const { res } = out;
    // The answer's text, for an estimate when the upstream reports no usage: kept up to a bound, the
    // rest only counted (a stream of gigabytes was held whole, and its join threw past V8's longest string).
    const text: string[] = [];
    let keptChars = 0;
    let beyondChars = 0;
    let running: Usage | undefined;
    // The client has read the upstream's own account of its failure (Responses' `response.failed`).
    let toldFailure = false;
    try {
      for await (const event of upstream.events) {
        if (event.usage) recordUsage(ctx, event.usage);
        if (event.runningUsage) running = event.runningUsage;
        if (event.text) {
          if (keptChars < KEPT_TEXT_CHARS) {
            text.push(event.text);
            keptChars += event.text.length;
          } else beyondChars += event.text.length;
        }
        if (event.data === null) continue;
        out.wrote = true;
        out.eventsSent++;
        if (event.sequence !== undefined) out.lastSequence = event.sequence;
        const frame = event.event === undefined ? `data: ${event.data}\n\n` : `event: ${event.event}\ndata: ${event.data}\n\n`;
        if (event.tellsFailure) toldFailure = true;
        out.send(frame);
        if (res.writableNeedDrain) {
          out.flush();
          await once(res, 'drain', { signal: ctx.abort.signal });
        }
      }
      endStream(res, out.take() + out.dialect.done);
    } catch (error) {
      // Told as the upstream tells it (OpenAI's SDKs end a Responses stream there with its failed
      // Response, which another error event would turn into a thrown error): audited, nothing added.
      if (toldFailure && error instanceof UpstreamError && !ctx.endedBy && !out.overLimit && !ctx.abort.aborted) {
        this.logStreamFailure(ctx, error, out.eventsSent);
        const told = error.toGatewayError();
        ctx.fail(told.spec.failure, told.status);
        endStream(res, out.take() + out.dialect.done);
        return;
      }
      if (!ctx.endedBy && !out.overLimit && !(error instanceof ClientAbortedError || ctx.abort.aborted))
        this.logStreamFailure(ctx, error, out.eventsSent);
      this.endWithFailure(ctx, out, error);
    } finally {
      this.metrics.activeStreams.dec();
      out.close();
      // The upstream started generating, so it bills the prompt: what it reported so far, else
      // keygate's estimate; the answer at least as long as what reached keygate. A running count
      // that is not a count is not taken, as recordUsage takes none (a negative one would throw in
      // the Prometheus counters, outside any handler).
      const answered = (): number =>
        Math.max(tokenCount(running?.completion_tokens) ?? 0, countTokens(text.join('')) + Math.ceil(beyondChars / CHARS_PER_TOKEN_BEYOND));
      if (ctx.tokensIn === null) {
        const reported = tokenCount(running?.prompt_tokens);
        ctx.tokensIn = reported ?? estimatePrompt();
        // Before the split, which is checked against its whole: Gemini's running thoughts were
        // checked against an output not yet set (read as 0), and left out as not said.
        ctx.tokensOut ??= answered();
        if (running && reported !== null) recordUsageDetails(ctx, running);
      }
      ctx.tokensOut ??= answered();
    }
  }

  /**
   * Ends a stream whose head went out while keygate waited for content, and whose attempts then all
   * failed before any event (or the client left, or keygate ended the request meanwhile): the
   * client is told as after a first event, with the dialect's error event and the status the
   * failure maps to. Each failed attempt was logged as it failed; billing is the caller's.
   */
  fail(ctx: RequestContext, out: SseStream, error: unknown): void {
    try {
      if (!(error instanceof UpstreamError || error instanceof GatewayError || error instanceof ClientAbortedError))
        this.logStreamFailure(ctx, error, out.eventsSent);
      this.endWithFailure(ctx, out, error);
    } finally {
      this.metrics.activeStreams.dec();
      out.close();
    }
  }

  /**
   * The end of a failed stream: the reason keygate ended it (the drain deadline, a block, its time
   * limit), nothing for a client that left, else the failure as the dialect's error event.
   */
  private endWithFailure(ctx: RequestContext, out: SseStream, error: unknown): void {
    if (ctx.endedBy) {
      // Ended by keygate (the drain deadline, a block): the client is told why.
      this.endWithError(ctx, out, ctx.endedBy);
    } else if (out.overLimit) {
      this.endWithError(
        ctx,
        out,
        new GatewayError('stream_timeout', `the stream exceeded this product's limit of ${out.maxStreamSeconds} seconds`),
      );
    } else if (error instanceof ClientAbortedError || ctx.abort.aborted) {
      ctx.fail('client_abort', 499);
    } else {
      this.endWithError(
        ctx,
        out,
        error instanceof UpstreamError
          ? error.toGatewayError()
          : error instanceof GatewayError
            ? error
            : new GatewayError('internal_error', 'internal error while streaming'),
      );
    }
  }

  /**
   * A stream that failed after its first byte (no retry or fallback is possible then) gets a line
   * beside its audit line, as a failed attempt does before it: a WARNING for the upstream's failure
   * (cut, an error event, an answer keygate cannot read; its kind and status, never what it said),
   * an ERROR with the stack for keygate's own.
   */
  private logStreamFailure(ctx: RequestContext, error: unknown, eventsSent: number): void {
    if (error instanceof UpstreamError) {
      this.logger.write('WARNING', 'upstream stream failed after its first byte', {
        provider: error.provider,
        model: ctx.model,
        failure: error.kind,
        upstreamStatus: error.status ?? null,
        eventsSent,
      });
    } else if (!(error instanceof GatewayError)) {
      this.logger.write('ERROR', 'internal error while streaming', {
        error: error instanceof Error ? error.name : typeof error,
        stack: error instanceof Error ? error.stack : undefined,
      });
    }
  }

  private endWithError(ctx: RequestContext, out: SseStream, error: GatewayError): void {
    ctx.fail(error.spec.failure, error.status);
    // The id the client was given in `request-id` (Anthropic's own, passed on), else keygate's.
    const given = out.res.getHeader('request-id');
    endStream(out.res, out.take() + out.dialect.errorEvent(error, out.position(typeof given === 'string' ? given : ctx.requestId)));
  }
}

/** The reply's headers without the unset ones, for a raw `writeHead`. */
function definedHeaders(headers: Record<string, number | string | string[] | undefined>): Record<string, number | string | string[]> {
  const out: Record<string, number | string | string[]> = {};
  for (const [name, value] of Object.entries(headers)) if (value !== undefined) out[name] = value;
  return out;
}
