import type { Redis } from 'ioredis';
import {
  DAILY_COUNTER_TTL_MS,
  dailyRequestsKey,
  type CounterHit,
  type CounterRef,
  type CounterStore,
  type DailyUsage,
  type BudgetAsk,
  type HitOutcome,
  type QuotaName,
  type StoreName,
  type TokenAsk,
} from './counter.store';

/*
 * Counts one request in every counter, and reserves its tokens and its cost estimate when asked, if
 * each counter has room, each token quota too, and each budget asked has room for the estimate;
 * else does nothing.
 * KEYS: the counters, then (with tokens) the day's token hash, then (with a budget) the day's cost
 * hash (both in the counters' `{product}` slot). ARGV[1]: the number of counters n; ARGV[2], ARGV[3]:
 * 1 with tokens, 1 with a budget (else 0); then each counter's limit, lifetime in ms and hash field
 * ('' for a plain key); then (with tokens) the tokens, the product's cap, the user's cap (0: none),
 * the user's field and the hash's lifetime in s; then (with a budget) the product's and the user's
 * budget in billionths of a dollar (0: none), the user's field, the cost estimate to reserve and the
 * hash's lifetime in s. A budget refuses once the day's cost, reservations
 * included, has reached it, or when the estimate does not fit under it.
 * Replies {admitted, index of the full counter (0: none), refusing quota (0: none, 1: product's
 * tokens, 2: user's tokens, 3: product's budget, 4: user's budget; the user's is named first when
 * both are full, so it counts toward their auto-block; a budget before tokens), counts..., pttls...,
 * the product's and the user's token totals, the product's and the user's cost totals (each after
 * reserving, or as found)}.
 */
const HIT = `
local n = tonumber(ARGV[1])
local withTokens, withBudget = ARGV[2] == '1', ARGV[3] == '1'
local counts = {}
for i = 1, n do
  local field = ARGV[3 * i + 3]
  if field == '' then counts[i] = tonumber(redis.call('GET', KEYS[i]) or '0')
  else counts[i] = tonumber(redis.call('HGET', KEYS[i], field) or '0') end
end
local refused = 0
for i = 1, n do
  local limit = tonumber(ARGV[3 * i + 1])
  if limit > 0 and counts[i] >= limit then refused = i break end
end
local quota = 0
local t = 3 * n + 3
local tokens = withTokens and tonumber(ARGV[t + 1])
local tp, tu, cp, cu = 0, 0, 0, 0
if tokens then
  tp = tonumber(redis.call('HGET', KEYS[n + 1], '_total') or '0')
  tu = tonumber(redis.call('HGET', KEYS[n + 1], ARGV[t + 4]) or '0')
end
if withBudget then
  local b = withTokens and t + 5 or t
  local key = KEYS[withTokens and n + 2 or n + 1]
  cp = tonumber(redis.call('HGET', key, '_total') or '0')
  cu = tonumber(redis.call('HGET', key, ARGV[b + 3]) or '0')
  if refused == 0 then
    local productCap, userCap, cost = tonumber(ARGV[b + 1]), tonumber(ARGV[b + 2]), tonumber(ARGV[b + 4])
    if userCap > 0 and (cu >= userCap or cu + cost > userCap) then quota = 4
    elseif productCap > 0 and (cp >= productCap or cp + cost > productCap) then quota = 3 end
  end
end
if refused == 0 and quota == 0 and tokens then
  local productCap, userCap = tonumber(ARGV[t + 2]), tonumber(ARGV[t + 3])
  if userCap > 0 and tu + tokens > userCap then quota = 2
  elseif productCap > 0 and tp + tokens > productCap then quota = 1 end
end
if refused == 0 and quota == 0 then
  for i = 1, n do
    local field = ARGV[3 * i + 3]
    if field == '' then
      counts[i] = redis.call('INCR', KEYS[i])
      if counts[i] == 1 then redis.call('PEXPIRE', KEYS[i], ARGV[3 * i + 2]) end
    else
      counts[i] = redis.call('HINCRBY', KEYS[i], field, 1)
      if redis.call('PTTL', KEYS[i]) < 0 then redis.call('PEXPIRE', KEYS[i], ARGV[3 * i + 2]) end
    end
  end
  if tokens then
    tp = redis.call('HINCRBY', KEYS[n + 1], '_total', tokens)
    tu = redis.call('HINCRBY', KEYS[n + 1], ARGV[t + 4], tokens)
    redis.call('EXPIRE', KEYS[n + 1], ARGV[t + 5])
  end
  if withBudget then
    local b = withTokens and t + 5 or t
    local cost = tonumber(ARGV[b + 4])
    if cost > 0 then
      local key = KEYS[withTokens and n + 2 or n + 1]
      cp = redis.call('HINCRBY', key, '_total', cost)
      cu = redis.call('HINCRBY', key, ARGV[b + 3], cost)
      redis.call('EXPIRE', key, ARGV[b + 5])
    end
  end
end
local out = {(refused == 0 and quota == 0) and 1 or 0, refused, quota}
for i = 1, n do out[3 + i] = counts[i] end
for i = 1, n do out[3 + n + i] = math.max(0, redis.call('PTTL', KEYS[i])) end
out[3 + 2 * n + 1] = tp
out[3 + 2 * n + 2] = tu
out[3 + 2 * n + 3] = cp
out[3 + 2 * n + 4] = cu
return out`;

