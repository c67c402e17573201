import { once } from 'node:events';
import type { ServerResponse } from 'node:http';
import { Inject, Injectable } from '@nestjs/common';
import type { Principal } from '@keygate/auth';
import { GatewayConfig } from '@keygate/config';
import { GatewayError } from '@keygate/errors';
import { QuotaService } from '@keygate/limits';
import { JsonLogger, KEYGATE_LOGGER, MetricsService, type RequestContext } from '@keygate/observability';
import { applyParameterPolicy } from '@keygate/policy';
import {
  ClientAbortedError,
  countTokens,
  estimatePromptTokens,
  runAttempts,
  UpstreamError,
  type ChatCompletionRequest,
  type ChatResult,
  type ChatStream,
  type RetryPolicy,
  type ProviderAdapter,
  type ProviderCall,
  type Usage,
} from '@keygate/providers';
import { DEFAULT_BASE_URLS, type ProviderAccess } from '@keygate/secrets';
import type { FastifyReply } from 'fastify';
import { countAttempt } from '../routing/attempt-count';
import { primed } from './primed-stream';
import { endStream } from './stream-end';
import { ProductRouter, type ResolvedRoute } from '../routing/product.router';

const SSE_HEADERS = {
  'content-type': 'text/event-stream; charset=utf-8',
  'cache-control': 'no-cache',
  // Tells nginx-style proxies in front of keygate not to buffer the stream.
  'x-accel-buffering': 'no',
};

/**
 * The chat-completions path: product and model resolution, parameter policy, the provider call,
 * and the answer (JSON or SSE). Every outcome is recorded on the request context for the audit.
 */
@Injectable()
export class ChatCompletionsService {
  private readonly retry: RetryPolicy;
  private readonly keepAliveMs: number;

  constructor(
    private readonly router: ProductRouter,
    private readonly quota: QuotaService,
    @Inject(GatewayConfig) config: GatewayConfig,
    @Inject(KEYGATE_LOGGER) private readonly logger: JsonLogger,
    private readonly metrics: MetricsService,
  ) {
    this.retry = config.retry;
    this.keepAliveMs = config.sseKeepAliveSeconds * 1000;
  }

  async complete(
    ctx: RequestContext,
    principal: Principal,
    body: ChatCompletionRequest,
    bodyBytes: number,
    reply: FastifyReply,
  ): Promise<void> {
    ctx.stream = body.stream === true;
    const first = this.router.resolve(ctx, principal, body.model, bodyBytes);
    const { policy } = first.policy;
    // Policy violations are the client's to fix: refused before any upstream is called.
    const completionCap = applyParameterPolicy({ ...body }, policy, capFieldFor(first.access));
    const clientWantsUsage = body.stream_options?.include_usage === true;
    // What the last attempt's upstream reported before its stream failed in priming (never replayed).
    let reportedBeforeFailure: Usage | undefined;
    const candidates = this.candidates(ctx, first, body).map(({ model, access, adapter }) => ({
      model,
      attempt: () => {
        const attemptBody: ChatCompletionRequest = { ...body, model };
        applyParameterPolicy(attemptBody, policy, capFieldFor(access));
        const call: ProviderCall = { body: attemptBody, access, signal: ctx.abort.signal, clientWantsUsage };
        ctx.provider = access.provider;
        ctx.model = model;
        reportedBeforeFailure = undefined;
        return countAttempt<ChatResult | ChatStream>(ctx, () =>
          ctx.stream
            ? adapter.chatStream(call).then((stream) => primed(stream, (usage) => (reportedBeforeFailure = usage)))
            : adapter.chat(call),
        );
      },
    }));
    // The request's limits are counted here, with the reservation (@AdmitInHandler on the route).
    const tokens = this.quota.enabled(principal.product) ? estimatePromptTokens(body) + completionCap * choices(body) : undefined;
    const reservation = await this.quota.admit(ctx, principal.product, principal.user, tokens);
    try {
      // Retries and fallbacks happen only here, before a byte has gone to the client.
      const { value } = await runAttempts<ChatResult | ChatStream>(candidates, this.retry, ctx.abort.signal);
      if ('events' in value) await this.stream(ctx, value, body, reply, policy.maxStreamSeconds);
      else this.send(ctx, value, body, reply);
    } finally {
      // A request the client abandoned after it reached the upstream is billed for its prompt (the
      // stream path does the same): what the upstream had reported by then (Anthropic's
      // message_start, read while priming the stream), else keygate's estimate. A request that
      // failed upstream is not: providers do not bill their own errors.
      if (ctx.tokensIn === null && ctx.attempts > 0 && ctx.abort.signal.aborted) {
        if (reportedBeforeFailure) this.recordUsage(ctx, reportedBeforeFailure);
        else ctx.tokensIn = estimatePromptTokens(body);
      }
      this.quota.settle(reservation, (ctx.tokensIn ?? 0) + (ctx.tokensOut ?? 0));
    }
  }

