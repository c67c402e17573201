import { Inject, Injectable, type OnApplicationShutdown, type OnModuleInit } from '@nestjs/common';
import { GatewayError } from '@keygate/errors';
import { JsonLogger, KEYGATE_LOGGER } from '@keygate/observability';
import { closeOnRefusedDatabase, KEYGATE_REDIS, refusedDatabase } from '@keygate/redis';
import type { Redis } from 'ioredis';
import { randomUUID } from 'node:crypto';

/** Longest an operator's block change waits on a Redis that is connected but silent. */
export const ADMIN_REDIS_WAIT_MS = 1_000;

/** A block of a product, or of one user of a product. */
export interface Block {
  product: string;
  /** null: the whole product. */
  user: string | null;
  reason: string;
  createdAt: string;
  /** null: until deleted. */
  expiresAt: string | null;
  /** Who created it: an admin's user, or `auto-block`. */
  createdBy: string;
}

const BLOCKS_KEY = 'kg:blocks';
/**
 * A field of the blocks hash holding a random value, set once and never deleted: when Redis loses
 * its data (a restart without persistence, a failover to an empty replica, a flush) it vanishes
 * with the blocks, which tells a replica that they disappeared by accident rather than by an
 * operator's DELETE. In the same hash, so one HGETALL reads both (and a Redis Cluster sees one key);
 * no block's field starts with a newline (it is `product` or `product\nuser`).
 */
const EPOCH_FIELD = '\nepoch';
/**
 * A field of the blocks hash counting the changes made through keygate (each create, lift and
 * write-back adds one, in the same transaction): it only grows, unless Redis went back to older data
 * (restarted from a snapshot, failed over to a replica that had not received the last writes),
 * which keeps the epoch but loses the blocks made since. A replica that reads a number lower than
 * one it was given before knows (as the HMAC replay cache does with its counter). Not a block's
 * field either (it starts with a newline).
 */
const VERSION_FIELD = '\nversion';
/** How an epoch set after Redis went back starts, so the replicas that did not find it say what happened. */
const WENT_BACK_EPOCH = 'went-back:';
/** Replaces the epoch (KEYS[1]'s field ARGV[1]) by ARGV[3] if it still is ARGV[2]: one new epoch however many replicas find the same loss. */
const REPLACE_EPOCH = `
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then redis.call('HSET', KEYS[1], ARGV[1], ARGV[3]) end
return 0`;
/** Deletes each field (ARGV: field, value, field, value…) whose value is still the one given. */
const DELETE_IF_UNCHANGED = `
for i = 1, #ARGV, 2 do
  if redis.call('HGET', KEYS[1], ARGV[i]) == ARGV[i + 1] then redis.call('HDEL', KEYS[1], ARGV[i]) end
end
return 0`;
/**
 * Every change made through a replica is announced on this channel once Redis has taken the write,
 * and applied by every replica as it arrives, milliseconds later (SPEC §6: "immediate on every
 * replica"); a replica whose subscription is down learns it with its next read. See {@link changesChannel}.
 */
const CHANGES_CHANNEL = 'kg:blocks:changes';
/** A change as announced: the block now stored under `key`, or null when it was lifted. */
interface BlockChange {
  key: string;
  block: Block | null;
  /**
   * The announcement's id: each replica that applies the change says so by publishing the id on the
   * confirmations channel (the changes channel's name and `:applied`), and the replica that made the change
   * answers the operator once every replica that received it has (see {@link ANNOUNCE_CONFIRM_MS}).
   */
  id?: string;
}
/**
 * Longest an operator's change waits for the replicas that received its announcement to confirm
 * they applied it. They do within milliseconds; one that does not in time (stalled, or a replica of
 * a version that does not confirm) applies it with its next read, and a WARNING says how many did.
 */
export const ANNOUNCE_CONFIRM_MS = 500;
/**
 * Every replica also re-reads the blocks this often: what a replica missed while its subscription
 * was down (a reconnect), expiries, and changes written by hand reach it within a second.
 */