/** The quota a HIT reply names (its third element, 1 to 4). */
const REFUSING_QUOTA: readonly QuotaName[] = ['product_tokens', 'user_tokens', 'product_cost', 'user_cost'];

// Only counters that exist and are above zero (an admission created them), so a late release
// cannot leave a negative count, or a count without an expiry. ARGV: each key's hash field or ''.
const RELEASE = `
for i = 1, #KEYS do
  local field = ARGV[i]
  if field == '' then
    if tonumber(redis.call('GET', KEYS[i]) or '0') > 0 then redis.call('DECR', KEYS[i]) end
  elseif tonumber(redis.call('HGET', KEYS[i], field) or '0') > 0 then
    redis.call('HINCRBY', KEYS[i], field, -1)
  end
end
return 1`;

// Adds ARGV[1] to a counter (ARGV[2]: its hash field or ''), giving it ARGV[3] ms to live if it has
// no expiry yet, once per operation (KEYS[2], its marker, kept ARGV[4] ms): request counts taken in
// memory during an outage, brought to Redis when it returns. Replies the counter's value, which a
// resend of an operation already applied also gets.
const ADD_ONCE = `
if redis.call('SET', KEYS[2], '1', 'NX', 'PX', ARGV[4]) then
  if ARGV[2] == '' then redis.call('INCRBY', KEYS[1], ARGV[1]) else redis.call('HINCRBY', KEYS[1], ARGV[2], ARGV[1]) end
  if redis.call('PTTL', KEYS[1]) < 0 then redis.call('PEXPIRE', KEYS[1], ARGV[3]) end
end
if ARGV[2] == '' then return tonumber(redis.call('GET', KEYS[1]) or '0') end
return tonumber(redis.call('HGET', KEYS[1], ARGV[2]) or '0')`;

/** Token and cost hashes (fields `_total` and `u:<user>`) outlive their day by one, so `/admin/usage` can report yesterday. */
const DAY_TTL_SECONDS = DAILY_COUNTER_TTL_MS / 1000;

// Never below zero: a settlement whose reservation Redis lost (a restart without persistence, as on
// Memorystore Basic) must not turn into free quota for the rest of the day.
const SETTLE = `
if redis.call('HINCRBY', KEYS[1], '_total', ARGV[1]) < 0 then redis.call('HSET', KEYS[1], '_total', 0) end
if redis.call('HINCRBY', KEYS[1], ARGV[2], ARGV[1]) < 0 then redis.call('HSET', KEYS[1], ARGV[2], 0) end
redis.call('EXPIRE', KEYS[1], ARGV[3])
return 1`;

// A batch's settlement of one product, user and day, applied at most once per operation id: KEYS[2]
// is the operation's marker, kept ARGV[4] ms. A batch whose reply was lost (the connection dropped
// after sending) is sent again under its id; Redis applies it only if the first one never arrived.
// ARGV[1] is SETTLE's token delta on KEYS[1], ARGV[5] the requests' cost delta (what they cost minus
// the estimates they reserved, so possibly negative) added to the cost hash KEYS[3] (same fields,
// same lifetime, never below zero either); either may be 0, and a 0 touches nothing (no user shows
// up with 0 tokens for a cost alone). Replies the day's token totals and cost totals {product, user,
// product's cost, user's cost}: what a later outage goes on from.
const SETTLE_ONCE = `
if redis.call('SET', KEYS[2], '1', 'NX', 'PX', ARGV[4]) then
  if tonumber(ARGV[1]) ~= 0 then
    if redis.call('HINCRBY', KEYS[1], '_total', ARGV[1]) < 0 then redis.call('HSET', KEYS[1], '_total', 0) end
    if redis.call('HINCRBY', KEYS[1], ARGV[2], ARGV[1]) < 0 then redis.call('HSET', KEYS[1], ARGV[2], 0) end
    redis.call('EXPIRE', KEYS[1], ARGV[3])
  end
  if tonumber(ARGV[5]) ~= 0 then
    if redis.call('HINCRBY', KEYS[3], '_total', ARGV[5]) < 0 then redis.call('HSET', KEYS[3], '_total', 0) end
    if redis.call('HINCRBY', KEYS[3], ARGV[2], ARGV[5]) < 0 then redis.call('HSET', KEYS[3], ARGV[2], 0) end
    redis.call('EXPIRE', KEYS[3], ARGV[3])
  end
end
return {
  tonumber(redis.call('HGET', KEYS[1], '_total') or '0'), tonumber(redis.call('HGET', KEYS[1], ARGV[2]) or '0'),
  tonumber(redis.call('HGET', KEYS[3], '_total') or '0'), tonumber(redis.call('HGET', KEYS[3], ARGV[2]) or '0')
}`;

