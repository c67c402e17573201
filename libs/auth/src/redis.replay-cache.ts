import { randomUUID } from 'node:crypto';
import type { OnApplicationBootstrap, OnApplicationShutdown } from '@nestjs/common';
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
 * A counter every signature's SET increments (never expires): Redis answers each increment with a
 * higher number than any it gave before, unless it lost data since. See {@link RedisReplayCache}.
 */
export const REPLAY_SEQ_KEY = `${REPLAY_KEY_PREFIX}seq`;
/** The Unix second a replica last found that Redis had lost data (never expires): how the others learn of it. */
export const REPLAY_LOST_KEY = `${REPLAY_KEY_PREFIX}lost`;

/** Sets a key to a number unless it holds a larger one (the latest loss stands, whichever replica writes last). */
const SET_IF_LATER =
  "if (tonumber(redis.call('get', KEYS[1]) or '0') or 0) < tonumber(ARGV[1]) then redis.call('set', KEYS[1], ARGV[1]) end return 0";

/** Logs what the cache found (the ERROR line of a data loss, a command Redis refused). */
export type ReplayCacheLog = (severity: 'ERROR', message: string, fields: Record<string, unknown>) => void;

/**
 * {@link ReplayCache} shared by every replica: one atomic `SET key <unique value> NX EX ttl` per
 * signature, so of concurrent requests carrying the same signature exactly one wins, whichever
 * replica serves it. Any Redis failure is a {@link ReplayCacheUnavailableError}: the caller fails
 * closed, and the key, should the SET still run later, is released (see RELEASE_IF_OURS), so the
 * refused request can be retried with the same signature. It owns the connection it is given and
 * closes it at shutdown.
 *
 * **A Redis that lost data** (restarted empty or from an older snapshot, failed over to a replica
 * that had not received the last writes, flushed) has forgotten signatures already used, each of
 * which could be accepted again for the rest of its window. So each SET is sent with an `INCR` of
 * {@link REPLAY_SEQ_KEY} and a `GET` of {@link REPLAY_LOST_KEY} (three single-key commands, one
 * write, one round trip). Redis executes the INCR after every command whose answer this replica has
 * already read, so its number must be higher than any number read before it was sent: one that is
 * not means Redis went back in time, at the latest now. A signature used before then was made within
 * {@link windowSeconds} of its use, so one made before now plus the window may have been used:
 * those are refused (503, `Retry-After` until then, ~5 minutes). The replica writes the moment to
 * {@link REPLAY_LOST_KEY}, where every other replica reads it with its next signature, and one that
 * starts reads it at boot. Signatures made later are checked as before.
 *
 * Not caught: a loss no replica has seen yet to a replica started since (until another replica's
 * next signed request writes it), and replay keys evicted under memory pressure (Terraform sets
 * Memorystore's `maxmemory-policy` to `noeviction`, so a full Redis refuses writes instead: 503).
 */
export class RedisReplayCache implements ReplayCache, OnApplicationBootstrap, OnApplicationShutdown {
  /** The highest number Redis gave this replica for {@link REPLAY_SEQ_KEY} (0: none yet). */
  private highestSeq = 0;
  /** Signatures made before this Unix second are refused: they may have been used before a data loss. */
  private refuseBefore = 0;
  /** The latest loss this replica knows of (Unix seconds), found here or read from Redis. */
  private lostAt = 0;
  /** The refusals Redis gave (a key of the wrong type), each logged once. */
  private readonly logged = new Set<string>();

  constructor(
    private readonly redis: Redis,
    private readonly windowSeconds = 300,
    private readonly log: ReplayCacheLog = () => undefined,
    private readonly clock: () => number = () => Math.floor(Date.now() / 1000),
  ) {}

  /**
   * Takes a number of the counter (an INCR: at least 1, so even a wipe before this replica's first
   * signature shows, as a number no higher), and any loss found before this replica started.
   */
  async onApplicationBootstrap(): Promise<void> {
    try {
      const [seq, lost] = await Promise.all([this.redis.incr(REPLAY_SEQ_KEY), this.redis.get(REPLAY_LOST_KEY)]);
      this.seen(seq);
      this.learn(lost);
    } catch {
      // Redis away at boot: the connection's reporter says so, and each signature reads both.
    }
  }

