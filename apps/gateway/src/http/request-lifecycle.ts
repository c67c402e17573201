import { randomUUID } from 'node:crypto';
import { Injectable } from '@nestjs/common';
import { AuditService } from '@keygate/audit';
import { GatewayError } from '@keygate/errors';
import { LifecycleState } from '@keygate/health';
import { attachContext, MetricsService, parseTrace, pickRequestId, RequestContext } from '@keygate/observability';
import type { FastifyInstance, FastifyReply } from 'fastify';

/** Status recorded when the client went away before the response finished (nginx's convention). */
export const CLIENT_CLOSED_REQUEST = 499;

const AUDITED = /^\/(v1|chat)\//;
/** Answered while draining: probes must keep telling the truth, and a scrape may still read the counters. */
const SERVED_WHILE_DRAINING = new Set(['/healthz', '/readyz', '/metrics']);

/**
 * Owns each request's life from arrival to the audit line. A Fastify `onRequest` hook (the first
 * thing that runs, before body parsing and authentication) creates the context, so rejections at
 * every later stage are audited; the raw response's `close` event, which fires exactly once for a
 * finished response and for a dropped connection alike, writes the one audit record.
 */
@Injectable()
export class RequestLifecycle {
  private readonly open = new Set<RequestContext>();
  private readonly audited = new Set<Promise<void>>();

  constructor(
    private readonly audit: AuditService,
    private readonly metrics: MetricsService,
    private readonly state: LifecycleState,
  ) {}

  /** Requests whose response has not closed yet. */
  get active(): number {
    return this.open.size;
  }

  /**
   * The drain deadline passed: ends every request still open (streams with an SSE error event,
   * others with a 503) and resolves once each has its audit line.
   */
  async endAll(): Promise<void> {
    for (const ctx of this.open) {
      ctx.shuttingDown = true;
      ctx.abort.abort();
    }
    while (this.open.size || this.audited.size) await Promise.race([...this.audited, new Promise((r) => setTimeout(r, 50))]);
  }

  install(fastify: FastifyInstance): void {
    fastify.addHook('onRequest', (request, reply, done) => {
      const raw = request.raw;
      const path = request.url.split('?', 1)[0];
      const ctx = new RequestContext(
        pickRequestId(raw.headers['x-request-id'], randomUUID),
        request.method,
        path,
        process.hrtime.bigint(),
        parseTrace(raw.headers.traceparent, raw.headers['x-cloud-trace-context']),
        AUDITED.test(path),
      );
      attachContext(raw, ctx);
      this.open.add(ctx);
      // Set on the raw response so hijacked (streamed) replies carry it too.
      reply.raw.setHeader('x-request-id', ctx.requestId);
      reply.raw.once('close', () => this.onClose(ctx, reply.raw.writableFinished, reply.raw.statusCode));
      if (this.state.shuttingDown && !SERVED_WHILE_DRAINING.has(path)) return this.refuseWhileDraining(ctx, reply);
      done();
    });
  }

  /**
   * A request that arrives during the drain on a connection kept alive from before (the listener
   * no longer accepts new ones) gets the contract's 503 and an audit line, and the connection is
   * closed so the client's next request goes to another replica.
   */
  private refuseWhileDraining(ctx: RequestContext, reply: FastifyReply): void {
    const error = new GatewayError('service_unavailable', 'keygate is shutting down; retry the request', { retryAfterSeconds: 1 });
    ctx.fail(error.spec.failure, error.status);
    void reply.status(error.status).header('retry-after', '1').header('connection', 'close').type('application/json').send(error.toBody());
  }

  private onClose(ctx: RequestContext, finished: boolean, statusCode: number): void {
    this.open.delete(ctx);
    if (!finished && !ctx.shuttingDown) {
      ctx.fail('client_abort', CLIENT_CLOSED_REQUEST);
      ctx.abort.abort();
    } else if (ctx.status === 0) {
      ctx.status = statusCode;
    }
    // Wait for the handler to wind down the upstream call so usage seen so far is counted.
    const done = ctx.settled
      .catch(() => undefined)
      .finally(() => {
        // Refused after admission without reaching an upstream: not charged to the daily caps.
        if (ctx.releaseDailyCount && ctx.failure !== null && ctx.attempts === 0) ctx.releaseDailyCount();
        if (this.audit.record(ctx)) this.metrics.observeRequest(ctx);
        this.audited.delete(done);
      });
    this.audited.add(done);
  }
}
