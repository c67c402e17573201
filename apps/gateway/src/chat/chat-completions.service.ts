import { Inject, Injectable } from '@nestjs/common';
import type { Principal } from '@keygate/auth';
import { GatewayConfig } from '@keygate/config';
import { QuotaService } from '@keygate/limits';
import type { RequestContext } from '@keygate/observability';
import { applyParameterPolicy } from '@keygate/policy';
import {
  countTokens,
  estimatePromptTokens,
  runAttempts,
  type ChatCompletionRequest,
  type ChatResult,
  type ChatStream,
  type RetryPolicy,
  type ProviderCall,
  type Usage,
} from '@keygate/providers';
import { DEFAULT_BASE_URLS, type ProviderAccess } from '@keygate/secrets';
import type { FastifyReply } from 'fastify';
import { countAttempt } from '../routing/attempt-count';
import { ProductRouter } from '../routing/product.router';
import { primed } from './primed-stream';
import { OPENAI_STREAM, recordUsage, SseRelay } from './sse-relay';

/**
 * The chat-completions path: product and model resolution, parameter policy, the provider call,
 * and the answer (JSON or SSE). Every outcome is recorded on the request context for the audit.
 */
@Injectable()
export class ChatCompletionsService {
  private readonly retry: RetryPolicy;

  constructor(
    private readonly router: ProductRouter,
    private readonly quota: QuotaService,
    @Inject(GatewayConfig) config: GatewayConfig,
    private readonly sse: SseRelay,
  ) {
    this.retry = config.retry;
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
    const candidates = this.router.withFallbacks(ctx, first, body.model).map(({ model, access, adapter }) => ({
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
      if ('events' in value)
        await this.sse.relay(ctx, value, reply, OPENAI_STREAM, policy.maxStreamSeconds, () => estimatePromptTokens(body));
      else this.send(ctx, value, body, reply);
    } finally {
      // A request the client abandoned after it reached the upstream is billed for its prompt (the
      // stream path does the same): what the upstream had reported by then (Anthropic's
      // message_start, read while priming the stream), else keygate's estimate. A request that
      // failed upstream is not: providers do not bill their own errors.
      if (ctx.tokensIn === null && ctx.attempts > 0 && ctx.abort.signal.aborted) {
        if (reportedBeforeFailure) recordUsage(ctx, reportedBeforeFailure);
        else ctx.tokensIn = estimatePromptTokens(body);
      }
      this.quota.settle(reservation, (ctx.tokensIn ?? 0) + (ctx.tokensOut ?? 0));
    }
  }

  /**
   * Answers a completion. Not awaited: a Fastify reply is a thenable that settles when the response
   * has finished, which nothing here needs (the audit waits for the response's close event).
   */
  private send(ctx: RequestContext, result: ChatResult, body: ChatCompletionRequest, reply: FastifyReply): void {
    if (result.usage) recordUsage(ctx, result.usage);
    else {
      // An upstream that reports no usage (some OpenAI-compatible hosts): keygate's estimate stands
      // in, so the request is still counted against the token quotas and in the audit.
      ctx.tokensIn = estimatePromptTokens(body);
      ctx.tokensOut = countTokens(completionText(result.body));
    }
    ctx.status = 200;
    void reply.status(200).type('application/json').send(result.body);
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