export const BLOCKS_POLL_MS = 500;
/**
 * How recent this replica's last read of the blocks must be for it to write them back after a
 * loss: an older view may hold a block an operator has lifted since.
 */
const FRESH_VIEW_MS = 2 * BLOCKS_POLL_MS + 250;
/** Redis's start time is known to the second (`uptime_in_seconds`), and a loss is seen a poll late. */
const RESTART_SLACK_MS = 2_000;
/** Longest a booting replica waits for its Redis connection before its first read of the blocks. */
const BOOT_REDIS_WAIT_MS = 1_000;
/** How long a replica waits for its first blocks from Redis before it says it has none. */
export const BLOCKS_BOOT_GRACE_MS = 3_000;

/**
 * Product and user blocks. The hot path checks an in-memory map (no Redis round trip); with Redis
 * a change made through one replica is announced to all of them (pub/sub) and in force everywhere
 * by the time the operator has the answer, and every replica also refreshes the map from one hash
 * every 500 ms. Without Redis, blocks are per process.
 */
@Injectable()
export class BlocksService implements OnModuleInit, OnApplicationShutdown {
  private blocks = new Map<string, Block>();
  /** Blocks made on this replica while Redis was away: in force here, written to Redis when it returns. */
  private readonly unsynced = new Map<string, Block>();
  private timer: NodeJS.Timeout | undefined;
  /** A failed refresh is said once per outage (at 2 a second it would flood the log). */
  private refreshFailing = false;
  /** Whether a refresh has succeeded: before that, a connection still being made is no outage. */
  private refreshedOnce = false;
  private stopped = false;
  /** The epoch this replica last adopted; undefined until its first refresh. */
  private epoch: string | undefined;
  /** When the blocks were last read from Redis (ms since the epoch), 0 before the first read. */
  private readAt = 0;
  /** The highest {@link VERSION_FIELD} Redis gave this replica since it last adopted an epoch (0: none yet). */
  private version = 0;
  /** When refreshing started to fail (Redis unreachable from here), undefined while it works. */
  private failingSince: number | undefined;
  /** This replica found the epoch missing and has not finished handling it (for the ERROR line). */
  private lossFoundHere = false;
  /** A refresh in flight: the next tick skips rather than overlap it. */
  private refreshing = false;
  private readonly liftListeners: Array<(product: string, user: string) => void> = [];
  /** Called when a block comes into force on this replica, however it arrived (see {@link onBlocked}). */
  private readonly blockListeners: Array<() => void> = [];
  /** The connection that receives announced changes (a subscribed connection takes no other command). */
  private subscriber: Redis | undefined;
  /** Changes announced while a refresh's read is in flight: applied to what it read, in order, so it undoes none. */
  private duringRead: BlockChange[] | undefined;
  /** Whether an announcement was refused (a Redis ACL user without the channel): said once. */
  private announceRefused = false;
  /** Where this replica's database's changes are announced (see {@link changesChannel}). */
  private readonly channel: string;
  /** Where replicas confirm the announcements they applied. */
  private readonly confirmations: string;
  /** Whether this replica receives confirmations (not where a Redis ACL user lacks their channel): else it does not wait for them. */
  private hearsConfirmations = false;
  /** This replica's announcements waiting for confirmations, by id. */
  private readonly awaiting = new Map<string, { confirmed: number; receivers: number; all: () => void }>();

  constructor(
    @Inject(KEYGATE_REDIS) private readonly redis: Redis | undefined,
    @Inject(KEYGATE_LOGGER) private readonly logger: JsonLogger,
  ) {
    this.channel = changesChannel(redis);
    this.confirmations = `${this.channel}:applied`;
  }

