import { Inject, Injectable } from '@nestjs/common';
import type { Principal } from '@keygate/auth';
import { GatewayConfig } from '@keygate/config';
import { QuotaService, type TokenEstimate } from '@keygate/limits';
import { JsonLogger, KEYGATE_LOGGER, type EarlierAttempt, type RequestContext } from '@keygate/observability';
import {
  countTokens,
  reachedUpstream,
  runAttempts,
  type AttemptObserver,
  type ChatStream,
  type PassedHeaders,
  type RetryPolicy,
  type Usage,
} from '@keygate/providers';
import type { ProviderAccess } from '@keygate/secrets';
import type { FastifyReply } from 'fastify';
import { countAttempt, cutWhileAnswering } from '../routing/attempt-count';
import { upstreamAttemptLog } from '../routing/attempt-log';
import { primed, retryableWhenStreamed } from './primed-stream';
import { recordUsage, SseRelay, type RelayDialect, type SseStream } from './sse-relay';

/** A whole (non-streamed) answer: its text for the client, and what keygate bills it. */
export interface WholeAnswer {
  body: string;
  usage: Usage | null;
  /** Upstream response headers the client gets too. */
  headers?: PassedHeaders;
}

/** A model to try, and where it is served. */
export interface Candidate {
  model: string;
  access: ProviderAccess;
}

/** What a route (chat, Anthropic's messages) gives the runner for one request. */
export interface CompletionPlan<A extends WholeAnswer, C extends Candidate = Candidate> {
  /** The requested model, then its fallbacks. */
  candidates: readonly C[];
  /**
   * Models an upstream may answer from of its own accord (Anthropic's server-side `fallbacks`),
   * checked by the route: priced with the candidates under a budget.
   */
  alsoAnsweredBy?: readonly string[];
  /** One attempt's upstream call: a whole answer, or a stream when the client asked for one. */
  call(candidate: C): Promise<A | ChatStream>;
  /**
   * The tokens to reserve, given the prompt's estimate ({@link promptTokens}): it and the completion
   * allowance (its cap), asked only when the product has a token quota or a cost budget (the budget
   * reserves them at the models' prices).
   */
  reserve(promptTokens: number): TokenEstimate;
  /**
   * keygate's estimate of the prompt's tokens: reserved, and billed for an upstream that reported
   * none. Asked at most once per request (the runner keeps it): a PDF's pages are counted once.
   */
  promptTokens(): number;
  /** The completion text of a whole answer, to estimate it when the upstream reported no usage. */
  answerText(answer: A): string;
  dialect: RelayDialect;
  maxStreamSeconds: number;
}

/**
 * The common course of a completion, whatever the API: limits and the token reservation counted
 * together, attempts (retries and fallbacks, only before an event has gone to the client; a stream
 * primed up to its first content, its HTTP head sent meanwhile once that takes long), the answer
 * (JSON or SSE), and the settlement of what was billed.
 */
@Injectable()
export class CompletionRunner {
  private readonly retry: RetryPolicy;
  private readonly attemptLog: AttemptObserver;

  constructor(
    private readonly quota: QuotaService,
    private readonly sse: SseRelay,
    @Inject(GatewayConfig) config: GatewayConfig,
    @Inject(KEYGATE_LOGGER) logger: JsonLogger,
  ) {
    this.retry = config.retry;
    this.attemptLog = upstreamAttemptLog(logger);
  }

  /**
   * One model's upstream call, counted ({@link countAttempt}) and retried as the policy says, each
   * failed attempt logged, without fallbacks: for the calls tied to one model (a token count, an
   * embedding, a stored response). `retry: false` makes one attempt only.
   */
  async once<T>(ctx: RequestContext, model: string, start: () => Promise<T>, options: { retry?: boolean } = {}): Promise<T> {
    const policy = options.retry === false ? { ...this.retry, maxRetries: 0 } : this.retry;
    const { value } = await runAttempts<T>([{ model, attempt: () => countAttempt(ctx, start) }], policy, ctx.abort, this.attemptLog);
    return value;
  }

