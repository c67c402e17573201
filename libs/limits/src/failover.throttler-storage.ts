import type { ThrottlerStorage } from '@nestjs/throttler';
import { ThrottlerStorageService } from '@nestjs/throttler';
import { ThrottlerStorageRedisService } from '@nest-lab/throttler-storage-redis';
import { REDIS_COOL_OFF_MS, redisSilent, withinRequestWait } from '@keygate/redis';
import type { Redis } from 'ioredis';

type ThrottlerStorageRecord = Awaited<ReturnType<ThrottlerStorage['increment']>>;

/**
 * The admin routes' per-operator throttle: @nest-lab's Redis storage while Redis answers, the
 * throttler's in-memory storage otherwise, so an outage never turns the admin API into 500s.
 */
export class FailoverThrottlerStorage implements ThrottlerStorage {
  private readonly shared: ThrottlerStorageRedisService;
  private readonly local = new ThrottlerStorageService();
  /** After Redis failed to answer, it is not asked again for this long: an outage costs one wait. */
  private coolOffUntil = 0;

  constructor(private readonly redis: Redis) {
    this.shared = new ThrottlerStorageRedisService(redis);
  }

  /** Waits on Redis as the request path does (at most ~250 ms, then a 1 s cool-off), never the 2 s command timeout. */
  async increment(key: string, ttl: number, limit: number, blockDuration: number, throttlerName: string): Promise<ThrottlerStorageRecord> {
    if (this.redis.status === 'ready' && Date.now() >= this.coolOffUntil && !redisSilent(this.redis)) {
      try {
        return await withinRequestWait(this.shared.increment(key, ttl, limit, blockDuration, throttlerName), this.redis);
      } catch {
        // Counted locally below.
        this.coolOffUntil = Date.now() + REDIS_COOL_OFF_MS;
      }
    }
    return this.local.increment(key, ttl, limit, blockDuration, throttlerName);
  }
}
