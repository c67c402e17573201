import { AsyncLocalStorage } from 'node:async_hooks';
import type { FailureClass, GatewayError } from '@keygate/errors';

/** A context's `settled` before its handler runs, and once it is released. */
const SETTLED: Promise<void> = Promise.resolve();

/**
 * What listens for an abort: an AbortSignal, or a request's {@link RequestAbort} (which makes its
 * signal only when one is asked for).
 */
export interface AbortSource {
  readonly aborted: boolean;
  addEventListener(type: 'abort', listener: () => void, options?: { once?: boolean }): void;
  removeEventListener(type: 'abort', listener: () => void): void;
}

/** The AbortSignal of an abort source (a request's is made then, if it was not yet). */
export function abortSignalOf(source: AbortSource): AbortSignal {
  return source instanceof RequestAbort ? source.signal : (source as AbortSignal);
}

/**
 * A request's AbortController, whose AbortSignal is made only when something asks for it: Node 20
 * takes several microseconds to make one (its EventTarget, its prototype set after the fact), and
 * a request served without incident never needs it. Whether it was aborted is known without it,
 * and listeners added to it directly (an upstream call's, while it waits) are kept here until
 * the signal is made (moved onto it then, in the order they came) or the request is aborted (the
 * signal is made then, and the abort goes through it as it always did).
 */
export class RequestAbort implements AbortSource {
  private controller: AbortController | undefined;
  private waiting: Array<[() => void, { once?: boolean } | undefined]> | undefined;

  get signal(): AbortSignal {
    return this.made().signal;
  }

  get aborted(): boolean {
    return this.controller?.signal.aborted ?? false;
  }

  /** Aborts the signal (made now, with the listeners waiting: the abort reaches them through it). */
  abort(reason?: unknown): void {
    this.made().abort(reason);
  }

  addEventListener(type: 'abort', listener: () => void, options?: { once?: boolean }): void {
    if (this.controller) return this.controller.signal.addEventListener(type, listener, options);
    // As an EventTarget does: a listener already added is not added again.
    if (this.waiting?.some(([added]) => added === listener)) return;
    (this.waiting ??= []).push([listener, options]);
  }

  removeEventListener(type: 'abort', listener: () => void): void {
    if (this.controller) return this.controller.signal.removeEventListener(type, listener);
    const i = this.waiting?.findIndex(([added]) => added === listener) ?? -1;
    if (i >= 0) this.waiting?.splice(i, 1);
  }

  private made(): AbortController {
    if (!this.controller) {
      this.controller = new AbortController();
      const waiting = this.waiting;
      this.waiting = undefined;
      if (waiting) for (const [listener, options] of waiting) this.controller.signal.addEventListener('abort', listener, options);
    }
    return this.controller;
  }
}

/** Tokens billed, as the audit records them (null: not known, or not said by the upstream). */
export interface TokenCounts {
  tokensIn: number | null;
  tokensOut: number | null;
  /** Of `tokensIn`, those read from the provider's prompt cache. */
  tokensCached: number | null;
  /** Of `tokensIn`, those written to the provider's prompt cache (Anthropic). */
  tokensCacheWrite: number | null;
  /** Of `tokensCacheWrite`, those written for an hour (Anthropic). */
  tokensCacheWrite1h: number | null;
  /** Of `tokensOut`, those the model spent reasoning. */
  tokensReasoning: number | null;
}

/** An attempt before a request's last that it is billed for, and the model it went to (priced at that model's price). */
export interface EarlierAttempt extends TokenCounts {
  model: string;
}

const TOKEN_FIELDS = ['tokensIn', 'tokensOut', 'tokensCached', 'tokensCacheWrite', 'tokensCacheWrite1h', 'tokensReasoning'] as const;

/**
 * Everything known about one request, filled in as it moves along the path and read once by the
 * audit writer when the response closes. One object per request, created by the HTTP hook.
 */
