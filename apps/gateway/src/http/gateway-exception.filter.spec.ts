import type { ArgumentsHost } from '@nestjs/common';
import { ThrottlerException } from '@nestjs/throttler';
import type { GatewayConfig } from '@keygate/config';
import { GatewayError } from '@keygate/errors';
import { attachContext, JsonLogger, RequestContext } from '@keygate/observability';
import { ClientAbortedError, UpstreamError } from '@keygate/providers';
import type { CredentialGuard } from '@keygate/auth';
import { challengeText, GatewayExceptionFilter } from './gateway-exception.filter';
import { speaksAnthropic } from '../messages/anthropic-errors';

/** A reply that records what the filter answers (Fastify's chainable API, the parts the filter uses). */
function answered(
  exception: unknown,
  ctx?: RequestContext,
  requestHeaders: Record<string, string> = {},
  credentials?: CredentialGuard,
  logLine: (line: string) => void = () => undefined,
): { status: number; headers: Record<string, string>; body: unknown } {
  const out = { status: 0, headers: {} as Record<string, string>, body: undefined as unknown };
  const reply = {
    sent: false,
    raw: { headersSent: false },
    status(code: number) {
      out.status = code;
      return reply;
    },
    headers(h: Record<string, string>) {
      Object.assign(out.headers, h);
      return reply;
    },
    type() {
      return reply;
    },
    send(body: unknown) {
      out.body = body;
      return reply;
    },
  };
  const raw = {};
  if (ctx) attachContext(raw, ctx);
  const host = {
    switchToHttp: () => ({
      getRequest: () => ({ raw, url: ctx?.path ?? '/admin/blocks', headers: requestHeaders, hostname: '127.0.0.1', protocol: 'http' }),
      getResponse: () => reply,
    }),
  } as unknown as ArgumentsHost;
  const filter = new GatewayExceptionFilter(
    new JsonLogger('error', undefined, logLine),
    { resource: { authorizationServers: [] } } as unknown as GatewayConfig,
    credentials,
  );
  filter.catch(exception, host);
  return out;
}

