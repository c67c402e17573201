import type { OnModuleDestroy } from '@nestjs/common';
import { ReplayCache, ReplayCacheUnavailableError } from './replay-cache';

/** Tuning of the {@link MemoryReplayCache}; the defaults suit one gateway replica. */
export interface MemoryReplayCacheOptions {
  /**
   * Most keys held at once. At 600 s per key, 100 000 keys is ~165 signed requests per second
   * sustained, a few tens of MB. When full of live keys the cache refuses (fail closed).
   */
  maxEntries?: number;
  /** How often expired keys are swept out, in milliseconds. */
  sweepIntervalMs?: number;
  /** Milliseconds since the epoch; replaceable so tests control time. */
  now?: () => number;
}

const DEFAULTS = { maxEntries: 100_000, sweepIntervalMs: 30_000 } as const;

/**
 * In-process {@link ReplayCache} for a single replica (no `API_KEY_SERVER_REDIS_URL`): a Map from
 * key to expiry. Expired keys leave through a periodic sweep and, cheaply, from the oldest end
 * on every write, so memory stays bounded and `remember` stays O(1) amortised.
 */
export class MemoryReplayCache implements ReplayCache, OnModuleDestroy {
  /** Insertion order is kept by Map; with one TTL in use it is also expiry order. */
  private readonly expiries = new Map<string, number>();
  private readonly maxEntries: number;
  private readonly now: () => number;
  private readonly sweeper: NodeJS.Timeout;

  constructor(options: MemoryReplayCacheOptions = {}) {
    this.maxEntries = options.maxEntries ?? DEFAULTS.maxEntries;
    this.now = options.now ?? Date.now;
    if (!Number.isSafeInteger(this.maxEntries) || this.maxEntries < 1) throw new RangeError('maxEntries must be a positive integer');
    this.sweeper = setInterval(() => this.sweep(), options.sweepIntervalMs ?? DEFAULTS.sweepIntervalMs);
    // The sweep is housekeeping only; it must never keep the process (or a test run) alive.
    this.sweeper.unref();
  }

  remember(key: string, ttlSeconds: number): Promise<boolean> {
    if (!(ttlSeconds > 0)) return Promise.reject(new RangeError('ttlSeconds must be positive'));
    const now = this.now();
    const expiry = this.expiries.get(key);
    if (expiry !== undefined && expiry > now) return Promise.resolve(false);
    // Re-inserting moves a lapsed key to the young end, keeping insertion order close to expiry order.
    if (expiry !== undefined) this.expiries.delete(key);
    this.dropExpiredOldest(now);
    if (this.expiries.size >= this.maxEntries) {
      // Evicting a live key would let its signature be replayed; refusing is the safe answer.
      return Promise.reject(new ReplayCacheUnavailableError(`the in-memory replay cache is full (${this.maxEntries} live signatures)`));
    }
    this.expiries.set(key, now + ttlSeconds * 1000);
    return Promise.resolve(true);
  }

  /** Number of keys held, expired or not (for tests and metrics). */
  get size(): number {
    return this.expiries.size;
  }

  /** Removes every expired key. Runs off the request path, on the sweep timer. */
  sweep(): void {
    const now = this.now();
    for (const [key, expiry] of this.expiries) if (expiry <= now) this.expiries.delete(key);
  }

  onModuleDestroy(): void {
    clearInterval(this.sweeper);
  }

  /** Deletes expired keys from the oldest end; each key is deleted once, so the cost is O(1) amortised. */
  private dropExpiredOldest(now: number): void {
    for (const [key, expiry] of this.expiries) {
      if (expiry > now) return;
      this.expiries.delete(key);
    }
  }
}
