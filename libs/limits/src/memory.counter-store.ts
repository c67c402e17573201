import {
  requestCounterKeys,
  type CounterHit,
  type CounterStore,
  type DailyUsage,
  type HitOutcome,
  type Reservation,
  type StoreName,
} from './counter.store';

/** Expired counters are swept at most this often (each lookup also ignores an expired one). */
const SWEEP_EVERY_MS = 1_000;

interface Counter {
  count: number;
  expiresAt: number;
}

/**
 * {@link CounterStore} inside one process: the store without Redis, and the per-replica fallback
 * while Redis is down (limits are then per replica, never unlimited). Same semantics as Redis.
 */
export class MemoryCounterStore implements CounterStore {
  private readonly counters = new Map<string, Counter>();
  private nextSweep = 0;
  /** Token totals per product and day, fields `_total` and `u:<user>`. */
  private readonly days = new Map<string, Map<string, number>>();

  constructor(private readonly now: () => number = Date.now) {}

  hit(hits: readonly CounterHit[]): Promise<HitOutcome> {
    const now = this.now();
    this.sweep(now);
    const found = hits.map((h) => this.live(h.key, now));
    const counts = found.map((c) => c?.count ?? 0);
    const ttlsMs = found.map((c) => (c ? c.expiresAt - now : 0));
    const refusedAt = hits.findIndex((h, i) => h.limit > 0 && counts[i] >= h.limit);
    if (refusedAt >= 0) return Promise.resolve({ admitted: false, refusedAt, counts, ttlsMs });
    hits.forEach((h, i) => {
      const counter = found[i] ?? { count: 0, expiresAt: now + h.ttlMs };
      counter.count++;
      this.counters.set(h.key, counter);
      counts[i] = counter.count;
      ttlsMs[i] = counter.expiresAt - now;
    });
    return Promise.resolve({ admitted: true, counts, ttlsMs, store: 'local' });
  }

  release(keys: readonly string[], _store?: StoreName): Promise<void> {
    const now = this.now();
    for (const key of keys) {
      const counter = this.live(key, now);
      if (counter && counter.count > 0) counter.count--;
    }
    return Promise.resolve();
  }

  reserveTokens(product: string, user: string, tokens: number, productCap: number, userCap: number, day: string): Promise<Reservation> {
    const d = this.tokenDay(product, day);
    const tp = d.get('_total') ?? 0;
    const tu = d.get(`u:${user}`) ?? 0;
    if (productCap > 0 && tp + tokens > productCap) return Promise.resolve({ reserved: false, refusedBy: 'product_tokens' });
    if (userCap > 0 && tu + tokens > userCap) return Promise.resolve({ reserved: false, refusedBy: 'user_tokens' });
    d.set('_total', tp + tokens);
    d.set(`u:${user}`, tu + tokens);
    return Promise.resolve({ reserved: true, productTotal: tp + tokens, userTotal: tu + tokens, store: 'local' });
  }

  settleTokens(product: string, user: string, delta: number, day: string, _store?: StoreName): Promise<void> {
    const d = this.tokenDay(product, day);
    // Never below zero, as in Redis.
    d.set('_total', Math.max(0, (d.get('_total') ?? 0) + delta));
    d.set(`u:${user}`, Math.max(0, (d.get(`u:${user}`) ?? 0) + delta));
    return Promise.resolve();
  }

  usage(product: string, day: string): Promise<DailyUsage> {
    const now = this.now();
    const prefix = requestCounterKeys.userPerDayPrefix(product, day);
    const users: Record<string, number> = {};
    for (const [key, counter] of this.counters)
      if (key.startsWith(prefix) && counter.expiresAt > now) users[key.slice(prefix.length)] = counter.count;
    const total = this.live(requestCounterKeys.productPerDay(product, day), now)?.count ?? 0;
    return Promise.resolve({ requests: { total, users }, tokens: split(this.days.get(`${product}\n${day}`)) });
  }

  private live(key: string, now: number): Counter | undefined {
    const counter = this.counters.get(key);
    return counter && counter.expiresAt > now ? counter : undefined;
  }

  /** Drops expired counters, so a long-running replica's memory stays bounded. */
  private sweep(now: number): void {
    if (now < this.nextSweep) return;
    this.nextSweep = now + SWEEP_EVERY_MS;
    for (const [key, counter] of this.counters) if (counter.expiresAt <= now) this.counters.delete(key);
  }

  private tokenDay(product: string, day: string): Map<string, number> {
    const key = `${product}\n${day}`;
    let d = this.days.get(key);
    if (!d) {
      // Keep today and yesterday only: a long-running replica's memory stays bounded.
      for (const k of this.days.keys()) if (!k.endsWith(day) && !k.endsWith(previousDay(day))) this.days.delete(k);
      d = new Map();
      this.days.set(key, d);
    }
    return d;
  }
}

function previousDay(day: string): string {
  return new Date(Date.parse(`${day}T00:00:00Z`) - 86_400_000).toISOString().slice(0, 10);
}

function split(map: Map<string, number> | undefined): { total: number; users: Record<string, number> } {
  const users: Record<string, number> = {};
  for (const [field, value] of map ?? []) if (field.startsWith('u:')) users[field.slice(2)] = value;
  return { total: map?.get('_total') ?? 0, users };
}
