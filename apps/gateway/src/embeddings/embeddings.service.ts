import { Inject, Injectable } from '@nestjs/common';
import { GatewayConfig } from '@keygate/config';
import type { Principal } from '@keygate/auth';
import { GatewayError } from '@keygate/errors';
import { QuotaService } from '@keygate/limits';
import { endUserId } from '@keygate/policy';
import { JsonLogger, KEYGATE_LOGGER, type RequestContext } from '@keygate/observability';
import {
  isGeminiEmbeddingModel,
  retryDelay,
  runAttempts,
  TokenTally,
  UpstreamError,
  type AttemptObserver,
  type EmbeddingsRequest,
  type PartsSpend,
  tokenCount,
} from '@keygate/providers';
import type { FastifyReply } from 'fastify';
import { countAttempt, cutWhileAnswering } from '../routing/attempt-count';
import { upstreamAttemptLog } from '../routing/attempt-log';
import { ProductRouter } from '../routing/product.router';

/** Tokens of an embeddings input: text counted with the tokenizer, token arrays by length. */
function inputTokens(input: EmbeddingsRequest['input']): number {
  const items: Array<string | number | number[]> = Array.isArray(input) ? input : [input];
  const tally = new TokenTally();
  let total = 0;
  for (const item of items) total += typeof item === 'string' ? tally.count(item) : Array.isArray(item) ? item.length : 1;
  return total;
}

/** `POST /v1/embeddings`: routed by model like chat; usage counted as prompt tokens. */
@Injectable()
export class EmbeddingsService {
  private readonly attemptLog: AttemptObserver;

  constructor(
    private readonly router: ProductRouter,
    private readonly quota: QuotaService,
    @Inject(GatewayConfig) private readonly config: GatewayConfig,
    @Inject(KEYGATE_LOGGER) logger: JsonLogger,
  ) {
    this.attemptLog = upstreamAttemptLog(logger);
  }

  async embed(ctx: RequestContext, principal: Principal, body: EmbeddingsRequest, bodyBytes: number, reply: FastifyReply): Promise<void> {
    const { access, adapter, policy } = this.router.resolve(ctx, principal, body.model, bodyBytes);
    if (!adapter.embeddings) {
      throw new GatewayError(
        'unsupported_parameter',
        `The model '${body.model}' is served by ${access.provider}, which has no embeddings endpoint`,
        { param: 'model' },
      );
    }
    // Google embeds with its embedding models only: refused here, before it is counted, as on
    // Gemini's own embedContent. (An OpenAI-compatible host names its embedding models as it likes.)
    if (access.provider === 'gemini' && !isGeminiEmbeddingModel(body.model))
      throw new GatewayError(
        'unsupported_parameter',
        `The model '${body.model}' does not embed: /v1/embeddings serves the product's embedding models`,
        { param: 'model' },
      );
    // The policy's end_user_id: OpenAI's `user` names the caller (the client's own value replaced:
    // it could pass for someone else); Gemini's embeddings have no such field.
    if (policy.policy.endUserId) body.user = endUserId(principal.product, principal.user);
    // The request's limits are counted here, with the reservation (@AdmitInHandler on the route).
    const reservation = await this.quota.admit(
      ctx,
      principal.product,
      principal.user,
      () => ({ prompt: inputTokens(body.input), completion: 0 }),
      [body.model],
    );
    let spend: PartsSpend | undefined;
    // Whether keygate cut the call off at a timeout while the upstream had it (see cutWhileAnswering).
    let cutByKeygate = false;
    try {
      const embed = adapter.embeddings.bind(adapter);
      // Parts of the call answered by one attempt (Gemini's batches) are not sent again by a retry.
      const answeredParts = new Map<number, unknown>();
      spend = { counted: false, promptTokens: 0 };
      const retry = this.config.retry;
      let attempts = 0;
      // Retried like chat; no fallback: another model's vectors live in another space.
      const { value: result } = await runAttempts(
        [
          {
            model: body.model,
            attempt: () => {
              const n = attempts++;
              // What runAttempts will decide: a retryable failure, retries left, a wait it accepts.
              const willRetry = (error: unknown): boolean =>
                error instanceof UpstreamError &&
                error.retryable &&
                n < retry.maxRetries &&
                retryDelay(error, n, retry, () => 0) !== undefined;
              return countAttempt(ctx, () =>
                embed({ body, access, signal: ctx.abort, clientWantsUsage: false, answeredParts, spend, willRetry }),
              );
            },
          },
        ],
        this.config.retry,
        ctx.abort,
        this.attemptLog,
      );
      // A host that reports no usage, or a count that is not one (some OpenAI-compatible ones), is
      // counted at keygate's estimate, as chat is.
      ctx.tokensIn = tokenCount(result.usage?.prompt_tokens) ?? inputTokens(body.input);
      ctx.tokensOut = 0;
      ctx.answer(200);
      await reply.status(200).type('application/json').send(result.body);
    } catch (error) {
      cutByKeygate = cutWhileAnswering(error, false);
      throw error;
    } finally {
      // A request the upstream worked on is billed what it embedded, as chat bills a prompt, whether
      // or not anyone read the answer. A call sent in parts (Gemini's batches) counts the parts
      // answered or cut off in flight, also when another part failed; a single call that failed
      // upstream counts nothing (providers do not bill their own errors), one the client left while
      // it was under way, all of its input; one the client left while keygate waited to retry a
      // failure, nothing, as chat (no upstream was working on it). A single call keygate cut off at
      // a timeout counts all of its input, as chat bills such a call's prompt (and as a Gemini batch cut so counts).
      if (ctx.tokensIn === null && spend?.counted) {
        if (spend.promptTokens > 0) ctx.tokensIn = spend.promptTokens;
      } else if (ctx.tokensIn === null && (ctx.abortedInFlight || cutByKeygate)) ctx.tokensIn = inputTokens(body.input);
      // An embedding generates no output tokens, whatever became of the request.
      if (ctx.tokensIn !== null) ctx.tokensOut = 0;
      this.quota.settle(reservation, ctx.tokensIn ?? 0);
    }
  }
}
