import { randomUUID } from 'node:crypto';
import type { BeforeApplicationShutdown, OnApplicationShutdown } from '@nestjs/common';
import { requestContextStorage, type JsonLogger } from '@keygate/observability';
import { REDIS_COOL_OFF_MS, redisSilent, RedisWaitExceededError, withinRequestWait } from '@keygate/redis';
import { ReplyError, type Redis } from 'ioredis';
import {
  dayOfDailyKey,
  utcDay,
  type BudgetAsk,
  type CounterHit,
  type CounterRef,
  type CounterStore,
  type DailyUsage,
  type HitOutcome,
  type StoreName,
  type TokenAsk,
  type QuotaName,
} from './counter.store';
import { MemoryCounterStore } from './memory.counter-store';
import { OPERATION_MARKER_TTL_MS, RedisCounterStore, tokenKey, type SettledTotals } from './redis.counter-store';

/** A daily counter a request was counted on in memory, held to be brought to Redis. */
interface HeldCounter {
  key: string;
  field?: string;
  ttlMs: number;
}

/**
 * What requests that ended owe the shared totals of one product, user and day, sent as one
 * settlement: a token delta (actual minus reserved, or a whole usage taken in memory) and what they
 * cost (billionths of a dollar); either may be 0.
 */
interface Settlement {
  product: string;
  user: string;
  day: string;
  delta: number;
  cost: number;
}

/**
 * A batch sent to Redis under its operation id (applied at most once): a settlement, or the request
 * counts one counter took in memory. One whose send failed is sent again under the same id.
 */
type SentOperation = { op: string; firstSentAt: number } & (
  ({ kind: 'settlement' } & Settlement) | { kind: 'requests'; key: string; field?: string; ttlMs: number; count: number }
);

/** Settlements waiting for Redis (product × user × day, coalesced); beyond this, dropped. */
const MAX_HELD_SETTLEMENTS = 10_000;
/**
 * Settlements are sent together this long after the first of a batch: each request's settle is
 * after its answer, so none waits for it, and at load one script per product, user and day replaces
 * one per request. The day's totals lag the answers by this much at most.
 */
const SETTLE_BATCH_MS = 25;
/** Shared counts remembered for an outage (daily counters and token totals); beyond this, forgotten. */
const MAX_REMEMBERED_COUNTS = 100_000;

function counterId(counter: CounterRef): string {
  return `${counter.key}\n${counter.field ?? ''}`;
}

function tokenId(product: string, day: string, user?: string): string {
  return user === undefined ? `tokens\n${product}\n${day}` : `tokens\n${product}\n${day}\n${user}`;
}

function costId(product: string, day: string, user?: string): string {
  return user === undefined ? `cost\n${product}\n${day}` : `cost\n${product}\n${day}\n${user}`;
}

/**
 * Request counters living longer than this (the daily ones) are brought to Redis after an outage;
 * per-second counters are over by the time it returns.
 */
const REPLAYED_COUNTER_MIN_TTL_MS = 60_000;

/**
 * Shared counting in Redis, with per-replica in-memory counting while Redis is unreachable: limits
 * then hold per replica (never unlimited), no request waits on a dead Redis (a disconnected client
 * is skipped without a command; a hung one costs one 250 ms wait, then a cool-off), and shared
 * counting resumes by itself once the client is ready again.
 *
 * Token reservations are kept exact across those switches: a reservation Redis takes after the
 * request stopped waiting (and counted in memory instead) is given back as soon as its late reply
 * arrives, a settlement that cannot be sent while Redis is away is held and sent when it returns,
 * and a request counted in memory during the outage brings its whole usage to the shared totals.
 * Daily request counts are kept the same way: a request admitted in memory is added to the shared
 * daily counters when Redis returns, so `/admin/usage` and the daily caps see the outage's traffic;
 * and so are request costs: one admitted in memory is counted there and held for Redis, like its tokens.
 * Cost reservations are kept the same way as token reservations: while Redis is away, a request's
 * cost estimate is reserved in memory against what the day's budgets had left when this replica last
 * saw the shared totals (plus what its requests admitted in memory since hold or cost; per replica,
 * as the limits are), settled there, and its whole cost brought to the shared totals when Redis returns.
 * Settlements to Redis (token deltas and costs) are coalesced per product, user and day and sent every 25 ms.
 */
