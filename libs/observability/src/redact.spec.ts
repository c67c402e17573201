import { bufferedSink, JsonLogger } from './json.logger';
import { redact } from './redact';
import { RequestContext, requestContextStorage } from './request-context';

const JWT = 'eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJlLXNpZ25hdHVyZQ';

describe('redact', () => {
  it('replaces values under credential and content keys, at any depth', () => {
    const out = redact({
      headers: { Authorization: `Bearer ${JWT}`, 'x-api-key': 'sk-ant-abcdefghijkl', accept: 'json' },
      body: { messages: [{ role: 'user', content: 'my secret prompt' }] },
      nested: { deeper: { api_key: 'AIza-whatever', password: 'hunter2', model: 'gpt-4o' } },
    });
    expect(out).toEqual({
      headers: { Authorization: '[redacted]', 'x-api-key': '[redacted]', accept: 'json' },
      body: '[redacted]',
      nested: { deeper: { api_key: '[redacted]', password: '[redacted]', model: 'gpt-4o' } },
    });
  });

  it('masks credential-shaped substrings in free text', () => {
    const text = `failed with ${JWT} and sk-proj-abcdefghijklmnop and AIzaSyA1234567890abcdefghijkl and -----BEGIN PUBLIC KEY-----\nMIIB\n-----END PUBLIC KEY-----`;
    const out = redact(text) as string;
    expect(out).not.toMatch(/eyJ|sk-proj|AIzaSy|MIIB/);
    expect(out.match(/\[redacted\]/g)).toHaveLength(4);
  });

  it('masks each credential shape alone in a string, with nothing else around it (no spaces, quotes or URL)', () => {
    const alone: Array<[string, string]> = [
      [JWT, '[redacted]'],
      ['sk-proj-abcdefghijklmnop', '[redacted]'],
      ['rk-abcdefghijkl', '[redacted]'],
      ['pk-abcdefghijkl', '[redacted]'],
      ['sk-ant-abcdefghijkl', '[redacted]'],
      ['AIzaSyA1234567890abcdefghijkl', '[redacted]'],
      ['ya29.a0AfH6SMBabcdefgh', '[redacted]'],
      ['-----BEGIN PRIVATE KEY-----MIIB-----END PRIVATE KEY-----', '[redacted]'],
      ['Bearer\tabc.def-123', '[redacted]'],
      ['redis://:hunter2@host:6379/0', 'redis://***@host:6379/0'],
      ['/v1/models?key=AIzaLeaked', '/v1/models?key=[redacted]'],
      ['{"api_key":"x"}', '{"api_key":"[redacted]"}'],
    ];
    for (const [text, masked] of alone) expect(redact(text)).toBe(masked);
    // Names and paths with none of those shapes come back as they were.
    for (const text of ['gpt-4o-mini', 'claude-sonnet-4-5@20250929', '/v1/chat/completions', 'models/gemini-2.5-pro:generateContent'])
      expect(redact(text)).toBe(text);
  });

  it('masks compound credential field names, keeps what names or counts a secret', () => {
    const out = redact({
      openai_api_key: 'plain1',
      hmacSecret: 'plain2',
      apiKeys: ['plain3'],
      'anthropic-api-key': 'plain4',
      clientSecrets: { a: 'plain5' },
      tool_calls: [{ function: { name: 'f', arguments: '{"ssn":"plain6"}' } }],
      partial_json: 'plain7',
      secretName: 'openai-api-keys',
      tokens_in: 12,
      tokenCount: 3,
      model: 'gpt-4o',
    });
    expect(JSON.stringify(out)).not.toMatch(/plain\d/);
    expect(out).toMatchObject({ secretName: 'openai-api-keys', tokens_in: 12, tokenCount: 3, model: 'gpt-4o' });
  });

  it('masks more credential shapes in text: Basic auth, Google access tokens, query keys, secret fields of JSON text', () => {
    const text = [
      'Authorization: Basic dXNlcjpwYXNzd29yZA==',
      'ya29.a0AfH6SMBexampleexampleexample',
      'https://generativelanguage.googleapis.com/v1beta/models/x:generateContent?key=plainkey&alt=sse',
      '{"c1":{"secret":"plain-hmac","product":"demo"},"password": "plain-pw"}',
    ].join(' ');
    const out = redact(text) as string;
    expect(out).not.toMatch(/dXNlcjpw|ya29\.a0|plainkey|plain-hmac|plain-pw/);
    expect(out).toContain('?key=[redacted]&alt=sse');
    expect(out).toContain('"product":"demo"');
  });

  it('masks the user info of a URL in any string, keeping its scheme, host and path', () => {
    const out = redact({
      url: 'http://user:hunter2pw@idp.example/jwks',
      reason: 'Request cannot be constructed from a URL that includes credentials: https://admin:p@ss@idp.example:8443/keys?x=1',
      redis: 'redis://:hunter2pw@10.0.0.3:6379/0',
      token: 'not a url',
    });
    expect(out).toEqual({
      url: 'http://***@idp.example/jwks',
      reason: 'Request cannot be constructed from a URL that includes credentials: https://***@idp.example:8443/keys?x=1',
      redis: 'redis://***@10.0.0.3:6379/0',
      token: '[redacted]',
    });
    expect(JSON.stringify(out)).not.toMatch(/hunter2pw|p@ss/);
    // A password holding characters a URL may carry unencoded (an apostrophe, a semicolon) is masked whole.
    expect(redact("redis://:pa'ss;w@10.0.0.3:6379 and amqp+tls://u:x!y@mq")).toBe('redis://***@10.0.0.3:6379 and amqp+tls://***@mq');
  });

  it("leaves an @ outside a URL's authority alone", () => {
    const text = 'mail ops@example.com about https://idp.example/keys/team@example.com?by=a@b.example and git@github.com:org/repo';
    expect(redact(text)).toBe(text);
    expect(redact('{"url":"https://idp.example","owner":"ops@example.com"}')).toBe(
      '{"url":"https://idp.example","owner":"ops@example.com"}',
    );
  });

  it('keeps English after "basic" or "bearer", masks credentials after them, and more compound key names', () => {
    expect(redact('Basic validation failed for basic auth config; the bearer of bad news')).toBe(
      'Basic validation failed for basic auth config; the bearer of bad news',
    );
    expect(redact('Authorization: Basic dXNlcjpwYXNz and Bearer abc.def-ghi and bearer sk9x')).toBe(
      'Authorization: [redacted] and [redacted] and [redacted]',
    );
    const out = redact({
      signingKey: 'p1',
      hmac_key: 'p2',
      access_key: 'p3',
      encryptionKey: 'p4',
      sessionKey: 'p5',
      passphrase: 'p6',
      secrets: 'p7',
    });
    expect(JSON.stringify(out)).not.toMatch(/p\d/);
    expect(redact({ secrets: [{ name: 'openai-api-keys', version: '3' }] })).toEqual({
      secrets: [{ name: 'openai-api-keys', version: '3' }],
    });
  });

  it('logs bytes by their size only, and bigints, functions and symbols without throwing', () => {
    expect(redact({ raw: Buffer.from('my private prompt'), u8: new Uint8Array(3) })).toEqual({ raw: '[17 bytes]', u8: '[3 bytes]' });
    expect(JSON.stringify(redact({ n: 10n, f: () => 1, s: Symbol('x') }))).toBe('{"n":"10","f":"[function]","s":"[symbol]"}');
  });

  it('survives cycles, depth and size', () => {
    const a: Record<string, unknown> = { name: 'a' };
    a.self = a;
    expect(redact(a)).toEqual({ name: 'a', self: '[cycle]' });
    let deep: Record<string, unknown> = { v: 1 };
    for (let i = 0; i < 10; i++) deep = { d: deep };
    expect(JSON.stringify(redact(deep))).toContain('[truncated]');
    expect((redact(Array.from({ length: 500 }, (_, i) => i)) as unknown[]).length).toBe(50);
  });
});

