import { Inject, Injectable } from '@nestjs/common';
import type { Principal } from '@keygate/auth';
import { GatewayConfig } from '@keygate/config';
import { GatewayError } from '@keygate/errors';
import { QuotaService } from '@keygate/limits';
import type { RequestContext } from '@keygate/observability';
import { applyParameterPolicy } from '@keygate/policy';
import {
  AnthropicAdapter,
  countTokens,
  estimateMessagesPromptTokens,
  runAttempts,
  type ChatStream,
  type MessagesAnswer,
  type MessagesPassthrough,
  type RetryPolicy,
  type Usage,
} from '@keygate/providers';
import type { FastifyReply } from 'fastify';
import { primed } from '../chat/primed-stream';
import { recordUsage, SseRelay } from '../chat/sse-relay';
import { countAttempt } from '../routing/attempt-count';
import { ProductRouter, type ResolvedRoute } from '../routing/product.router';
import { ANTHROPIC_STREAM } from './anthropic-errors';

/** The Messages request fields keygate reads; the rest goes to Anthropic as sent. */
export interface MessagesRequest {
  model: string;
  messages: unknown[];
  max_tokens?: number | null;
  temperature?: number | null;
  stream?: boolean;
  system?: unknown;
  tools?: unknown;
  [key: string]: unknown;
}

/** The client headers that go on to Anthropic, once checked. */
export interface AnthropicClientHeaders {
  version?: string;
  beta?: string;
}

const VERSION = /^\d{4}-\d{2}-\d{2}$/;
const BETA = /^[A-Za-z0-9._-]+( *, *[A-Za-z0-9._-]+)*$/;
const MAX_BETA_LENGTH = 1024;

/**
 * `anthropic-version` and `anthropic-beta` as the client sent them, checked: they pick the API's
 * behaviour (Claude Code sends several betas), so they go on; nothing else of the client's does.
 */
export function anthropicClientHeaders(headers: Record<string, string | string[] | undefined>): AnthropicClientHeaders {
  const out: AnthropicClientHeaders = {};
  const version = headers['anthropic-version'];
  if (version !== undefined) {
    if (typeof version !== 'string' || !VERSION.test(version))
      throw new GatewayError('invalid_request', 'the anthropic-version header must be a date such as 2023-06-01', {
        param: 'anthropic-version',
      });
    out.version = version;
  }
  const beta = headers['anthropic-beta'];
  if (beta !== undefined) {
    if (typeof beta !== 'string' || beta.length > MAX_BETA_LENGTH || !BETA.test(beta.trim()))
      throw new GatewayError('invalid_request', 'the anthropic-beta header must be a comma-separated list of feature names', {
        param: 'anthropic-beta',
      });
    out.beta = beta.trim();
  }
  return out;
}

/**
 * `POST /v1/messages`: Anthropic's Messages API for the Claude models of the caller's product,
 * passed through (the Anthropic SDKs and Claude Code speak it). Routed, policed, limited, retried,
 * billed and audited like chat; the body and the answer stay Anthropic's.
 */
@Injectable()
export class MessagesService {
  private readonly retry: RetryPolicy;

  constructor(
    private readonly router: ProductRouter,
    private readonly quota: QuotaService,
    private readonly anthropic: AnthropicAdapter,
    private readonly sse: SseRelay,
    @Inject(GatewayConfig) config: GatewayConfig,
  ) {
    this.retry = config.retry;
  }

