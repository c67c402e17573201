import { EventEmitter } from 'node:events';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { AuditService } from '@keygate/audit';
import type { CredentialGuard } from '@keygate/auth';
import { buildPolicyBook, type GatewayConfig } from '@keygate/config';
import { LifecycleState } from '@keygate/health';
import type { BlocksService } from '@keygate/limits';
import { JsonLogger, MetricsService, type RequestContext } from '@keygate/observability';
import { UpstreamError } from '@keygate/providers';
import type { SecretsService } from '@keygate/secrets';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { countAttempt } from '../routing/attempt-count';
import {
  CLIENT_CLOSED_REQUEST,
  credentialProblem,
  failureForStatus,
  isAudited,
  repeatedHeader,
  RequestLifecycle,
  requestPath,
  routedPath,
} from './request-lifecycle';

describe('requestPath', () => {
  it.each([
    ['/v1/chat/completions', '/v1/chat/completions'],
    ['/v1/models?limit=2', '/v1/models'],
    ['/v1/embeddings#frag', '/v1/embeddings'],
    ['/v1/models?x=1#frag', '/v1/models'],
    ['http://evil.example/v1/chat/completions', '/v1/chat/completions'],
    ['https://evil.example:8443/chat/demo?x=1', '/chat/demo'],
    ['HTTP://Evil.Example/v1/embeddings', '/v1/embeddings'],
    ['http://evil.example', '/'],
    ['http://evil.example?x=1', '/'],
    ['*', '*'],
  ])('%s -> %s', (target, path) => {
    expect(requestPath(target)).toBe(path);
  });
});

describe('routedPath', () => {
  it.each([
    ['/v1/chat/completions', '/v1/chat/completions'],
    ['/V1/Chat/Completions', '/v1/chat/completions'],
    ['/%761/no-such-thing', '/v1/no-such-thing'],
    ['/%56%31/models', '/v1/models'],
    // Reserved characters stay escaped, as the router leaves them: no route takes them.
    ['/v1%2Fchat/completions', '/v1%2fchat/completions'],
    ['/v1/%zz', '/v1/%zz'],
    ['/ADMIN/blocks', '/admin/blocks'],
  ])('%s -> %s', (path, routed) => {
    expect(routedPath(path)).toBe(routed);
  });
});

describe('isAudited', () => {
  it.each([
    ['/v1/chat/completions', undefined, true],
    ['/V1/chat/completions', undefined, true],
    ['/V1/models', undefined, true],
    ['/Chat/demo', undefined, true],
    ['/%761/no-such-thing', undefined, true],
    ['/%761/chat/completions', '/v1/chat/completions', true],
    ['/v1', undefined, false],
    ['/v1%2Fchat/completions', undefined, false],
    ['/healthz', '/healthz', false],
    ['/Admin/blocks', undefined, false],
    ['/v2/models', undefined, false],
    // A base URL ending in `/`: no route takes it, audited all the same.
    ['//v1/chat/completions', undefined, true],
    ['///chat/demo', undefined, true],
    ['//admin/blocks', undefined, false],
  ])('%s (route %s) -> %s', (path, route, audited) => {
    expect(isAudited(routedPath(path), route)).toBe(audited);
  });
});

describe('failureForStatus', () => {
  it.each([
    [400, 'bad_request'],
    [401, 'auth'],
    [403, 'forbidden'],
    [404, 'not_found'],
    [405, 'bad_request'],
    [413, 'policy'],
    [415, 'bad_request'],
    [429, 'rate_limit'],
    [CLIENT_CLOSED_REQUEST, 'client_abort'],
    [500, 'internal'],
    [503, 'internal'],
  ])('%i -> %s', (status, failure) => {
    expect(failureForStatus(status)).toBe(failure);
  });
});

describe('repeatedHeader', () => {
  it('finds a header sent twice, whatever its case, and only then', () => {
    expect(repeatedHeader(['Authorization', 'Bearer a', 'Host', 'x', 'authorization', 'Bearer b'], 'authorization')).toBe(true);
    expect(repeatedHeader(['Authorization', 'Bearer a', 'Host', 'x'], 'authorization')).toBe(false);
    expect(repeatedHeader(['X-Authorization', 'a', 'Authorization', 'b', 'x', 'authorization'], 'authorization')).toBe(false);
  });
});

