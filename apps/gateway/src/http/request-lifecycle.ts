import { randomUUID } from 'node:crypto';
import type { ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { Inject, Injectable } from '@nestjs/common';
import { AuditService } from '@keygate/audit';
import { CredentialGuard } from '@keygate/auth';
import { GatewayConfig } from '@keygate/config';
import { GatewayError, type FailureClass } from '@keygate/errors';
import { LifecycleState } from '@keygate/health';
import { blockedError, BlocksService } from '@keygate/limits';
import {
  attachContext,
  contextOf,
  MetricsService,
  parseTrace,
  pickRequestId,
  RequestContext,
  requestContextStorage,
  type RequestLabels,
} from '@keygate/observability';
import { SecretsService } from '@keygate/secrets';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { isGoogleRequest, speaksGoogle } from '../gemini/google-errors';
import { isAnthropicRequest, speaksAnthropic } from '../messages/anthropic-errors';
import { errorBodyFor } from './error-envelope';

/**
 * Claude Code (`ANTHROPIC_API_KEY`, a key helper) and older Anthropic SDKs send their key in `x-api-key`: on
 * a request that speaks Anthropic's API a token there is read as the bearer token, when no `Authorization` came.
 */
function adoptAnthropicKey(request: FastifyRequest): void {
  const key = request.headers['x-api-key'];
  if (request.headers.authorization === undefined && typeof key === 'string' && key !== '') request.headers.authorization = `Bearer ${key}`;
}

/**
 * `@google/genai` and Gemini CLI (`GEMINI_API_KEY`) send their key in `x-goog-api-key`: on a request
 * that speaks Google's API a token there is read as the bearer token, when no `Authorization` came.
 */
function adoptGoogleKey(request: FastifyRequest): void {
  const key = request.headers['x-goog-api-key'];
  if (request.headers.authorization === undefined && typeof key === 'string' && key !== '') request.headers.authorization = `Bearer ${key}`;
}

/** Status recorded when the client went away before the response finished (nginx's convention). */
export const CLIENT_CLOSED_REQUEST = 499;
const REQUEST_TIMEOUT = 408;
const BAD_REQUEST = 400;

/** SPEC §7's audited paths (see {@link isAudited}), and Gemini's own API under /v1beta. */
// Leading slashes doubled (`//v1/…`, a base URL ending in `/`) name the same API: no route takes it (404), audited all the same.
const AUDITED = /^\/+(v1|v1beta|chat)\//;
/** The route `@fastify/cors` registers for every preflight (`OPTIONS *`). */
const CORS_PREFLIGHT_ROUTE = '*';
/** Gemini's streaming method, at the end of its path. */
const STREAM_ACTION = /:streamGenerateContent$/i;
/** The scheme and authority of an absolute-form request target (`POST http://host/v1/...`). */
const ABSOLUTE_FORM = /^[a-z][a-z\d+.-]*:\/\/[^/?#]*/i;
/** Answered while draining: probes must keep telling the truth, and a scrape may still read the counters. */
const SERVED_WHILE_DRAINING = new Set(['/healthz', '/readyz', '/metrics']);
/**
 * How long the requests keygate tells to end (at the drain deadline, or when a block comes) get to
 * end by themselves (a stream writes its error event, a handler winds down its upstream call)
 * before keygate ends their responses itself: a request whose body is still arriving, or a client
 * that stopped reading, would otherwise never close.
 */
const END_GRACE_MS = 1_000;

/** What a request still open at the drain deadline is told (see {@link RequestLifecycle.endAll}). */
function drainDeadlineError(): GatewayError {
  return new GatewayError(
    'service_unavailable',
    'keygate is shutting down: the request was ended at the end of the drain period; retry it',
    {
      retryAfterSeconds: 1,
    },
  );
}

/**
 * Owns each request's life from arrival to the audit line. A Fastify `onRequest` hook (the first
 * thing that runs, before body parsing and authentication) creates the context, so rejections at
 * every later stage are audited; the raw response's `close` event, which fires exactly once for a
 * finished response and for a dropped connection alike, writes the one audit record.
 */
@Injectable()
export class RequestLifecycle {
  /** Requests whose response has not closed yet, with their reply (its request and raw response). */
  private readonly open = new Map<RequestContext, FastifyReply>();
  /**
   * Requests whose response closed and whose audit line waits for the handler to wind down its
   * upstream call, each with the promise that writes it (one map: every request passes through it).
   */
  private readonly settling = new Map<RequestContext, Promise<void>>();
  /** Connections whose close is watched (one listener a connection, for its pipelined requests: see onSocketClose). */
  private readonly watched = new WeakSet<Socket>();
  /**
   * Connections already refused for a late or malformed request: Node reports the parser's error
   * again for every chunk the client goes on sending, which must not refuse (and add listeners) again.
   */
  private readonly refused = new WeakSet<Socket>();
  /** How long an answer's client may stop reading it (see {@link watchDelivery}). */
  private readonly readIdleMs: number;

  constructor(
    @Inject(GatewayConfig) config: GatewayConfig,
    private readonly audit: AuditService,
    private readonly metrics: MetricsService,
    private readonly state: LifecycleState,
    private readonly secrets: SecretsService,
    private readonly credentials: CredentialGuard,
    private readonly blocks: BlocksService,
  ) {
    this.readIdleMs = config.requestTimeoutSeconds * 1000;
    blocks.onBlocked(() => this.endBlocked());
  }

  /** Requests whose response has not closed yet. */
  get active(): number {
    return this.open.size;
  }

  /**
   * The drain deadline passed: ends every request still open (streams with an SSE error event,
   * others with a 503) and resolves once each has its audit line.
   */
  async endAll(): Promise<void> {
    for (const ctx of this.open.keys()) {
      ctx.endedBy ??= drainDeadlineError();
      ctx.abort.abort();
    }
    const forceAt = Date.now() + END_GRACE_MS;
    let forced = false;
    while (this.open.size || this.settling.size) {
      if (!forced && Date.now() >= forceAt) {
        forced = true;
        for (const [ctx, reply] of this.open) {
          // One whose body was still arriving never reached the guard: its audit line names the
          // caller its headers prove, as the drain's and the request timeout's refusals do.
          this.credentials.nameCallerBeforeAudit(reply.request);
          endResponse(ctx, reply.raw, ctx.endedBy ?? drainDeadlineError());
        }
      }
      await Promise.race([...this.settling.values(), new Promise((r) => setTimeout(r, 50))]);
    }
  }

  /**
   * The process exits before the requests not yet audited could end (a crash, or the drain's
   * last-resort exit when a request does not wind down): each gets its audit line now, with what
   * it used so far (SPEC §7: one line per request whatever its outcome; their tokens are what
   * chargeback reads), an upstream attempt still under way counted among its attempts. One still open is an `internal` 500 unless it failed already (its client
   * loses the connection with the process); one whose response closed keeps the outcome recorded then.
   */
  auditUnfinished(): void {
    for (const ctx of this.open.keys()) {
      ctx.fail('internal', 500);
      ctx.countAttemptsUnderWay();
      this.audit.record(ctx, this.labels(ctx));
    }
    for (const ctx of this.settling.keys()) {
      ctx.countAttemptsUnderWay();
      this.audit.record(ctx, this.labels(ctx));
    }
  }

  /**
   * A block came into force on this replica: the requests in flight it covers end now (SPEC §6's
   * "immediate" applies to what is running too: a runaway stream or agent loop is stopped, not left
   * to finish). Each is told as the guard tells a new request (403 `blocked`): a stream with its
   * dialect's error event, an answer not sent yet as the error itself. The upstream call is
   * aborted, and the tokens used so far are charged and audited as for any ended request. Which
   * requests the blocks cover is the guard's own test ({@link BlocksService.find}); only requests
   * whose caller is known (past the credential guard) and that are audited (the API routes, not the
   * operator's) are looked at.
   */
  private endBlocked(): void {
    for (const [ctx, reply] of this.open) {
      if (!ctx.auditable || ctx.endedBy || ctx.product === null || ctx.user === null) continue;
      const block = this.blocks.find(ctx.product, ctx.user);
      if (!block) continue;
      const error = blockedError(block, ctx.product, ctx.user);
      ctx.endedBy = error;
      ctx.abort.abort();
      // One that does not end by itself in time (a body still arriving, a client not reading) is ended here.
      setTimeout(() => {
        if (this.open.has(ctx)) endResponse(ctx, reply.raw, error);
      }, END_GRACE_MS).unref();
    }
  }

  /**
   * `securityHeaders`: every answer's (helmet's), which an onRequest hook registered before this
   * one sets; a request that skipped the onRequest hooks (below) gets them here.
   */
  install(fastify: FastifyInstance, securityHeaders: ReadonlyArray<readonly [string, string]>): void {
    fastify.addHook('onRequest', (request, reply, done) => {
      const ctx = this.begin(request, reply);
      if (this.state.shuttingDown && !SERVED_WHILE_DRAINING.has(ctx.path)) return this.refuseWhileDraining(ctx, reply);
      // RFC 9112 §3.2: an HTTP/1.1 request without Host is a 400. Node's own answer to it (turned
      // off in bootstrap) is a bare 400 that no hook sees, so the request would go unaudited.
      if (request.raw.httpVersion === '1.1' && request.headers.host === undefined)
        return this.refuseHost(ctx, reply, 'an HTTP/1.1 request needs a Host header');
      // And one with several (§3.2 again): Node keeps the first, which the URLs keygate writes
      // (RFC 9728's) are built from, while a proxy in front may have routed by another.
      if (request.headers.host !== undefined && repeatedHeader(request.raw.rawHeaders, 'host'))
        return this.refuseHost(ctx, reply, 'send one Host header');
      // A compressed body would only fail later as "not valid JSON" (and HMAC signs the bytes sent).
      const encoding = request.headers['content-encoding'];
      const hasBody = (request.headers['content-length'] ?? '0') !== '0' || request.headers['transfer-encoding'] !== undefined;
      if (encoding !== undefined && hasBody && encoding.trim().toLowerCase() !== 'identity')
        return this.refuseNamingCaller(
          ctx,
          reply,
          new GatewayError('invalid_request', `Content-Encoding ${encoding.slice(0, 32)} is not supported; send the body uncompressed`),
        );
      // Node's parser decodes the chunked framing only: a body also gzip-coded in transfer would arrive compressed.
      const transfer = request.headers['transfer-encoding'];
      if (transfer !== undefined && transfer.trim().toLowerCase() !== 'chunked')
        return this.refuseNamingCaller(
          ctx,
          reply,
          new GatewayError(
            'invalid_request',
            `Transfer-Encoding ${transfer.slice(0, 32)} is not supported; send the body chunked or with a Content-Length`,
          ),
        );
      // RFC 9112 §3.2: a request target has no fragment (clients strip it); Node's parser lets one through.
      if (request.raw.url?.includes('#'))
        return this.refuseNamingCaller(ctx, reply, new GatewayError('invalid_request', 'the request target may not carry a fragment (#…)'));
      // One credential per request (RFC 9110 §11.6.2), on the routes that read one. (Such a refusal
      // names no caller: which of its credentials would it be?)
      const credentials =
        ctx.auditable || routedPath(ctx.path).startsWith('/admin/')
          ? credentialProblem(request, isAnthropicRequest(ctx), isGoogleRequest(ctx))
          : undefined;
      if (credentials) return refuse(ctx, reply, credentials);
      if (isAnthropicRequest(ctx)) adoptAnthropicKey(request);
      if (isGoogleRequest(ctx)) adoptGoogleKey(request);
      done();
    });
    // The rest of the request (Nest's guards, pipes, handler and exception filter) runs in the
    // request's context, so every line written while serving it carries its id and trace: a JWKS
    // fetch a guard starts, an internal error the filter logs. The context set in onRequest does not
    // reach here: the body is read on the socket's events, outside it.
    // A request without one began here: Nest's adapter sends a target that is not in origin form
    // (`OPTIONS *`, which the CORS plugin's route takes) to the not-found handler from an onRequest
    // hook of its own, registered before the one above and the security headers', and only
    // preHandler hooks run then.
    fastify.addHook('preHandler', (request, reply, done) => {
      let ctx = contextOf(request.raw);
      if (!ctx) {
        for (const [name, value] of securityHeaders) reply.raw.setHeader(name, value);
        ctx = this.begin(request, reply);
      }
      requestContextStorage.run(ctx, done);
    });
  }

  /**
   * Starts a request's life: its context, its `X-Request-Id`, and the audit when it closes. Called
   * by the `onRequest` hook, and for a request Fastify's router turns away before any hook runs
   * (see {@link refuseUnroutable}).
   */
  begin(request: FastifyRequest, reply: FastifyReply): RequestContext {
    const raw = request.raw;
    const path = requestPath(request.url);
    // What the request is, read from its path as the router reads it (`/%761/no-such` and
    // `/V1/models`, which no route takes, are /v1 requests all the same) and from the route matched
    // (a CORS preflight's route is the wildcard `*`: its path decides).
    const routed = routedPath(path);
    const route = request.routeOptions?.url;
    const ctx = new RequestContext(
      pickRequestId(raw.headers['x-request-id'], randomUUID),
      request.method,
      path,
      process.hrtime.bigint(),
      parseTrace(raw.headers.traceparent, raw.headers['x-cloud-trace-context']),
      isAudited(routed, route),
    );
    ctx.route = route;
    // The CORS plugin's route takes every OPTIONS path: a preflight speaks the API of its path, as
    // a path no route takes does (its refusals then come in Anthropic's or Google's envelope).
    const apiRoute = route === CORS_PREFLIGHT_ROUTE ? undefined : route;
    ctx.anthropic = speaksAnthropic(apiRoute, routed, raw.headers);
    ctx.google = speaksGoogle(apiRoute, routed);
    // Gemini's streaming route says so in its path, not its body: audited as a stream whatever refuses it.
    if (ctx.google && STREAM_ACTION.test(route ?? routed)) ctx.stream = true;
    attachContext(raw, ctx);
    this.open.set(ctx, reply);
    // Set on the raw response so hijacked (streamed) replies carry it too.
    reply.raw.setHeader('x-request-id', ctx.requestId);
    // Anthropic's clients read theirs from `request-id` (the SDKs' `_request_id`); an Anthropic
    // upstream's own, passed on with its answer, takes its place.
    if (ctx.anthropic) reply.raw.setHeader('request-id', ctx.requestId);
    // The connection now: a keep-alive response is detached from it once finished.
    const socket = raw.socket;
    reply.raw.once('close', () => this.onClose(ctx, reply.raw, socket));
    reply.raw.once('prefinish', () => watchDelivery(reply.raw, this.readIdleMs));
    if (socket && !this.watched.has(socket)) {
      this.watched.add(socket);
      this.watchSocket(socket);
    }
    return ctx;
  }

  /**
   * Watches a connection's close (see {@link onSocketClose}). Its listener is made here, not in
   * {@link begin}: a closure there shares begin's scope with the response's listeners, which hold
   * the request and its reply, so the connection kept its first request (the body of it, up to the
   * largest a policy allows) for as long as it lived: up to the 620 s keep-alive once idle, for
   * ever under steady use.
   */
  private watchSocket(socket: Socket): void {
    socket.once('close', () => this.onSocketClose(socket));
  }

  /**
   * A connection closed with requests pipelined on it whose responses never got it (queued behind an
   * earlier answer that closed the connection, or cut with it): Node never closes such a response, so
   * they end here as requests whose client left (499, the upstream call aborted, the audit line
   * written) instead of staying open for ever (no audit line, their memory held, the drain blocked).
   */
  private onSocketClose(socket: Socket): void {
    for (const [ctx, reply] of this.open) {
      if (reply.request.raw.socket === socket && reply.raw.socket !== socket) this.onClose(ctx, reply.raw, socket);
    }
  }

  /**
   * The request on `socket` whose body is still arriving (the one Node's parser is on), with its
   * reply: a request pipelined behind others on the connection, whose answers are still to come,
   * is not the one to blame.
   */
  private arriving(socket: Socket): [RequestContext, FastifyReply] | undefined {
    for (const entry of this.open) if (entry[1].request.raw.socket === socket && !entry[1].request.raw.complete) return entry;
    return undefined;
  }

  /**
   * Ends a refused request whose body did not arrive whole, with the connection: at once when its
   * answer is the connection's current one, else once its answer (queued behind those of requests
   * before it, which are still answered) is written.
   */
  private closeAfter(res: ServerResponse, socket: Socket): void {
    if (res.socket === socket) socket.destroySoon();
    else res.once('finish', () => socket.destroySoon());
  }

  /**
   * Fastify's `frameworkErrors`: a target its router cannot take (a malformed percent-escape, a
   * path parameter over its length limit) is refused before any hook runs, with Fastify's own
   * body and no audit. It gets the contract's 400 and its audit line here instead.
   */
  refuseUnroutable(error: Error & { code?: string }, request: FastifyRequest, reply: FastifyReply): void {
    const ctx = this.begin(request, reply);
    refuse(ctx, reply, new GatewayError('invalid_request', unroutable(error.code, request.raw.url)));
  }

  /**
   * Node's request timeout hit a request whose body was still arriving (the client took longer than
   * `API_KEY_SERVER_REQUEST_TIMEOUT_SECONDS`): it gets the contract's 408 with its own
   * `X-Request-Id`, and its audit line says so (`timeout`, 408) rather than a client abort, and
   * names the caller its headers prove (a JWT or an IAP assertion; not an HMAC signature, which
   * covers the body). Returns false when the socket holds no such request (its headers never
   * arrived): bootstrap answers then.
   */
  refuseTimedOut(socket: Socket, answerNext: () => void): boolean {
    return this.refuseArriving(socket, answerNext, 'timeout', REQUEST_TIMEOUT, 'the request body did not arrive in time');
  }

  /**
   * Node's parser failed on a connection that has a request open. When a request's body was still
   * arriving, the error is in its body (malformed chunked framing): it is refused as itself, 400
   * with its own `X-Request-Id` and its audit line, not as a nameless parse error beside an audit
   * line that says the client left. Otherwise the error is in a request pipelined after those open,
   * which arrived whole: HTTP/1.1 answers in order, so `answerNext` (bootstrap's nameless 400, which
   * closes the connection) runs once their answers are written, instead of going first and leaving
   * them undelivered. Returns false when no request is open on the socket.
   */
  refuseMalformed(socket: Socket, answerNext: () => void): boolean {
    return this.refuseArriving(
      socket,
      answerNext,
      'bad_request',
      BAD_REQUEST,
      'the request body is not valid HTTP/1.1 (malformed chunked encoding)',
    );
  }

  /**
   * Refuses, as itself, the request on `socket` whose body is arriving (see refuseTimedOut and
   * refuseMalformed), or, when none is, runs `answerNext` after the answers of those open; once a
   * connection (Node reports a parser error again for every chunk that follows).
   */
  private refuseArriving(
    socket: Socket,
    answerNext: () => void,
    failure: 'timeout' | 'bad_request',
    status: number,
    message: string,
  ): boolean {
    if (this.refused.has(socket)) return true;
    const late = this.arriving(socket);
    if (!late) return this.answerAfterOpen(socket, answerNext);
    const [ctx, reply] = late;
    ctx.fail(failure, status);
    // The guard never ran (Fastify reads the body first).
    this.credentials.nameCallerBeforeAudit(reply.request);
    // A malformed body does not contradict a refusal recorded before it (a 413 held back while the
    // body drains: nothing more is written); a late one is answered 408 whatever was held back.
    const answer = failure === 'timeout' || ctx.status === status ? new GatewayError('invalid_request', message) : undefined;
    this.answerRefused(reply.raw, socket, answer, ctx, status);
    return true;
  }

  /**
   * Runs `answerNext` (a nameless answer that closes the connection) once the answers of the
   * requests open on `socket` are written; false when none is open there.
   */
  private answerAfterOpen(socket: Socket, answerNext: () => void): boolean {
    let last: ServerResponse | undefined;
    for (const [, reply] of this.open) if (reply.request.raw.socket === socket) last = reply.raw;
    if (!last) return false;
    this.refused.add(socket);
    if (last.writableFinished) answerNext();
    else last.once('finish', answerNext);
    return true;
  }

  /**
   * Writes a refusal (when one is given and nothing was sent yet) with `Connection: close`, and
   * closes the connection once it is flushed (after the answers queued before it): the response's
   * close event then audits the request.
   */
  private answerRefused(res: ServerResponse, socket: Socket, error: GatewayError | undefined, ctx: RequestContext, status: number): void {
    this.refused.add(socket);
    if (error && !res.headersSent) {
      const body = JSON.stringify(errorBodyFor(ctx, error));
      res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), connection: 'close' });
      res.end(body);
    }
    this.closeAfter(res, socket);
  }

  /**
   * A request that arrives during the drain on a connection kept alive from before (the listener
   * no longer accepts new ones) gets the contract's 503 and an audit line, and the connection is
   * closed so the client's next request goes to another replica.
   */
  private refuseWhileDraining(ctx: RequestContext, reply: FastifyReply): void {
    const error = new GatewayError('service_unavailable', 'keygate is shutting down; retry the request', { retryAfterSeconds: 1 });
    this.refuseNamingCaller(ctx, reply.header('retry-after', '1').header('connection', 'close'), error);
  }

  /**
   * A refusal before the guard runs (in the onRequest hook): its audit line names the caller the
   * headers prove (a JWT or an IAP assertion, not an HMAC signature, which covers the body).
   */
  private refuseNamingCaller(ctx: RequestContext, reply: FastifyReply, error: GatewayError): void {
    this.credentials.nameCallerBeforeAudit(reply.request);
    refuse(ctx, reply, error);
  }

  /**
   * The product and model labels of a request: only configured names, so neither a token's claim
   * nor a client's model name can grow the metrics without bound. A model served through a pattern (`gpt-4o*`, the legacy format's `*`)
   * is labelled with the pattern, not with whatever name the client sent.
   */
  private labels(ctx: RequestContext): RequestLabels {
    if (ctx.product === null) return { product: 'none', model: 'none' };
    const entry = this.secrets.product(ctx.product);
    if (!entry) return { product: 'unconfigured', model: 'none' };
    const model = ctx.provider && ctx.model !== null ? (entry.configuredModel(ctx.model) ?? 'other') : 'none';
    return { product: ctx.product, model };
  }

  private refuseHost(ctx: RequestContext, reply: FastifyReply, message: string): void {
    this.refuseNamingCaller(ctx, reply.header('connection', 'close'), new GatewayError('invalid_request', message));
  }

  private onClose(ctx: RequestContext, res: ServerResponse, socket: Socket | null): void {
    // Once: a pipelined request ended with its connection (onSocketClose) is not ended again.
    if (!this.open.delete(ctx)) return;
    ctx.end();
    if (!delivered(res, socket)) {
      // A response closed before it reached the client: the client left, unless keygate ended it
      // and said why first (a stream cut at its limit or by the drain, the drain's 503): the first
      // failure recorded stands. A client leaving during the drain's grace is a client abort too,
      // and so is one that left before hearing a refusal keygate held back (a 413 waiting for the
      // body to drain): it heard no reason.
      if (!res.headersSent) ctx.failure = null;
      ctx.fail('client_abort', CLIENT_CLOSED_REQUEST);
      ctx.abort.abort();
    } else if (ctx.status === 0) {
      ctx.status = res.statusCode;
    }
    // An error answered outside keygate's filter (a plugin's own reply) still gets its class (SPEC §7).
    if (ctx.failure === null && ctx.status >= 400) ctx.failure = failureForStatus(ctx.status);
    // Wait for the handler to wind down the upstream call so usage seen so far is counted.
    const done = ctx.settled
      .catch(() => undefined)
      .finally(() => {
        // Refused after admission without reaching an upstream: not charged to the daily caps.
        if (ctx.releaseDailyCount && ctx.failure !== null && ctx.attempts === 0) ctx.releaseDailyCount();
        const labels = this.labels(ctx);
        if (this.audit.record(ctx, labels)) {
          this.metrics.observeRequest(ctx, labels);
          // The day's cost in /admin/usage: the audit line's own, added where the limits counted the
          // request, here where it is written once (a request without a price adds nothing). Called
          // for every request, costing or not: one that reserved its cost against a budget settles
          // the reservation here (a request that ended without cost gives it all back).
          ctx.chargeDailyCost?.(ctx.costUsd !== null && ctx.costUsd > 0 ? ctx.costUsd : 0);
        }
        ctx.release();
        this.settling.delete(ctx);
      });
    this.settling.set(ctx, done);
  }
}

