/** The four request limits checked together; 0 disables one. */
export interface RequestLimits {
  productPerSecond: number;
  userPerSecond: number;
  productPerDay: number;
  userPerDay: number;
}

/** Which limit refused a request. */
export type LimitName = 'product_qps' | 'user_qps' | 'product_daily' | 'user_daily';

export const LIMIT_ORDER: readonly LimitName[] = ['product_qps', 'user_qps', 'product_daily', 'user_daily'];

/** The outcome of admitting one request: counts after admission, or the limit that refused it. */
/** Which store holds a reservation or an admission: settling or giving back must go to the same one. */
export type StoreName = 'shared' | 'local';

export type Admission =
  | { admitted: true; counts: [number, number, number, number]; store: StoreName }
  | { admitted: false; refusedBy: LimitName; counts: [number, number, number, number] };

/** The outcome of reserving tokens against the day's quotas. */
export type Reservation =
  | { reserved: true; productTotal: number; userTotal: number; store: StoreName }
  | { reserved: false; refusedBy: 'product_tokens' | 'user_tokens' };

/** One product's usage for one UTC day. */
export interface DailyUsage {
  requests: { total: number; users: Record<string, number> };
  tokens: { total: number; users: Record<string, number> };
}

/**
 * The counters behind limits and quotas. Every operation is atomic for the whole set of counters
 * it touches, so a request is either admitted and counted everywhere or refused and counted
 * nowhere (a refused request is never charged).
 */
export interface CounterStore {
  /** Checks all four request limits and, only if every one has room, counts the request in all four. */
  admit(product: string, user: string, limits: RequestLimits, second: number, day: string): Promise<Admission>;
  /** Gives an admitted request back to the day's request counts (product and user) of the store that admitted it. */
  releaseDaily(product: string, user: string, day: string, store: StoreName): Promise<void>;
  /** Reserves `tokens` against the product's and the user's daily token quotas, if both have room. */
  reserveTokens(product: string, user: string, tokens: number, productCap: number, userCap: number, day: string): Promise<Reservation>;
  /** Adds `delta` (actual minus reserved; may be negative) to the day's token counters of the store that took the reservation. */
  settleTokens(product: string, user: string, delta: number, day: string, store: StoreName): Promise<void>;
  /** The day's request and token counts of a product, per user. */
  usage(product: string, day: string): Promise<DailyUsage>;
}

/** Injection token and type of the {@link CounterStore}. */
export const CounterStore = Symbol('KEYGATE:COUNTER_STORE');

/** `YYYY-MM-DD` of a UTC instant. */
export function utcDay(ms: number): string {
  return new Date(ms).toISOString().slice(0, 10);
}

/** Whole seconds from `ms` to the next UTC midnight (at least 1). */
export function secondsToUtcMidnight(ms: number): number {
  const next = new Date(ms);
  next.setUTCHours(24, 0, 0, 0);
  return Math.max(1, Math.ceil((next.getTime() - ms) / 1000));
}
