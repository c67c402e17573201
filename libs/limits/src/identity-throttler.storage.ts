import { Inject, Injectable } from '@nestjs/common';
import type { ThrottlerStorage } from '@nestjs/throttler';
import { CounterStore, type BudgetAsk, type CounterRef, type QuotaName, type StoreName, type TokenAsk } from './counter.store';

/** What @nestjs/throttler's storage answers for one throttler. */
export type ThrottlerStorageRecord = Awaited<ReturnType<ThrottlerStorage['increment']>>;

/** One named throttler of a request, as the throttler guard resolved it: the arguments of `increment`. */
export interface ThrottlerHit {
  key: string;
  /** Counted in this field of the hash at `key` rather than in the key itself. */
  field?: string;
  /** Milliseconds the counter is kept (its window is in its key). */
  ttl: number;
  /** 0: counted, never refused. */
  limit: number;
  blockDuration: number;
  throttlerName: string;
}

/**
 * The records of a request's throttlers, in order, and the store that counted them (null: refused);
 * `refusedBy` names the token quota or cost budget that refused the request when none of the throttlers did.
 */
export interface ThrottlerBatch {
  records: ThrottlerStorageRecord[];
  store: StoreName | null;
  refusedBy?: QuotaName;
  /** With a token quota's refusal by the shared store: the day's token totals it found. */
  tokenTotals?: { product: number; user: number };
  /** With a budget's refusal by the shared store: the day's cost totals it found (billionths of a dollar). */
  costTotals?: { product: number; user: number };
}

/**
 * @nestjs/throttler's storage for the identity limits, over keygate's {@link CounterStore} (Redis
 * shared by every replica, per-replica memory without it or while it is away). Beyond
 * `increment`, it counts all of a request's throttlers in one atomic step, one Redis round trip:
 * each is counted only if every one has room, so a request refused by one limit is charged to
 * none (the stock guard increments them one by one, a round trip each, charging the earlier ones).
 *
 * Windows are fixed (the key names the second or the day), so a full counter refuses until its key
 * expires; `blockDuration` has no separate effect.
 */
@Injectable()
export class IdentityThrottlerStorage implements ThrottlerStorage {
  constructor(@Inject(CounterStore) private readonly counters: CounterStore) {}

  async increment(key: string, ttl: number, limit: number, blockDuration: number, throttlerName: string): Promise<ThrottlerStorageRecord> {
    const { records } = await this.incrementAll([{ key, ttl, limit, blockDuration, throttlerName }]);
    return records[0];
  }

  /**
   * Counts every hit if each has room under its limit, else none; the refusing one comes back
   * blocked. With `tokens`, the same step reserves them against the day's token quotas, and counts
   * nothing if they do not fit; with `budget`, reserves its cost estimate the same way.
   */
  async incrementAll(hits: readonly ThrottlerHit[], tokens?: TokenAsk, budget?: BudgetAsk): Promise<ThrottlerBatch> {
    const outcome = await this.counters.hit(
      hits.map((h) => ({ key: h.key, field: h.field, limit: h.limit, ttlMs: h.ttl })),
      tokens,
      budget,
    );
    const records = hits.map((_, i): ThrottlerStorageRecord => {
      const blocked = !outcome.admitted && outcome.refusedAt === i;
      const seconds = Math.ceil(outcome.ttlsMs[i] / 1000);
      return {
        // A refused hit is not stored; it reports the count it would have made, as the stock storage does.
        totalHits: blocked ? outcome.counts[i] + 1 : outcome.counts[i],
        timeToExpire: seconds,
        isBlocked: blocked,
        timeToBlockExpire: blocked ? seconds : 0,
      };
    });
    return outcome.admitted
      ? { records, store: outcome.store }
      : { records, store: null, refusedBy: outcome.refusedBy, tokenTotals: outcome.tokenTotals, costTotals: outcome.costTotals };
  }

  /** Takes one request back from these counters in the store that counted it (never below zero). */
  release(counters: readonly CounterRef[], store: StoreName): Promise<void> {
    return this.counters.release(counters, store);
  }

  /** Adds a request's cost (billionths of a dollar) to its day's cost totals in the store that counted it. */
  addCost(product: string, user: string, nanoUsd: number, day: string, store: StoreName): Promise<void> {
    return this.counters.addCost(product, user, nanoUsd, day, store);
  }
}
