import { Redis } from 'ioredis';
import { RedisWaitExceededError, withinRequestWait } from '@keygate/redis';
import { FailoverThrottlerStorage } from './failover.throttler-storage';

const REDIS_URL = process.env.API_KEY_SERVER_REDIS_URL ?? 'redis://127.0.0.1:6379';

describe('FailoverThrottlerStorage', () => {
  let redis: Redis;

  beforeAll(async () => {
    redis = new Redis(REDIS_URL, { maxRetriesPerRequest: 1, enableOfflineQueue: false, disconnectTimeout: 100 });
    if (redis.status !== 'ready') await new Promise((r) => redis.once('ready', r));
  });

  afterAll(async () => {
    await redis.quit();
  });

  it('counts in Redis while it answers', async () => {
    const storage = new FailoverThrottlerStorage(redis);
    const key = `kg-spec-throttle-${Date.now()}-${Math.random()}`;
    expect((await storage.increment(key, 60_000, 5, 0, 'admin')).totalHits).toBe(1);
    expect((await storage.increment(key, 60_000, 5, 0, 'admin')).totalHits).toBe(2);
    await redis.del(key, `${key}:admin:blocked`);
  });

  it('counts in memory when a connected Redis does not answer, and does not ask it again during the cool-off', async () => {
    const storage = new FailoverThrottlerStorage(redis);
    const shared = (storage as unknown as { shared: { increment: (...args: unknown[]) => Promise<never> } }).shared;
    let asked = 0;
    // A Redis that takes the command and never answers (paused, overloaded): only the wait bound ends it.
    shared.increment = () => {
      asked++;
      return new Promise<never>(() => undefined);
    };
    const key = `kg-spec-silent-${Date.now()}`;
    expect((await storage.increment(key, 60_000, 5, 0, 'admin')).totalHits).toBe(1);
    expect((await storage.increment(key, 60_000, 5, 0, 'admin')).totalHits).toBe(2);
    expect(asked).toBe(1);
  });

  it('does not ask a Redis another user of the connection has just waited on in vain (an outage costs a request one wait)', async () => {
    const silent = new Redis(REDIS_URL, { maxRetriesPerRequest: 1, enableOfflineQueue: false, disconnectTimeout: 100 });
    try {
      if (silent.status !== 'ready') await new Promise((r) => silent.once('ready', r));
      const storage = new FailoverThrottlerStorage(silent);
      const shared = (storage as unknown as { shared: { increment: (...args: unknown[]) => Promise<never> } }).shared;
      let asked = 0;
      shared.increment = () => {
        asked++;
        return new Promise<never>(() => undefined);
      };
      // The limits (or the stored responses) waited in vain on this connection.
      await expect(withinRequestWait(new Promise<never>(() => undefined), silent)).rejects.toBeInstanceOf(RedisWaitExceededError);
      const key = `kg-spec-silenced-${Date.now()}`;
      expect((await storage.increment(key, 60_000, 5, 0, 'admin')).totalHits).toBe(1);
      expect(asked).toBe(0);
    } finally {
      await silent.quit();
    }
  });
});
