import { Injectable } from '@nestjs/common';
import type { Principal } from '@keygate/auth';
import { GatewayError } from '@keygate/errors';
import { QuotaService } from '@keygate/limits';
import type { RequestContext } from '@keygate/observability';
import { applyGeminiEmbedPolicy, applyGeminiPolicy, type PolicedGeminiRequest } from '@keygate/policy';
import {
  estimateEmbedContentTokens,
  estimateGenerateContentPromptTokens,
  GeminiAdapter,
  isGeminiEmbeddingModel,
  generateContentForFallback,
  requestedCandidates,
  type GeminiApiVersion,
  type GenerateContentPassthrough,
} from '@keygate/providers';
import type { FastifyReply } from 'fastify';
import { CompletionRunner } from '../chat/completion-runner';
import { cutWhileAnswering } from '../routing/attempt-count';
import { ProductRouter, type ResolvedRoute } from '../routing/product.router';
import { checkBodyModel, checkGenerateContentParts, checkParts, continuesGeneration } from './gemini-body';
import { checkBatchEmbedRequests } from './gemini-embed';
import { GOOGLE_STREAM } from './google-errors';

/** The GenerateContentRequest fields keygate reads; the rest goes to Google as sent. */
export interface GenerateContentRequest extends PolicedGeminiRequest {
  contents?: unknown;
  systemInstruction?: unknown;
  system_instruction?: unknown;
}

/** How the routes name themselves, in the refusal of another provider's model. */
const routeName = (version: GeminiApiVersion, method: string): string => `/${version}/models/{model}:${method}`;

/**
 * keygate's Gemini API routes (`POST /v1beta/models/{model}:generateContent`,
 * `:streamGenerateContent`, `:countTokens`, `:embedContent`, `:batchEmbedContents`, and the same
 * under Google's stable `/v1`): Google's API for the Gemini models of the caller's
 * product, passed through (`@google/genai` and Gemini CLI speak it). Routed, policed, limited,
 * retried, billed and audited like chat and `/v1/messages`; the body and the answer stay Google's.
 */
@Injectable()
export class GeminiService {
  constructor(
    private readonly router: ProductRouter,
    private readonly runner: CompletionRunner,
    private readonly gemini: GeminiAdapter,
    private readonly quota: QuotaService,
  ) {}