export class FailoverCounterStore implements CounterStore, BeforeApplicationShutdown, OnApplicationShutdown {
  private readonly shared: RedisCounterStore;
  /** Counting while Redis is away; replaced by an empty one once all it counted has been brought to Redis. */
  private local = new MemoryCounterStore();
  /** Whether `local` counted anything since it was last replaced. */
  private localUsed = false;
  private coolOffUntil = 0;
  private wasDegraded = false;
  /** Token deltas and costs for the shared store not sent yet (batched, or held while Redis is away), by product, user and day. */
  private readonly held = new Map<string, Settlement>();
  private heldDropped = 0;
  /** Daily request counts taken in memory while Redis was away, by counter: added to Redis when it returns. */
  private readonly heldRequests = new Map<string, { key: string; field?: string; ttlMs: number; count: number }>();
  private heldRequestsDropped = 0;
  /**
   * The shared counts this replica last saw of the daily counters (`key\nfield`), token totals
   * (`tokens\nproduct\nday[\nuser]`) and cost totals (`cost\nproduct\nday[\nuser]`): during an outage, counting in memory goes on from them, so a
   * day's cap already reached stays reached and a replica gives out only what the day had left.
   */
  private readonly lastShared = new Map<string, number>();
  /** The UTC day `lastShared` is about: another day's counts limit nothing today. */
  private rememberedDay = '';
  /** Markers of operations Redis confirmed, dropped with the next send (a command of their own could queue behind it). */
  private readonly confirmedMarkers: Array<{ counterKey: string; op: string }> = [];
  /** Operations whose send failed (Redis may or may not have applied them): sent again under their ids. */
  private readonly unconfirmed: SentOperation[] = [];
  /** The next batch of settlements: resolves once it was sent. */
  private nextBatch: Promise<void> | undefined;
  private batchTimer: NodeJS.Timeout | undefined;
  private batchSent: (() => void) | undefined;
  private batching = true;
  /**
   * Settlements sent to Redis and not yet answered that give tokens back, by the quota they give
   * them to ({@link givingBackKey}): resolves once that send is answered.
   */
  private readonly inFlightGiveBacks = new Map<string, Promise<void>>();

  constructor(
    private readonly redis: Redis,
    private readonly logger: JsonLogger,
  ) {
    this.shared = new RedisCounterStore(redis);
    redis.on('ready', () => void this.sendHeld());
  }

  /**
   * Shutdown: the batch is sent, and settlements from here on (the requests still finishing during
   * the drain) are sent at once, since Redis is closed as soon as the drain ends.
   */
  async beforeApplicationShutdown(): Promise<void> {
    this.batching = false;
    clearTimeout(this.batchTimer);
    await this.sendBatch();
  }

  /** At exit, settlements still held (Redis away to the end) are lost: said, not silently dropped. */
  onApplicationShutdown(): void {
    const lost = [...this.held.values()].filter(owes).length + this.heldDropped;
    if (lost > 0)
      this.logger.write('WARNING', 'token and cost settlements not sent to Redis before exit: the shared daily totals miss them', {
        settlements: lost,
      });
    const unconfirmed = this.unconfirmed.length;
    if (unconfirmed > 0)
      this.logger.write('WARNING', 'counter updates Redis may not have applied could not be confirmed before exit', {
        operations: unconfirmed,
      });
    const requests = [...this.heldRequests.values()].reduce((n, h) => n + h.count, 0);
    if (requests > 0)
      this.logger.write('WARNING', 'request counts taken during a Redis outage not sent before exit: the shared daily counts miss them', {
        requests,
      });
  }

  /**
   * True while counting happens per replica: Redis disconnected, failing (a cool-off after a failed
   * command), or silent (another user of the connection waited on it in vain: see {@link redisSilent}).
   */
  get degraded(): boolean {
    return this.redis.status !== 'ready' || Date.now() < this.coolOffUntil || redisSilent(this.redis);
  }

