import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import {
  DAILY_COUNTER_TTL_MS,
  requestCounters as counters,
  SECOND_COUNTER_TTL_MS,
  secondsToEndOfUtcDay,
  secondsToUtcMidnight,
  utcDay,
  type CounterStore,
  type LimitName,
  type StoreName,
  type QuotaName,
} from './counter.store';
import { MemoryCounterStore } from './memory.counter-store';
import { RedisCounterStore } from './redis.counter-store';

// Integration spec: the Redis store runs against the real Redis, touching only keys of this run
// (every product name carries RUN), and the in-memory store is held to the same contract.
const REDIS_URL = process.env.API_KEY_SERVER_REDIS_URL ?? 'redis://127.0.0.1:6379';
const RUN = `spec-${randomUUID().slice(0, 8)}`;
/** A fixed UTC day and second: the store takes them as arguments, so nothing here depends on the clock. */
const DAY = '2031-05-17';
const SECOND = 1_952_000_000;

/** The four identity limits of one request, as RequestLimitsGuard counts them (0: counted, never refused). */
interface RequestLimits {
  productPerSecond: number;
  userPerSecond: number;
  productPerDay: number;
  userPerDay: number;
}

const NONE: RequestLimits = { productPerSecond: 0, userPerSecond: 0, productPerDay: 0, userPerDay: 0 };

/** The guard's throttler order: a refusal's index in the hits names its limit. */
const LIMIT_ORDER: readonly LimitName[] = ['product_qps', 'user_qps', 'product_daily', 'user_daily'];

type Admission = { admitted: true; counts: number[]; store: StoreName } | { admitted: false; refusedBy: LimitName; counts: number[] };

/** Counts one request in the four counters of its identity, in the guard's order (the throttlers' order). */
async function admit(store: CounterStore, p: string, user: string, limits: RequestLimits, second: number, day: string): Promise<Admission> {
  const outcome = await store.hit([
    { ...counters.productPerSecond(p, second), limit: limits.productPerSecond, ttlMs: SECOND_COUNTER_TTL_MS },
    { ...counters.userPerSecond(p, user, second), limit: limits.userPerSecond, ttlMs: SECOND_COUNTER_TTL_MS },
    { ...counters.productPerDay(p, day), limit: limits.productPerDay, ttlMs: DAILY_COUNTER_TTL_MS },
    { ...counters.userPerDay(p, user, day), limit: limits.userPerDay, ttlMs: DAILY_COUNTER_TTL_MS },
  ]);
  return outcome.admitted
    ? { admitted: true, counts: outcome.counts, store: outcome.store }
    : { admitted: false, refusedBy: LIMIT_ORDER[outcome.refusedAt], counts: outcome.counts };
}

type Reserved = { reserved: true; store: StoreName } | { reserved: false; refusedBy: QuotaName };

/** Reserves tokens alone (no request counter), as QuotaService.admit does on a route the guard counted. */
async function reserve(
  store: CounterStore,
  p: string,
  user: string,
  tokens: number,
  productCap: number,
  userCap: number,
  day: string,
): Promise<Reserved> {
  const outcome = await store.hit([], { product: p, user, tokens, productCap, userCap, day });
  if (outcome.admitted) return { reserved: true, store: outcome.store };
  if (!outcome.refusedBy || outcome.refusedAt !== -1) throw new Error('a reservation without counters was refused by a counter');
  return { reserved: false, refusedBy: outcome.refusedBy };
}

/** Gives a request back to its day's counts, as the guard's release does. */
function releaseDaily(store: CounterStore, p: string, user: string, day: string, where: StoreName): Promise<void> {
  return store.release([counters.productPerDay(p, day), counters.userPerDay(p, user, day)], where);
}

let seq = 0;
/** A product name no other test (or run) uses. */
function product(label: string): string {
  return `${RUN}-${label}-${++seq}`;
}

let redis: Redis;

beforeAll(async () => {
  redis = new Redis(REDIS_URL, { maxRetriesPerRequest: 1, connectTimeout: 2_000 });
  await redis.ping();
});

afterAll(async () => {
  const keys = await redis.keys(`kg:{${RUN}-*`);
  if (keys.length) await redis.del(...keys);
  await redis.quit();
});

const stores: Array<[string, () => CounterStore, StoreName]> = [
  ['RedisCounterStore (real Redis)', () => new RedisCounterStore(redis), 'shared'],
  ['MemoryCounterStore', () => new MemoryCounterStore(), 'local'],
];

