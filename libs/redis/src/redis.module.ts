import { Inject, Module, type OnApplicationShutdown } from '@nestjs/common';
import { GatewayConfig } from '@keygate/config';
import { JsonLogger, KEYGATE_LOGGER, ObservabilityModule } from '@keygate/observability';
import type { Redis } from 'ioredis';
import { KEYGATE_REDIS } from './redis.constants';
import { createRequestPathRedis, redisMisconfiguration, reportOncePer } from './redis.factory';

/**
 * A Redis client's error listener: connection errors logged at most once per outage minute (not
 * once per reconnect attempt), `outage` saying what keygate does meanwhile; a database Redis
 * refuses is no outage (the client is closed, see closeOnRefusedDatabase) and is said as such.
 */
export function redisErrorReporter(logger: JsonLogger, outage: string): (error: Error) => void {
  return reportOncePer(60_000, (error) => {
    const misconfiguration = redisMisconfiguration(error);
    if (!misconfiguration) logger.write('WARNING', outage, { reason: error.message });
    // Each client (the request path's, the replay cache's) is refused the same URL's database: the
    // line says what all of them stop doing, once.
    else if (!toldMisconfiguration.has(logger)) {
      toldMisconfiguration.add(logger);
      logger.write('ERROR', misconfiguration, { reason: error.message });
    }
  });
}

/** Loggers that have said Redis refuses the URL's database. */
const toldMisconfiguration = new WeakSet<JsonLogger>();

/** The shared Redis client of the request path (limits, quotas, blocks), when configured. */
@Module({
  imports: [ObservabilityModule],
  providers: [
    {
      provide: KEYGATE_REDIS,
      inject: [GatewayConfig, KEYGATE_LOGGER],
      useFactory: (config: GatewayConfig, logger: JsonLogger): Redis | undefined =>
        config.redisUrl
          ? createRequestPathRedis(
              config.redisUrl,
              redisErrorReporter(logger, 'Redis unavailable; limits fall back to per-replica counters until it returns'),
            )
          : undefined,
    },
  ],
  exports: [KEYGATE_REDIS],
})
export class RedisModule implements OnApplicationShutdown {
  constructor(@Inject(KEYGATE_REDIS) private readonly redis: Redis | undefined) {}

  /** Closed after the HTTP server drained, so in-flight requests can still settle their usage. */
  async onApplicationShutdown(): Promise<void> {
    if (!this.redis) return;
    await this.redis.quit().catch(() => this.redis?.disconnect());
  }
}
