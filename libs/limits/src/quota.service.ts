import { Inject, Injectable, type OnModuleInit } from '@nestjs/common';
import { GatewayConfig, type Limits, type ModelPrice } from '@keygate/config';
import { GatewayError } from '@keygate/errors';
import { JsonLogger, KEYGATE_LOGGER, type RequestContext } from '@keygate/observability';
import { AutoBlocker } from './auto-blocker';
import { countTokens } from '@keygate/providers';
import {
  CounterStore,
  fromNanoUsd,
  secondsToUtcMidnight,
  toNanoUsd,
  utcDay,
  type BudgetAsk,
  type QuotaName,
  type StoreName,
  type TokenAsk,
} from './counter.store';
import { takeDeferredAdmission, type DeferredAdmission } from './deferred-admission';

/**
 * What one request holds against the day's quotas and budgets, to settle when it ends: tokens
 * (undefined when no token quota applies: the tokens it uses are then only counted) and the most it
 * may cost, in whole billionths of a dollar (undefined when no budget applies); and where and on
 * which day it was counted.
 */
export interface TokenReservation {
  readonly product: string;
  readonly user: string;
  readonly day: string;
  readonly tokens?: number;
  readonly costNanoUsd?: number;
  readonly store: StoreName;
}

/**
 * A request's token estimate, in the two parts that are priced apart: the prompt (counted with
 * keygate's tokenizer) and the completion allowance (the capped or set completion tokens, times the
 * choices asked for). Reserved as their sum against the token quotas.
 */
export interface TokenEstimate {
  prompt: number;
  completion: number;
  /**
   * The longest prompt-cache write the request asks for (Anthropic's `cache_control`, 5 minutes
   * unless its `ttl` says `1h`): its prompt may be billed at that write rate, above `input`.
   */
  promptCacheWrite?: '5m' | '1h';
}

/**
 * How far above keygate's estimate of a prompt its real count may land, as far as a price tier is
 * concerned. The estimate counts text with OpenAI's o200k tokenizer, which Claude's and Gemini's
 * tokenizers out-count by up to ~30% (code the most): a prompt estimated just under a tier's
 * threshold may be billed above it, every token of the request at the higher rates (twice the
 * input, 1.5 times the output, for Gemini 2.5 Pro and Claude's 1M context). So a prompt whose
 * estimate times this factor passes a threshold is reserved at that tier's rates (for a 200k
 * threshold, from an estimate of 133,334 tokens).
 */
export const TIER_ESTIMATE_FACTOR = 1.5;

/**
 * The most a request of `estimate` tokens may cost when any of `prices` (those of the models that may
 * answer it) applies: the prompt at the highest input rate (the highest cache-write rate instead
 * where that is higher and the request writes to the prompt cache: Anthropic bills those writes
 * 1.25× to 2× `input`), the completion at the highest output rate, in whole billionths of a
 * dollar rounded up (so it is never below the audit's own rounding of the same tokens). The rates
 * of a price's tiers count too where the prompt may be billed at them: an estimate that, times
 * {@link TIER_ESTIMATE_FACTOR}, passes a tier's threshold. Cache reads are priced below input, so
 * a prompt read from the cache costs less than its estimate.
 */
export function maxCostNanoUsd(estimate: TokenEstimate, prices: ReadonlyArray<ModelPrice | undefined>): number {
  let input = 0;
  let output = 0;
  const reach = estimate.prompt * TIER_ESTIMATE_FACTOR;
  for (const price of prices) {
    if (!price) continue;
    for (const rates of [price, ...(price.tiers ?? []).filter((tier) => reach > tier.abovePromptTokens)]) {
      const write = estimate.promptCacheWrite === '1h' ? rates.cacheWrite1h : estimate.promptCacheWrite === '5m' ? rates.cacheWrite : 0;
      input = Math.max(input, rates.input, write);
      output = Math.max(output, rates.output);
    }
  }
  // Dollars per million tokens: a token at rate r costs r × 1000 billionths. Float noise (1000 ×
  // 0.15 × 1000 is 150000.00000000003) is not rounded up: what lies that close above a whole
  // billionth is taken off first (never as much as the half the audit rounds to the nearest by).
  const nano = (estimate.prompt * input + estimate.completion * output) * 1000;
  return Math.max(0, Math.min(Number.MAX_SAFE_INTEGER, Math.ceil(nano - Math.max(1e-6, nano * 1e-12))));
}

