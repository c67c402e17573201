import { rejectionOf } from '@keygate/errors/testing';
import { randomUUID } from 'node:crypto';
import { buildPolicyBook, ratesAt, type GatewayConfig } from '@keygate/config';
import { JsonLogger } from '@keygate/observability';
import { Redis } from 'ioredis';
import { GEMINI_25_PRO_PRICE, SONNET_1M_TIER } from '../../config/src/testing/prices';
import { AutoBlocker } from './auto-blocker';
import { BlocksService } from './blocks.service';
import { secondsToUtcMidnight, utcDay } from './counter.store';
import { IN_FLIGHT_RETRY_SECONDS, maxCostNanoUsd, QuotaService, TIER_ESTIMATE_FACTOR, type TokenEstimate } from './quota.service';
import { MemoryCounterStore } from './memory.counter-store';
import { costKey, RedisCounterStore, tokenKey } from './redis.counter-store';

// Integration spec: the quota service over the Redis store (real Redis), whose refusals carry the
// day's totals. Every product name carries RUN; its keys are removed afterwards.
const REDIS_URL = process.env.API_KEY_SERVER_REDIS_URL ?? 'redis://127.0.0.1:6379';
const RUN = `spec-${randomUUID().slice(0, 8)}`;
const P = `${RUN}-quota`;
/** Auto-blocks a user at their first refusal. */
const STRICT = `${RUN}-strict`;
/** A daily budget of $0.001 (a million billionths), no token quota. */
const BUDGET = `${RUN}-budget`;

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
        [BUDGET]: { limits: { daily_cost_usd: 0.001, daily_tokens: 0, user_daily_tokens: 0 }, auto_block: { rejections: 0 } },
      },
      prices: { 'gpt-4o-mini': { input: 0.15, output: 0.6 }, 'claude-x': { input: 3, output: 15 }, 'odd-1': { input: 5, output: 1 } },
    }),
  } as unknown as GatewayConfig;
  blocks = new BlocksService(undefined, logger);
  quota = new QuotaService(config, new RedisCounterStore(redis), new AutoBlocker(config, undefined, blocks, logger), logger);
});