  /**
   * Whether counting is shared, asking Redis (a PING, waited on like a request) when nothing else
   * has lately: a Redis that hangs while connected is otherwise noticed only by the next request.
   * For `/readyz` and `keygate_redis_up`; a hang found here degrades counting as a request would.
   */
  async checkShared(): Promise<boolean> {
    if (this.degraded) return false;
    try {
      await withinRequestWait(this.redis.ping(), this.redis);
      this.transition(false);
      return true;
    } catch (error) {
      this.coolOffUntil = Date.now() + REDIS_COOL_OFF_MS;
      this.transition(true, error);
      return false;
    }
  }

  /**
   * An admission in memory is held for Redis (its daily counters). A late admission (Redis counted
   * the request after it was counted in memory) takes that count back: from what is still held,
   * else (already sent with a batch, as while Redis is stalled but connected) from Redis itself, so
   * a stall does not leave the request counted twice in the shared day. Only the counters this
   * request had held are taken back (one dropped from a full hold was never sent). The tokens and the
   * cost a late admission reserved are given back (the request went on with reservations in memory).
   */
  async hit(hits: readonly CounterHit[], tokens?: TokenAsk, budget?: BudgetAsk): Promise<HitOutcome> {
    const outcome = await this.hitOnce(hits, tokens, budget);
    // Refused in Redis by a token quota to which settlements still batched here give tokens back:
    // typically a client's next request, sent as soon as its last answer arrived, while that
    // answer's unused reservation (its completion cap) waits up to SETTLE_BATCH_MS to be given
    // back. Refused, it would be told to come back at midnight. The batch goes now and Redis is
    // asked again (a refusal counted nothing).
    // A batch already on its way with such a settlement counts too: one another request refused at
    // the same moment sent (Redis read this request's totals before it), or the timer's.
    // Only a token quota's (or a budget's) refusal: settlements make no room in a request limit (the chat route asks
    // both in one step, and a burst at a per-second limit would otherwise flush and ask twice per 429).
    // A budget's refusal likewise, by settlements that give cost back (an answer that cost less than
    // its estimate).
    // Counted in memory (Redis away), there is no batch to send: the refusal stands.
    const givingBack =
      outcome.admitted || !outcome.refusedBy || this.degraded
        ? undefined
        : tokens && outcome.tokenTotals && (outcome.refusedBy === 'product_tokens' || outcome.refusedBy === 'user_tokens')
          ? this.givingBack(tokens, outcome.refusedBy)
          : budget && outcome.costTotals && (outcome.refusedBy === 'product_cost' || outcome.refusedBy === 'user_cost')
            ? this.givingBack(budget, outcome.refusedBy)
            : undefined;
    if (!givingBack) return outcome;
    // Waited on like any request's command (the batch goes whether or not this request waits for
    // it): a Redis that stalls now must not hold the request for the client's command timeout.
    try {
      await withinRequestWait(givingBack, this.redis);
    } catch {
      return outcome;
    }
    return this.hitOnce(hits, tokens, budget);
  }

  private hitOnce(hits: readonly CounterHit[], tokens?: TokenAsk, budget?: BudgetAsk): Promise<HitOutcome> {
    let held: readonly HeldCounter[] = [];
    return this.run(
      (s) =>
        s === this.local
          ? this.hitLocal(hits, tokens, budget, (h) => (held = h))
          : s.hit(hits, tokens, budget).then((outcome) => this.remember(hits, tokens, budget, outcome)),
      (late) => {
        if (!late.admitted) return;
        this.unholdRequests(held);
        if (tokens) void this.settleShared(tokens.product, tokens.user, -tokens.tokens, tokens.day);
        if (budget) void this.settleShared(budget.product, budget.user, 0, budget.day, -budget.nanoUsd);
      },
    );
  }

