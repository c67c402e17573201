import { rejectionOf } from '@keygate/errors/testing';
import type { ExecutionContext } from '@nestjs/common';
import { ExecutionContextHost } from '@nestjs/core/helpers/execution-context-host';
import { Reflector } from '@nestjs/core';
import { SkipThrottle, Throttle, ThrottlerGuard } from '@nestjs/throttler';
import type { Principal } from '@keygate/auth';
import { buildPolicyBook, type GatewayConfig } from '@keygate/config';
import { attachContext, JsonLogger, RequestContext } from '@keygate/observability';
import { AutoBlocker } from './auto-blocker';
import { BlocksService } from './blocks.service';
import { AdmitInHandler } from './deferred-admission';
import { requestCounters, secondsToUtcMidnight, utcDay, type CounterStore } from './counter.store';
import { IdentityThrottlerStorage } from './identity-throttler.storage';
import { MemoryCounterStore } from './memory.counter-store';
import { QuotaService, type TokenEstimate } from './quota.service';
import { RequestLimitsGuard } from './request-limits.guard';

// Unit spec: the guard and the quota service over the in-memory store (the store itself is held to
// its contract against real Redis in counter-stores.spec.ts).

const POLICY = {
  defaults: {
    limits: {
      requests_per_second: 0,
      user_requests_per_second: 0,
      daily_requests: 0,
      user_daily_requests: 0,
      daily_tokens: 0,
      user_daily_tokens: 0,
    },
  },
  products: {
    qps: {
      limits: { user_requests_per_second: 2, user_daily_requests: 100 },
      auto_block: { rejections: 3, window_seconds: 60, block_seconds: 60 },
    },
    daily: { limits: { daily_requests: 2 } },
    busy: { limits: { daily_requests: 1 }, auto_block: { rejections: 3, window_seconds: 60, block_seconds: 60 } },
    // The product's per-second limit is the user's own: a single user fills both.
    flood: {
      limits: { requests_per_second: 2, user_requests_per_second: 2 },
      auto_block: { rejections: 3, window_seconds: 60, block_seconds: 60 },
    },
    tokens: { limits: { daily_tokens: 1000, user_daily_tokens: 600 } },
    userday: { limits: { user_daily_requests: 2 } },
    mixed: { limits: { daily_requests: 3, user_daily_requests: 10 } },
    both: { limits: { user_requests_per_second: 1, user_daily_requests: 5, daily_tokens: 1000 } },
    // One request fills both the product's per-second limit and the user's day.
    spent: { limits: { requests_per_second: 1, user_daily_requests: 1 } },
    // Daily cost budgets of $0.001 (a million billionths); their users are auto-blocked at their first own refusal.
    budget: {
      limits: { daily_cost_usd: 0.001, user_daily_requests: 10 },
      auto_block: { rejections: 1, window_seconds: 60, block_seconds: 60 },
    },
    ubudget: { limits: { user_daily_cost_usd: 0.001 }, auto_block: { rejections: 1, window_seconds: 60, block_seconds: 60 } },
  },
  prices: { 'gpt-4o-mini': { input: 0.15, output: 0.6 }, 'claude-*': { input: 3, output: 15 } },
};

/** An admission that reserved nothing (no token quota; no budget, or no estimate to price): its tokens are only counted. */
const NOTHING_RESERVED = { tokens: undefined, costNanoUsd: undefined };

/** The models a request may be answered by: priced. */
const MODELS = ['gpt-4o-mini'];

/** A request's estimate of `tokens` prompt tokens. */
const estimated = (tokens: number) => (): TokenEstimate => ({ prompt: tokens, completion: 0 });

interface Harness {
  guard: RequestLimitsGuard;
  quota: QuotaService;
  blocks: BlocksService;
  counters: CounterStore;
  lines: Array<Record<string, unknown>>;
}

async function harness(counters: CounterStore = new MemoryCounterStore()): Promise<Harness> {
  const lines: Array<Record<string, unknown>> = [];
  const logger = new JsonLogger('debug', undefined, (line) => lines.push(JSON.parse(line) as Record<string, unknown>));
  const config = { policy: buildPolicyBook(POLICY) } as unknown as GatewayConfig;
  const blocks = new BlocksService(undefined, logger);
  const autoBlocker = new AutoBlocker(config, undefined, blocks, logger);
  const guard = new RequestLimitsGuard(config, new IdentityThrottlerStorage(counters), new Reflector(), blocks, autoBlocker);
  // Nest runs this lifecycle hook at boot: the stock guard sorts and names its throttlers there.
  await guard.onModuleInit();
  return {
    guard,
    quota: new QuotaService(config, counters, autoBlocker, logger),
    blocks,
    counters,
    lines,
  };
}

/** A controller as Nest sees it: route-level throttler overrides are read from its class and handlers. */
class RouteController {
  create(): void {}
  @Throttle({ user_qps: { limit: 1, ttl: 2_000 } })
  strict(): void {}
  @SkipThrottle({ product_daily: true, user_daily: true })
  uncounted(): void {}
  @SkipThrottle({ product_daily: true })
  @Throttle({ user_daily: { limit: 2, ttl: 1_000 } })
  shortDaily(): void {}
  @AdmitInHandler()
  chat(): void {}
  // A limit only known asynchronously: the stock guard resolves it.
  @Throttle({ user_qps: { limit: () => Promise.resolve(1), ttl: 1_000 } })
  awaited(): void {}
  // A route's own tracker, which counts how often it is asked.
  @Throttle({ user_qps: { limit: 5, ttl: 1_000, getTracker: () => `tracked-${++trackerCalls}` } })
  tracked(): void {}
}
let trackerCalls = 0;

function request(
  product: string,
  user: string | null,
  handler: keyof RouteController = 'create',
): { context: ExecutionContext; headers: Map<string, unknown>; ctx: RequestContext } {
  const headers = new Map<string, unknown>();
  const principal: Principal | undefined = user === null ? undefined : { kind: 'jwt', product, user, scopes: [] };
  const raw = { setHeader: (name: string, value: unknown) => headers.set(name.toLowerCase(), value) };
  const rawRequest = {};
  const ctx = new RequestContext('req-spec', 'POST', '/v1/chat/completions', process.hrtime.bigint(), null, true);
  attachContext(rawRequest, ctx);
  const req = { user: principal, raw: rawRequest, headers: {} };
  const res = { raw };
  // Nest's own HTTP context: the request, the response, and the handler and class for route metadata.
  const context = new ExecutionContextHost([req, res], RouteController, RouteController.prototype[handler]);
  context.setType('http');
  return { context, headers, ctx };
}

