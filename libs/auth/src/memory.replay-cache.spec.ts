import { MemoryReplayCache } from './memory.replay-cache';
import { ReplayCacheUnavailableError } from './replay-cache';

describe('MemoryReplayCache', () => {
  let nowMs: number;
  const caches: MemoryReplayCache[] = [];
  const make = (maxEntries?: number): MemoryReplayCache => {
    const cache = new MemoryReplayCache({ maxEntries, now: () => nowMs });
    caches.push(cache);
    return cache;
  };

  beforeEach(() => {
    nowMs = 1_800_000_000_000;
  });
  afterEach(() => {
    caches.splice(0).forEach((c) => c.onModuleDestroy());
    jest.useRealTimers();
    jest.restoreAllMocks();
  });

  it('answers true the first time and false while the key lives', async () => {
    const cache = make();
    await expect(cache.remember('c:1:sig', 600)).resolves.toBe(true);
    await expect(cache.remember('c:1:sig', 600)).resolves.toBe(false);
    nowMs += 599_999;
    await expect(cache.remember('c:1:sig', 600)).resolves.toBe(false);
    await expect(cache.remember('c:1:other', 600)).resolves.toBe(true);
  });

  it('forgets a key once its ttl has passed', async () => {
    const cache = make();
    await cache.remember('k', 600);
    nowMs += 600_000;
    await expect(cache.remember('k', 600)).resolves.toBe(true);
    await expect(cache.remember('k', 600)).resolves.toBe(false);
  });

  it('refuses (fails closed) rather than evicting live keys when full', async () => {
    const cache = make(3);
    for (const k of ['a', 'b', 'c']) await expect(cache.remember(k, 600)).resolves.toBe(true);
    await expect(cache.remember('d', 600)).rejects.toBeInstanceOf(ReplayCacheUnavailableError);
    // The live keys are all still known: none was evicted to make room.
    for (const k of ['a', 'b', 'c']) await expect(cache.remember(k, 600)).resolves.toBe(false);
    expect(cache.size).toBe(3);
  });

  it('drops expired keys from the oldest end on write, so size stays bounded', async () => {
    const cache = make(3);
    await cache.remember('a', 10);
    await cache.remember('b', 10);
    nowMs += 5_000;
    await cache.remember('c', 10);
    nowMs += 5_000; // a and b have expired, c has not
    await expect(cache.remember('d', 10)).resolves.toBe(true);
    expect(cache.size).toBe(2);
    for (let i = 0; i < 1000; i += 1) {
      nowMs += 10_000;
      await expect(cache.remember(`k${i}`, 10)).resolves.toBe(true);
    }
    expect(cache.size).toBeLessThanOrEqual(3);
  });

  it('sweeps expired keys out on an unref-ed timer', async () => {
    jest.useFakeTimers();
    const setIntervalSpy = jest.spyOn(global, 'setInterval');
    const cache = new MemoryReplayCache({ sweepIntervalMs: 1000, now: () => nowMs });
    caches.push(cache);
    const timer = setIntervalSpy.mock.results[0].value as NodeJS.Timeout;
    expect(timer.hasRef()).toBe(false);

    await cache.remember('short', 5);
    await cache.remember('long', 600);
    nowMs += 5_000;
    jest.advanceTimersByTime(1000);
    expect(cache.size).toBe(1);
    await expect(cache.remember('long', 600)).resolves.toBe(false);
  });

  it('rejects a non-positive ttl and a non-positive bound', async () => {
    await expect(make().remember('k', 0)).rejects.toBeInstanceOf(RangeError);
    expect(() => new MemoryReplayCache({ maxEntries: 0 })).toThrow(RangeError);
  });
});
