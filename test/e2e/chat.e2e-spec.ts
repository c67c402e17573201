/**
 * Gateway core, black box: the built gateway and mock upstream run as real processes; every test
 * checks the HTTP outcome, how many requests reached the upstream, and the request's audit line.
 */
import { randomBytes } from 'node:crypto';
import { connect } from 'node:net';
import jwt from 'jsonwebtoken';
import OpenAI, { APIUserAbortError } from 'openai';
import type { ChatCompletionChunk } from 'openai/resources/chat/completions';
import {
  apiError,
  cleanupTempFiles,
  demoProducts,
  foreignRsaKey,
  freePort,
  mintToken,
  mintUnsignedToken,
  mintedTokens,
  nowSeconds,
  startGateway,
  startMock,
  streamUntilError,
  uniqueId,
  waitFor,
  writeTempFile,
  type AuditRecord,
  type Gateway,
  type MockStats,
  type MockUpstream,
} from './harness';

/** Placed in every prompt: it must never show up in any log line. */
const MARKER = uniqueId('PROMPT-MARKER');
/** The policy file's completion-token cap (not the built-in 4096, so the file is proven read). */
const CAP = 1234;
/** A provider key the mock refuses (it only takes `sk-mock…`). */
const BAD_UPSTREAM_KEY = 'sk-refused-upstream-secret-4242';
/** `max_request_bytes` of product `tiny`. */
const TINY_LIMIT = 2048;

interface ErrorBody {
  error: { message: string; type: string; code: string; param?: string | null };
}

let mock: MockUpstream;
let gw: Gateway;
/** A gateway with 300 ms first-byte and idle timeouts. */
let tight: Gateway;
let demoToken: string;

beforeAll(async () => {
  mock = await startMock();
  const closedPort = await freePort();
  const policyFile = writeTempFile(
    'policy.yaml',
    [
      'defaults:',
      '  limits:',
      '    requests_per_second: 100000',
      '    user_requests_per_second: 100000',
      '    daily_requests: 10000000',
      '    user_daily_requests: 10000000',
      '    daily_tokens: 1000000000',
      '    user_daily_tokens: 1000000000',
      '  policy:',
      `    max_tokens: ${CAP}`,
      '    temperature: {min: 0, max: 1.5}',
      'products:',
      '  tiny:',
      `    policy: {max_request_bytes: ${TINY_LIMIT}}`,
      '  short:',
      '    policy: {max_stream_seconds: 1}',
      '',
    ].join('\n'),
  );
  const products = {
    ...demoProducts(mock.url),
    other: { providers: { openai: { api_key: 'sk-mock-other', models: ['gpt-4o'], base_url: `${mock.url}/v1` } } },
    tiny: { providers: { openai: { api_key: 'sk-mock-tiny', models: ['gpt-4o-mini'], base_url: `${mock.url}/v1` } } },
    short: { providers: { openai: { api_key: 'sk-mock-short', models: ['gpt-4o-mini'], base_url: `${mock.url}/v1` } } },
    badkey: { providers: { openai: { api_key: BAD_UPSTREAM_KEY, models: ['gpt-4o-mini'], base_url: `${mock.url}/v1` } } },
    deadend: {
      providers: { openai: { api_key: 'sk-mock-deadend', models: ['gpt-4o-mini'], base_url: `http://127.0.0.1:${closedPort}/v1` } },
    },
    // Every model name to the (OpenAI-compatible) mock, as a `*` pattern or a legacy key does.
    wild: { providers: { openai: { api_key: 'sk-mock-wild', models: ['*'], base_url: `${mock.url}/v1` } } },
    // A name listed twice and a pattern: GET /v1/models lists each exact name once.
    twice: {
      providers: { openai: { api_key: 'sk-mock-twice', models: ['gpt-4o', 'gpt-4o-mini', 'gpt-4o', 'o3*'], base_url: `${mock.url}/v1` } },
    },
  };
  [gw, tight] = await Promise.all([
    startGateway({ products, env: { API_KEY_SERVER_POLICY_FILE: policyFile } }),
    startGateway({
      products: demoProducts(mock.url),
      env: {
        API_KEY_SERVER_POLICY_FILE: policyFile,
        API_KEY_SERVER_UPSTREAM_TTFB_TIMEOUT_MS: '300',
        API_KEY_SERVER_UPSTREAM_IDLE_TIMEOUT_MS: '300',
      },
    }),
  ]);
  demoToken = mintToken();
}, 45_000);

afterAll(async () => {
  await Promise.all([gw?.stop(), tight?.stop(), mock?.stop()]);
  cleanupTempFiles();
}, 30_000);

// ---------------------------------------------------------------------------------------------
// helpers
// ---------------------------------------------------------------------------------------------

/** A prompt carrying the secret marker, a label and optional `[mock ...]` directives. */
function prompt(label: string, directives = ''): string {
  return `${label} ${MARKER} ${directives}`.trim();
}

function user(text: string): Array<{ role: 'user'; content: string }> {
  return [{ role: 'user', content: text }];
}

/** Runs `action` and reports how many requests the mock received meanwhile. */
async function countingUpstream<T>(
  action: () => Promise<T>,
): Promise<{ result: T; calls: number; chatCalls: number; before: MockStats; after: MockStats }> {
  const before = await mock.stats();
  const result = await action();
  const after = await mock.stats();
  return {
    result,
    calls: after.total - before.total,
    chatCalls: after.byRoute['openai.chat'] - before.byRoute['openai.chat'],
    before,
    after,
  };
}

/** Exactly one audit line for `requestId`, matching `expected`. */
async function expectOneAudit(gateway: Gateway, requestId: string, expected: Partial<AuditRecord>): Promise<AuditRecord> {
  const record = await gateway.waitForAudit(requestId);
  expect(gateway.auditsFor(requestId)).toHaveLength(1);
  expect(record).toMatchObject(expected);
  return record;
}

/** One audit line for a stream answered whole: status 200, the usage its last chunk gave the client. */
function expectStreamAudited(requestId: string, last: ChatCompletionChunk): Promise<AuditRecord> {
  return expectOneAudit(gw, requestId, {
    status: 200,
    failure: null,
    stream: true,
    tokens_in: last.usage!.prompt_tokens,
    tokens_out: last.usage!.completion_tokens,
  });
}

/** POSTs JSON (or raw text) with fetch. */
async function post(
  gateway: Gateway,
  path: string,
  requestId: string,
  body: unknown,
  options: { token?: string | null; raw?: string | Buffer; headers?: Record<string, string> } = {},
): Promise<{ res: Response; json: unknown }> {
  const token = options.token === undefined ? demoToken : options.token;
  const headers: Record<string, string> = { 'content-type': 'application/json', 'x-request-id': requestId, ...(options.headers ?? {}) };
  if (token !== null) headers.authorization = `Bearer ${token}`;
  const res = await gateway.fetch(path, {
    method: 'POST',
    headers,
    body: options.raw === undefined ? JSON.stringify(body) : typeof options.raw === 'string' ? options.raw : new Uint8Array(options.raw),
    signal: AbortSignal.timeout(20_000),
  });
  const text = await res.text();
  let json: unknown = null;
  try {
    json = JSON.parse(text);
  } catch {
    json = text;
  }
  return { res, json };
}

/**
 * Sends `head` (request line and headers, `Connection: close` added) and `body` as written, on a
 * raw socket, for what no HTTP client sends; tracked for the file's one-audit-line-per-request
 * check unless `audited` is false (an operator route). Resolves with the whole answer as text.
 */