/** Lets fire-and-forget auto-block work finish. */
const flush = (): Promise<void> => new Promise((r) => setImmediate(r));

/** Waits, if needed, so the next few calls fall within one wall-clock second (per-second windows). */
async function freshSecond(): Promise<void> {
  const ms = Date.now() % 1000;
  if (ms > 700) await new Promise((r) => setTimeout(r, 1010 - ms));
}

describe('RequestLimitsGuard', () => {
  it('refuses a request without a principal (it must run after the credential guard)', async () => {
    const { guard } = await harness();
    expect((await rejectionOf(guard.canActivate(request('qps', null).context))).code).toBe('invalid_token');
  });

  it('admits within the limits and sets the OpenAI-style rate-limit headers', async () => {
    const { guard } = await harness();
    const { context, headers } = request('qps', 'alice');
    await expect(guard.canActivate(context)).resolves.toBe(true);
    expect(Object.fromEntries(headers)).toEqual({ 'x-ratelimit-limit-requests': 100, 'x-ratelimit-remaining-requests': 99 });
  });

  it('answers rate_limit_exceeded (429, Retry-After 1 s) over the per-second limit, with headers, and charges nothing', async () => {
    const h = await harness();
    await freshSecond();
    await h.guard.canActivate(request('qps', 'bob').context);
    await h.guard.canActivate(request('qps', 'bob').context);
    const third = request('qps', 'bob');
    const error = await rejectionOf(h.guard.canActivate(third.context));
    expect(error.code).toBe('rate_limit_exceeded');
    expect(error.status).toBe(429);
    expect(error.spec.failure).toBe('rate_limit');
    expect(error.options.retryAfterSeconds).toBe(1);
    // The wait in OpenAI's words too: LangChain retries a 429 without headers on "try again in N s".
    expect(error.message).toBe('Rate limit reached for your requests per second; try again in 1 s');
    expect(error.options.headers).toEqual({ 'x-keygate-limit': 'user_qps' });
    expect(third.headers.get('x-ratelimit-remaining-requests')).toBe(98);
    expect((await h.counters.usage('qps', utcDay(Date.now()))).requests.users.bob).toBe(2);
  });

  it("applies a route's @Throttle override of one named throttler (the stock guard resolves it)", async () => {
    const h = await harness();
    await freshSecond();
    await expect(h.guard.canActivate(request('qps', 'una', 'strict').context)).resolves.toBe(true);
    const error = await rejectionOf(h.guard.canActivate(request('qps', 'una', 'strict').context));
    expect(error.options.headers).toEqual({ 'x-keygate-limit': 'user_qps' });
    // The same user on a route without the override still has the policy's 2 per second.
    await expect(h.guard.canActivate(request('qps', 'una').context)).resolves.toBe(true);
  });

  it("applies a route's @Throttle override where the policy has no per-second limit (0)", async () => {
    const h = await harness();
    await freshSecond();
    // Product "daily" has no per-second limits; the route sets user_qps to 1.
    await expect(h.guard.canActivate(request('daily', 'xena', 'strict').context)).resolves.toBe(true);
    const error = await rejectionOf(h.guard.canActivate(request('daily', 'xena', 'strict').context));
    expect(error.options.headers).toEqual({ 'x-keygate-limit': 'user_qps' });
  });

  it("keeps the day's counters for the day whatever ttl a route gives a daily throttler (windows are fixed)", async () => {
    // Only the clock is faked: promises and timers run as usual.
    jest.useFakeTimers({
      now: Date.parse('2031-05-17T10:00:00.000Z'),
      doNotFake: [
        'nextTick',
        'setImmediate',
        'queueMicrotask',
        'setTimeout',
        'clearTimeout',
        'setInterval',
        'clearInterval',
        'clearImmediate',
      ],
    });
    try {
      const h = await harness();
      await expect(h.guard.canActivate(request('userday', 'yuri', 'shortDaily').context)).resolves.toBe(true);
      jest.setSystemTime(Date.now() + 1_500);
      await expect(h.guard.canActivate(request('userday', 'yuri').context)).resolves.toBe(true);
      // user_daily_requests is 2: the first request, on the route with the short ttl, still counts 1.5 s later.
      expect((await rejectionOf(h.guard.canActivate(request('userday', 'yuri').context))).options.headers).toEqual({
        'x-keygate-limit': 'user_daily',
      });
    } finally {
      jest.useRealTimers();
    }
  });

  it('skips the throttlers a route opts out of with @SkipThrottle: nothing counted there', async () => {
    const h = await harness();
    const day = utcDay(Date.now());
    for (let i = 0; i < 3; i++) await expect(h.guard.canActivate(request('daily', 'vic', 'uncounted').context)).resolves.toBe(true);
    expect((await h.counters.usage('daily', day)).requests).toEqual({ total: 0, users: {} });
    await expect(h.guard.canActivate(request('daily', 'vic').context)).resolves.toBe(true);
    expect((await h.counters.usage('daily', day)).requests).toEqual({ total: 1, users: { vic: 1 } });
  });

  it("counts a request's product and user daily counters on one day when midnight passes while the guard resolves them", async () => {
    const h = await harness();
    const midnight = Date.UTC(2031, 2, 1);
    const clock = jest.spyOn(Date, 'now').mockReturnValue(midnight - 1);
    // The clock turns midnight right after the product's day counter was named, before the user's.
    const productPerDay = requestCounters.productPerDay;
    const turn = jest.spyOn(requestCounters, 'productPerDay').mockImplementation((product, day) => {
      clock.mockReturnValue(midnight);
      return productPerDay(product, day);
    });
    try {
      const r = request('mixed', 'kit');
      await expect(h.guard.canActivate(r.context)).resolves.toBe(true);
      expect(turn).toHaveBeenCalled();
      expect((await h.counters.usage('mixed', '2031-02-28')).requests).toEqual({ total: 1, users: { kit: 1 } });
      expect((await h.counters.usage('mixed', '2031-03-01')).requests).toEqual({ total: 0, users: {} });
      // Given back where it was counted, both counters alike.
      r.ctx.releaseDailyCount?.();
      await flush();
      expect((await h.counters.usage('mixed', '2031-02-28')).requests).toEqual({ total: 0, users: { kit: 0 } });
    } finally {
      turn.mockRestore();
      clock.mockRestore();
    }
  });

  it('counts all four throttlers in one store operation (one Redis round trip), not one per throttler', async () => {
    const counters = new MemoryCounterStore();
    const calls: number[] = [];
    const hit = counters.hit.bind(counters);
    counters.hit = (hits) => {
      calls.push(hits.length);
      return hit(hits);
    };
    const h = await harness(counters);
    await h.guard.canActivate(request('qps', 'wes').context);
    // qps has per-second limits for the user only: product_qps (0) is skipped, the daily ones are always counted.
    expect(calls).toEqual([3]);
  });

  it("resolves keygate's throttlers without the stock guard's awaits, route overrides included", async () => {
    const stock = jest.spyOn(ThrottlerGuard.prototype, 'canActivate');
    try {
      const h = await harness();
      await freshSecond();
      await expect(h.guard.canActivate(request('qps', 'abe').context)).resolves.toBe(true);
      await expect(h.guard.canActivate(request('qps', 'abi', 'strict').context)).resolves.toBe(true);
      expect(stock).not.toHaveBeenCalled();
    } finally {
      stock.mockRestore();
    }
  });

  it("asks a throttler's tracker once per request, and counts under the identity it answered", async () => {
    const counters = new MemoryCounterStore();
    const keys: string[] = [];
    const hit = counters.hit.bind(counters);
    counters.hit = (hits) => {
      keys.push(...hits.map((one) => one.key));
      return hit(hits);
    };
    const h = await harness(counters);
    const before = trackerCalls;
    await expect(h.guard.canActivate(request('qps', 'ali', 'tracked').context)).resolves.toBe(true);
    expect(trackerCalls - before).toBe(1);
    expect(keys.some((key) => key.includes(`tracked-${trackerCalls}`))).toBe(true);
  });

  it('leaves a route whose limit must be awaited to the stock guard, and counts each throttler once', async () => {
    const counters = new MemoryCounterStore();
    const calls: string[][] = [];
    const hit = counters.hit.bind(counters);
    counters.hit = (hits) => {
      calls.push(hits.map((one) => `${one.key} ${one.field ?? ''}`));
      return hit(hits);
    };
    const stock = jest.spyOn(ThrottlerGuard.prototype, 'canActivate');
    try {
      const h = await harness(counters);
      await freshSecond();
      await expect(h.guard.canActivate(request('qps', 'ada', 'awaited').context)).resolves.toBe(true);
      expect(stock).toHaveBeenCalledTimes(1);
      // user_qps (the route's 1), and the two daily counters: each once.
      expect(calls).toHaveLength(1);
      expect(calls[0]).toHaveLength(3);
      expect(new Set(calls[0]).size).toBe(3);
      const error = await rejectionOf(h.guard.canActivate(request('qps', 'ada', 'awaited').context));
      expect(error.options.headers).toEqual({ 'x-keygate-limit': 'user_qps' });
    } finally {
      stock.mockRestore();
    }
  });

  it('reports in the rate-limit headers the daily cap with the fewest requests left, the product’s or the user’s', async () => {
    const { guard } = await harness();
    const first = request('mixed', 'kim');
    await guard.canActivate(first.context);
    expect(Object.fromEntries(first.headers)).toEqual({ 'x-ratelimit-limit-requests': 3, 'x-ratelimit-remaining-requests': 2 });
    await guard.canActivate(request('mixed', 'lou').context);
    await guard.canActivate(request('mixed', 'lou').context);
    const refused = request('mixed', 'kim');
    expect((await rejectionOf(guard.canActivate(refused.context))).options.headers).toEqual({ 'x-keygate-limit': 'product_daily' });
    expect(Object.fromEntries(refused.headers)).toEqual({ 'x-ratelimit-limit-requests': 3, 'x-ratelimit-remaining-requests': 0 });
    // Only the user's cap set: it is the one reported.
    const own = request('userday', 'max');
    await guard.canActivate(own.context);
    expect(Object.fromEntries(own.headers)).toEqual({ 'x-ratelimit-limit-requests': 2, 'x-ratelimit-remaining-requests': 1 });
  });

  it("tells a request its day's full cap refused once midnight has passed to retry in 1 s, not in a day", async () => {
    const counters = new MemoryCounterStore();
    const h = await harness(counters);
    const midnight = Date.UTC(2031, 6, 1);
    const clock = jest.spyOn(Date, 'now').mockReturnValue(midnight - 1_000);
    try {
      // "daily" takes 2 requests a day: the day before's are spent.
      for (let i = 0; i < 2; i++) await h.guard.canActivate(request('daily', 'ola').context);
      // The next is named on the day before; the store answers after midnight.
      const hit = counters.hit.bind(counters);
      jest.spyOn(counters, 'hit').mockImplementation(async (...args) => {
        const outcome = await hit(...args);
        clock.mockReturnValue(midnight + 5);
        return outcome;
      });
      const error = await rejectionOf(h.guard.canActivate(request('daily', 'ola').context));
      expect(error.options.headers).toEqual({ 'x-keygate-limit': 'product_daily' });
      expect(error.options.retryAfterSeconds).toBe(1);
      expect(error.message).toContain('try again in 1 s');
      // The new day has room at once.
      await expect(h.guard.canActivate(request('daily', 'ola').context)).resolves.toBe(true);
    } finally {
      clock.mockRestore();
    }
  });

  it('answers 429 with Retry-After to the next UTC midnight over a daily cap', async () => {
    const { guard } = await harness();
    await guard.canActivate(request('daily', 'carol').context);
    await guard.canActivate(request('daily', 'dave').context);
    const before = secondsToUtcMidnight(Date.now());
    const error = await rejectionOf(guard.canActivate(request('daily', 'erin').context));
    const after = secondsToUtcMidnight(Date.now());
    expect(error.code).toBe('rate_limit_exceeded');
    expect(error.options.retryAfterSeconds).toBeLessThanOrEqual(before);
    expect(error.options.retryAfterSeconds).toBeGreaterThanOrEqual(after);
    expect(error.options.headers).toEqual({ 'x-keygate-limit': 'product_daily' });
  });

  it('names a full daily cap rather than a per-second limit full at the same time: Retry-After is when the request can pass', async () => {
    const { guard } = await harness();
    await freshSecond();
    await guard.canActivate(request('spent', 'quinn').context);
    // Within the same second: the product's per-second limit and quinn's day are both full. The
    // store refuses at the per-second one; a "retry in 1 s" would be refused again until midnight.
    const before = secondsToUtcMidnight(Date.now());
    const error = await rejectionOf(guard.canActivate(request('spent', 'quinn').context));
    expect(error.code).toBe('rate_limit_exceeded');
    expect(error.options.headers).toEqual({ 'x-keygate-limit': 'user_daily' });
    expect(error.options.retryAfterSeconds).toBeLessThanOrEqual(before);
    expect(error.options.retryAfterSeconds).toBeGreaterThan(1);
    expect(error.message).toContain('your daily requests');
  });

  it('hands the request a way to give itself back to the daily caps (used when it is refused before any upstream call)', async () => {
    const h = await harness();
    const first = request('daily', 'fay');
    await h.guard.canActivate(first.context);
    await h.guard.canActivate(request('daily', 'gus').context);
    expect((await rejectionOf(h.guard.canActivate(request('daily', 'hal').context))).code).toBe('rate_limit_exceeded');
    expect(first.ctx.releaseDailyCount).toBeInstanceOf(Function);
    first.ctx.releaseDailyCount?.();
    await flush();
    expect((await h.counters.usage('daily', utcDay(Date.now()))).requests).toEqual({ total: 1, users: { fay: 0, gus: 1 } });
    await expect(h.guard.canActivate(request('daily', 'hal').context)).resolves.toBe(true);
  });

  it('hands the request a way to add its cost to the day it was counted in, whether the guard or the handler counted it; none once given back', async () => {
    const h = await harness();
    const day = utcDay(Date.now());
    const guarded = request('daily', 'kit');
    await h.guard.canActivate(guarded.context);
    guarded.ctx.chargeDailyCost?.(0.0000072);
    // Counted by the handler (no token quota here): the cost is the day's once it is counted.
    const handled = request('daily', 'lou', 'chat');
    await h.guard.canActivate(handled.context);
    expect(handled.ctx.chargeDailyCost).toBeNull();
    await h.quota.admit(handled.ctx, 'daily', 'lou', undefined, MODELS);
    handled.ctx.chargeDailyCost?.(0.000123456);
    // Given back to the day (refused before any upstream): its cost, if it had one, is not the day's either.
    const givenBack = request('tokens', 'max');
    await h.guard.canActivate(givenBack.context);
    givenBack.ctx.releaseDailyCount?.();
    givenBack.ctx.chargeDailyCost?.(1);
    // Past 2^53 billionths ($9M for one request: a host's nonsense priced) the sums would not be exact: not added.
    const absurd = request('tokens', 'ned');
    await h.guard.canActivate(absurd.context);
    absurd.ctx.chargeDailyCost?.(135_107_988_821.1149);
    await flush();
    expect((await h.counters.usage('daily', day)).costNanoUsd).toEqual({ total: 130_656, users: { kit: 7_200, lou: 123_456 } });
    expect((await h.counters.usage('tokens', day)).costNanoUsd).toEqual({ total: 0, users: {} });
    expect((await h.counters.usage('tokens', day)).costNanoUsd).toEqual({ total: 0, users: {} });
  });

  it('gives the request back at once when its client left while it was being counted (its audit line is already written)', async () => {
    const h = await harness();
    const gone = request('daily', 'zed');
    gone.ctx.abort.abort();
    await expect(h.guard.canActivate(gone.context)).resolves.toBe(true);
    await flush();
    expect((await h.counters.usage('daily', utcDay(Date.now()))).requests).toEqual({ total: 0, users: { zed: 0 } });
  });

  it('gives the daily counts back once however often asked, for a product without daily caps too (they feed /admin/usage)', async () => {
    const h = await harness();
    const r = request('tokens', 'ivy');
    await expect(h.guard.canActivate(r.context)).resolves.toBe(true);
    await h.guard.canActivate(request('tokens', 'joe').context);
    r.ctx.releaseDailyCount?.();
    r.ctx.releaseDailyCount?.();
    await flush();
    expect((await h.counters.usage('tokens', utcDay(Date.now()))).requests).toEqual({ total: 1, users: { ivy: 0, joe: 1 } });
  });

  it('answers 403 blocked for a blocked user or product, before counting anything', async () => {
    const h = await harness();
    await h.blocks.create({
      product: 'qps',
      user: 'frank',
      reason: 'abuse',
      createdAt: new Date().toISOString(),
      expiresAt: null,
      createdBy: 'admin',
    });
    const error = await rejectionOf(h.guard.canActivate(request('qps', 'frank').context));
    expect(error.code).toBe('blocked');
    expect(error.status).toBe(403);
    expect(error.spec.failure).toBe('blocked');
    expect(error.message).toContain('abuse');
    await expect(h.guard.canActivate(request('qps', 'gina').context)).resolves.toBe(true);
    await h.blocks.create({
      product: 'qps',
      user: null,
      reason: 'product off',
      createdAt: new Date().toISOString(),
      expiresAt: null,
      createdBy: 'admin',
    });
    expect((await rejectionOf(h.guard.canActivate(request('qps', 'gina').context))).code).toBe('blocked');
    expect((await h.counters.usage('qps', utcDay(Date.now()))).requests).toEqual({ total: 1, users: { gina: 1 } });
  });

  it('auto-blocks a user who keeps hitting the limit (ALERT), and then answers 403 blocked', async () => {
    const h = await harness();
    await freshSecond();
    for (let i = 0; i < 2; i++) await h.guard.canActivate(request('qps', 'hank').context);
    for (let i = 0; i < 3; i++)
      expect((await rejectionOf(h.guard.canActivate(request('qps', 'hank').context))).code).toBe('rate_limit_exceeded');
    await flush();
    expect((await rejectionOf(h.guard.canActivate(request('qps', 'hank').context))).code).toBe('blocked');
    expect(h.lines.filter((l) => l.severity === 'ALERT')).toEqual([
      expect.objectContaining({ product: 'qps', user: 'hank', reason: 'user_qps' }),
    ]);
  });

  it('paces a route outside the daily caps (a token count) but never auto-blocks its user for its refusals', async () => {
    const h = await harness();
    await freshSecond();
    for (let i = 0; i < 2; i++) await h.guard.canActivate(request('qps', 'cody', 'uncounted').context);
    for (let i = 0; i < 5; i++)
      expect((await rejectionOf(h.guard.canActivate(request('qps', 'cody', 'uncounted').context))).code).toBe('rate_limit_exceeded');
    await flush();
    expect(h.blocks.find('qps', 'cody')).toBeUndefined();
    expect(h.lines.filter((l) => l.severity === 'ALERT')).toEqual([]);
  });

  it("does not auto-block a user for refusals caused by the product's limit, which another user exhausted", async () => {
    // auto_block is for "a user who keeps hitting their limit". Here olga never got a request through:
    // the product-wide daily_requests was used up by another user. Three refusals later she is blocked
    // (with an ALERT) although no limit of hers was ever reached.
    const h = await harness();
    await h.guard.canActivate(request('busy', 'heavy').context);
    for (let i = 0; i < 3; i++)
      expect((await rejectionOf(h.guard.canActivate(request('busy', 'olga').context))).code).toBe('rate_limit_exceeded');
    await flush();
    expect(h.blocks.find('busy', 'olga')).toBeUndefined();
    expect(h.lines.filter((l) => l.severity === 'ALERT')).toEqual([]);
  });
});