describe('JsonLogger', () => {
  const lines: string[] = [];
  const logger = new JsonLogger('debug', 'my-project', (line) => lines.push(line));
  beforeEach(() => (lines.length = 0));

  it('writes Cloud Logging entries with the request id and trace of the request being served', () => {
    const ctx = new RequestContext(
      'req-1',
      'POST',
      '/v1/chat/completions',
      0n,
      { traceId: 'abc123', spanId: '00f067aa0ba902b7', sampled: true },
      true,
    );
    requestContextStorage.run(ctx, () => logger.write('WARNING', 'deep in a provider call', { provider: 'openai' }));
    const entry = JSON.parse(lines[0]) as Record<string, unknown>;
    expect(entry).toMatchObject({
      severity: 'WARNING',
      message: 'deep in a provider call',
      provider: 'openai',
      requestId: 'req-1',
      'logging.googleapis.com/trace': 'projects/my-project/traces/abc123',
      'logging.googleapis.com/spanId': '00f067aa0ba902b7',
      'logging.googleapis.com/trace_sampled': true,
    });
    expect(new Date(entry.time as string).toISOString()).toBe(entry.time);
  });

  it('maps Nest levels to Cloud Logging severities and honours the level', () => {
    const quiet = new JsonLogger('warn', undefined, (line) => lines.push(line));
    quiet.log('info line');
    quiet.debug('debug line');
    quiet.warn('warn line');
    quiet.error('error line');
    quiet.fatal('fatal line');
    expect(lines.map((l) => (JSON.parse(l) as { severity: string }).severity)).toEqual(['WARNING', 'ERROR', 'CRITICAL']);
  });

  it('writes a trail entry whatever the level, masked like any other, with the request it was written for', () => {
    const quiet = new JsonLogger('error', undefined, (line) => lines.push(line));
    const ctx = new RequestContext('req-trail', 'POST', '/admin/blocks', 0n, null, false);
    quiet.trail('NOTICE', 'block created', { by: 'ops', reason: `key ${JWT}`, api_key: 'plainkey123' }, ctx);
    quiet.write('NOTICE', 'not a trail');
    expect(lines).toHaveLength(1);
    const entry = JSON.parse(lines[0]) as Record<string, unknown>;
    expect(entry).toMatchObject({ severity: 'NOTICE', message: 'block created', by: 'ops', requestId: 'req-trail' });
    expect(lines[0]).not.toContain(JWT);
    expect(lines[0]).not.toContain('plainkey123');
  });

  it('masks an object handed to the Nest logger interface (log, warn, error…) like any other field', () => {
    const cyclic: Record<string, unknown> = {
      message: 'upstream payload',
      api_key: 'plainkey123',
      messages: [{ content: 'my private prompt' }],
    };
    cyclic.self = cyclic;
    logger.warn(cyclic, 'SomeContext');
    logger.log({ password: 'hunter2', n: 1n });
    expect(lines).toHaveLength(2);
    expect(lines.join('')).not.toMatch(/plainkey123|my private prompt|hunter2/);
    expect(JSON.parse(lines[0])).toMatchObject({ severity: 'WARNING', message: 'upstream payload', context: 'SomeContext' });
    expect(JSON.parse(lines[1])).toMatchObject({ severity: 'INFO', data: { password: '[redacted]', n: '1' } });
  });

  it('labels every line for Cloud Logging: the service, and the request id while serving a request', () => {
    logger.write('INFO', 'outside a request');
    const ctx = new RequestContext('req-9', 'POST', '/v1/chat/completions', 0n, null, true);
    requestContextStorage.run(ctx, () => logger.always('INFO', 'audit', { type: 'audit' }));
    expect(JSON.parse(lines[0])['logging.googleapis.com/labels']).toEqual({ service: 'keygate' });
    expect(JSON.parse(lines[1])['logging.googleapis.com/labels']).toEqual({ service: 'keygate', request_id: 'req-9' });
  });

  it('masks what is logged by mistake but writes audit records unfiltered by level', () => {
    const quiet = new JsonLogger('error', undefined, (line) => lines.push(line));
    quiet.write('ERROR', `upstream said ${JWT}`, { request: { headers: { authorization: 'Bearer x' } } });
    quiet.always('INFO', 'audit', { type: 'audit', product: 'demo' });
    expect(lines[0]).not.toContain(JWT);
    expect(lines[0]).not.toContain('Bearer x');
    expect(JSON.parse(lines[1])).toMatchObject({ severity: 'INFO', type: 'audit', product: 'demo' });
  });
});

