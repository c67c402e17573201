import type { Redis } from 'ioredis';
import {
  LIMIT_ORDER,
  type Admission,
  type CounterStore,
  type DailyUsage,
  type RequestLimits,
  type Reservation,
  type StoreName,
} from './counter.store';

/** Daily hashes outlive their day by one, so `/admin/usage` can report yesterday. */
const DAY_TTL_SECONDS = 2 * 86_400;

/*
 * Keys carry the product in a hash tag ({product}) so one request's keys share a cluster slot.
 * Per-second counters are fixed one-second windows; daily counts live in one hash per product and
 * day, fields `_total` and `u:<user>`.
 */
const ADMIT = `
local lim = {tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])}
local cur = {
  tonumber(redis.call('GET', KEYS[1]) or '0'),
  tonumber(redis.call('GET', KEYS[2]) or '0'),
  tonumber(redis.call('HGET', KEYS[3], '_total') or '0'),
  tonumber(redis.call('HGET', KEYS[3], ARGV[5]) or '0')}
for i = 1, 4 do
  if lim[i] > 0 and cur[i] >= lim[i] then return {0, i, cur[1], cur[2], cur[3], cur[4]} end
end
cur[1] = redis.call('INCR', KEYS[1])
if cur[1] == 1 then redis.call('PEXPIRE', KEYS[1], 2000) end
cur[2] = redis.call('INCR', KEYS[2])
if cur[2] == 1 then redis.call('PEXPIRE', KEYS[2], 2000) end
cur[3] = redis.call('HINCRBY', KEYS[3], '_total', 1)
cur[4] = redis.call('HINCRBY', KEYS[3], ARGV[5], 1)
if cur[3] == 1 then redis.call('EXPIRE', KEYS[3], ARGV[6]) end
return {1, 0, cur[1], cur[2], cur[3], cur[4]}`;

const RESERVE = `
local tp = tonumber(redis.call('HGET', KEYS[1], '_total') or '0')
local tu = tonumber(redis.call('HGET', KEYS[1], ARGV[4]) or '0')
local n = tonumber(ARGV[1])
if tonumber(ARGV[2]) > 0 and tp + n > tonumber(ARGV[2]) then return {0, 1} end
if tonumber(ARGV[3]) > 0 and tu + n > tonumber(ARGV[3]) then return {0, 2} end
tp = redis.call('HINCRBY', KEYS[1], '_total', n)
tu = redis.call('HINCRBY', KEYS[1], ARGV[4], n)
redis.call('EXPIRE', KEYS[1], ARGV[5])
return {1, 0, tp, tu}`;

// Only while the day's hash exists (an admission created it), so a late release cannot leave a
// negative count without an expiry.
const RELEASE = `
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if tonumber(redis.call('HGET', KEYS[1], '_total') or '0') > 0 then redis.call('HINCRBY', KEYS[1], '_total', -1) end
if tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0') > 0 then redis.call('HINCRBY', KEYS[1], ARGV[1], -1) end
return 1`;

// Never below zero: a settlement whose reservation Redis lost (a restart without persistence, as on
// Memorystore Basic) must not turn into free quota for the rest of the day.
const SETTLE = `
if redis.call('HINCRBY', KEYS[1], '_total', ARGV[1]) < 0 then redis.call('HSET', KEYS[1], '_total', 0) end
if redis.call('HINCRBY', KEYS[1], ARGV[2], ARGV[1]) < 0 then redis.call('HSET', KEYS[1], ARGV[2], 0) end
redis.call('EXPIRE', KEYS[1], ARGV[3])
return 1`;

type Counts = [number, number, number, number];

interface ScriptedRedis extends Redis {
  kgAdmit(k1: string, k2: string, k3: string, ...args: Array<string | number>): Promise<number[]>;
  kgReserve(k1: string, ...args: Array<string | number>): Promise<number[]>;
  kgSettle(k1: string, ...args: Array<string | number>): Promise<number>;
  kgRelease(k1: string, ...args: Array<string | number>): Promise<number>;
}

/** {@link CounterStore} shared by every replica: each operation is one Lua script, one round trip. */
export class RedisCounterStore implements CounterStore {
  private readonly redis: ScriptedRedis;

  constructor(redis: Redis) {
    // defineCommand sends EVALSHA and falls back to EVAL once after a Redis restart (NOSCRIPT).
    redis.defineCommand('kgAdmit', { numberOfKeys: 3, lua: ADMIT });
    redis.defineCommand('kgReserve', { numberOfKeys: 1, lua: RESERVE });
    redis.defineCommand('kgSettle', { numberOfKeys: 1, lua: SETTLE });
    redis.defineCommand('kgRelease', { numberOfKeys: 1, lua: RELEASE });
    this.redis = redis as ScriptedRedis;
  }

  async admit(product: string, user: string, limits: RequestLimits, second: number, day: string): Promise<Admission> {
    const p = `kg:{${product}}`;
    const reply = await this.redis.kgAdmit(
      `${p}:qps:${second}`,
      `${p}:qps:${second}:u:${user}`,
      `${p}:req:${day}`,
      limits.productPerSecond,
      limits.userPerSecond,
      limits.productPerDay,
      limits.userPerDay,
      `u:${user}`,
      DAY_TTL_SECONDS,
    );
    const counts = reply.slice(2, 6) as Counts;
    return reply[0] === 1 ? { admitted: true, counts, store: 'shared' } : { admitted: false, refusedBy: LIMIT_ORDER[reply[1] - 1], counts };
  }

  async releaseDaily(product: string, user: string, day: string, _store?: StoreName): Promise<void> {
    await this.redis.kgRelease(`kg:{${product}}:req:${day}`, `u:${user}`);
  }

  async reserveTokens(
    product: string,
    user: string,
    tokens: number,
    productCap: number,
    userCap: number,
    day: string,
  ): Promise<Reservation> {
    const reply = await this.redis.kgReserve(`kg:{${product}}:tok:${day}`, tokens, productCap, userCap, `u:${user}`, DAY_TTL_SECONDS);
    if (reply[0] !== 1) return { reserved: false, refusedBy: reply[1] === 1 ? 'product_tokens' : 'user_tokens' };
    return { reserved: true, productTotal: reply[2], userTotal: reply[3], store: 'shared' };
  }

  async settleTokens(product: string, user: string, delta: number, day: string, _store?: StoreName): Promise<void> {
    if (delta === 0) return;
    await this.redis.kgSettle(`kg:{${product}}:tok:${day}`, delta, `u:${user}`, DAY_TTL_SECONDS);
  }

  async usage(product: string, day: string): Promise<DailyUsage> {
    const [requests, tokens] = await Promise.all([
      this.redis.hgetall(`kg:{${product}}:req:${day}`),
      this.redis.hgetall(`kg:{${product}}:tok:${day}`),
    ]);
    return { requests: split(requests), tokens: split(tokens) };
  }
}

function split(hash: Record<string, string>): { total: number; users: Record<string, number> } {
  const users: Record<string, number> = {};
  for (const [field, value] of Object.entries(hash)) if (field.startsWith('u:')) users[field.slice(2)] = Number(value);
  return { total: Number(hash._total ?? 0), users };
}