export class RequestContext {
  product: string | null = null;
  user: string | null = null;
  /** The model that answered (a fallback may differ from the one requested). */
  model: string | null = null;
  /** The model the client asked for. */
  requestedModel: string | null = null;
  provider: string | null = null;
  stream = false;
  tokensIn: number | null = null;
  tokensOut: number | null = null;
  /** Of {@link tokensIn}, those read from the provider's prompt cache; null when the upstream did not say. */
  tokensCached: number | null = null;
  /** Of {@link tokensIn}, those written to the provider's prompt cache (Anthropic); null when it did not say. */
  tokensCacheWrite: number | null = null;
  /** Of {@link tokensCacheWrite}, those written for an hour (Anthropic); null when it did not say. */
  tokensCacheWrite1h: number | null = null;
  /** Of {@link tokensOut}, those the model spent reasoning; null when the upstream did not say. */
  tokensReasoning: number | null = null;
  /**
   * Attempts before the last that the request is billed for (attempts keygate cut while the upstream
   * was answering them, then retried or fell back): their tokens are in the counts above
   * ({@link billEarlierAttempts}), and each is priced at its own model's price. Null when none.
   */
  earlierAttempts: EarlierAttempt[] | null = null;
  /** What the tokens cost in US dollars at the configured prices; set when the audit line is written, null without a price. */
  costUsd: number | null = null;
  /** HTTP status answered; set by whoever answers ({@link answer}, {@link fail}). */
  status = 0;
  failure: FailureClass | null = null;
  /** Upstream attempts made (retries and fallbacks included). */
  attempts = 0;
  /**
   * The same by provider, once one is counted through {@link countAttempt}: a fallback to another
   * provider's model makes attempts to two providers, and each is counted under its own.
   */
  attemptsByProvider: Map<string, number> | null = null;
  /**
   * Whether the request was aborted (the client left, keygate ended it) while one of its counted
   * attempts was under way: the abort failed that attempt, and the upstream may have read, and
   * billed, the prompt by then. Aborted in the wait between two attempts, no upstream was working
   * on it. An abort that lands as an attempt fails on its own counts as under way (the safe side).
   */
  abortedInFlight = false;
  /** Resolves when the handler has finished with the upstream (so aborted streams count usage). */
  settled: Promise<void> = SETTLED;
  /** Set once the audit line is written: guarantees exactly one. */
  audited = false;
  /** Upstream attempts started and not yet settled ({@link startAttempt}); null until one starts. */
  private underWay: Array<string | null> | null = null;
  /** Run once when the response has closed ({@link atEnd}); null until one is added. */
  private endHooks: Array<() => void> | null = null;
  private ended = false;
  /**
   * Aborted when the client disconnects before the response finished, or when keygate ends the
   * request ({@link endedBy}).
   */
  readonly abort = new RequestAbort();
  /**
   * Set when keygate ends the request before it finished, with the error the client is told: the
   * drain deadline passed (503), or a block now covers its caller (403). The request is ended by
   * keygate, not by the client: a JSON answer not yet sent is this error, a stream ends with it as
   * its error event, and the audit line records it (never `client_abort`).
   */
  endedBy: GatewayError | null = null;
  /**
   * Gives the request back to the daily request caps; set when the limits admitted it, called
   * when it is refused before any upstream attempt (invalid body, policy, unknown model, quota).
   */
  releaseDailyCount: (() => void) | null = null;
  /**
   * Adds what the request cost (US dollars, its audit's `cost_usd`; 0 for none) to the day's cost
   * totals of its product and user (`/admin/usage`), in the store and day the limits counted it in;
   * set with {@link releaseDailyCount}, called once when the audit line is written, whatever the
   * request cost. A request that reserved its cost against a budget settles that reservation to it
   * (all of it given back for a request that cost nothing). Nothing once the request was given back
   * to the day (without a reservation).
   */
  chargeDailyCost: ((usd: number) => void) | null = null;
  /**
   * The route the router matched, as declared (`/v1/messages`), whatever spelling of it the client
   * sent (percent-escapes such as `/v1/%6dessages`); undefined when no route matched.
   */
  route: string | undefined = undefined;
  /**
   * The request speaks Anthropic's API: its credential may come in `x-api-key` and its errors use
   * Anthropic's envelope. Set on arrival from the route (and, on a route both APIs share, the client's headers).
   */
  anthropic = false;
  /**
   * The request speaks Google's Gemini API (a path under `/v1beta`): its credential may come in
   * `x-goog-api-key` and its errors use Google's envelope. Set on arrival from the route or path.
   */
  google = false;