describe('bufferedSink', () => {
  const nextTurn = (): Promise<void> => new Promise((r) => setImmediate(r));

  it('writes the lines of one event-loop turn together, in order, once the turn is done', async () => {
    const writes: string[] = [];
    const sink = bufferedSink((text) => writes.push(text));
    sink('a\n');
    sink('b\n');
    sink('c\n');
    expect(writes).toEqual([]);
    await nextTurn();
    expect(writes).toEqual(['a\nb\nc\n']);
    sink('d\n');
    await nextTurn();
    expect(writes).toEqual(['a\nb\nc\n', 'd\n']);
  });

  it('writes at once when the pending text grows past 64 KiB, and flush() writes what is pending', async () => {
    const writes: string[] = [];
    const sink = bufferedSink((text) => writes.push(text));
    const big = `${'x'.repeat(40 * 1024)}\n`;
    sink(big);
    expect(writes).toEqual([]);
    sink(big);
    expect(writes).toEqual([big + big]);
    sink('tail\n');
    sink.flush();
    expect(writes).toEqual([big + big, 'tail\n']);
    await nextTurn();
    expect(writes).toHaveLength(2);
  });

  it('writes what is pending when the process exits', () => {
    const writes: string[] = [];
    const before = process.listeners('exit').length;
    const sink = bufferedSink((text) => writes.push(text));
    sink('last words\n');
    const added = process.listeners('exit').slice(before);
    expect(added).toHaveLength(1);
    (added[0] as () => void)();
    expect(writes).toEqual(['last words\n']);
    process.removeListener('exit', added[0]);
  });
});
