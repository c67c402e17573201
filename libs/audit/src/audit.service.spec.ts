import { JsonLogger, RequestContext } from '@keygate/observability';
import { AuditService } from './audit.service';

function record(fill: (ctx: RequestContext) => void, path = '/v1/chat/completions'): Record<string, unknown> {
  const lines: string[] = [];
  const audit = new AuditService(new JsonLogger('info', undefined, (line) => lines.push(line)));
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

  it('writes one line per request', () => {
    const lines: string[] = [];
    const audit = new AuditService(new JsonLogger('error', undefined, (line) => lines.push(line)));
    const ctx = new RequestContext('req-2', 'POST', '/v1/embeddings', process.hrtime.bigint(), null, true);
    expect(audit.record(ctx)).toBe(true);
    expect(audit.record(ctx)).toBe(false);
    expect(lines).toHaveLength(1);
  });
});
