import { Inject, Injectable, type ExecutionContext } from '@nestjs/common';
import { Reflector } from '@nestjs/core';
import {
  SkipThrottle,
  ThrottlerGuard,
  type Resolvable,
  type ThrottlerGenerateKeyFunction,
  type ThrottlerGetTrackerFunction,
  type ThrottlerOptions,
  type ThrottlerRequest,
} from '@nestjs/throttler';
import type { Principal } from '@keygate/auth';
import { GatewayConfig } from '@keygate/config';
import { GatewayError } from '@keygate/errors';
import { contextOf, type RequestContext } from '@keygate/observability';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { AutoBlocker } from './auto-blocker';
import { blockedError, BlocksService } from './blocks.service';
import {
  DAILY_COUNTER_TTL_MS,
  dailyRequestsKey,
  dayOfDailyKey,
  requestCounters,
  SECOND_COUNTER_TTL_MS,
  secondsToEndOfUtcDay,
  secondsToUtcMidnight,
  toNanoUsd,
  utcDay,
  type BudgetAsk,
  type CounterRef,
  type LimitName,
  type TokenAsk,
} from './counter.store';
import { ADMIT_IN_HANDLER, deferAdmission } from './deferred-admission';
import { IdentityThrottlerStorage, type ThrottlerBatch, type ThrottlerHit } from './identity-throttler.storage';
import { RouteMetadataReflector } from './route-metadata.reflector';

const LIMIT_TEXT: Record<LimitName, string> = {
  product_qps: "this product's requests per second",
  user_qps: 'your requests per second',
  product_daily: "this product's daily requests",
  user_daily: 'your daily requests',
};

/** The answer of handleRequest for a throttler collected at once (a settled promise, shared). */
const COLLECTED: Promise<boolean> = Promise.resolve(true);

type LimitField = 'requestsPerSecond' | 'userRequestsPerSecond' | 'dailyRequests' | 'userDailyRequests';

function principalOf(context: ExecutionContext): Principal {
  // canActivate refuses a request without one before any throttler is resolved. The request is the
  // context's first argument, what switchToHttp().getRequest() returns; switchToHttp makes three
  // closures each time it is called, and this is asked about ten times a request (limits, trackers, counters).
  return context.getArgByIndex<FastifyRequest & { user: Principal }>(0).user;
}

/** An identity throttler: a stock throttler, plus the counter it counts in. */
export interface IdentityThrottler extends ThrottlerOptions {
  name: LimitName;
  /** The counter of a request now: its key, and for the daily ones the field of the day's hash. */
  counter(context: ExecutionContext, tracker: string): CounterRef;
  /** How long a window's counter is kept, whatever `ttl` a route sets: the windows are fixed. */
  lifetimeMs: number;
  /** Whether a limit of 0 is still counted (daily counts feed `/admin/usage`; per-second ones feed nothing). */
  countedWhenUnlimited: boolean;
}

/**
 * The four identity throttlers: per second and per UTC day, for the product and for one user of
 * it, with the limits of the caller's product from the policy file (0: no limit). The counter is
 * the identity and the window, never the IP or the route, so a cap cannot be dodged by switching
 * routes. Sorted by ttl, they keep this order, which is the order refusals are named in.
 */
/**
 * A route counted against the per-second limits but not the daily request caps: calls that
 * generate nothing (a token count) or read what the caller made (a stored response), which still
 * spend the product key's rate at the provider. Blocks apply. (The stock `@SkipThrottle()` would
 * skip only a throttler named `default`.)
 */
export function SkipDailyRequestLimits(): MethodDecorator & ClassDecorator {
  return SkipThrottle({ product_daily: true, user_daily: true });
}

export function identityThrottlers(config: GatewayConfig): IdentityThrottler[] {
  const limit = (field: LimitField) => (context: ExecutionContext) => config.policy.forProduct(principalOf(context).product).limits[field];
  const product = (_req: Record<string, unknown>, context: ExecutionContext): string => principalOf(context).product;
  const user = (_req: Record<string, unknown>, context: ExecutionContext): string => principalOf(context).user;
  const second = (): number => Math.floor(Date.now() / 1000);
  const today = (): string => utcDay(Date.now());
  const perSecond = { ttl: 1_000, lifetimeMs: SECOND_COUNTER_TTL_MS, countedWhenUnlimited: false };
  const perDay = { ttl: 86_400_000, lifetimeMs: DAILY_COUNTER_TTL_MS, countedWhenUnlimited: true };
  return [
    {
      name: 'product_qps',
      ...perSecond,
      limit: limit('requestsPerSecond'),
      getTracker: product,
      counter: (_context, p) => requestCounters.productPerSecond(p, second()),
    },
    {
      name: 'user_qps',
      ...perSecond,
      limit: limit('userRequestsPerSecond'),
      getTracker: user,
      counter: (context, u) => requestCounters.userPerSecond(principalOf(context).product, u, second()),
    },
    {
      name: 'product_daily',
      ...perDay,
      limit: limit('dailyRequests'),
      getTracker: product,
      counter: (_context, p) => requestCounters.productPerDay(p, today()),
    },
    {
      name: 'user_daily',
      ...perDay,
      limit: limit('userDailyRequests'),
      getTracker: user,
      counter: (context, u) => requestCounters.userPerDay(principalOf(context).product, u, today()),
    },
  ];
}