  async remember(key: string, ttlSeconds: number, signedAt?: number): Promise<boolean> {
    if (!Number.isSafeInteger(ttlSeconds) || ttlSeconds < 1) throw new RangeError('ttlSeconds must be a positive integer');
    this.refuseIfBeforeLoss(signedAt);
    const redisKey = REPLAY_KEY_PREFIX + key;
    const value = randomUUID();
    // Every number read so far came from a command Redis ran before this INCR.
    const before = this.highestSeq;
    let reply: 'OK' | null;
    try {
      let seq: number;
      let lost: string | null;
      // Sent together (auto-pipelining), in this order.
      [reply, seq, lost] = await Promise.all([
        this.redis.set(redisKey, value, 'EX', ttlSeconds, 'NX'),
        this.redis.incr(REPLAY_SEQ_KEY),
        this.redis.get(REPLAY_LOST_KEY),
      ]);
      this.learn(lost);
      if (seq <= before) await this.found(seq, before);
      else this.seen(seq);
      this.refuseIfBeforeLoss(signedAt);
    } catch (error) {
      // Not awaited: the request is answered 503 now; when Redis is unreachable this fails at once too.
      this.redis.eval(RELEASE_IF_OURS, 1, redisKey, value).catch(() => undefined);
      if (error instanceof ReplayCacheUnavailableError) throw error;
      this.logRefusal(error);
      throw new ReplayCacheUnavailableError('the Redis replay cache did not answer', { cause: error });
    }
    return reply === 'OK';
  }

  private seen(seq: number): void {
    if (seq > this.highestSeq) this.highestSeq = seq;
  }

  /** Takes a loss another replica found (the value of {@link REPLAY_LOST_KEY}), if later than the one known. */
  private learn(lost: string | null): void {
    const at = Number(lost);
    if (lost === null || !Number.isSafeInteger(at) || at <= this.lostAt) return;
    this.lostAt = at;
    const refuseBefore = at + this.windowSeconds;
    if (refuseBefore <= this.refuseBefore) return;
    this.refuseBefore = refuseBefore;
    if (refuseBefore > this.clock()) this.logLoss('found by another replica');
  }

  /** Redis gave `seq` though it had given `before` already: it lost data. Dated now, and told to the others. */
  private async found(seq: number, before: number): Promise<void> {
    // The counter starts again from what Redis holds now.
    this.highestSeq = seq;
    const now = this.clock();
    if (now > this.lostAt) this.lostAt = now;
    this.refuseBefore = Math.max(this.refuseBefore, now + this.windowSeconds);
    this.logLoss(`the signature counter went back from ${before} to ${seq}`);
    await this.redis.eval(SET_IF_LATER, 1, REPLAY_LOST_KEY, String(now));
  }

  private logLoss(how: string): void {
    this.log(
      'ERROR',
      'Redis lost data: the HMAC replay cache may have forgotten signatures already used; signatures made before the loss plus the window are refused (503) until then',
      { how, lostAt: new Date(this.lostAt * 1000).toISOString(), refusedUntil: new Date(this.refuseBefore * 1000).toISOString() },
    );
  }

  /** A command Redis refused (not a connection failure, which the connection's reporter logs): said once per message. */
  private logRefusal(error: unknown): void {
    if (!(error instanceof Error) || error.name !== 'ReplyError' || this.logged.has(error.message) || this.logged.size >= 16) return;
    this.logged.add(error.message);
    this.log('ERROR', 'the replay cache Redis refused a command: HMAC requests are refused (503) until it is fixed', {
      reason: error.message.slice(0, 200),
    });
  }

  /** Refuses a signature made before {@link refuseBefore} (a {@link ReplayCacheUnavailableError} saying until when). */
  private refuseIfBeforeLoss(signedAt: number | undefined): void {
    if (signedAt === undefined || signedAt >= this.refuseBefore) return;
    const wait = Math.max(1, this.refuseBefore - this.clock());
    throw new ReplayCacheUnavailableError('a signature made before the replay cache lost data', {
      retryAfterSeconds: wait,
      clientMessage: `the replay cache lost its record of used signatures (Redis lost data), so a signature made before ${new Date(
        this.refuseBefore * 1000,
      ).toISOString()} may be a replay and is refused; sign again after that time (in ${wait} s)`,
    });
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
