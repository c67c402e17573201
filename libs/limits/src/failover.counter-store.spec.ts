import { randomUUID } from 'node:crypto';
import { createServer, Socket, type AddressInfo, type Server } from 'node:net';
import { JsonLogger, RequestContext, requestContextStorage } from '@keygate/observability';
import { createRequestPathRedis, REDIS_REQUEST_WAIT_MS, RedisWaitExceededError, withinRequestWait } from '@keygate/redis';
import { Redis } from 'ioredis';
import {
  DAILY_COUNTER_TTL_MS,
  requestCounters as counters,
  SECOND_COUNTER_TTL_MS,
  type CounterStore,
  type HitOutcome,
} from './counter.store';
import { FailoverCounterStore } from './failover.counter-store';
import { RedisCounterStore } from './redis.counter-store';

// Integration spec: Redis reached directly, through a dead port, and through a local TCP proxy that
// can cut or freeze the connection (an outage without touching the shared Redis). Keys of this run only.
const REDIS_URL = process.env.API_KEY_SERVER_REDIS_URL ?? 'redis://127.0.0.1:6379';
const RUN = `spec-${randomUUID().slice(0, 8)}`;
const DAY = '2031-06-01';
const SECOND = 1_953_000_000;
interface RequestLimits {
  productPerSecond: number;
  userPerSecond: number;
  productPerDay: number;
  userPerDay: number;
}
const NONE: RequestLimits = { productPerSecond: 0, userPerSecond: 0, productPerDay: 0, userPerDay: 0 };

/** One request's four identity counters, counted as RequestLimitsGuard counts them. */
function admit(store: CounterStore, p: string, user: string, limits: RequestLimits, second: number, day: string): Promise<HitOutcome> {
  return store.hit([
    { ...counters.productPerSecond(p, second), limit: limits.productPerSecond, ttlMs: SECOND_COUNTER_TTL_MS },
    { ...counters.userPerSecond(p, user, second), limit: limits.userPerSecond, ttlMs: SECOND_COUNTER_TTL_MS },
    { ...counters.productPerDay(p, day), limit: limits.productPerDay, ttlMs: DAILY_COUNTER_TTL_MS },
    { ...counters.userPerDay(p, user, day), limit: limits.userPerDay, ttlMs: DAILY_COUNTER_TTL_MS },
  ]);
}
/** Reserves tokens alone (no request counter), as QuotaService.admit does on a route the guard counted. */
async function reserve(store: CounterStore, p: string, user: string, tokens: number, productCap: number, userCap: number, day: string) {
  const outcome = await store.hit([], { product: p, user, tokens, productCap, userCap, day });
  return outcome.admitted ? { reserved: true as const, store: outcome.store } : { reserved: false as const, refusedBy: outcome.refusedBy };
}
/**
 * Reserves a cost estimate (`nanoUsd`, 0: a check alone) against budgets alone (no request counter), as
 * QuotaService.admit does on a route the guard counted.
 */
async function spend(
  store: CounterStore,
  p: string,
  user: string,
  productCapNanoUsd: number,
  userCapNanoUsd: number,
  day: string,
  nanoUsd = 0,
) {
  const outcome = await store.hit([], undefined, { product: p, user, nanoUsd, productCapNanoUsd, userCapNanoUsd, day });
  return outcome.admitted ? { admitted: true as const, store: outcome.store } : { admitted: false as const, refusedBy: outcome.refusedBy };
}
const ignore = (): void => undefined;

let seq = 0;
function product(label: string): string {
  return `${RUN}-${label}-${++seq}`;
}