/**
 * Blocks, per-second rate limits and daily request caps, through @nestjs/throttler: the stock guard
 * resolves each throttler (limits, ttl, tracker, key, and any `@Throttle`/`@SkipThrottle` on a
 * route), and this subclass counts them together in one atomic step, one Redis round trip (see
 * {@link IdentityThrottlerStorage}): a refused request is charged to none of them. Runs after the
 * credential guard. On a route marked {@link AdmitInHandler} the counting is left to the handler,
 * which does it in the same step as its token reservation ({@link QuotaService.admit}); a request
 * refused before that is counted nowhere. Elsewhere, and for a request admitted but refused later
 * without reaching an upstream (client gone), the daily caps get the request back when it ends; it
 * stays counted in the per-second limits.
 */
@Injectable()
export class RequestLimitsGuard extends ThrottlerGuard {
  /** The throttlers resolved for each request being checked, counted together once all are known. */
  private readonly pending = new WeakMap<object, ThrottlerHit[]>();
  /** Per route (handler, then controller): each throttler with the route's own settings for it. */
  private readonly routes = new WeakMap<RouteTarget, WeakMap<RouteTarget, RouteThrottler[]>>();

  // Every parameter that lines up with one of ThrottlerGuard's (options, storage) names its token:
  // Nest would otherwise inherit the parent's @InjectThrottlerOptions/@InjectThrottlerStorage.
  constructor(
    @Inject(GatewayConfig) config: GatewayConfig,
    @Inject(IdentityThrottlerStorage) private readonly storage: IdentityThrottlerStorage,
    reflector: Reflector,
    private readonly blocks: BlocksService,
    private readonly autoBlocker: AutoBlocker,
  ) {
    // keygate sets its own, OpenAI-named headers below; the stock ones would add three per throttler.
    super({ throttlers: identityThrottlers(config), setHeaders: false }, storage, new RouteMetadataReflector(reflector));
  }

  override async canActivate(context: ExecutionContext): Promise<boolean> {
    const http = context.switchToHttp();
    const request = http.getRequest<FastifyRequest & { user?: Principal }>();
    const principal = request.user;
    if (!principal) throw new GatewayError('invalid_token', 'a credential is required');
    const { product, user } = principal;
    const block = this.blocks.find(product, user);
    if (block) throw blockedError(block, product, user);

    const hits: ThrottlerHit[] = [];
    this.pending.set(request, hits);
    try {
      // The stock guard awaits four times per throttler (a dozen promises a request, each paid for
      // by async_hooks while AsyncLocalStorage is on); keygate's throttlers resolve at once.
      if (!this.collectAtOnce(context)) {
        hits.length = 0;
        await super.canActivate(context);
      }
    } finally {
      this.pending.delete(request);
    }
    if (!hits.length) return true;
    // Each throttler named its counter from the clock in turn: midnight may pass between the
    // product's day and the user's. A request is counted on one day, the first one named.
    const daily = hits.find(isDailyHit);
    const counted = daily ? onDay(hits, product, dayOfDailyKey(daily.key)) : hits;
    const raw = http.getResponse<FastifyReply>().raw;
    const ctx = contextOf(request.raw);
    if (ctx && this.reflector.get<boolean | undefined>(ADMIT_IN_HANDLER, context.getHandler())) {
      deferAdmission(ctx, (day, tokens, budget) => this.count(product, user, onDay(counted, product, day), raw, ctx, true, tokens, budget));
      return true;
    }
    await this.count(product, user, counted, raw, ctx, false);
    return true;
  }