  async create(
    ctx: RequestContext,
    principal: Principal,
    body: MessagesRequest,
    client: AnthropicClientHeaders,
    bodyBytes: number,
    reply: FastifyReply,
  ): Promise<void> {
    ctx.stream = body.stream === true;
    const first = this.anthropicRoute(ctx, principal, body, bodyBytes);
    // OpenAI's name for the cap: Anthropic refuses it, and keygate's policy would read it as the cap.
    if (body.max_completion_tokens !== undefined)
      throw new GatewayError('unsupported_parameter', "max_completion_tokens is OpenAI's; the Messages API takes max_tokens", {
        param: 'max_completion_tokens',
      });
    const { policy } = first.policy;
    // Policy violations are the client's to fix: refused before any upstream is called.
    const cap = applyParameterPolicy({ ...body }, policy);
    // What the last attempt's upstream reported before its stream failed in priming (never replayed).
    let reportedBeforeFailure: Usage | undefined;
    // Fallbacks that Anthropic serves too: the body is Anthropic's.
    const candidates = this.router
      .withFallbacks(ctx, first, body.model, (access) => access.provider === 'anthropic')
      .map(({ model, access }) => ({
        model,
        attempt: () => {
          const attemptBody: MessagesRequest = { ...body, model };
          applyParameterPolicy(attemptBody, policy);
          const call: MessagesPassthrough = { body: attemptBody, access, signal: ctx.abort.signal, ...client };
          ctx.provider = access.provider;
          ctx.model = model;
          reportedBeforeFailure = undefined;
          return countAttempt<MessagesAnswer | ChatStream>(ctx, () =>
            ctx.stream
              ? this.anthropic.messagesStream(call).then((stream) => primed(stream, (usage) => (reportedBeforeFailure = usage)))
              : this.anthropic.messages(call),
          );
        },
      }));
    const tokens = this.quota.enabled(principal.product) ? estimateMessagesPromptTokens(body) + cap : undefined;
    const reservation = await this.quota.admit(ctx, principal.product, principal.user, tokens);
    try {
      // Retries and fallbacks happen only here, before a byte has gone to the client.
      const { value } = await runAttempts<MessagesAnswer | ChatStream>(candidates, this.retry, ctx.abort.signal);
      if ('events' in value)
        await this.sse.relay(ctx, value, reply, ANTHROPIC_STREAM, policy.maxStreamSeconds, () => estimateMessagesPromptTokens(body));
      else this.send(ctx, value, body, reply);
    } finally {
      // As chat: a request the client abandoned after it reached the upstream is billed its prompt.
      if (ctx.tokensIn === null && ctx.attempts > 0 && ctx.abort.signal.aborted) {
        if (reportedBeforeFailure) recordUsage(ctx, reportedBeforeFailure);
        else ctx.tokensIn = estimateMessagesPromptTokens(body);
      }
      this.quota.settle(reservation, (ctx.tokensIn ?? 0) + (ctx.tokensOut ?? 0));
    }
  }

  /**
   * `POST /v1/messages/count_tokens`: Anthropic's count of a Messages prompt, passed through. No
   * generation, so no parameter policy, no token reservation and nothing billed; retried like a
   * call, without fallbacks (a count is per model).
   */
  async countTokens(
    ctx: RequestContext,
    principal: Principal,
    body: MessagesRequest,
    client: AnthropicClientHeaders,
    bodyBytes: number,
    reply: FastifyReply,
  ): Promise<void> {
    const { access } = this.anthropicRoute(ctx, principal, body, bodyBytes);
    const call: MessagesPassthrough = { body, access, signal: ctx.abort.signal, ...client };
    const { value } = await runAttempts<string>(
      [{ model: body.model, attempt: () => countAttempt(ctx, () => this.anthropic.countTokens(call)) }],
      this.retry,
      ctx.abort.signal,
    );
    ctx.status = 200;
    void reply.status(200).type('application/json').send(value);
  }

  /** The route of a Messages request: the model must be one the product serves through Anthropic. */
  private anthropicRoute(ctx: RequestContext, principal: Principal, body: MessagesRequest, bodyBytes: number): ResolvedRoute {
    const first = this.router.resolve(ctx, principal, body.model, bodyBytes);
    if (first.access.provider !== 'anthropic') {
      throw new GatewayError(
        'unsupported_parameter',
        `The model '${body.model}' is served by ${first.access.provider}: /v1/messages serves Anthropic models, use /v1/chat/completions for it`,
        { param: 'model' },
      );
    }
    return first;
  }

  /** Answers with Anthropic's body as it came. Not awaited, as chat's answer. */
  private send(ctx: RequestContext, answer: MessagesAnswer, body: MessagesRequest, reply: FastifyReply): void {
    if (answer.usage) recordUsage(ctx, answer.usage);
    else {
      // A compatible host that reports no usage: keygate's estimate stands in.
      ctx.tokensIn = estimateMessagesPromptTokens(body);
      ctx.tokensOut = countTokens(answer.text);
    }
    ctx.status = 200;
    void reply.status(200).type('application/json').send(answer.body);
  }
}
