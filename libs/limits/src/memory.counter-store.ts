import {
  dailyRequestsKey,
  type BudgetAsk,
  type BudgetName,
  type CounterHit,
  type CounterRef,
  type CounterStore,
  type DailyUsage,
  type HitOutcome,
  type StoreName,
  type TokenAsk,
  type TokenLimitName,
} from './counter.store';

/** Expired counters are swept at most this often (each lookup also ignores an expired one). */
const SWEEP_EVERY_MS = 1_000;

/** A key's counters: the key's own (field '') or its hash fields, and when the key expires. */
interface Bucket {
  expiresAt: number;
  counts: Map<string, number>;
}

/**
 * {@link CounterStore} inside one process: the store without Redis, and the per-replica fallback
 * while Redis is down (limits are then per replica, never unlimited). Same semantics as Redis.
 */
export class MemoryCounterStore implements CounterStore {
  /** By key, like Redis keys: a sweep walks keys (products × days, live seconds), not users. */
  private readonly buckets = new Map<string, Bucket>();
  private nextSweep = 0;
  /** Token totals per product and day, fields `_total` and `u:<user>`. */
  private readonly days = new Map<string, Map<string, number>>();
  /** Cost totals (billionths of a dollar) per product and day, the same fields. */
  private readonly costDays = new Map<string, Map<string, number>>();

  constructor(private readonly now: () => number = Date.now) {}

  hit(hits: readonly CounterHit[], tokens?: TokenAsk, budget?: BudgetAsk): Promise<HitOutcome> {
    const now = this.now();
    this.sweep(now);
    const found = hits.map((h) => this.live(h.key, now));
    const counts = hits.map((h, i) => found[i]?.counts.get(h.field ?? '') ?? 0);
    const ttlsMs = found.map((b) => (b ? b.expiresAt - now : 0));
    // The day's token and cost totals, after reserving or as found, as Redis answers them: the quota
    // service tells a request refused only for room its replica's requests in flight hold to retry
    // in 2 s, not at midnight.
    const totals = (): Pick<HitOutcome, 'tokenTotals' | 'costTotals'> => ({
      ...(tokens && { tokenTotals: dayTotals(this.days, tokens.product, tokens.user, tokens.day) }),
      ...(budget && { costTotals: dayTotals(this.costDays, budget.product, budget.user, budget.day) }),
    });
    const refusedAt = hits.findIndex((h, i) => h.limit > 0 && counts[i] >= h.limit);
    if (refusedAt >= 0) return Promise.resolve({ admitted: false, refusedAt, counts, ttlsMs });
    const spent = budget && this.spentBudget(budget);
    if (spent) return Promise.resolve({ admitted: false, refusedAt: -1, refusedBy: spent, counts, ttlsMs, ...totals() });
    if (tokens) {
      const refusedBy = this.reserveTokens(tokens);
      if (refusedBy) return Promise.resolve({ admitted: false, refusedAt: -1, refusedBy, counts, ttlsMs, ...totals() });
    }
    if (budget && budget.nanoUsd > 0) this.addCostNow(budget.product, budget.user, budget.nanoUsd, budget.day);
    hits.forEach((h, i) => {
      // Two hits may share a key (two fields of one hash): the bucket made for the first serves both.
      const bucket = this.live(h.key, now) ?? { expiresAt: now + h.ttlMs, counts: new Map<string, number>() };
      this.buckets.set(h.key, bucket);
      const field = h.field ?? '';
      counts[i] = (bucket.counts.get(field) ?? 0) + 1;
      bucket.counts.set(field, counts[i]);
      ttlsMs[i] = bucket.expiresAt - now;
    });
    return Promise.resolve({ admitted: true, counts, ttlsMs, store: 'local', ...totals() });
  }

  release(counters: readonly CounterRef[], _store?: StoreName): Promise<void> {
    const now = this.now();
    for (const { key, field = '' } of counters) {
      const bucket = this.live(key, now);
      const n = bucket?.counts.get(field) ?? 0;
      if (bucket && n > 0) bucket.counts.set(field, n - 1);
    }
    return Promise.resolve();
  }

  /**
   * The budget the day's cost (reservations included) has reached, or that has no room for the
   * request's estimate, if any (the user's first, as in Redis).
   */
  private spentBudget({ product, user, nanoUsd, productCapNanoUsd, userCapNanoUsd, day }: BudgetAsk): BudgetName | undefined {
    const d = this.costDays.get(`${product}\n${day}`);
    const full = (spent: number, cap: number): boolean => cap > 0 && (spent >= cap || spent + nanoUsd > cap);
    if (full(d?.get(`u:${user}`) ?? 0, userCapNanoUsd)) return 'user_cost';
    if (full(d?.get('_total') ?? 0, productCapNanoUsd)) return 'product_cost';
    return undefined;
  }