describe('auto-block when the product limit is full because of the user', () => {
  it("counts a refusal toward the user's auto-block when their own limit is full too, though the store names the product's first", async () => {
    const h = await harness();
    await freshSecond();
    for (let i = 0; i < 2; i++) await h.guard.canActivate(request('flood', 'ivan').context);
    for (let i = 0; i < 3; i++) {
      const error = await rejectionOf(h.guard.canActivate(request('flood', 'ivan').context));
      expect(error.code).toBe('rate_limit_exceeded');
      expect(error.options.headers).toEqual({ 'x-keygate-limit': 'product_qps' });
    }
    await flush();
    expect(h.blocks.find('flood', 'ivan')).toBeDefined();
    expect(h.lines.filter((l) => l.severity === 'ALERT')).toEqual([
      expect.objectContaining({ product: 'flood', user: 'ivan', reason: 'user_qps' }),
    ]);
  });
});

describe('admission in the handler (@AdmitInHandler routes)', () => {
  /** The counter store, with its calls recorded: [number of counters, tokens asked]. */
  function recorded(): { counters: MemoryCounterStore; calls: Array<[number, number | undefined]> } {
    const counters = new MemoryCounterStore();
    const calls: Array<[number, number | undefined]> = [];
    const hit = counters.hit.bind(counters);
    counters.hit = (hits, tokens) => {
      calls.push([hits.length, tokens?.tokens]);
      return hit(hits, tokens);
    };
    return { counters, calls };
  }

  it('leaves the counting to the handler, which counts the limits and reserves the tokens in one store call', async () => {
    const { counters, calls } = recorded();
    const h = await harness(counters);
    const day = utcDay(Date.now());
    const r = request('both', 'ann', 'chat');
    await expect(h.guard.canActivate(r.context)).resolves.toBe(true);
    expect(calls).toEqual([]);
    expect((await counters.usage('both', day)).requests.total).toBe(0);
    await expect(h.quota.admit(r.ctx, 'both', 'ann', estimated(300), MODELS)).resolves.toMatchObject({
      product: 'both',
      user: 'ann',
      tokens: 300,
      store: 'local',
    });
    // user_qps, and the two daily ones (product_qps is 0 and not counted), with the tokens.
    expect(calls).toEqual([[3, 300]]);
    expect(await counters.usage('both', day)).toMatchObject({
      requests: { total: 1, users: { ann: 1 } },
      tokens: { total: 300, users: { ann: 300 } },
    });
    expect(Object.fromEntries(r.headers)).toEqual({ 'x-ratelimit-limit-requests': 5, 'x-ratelimit-remaining-requests': 4 });
    // Taken once: a second admit of the same request counts nothing more.
    await h.quota.admit(r.ctx, 'both', 'ann', undefined, MODELS);
    expect(calls).toHaveLength(1);
  });

  it("answers a full request limit with the guard's 429 from admit, and reserves no tokens", async () => {
    const h = await harness();
    await freshSecond();
    const first = request('both', 'bo', 'chat');
    await h.guard.canActivate(first.context);
    await h.quota.admit(first.ctx, 'both', 'bo', estimated(100), MODELS);
    const second = request('both', 'bo', 'chat');
    await expect(h.guard.canActivate(second.context)).resolves.toBe(true);
    const error = await rejectionOf(h.quota.admit(second.ctx, 'both', 'bo', estimated(100), MODELS));
    expect(error.code).toBe('rate_limit_exceeded');
    expect(error.options.headers).toEqual({ 'x-keygate-limit': 'user_qps' });
    expect((await h.counters.usage('both', utcDay(Date.now()))).tokens).toEqual({ total: 100, users: { bo: 100 } });
  });

  it('answers daily_quota_exceeded when the tokens do not fit, and counts the request in no limit', async () => {
    const h = await harness();
    const first = request('both', 'cx', 'chat');
    await h.guard.canActivate(first.context);
    await h.quota.admit(first.ctx, 'both', 'cx', estimated(600), MODELS);
    await freshSecond();
    const r = request('both', 'cy', 'chat');
    await h.guard.canActivate(r.context);
    const error = await rejectionOf(h.quota.admit(r.ctx, 'both', 'cy', estimated(500), MODELS));
    expect(error.code).toBe('daily_quota_exceeded');
    expect(error.options.retryAfterSeconds).toBeGreaterThan(0);
    expect(await h.counters.usage('both', utcDay(Date.now()))).toMatchObject({
      requests: { total: 1, users: { cx: 1 } },
      tokens: { total: 600, users: { cx: 600 } },
    });
    // Larger than the whole day's quota: the same 429 (SPEC §6), saying it can never be served as it is; nothing counted either.
    const huge = request('both', 'cz', 'chat');
    await h.guard.canActivate(huge.context);
    const never = await rejectionOf(h.quota.admit(huge.ctx, 'both', 'cz', estimated(1001), MODELS));
    expect(never.code).toBe('daily_quota_exceeded');
    expect(never.message).toMatch(/more than .* whole daily token quota \(1000\): it can never be served/);
    expect(error.message).not.toMatch(/never/);
    expect((await h.counters.usage('both', utcDay(Date.now()))).requests.total).toBe(1);
    // Not counted in the per-second limit either: the same user is admitted at once.
    const next = request('both', 'cy', 'chat');
    await h.guard.canActivate(next.context);
    await expect(h.quota.admit(next.ctx, 'both', 'cy', estimated(10), MODELS)).resolves.toBeDefined();
  });

  it('leaves the give-back of a client that left during admission to the end of the request, which waits for the handler', async () => {
    const h = await harness();
    const r = request('daily', 'fi', 'chat');
    await h.guard.canActivate(r.context);
    r.ctx.abort.abort();
    await h.quota.admit(r.ctx, 'daily', 'fi', undefined, MODELS);
    await flush();
    // Still counted: the handler may yet reach the upstream; RequestLifecycle gives it back if it did not.
    expect((await h.counters.usage('daily', utcDay(Date.now()))).requests.total).toBe(1);
    r.ctx.releaseDailyCount?.();
    await flush();
    expect((await h.counters.usage('daily', utcDay(Date.now()))).requests.total).toBe(0);
  });

  it('counts the limits without a reservation when no token quota applies', async () => {
    const { counters, calls } = recorded();
    const h = await harness(counters);
    const r = request('daily', 'di', 'chat');
    await h.guard.canActivate(r.context);
    await expect(h.quota.admit(r.ctx, 'daily', 'di', undefined, MODELS)).resolves.toMatchObject(NOTHING_RESERVED);
    expect(calls).toEqual([[2, undefined]]);
    expect(r.ctx.releaseDailyCount).toBeInstanceOf(Function);
  });

  it("counts the tokens of a request under no token quota in the day's usage, on settlement, without holding any", async () => {
    const h = await harness();
    const day = utcDay(Date.now());
    const r = request('daily', 'dot', 'chat');
    await h.guard.canActivate(r.context);
    const reservation = await h.quota.admit(r.ctx, 'daily', 'dot', undefined, MODELS);
    expect((await h.counters.usage('daily', day)).tokens).toEqual({ total: 0, users: {} });
    h.quota.settle(reservation, 42);
    await flush();
    expect((await h.counters.usage('daily', day)).tokens).toEqual({ total: 42, users: { dot: 42 } });
    // A request that used nothing adds nobody.
    const idle = request('daily', 'nil', 'chat');
    await h.guard.canActivate(idle.context);
    h.quota.settle(await h.quota.admit(idle.ctx, 'daily', 'nil', undefined, MODELS), 0);
    await flush();
    expect((await h.counters.usage('daily', day)).tokens).toEqual({ total: 42, users: { dot: 42 } });
  });

  it('counts a request its guard saw before midnight and its handler admitted after on the new day, with its tokens', async () => {
    const h = await harness();
    const midnight = Date.UTC(2031, 0, 1);
    const clock = jest.spyOn(Date, 'now').mockReturnValue(midnight - 100);
    try {
      const r = request('tokens', 'mia', 'chat');
      await h.guard.canActivate(r.context);
      clock.mockReturnValue(midnight + 100);
      const reservation = await h.quota.admit(r.ctx, 'tokens', 'mia', estimated(7), MODELS);
      expect(reservation).toMatchObject({ tokens: 7, day: '2031-01-01' });
      await flush();
      expect((await h.counters.usage('tokens', '2031-01-01')).requests).toEqual({ total: 1, users: { mia: 1 } });
      expect((await h.counters.usage('tokens', '2030-12-31')).requests.total).toBe(0);
      // Given back on its own day, had it ended without reaching an upstream.
      r.ctx.releaseDailyCount?.();
      await flush();
      expect((await h.counters.usage('tokens', '2031-01-01')).requests.total).toBe(0);
      h.quota.settle(reservation, 0);
    } finally {
      clock.mockRestore();
    }
  });

  it('counts a request that never reaches admit (refused on the way: invalid body, policy) in no limit', async () => {
    const h = await harness();
    for (let i = 0; i < 3; i++) await expect(h.guard.canActivate(request('busy', 'ed', 'chat').context)).resolves.toBe(true);
    expect((await h.counters.usage('busy', utcDay(Date.now()))).requests.total).toBe(0);
  });
});