describe.each(stores)('%s', (_name, makeStore, where) => {
  let store: CounterStore;
  beforeEach(() => {
    store = makeStore();
  });

  /** N + 1 concurrent admissions against a limit of N, each from its own user unless `sameUser`. */
  async function race(
    p: string,
    limits: RequestLimits,
    n: number,
    sameUser: boolean,
  ): Promise<{ admitted: number; refusedBy: LimitName[] }> {
    const results = await Promise.all(
      Array.from({ length: n + 1 }, (_, i) => admit(store, p, sameUser ? 'alice' : `user-${i}`, limits, SECOND, DAY)),
    );
    return {
      admitted: results.filter((r) => r.admitted).length,
      refusedBy: results.flatMap((r) => (r.admitted ? [] : [r.refusedBy])),
    };
  }

  it.each<[LimitName, Partial<RequestLimits>, boolean]>([
    ['product_qps', { productPerSecond: 7 }, false],
    ['user_qps', { userPerSecond: 7 }, true],
    ['product_daily', { productPerDay: 7 }, false],
    ['user_daily', { userPerDay: 7 }, true],
  ])('admits exactly N of N + 1 concurrent requests against %s = N, and refuses the rest by that limit', async (limit, set, sameUser) => {
    const p = product(limit);
    const { admitted, refusedBy } = await race(p, { ...NONE, ...set }, 7, sameUser);
    expect(admitted).toBe(7);
    expect(refusedBy).toEqual([limit]);
    const usage = await store.usage(p, DAY);
    // The refused request is not in the day's count either.
    expect(usage.requests.total).toBe(7);
  });

  it('holds every limit exactly under a larger burst (50 concurrent against 13)', async () => {
    const p = product('burst');
    const results = await Promise.all(
      Array.from({ length: 50 }, () => admit(store, p, 'bob', { ...NONE, userPerSecond: 13 }, SECOND, DAY)),
    );
    expect(results.filter((r) => r.admitted)).toHaveLength(13);
    const counts = results.filter((r) => r.admitted).map((r) => r.counts[1]);
    expect(counts.sort((a, b) => a - b)).toEqual(Array.from({ length: 13 }, (_, i) => i + 1));
  });

  it('charges a refused request to none of the four counters', async () => {
    const p = product('no-charge');
    const limits: RequestLimits = { productPerSecond: 100, userPerSecond: 100, productPerDay: 100, userPerDay: 2 };
    expect((await admit(store, p, 'carol', limits, SECOND, DAY)).admitted).toBe(true);
    const second = await admit(store, p, 'carol', limits, SECOND, DAY);
    expect(second).toEqual({ admitted: true, counts: [2, 2, 2, 2], store: where });
    const refused = await admit(store, p, 'carol', limits, SECOND, DAY);
    expect(refused).toEqual({ admitted: false, refusedBy: 'user_daily', counts: [2, 2, 2, 2] });
    // Another user of the same product in the same second sees the product counters untouched by the refusal.
    expect(await admit(store, p, 'dave', limits, SECOND, DAY)).toEqual({ admitted: true, counts: [3, 1, 3, 1], store: where });
    const usage = await store.usage(p, DAY);
    expect(usage.requests).toEqual({ total: 3, users: { carol: 2, dave: 1 } });
  });

  it('never settles a day below zero (a reservation lost with a Redis restart is not free quota)', async () => {
    const p = product('settle-floor');
    await store.settleTokens(p, 'kim', -4_000, DAY, where);
    expect((await store.usage(p, DAY)).tokens).toEqual({ total: 0, users: { kim: 0 } });
    expect(await reserve(store, p, 'kim', 900, 1_000, 0, DAY)).toEqual({ reserved: true, store: where });
    expect(await reserve(store, p, 'kim', 200, 1_000, 0, DAY)).toMatchObject({ reserved: false, refusedBy: 'product_tokens' });
  });

  it('reports a user whose id is __proto__ like any other (the users map has no prototype)', async () => {
    const p = product('proto');
    const limits: RequestLimits = { ...NONE, userPerSecond: 10, userPerDay: 5 };
    expect((await admit(store, p, '__proto__', limits, SECOND, DAY)).admitted).toBe(true);
    expect((await admit(store, p, 'constructor', limits, SECOND, DAY)).admitted).toBe(true);
    const { users } = (await store.usage(p, DAY)).requests;
    expect(Object.keys(users).sort()).toEqual(['__proto__', 'constructor']);
    expect(JSON.parse(JSON.stringify(users))).toEqual(JSON.parse('{"__proto__": 1, "constructor": 1}'));
  });

  it('gives an admitted request back to the daily counts only, never below zero', async () => {
    const p = product('release');
    const limits: RequestLimits = { ...NONE, userPerSecond: 10, userPerDay: 2 };
    expect((await admit(store, p, 'gil', limits, SECOND, DAY)).admitted).toBe(true);
    expect((await admit(store, p, 'gil', limits, SECOND, DAY)).admitted).toBe(true);
    await releaseDaily(store, p, 'gil', DAY, where);
    expect((await store.usage(p, DAY)).requests).toEqual({ total: 1, users: { gil: 1 } });
    // The daily cap has room again; the per-second count was kept (3 of 10 now).
    expect(await admit(store, p, 'gil', limits, SECOND, DAY)).toEqual({ admitted: true, counts: [3, 3, 2, 2], store: where });
    for (let i = 0; i < 3; i++) await releaseDaily(store, p, 'gil', DAY, where);
    expect((await store.usage(p, DAY)).requests).toEqual({ total: 0, users: { gil: 0 } });
    // A day that never admitted anything is left alone (no key created, nothing negative).
    await releaseDaily(store, p, 'gil', '2031-06-02', where);
    expect((await store.usage(p, '2031-06-02')).requests).toEqual({ total: 0, users: {} });
  });

  it('refuses by the first full limit in order (product_qps before user_qps before the daily caps)', async () => {
    const p = product('order');
    const limits: RequestLimits = { productPerSecond: 1, userPerSecond: 1, productPerDay: 1, userPerDay: 1 };
    expect((await admit(store, p, 'erin', limits, SECOND, DAY)).admitted).toBe(true);
    expect(await admit(store, p, 'erin', limits, SECOND, DAY)).toMatchObject({ admitted: false, refusedBy: 'product_qps' });
    // Next second: the per-second windows are empty, the daily caps are not.
    expect(await admit(store, p, 'erin', limits, SECOND + 1, DAY)).toMatchObject({ admitted: false, refusedBy: 'product_daily' });
    expect(await admit(store, p, 'erin', { ...limits, productPerDay: 0 }, SECOND + 1, DAY)).toMatchObject({
      admitted: false,
      refusedBy: 'user_daily',
    });
  });

  it('starts a fresh per-second window every second, and keeps the daily count across seconds', async () => {
    const p = product('window');
    const limits: RequestLimits = { ...NONE, productPerSecond: 2, userPerSecond: 2 };
    expect((await admit(store, p, 'frank', limits, SECOND, DAY)).admitted).toBe(true);
    expect((await admit(store, p, 'frank', limits, SECOND, DAY)).admitted).toBe(true);
    expect((await admit(store, p, 'frank', limits, SECOND, DAY)).admitted).toBe(false);
    const next = await admit(store, p, 'frank', limits, SECOND + 1, DAY);
    expect(next).toEqual({ admitted: true, counts: [1, 1, 3, 3], store: where });
    expect((await store.usage(p, DAY)).requests.total).toBe(3);
  });

  it('treats a limit of 0 as unlimited but still counts the requests in the usage', async () => {
    const p = product('unlimited');
    const results = await Promise.all(
      Array.from({ length: 60 }, (_, i) => admit(store, p, i % 3 === 0 ? 'gina' : 'hank', NONE, SECOND, DAY)),
    );
    expect(results.every((r) => r.admitted)).toBe(true);
    expect(await store.usage(p, DAY)).toEqual({
      // Redis holds every replica's counts; memory, this replica's alone.
      scope: where === 'shared' ? 'shared' : 'replica',
      requests: { total: 60, users: { gina: 20, hank: 40 } },
      tokens: { total: 0, users: {} },
      costNanoUsd: { total: 0, users: {} },
    });
  });

  it('keeps days apart', async () => {
    const p = product('days');
    const limits: RequestLimits = { ...NONE, productPerDay: 1 };
    expect((await admit(store, p, 'ivy', limits, SECOND, DAY)).admitted).toBe(true);
    expect((await admit(store, p, 'ivy', limits, SECOND + 86_400, '2031-05-18')).admitted).toBe(true);
    expect((await store.usage(p, DAY)).requests.total).toBe(1);
    expect((await store.usage(p, '2031-05-18')).requests.total).toBe(1);
    expect((await store.usage(p, '2031-05-19')).requests.total).toBe(0);
  });

  it('reserves exactly as many concurrent token reservations as fit under the product cap (1000 / 50 → 20 of 30)', async () => {
    const p = product('reserve');
    const results = await Promise.all(Array.from({ length: 30 }, (_, i) => reserve(store, p, `u${i % 5}`, 50, 1000, 0, DAY)));
    expect(results.filter((r) => r.reserved)).toHaveLength(20);
    expect(results.filter((r) => !r.reserved).every((r) => !r.reserved && r.refusedBy === 'product_tokens')).toBe(true);
    const usage = await store.usage(p, DAY);
    expect(usage.tokens.total).toBe(1000);
    expect(Object.values(usage.tokens.users).reduce((a, b) => a + b, 0)).toBe(1000);
  });

  it('holds the user cap under concurrency and refuses by user_tokens', async () => {
    const p = product('user-reserve');
    const results = await Promise.all(Array.from({ length: 12 }, () => reserve(store, p, 'jack', 30, 0, 100, DAY)));
    expect(results.filter((r) => r.reserved)).toHaveLength(3);
    expect(results.find((r) => !r.reserved)).toEqual({ reserved: false, refusedBy: 'user_tokens' });
    // Another user still has the whole user cap.
    expect(await reserve(store, p, 'kate', 100, 0, 100, DAY)).toEqual({ reserved: true, store: where });
    expect(await reserve(store, p, 'kate', 1, 0, 100, DAY)).toEqual({ reserved: false, refusedBy: 'user_tokens' });
    expect((await store.usage(p, DAY)).tokens).toEqual({ total: 190, users: { jack: 90, kate: 100 } });
  });

  it('admits a reservation that lands exactly on the cap and refuses one token more', async () => {
    const p = product('edge');
    expect(await reserve(store, p, 'liam', 999, 1000, 1000, DAY)).toEqual({ reserved: true, store: where });
    // Both quotas are full for liam: the refusal is his own (it counts toward his auto-block)…
    expect(await reserve(store, p, 'liam', 2, 1000, 1000, DAY)).toEqual({ reserved: false, refusedBy: 'user_tokens' });
    // …while for another user only the product's is.
    expect(await reserve(store, p, 'mo', 2, 1000, 1000, DAY)).toEqual({ reserved: false, refusedBy: 'product_tokens' });
    expect(await reserve(store, p, 'liam', 1, 1000, 1000, DAY)).toEqual({ reserved: true, store: where });
    // A refused reservation charged nothing.
    expect((await store.usage(p, DAY)).tokens).toEqual({ total: 1000, users: { liam: 1000 } });
  });

  it('settles reservations to the real usage, freeing (or charging) the difference', async () => {
    const p = product('settle');
    for (let i = 0; i < 4; i++) expect((await reserve(store, p, 'mia', 250, 1000, 0, DAY)).reserved).toBe(true);
    expect((await reserve(store, p, 'noah', 1, 1000, 0, DAY)).reserved).toBe(false);
    // Two requests used 100 of their 250, one used 300 (50 over its estimate), one used exactly its estimate.
    await Promise.all([
      store.settleTokens(p, 'mia', -150, DAY, where),
      store.settleTokens(p, 'mia', -150, DAY, where),
      store.settleTokens(p, 'mia', 50, DAY, where),
      store.settleTokens(p, 'mia', 0, DAY, where),
    ]);
    expect((await store.usage(p, DAY)).tokens).toEqual({ total: 750, users: { mia: 750 } });
    expect(await reserve(store, p, 'noah', 250, 1000, 0, DAY)).toEqual({ reserved: true, store: where });
    expect((await store.usage(p, DAY)).tokens).toEqual({ total: 1000, users: { mia: 750, noah: 250 } });
  });

  it('reports usage per user for requests and tokens', async () => {
    const p = product('usage');
    await admit(store, p, 'olga', NONE, SECOND, DAY);
    await admit(store, p, 'olga', NONE, SECOND, DAY);
    await admit(store, p, 'pete', NONE, SECOND, DAY);
    await reserve(store, p, 'olga', 40, 0, 0, DAY);
    await reserve(store, p, 'pete', 5, 0, 0, DAY);
    await store.settleTokens(p, 'pete', 3, DAY, where);
    expect(await store.usage(p, DAY)).toEqual({
      scope: where === 'shared' ? 'shared' : 'replica',
      requests: { total: 3, users: { olga: 2, pete: 1 } },
      tokens: { total: 48, users: { olga: 40, pete: 8 } },
      costNanoUsd: { total: 0, users: {} },
    });
    expect(await store.usage(product('nobody'), DAY)).toEqual({
      scope: where === 'shared' ? 'shared' : 'replica',
      requests: { total: 0, users: {} },
      tokens: { total: 0, users: {} },
      costNanoUsd: { total: 0, users: {} },
    });
  });

  it('adds up request costs per user and day, exactly (integers: a million costs of $0.0000072 are $7.20)', async () => {
    const p = product('cost');
    // $0.0000072, a typical small completion: 7 200 billionths. Summed as dollars (floats) a million
    // times, it drifts off 7.2; as integers it cannot.
    await Promise.all(Array.from({ length: 100 }, () => store.addCost(p, 'quinn', 7_200, DAY, where)));
    await store.addCost(p, 'rosa', 1, DAY, where);
    await store.addCost(p, 'rosa', 0, DAY, where);
    await store.addCost(p, 'quinn', 5, '2031-05-18', where);
    expect((await store.usage(p, DAY)).costNanoUsd).toEqual({ total: 720_001, users: { quinn: 720_000, rosa: 1 } });
    expect((await store.usage(p, '2031-05-18')).costNanoUsd).toEqual({ total: 5, users: { quinn: 5 } });
    // A cost alone shows in no other count: no user with 0 requests or 0 tokens.
    expect((await store.usage(p, DAY)).tokens).toEqual({ total: 0, users: {} });
    expect((await store.usage(p, DAY)).requests).toEqual({ total: 0, users: {} });
    await store.addCost(p, 'sam', 1_000_000 * 7_200, DAY, where);
    expect((await store.usage(p, DAY)).costNanoUsd.users.sam).toBe(7_200_000_000);
  });

  it("keeps the day's costs when a request counted the day before, the first of its product, is charged after midnight", async () => {
    const a = product('cost-today');
    const b = product('cost-late');
    const next = '2031-05-18';
    // After midnight: a's new day has a cost; then b's last request of the day before ends, its first cost of that day.
    await store.addCost(a, 'uma', 7_200, next, where);
    await store.addCost(b, 'vin', 100, DAY, where);
    expect((await store.usage(a, next)).costNanoUsd).toEqual({ total: 7_200, users: { uma: 7_200 } });
    expect((await store.usage(b, DAY)).costNanoUsd).toEqual({ total: 100, users: { vin: 100 } });
  });

  describe('daily cost budgets', () => {
    /**
     * The counters of a request (none limited), with the day's budgets of its product and user and its
     * cost estimate (billionths of a dollar).
     */
    function hitWithBudget(p: string, user: string, productCap: number, userCap: number, tokens?: number, cost = 0) {
      return store.hit(
        [
          { ...counters.productPerSecond(p, SECOND), limit: 0, ttlMs: SECOND_COUNTER_TTL_MS },
          { ...counters.productPerDay(p, DAY), limit: 0, ttlMs: DAILY_COUNTER_TTL_MS },
          { ...counters.userPerDay(p, user, DAY), limit: 0, ttlMs: DAILY_COUNTER_TTL_MS },
        ],
        tokens === undefined ? undefined : { product: p, user, tokens, productCap: 0, userCap: 0, day: DAY },
        { product: p, user, nanoUsd: cost, productCapNanoUsd: productCap, userCapNanoUsd: userCap, day: DAY },
      );
    }

    it("refuses once the day's cost has reached the product's budget (>=), counting and reserving nothing", async () => {
      const p = product('budget');
      await store.addCost(p, 'una', 999_999, DAY, where);
      expect(await hitWithBudget(p, 'una', 1_000_000, 0, 50)).toMatchObject({ admitted: true, counts: [1, 1, 1] });
      await store.addCost(p, 'una', 1, DAY, where);
      // Exactly at the budget: spent. Another user too (the product's budget).
      expect(await hitWithBudget(p, 'vic', 1_000_000, 0, 50)).toMatchObject({ admitted: false, refusedAt: -1, refusedBy: 'product_cost' });
      await store.addCost(p, 'una', 5, DAY, where);
      expect(await hitWithBudget(p, 'una', 1_000_000, 0, 50)).toMatchObject({ admitted: false, refusedAt: -1, refusedBy: 'product_cost' });
      const usage = await store.usage(p, DAY);
      expect(usage.requests).toEqual({ total: 1, users: { una: 1 } });
      expect(usage.tokens).toEqual({ total: 50, users: { una: 50 } });
      // Checked, never charged: the cost is what was added, nothing more.
      expect(usage.costNanoUsd).toEqual({ total: 1_000_005, users: { una: 1_000_005 } });
      // Another day's cost, or no budget, refuses nothing.
      expect(await hitWithBudget(p, 'una', 0, 0)).toMatchObject({ admitted: true });
    });

    it("refuses a user whose own day's cost reached their budget, not another user, and names the user's first when both are spent", async () => {
      const p = product('user-budget');
      await store.addCost(p, 'wil', 300, DAY, where);
      expect(await hitWithBudget(p, 'wil', 0, 300)).toMatchObject({ admitted: false, refusedBy: 'user_cost' });
      expect(await hitWithBudget(p, 'xia', 0, 300)).toMatchObject({ admitted: true });
      expect(await hitWithBudget(p, 'wil', 300, 300)).toMatchObject({ admitted: false, refusedBy: 'user_cost' });
      expect(await hitWithBudget(p, 'xia', 300, 300)).toMatchObject({ admitted: false, refusedBy: 'product_cost' });
      expect((await store.usage(p, DAY)).requests).toEqual({ total: 1, users: { xia: 1 } });
    });

    it('reserves the cost estimate in the same step, and refuses one that does not fit under a budget (counting and reserving nothing)', async () => {
      const p = product('budget-reserve');
      // 600 of the product's 1 000 reserved: in the day's cost at once, in the counters too.
      expect(await hitWithBudget(p, 'ana', 1_000, 0, 50, 600)).toMatchObject({ admitted: true, counts: [1, 1, 1] });
      expect((await store.usage(p, DAY)).costNanoUsd).toEqual({ total: 600, users: { ana: 600 } });
      // 401 more would pass it: refused, though the day's cost has not reached it.
      const refused = await hitWithBudget(p, 'bob', 1_000, 0, 50, 401);
      expect(refused).toMatchObject({ admitted: false, refusedAt: -1, refusedBy: 'product_cost' });
      // The shared store says the totals it found (reservations included), for the quota service's message.
      if (where === 'shared') expect(refused.costTotals).toEqual({ product: 600, user: 0 });
      // Exactly up to the budget fits.
      expect(await hitWithBudget(p, 'bob', 1_000, 0, 50, 400)).toMatchObject({ admitted: true, counts: [2, 2, 1] });
      expect(await hitWithBudget(p, 'cid', 1_000, 0, 50, 1)).toMatchObject({ admitted: false, refusedBy: 'product_cost' });
      const usage = await store.usage(p, DAY);
      expect(usage.requests).toEqual({ total: 2, users: { ana: 1, bob: 1 } });
      expect(usage.tokens).toEqual({ total: 100, users: { ana: 50, bob: 50 } });
      expect(usage.costNanoUsd).toEqual({ total: 1_000, users: { ana: 600, bob: 400 } });
    });

    it("reserves against a user's budget, naming it before the product's", async () => {
      const p = product('user-budget-reserve');
      expect(await hitWithBudget(p, 'dee', 10_000, 500, undefined, 300)).toMatchObject({ admitted: true });
      // 300 + 201 passes dee's 500 (and would fit the product's): the user's budget refuses.
      expect(await hitWithBudget(p, 'dee', 10_000, 500, undefined, 201)).toMatchObject({ admitted: false, refusedBy: 'user_cost' });
      expect(await hitWithBudget(p, 'eli', 10_000, 500, undefined, 500)).toMatchObject({ admitted: true });
      // Both would pass: the user's is named.
      expect(await hitWithBudget(p, 'dee', 700, 500, undefined, 300)).toMatchObject({ admitted: false, refusedBy: 'user_cost' });
      expect((await store.usage(p, DAY)).costNanoUsd).toEqual({ total: 800, users: { dee: 300, eli: 500 } });
    });

    it('settles a cost reservation down or up to what the request cost, gives a costless one back whole, and never goes below zero', async () => {
      const p = product('budget-settle');
      for (const user of ['fox', 'gia', 'hal'])
        expect(await hitWithBudget(p, user, 3_000, 0, undefined, 1_000)).toMatchObject({ admitted: true });
      expect(await hitWithBudget(p, 'ivo', 3_000, 0, undefined, 1)).toMatchObject({ admitted: false, refusedBy: 'product_cost' });
      await store.addCost(p, 'fox', 250 - 1_000, DAY, where, 1_000); // cost less than its estimate
      await store.addCost(p, 'gia', 1_200 - 1_000, DAY, where, 1_000); // more (a prompt under-estimated)
      await store.addCost(p, 'hal', 0 - 1_000, DAY, where, 1_000); // an upstream error: nothing
      expect((await store.usage(p, DAY)).costNanoUsd).toEqual({ total: 1_450, users: { fox: 250, gia: 1_200, hal: 0 } });
      // The room given back is there for the next request.
      expect(await hitWithBudget(p, 'ivo', 3_000, 0, undefined, 1_550)).toMatchObject({ admitted: true });
      // A give-back whose reservation the store lost (a Redis restart) leaves 0, not free budget.
      await store.addCost(p, 'jo', -500, DAY, where, 500);
      expect((await store.usage(p, DAY)).costNanoUsd.users.jo).toBe(0);
      expect((await store.usage(p, DAY)).costNanoUsd.total).toBe(2_500);
    });

    it('names a full request counter before a spent budget', async () => {
      const p = product('budget-order');
      const daily = [{ ...counters.productPerDay(p, DAY), limit: 1, ttlMs: DAILY_COUNTER_TTL_MS }];
      const budget = { product: p, user: 'yan', nanoUsd: 0, productCapNanoUsd: 5, userCapNanoUsd: 0, day: DAY };
      expect(await store.hit(daily, undefined, budget)).toMatchObject({ admitted: true });
      await store.addCost(p, 'yan', 10, DAY, where);
      expect(await store.hit(daily, undefined, budget)).toMatchObject({ admitted: false, refusedAt: 0 });
      expect(await store.hit([], undefined, budget)).toMatchObject({ admitted: false, refusedAt: -1, refusedBy: 'product_cost' });
    });
  });

  it('counts any number of counters together, all or none, and names the first full one', async () => {
    const p = product('generic');
    const hits = (limit: number) => [1, 2, 3, 4, 5, 6].map((i) => ({ key: `kg:{${p}}:c${i}`, limit: i === 4 ? limit : 0, ttlMs: 60_000 }));
    expect(await store.hit(hits(2))).toMatchObject({ admitted: true, counts: [1, 1, 1, 1, 1, 1], store: where });
    expect(await store.hit(hits(2))).toMatchObject({ admitted: true, counts: [2, 2, 2, 2, 2, 2] });
    const refused = await store.hit(hits(2));
    expect(refused).toMatchObject({ admitted: false, refusedAt: 3, counts: [2, 2, 2, 2, 2, 2] });
    expect(refused.ttlsMs.every((t) => t > 0 && t <= 60_000)).toBe(true);
    // A counter on its own, as @nestjs/throttler's increment uses it.
    expect(await store.hit([{ key: `kg:{${p}}:c1`, limit: 3, ttlMs: 60_000 }])).toMatchObject({ admitted: true, counts: [3] });
    expect(await store.hit([{ key: `kg:{${p}}:c1`, limit: 3, ttlMs: 60_000 }])).toMatchObject({
      admitted: false,
      refusedAt: 0,
      counts: [3],
    });
    // Fields of one hash count apart, and the hash keeps its first lifetime.
    const fields = (limit: number) => [
      { key: `kg:{${p}}:h`, field: 'a', limit, ttlMs: 60_000 },
      { key: `kg:{${p}}:h`, field: 'b', limit: 0, ttlMs: 1 },
    ];
    expect(await store.hit(fields(2))).toMatchObject({ admitted: true, counts: [1, 1] });
    expect(await store.hit(fields(2))).toMatchObject({ admitted: true, counts: [2, 2] });
    const full = await store.hit(fields(2));
    expect(full).toMatchObject({ admitted: false, refusedAt: 0, counts: [2, 2] });
    expect(full.ttlsMs.every((t) => t > 50_000)).toBe(true);
    await store.release([{ key: `kg:{${p}}:h`, field: 'a' }], where);
    expect(await store.hit(fields(2))).toMatchObject({ admitted: true, counts: [2, 3] });
    // A counter that does not exist reports no lifetime and a count of 0.
    expect(
      await store.hit([
        { key: `kg:{${p}}:c4`, limit: 2, ttlMs: 60_000 },
        { key: `kg:{${p}}:none`, limit: 1, ttlMs: 60_000 },
      ]),
    ).toEqual({
      admitted: false,
      refusedAt: 0,
      counts: [2, 0],
      ttlsMs: [expect.any(Number), 0],
    });
  });

  describe('a request counted and its tokens reserved in one step', () => {
    /** One request's four counters (as `admit`) and its tokens, together. */
    async function admitWithTokens(p: string, user: string, limits: RequestLimits, tokens: number, productCap: number, userCap: number) {
      return store.hit(
        [
          { ...counters.productPerSecond(p, SECOND), limit: limits.productPerSecond, ttlMs: SECOND_COUNTER_TTL_MS },
          { ...counters.userPerSecond(p, user, SECOND), limit: limits.userPerSecond, ttlMs: SECOND_COUNTER_TTL_MS },
          { ...counters.productPerDay(p, DAY), limit: limits.productPerDay, ttlMs: DAILY_COUNTER_TTL_MS },
          { ...counters.userPerDay(p, user, DAY), limit: limits.userPerDay, ttlMs: DAILY_COUNTER_TTL_MS },
        ],
        { product: p, user, tokens, productCap, userCap, day: DAY },
      );
    }

    it('counts the request and reserves its tokens together', async () => {
      const p = product('together');
      expect(await admitWithTokens(p, 'ada', NONE, 120, 1000, 500)).toMatchObject({ admitted: true, counts: [1, 1, 1, 1], store: where });
      expect(await store.usage(p, DAY)).toMatchObject({
        requests: { total: 1, users: { ada: 1 } },
        tokens: { total: 120, users: { ada: 120 } },
      });
    });

    it('counts nothing when the tokens do not fit (refusedAt -1 names no counter), by the product cap, then the user cap', async () => {
      const p = product('no-room');
      expect((await admitWithTokens(p, 'bea', NONE, 400, 1000, 500)).admitted).toBe(true);
      expect(await admitWithTokens(p, 'bea', NONE, 101, 1000, 500)).toMatchObject({
        admitted: false,
        refusedAt: -1,
        refusedBy: 'user_tokens',
        counts: [1, 1, 1, 1],
      });
      expect((await admitWithTokens(p, 'cid', NONE, 500, 1000, 500)).admitted).toBe(true);
      expect(await admitWithTokens(p, 'dan', NONE, 101, 1000, 500)).toMatchObject({
        admitted: false,
        refusedAt: -1,
        refusedBy: 'product_tokens',
      });
      expect(await store.usage(p, DAY)).toMatchObject({
        requests: { total: 2, users: { bea: 1, cid: 1 } },
        tokens: { total: 900, users: { bea: 400, cid: 500 } },
      });
    });

    it('reserves no tokens for a request a counter refuses', async () => {
      const p = product('limit-first');
      const limits: RequestLimits = { ...NONE, userPerDay: 1 };
      expect((await admitWithTokens(p, 'eve', limits, 10, 0, 0)).admitted).toBe(true);
      expect(await admitWithTokens(p, 'eve', limits, 10, 0, 0)).toMatchObject({ admitted: false, refusedAt: 3 });
      expect(await admitWithTokens(p, 'eve', limits, 10_000, 100, 0)).toMatchObject({ admitted: false, refusedAt: 3 });
      expect((await store.usage(p, DAY)).tokens).toEqual({ total: 10, users: { eve: 10 } });
    });

    it('holds a request limit and a token cap exactly under concurrency (40 at once: 10 per second, 300 tokens of 30)', async () => {
      const p = product('together-race');
      const results = await Promise.all(
        Array.from({ length: 40 }, (_, i) => admitWithTokens(p, `u${i % 4}`, { ...NONE, productPerSecond: 10 }, 30, 270, 0)),
      );
      // The cap (270) fits 9 reservations of 30, fewer than the 10 the per-second limit allows.
      expect(results.filter((r) => r.admitted)).toHaveLength(9);
      const usage = await store.usage(p, DAY);
      expect(usage.requests.total).toBe(9);
      expect(usage.tokens.total).toBe(270);
    });
  });

  it('keeps products apart', async () => {
    const a = product('apart-a');
    const b = product('apart-b');
    const limits: RequestLimits = { ...NONE, productPerSecond: 1 };
    expect((await admit(store, a, 'quinn', limits, SECOND, DAY)).admitted).toBe(true);
    expect((await admit(store, b, 'quinn', limits, SECOND, DAY)).admitted).toBe(true);
    expect((await admit(store, a, 'quinn', limits, SECOND, DAY)).admitted).toBe(false);
  });
});