  /**
   * Counts a request's throttlers (and reserves its tokens, checks its budget, if given) in one
   * store step, and sets the rate-limit headers. Throws the 429 of a full request limit; a token
   * quota's or a budget's refusal is returned (`refusedBy`) for the quota service to answer.
   */
  private async count(
    product: string,
    user: string,
    hits: ThrottlerHit[],
    raw: FastifyReply['raw'],
    ctx: RequestContext | undefined,
    inHandler: boolean,
    tokens?: TokenAsk,
    budget?: BudgetAsk,
  ): Promise<ThrottlerBatch> {
    const batch = await this.storage.incrementAll(hits, tokens, budget);
    const { records, store } = batch;
    // OpenAI's header names, so SDK users find them where they expect, for the daily cap (the
    // product's or the user's) with the fewest requests left; set on the raw response so streamed
    // (hijacked) replies carry them too.
    let tightest: { limit: number; remaining: number } | undefined;
    for (let i = 0; i < hits.length; i++) {
      const { throttlerName, limit } = hits[i];
      if ((throttlerName !== 'product_daily' && throttlerName !== 'user_daily') || limit <= 0) continue;
      const remaining = Math.max(0, limit - records[i].totalHits);
      if (!tightest || remaining < tightest.remaining) tightest = { limit, remaining };
    }
    if (tightest) {
      raw.setHeader('x-ratelimit-limit-requests', tightest.limit);
      raw.setHeader('x-ratelimit-remaining-requests', tightest.remaining);
    }
    if (store) {
      if (ctx) {
        // Called when the request ends refused without reaching an upstream (see RequestLifecycle);
        // once, however often asked. The daily counters are picked out only then: nearly every
        // request reaches its upstream, and this runs on each one.
        let released = false;
        ctx.releaseDailyCount = () => {
          if (released) return;
          released = true;
          const counters = dailyCounters(hits);
          if (counters.length) void this.storage.release(counters, store).catch(() => undefined);
        };
        // The cost goes to the day the request was admitted in: a request that ends after midnight
        // is the day before's. That is the day its budget was checked against and its tokens
        // reserved in, when asked (a handler's admission, which may come after midnight when the
        // guard ran just before it), else the day its daily counters name.
        // A request that reserved its cost against a budget has this replaced by its settlement
        // (QuotaService.admit): this adds the cost of one that reserved none.
        ctx.chargeDailyCost = (usd) => {
          const nanoUsd = toNanoUsd(usd);
          // Above 2^53 billionths ($9M for one request) a sum is no longer exact, and Redis's 64-bit
          // counter is not far: no real request costs that much (the audit line still says it).
          if (released || nanoUsd <= 0 || !Number.isSafeInteger(nanoUsd)) return;
          const dailyKey = hits.find(isDailyHit)?.key;
          const day = budget?.day ?? tokens?.day ?? (dailyKey ? dayOfDailyKey(dailyKey) : utcDay(Date.now()));
          void this.storage.addCost(product, user, nanoUsd, day, store).catch(() => undefined);
        };
        // In the guard, a client that left while its counters were being counted has its audit
        // line written already, and its handler will not run: nothing else would give the request
        // back. (In the handler, the request's end waits for the handler, and decides then.)
        if (!inHandler && ctx.abort.aborted) ctx.releaseDailyCount();
      }
      return batch;
    }
    if (batch.refusedBy) return batch;
    // The store names the first full counter, a per-second one before a daily one; others may be
    // full too. The request cannot pass before the last of them resets, so a full daily cap is the
    // one answered: "retry in 1 s" would send the client (and the SDKs' automatic retries) back to
    // be refused until midnight. The user's own full ones count toward their auto-block even when a
    // product's limit, full because of them, is named.
    const full = hits.flatMap((hit, i) =>
      hit.limit > 0 && (records[i].isBlocked || records[i].totalHits >= hit.limit) ? [hit.throttlerName as LimitName] : [],
    );
    // A route outside the daily caps (a token count, a stored response read: nothing generated) is
    // paced, but its refusals do not count toward auto-block: Claude Code's bursts of counts at
    // startup, and its SDK's retries of them, must not block a user who generated nothing.
    const daily = hits.find(isDailyHit);
    const generating = daily !== undefined;
    throw this.refusal(
      product,
      user,
      full.find(isDaily) ?? full[0],
      ctx,
      generating ? full.find((name) => name === 'user_qps' || name === 'user_daily') : undefined,
      generating,
      daily && dayOfDailyKey(daily.key),
    );
  }

