/** The four identity limits: the request throttlers' names. */
export type LimitName = 'product_qps' | 'user_qps' | 'product_daily' | 'user_daily';

/** Which store holds a reservation or an admission: settling or giving back must go to the same one. */
export type StoreName = 'shared' | 'local';

/**
 * One counter a request is counted in: a fixed window whose identity (product, user, second or
 * day) is in its key. The counter is the key itself, or, with `field`, one field of the hash at the
 * key (a hash's lifetime starts with its first counter). `limit` 0 counts without ever refusing
 * (daily counts feed `/admin/usage`).
 */
export interface CounterHit extends CounterRef {
  limit: number;
  /** How long the counter (its hash, for a field) is kept after its first hit. */
  ttlMs: number;
}

/** A counter: a key, or a field of the hash at a key. */
export interface CounterRef {
  key: string;
  field?: string;
}

/** Tokens a request reserves against its product's and its user's quotas for one UTC day (a cap of 0: none). */
export interface TokenAsk {
  product: string;
  user: string;
  tokens: number;
  productCap: number;
  userCap: number;
  day: string;
}

/** The token quota that refused a reservation. */
export type TokenLimitName = 'product_tokens' | 'user_tokens';

/**
 * The most a request may cost (`nanoUsd`), reserved against the day's cost budgets of its product
 * and of its user, in whole billionths of a dollar (a cap of 0: none). Settled to what it really
 * cost once the request has ended ({@link CounterStore.addCost} with `reserved`).
 */
export interface BudgetAsk {
  product: string;
  user: string;
  nanoUsd: number;
  productCapNanoUsd: number;
  userCapNanoUsd: number;
  day: string;
}

/** The daily cost budget that refused a request. */
export type BudgetName = 'product_cost' | 'user_cost';

/** A day's quota that refused a request none of its counters refused: its tokens or its cost. */
export type QuotaName = TokenLimitName | BudgetName;

/**
 * The outcome of counting one request in several counters, and of reserving its tokens when asked:
 * all counted and reserved, or nothing, with the index of the first counter that was full, or
 * (`refusedAt` -1) the cost budget already spent or the token quota that had no room. `counts` are after counting (admitted) or as
 * found (refused); `ttlsMs` are the counters' remaining lifetimes (0 for a counter that does not exist).
 */
export type HitOutcome = (
  | { admitted: true; counts: number[]; ttlsMs: number[]; store: StoreName }
  | { admitted: false; refusedAt: number; refusedBy?: QuotaName; counts: number[]; ttlsMs: number[] }
) & {
  /** With tokens asked of the shared store: the day's token totals of the product and the user, after reserving or as found. */
  tokenTotals?: { product: number; user: number };
  /**
   * With a budget asked of the shared store: the day's cost totals (billionths of a dollar, outstanding
   * reservations included) of the product and the user, after reserving or as found.
   */
  costTotals?: { product: number; user: number };
};

/** One product's usage for one UTC day. */
export interface DailyUsage {
  /**
   * Whose counts these are: `shared`, every replica's (Redis); `replica`, this replica's alone (no
   * Redis configured, or Redis unreachable right now).
   */
  scope: 'shared' | 'replica';
  requests: { total: number; users: Record<string, number> };
  tokens: { total: number; users: Record<string, number> };
  /** What the day's priced requests cost, in whole billionths of a US dollar (integers: no float drift). */
  costNanoUsd: { total: number; users: Record<string, number> };
}

/**
 * The counters behind limits and quotas. Every operation is atomic for the whole set of counters
 * it touches, so a request is either admitted and counted everywhere or refused and counted
 * nowhere (a refused request is never charged).
 */