describe('QuotaService', () => {
  it('estimates a request only for a product with a token quota (the tokenizer pass is skipped otherwise)', async () => {
    const { quota } = await harness();
    let asked = 0;
    const estimate = (): TokenEstimate => {
      asked++;
      return { prompt: 10, completion: 0 };
    };
    expect(await quota.admit(undefined, 'qps', 'una', estimate, MODELS)).toBeUndefined();
    expect(asked).toBe(0);
    const reservation = await quota.admit(undefined, 'tokens', 'una', estimate, MODELS);
    expect([asked, reservation?.tokens]).toEqual([1, 10]);
    quota.settle(reservation, 0);
  });

  it('reserves while the estimate fits and refuses with daily_quota_exceeded (429, Retry-After to UTC midnight) otherwise', async () => {
    const h = await harness();
    const r = await h.quota.admit(undefined, 'tokens', 'ivy', estimated(500), MODELS);
    expect(r).toMatchObject({ product: 'tokens', user: 'ivy', tokens: 500, day: utcDay(Date.now()) });
    const error = await rejectionOf(h.quota.admit(undefined, 'tokens', 'ivy', estimated(101), MODELS));
    expect(error.code).toBe('daily_quota_exceeded');
    expect(error.status).toBe(429);
    expect(error.spec.failure).toBe('quota');
    expect(error.options.retryAfterSeconds).toBeGreaterThan(0);
    expect(error.options.retryAfterSeconds).toBeLessThanOrEqual(secondsToUtcMidnight(Date.now()) + 1);
    // The product cap (1000) still has room for another user.
    await expect(h.quota.admit(undefined, 'tokens', 'jack', estimated(500), MODELS)).resolves.toMatchObject({ tokens: 500 });
    expect((await rejectionOf(h.quota.admit(undefined, 'tokens', 'kate', estimated(1), MODELS))).message).toContain("this product's");
  });

  it('settles a reservation to the real usage, freeing room for the next request', async () => {
    const h = await harness();
    const day = utcDay(Date.now());
    const r = await h.quota.admit(undefined, 'tokens', 'liam', estimated(600), MODELS);
    h.quota.settle(r, 150);
    await flush();
    expect((await h.counters.usage('tokens', day)).tokens).toEqual({ total: 150, users: { liam: 150 } });
    await expect(h.quota.admit(undefined, 'tokens', 'liam', estimated(450), MODELS)).resolves.toBeDefined();
    h.quota.settle(undefined, 999);
  });

  it("does not count the day before's reservations still in flight as room the new day's refusal waits on (tokens and cost alike)", async () => {
    const h = await harness();
    const midnight = Date.UTC(2031, 8, 1);
    const clock = jest.spyOn(Date, 'now').mockReturnValue(midnight - 1_000);
    try {
      // Admitted the day before, still in flight after midnight.
      const late = await h.quota.admit(undefined, 'tokens', 'amy', estimated(500), MODELS);
      const lateCost = await h.quota.admit(undefined, 'budget', 'amy', estimated(4_000), MODELS);
      clock.mockReturnValue(midnight + 1_000);
      // The new day: 500 of its 1000 tokens used, $0.0006 of its $0.001 spent, nothing in flight on it.
      h.quota.settle(await h.quota.admit(undefined, 'tokens', 'ben', estimated(500), MODELS), 500);
      h.quota.settleCost(await h.quota.admit(undefined, 'budget', 'ben', estimated(4_000), MODELS), 0.0006);
      await flush();
      // Nothing that ends today gives the new day room: midnight, not "try again in 2 s".
      const tokens = await rejectionOf(h.quota.admit(undefined, 'tokens', 'cal', estimated(600), MODELS));
      expect(tokens.message).toContain('it resets at 00:00 UTC');
      expect(tokens.options.retryAfterSeconds).toBe(86_399);
      const cost = await rejectionOf(h.quota.admit(undefined, 'budget', 'cal', estimated(4_000), MODELS));
      expect(cost.message).toContain('it resets at 00:00 UTC');
      expect(cost.options.retryAfterSeconds).toBe(86_399);
      h.quota.settle(late, 0);
      h.quota.settleCost(lateCost, 0);
    } finally {
      clock.mockRestore();
    }
  });

  it('logs (and never throws) when a settle fails', async () => {
    const failing: CounterStore = Object.assign(new MemoryCounterStore(), { settleTokens: () => Promise.reject(new Error('redis gone')) });
    const h = await harness(failing);
    const r = await h.quota.admit(undefined, 'tokens', 'mia', estimated(10), MODELS);
    expect(() => h.quota.settle(r, 5)).not.toThrow();
    await flush();
    expect(h.lines).toEqual([
      expect.objectContaining({ severity: 'WARNING', message: 'token usage could not be settled', product: 'tokens' }),
    ]);
  });
});

