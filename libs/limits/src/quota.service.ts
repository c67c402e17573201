import { Inject, Injectable, type OnModuleInit } from '@nestjs/common';
import { GatewayConfig, type Limits } from '@keygate/config';
import { GatewayError } from '@keygate/errors';
import { JsonLogger, KEYGATE_LOGGER, type RequestContext } from '@keygate/observability';
import { AutoBlocker } from './auto-blocker';
import { countTokens } from '@keygate/providers';
import {
  CounterStore,
  secondsToUtcMidnight,
  toNanoUsd,
  utcDay,
  type BudgetAsk,
  type QuotaName,
  type StoreName,
  type TokenAsk,
} from './counter.store';
import { takeDeferredAdmission } from './deferred-admission';

/** Tokens held against the day's quotas for one request, to settle when it ends. */
export interface TokenReservation {
  readonly product: string;
  readonly user: string;
  readonly day: string;
  readonly tokens: number;
  readonly store: StoreName;
}

/**
 * Daily token quotas (`daily_tokens`, `user_daily_tokens`). Before the upstream call an estimate
 * (the prompt counted with a real tokenizer plus the capped completion tokens) is reserved
 * atomically against both quotas, in the same step as the request's limits are counted (see
 * {@link QuotaService.admit}); when the request ends the reservation is settled to the real
 * usage. A request is admitted only if the day's total, outstanding reservations included, plus
 * its estimate fits, so the settled total can pass the cap only by what requests in flight use
 * beyond their own estimates (see README for the bound).
 */
@Injectable()
export class QuotaService implements OnModuleInit {
  /**
   * Tokens reserved by this replica's requests in flight, per product and per product and user
   * (`product\nuser`): what a refusal may be waiting on rather than the day's use.
   */
  private readonly inFlight = new Map<string, number>();

  constructor(
    @Inject(GatewayConfig) private readonly config: GatewayConfig,
    @Inject(CounterStore) private readonly counters: CounterStore,
    private readonly autoBlocker: AutoBlocker,
    @Inject(KEYGATE_LOGGER) private readonly logger: JsonLogger,
  ) {}

  /** Loads the tokenizer at boot: loading it on the first request stalls the event loop for ~200 ms. */
  onModuleInit(): void {
    countTokens('warm up');
  }

  /** Whether either token quota applies to the product (the estimate is skipped otherwise). */
  enabled(product: string): boolean {
    const { limits } = this.config.policy.forProduct(product);
    return limits.dailyTokens > 0 || limits.userDailyTokens > 0;
  }

  /**
   * Admits a request: counts it in the request limits the guard left to its handler (routes marked
   * `@AdmitInHandler()`), reserves `tokens` against the day's quotas (undefined: no quota applies)
   * and checks the day's cost against the product's and the user's budgets (when it has one), all
   * in one store step, one Redis round trip. `models` are the models the request may be answered by
   * (the one asked for, then its fallbacks): under a budget each must have a price, else 400
   * `policy_violation` before anything is counted. Throws the limits guard's 429 for a full request
   * limit, or 429 `daily_quota_exceeded` with `Retry-After` to UTC midnight when a budget is spent or
   * the tokens do not fit (saying so when they exceed a whole day's quota, so would never fit);
   * either way nothing is counted or reserved.
   *
   * Only the routes that call a model come here (every `@AdmitInHandler` route's handler, before its
   * first upstream call): the free ones (token counts, model lists, stored responses) are never
   * refused by a budget.
   */
  async admit(
    ctx: RequestContext | undefined,
    product: string,
    user: string,
    tokens: number | undefined,
    models: readonly string[],
  ): Promise<TokenReservation | undefined> {
    const { limits } = this.config.policy.forProduct(product);
    const now = Date.now();
    const day = utcDay(now);
    const budget: BudgetAsk | undefined =
      limits.dailyCostUsd > 0 || limits.userDailyCostUsd > 0
        ? { product, user, productCapNanoUsd: toNanoUsd(limits.dailyCostUsd), userCapNanoUsd: toNanoUsd(limits.userDailyCostUsd), day }
        : undefined;
    if (budget) this.refuseUnpriced(models);
    const deferred = ctx ? takeDeferredAdmission(ctx) : undefined;
    if (tokens === undefined && !budget) {
      if (deferred) await deferred();
      return undefined;
    }
    const ask: TokenAsk | undefined =
      tokens === undefined ? undefined : { product, user, tokens, productCap: limits.dailyTokens, userCap: limits.userDailyTokens, day };
    let result: { store: StoreName | null; refusedBy?: QuotaName; tokenTotals?: { product: number; user: number } };
    if (deferred) result = await deferred(ask, budget);
    else {
      const outcome = await this.counters.hit([], ask, budget);
      result = outcome.admitted
        ? { store: outcome.store }
        : { store: null, refusedBy: outcome.refusedBy, tokenTotals: outcome.tokenTotals };
    }
    if (result.store) {
      if (!ask) return undefined;
      this.hold(product, user, ask.tokens);
      return { product, user, day, tokens: ask.tokens, store: result.store };
    }
    if (result.refusedBy === 'product_cost' || result.refusedBy === 'user_cost') {
      const ofProduct = result.refusedBy === 'product_cost';
      // As with tokens, only the user's own budget counts toward their auto-block.
      if (!ofProduct) void this.autoBlocker.refused(product, user, result.refusedBy, ctx);
      const cap = ofProduct ? limits.dailyCostUsd : limits.userDailyCostUsd;
      throw new GatewayError(
        'daily_quota_exceeded',
        `The day's requests have reached ${ofProduct ? "this product's" : 'your'} daily budget of $${formatUsd(cap)}; it resets at 00:00 UTC`,
        { retryAfterSeconds: secondsToUtcMidnight(now) },
      );
    }
    if (!ask || !result.refusedBy) throw new Error('a request was refused by a token quota it reserved nothing against');
    throw this.tokenRefusal(ask, result.refusedBy, result.tokenTotals, limits, now);
  }

