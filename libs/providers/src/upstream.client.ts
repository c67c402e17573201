import { EventEmitter } from 'node:events';
import { Inject, Injectable, type OnApplicationShutdown } from '@nestjs/common';
import { GatewayConfig } from '@keygate/config';
import { MetricsService, type AbortSource } from '@keygate/observability';
import { Agent, type Dispatcher } from 'undici';
import { AnswerBudget } from './answer-budget';
import { UpstreamError } from './upstream.error';

/** Thrown when the caller went away; not an upstream failure. */
export class ClientAbortedError extends Error {
  constructor() {
    super('client disconnected');
    this.name = 'ClientAbortedError';
  }
}

/** One upstream HTTP request. */
export interface UpstreamRequest {
  provider: string;
  url: string;
  headers: Record<string, string>;
  body?: string;
  method?: 'GET' | 'POST' | 'DELETE';
  /** Aborted when the client disconnects. */
  signal: AbortSource;
}

/** A response whose headers arrived; the body is still to be read (or streamed). */
export interface UpstreamResponse {
  statusCode: number;
  headers: Dispatcher.ResponseData['headers'];
  body: Dispatcher.ResponseData['body'];
  /** Aborted on client disconnect or when the total timeout expires; tells the two apart. */
  signal: UpstreamSignal;
  /** What a body read whole is counted against (absent: not counted). */
  answerBudget?: AnswerBudget;
}

/** The combined abort signal of one upstream call and which cause fired. */
export interface UpstreamSignal {
  readonly signal: AbortSignal;
  clientAborted(): boolean;
  timedOut(): boolean;
  dispose(): void;
}

const CONNECT_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EPIPE',
  // Node's happy-eyeballs connect (autoSelectFamily) gives up with an AggregateError of this code,
  // often before undici's own connect timeout; a socket whose retransmissions timed out, too.
  'ETIMEDOUT',
  'UND_ERR_SOCKET',
  'UND_ERR_CLOSED',
]);

/** Distinct upstream URLs remembered; configured models × providers stay well below it. */
const URL_CACHE_SIZE = 1024;

/**
 * The keep-alive connection pool to every upstream (one undici Agent, one pool per origin), with
 * SPEC §2's timeouts: connect, first byte (headers), idle between body chunks, and total.
 */
@Injectable()
export class UpstreamClient implements OnApplicationShutdown {
  private readonly agent: Agent;
  private readonly totalMs: number;
  private readonly urlParts = new Map<string, { origin: string; path: string }>();
  /** The bytes of whole answers being read at once, across requests. */
  readonly answerBudget: AnswerBudget;

  constructor(
    @Inject(GatewayConfig) config: GatewayConfig,
    private readonly metrics: MetricsService,
  ) {
    const t = config.upstream;
    this.totalMs = t.totalMs;
    this.answerBudget = new AnswerBudget(config.bufferedAnswerBytes);
    let waitsSeen = 0;
    metrics.probe((m) => {
      m.bufferedAnswerBytes.set(this.answerBudget.held);
      m.bufferedAnswerWaits.inc(this.answerBudget.waits - waitsSeen);
      waitsSeen = this.answerBudget.waits;
    });
    this.agent = new Agent({
      connect: { timeout: t.connectMs },
      headersTimeout: t.ttfbMs,
      bodyTimeout: t.idleMs,
      keepAliveTimeout: 30_000,
      keepAliveMaxTimeout: 120_000,
    });
  }

  /** Sends a request and resolves once response headers arrive. Throws {@link UpstreamError} or {@link ClientAbortedError}. */
  async send(req: UpstreamRequest): Promise<UpstreamResponse> {
    const signal = this.signalFor(req.signal);
    const started = process.hrtime.bigint();
    try {
      const { origin, path } = this.split(req.url);
      const res = await this.agent.request({
        origin,
        path,
        method: req.method ?? 'POST',
        headers: req.headers,
        body: req.body,
        signal,
      });
      this.metrics.upstreamTtfb.observe({ provider: req.provider }, Number(process.hrtime.bigint() - started) / 1e9);
      return { statusCode: res.statusCode, headers: res.headers, body: res.body, signal, answerBudget: this.answerBudget };
    } catch (error) {
      signal.dispose();
      const failure = toUpstreamError(error, req.provider, signal);
      if (failure instanceof UpstreamError) failure.beforeHeaders = true;
      throw failure;
    }
  }