describe('RedisCounterStore keys (real Redis)', () => {
  let store: RedisCounterStore;
  beforeAll(() => {
    store = new RedisCounterStore(redis);
  });

  it('leaves every key untouched when a request is refused', async () => {
    const p = product('keys');
    const limits: RequestLimits = { productPerSecond: 5, userPerSecond: 1, productPerDay: 5, userPerDay: 5 };
    await admit(store, p, 'rita', limits, SECOND, DAY);
    const snapshot = async (): Promise<unknown> => ({
      pqps: await redis.get(`kg:{${p}}:qps:${SECOND}`),
      uqps: await redis.get(`kg:{${p}}:qps:${SECOND}:u:rita`),
      day: await redis.hgetall(`kg:{${p}}:req:${DAY}`),
    });
    const before = await snapshot();
    expect(before).toEqual({ pqps: '1', uqps: '1', day: { _total: '1', 'u:rita': '1' } });
    const refused = await Promise.all(Array.from({ length: 5 }, () => admit(store, p, 'rita', limits, SECOND, DAY)));
    expect(refused.every((r) => !r.admitted && r.refusedBy === 'user_qps')).toBe(true);
    expect(await snapshot()).toEqual(before);
  });

  it('expires per-second counters within 2 s and the daily hashes (requests, tokens and cost) after two days', async () => {
    const p = product('ttl');
    await admit(store, p, 'sam', NONE, SECOND, DAY);
    await reserve(store, p, 'sam', 10, 0, 0, DAY);
    await store.addCost(p, 'sam', 7_200, DAY, 'shared');
    for (const key of [`kg:{${p}}:qps:${SECOND}`, `kg:{${p}}:qps:${SECOND}:u:sam`]) {
      const ttl = await redis.pttl(key);
      expect(ttl).toBeGreaterThan(0);
      expect(ttl).toBeLessThanOrEqual(2000);
    }
    // The cost hash shares the request counters' hash tag (their Redis Cluster slot).
    for (const key of [`kg:{${p}}:req:${DAY}`, `kg:{${p}}:tok:${DAY}`, `kg:{${p}}:cost:${DAY}`]) {
      const ttl = await redis.ttl(key);
      expect(ttl).toBeGreaterThan(86_400);
      expect(ttl).toBeLessThanOrEqual(2 * 86_400);
    }
  });

  it('reports the remaining lifetime of each counter (a hash field: its hash), and users with any characters in the usage', async () => {
    const p = product('odd-users');
    const outcome = await store.hit([
      { key: `kg:{${p}}:x`, limit: 0, ttlMs: 5_000 },
      { ...counters.userPerDay(p, 'a*b?[c]:u:x', DAY), limit: 0, ttlMs: DAILY_COUNTER_TTL_MS },
    ]);
    expect(outcome).toMatchObject({ admitted: true, counts: [1, 1] });
    expect(outcome.ttlsMs[0]).toBeGreaterThan(4_000);
    expect(outcome.ttlsMs[0]).toBeLessThanOrEqual(5_000);
    expect(outcome.ttlsMs[1]).toBeGreaterThan(86_400_000);
    await admit(store, p, 'ab', NONE, SECOND, DAY);
    expect((await store.usage(p, DAY)).requests).toEqual({ total: 1, users: { 'a*b?[c]:u:x': 1, ab: 1 } });
  });

  it('shares counts between two stores on two connections (two replicas)', async () => {
    const other = new Redis(REDIS_URL, { maxRetriesPerRequest: 1 });
    try {
      const a = new RedisCounterStore(redis);
      const b = new RedisCounterStore(other);
      const p = product('replicas');
      const limits: RequestLimits = { ...NONE, userPerSecond: 10 };
      const results = await Promise.all(Array.from({ length: 22 }, (_, i) => admit(i % 2 ? a : b, p, 'tess', limits, SECOND, DAY)));
      expect(results.filter((r) => r.admitted)).toHaveLength(10);
      const reservations = await Promise.all(Array.from({ length: 10 }, (_, i) => reserve(i % 2 ? a : b, p, 'tess', 100, 450, 0, DAY)));
      expect(reservations.filter((r) => r.reserved)).toHaveLength(4);
    } finally {
      await other.quit();
    }
  });
});