interface ScriptedRedis extends Redis {
  kgHit(...keysThenArgs: Array<string | number>): Promise<number[]>;
  kgSettle(k1: string, ...args: Array<string | number>): Promise<number>;
  kgRelease(numberOfKeys: number, ...keysThenFields: string[]): Promise<number>;
  kgSettleOnce(k1: string, op: string, k3: string, ...args: Array<string | number>): Promise<[number, number, number, number]>;
  kgAddOnce(key: string, op: string, n: number, field: string, ttlMs: number, opTtlMs: number): Promise<number>;
}

/** How long an operation's marker is kept: a batch is sent again at most this long after it was first sent. */
export const OPERATION_MARKER_TTL_MS = 10 * 60_000;

/** {@link CounterStore} shared by every replica: each operation is one Lua script, one round trip. */
export class RedisCounterStore implements CounterStore {
  private readonly redis: ScriptedRedis;

  constructor(redis: Redis) {
    // defineCommand sends EVALSHA and falls back to EVAL once after a Redis restart (NOSCRIPT).
    // The counting scripts take any number of keys (numberOfKeys is given per call).
    redis.defineCommand('kgHit', { lua: HIT });
    redis.defineCommand('kgSettle', { numberOfKeys: 1, lua: SETTLE });
    redis.defineCommand('kgRelease', { lua: RELEASE });
    redis.defineCommand('kgSettleOnce', { numberOfKeys: 3, lua: SETTLE_ONCE });
    redis.defineCommand('kgAddOnce', { numberOfKeys: 2, lua: ADD_ONCE });
    this.redis = redis as ScriptedRedis;
  }

  async hit(hits: readonly CounterHit[], tokens?: TokenAsk, budget?: BudgetAsk): Promise<HitOutcome> {
    const n = hits.length;
    const args: Array<string | number> = [n + (tokens ? 1 : 0) + (budget ? 1 : 0)];
    for (const h of hits) args.push(h.key);
    if (tokens) args.push(tokenKey(tokens.product, tokens.day));
    // Only when a budget applies: a request without one reads no cost hash.
    if (budget) args.push(costKey(budget.product, budget.day));
    args.push(n, tokens ? 1 : 0, budget ? 1 : 0);
    for (const h of hits) args.push(h.limit, h.ttlMs, h.field ?? '');
    if (tokens) args.push(tokens.tokens, tokens.productCap, tokens.userCap, `u:${tokens.user}`, DAY_TTL_SECONDS);
    if (budget) args.push(budget.productCapNanoUsd, budget.userCapNanoUsd, `u:${budget.user}`, budget.nanoUsd, DAY_TTL_SECONDS);
    const reply = await this.redis.kgHit(...args);
    const counts = reply.slice(3, 3 + n);
    const ttlsMs = reply.slice(3 + n, 3 + 2 * n);
    const tokenTotals = tokens ? { product: reply[3 + 2 * n], user: reply[4 + 2 * n] } : undefined;
    const costTotals = budget ? { product: reply[5 + 2 * n], user: reply[6 + 2 * n] } : undefined;
    if (reply[0] === 1) return { admitted: true, counts, ttlsMs, store: 'shared', tokenTotals, costTotals };
    if (reply[1] > 0) return { admitted: false, refusedAt: reply[1] - 1, counts, ttlsMs, tokenTotals, costTotals };
    return { admitted: false, refusedAt: -1, refusedBy: REFUSING_QUOTA[reply[2] - 1], counts, ttlsMs, tokenTotals, costTotals };
  }

  async release(counters: readonly CounterRef[], _store?: StoreName): Promise<void> {
    if (counters.length) await this.redis.kgRelease(counters.length, ...counters.map((c) => c.key), ...counters.map((c) => c.field ?? ''));
  }