  /** Reserves the tokens if both quotas have room; else names the one that has none (the user's first). */
  private reserveTokens({ product, user, tokens, productCap, userCap, day }: TokenAsk): TokenLimitName | undefined {
    const d = totalsOf(this.days, product, day);
    const tp = d.get('_total') ?? 0;
    const tu = d.get(`u:${user}`) ?? 0;
    // The user's own quota first: when both are full, the refusal is theirs (and counts toward
    // their auto-block), as in Redis.
    if (userCap > 0 && tu + tokens > userCap) return 'user_tokens';
    if (productCap > 0 && tp + tokens > productCap) return 'product_tokens';
    d.set('_total', tp + tokens);
    d.set(`u:${user}`, tu + tokens);
    return undefined;
  }

  settleTokens(product: string, user: string, delta: number, day: string, _store?: StoreName): Promise<void> {
    const d = totalsOf(this.days, product, day);
    // Never below zero, as in Redis.
    d.set('_total', Math.max(0, (d.get('_total') ?? 0) + delta));
    d.set(`u:${user}`, Math.max(0, (d.get(`u:${user}`) ?? 0) + delta));
    return Promise.resolve();
  }

  addCost(product: string, user: string, nanoUsd: number, day: string, _store?: StoreName, _reserved?: number): Promise<void> {
    this.addCostNow(product, user, nanoUsd, day);
    return Promise.resolve();
  }

  /** Adds to the day's cost totals (a settlement's delta may be negative: never below zero, as in Redis). */
  private addCostNow(product: string, user: string, nanoUsd: number, day: string): void {
    if (nanoUsd === 0) return;
    const d = totalsOf(this.costDays, product, day);
    d.set('_total', Math.max(0, (d.get('_total') ?? 0) + nanoUsd));
    d.set(`u:${user}`, Math.max(0, (d.get(`u:${user}`) ?? 0) + nanoUsd));
  }

  usage(product: string, day: string): Promise<DailyUsage> {
    const requests = this.live(dailyRequestsKey(product, day), this.now())?.counts;
    const id = `${product}\n${day}`;
    return Promise.resolve({
      scope: 'replica',
      requests: split(requests),
      tokens: split(this.days.get(id)),
      costNanoUsd: split(this.costDays.get(id)),
    });
  }

  private live(key: string, now: number): Bucket | undefined {
    const bucket = this.buckets.get(key);
    return bucket && bucket.expiresAt > now ? bucket : undefined;
  }

  /** Drops expired keys, so a long-running replica's memory stays bounded. */
  private sweep(now: number): void {
    if (now < this.nextSweep) return;
    this.nextSweep = now + SWEEP_EVERY_MS;
    for (const [key, bucket] of this.buckets) if (bucket.expiresAt <= now) this.buckets.delete(key);
  }
}

/** The totals of a product's day in `days` (token or cost totals), made if new. */
function totalsOf(days: Map<string, Map<string, number>>, product: string, day: string): Map<string, number> {
  const key = `${product}\n${day}`;
  let d = days.get(key);
  if (!d) {
    // Keep two days only, so a long-running replica's memory stays bounded: those before `day`'s
    // previous one go. Never a later day: the day before's first cost may come after midnight (a
    // request counted then, charged when it ends), and today's totals must outlive it.
    const oldest = previousDay(day);
    for (const k of days.keys()) if (k.slice(k.lastIndexOf('\n') + 1) < oldest) days.delete(k);
    d = new Map();
    days.set(key, d);
  }
  return d;
}

/** A product's and a user's totals of a day in `days` (0 where there are none). */
function dayTotals(days: Map<string, Map<string, number>>, product: string, user: string, day: string): { product: number; user: number } {
  const d = days.get(`${product}\n${day}`);
  return { product: d?.get('_total') ?? 0, user: d?.get(`u:${user}`) ?? 0 };
}

function previousDay(day: string): string {
  return new Date(Date.parse(`${day}T00:00:00Z`) - 86_400_000).toISOString().slice(0, 10);
}

function split(map: Map<string, number> | undefined): { total: number; users: Record<string, number> } {
  // No prototype: a user whose id is `__proto__` is a key like any other.
  const users = Object.create(null) as Record<string, number>;
  for (const [field, value] of map ?? []) if (field.startsWith('u:')) users[field.slice(2)] = value;
  return { total: map?.get('_total') ?? 0, users };
}
