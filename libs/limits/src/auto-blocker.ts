import { Inject, Injectable } from '@nestjs/common';
import { GatewayConfig } from '@keygate/config';
import { JsonLogger, KEYGATE_LOGGER, type RequestContext } from '@keygate/observability';
import { KEYGATE_REDIS } from '@keygate/redis';
import type { Redis } from 'ioredis';
import { autoBlockCountKey, autoBlockLockKey, BlocksService } from './blocks.service';

/**
 * Blocks a user who keeps hitting their limits: `auto_block.rejections` refusals within
 * `window_seconds` block them for `block_seconds`, with an ALERT log line. Counted in Redis
 * (across replicas) when available, in memory otherwise. Runs only on refusals, never on the
 * path of an admitted request.
 */
@Injectable()
export class AutoBlocker {
  /** Per-replica refusal counts and block locks, used while Redis is away (kept apart: a count flood must not clear the locks). */
  private readonly localCounts = new Map<string, { count: number; until: number }>();
  private readonly localLocks = new Map<string, number>();

  constructor(
    @Inject(GatewayConfig) private readonly config: GatewayConfig,
    @Inject(KEYGATE_REDIS) private readonly redis: Redis | undefined,
    private readonly blocks: BlocksService,
    @Inject(KEYGATE_LOGGER) private readonly logger: JsonLogger,
  ) {
    // An operator lifted a block: this replica's own count and lock of the user go too (Redis's
    // are deleted with the block), so a user who goes on is blocked again.
    blocks.onLifted((product, user) => {
      this.localCounts.delete(autoBlockCountKey(product, user));
      this.localLocks.delete(autoBlockLockKey(product, user));
    });
  }

  /**
   * Records one refusal of `user` and blocks them when the threshold is reached. Never throws.
   * `ctx`: the refused request, for its id and trace on the ALERT line where no AsyncLocalStorage
   * context is active (the guards run before the handler enters it).
   */
  async refused(product: string, user: string, reason: string, ctx?: RequestContext): Promise<void> {
    try {
      await this.countAndBlock(product, user, reason, ctx);
    } catch (error) {
      // Called without waiting on a refusal path: a failure here must not become an unhandled rejection.
      this.logger.write('ERROR', 'auto-block failed', { product, user, reason: (error as Error).message });
    }
  }

  private async countAndBlock(product: string, user: string, reason: string, ctx: RequestContext | undefined): Promise<void> {
    const { rejections, windowSeconds, blockSeconds } = this.config.policy.forProduct(product).autoBlock;
    if (rejections <= 0) return;
    const count = await this.count(autoBlockCountKey(product, user), windowSeconds);
    // Every `rejections`-th refusal in a window blocks, so a user who resumes after a block lifts
    // is blocked again without waiting for the window to end; the lock (as long as the block)
    // keeps a burst still in flight on other replicas from blocking and alerting twice.
    if (count % rejections !== 0 || this.blocks.find(product, user)) return;
    if (!(await this.lock(autoBlockLockKey(product, user), blockSeconds))) return;
    const now = Date.now();
    await this.blocks.create(
      {
        product,
        user,
        reason: `auto-block: ${count} refusals (${reason}) within ${windowSeconds} s`,
        createdAt: new Date(now).toISOString(),
        expiresAt: new Date(now + blockSeconds * 1000).toISOString(),
        createdBy: 'auto-block',
      },
      { whenRedisIsAway: 'local' },
    );
    this.logger.write(
      'ALERT',
      'user auto-blocked for repeatedly hitting limits',
      { product, user, reason, refusals: count, windowSeconds, blockSeconds },
      ctx,
    );
  }

  /** True for the one caller that may block this user now (Redis SET NX, or in memory). */
  private async lock(key: string, seconds: number): Promise<boolean> {
    if (this.redis?.status === 'ready') {
      try {
        return (await this.redis.set(key, '1', 'EX', seconds, 'NX')) === 'OK';
      } catch {
        // Fall through to the per-replica lock.
      }
    }
    const now = Date.now();
    const heldUntil = this.localLocks.get(key);
    if (heldUntil !== undefined && heldUntil > now) return false;
    if (this.localLocks.size > 10_000) for (const [k, until] of this.localLocks) if (until <= now) this.localLocks.delete(k);
    this.localLocks.set(key, now + seconds * 1000);
    return true;
  }

  private async count(key: string, windowSeconds: number): Promise<number> {
    if (this.redis?.status === 'ready') {
      try {
        const [[, count]] = (await this.redis.multi().incr(key).expire(key, windowSeconds, 'NX').exec()) as [[Error | null, number]];
        return count;
      } catch {
        // Fall through to per-replica counting.
      }
    }
    const now = Date.now();
    const entry = this.localCounts.get(key);
    if (!entry || entry.until <= now) {
      if (this.localCounts.size > 10_000) this.localCounts.clear();
      this.localCounts.set(key, { count: 1, until: now + windowSeconds * 1000 });
      return 1;
    }
    return ++entry.count;
  }
}