export interface CounterStore {
  /**
   * Counts a request in every counter and reserves its tokens (`tokens`, if given) against the
   * day's quotas and its cost estimate (`budget`, if given) against the day's budgets, if each
   * counter has room under its limit, each quota under its cap and each budget too; otherwise does
   * none of it. One atomic step (one Redis round trip). A budget refuses once the day's cost
   * (reservations included) has reached it (`>=`) or the estimate does not fit under it, the user's
   * named first when both do, a budget before a token quota.
   */
  hit(hits: readonly CounterHit[], tokens?: TokenAsk, budget?: BudgetAsk): Promise<HitOutcome>;
  /** Takes one back from each counter (never below zero, never creating one) in the store that counted it. */
  release(counters: readonly CounterRef[], store: StoreName): Promise<void>;
  /**
   * Adds `delta` (actual minus reserved; may be negative) to the day's token counters of the store
   * that took the reservation (`reserved` tokens): a failover store also brings the shared totals
   * the whole usage of a reservation it took in memory.
   */
  settleTokens(product: string, user: string, delta: number, day: string, store: StoreName, reserved?: number): Promise<void>;
  /**
   * Adds `nanoUsd` (whole billionths of a dollar: what a finished request cost minus the `reserved`
   * estimate it held, so possibly negative; never below zero) to the day's cost totals of its
   * product and user, in the store that admitted it (the day it was counted in): as a token
   * settlement is, off the request path, and a failover store also brings the shared totals the
   * whole cost (`reserved + nanoUsd`) of a request it admitted in memory.
   */
  addCost(product: string, user: string, nanoUsd: number, day: string, store: StoreName, reserved?: number): Promise<void>;
  /** The day's request and token counts and cost of a product, per user. */
  usage(product: string, day: string): Promise<DailyUsage>;
}

/** Injection token and type of the {@link CounterStore}. */
export const CounterStore = Symbol('KEYGATE:COUNTER_STORE');

/** The last UTC day named, and its bounds: several calls per request ask for the same day. */
let lastDay = { start: 0, end: 0, name: '' };

/** `YYYY-MM-DD` of a UTC instant. */
export function utcDay(ms: number): string {
  if (ms >= lastDay.start && ms < lastDay.end) return lastDay.name;
  const start = ms - (((ms % 86_400_000) + 86_400_000) % 86_400_000);
  const name = new Date(ms).toISOString().slice(0, 10);
  lastDay = { start, end: start + 86_400_000, name };
  return name;
}

/** Whole seconds from `ms` to the next UTC midnight (at least 1). */
export function secondsToUtcMidnight(ms: number): number {
  const next = new Date(ms);
  next.setUTCHours(24, 0, 0, 0);
  return Math.max(1, Math.ceil((next.getTime() - ms) / 1000));
}

/**
 * Whole seconds from `ms` to the end of the UTC day `day` (`YYYY-MM-DD`), at least 1: how long a
 * refusal by that day's counters lasts, also when it is answered after that day's midnight (a
 * request named on the day before whose store step came back after it may retry at once).
 */
export function secondsToEndOfUtcDay(day: string, ms: number): number {
  return Math.max(1, Math.ceil((Date.parse(`${day}T00:00:00Z`) + 86_400_000 - ms) / 1000));
}

/** Daily request counters are kept a day past their own, so `/admin/usage` can report yesterday. */
export const DAILY_COUNTER_TTL_MS = 2 * 86_400_000;
/** Per-second counters outlive their second by one (a request counted at its very end still finds it). */
export const SECOND_COUNTER_TTL_MS = 2_000;

/**
 * The request counters. The product is a hash tag (`{product}`), so one request's keys share a
 * Redis Cluster slot and one script can count them all. Per-second counts are plain keys; a day's
 * counts are the fields `_total` and `u:<user>` of one hash per product and day, which
 * `/admin/usage` reads in one HGETALL.
 */
export const requestCounters = {
  productPerSecond: (product: string, second: number): CounterRef => ({ key: `kg:{${product}}:qps:${second}` }),
  userPerSecond: (product: string, user: string, second: number): CounterRef => ({ key: `kg:{${product}}:qps:${second}:u:${user}` }),
  productPerDay: (product: string, day: string): CounterRef => ({ key: dailyRequestsKey(product, day), field: '_total' }),
  userPerDay: (product: string, user: string, day: string): CounterRef => ({ key: dailyRequestsKey(product, day), field: `u:${user}` }),
};

/** The hash of a product's request counts for one UTC day. */
export function dailyRequestsKey(product: string, day: string): string {
  return `kg:{${product}}:req:${day}`;
}

/** The day of a daily counter, whose key ends with it (`kg:{product}:req:<day>`). */
export function dayOfDailyKey(dailyKey: string): string {
  return dailyKey.slice(dailyKey.lastIndexOf(':') + 1);
}

/** Whole billionths of a dollar (an audit's `cost_usd` is rounded to them already): what the stores add up. */
export function toNanoUsd(usd: number): number {
  return Math.round(usd * 1e9);
}

/** Dollars from billionths, rounded to the billionth (a sum of integers has no float drift to hide). */
export function fromNanoUsd(nanoUsd: number): number {
  return Math.round(nanoUsd) / 1e9;
}