  async onModuleInit(): Promise<void> {
    if (!this.redis) return;
    // Serving only once the blocks are read and the changes other replicas announce reach this one.
    // The connection is still being made at boot: a first read without waiting for it found it not
    // ready, and a new replica served blocked users until its first refresh, 500 ms later. Bounded,
    // as Redis may be away at boot (the refreshes then bring the blocks when it answers).
    const redis = this.redis;
    const ready = redis.status === 'ready' ? undefined : new Promise((resolve) => redis.once('ready', resolve));
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      Promise.all([ready, this.subscribe(redis)]),
      new Promise<void>((resolve) => (timer = setTimeout(resolve, BOOT_REDIS_WAIT_MS))),
    ]);
    clearTimeout(timer);
    await this.refresh();
    this.timer = setInterval(() => void this.refresh(), BLOCKS_POLL_MS);
    this.timer.unref();
    // A replica that boots while Redis is away serves with no blocks at all until it answers
    // (it stays ready: limits count per replica meanwhile): an operator must know.
    setTimeout(() => {
      // A refused database has its own ERROR line, which says blocks are not in force: no outage to wait out.
      if (!this.refreshedOnce && !this.stopped && !refusedDatabase(redis))
        this.logger.write(
          'WARNING',
          'blocks not loaded: Redis has not answered since boot; no block is in force on this replica until it does',
          {
            waitedMs: BLOCKS_BOOT_GRACE_MS,
          },
        );
    }, BLOCKS_BOOT_GRACE_MS).unref();
  }

  onApplicationShutdown(): void {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    this.subscriber?.disconnect();
  }

  /**
   * Receives the changes other replicas announce. Its own connection, queueing the subscription
   * until Redis answers and renewing it after a reconnect (ioredis does); what is missed meanwhile
   * comes with the next refresh. Errors are the main connection's to report. Resolves once subscribed.
   */
  private subscribe(redis: Redis): Promise<void> {
    const subscriber = redis.duplicate({
      enableOfflineQueue: true,
      maxRetriesPerRequest: null,
      enableAutoPipelining: false,
      commandTimeout: undefined,
    });
    this.subscriber = subscriber;
    subscriber.on('error', () => undefined);
    closeOnRefusedDatabase(subscriber);
    subscriber.on('message', (channel: string, message: string) =>
      channel === this.confirmations ? this.confirmed(message) : this.apply(message),
    );
    // Apart: a Redis ACL user may have the changes channel and not the confirmations one.
    return Promise.all([
      subscriber.subscribe(this.channel).catch(() => undefined),
      subscriber.subscribe(this.confirmations).then(
        () => (this.hearsConfirmations = true),
        () => undefined,
      ),
    ]).then(() => undefined);
  }

  private apply(message: string): void {
    let change: BlockChange;
    try {
      change = JSON.parse(message) as BlockChange;
    } catch {
      return;
    }
    if (typeof change.key !== 'string' || (change.block !== null && !isBlock(change.block))) return;
    this.duringRead?.push(change);
    applyChange(this.blocks, change);
    if (change.block) this.blocked();
    // Said once applied, so the operator's answer means every replica refuses the next request.
    if (typeof change.id === 'string') this.redis?.publish(this.confirmations, change.id).catch(() => undefined);
  }

  private confirmed(id: string): void {
    const waiting = this.awaiting.get(id);
    if (waiting && ++waiting.confirmed >= waiting.receivers) waiting.all();
  }

  /**
   * Announces a change Redis has taken, and resolves once every replica that received the
   * announcement (this one included) has applied it, or after {@link ANNOUNCE_CONFIRM_MS}. Outside
   * the write's transaction, and its failure ignored: a Redis ACL user without the channel (Redis 7
   * grants none by default) still creates and lifts blocks, which then reach the other replicas with
   * their next read (500 ms); said once.
   */
  private async announce(redis: Redis, key: string, block: Block | null): Promise<void> {
    const id = randomUUID();
    // Waiting before the announcement goes: confirmations may arrive before PUBLISH's reply. A
    // replica that cannot hear them (its ACL user lacks their channel) does not wait.
    const waiting = { confirmed: 0, receivers: Infinity, all: () => undefined as void };
    const all = new Promise<void>((resolve) => (waiting.all = resolve));
    if (this.hearsConfirmations) this.awaiting.set(id, waiting);
    let timer: NodeJS.Timeout | undefined;
    try {
      waiting.receivers = await redis.publish(this.channel, announce(key, block, id));
      if (!this.awaiting.has(id) || waiting.confirmed >= waiting.receivers) return;
      const confirmed = await Promise.race([
        all.then(() => true),
        new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), ANNOUNCE_CONFIRM_MS))),
      ]);
      if (!confirmed)
        this.logger.write(
          'WARNING',
          `a block change was not confirmed by every replica within ${ANNOUNCE_CONFIRM_MS} ms: the others apply it with their next read (${BLOCKS_POLL_MS} ms)`,
          { confirmed: waiting.confirmed, received: waiting.receivers },
        );
    } catch (error) {
      if (this.announceRefused) return;
      this.announceRefused = true;
      this.logger.write('WARNING', 'Redis refused to announce a block change: other replicas apply changes with their next read (500 ms)', {
        channel: this.channel,
        reason: error instanceof Error ? error.message : String(error),
      });
    } finally {
      clearTimeout(timer);
      this.awaiting.delete(id);
    }
  }

  /** The block in force for this product or this user of it, if any. */
  find(product: string, user: string): Block | undefined {
    if (this.blocks.size === 0) return undefined;
    const now = Date.now();
    for (const key of [product, keyOf(product, user)]) {
      const block = this.blocks.get(key);
      if (block && inForce(block, now)) return block;
    }
    return undefined;
  }

  /** Every block in force. */
  list(): Block[] {
    const now = Date.now();
    return [...this.blocks.values()].filter((b) => inForce(b, now));
  }

  /**
   * Creates or replaces a block; in force here at once, and on every replica whose subscription is
   * up by the time it resolves (see {@link announce}; the others within a second). With
   * `whenRedisIsAway: 'local'` (auto-blocks) a block that cannot reach Redis is kept on this replica
   * and written to Redis when it returns; otherwise (an operator's change) the call fails with 503.
   */
  async create(block: Block, options: { whenRedisIsAway: 'refuse' | 'local' } = { whenRedisIsAway: 'refuse' }): Promise<Block> {
    const key = keyOf(block.product, block.user);
    if (this.redis) {
      try {
        const redis = this.redis;
        await this.shared(async () => {
          const [, version] = checked(
            await redis.multi().hset(BLOCKS_KEY, key, JSON.stringify(block)).hincrby(BLOCKS_KEY, VERSION_FIELD, 1).exec(),
          );
          this.seen(version as number);
          await this.announce(redis, key, block);
        });
      } catch (error) {
        if (options.whenRedisIsAway !== 'local') throw error;
        this.unsynced.set(key, block);
      }
    }
    this.blocks.set(key, block);
    this.blocked();
    return block;
  }

  /**
   * Called each time a block comes into force on this replica: made here, announced by another
   * replica, or found by a refresh (a change missed while the subscription was down, one written
   * by hand). The gateway ends the requests in flight that the blocks now cover; the listener
   * decides which with {@link find}, as the guard does.
   */
  onBlocked(listener: () => void): void {
    this.blockListeners.push(listener);
  }

  private blocked(): void {
    for (const listener of this.blockListeners) listener();
  }

  /** Called with each user block an operator lifts (the auto-blocker forgets its state of that user). */
  onLifted(listener: (product: string, user: string) => void): void {
    this.liftListeners.push(listener);
  }

  /** Removes a block; returns whether one existed. */
  async remove(product: string, user: string | null): Promise<boolean> {
    const key = keyOf(product, user);
    // Whether this call lifted a block in force: not one another replica lifted first (this one's
    // copy not refreshed yet), nor one that had expired.
    let removed: boolean | undefined;
    if (this.redis) {
      const redis = this.redis;
      // Lifting a user's block also clears their auto-block state: its lock (held as long as the
      // block would have lasted) would otherwise stop a new auto-block until then, however hard
      // the user kept hitting their limits.
      removed =
        (await this.shared(async () => {
          // Every field holding this block: one written before user keys were case-folded (or by
          // hand) under another spelling would otherwise come back at the next refresh.
          const fields = new Set([key]);
          const now = Date.now();
          let live = false;
          for (const [field, json] of Object.entries(await redis.hgetall(BLOCKS_KEY))) {
            const block = parseBlock(json);
            if (block && keyOf(block.product, block.user) === key) {
              fields.add(field);
              live ||= inForce(block, now);
            }
          }
          const multi = redis
            .multi()
            .hdel(BLOCKS_KEY, ...fields)
            .hincrby(BLOCKS_KEY, VERSION_FIELD, 1);
          if (user !== null) multi.del(autoBlockLockKey(product, user), autoBlockCountKey(product, user));
          const [count, version] = checked(await multi.exec());
          this.seen(version as number);
          await this.announce(redis, key, null);
          // Deleted by this call (another lifting it at the same moment deleted nothing then).
          return live && (count as number) > 0;
        })) ?? false;
    }
    // Only once Redis took the change (a refused one changes nothing here either): a block made
    // during an outage stays to be written back, and the auto-blocker keeps its state.
    const unsynced = this.unsynced.delete(key);
    if (user !== null) for (const listener of this.liftListeners) listener(product, user);
    const local = this.blocks.get(key);
    this.blocks.delete(key);
    // Without Redis, or held here since an outage (an auto-block not written back yet): this copy is the block.
    const onlyHere = removed === undefined || unsynced;
    return removed === true || (onlyHere && local !== undefined && inForce(local, Date.now()));
  }

  /**
   * A block must reach every replica, so without Redis a change is refused (503). A Redis that is
   * connected but does not answer is waited on for {@link ADMIN_REDIS_WAIT_MS} at most; a command
   * sent may still run when it answers, which the 503 says (the operator checks with the list).
   */
  private async shared<T>(op: () => Promise<T> | undefined): Promise<T | undefined> {
    if (this.redis?.status !== 'ready')
      throw new GatewayError('service_unavailable', 'blocks are kept in Redis, which is unavailable; nothing was changed; retry shortly', {
        retryAfterSeconds: 1,
      });
    let timer: NodeJS.Timeout | undefined;
    try {
      return await Promise.race([
        op(),
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new Error(`no answer within ${ADMIN_REDIS_WAIT_MS} ms`)), ADMIN_REDIS_WAIT_MS);
        }),
      ]);
    } catch (error) {
      // An error reply (READONLY, OOM) changed nothing; a command without an answer may still run.
      const unanswered = error instanceof Error && /no answer within|timed out/i.test(error.message);
      throw new GatewayError(
        'service_unavailable',
        unanswered
          ? 'blocks are kept in Redis, which did not answer: the change may still be applied when it does; list the blocks to see, then retry'
          : 'blocks are kept in Redis, which refused the change; nothing was changed; retry shortly',
        { retryAfterSeconds: 1, cause: error },
      );
    } finally {
      clearTimeout(timer);
    }
  }

  /** A number Redis gave for {@link VERSION_FIELD}: the highest is what a later read must not be below. */
  private seen(version: number): void {
    if (version > this.version) this.version = version;
  }

  private async refresh(): Promise<void> {
    if (!this.redis || this.refreshing) return;
    this.refreshing = true;
    try {
      await this.refreshOnce();
    } finally {
      this.refreshing = false;
    }
  }

  private async refreshOnce(): Promise<void> {
    if (!this.redis) return;
    if (this.redis.status !== 'ready') {
      // 'end' is a connection closed on purpose (the shutdown), not an outage.
      if (this.redis.status !== 'end') this.failingSince ??= Date.now();
      if (this.refreshedOnce && this.redis.status !== 'end') this.refreshFailed(`Redis connection ${this.redis.status}`);
      return;
    }
    try {
      for (const [key, block] of this.unsynced) {
        const [, version] = checked(
          await this.redis.multi().hset(BLOCKS_KEY, key, JSON.stringify(block)).hincrby(BLOCKS_KEY, VERSION_FIELD, 1).exec(),
        );
        this.seen(version as number);
        this.unsynced.delete(key);
      }
      this.duringRead = [];
      // Every number this replica was given came from a command Redis ran before this read.
      const known = this.version;
      let raw = await this.redis.hgetall(BLOCKS_KEY);
      const readAt = Date.now();
      if (raw[EPOCH_FIELD] === undefined || raw[EPOCH_FIELD] !== this.epoch) raw = await this.newEpoch(raw);
      else if (versionOf(raw) < known) raw = await this.newEpoch(raw, true);
      else this.seen(versionOf(raw));
      delete raw[EPOCH_FIELD];
      delete raw[VERSION_FIELD];
      const next = new Map<string, Block>();
      // Field and value of each expired block, so only that value is deleted.
      const expired: string[] = [];
      const now = Date.now();
      for (const [key, json] of Object.entries(raw)) {
        const block = parseBlock(json);
        if (!block) continue;
        if (!inForce(block, now)) expired.push(key, json);
        // Keyed by the block's content, not the field: a field written before user keys were
        // case-folded (or by hand) is still found.
        else next.set(keyOf(block.product, block.user), block);
      }
      for (const [key, block] of this.unsynced) next.set(key, block);
      // A change announced while this read was in flight may be missing from it: applied again, in order.
      for (const change of this.duringRead) applyChange(next, change);
      this.duringRead = undefined;
      const previous = this.blocks;
      this.blocks = next;
      if (addsBlocks(previous, next)) this.blocked();
      // Compare and delete: a block another replica created again under the same key since this
      // read (an auto-block at the expiry, an operator) must not be deleted with the old one.
      if (expired.length) await this.redis.eval(DELETE_IF_UNCHANGED, 1, BLOCKS_KEY, ...expired);
      this.readAt = readAt;
      this.failingSince = undefined;
      this.refreshedOnce = true;
      if (this.refreshFailing) {
        this.refreshFailing = false;
        this.logger.write('NOTICE', 'blocks refreshed from Redis again', { inForce: this.blocks.size });
      }
    } catch (error) {
      this.failingSince ??= Date.now();
      this.refreshFailed((error as Error).message);
    } finally {
      this.duringRead = undefined;
    }
  }

  /**
   * The epoch is missing (Redis lost its data), is not the one this replica adopted (another
   * replica found a loss first), or this replica is starting; or (`wentBack`) the epoch is there but
   * Redis went back to older data, which lost the blocks made since (see {@link VERSION_FIELD}): the
   * epoch is replaced, so the other replicas handle the loss too. After a loss the blocks this
   * replica held go back to Redis, each only where no block is stored under its key now, so one
   * made since is kept; every replica does the same, so the union of what they held survives.
   *
   * Nothing is written back from a view that may miss a lift: one already old when this replica
   * lost contact with Redis, or one from a replica cut off while Redis kept running (it did not
   * restart meanwhile, so others could lift blocks through it). Redis restarting, or failing over
   * to an empty replica that started since, is the loss this is for; Redis going back is one
   * whatever its uptime (a replica promoted after running for days), so only the view's age counts
   * then. Returns the hash as stored.
   */
  private async newEpoch(raw: Record<string, string>, wentBack = false): Promise<Record<string, string>> {
    const redis = this.redis as Redis;
    const starting = this.epoch === undefined && !this.refreshedOnce;
    // Another replica that found Redis gone back says so in the epoch it set.
    wentBack ||= !starting && raw[EPOCH_FIELD]?.startsWith(WENT_BACK_EPOCH) === true;
    if (raw[EPOCH_FIELD] === undefined) {
      if (!starting) this.lossFoundHere = true;
      await redis.hsetnx(BLOCKS_KEY, EPOCH_FIELD, randomUUID());
    } else if (wentBack && raw[EPOCH_FIELD] === this.epoch) {
      this.lossFoundHere = true;
      await redis.eval(REPLACE_EPOCH, 1, BLOCKS_KEY, EPOCH_FIELD, raw[EPOCH_FIELD], `${WENT_BACK_EPOCH}${randomUUID()}`);
    }
    let restored = 0;
    let withheld: string | undefined;
    const now = Date.now();
    if (!starting) {
      const lostContactAt = this.failingSince ?? now;
      if (lostContactAt - this.readAt > FRESH_VIEW_MS) withheld = 'its view of the blocks was already old when it lost contact';
      else if (this.failingSince !== undefined && !wentBack) {
        const startedAt = await redisStartedAt(redis, now);
        if (startedAt !== undefined && startedAt < this.failingSince - RESTART_SLACK_MS)
          withheld = 'Redis kept running while this replica could not reach it, so blocks may have been lifted meanwhile';
      }
      const held = withheld ? [] : [...this.blocks].filter(([, b]) => inForce(b, now));
      if (held.length) {
        const multi = redis.multi();
        for (const [key, block] of held) multi.hsetnx(BLOCKS_KEY, key, JSON.stringify(block));
        for (const [error] of (await multi.exec()) ?? []) if (error) throw error;
        restored = held.length;
      }
    }
    const stored = await redis.hgetall(BLOCKS_KEY);
    // Adopted, and said, only once the write-back is done: a failure above leaves both to the next refresh.
    this.epoch = stored[EPOCH_FIELD];
    // Counted again from what Redis holds now (it went back, or starts from nothing).
    this.version = versionOf(stored);
    if (!starting) {
      const what = `${
        wentBack
          ? 'Redis went back to older data (restarted from a snapshot, or failed over to a replica that had not received the last writes)'
          : 'Redis lost its data'
      }${this.lossFoundHere ? '' : ' (found by another replica)'}`;
      const written = withheld
        ? `nothing written back from this replica (${withheld})`
        : wentBack
          ? 'blocks written back from this replica (a block lifted since that data was written may be back: list them)'
          : 'blocks written back from this replica';
      const counts = wentBack ? 'shared limit and quota counts went back with it' : 'shared limit and quota counts restart from zero';
      this.logger.write('ERROR', `${what}: ${written}; ${counts}`, { restored, viewAgeMs: now - this.readAt });
      this.lossFoundHere = false;
    }
    return stored;
  }

  /** The last known blocks stay in force while Redis is away; an operator must know they may be stale. */
  private refreshFailed(reason: string): void {
    if (this.refreshFailing) return;
    this.refreshFailing = true;
    this.logger.write('WARNING', 'blocks refresh failed: the blocks last read stay in force until Redis answers', {
      reason,
      inForce: this.blocks.size,
    });
  }
}

