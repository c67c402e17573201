import { randomUUID } from 'node:crypto';
import type { OnApplicationShutdown } from '@nestjs/common';
import { closeOnRefusedDatabase } from '@keygate/redis';
import { Redis } from 'ioredis';
import { ReplayCache, ReplayCacheUnavailableError } from './replay-cache';

/** Namespace of replay keys in the shared Redis. */
export const REPLAY_KEY_PREFIX = 'keygate:replay:';

/**
 * Deletes a replay key only if it still holds the value this request wrote: a SET that timed out
 * on keygate's side may still run on Redis afterwards, and would leave the signature spent
 * although its request was refused (503, Retry-After: 1), so the client's retry would be refused
 * as a replay. Sent on the same connection right after that SET, it runs after it; it never
 * removes a key another request wrote (another value), so a served signature stays spent.
 */
const RELEASE_IF_OURS = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0";

/**
 * The Redis connection for the replay cache. No offline queue, one retry and a 250 ms command
 * timeout: during an outage a signed request is answered 503 at once instead of hanging, and a
 * command is never queued to run after its answer no longer matters. Auto-pipelining sends the
 * SETs of concurrent requests in one write, as the limits connection does (one write and one
 * reply read per request cost ~8 % of an HMAC request's CPU at 50 connections). `onError` receives
 * connection errors (otherwise ioredis prints each reconnect failure to stderr).
 */
export function createReplayRedis(url: string, onError?: (error: Error) => void): Redis {
  const redis = new Redis(url, {
    enableOfflineQueue: false,
    enableAutoPipelining: true,
    maxRetriesPerRequest: 1,
    commandTimeout: 250,
    lazyConnect: false,
  });
  if (onError) redis.on('error', onError);
  closeOnRefusedDatabase(redis);
  return redis;
}

/**
 * {@link ReplayCache} shared by every replica: one atomic `SET key <unique value> NX EX ttl` per
 * signature, so of concurrent requests carrying the same signature exactly one wins, whichever
 * replica serves it. Any Redis failure is a {@link ReplayCacheUnavailableError}: the caller fails
 * closed, and the key, should the SET still run later, is released (see RELEASE_IF_OURS), so the
 * refused request can be retried with the same signature. It owns the connection it is given and
 * closes it at shutdown.
 */
export class RedisReplayCache implements ReplayCache, OnApplicationShutdown {
  constructor(private readonly redis: Redis) {}

  async remember(key: string, ttlSeconds: number): Promise<boolean> {
    if (!Number.isSafeInteger(ttlSeconds) || ttlSeconds < 1) throw new RangeError('ttlSeconds must be a positive integer');
    const redisKey = REPLAY_KEY_PREFIX + key;
    const value = randomUUID();
    let reply: 'OK' | null;
    try {
      reply = await this.redis.set(redisKey, value, 'EX', ttlSeconds, 'NX');
    } catch (error) {
      // Not awaited: the request is answered 503 now; when Redis is unreachable this fails at once too.
      this.redis.eval(RELEASE_IF_OURS, 1, redisKey, value).catch(() => undefined);
      throw new ReplayCacheUnavailableError('the Redis replay cache did not answer', { cause: error });
    }
    return reply === 'OK';
  }

  /** Closes the connection after the HTTP server has drained (not in onModuleDestroy, which runs before). */
  async onApplicationShutdown(): Promise<void> {
    try {
      await this.redis.quit();
    } catch {
      // Not connected (no offline queue): nothing to flush, just stop reconnecting.
      this.redis.disconnect();
    }
  }
}