  /**
   * Counts in memory on top of the shared counts last seen: each daily limit and token quota gets
   * only what it had left (one already reached refuses at once); counts come back as the day's.
   * A budget the same way: a cost estimate is reserved against what the day's budget had left in
   * the shared totals this replica last saw (reservations included), less what the requests it
   * admitted in memory since hold or cost; the costs of other replicas' requests meanwhile are not
   * known here.
   */
  private async hitLocal(
    hits: readonly CounterHit[],
    tokens: TokenAsk | undefined,
    budget: BudgetAsk | undefined,
    onHeld: (held: HeldCounter[]) => void,
  ): Promise<HitOutcome> {
    const seen = hits.map((h) => (h.ttlMs > REPLAYED_COUNTER_MIN_TTL_MS ? (this.lastShared.get(counterId(h)) ?? 0) : 0));
    const refused = (outcome: Omit<Extract<HitOutcome, { admitted: false }>, 'counts' | 'ttlsMs'>): HitOutcome => ({
      ...outcome,
      counts: seen,
      ttlsMs: hits.map(() => 0),
    });
    const full = hits.findIndex((h, i) => h.limit > 0 && seen[i] >= h.limit);
    if (full >= 0) return refused({ admitted: false, refusedAt: full });
    const left = (cap: number, id: string): number => (cap > 0 ? cap - (this.lastShared.get(id) ?? 0) : 0);
    let budgetLeft = budget;
    if (budget) {
      const userLeft = left(budget.userCapNanoUsd, costId(budget.product, budget.day, budget.user));
      const productLeft = left(budget.productCapNanoUsd, costId(budget.product, budget.day));
      // Spent in Redis already: refused here without asking the memory store (whose caps of 0 mean none).
      if (budget.userCapNanoUsd > 0 && userLeft <= 0) return refused({ admitted: false, refusedAt: -1, refusedBy: 'user_cost' });
      if (budget.productCapNanoUsd > 0 && productLeft <= 0) return refused({ admitted: false, refusedAt: -1, refusedBy: 'product_cost' });
      budgetLeft = { ...budget, userCapNanoUsd: userLeft, productCapNanoUsd: productLeft };
    }
    let ask = tokens;
    if (tokens) {
      const userLeft = left(tokens.userCap, tokenId(tokens.product, tokens.day, tokens.user));
      const productLeft = left(tokens.productCap, tokenId(tokens.product, tokens.day));
      // The user's own quota first, as in the stores.
      if (tokens.userCap > 0 && userLeft < tokens.tokens) return refused({ admitted: false, refusedAt: -1, refusedBy: 'user_tokens' });
      if (tokens.productCap > 0 && productLeft < tokens.tokens)
        return refused({ admitted: false, refusedAt: -1, refusedBy: 'product_tokens' });
      ask = { ...tokens, userCap: userLeft, productCap: productLeft };
    }
    this.localUsed = true;
    const outcome = await this.local.hit(
      hits.map((h, i) => (seen[i] > 0 && h.limit > 0 ? { ...h, limit: h.limit - seen[i] } : h)),
      ask,
      budgetLeft,
    );
    if (outcome.admitted) onHeld(this.holdRequests(hits));
    // The day's totals as this replica knows them: the shared ones it last saw, plus its own since.
    const base = (id: string, local: number): number => local + (this.lastShared.get(id) ?? 0);
    return {
      ...outcome,
      counts: outcome.counts.map((count, i) => count + seen[i]),
      ...(tokens &&
        outcome.tokenTotals && {
          tokenTotals: {
            product: base(tokenId(tokens.product, tokens.day), outcome.tokenTotals.product),
            user: base(tokenId(tokens.product, tokens.day, tokens.user), outcome.tokenTotals.user),
          },
        }),
      ...(budget &&
        outcome.costTotals && {
          costTotals: {
            product: base(costId(budget.product, budget.day), outcome.costTotals.product),
            user: base(costId(budget.product, budget.day, budget.user), outcome.costTotals.user),
          },
        }),
    };
  }

  /** Keeps the shared counts a hit saw (its daily counters, the day's token and cost totals) for an outage to go on from. */
  private remember(
    hits: readonly CounterHit[],
    tokens: TokenAsk | undefined,
    budget: BudgetAsk | undefined,
    outcome: HitOutcome,
  ): HitOutcome {
    hits.forEach((h, i) => {
      if (h.ttlMs > REPLAYED_COUNTER_MIN_TTL_MS) this.rememberCount(dayOfDailyKey(h.key), counterId(h), outcome.counts[i]);
    });
    if (tokens && outcome.tokenTotals) {
      this.rememberCount(tokens.day, tokenId(tokens.product, tokens.day), outcome.tokenTotals.product);
      this.rememberCount(tokens.day, tokenId(tokens.product, tokens.day, tokens.user), outcome.tokenTotals.user);
    }
    if (budget && outcome.costTotals) {
      this.rememberCount(budget.day, costId(budget.product, budget.day), outcome.costTotals.product);
      this.rememberCount(budget.day, costId(budget.product, budget.day, budget.user), outcome.costTotals.user);
    }
    return outcome;
  }

