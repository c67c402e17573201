import type { ArgumentsHost } from '@nestjs/common';
import { ThrottlerException } from '@nestjs/throttler';
import type { GatewayConfig } from '@keygate/config';
import { attachContext, JsonLogger, RequestContext } from '@keygate/observability';
import { ClientAbortedError } from '@keygate/providers';
import { GatewayExceptionFilter } from './gateway-exception.filter';

/** A reply that records what the filter answers (Fastify's chainable API, the parts the filter uses). */
function answered(exception: unknown, ctx?: RequestContext): { status: number; headers: Record<string, string>; body: unknown } {
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
    switchToHttp: () => ({ getRequest: () => ({ raw, url: '/admin/blocks', headers: {} }), getResponse: () => reply }),
  } as unknown as ArgumentsHost;
  const filter = new GatewayExceptionFilter(new JsonLogger('error', undefined, () => undefined), {
    resource: { authorizationServers: [] },
  } as unknown as GatewayConfig);
  filter.catch(exception, host);
  return out;
}

describe('GatewayExceptionFilter', () => {
  it("answers the operator routes' throttle (the stock ThrottlerGuard) with the contract's 429 and a Retry-After", () => {
    const { status, headers, body } = answered(new ThrottlerException());
    expect(status).toBe(429);
    expect(headers['retry-after']).toBe('60');
    expect(body).toMatchObject({ error: { code: 'rate_limit_exceeded', type: expect.any(String) as unknown } });
    expect(JSON.stringify(body)).not.toContain('ThrottlerException');
  });

  it('answers a request cut by the drain with the 503, Retry-After and Connection: close (its next request goes elsewhere)', () => {
    const ctx = new RequestContext('req-drain', 'POST', '/v1/chat/completions', 0n, null, true);
    ctx.shuttingDown = true;
    const { status, headers, body } = answered(new ClientAbortedError(), ctx);
    expect(status).toBe(503);
    expect(headers).toMatchObject({ 'retry-after': '1', connection: 'close' });
    expect(body).toMatchObject({ error: { code: 'service_unavailable' } });
  });

  it('keeps the connection of an ordinary error answer open', () => {
    expect(answered(new ThrottlerException()).headers.connection).toBeUndefined();
  });
});
