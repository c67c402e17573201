import { Inject, Injectable, Module } from '@nestjs/common';
import { ThrottlerModule } from '@nestjs/throttler';
import { JsonLogger, KEYGATE_LOGGER, MetricsService, ObservabilityModule } from '@keygate/observability';
import { KEYGATE_REDIS, RedisModule } from '@keygate/redis';
import type { Redis } from 'ioredis';
import { AutoBlocker } from './auto-blocker';
import { BlocksService } from './blocks.service';
import { CounterStore } from './counter.store';
import { FailoverCounterStore } from './failover.counter-store';
import { FailoverThrottlerStorage } from './failover.throttler-storage';
import { IdentityThrottlerStorage } from './identity-throttler.storage';
import { MemoryCounterStore } from './memory.counter-store';
import { QuotaService } from './quota.service';
import { RequestLimitsGuard } from './request-limits.guard';

/** Reports at scrape time whether counting is shared through Redis (1) or per replica (0). */
@Injectable()
export class RedisMetricProbe {
  constructor(@Inject(CounterStore) store: CounterStore, metrics: MetricsService) {
    if (store instanceof FailoverCounterStore) metrics.probe(async (m) => m.redisUp.set((await store.checkShared()) ? 1 : 0));
  }
}

/**
 * Admin routes: at most this many requests per minute per operator (the credential's product and
 * user). Counted after authentication: behind a load balancer every client has the balancer's
 * address, so a per-address count would put every operator, and any anonymous flood, in one bucket.
 */
export const ADMIN_THROTTLE = {
  name: 'admin',
  ttl: 60_000,
  limit: 120,
  getTracker: (req: Record<string, unknown>): string => {
    const user = req.user as { product?: string; user?: string } | undefined;
    return user?.user ? `${user.product ?? ''}:${user.user}` : String(req.ip);
  },
};

/**
 * Limits, quotas and blocks, all on @nestjs/throttler where it applies. The identity limits are a
 * ThrottlerGuard subclass over {@link IdentityThrottlerStorage}, which counts all of a request's
 * throttlers in one atomic step (Redis when configured, memory otherwise); the per-IP throttle of
 * the admin routes (per operator) is the stock guard with @nest-lab/throttler-storage-redis on the same Redis.
 */
@Module({
  imports: [
    RedisModule,
    ObservabilityModule,
    ThrottlerModule.forRootAsync({
      imports: [RedisModule],
      inject: [KEYGATE_REDIS],
      useFactory: (redis: Redis | undefined) => ({
        throttlers: [ADMIN_THROTTLE],
        storage: redis ? new FailoverThrottlerStorage(redis) : undefined,
      }),
    }),
  ],
  providers: [
    {
      provide: CounterStore,
      inject: [KEYGATE_REDIS, KEYGATE_LOGGER],
      useFactory: (redis: Redis | undefined, logger: JsonLogger): CounterStore =>
        redis ? new FailoverCounterStore(redis, logger) : new MemoryCounterStore(),
    },
    RedisMetricProbe,
    IdentityThrottlerStorage,
    BlocksService,
    AutoBlocker,
    QuotaService,
    RequestLimitsGuard,
  ],
  exports: [ThrottlerModule, CounterStore, IdentityThrottlerStorage, BlocksService, AutoBlocker, QuotaService, RequestLimitsGuard],
})
export class LimitsModule {}