  constructor(
    readonly requestId: string,
    readonly method: string,
    readonly path: string,
    /** `process.hrtime.bigint()` at arrival. */
    readonly startedAt: bigint,
    /** Cloud Trace id and span, when the caller sent `traceparent` or `X-Cloud-Trace-Context`. */
    readonly trace: { traceId: string; spanId?: string; sampled?: boolean } | null,
    /** Whether this request gets an audit line (SPEC §7: `/v1/*` and `/chat/*`). */
    readonly auditable: boolean,
  ) {}

  /**
   * Runs `hook` once the request's response has closed, sent or not (at once if it has): for what
   * the request holds until then, such as an upstream answer's bytes.
   */
  atEnd(hook: () => void): void {
    if (this.ended) hook();
    else (this.endHooks ??= []).push(hook);
  }

  /** The response has closed: runs the {@link atEnd} hooks (the request lifecycle calls it once). */
  end(): void {
    if (this.ended) return;
    this.ended = true;
    const hooks = this.endHooks;
    this.endHooks = null;
    if (hooks) for (const hook of hooks) hook();
  }

  /**
   * The audit line is written: drops what the request's handling left here. A context outlives its
   * request (a kept-alive connection's timer holds the async context it was armed in, up to the
   * 620 s keep-alive), and these held the request: a handler's rejection (`settled`) keeps the
   * frames of its stack, and with them the request and its body; the limits' closures keep its
   * response. What the audit line says stays.
   */
  release(): void {
    this.settled = SETTLED;
    this.releaseDailyCount = null;
    this.chargeDailyCost = null;
  }

  /**
   * Bills the request for attempts before its last (see {@link earlierAttempts}): their tokens are
   * added to the request's, the last attempt's (or nothing) counted so far. Each count stays null
   * (not known) only when neither the request nor any of these attempts said it.
   */
  billEarlierAttempts(attempts: readonly EarlierAttempt[]): void {
    if (attempts.length === 0) return;
    for (const field of TOKEN_FIELDS) {
      let sum = this[field];
      for (const attempt of attempts) {
        const count = attempt[field];
        if (count !== null) sum = (sum ?? 0) + count;
      }
      this[field] = sum;
    }
    (this.earlierAttempts ??= []).push(...attempts);
  }

  /** Counts one upstream attempt, made to `provider`. */
  countAttempt(provider: string): void {
    this.attempts++;
    const byProvider = (this.attemptsByProvider ??= new Map());
    byProvider.set(provider, (byProvider.get(provider) ?? 0) + 1);
  }

  /**
   * An upstream attempt has started, to `provider` (or to the request's provider, when it is named
   * later): counted when it settles ({@link endAttempt}, then {@link countAttempt}), or by
   * {@link countAttemptsUnderWay} before then.
   */
  startAttempt(provider: string | null): void {
    (this.underWay ??= []).push(provider);
  }

  /** An attempt {@link startAttempt} began has settled. */
  endAttempt(provider: string | null): void {
    const i = this.underWay?.indexOf(provider) ?? -1;
    if (i >= 0) this.underWay?.splice(i, 1);
  }

  /**
   * Counts the attempts started and not yet settled, for an audit line written before they could
   * settle (the process crashing, or the drain's last-resort exit): the upstream has the request.
   */
  countAttemptsUnderWay(): void {
    const underWay = this.underWay;
    this.underWay = null;
    if (underWay) for (const provider of underWay) this.countAttempt(provider ?? this.provider ?? 'none');
  }