  /**
   * What the stock guard's canActivate does, without waiting: for each throttler, the route's
   * `@SkipThrottle`/`skipIf`, then its limit, ttl and block duration (a route's `@Throttle` over the
   * throttler's own), handed to {@link handleRequest}. False, with nothing decided, when a value or
   * a tracker is a promise or not a number: the stock guard then does it all (and names the bad value).
   * Its `shouldSkip` is not asked: keygate does not override it, and the stock one answers false.
   */
  private collectAtOnce(context: ExecutionContext): boolean {
    const routes = this.routeThrottlers(context.getHandler(), context.getClass());
    const req = this.getRequestResponse(context).req;
    for (const { throttler, skip, limit, ttl, blockDuration, getTracker, generateKey } of routes) {
      const skipIf = throttler.skipIf || this.commonOptions.skipIf;
      if (skip || skipIf?.(context)) continue;
      const limitNow = resolvedNumber(context, limit ?? throttler.limit);
      const ttlNow = resolvedNumber(context, ttl ?? throttler.ttl);
      if (limitNow === undefined || ttlNow === undefined) return false;
      const blockNow = resolvedNumber(context, blockDuration ?? throttler.blockDuration ?? ttlNow);
      const tracker = getTracker ?? throttler.getTracker ?? this.commonOptions.getTracker;
      if (blockNow === undefined || !tracker) return false;
      const tracked = tracker(req, context);
      if (typeof tracked !== 'string') return false;
      void this.handleRequest({
        context,
        limit: limitNow,
        ttl: ttlNow,
        throttler,
        blockDuration: blockNow,
        // Asked once: the value just read, not the tracker again.
        getTracker: () => tracked,
        generateKey: generateKey ?? throttler.generateKey ?? this.commonOptions.generateKey!,
      });
    }
    return true;
  }

  /** Each throttler with what a route's decorators set for it, read once per route (they are fixed once the classes load). */
  private routeThrottlers(handler: RouteTarget, classRef: RouteTarget): RouteThrottler[] {
    let byClass = this.routes.get(handler);
    if (!byClass) this.routes.set(handler, (byClass = new WeakMap()));
    let found = byClass.get(classRef);
    if (found) return found;
    const read = <T>(key: string, name: string): T | undefined => this.reflector.getAllAndOverride<T>(key + name, [handler, classRef]);
    found = (this.throttlers as IdentityThrottler[]).map((throttler) => ({
      throttler,
      skip: read<boolean>(THROTTLER_SKIP, throttler.name),
      limit: read<Resolvable<number>>(THROTTLER_LIMIT, throttler.name),
      ttl: read<Resolvable<number>>(THROTTLER_TTL, throttler.name),
      blockDuration: read<Resolvable<number>>(THROTTLER_BLOCK_DURATION, throttler.name),
      getTracker: read<ThrottlerGetTrackerFunction>(THROTTLER_TRACKER, throttler.name),
      generateKey: read<ThrottlerGenerateKeyFunction>(THROTTLER_KEY_GENERATOR, throttler.name),
    }));
    byClass.set(classRef, found);
    return found;
  }

  /** The stock one's answer (HTTP: the request and the reply), read without switchToHttp (see {@link principalOf}). */
  protected override getRequestResponse(context: ExecutionContext): { req: Record<string, unknown>; res: Record<string, unknown> } {
    return { req: context.getArgByIndex(0), res: context.getArgByIndex(1) };
  }

  /** Called by the stock guard once per throttler, resolved: collected here, counted together by canActivate. */
  protected override handleRequest(props: ThrottlerRequest): Promise<boolean> {
    const { context, limit, blockDuration, getTracker } = props;
    // The stock guard hands back the options given to it (spread), so the extra fields are there.
    const throttler = props.throttler as IdentityThrottler;
    const { req } = this.getRequestResponse(context);
    const hits = this.pending.get(req);
    if (!hits) return Promise.reject(new Error('RequestLimitsGuard.handleRequest called outside canActivate'));
    const collect = (tracker: string): boolean => {
      // Decided on the final limit, so a route's @Throttle override of a 0 in the policy applies.
      if (limit === 0 && !throttler.countedWhenUnlimited) return true;
      const { key, field } = throttler.counter(context, tracker);
      hits.push({ key, field, ttl: throttler.lifetimeMs, limit, blockDuration, throttlerName: throttler.name });
      return true;
    };
    // keygate's trackers answer at once: no promise of its own per throttler (each promise costs
    // async_hooks work on every request while AsyncLocalStorage is on).
    const tracker = getTracker(req, context);
    return typeof tracker === 'string' ? (collect(tracker), COLLECTED) : tracker.then(collect);
  }