describe('QuotaService daily cost budgets', () => {
  it('charges the cost to the day its budget was checked in, when the handler admits it after midnight and the guard ran before', async () => {
    const h = await harness();
    const midnight = Date.UTC(2031, 4, 7);
    const clock = jest.spyOn(Date, 'now');
    try {
      clock.mockReturnValue(midnight - 100);
      const r = request('budget', 'ivy', 'chat');
      await h.guard.canActivate(r.context);
      clock.mockReturnValue(midnight + 100);
      await h.quota.admit(r.ctx, 'budget', 'ivy', undefined, MODELS);
      r.ctx.chargeDailyCost?.(0.0005);
      await flush();
    } finally {
      clock.mockRestore();
    }
    // The budget was checked on the next day, and the cost counts there, as the request counters do.
    expect((await h.counters.usage('budget', '2031-05-07')).requests.total).toBe(1);
    expect((await h.counters.usage('budget', '2031-05-06')).requests.total).toBe(0);
    expect((await h.counters.usage('budget', '2031-05-07')).costNanoUsd).toEqual({ total: 500_000, users: { ivy: 500_000 } });
    expect((await h.counters.usage('budget', '2031-05-06')).costNanoUsd.total).toBe(0);
  });

  it("refuses every user once the product's day has cost its budget: 429 daily_quota_exceeded to UTC midnight, nothing counted, nobody auto-blocked", async () => {
    const h = await harness();
    const day = utcDay(Date.now());
    const first = request('budget', 'amy', 'chat');
    await h.guard.canActivate(first.context);
    // Under the budget: admitted, with no token quota (no reservation), counted in the request limits.
    await expect(h.quota.admit(first.ctx, 'budget', 'amy', undefined, MODELS)).resolves.toMatchObject(NOTHING_RESERVED);
    expect(Object.fromEntries(first.headers)).toEqual({ 'x-ratelimit-limit-requests': 10, 'x-ratelimit-remaining-requests': 9 });
    // What the request cost, charged once it ended: exactly the budget.
    first.ctx.chargeDailyCost?.(0.001);
    await flush();
    for (const user of ['amy', 'bea']) {
      const r = request('budget', user, 'chat');
      await h.guard.canActivate(r.context);
      const error = await rejectionOf(h.quota.admit(r.ctx, 'budget', user, undefined, MODELS));
      expect(error.code).toBe('daily_quota_exceeded');
      expect(error.status).toBe(429);
      expect(error.spec.failure).toBe('quota');
      expect(error.message).toBe("The day's requests have reached this product's daily budget of $0.001; it resets at 00:00 UTC");
      expect(error.options.retryAfterSeconds).toBeGreaterThan(0);
      expect(error.options.retryAfterSeconds).toBeLessThanOrEqual(secondsToUtcMidnight(Date.now()));
      // The rate-limit headers say the user's day as found: the refused request took none of it.
      expect(Object.fromEntries(r.headers)).toEqual({
        'x-ratelimit-limit-requests': 10,
        'x-ratelimit-remaining-requests': user === 'amy' ? 9 : 10,
      });
    }
    expect((await h.counters.usage('budget', day)).requests).toEqual({ total: 1, users: { amy: 1 } });
    await flush();
    // A product-wide budget is not the user's doing.
    expect(h.blocks.find('budget', 'amy')).toBeUndefined();
    expect(h.blocks.find('budget', 'bea')).toBeUndefined();
  });

  it('refuses a user over their own budget (auto-block counting it), and not another user', async () => {
    const h = await harness();
    await h.counters.addCost('ubudget', 'cal', 1_000_000, utcDay(Date.now()), 'local');
    const error = await rejectionOf(h.quota.admit(undefined, 'ubudget', 'cal', undefined, MODELS));
    expect(error.code).toBe('daily_quota_exceeded');
    expect(error.message).toBe("The day's requests have reached your daily budget of $0.001; it resets at 00:00 UTC");
    await expect(h.quota.admit(undefined, 'ubudget', 'dan', undefined, MODELS)).resolves.toMatchObject(NOTHING_RESERVED);
    await flush();
    expect(h.blocks.find('ubudget', 'cal')).toMatchObject({ createdBy: 'auto-block' });
    expect(h.blocks.find('ubudget', 'dan')).toBeUndefined();
  });

  it('refuses a model, or a fallback, without a price under a budget (400 policy_violation, nothing counted); not without a budget', async () => {
    const h = await harness();
    const r = request('budget', 'eve', 'chat');
    await h.guard.canActivate(r.context);
    const unpriced = await rejectionOf(h.quota.admit(r.ctx, 'budget', 'eve', undefined, ['mystery-1']));
    expect(unpriced.code).toBe('policy_violation');
    expect(unpriced.status).toBe(400);
    expect(unpriced.message).toBe(
      "The model 'mystery-1' has no price in the policy file's prices, and this product has a daily cost budget: its cost could not be counted against it",
    );
    const fallback = await rejectionOf(h.quota.admit(undefined, 'ubudget', 'eve', undefined, ['gpt-4o-mini', 'claude-x', 'mystery-2']));
    expect(fallback.message).toContain("The model 'mystery-2' (a fallback of 'gpt-4o-mini') has no price");
    expect((await h.counters.usage('budget', utcDay(Date.now()))).requests.total).toBe(0);
    // Priced by prefix, every candidate: admitted.
    await expect(h.quota.admit(undefined, 'ubudget', 'eve', undefined, ['gpt-4o-mini', 'claude-x'])).resolves.toMatchObject(
      NOTHING_RESERVED,
    );
    // No budget: a model without a price is served (its audit's cost_usd is null).
    await expect(h.quota.admit(undefined, 'tokens', 'eve', estimated(10), ['mystery-1'])).resolves.toBeDefined();
  });

  it("reserves the request's most possible cost with its limits, and settles it when its audit line charges the cost (all of it back for none)", async () => {
    const h = await harness();
    const day = utcDay(Date.now());
    const estimate = (): TokenEstimate => ({ prompt: 1_000, completion: 500 });
    // gpt-4o-mini: 1 000 × 150 + 500 × 600 billionths.
    const costly = request('budget', 'gil', 'chat');
    await h.guard.canActivate(costly.context);
    await expect(h.quota.admit(costly.ctx, 'budget', 'gil', estimate, MODELS)).resolves.toMatchObject({
      costNanoUsd: 450_000,
      store: 'local',
    });
    const failed = request('budget', 'hal', 'chat');
    await h.guard.canActivate(failed.context);
    await h.quota.admit(failed.ctx, 'budget', 'hal', estimate, MODELS);
    expect((await h.counters.usage('budget', day)).costNanoUsd).toEqual({ total: 900_000, users: { gil: 450_000, hal: 450_000 } });
    // A third does not fit the $0.001 while both are in flight.
    const third = request('budget', 'ivy', 'chat');
    await h.guard.canActivate(third.context);
    expect((await rejectionOf(h.quota.admit(third.ctx, 'budget', 'ivy', estimate, MODELS))).code).toBe('daily_quota_exceeded');
    // gil's cost $0.0002; hal's failed upstream (no cost): its whole estimate comes back.
    costly.ctx.chargeDailyCost?.(0.0002);
    failed.ctx.chargeDailyCost?.(0);
    failed.ctx.chargeDailyCost?.(0.0003); // once only
    await flush();
    expect((await h.counters.usage('budget', day)).costNanoUsd).toEqual({ total: 200_000, users: { gil: 200_000, hal: 0 } });
    const again = request('budget', 'ivy', 'chat');
    await h.guard.canActivate(again.context);
    await expect(h.quota.admit(again.ctx, 'budget', 'ivy', estimate, MODELS)).resolves.toMatchObject({ costNanoUsd: 450_000 });
  });

  it('checks the budget in the same store step as the limits and the tokens, and only with a budget', async () => {
    const counters = new MemoryCounterStore();
    const asks: Array<[number, boolean, boolean]> = [];
    const hit = counters.hit.bind(counters);
    counters.hit = (hits, tokens, budget) => {
      asks.push([hits.length, tokens !== undefined, budget !== undefined]);
      return hit(hits, tokens, budget);
    };
    const h = await harness(counters);
    const r = request('budget', 'fay', 'chat');
    await h.guard.canActivate(r.context);
    await h.quota.admit(r.ctx, 'budget', 'fay', undefined, MODELS);
    const plain = request('daily', 'fay', 'chat');
    await h.guard.canActivate(plain.context);
    await h.quota.admit(plain.ctx, 'daily', 'fay', undefined, MODELS);
    expect(asks).toEqual([
      [2, false, true],
      [2, false, false],
    ]);
  });
});