  /**
   * A URL's origin and path. The URLs are the configured base URLs plus a provider's path (the
   * model name in Gemini's), so a small cache spares a WHATWG URL parse per request.
   */
  private split(url: string): { origin: string; path: string } {
    let parts = this.urlParts.get(url);
    if (!parts) {
      // The path exactly as the adapter wrote it (no WHATWG normalisation of what follows the host).
      const slash = url.indexOf('/', url.indexOf('//') + 2);
      parts = { origin: new URL(url).origin, path: slash < 0 ? '/' : url.slice(slash) };
      if (this.urlParts.size >= URL_CACHE_SIZE) this.urlParts.clear();
      this.urlParts.set(url, parts);
    }
    return parts;
  }

  /** Combines the client's signal with the total timeout, remembering which fired first. */
  private signalFor(client: AbortSource): CallSignal {
    return new CallSignal(client, this.totalMs);
  }

  async onApplicationShutdown(): Promise<void> {
    await this.agent.close();
  }
}

/**
 * One upstream call's abort signal: fired by the client's abort or the total timeout, whichever
 * comes first, with the same reasons an AbortController was aborted with. undici takes an
 * EventEmitter with `aborted` and `reason` as a request's signal; Node 20 makes an AbortController
 * and wires an EventTarget listener to it for several microseconds, on every upstream call. A real
 * AbortSignal is made only when asked for ({@link signal}: a large answer's read waiting on the
 * answer budget).
 */
class CallSignal extends EventEmitter implements UpstreamSignal {
  aborted = false;
  reason: unknown = undefined;
  private cause: 'client' | 'timeout' | null = null;
  private readonly timer: NodeJS.Timeout;
  private mirror: AbortController | undefined;
  private readonly onClient = (): void => this.fire('client', new ClientAbortedError());

  constructor(
    private readonly client: AbortSource,
    totalMs: number,
  ) {
    super();
    if (client.aborted) this.onClient();
    else client.addEventListener('abort', this.onClient, { once: true });
    this.timer = setTimeout(() => this.fire('timeout', new UpstreamError('total_timeout', 'upstream', 'total timeout')), totalMs);
    this.timer.unref();
  }

  /** An AbortSignal that aborts with this one (made on first use). */
  get signal(): AbortSignal {
    if (!this.mirror) {
      this.mirror = new AbortController();
      if (this.aborted) this.mirror.abort(this.reason);
    }
    return this.mirror.signal;
  }

  clientAborted(): boolean {
    return this.cause === 'client';
  }

  timedOut(): boolean {
    return this.cause === 'timeout';
  }

  dispose(): void {
    clearTimeout(this.timer);
    this.client.removeEventListener('abort', this.onClient);
  }

  private fire(cause: 'client' | 'timeout', reason: Error): void {
    this.cause ??= cause;
    if (this.aborted) return;
    this.aborted = true;
    this.reason = reason;
    this.mirror?.abort(reason);
    this.emit('abort');
  }
}

/** Maps a transport-level error (undici, socket, abort) to an upstream or client-abort error. */
export function toUpstreamError(error: unknown, provider: string, signal: UpstreamSignal): Error {
  if (error instanceof UpstreamError && error.kind !== 'total_timeout') return error;
  if (signal.clientAborted()) return new ClientAbortedError();
  if (signal.timedOut()) return new UpstreamError('total_timeout', provider, 'total timeout');
  const code = (error as { code?: string } | null)?.code ?? '';
  if (code === 'UND_ERR_CONNECT_TIMEOUT') return new UpstreamError('connect_timeout', provider, 'connect timeout');
  if (code === 'UND_ERR_HEADERS_TIMEOUT') return new UpstreamError('ttfb_timeout', provider, 'no response headers in time');
  if (code === 'UND_ERR_BODY_TIMEOUT') return new UpstreamError('idle_timeout', provider, 'no data in time');
  if (CONNECT_CODES.has(code) || CONNECT_CODES.has((error as { cause?: { code?: string } })?.cause?.code ?? '')) {
    return new UpstreamError('connect', provider, 'connection failed');
  }
  return new UpstreamError('protocol', provider, (error as Error)?.message ?? 'unknown transport error');
}