describe('credentialProblem', () => {
  /** A request with these raw headers, as Node would present it (the first of a repeated header kept). */
  const request = (rawHeaders: string[]): Parameters<typeof credentialProblem>[0] => {
    const headers: Record<string, string> = {};
    for (let i = 0; i < rawHeaders.length; i += 2) headers[rawHeaders[i].toLowerCase()] ??= rawHeaders[i + 1];
    return { headers, raw: { rawHeaders } } as unknown as Parameters<typeof credentialProblem>[0];
  };

  it('refuses two Authorization headers anywhere, and on Anthropic routes two keys or two different credentials', () => {
    expect(credentialProblem(request(['Authorization', 'Bearer a', 'authorization', 'Bearer b']), false)?.options.param).toBe(
      'authorization',
    );
    expect(credentialProblem(request(['x-api-key', 'a', 'X-Api-Key', 'b']), true)?.options.param).toBe('x-api-key');
    expect(credentialProblem(request(['Authorization', 'Bearer a', 'x-api-key', 'b']), true)?.options.param).toBe('x-api-key');
    // Not on the OpenAI routes, where x-api-key is no credential.
    expect(credentialProblem(request(['Authorization', 'Bearer a', 'x-api-key', 'b']), false)).toBeUndefined();
  });

  it('takes one credential, the same token in both headers, and IAP’s own Authorization beside a key', () => {
    expect(credentialProblem(request(['Authorization', 'Bearer a']), true)).toBeUndefined();
    expect(credentialProblem(request(['authorization', 'bearer  a ', 'x-api-key', 'a']), true)).toBeUndefined();
    expect(
      credentialProblem(request(['Authorization', 'Bearer google-oidc', 'x-api-key', 'a', 'x-goog-iap-jwt-assertion', 'h.p.s']), true),
    ).toBeUndefined();
  });

  it('on Google’s routes, refuses two x-goog-api-key headers, a key beside a different Authorization, and any key in the query', () => {
    const google = (rawHeaders: string[], url = '/v1beta/models/m:generateContent'): Parameters<typeof credentialProblem>[0] => {
      const r = request(rawHeaders);
      (r.raw as { url?: string }).url = url;
      return r;
    };
    expect(credentialProblem(google(['x-goog-api-key', 'a', 'X-Goog-Api-Key', 'b']), false, true)?.options.param).toBe('x-goog-api-key');
    expect(credentialProblem(google(['Authorization', 'Bearer a', 'x-goog-api-key', 'b']), false, true)?.options.param).toBe(
      'x-goog-api-key',
    );
    expect(credentialProblem(google(['Authorization', 'Bearer a', 'x-goog-api-key', 'a']), false, true)).toBeUndefined();
    for (const query of ['?key=a', '?alt=sse&key=', '?%6Bey=a'])
      expect(
        credentialProblem(google(['x-goog-api-key', 'a'], `/v1beta/models/m:streamGenerateContent${query}`), false, true),
      ).toMatchObject({
        code: 'invalid_request',
        options: { param: 'key' },
      });
    expect(
      credentialProblem(google(['x-goog-api-key', 'a'], '/v1beta/models/m:streamGenerateContent?alt=sse&keys=1'), false, true),
    ).toBeUndefined();
    // Elsewhere neither header nor query is Google's.
    expect(
      credentialProblem(google(['Authorization', 'Bearer a', 'x-goog-api-key', 'b'], '/v1/chat/completions?key=a'), false),
    ).toBeUndefined();
  });
});