  /**
   * Marks the request as failed with a class and status, unless an earlier failure was recorded:
   * the first one is what happened (a client gone mid-upload stays a 499, whatever error the
   * unfinished body then raises).
   */
  fail(failure: FailureClass, status: number): void {
    if (this.failure !== null) return;
    this.failure = failure;
    this.status = status;
  }

  /**
   * Records the status of the answer about to go out, unless the request already failed: a client
   * that left while its answer was being made (the upstream's arrived as it went) stays a 499 with
   * `client_abort`, never a 200 beside that failure.
   */
  answer(status: number): void {
    if (this.failure === null) this.status = status;
  }
}

/** The request context of the code running now, for log lines written deep in a call. */
export const requestContextStorage = new AsyncLocalStorage<RequestContext>();

const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;
/**
 * What a credential starts with (provider keys, a Google access token, a JWT): an id shaped so is
 * a key pasted into the wrong header, and the request id is written unmasked on every line.
 */
const CREDENTIAL_SHAPED = /^(?:(?:sk|rk|pk)-|AIza|ya29\.|eyJ)/;

/** A caller's `X-Request-Id` when it is sane (and not shaped like a credential), else a fresh UUID. */
export function pickRequestId(header: string | string[] | undefined, generate: () => string): string {
  return typeof header === 'string' && REQUEST_ID.test(header) && !CREDENTIAL_SHAPED.test(header) ? header : generate();
}

/**
 * W3C `traceparent`: version, trace id, parent (span) id, flags, in lowercase hex. Version `00` has
 * exactly these four fields; a later version may add fields after a `-`, and is read for these four
 * (Trace Context §3.2.4); version `ff` is invalid.
 */
const TRACEPARENT = /^([\da-f]{2})-([\da-f]{32})-([\da-f]{16})-([\da-f]{2})(-.*)?$/;
const CLOUD_TRACE = /^([\da-fA-F]{32})(?:\/(\d{1,20}))?(?:;o=([01]))?$/;

/** Parses W3C `traceparent`, else `X-Cloud-Trace-Context`; all-zero ids are invalid. */
export function parseTrace(traceparent: string | string[] | undefined, cloudTrace: string | string[] | undefined): RequestContext['trace'] {
  if (typeof traceparent === 'string') {
    const m = TRACEPARENT.exec(traceparent.trim());
    const valid = m && m[1] !== 'ff' && (m[1] !== '00' || m[5] === undefined);
    if (valid && !/^0+$/.test(m[2]) && !/^0+$/.test(m[3])) {
      return { traceId: m[2], spanId: m[3], sampled: (Number.parseInt(m[4], 16) & 1) === 1 };
    }
  }
  if (typeof cloudTrace === 'string') {
    const m = CLOUD_TRACE.exec(cloudTrace.trim());
    if (m && !/^0+$/.test(m[1])) {
      // A span id is 64 bits, not zero; another decimal number names no span (Cloud Logging refuses it).
      const span = m[2] ? BigInt(m[2]) : 0n;
      const spanId = span > 0n && span < 1n << 64n ? span.toString(16).padStart(16, '0') : undefined;
      return { traceId: m[1].toLowerCase(), spanId, sampled: m[3] === undefined ? undefined : m[3] === '1' };
    }
  }
  return null;
}

const CONTEXT = Symbol('keygate.requestContext');

/** Attaches the context to the raw request object (one property, no map lookups). */
export function attachContext(raw: object, ctx: RequestContext): void {
  (raw as Record<symbol, RequestContext>)[CONTEXT] = ctx;
}

/** The context attached to a raw request, if any. */
export function contextOf(raw: object): RequestContext | undefined {
  return (raw as Record<symbol, RequestContext | undefined>)[CONTEXT];
}
