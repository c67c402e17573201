import { Inject, Injectable } from '@nestjs/common';
import type { Principal } from '@keygate/auth';
import { GatewayConfig } from '@keygate/config';
import type { RequestContext } from '@keygate/observability';
import { applyGeminiPolicy, type PolicedGeminiRequest } from '@keygate/policy';
import {
  estimateGenerateContentPromptTokens,
  GeminiAdapter,
  requestedCandidates,
  runAttempts,
  type GenerateContentPassthrough,
  type PassedAnswer,
  type RetryPolicy,
} from '@keygate/providers';
import type { FastifyReply } from 'fastify';
import { CompletionRunner } from '../chat/completion-runner';
import { countAttempt } from '../routing/attempt-count';
import { ProductRouter, type ResolvedRoute } from '../routing/product.router';
import { GOOGLE_STREAM } from './google-errors';

/** The GenerateContentRequest fields keygate reads; the rest goes to Google as sent. */
export interface GenerateContentRequest extends PolicedGeminiRequest {
  contents?: unknown;
  systemInstruction?: unknown;
}

/** How the routes name the model they serve, in the refusal of another provider's model. */
const ROUTE = '/v1beta/models/{model}:generateContent';

/**
 * keygate's Gemini API routes (`POST /v1beta/models/{model}:generateContent`,
 * `:streamGenerateContent`, `:countTokens`): Google's API for the Gemini models of the caller's
 * product, passed through (`@google/genai` and Gemini CLI speak it). Routed, policed, limited,
 * retried, billed and audited like chat and `/v1/messages`; the body and the answer stay Google's.
 */
@Injectable()
export class GeminiService {
  private readonly retry: RetryPolicy;

  constructor(
    private readonly router: ProductRouter,
    private readonly runner: CompletionRunner,
    private readonly gemini: GeminiAdapter,
    @Inject(GatewayConfig) config: GatewayConfig,
  ) {
    this.retry = config.retry;
  }

  /** `generateContent`, or with `stream` `streamGenerateContent?alt=sse` passed through event by event. */
  async generateContent(
    ctx: RequestContext,
    principal: Principal,
    model: string,
    body: GenerateContentRequest,
    stream: boolean,
    bodyBytes: number,
    reply: FastifyReply,
  ): Promise<void> {
    ctx.stream = stream;
    const first = this.geminiRoute(ctx, principal, model, bodyBytes);
    const { policy } = first.policy;
    // Policy violations are the client's to fix: refused before any upstream is called.
    const cap = applyGeminiPolicy({ ...body }, policy);
    await this.runner.run(
      ctx,
      principal,
      {
        // Fallbacks that Gemini serves too: the body is Google's.
        candidates: this.router.withFallbacks(ctx, first, model, (access) => access.provider === 'gemini'),
        call: ({ model: attempt, access }) => {
          const attemptBody: GenerateContentRequest = { ...body };
          applyGeminiPolicy(attemptBody, policy);
          const call: GenerateContentPassthrough = { model: attempt, body: attemptBody, access, signal: ctx.abort.signal };
          return stream ? this.gemini.streamGenerateContent(call) : this.gemini.generateContent(call);
        },
        // Each candidate asked for is bounded by the cap, as chat reserves for each of `n`.
        reserve: () => estimateGenerateContentPromptTokens(body) + cap * requestedCandidates(body),
        promptTokens: () => estimateGenerateContentPromptTokens(body),
        answerText: (answer) => answer.text,
        dialect: GOOGLE_STREAM,
        maxStreamSeconds: policy.maxStreamSeconds,
      },
      reply,
    );
  }

  /**
   * `countTokens`: Google's count of a prompt, passed through. No generation, so no parameter
   * policy, no token reservation and nothing billed; retried like a call, without fallbacks (a
   * count is per model).
   */
  async countTokens(
    ctx: RequestContext,
    principal: Principal,
    model: string,
    body: Record<string, unknown>,
    bodyBytes: number,
    reply: FastifyReply,
  ): Promise<void> {
    const { access } = this.geminiRoute(ctx, principal, model, bodyBytes);
    const call: GenerateContentPassthrough = { model, body, access, signal: ctx.abort.signal };
    const { value } = await runAttempts<PassedAnswer>(
      [{ model, attempt: () => countAttempt(ctx, () => this.gemini.countTokens(call)) }],
      this.retry,
      ctx.abort.signal,
    );
    ctx.status = 200;
    void reply.status(200).headers(value.headers).type('application/json').send(value.body);
  }

  /** The route of a Gemini request: the model must be one the product serves through Gemini. */
  private geminiRoute(ctx: RequestContext, principal: Principal, model: string, bodyBytes: number): ResolvedRoute {
    return this.router.resolveServedBy(ctx, principal, model, bodyBytes, { provider: 'gemini', route: ROUTE, api: 'Gemini' });
  }
}
