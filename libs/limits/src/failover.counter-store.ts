import type { JsonLogger } from '@keygate/observability';
import type { Redis } from 'ioredis';
import type { Admission, CounterStore, DailyUsage, RequestLimits, Reservation, StoreName } from './counter.store';
import { MemoryCounterStore } from './memory.counter-store';
import { RedisCounterStore } from './redis.counter-store';

/** After a failed command, Redis is not tried again for this long (so an outage costs no waits). */
const COOL_OFF_MS = 1_000;

/**
 * Shared counting in Redis, with per-replica in-memory counting while Redis is unreachable: limits
 * then hold per replica (never unlimited), no request waits on a dead Redis (a disconnected client
 * is skipped without a command; a hung one costs one 250 ms timeout, then a cool-off), and shared
 * counting resumes by itself once the client is ready again.
 */
export class FailoverCounterStore implements CounterStore {
  private readonly shared: RedisCounterStore;
  private readonly local = new MemoryCounterStore();
  private coolOffUntil = 0;
  private wasDegraded = false;

  constructor(
    private readonly redis: Redis,
    private readonly logger: JsonLogger,
  ) {
    this.shared = new RedisCounterStore(redis);
  }

  /** True while counting happens per replica. */
  get degraded(): boolean {
    return this.redis.status !== 'ready' || Date.now() < this.coolOffUntil;
  }

  admit(product: string, user: string, limits: RequestLimits, second: number, day: string): Promise<Admission> {
    return this.run((s) => s.admit(product, user, limits, second, day));
  }

  reserveTokens(product: string, user: string, tokens: number, productCap: number, userCap: number, day: string): Promise<Reservation> {
    return this.run((s) => s.reserveTokens(product, user, tokens, productCap, userCap, day));
  }

  /**
   * Settles in the store that took the reservation. A shared reservation that cannot be settled
   * because Redis is away is dropped: the day's shared total then over-counts (the safe side)
   * rather than a local counter being corrected for tokens it never held.
   */
  async settleTokens(product: string, user: string, delta: number, day: string, store: StoreName): Promise<void> {
    if (store === 'local') return this.local.settleTokens(product, user, delta, day, 'local');
    if (this.degraded) return;
    try {
      await this.shared.settleTokens(product, user, delta, day, 'shared');
    } catch (error) {
      this.coolOffUntil = Date.now() + COOL_OFF_MS;
      this.transition(true, (error as Error).message);
    }
  }

  usage(product: string, day: string): Promise<DailyUsage> {
    return this.run((s) => s.usage(product, day));
  }

  private async run<T>(op: (store: CounterStore) => Promise<T>): Promise<T> {
    if (this.degraded) {
      this.transition(true, 'Redis not ready');
      return op(this.local);
    }
    try {
      const result = await op(this.shared);
      this.transition(false);
      return result;
    } catch (error) {
      this.coolOffUntil = Date.now() + COOL_OFF_MS;
      this.transition(true, (error as Error).message);
      return op(this.local);
    }
  }

  private transition(degraded: boolean, reason?: string): void {
    if (degraded === this.wasDegraded) return;
    this.wasDegraded = degraded;
    if (degraded) this.logger.write('ERROR', 'limits degraded to per-replica counting: Redis unavailable', { reason });
    else this.logger.write('NOTICE', 'limits back on shared Redis counting');
  }
}