function capture(): { logger: JsonLogger; lines: Array<Record<string, unknown>> } {
  const lines: Array<Record<string, unknown>> = [];
  return { logger: new JsonLogger('debug', undefined, (line) => lines.push(JSON.parse(line) as Record<string, unknown>)), lines };
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

async function timed<T>(work: () => Promise<T>): Promise<{ value: T; ms: number }> {
  const start = performance.now();
  const value = await work();
  return { value, ms: performance.now() - start };
}

async function until(what: string, probe: () => boolean | Promise<boolean>, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await probe())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/**
 * A TCP proxy in front of the real Redis that can be taken down (connections cut), frozen (bytes
 * swallowed), slowed (Redis's replies delivered `slowMs` late, in order: Redis has run the command)
 * or made deaf (commands reach Redis, its replies are swallowed).
 */
class RedisProxy {
  private server!: Server;
  private readonly sockets = new Set<Socket>();
  mode: 'up' | 'down' | 'frozen' | 'slow' | 'deaf' = 'up';
  slowMs = 400;
  /** When a command holding this text passes, the proxy turns deaf (that command reaches Redis, no reply comes back). */
  deafOn: string | undefined;
  port = 0;

  async start(): Promise<void> {
    const target = new URL(REDIS_URL);
    this.server = createServer((client) => {
      if (this.mode === 'down') return client.destroy();
      const upstream = new Socket();
      upstream.connect(Number(target.port || 6379), target.hostname);
      this.sockets.add(client).add(upstream);
      const drop = (): void => {
        client.destroy();
        upstream.destroy();
        this.sockets.delete(client);
        this.sockets.delete(upstream);
      };
      client.on('data', (chunk: Buffer) => {
        if (this.deafOn !== undefined && chunk.includes(this.deafOn)) this.mode = 'deaf';
        if (this.mode === 'up' || this.mode === 'slow' || this.mode === 'deaf') upstream.write(chunk);
      });
      // Replies delayed in 'slow' mode stay ahead of later ones, whatever the mode is by then.
      let delayed = 0;
      let chain = Promise.resolve();
      upstream.on('data', (chunk: Buffer) => {
        if (this.mode === 'frozen' || this.mode === 'down' || this.mode === 'deaf') return;
        if (this.mode === 'up' && delayed === 0) return void client.write(chunk);
        delayed++;
        const wait = this.mode === 'slow' ? this.slowMs : 0;
        chain = chain
          .then(() => new Promise((r) => setTimeout(r, wait)))
          .then(() => {
            delayed--;
            client.write(chunk);
          });
      });
      client.on('error', drop).on('close', drop);
      upstream.on('error', drop).on('close', drop);
    });
    await new Promise<void>((done) => this.server.listen(0, '127.0.0.1', done));
    this.port = (this.server.address() as AddressInfo).port;
  }

  /** The proxy's address, in the database API_KEY_SERVER_REDIS_URL names (the direct client reads that one). */
  get url(): string {
    return `redis://127.0.0.1:${this.port}${new URL(REDIS_URL).pathname}`;
  }

  /** Cuts every connection and refuses new ones, like a killed Redis. */
  down(): void {
    this.mode = 'down';
    for (const s of this.sockets) s.destroy();
    this.sockets.clear();
  }

  async stop(): Promise<void> {
    this.down();
    await new Promise<void>((done) => this.server.close(() => done()));
  }
}

let direct: Redis;

beforeAll(async () => {
  direct = new Redis(REDIS_URL, { maxRetriesPerRequest: 1 });
  await direct.ping();
});

afterAll(async () => {
  const keys = await direct.keys(`kg:{${RUN}-*`);
  if (keys.length) await direct.del(...keys);
  await direct.quit();
});

describe('FailoverCounterStore with Redis unreachable (dead port)', () => {
  let redis: Redis;
  let store: FailoverCounterStore;
  let lines: Array<Record<string, unknown>>;

  beforeAll(() => {
    redis = createRequestPathRedis('redis://127.0.0.1:1', ignore);
    const captured = capture();
    lines = captured.lines;
    store = new FailoverCounterStore(redis, captured.logger);
  });

  afterAll(() => {
    redis.disconnect();
  });

  it('answers from per-replica memory at once, well within 250 ms', async () => {
    expect(redis.status).not.toBe('ready');
    const { value, ms } = await timed(() => admit(store, product('dead'), 'alice', NONE, SECOND, DAY));
    expect(value.admitted).toBe(true);
    expect(ms).toBeLessThan(REDIS_REQUEST_WAIT_MS);
    expect(store.degraded).toBe(true);
  });

  it('still enforces every limit (never unlimited)', async () => {
    const p = product('dead-limit');
    const start = performance.now();
    const results = await Promise.all(Array.from({ length: 6 }, () => admit(store, p, 'bob', { ...NONE, userPerSecond: 5 }, SECOND, DAY)));
    expect(performance.now() - start).toBeLessThan(REDIS_REQUEST_WAIT_MS);
    expect(results.filter((r) => r.admitted)).toHaveLength(5);
    expect(results.find((r) => !r.admitted)).toMatchObject({ refusedAt: 1 });
    const reservations = await Promise.all(Array.from({ length: 5 }, () => reserve(store, p, 'bob', 40, 100, 0, DAY)));
    expect(reservations.filter((r) => r.reserved)).toHaveLength(2);
    expect((await store.usage(p, DAY)).requests.total).toBe(5);
  });

  it('logs the degradation once, not once per request', () => {
    const degraded = lines.filter((l) => String(l.message).includes('degraded'));
    expect(degraded).toHaveLength(1);
    expect(degraded[0].severity).toBe('ERROR');
  });

  it('says at exit how many settlements it could not send (Redis away to the end), rather than dropping them silently', async () => {
    const p = product('never-sent');
    const reservation = await reserve(store, p, 'kim', 1_000, 0, 0, DAY);
    expect(reservation).toMatchObject({ reserved: true, store: 'local' });
    await store.settleTokens(p, 'kim', 200 - 1_000, DAY, 'local', 1_000);
    // A cost alone (a product without token quotas) is a settlement too; one with tokens, the same one.
    await store.addCost(p, 'kim', 7_200, DAY, 'local');
    await store.addCost(p, 'lin', 7_200, DAY, 'shared');
    store.onApplicationShutdown();
    expect(lines.filter((l) => String(l.message).startsWith('token and cost settlements not sent'))).toEqual([
      expect.objectContaining({ severity: 'WARNING', settlements: 2 }),
    ]);
  });

  it('counts the cost of a request admitted in memory there, for this replica’s usage', async () => {
    const p = product('dead-cost');
    expect(await admit(store, p, 'mae', NONE, SECOND, DAY)).toMatchObject({ admitted: true, store: 'local' });
    await store.addCost(p, 'mae', 7_200, DAY, 'local');
    await store.addCost(p, 'mae', 800, DAY, 'local');
    expect(await store.usage(p, DAY)).toMatchObject({ scope: 'replica', costNanoUsd: { total: 8_000, users: { mae: 8_000 } } });
  });
  it("checks a daily budget against this replica's own costs while Redis is unreachable", async () => {
    const p = product('dead-budget');
    expect(await spend(store, p, 'ned', 1_000, 500, DAY)).toEqual({ admitted: true, store: 'local' });
    await store.addCost(p, 'ned', 500, DAY, 'local');
    expect(await spend(store, p, 'ned', 1_000, 500, DAY)).toEqual({ admitted: false, refusedBy: 'user_cost' });
    expect(await spend(store, p, 'ona', 1_000, 500, DAY)).toEqual({ admitted: true, store: 'local' });
    await store.addCost(p, 'ona', 500, DAY, 'local');
    expect(await spend(store, p, 'pia', 1_000, 500, DAY)).toEqual({ admitted: false, refusedBy: 'product_cost' });
  });

  it('reserves a cost estimate in memory while Redis is unreachable, refusing one that does not fit, and settles it there', async () => {
    const p = product('dead-budget-reserve');
    expect(await spend(store, p, 'kay', 1_000, 0, DAY, 600)).toEqual({ admitted: true, store: 'local' });
    expect(await spend(store, p, 'lee', 1_000, 0, DAY, 401)).toEqual({ admitted: false, refusedBy: 'product_cost' });
    expect((await store.usage(p, DAY)).costNanoUsd).toEqual({ total: 600, users: { kay: 600 } });
    // It cost 100: the rest of its estimate is given back, and fits the next.
    await store.addCost(p, 'kay', 100 - 600, DAY, 'local', 600);
    expect((await store.usage(p, DAY)).costNanoUsd).toEqual({ total: 100, users: { kay: 100 } });
    expect(await spend(store, p, 'lee', 1_000, 0, DAY, 900)).toEqual({ admitted: true, store: 'local' });
  });
});

describe('FailoverCounterStore through a proxy that fails and recovers', () => {
  let proxy: RedisProxy;
  let redis: Redis;
  let store: FailoverCounterStore;
  let lines: Array<Record<string, unknown>>;

  beforeEach(async () => {
    proxy = new RedisProxy();
    await proxy.start();
    redis = createRequestPathRedis(proxy.url, ignore);
    await until('the client to be ready', () => redis.status === 'ready');
    const captured = capture();
    lines = captured.lines;
    store = new FailoverCounterStore(redis, captured.logger);
  });

  afterEach(async () => {
    redis.disconnect();
    await proxy.stop();
  });

  it('counts in the shared Redis while it is up', async () => {
    const p = product('shared');
    expect((await admit(store, p, 'carol', NONE, SECOND, DAY)).admitted).toBe(true);
    expect(await direct.hget(`kg:{${p}}:req:${DAY}`, '_total')).toBe('1');
    expect(store.degraded).toBe(false);
  });

  it('falls back to memory without a wait when Redis is killed, then resumes shared counting by itself', async () => {
    const p = product('killed');
    const limits: RequestLimits = { ...NONE, userPerDay: 3 };
    expect((await admit(store, p, 'dave', limits, SECOND, DAY)).admitted).toBe(true);
    proxy.down();
    await until('the client to notice the cut', () => redis.status !== 'ready');

    // Per-replica counting goes on from the shared count it last saw (1 of 3): two more, then refused.
    const during = [];
    for (let i = 0; i < 4; i++) during.push(await timed(() => admit(store, p, 'dave', limits, SECOND, DAY)));
    expect(during.map((d) => d.value.admitted)).toEqual([true, true, false, false]);
    // The counts are the day's: the shared one seen and those counted here.
    expect(during.map((d) => d.value.counts[3])).toEqual([2, 3, 3, 3]);
    for (const d of during) expect(d.ms).toBeLessThan(REDIS_REQUEST_WAIT_MS);
    expect(lines.some((l) => l.severity === 'ERROR' && String(l.message).includes('Redis unavailable'))).toBe(true);
    // Nothing reached the shared Redis meanwhile.
    expect(await direct.hget(`kg:{${p}}:req:${DAY}`, '_total')).toBe('1');

    proxy.mode = 'up';
    await until('the client to reconnect', () => redis.status === 'ready', 8_000);
    // The two requests admitted in memory are added to the shared daily counts when Redis returns.
    await until('the outage counts to reach Redis', async () => (await direct.hget(`kg:{${p}}:req:${DAY}`, 'u:dave')) === '3');
    expect(await direct.hget(`kg:{${p}}:req:${DAY}`, '_total')).toBe('3');
    // Shared counting again: the user has their 3 a day, as they really have.
    expect((await admit(store, p, 'dave', limits, SECOND, DAY)).admitted).toBe(false);
    expect((await admit(store, p, 'dave', { ...NONE, userPerDay: 10 }, SECOND, DAY)).admitted).toBe(true);
    expect(await direct.hget(`kg:{${p}}:req:${DAY}`, '_total')).toBe('4');
    expect(await store.usage(p, DAY)).toMatchObject({ scope: 'shared', requests: { total: 4, users: { dave: 4 } } });
    expect(store.degraded).toBe(false);
    expect(lines.some((l) => l.severity === 'NOTICE' && String(l.message).includes('back on shared Redis'))).toBe(true);
  }, 15_000);

  it('says Redis refused the counting commands, not that it is unavailable, when it answers with an error; counts in memory meanwhile', async () => {
    const p = product('wrongtype');
    // A key of another type where the day's request counts go: every counting script fails on it.
    await direct.set(`kg:{${p}}:req:${DAY}`, 'not a hash');
    try {
      expect((await admit(store, p, 'hal', NONE, SECOND, DAY)).admitted).toBe(true);
      expect(store.degraded).toBe(true);
      expect(lines.filter((l) => String(l.message).startsWith('limits degraded'))).toEqual([
        expect.objectContaining({
          severity: 'ERROR',
          message: 'limits degraded to per-replica counting: Redis refused the counting commands',
          reason: expect.stringContaining('WRONGTYPE'),
        }),
      ]);
    } finally {
      await direct.del(`kg:{${p}}:req:${DAY}`);
    }
  });

  it('keeps a daily cap reached in Redis reached during an outage, and gives out only the token quota the day had left', async () => {
    const p = product('seeded');
    const capped: RequestLimits = { ...NONE, productPerDay: 2 };
    expect((await admit(store, p, 'eve', capped, SECOND, DAY)).admitted).toBe(true);
    expect((await admit(store, p, 'flo', capped, SECOND, DAY)).admitted).toBe(true);
    expect(await reserve(store, p, 'eve', 700, 1_000, 0, DAY)).toEqual({ reserved: true, store: 'shared' });
    proxy.down();
    await until('the client to notice the cut', () => redis.status !== 'ready');
    // The product's 2 a day were used in Redis: refused in memory too (another user as well), nothing counted.
    const refused = await admit(store, p, 'gus', capped, SECOND, DAY);
    expect(refused).toMatchObject({ admitted: false, refusedAt: 2 });
    expect(refused.counts[2]).toBe(2);
    // 300 of the product's 1000 tokens were left: 200 fit, another 200 do not.
    expect(await reserve(store, p, 'gus', 200, 1_000, 0, DAY)).toEqual({ reserved: true, store: 'local' });
    expect(await reserve(store, p, 'gus', 200, 1_000, 0, DAY)).toEqual({ reserved: false, refusedBy: 'product_tokens' });
    // A user quota the same way: eve had 700 of 800.
    expect(await reserve(store, p, 'eve', 101, 0, 800, DAY)).toEqual({ reserved: false, refusedBy: 'user_tokens' });
    proxy.mode = 'up';
    await until('the client to reconnect', () => redis.status === 'ready', 8_000);
    // The outage request used its 200: its usage reaches the shared total when it settles.
    await store.settleTokens(p, 'gus', 0, DAY, 'local', 200);
    await until('the outage tokens to reach Redis', async () => (await direct.hget(`kg:{${p}}:tok:${DAY}`, '_total')) === '900');
    expect(await direct.hget(`kg:{${p}}:req:${DAY}`, '_total')).toBe('2');
  }, 15_000);

  it("keeps a budget the day's cost reached in Redis reached during an outage, and goes on from the cost it last saw there", async () => {
    const p = product('budget-outage');
    await store.addCost(p, 'quin', 600, DAY, 'shared');
    await until('the cost to reach Redis', async () => (await direct.hget(`kg:{${p}}:cost:${DAY}`, '_total')) === '600');
    // Seen in Redis by a request that asked a budget: 600 of the product's 1000, and all of quin's 600.
    expect(await spend(store, p, 'quin', 1_000, 600, DAY)).toEqual({ admitted: false, refusedBy: 'user_cost' });
    expect(await spend(store, p, 'rex', 1_000, 600, DAY)).toEqual({ admitted: true, store: 'shared' });
    proxy.down();
    await until('the client to notice the cut', () => redis.status !== 'ready');
    // In memory, on from what Redis held: quin's budget stays spent; the product has 400 left.
    expect(await spend(store, p, 'quin', 1_000, 600, DAY)).toEqual({ admitted: false, refusedBy: 'user_cost' });
    expect(await spend(store, p, 'rex', 1_000, 600, DAY)).toEqual({ admitted: true, store: 'local' });
    await store.addCost(p, 'rex', 400, DAY, 'local');
    expect(await spend(store, p, 'sid', 1_000, 600, DAY)).toEqual({ admitted: false, refusedBy: 'product_cost' });
    proxy.mode = 'up';
    await until('the client to reconnect', () => redis.status === 'ready', 8_000);
    // The outage's cost reaches Redis, and the shared check refuses on it.
    await until('the outage cost to reach Redis', async () => (await direct.hget(`kg:{${p}}:cost:${DAY}`, '_total')) === '1000');
    expect(await spend(store, p, 'sid', 1_000, 600, DAY)).toEqual({ admitted: false, refusedBy: 'product_cost' });
  }, 15_000);

  it("reserves cost during an outage on from the shared totals it last saw, and brings a memory reservation's whole cost (never its estimate) to Redis", async () => {
    const p = product('budget-reserve-outage');
    expect(await spend(store, p, 'tia', 1_000, 0, DAY, 600)).toEqual({ admitted: true, store: 'shared' });
    expect(await direct.hget(`kg:{${p}}:cost:${DAY}`, '_total')).toBe('600');
    proxy.down();
    await until('the client to notice the cut', () => redis.status !== 'ready');
    // 400 of the 1 000 are left (600 held by tia's request in flight): 401 does not fit, 400 does.
    expect(await spend(store, p, 'uli', 1_000, 0, DAY, 401)).toEqual({ admitted: false, refusedBy: 'product_cost' });
    expect(await spend(store, p, 'uli', 1_000, 0, DAY, 400)).toEqual({ admitted: true, store: 'local' });
    expect(await spend(store, p, 'vic', 1_000, 0, DAY, 1)).toEqual({ admitted: false, refusedBy: 'product_cost' });
    proxy.mode = 'up';
    await until('the client to reconnect', () => redis.status === 'ready', 8_000);
    // uli's request (admitted in memory) cost 150, tia's (in Redis) 500.
    await store.addCost(p, 'uli', 150 - 400, DAY, 'local', 400);
    await store.addCost(p, 'tia', 500 - 600, DAY, 'shared', 600);
    await store.beforeApplicationShutdown(); // sends what is still batched
    expect(await direct.hgetall(`kg:{${p}}:cost:${DAY}`)).toEqual({ _total: '650', 'u:tia': '500', 'u:uli': '150' });
  }, 15_000);

  it('counts a second outage of the day on from Redis, which holds the first one’s requests, not twice', async () => {
    const p = product('two-outages');
    const limits: RequestLimits = { ...NONE, userPerDay: 10 };
    const cut = async (): Promise<void> => {
      proxy.down();
      await until('the client to notice the cut', () => redis.status !== 'ready');
    };
    const restore = async (): Promise<void> => {
      proxy.mode = 'up';
      await until('the client to reconnect', () => redis.status === 'ready', 8_000);
    };
    expect((await admit(store, p, 'hank', limits, SECOND, DAY)).admitted).toBe(true);
    await cut();
    for (let i = 0; i < 2; i++) expect((await admit(store, p, 'hank', limits, SECOND, DAY)).admitted).toBe(true);
    await restore();
    await until('the first outage’s counts to reach Redis', async () => (await direct.hget(`kg:{${p}}:req:${DAY}`, 'u:hank')) === '3');
    // No request between the outages: what this replica knows of Redis is what it saw plus what it sent.
    await cut();
    const second = [];
    for (let i = 0; i < 8; i++) second.push((await admit(store, p, 'hank', limits, SECOND + 1, DAY)).admitted);
    expect(second).toEqual([true, true, true, true, true, true, true, false]);
    await restore();
    await until('the second outage’s counts to reach Redis', async () => (await direct.hget(`kg:{${p}}:req:${DAY}`, 'u:hank')) === '10');
  }, 20_000);

  it('remembers what Redis holds for a counter it only counted during an outage, so the next outage refuses a cap already reached', async () => {
    const p = product('outage-only');
    const limits: RequestLimits = { ...NONE, userPerDay: 3 };
    proxy.down();
    await until('the client to notice the cut', () => redis.status !== 'ready');
    const first = [];
    for (let i = 0; i < 4; i++) first.push((await admit(store, p, 'jo', limits, SECOND, DAY)).admitted);
    expect(first).toEqual([true, true, true, false]);
    proxy.mode = 'up';
    await until('the client to reconnect', () => redis.status === 'ready', 8_000);
    await until('the outage counts to reach Redis', async () => (await direct.hget(`kg:{${p}}:req:${DAY}`, 'u:jo')) === '3');
    proxy.down();
    await until('the client to notice the cut', () => redis.status !== 'ready');
    expect((await admit(store, p, 'jo', limits, SECOND + 1, DAY)).admitted).toBe(false);
    proxy.mode = 'up';
    await until('the client to reconnect', () => redis.status === 'ready', 8_000);
    expect(await direct.hget(`kg:{${p}}:req:${DAY}`, 'u:jo')).toBe('3');
  }, 20_000);

  it("remembers the day's cost Redis holds once an outage's costs reach it, so the next outage refuses a budget already spent", async () => {
    const p = product('budget-outages');
    proxy.down();
    await until('the client to notice the cut', () => redis.status !== 'ready');
    expect(await spend(store, p, 'kit', 1_000, 0, DAY)).toEqual({ admitted: true, store: 'local' });
    await store.addCost(p, 'kit', 1_000, DAY, 'local');
    expect(await spend(store, p, 'kit', 1_000, 0, DAY)).toEqual({ admitted: false, refusedBy: 'product_cost' });
    proxy.mode = 'up';
    await until('the client to reconnect', () => redis.status === 'ready', 8_000);
    await until('the outage cost to reach Redis', async () => (await direct.hget(`kg:{${p}}:cost:${DAY}`, '_total')) === '1000');
    await sleep(100);
    // No request between the outages: the cost this replica sent is the day's it knows of.
    proxy.down();
    await until('the client to notice the cut', () => redis.status !== 'ready');
    expect(await spend(store, p, 'kit', 1_000, 0, DAY)).toEqual({ admitted: false, refusedBy: 'product_cost' });
    expect(await spend(store, p, 'lou', 1_000, 0, DAY)).toEqual({ admitted: false, refusedBy: 'product_cost' });
  }, 20_000);

  it('drops the marker of a settlement Redis confirmed with the next send (no key left behind per settlement)', async () => {
    const p = product('marker-dropped');
    expect(await reserve(store, p, 'ivy', 1_000, 0, 0, DAY)).toMatchObject({ reserved: true, store: 'shared' });
    await store.settleTokens(p, 'ivy', -600, DAY, 'shared');
    expect(await direct.hget(`kg:{${p}}:tok:${DAY}`, 'u:ivy')).toBe('400');
    expect(await direct.keys(`kg:{${p}}:op:*`)).toHaveLength(1);
    await store.settleTokens(p, 'ivy', -100, DAY, 'shared');
    // The first marker went with the second settlement; the second waits for the next one.
    await until('the first marker to be dropped', async () => (await direct.keys(`kg:{${p}}:op:*`)).length === 1);
    expect(await direct.hget(`kg:{${p}}:tok:${DAY}`, 'u:ivy')).toBe('300');
  });

  it('finds a Redis that stalls while connected when /readyz or the metric asks, with no request needed', async () => {
    proxy.slowMs = 1_000;
    proxy.mode = 'slow';
    expect(store.degraded).toBe(false);
    expect(await store.checkShared()).toBe(false);
    // As a request that waited in vain would: counting degrades, and the ERROR line says so.
    expect(store.degraded).toBe(true);
    expect(lines.filter((l) => l.severity === 'ERROR' && /limits degraded/.test(String(l.message)))).toHaveLength(1);
    proxy.mode = 'up';
    await until('the cool-off to end', () => !store.degraded, 3_000);
    expect(await store.checkShared()).toBe(true);
  });

  it('skips, during the cool-off, a Redis another user of the connection has just waited on in vain (a request waits once, not once per user)', async () => {
    const p = product('silenced');
    // The stored responses (or the admin throttle) waited in vain on this connection.
    await expect(withinRequestWait(new Promise<never>(() => undefined), redis)).rejects.toBeInstanceOf(RedisWaitExceededError);
    expect(store.degraded).toBe(true);
    expect(await admit(store, p, 'ivy', NONE, SECOND, DAY)).toMatchObject({ admitted: true, store: 'local' });
    expect(await direct.hget(`kg:{${p}}:req:${DAY}`, '_total')).toBeNull();
    const degradedLines = lines.filter((l) => l.severity === 'ERROR' && /limits degraded/.test(String(l.message)));
    expect(degradedLines).toHaveLength(1);
    expect(degradedLines[0].reason).toMatch(/did not answer within/);
  });

  it('waits at most one command timeout on a hung Redis, then skips it during the cool-off', async () => {
    const p = product('frozen');
    proxy.mode = 'frozen';
    const first = await timed(() => admit(store, p, 'erin', { ...NONE, userPerSecond: 2 }, SECOND, DAY));
    expect(first.value.admitted).toBe(true);
    expect(first.ms).toBeGreaterThanOrEqual(REDIS_REQUEST_WAIT_MS - 20);
    expect(first.ms).toBeLessThan(REDIS_REQUEST_WAIT_MS + 100);
    const next = await Promise.all(
      Array.from({ length: 3 }, () => timed(() => admit(store, p, 'erin', { ...NONE, userPerSecond: 2 }, SECOND, DAY))),
    );
    for (const n of next) expect(n.ms).toBeLessThan(50);
    // Still a limit while degraded: 2 per second for the user, counted in memory.
    expect(next.map((n) => n.value.admitted)).toEqual([true, false, false]);
    expect(store.degraded).toBe(true);
  });

  it('settles a reservation taken in memory during an outage to memory, and brings its whole usage (not its delta) to the recovered shared Redis', async () => {
    // A stream starts while Redis is down (its estimate reserved in per-replica memory) and ends after
    // Redis is back. Its settle (actual − estimate, typically a large negative number) must not be
    // applied to the shared counter, which never held the estimate: that would lower the product's
    // shared total below what was really used (and let it go negative). What it really used must
    // reach the shared total, though, or the day's quota forgets the outage.
    const p = product('cross-settle');
    const first = await reserve(store, p, 'fay', 500, 10_000, 0, DAY);
    expect(first).toMatchObject({ reserved: true, store: 'shared' });
    proxy.down();
    await until('the client to notice the cut', () => redis.status !== 'ready');
    const estimate = 4_100;
    const during = await reserve(store, p, 'fay', estimate, 10_000, 0, DAY);
    expect(during).toMatchObject({ reserved: true, store: 'local' });
    proxy.mode = 'up';
    await until('the client to reconnect', () => redis.status === 'ready', 8_000);
    await store.settleTokens(p, 'fay', 100 - estimate, DAY, 'local', estimate); // the outage request used 100 tokens
    await store.settleTokens(p, 'fay', 400 - 500, DAY, 'shared', 500); // the first request used 400
    await store.beforeApplicationShutdown(); // sends what is still batched
    // Both requests' real usage, 400 + 100, and nothing of the outage request's estimate.
    expect(Number(await direct.hget(`kg:{${p}}:tok:${DAY}`, '_total'))).toBe(500);
    expect(Number(await direct.hget(`kg:{${p}}:tok:${DAY}`, 'u:fay'))).toBe(500);
  }, 15_000);

  it('sends again a settlement the connection dropped before it reached Redis, once Redis is back', async () => {
    const p = product('unsent-settle');
    expect(await reserve(store, p, 'hal', 5_000, 100_000, 0, DAY)).toMatchObject({ reserved: true, store: 'shared' });
    proxy.mode = 'frozen';
    const settled = store.settleTokens(p, 'hal', 400 - 5_000, DAY, 'shared');
    await sleep(100); // the batch is written into the frozen connection
    proxy.down();
    await settled;
    expect(await direct.hget(`kg:{${p}}:tok:${DAY}`, '_total')).toBe('5000');
    proxy.mode = 'up';
    await until('the settlement to reach Redis', async () => (await direct.hget(`kg:{${p}}:tok:${DAY}`, '_total')) === '400', 8_000);
    expect(await direct.hget(`kg:{${p}}:tok:${DAY}`, 'u:hal')).toBe('400');
  }, 15_000);

  it('logs what a batch send meets without the id of the request whose settlement happened to start the batch', async () => {
    // The batch carries the settlements of every request that ended within it; its timer must not
    // run in the context of the first one, whose response may be long gone.
    const p = product('batch-context');
    expect(await reserve(store, p, 'ivy', 1_000, 100_000, 0, DAY)).toMatchObject({ reserved: true, store: 'shared' });
    proxy.mode = 'frozen';
    const ctx = new RequestContext('req-started-the-batch', 'POST', '/v1/chat/completions', process.hrtime.bigint(), null, true);
    const settled = requestContextStorage.run(ctx, () => store.settleTokens(p, 'ivy', 100 - 1_000, DAY, 'shared'));
    await sleep(100); // the batch is written into the frozen connection
    proxy.down();
    await settled;
    const degraded = lines.filter((l) => String(l.message).startsWith('limits degraded'));
    expect(degraded).toHaveLength(1);
    expect(degraded[0]).not.toHaveProperty('requestId');
    expect(JSON.stringify(lines)).not.toContain('req-started-the-batch');
    proxy.mode = 'up';
    await until('the settlement to reach Redis', async () => (await direct.hget(`kg:{${p}}:tok:${DAY}`, '_total')) === '100', 8_000);
  }, 15_000);

  it('applies once a settlement Redis ran whose reply the dropped connection lost, though it is sent again', async () => {
    const p = product('reply-lost');
    expect(await reserve(store, p, 'ida', 5_000, 100_000, 0, DAY)).toMatchObject({ reserved: true, store: 'shared' });
    const requestCounts = { key: `kg:{${p}}:req:${DAY}`, field: 'u:ida', ttlMs: 86_400_000 };
    proxy.mode = 'deaf';
    const settled = store.settleTokens(p, 'ida', 400 - 5_000, DAY, 'shared');
    await until('Redis to run the settlement', async () => (await direct.hget(`kg:{${p}}:tok:${DAY}`, '_total')) === '400');
    proxy.down();
    await settled;
    const monitor = await direct.monitor();
    let resent = 0;
    monitor.on('monitor', (_time: string, args: string[]) => {
      if (/^eval/i.test(args[0]) && args.some((a) => a.includes(p)) && args.includes('-4600')) resent++;
    });
    try {
      proxy.mode = 'up';
      await until('the settlement to be sent again', () => resent > 0, 8_000);
    } finally {
      monitor.disconnect();
    }
    // The resend carried the same operation id: Redis, having applied it, ignored it (applied twice, the
    // total would have gone to 400 − 4600, kept at 0). A request count sent the same way is applied once too.
    const shared = new RedisCounterStore(direct);
    await shared.addOnce(requestCounts, 3, 'op-1');
    await shared.addOnce(requestCounts, 3, 'op-1');
    expect(await direct.hget(`kg:{${p}}:tok:${DAY}`, '_total')).toBe('400');
    expect(await direct.hget(`kg:{${p}}:tok:${DAY}`, 'u:ida')).toBe('400');
    expect(await direct.hget(requestCounts.key, 'u:ida')).toBe('3');
    expect(await direct.pttl(requestCounts.key)).toBeGreaterThan(0);
  }, 15_000);

  it('gives back a reservation Redis took after the request stopped waiting and counted it in memory', async () => {
    const p = product('late-reserve');
    proxy.mode = 'slow';
    const reservation = await reserve(store, p, 'gil', 5_000, 100_000, 0, DAY);
    // The request went on with a reservation in memory…
    expect(reservation).toMatchObject({ reserved: true, store: 'local' });
    proxy.mode = 'up';
    // …and the shared one, taken when Redis ran the script, is returned when the late reply arrives.
    await until('the late reservation to be given back', async () => (await direct.hget(`kg:{${p}}:tok:${DAY}`, '_total')) === '0');
    expect(await direct.hget(`kg:{${p}}:tok:${DAY}`, 'u:gil')).toBe('0');
    await until('the cool-off to end', () => !store.degraded, 3_000);
  }, 15_000);

  it('gives back a cost reservation Redis took after the request stopped waiting and reserved it in memory', async () => {
    const p = product('late-cost-reserve');
    proxy.mode = 'slow';
    expect(await spend(store, p, 'gwen', 100_000, 0, DAY, 5_000)).toEqual({ admitted: true, store: 'local' });
    proxy.mode = 'up';
    await until('the late cost reservation to be given back', async () => (await direct.hget(`kg:{${p}}:cost:${DAY}`, '_total')) === '0');
    expect(await direct.hget(`kg:{${p}}:cost:${DAY}`, 'u:gwen')).toBe('0');
    await until('the cool-off to end', () => !store.degraded, 3_000);
  }, 15_000);

  it('sends the settlements of one product, user and day as one script per batch, resolving once applied', async () => {
    const p = product('batched-settle');
    expect(await reserve(store, p, 'kai', 1_000, 0, 0, DAY)).toMatchObject({ reserved: true, store: 'shared' });
    const monitor = await direct.monitor();
    const settles: string[][] = [];
    monitor.on('monitor', (_time: string, args: string[]) => {
      // Scripts only (MONITOR also shows the commands a script runs).
      if (/^eval/i.test(args[0]) && args.some((a) => a.includes(p)) && args.includes('u:kai')) settles.push(args);
    });
    try {
      await Promise.all(Array.from({ length: 20 }, () => store.settleTokens(p, 'kai', -10, DAY, 'shared')));
      // Resolved: applied in Redis, all 20 as one delta of -200.
      expect(await direct.hget(`kg:{${p}}:tok:${DAY}`, 'u:kai')).toBe('800');
      await until('the monitor to report the commands', () => settles.some((a) => a.includes('-200')));
      expect(settles.filter((a) => a.includes('-200'))).toHaveLength(1);
      expect(settles.filter((a) => a.includes('-10'))).toHaveLength(0);
    } finally {
      monitor.disconnect();
    }
  });

  it('admits a request that fits once the settlements still batched are applied, rather than refusing it until midnight', async () => {
    const p = product('batched-refusal');
    // A user's answer reserved 4 100 of its 6 000 and used 13: its settlement waits in the batch.
    expect(await reserve(store, p, 'mo', 4_100, 0, 6_000, DAY)).toMatchObject({ reserved: true, store: 'shared' });
    const settled = store.settleTokens(p, 'mo', 13 - 4_100, DAY, 'shared');
    // Its next request, at once: 13 + 4 100 fits in 6 000.
    expect(await reserve(store, p, 'mo', 4_100, 0, 6_000, DAY)).toMatchObject({ reserved: true, store: 'shared' });
    await settled;
    expect(await direct.hget(`kg:{${p}}:tok:${DAY}`, 'u:mo')).toBe('4113');
    // The same for the product's quota, given back by another user's settlement.
    const q = product('batched-refusal-product');
    expect(await reserve(store, q, 'ned', 4_100, 6_000, 0, DAY)).toMatchObject({ reserved: true });
    void store.settleTokens(q, 'ned', 13 - 4_100, DAY, 'shared');
    expect(await reserve(store, q, 'ola', 4_100, 6_000, 0, DAY)).toMatchObject({ reserved: true });
    // What does not fit even so is refused as before.
    expect(await reserve(store, q, 'ola', 4_100, 6_000, 0, DAY)).toEqual({ reserved: false, refusedBy: 'product_tokens' });
    expect(await direct.hget(`kg:{${p}}:tok:${DAY}`, '_total')).toBe('4113');
    expect(await direct.hget(`kg:{${q}}:tok:${DAY}`, '_total')).toBe('4113');
  });

  it("admits a request whose cost estimate fits once the batched settlements give back an answer's unused estimate, rather than refusing it until midnight", async () => {
    const p = product('batched-cost-refusal');
    expect(await spend(store, p, 'mo', 0, 6_000, DAY, 4_100)).toEqual({ admitted: true, store: 'shared' });
    // It cost 13: the settlement waits in the batch; the next request, at once, fits in 13 + 4 100.
    const settled = store.addCost(p, 'mo', 13 - 4_100, DAY, 'shared', 4_100);
    expect(await spend(store, p, 'mo', 0, 6_000, DAY, 4_100)).toEqual({ admitted: true, store: 'shared' });
    await settled;
    expect(await direct.hget(`kg:{${p}}:cost:${DAY}`, 'u:mo')).toBe('4113');
    // What does not fit even so is refused as before.
    expect(await spend(store, p, 'mo', 0, 6_000, DAY, 4_100)).toEqual({ admitted: false, refusedBy: 'user_cost' });
  });

  it('asks Redis once for a request a request limit refused (no token quota did), though settlements of its product wait in the batch', async () => {
    const p = product('counter-refusal');
    const perSecond = { ...counters.userPerSecond(p, 'rex', SECOND), limit: 1, ttlMs: SECOND_COUNTER_TTL_MS };
    const ask = { product: p, user: 'rex', tokens: 100, productCap: 100_000, userCap: 0, day: DAY };
    // As the chat route admits: the request counters and the reservation in one step.
    expect(await store.hit([perSecond], ask)).toMatchObject({ admitted: true, store: 'shared' });
    void store.settleTokens(p, 'rex', 10 - 100, DAY, 'shared');
    const monitor = await direct.monitor();
    const marker = `kg:{${p}}:marker`;
    let asked = 0;
    let markerSeen = false;
    monitor.on('monitor', (_time: string, args: string[]) => {
      if (/^eval/i.test(args[0]) && args.includes(perSecond.key)) asked++;
      if (args.includes(marker)) markerSeen = true;
    });
    try {
      // Refused by its per-second limit: the settlements waiting would not make room in it.
      expect(await store.hit([perSecond], ask)).toMatchObject({ admitted: false, refusedAt: 0 });
      await direct.get(marker);
      await until('the monitor to report the commands', () => markerSeen);
      expect(asked).toBe(1);
    } finally {
      monitor.disconnect();
    }
  });

  it('asks again for each of the requests refused together, not only the one that sent the batch', async () => {
    const p = product('batched-refusal-together');
    expect(await reserve(store, p, 'quinn', 4_100, 0, 6_000, DAY)).toMatchObject({ reserved: true, store: 'shared' });
    void store.settleTokens(p, 'quinn', 13 - 4_100, DAY, 'shared');
    // Two requests at once, both refused by Redis before the batch goes: 13 + 2 000 + 2 000 fits in 6 000.
    const both = await Promise.all([reserve(store, p, 'quinn', 2_000, 0, 6_000, DAY), reserve(store, p, 'quinn', 2_000, 0, 6_000, DAY)]);
    expect(both).toEqual([
      { reserved: true, store: 'shared' },
      { reserved: true, store: 'shared' },
    ]);
    expect(await direct.hget(`kg:{${p}}:tok:${DAY}`, 'u:quinn')).toBe('4013');
  });

  it('gives up on the settlements it sends before asking again as it waits on any Redis command: a stalled Redis leaves the refusal as it was', async () => {
    const p = product('batched-refusal-stall');
    expect(await reserve(store, p, 'pia', 4_100, 0, 6_000, DAY)).toMatchObject({ reserved: true, store: 'shared' });
    void store.settleTokens(p, 'pia', 13 - 4_100, DAY, 'shared');
    // Redis runs the batch sent for the next request but its reply never comes (a stall).
    proxy.deafOn = `kg:{${p}}:op:`;
    const degraded = (): boolean => lines.some((l) => String(l.message).includes('degraded'));
    expect(await reserve(store, p, 'pia', 4_100, 0, 6_000, DAY)).toEqual({ reserved: false, refusedBy: 'user_tokens' });
    // Answered while the batch still waits for its reply: not held until the client gives the command up.
    expect(degraded()).toBe(false);
    await until('the client to give the batch up', degraded, 5_000);
  }, 15_000);

  it('sends the settlements still batched when the application shuts down, and those after it at once', async () => {
    const p = product('shutdown-settle');
    expect(await reserve(store, p, 'lou', 1_000, 0, 0, DAY)).toMatchObject({ reserved: true });
    void store.settleTokens(p, 'lou', -600, DAY, 'shared');
    await store.beforeApplicationShutdown();
    expect(await direct.hget(`kg:{${p}}:tok:${DAY}`, 'u:lou')).toBe('400');
    // A request that finishes during the drain, just before Redis is closed: sent at once, not in a
    // batch that would come after the close.
    const settled = store.settleTokens(p, 'lou', -100, DAY, 'shared');
    await new Promise((r) => setImmediate(r));
    await redis.quit();
    await settled;
    expect(await direct.hget(`kg:{${p}}:tok:${DAY}`, 'u:lou')).toBe('300');
  });

  it('settles a shared reservation during the cool-off after an unrelated slow command', async () => {
    const p = product('cool-off-settle');
    expect(await reserve(store, p, 'hal', 5_000, 100_000, 0, DAY)).toMatchObject({ reserved: true, store: 'shared' });
    proxy.mode = 'slow';
    await admit(store, p, 'ivy', NONE, SECOND, DAY); // one slow reply: the store cools off
    proxy.mode = 'up';
    expect(store.degraded).toBe(true);
    await store.settleTokens(p, 'hal', 100 - 5_000, DAY, 'shared');
    expect(await direct.hget(`kg:{${p}}:tok:${DAY}`, 'u:hal')).toBe('100');
    await until('the cool-off to end', () => !store.degraded, 3_000);
  }, 15_000);

  it('brings daily request counts taken in memory to Redis when it returns, less those given back, and not the per-second ones', async () => {
    const p = product('replayed');
    proxy.down();
    await until('the client to notice the cut', () => redis.status !== 'ready');
    for (const user of ['kai', 'kai', 'lea'])
      expect(await admit(store, p, user, NONE, SECOND, DAY)).toMatchObject({ admitted: true, store: 'local' });
    // One of kai's requests was refused later (an invalid body): given back, so not brought to Redis.
    // With their lifetime, as the request guard gives them (RequestLimitsGuard's dailyCounters).
    const daily = (ref: { key: string; field?: string }) => ({ ...ref, ttlMs: DAILY_COUNTER_TTL_MS });
    await store.release([daily(counters.productPerDay(p, DAY)), daily(counters.userPerDay(p, 'kai', DAY))], 'local');
    expect(await store.usage(p, DAY)).toMatchObject({ scope: 'replica', requests: { total: 2, users: { kai: 1, lea: 1 } } });
    expect(await direct.exists(`kg:{${p}}:req:${DAY}`)).toBe(0);

    proxy.mode = 'up';
    await until('the client to reconnect', () => redis.status === 'ready', 8_000);
    await until('the outage counts to reach Redis', async () => (await direct.hget(`kg:{${p}}:req:${DAY}`, '_total')) === '2');
    expect(await direct.hgetall(`kg:{${p}}:req:${DAY}`)).toEqual({ _total: '2', 'u:kai': '1', 'u:lea': '1' });
    // A new counter gets its lifetime, as an admission would give it.
    expect(await direct.pttl(`kg:{${p}}:req:${DAY}`)).toBeGreaterThan(DAILY_COUNTER_TTL_MS - 60_000);
    expect(await direct.exists(`kg:{${p}}:qps:${SECOND}`, `kg:{${p}}:qps:${SECOND}:u:kai`)).toBe(0);
    expect(await store.usage(p, DAY)).toMatchObject({ scope: 'shared', requests: { total: 2 } });
    // Sent once: nothing is held any more.
    await store.beforeApplicationShutdown();
    expect(await direct.hget(`kg:{${p}}:req:${DAY}`, '_total')).toBe('2');
  }, 15_000);

  it('does not bring a request to Redis twice when Redis counted it after all (a late reply)', async () => {
    const p = product('late-hit');
    proxy.mode = 'slow';
    expect(await admit(store, p, 'max', NONE, SECOND, DAY)).toMatchObject({ admitted: true, store: 'local' });
    proxy.mode = 'up';
    // Redis ran the script: its late reply takes the request off the counts held for Redis.
    await until('the late admission to land', async () => (await direct.hget(`kg:{${p}}:req:${DAY}`, 'u:max')) === '1');
    await until('the cool-off to end', () => !store.degraded, 3_000);
    await store.beforeApplicationShutdown(); // sends whatever is held
    expect(await direct.hgetall(`kg:{${p}}:req:${DAY}`)).toEqual({ _total: '1', 'u:max': '1' });
  }, 15_000);

  it('takes a request back from Redis when its late reply comes after its held count was sent (a stalled Redis, still connected)', async () => {
    const p = product('late-after-send');
    proxy.mode = 'slow'; // Redis runs each command at once; its replies come 400 ms late
    expect(await admit(store, p, 'oda', NONE, SECOND, DAY)).toMatchObject({ admitted: true, store: 'local' });
    // Another request's settlement sends the batch, this request's held count with it, before the
    // late reply arrives: Redis has now counted it twice.
    await store.settleTokens(p, 'oda', 10, DAY, 'shared');
    proxy.mode = 'up';
    await until('the cool-off to end', () => !store.degraded, 3_000);
    await store.beforeApplicationShutdown();
    // The late reply took the second count back from Redis itself.
    await until('the correction to land', async () => (await direct.hget(`kg:{${p}}:req:${DAY}`, 'u:oda')) === '1');
    expect(await direct.hgetall(`kg:{${p}}:req:${DAY}`)).toEqual({ _total: '1', 'u:oda': '1' });
  }, 15_000);

  it('takes a request refused after its count was sent (a local admission, then a batch) back from Redis', async () => {
    const p = product('released-after-send');
    proxy.mode = 'slow';
    expect(await admit(store, p, 'pia', NONE, SECOND, DAY)).toMatchObject({ admitted: true, store: 'local' });
    proxy.mode = 'up';
    await until('the cool-off to end', () => !store.degraded, 3_000);
    // Counted in memory during the cool-off and held; a settlement sends the batch, the count with it.
    expect(await admit(store, p, 'pia', NONE, SECOND, DAY)).toMatchObject({ store: 'shared' });
    await until(
      'the late reply and the shared admission to land',
      async () => (await direct.hget(`kg:{${p}}:req:${DAY}`, 'u:pia')) === '2',
    );
    proxy.mode = 'slow';
    expect(await admit(store, p, 'pia', NONE, SECOND, DAY)).toMatchObject({ admitted: true, store: 'local' });
    await store.settleTokens(p, 'pia', 10, DAY, 'shared');
    proxy.mode = 'up';
    await until('the cool-off to end', () => !store.degraded, 3_000);
    await store.beforeApplicationShutdown();
    // That last request is then refused (its client left before any upstream call): given back.
    const daily = (ref: { key: string; field?: string }) => ({ ...ref, ttlMs: DAILY_COUNTER_TTL_MS });
    await store.release([daily(counters.productPerDay(p, DAY)), daily(counters.userPerDay(p, 'pia', DAY))], 'local');
    await until('the count to be taken back', async () => (await direct.hget(`kg:{${p}}:req:${DAY}`, 'u:pia')) === '2');
    expect(await direct.hgetall(`kg:{${p}}:req:${DAY}`)).toEqual({ _total: '2', 'u:pia': '2' });
  }, 20_000);

  it('sends what it held during a cool-off once a slow Redis answers in time again (no reconnect, no settlements)', async () => {
    const p = product('slow-back');
    proxy.mode = 'slow';
    // Counted in memory; Redis counts it too, late, so it is not held.
    expect(await admit(store, p, 'ned', NONE, SECOND, DAY)).toMatchObject({ admitted: true, store: 'local' });
    // During the cool-off: in memory, held for Redis.
    for (let i = 0; i < 2; i++) expect(await admit(store, p, 'ned', NONE, SECOND, DAY)).toMatchObject({ admitted: true, store: 'local' });
    proxy.mode = 'up';
    await until('the cool-off to end', () => !store.degraded, 3_000);
    expect(await admit(store, p, 'ned', NONE, SECOND, DAY)).toMatchObject({ admitted: true, store: 'shared' });
    expect(redis.status).toBe('ready');
    await until('the held counts to reach Redis', async () => (await direct.hget(`kg:{${p}}:req:${DAY}`, 'u:ned')) === '4');
    expect(await direct.hget(`kg:{${p}}:req:${DAY}`, '_total')).toBe('4');
  }, 15_000);

  it('sends a request’s cost with the batch of its tokens’ settlement: one script per product, user and day, the cost in its own hash', async () => {
    const p = product('batched-cost');
    expect(await reserve(store, p, 'ada', 1_000, 0, 0, DAY)).toMatchObject({ reserved: true, store: 'shared' });
    const monitor = await direct.monitor();
    const scripts: string[][] = [];
    monitor.on('monitor', (_time: string, args: string[]) => {
      if (/^eval/i.test(args[0]) && args.some((a) => a.includes(p))) scripts.push(args);
    });
    try {
      // Two requests end within one batch: each settles its tokens and adds its cost.
      await Promise.all([
        store.settleTokens(p, 'ada', -900, DAY, 'shared'),
        store.addCost(p, 'ada', 7_200, DAY, 'shared'),
        store.addCost(p, 'ada', 3_100, DAY, 'shared'),
        // Another user of a product without token quotas: a cost alone.
        store.addCost(p, 'bo', 50, DAY, 'shared'),
      ]);
      expect(await direct.hgetall(`kg:{${p}}:cost:${DAY}`)).toEqual({ _total: '10350', 'u:ada': '10300', 'u:bo': '50' });
      expect(await direct.hgetall(`kg:{${p}}:tok:${DAY}`)).toEqual({ _total: '100', 'u:ada': '100' });
      await until('the monitor to report the scripts', () => scripts.length >= 2);
      await sleep(50);
      // One script per user, the tokens and the cost together; none per request.
      expect(scripts.filter((a) => a.includes('u:ada'))).toEqual([expect.arrayContaining(['-900', '10300'])]);
      expect(scripts.filter((a) => a.includes('u:bo'))).toHaveLength(1);
    } finally {
      monitor.disconnect();
    }
    expect(await store.usage(p, DAY)).toMatchObject({ scope: 'shared', costNanoUsd: { total: 10_350, users: { ada: 10_300, bo: 50 } } });
  });

  it('counts the cost of a request admitted in memory during an outage there, and brings it to Redis when it returns, once', async () => {
    const p = product('outage-cost');
    expect(await admit(store, p, 'cy', NONE, SECOND, DAY)).toMatchObject({ admitted: true, store: 'shared' });
    await store.addCost(p, 'cy', 1_000, DAY, 'shared');
    proxy.down();
    await until('the client to notice the cut', () => redis.status !== 'ready');
    expect(await admit(store, p, 'cy', NONE, SECOND, DAY)).toMatchObject({ admitted: true, store: 'local' });
    await store.addCost(p, 'cy', 7_200, DAY, 'local');
    // This replica's usage during the outage: the requests and costs it counted in memory.
    expect(await store.usage(p, DAY)).toMatchObject({
      scope: 'replica',
      requests: { users: { cy: 1 } },
      costNanoUsd: { total: 7_200, users: { cy: 7_200 } },
    });
    // A request admitted before the outage that ends during it: held for Redis, as its tokens are.
    await store.addCost(p, 'dee', 40, DAY, 'shared');
    expect(await direct.hgetall(`kg:{${p}}:cost:${DAY}`)).toEqual({ _total: '1000', 'u:cy': '1000' });
    proxy.mode = 'up';
    await until('the client to reconnect', () => redis.status === 'ready', 8_000);
    await until('the outage cost to reach Redis', async () => (await direct.hget(`kg:{${p}}:cost:${DAY}`, '_total')) === '8240');
    expect(await direct.hgetall(`kg:{${p}}:cost:${DAY}`)).toEqual({ _total: '8240', 'u:cy': '8200', 'u:dee': '40' });
    expect(await store.usage(p, DAY)).toMatchObject({ scope: 'shared', costNanoUsd: { total: 8_240, users: { cy: 8_200, dee: 40 } } });
    // Sent once: nothing is held any more, and the next outage starts from an empty replica.
    await store.beforeApplicationShutdown();
    expect(await direct.hget(`kg:{${p}}:cost:${DAY}`, '_total')).toBe('8240');
    proxy.down();
    await until('the client to notice the second cut', () => redis.status !== 'ready');
    expect((await store.usage(p, DAY)).costNanoUsd).toEqual({ total: 0, users: {} });
  }, 20_000);

  it('applies once a cost Redis added whose reply the dropped connection lost, though it is sent again', async () => {
    const p = product('cost-reply-lost');
    proxy.mode = 'deaf';
    const added = store.addCost(p, 'eli', 7_200, DAY, 'shared');
    await until('Redis to add the cost', async () => (await direct.hget(`kg:{${p}}:cost:${DAY}`, '_total')) === '7200');
    proxy.down();
    await added;
    const monitor = await direct.monitor();
    let resent = 0;
    monitor.on('monitor', (_time: string, args: string[]) => {
      if (/^eval/i.test(args[0]) && args.some((a) => a.includes(p)) && args.includes('7200')) resent++;
    });
    try {
      proxy.mode = 'up';
      await until('the cost to be sent again', () => resent > 0, 8_000);
    } finally {
      monitor.disconnect();
    }
    expect(await direct.hgetall(`kg:{${p}}:cost:${DAY}`)).toEqual({ _total: '7200', 'u:eli': '7200' });
    // A cost alone leaves no token field behind (no user with 0 tokens in /admin/usage).
    expect(await direct.exists(`kg:{${p}}:tok:${DAY}`)).toBe(0);
  }, 15_000);

  it('holds a settlement while Redis is away and sends it when Redis returns', async () => {
    const p = product('held-settle');
    expect(await reserve(store, p, 'jo', 5_000, 100_000, 0, DAY)).toMatchObject({ reserved: true, store: 'shared' });
    proxy.down();
    await until('the client to notice the cut', () => redis.status !== 'ready');
    await store.settleTokens(p, 'jo', 300 - 5_000, DAY, 'shared');
    expect(await direct.hget(`kg:{${p}}:tok:${DAY}`, '_total')).toBe('5000');
    proxy.mode = 'up';
    await until('the client to reconnect', () => redis.status === 'ready', 8_000);
    await until('the held settlement to reach Redis', async () => (await direct.hget(`kg:{${p}}:tok:${DAY}`, '_total')) === '300');
  }, 15_000);
});
