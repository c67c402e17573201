import { createHash, createHmac } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';
import { GatewayError } from '@keygate/errors';
import { attachContext, RequestContext } from '@keygate/observability';
import type { HmacClient } from '@keygate/secrets';
import passport from 'passport';
import { HMAC_REPLAY_TTL_SECONDS, HMAC_STRATEGY, HmacStrategy, type HmacClientLookup, type HmacRequest } from './hmac.strategy';
import { MemoryReplayCache } from './memory.replay-cache';
import { ReplayCacheUnavailableError, type ReplayCache } from './replay-cache';

const NOW = 1_800_000_000;
const SECRET = 'billing-batch-secret-0123456789-abcdefghij';
const CLIENT: HmacClient = { clientId: 'billing-batch', secret: Buffer.from(SECRET), product: 'product-a' };
const OTHER: HmacClient = {
  clientId: 'other-client',
  secret: Buffer.from('another-secret-0123456789-abcdefghijklmn'),
  product: 'product-b',
};

class MapClients implements HmacClientLookup {
  private readonly byId = new Map([CLIENT, OTHER].map((c) => [c.clientId, c]));
  client(id: string): HmacClient | undefined {
    return this.byId.get(id);
  }
}

/** A replay cache that records what it was asked, in front of the real in-memory one. */
class RecordingCache implements ReplayCache {
  readonly calls: Array<[string, number, number | undefined]> = [];
  constructor(private readonly inner: ReplayCache) {}
  remember(key: string, ttlSeconds: number, signedAt?: number): Promise<boolean> {
    this.calls.push([key, ttlSeconds, signedAt]);
    return this.inner.remember(key, ttlSeconds, signedAt);
  }
}

class UnavailableCache implements ReplayCache {
  constructor(private readonly error = new ReplayCacheUnavailableError('the Redis replay cache did not answer')) {}
  remember(): Promise<boolean> {
    return Promise.reject(this.error);
  }
}

interface SignOptions {
  method?: string;
  url?: string;
  body?: string;
  timestamp?: number | string;
  client?: HmacClient;
  /** What the client signs, when it differs from what is sent. */
  signed?: { method?: string; url?: string; body?: string; timestamp?: string };
  headers?: IncomingHttpHeaders;
}

/** A fake Fastify request signed the way a client following SPEC §5 signs it. */
function signedRequest(o: SignOptions = {}): HmacRequest {
  const method = o.method ?? 'GET';
  const url = o.url ?? '/v1/models';
  const timestamp = String(o.timestamp ?? NOW);
  const client = o.client ?? CLIENT;
  const s = { method, url, body: o.body ?? '', timestamp, ...o.signed };
  const bodyHash = createHash('sha256').update(s.body).digest('hex');
  const signature = createHmac('sha256', client.secret).update(`${s.timestamp}\n${s.method}\n${s.url}\n${bodyHash}`).digest('hex');
  return {
    method,
    url,
    headers: { 'x-client-id': client.clientId, 'x-timestamp': timestamp, 'x-signature': signature, ...o.headers },
    ...(o.body !== undefined ? { rawBody: Buffer.from(o.body) } : {}),
  };
}