describe('RequestLifecycle.auditUnfinished', () => {
  /** A lifecycle whose audit lines land in `lines`; its collaborators beyond the audit are inert stand-ins. */
  function lifecycle(lines: Array<Record<string, unknown>>): RequestLifecycle {
    const audit = new AuditService(new JsonLogger('error', undefined, (line) => lines.push(JSON.parse(line) as Record<string, unknown>)), {
      policy: buildPolicyBook({ prices: { 'gpt-4o': { input: 2.5, output: 10 } } }),
    });
    return new RequestLifecycle(
      { requestTimeoutSeconds: 60 } as GatewayConfig,
      audit,
      new MetricsService(),
      new LifecycleState(),
      { product: () => undefined } as unknown as SecretsService,
      {} as unknown as CredentialGuard,
      { onBlocked: () => undefined } as unknown as BlocksService,
    );
  }

  /** A request as the onRequest hook sees it arrive, and its raw response (finished or not). */
  function arrive(requests: RequestLifecycle, id: string): { ctx: RequestContext; res: EventEmitter & { writableFinished: boolean } } {
    const raw = Object.assign(new EventEmitter(), { headers: { 'x-request-id': id }, socket: null });
    const res = Object.assign(new EventEmitter(), {
      setHeader: () => undefined,
      writableFinished: false,
      headersSent: false,
      statusCode: 200,
    });
    const url = '/v1/chat/completions';
    const request = { raw, url, method: 'POST', routeOptions: { url } } as unknown as FastifyRequest;
    const ctx = requests.begin(request, { raw: res, request } as unknown as FastifyReply);
    Object.assign(ctx, { product: 'demo', user: 'alice', provider: 'openai', model: 'gpt-4o', requestedModel: 'gpt-4o', stream: true });
    return { ctx, res };
  }

  it('writes the audit line of a request still open, with the tokens it used so far, as an internal 500; once', () => {
    const lines: Array<Record<string, unknown>> = [];
    const requests = lifecycle(lines);
    const { ctx } = arrive(requests, 'req-open');
    ctx.tokensIn = 120;
    ctx.tokensOut = 30;
    requests.auditUnfinished();
    requests.auditUnfinished();
    expect(lines).toEqual([
      expect.objectContaining({
        type: 'audit',
        requestId: 'req-open',
        severity: 'WARNING',
        status: 500,
        failure: 'internal',
        tokens_in: 120,
        tokens_out: 30,
        cost_usd: 0.0006,
      }),
    ]);
  });

  it('counts the upstream attempts under way among the attempts, beside those that settled (the upstream has the request)', async () => {
    const lines: Array<Record<string, unknown>> = [];
    const requests = lifecycle(lines);
    const { ctx } = arrive(requests, 'req-attempting');
    // A first attempt failed (a 503, counted), a fallback's attempt to another provider is under way.
    await countAttempt(ctx, () => Promise.reject(new UpstreamError('http', 'openai', 'HTTP 503', 503))).catch(() => undefined);
    ctx.provider = 'anthropic';
    void countAttempt(ctx, () => new Promise<never>(() => undefined));
    requests.auditUnfinished();
    expect(lines).toEqual([expect.objectContaining({ requestId: 'req-attempting', status: 500, failure: 'internal', attempts: 2 })]);
    expect(ctx.attemptsByProvider).toEqual(
      new Map([
        ['openai', 1],
        ['anthropic', 1],
      ]),
    );
  });

  it('keeps the outcome of a request answered while its handler still winds down, and writes no second line after', async () => {
    const lines: Array<Record<string, unknown>> = [];
    const requests = lifecycle(lines);
    const { ctx, res } = arrive(requests, 'req-settling');
    let settle = (): void => undefined;
    ctx.settled = new Promise<void>((done) => (settle = done));
    ctx.tokensIn = 10;
    res.writableFinished = true;
    res.emit('close');
    expect(lines).toEqual([]);
    requests.auditUnfinished();
    expect(lines).toEqual([expect.objectContaining({ requestId: 'req-settling', status: 200, failure: null, tokens_in: 10 })]);
    settle();
    await ctx.settled;
    await new Promise((done) => setImmediate(done));
    expect(lines).toHaveLength(1);
  });
});