describe('MemoryCounterStore expiry', () => {
  it('forgets a counter when its lifetime is over, and sweeps expired ones away', async () => {
    let now = 1_000_000;
    const store = new MemoryCounterStore(() => now);
    const hit = { key: 'kg:{p}:qps:1', limit: 2, ttlMs: 2_000 };
    await store.hit([hit]);
    expect(await store.hit([hit])).toMatchObject({ admitted: true, counts: [2], ttlsMs: [2_000] });
    expect(await store.hit([hit])).toMatchObject({ admitted: false, counts: [2] });
    now += 1_999;
    expect(await store.hit([hit])).toMatchObject({ admitted: false, ttlsMs: [1] });
    now += 1;
    expect(await store.hit([hit])).toMatchObject({ admitted: true, counts: [1], ttlsMs: [2_000] });
    await store.hit([{ key: 'kg:{p}:other', limit: 0, ttlMs: 10 }]);
    now += 5_000;
    await store.hit([{ key: 'kg:{p}:late', limit: 0, ttlMs: 10 }]);
    expect((store as unknown as { buckets: Map<string, unknown> }).buckets.size).toBe(1);
  });
});

describe('UTC day helpers', () => {
  it('names the UTC day of an instant', () => {
    expect(utcDay(Date.parse('2031-05-17T23:59:59.999Z'))).toBe('2031-05-17');
    expect(utcDay(Date.parse('2031-05-18T00:00:00.000Z'))).toBe('2031-05-18');
    // Back and forth across midnight, and before 1970: the remembered day never answers for another.
    expect(utcDay(Date.parse('2031-05-17T23:59:59.999Z'))).toBe('2031-05-17');
    expect(utcDay(Date.parse('2031-05-18T23:59:59.999Z'))).toBe('2031-05-18');
    expect(utcDay(Date.parse('2031-05-19T00:00:00.000Z'))).toBe('2031-05-19');
    expect(utcDay(Date.parse('1969-12-31T12:00:00.000Z'))).toBe('1969-12-31');
    expect(utcDay(Date.parse('1969-12-31T23:59:59.999Z'))).toBe('1969-12-31');
    expect(utcDay(Date.parse('1970-01-01T00:00:00.000Z'))).toBe('1970-01-01');
  });

  it('counts whole seconds to the next UTC midnight, at least 1', () => {
    expect(secondsToUtcMidnight(Date.parse('2031-05-17T00:00:00.000Z'))).toBe(86_400);
    expect(secondsToUtcMidnight(Date.parse('2031-05-17T23:00:00.000Z'))).toBe(3600);
    expect(secondsToUtcMidnight(Date.parse('2031-05-17T23:59:59.500Z'))).toBe(1);
    expect(secondsToUtcMidnight(Date.parse('2031-05-17T23:59:59.999Z'))).toBe(1);
  });

  it('counts whole seconds to the end of a named UTC day, at least 1 once it is over', () => {
    expect(secondsToEndOfUtcDay('2031-05-17', Date.parse('2031-05-17T00:00:00.000Z'))).toBe(86_400);
    expect(secondsToEndOfUtcDay('2031-05-17', Date.parse('2031-05-17T23:59:59.999Z'))).toBe(1);
    expect(secondsToEndOfUtcDay('2031-05-17', Date.parse('2031-05-18T00:00:00.000Z'))).toBe(1);
    expect(secondsToEndOfUtcDay('2031-05-17', Date.parse('2031-05-18T00:00:00.005Z'))).toBe(1);
    // The day of now: the same as to the next midnight.
    const now = Date.parse('2031-05-17T13:14:15.016Z');
    expect(secondsToEndOfUtcDay('2031-05-17', now)).toBe(secondsToUtcMidnight(now));
  });
});
