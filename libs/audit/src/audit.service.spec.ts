import { buildPolicyBook } from '@keygate/config';
import { JsonLogger, RequestContext } from '@keygate/observability';
import { AuditService } from './audit.service';

const policy = buildPolicyBook({
  prices: {
    'gpt-4o': { input: 2.5, cached_input: 1.25, output: 10 },
    'claude-sonnet-4-5*': { input: 3, cached_input: 0.3, cache_write: 3.75, output: 15 },
  },
});

function record(fill: (ctx: RequestContext) => void, path = '/v1/chat/completions'): Record<string, unknown> {
  const lines: string[] = [];
  const audit = new AuditService(new JsonLogger('info', undefined, (line) => lines.push(line)), { policy });
  const ctx = new RequestContext('req-1', 'POST', path, process.hrtime.bigint(), null, true);
  fill(ctx);
  expect(audit.record(ctx)).toBe(true);
  expect(lines).toHaveLength(1);
  return JSON.parse(lines[0]) as Record<string, unknown>;
}

describe('AuditService', () => {
  it('writes configured names as they are', () => {
    const line = record((ctx) => {
      ctx.product = 'demo';
      ctx.user = 'alice';
      ctx.model = 'claude-3-5-sonnet-20241022';
      ctx.requestedModel = 'gpt-4o';
      ctx.provider = 'anthropic';
      ctx.status = 200;
    });
    expect(line).toMatchObject({
      type: 'audit',
      requestId: 'req-1',
      product: 'demo',
      user: 'alice',
      model: 'claude-3-5-sonnet-20241022',
      requested_model: 'gpt-4o',
      path: '/v1/chat/completions',
    });
  });

  it('writes the product’s and the model’s bounded metrics labels beside them: those it is given, none when not', () => {
    const lines: string[] = [];
    const audit = new AuditService(new JsonLogger('info', undefined, (line) => lines.push(line)), { policy });
    const served = new RequestContext('req-2', 'POST', '/v1/chat/completions', process.hrtime.bigint(), null, true);
    served.model = 'gpt-4o-2024-08-06';
    served.provider = 'openai';
    expect(audit.record(served, { product: 'demo', model: 'gpt-4o*' })).toBe(true);
    expect(audit.record(new RequestContext('req-3', 'POST', '/v1/chat/completions', process.hrtime.bigint(), null, true))).toBe(true);
    const written = lines.map((line) => JSON.parse(line) as { model_label: string; product_label: string });
    expect(written.map((l) => [l.product_label, l.model_label])).toEqual([
      ['demo', 'gpt-4o*'],
      ['none', 'none'],
    ]);
  });

  it('masks a key or a token the client put where the model or the path goes', () => {
    const key = 'sk-proj-AbCdEfGhIjKlMnOpQrStUvWx0123456789';
    const jwt = 'eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJlLXNpZ25hdHVyZQ';
    const line = record((ctx) => {
      ctx.product = 'demo';
      ctx.model = key;
      ctx.requestedModel = key;
      ctx.status = 404;
      ctx.failure = 'not_found';
    }, `/v1/${jwt}/AIzaSyA1234567890abcdefghijklmnop`);
    const text = JSON.stringify(line);
    expect(text).not.toContain(key);
    expect(text).not.toContain(jwt);
    expect(text).not.toContain('AIzaSyA1234567890abcdefghijklmnop');
    expect(line).toMatchObject({ model: '[redacted]', requested_model: '[redacted]', path: '/v1/[redacted]/[redacted]', status: 404 });
  });

  it('masks a token written with percent-escapes in the path, and keeps an ordinary escaped path as sent', () => {
    const jwt = 'eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJlLXNpZ25hdHVyZQ';
    const escaped = `/v1/${jwt.replace(/\./g, '%2E')}/x`;
    const line = record((ctx) => (ctx.status = 404), escaped);
    expect(JSON.stringify(line)).not.toContain(jwt.split('.')[2]);
    expect(line.path).toBe('/v1/[redacted]/x');
    expect(record((ctx) => (ctx.status = 404), '/v1/chat%2Fcompletions').path).toBe('/v1/chat%2Fcompletions');
    expect(record((ctx) => (ctx.status = 404), '/v1/%E0%A4%A').path).toBe('/v1/%E0%A4%A');
  });

  it('keeps at most 1,024 characters of a path or model the client chose, masked before the cut', () => {
    const key = 'sk-proj-AbCdEfGhIjKlMnOpQrStUvWx0123456789';
    // The key straddles the cut: masked whole first, nothing of it is left.
    const path = `/v1/${'a'.repeat(1_000)}/${key}/${'b'.repeat(15_000)}`;
    const line = record((ctx) => {
      ctx.requestedModel = 'm'.repeat(5_000);
      ctx.status = 404;
      ctx.failure = 'not_found';
    }, path);
    expect(line.path).toBe(`/v1/${'a'.repeat(1_000)}/[redacted]/${'b'.repeat(1_024 - 1_016)}…`);
    expect(line.requested_model).toBe(`${'m'.repeat(1_024)}…`);
    expect(JSON.stringify(line)).not.toContain('AbCdEfGh');
    expect(record((ctx) => (ctx.status = 200), '/v1/chat/completions').path).toBe('/v1/chat/completions');
  });

  it('writes how the tokens split (cache reads and writes, reasoning), null where the provider did not say', () => {
    const unsaid = record((ctx) => (ctx.status = 200));
    expect(unsaid).toMatchObject({
      tokens_in: null,
      tokens_out: null,
      tokens_cached: null,
      tokens_cache_write: null,
      tokens_reasoning: null,
    });
    const said = record((ctx) => {
      ctx.tokensIn = 120;
      ctx.tokensOut = 30;
      ctx.tokensCached = 100;
      ctx.tokensCacheWrite = 0;
      ctx.tokensReasoning = 12;
      ctx.status = 200;
    });
    expect(said).toMatchObject({ tokens_in: 120, tokens_out: 30, tokens_cached: 100, tokens_cache_write: 0, tokens_reasoning: 12 });
  });

  it('prices the tokens of the model that answered at the policy file’s prices, cache reads and writes at their own rates', () => {
    const claude = record((ctx) => {
      ctx.provider = 'anthropic';
      ctx.model = 'claude-sonnet-4-5-20250929';
      ctx.requestedModel = 'gpt-4o';
      ctx.tokensIn = 1_000_000;
      ctx.tokensCached = 600_000;
      ctx.tokensCacheWrite = 100_000;
      ctx.tokensOut = 10_000;
      ctx.status = 200;
    });
    // 300k plain at $3, 600k read at $0.30, 100k written at $3.75, 10k out at $15 (per million).
    expect(claude.cost_usd).toBeCloseTo(0.9 + 0.18 + 0.375 + 0.15, 9);
    const gpt = record((ctx) => {
      ctx.provider = 'openai';
      ctx.model = 'gpt-4o';
      ctx.tokensIn = 12;
      ctx.tokensOut = 3;
      ctx.status = 200;
    });
    expect(gpt.cost_usd).toBe(0.00006);
  });

  it('writes no cost for a model without a price, a request without tokens or one no upstream answered', () => {
    expect(
      record((ctx) => Object.assign(ctx, { provider: 'openai', model: 'gpt-4o-mini', tokensIn: 5, tokensOut: 1 })).cost_usd,
    ).toBeNull();
    expect(record((ctx) => Object.assign(ctx, { provider: 'openai', model: 'gpt-4o', status: 502 })).cost_usd).toBeNull();
    expect(record((ctx) => Object.assign(ctx, { model: 'gpt-4o', tokensIn: 5, status: 404 })).cost_usd).toBeNull();
  });

  it('writes one line per request', () => {
    const lines: string[] = [];
    const audit = new AuditService(new JsonLogger('error', undefined, (line) => lines.push(line)), { policy });
    const ctx = new RequestContext('req-2', 'POST', '/v1/embeddings', process.hrtime.bigint(), null, true);
    expect(audit.record(ctx)).toBe(true);
    expect(audit.record(ctx)).toBe(false);
    expect(lines).toHaveLength(1);
  });
});