describe('RequestLifecycle: a connection kept alive', () => {
  // The GC, to see what a connection still holds once its request has ended.
  setFlagsFromString('--expose-gc');
  const gc = runInNewContext('gc') as () => void;

  /**
   * One request on `socket`, whose body is `body`, answered and closed: a weak reference to its
   * request (a FastifyRequest, which holds the body), made in a scope of its own so the test keeps none.
   */
  async function requestEnded(requests: RequestLifecycle, socket: EventEmitter): Promise<WeakRef<object>> {
    const raw = Object.assign(new EventEmitter(), { headers: { 'x-request-id': 'req-kept-alive' }, socket });
    const res = Object.assign(new EventEmitter(), {
      setHeader: () => undefined,
      writableFinished: true,
      headersSent: true,
      statusCode: 200,
      socket,
    });
    const url = '/v1/chat/completions';
    const request = { raw, url, method: 'POST', routeOptions: { url }, body: Buffer.alloc(1024 * 1024) } as unknown as FastifyRequest;
    requests.begin(request, { raw: res, request } as unknown as FastifyReply);
    res.emit('close');
    await new Promise((done) => setImmediate(done));
    return new WeakRef(request);
  }

  it('keeps nothing of a request that has ended (its body) while the connection stays open', async () => {
    const lines: Array<Record<string, unknown>> = [];
    const requests = new RequestLifecycle(
      { requestTimeoutSeconds: 60 } as GatewayConfig,
      new AuditService(new JsonLogger('error', undefined, (line) => lines.push(JSON.parse(line) as Record<string, unknown>)), {
        policy: buildPolicyBook({}),
      }),
      new MetricsService(),
      new LifecycleState(),
      { product: () => undefined } as unknown as SecretsService,
      {} as unknown as CredentialGuard,
      { onBlocked: () => undefined } as unknown as BlocksService,
    );
    const socket = new EventEmitter();
    const request = await requestEnded(requests, socket);
    expect(lines).toEqual([expect.objectContaining({ requestId: 'req-kept-alive', status: 200 })]);
    // The connection is still watched (its close ends requests pipelined behind an answer that closed it)...
    expect(socket.listenerCount('close')).toBe(1);
    // ...but that watch must not hold the connection's first request: its body stayed in memory for
    // as long as the connection lived (kept alive up to 620 s, for ever under steady use).
    await new Promise((done) => setImmediate(done));
    gc();
    expect(request.deref()).toBeUndefined();
  });
  /**
   * One request whose handler failed (its rejection holds what the handler held, as the frames of a
   * thrown error's stack do) and whose limits left a cost to charge, answered and closed; the
   * context stays reachable, as a kept-alive connection's timer keeps the async context it was
   * armed in. Weak references to what the rejection and the closure held.
   */
  async function failedRequestEnded(
    requests: RequestLifecycle,
    kept: RequestContext[],
  ): Promise<{ rejected: WeakRef<object>; charged: WeakRef<object>; charges: number[] }> {
    const raw = Object.assign(new EventEmitter(), { headers: { 'x-request-id': 'req-refused' }, socket: null });
    const res = Object.assign(new EventEmitter(), {
      setHeader: () => undefined,
      writableFinished: true,
      headersSent: true,
      statusCode: 400,
    });
    const url = '/v1/chat/completions';
    const request = { raw, url, method: 'POST', routeOptions: { url } } as unknown as FastifyRequest;
    const ctx = requests.begin(request, { raw: res, request } as unknown as FastifyReply);
    const body = { messages: ['x'.repeat(1024 * 1024)] };
    ctx.settled = Promise.reject(Object.assign(new Error('refused'), { body }));
    const estimate = { tokens: new Array(1024).fill(1) };
    const charges: number[] = [];
    ctx.chargeDailyCost = (usd) => charges.push(usd + estimate.tokens.length * 0);
    kept.push(ctx);
    res.emit('close');
    await new Promise((done) => setImmediate(done));
    return { rejected: new WeakRef(body), charged: new WeakRef(estimate), charges };
  }

  it('drops what a finished request left on its context (a rejection, the limits’ closures), which may outlive it', async () => {
    const lines: Array<Record<string, unknown>> = [];
    const requests = new RequestLifecycle(
      { requestTimeoutSeconds: 60 } as GatewayConfig,
      new AuditService(new JsonLogger('error', undefined, (line) => lines.push(JSON.parse(line) as Record<string, unknown>)), {
        policy: buildPolicyBook({}),
      }),
      new MetricsService(),
      new LifecycleState(),
      { product: () => undefined } as unknown as SecretsService,
      {} as unknown as CredentialGuard,
      { onBlocked: () => undefined } as unknown as BlocksService,
    );
    const kept: RequestContext[] = [];
    const { rejected, charged, charges } = await failedRequestEnded(requests, kept);
    expect(lines).toEqual([expect.objectContaining({ requestId: 'req-refused', status: 400, failure: 'bad_request' })]);
    expect(charges).toEqual([0]);
    await new Promise((done) => setImmediate(done));
    gc();
    expect(kept[0].audited).toBe(true);
    expect(rejected.deref()).toBeUndefined();
    expect(charged.deref()).toBeUndefined();
  });
});