  /** The requested model, then the policy's fallbacks for it that this product can serve. */
  private candidates(
    ctx: RequestContext,
    first: ResolvedRoute,
    body: ChatCompletionRequest,
  ): Array<{ model: string; access: ProviderAccess; adapter: ProviderAdapter }> {
    const list = [{ model: body.model, access: first.access, adapter: first.adapter }];
    // An own property only: the model is the client's, and `constructor` must not find Object's.
    const fallbacks = Object.hasOwn(first.policy.fallbacks, body.model) ? first.policy.fallbacks[body.model] : [];
    for (const model of fallbacks) {
      try {
        list.push({ model, ...this.router.serve(ctx, first.product, model) });
      } catch {
        this.logger.write('WARNING', 'fallback model is not served for this product; skipped', { product: first.product.name, model });
      }
    }
    ctx.provider = first.access.provider;
    return list;
  }

  /**
   * Answers a completion. Not awaited: a Fastify reply is a thenable that settles when the response
   * has finished, which nothing here needs (the audit waits for the response's close event).
   */
  private send(ctx: RequestContext, result: ChatResult, body: ChatCompletionRequest, reply: FastifyReply): void {
    if (result.usage) this.recordUsage(ctx, result.usage);
    else {
      // An upstream that reports no usage (some OpenAI-compatible hosts): keygate's estimate stands
      // in, so the request is still counted against the token quotas and in the audit.
      ctx.tokensIn = estimatePromptTokens(body);
      ctx.tokensOut = countTokens(completionText(result.body));
    }
    ctx.status = 200;
    void reply.status(200).type('application/json').send(result.body);
  }