/**
 * Daily token quotas (`daily_tokens`, `user_daily_tokens`) and cost budgets (`daily_cost_usd`,
 * `user_daily_cost_usd`, the estimate's most possible cost reserved the same way, settled when the
 * request's audit line gives its cost). Before the upstream call an estimate
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
   * Tokens reserved by this replica's requests in flight, per product and per product and user, of
   * the day they were reserved on ({@link holdKey}): what a refusal may be waiting on rather than
   * the day's use. Only the refused request's own day counts: a request admitted before midnight
   * and still in flight gives nothing back to the new day when it ends.
   */
  private readonly inFlight = new Map<string, number>();
  /** The same for cost (billionths of a dollar) reserved against the budgets. */
  private readonly inFlightCost = new Map<string, number>();
  /** Reservations whose cost was settled: once each, however often asked. */
  private readonly costSettled = new WeakSet<TokenReservation>();

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

  /**
   * Admits a request: counts it in the request limits the guard left to its handler (routes marked
   * `@AdmitInHandler()`), reserves its tokens against the day's quotas (when one applies) and the
   * most it may cost against the product's and the user's budgets (when one applies), all in one
   * store step, one Redis round trip. `estimate` is asked only then (undefined: a request that
   * generates nothing to estimate, reserved nothing). `models` are the models the request may be
   * answered by (the one asked for, then its fallbacks): under a budget each must have a price, else
   * 400 `policy_violation` before anything is counted, and the cost reserved is the estimate at the
   * highest of their rates ({@link maxCostNanoUsd}). Throws the limits guard's 429 for a full request
   * limit, or 429 `daily_quota_exceeded` when a budget or a token quota has no room (saying so when
   * the request alone exceeds a whole day's, so would never fit); either way nothing is counted or
   * reserved. The cost reservation is settled when the request's audit line is written
   * (`ctx.chargeDailyCost`, to what it cost: nothing for a request that ended without cost).
   *
   * Only the routes that call a model come here (every `@AdmitInHandler` route's handler, before its
   * first upstream call): the free ones (token counts, model lists, stored responses) are never
   * refused by a budget.
   */
  async admit(
    ctx: RequestContext | undefined,
    product: string,
    user: string,
    estimate: (() => TokenEstimate) | undefined,
    models: readonly string[],
  ): Promise<TokenReservation | undefined> {
    const { limits } = this.config.policy.forProduct(product);
    const now = Date.now();
    const day = utcDay(now);
    const budgeted = limits.dailyCostUsd > 0 || limits.userDailyCostUsd > 0;
    if (budgeted) this.refuseUnpriced(models);
    const quota = hasTokenQuota(limits);
    const deferred = ctx ? takeDeferredAdmission(ctx) : undefined;
    // Only a product with a token quota or a budget pays for the estimate (the tokenizer's pass).
    const tokens = quota || budgeted ? estimate?.() : undefined;
    const ask: TokenAsk | undefined =
      quota && tokens
        ? { product, user, tokens: tokens.prompt + tokens.completion, productCap: limits.dailyTokens, userCap: limits.userDailyTokens, day }
        : undefined;
    const budget: BudgetAsk | undefined = budgeted
      ? {
          product,
          user,
          nanoUsd: tokens
            ? maxCostNanoUsd(
                tokens,
                models.map((model) => this.config.policy.priceOf(model)),
              )
            : 0,
          productCapNanoUsd: toNanoUsd(limits.dailyCostUsd),
          userCapNanoUsd: toNanoUsd(limits.userDailyCostUsd),
          day,
        }
      : undefined;
    if (!ask && !budget) {
      if (!deferred) return undefined;
      // Nothing to reserve, but the tokens it uses are counted all the same (/admin/usage), where
      // the request was: the reservation of none.
      const { store } = await deferred(day);
      return store ? this.reserved(ctx, product, user, day, store, undefined, undefined) : undefined;
    }
    let result: Awaited<ReturnType<DeferredAdmission>>;
    if (deferred) result = await deferred(day, ask, budget);
    else {
      const outcome = await this.counters.hit([], ask, budget);
      result = outcome.admitted
        ? { store: outcome.store }
        : { store: null, refusedBy: outcome.refusedBy, tokenTotals: outcome.tokenTotals, costTotals: outcome.costTotals };
    }
    if (result.store) return this.reserved(ctx, product, user, day, result.store, ask, budget);
    if (result.refusedBy === 'product_cost' || result.refusedBy === 'user_cost') {
      if (!budget) throw new Error('a request was refused by a budget it was not checked against');
      throw this.budgetRefusal(ctx, budget, result.refusedBy, result.costTotals, limits, now);
    }
    if (!ask || !result.refusedBy) throw new Error('a request was refused by a token quota it reserved nothing against');
    throw this.tokenRefusal(ask, result.refusedBy, result.tokenTotals, limits, now);
  }

  /**
   * The reservation of an admitted request. Its cost reservation is held (what a budget's refusal
   * may be waiting on) and settled when its audit line is written: `ctx.chargeDailyCost`, which the
   * limits guard set to add the cost alone, settles the estimate to the cost instead (one store
   * call, to the store and day that took it).
   */
  private reserved(
    ctx: RequestContext | undefined,
    product: string,
    user: string,
    day: string,
    store: StoreName,
    ask: TokenAsk | undefined,
    budget: BudgetAsk | undefined,
  ): TokenReservation {
    const costNanoUsd = budget && budget.nanoUsd > 0 ? budget.nanoUsd : undefined;
    if (ask) this.hold(this.inFlight, product, user, day, ask.tokens);
    const reservation: TokenReservation = { product, user, day, tokens: ask?.tokens, costNanoUsd, store };
    if (costNanoUsd !== undefined) {
      this.hold(this.inFlightCost, product, user, day, costNanoUsd);
      if (ctx) ctx.chargeDailyCost = (usd) => this.settleCost(reservation, usd);
    }
    return reservation;
  }

  /**
   * Settles a reservation's cost to what the request really cost (US dollars, its audit's
   * `cost_usd`; 0 for none): the day's cost totals get the difference, in the store that took it.
   * Once; never throws (the answer is already sent).
   */
  settleCost(reservation: TokenReservation | undefined, usd: number): void {
    const reserved = reservation?.costNanoUsd;
    if (!reservation || reserved === undefined || this.costSettled.has(reservation)) return;
    this.costSettled.add(reservation);
    this.hold(this.inFlightCost, reservation.product, reservation.user, reservation.day, -reserved);
    const nanoUsd = toNanoUsd(usd);
    // Above 2^53 billionths ($9M for one request) a sum is no longer exact: the estimate stays charged
    // (the audit line still says what it cost).
    const delta = Number.isSafeInteger(nanoUsd) && nanoUsd >= 0 ? nanoUsd - reserved : 0;
    this.counters
      .addCost(reservation.product, reservation.user, delta, reservation.day, reservation.store, reserved)
      .catch((error: unknown) => {
        this.logger.write('WARNING', 'request cost could not be settled', {
          product: reservation.product,
          reason: (error as Error).message,
        });
      });
  }

  /** The 429 of a budget that had no room for `budget` (its estimate), or that the day has spent. */
  private budgetRefusal(
    ctx: RequestContext | undefined,
    budget: BudgetAsk,
    refusedBy: QuotaName,
    costTotals: { product: number; user: number } | undefined,
    limits: Limits,
    now: number,
  ): GatewayError {
    const { product, user, nanoUsd } = budget;
    const ofProduct = refusedBy === 'product_cost';
    const whose = ofProduct ? "this product's" : 'your';
    const capUsd = ofProduct ? limits.dailyCostUsd : limits.userDailyCostUsd;
    const cap = ofProduct ? budget.productCapNanoUsd : budget.userCapNanoUsd;
    const estimate = `$${formatUsd(fromNanoUsd(nanoUsd))}`;
    // As for tokens: room this replica's own requests in flight hold comes back as they end (settled
    // to what they cost), so the client is told to retry then, when those alone make the room.
    const total = ofProduct ? costTotals?.product : costTotals?.user;
    const held = this.inFlightCost.get(ofProduct ? holdKey(product, budget.day) : holdKey(product, budget.day, user)) ?? 0;
    if (nanoUsd <= cap && total !== undefined && held > 0 && total - held + nanoUsd <= cap)
      return new GatewayError(
        'daily_quota_exceeded',
        `This request (up to ${estimate}) does not fit in ${whose} daily budget of $${formatUsd(capUsd)} while requests in flight hold ` +
          `$${formatUsd(fromNanoUsd(held))} of it (the most they may cost), given back as they end; try again in ${IN_FLIGHT_RETRY_SECONDS} s`,
        { retryAfterSeconds: IN_FLIGHT_RETRY_SECONDS },
      );
    // As with tokens, only the user's own budget counts toward their auto-block.
    if (!ofProduct) void this.autoBlocker.refused(product, user, refusedBy, ctx);
    // "Does not fit in what is left" without the shared totals too (a memory store's refusal): true
    // whether or not the day has reached the budget.
    const message =
      nanoUsd > cap
        ? `This request may cost up to ${estimate} (its prompt and the most it may generate, at the highest prices of the models that may answer it), ` +
          `more than ${whose} whole daily budget of $${formatUsd(capUsd)}: it can never be served as it is; ask for fewer output tokens ` +
          `(max_tokens, max_output_tokens or maxOutputTokens, as the API names it) or send a shorter prompt`
        : nanoUsd === 0 || (total !== undefined && total >= cap)
          ? `The day's requests have reached ${whose} daily budget of $${formatUsd(capUsd)}; it resets at 00:00 UTC`
          : `This request (up to ${estimate}) does not fit in what is left of ${whose} daily budget of $${formatUsd(capUsd)}; it resets at 00:00 UTC`;
    return new GatewayError('daily_quota_exceeded', message, { retryAfterSeconds: secondsToUtcMidnight(now) });
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
    const held = this.inFlight.get(ofProduct ? holdKey(product, ask.day) : holdKey(product, ask.day, user)) ?? 0;
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

  /**
   * Settles a reservation's tokens to those really used, or, where no token quota applies (none
   * reserved), adds them to the day's token counts, which `/admin/usage` reports for every product.
   * Never throws: the answer is already sent.
   */
  settle(reservation: TokenReservation | undefined, used: number): void {
    if (!reservation) return;
    const reserved = reservation.tokens ?? 0;
    if (reservation.tokens !== undefined) this.hold(this.inFlight, reservation.product, reservation.user, reservation.day, -reserved);
    else if (used === 0) return;
    this.counters
      .settleTokens(reservation.product, reservation.user, used - reserved, reservation.day, reservation.store, reserved)
      .catch((error: unknown) => {
        this.logger.write('WARNING', 'token usage could not be settled', {
          product: reservation.product,
          reason: (error as Error).message,
        });
      });
  }

  private hold(inFlight: Map<string, number>, product: string, user: string, day: string, amount: number): void {
    for (const key of [holdKey(product, day), holdKey(product, day, user)]) {
      const left = (inFlight.get(key) ?? 0) + amount;
      if (left > 0) inFlight.set(key, left);
      else inFlight.delete(key);
    }
  }
}

/** A refusal that waits on this replica's requests in flight: the client tries again this soon (the SDKs do on their own). */
export const IN_FLIGHT_RETRY_SECONDS = 2;

/** Dollars as a budget is written in the policy file: no exponent, no trailing zeros ($0.0000001, $2.5, $1,000). */
function formatUsd(usd: number): string {
  return usd.toLocaleString('en-US', { maximumFractionDigits: 9 });
}

function hasTokenQuota(limits: Limits): boolean {
  return limits.dailyTokens > 0 || limits.userDailyTokens > 0;
}

/** What requests in flight hold of a product's day (`product\nday`), or of one user's (`product\nday\nuser`). */
function holdKey(product: string, day: string, user?: string): string {
  return user === undefined ? `${product}\n${day}` : `${product}\n${day}\n${user}`;
}
