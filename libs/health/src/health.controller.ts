import { Controller, Get, Inject, ServiceUnavailableException } from '@nestjs/common';
import { IapVerifier, JwtKeyResolver } from '@keygate/auth';
import { CounterStore, FailoverCounterStore } from '@keygate/limits';
import { redact } from '@keygate/observability';
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
    private readonly jwks: JwtKeyResolver,
    private readonly iap: IapVerifier,
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
    return this.health.check([
      () => this.secrets.check(),
      () => this.indicators.check('lifecycle').up(),
      () => this.redisDetail(),
      () => this.keysDetail(),
    ]);
  }

  /**
   * The remote key sets (JWKS endpoints, Google's IAP keys) and the keys each holds. A set never
   * fetched does not take a replica out of service (every replica would leave together while an
   * IdP is down, and static keys, HMAC and the other sets still work): the detail says which
   * issuer's tokens are refused meanwhile. Keys once fetched are kept through later failures.
   */
  private keysDetail(): HealthIndicatorResult {
    const session = this.indicators.check('keys');
    const iap = this.iap.keySet();
    const sets = [...this.jwks.keySets(), ...(iap ? [iap] : [])];
    // Masked as the logs mask them (`?key=…`, `?access_token=…`): /readyz answers anyone who reaches the port.
    const missing = sets.filter((s) => s.keys === 0).map((s) => redact(s.url) as string);
    return session.up({
      mode: missing.length ? 'degraded: tokens signed by keys of these sets are refused until they are fetched' : 'loaded',
      sets: sets.length,
      ...(missing.length ? { notFetched: missing } : {}),
    });
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