/**
 * Whether a response reached the client whole. `writableFinished` alone cannot tell: a body handed
 * to the socket in one `end()` (a large answer) leaves the response finished even when the client
 * resets the connection halfway through reading it; the socket has errored by then, while after a
 * delivered response it has not (a keep-alive response closes as soon as it finishes).
 */
function delivered(res: ServerResponse, socket: Socket | null): boolean {
  return res.writableFinished && !socket?.errored;
}

/**
 * The path of a request target, without its query (or a fragment, which no request target may
 * carry: such a request is refused, and its audit path holds none of the client's text): for the origin form (`/v1/...`) as sent, and for
 * the absolute form (`http://host/v1/...`, which HTTP/1.1 servers must accept and Fastify routes by
 * its path) without scheme and authority, so such a request is audited like any other.
 */
export function requestPath(url: string): string {
  const path = url.split(/[?#]/, 1)[0];
  if (path.startsWith('/')) return path;
  const absolute = ABSOLUTE_FORM.exec(path);
  return absolute ? path.slice(absolute[0].length) || '/' : path;
}

/**
 * A request path as keygate classifies it (audited, an operator route, Anthropic's API): its
 * percent-escapes decoded as the router decodes them (`/%761/…` is `/v1/…`; an escaped `/` stays
 * escaped, as it matches no route), and lower-cased. The router is case-sensitive, so
 * `POST /V1/chat/completions` matches no route and is a 404; it is a request to the API all the
 * same, audited once and checked like `/v1/no-such-thing` (SPEC §7: whatever its outcome).
 */
export function routedPath(path: string): string {
  if (!path.includes('%')) return path.toLowerCase();
  try {
    return decodeURI(path).toLowerCase();
  } catch {
    // A malformed escape: refused by the router (see refuseUnroutable), classified as spelt.
    return path.toLowerCase();
  }
}

/** Whether a request is audited (SPEC §7: every `/v1/*` and `/chat/*` request): by its {@link routedPath}, or by the route it matched. */
export function isAudited(routed: string, route: string | undefined): boolean {
  return AUDITED.test(routed) || (route !== undefined && AUDITED.test(route));
}

/** The audit class of an error status answered without a {@link GatewayError} (SPEC §7). */
export function failureForStatus(status: number): FailureClass {
  switch (status) {
    case 401:
      return 'auth';
    case 403:
      return 'forbidden';
    case 404:
      return 'not_found';
    case 413:
      return 'policy';
    case 429:
      return 'rate_limit';
    case CLIENT_CLOSED_REQUEST:
      return 'client_abort';
    default:
      return status >= 500 ? 'internal' : 'bad_request';
  }
}

/**
 * Why a request carries more than one credential, or undefined: two `Authorization` headers (Node
 * keeps the first; a proxy in front that read the last would have let another caller through); on
 * Anthropic's routes two `x-api-key` headers, or an `x-api-key` beside an `Authorization` that
 * says something else (each is a credential there); on Google's, the same of `x-goog-api-key`, and
 * a key in the query (`?key=`, which Google's API takes): a URL ends up in logs, so it is refused.
 */
export function credentialProblem(
  request: Pick<FastifyRequest, 'headers' | 'raw'>,
  anthropic: boolean,
  google = false,
): GatewayError | undefined {
  const raw = request.raw.rawHeaders;
  const { authorization } = request.headers;
  if (authorization !== undefined && repeatedHeader(raw, 'authorization'))
    return new GatewayError('invalid_request', 'send one Authorization header', { param: 'authorization' });
  if (google && queryHasKey(request.raw.url))
    return new GatewayError('invalid_request', 'send the key in the x-goog-api-key header, not as ?key= in the URL (URLs end up in logs)', {
      param: 'key',
    });
  const header = anthropic ? 'x-api-key' : google ? 'x-goog-api-key' : undefined;
  if (header === undefined) return undefined;
  const key = request.headers[header];
  if (key === undefined) return undefined;
  if (repeatedHeader(raw, header)) return new GatewayError('invalid_request', `send one ${header} header`, { param: header });
  // Behind IAP the Authorization may be IAP's own (a Google OIDC token), which IAP passes on.
  if (request.headers['x-goog-iap-jwt-assertion'] !== undefined) return undefined;
  if (authorization !== undefined && /^bearer\s+(.*)$/i.exec(authorization.trim())?.[1] !== String(key).trim())
    return new GatewayError('invalid_request', `send one credential: Authorization and ${header} name different ones`, {
      param: header,
    });
  return undefined;
}

/** Whether a request target's query has a `key` parameter (however spelt: `?key=`, `?%6Bey=`). */
function queryHasKey(url: string | undefined): boolean {
  const q = url?.indexOf('?') ?? -1;
  if (q === -1 || url === undefined) return false;
  return new URLSearchParams(url.slice(q + 1)).has('key');
}

/** Whether a header (its lowercase name) comes more than once among a request's raw headers. */
export function repeatedHeader(rawHeaders: readonly string[], name: string): boolean {
  let seen = 0;
  for (let i = 0; i < rawHeaders.length; i += 2) {
    const header = rawHeaders[i];
    if (header.length === name.length && header.toLowerCase() === name && ++seen > 1) return true;
  }
  return false;
}

/** Answers a request the lifecycle itself refuses, recording the failure for the audit line. */
function refuse(ctx: RequestContext, reply: FastifyReply, error: GatewayError): void {
  ctx.fail(error.spec.failure, error.status);
  void reply.status(error.status).type('application/json').send(errorBodyFor(ctx, error));
}

/**
 * Ends a response keygate told to end (the drain deadline, a block) that did not end by itself:
 * the error it was ended with if nothing was sent yet (a body still arriving, a handler still
 * waiting), else the connection is closed (a client that stopped reading its stream). Either way
 * its close event audits it. The connection closes after the answer: the body may still be arriving.
 */
/**
 * Once a response is all written (`prefinish`: its last bytes handed to the connection), a client
 * that reads none of it for `idleMs` loses the connection: a whole answer (an embeddings answer of
 * 40 MB, a long completion) otherwise sat in memory for as long as the client kept the connection
 * and read nothing, the request timeout covering only the request's arrival (a stream's own limit
 * covers it while it runs). A client that reads, however slowly, keeps it. The request then ends as
 * one whose client left (499). The connection's keep-alive timeout, set once the answer is read, is
 * left to Node.
 */
function watchDelivery(res: ServerResponse, idleMs: number): void {
  const socket = res.socket;
  // Only an answer the connection could not take at once (past its buffer's high-water mark) is
  // held in memory here; a small one waits in the kernel, and the keep-alive timeout ends it.
  if (!socket || res.writableFinished || idleMs <= 0 || !socket.writableNeedDrain) return;
  // Destroyed with an error: the response then counts as not delivered (see delivered), whatever
  // of it the connection had taken.
  const stalled = (): void => {
    socket.destroy(new Error(`the client read nothing of the answer for ${idleMs} ms`));
  };
  // On the response: Node's own handler of the connection's timeout tells the response first, and
  // destroys the connection itself (without an error) only when nothing listens there.
  res.setTimeout(idleMs, stalled);
  res.once('finish', () => {
    res.off('timeout', stalled);
    // Still this watch's (Node set no keep-alive timeout: a pipelined answer is next): cleared.
    if (socket.timeout === idleMs) socket.setTimeout(0);
  });
}

function endResponse(ctx: RequestContext, res: ServerResponse, error: GatewayError): void {
  ctx.fail(error.spec.failure, error.status);
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const body = JSON.stringify(errorBodyFor(ctx, error));
  res.writeHead(error.status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(body),
    ...(error.options.retryAfterSeconds !== undefined ? { 'retry-after': String(error.options.retryAfterSeconds) } : {}),
    connection: 'close',
  });
  res.end(body);
}

/** Why the router could not take a request target (`code`: Fastify's), for its 400. */
export function unroutable(code: string | undefined, target: string | undefined): string {
  if (code === 'FST_ERR_MAX_PARAM_LENGTH') return 'a path segment of the request target is too long';
  if (code !== 'FST_ERR_BAD_URL') return 'the request target cannot be routed';
  // The router refuses both a target that is no path (`*v1/models`) and a malformed percent-escape.
  return target?.startsWith('/')
    ? 'the request target is not a valid URL path (malformed percent-encoding)'
    : 'the request target must be a path starting with /';
}