/** The Redis key of a user's auto-block lock (set while an auto-block is in force). */
export function autoBlockLockKey(product: string, user: string): string {
  return `kg:{${product}}:autoblocked:${blockedUserKey(user)}`;
}

/** The Redis key of a user's refusal count in the auto-block window. */
export function autoBlockCountKey(product: string, user: string): string {
  return `kg:{${product}}:refusals:${blockedUserKey(user)}`;
}

/**
 * How blocks name a user: an email address (anything with an `@`) in lower case, other ids as they
 * are. Email addresses are case-insensitive in practice, and IAP hands keygate the account's email
 * in lower case while an operator may copy it from a directory as `Alice.Smith@corp.com`: a block
 * must stop the user whatever case either side wrote. Opaque ids (a JWT `sub`, an HMAC client id)
 * are compared exactly, as RFC 7519 compares `sub`.
 */
export function blockedUserKey(user: string): string {
  return user.includes('@') ? user.toLowerCase() : user;
}

function keyOf(product: string, user: string | null): string {
  return user === null ? product : `${product}\n${blockedUserKey(user)}`;
}

/**
 * The channel of the blocks kept in `redis`'s database. Pub/sub ignores databases (a message
 * published from database 2 reaches a subscriber that selected database 3), so two deployments
 * sharing one Redis through different databases (the URL's `/2`, as for dev and stage) would
 * otherwise apply each other's blocks and lifts until their next read of the hash. Database 0
 * keeps the bare name.
 */
