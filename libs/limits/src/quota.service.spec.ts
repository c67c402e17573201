import { rejectionOf } from '@keygate/errors/testing';
import { randomUUID } from 'node:crypto';
import { buildPolicyBook, type GatewayConfig } from '@keygate/config';
import { JsonLogger } from '@keygate/observability';
import { Redis } from 'ioredis';
import { AutoBlocker } from './auto-blocker';
import { BlocksService } from './blocks.service';
import { secondsToUtcMidnight, utcDay } from './counter.store';
import { IN_FLIGHT_RETRY_SECONDS, QuotaService, type TokenEstimate } from './quota.service';
import { RedisCounterStore, tokenKey } from './redis.counter-store';

// Integration spec: the quota service over the Redis store (real Redis), whose refusals carry the
// day's totals. Every product name carries RUN; its keys are removed afterwards.
const REDIS_URL = process.env.API_KEY_SERVER_REDIS_URL ?? 'redis://127.0.0.1:6379';
const RUN = `spec-${randomUUID().slice(0, 8)}`;
const P = `${RUN}-quota`;
/** Auto-blocks a user at their first refusal. */
const STRICT = `${RUN}-strict`;

/** The models a request may be answered by (no budget here: none needs a price). */
const MODELS = ['gpt-4o-mini'];

/** A request's estimate of `tokens` prompt tokens. */
const estimated = (tokens: number) => (): TokenEstimate => ({ prompt: tokens, completion: 0 });

let redis: Redis;
let quota: QuotaService;
let blocks: BlocksService;

beforeAll(() => {
  redis = new Redis(REDIS_URL, { maxRetriesPerRequest: 1 });
  const logger = new JsonLogger('error', undefined, () => undefined);
  const config = {
    policy: buildPolicyBook({
      defaults: { limits: { requests_per_second: 0, user_requests_per_second: 0, daily_requests: 0, user_daily_requests: 0 } },
      products: {
        [P]: { limits: { daily_tokens: 10_000, user_daily_tokens: 1_000 }, auto_block: { rejections: 0 } },
        [STRICT]: { limits: { user_daily_tokens: 1_000 }, auto_block: { rejections: 1, window_seconds: 60, block_seconds: 60 } },
      },
    }),
  } as unknown as GatewayConfig;
  blocks = new BlocksService(undefined, logger);
  quota = new QuotaService(config, new RedisCounterStore(redis), new AutoBlocker(config, undefined, blocks, logger), logger);
});

afterAll(async () => {
  await redis.del(tokenKey(P, utcDay(Date.now())), tokenKey(STRICT, utcDay(Date.now())));
  await redis.quit();
});

/** Until the settlement (sent without waiting) is in Redis. */
async function settled(user: string, total: number, product = P): Promise<void> {
  for (let i = 0; i < 100; i++) {
    if (Number(await redis.hget(tokenKey(product, utcDay(Date.now())), `u:${user}`)) === total) return;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error(`the settlement of ${user} did not reach ${total}`);
}

describe('QuotaService over Redis: a refusal that waits on requests in flight', () => {
  it('tells a client held back by its own requests in flight to retry when they end, and one over its day to come back at midnight', async () => {
    const first = await quota.admit(undefined, P, 'una', estimated(700), MODELS);
    // 700 of una's 1,000 are held by a request in flight, not used: room comes back when it ends.
    const waiting = await rejectionOf(quota.admit(undefined, P, 'una', estimated(600), MODELS));
    expect(waiting.code).toBe('daily_quota_exceeded');
    expect(waiting.options.retryAfterSeconds).toBe(IN_FLIGHT_RETRY_SECONDS);
    expect(waiting.message).toContain('while requests in flight hold 700 tokens');
    // It ends having used 100: the same request fits.
    quota.settle(first, 100);
    await settled('una', 100);
    const second = await quota.admit(undefined, P, 'una', estimated(600), MODELS);
    // Used for real: 100 + 600 leaves 300, and nothing in flight would make room for 600 more.
    quota.settle(second, 600);
    await settled('una', 700);
    const spent = await rejectionOf(quota.admit(undefined, P, 'una', estimated(600), MODELS));
    expect(spent.message).toContain('it resets at 00:00 UTC');
    expect(spent.options.retryAfterSeconds).toBeGreaterThan(IN_FLIGHT_RETRY_SECONDS);
    expect(spent.options.retryAfterSeconds).toBeLessThanOrEqual(secondsToUtcMidnight(Date.now()));
  });

  it('says midnight when what is in flight would not make the room, even once it ends', async () => {
    const held = await quota.admit(undefined, P, 'vera', estimated(300), MODELS);
    quota.settle(await quota.admit(undefined, P, 'vera', estimated(500), MODELS), 500);
    await settled('vera', 800);
    // 500 used and 300 held: 300 freed would leave 500 + 600 over the 1,000.
    const error = await rejectionOf(quota.admit(undefined, P, 'vera', estimated(600), MODELS));
    expect(error.message).toContain('it resets at 00:00 UTC');
    quota.settle(held, 0);
  });

  it('counts a refusal toward auto-block only when the day is spent, not when requests in flight hold the room', async () => {
    const first = await quota.admit(undefined, STRICT, 'wes', estimated(700), MODELS);
    expect((await rejectionOf(quota.admit(undefined, STRICT, 'wes', estimated(600), MODELS))).options.retryAfterSeconds).toBe(
      IN_FLIGHT_RETRY_SECONDS,
    );
    await new Promise((r) => setImmediate(r));
    expect(blocks.find(STRICT, 'wes')).toBeUndefined();
    quota.settle(first, 700);
    await settled('wes', 700, STRICT);
    expect((await rejectionOf(quota.admit(undefined, STRICT, 'wes', estimated(600), MODELS))).message).toContain('it resets at 00:00 UTC');
    await new Promise((r) => setImmediate(r));
    expect(blocks.find(STRICT, 'wes')).toMatchObject({ product: STRICT, user: 'wes', createdBy: 'auto-block' });
  });
});