  async settleTokens(product: string, user: string, delta: number, day: string, _store?: StoreName): Promise<void> {
    if (delta === 0) return;
    await this.redis.kgSettle(tokenKey(product, day), delta, `u:${user}`, DAY_TTL_SECONDS);
  }

  async addCost(product: string, user: string, nanoUsd: number, day: string, _store?: StoreName, _reserved?: number): Promise<void> {
    if (nanoUsd === 0) return;
    // SETTLE on the cost hash: both fields by the amount (never below zero), the hash's lifetime renewed.
    await this.redis.kgSettle(costKey(product, day), nanoUsd, `u:${user}`, DAY_TTL_SECONDS);
  }

  /**
   * Adds `n` to one counter (which lives `ttlMs` from now if it is new), and {@link settleOnce},
   * applied at most once under `op` (a UUID) within {@link OPERATION_MARKER_TTL_MS}: safe to send
   * again when the first reply was lost. Each resolves with what Redis then holds (the counter; the
   * day's product and user token totals). Not part of {@link CounterStore} (see FailoverCounterStore).
   */
  addOnce(counter: CounterRef & { ttlMs: number }, n: number, op: string): Promise<number> {
    return this.redis.kgAddOnce(counter.key, operationKey(counter.key, op), n, counter.field ?? '', counter.ttlMs, OPERATION_MARKER_TTL_MS);
  }

  /** Drops the markers of operations whose replies arrived (they will not be sent again): one UNLINK each, a key's own slot. */
  async forgetOperations(operations: ReadonlyArray<{ counterKey: string; op: string }>): Promise<void> {
    await Promise.all(operations.map(({ counterKey, op }) => this.redis.unlink(operationKey(counterKey, op))));
  }

  /**
   * {@link settleTokens} and {@link addCost} of one product, user and day in one script (a batch's
   * settlement: either amount may be 0), applied at most once under `op`. Resolves with the day's
   * token totals and cost totals (billionths of a dollar) Redis then holds.
   */
  async settleOnce(
    product: string,
    user: string,
    day: string,
    amounts: { tokens: number; costNanoUsd: number },
    op: string,
  ): Promise<SettledTotals> {
    const key = tokenKey(product, day);
    const [total, ofUser, cost, costOfUser] = await this.redis.kgSettleOnce(
      key,
      operationKey(key, op),
      costKey(product, day),
      amounts.tokens,
      `u:${user}`,
      DAY_TTL_SECONDS,
      OPERATION_MARKER_TTL_MS,
      amounts.costNanoUsd,
    );
    return { product: total, user: ofUser, cost: { product: cost, user: costOfUser } };
  }

  async usage(product: string, day: string): Promise<DailyUsage> {
    // Auto-pipelined, one slot (the product's hash tag): one round trip.
    const [requests, tokens, cost] = await Promise.all([
      this.redis.hgetall(dailyRequestsKey(product, day)),
      this.redis.hgetall(tokenKey(product, day)),
      this.redis.hgetall(costKey(product, day)),
    ]);
    return { scope: 'shared', requests: split(requests), tokens: split(tokens), costNanoUsd: split(cost) };
  }
}

/** What Redis holds for a product, user and day once a settlement is applied: token totals, and cost totals in billionths of a dollar. */
export interface SettledTotals {
  product: number;
  user: number;
  cost: { product: number; user: number };
}

/** The hash of a product's token totals for one UTC day (same hash tag, so same Cluster slot, as its request counters). */
export function tokenKey(product: string, day: string): string {
  return `kg:{${product}}:tok:${day}`;
}

/** The hash of a product's cost for one UTC day, in billionths of a dollar (fields `_total` and `u:<user>`; its request counters' slot). */
export function costKey(product: string, day: string): string {
  return `kg:{${product}}:cost:${day}`;
}

/** The marker of an operation on a counter: in the counter's hash tag (its Cluster slot), so one script may touch both. */
function operationKey(counterKey: string, op: string): string {
  const tag = /\{[^}]*\}/.exec(counterKey)?.[0] ?? counterKey;
  return `kg:${tag}:op:${op}`;
}

function split(hash: Record<string, string>): { total: number; users: Record<string, number> } {
  // No prototype: a user whose id is `__proto__` is a key like any other.
  const users = Object.create(null) as Record<string, number>;
  for (const [field, value] of Object.entries(hash)) if (field.startsWith('u:')) users[field.slice(2)] = Number(value);
  return { total: Number(hash._total ?? 0), users };
}
