import { Controller, Get, Inject, ServiceUnavailableException } from '@nestjs/common';
import { CounterStore, FailoverCounterStore } from '@keygate/limits';
import { KEYGATE_REDIS } from '@keygate/redis';
import type { Redis } from 'ioredis';
import { ApiExcludeController } from '@nestjs/swagger';
import {
  HealthCheck,
  HealthCheckService,
  HealthIndicatorService,
  type HealthCheckResult,
  type HealthIndicatorResult,
} from '@nestjs/terminus';
import { LifecycleState } from './lifecycle.state';
import { SecretsHealthIndicator } from './secrets.health';

/** Liveness and readiness probes; kept out of the API document. */
@ApiExcludeController()
@Controller()
export class HealthController {
  constructor(
    private readonly health: HealthCheckService,
    private readonly indicators: HealthIndicatorService,
    private readonly secrets: SecretsHealthIndicator,
    private readonly lifecycle: LifecycleState,
    @Inject(KEYGATE_REDIS) private readonly redis: Redis | undefined,
    @Inject(CounterStore) private readonly store: CounterStore,
  ) {}

  /** Liveness: answers while the event loop runs; no dependency is checked. */
  @Get('healthz')
  liveness(): { status: 'ok' } {
    return { status: 'ok' };
  }

  /** Readiness: secrets loaded, not draining. */
  @Get('readyz')
  @HealthCheck()
  readiness(): Promise<HealthCheckResult> {
    if (this.lifecycle.shuttingDown)
      throw new ServiceUnavailableException({ status: 'error', error: { lifecycle: { status: 'down', message: 'shutting down' } } });
    return this.health.check([() => this.secrets.check(), () => this.indicators.check('lifecycle').up(), () => this.redisDetail()]);
  }

  /**
   * Redis down does not take a replica out of service: limits then count per replica. The detail
   * says which mode is in force.
   */
  private async redisDetail(): Promise<HealthIndicatorResult> {
    const session = this.indicators.check('redis');
    if (!this.redis) return session.up({ mode: 'not configured (per-replica counting)' });
    // The counters' own view (it includes the cool-off after a command timed out on a connection
    // that still looks ready, and asks a quiet Redis with a PING), so /readyz and keygate_redis_up agree.
    const degraded = this.store instanceof FailoverCounterStore ? !(await this.store.checkShared()) : this.redis.status !== 'ready';
    return degraded
      ? session.up({ mode: 'degraded: per-replica counting until Redis returns', connection: this.redis.status })
      : session.up({ mode: 'shared' });
  }
}