function changesChannel(redis: Redis | undefined): string {
  const db = Number(redis?.options?.db ?? 0);
  return db ? `${CHANGES_CHANNEL}:${db}` : CHANGES_CHANNEL;
}

/** The announcement of a change (see {@link CHANGES_CHANNEL}). */
function announce(key: string, block: Block | null, id: string): string {
  const change: BlockChange = { key, block, id };
  return JSON.stringify(change);
}

/** Whether `next` holds a block that `previous` did not (or holds it changed: a new reason, a later expiry). */
function addsBlocks(previous: Map<string, Block>, next: Map<string, Block>): boolean {
  for (const [key, block] of next) {
    const before = previous.get(key);
    if (!before || before.createdAt !== block.createdAt || before.expiresAt !== block.expiresAt || before.reason !== block.reason)
      return true;
  }
  return false;
}

/**
 * The refusal of a request from a blocked product or user: the guard's before the request is
 * served, and the end of one in flight when the block comes.
 */
export function blockedError(block: Block, product: string, user: string): GatewayError {
  const who = block.user === null ? `product ${product}` : `user ${user} of product ${product}`;
  return new GatewayError('blocked', `${who} is blocked: ${block.reason}${block.expiresAt ? ` (until ${block.expiresAt})` : ''}`);
}