describe('HmacStrategy', () => {
  let now: number;
  let memory: MemoryReplayCache;
  let cache: RecordingCache;
  let strategy: HmacStrategy;

  beforeEach(() => {
    now = NOW;
    memory = new MemoryReplayCache();
    cache = new RecordingCache(memory);
    strategy = new HmacStrategy(new MapClients(), cache, () => now);
  });
  afterEach(() => memory.onModuleDestroy());

  async function rejection(request: HmacRequest, on: HmacStrategy = strategy): Promise<GatewayError> {
    const error = await on.validate(request).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(GatewayError);
    expect((error as Error).message).not.toContain(SECRET);
    return error as GatewayError;
  }

  async function invalidToken(request: HmacRequest): Promise<string> {
    const error = await rejection(request);
    expect(error.code).toBe('invalid_token');
    expect(error.status).toBe(401);
    return error.message;
  }

  it('registers itself with passport under HMAC_STRATEGY', () => {
    expect(HMAC_STRATEGY).toBe('keygate-hmac');
    const registered = (passport as unknown as { _strategy(name: string): unknown })._strategy(HMAC_STRATEGY);
    expect(registered).toBe(strategy);
  });

  it('authenticates a signed GET as the client, for the client’s product', async () => {
    await expect(strategy.validate(signedRequest())).resolves.toEqual({
      kind: 'hmac',
      product: 'product-a',
      user: 'billing-batch',
      scopes: [],
    });
  });

  it('signs the raw body bytes of a POST', async () => {
    const body = '{"model":"gpt-4o","messages":[{"role":"user","content":"héllo"}]}';
    await expect(strategy.validate(signedRequest({ method: 'POST', url: '/v1/chat/completions', body }))).resolves.toMatchObject({
      user: 'billing-batch',
    });
  });

  it('refuses a body other than the one signed', async () => {
    const request = signedRequest({
      method: 'POST',
      url: '/v1/chat/completions',
      body: '{"model":"gpt-4o"}',
      signed: { body: '{"model":"gpt-4o-mini"}' },
    });
    expect(await invalidToken(request)).toBe('the X-Signature does not match the request');
  });

  it('refuses a body when the signature covers an empty one', async () => {
    expect(await invalidToken(signedRequest({ method: 'POST', body: '{"a":1}', signed: { body: '' } }))).toMatch(/does not match/);
  });

  it('refuses a declared body whose raw bytes the gateway did not keep', async () => {
    const request = {
      ...signedRequest({ method: 'POST' }),
      headers: { ...signedRequest({ method: 'POST' }).headers, 'content-length': '7' },
    };
    expect(await invalidToken(request)).toMatch(/body cannot be verified/);
    const chunked = {
      ...signedRequest({ method: 'POST' }),
      headers: { ...signedRequest({ method: 'POST' }).headers, 'transfer-encoding': 'chunked' },
    };
    expect(await invalidToken(chunked)).toMatch(/body cannot be verified/);
  });

  it('signs the full target including the query string, exactly as received', async () => {
    const url = '/v1/models?limit=10&after=gpt%2D4';
    await expect(strategy.validate(signedRequest({ url }))).resolves.toMatchObject({ kind: 'hmac' });
    expect(await invalidToken(signedRequest({ url, signed: { url: '/v1/models' } }))).toMatch(/does not match/);
    expect(await invalidToken(signedRequest({ url: '/v1/models?limit=10', signed: { url: '/v1/models?limit=11' } }))).toMatch(
      /does not match/,
    );
  });

  it('refuses another method than the one signed', async () => {
    expect(await invalidToken(signedRequest({ method: 'DELETE', signed: { method: 'GET' } }))).toMatch(/does not match/);
  });

  it('refuses a signature made with another client’s secret', async () => {
    const request = signedRequest({ client: OTHER, headers: { 'x-client-id': CLIENT.clientId } });
    expect(await invalidToken(request)).toMatch(/does not match/);
  });

  it('refuses a timestamp that differs from the one signed', async () => {
    expect(await invalidToken(signedRequest({ timestamp: NOW, signed: { timestamp: String(NOW + 1) } }))).toMatch(/does not match/);
  });

  it('accepts timestamps up to 300 s behind or ahead of the clock', async () => {
    await expect(strategy.validate(signedRequest({ timestamp: NOW - 300 }))).resolves.toBeTruthy();
    await expect(strategy.validate(signedRequest({ timestamp: NOW + 300 }))).resolves.toBeTruthy();
  });

  it.each([
    ['301 s old', NOW - 301],
    ['301 s ahead', NOW + 301],
    ['of zero', 0],
  ])('refuses a timestamp %s', async (_label, timestamp) => {
    expect(await invalidToken(signedRequest({ timestamp }))).toBe('the X-Timestamp is more than 300 s away from the gateway clock');
  });

  it('accepts a signature once: a replay is refused, also after the clock moves on', async () => {
    const request = signedRequest({ method: 'POST', url: '/v1/chat/completions', body: '{}' });
    await expect(strategy.validate(request)).resolves.toBeTruthy();
    expect(await invalidToken(request)).toBe('this signature was already used');
    now += 299;
    expect(await invalidToken(request)).toBe('this signature was already used');
    expect(cache.calls[0]).toEqual([`billing-batch:${NOW}:${request.headers['x-signature'] as string}`, HMAC_REPLAY_TTL_SECONDS, NOW]);
    // Accepted while the gateway's whole-second clock is within ±300 s: up to 601 s of real time,
    // and replicas' clocks differ; the signature must be remembered longer than that.
    expect(HMAC_REPLAY_TTL_SECONDS).toBeGreaterThan(2 * 300 + 1);
  });

  it('keeps each signature separate: another request in the same second is accepted', async () => {
    await expect(strategy.validate(signedRequest({ url: '/v1/models' }))).resolves.toBeTruthy();
    await expect(strategy.validate(signedRequest({ url: '/v1/models?x=1' }))).resolves.toBeTruthy();
  });

  it('checks replay only after the signature, so a forgery cannot burn a legitimate signature', async () => {
    const legit = signedRequest();
    const forged = { ...legit, headers: { ...legit.headers, 'x-signature': 'f'.repeat(64) } };
    expect(await invalidToken(forged)).toMatch(/does not match/);
    expect(cache.calls).toHaveLength(0);
    await expect(strategy.validate(legit)).resolves.toBeTruthy();
  });

  it('answers 503 (fail closed) when the replay cache is unavailable', async () => {
    const down = new HmacStrategy(new MapClients(), new UnavailableCache(), () => now);
    const error = await rejection(signedRequest(), down);
    expect(error.code).toBe('service_unavailable');
    expect(error.status).toBe(503);
    expect(error.message).toBe('the replay cache is unavailable; retry shortly');
    expect(error.options.retryAfterSeconds).toBe(1);
  });

  it('passes on what the cache says when it knows more (a signature refused until a time after a data loss)', async () => {
    const lost = new ReplayCacheUnavailableError('before the loss', { retryAfterSeconds: 240, clientMessage: 'sign again after 12:05' });
    const error = await rejection(signedRequest(), new HmacStrategy(new MapClients(), new UnavailableCache(lost), () => now));
    expect([error.status, error.message, error.options.retryAfterSeconds]).toEqual([503, 'sign again after 12:05', 240]);
  });

  describe('the audit context of a request refused because the replay cache is unavailable', () => {
    const down = (): HmacStrategy => new HmacStrategy(new MapClients(), new UnavailableCache(), () => now);
    function withContext(request: HmacRequest): { request: HmacRequest; ctx: RequestContext } {
      const raw = {};
      const ctx = new RequestContext('req-1', request.method, '/v1/models', 0n, null, true);
      attachContext(raw, ctx);
      return { request: { ...request, raw }, ctx };
    }

    it('names the client and its product: the signature verified before the cache was asked', async () => {
      const { request, ctx } = withContext(signedRequest({ client: OTHER }));
      expect((await rejection(request, down())).code).toBe('service_unavailable');
      expect({ product: ctx.product, user: ctx.user }).toEqual({ product: 'product-b', user: 'other-client' });
    });

    it('names no one when the signature does not verify', async () => {
      const { request, ctx } = withContext(signedRequest({ signed: { body: 'something else' } }));
      expect((await rejection(request, down())).code).toBe('invalid_token');
      expect({ product: ctx.product, user: ctx.user }).toEqual({ product: null, user: null });
    });
  });

  it('refuses an unknown client', async () => {
    const stranger = { ...CLIENT, clientId: 'stranger' };
    expect(await invalidToken(signedRequest({ client: stranger }))).toBe('the X-Client-Id is not a known HMAC client');
  });

  it('leaves a request without any HMAC header to the other strategies', async () => {
    await expect(strategy.validate({ method: 'GET', url: '/v1/models', headers: { authorization: 'Bearer x.y.z' } })).resolves.toBe(false);
  });

  it.each([
    ['without X-Client-Id', { 'x-client-id': undefined }, /X-Client-Id header is required/],
    ['without X-Timestamp', { 'x-timestamp': undefined }, /X-Timestamp header is required/],
    ['without X-Signature', { 'x-signature': undefined }, /X-Signature header is required/],
    [
      'with X-Client-Id twice (array)',
      { 'x-client-id': ['billing-batch', 'billing-batch'] },
      /X-Client-Id header must be sent exactly once/,
    ],
    ['with X-Timestamp twice (array)', { 'x-timestamp': [String(NOW), String(NOW)] }, /X-Timestamp header must be sent exactly once/],
    ['with X-Signature twice (array)', { 'x-signature': ['a'.repeat(64), 'a'.repeat(64)] }, /X-Signature header must be sent exactly once/],
    ['with X-Client-Id twice (joined by Node)', { 'x-client-id': 'billing-batch, billing-batch' }, /X-Client-Id header must be/],
    ['with a space in X-Client-Id', { 'x-client-id': 'billing batch' }, /X-Client-Id header must be/],
    ['with a fractional X-Timestamp', { 'x-timestamp': `${NOW}.0` }, /X-Timestamp header must be unix seconds/],
    ['with a padded X-Timestamp', { 'x-timestamp': ` ${NOW}` }, /X-Timestamp header must be unix seconds/],
    ['with X-Timestamp in milliseconds', { 'x-timestamp': String(NOW * 1000) }, /X-Timestamp header must be unix seconds/],
    ['with upper-case hex', { 'x-signature': 'A'.repeat(64) }, /X-Signature header must be the lowercase hex/],
    ['with a short X-Signature', { 'x-signature': 'a'.repeat(63) }, /X-Signature header must be/],
  ])('refuses a request %s', async (_label, override, message) => {
    const request = signedRequest();
    expect(await invalidToken({ ...request, headers: { ...request.headers, ...override } })).toMatch(message);
  });

  it('refuses a signature that is correct except for upper-case hex', async () => {
    const request = signedRequest();
    const upper = { ...request, headers: { ...request.headers, 'x-signature': (request.headers['x-signature'] as string).toUpperCase() } };
    expect(await invalidToken(upper)).toMatch(/lowercase hex/);
  });

  it.each([
    '//v1/models',
    '/v1//models',
    '/v1/./models',
    '/v1/../v1/models',
    '/v1/models/.',
    '/v1/models/..',
    '/v1/%2e%2e/models',
    '/v1%2Fmodels',
    '/v1%5cmodels',
    '/v1\\models',
    'v1/models',
  ])('refuses the non-normalised target %s even when correctly signed', async (url) => {
    expect(await invalidToken(signedRequest({ url }))).toMatch(/normal form/);
    expect(cache.calls).toHaveLength(0);
  });

  it('names the rule a percent-encoded unreserved character breaks (/chat/%64emo is routed as /chat/demo)', async () => {
    expect(await invalidToken(signedRequest({ url: '/chat/%64emo' }))).toMatch(/normal form.*percent-encoded letter, digit/);
    expect(cache.calls).toHaveLength(0);
  });

  describe('an absolute-form target (http://host/path, as through a forward proxy)', () => {
    it('is verified over its path and query, as the client signed them (SPEC §5)', async () => {
      const request = signedRequest({ url: 'http://gateway.internal:8080/v1/models?limit=5', signed: { url: '/v1/models?limit=5' } });
      await expect(strategy.validate(request)).resolves.toMatchObject({ kind: 'hmac', user: 'billing-batch' });
    });

    it('is refused when signed as the absolute URL, or over another path or query', async () => {
      const url = 'http://gateway.internal:8080/v1/models?limit=5';
      expect(await invalidToken(signedRequest({ url }))).toMatch(/does not match/);
      expect(await invalidToken(signedRequest({ url, signed: { url: '/v1/models' } }))).toMatch(/does not match/);
      expect(await invalidToken(signedRequest({ url, signed: { url: '/chat/product-a?limit=5' } }))).toMatch(/does not match/);
    });

    it.each([
      'http://h/v1/../v1/models',
      'http://h//v1/models',
      'http://h/v1/%2e%2e/models',
      'http://h?x=/v1/models',
      'http://user@h/v1/models',
      'ftp://h/v1/models',
    ])('keeps the normal-form rules on its path: %s is refused even when its origin form is signed', async (url) => {
      const origin = url.replace(/^[a-z]+:\/\/[^/]*/, '');
      expect(await invalidToken(signedRequest({ url, signed: { url: origin } }))).toMatch(/normal form/);
      expect(cache.calls).toHaveLength(0);
    });
  });

  describe('authenticate (the passport contract)', () => {
    /** What passport does per request: a copy of the strategy with success/fail/error attached. */
    function run(request: HmacRequest): Promise<{ outcome: string; args: unknown[] }> {
      return new Promise((resolve) => {
        const augmented = Object.create(strategy) as HmacStrategy;
        augmented.success = (...args: unknown[]) => resolve({ outcome: 'success', args });
        augmented.fail = ((...args: unknown[]) => resolve({ outcome: 'fail', args })) as HmacStrategy['fail'];
        augmented.error = (...args: unknown[]) => resolve({ outcome: 'error', args });
        augmented.authenticate(request);
      });
    }

    it('calls success with the principal', async () => {
      const { outcome, args } = await run(signedRequest());
      expect(outcome).toBe('success');
      expect(args[0]).toEqual({ kind: 'hmac', product: 'product-a', user: 'billing-batch', scopes: [] });
    });

    it('calls fail without info when no HMAC header is present, so the next strategy runs', async () => {
      const { outcome, args } = await run({ method: 'GET', url: '/v1/models', headers: {} });
      expect(outcome).toBe('fail');
      expect(args.filter((a) => typeof a !== 'number')).toEqual([]);
    });

    it('calls error with the GatewayError of a failed attempt', async () => {
      const { outcome, args } = await run(signedRequest({ timestamp: NOW - 1000 }));
      expect(outcome).toBe('error');
      expect(args[0]).toBeInstanceOf(GatewayError);
      expect((args[0] as GatewayError).code).toBe('invalid_token');
    });

    it('turns an unexpected failure into an internal GatewayError', async () => {
      const broken: HmacClientLookup = {
        client: () => {
          throw new Error('lookup exploded');
        },
      };
      strategy = new HmacStrategy(broken, cache, () => now);
      const { outcome, args } = await run(signedRequest());
      expect(outcome).toBe('error');
      expect((args[0] as GatewayError).code).toBe('internal_error');
    });
  });
});