afterAll(async () => {
  await redis.del(tokenKey(P, utcDay(Date.now())), tokenKey(STRICT, utcDay(Date.now())), costKey(BUDGET, utcDay(Date.now())));
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

describe('the most a request may cost (maxCostNanoUsd)', () => {
  const mini = { input: 0.15, cachedInput: 0.075, cacheWrite: 0.15, cacheWrite1h: 0.15, output: 0.6 };
  const claude = { input: 3, cachedInput: 0.3, cacheWrite: 3.75, cacheWrite1h: 6, output: 15 };
  const odd = { input: 5, cachedInput: 5, cacheWrite: 5, cacheWrite1h: 5, output: 1 };

  it('prices the prompt at the highest input rate and the completion at the highest output rate among the models that may answer', () => {
    expect(maxCostNanoUsd({ prompt: 1_000, completion: 500 }, [mini])).toBe(1_000 * 150 + 500 * 600);
    // The requested model and a fallback that costs more: the fallback's rates.
    expect(maxCostNanoUsd({ prompt: 1_000, completion: 500 }, [mini, claude])).toBe(1_000 * 3_000 + 500 * 15_000);
    // Each rate's highest, even from different models: odd-1's input, claude's output.
    expect(maxCostNanoUsd({ prompt: 1_000, completion: 500 }, [mini, claude, odd])).toBe(1_000 * 5_000 + 500 * 15_000);
    expect(maxCostNanoUsd({ prompt: 0, completion: 0 }, [claude])).toBe(0);
  });

  it('prices the prompt of a request that writes to the prompt cache at the write rate the request asks for, where that is higher', () => {
    expect(maxCostNanoUsd({ prompt: 1_000, completion: 500, promptCacheWrite: '5m' }, [claude])).toBe(1_000 * 3_750 + 500 * 15_000);
    expect(maxCostNanoUsd({ prompt: 1_000, completion: 500, promptCacheWrite: '1h' }, [claude])).toBe(1_000 * 6_000 + 500 * 15_000);
    // Another model's higher input rate still wins over a lower write rate.
    expect(maxCostNanoUsd({ prompt: 1_000, completion: 0, promptCacheWrite: '1h' }, [claude, odd])).toBe(1_000 * 6_000);
    expect(maxCostNanoUsd({ prompt: 1_000, completion: 0, promptCacheWrite: '5m' }, [mini, odd])).toBe(1_000 * 5_000);
  });

  describe('with long-context tiers', () => {
    const gemini = GEMINI_25_PRO_PRICE;
    const sonnet = { ...claude, tiers: [SONNET_1M_TIER] };
    /** The reservation's billionths at `input` and `output` dollars per million tokens. */
    const at = (prompt: number, completion: number, input: number, output: number) =>
      Math.round((prompt * input + completion * output) * 1000);

    it('reserves a prompt estimated far below a threshold at the base rates, one far above it at the tier’s', () => {
      expect(maxCostNanoUsd({ prompt: 100_000, completion: 1_000 }, [gemini])).toBe(at(100_000, 1_000, 1.25, 10));
      expect(maxCostNanoUsd({ prompt: 300_000, completion: 1_000 }, [gemini])).toBe(at(300_000, 1_000, 2.5, 15));
      expect(maxCostNanoUsd({ prompt: 300_000, completion: 1_000 }, [sonnet])).toBe(at(300_000, 1_000, 6, 22.5));
    });

    it(`reserves at the tier's rates a prompt estimated under the threshold by less than the estimate's error (${TIER_ESTIMATE_FACTOR}×)`, () => {
      // 133,333 × 1.5 = 199,999.5: a real count of at most that stays at the base rates.
      expect(maxCostNanoUsd({ prompt: 133_333, completion: 1_000 }, [gemini])).toBe(at(133_333, 1_000, 1.25, 10));
      expect(maxCostNanoUsd({ prompt: 133_334, completion: 1_000 }, [gemini])).toBe(at(133_334, 1_000, 2.5, 15));
      expect(maxCostNanoUsd({ prompt: 199_999, completion: 1_000 }, [sonnet])).toBe(at(199_999, 1_000, 6, 22.5));
      // A cache write is reserved at the tier's write rate.
      expect(maxCostNanoUsd({ prompt: 190_000, completion: 0, promptCacheWrite: '1h' }, [sonnet])).toBe(at(190_000, 0, 12, 0));
      expect(maxCostNanoUsd({ prompt: 100_000, completion: 0, promptCacheWrite: '1h' }, [sonnet])).toBe(at(100_000, 0, 6, 0));
    });

    it('never reserves a lower rate than the one a real prompt of up to the factor times the estimate is billed at', () => {
      for (let estimate = 130_000; estimate <= 210_000; estimate += 101) {
        for (const price of [gemini, sonnet]) {
          const billed = ratesAt(price, Math.floor(estimate * TIER_ESTIMATE_FACTOR));
          expect(maxCostNanoUsd({ prompt: estimate, completion: 100 }, [price])).toBeGreaterThanOrEqual(
            at(estimate, 100, billed.input, billed.output),
          );
        }
      }
    });

    it('takes the highest rates among the models that may answer, each model’s at the tiers the prompt may reach', () => {
      const flatPrice = { input: 2, cachedInput: 2, cacheWrite: 2, cacheWrite1h: 2, output: 12 };
      expect(maxCostNanoUsd({ prompt: 150_000, completion: 1_000 }, [gemini, flatPrice])).toBe(at(150_000, 1_000, 2.5, 15));
      expect(maxCostNanoUsd({ prompt: 100_000, completion: 1_000 }, [gemini, flatPrice])).toBe(at(100_000, 1_000, 2, 12));
    });
  });

  it('rounds up to whole billionths, and not for float noise', () => {
    const tiny = { ...mini, input: 0.0001, output: 0.0007 };
    // 0.1 and 0.7 billionths: 1 each, never 0 (the audit would round 0.7 to 1).
    expect(maxCostNanoUsd({ prompt: 1, completion: 0 }, [tiny])).toBe(1);
    expect(maxCostNanoUsd({ prompt: 0, completion: 1 }, [tiny])).toBe(1);
    expect(maxCostNanoUsd({ prompt: 15, completion: 0 }, [tiny])).toBe(2);
    // 3 × 0.1 × 1000 is 300.00000000000006 in floating point: 300, as the audit's cost of it.
    expect(maxCostNanoUsd({ prompt: 3, completion: 0 }, [{ ...mini, input: 0.1 }])).toBe(300);
  });
});

describe('QuotaService over Redis: cost reserved against a daily budget', () => {
  /** 100 prompt tokens and 20 of completion, answered by gpt-4o-mini or claude-x: at claude-x's prices, 100 × 3 000 + 20 × 15 000 billionths. */
  const ESTIMATE = (): TokenEstimate => ({ prompt: 100, completion: 20 });
  const MAX_COST = 600_000;
  const CANDIDATES = ['gpt-4o-mini', 'claude-x'];
  const costOf = async (field: string): Promise<number> => Number(await redis.hget(costKey(BUDGET, utcDay(Date.now())), field));

  it("reserves the estimate at the fallbacks' highest prices, holds it, settles it to the request's cost, and tells a client waiting on its own requests to retry in 2 s", async () => {
    const first = await quota.admit(undefined, BUDGET, 'ada', ESTIMATE, CANDIDATES);
    expect(first).toMatchObject({ product: BUDGET, user: 'ada', costNanoUsd: MAX_COST, store: 'shared' });
    expect(first?.tokens).toBeUndefined();
    expect(await costOf('_total')).toBe(MAX_COST);
    // 600 000 + 600 000 does not fit the 1 000 000, and the room is held by this replica's request in flight.
    const waiting = await rejectionOf(quota.admit(undefined, BUDGET, 'bo', ESTIMATE, CANDIDATES));
    expect(waiting.code).toBe('daily_quota_exceeded');
    expect(waiting.options.retryAfterSeconds).toBe(IN_FLIGHT_RETRY_SECONDS);
    expect(waiting.message).toBe(
      "This request (up to $0.0006) does not fit in this product's daily budget of $0.001 while requests in flight hold $0.0006 of it " +
        '(the most they may cost), given back as they end; try again in 2 s',
    );
    // It cost $0.0001: the rest of its estimate comes back, once.
    quota.settleCost(first, 0.0001);
    quota.settleCost(first, 0.0001);
    for (let i = 0; i < 100 && (await costOf('_total')) !== 100_000; i++) await new Promise((r) => setTimeout(r, 10));
    expect(await costOf('_total')).toBe(100_000);
    expect(await costOf('u:ada')).toBe(100_000);
    const second = await quota.admit(undefined, BUDGET, 'bo', ESTIMATE, CANDIDATES);
    expect(await costOf('_total')).toBe(700_000);
    // bo's cost $0.0004, $0.0002 less than its estimate.
    quota.settleCost(second, 0.0004);
    for (let i = 0; i < 100 && (await costOf('_total')) !== 500_000; i++) await new Promise((r) => setTimeout(r, 10));
    // 500 000 spent: 600 000 more does not fit, and nothing in flight would make room: midnight.
    const spent = await rejectionOf(quota.admit(undefined, BUDGET, 'cy', ESTIMATE, CANDIDATES));
    expect(spent.message).toBe(
      "This request (up to $0.0006) does not fit in what is left of this product's daily budget of $0.001; it resets at 00:00 UTC",
    );
    expect(spent.options.retryAfterSeconds).toBeGreaterThan(IN_FLIGHT_RETRY_SECONDS);
    expect(spent.options.retryAfterSeconds).toBeLessThanOrEqual(secondsToUtcMidnight(Date.now()));
    // The requested model alone: 100 × 150 + 20 × 600 = 27 000 fits.
    const cheap = await quota.admit(undefined, BUDGET, 'cy', ESTIMATE, ['gpt-4o-mini']);
    expect(cheap?.costNanoUsd).toBe(27_000);
    quota.settleCost(cheap, 0);
  });

  it('says a request whose estimate alone passes the whole budget can never be served, and how to shrink it', async () => {
    const error = await rejectionOf(quota.admit(undefined, BUDGET, 'dee', () => ({ prompt: 100, completion: 100_000 }), CANDIDATES));
    expect(error.code).toBe('daily_quota_exceeded');
    expect(error.message).toContain(
      "This request may cost up to $1.5003 (its prompt and the most it may generate, at the highest prices of the models that may answer it), more than this product's whole daily budget of $0.001: it can never be served as it is; ask for fewer output tokens",
    );
    expect(error.options.retryAfterSeconds).toBeGreaterThan(IN_FLIGHT_RETRY_SECONDS);
  });
});

describe('QuotaService without Redis (the memory store, one replica)', () => {
  it('tells a client held back by its own requests in flight to retry in 2 s, not at midnight (tokens and cost budgets alike)', async () => {
    const logger = new JsonLogger('error', undefined, () => undefined);
    const config = {
      policy: buildPolicyBook({
        defaults: { limits: { requests_per_second: 0, user_requests_per_second: 0, daily_requests: 0, user_daily_requests: 0 } },
        products: {
          mem: { limits: { user_daily_tokens: 1_000 }, auto_block: { rejections: 1, window_seconds: 60, block_seconds: 60 } },
          memcost: { limits: { daily_cost_usd: 0.001 }, auto_block: { rejections: 0 } },
        },
        prices: { 'gpt-4o-mini': { input: 0.15, output: 0.6 } },
      }),
    } as unknown as GatewayConfig;
    const memoryBlocks = new BlocksService(undefined, logger);
    const local = new QuotaService(config, new MemoryCounterStore(), new AutoBlocker(config, undefined, memoryBlocks, logger), logger);

    const first = await local.admit(undefined, 'mem', 'ike', estimated(700), MODELS);
    const waiting = await rejectionOf(local.admit(undefined, 'mem', 'ike', estimated(600), MODELS));
    expect([waiting.code, waiting.options.retryAfterSeconds]).toEqual(['daily_quota_exceeded', IN_FLIGHT_RETRY_SECONDS]);
    expect(waiting.message).toContain('while requests in flight hold 700 tokens');
    await new Promise((r) => setImmediate(r));
    // Told to retry, not counted toward auto-block (its first refusal would block here).
    expect(memoryBlocks.find('mem', 'ike')).toBeUndefined();
    local.settle(first, 100);
    await expect(local.admit(undefined, 'mem', 'ike', estimated(600), MODELS)).resolves.toBeDefined();

    // A budget: 2,000 prompt tokens at $0.15/M is $0.0003, held while in flight.
    const held = await local.admit(undefined, 'memcost', 'jo', estimated(2_000), MODELS);
    const budgetWait = await rejectionOf(local.admit(undefined, 'memcost', 'jo', () => ({ prompt: 5_000, completion: 0 }), MODELS));
    expect(budgetWait.options.retryAfterSeconds).toBe(IN_FLIGHT_RETRY_SECONDS);
    local.settle(held, 0);
  });
});