function applyChange(blocks: Map<string, Block>, change: BlockChange): void {
  if (change.block) blocks.set(change.key, change.block);
  else blocks.delete(change.key);
}

/** The replies of a MULTI, or the first error one carries (an error reply inside it). */
function checked(replies: Array<[Error | null, unknown]> | null): unknown[] {
  if (!replies) throw new Error('transaction aborted');
  for (const [error] of replies) if (error) throw error;
  return replies.map(([, value]) => value);
}

/** Whether a block is in force at `now`: it has no expiry, or one still ahead. */
function inForce(block: Block, now: number): boolean {
  return block.expiresAt === null || Date.parse(block.expiresAt) > now;
}

function parseBlock(json: string): Block | undefined {
  try {
    const b = JSON.parse(json) as unknown;
    return isBlock(b) ? b : undefined;
  } catch {
    return undefined;
  }
}

function isBlock(b: unknown): b is Block {
  const block = b as Partial<Block> | null;
  return typeof block?.product === 'string' && (block.user === null || typeof block.user === 'string');
}

/** The blocks hash's {@link VERSION_FIELD} (0 when absent). */
function versionOf(raw: Record<string, string>): number {
  const version = Number(raw[VERSION_FIELD] ?? 0);
  return Number.isSafeInteger(version) ? version : 0;
}

/** When the Redis server started (INFO's `uptime_in_seconds`), or undefined when it will not say. */
async function redisStartedAt(redis: Redis, now: number): Promise<number | undefined> {
  try {
    const uptime = /^uptime_in_seconds:(\d+)/m.exec(await redis.info('server'))?.[1];
    return uptime === undefined ? undefined : now - Number(uptime) * 1000;
  } catch {
    return undefined;
  }
}
