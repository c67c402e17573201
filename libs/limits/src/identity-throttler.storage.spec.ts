import { IdentityThrottlerStorage } from './identity-throttler.storage';
import { MemoryCounterStore } from './memory.counter-store';

// Unit spec: the ThrottlerStorage view of the counter store (the store itself is held to its
// contract against real Redis in counter-stores.spec.ts).

describe('IdentityThrottlerStorage', () => {
  let now: number;
  let storage: IdentityThrottlerStorage;
  beforeEach(() => {
    now = 5_000_000;
    storage = new IdentityThrottlerStorage(new MemoryCounterStore(() => now));
  });

  it('answers increment as @nestjs/throttler storages do: hits, seconds to expiry, blocked past the limit', async () => {
    expect(await storage.increment('k', 60_000, 2, 60_000, 'default')).toEqual({
      totalHits: 1,
      timeToExpire: 60,
      isBlocked: false,
      timeToBlockExpire: 0,
    });
    now += 10_500;
    expect(await storage.increment('k', 60_000, 2, 60_000, 'default')).toMatchObject({ totalHits: 2, timeToExpire: 50, isBlocked: false });
    // Over the limit: blocked until the window's key expires, and the refused hit is not stored.
    expect(await storage.increment('k', 60_000, 2, 60_000, 'default')).toEqual({
      totalHits: 3,
      timeToExpire: 50,
      isBlocked: true,
      timeToBlockExpire: 50,
    });
    expect(await storage.increment('k', 60_000, 2, 60_000, 'default')).toMatchObject({ totalHits: 3, isBlocked: true });
    now += 50_000;
    expect(await storage.increment('k', 60_000, 2, 60_000, 'default')).toMatchObject({ totalHits: 1, isBlocked: false });
  });

  it('counts a batch all or nothing: the full throttler comes back blocked, the others unchanged, no store named', async () => {
    const hits = [
      { key: 'a', ttl: 2_000, limit: 5, blockDuration: 2_000, throttlerName: 'product_qps' },
      { key: 'b', ttl: 2_000, limit: 1, blockDuration: 2_000, throttlerName: 'user_qps' },
      { key: 'c', ttl: 86_400_000, limit: 0, blockDuration: 86_400_000, throttlerName: 'product_daily' },
    ];
    const first = await storage.incrementAll(hits);
    expect(first.store).toBe('local');
    expect(first.records.map((r) => [r.totalHits, r.isBlocked])).toEqual([
      [1, false],
      [1, false],
      [1, false],
    ]);
    const second = await storage.incrementAll(hits);
    expect(second.store).toBeNull();
    expect(second.records.map((r) => [r.totalHits, r.isBlocked])).toEqual([
      [1, false],
      [2, true],
      [1, false],
    ]);
    expect(second.records[1].timeToBlockExpire).toBe(2);
  });

  it('gives a request back to the counters it names, never below zero', async () => {
    const hits = [{ key: 'd', ttl: 60_000, limit: 1, blockDuration: 60_000, throttlerName: 'user_daily' }];
    expect((await storage.incrementAll(hits)).store).toBe('local');
    expect((await storage.incrementAll(hits)).store).toBeNull();
    await storage.release([{ key: 'd' }, { key: 'never-counted' }], 'local');
    await storage.release([{ key: 'd' }], 'local');
    expect((await storage.incrementAll(hits)).records[0]).toMatchObject({ totalHits: 1, isBlocked: false });
  });
});