  /** `generateContent`, or with `stream` `streamGenerateContent?alt=sse` passed through event by event. */
  async generateContent(
    ctx: RequestContext,
    principal: Principal,
    model: string,
    body: GenerateContentRequest,
    stream: boolean,
    bodyBytes: number,
    reply: FastifyReply,
    version: GeminiApiVersion = 'v1beta',
  ): Promise<void> {
    ctx.stream = stream;
    const first = this.geminiRoute(ctx, principal, model, bodyBytes, routeName(version, 'generateContent'));
    const { policy } = first.policy;
    checkBodyModel(body, model);
    checkGenerateContentParts(body);
    // Policy violations are the client's to fix: refused before any upstream is called.
    const cap = applyGeminiPolicy({ ...body }, policy);
    const fallbacks = this.router.withFallbacks(ctx, first, model, (access) => access.provider === 'gemini');
    await this.runner.run(
      ctx,
      principal,
      {
        // Fallbacks that Gemini serves too: the body is Google's. A long decode's next hop resumes
        // its model's generation from the token: no other model may take it (its answer would start
        // over, appended by the SDK to what the earlier hops wrote).
        candidates: continuesGeneration(body) ? fallbacks.filter((c) => c.model === model) : fallbacks,
        call: ({ model: attempt, access }) => {
          // A fallback that does not think gets the request without its thinkingConfig, or is skipped.
          const attemptBody: GenerateContentRequest = { ...(attempt === model ? body : generateContentForFallback(body, attempt)) };
          // A body naming the model asked for names the fallback on its attempt: Google reads either.
          if (attempt !== model && attemptBody.model !== undefined && attemptBody.model !== null) attemptBody.model = `models/${attempt}`;
          applyGeminiPolicy(attemptBody, policy);
          const call: GenerateContentPassthrough = { model: attempt, body: attemptBody, access, signal: ctx.abort, version };
          return stream ? this.gemini.streamGenerateContent(call) : this.gemini.generateContent(call);
        },
        // Each candidate asked for is bounded by the cap, as chat reserves for each of `n`.
        reserve: (prompt) => ({ prompt, completion: cap * requestedCandidates(body) }),
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
    version: GeminiApiVersion = 'v1beta',
  ): Promise<void> {
    const { access } = this.geminiRoute(ctx, principal, model, bodyBytes, routeName(version, 'countTokens'));
    checkBodyModel(body, model);
    // In either spelling Google's parser takes.
    for (const field of ['generateContentRequest', 'generate_content_request']) {
      const inner = body[field];
      if (typeof inner === 'object' && inner !== null) checkBodyModel(inner as Record<string, unknown>, model, `${field}.`);
    }
    const call: GenerateContentPassthrough = { model, body, access, signal: ctx.abort, version };
    const value = await this.runner.once(ctx, model, () => this.gemini.countTokens(call));
    ctx.answer(200);
    void reply.status(200).headers(value.headers).type('application/json').send(value.body);
  }

  /**
   * `embedContent`, or with `batch` `batchEmbedContents` (what `@google/genai`'s
   * `models.embedContent` sends, for one content or several): Google's answer passed through, for
   * the product's Gemini embedding models. Policed (`refused_fields`), limited and reserved like
   * `/v1/embeddings`: the input's estimate is reserved, and settled to what Google reports, else to
   * that estimate. Retried, never fallen back (another model's vectors live in another space).
   */
  async embedContent(
    ctx: RequestContext,
    principal: Principal,
    model: string,
    body: Record<string, unknown>,
    batch: boolean,
    bodyBytes: number,
    reply: FastifyReply,
    version: GeminiApiVersion = 'v1beta',
  ): Promise<void> {
    const method = batch ? 'batchEmbedContents' : 'embedContent';
    const { access, policy } = this.router.resolve(ctx, principal, model, bodyBytes);
    if (access.provider !== 'gemini')
      throw new GatewayError(
        'unsupported_parameter',
        `The model '${model}' is served by ${access.provider}: ${routeName(version, method)} serves Gemini embedding models, use /v1/embeddings for it`,
        { param: 'model' },
      );
    // Google serves embedContent for its embedding models only: refused here, before it is counted.
    if (!isGeminiEmbeddingModel(model))
      throw new GatewayError(
        'unsupported_parameter',
        `The model '${model}' does not embed: ${method} serves the product's Gemini embedding models (see supportedGenerationMethods in GET /v1beta/models)`,
        { param: 'model' },
      );
    checkBodyModel(body, model);
    if (batch) checkBatchEmbedRequests(body.requests as Array<Record<string, unknown>>, model);
    else checkParts(body.content, 'content');
    applyGeminiEmbedPolicy(body, policy.policy, batch);
    const estimate = estimateEmbedContentTokens(body, batch);
    // The request's limits are counted here, with the reservation (@AdmitInHandler on the route).
    const reservation = await this.quota.admit(ctx, principal.product, principal.user, () => ({ prompt: estimate, completion: 0 }), [
      model,
    ]);
    // Whether keygate cut the call off at a timeout while Google had it (see cutWhileAnswering).
    let cutByKeygate = false;
    try {
      const call: GenerateContentPassthrough = { model, body, access, signal: ctx.abort, version };
      const value = await this.runner.once(ctx, model, () => this.gemini.embedContent(call, batch));
      ctx.tokensIn = value.promptTokens ?? estimate;
      ctx.answer(200);
      await reply.status(200).headers(value.headers).type('application/json').send(value.body);
    } catch (error) {
      cutByKeygate = cutWhileAnswering(error, false);
      throw error;
    } finally {
      // Billed as /v1/embeddings bills one call: what Google reported (else the estimate) once it
      // answered, the whole input when the client left while a call was out (Google may have
      // embedded it), nothing for a call Google refused or failed, nor when the client left while
      // keygate waited to retry such a failure; the whole input when keygate cut the call off at a
      // timeout (as /v1/embeddings counts a batch so cut).
      if (ctx.tokensIn === null && (ctx.abortedInFlight || cutByKeygate)) ctx.tokensIn = estimate;
      // An embedding generates no output tokens, whatever became of the request.
      if (ctx.tokensIn !== null) ctx.tokensOut = 0;
      this.quota.settle(reservation, ctx.tokensIn ?? 0);
    }
  }

  /** The route of a Gemini request: the model must be one the product serves through Gemini. */
  private geminiRoute(ctx: RequestContext, principal: Principal, model: string, bodyBytes: number, route: string): ResolvedRoute {
    return this.router.resolveServedBy(ctx, principal, model, bodyBytes, { provider: 'gemini', route, api: 'Gemini' });
  }
}
