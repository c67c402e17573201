import { Injectable } from '@nestjs/common';
import type { Principal } from '@keygate/auth';
import { GatewayError } from '@keygate/errors';
import type { RequestContext } from '@keygate/observability';
import { applyParameterPolicy, endUserId, identifyAnthropicCaller, refuseBetas } from '@keygate/policy';
import {
  AnthropicAdapter,
  estimateMessagesPromptTokens,
  messagesForFallback,
  promptCacheWrite,
  type MessagesPassthrough,
} from '@keygate/providers';
import type { FastifyReply } from 'fastify';
import { CompletionRunner } from '../chat/completion-runner';
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
  constructor(
    private readonly router: ProductRouter,
    private readonly runner: CompletionRunner,
    private readonly anthropic: AnthropicAdapter,
  ) {}

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
    refuseBetas(client.beta, policy);
    await this.runner.run(
      ctx,
      principal,
      {
        // Fallbacks that Anthropic serves too: the body is Anthropic's.
        candidates: this.router.withFallbacks(ctx, first, body.model, (access) => access.provider === 'anthropic'),
        call: ({ model, access }) => {
          // A fallback that thinks otherwise (or not at all) gets the request as it can take it, or is skipped.
          const attemptBody: MessagesRequest = { ...(model === body.model ? body : messagesForFallback(body, model)), model };
          applyParameterPolicy(attemptBody, policy);
          if (policy.endUserId) identifyAnthropicCaller(attemptBody, endUserId(principal.product, principal.user));
          const call: MessagesPassthrough = { body: attemptBody, access, signal: ctx.abort.signal, ...client };
          return ctx.stream ? this.anthropic.messagesStream(call) : this.anthropic.messages(call);
        },
        reserve: (prompt) => ({ prompt, completion: cap, promptCacheWrite: promptCacheWrite(body) }),
        promptTokens: () => estimateMessagesPromptTokens(body),
        answerText: (answer) => answer.text,
        dialect: ANTHROPIC_STREAM,
        maxStreamSeconds: policy.maxStreamSeconds,
      },
      reply,
    );
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
    const value = await this.runner.once(ctx, body.model, () => this.anthropic.countTokens(call));
    ctx.answer(200);
    void reply.status(200).headers(value.headers).type('application/json').send(value.body);
  }

  /** The route of a Messages request: the model must be one the product serves through Anthropic. */
  private anthropicRoute(ctx: RequestContext, principal: Principal, body: MessagesRequest, bodyBytes: number): ResolvedRoute {
    return this.router.resolveServedBy(ctx, principal, body.model, bodyBytes, {
      provider: 'anthropic',
      route: '/v1/messages',
      api: 'Anthropic',
    });
  }
}