  /** Off the request path like settling: tried whenever the client is connected; lost (the safe side) if Redis is away. */
  async release(counters: readonly CounterRef[], store: StoreName): Promise<void> {
    if (store === 'local') {
      this.unholdRequests(counters);
      return this.local.release(counters, 'local');
    }
    if (this.redis.status !== 'ready') return;
    try {
      await this.shared.release(counters, 'shared');
    } catch (error) {
      this.coolOffUntil = Date.now() + REDIS_COOL_OFF_MS;
      this.transition(true, error);
    }
  }

  /**
   * Settles in the store that took the reservation. Settling is off the request path, so it is
   * sent whenever the client is connected (cool-off or not), batched; while Redis is away the
   * delta is held and sent when it returns. Resolves once sent (at once when held).
   */
  async settleTokens(product: string, user: string, delta: number, day: string, store: StoreName, reserved?: number): Promise<void> {
    if (store === 'shared') return this.settleShared(product, user, delta, day);
    await this.local.settleTokens(product, user, delta, day, 'local');
    // Counted in memory while Redis was away: the shared totals never saw the reservation, so they
    // get the whole usage (never the delta), held until Redis is back, and the day's quota stays
    // exact across the outage.
    if (reserved !== undefined) await this.settleShared(product, user, reserved + delta, day);
  }

  /**
   * Settles a request's cost (`nanoUsd`: its cost minus the `reserved` estimate) as its tokens are
   * settled: in the store that took the reservation, the shared totals with the next batch (held
   * while Redis is away); a request admitted in memory is settled there (this replica's usage and
   * budgets during an outage show it) and brought whole (`reserved + nanoUsd`) to the shared
   * totals, as its request count and tokens are, once Redis returns. Resolves once sent (at once
   * when held).
   */
  async addCost(product: string, user: string, nanoUsd: number, day: string, store: StoreName, reserved = 0): Promise<void> {
    if (store === 'shared') return this.settleShared(product, user, 0, day, nanoUsd);
    // Replaced once all it holds reached Redis (this cost included): a store Redis's return already
    // emptied must not keep a cost the shared totals have too, for the next outage to show.
    if (nanoUsd !== 0) {
      this.localUsed = true;
      await this.local.addCost(product, user, nanoUsd, day, 'local');
    }
    // Admitted in memory while Redis was away: the shared totals never saw the reservation, so they
    // get the whole cost (never the delta), held until Redis is back, as its tokens are.
    return this.settleShared(product, user, 0, day, reserved + nanoUsd);
  }

  usage(product: string, day: string): Promise<DailyUsage> {
    return this.run((s) => s.usage(product, day));
  }

  /** Runs `op` on Redis, waiting at most REDIS_REQUEST_WAIT_MS, else in memory; `onLate` gets a reply that came after that. */
  private async run<T>(op: (store: CounterStore) => Promise<T>, onLate?: (late: T) => void): Promise<T> {
    if (this.degraded) {
      this.transition(true, this.redis.status === 'ready' && redisSilent(this.redis) ? new RedisWaitExceededError() : 'Redis not ready');
      return op(this.local);
    }
    const command = op(this.shared);
    try {
      const result = await withinRequestWait(command, this.redis);
      this.transition(false);
      return result;
    } catch (error) {
      if (error instanceof RedisWaitExceededError && onLate) command.then(onLate, () => undefined);
      this.coolOffUntil = Date.now() + REDIS_COOL_OFF_MS;
      this.transition(true, error);
      return op(this.local);
    }
  }