  /**
   * A model without a price adds nothing to the day's cost: under a budget it would be served without
   * limit. Refused before anything is counted, the requested model and each fallback alike (any of
   * them may answer).
   */
  private refuseUnpriced(models: readonly string[]): void {
    const unpriced = models.find((model) => !this.config.policy.priceOf(model));
    if (unpriced === undefined) return;
    const which = unpriced === models[0] ? `The model '${unpriced}'` : `The model '${unpriced}' (a fallback of '${models[0]}')`;
    throw new GatewayError(
      'policy_violation',
      `${which} has no price in the policy file's prices, and this product has a daily cost budget: its cost could not be counted against it`,
      { param: 'model' },
    );
  }

  /** The 429 of a token quota that had no room for `ask`. */
  private tokenRefusal(
    ask: TokenAsk,
    refusedBy: QuotaName,
    tokenTotals: { product: number; user: number } | undefined,
    limits: Limits,
    now: number,
  ): GatewayError {
    const { product, user, tokens } = ask;
    const ofProduct = refusedBy === 'product_tokens';
    const whose = ofProduct ? "this product's" : 'your';
    const cap = ofProduct ? limits.dailyTokens : limits.userDailyTokens;
    // Room this replica's own requests in flight hold: it comes back as they end (settled to what
    // they used), so the client is told to retry then, not at midnight (nor, by x-should-retry:
    // false, not at all). Only when those reservations alone make the room (other replicas' are
    // not known here), and only with the shared totals (the store that refused says them).
    const total = ofProduct ? tokenTotals?.product : tokenTotals?.user;
    const held = this.inFlight.get(ofProduct ? product : holdKey(product, user)) ?? 0;
    if (tokens <= cap && total !== undefined && held > 0 && total - held + tokens <= cap)
      return new GatewayError(
        'daily_quota_exceeded',
        `This request (about ${tokens} tokens) does not fit in ${whose} daily token quota while requests in flight hold ` +
          `${held} tokens of it (their prompts and the most they may generate), given back as they end; try again in ${IN_FLIGHT_RETRY_SECONDS} s`,
        { retryAfterSeconds: IN_FLIGHT_RETRY_SECONDS },
      );
    // Only the user's own quota counts toward auto-block: a product-wide cap is not their doing, nor
    // room their own requests in flight hold (they are told to try again; the per-second limits
    // still bound how often).
    if (refusedBy === 'user_tokens') void this.autoBlocker.refused(product, user, refusedBy);
    // Larger than the whole day's quota: it will not fit after midnight either, and the client must be told so.
    const message =
      tokens > cap
        ? `This request reserves about ${tokens} tokens (its prompt and the most it may generate), more than ${whose} whole daily ` +
          `token quota (${cap}): it can never be served as it is; ask for fewer output tokens (max_tokens, max_output_tokens or maxOutputTokens, as the API names it) or send a shorter prompt`
        : `This request (about ${tokens} tokens) does not fit in ${whose} daily token quota; it resets at 00:00 UTC`;
    return new GatewayError('daily_quota_exceeded', message, { retryAfterSeconds: secondsToUtcMidnight(now) });
  }

  /** Settles a reservation to the tokens really used (never throws: the answer is already sent). */
  settle(reservation: TokenReservation | undefined, used: number): void {
    if (!reservation) return;
    this.hold(reservation.product, reservation.user, -reservation.tokens);
    this.counters
      .settleTokens(
        reservation.product,
        reservation.user,
        used - reservation.tokens,
        reservation.day,
        reservation.store,
        reservation.tokens,
      )
      .catch((error: unknown) => {
        this.logger.write('WARNING', 'token usage could not be settled', {
          product: reservation.product,
          reason: (error as Error).message,
        });
      });
  }

  private hold(product: string, user: string, tokens: number): void {
    for (const key of [product, holdKey(product, user)]) {
      const left = (this.inFlight.get(key) ?? 0) + tokens;
      if (left > 0) this.inFlight.set(key, left);
      else this.inFlight.delete(key);
    }
  }
}

/** A refusal that waits on this replica's requests in flight: the client tries again this soon (the SDKs do on their own). */
export const IN_FLIGHT_RETRY_SECONDS = 2;

/** Dollars as a budget is written in the policy file: no exponent, no trailing zeros ($0.0000001, $2.5, $1,000). */
function formatUsd(usd: number): string {
  return usd.toLocaleString('en-US', { maximumFractionDigits: 9 });
}

function holdKey(product: string, user: string): string {
  return `${product}\n${user}`;
}