  /**
   * The contract's 429 (SPEC §6) rather than the stock ThrottlerException; only the user's own limits
   * count toward auto-block, and only on a route that generates (`autoBlock`).
   */
  private refusal(
    product: string,
    user: string,
    limit: LimitName,
    ctx: RequestContext | undefined,
    ownFull?: LimitName,
    autoBlock = true,
    day?: string,
  ): GatewayError {
    // A product-wide limit is not the user's doing, unless the user is over their own limit too.
    const own = !autoBlock ? undefined : limit === 'user_qps' || limit === 'user_daily' ? limit : ownFull;
    if (own) void this.autoBlocker.refused(product, user, own, ctx);
    // Until the end of the day whose counter refused (the request's, named before the store step),
    // not of the day it is now: one refused on a full day that midnight ended while Redis answered
    // would otherwise be told to wait a whole day (x-should-retry: false) when the new day has room.
    const now = Date.now();
    const retryAfterSeconds = isDaily(limit) ? (day ? secondsToEndOfUtcDay(day, now) : secondsToUtcMidnight(now)) : 1;
    // "try again in N s", OpenAI's own wording: clients that cannot see Retry-After read the wait there
    // (LangChain's retry, for errors without headers such as @langchain/google-genai's, retries on it).
    return new GatewayError('rate_limit_exceeded', `Rate limit reached for ${LIMIT_TEXT[limit]}; try again in ${retryAfterSeconds} s`, {
      retryAfterSeconds,
      headers: { 'x-keygate-limit': limit },
    });
  }
}

// The stock guard's metadata keys (its decorators write them; the package does not export its constants).
const THROTTLER_SKIP = 'THROTTLER:SKIP';
const THROTTLER_LIMIT = 'THROTTLER:LIMIT';
const THROTTLER_TTL = 'THROTTLER:TTL';
const THROTTLER_BLOCK_DURATION = 'THROTTLER:BLOCK_DURATION';
const THROTTLER_TRACKER = 'THROTTLER:TRACKER';
const THROTTLER_KEY_GENERATOR = 'THROTTLER:KEY_GENERATOR';

// eslint-disable-next-line @typescript-eslint/no-unsafe-function-type -- what ExecutionContext's getHandler/getClass return
type RouteTarget = Function;

/** A throttler and what a route's `@SkipThrottle`/`@Throttle` set for it (undefined: the throttler's own). */
interface RouteThrottler {
  throttler: IdentityThrottler;
  skip?: boolean;
  limit?: Resolvable<number>;
  ttl?: Resolvable<number>;
  blockDuration?: Resolvable<number>;
  getTracker?: ThrottlerGetTrackerFunction;
  generateKey?: ThrottlerGenerateKeyFunction;
}

/** A resolvable option's number now, as the stock guard reads it (numeric strings too); undefined when it is a promise or not a number. */
function resolvedNumber(context: ExecutionContext, value: Resolvable<number>): number | undefined {
  const resolved: unknown = typeof value === 'function' ? value(context) : value;
  const number = typeof resolved === 'string' && resolved.trim() !== '' ? Number(resolved) : resolved;
  return typeof number === 'number' && !Number.isNaN(number) ? number : undefined;
}

function isDaily(limit: LimitName): boolean {
  return limit === 'product_daily' || limit === 'user_daily';
}

/**
 * A request's throttler hits with its daily counters on `day`, the day its handler admits it: a
 * request the guard saw just before midnight and its handler admitted after is counted on the new
 * day, where its tokens and cost go (the same hits when they are on it already, as nearly always).
 */
function onDay(hits: ThrottlerHit[], product: string, day: string): ThrottlerHit[] {
  // A daily key ends with its day (`…:2031-01-01`): compared in place, no string made per request.
  if (!hits.some((hit) => isDailyHit(hit) && !hit.key.endsWith(day))) return hits;
  const key = dailyRequestsKey(product, day);
  return hits.map((hit) => (isDailyHit(hit) ? { ...hit, key } : hit));
}

/** A request's daily counter (whose key names its day). */
function isDailyHit(hit: ThrottlerHit): boolean {
  return hit.throttlerName === 'product_daily' || hit.throttlerName === 'user_daily';
}

/** The daily request counters among a request's throttler hits (given back when it is refused later). */
function dailyCounters(hits: readonly ThrottlerHit[]): Array<CounterRef & { ttlMs: number }> {
  const counters: Array<CounterRef & { ttlMs: number }> = [];
  // With their lifetime: a count taken in memory and already sent to Redis is taken back there.
  for (const { throttlerName, key, field, ttl } of hits)
    if (throttlerName === 'product_daily' || throttlerName === 'user_daily') counters.push({ key, field, ttlMs: ttl });
  return counters;
}