  /**
   * Streams a completion. Errors before the upstream answered are thrown (the filter answers them
   * as JSON with their real status); after the first byte they end the stream with an SSE error
   * event, since the 200 is already on the wire.
   */
  private async stream(
    ctx: RequestContext,
    upstream: ChatStream,
    body: ChatCompletionRequest,
    reply: FastifyReply,
    maxStreamSeconds: number,
  ): Promise<void> {
    reply.hijack();
    this.metrics.activeStreams.inc();
    const res = reply.raw;
    // Headers set on the reply before the hijack (CORS, from @fastify/cors) go out with the stream.
    res.writeHead(200, { ...definedHeaders(reply.getHeaders()), ...SSE_HEADERS });
    ctx.status = 200;
    const text: string[] = [];
    let running: Usage | undefined;
    let overLimit = false;
    const limit = setTimeout(() => {
      overLimit = true;
      ctx.abort.abort();
    }, maxStreamSeconds * 1000);
    limit.unref();
    // A model may think for minutes before it writes (Anthropic's pings, which say so, have no
    // OpenAI chunk): a comment, which SSE clients skip, keeps proxies with an idle timeout from
    // cutting a silent stream. Checked once per period, so an event costs one assignment.
    let wrote = true;
    const keepAlive =
      this.keepAliveMs > 0
        ? setInterval(() => {
            if (!wrote && !res.writableEnded && !res.destroyed && res.writableLength === 0) res.write(': keep-alive\n\n');
            wrote = false;
          }, this.keepAliveMs)
        : undefined;
    keepAlive?.unref();
    try {
      for await (const event of upstream.events) {
        if (event.usage) this.recordUsage(ctx, event.usage);
        if (event.runningUsage) running = event.runningUsage;
        if (event.text) text.push(event.text);
        if (event.data === null) continue;
        wrote = true;
        if (!res.write(`data: ${event.data}\n\n`)) await once(res, 'drain', { signal: ctx.abort.signal });
      }
      endStream(res, 'data: [DONE]\n\n');
    } catch (error) {
      if (ctx.shuttingDown) {
        this.endWithError(
          ctx,
          res,
          new GatewayError('service_unavailable', 'keygate is shutting down; the stream was cut at the end of the drain period'),
        );
      } else if (overLimit) {
        this.endWithError(
          ctx,
          res,
          new GatewayError('stream_timeout', `the stream exceeded this product's limit of ${maxStreamSeconds} seconds`),
        );
      } else if (error instanceof ClientAbortedError || ctx.abort.signal.aborted) {
        ctx.fail('client_abort', 499);
      } else {
        this.endWithError(
          ctx,
          res,
          error instanceof UpstreamError
            ? error.toGatewayError()
            : error instanceof GatewayError
              ? error
              : new GatewayError('internal_error', 'internal error while streaming'),
        );
      }
    } finally {
      this.metrics.activeStreams.dec();
      clearTimeout(limit);
      clearInterval(keepAlive);
      // The upstream started generating, so it bills the prompt: what it reported so far, else
      // keygate's estimate; the answer at least as long as what reached keygate.
      if (ctx.tokensIn === null) ctx.tokensIn = running ? running.prompt_tokens : estimatePromptTokens(body);
      if (ctx.tokensOut === null) ctx.tokensOut = Math.max(running?.completion_tokens ?? 0, countTokens(text.join('')));
    }
  }

  /** Ends a started stream with an OpenAI-style error event (the SDKs raise it as an APIError). */
  private endWithError(ctx: RequestContext, res: ServerResponse, error: GatewayError): void {
    ctx.fail(error.spec.failure, error.status);
    endStream(res, `data: ${JSON.stringify(error.toBody())}\n\n`);
  }

  private recordUsage(ctx: RequestContext, usage: Usage | null): void {
    if (!usage) return;
    ctx.tokensIn = usage.prompt_tokens;
    ctx.tokensOut = usage.completion_tokens;
  }
}

/** The text of an OpenAI-shaped completion's choices (message content and tool call arguments). */
function completionText(body: string): string {
  const doc = JSON.parse(body) as {
    choices?: Array<{ message?: { content?: unknown; tool_calls?: Array<{ function?: { arguments?: unknown } }> } }>;
  };
  const parts: string[] = [];
  for (const choice of Array.isArray(doc.choices) ? doc.choices : []) {
    if (typeof choice.message?.content === 'string') parts.push(choice.message.content);
    for (const call of choice.message?.tool_calls ?? [])
      if (typeof call.function?.arguments === 'string') parts.push(call.function.arguments);
  }
  return parts.join('');
}

/** The reply's headers without the unset ones, for a raw `writeHead`. */
function definedHeaders(headers: Record<string, number | string | string[] | undefined>): Record<string, number | string | string[]> {
  const out: Record<string, number | string | string[]> = {};
  for (const [name, value] of Object.entries(headers)) if (value !== undefined) out[name] = value;
  return out;
}

/** How many completions the request asks for (`n`), each bounded by the cap. */
function choices(body: ChatCompletionRequest): number {
  return typeof body.n === 'number' && body.n > 1 ? body.n : 1;
}

/**
 * OpenAI's reasoning models refuse `max_tokens`, and every current OpenAI chat model accepts
 * `max_completion_tokens`; OpenAI-compatible hosts reliably know only `max_tokens`.
 */
function capFieldFor(access: ProviderAccess): 'max_tokens' | 'max_completion_tokens' {
  return access.provider === 'openai' && access.baseUrl === DEFAULT_BASE_URLS.openai ? 'max_completion_tokens' : 'max_tokens';
}
