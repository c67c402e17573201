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
 * The replay cache's epoch: `<random id> <Unix seconds>`, the seconds being when a replica found
 * Redis had lost its data (0 for the epoch the first replica created on an empty Redis). Never
 * expires: its absence is how a loss shows.
 */
export const REPLAY_EPOCH_KEY = `${REPLAY_KEY_PREFIX}epoch`;

/** Logs what the cache found (the ERROR line of a data loss). */
export type ReplayCacheLog = (severity: 'ERROR', message: string, fields: Record<string, unknown>) => void;

/**
 * {@link ReplayCache} shared by every replica: one atomic `SET key <unique value> NX EX ttl` per
 * signature, so of concurrent requests carrying the same signature exactly one wins, whichever
 * replica serves it. Any Redis failure is a {@link ReplayCacheUnavailableError}: the caller fails
 * closed, and the key, should the SET still run later, is released (see RELEASE_IF_OURS), so the
 * refused request can be retried with the same signature. It owns the connection it is given and
 * closes it at shutdown.
 *
 * **A Redis that lost its data** (restarted empty, failed over to an empty replica, flushed) has
 * forgotten the signatures already used, each of which could be accepted again for the rest of its
 * window. So each SET goes with a GET of the {@link REPLAY_EPOCH_KEY} (one write, one round trip;
 * two commands, so no key of another Cluster slot is in one script): when the epoch this replica
 * adopted is gone or replaced, Redis lost its data, at the latest at that moment. A signature used
 * before then was made within {@link windowSeconds} of its use, so one made before that moment
 * plus the window may have been used: those are refused (503, `Retry-After` until that time, ~5
 * minutes) on every replica, which all adopt the loss's time from the new epoch, replicas started
 * since included. Signatures made later are checked as before. A replica that starts on a Redis
 * without an epoch creates the first one and refuses nothing: it cannot tell a new Redis from one
 * that lost its data while no replica ran.
 */
export class RedisReplayCache implements ReplayCache, OnApplicationShutdown {
  /** The epoch this replica adopted (undefined until the first answer). */
  private epoch: string | undefined;
  /** Signatures made before this Unix second are refused: they may have been used before a data loss. */
  private refuseBefore = 0;

  constructor(
    private readonly redis: Redis,
    private readonly windowSeconds = 300,
    private readonly log: ReplayCacheLog = () => undefined,
    private readonly clock: () => number = () => Math.floor(Date.now() / 1000),
  ) {}

  async remember(key: string, ttlSeconds: number, signedAt?: number): Promise<boolean> {
    if (!Number.isSafeInteger(ttlSeconds) || ttlSeconds < 1) throw new RangeError('ttlSeconds must be a positive integer');
    this.refuseIfBeforeLoss(signedAt);
    const redisKey = REPLAY_KEY_PREFIX + key;
    const value = randomUUID();
    let epoch: string | null;
    let reply: 'OK' | null;
    try {
      // Sent together (auto-pipelining): the GET runs just before the SET.
      [epoch, reply] = await Promise.all([this.redis.get(REPLAY_EPOCH_KEY), this.redis.set(redisKey, value, 'EX', ttlSeconds, 'NX')]);
      if (epoch === null || epoch !== this.epoch) await this.adopt(epoch);
    } catch (error) {
      // Not awaited: the request is answered 503 now; when Redis is unreachable this fails at once too.
      this.redis.eval(RELEASE_IF_OURS, 1, redisKey, value).catch(() => undefined);
      if (error instanceof ReplayCacheUnavailableError) throw error;
      throw new ReplayCacheUnavailableError('the Redis replay cache did not answer', { cause: error });
    }
    // A signature that may have been used before a loss found just now: its key, set in the
    // emptied Redis, was released above only on failure; release it here too.
    try {
      this.refuseIfBeforeLoss(signedAt);
    } catch (error) {
      this.redis.eval(RELEASE_IF_OURS, 1, redisKey, value).catch(() => undefined);
      throw error;
    }
    return reply === 'OK';
  }

  /** Refuses a signature made before {@link refuseBefore} (a {@link ReplayCacheUnavailableError} saying until when). */
  private refuseIfBeforeLoss(signedAt: number | undefined): void {
    if (signedAt === undefined || signedAt >= this.refuseBefore) return;
    const wait = Math.max(1, this.refuseBefore - this.clock());
    throw new ReplayCacheUnavailableError('a signature made before the replay cache lost its data', {
      retryAfterSeconds: wait,
      clientMessage: `the replay cache lost its record of used signatures (Redis lost its data), so a signature made before ${new Date(
        this.refuseBefore * 1000,
      ).toISOString()} may be a replay and is refused; sign again after that time (in ${wait} s)`,
    });
  }

  /**
   * Takes the epoch Redis holds now (`seen`, null when there is none) as this replica's: creates the
   * first one where there is none, and after a loss (an epoch adopted before is gone or replaced)
   * refuses the signatures made before the loss's time plus the window.
   */
  private async adopt(seen: string | null): Promise<void> {
    const starting = this.epoch === undefined;
    let current = seen;
    if (current === null) {
      // The first to notice names the moment; every other replica adopts it.
      await this.redis.set(REPLAY_EPOCH_KEY, `${randomUUID()} ${starting ? 0 : this.clock()}`, 'NX');
      current = await this.redis.get(REPLAY_EPOCH_KEY);
      if (current === null) throw new ReplayCacheUnavailableError('the replay cache epoch vanished as it was written');
    }
    const [id, time] = current.split(' ');
    let lostAt = Number(time);
    if (!(Number.isSafeInteger(lostAt) && lostAt > 0)) lostAt = 0;
    if (!starting && lostAt === 0) {
      // A replica that started after the loss created this epoch, not knowing of it: the loss is
      // dated now, for this replica and for those that start later.
      lostAt = this.clock();
      current = `${id} ${lostAt}`;
      await this.redis.set(REPLAY_EPOCH_KEY, current);
    }
    const refuseBefore = lostAt > 0 ? lostAt + this.windowSeconds : 0;
    const found = !starting || refuseBefore > this.clock();
    this.epoch = current;
    if (refuseBefore > this.refuseBefore) this.refuseBefore = refuseBefore;
    if (found && refuseBefore > 0)
      this.log(
        'ERROR',
        'Redis lost its data: the HMAC replay cache forgot the signatures already used; HMAC signatures made before the loss plus the window are refused (503) until then',
        {
          lostAt: new Date(lostAt * 1000).toISOString(),
          refusedUntil: new Date(this.refuseBefore * 1000).toISOString(),
        },
      );
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
