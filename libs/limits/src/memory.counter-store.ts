import {
  LIMIT_ORDER,
  type Admission,
  type CounterStore,
  type DailyUsage,
  type RequestLimits,
  type Reservation,
  type StoreName,
} from './counter.store';

interface Day {
  requests: Map<string, number>;
  tokens: Map<string, number>;
}

/**
 * {@link CounterStore} inside one process: the store without Redis, and the per-replica fallback
 * while Redis is down (limits are then per replica, never unlimited). Same semantics as Redis.
 */
export class MemoryCounterStore implements CounterStore {
  private second = -1;
  private readonly perSecond = new Map<string, number>();
  private readonly days = new Map<string, Day>();

  admit(product: string, user: string, limits: RequestLimits, second: number, day: string): Promise<Admission> {
    if (second !== this.second) {
      this.second = second;
      this.perSecond.clear();
    }
    const d = this.day(product, day);
    const pk = product;
    const uk = `${product}\n${user}`;
    const cur: [number, number, number, number] = [
      this.perSecond.get(pk) ?? 0,
      this.perSecond.get(uk) ?? 0,
      d.requests.get('_total') ?? 0,
      d.requests.get(`u:${user}`) ?? 0,
    ];
    const lim = [limits.productPerSecond, limits.userPerSecond, limits.productPerDay, limits.userPerDay];
    for (let i = 0; i < 4; i++) {
      if (lim[i] > 0 && cur[i] >= lim[i]) return Promise.resolve({ admitted: false, refusedBy: LIMIT_ORDER[i], counts: cur });
    }
    const counts: [number, number, number, number] = [cur[0] + 1, cur[1] + 1, cur[2] + 1, cur[3] + 1];
    this.perSecond.set(pk, counts[0]);
    this.perSecond.set(uk, counts[1]);
    d.requests.set('_total', counts[2]);
    d.requests.set(`u:${user}`, counts[3]);
    return Promise.resolve({ admitted: true, counts, store: 'local' });
  }

  releaseDaily(product: string, user: string, day: string, _store?: StoreName): Promise<void> {
    const d = this.days.get(`${product}\n${day}`);
    if (d) {
      for (const field of ['_total', `u:${user}`]) {
        const n = d.requests.get(field) ?? 0;
        if (n > 0) d.requests.set(field, n - 1);
      }
    }
    return Promise.resolve();
  }

  reserveTokens(product: string, user: string, tokens: number, productCap: number, userCap: number, day: string): Promise<Reservation> {
    const d = this.day(product, day);
    const tp = d.tokens.get('_total') ?? 0;
    const tu = d.tokens.get(`u:${user}`) ?? 0;
    if (productCap > 0 && tp + tokens > productCap) return Promise.resolve({ reserved: false, refusedBy: 'product_tokens' });
    if (userCap > 0 && tu + tokens > userCap) return Promise.resolve({ reserved: false, refusedBy: 'user_tokens' });
    d.tokens.set('_total', tp + tokens);
    d.tokens.set(`u:${user}`, tu + tokens);
    return Promise.resolve({ reserved: true, productTotal: tp + tokens, userTotal: tu + tokens, store: 'local' });
  }

  settleTokens(product: string, user: string, delta: number, day: string, _store?: StoreName): Promise<void> {
    const d = this.day(product, day);
    // Never below zero, as in Redis.
    d.tokens.set('_total', Math.max(0, (d.tokens.get('_total') ?? 0) + delta));
    d.tokens.set(`u:${user}`, Math.max(0, (d.tokens.get(`u:${user}`) ?? 0) + delta));
    return Promise.resolve();
  }

  usage(product: string, day: string): Promise<DailyUsage> {
    const d = this.days.get(`${product}\n${day}`);
    return Promise.resolve({ requests: split(d?.requests), tokens: split(d?.tokens) });
  }

  private day(product: string, day: string): Day {
    const key = `${product}\n${day}`;
    let d = this.days.get(key);
    if (!d) {
      // Keep today and yesterday only: a long-running replica's memory stays bounded.
      for (const k of this.days.keys()) if (!k.endsWith(day) && !k.endsWith(previousDay(day))) this.days.delete(k);
      d = { requests: new Map(), tokens: new Map() };
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
