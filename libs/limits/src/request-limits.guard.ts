import { Inject, Injectable, type CanActivate, type ExecutionContext } from '@nestjs/common';
import type { Principal } from '@keygate/auth';
import { GatewayConfig } from '@keygate/config';
import { GatewayError } from '@keygate/errors';
import { contextOf } from '@keygate/observability';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { AutoBlocker } from './auto-blocker';
import { BlocksService } from './blocks.service';
import { CounterStore, secondsToUtcMidnight, utcDay, type LimitName } from './counter.store';

const LIMIT_TEXT: Record<LimitName, string> = {
  product_qps: "this product's requests per second",
  user_qps: 'your requests per second',
  product_daily: "this product's daily requests",
  user_daily: 'your daily requests',
};

/**
 * Blocks, per-second rate limits and daily request caps, keyed by the authenticated identity
 * (product, and product + user), never by IP or route, so a cap cannot be dodged by switching
 * routes. Runs after the credential guard. All four counters are checked and counted in one
 * atomic step (one Redis round trip): a refused request is charged to none of them. A request
 * refused later without reaching an upstream (invalid body, policy, unknown model, token quota)
 * is given back to the daily caps when it ends; it stays counted in the per-second limits, which
 * protect the gateway itself from a flood of bad requests.
 */
@Injectable()
export class RequestLimitsGuard implements CanActivate {
  constructor(
    @Inject(GatewayConfig) private readonly config: GatewayConfig,
    @Inject(CounterStore) private readonly counters: CounterStore,
    private readonly blocks: BlocksService,
    private readonly autoBlocker: AutoBlocker,
  ) {}

  async canActivate(context: ExecutionContext): Promise<boolean> {
    const http = context.switchToHttp();
    const principal = http.getRequest<FastifyRequest & { user?: Principal }>().user;
    if (!principal) throw new GatewayError('invalid_token', 'a credential is required');
    const { product, user } = principal;
    const block = this.blocks.find(product, user);
    if (block) {
      const who = block.user === null ? `product ${product}` : `user ${user} of product ${product}`;
      throw new GatewayError('blocked', `${who} is blocked: ${block.reason}${block.expiresAt ? ` (until ${block.expiresAt})` : ''}`);
    }
    const { limits } = this.config.policy.forProduct(product);
    const now = Date.now();
    const admission = await this.counters.admit(
      product,
      user,
      {
        productPerSecond: limits.requestsPerSecond,
        userPerSecond: limits.userRequestsPerSecond,
        productPerDay: limits.dailyRequests,
        userPerDay: limits.userDailyRequests,
      },
      Math.floor(now / 1000),
      utcDay(now),
    );
    const raw = http.getResponse<FastifyReply>().raw;
    if (limits.userDailyRequests > 0) {
      // OpenAI's header names, so SDK users find them where they expect; set on the raw response
      // so streamed (hijacked) replies carry them too.
      raw.setHeader('x-ratelimit-limit-requests', limits.userDailyRequests);
      raw.setHeader('x-ratelimit-remaining-requests', Math.max(0, limits.userDailyRequests - admission.counts[3]));
    }
    if (admission.admitted) {
      const ctx = contextOf(http.getRequest<FastifyRequest>().raw);
      if (ctx && (limits.dailyRequests > 0 || limits.userDailyRequests > 0)) {
        const day = utcDay(now);
        ctx.releaseDailyCount = () => void this.counters.releaseDaily(product, user, day, admission.store).catch(() => undefined);
      }
      return true;
    }

    // Only the user's own limits count toward auto-block: a product-wide limit is not their doing.
    if (admission.refusedBy === 'user_qps' || admission.refusedBy === 'user_daily')
      void this.autoBlocker.refused(product, user, admission.refusedBy);
    const daily = admission.refusedBy === 'product_daily' || admission.refusedBy === 'user_daily';
    const retryAfterSeconds = daily ? secondsToUtcMidnight(now) : 1;
    throw new GatewayError(
      'rate_limit_exceeded',
      `Rate limit reached for ${LIMIT_TEXT[admission.refusedBy]}; retry in ${retryAfterSeconds} s`,
      {
        retryAfterSeconds,
        headers: { 'x-keygate-limit': admission.refusedBy },
      },
    );
  }
}