  async run<A extends WholeAnswer, C extends Candidate>(
    ctx: RequestContext,
    principal: Principal,
    plan: CompletionPlan<A, C>,
    reply: FastifyReply,
  ): Promise<void> {
    // What the last attempt's upstream reported before its stream failed in priming (never replayed).
    let reportedBeforeFailure: Usage | undefined;
    // The client's stream once its HTTP head is out: at the priming time, when an attempt's stream has
    // no content yet. Its events are held back until one has, so a failure before then is still
    // retried and falls back; the last failure then ends the stream with its error event, not JSON.
    let opened: SseStream | undefined;
    const open = (): SseStream => (opened ??= this.sse.open(ctx, reply, plan.dialect, plan.maxStreamSeconds));
    const priming = {
      // The head goes out now: keygate may wait long for a first event.
      commit: () => open().flushHead(),
      onUsage: (usage: Usage) => (reportedBeforeFailure = usage),
    };
    // The attempts keygate cut while the upstream was answering them (see cutWhileAnswering), each
    // billed its prompt, with what its upstream had reported; and the last attempt that reached an
    // upstream, which the request's own billing below covers when it failed so.
    const cuts: Array<{ attempt: number; model: string; reported: Usage | undefined }> = [];
    let attempts = 0;
    let lastReached = 0;
    const candidates = plan.candidates.map((candidate) => ({
      model: candidate.model,
      attempt: () => {
        const before = { provider: ctx.provider, model: ctx.model };
        const attempt = ++attempts;
        ctx.provider = candidate.access.provider;
        ctx.model = candidate.model;
        reportedBeforeFailure = undefined;
        return countAttempt<A | ChatStream>(ctx, () =>
          plan.call(candidate).then<A | ChatStream>((answer) => ('events' in answer ? primed(answer, priming) : answer)),
        ).then(
          (answer) => {
            lastReached = attempt;
            return answer;
          },
          (error: unknown) => {
            // Refused before any upstream call (a fallback that cannot express the request is then
            // skipped): the audit and the metrics keep naming the model that was last tried.
            if (!reachedUpstream(error)) Object.assign(ctx, before);
            else lastReached = attempt;
            const failure = ctx.stream ? retryableWhenStreamed(error) : error;
            if (cutWhileAnswering(failure, ctx.stream)) cuts.push({ attempt, model: candidate.model, reported: reportedBeforeFailure });
            throw failure;
          },
        );
      },
    }));
    // The request's limits are counted here, with the reservations (@AdmitInHandler on the route).
    // The models any attempt may call (fallbacks included): each must have a price under a budget,
    // and the cost reserved is at the highest of their prices.
    const models = plan.candidates.map((candidate) => candidate.model).concat(plan.alsoAnsweredBy ?? []);
    // The prompt's estimate, made once whoever asks first (the reservation, or the billing of a failure).
    let prompt: number | undefined;
    const promptTokens = (): number => (prompt ??= plan.promptTokens());
    const reservation = await this.quota.admit(ctx, principal.product, principal.user, () => plan.reserve(promptTokens()), models);
    // Whether the request failed with its last attempt cut off by keygate while the upstream was
    // answering it (see cutWhileAnswering): the upstream had begun, and bills.
    let cutByKeygate = false;
    try {
      let value: A | ChatStream;
      try {
        ({ value } = await runAttempts<A | ChatStream>(candidates, this.retry, ctx.abort, this.attemptLog));
      } catch (error) {
        cutByKeygate = cutWhileAnswering(error, ctx.stream);
        // Nothing went out: the filter answers the failure as JSON, with its status and headers.
        if (!opened) throw error;
        this.sse.fail(ctx, opened, error);
        return;
      }
      if ('events' in value) {
        // The answering attempt's upstream headers (Anthropic's `request-id`) go out with the stream's
        // head, unless the head left at the priming time while keygate waited for content (perhaps
        // from another attempt): an HTTP head cannot be amended, so the client goes without them.
        if (value.headers && !opened) void reply.headers(value.headers);
        await this.sse.relay(ctx, value, open(), promptTokens);
      } else {
        if (value.headers) void reply.headers(value.headers);
        this.send(ctx, value, plan, reply, promptTokens);
      }
    } finally {
      // A request the client abandoned while an attempt was under way is billed for its prompt (the
      // stream path does the same): what the upstream had reported by then (Anthropic's
      // message_start, read while priming the stream), else keygate's estimate; so is one whose last
      // attempt keygate cut off at the idle timeout, which the upstream had begun to answer (as a
      // stream cut after its first event is). A request that failed upstream is not, nor one
      // abandoned while keygate waited to retry such a failure: providers do not bill their own
      // errors (ctx.abortedInFlight tells the two apart).
      if (ctx.tokensIn === null && (ctx.abortedInFlight || cutByKeygate)) {
        if (!recordUsage(ctx, reportedBeforeFailure)) ctx.tokensIn = promptTokens();
      }
      // So is each other attempt keygate cut so (a stream stalled before its first content, then
      // retried or fallen back; the client perhaps leaving in the wait that followed), the same way
      // and at its own model's price: the upstream had begun it, and bills it, whatever came after.
      const billedAbove = ctx.abortedInFlight || cutByKeygate ? lastReached : 0;
      ctx.billEarlierAttempts(
        cuts.filter((cut) => cut.attempt !== billedAbove).map((cut) => billedAttempt(cut.model, cut.reported, promptTokens)),
      );
      this.quota.settle(reservation, (ctx.tokensIn ?? 0) + (ctx.tokensOut ?? 0));
    }
  }

  /**
   * Answers a whole completion. Not awaited: a Fastify reply is a thenable that settles when the
   * response has finished, which nothing here needs (the audit waits for the response's close event).
   */
  private send<A extends WholeAnswer, C extends Candidate>(
    ctx: RequestContext,
    answer: A,
    plan: CompletionPlan<A, C>,
    reply: FastifyReply,
    promptTokens: () => number,
  ): void {
    if (!recordUsage(ctx, answer.usage)) {
      // An upstream that reports no usage, or none keygate can read (some compatible hosts):
      // keygate's estimate stands in, so the request is still counted against the token quotas and in the audit.
      ctx.tokensIn = promptTokens();
      ctx.tokensOut = countTokens(plan.answerText(answer));
    }
    ctx.answer(200);
    void reply.status(200).type('application/json').send(answer.body);
  }
}

/**
 * What an attempt cut while the upstream answered it is billed, as the request's last attempt so
 * cut is: what its upstream had reported (Anthropic's message_start), else keygate's estimate of the prompt.
 */
function billedAttempt(model: string, reported: Usage | undefined, promptTokens: () => number): EarlierAttempt {
  const attempt: EarlierAttempt = {
    model,
    tokensIn: null,
    tokensOut: null,
    tokensCached: null,
    tokensCacheWrite: null,
    tokensCacheWrite1h: null,
    tokensReasoning: null,
  };
  if (!recordUsage(attempt, reported)) attempt.tokensIn = promptTokens();
  return attempt;
}