  /** Adds a token delta and a cost to the next batch (resolved once sent), or holds them while Redis is away. */
  private settleShared(product: string, user: string, delta: number, day: string, cost = 0): Promise<void> {
    if (delta === 0 && cost === 0) return Promise.resolve();
    this.hold(product, user, delta, day, cost);
    if (this.redis.status !== 'ready') return Promise.resolve();
    if (!this.batching) return this.sendHeld();
    this.nextBatch ??= new Promise<void>((resolve) => {
      this.batchSent = resolve;
      // Outside the context of the request whose settlement opened the batch: the batch carries
      // every request's that ended meanwhile, and what its send logs (Redis lost) is none of theirs.
      this.batchTimer = setTimeout(() => requestContextStorage.exit(() => void this.sendBatch()), SETTLE_BATCH_MS);
      this.batchTimer.unref();
    });
    return this.nextBatch;
  }

  /**
   * When settlements give tokens (or cost) back to the quota (or budget) that refused `ask`: those
   * waiting here are sent now (resolves once applied); those already sent and not yet answered, as
   * they are. Undefined when none does.
   */
  private givingBack(ask: TokenAsk | BudgetAsk, refusedBy: QuotaName): Promise<void> | undefined {
    const ofCost = refusedBy === 'product_cost' || refusedBy === 'user_cost';
    const ofUser = refusedBy === 'user_tokens' || refusedBy === 'user_cost';
    const givesBack = (h: Settlement): boolean => (ofCost ? h.cost < 0 : h.delta < 0);
    const key = givingBackKey(ask.product, ask.day, ofUser ? ask.user : undefined, ofCost);
    if (ofUser) {
      const h = this.held.get(`${ask.product}\n${ask.user}\n${ask.day}`);
      if (h && givesBack(h)) return this.flushBatch();
    } else {
      for (const h of this.held.values()) if (h.product === ask.product && h.day === ask.day && givesBack(h)) return this.flushBatch();
    }
    return this.inFlightGiveBacks.get(key);
  }

  /** Sends the batch now rather than when its timer fires. */
  private flushBatch(): Promise<void> {
    clearTimeout(this.batchTimer);
    return this.sendBatch();
  }

  /** Sends the current batch and resolves its callers' promises. */
  private async sendBatch(): Promise<void> {
    const sent = this.batchSent;
    this.nextBatch = undefined;
    this.batchSent = undefined;
    await this.sendHeld();
    sent?.();
  }

  private hold(product: string, user: string, delta: number, day: string, cost: number): void {
    const key = `${product}\n${user}\n${day}`;
    const entry = this.held.get(key);
    if (entry) {
      entry.delta += delta;
      entry.cost += cost;
    } else if (this.held.size < MAX_HELD_SETTLEMENTS) this.held.set(key, { product, user, day, delta, cost });
    else this.heldDropped++;
  }

  /**
   * Takes one request back from the held counts of its long-lived counters; where nothing is held
   * for one, its count was sent to Redis already, and is taken back there (release never goes
   * below zero; lost, the safe side, if Redis is away).
   */
  private unholdRequests(counters: ReadonlyArray<CounterRef & { ttlMs?: number }>): void {
    const sent: HeldCounter[] = [];
    for (const { key, field, ttlMs } of counters) {
      if (ttlMs === undefined || ttlMs <= REPLAYED_COUNTER_MIN_TTL_MS) continue;
      const entry = this.heldRequests.get(counterId({ key, field }));
      if (entry && entry.count > 0) entry.count--;
      else sent.push({ key, field, ttlMs });
    }
    if (sent.length && this.redis.status === 'ready') void this.shared.release(sent, 'shared').catch(() => undefined);
  }

  /** Holds one request on each long-lived counter for Redis; returns those held (not dropped from a full hold). */
  private holdRequests(counters: ReadonlyArray<CounterRef & { ttlMs?: number }>): HeldCounter[] {
    const held: HeldCounter[] = [];
    for (const { key, field, ttlMs } of counters) {
      if (ttlMs === undefined || ttlMs <= REPLAYED_COUNTER_MIN_TTL_MS) continue;
      const id = counterId({ key, field });
      const entry = this.heldRequests.get(id);
      if (entry) entry.count++;
      else if (this.heldRequests.size < MAX_HELD_SETTLEMENTS) this.heldRequests.set(id, { key, field, ttlMs, count: 1 });
      else {
        this.heldRequestsDropped++;
        continue;
      }
      held.push({ key, field, ttlMs });
    }
    return held;
  }