function rawRequest(gateway: Gateway, id: string, head: string, body: string, audited = true): Promise<string> {
  if (audited) gateway.requests.push({ id, method: head.split(' ', 1)[0], path: head.split(' ', 2)[1].split(/[?#]/, 1)[0] });
  return new Promise<string>((resolve, reject) => {
    let text = '';
    const socket = connect(Number(new URL(gateway.url).port), '127.0.0.1', () => {
      socket.write(`${head}\r\nHost: 127.0.0.1\r\nX-Request-Id: ${id}\r\nConnection: close\r\n\r\n${body}`);
    });
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => (text += chunk));
    socket.on('error', reject);
    socket.on('close', () => resolve(text));
  });
}

function rid(label: string): { headers: Record<string, string>; id: string } {
  const id = uniqueId(label);
  return { id, headers: { 'X-Request-Id': id } };
}

// ---------------------------------------------------------------------------------------------
// the happy paths
// ---------------------------------------------------------------------------------------------

/** A gpt-4o stream of `text` with include_usage, read whole through the SDK, and the chat calls the mock took for it. */
function streamWithUsage(
  text: string,
  headers: Record<string, string>,
  model = 'gpt-4o',
): Promise<{ result: ChatCompletionChunk[]; chatCalls: number; calls: number }> {
  return countingUpstream(async () => {
    const stream = await gw
      .openai(demoToken)
      .chat.completions.create({ model, messages: user(text), stream: true, stream_options: { include_usage: true } }, { headers });
    const chunks: ChatCompletionChunk[] = [];
    for await (const chunk of stream) chunks.push(chunk);
    return chunks;
  });
}

describe('chat completions through the OpenAI SDK', () => {
  it('answers a plain completion with the mock content and usage, and audits the same token counts', async () => {
    const { id, headers } = rid('plain');
    const text = prompt('plain completion');
    const { result, chatCalls } = await countingUpstream(() =>
      gw
        .openai(demoToken)
        .chat.completions.create({ model: 'gpt-4o-mini', messages: user(text) }, { headers })
        .withResponse(),
    );
    const { data, response } = result;

    expect(response.status).toBe(200);
    expect(response.headers.get('x-request-id')).toBe(id);
    expect(data.object).toBe('chat.completion');
    expect(data.choices[0].message.content).toContain(text);
    expect(data.usage).toBeDefined();
    expect(data.usage!.prompt_tokens).toBeGreaterThan(0);
    expect(data.usage!.completion_tokens).toBeGreaterThan(0);
    expect(chatCalls).toBe(1);
    await expectOneAudit(gw, id, {
      status: 200,
      failure: null,
      product: 'demo',
      user: 'e2e-user',
      model: 'gpt-4o-mini',
      provider: 'openai',
      stream: false,
      tokens_in: data.usage!.prompt_tokens,
      tokens_out: data.usage!.completion_tokens,
      method: 'POST',
      path: '/v1/chat/completions',
    });
    const [audit] = gw.auditsFor(id);
    expect(audit.severity).toBe('INFO');
    expect(typeof audit.time).toBe('string');
    expect(audit.latency_ms).toBeGreaterThanOrEqual(0);
  });

  it("carries the caller's W3C trace id on the audit line", async () => {
    const { id } = rid('trace');
    const traceId = randomBytes(16).toString('hex');
    await gw
      .openai(demoToken)
      .chat.completions.create(
        { model: 'gpt-4o-mini', messages: user(prompt('traced')) },
        { headers: { 'X-Request-Id': id, traceparent: `00-${traceId}-${randomBytes(8).toString('hex')}-01` } },
      );
    const audit = await expectOneAudit(gw, id, { status: 200 });
    expect((audit as unknown as Record<string, unknown>)['logging.googleapis.com/trace']).toContain(traceId);
  });

  it('accepts a token whose lifetime is exactly the 900 s maximum and whose aud list contains keygate', async () => {
    const { id, headers } = rid('edge-token');
    const iat = nowSeconds();
    const token = mintToken({ iat, exp: iat + 900, aud: ['some-other-api', 'keygate'] });
    expect(jwt.decode(token)).toMatchObject({ iat, exp: iat + 900 });
    const reply = await gw
      .openai(token)
      .chat.completions.create({ model: 'gpt-4o-mini', messages: user(prompt('edge token')) }, { headers });
    expect(reply.choices[0].message.content).toContain('edge token');
    await expectOneAudit(gw, id, { status: 200, failure: null });
  });

  it('accepts an ES256 token and audits its subject as the user', async () => {
    const { id, headers } = rid('es256');
    const token = mintToken({ alg: 'ES256', sub: 'es-user' });
    const { result, chatCalls } = await countingUpstream(() =>
      gw.openai(token).chat.completions.create({ model: 'gpt-4o', messages: user(prompt('es256')) }, { headers }),
    );
    expect(result.choices[0].message.content).toContain('es256');
    expect(chatCalls).toBe(1);
    await expectOneAudit(gw, id, { status: 200, failure: null, product: 'demo', user: 'es-user', model: 'gpt-4o', provider: 'openai' });
  });

  it('streams without include_usage: no chunk carries a usage key, yet the audit has the upstream usage', async () => {
    const text = prompt('stream without usage');
    // The same prompt without streaming tells us the usage the mock reports for it.
    const reference = await gw.openai(demoToken).chat.completions.create({ model: 'gpt-4o', messages: user(text) });
    const { id, headers } = rid('stream-nousage');

    const { result, chatCalls, after } = await countingUpstream(async () => {
      const { data: stream, response } = await gw
        .openai(demoToken)
        .chat.completions.create({ model: 'gpt-4o', messages: user(text), stream: true }, { headers })
        .withResponse();
      expect(response.headers.get('content-type')).toContain('text/event-stream');
      expect(response.headers.get('x-request-id')).toBe(id);
      const chunks: ChatCompletionChunk[] = [];
      for await (const chunk of stream) chunks.push(chunk);
      return chunks;
    });

    expect(result.length).toBeGreaterThan(1);
    for (const chunk of result) expect('usage' in chunk).toBe(false);
    const content = result.map((c) => c.choices[0]?.delta?.content ?? '').join('');
    expect(content).toBe(reference.choices[0].message.content);
    expect(result[result.length - 1].choices[0]?.finish_reason).toBe('stop');
    expect(chatCalls).toBe(1);
    const upstreamBody = after.last['openai.chat']?.body as {
      messages: Array<{ content: string }>;
      stream_options?: { include_usage?: boolean };
    };
    expect(upstreamBody.messages[0].content).toBe(text);
    expect(upstreamBody.stream_options?.include_usage).toBe(true);
    await expectOneAudit(gw, id, {
      status: 200,
      failure: null,
      product: 'demo',
      model: 'gpt-4o',
      provider: 'openai',
      stream: true,
      tokens_in: reference.usage!.prompt_tokens,
      tokens_out: reference.usage!.completion_tokens,
    });
  });

  it('streams with include_usage: false exactly as without stream_options', async () => {
    const { id, headers } = rid('stream-usage-false');
    const stream = await gw
      .openai(demoToken)
      .chat.completions.create(
        { model: 'gpt-4o', messages: user(prompt('usage false')), stream: true, stream_options: { include_usage: false } },
        { headers },
      );
    const chunks: ChatCompletionChunk[] = [];
    for await (const chunk of stream) chunks.push(chunk);
    expect(chunks.every((c) => !('usage' in c))).toBe(true);
    expect(chunks.every((c) => c.choices.length === 1)).toBe(true);
    const audit = await expectOneAudit(gw, id, { status: 200, failure: null, stream: true });
    expect(audit.tokens_in).toBeGreaterThan(0);
    expect(audit.tokens_out).toBeGreaterThan(0);
  });

  it("counts a completion from a host that reports no usage with keygate's estimate (non-streamed and streamed)", async () => {
    const plain = rid('no-usage');
    const text = prompt('a host without usage [mock no_usage=1]');
    const answer = await gw
      .openai(demoToken)
      .chat.completions.create({ model: 'gpt-4o-mini', messages: user(text) }, { headers: plain.headers });
    expect(answer.usage).toBeUndefined();
    const audit = await expectOneAudit(gw, plain.id, { status: 200, failure: null, stream: false });
    // Estimated with the tokenizer: the prompt and the answer's text, never 0 (a 0 would give the reservation back).
    expect(audit.tokens_in).toBeGreaterThan(5);
    expect(audit.tokens_out).toBeGreaterThan(3);

    const streamed = rid('no-usage-stream');
    const stream = await gw
      .openai(demoToken)
      .chat.completions.create(
        { model: 'gpt-4o-mini', messages: user(prompt('a stream without usage [mock no_usage=1 chunks=3]')), stream: true },
        { headers: streamed.headers },
      );
    const chunks: ChatCompletionChunk[] = [];
    for await (const chunk of stream) chunks.push(chunk);
    expect(chunks.length).toBeGreaterThan(0);
    const streamAudit = await expectOneAudit(gw, streamed.id, { status: 200, failure: null, stream: true });
    expect(streamAudit.tokens_in).toBeGreaterThan(5);
    expect(streamAudit.tokens_out).toBeGreaterThan(3);
  });

  it.each(['gpt-4o', 'claude-3-5-sonnet-20241022'])(
    'streams %s whole from a host that ends its stream without [DONE] (message_stop) once every choice finished, in one upstream call',
    async (model) => {
      const { id, headers } = rid('no-done');
      const { result, calls } = await streamWithUsage(prompt('a host that sends no DONE [mock no_done=1 chunks=3]'), headers, model);
      // The SDK raised nothing: the client's stream ended with keygate's [DONE], the answer whole.
      expect(result.map((c) => c.choices[0]?.delta?.content ?? '').join('')).toContain('a host that sends no DONE');
      expect(result.some((c) => c.choices[0]?.finish_reason === 'stop')).toBe(true);
      const last = result[result.length - 1];
      expect(last.usage!.completion_tokens).toBeGreaterThan(0);
      expect(calls).toBe(1);
      await expectStreamAudited(id, last);
    },
  );

  it('streams with include_usage: the last chunk carries the usage and no choices', async () => {
    const { id, headers } = rid('stream-usage');
    const { result, chatCalls } = await streamWithUsage(prompt('stream with usage'), headers);

    const last = result[result.length - 1];
    expect(last.choices).toEqual([]);
    expect(last.usage).toBeTruthy();
    expect(last.usage!.prompt_tokens).toBeGreaterThan(0);
    expect(last.usage!.completion_tokens).toBeGreaterThan(0);
    expect(result.slice(0, -1).every((c) => !c.usage)).toBe(true);
    expect(result.map((c) => c.choices[0]?.delta?.content ?? '').join('')).toContain('stream with usage');
    expect(chatCalls).toBe(1);
    await expectStreamAudited(id, last);
  });
});

describe('POST /chat/{product}', () => {
  it('answers a completion when the path names the credential product', async () => {
    const id = uniqueId('chat-path');
    const { result, chatCalls } = await countingUpstream(() =>
      post(gw, '/chat/demo', id, { model: 'gpt-4o-mini', messages: user(prompt('path product')) }),
    );
    expect(result.res.status).toBe(200);
    const body = result.json as {
      object: string;
      choices: Array<{ message: { content: string } }>;
      usage: { prompt_tokens: number; completion_tokens: number };
    };
    expect(body.object).toBe('chat.completion');
    expect(body.choices[0].message.content).toContain('path product');
    expect(chatCalls).toBe(1);
    await expectOneAudit(gw, id, {
      status: 200,
      failure: null,
      product: 'demo',
      user: 'e2e-user',
      model: 'gpt-4o-mini',
      provider: 'openai',
      tokens_in: body.usage.prompt_tokens,
      tokens_out: body.usage.completion_tokens,
      path: '/chat/demo',
    });
  });

  it('refuses with 403 forbidden when the path names another product, without calling the upstream', async () => {
    const id = uniqueId('chat-other');
    const { result, calls } = await countingUpstream(() =>
      post(gw, '/chat/other', id, { model: 'gpt-4o', messages: user(prompt('other product')) }),
    );
    expect(result.res.status).toBe(403);
    expect((result.json as ErrorBody).error.code).toBe('forbidden');
    expect(calls).toBe(0);
    await expectOneAudit(gw, id, { status: 403, failure: 'forbidden', product: 'demo', user: 'e2e-user', path: '/chat/other' });
  });

  it('answers 403 for another product even when the body is invalid too: the credential is the first problem', async () => {
    const id = uniqueId('chat-other-bad');
    const { result, calls } = await countingUpstream(() => post(gw, '/chat/other', id, { model: 'gpt-4o', messages: [] }));
    expect(result.res.status).toBe(403);
    expect((result.json as ErrorBody).error.code).toBe('forbidden');
    expect(calls).toBe(0);
    await expectOneAudit(gw, id, { status: 403, failure: 'forbidden', product: 'demo', path: '/chat/other' });
  });
});

describe('GET /v1/models', () => {
  it("lists exactly the product's models in OpenAI's list format, without calling the upstream", async () => {
    const { id, headers } = rid('models');
    const { result, calls } = await countingUpstream(async () => {
      const ids: Array<{ id: string; owned_by: string; object: string }> = [];
      for await (const model of gw.openai(demoToken).models.list({ headers })) ids.push(model);
      return ids;
    });
    expect(result.map((m) => m.id).sort()).toEqual(['claude-3-5-sonnet-20241022', 'gemini-1.5-pro', 'gpt-4o', 'gpt-4o-mini']);
    expect(result.every((m) => m.object === 'model')).toBe(true);
    expect(result.find((m) => m.id === 'gpt-4o')?.owned_by).toBe('openai');
    expect(calls).toBe(0);
    await expectOneAudit(gw, id, { status: 200, failure: null, product: 'demo', user: 'e2e-user', method: 'GET', path: '/v1/models' });
  });

  it("lists another product's own models for that product's token", async () => {
    const { headers } = rid('models-other');
    const page = await gw.openai(mintToken({ product: 'other' })).models.list({ headers });
    expect(page.data.map((m) => m.id)).toEqual(['gpt-4o']);
  });

  it('lists a name the product keys repeat once, and no pattern', async () => {
    const { headers } = rid('models-twice');
    const page = await gw.openai(mintToken({ product: 'twice' })).models.list({ headers });
    expect(page.data.map((m) => m.id)).toEqual(['gpt-4o', 'gpt-4o-mini']);
  });
});

describe('GET /v1/models/{model}', () => {
  it("answers one of the product's models as OpenAI's model object (the SDK's models.retrieve), without calling the upstream", async () => {
    const { id, headers } = rid('model-one');
    const { result, calls } = await countingUpstream(() => gw.openai(demoToken).models.retrieve('gemini-1.5-pro', { headers }));
    expect(result).toEqual({ id: 'gemini-1.5-pro', object: 'model', created: 0, owned_by: 'gemini' });
    expect(calls).toBe(0);
    await expectOneAudit(gw, id, { status: 200, failure: null, product: 'demo', method: 'GET', path: '/v1/models/gemini-1.5-pro' });
  });

  it('answers a name the product serves through a pattern, a slash in it included (sent encoded)', async () => {
    const { headers } = rid('model-pattern');
    const client = gw.openai(mintToken({ product: 'wild' }));
    expect(await client.models.retrieve('meta-llama/Llama-3.1-8B', { headers })).toMatchObject({
      id: 'meta-llama/Llama-3.1-8B',
      owned_by: 'openai',
    });
    const twice = gw.openai(mintToken({ product: 'twice' }));
    expect(await twice.models.retrieve('o3-mini', { headers: rid('model-o3').headers })).toMatchObject({ id: 'o3-mini' });
    // Up to the 256 characters chat takes for a model name, every other one a slash (sent encoded).
    const long = Array.from({ length: 256 }, (_, i) => (i % 2 ? '/' : 'm')).join('');
    expect(await client.models.retrieve(long, { headers: rid('model-long').headers })).toMatchObject({ id: long });
  });

  it('refuses an id longer than chat takes (256 characters) with 400, as chat refuses the name', async () => {
    const { id, headers } = rid('model-too-long');
    const error = await gw
      .openai(mintToken({ product: 'wild' }))
      .models.retrieve('m'.repeat(257), { headers })
      .then(
        () => undefined,
        (e: unknown) => e,
      );
    expect(error).toMatchObject({ status: 400, code: 'invalid_request' });
    await expectOneAudit(gw, id, { status: 400, failure: 'bad_request' });
  });

  it('audits the model asked for', async () => {
    const { id, headers } = rid('model-audit');
    await gw.openai(mintToken({ product: 'wild' })).models.retrieve('local/model', { headers });
    await expectOneAudit(gw, id, { status: 200, model: 'local/model', provider: 'openai' });
  });

  it.each([
    ['another product serves (SPEC §6: not allowed)', 'gemini-1.5-pro', 403, 'model_not_allowed', 'forbidden'],
    ['no product serves', 'gemini-0-nowhere', 404, 'model_not_found', 'not_found'],
  ])('answers a model %s with %i %s, without calling the upstream', async (_case, model, status, code, failure) => {
    const { id, headers } = rid('model-none');
    const { result, calls } = await countingUpstream(() =>
      gw
        .openai(mintToken({ product: 'other' }))
        .models.retrieve(model, { headers })
        .then(
          () => undefined,
          (error: unknown) => error,
        ),
    );
    expect(result).toMatchObject({ status, code, param: 'model' });
    expect(calls).toBe(0);
    await expectOneAudit(gw, id, { status, failure, product: 'other', model });
  });

  it('answers 401 without a credential', async () => {
    const id = uniqueId('model-anon');
    const res = await gw.fetch('/v1/models/gpt-4o', { headers: { 'x-request-id': id } });
    expect(res.status).toBe(401);
    await expectOneAudit(gw, id, { status: 401, failure: 'auth' });
  });
});

// ---------------------------------------------------------------------------------------------
// rejections
// ---------------------------------------------------------------------------------------------

describe('requests without a valid credential are refused with 401 and never reach the upstream', () => {
  it('answers 401 invalid_token with a WWW-Authenticate resource_metadata pointer when no token is sent', async () => {
    const id = uniqueId('no-token');
    const { result, calls } = await countingUpstream(() =>
      post(gw, '/v1/chat/completions', id, { model: 'gpt-4o', messages: user(prompt('no token')) }, { token: null }),
    );
    expect(result.res.status).toBe(401);
    expect(result.res.headers.get('x-request-id')).toBe(id);
    expect((result.json as ErrorBody).error.code).toBe('invalid_token');
    expect((result.json as ErrorBody).error.type).toBe('authentication_error');
    expect(result.res.headers.get('www-authenticate')).toMatch(
      /^Bearer .*resource_metadata="http:\/\/[^"]+\/\.well-known\/oauth-protected-resource"/,
    );
    expect(calls).toBe(0);
    await expectOneAudit(gw, id, { status: 401, failure: 'auth', product: null, user: null });
  });

  const badTokens: Array<[string, () => string]> = [
    ['an expired token', () => mintToken({ iat: nowSeconds() - 800, exp: nowSeconds() - 300 })],
    ['a token from an issuer that is not allowed', () => mintToken({ iss: 'someone-else' })],
    ['a token for another audience', () => mintToken({ aud: 'not-keygate' })],
    ['a token whose kid is unknown', () => mintToken({ kid: 'no-such-kid' })],
    ['a token without a kid', () => mintToken({ kid: null })],
    ['a token signed with a key nobody configured', () => mintToken({ privateKey: foreignRsaKey() })],
    ['a token whose lifetime exceeds 900 s', () => mintToken({ iat: nowSeconds(), exp: nowSeconds() + 1000 })],
    ['a token whose lifetime exceeds 900 s and has no iat', () => mintToken({ iat: null, exp: nowSeconds() + 1000 })],
    ['a token that is not valid yet (nbf in 10 minutes)', () => mintToken({ extraClaims: { nbf: nowSeconds() + 600 } })],
    ['a token issued 5 minutes in the future', () => mintToken({ iat: nowSeconds() + 300, exp: nowSeconds() + 600 })],
    ['a token without a product claim', () => mintToken({ product: null })],
    ['a token without a sub claim', () => mintToken({ sub: null })],
    ['an alg:none token', () => mintUnsignedToken()],
    ['an RS256 kid presented as ES256', () => mintToken({ alg: 'ES256', kid: 'dev-rs256' })],
    ['a token that is not a JWT at all', () => 'not-a-jwt'],
  ];

  it.each(badTokens)('answers 401 invalid_token for %s', async (_label, makeToken) => {
    const { id, headers } = rid('bad-token');
    const { result: error, calls } = await countingUpstream(() =>
      apiError(gw.openai(makeToken()).chat.completions.create({ model: 'gpt-4o', messages: user(prompt('bad token')) }, { headers })),
    );
    expect(error.status).toBe(401);
    expect(error.code).toBe('invalid_token');
    expect(error.headers?.get('www-authenticate')).toContain('resource_metadata=');
    expect(calls).toBe(0);
    await expectOneAudit(gw, id, { status: 401, failure: 'auth', product: null, user: null });
  });
});

describe('the credential is checked before the body is interpreted', () => {
  it('answers 401 (not 400) to a request with neither a token nor a valid JSON body', async () => {
    const id = uniqueId('bad-json-no-token');
    const { result, calls } = await countingUpstream(() =>
      post(gw, '/v1/chat/completions', id, null, { token: null, raw: '{"model": "gpt-4o", "messages": [' }),
    );
    expect(calls).toBe(0);
    expect(result.res.status).toBe(401);
    expect(result.res.headers.get('www-authenticate')).toContain('resource_metadata=');
    await expectOneAudit(gw, id, { status: 401, failure: 'auth' });
  });

  it("audits the caller's product and user when an authenticated request has a malformed JSON body", async () => {
    const id = uniqueId('bad-json-who');
    const { result } = await countingUpstream(() =>
      post(gw, '/v1/chat/completions', id, null, { raw: '{"model": "gpt-4o", "messages": [' }),
    );
    expect(result.res.status).toBe(400);
    await expectOneAudit(gw, id, { status: 400, failure: 'bad_request', product: 'demo', user: 'e2e-user' });
  });
});

describe('malformed or disallowed requests are refused before the upstream', () => {
  it('answers 404 route_not_found for an unknown /v1 route, and audits it', async () => {
    const id = uniqueId('no-route');
    const res = await gw.fetch('/v1/no-such-thing', { headers: { authorization: `Bearer ${demoToken}`, 'x-request-id': id } });
    expect(res.status).toBe(404);
    expect(((await res.json()) as ErrorBody).error.code).toBe('route_not_found');
    await expectOneAudit(gw, id, { status: 404, failure: 'not_found' });
  });

  it.each([
    ['POST', '/Chat/demo'],
    ['GET', '/v1/MODELS'],
    ['GET', '/%761/no-such-thing'],
    ['GET', '/%56%31/models'],
    // An SDK whose base URL ends in `/`.
    ['POST', '//v1/chat/completions'],
  ])('answers %s %s, which no route takes (routes are case-sensitive), 404 route_not_found, and audits it once', async (method, path) => {
    const id = uniqueId('odd-path');
    const { result: res, calls } = await countingUpstream(() =>
      gw.fetch(path, {
        method,
        headers: { authorization: `Bearer ${demoToken}`, 'x-request-id': id, 'content-type': 'application/json' },
        body: method === 'POST' ? JSON.stringify({ model: 'gpt-4o', messages: user(prompt('odd path')) }) : undefined,
      }),
    );
    expect(res.status).toBe(404);
    expect(((await res.json()) as ErrorBody).error.code).toBe('route_not_found');
    expect(calls).toBe(0);
    await expectOneAudit(gw, id, { status: 404, failure: 'not_found', method, path });
  });

  it('answers an OpenAI SDK whose base URL says /V1 404 route_not_found for each call, each audited once, nothing upstream', async () => {
    const client = new OpenAI({ baseURL: `${gw.url}/V1`, apiKey: demoToken, maxRetries: 0, timeout: 20_000, fetch: gw.fetch });
    const chat = rid('upper-v1-chat');
    const models = rid('upper-v1-models');
    const { result: errors, calls } = await countingUpstream(async () => [
      await apiError(
        client.chat.completions.create({ model: 'gpt-4o', messages: user(prompt('upper-case base URL')) }, { headers: chat.headers }),
      ),
      await apiError(client.models.list({ headers: models.headers })),
    ]);
    for (const error of errors) expect({ status: error.status, code: error.code }).toEqual({ status: 404, code: 'route_not_found' });
    expect(calls).toBe(0);
    // Not found, whoever asked; the audit still names the caller its token proves.
    await expectOneAudit(gw, chat.id, { status: 404, failure: 'not_found', method: 'POST', path: '/V1/chat/completions', product: 'demo' });
    await expectOneAudit(gw, models.id, { status: 404, failure: 'not_found', method: 'GET', path: '/V1/models', product: 'demo' });
  });

  it('answers /V1/messages, which no route takes, in Anthropic’s envelope (the API its path names), audited once', async () => {
    const id = uniqueId('upper-messages');
    const { result: res, calls } = await countingUpstream(() =>
      gw.fetch('/V1/messages', {
        method: 'POST',
        headers: { 'x-api-key': demoToken, 'anthropic-version': '2023-06-01', 'content-type': 'application/json', 'x-request-id': id },
        body: JSON.stringify({ model: 'claude-3-5-sonnet-20241022', max_tokens: 16, messages: user(prompt('upper-case messages')) }),
      }),
    );
    expect(res.status).toBe(404);
    expect(await res.json()).toMatchObject({ type: 'error', error: { type: 'not_found_error', code: 'route_not_found' }, request_id: id });
    expect(calls).toBe(0);
    await expectOneAudit(gw, id, { status: 404, failure: 'not_found', path: '/V1/messages', product: 'demo' });
  });

  it('answers 400 naming the parameter for a non-boolean stream flag', async () => {
    const id = uniqueId('bad-stream');
    const { result, calls } = await countingUpstream(() =>
      post(gw, '/v1/chat/completions', id, { model: 'gpt-4o', messages: user(prompt('bad stream')), stream: 'yes' }),
    );
    expect(result.res.status).toBe(400);
    expect((result.json as ErrorBody).error.param).toBe('stream');
    expect(calls).toBe(0);
    await expectOneAudit(gw, id, { status: 400, failure: 'bad_request' });
  });

  it('answers 400 naming an assistant message’s audio, an earlier audio answer named by id (kept by OpenAI under the product’s key)', async () => {
    const id = uniqueId('audio-ref');
    const messages = [
      { role: 'user', content: prompt('speak') },
      { role: 'assistant', audio: { id: 'audio_someone_elses' } },
      { role: 'user', content: 'Say it again' },
    ];
    const { result, calls } = await countingUpstream(() => post(gw, '/v1/chat/completions', id, { model: 'gpt-4o', messages }));
    expect(result.res.status).toBe(400);
    expect((result.json as ErrorBody).error).toMatchObject({ code: 'unsupported_parameter', param: 'messages[1].audio' });
    expect(calls).toBe(0);
    await expectOneAudit(gw, id, { status: 400, failure: 'bad_request' });
  });

  it('answers 400 invalid_json for a body that is not JSON', async () => {
    const id = uniqueId('bad-json');
    const { result, calls } = await countingUpstream(() =>
      post(gw, '/v1/chat/completions', id, null, { raw: `{"model": "gpt-4o", "messages": [${MARKER}` }),
    );
    expect(result.res.status).toBe(400);
    expect((result.json as ErrorBody).error.code).toBe('invalid_json');
    expect(calls).toBe(0);
    await expectOneAudit(gw, id, { status: 400, failure: 'bad_request' });
  });

  it.each([
    [
      'Latin-1 under its declared charset',
      'latin1',
      'application/json; charset=ISO-8859-1',
      /not valid UTF-8 \(its Content-Type declares charset=ISO-8859-1\)$/,
    ],
    [
      'UTF-16 under its declared charset',
      'utf16le',
      'application/json; charset=utf-16',
      /looks like UTF-16 or UTF-32 \(its Content-Type declares charset=utf-16\)$/,
    ],
    ['Latin-1 declared as nothing', 'latin1', 'application/json', /not valid UTF-8$/],
  ] as const)(
    'answers 400 invalid_json for a body in %s (read as UTF-8, its "é" would reach the model as U+FFFD)',
    async (_what, encoding, type, message) => {
      const id = uniqueId('not-utf8');
      const body = Buffer.from(JSON.stringify({ model: 'gpt-4o', messages: [{ role: 'user', content: `café ${MARKER}` }] }), encoding);
      const { result, calls } = await countingUpstream(() =>
        post(gw, '/v1/chat/completions', id, null, { raw: body, headers: { 'content-type': type } }),
      );
      expect(result.res.status).toBe(400);
      expect((result.json as ErrorBody).error).toMatchObject({ code: 'invalid_json', message: expect.stringMatching(message) });
      expect(calls).toBe(0);
      await expectOneAudit(gw, id, { status: 400, failure: 'bad_request', product: 'demo', user: 'e2e-user' });
    },
  );

  it('reads a UTF-8 body whatever charset its Content-Type names when the bytes are ASCII', async () => {
    const id = uniqueId('ascii-latin1');
    const { result, calls } = await countingUpstream(() =>
      post(
        gw,
        '/v1/chat/completions',
        id,
        { model: 'gpt-4o', messages: user(prompt('ascii under latin1')) },
        {
          headers: { 'content-type': 'application/json;charset=iso-8859-1' },
        },
      ),
    );
    expect(result.res.status).toBe(200);
    expect(calls).toBe(1);
    await expectOneAudit(gw, id, { status: 200, product: 'demo', user: 'e2e-user' });
  });

  it.each([
    [
      'nesting 5000 levels deep (it used to exhaust the stack: a 500)',
      { raw: `{"model":"gpt-4o","messages":[],"x":${'['.repeat(5000)}${']'.repeat(5000)}}` },
      null,
      /more than 64 levels/,
    ],
    [
      'a null content part',
      { body: { model: 'gpt-4o', messages: [{ role: 'user', content: [null] }] } },
      'messages[0].content',
      /content parts/,
    ],
    [
      'n of 200000 (it was a 429 daily_quota_exceeded until midnight)',
      { body: { model: 'claude-3-5-sonnet-20241022', messages: [{ role: 'user', content: 'x' }], n: 200000 } },
      'n',
      /128/,
    ],
    [
      'stream_options without stream',
      { body: { model: 'gpt-4o', messages: [{ role: 'user', content: 'x' }], stream_options: { include_usage: true } } },
      'stream_options',
      /only allowed when stream is true/,
    ],
    [
      'two tools with one name',
      {
        body: {
          model: 'gpt-4o',
          messages: [{ role: 'user', content: 'x' }],
          tools: [1, 2].map(() => ({ type: 'function', function: { name: 'f' } })),
        },
      },
      'tools[1].function.name',
      /declared twice/,
    ],
    [
      'a Claude tool result answering no call',
      {
        body: {
          model: 'claude-3-5-sonnet-20241022',
          messages: [
            { role: 'user', content: 'x' },
            { role: 'tool', tool_call_id: 'call_9', content: '{}' },
          ],
        },
      },
      'messages[1].tool_call_id',
      /does not match/,
    ],
    [
      'a gzip-encoded body',
      { raw: '{"model":"gpt-4o","messages":[]}', headers: { 'content-encoding': 'gzip' } },
      null,
      /Content-Encoding gzip is not supported/,
    ],
    [
      'a text/plain body',
      { raw: '{"model":"gpt-4o","messages":[{"role":"user","content":"x"}]}', headers: { 'content-type': 'text/plain' } },
      null,
      /Content-Type: application\/json/,
    ],
  ])('answers 400 with a clear message for %s, before any upstream call', async (_what, input, param, message) => {
    const id = uniqueId('bad-input');
    const { result, calls } = await countingUpstream(() =>
      post(gw, '/v1/chat/completions', id, (input as { body?: unknown }).body, {
        raw: (input as { raw?: string }).raw,
        headers: (input as { headers?: Record<string, string> }).headers,
      }),
    );
    expect(result.res.status).toBe(400);
    const { error } = result.json as ErrorBody;
    expect(error.code).toBe('invalid_request');
    expect(error.message).toMatch(message);
    if (param !== null) expect(error.param).toBe(param);
    expect(calls).toBe(0);
    // Named by its token, refused before the guard (a compressed body) or after it.
    await expectOneAudit(gw, id, { status: 400, failure: 'bad_request', product: 'demo', user: 'e2e-user' });
  });

  it('answers 400 naming messages when messages is empty', async () => {
    const { id, headers } = rid('empty-messages');
    const { result: error, calls } = await countingUpstream(() =>
      apiError(gw.openai(demoToken).chat.completions.create({ model: 'gpt-4o', messages: [] }, { headers })),
    );
    expect(error.status).toBe(400);
    expect(error.code).toBe('invalid_request');
    expect(error.param).toBe('messages');
    expect(calls).toBe(0);
    await expectOneAudit(gw, id, { status: 400, failure: 'bad_request', product: 'demo', user: 'e2e-user' });
  });

  it('answers 400 naming the parameter when a parameter has the wrong type', async () => {
    const id = uniqueId('bad-type');
    const { result, calls } = await countingUpstream(() =>
      post(gw, '/v1/chat/completions', id, { model: 'gpt-4o', messages: user(prompt('wrong type')), temperature: 'hot' }),
    );
    expect(result.res.status).toBe(400);
    const { error } = result.json as ErrorBody;
    expect(error.code).toBe('invalid_request');
    expect(error.param).toBe('temperature');
    expect(error.message).toContain('temperature');
    expect(calls).toBe(0);
    await expectOneAudit(gw, id, { status: 400, failure: 'bad_request' });
  });

  it('answers 400 naming the field for a number beyond a double’s range, where it used to reach the upstream as null', async () => {
    // JSON.parse reads 1e309 as Infinity, which JSON.stringify writes as null: a tool schema's bound
    // (a field keygate passes on unread) went upstream as `"maximum": null`, the request changed.
    const id = uniqueId('huge-number');
    const schema = '{"type":"object","properties":{"n":{"type":"number","maximum":1e309}}}';
    const raw = `{"model":"gpt-4o","stream":true,"messages":${JSON.stringify(user(prompt('huge number')))},"tools":[{"type":"function","function":{"name":"f","parameters":${schema}}}]}`;
    const { result, calls } = await countingUpstream(() => post(gw, '/v1/chat/completions', id, null, { raw }));
    expect(result.res.status).toBe(400);
    expect((result.json as ErrorBody).error).toMatchObject({
      code: 'invalid_request',
      param: 'tools[0].function.parameters.properties.n.maximum',
      message: expect.stringContaining('too large'),
    });
    expect(calls).toBe(0);
    await expectOneAudit(gw, id, { status: 400, failure: 'bad_request', stream: true });
  });

  it('serves a body with a "constructor" key (a tool schema property so named), which validation used to answer 500', async () => {
    const id = uniqueId('constructor-key');
    const parameters = { type: 'object', properties: { constructor: { type: 'string' } }, required: ['constructor'] };
    const tools = [{ type: 'function', function: { name: 'build', parameters } }];
    const { result, chatCalls, after } = await countingUpstream(() =>
      post(gw, '/v1/chat/completions', id, { model: 'gpt-4o', messages: user(prompt('constructor key')), tools }),
    );
    expect(result.res.status).toBe(200);
    expect(chatCalls).toBe(1);
    expect((after.last['openai.chat']?.body as { tools: unknown }).tools).toEqual(tools);
    await expectOneAudit(gw, id, { status: 200, failure: null });

    // One where a string belongs is a wrong type like any other: 400 naming the field, nothing upstream.
    const wrongId = uniqueId('constructor-model');
    const wrong = await countingUpstream(() =>
      post(gw, '/v1/chat/completions', wrongId, { model: { constructor: 1 }, messages: user(prompt('constructor model')) }),
    );
    expect(wrong.result.res.status).toBe(400);
    expect((wrong.result.json as ErrorBody).error).toMatchObject({ code: 'invalid_request', param: 'model' });
    expect(wrong.calls).toBe(0);
    await expectOneAudit(gw, wrongId, { status: 400, failure: 'bad_request' });
  });

  it('audits a streamed request refused by validation as streamed (its body says so), a plain one as not', async () => {
    for (const stream of [true, false]) {
      const id = uniqueId(`bad-stream-${stream}`);
      const { result, calls } = await countingUpstream(() =>
        post(gw, '/v1/chat/completions', id, {
          model: 'gpt-4o',
          messages: user(prompt('bad usage flag')),
          stream,
          stream_options: { include_usage: 'yes' },
        }),
      );
      expect(result.res.status).toBe(400);
      expect(calls).toBe(0);
      await expectOneAudit(gw, id, { status: 400, failure: 'bad_request', stream });
    }
  });

  it('answers 404 model_not_found for a model the product does not have', async () => {
    const { id, headers } = rid('unknown-model');
    const { result: error, calls } = await countingUpstream(() =>
      apiError(
        gw.openai(demoToken).chat.completions.create({ model: 'gpt-9-ultra', messages: user(prompt('unknown model')) }, { headers }),
      ),
    );
    expect(error.status).toBe(404);
    expect(error.code).toBe('model_not_found');
    expect(calls).toBe(0);
    await expectOneAudit(gw, id, { status: 404, failure: 'not_found', product: 'demo', model: 'gpt-9-ultra' });
  });

  it("answers 403 model_not_allowed for a model another product has but the caller's product does not (SPEC §6)", async () => {
    const { id, headers } = rid('foreign-model');
    const token = mintToken({ product: 'other' });
    const { result: error, calls } = await countingUpstream(() =>
      apiError(gw.openai(token).chat.completions.create({ model: 'gpt-4o-mini', messages: user(prompt('foreign model')) }, { headers })),
    );
    expect(error.status).toBe(403);
    expect(error.code).toBe('model_not_allowed');
    expect(error.type).toBe('permission_error');
    expect(error.param).toBe('model');
    expect(error.message).toContain('not enabled for product other');
    expect(calls).toBe(0);
    await expectOneAudit(gw, id, { status: 403, failure: 'forbidden', product: 'other', model: 'gpt-4o-mini' });
  });

  it("answers 413 when the body exceeds the product's max_request_bytes", async () => {
    const { id, headers } = rid('too-large');
    const token = mintToken({ product: 'tiny' });
    const big = prompt('x'.repeat(TINY_LIMIT * 2));
    const { result: error, calls } = await countingUpstream(() =>
      apiError(gw.openai(token).chat.completions.create({ model: 'gpt-4o-mini', messages: user(big) }, { headers })),
    );
    expect(error.status).toBe(413);
    expect(error.code).toBe('request_too_large');
    expect(calls).toBe(0);
    await expectOneAudit(gw, id, { status: 413, failure: 'policy', product: 'tiny' });
  });

  it.each(['/%761/chat/completions', '/v1/ch%61t/completions'])(
    'audits a request whose path spells the route with percent-escapes (%s) like any other, once',
    async (path) => {
      const id = uniqueId('escaped');
      const { result, calls } = await countingUpstream(() =>
        post(gw, path, id, { model: 'gpt-4o', messages: user(prompt('escaped path')) }),
      );
      expect(result.res.status).toBe(200);
      expect(calls).toBe(1);
      await expectOneAudit(gw, id, { status: 200, failure: null, product: 'demo', model: 'gpt-4o' });
    },
  );

  it("answers 413 for a body above every product's limit", async () => {
    const id = uniqueId('huge');
    const { result, calls } = await countingUpstream(() =>
      post(gw, '/v1/chat/completions', id, { model: 'gpt-4o', messages: user(prompt('y'.repeat(1_100_000))) }),
    );
    expect(result.res.status).toBe(413);
    expect((result.json as ErrorBody).error.code).toBe('request_too_large');
    expect(calls).toBe(0);
    // Refused before the guard ran, yet audited as the caller its token proves.
    await expectOneAudit(gw, id, { status: 413, failure: 'policy', product: 'demo', user: 'e2e-user' });
    // A forged token names no one.
    const forged = uniqueId('huge-forged');
    const refused = await post(
      gw,
      '/v1/chat/completions',
      forged,
      { model: 'gpt-4o', messages: user(prompt('y'.repeat(1_100_000))) },
      {
        token: `${demoToken.slice(0, -4)}AAAA`,
      },
    );
    expect(refused.res.status).toBe(413);
    await expectOneAudit(gw, forged, { status: 413, failure: 'policy', product: null, user: null });
  });

  it('refuses a request target with a fragment (400, before any upstream call), audited under its path without it', async () => {
    const id = uniqueId('fragment');
    const body = JSON.stringify({ model: 'gpt-4o', messages: user(prompt('fragment')) });
    const { result: answer, calls } = await countingUpstream(() =>
      rawRequest(
        gw,
        id,
        `POST /v1/chat/completions#secret-looking-text HTTP/1.1\r\nAuthorization: Bearer ${demoToken}\r\n` +
          `Content-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}`,
        body,
      ),
    );
    expect(answer).toMatch(/^HTTP\/1\.1 400 /);
    expect(answer).toContain('"code":"invalid_request"');
    expect(calls).toBe(0);
    await expectOneAudit(gw, id, {
      status: 400,
      failure: 'bad_request',
      path: '/v1/chat/completions',
      product: 'demo',
      user: 'e2e-user',
    });
  });

  const twoCredentials = JSON.stringify({ model: 'gpt-4o', messages: user(prompt('two credentials')) });
  it.each([
    [
      'two Authorization headers (one credential per request)',
      'two-authorizations',
      `Authorization: Bearer ${demoToken}\r\nauthorization: Bearer not-the-same\r\nContent-Type: application/json\r\n` +
        `Content-Length: ${Buffer.byteLength(twoCredentials)}`,
      twoCredentials,
      '"param":"authorization"',
    ],
    [
      'a body with a transfer coding other than chunked (gzip, chunked), naming it',
      'te-gzip',
      `Authorization: Bearer ${demoToken}\r\nContent-Type: application/json\r\nTransfer-Encoding: gzip, chunked`,
      '5\r\nabcde\r\n0\r\n\r\n',
      'Transfer-Encoding gzip, chunked is not supported',
    ],
  ])('refuses %s with 400, before any upstream call, audited', async (_what, label, headers, body, said) => {
    const id = uniqueId(label);
    const { result: answer, calls } = await countingUpstream(() =>
      rawRequest(gw, id, `POST /v1/chat/completions HTTP/1.1\r\n${headers}`, body),
    );
    expect(answer).toMatch(/^HTTP\/1\.1 400 /);
    expect(answer).toContain(said);
    expect(calls).toBe(0);
    await expectOneAudit(gw, id, { status: 400, failure: 'bad_request' });
  });

  it.each(['/admin/blocks', '/%61dmin/blocks'])(
    'refuses two Authorization headers on an operator route spelt %s with 400, before its guard reads either',
    async (path) => {
      const body = JSON.stringify({ product: 'demo', reason: 'two credentials' });
      const answer = await rawRequest(
        gw,
        uniqueId('admin-two-authorizations'),
        `POST ${path} HTTP/1.1\r\nAuthorization: Bearer ${demoToken}\r\nAuthorization: Bearer not-the-same\r\n` +
          `Content-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}`,
        body,
        false,
      );
      expect(answer).toMatch(/^HTTP\/1\.1 400 /);
      expect(answer).toContain('"param":"authorization"');
    },
  );

  it('audits client_abort (499), not the 413 it never heard, for a client that leaves while keygate waits for its body to drain', async () => {
    const id = uniqueId('huge-gone');
    // Sent on a raw socket: tracked by hand for the file's one-audit-line-per-request check.
    gw.requests.push({ id, method: 'POST', path: '/v1/chat/completions' });
    const { calls } = await countingUpstream(
      () =>
        new Promise<void>((resolve) => {
          const socket = connect(Number(new URL(gw.url).port), '127.0.0.1', () => {
            // Above every product's limit, so refused on its Content-Length; the answer waits for
            // the body, which never comes: the client gives up first.
            socket.write(
              `POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${demoToken}\r\n` +
                `Content-Type: application/json\r\nContent-Length: 2000000\r\nX-Request-Id: ${id}\r\n\r\n{"model":`,
            );
            setTimeout(() => socket.destroy(), 300);
          });
          socket.on('data', () => undefined);
          socket.on('close', () => resolve());
        }),
    );
    expect(calls).toBe(0);
    await expectOneAudit(gw, id, { status: 499, failure: 'client_abort' });
  });

  it.each([
    ['above every product’s limit: refused at once, no 100 Continue (it would upload a body only to hear 413)', 2_000_000, 413, false],
    [
      'above every product’s limit, sent without waiting (RFC 9110 lets a client): the 413 read, not a reset mid-upload',
      2_000_000,
      413,
      true,
    ],
    ['within a product’s limit: told 100 Continue, then served once its body comes', 0, 200, false],
  ])('answers Expect: 100-continue for a body %s', async (_what, declared, status, eager) => {
    const id = uniqueId('expect-continue');
    gw.requests.push({ id, method: 'POST', path: '/v1/chat/completions' });
    const body = eager ? 'x'.repeat(declared) : JSON.stringify({ model: 'gpt-4o', messages: user(prompt('expect')) });
    const length = declared || Buffer.byteLength(body);
    const { result: answer, calls } = await countingUpstream(
      () =>
        new Promise<string>((resolve, reject) => {
          let text = '';
          const socket = connect(Number(new URL(gw.url).port), '127.0.0.1', () => {
            socket.write(
              `POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${demoToken}\r\n` +
                `Content-Type: application/json\r\nContent-Length: ${length}\r\nX-Request-Id: ${id}\r\n` +
                'Expect: 100-continue\r\nConnection: close\r\n\r\n',
            );
            if (eager) socket.write(body);
          });
          socket.on('data', (chunk: Buffer) => {
            text += chunk.toString('utf8');
            // As a client that honours the expectation: the body goes only after 100 Continue.
            if (!eager && text === 'HTTP/1.1 100 Continue\r\n\r\n') socket.write(body);
          });
          socket.on('close', () => resolve(text));
          socket.on('error', (error) => reject(new Error(`${String(error)} after ${JSON.stringify(text.slice(0, 40))}`)));
          socket.setTimeout(4_000, () => socket.destroy(new Error('no answer: the body was never asked for, or never answered')));
        }),
    );
    expect(answer.startsWith('HTTP/1.1 100 Continue\r\n\r\n')).toBe(status === 200);
    expect(answer.replace('HTTP/1.1 100 Continue\r\n\r\n', '')).toMatch(new RegExp(`^HTTP/1\\.1 ${status} `));
    expect(calls).toBe(status === 200 ? 1 : 0);
    await expectOneAudit(gw, id, { status, failure: status === 200 ? null : 'policy', user: 'e2e-user' });
  });

  it('lets the SDK read that 413 for an 8 MB body, not a reset mid-upload (which it would retry, upload and all)', async () => {
    const huge = user(prompt('z'.repeat(8_000_000)));
    const ids = Array.from({ length: 3 }, () => rid('huge-sdk'));
    const { result: errors, calls } = await countingUpstream(async () => {
      const out = [];
      for (const { headers } of ids)
        out.push(await apiError(gw.openai(demoToken).chat.completions.create({ model: 'gpt-4o', messages: huge }, { headers })));
      return out;
    });
    expect(errors.map((e) => [e.status, e.code])).toEqual(ids.map(() => [413, 'request_too_large']));
    expect(calls).toBe(0);
    for (const { id } of ids) await expectOneAudit(gw, id, { status: 413, failure: 'policy' });
  });

  it('answers 400 policy_violation when max_tokens is above the policy cap', async () => {
    const { id, headers } = rid('over-cap');
    const { result: error, calls } = await countingUpstream(() =>
      apiError(
        gw
          .openai(demoToken)
          .chat.completions.create({ model: 'gpt-4o', messages: user(prompt('over cap')), max_tokens: CAP + 1 }, { headers }),
      ),
    );
    expect(error.status).toBe(400);
    expect(error.code).toBe('policy_violation');
    expect(error.param).toBe('max_tokens');
    expect(calls).toBe(0);
    await expectOneAudit(gw, id, { status: 400, failure: 'policy', product: 'demo', model: 'gpt-4o' });
  });

  it('answers 400 policy_violation when temperature is outside the policy range', async () => {
    const { id, headers } = rid('hot');
    const { result: error, calls } = await countingUpstream(() =>
      apiError(
        gw.openai(demoToken).chat.completions.create({ model: 'gpt-4o', messages: user(prompt('too hot')), temperature: 1.9 }, { headers }),
      ),
    );
    expect(error.status).toBe(400);
    expect(error.code).toBe('policy_violation');
    expect(error.param).toBe('temperature');
    expect(calls).toBe(0);
    await expectOneAudit(gw, id, { status: 400, failure: 'policy' });
  });

  it('sends the policy cap as max_tokens when the client sent none, and keeps a smaller one', async () => {
    const client = gw.openai(demoToken);
    const absent = rid('cap-absent');
    const text = prompt('cap absent');
    const { after, chatCalls } = await countingUpstream(() =>
      client.chat.completions.create({ model: 'gpt-4o', messages: user(text) }, { headers: absent.headers }),
    );
    const sent = after.last['openai.chat']?.body as { max_tokens?: number; messages: Array<{ content: string }> };
    expect(chatCalls).toBe(1);
    expect(sent.messages[0].content).toBe(text);
    expect(sent.max_tokens).toBe(CAP);
    await expectOneAudit(gw, absent.id, { status: 200, failure: null });

    const small = rid('cap-small');
    const { after: after2 } = await countingUpstream(() =>
      client.chat.completions.create({ model: 'gpt-4o', messages: user(prompt('cap small')), max_tokens: 7 }, { headers: small.headers }),
    );
    expect((after2.last['openai.chat']?.body as { max_tokens?: number }).max_tokens).toBe(7);
    await expectOneAudit(gw, small.id, { status: 200, failure: null });
  });
});

// ---------------------------------------------------------------------------------------------
// what the upstream sees
// ---------------------------------------------------------------------------------------------

describe('what reaches the upstream', () => {
  it("sends the product's provider key, never the client's token or identity headers", async () => {
    const { id } = rid('headers');
    const token = mintToken({ sub: 'real-user' });
    const text = prompt('header hygiene');
    const { after, chatCalls } = await countingUpstream(() =>
      gw.openai(token).chat.completions.create(
        { model: 'gpt-4o', messages: user(text) },
        {
          headers: {
            'X-Request-Id': id,
            'X-Auth-User': 'mallory',
            'X-Auth-Request-Email': 'mallory@evil.test',
            'x-goog-authenticated-user-email': 'accounts.google.com:mallory@evil.test',
            'x-goog-authenticated-user-id': 'accounts.google.com:666',
            'x-goog-iap-jwt-assertion': 'forged',
          },
        },
      ),
    );
    expect(chatCalls).toBe(1);
    const last = after.last['openai.chat']!;
    expect((last.body as { messages: Array<{ content: string }> }).messages[0].content).toBe(text);
    expect(last.headers.authorization).toBe('Bearer sk-mock-demo');
    const names = Object.keys(last.headers).map((h) => h.toLowerCase());
    expect(names.filter((h) => h.startsWith('x-auth-') || h.startsWith('x-goog-'))).toEqual([]);
    expect(JSON.stringify(last.headers)).not.toContain(token);
    expect(JSON.stringify(last.headers)).not.toContain('mallory');
    await expectOneAudit(gw, id, { status: 200, user: 'real-user', product: 'demo' });
  });

  it("sends each product's own provider key", async () => {
    const { id, headers } = rid('other-key');
    const { after } = await countingUpstream(() =>
      gw
        .openai(mintToken({ product: 'other' }))
        .chat.completions.create({ model: 'gpt-4o', messages: user(prompt('other key')) }, { headers }),
    );
    expect(after.last['openai.chat']?.headers.authorization).toBe('Bearer sk-mock-other');
    await expectOneAudit(gw, id, { status: 200, product: 'other', provider: 'openai' });
  });
});

// ---------------------------------------------------------------------------------------------
// upstream failures
// ---------------------------------------------------------------------------------------------

describe('upstream failures', () => {
  it('answers 502 upstream_error when the upstream fails with 503', async () => {
    const { id, headers } = rid('up-503');
    const { result: error, chatCalls } = await countingUpstream(() =>
      apiError(
        gw
          .openai(demoToken)
          .chat.completions.create({ model: 'gpt-4o', messages: user(prompt('outage', '[mock status=503]')) }, { headers }),
      ),
    );
    expect(error.status).toBe(502);
    expect(error.code).toBe('upstream_error');
    const audit = await expectOneAudit(gw, id, {
      status: 502,
      failure: 'upstream',
      product: 'demo',
      model: 'gpt-4o',
      provider: 'openai',
      stream: false,
    });
    expect(chatCalls).toBeGreaterThanOrEqual(1);
    expect(chatCalls).toBe(audit.attempts);
  });

  it('answers 502 before any stream byte when a streamed request meets an upstream 503', async () => {
    const { id, headers } = rid('up-503-stream');
    const { result: error } = await countingUpstream(() =>
      apiError(
        gw
          .openai(demoToken)
          .chat.completions.create(
            { model: 'gpt-4o', messages: user(prompt('outage stream', '[mock status=503]')), stream: true },
            { headers },
          ),
      ),
    );
    expect(error.status).toBe(502);
    expect(error.code).toBe('upstream_error');
    await expectOneAudit(gw, id, { status: 502, failure: 'upstream', stream: true });
  });

  it("answers 429 with the upstream's Retry-After when the upstream rate-limits", async () => {
    const { id, headers } = rid('up-429');
    const { result: error, chatCalls } = await countingUpstream(() =>
      apiError(
        gw
          .openai(demoToken)
          .chat.completions.create(
            { model: 'gpt-4o', messages: user(prompt('slow down', '[mock status=429 retry_after=7]')) },
            { headers },
          ),
      ),
    );
    expect(error.status).toBe(429);
    expect(error.headers?.get('retry-after')).toBe('7');
    expect(chatCalls).toBeGreaterThanOrEqual(1);
    await expectOneAudit(gw, id, { status: 429, failure: 'upstream', provider: 'openai' });
  });

  it("passes an upstream 400 on as a 400 with the upstream's explanation", async () => {
    const { id, headers } = rid('up-400');
    const { result: error, chatCalls } = await countingUpstream(() =>
      apiError(
        gw
          .openai(demoToken)
          .chat.completions.create({ model: 'gpt-4o', messages: user(prompt('bad for upstream', '[mock status=400]')) }, { headers }),
      ),
    );
    expect(error.status).toBe(400);
    expect(error.message).toContain('Invalid request.');
    expect(chatCalls).toBe(1);
    await expectOneAudit(gw, id, { status: 400, failure: 'upstream', provider: 'openai' });
  });

  it('answers 504 when the upstream sends no first byte within the TTFB timeout', async () => {
    const { id, headers } = rid('ttfb');
    const started = Date.now();
    const { result: error, chatCalls } = await countingUpstream(() =>
      apiError(
        tight
          .openai(demoToken)
          .chat.completions.create({ model: 'gpt-4o', messages: user(prompt('ttfb', '[mock delay_ms=5000]')) }, { headers }),
      ),
    );
    expect(Date.now() - started).toBeLessThan(4_000);
    expect(error.status).toBe(504);
    expect(error.code).toBe('upstream_timeout');
    expect(chatCalls).toBe(1);
    // The upstream took the request and was writing the answer (a whole answer's headers come with
    // it), which it bills: the prompt is billed, at keygate's estimate.
    const line = await expectOneAudit(tight, id, { status: 504, failure: 'timeout', provider: 'openai', stream: false });
    expect(line.tokens_in).toEqual(expect.any(Number));
    expect(line.tokens_in).toBeGreaterThan(0);
  });

  it.each(['gpt-4o', 'claude-3-5-sonnet-20241022', 'gemini-1.5-pro'])(
    'reads a %s stream whose SSE lines end in a bare CR (valid SSE) to its last event, not as an answer cut short',
    async (model) => {
      // The directive shapes streams only: the plain answer to the same prompt gives its content and usage.
      const text = prompt('bare CR', '[mock eol=cr]');
      const reference = await gw.openai(demoToken).chat.completions.create({ model, messages: user(text) });
      const { id, headers } = rid('bare-cr');
      const chunks: ChatCompletionChunk[] = [];
      const stream = await gw.openai(demoToken).chat.completions.create({ model, messages: user(text), stream: true }, { headers });
      // Before the fix the last event (`[DONE]`, Anthropic's message_stop, Gemini's finishing
      // chunk), whose closing blank line is the body's last CR, was never read: an APIError.
      for await (const chunk of stream) chunks.push(chunk);
      expect(chunks.map((c) => c.choices[0]?.delta?.content ?? '').join('')).toBe(reference.choices[0].message.content);
      expect(chunks[chunks.length - 1].choices[0]?.finish_reason).toBe('stop');
      await expectOneAudit(gw, id, {
        status: 200,
        failure: null,
        stream: true,
        tokens_in: reference.usage!.prompt_tokens,
        tokens_out: reference.usage!.completion_tokens,
      });
    },
  );

  it('ends a stream with an error event when the upstream goes idle mid-stream', async () => {
    const { id, headers } = rid('idle');
    const started = Date.now();
    const {
      result: { received, error },
      chatCalls,
    } = await countingUpstream(() =>
      streamUntilError(
        tight.openai(demoToken),
        { model: 'gpt-4o', messages: user(prompt('idle stream', '[mock stall_after=2]')), stream: true },
        headers,
      ),
    );
    expect(Date.now() - started).toBeLessThan(5_000);
    expect(received.join('')).not.toBe('');
    expect(error.code).toBe('upstream_timeout');
    expect(chatCalls).toBe(1);
    const audit = await expectOneAudit(tight, id, { failure: 'timeout', stream: true, provider: 'openai' });
    expect(audit.tokens_out).toBeGreaterThan(0);
  });

  it('ends a stream with an error event when the upstream connection drops mid-stream', async () => {
    const { id, headers } = rid('cut');
    const {
      result: { received, error },
      chatCalls,
    } = await countingUpstream(() =>
      streamUntilError(
        gw.openai(demoToken),
        { model: 'gpt-4o', messages: user(prompt('cut stream', '[mock cut_after=2]')), stream: true },
        headers,
      ),
    );
    expect(received.join('')).not.toBe('');
    expect(error.code).toBe('upstream_error');
    expect(chatCalls).toBe(1);
    await expectOneAudit(gw, id, { failure: 'upstream', stream: true, provider: 'openai' });
  });

  it('ends a stream with an error event when the upstream sends an error event mid-stream', async () => {
    const { id, headers } = rid('error-event');
    const { received, error } = await streamUntilError(
      gw.openai(demoToken),
      { model: 'gpt-4o', messages: user(prompt('error event', '[mock error_event_after=2]')), stream: true },
      headers,
    );
    expect(received.join('')).not.toBe('');
    expect(error.code).toBe('upstream_error');
    await expectOneAudit(gw, id, { failure: 'upstream', stream: true });
  });

  it('answers 504 when a non-streamed upstream answer stops after its headers', async () => {
    const { id, headers } = rid('idle-json');
    const { result: error, chatCalls } = await countingUpstream(() =>
      apiError(
        tight
          .openai(demoToken)
          .chat.completions.create({ model: 'gpt-4o', messages: user(prompt('idle json', '[mock stall_after=0]')) }, { headers }),
      ),
    );
    expect(error.status).toBe(504);
    expect(error.code).toBe('upstream_timeout');
    expect(chatCalls).toBe(1);
    // The answer was being sent: the prompt is billed (keygate's estimate), as for a header timeout.
    const line = await expectOneAudit(tight, id, { status: 504, failure: 'timeout', stream: false });
    expect(line.tokens_in).toBeGreaterThan(0);
  });

  it("answers 502 without revealing the key when the upstream refuses keygate's provider key", async () => {
    const { id, headers } = rid('up-401');
    const { result: error, chatCalls } = await countingUpstream(() =>
      apiError(
        gw
          .openai(mintToken({ product: 'badkey' }))
          .chat.completions.create({ model: 'gpt-4o-mini', messages: user(prompt('bad key')) }, { headers }),
      ),
    );
    expect(error.status).toBe(502);
    expect(error.code).toBe('upstream_error');
    expect(JSON.stringify(error.error)).not.toContain(BAD_UPSTREAM_KEY.slice(-4));
    expect(chatCalls).toBe(1);
    await expectOneAudit(gw, id, { status: 502, failure: 'upstream', product: 'badkey' });
  });

  it("ends a stream that outlives the product's max_stream_seconds with a stream_timeout error event", async () => {
    const { id, headers } = rid('long-stream');
    const started = Date.now();
    const { received, error } = await streamUntilError(
      gw.openai(mintToken({ product: 'short' })),
      { model: 'gpt-4o-mini', messages: user(prompt('long stream', '[mock chunk_delay_ms=200 chunks=20]')), stream: true },
      headers,
    );
    expect(Date.now() - started).toBeLessThan(3_500);
    expect(received.join('')).not.toBe('');
    expect(error.code).toBe('stream_timeout');
    await expectOneAudit(gw, id, { failure: 'policy', stream: true, product: 'short' });
  });

  it('answers 502 when the upstream is unreachable', async () => {
    const { id, headers } = rid('unreachable');
    const token = mintToken({ product: 'deadend' });
    const { result: error, calls } = await countingUpstream(() =>
      apiError(gw.openai(token).chat.completions.create({ model: 'gpt-4o-mini', messages: user(prompt('nobody home')) }, { headers })),
    );
    expect(error.status).toBe(502);
    expect(error.code).toBe('upstream_error');
    expect(calls).toBe(0);
    await expectOneAudit(gw, id, { status: 502, failure: 'upstream', product: 'deadend', provider: 'openai' });
  });
});

// ---------------------------------------------------------------------------------------------
// client disconnects
// ---------------------------------------------------------------------------------------------

describe('client disconnects', () => {
  it('cancels the upstream request and audits client_abort (499) when a waiting client goes away', async () => {
    const { id, headers } = rid('abort');
    const before = await mock.stats();
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(), 300);
    const error = await apiError(
      gw
        .openai(demoToken)
        .chat.completions.create(
          { model: 'gpt-4o', messages: user(prompt('abort me', '[mock delay_ms=3000]')) },
          { headers, signal: controller.signal },
        ),
    );
    clearTimeout(timer);
    expect(error).toBeInstanceOf(APIUserAbortError);

    const after = await waitFor('the mock to see the upstream request cancelled', async () => {
      const s = await mock.stats();
      return s.aborted > before.aborted ? s : undefined;
    });
    expect(after.byRoute['openai.chat'] - before.byRoute['openai.chat']).toBe(1);
    const audit = await expectOneAudit(gw, id, {
      status: 499,
      failure: 'client_abort',
      product: 'demo',
      model: 'gpt-4o',
      provider: 'openai',
      stream: false,
    });
    // The prompt reached the upstream, which bills it: the estimate is recorded (and settled to the
    // quota), as for an abandoned stream; nothing was generated for the client.
    expect(audit.tokens_in).toBeGreaterThan(0);
    expect(audit.tokens_out ?? 0).toBe(0);
  });

  it('bills nothing to a streaming client that leaves while keygate waits to retry a refused attempt (no call in flight)', async () => {
    const { id, headers } = rid('abort-backoff');
    const before = await mock.stats();
    const controller = new AbortController();
    // The upstream refuses with 503 and Retry-After: 4 s, which keygate waits out before its retry.
    const pending = apiError(
      gw
        .openai(demoToken)
        .chat.completions.create(
          { model: 'gpt-4o', messages: user(prompt('abort in backoff', '[mock status=503 retry_after=4]')), stream: true },
          { headers, signal: controller.signal },
        ),
    );
    await gw.proc.waitForLine(
      'the retry of the refused attempt',
      (l) => l.json?.requestId === id && l.json.message === 'upstream attempt failed; retrying',
      10_000,
    );
    controller.abort();
    expect(await pending).toBeInstanceOf(APIUserAbortError);
    const audit = await expectOneAudit(gw, id, { status: 499, failure: 'client_abort', stream: true, attempts: 1 });
    // The provider bills nothing for its refusal and no other call went out: there is nothing to bill.
    expect(audit.tokens_in).toBeNull();
    expect(audit.tokens_out).toBeNull();
    expect((await mock.stats()).byRoute['openai.chat'] - before.byRoute['openai.chat']).toBe(1);
  });

  it('cancels the upstream stream and audits client_abort with the tokens seen so far when a streaming client goes away', async () => {
    const { id, headers } = rid('abort-stream');
    const before = await mock.stats();
    const stream = await gw
      .openai(demoToken)
      .chat.completions.create(
        { model: 'gpt-4o', messages: user(prompt('abort my stream', '[mock chunk_delay_ms=200 chunks=20]')), stream: true },
        { headers },
      );
    let contentChunks = 0;
    for await (const chunk of stream) {
      if (chunk.choices[0]?.delta?.content) contentChunks++;
      if (contentChunks >= 2) {
        stream.controller.abort();
        break;
      }
    }
    expect(contentChunks).toBe(2);

    const after = await waitFor('the mock to see the upstream stream cancelled', async () => {
      const s = await mock.stats();
      return s.aborted > before.aborted ? s : undefined;
    });
    expect(after.byRoute['openai.chat'] - before.byRoute['openai.chat']).toBe(1);
    const audit = await expectOneAudit(gw, id, { status: 499, failure: 'client_abort', product: 'demo', stream: true, provider: 'openai' });
    expect(audit.tokens_out).toBeGreaterThan(0);
    expect(audit.tokens_in).toBeGreaterThan(0);
  });
});

describe('SSE keep-alive comments (API_KEY_SERVER_SSE_KEEPALIVE_SECONDS=1)', () => {
  let slow: Gateway;
  beforeAll(async () => {
    slow = await startGateway({ products: demoProducts(mock.url), env: { API_KEY_SERVER_SSE_KEEPALIVE_SECONDS: '1' } });
  }, 30_000);
  afterAll(() => slow?.stop(), 15_000);

  async function raw(id: string, directives: string): Promise<string[]> {
    const res = await slow.fetch('/v1/chat/completions', {
      method: 'POST',
      headers: { authorization: `Bearer ${demoToken}`, 'content-type': 'application/json', 'x-request-id': id },
      body: JSON.stringify({ model: 'gpt-4o', stream: true, messages: user(prompt('keep me alive', directives)) }),
    });
    expect(res.status).toBe(200);
    return (await res.text()).split('\n').filter((line) => line !== '');
  }

  it('writes a comment while the upstream is silent, between whole events, and nothing else changes', async () => {
    const id = uniqueId('keepalive-silent');
    // 2.5 s between events upstream: more than two keep-alive periods.
    const lines = await raw(id, '[mock chunk_delay_ms=2500 chunks=2]');
    const comments = lines.filter((line) => line === ': keep-alive');
    expect(comments.length).toBeGreaterThanOrEqual(2);
    expect(lines.filter((line) => line !== ': keep-alive').every((line) => line.startsWith('data: '))).toBe(true);
    expect(lines.at(-1)).toBe('data: [DONE]');
    await expectOneAudit(slow, id, { status: 200, failure: null, stream: true });
  }, 20_000);

  it('writes none while events keep coming', async () => {
    const lines = await raw(uniqueId('keepalive-busy'), '[mock chunk_delay_ms=300 chunks=10]');
    expect(lines.filter((line) => line.startsWith(':'))).toEqual([]);
    expect(lines.at(-1)).toBe('data: [DONE]');
  }, 20_000);

  it('is skipped by the openai SDK: the same answer as from a gateway that sends none', async () => {
    const messages = user(prompt('keep me alive too', '[mock chunk_delay_ms=2500 chunks=2]'));
    const read = async (g: Gateway): Promise<string> => {
      let text = '';
      const stream = await g.openai(demoToken).chat.completions.create({ model: 'gpt-4o', stream: true, messages });
      for await (const chunk of stream) text += chunk.choices[0]?.delta?.content ?? '';
      return text;
    };
    const [withComments, without] = await Promise.all([read(slow), read(gw)]);
    expect(withComments).not.toBe('');
    expect(withComments).toBe(without);
  }, 20_000);

  it('writes none on Gemini’s own stream, whose SDKs read nothing but data: events (a comment broke @google/generative-ai mid-stream)', async () => {
    const id = uniqueId('keepalive-gemini');
    const res = await slow.fetch('/v1beta/models/gemini-1.5-pro:streamGenerateContent?alt=sse', {
      method: 'POST',
      headers: { 'x-goog-api-key': demoToken, 'content-type': 'application/json', 'x-request-id': id },
      body: JSON.stringify({
        contents: [{ role: 'user', parts: [{ text: prompt('keep gemini alive', '[mock chunk_delay_ms=2500 chunks=2]') }] }],
      }),
    });
    expect(res.status).toBe(200);
    const text = await res.text();
    // @google/generative-ai's parser: the buffer must start with a whole `data: …` event, each time.
    let rest = text;
    const texts: string[] = [];
    for (let event = /^data: (.*)(?:\n\n|\r\r|\r\n\r\n)/.exec(rest); event; event = /^data: (.*)(?:\n\n|\r\r|\r\n\r\n)/.exec(rest)) {
      const chunk = JSON.parse(event[1]) as { candidates?: Array<{ content?: { parts?: Array<{ text?: string }> } }> };
      texts.push(chunk.candidates?.[0]?.content?.parts?.[0]?.text ?? '');
      rest = rest.slice(event[0].length);
    }
    expect(rest.trim()).toBe('');
    expect(texts.join('')).toContain('keep gemini alive');
    await expectOneAudit(slow, id, { status: 200, failure: null, stream: true, provider: 'gemini' });
  }, 20_000);
});

describe('model names that are also Object property names', () => {
  it.each(['constructor', '__proto__', 'toString'])('routes %s like any other name under a * pattern (no 500)', async (model) => {
    const { id, headers } = rid(`object-name-${model}`);
    const answer = await gw
      .openai(mintToken({ product: 'wild', sub: 'wild-user' }))
      .chat.completions.create({ model, messages: user(prompt('object name')) }, { headers });
    expect(answer.choices[0].message.content).toContain('object name');
    await expectOneAudit(gw, id, { status: 200, failure: null, product: 'wild', model });
  });
});

// ---------------------------------------------------------------------------------------------
// audit completeness and log hygiene (run last: they look at everything the file did)
// ---------------------------------------------------------------------------------------------

describe('audit trail and logs', () => {
  it('kept both gateways and the mock running through the whole file', () => {
    for (const p of [gw.proc, tight.proc, mock.proc]) expect({ name: p.name, exit: p.exitInfo }).toEqual({ name: p.name, exit: null });
  });

  it.each([
    ['main', () => gw],
    ['tight-timeout', () => tight],
  ])('the %s gateway wrote exactly one audit line per /v1 and /chat request', async (_name, gateway) => {
    const g = gateway();
    expect(g.requests.length).toBeGreaterThan(0);
    await waitFor('every request to be audited', () => g.audits().length >= g.requests.length, 5_000).catch(() => undefined);
    const audits = g.audits();
    const missing = g.requests.filter((r) => !audits.some((a) => a.requestId === r.id));
    const duplicated = g.requests.filter((r) => audits.filter((a) => a.requestId === r.id).length > 1);
    expect({ missing, duplicated }).toEqual({ missing: [], duplicated: [] });
    expect(audits).toHaveLength(g.requests.length);
  });

  it('left no upstream request open (stalled and aborted upstream calls were all closed)', async () => {
    const stats = await waitFor(
      'the mock to have no open exchange',
      async () => {
        const s = await mock.stats();
        return s.active === 0 ? s : undefined;
      },
      5_000,
    ).catch(async () => mock.stats());
    expect(stats.active).toBe(0);
  });

  it('never logs a prompt, a completion, a provider key or a credential', () => {
    const everything = [...gw.proc.lines, ...tight.proc.lines].map((l) => l.raw);
    expect(everything.length).toBeGreaterThan(0);
    const leaks = (needle: string): string[] => everything.filter((line) => line.includes(needle));
    expect(leaks(MARKER)).toEqual([]);
    expect(leaks('sk-mock')).toEqual([]);
    expect(leaks('sk-ant-mock')).toEqual([]);
    expect(leaks('AIza-mock')).toEqual([]);
    expect(leaks(BAD_UPSTREAM_KEY)).toEqual([]);
    expect(mintedTokens.length).toBeGreaterThan(5);
    for (const token of mintedTokens) {
      // Any signed part of a token (the signature is unique to it) must be absent.
      const signature = token.split('.')[2];
      expect(leaks(token)).toEqual([]);
      if (signature) expect(leaks(signature)).toEqual([]);
    }
    expect(everything.filter((line) => /eyJ[\w-]{10,}\.eyJ/.test(line))).toEqual([]);
  });

  it('printed only structured JSON lines on stdout and no error-level line', () => {
    for (const g of [gw, tight]) {
      const stdout = g.proc.lines.filter((l) => l.stream === 'stdout');
      expect(stdout.filter((l) => l.json === null).map((l) => l.raw)).toEqual([]);
      expect(
        stdout.filter((l) => ['ERROR', 'CRITICAL', 'ALERT', 'EMERGENCY'].includes(String(l.json?.severity))).map((l) => l.raw),
      ).toEqual([]);
      expect(g.proc.lines.filter((l) => l.stream === 'stderr').map((l) => l.raw)).toEqual([]);
    }
  });
});