describe('GatewayExceptionFilter', () => {
  it("logs an unexpected error with the request's id and trace, though it is caught outside the request's async context", () => {
    const ctx = new RequestContext(
      'req-internal-1',
      'POST',
      '/v1/chat/completions',
      0n,
      { traceId: 'a'.repeat(32), spanId: 'b'.repeat(16) },
      true,
    );
    const lines: string[] = [];
    const { status, body } = answered(new TypeError('something broke'), ctx, {}, undefined, (line) => lines.push(line));
    expect(status).toBe(500);
    expect(body).toMatchObject({ error: { code: 'internal_error', message: 'internal error (request id req-internal-1)' } });
    expect(lines.map((line) => JSON.parse(line) as Record<string, unknown>)).toEqual([
      expect.objectContaining({
        severity: 'ERROR',
        message: 'something broke',
        requestId: 'req-internal-1',
        'logging.googleapis.com/trace': 'a'.repeat(32),
        'logging.googleapis.com/spanId': 'b'.repeat(16),
        'logging.googleapis.com/labels': { service: 'keygate', request_id: 'req-internal-1' },
      }),
    ]);
  });

  it("answers the operator routes' throttle (the stock ThrottlerGuard) with the contract's 429 and a Retry-After", () => {
    const { status, headers, body } = answered(new ThrottlerException());
    expect(status).toBe(429);
    expect(headers['retry-after']).toBe('60');
    expect(body).toMatchObject({ error: { code: 'rate_limit_exceeded', type: expect.any(String) as unknown } });
    expect(JSON.stringify(body)).not.toContain('ThrottlerException');
  });

  it('tells the SDKs not to retry a 429 whose Retry-After is longer than they would wait, and leaves a short one retryable', () => {
    const untilMidnight = answered(new GatewayError('daily_quota_exceeded', 'quota', { retryAfterSeconds: 40_000 }));
    expect(untilMidnight.status).toBe(429);
    expect(untilMidnight.headers).toMatchObject({ 'retry-after': '40000', 'x-should-retry': 'false' });
    const dailyCap = answered(new GatewayError('rate_limit_exceeded', 'daily', { retryAfterSeconds: 61 }));
    expect(dailyCap.headers['x-should-retry']).toBe('false');
    for (const retryAfterSeconds of [1, 60]) {
      const perSecond = answered(new GatewayError('rate_limit_exceeded', 'qps', { retryAfterSeconds }));
      expect(perSecond.headers['retry-after']).toBe(String(retryAfterSeconds));
      expect(perSecond.headers).not.toHaveProperty('x-should-retry');
    }
    expect(answered(new ThrottlerException()).headers).not.toHaveProperty('x-should-retry');
    // Only a 429: a long wait on another status (a 503) is the SDKs' to judge.
    expect(answered(new GatewayError('service_unavailable', 'down', { retryAfterSeconds: 120 })).headers).not.toHaveProperty(
      'x-should-retry',
    );
  });

  it('tells the SDKs not to retry an upstream failure keygate already retried, and leaves one it tried once to them', () => {
    const context = (attempts: number): RequestContext => {
      const ctx = new RequestContext(`req-${attempts}`, 'POST', '/v1/chat/completions', 0n, null, true);
      ctx.attempts = attempts;
      return ctx;
    };
    const failures = [
      new GatewayError('upstream_error', 'upstream openai answered 503'),
      new GatewayError('upstream_timeout', 'upstream openai did not answer in time'),
      new GatewayError('upstream_rate_limited', 'upstream openai is rate limiting keygate', { retryAfterSeconds: 2 }),
    ];
    for (const error of failures) {
      expect(answered(error, context(3)).headers['x-should-retry']).toBe('false');
      expect(answered(error, context(1)).headers).not.toHaveProperty('x-should-retry');
    }
    // Not an upstream failure (the drain's 503: the next replica may serve it), or one the SDKs never retry (a 400).
    expect(answered(new GatewayError('service_unavailable', 'down', { retryAfterSeconds: 1 }), context(3)).headers).not.toHaveProperty(
      'x-should-retry',
    );
    expect(answered(new GatewayError('upstream_bad_request', 'refused'), context(3)).headers).not.toHaveProperty('x-should-retry');
  });

  it('tells the SDKs not to retry a whole answer cut at the timeout for its headers or the whole request, and leaves a stream’s to them', () => {
    const context = (stream: boolean): RequestContext => {
      const ctx = new RequestContext(`req-cut-${stream}`, 'POST', '/v1/messages', 0n, null, true);
      ctx.attempts = 1;
      ctx.stream = stream;
      return ctx;
    };
    for (const kind of ['ttfb_timeout', 'total_timeout'] as const) {
      const cut = new UpstreamError(kind, 'anthropic', 'too slow').toGatewayError();
      const whole = answered(cut, context(false));
      expect(whole.status).toBe(504);
      expect(whole.headers['x-should-retry']).toBe('false');
      // A stream's headers come before the model writes: nothing was generated, the SDKs may retry.
      expect(answered(cut, context(true)).headers).not.toHaveProperty('x-should-retry');
    }
    // Another failure of one attempt (the connection dropped) stays the SDKs' to retry.
    const dropped = new UpstreamError('connection_lost', 'anthropic', 'closed').toGatewayError();
    expect(answered(dropped, context(false)).headers).not.toHaveProperty('x-should-retry');
  });

  it('answers a request cut by the drain with the 503, Retry-After and Connection: close (its next request goes elsewhere)', () => {
    const ctx = new RequestContext('req-drain', 'POST', '/v1/chat/completions', 0n, null, true);
    ctx.endedBy = new GatewayError('service_unavailable', 'keygate is shutting down', { retryAfterSeconds: 1 });
    const { status, headers, body } = answered(new ClientAbortedError(), ctx);
    expect(status).toBe(503);
    expect(headers).toMatchObject({ 'retry-after': '1', connection: 'close' });
    expect(body).toMatchObject({ error: { code: 'service_unavailable' } });
  });

  it('answers a request a block ended with the 403 blocked, whatever its handler threw on the abort', () => {
    const blocked = new GatewayError('blocked', 'user u of product p is blocked: runaway');
    for (const thrown of [new ClientAbortedError(), new Error('aborted'), blocked]) {
      const ctx = new RequestContext('req-blocked', 'POST', '/v1/chat/completions', 0n, null, true);
      ctx.endedBy = blocked;
      const { status, headers, body } = answered(thrown, ctx);
      expect(status).toBe(403);
      expect(headers).not.toHaveProperty('connection');
      expect(body).toMatchObject({ error: { code: 'blocked' } });
      expect(ctx.failure).toBe('blocked');
    }
  });

  it('keeps a refusal raised before the block came (the 429 that set off an auto-block): its status, Retry-After and audit class', () => {
    const ctx = new RequestContext('req-auto-block', 'POST', '/v1/chat/completions', 0n, null, true);
    // The auto-block the refusal set off came into force, and ended the request, before the filter ran.
    ctx.endedBy = new GatewayError('blocked', 'user u of product p is blocked: auto-block: 3 refusals (user_qps) within 60 s');
    const { status, headers, body } = answered(new GatewayError('rate_limit_exceeded', 'too many requests', { retryAfterSeconds: 1 }), ctx);
    expect(status).toBe(429);
    expect(headers['retry-after']).toBe('1');
    expect(body).toMatchObject({ error: { code: 'rate_limit_exceeded' } });
    expect(ctx.failure).toBe('rate_limit');
    expect(ctx.status).toBe(429);
  });

  it('answers on /v1/messages in Anthropic’s envelope, which is the contract’s with "type": "error" beside it', () => {
    const ctx = new RequestContext('req-msg', 'POST', '/v1/messages', 0n, null, true);
    // As the lifecycle marks it on arrival.
    ctx.anthropic = speaksAnthropic('/v1/messages', '/v1/messages', {});
    const { status, body } = answered(new GatewayError('policy_violation', 'too many', { param: 'max_tokens' }), ctx);
    expect(status).toBe(400);
    expect(body).toEqual({
      type: 'error',
      error: { type: 'invalid_request_error', message: 'too many', code: 'policy_violation', param: 'max_tokens' },
      request_id: 'req-msg',
    });
    // Anthropic's taxonomy for error.type, the contract's code beside it.
    expect(answered(new GatewayError('model_not_found', 'no such model'), ctx).body).toMatchObject({
      error: { type: 'not_found_error', code: 'model_not_found' },
    });
    const chat = new RequestContext('req-chat', 'POST', '/v1/chat/completions', 0n, null, true);
    chat.anthropic = speaksAnthropic('/v1/chat/completions', '/v1/chat/completions', { 'anthropic-version': '2023-06-01' });
    expect(answered(new GatewayError('policy_violation', 'too many'), chat).body).not.toHaveProperty('type');
  });

  /** The guard's answer to whether a request presented a credential (its rule is CredentialGuard's own spec's). */
  const presented = (answer: boolean): CredentialGuard => ({ presentsCredential: () => answer }) as unknown as CredentialGuard;

  it.each([
    ['a credential came (a bearer token, an HMAC signature, an IAP assertion)', presented(true), true],
    ['none came', presented(false), false],
    ['no guard is configured', undefined, false],
  ])('adds error="invalid_token" and the reason to a 401 challenge only where %s', (_case, credentials, withError) => {
    const ctx = new RequestContext('req-401', 'GET', '/v1/models', 0n, null, true);
    const { status, headers } = answered(new GatewayError('invalid_token', 'the "credential" is bad'), ctx, {}, credentials);
    expect(status).toBe(401);
    expect(headers['www-authenticate']).toMatch(/^Bearer resource_metadata="[^"]+"/);
    expect(headers['www-authenticate'].endsWith(`, error="invalid_token", error_description="the 'credential' is bad"`)).toBe(withError);
    if (!withError) expect(headers['www-authenticate']).not.toContain('error');
  });

  it('writes an error_description RFC 6750 allows and Node sends: no double quote, backslash or character outside printable ASCII', () => {
    expect(challengeText('say "no" \\ to é, \u202e and a\nline')).toBe("say 'no'  to ,  and aline");
    expect(challengeText('the X-Signature does not match the request')).toBe('the X-Signature does not match the request');
  });

  it('keeps the connection of an ordinary error answer open', () => {
    expect(answered(new ThrottlerException()).headers.connection).toBeUndefined();
  });
});