  /**
   * Sends the settlements waiting and the request counts taken in memory, one script each,
   * pipelined, each under an operation id that Redis applies once: one whose send failed (never
   * written, or written and its reply lost when the connection dropped) is kept and sent again
   * under the same id when Redis is back, so a blip neither drops nor doubles it. Only those of
   * today and yesterday are sent (older days' keys are gone), and an operation is sent again only
   * while Redis still knows whether it was applied ({@link OPERATION_MARKER_TTL_MS}).
   */
  private async sendHeld(): Promise<void> {
    if (this.redis.status !== 'ready') return;
    if (this.heldDropped > 0) {
      this.logger.write(
        'WARNING',
        `token and cost settlements dropped: more than ${MAX_HELD_SETTLEMENTS} product/user/day totals were waiting for Redis (shared token totals over-count, costs under-count)`,
        {
          dropped: this.heldDropped,
        },
      );
      this.heldDropped = 0;
    }
    if (this.heldRequestsDropped > 0) {
      this.logger.write(
        'WARNING',
        `request counts dropped: more than ${MAX_HELD_SETTLEMENTS} daily counters were waiting for Redis (shared counts under-count)`,
        { dropped: this.heldRequestsDropped },
      );
      this.heldRequestsDropped = 0;
    }
    const now = Date.now();
    const oldest = utcDay(now - 86_400_000);
    // Sent again while Redis still knows whether it applied them (a margin under the marker's
    // life, which must outlive the resend) and their day's keys are there; else given up, said once.
    const retried = this.unconfirmed.splice(0);
    const operations = retried.filter(
      (o) => now - o.firstSentAt < OPERATION_MARKER_TTL_MS - 60_000 && (o.kind === 'requests' || o.day >= oldest),
    );
    if (operations.length < retried.length)
      this.logger.write('WARNING', 'counter updates Redis may not have applied were given up: the shared daily totals may miss them', {
        operations: retried.length - operations.length,
      });
    for (const h of this.heldRequests.values())
      if (h.count > 0) operations.push({ kind: 'requests', op: randomUUID(), firstSentAt: now, ...h });
    this.heldRequests.clear();
    for (const h of this.held.values())
      if (h.day >= oldest && owes(h)) operations.push({ kind: 'settlement', op: randomUUID(), firstSentAt: now, ...h });
    this.held.clear();
    let unsent = 0;
    let finished: () => void = () => undefined;
    const done = new Promise<void>((resolve) => (finished = resolve));
    // The quotas this send gives tokens back to, and the budgets it gives cost back to, until Redis has answered it.
    const givingBack: string[] = [];
    for (const o of operations) {
      if (o.kind !== 'settlement') continue;
      if (o.delta < 0) givingBack.push(givingBackKey(o.product, o.day, o.user), givingBackKey(o.product, o.day));
      if (o.cost < 0) givingBack.push(givingBackKey(o.product, o.day, o.user, true), givingBackKey(o.product, o.day, undefined, true));
    }
    for (const key of givingBack) this.inFlightGiveBacks.set(key, done);
    // In the same tick as the operations, so in the same auto-pipelined write.
    const forgotten = this.confirmedMarkers.splice(0);
    if (forgotten.length) void this.shared.forgetOperations(forgotten).catch(() => undefined);
    try {
      await Promise.all(
        operations.map((o) =>
          this.send(o).then(
            (held) => this.confirmed(o, held),
            (error: unknown) => {
              if (this.unconfirmed.length < MAX_HELD_SETTLEMENTS) this.unconfirmed.push(o);
              else unsent++;
              this.coolOffUntil = Date.now() + REDIS_COOL_OFF_MS;
              this.transition(true, error);
            },
          ),
        ),
      );
    } finally {
      for (const key of givingBack) if (this.inFlightGiveBacks.get(key) === done) this.inFlightGiveBacks.delete(key);
      finished();
    }
    if (unsent > 0)
      this.logger.write('WARNING', `counter updates dropped: more than ${MAX_HELD_SETTLEMENTS} were waiting to be confirmed by Redis`, {
        operations: unsent,
      });
    // All that was counted in memory is in Redis now (and in the counts remembered from it): a later
    // outage counts on from those, not again from what this store still holds.
    if (this.localUsed && !this.degraded && this.unconfirmed.length === 0 && this.held.size === 0 && this.heldRequests.size === 0) {
      this.local = new MemoryCounterStore();
      this.localUsed = false;
    }
  }

  /** Sends an operation; resolves with what Redis then holds: the day's token totals, or the counter. */
  private send(o: SentOperation): Promise<SettledTotals | number> {
    return o.kind === 'settlement'
      ? this.shared.settleOnce(o.product, o.user, o.day, { tokens: o.delta, costNanoUsd: o.cost }, o.op)
      : this.shared.addOnce(o, o.count, o.op);
  }

  /**
   * An operation Redis confirmed: what Redis now holds for its counters is remembered (a counter
   * this replica only counted during an outage included, so the next outage goes on from it), and
   * its marker is dropped with the next send (it will not be sent again; left to expire, every
   * settlement would hold Redis memory for 10 minutes).
   */
  private confirmed(o: SentOperation, held: SettledTotals | number): void {
    if (o.kind === 'settlement' && typeof held === 'object') {
      this.rememberCount(o.day, tokenId(o.product, o.day), held.product);
      this.rememberCount(o.day, tokenId(o.product, o.day, o.user), held.user);
      // The day's cost too: the memory store that counted an outage's costs is replaced once they
      // are sent, and the next outage must go on from Redis's totals, which hold them, not from
      // those seen by the last request before the first outage (a whole budget again).
      this.rememberCount(o.day, costId(o.product, o.day), held.cost.product);
      this.rememberCount(o.day, costId(o.product, o.day, o.user), held.cost.user);
    } else if (o.kind === 'requests' && typeof held === 'number') {
      this.rememberCount(dayOfDailyKey(o.key), counterId(o), held);
    }
    // Beyond the bound, a marker is left to expire.
    if (this.confirmedMarkers.length < MAX_HELD_SETTLEMENTS)
      this.confirmedMarkers.push({ counterKey: o.kind === 'settlement' ? tokenKey(o.product, o.day) : o.key, op: o.op });
  }

  /**
   * Remembers a shared count of `day`: the latest day counted only (once a day's counts arrive, the
   * day before limits nothing), bounded (past the bound, an outage starts from zero again).
   */
  private rememberCount(day: string, id: string, count: number): void {
    if (day < this.rememberedDay) return;
    if (day > this.rememberedDay || this.lastShared.size > MAX_REMEMBERED_COUNTS) {
      this.lastShared.clear();
      this.rememberedDay = day;
    }
    this.lastShared.set(id, count);
  }

  private transition(degraded: boolean, cause?: unknown): void {
    if (degraded === this.wasDegraded) return;
    this.wasDegraded = degraded;
    // A Redis that answers with an error (a key of another type where a counter should be, a full
    // memory under noeviction) is up: counting falls back all the same, but the operator must look
    // at Redis's data or settings, not at the network.
    if (degraded)
      this.logger.write(
        'ERROR',
        cause instanceof ReplyError
          ? 'limits degraded to per-replica counting: Redis refused the counting commands'
          : 'limits degraded to per-replica counting: Redis unavailable',
        { reason: cause instanceof Error ? cause.message : cause },
      );
    else {
      this.logger.write('NOTICE', 'limits back on shared Redis counting');
      // A slow Redis comes back without a reconnect (no 'ready' event): what was held meanwhile goes now.
      void this.sendHeld();
    }
  }
}

/** Whether a settlement has anything to send. */
function owes(settlement: Settlement): boolean {
  return settlement.delta !== 0 || settlement.cost !== 0;
}

/** A day's token quota (or, `cost`, its cost budget): the product's, or one user's of it. */
function givingBackKey(product: string, day: string, user?: string, cost = false): string {
  const quota = user === undefined ? `${product}\n${day}` : `${product}\n${day}\n${user}`;
  return cost ? `cost\n${quota}` : quota;
}
