/**
 * The rest of the Gemini API, black box, through Google's official SDK (`@google/genai`) with the
 * gateway as its base URL: the model list (`models.list`, `models.get`, answered from keygate's
 * configuration), embeddings (`models.embedContent`, which sends `batchEmbedContents`, and
 * `embedContent` itself), the stable `/v1` API version (`apiVersion: 'v1'`), and Google's refusal of
 * the product's key. Every case checks the outcome, what reached the upstream, and the request's
 * single audit line.
 */
import { GoogleGenAI, type Model } from '@google/genai';
import { countingOn, errorInfo, expectInvalidArgument, say, sdkError, withId, type GoogleError } from './gemini-fixtures';
import {
  expectOneAuditOn,
  GEMINI_EMBEDDING_DIMS,
  GEMINI_EMBEDDING_MODEL,
  GEMINI_MODEL,
  mockReply,
  OPENAI_EMBEDDING_MODEL,
  OPENAI_MODEL,
  rid,
} from './provider-fixtures';
import { cleanupTempFiles, mintToken, startGateway, startMock, writeTempFile, type Gateway, type MockUpstream } from './harness';

const MAX_RETRIES = 1;
/** Gemini models only product `other` has: a generative one and an embedding one. */
const OTHER_MODEL = 'gemini-2.5-pro';
const OTHER_EMBEDDING_MODEL = 'gemini-embedding-001';
/** The Gemini models of product `gem`, and a name it serves through a pattern. */
const GEM_MODELS = [GEMINI_MODEL, GEMINI_EMBEDDING_MODEL, 'gemini-2.0-flash', 'gemini-2.5-flash'];
const PATTERN_MODEL = 'gemini-exp-1206';

let mock: MockUpstream;
let gw: Gateway;
let token: string;

beforeAll(async () => {
  mock = await startMock();
  const gemini = { api_key: 'AIza-mock-more', models: [...GEM_MODELS, 'gemini-exp-*'], base_url: mock.url };
  const openai = { api_key: 'sk-mock-more', models: [OPENAI_MODEL, OPENAI_EMBEDDING_MODEL], base_url: `${mock.url}/v1` };
  gw = await startGateway({
    products: {
      gem: { providers: { gemini, openai } },
      other: { providers: { gemini: { ...gemini, models: [OTHER_MODEL, OTHER_EMBEDDING_MODEL] } } },
      quota: { providers: { gemini: { ...gemini, models: [GEMINI_EMBEDDING_MODEL] } } },
      guarded: { providers: { gemini: { ...gemini, models: [GEMINI_EMBEDDING_MODEL] } } },
      // A key Google refuses (the mock answers 400 API_KEY_INVALID to any key not starting AIza-mock).
      badkey: { providers: { gemini: { ...gemini, api_key: 'AIza-revoked' } } },
    },
    env: {
      API_KEY_SERVER_POLICY_FILE: writeTempFile(
        'gemini-more-policy.yaml',
        [
          'defaults:',
          '  limits: {requests_per_second: 100000, user_requests_per_second: 100000, daily_requests: 1000000, user_daily_requests: 1000000}',
          'products:',
          '  quota:',
          '    limits: {daily_tokens: 20}',
          '  guarded:',
          "    policy: {refused_fields: ['title']}",
          '',
        ].join('\n'),
      ),
      API_KEY_SERVER_UPSTREAM_MAX_RETRIES: String(MAX_RETRIES),
      API_KEY_SERVER_UPSTREAM_RETRY_BASE_MS: '20',
    },
  });
  token = mintToken({ product: 'gem', sub: 'gemini-user' });
}, 45_000);

afterAll(async () => {
  await Promise.all([gw?.stop(), mock?.stop()]);
  cleanupTempFiles();
}, 30_000);

/** `@google/genai` against the gateway, under `v1beta` (the SDK's default) or `v1`. */
function genai(key: string, apiVersion?: 'v1'): GoogleGenAI {
  return new GoogleGenAI({
    apiKey: key,
    httpOptions: { baseUrl: gw.url, fetch: gw.fetch, timeout: 20_000, ...(apiVersion ? { apiVersion } : {}) },
  });
}

const counting = <T>(action: () => Promise<T>): ReturnType<typeof countingOn<T>> => countingOn(mock, action);
const expectOneAudit = (id: string, expected: Record<string, unknown>): ReturnType<typeof expectOneAuditOn> =>
  expectOneAuditOn(gw, id, expected);

describe('the Gemini model list (models.list, models.get)', () => {
  it('lists the product’s Gemini models only, in Google’s shape, page by page, without calling any upstream', async () => {
    const names: string[] = [];
    const { moved: calls } = await counting(async () => {
      const pager = await genai(token).models.list({ config: { pageSize: 2 } });
      let pages = 1;
      names.push(...pager.page.map((m) => m.name ?? ''));
      while (pager.hasNextPage() && pages < 10) {
        names.push(...(await pager.nextPage()).map((m) => m.name ?? ''));
        pages++;
      }
      expect(pages).toBe(2);
    });
    // Exact names only (a pattern names no model), no other provider's, sorted.
    expect(names).toEqual([...GEM_MODELS].sort().map((id) => `models/${id}`));
    expect(calls).toEqual({});

    const { id, httpOptions } = withId('gem-list');
    const page = await genai(token).models.list({ config: { httpOptions } });
    const models: Model[] = [...page.page];
    expect(page.hasNextPage()).toBe(false);
    expect(models.find((m) => m.name === `models/${GEMINI_EMBEDDING_MODEL}`)).toMatchObject({
      displayName: GEMINI_EMBEDDING_MODEL,
      supportedActions: ['embedContent', 'batchEmbedContents'],
    });
    expect(models.find((m) => m.name === `models/${GEMINI_MODEL}`)?.supportedActions).toEqual(['generateContent', 'countTokens']);
    await expectOneAudit(id, { status: 200, failure: null, product: 'gem', user: 'gemini-user', model: null, path: '/v1beta/models' });
  });

  it('gets one model (by id, by resource name, or served through a pattern), without calling any upstream', async () => {
    const { id, httpOptions } = withId('gem-get');
    const { result: model, moved: calls } = await counting(() =>
      genai(token).models.get({ model: GEMINI_EMBEDDING_MODEL, config: { httpOptions } }),
    );
    expect(model).toMatchObject({ name: `models/${GEMINI_EMBEDDING_MODEL}`, supportedActions: ['embedContent', 'batchEmbedContents'] });
    expect(calls).toEqual({});
    await expectOneAudit(id, {
      status: 200,
      failure: null,
      model: GEMINI_EMBEDDING_MODEL,
      provider: 'gemini',
      path: `/v1beta/models/${GEMINI_EMBEDDING_MODEL}`,
    });
    expect((await genai(token).models.get({ model: `models/${GEMINI_MODEL}` })).name).toBe(`models/${GEMINI_MODEL}`);
    expect((await genai(token).models.get({ model: PATTERN_MODEL })).supportedActions).toEqual(['generateContent', 'countTokens']);
  });

  it.each([
    ['a model only another product has', OTHER_MODEL, 403, 'PERMISSION_DENIED', 'model_not_allowed', 'forbidden'],
    ['a model no product has', 'gemini-nope', 404, 'NOT_FOUND', 'model_not_found', 'not_found'],
    ['an OpenAI model of the product', OPENAI_MODEL, 404, 'NOT_FOUND', 'model_not_found', 'not_found'],
  ])('refuses to get %s without calling any upstream', async (_case, model, status, rpc, code, failure) => {
    const { id, httpOptions } = withId('gem-get-refused');
    const { result: error, moved: calls } = await counting(() => sdkError(genai(token).models.get({ model, config: { httpOptions } })));
    expect(error.status).toBe(status);
    expect(error.body.error).toMatchObject({ code: status, status: rpc });
    expect(errorInfo(error.body).code).toBe(code);
    expect(calls).toEqual({});
    await expectOneAudit(id, { status, failure, model });
  });

  it('refuses a bad credential (401) and a page token it did not give (400), in Google’s shape', async () => {
    const bad = withId('gem-list-401');
    const denied = await sdkError(genai('not-a-jwt').models.list({ config: { httpOptions: bad.httpOptions } }));
    expect(denied.status).toBe(401);
    expect(denied.body.error).toMatchObject({ code: 401, status: 'UNAUTHENTICATED' });
    await expectOneAudit(bad.id, { status: 401, failure: 'auth' });

    const forged = withId('gem-list-token');
    const refused = await sdkError(genai(token).models.list({ config: { httpOptions: forged.httpOptions, pageToken: '***' } }));
    expect(refused.status).toBe(400);
    expect(errorInfo(refused.body)).toMatchObject({ code: 'invalid_request', param: 'pageToken' });
    await expectOneAudit(forged.id, { status: 400, failure: 'bad_request' });
  });

  it('leaves GET /v1/models and /v1/models/{model} OpenAI’s', async () => {
    const headers = { authorization: `Bearer ${token}` };
    const list = (await (await gw.fetch('/v1/models', { headers })).json()) as { object: string; data: Array<{ id: string }> };
    expect(list.object).toBe('list');
    expect(list.data.map((m) => m.id)).toEqual([...GEM_MODELS, OPENAI_MODEL, OPENAI_EMBEDDING_MODEL]);
    const one = await gw.fetch(`/v1/models/${GEMINI_MODEL}`, { headers });
    expect(await one.json()).toEqual({ id: GEMINI_MODEL, object: 'model', created: 0, owned_by: 'gemini' });
  });
});

describe('Gemini embeddings (models.embedContent, embedContent, batchEmbedContents)', () => {
  it('embeds one content through batchEmbedContents with the product’s key, billed its input and audited', async () => {
    const { id, httpOptions } = withId('gem-embed');
    const {
      result: answer,
      moved: calls,
      after,
    } = await counting(() =>
      genai(token).models.embedContent({ model: GEMINI_EMBEDDING_MODEL, contents: 'hello there', config: { httpOptions } }),
    );
    expect(answer.embeddings).toHaveLength(1);
    expect(answer.embeddings?.[0].values).toHaveLength(GEMINI_EMBEDDING_DIMS);
    expect(calls).toEqual({ 'gemini.batchEmbedContents': 1 });
    const upstream = after.last['gemini.batchEmbedContents'];
    expect(upstream?.url).toBe(`/v1beta/models/${GEMINI_EMBEDDING_MODEL}:batchEmbedContents`);
    expect(upstream?.headers['x-goog-api-key']).toBe('AIza-mock-more');
    expect(upstream?.headers.authorization).toBeUndefined();
    expect(upstream?.body).toEqual({
      requests: [{ content: { parts: [{ text: 'hello there' }], role: 'user' }, model: `models/${GEMINI_EMBEDDING_MODEL}` }],
    });
    const audit = await expectOneAudit(id, {
      status: 200,
      failure: null,
      product: 'gem',
      model: GEMINI_EMBEDDING_MODEL,
      provider: 'gemini',
      stream: false,
      tokens_out: 0,
      path: `/v1beta/models/${GEMINI_EMBEDDING_MODEL}:batchEmbedContents`,
    });
    expect(audit.tokens_in).toBeGreaterThan(0);
  });

  it('embeds several contents in one batchEmbedContents call, one embedding each, in order', async () => {
    const { id, httpOptions } = withId('gem-embed-many');
    const { result: answer, moved: calls } = await counting(() =>
      genai(token).models.embedContent({
        model: GEMINI_EMBEDDING_MODEL,
        contents: ['alpha', 'beta', 'gamma'],
        config: { httpOptions, outputDimensionality: 8 },
      }),
    );
    expect(answer.embeddings?.map((e) => e.values?.length)).toEqual([8, 8, 8]);
    expect(new Set(answer.embeddings?.map((e) => JSON.stringify(e.values))).size).toBe(3);
    expect(calls).toEqual({ 'gemini.batchEmbedContents': 1 });
    const audit = await expectOneAudit(id, { status: 200, tokens_out: 0 });
    expect(audit.tokens_in).toBeGreaterThanOrEqual(3);
  });

  it('passes embedContent (one content, Google’s own method) through with the product’s key', async () => {
    const { id, headers } = rid('gem-embed-one');
    const {
      result: res,
      moved: calls,
      after,
    } = await counting(() =>
      gw.fetch(`/v1beta/models/${GEMINI_EMBEDDING_MODEL}:embedContent`, {
        method: 'POST',
        headers: { ...headers, 'x-goog-api-key': token, 'content-type': 'application/json' },
        body: JSON.stringify({ content: { parts: [{ text: 'one' }] }, taskType: 'RETRIEVAL_QUERY' }),
      }),
    );
    expect(res.status).toBe(200);
    expect(((await res.json()) as { embedding: { values: number[] } }).embedding.values).toHaveLength(GEMINI_EMBEDDING_DIMS);
    expect(calls).toEqual({ 'gemini.embedContent': 1 });
    expect(after.last['gemini.embedContent']?.headers['x-goog-api-key']).toBe('AIza-mock-more');
    expect(after.last['gemini.embedContent']?.body).toEqual({ content: { parts: [{ text: 'one' }] }, taskType: 'RETRIEVAL_QUERY' });
    const audit = await expectOneAudit(id, { status: 200, failure: null, model: GEMINI_EMBEDDING_MODEL, tokens_out: 0 });
    expect(audit.tokens_in).toBeGreaterThan(0);
  });

  it.each([
    ['a generative model of the product', GEMINI_MODEL, 400, 'INVALID_ARGUMENT', 'unsupported_parameter', 'bad_request'],
    ['an embedding model only another product has', OTHER_EMBEDDING_MODEL, 403, 'PERMISSION_DENIED', 'model_not_allowed', 'forbidden'],
    ['an embedding model no product has', 'text-embedding-nope', 404, 'NOT_FOUND', 'model_not_found', 'not_found'],
    ['an OpenAI embedding model', OPENAI_EMBEDDING_MODEL, 400, 'INVALID_ARGUMENT', 'unsupported_parameter', 'bad_request'],
  ])('refuses %s without calling any upstream', async (_case, model, status, rpc, code, failure) => {
    const { id, httpOptions } = withId('gem-embed-model');
    const { result: error, moved: calls } = await counting(() =>
      sdkError(genai(token).models.embedContent({ model, contents: 'x', config: { httpOptions } })),
    );
    expect(error.status).toBe(status);
    expect(error.body.error).toMatchObject({ code: status, status: rpc });
    expect(errorInfo(error.body)).toMatchObject({ code, param: 'model' });
    if (model === OPENAI_EMBEDDING_MODEL) expect(error.body.error.message).toMatch(/\/v1\/embeddings/);
    expect(calls).toEqual({});
    await expectOneAudit(id, { status, failure, model });
  });

  it.each([
    ['embedContent', { content: { parts: [{ text: 'abort in backoff [mock status=503 retry_after=4]' }] } }],
    ['batchEmbedContents', { requests: [{ content: { parts: [{ text: 'abort in backoff [mock status=503 retry_after=4]' }] } }] }],
  ] as const)(
    'bills nothing to a %s client that leaves while keygate waits to retry a refused call (no call in flight)',
    async (method, body) => {
      const { id, headers } = rid(`gem-${method}-abort-backoff`);
      const route = `gemini.${method}` as const;
      const before = await mock.stats();
      const controller = new AbortController();
      // Google refuses with 503 and Retry-After: 4 s, which keygate waits out before its retry.
      const pending = gw
        .fetch(`/v1beta/models/${GEMINI_EMBEDDING_MODEL}:${method}`, {
          method: 'POST',
          headers: { ...headers, 'x-goog-api-key': token, 'content-type': 'application/json' },
          body: JSON.stringify(body),
          signal: controller.signal,
        })
        .then(
          () => new Error('answered: the client did not leave'),
          (error: unknown) => error,
        );
      await gw.proc.waitForLine(
        'the retry of the refused attempt',
        (l) => l.json?.requestId === id && l.json.message === 'upstream attempt failed; retrying',
        10_000,
      );
      controller.abort();
      expect(await pending).toMatchObject({ name: 'AbortError' });
      const audit = await expectOneAudit(id, { status: 499, failure: 'client_abort', provider: 'gemini', attempts: 1 });
      // Google bills nothing for its refusal and no other call went out: there is nothing to bill.
      expect(audit.tokens_in).toBeNull();
      expect(audit.tokens_out).toBeNull();
      expect((await mock.stats()).byRoute[route] - before.byRoute[route]).toBe(1);
    },
  );

  it('refuses a bad credential (401 UNAUTHENTICATED) without calling any upstream', async () => {
    const { id, httpOptions } = withId('gem-embed-401');
    const { result: error, moved: calls } = await counting(() =>
      sdkError(genai('not-a-jwt').models.embedContent({ model: GEMINI_EMBEDDING_MODEL, contents: 'x', config: { httpOptions } })),
    );
    expect(error.status).toBe(401);
    expect(error.body.error).toMatchObject({ code: 401, status: 'UNAUTHENTICATED' });
    expect(calls).toEqual({});
    await expectOneAudit(id, { status: 401, failure: 'auth' });
  });

  it('refuses an input over the daily token quota (429 RESOURCE_EXHAUSTED) before calling any upstream, and bills what fits', async () => {
    const client = genai(mintToken({ product: 'quota', sub: 'quota-user' }));
    const fits = withId('gem-embed-fits');
    await client.models.embedContent({ model: GEMINI_EMBEDDING_MODEL, contents: 'short', config: { httpOptions: fits.httpOptions } });
    const billed = await expectOneAudit(fits.id, { status: 200, product: 'quota' });
    expect(billed.tokens_in).toBeGreaterThan(0);

    const { id, httpOptions } = withId('gem-embed-quota');
    const long = 'the quick brown fox jumps over the lazy dog '.repeat(10);
    const { result: error, moved: calls } = await counting(() =>
      sdkError(client.models.embedContent({ model: GEMINI_EMBEDDING_MODEL, contents: long, config: { httpOptions } })),
    );
    expect(error.status).toBe(429);
    expect(error.body.error).toMatchObject({ code: 429, status: 'RESOURCE_EXHAUSTED' });
    expect(errorInfo(error.body).code).toBe('daily_quota_exceeded');
    expect(error.body.error.details).toContainEqual(expect.objectContaining({ '@type': 'type.googleapis.com/google.rpc.RetryInfo' }));
    expect(calls).toEqual({});
    await expectOneAudit(id, { status: 429, failure: 'quota', product: 'quota', tokens_in: null });
  });

  it('refuses a field the product’s policy lists (refused_fields) in any request of a batch, without calling any upstream', async () => {
    const { id, httpOptions } = withId('gem-embed-policy');
    const guarded = genai(mintToken({ product: 'guarded', sub: 'guarded-user' }));
    const { result: error, moved: calls } = await counting(() =>
      sdkError(
        guarded.models.embedContent({
          model: GEMINI_EMBEDDING_MODEL,
          contents: ['a', 'b'],
          config: { httpOptions, taskType: 'RETRIEVAL_DOCUMENT', title: 'secret title' },
        }),
      ),
    );
    expect(error.status).toBe(400);
    expect(errorInfo(error.body)).toMatchObject({ code: 'policy_violation', param: 'requests[0].title' });
    expect(calls).toEqual({});
    await expectOneAudit(id, { status: 400, failure: 'policy', product: 'guarded' });
  });

  it.each([
    ['embedContent', { content: { parts: { text: 'x'.repeat(1500) } } }, 'content.parts'],
    [
      'batchEmbedContents',
      {
        requests: [
          { content: { parts: [{ text: 'x' }] } },
          ...Array.from({ length: 99 }, () => ({ content: { parts: { text: 'x'.repeat(1500) } } })),
        ],
      },
      'requests[1].content.parts',
    ],
  ])('refuses %s whose content holds one Part, not a list, 400 naming it, before it is counted or sent', async (method, sent, param) => {
    // Google's parser takes one object for a repeated field; keygate's estimate, the whole bill of an
    // embedding, read a list only: 100 such requests were billed 0 tokens, past a token quota of 20.
    const { id, headers } = rid('gem-embed-bare-parts');
    const { result: res, moved: calls } = await counting(() =>
      gw.fetch(`/v1beta/models/${GEMINI_EMBEDDING_MODEL}:${method}`, {
        method: 'POST',
        headers: { ...headers, 'x-goog-api-key': mintToken({ product: 'quota', sub: 'bare-parts' }), 'content-type': 'application/json' },
        body: JSON.stringify(sent),
      }),
    );
    await expectInvalidArgument(res, param, `${param} must be a list`);
    expect(calls).toEqual({});
    await expectOneAudit(id, { status: 400, failure: 'bad_request', product: 'quota', tokens_in: null });
  });

  it.each([
    ['embedContent', { model: `models/${OTHER_EMBEDDING_MODEL}`, content: { parts: [{ text: 'x' }] } }],
    ['batchEmbedContents', { model: OTHER_EMBEDDING_MODEL, requests: [{ content: { parts: [{ text: 'x' }] } }] }],
  ])('refuses %s whose body names another model than the path’s, 400 naming it, without calling any upstream', async (method, sent) => {
    // The body goes to Google as sent: the model it names would embed, one the product may not serve.
    const { id, headers } = rid('gem-embed-body-model');
    const { result: res, moved: calls } = await counting(() =>
      gw.fetch(`/v1beta/models/${GEMINI_EMBEDDING_MODEL}:${method}`, {
        method: 'POST',
        headers: { ...headers, 'x-goog-api-key': token, 'content-type': 'application/json' },
        body: JSON.stringify(sent),
      }),
    );
    await expectInvalidArgument(res, 'model', `models/${GEMINI_EMBEDDING_MODEL}`);
    expect(calls).toEqual({});
    await expectOneAudit(id, { status: 400, failure: 'bad_request', model: GEMINI_EMBEDDING_MODEL });
  });

  it('refuses a batch whose request names another model, and one over 100 requests, without calling any upstream', async () => {
    const send = (id: string, body: unknown): Promise<Response> =>
      gw.fetch(`/v1beta/models/${GEMINI_EMBEDDING_MODEL}:batchEmbedContents`, {
        method: 'POST',
        headers: { 'x-request-id': id, 'x-goog-api-key': token, 'content-type': 'application/json' },
        body: JSON.stringify(body),
      });
    const content = { parts: [{ text: 'x' }] };
    const other = rid('gem-batch-other-model');
    const { result: res, moved: calls } = await counting(() =>
      send(other.id, { requests: [{ content }, { model: `models/${OTHER_EMBEDDING_MODEL}`, content }] }),
    );
    expect(res.status).toBe(400);
    const body = (await res.json()) as GoogleError['body'];
    expect(body.error).toMatchObject({ code: 400, status: 'INVALID_ARGUMENT' });
    expect(errorInfo(body)).toMatchObject({ code: 'invalid_request', param: 'requests[1].model' });
    expect(calls).toEqual({});
    await expectOneAudit(other.id, { status: 400, failure: 'bad_request' });

    const many = rid('gem-batch-101');
    const { result: tooMany, moved: none } = await counting(() =>
      send(many.id, { requests: Array.from({ length: 101 }, () => ({ content })) }),
    );
    expect(tooMany.status).toBe(400);
    expect(((await tooMany.json()) as GoogleError['body']).error.message).toMatch(/at most 100/);
    expect(none).toEqual({});
    await expectOneAudit(many.id, { status: 400, failure: 'bad_request' });
  });
});

describe('the stable API version (apiVersion: v1)', () => {
  it('serves generateContent, streamGenerateContent, countTokens and embeddings under /v1, calling Google’s /v1', async () => {
    const v1 = genai(token, 'v1');
    const generated = withId('gem-v1-generate');
    const { result: answer, after } = await counting(() =>
      v1.models.generateContent({ model: GEMINI_MODEL, contents: say('Say hi'), config: { httpOptions: generated.httpOptions } }),
    );
    expect(answer.text).toBe(mockReply('gemini', 'Say hi'));
    expect(after.last['gemini.generateContent']?.url).toBe(`/v1/models/${GEMINI_MODEL}:generateContent`);
    expect(after.last['gemini.generateContent']?.headers['x-goog-api-key']).toBe('AIza-mock-more');
    await expectOneAudit(generated.id, {
      status: 200,
      provider: 'gemini',
      model: GEMINI_MODEL,
      path: `/v1/models/${GEMINI_MODEL}:generateContent`,
      tokens_in: answer.usageMetadata?.promptTokenCount,
    });

    const streamed = withId('gem-v1-stream');
    const texts: string[] = [];
    const { after: afterStream } = await counting(async () => {
      const stream = await v1.models.generateContentStream({
        model: GEMINI_MODEL,
        contents: say('Stream [mock chunks=3]'),
        config: { httpOptions: streamed.httpOptions },
      });
      for await (const chunk of stream) texts.push(chunk.text ?? '');
    });
    expect(texts.join('')).toBe(mockReply('gemini', 'Stream'));
    expect(afterStream.last['gemini.streamGenerateContent']?.url).toBe(`/v1/models/${GEMINI_MODEL}:streamGenerateContent?alt=sse`);
    await expectOneAudit(streamed.id, { status: 200, stream: true });

    const counted = await counting(() => v1.models.countTokens({ model: GEMINI_MODEL, contents: say('count me') }));
    expect(counted.result.totalTokens).toBeGreaterThan(0);
    expect(counted.after.last['gemini.countTokens']?.url).toBe(`/v1/models/${GEMINI_MODEL}:countTokens`);

    const embedded = await counting(() => v1.models.embedContent({ model: GEMINI_EMBEDDING_MODEL, contents: 'v1 embed' }));
    expect(embedded.result.embeddings).toHaveLength(1);
    expect(embedded.after.last['gemini.batchEmbedContents']?.url).toBe(`/v1/models/${GEMINI_EMBEDDING_MODEL}:batchEmbedContents`);
  });

  it('refuses under /v1 in Google’s shape, without calling any upstream', async () => {
    const { id, httpOptions } = withId('gem-v1-refused');
    const { result: error, moved: calls } = await counting(() =>
      sdkError(genai(token, 'v1').models.generateContent({ model: OTHER_MODEL, contents: say('x'), config: { httpOptions } })),
    );
    expect(error.status).toBe(403);
    expect(error.body.error).toMatchObject({ code: 403, status: 'PERMISSION_DENIED' });
    expect(errorInfo(error.body).code).toBe('model_not_allowed');
    expect(calls).toEqual({});
    await expectOneAudit(id, { status: 403, failure: 'forbidden', path: `/v1/models/${OTHER_MODEL}:generateContent` });
  });
  it('refuses a /v1 Gemini call no route takes (an over-long or malformed model, another method) in Google’s shape too', async () => {
    // These came in the OpenAI shape: an unmatched /v1 path was taken for OpenAI's.
    const cases = [
      { label: 'gem-v1-long-model', method: 'POST', path: `/v1/models/${'m'.repeat(300)}:generateContent`, status: 400 },
      { label: 'gem-v1-bad-escape', method: 'POST', path: `/v1/models/${GEMINI_MODEL}%:streamGenerateContent?alt=sse`, status: 400 },
      { label: 'gem-v1-put', method: 'PUT', path: `/v1/models/${GEMINI_MODEL}:countTokens`, status: 404 },
    ];
    for (const { label, method, path, status } of cases) {
      const { id, headers } = rid(label);
      const { result: res, moved: calls } = await counting(() =>
        gw.fetch(path, {
          method,
          headers: { ...headers, 'x-goog-api-key': token, 'content-type': 'application/json' },
          body: JSON.stringify({ contents: say('x') }),
        }),
      );
      expect(res.status).toBe(status);
      const body = (await res.json()) as GoogleError['body'];
      expect(body.error).toMatchObject({ code: status, status: status === 400 ? 'INVALID_ARGUMENT' : 'NOT_FOUND' });
      expect(errorInfo(body)).toMatchObject({ request_id: id });
      expect(calls).toEqual({});
      await expectOneAudit(id, { status, failure: status === 400 ? 'bad_request' : 'not_found' });
    }
  });
});

describe('Google refusing the product’s key', () => {
  it('answers 502 UNAVAILABLE naming the status Google sent (400 API_KEY_INVALID), not retried', async () => {
    const { id, httpOptions } = withId('gem-bad-key');
    const client = genai(mintToken({ product: 'badkey', sub: 'badkey-user' }));
    const { result: error, moved: calls } = await counting(() =>
      sdkError(client.models.generateContent({ model: GEMINI_MODEL, contents: say('x'), config: { httpOptions } })),
    );
    expect(error.status).toBe(502);
    expect(error.body.error).toMatchObject({ code: 502, status: 'UNAVAILABLE' });
    expect(error.body.error.message).toBe("upstream gemini refused keygate's credentials (status 400)");
    expect(errorInfo(error.body).code).toBe('upstream_error');
    expect(calls).toEqual({ 'gemini.generateContent': 1 });
    await expectOneAudit(id, { status: 502, failure: 'upstream', attempts: 1 });
  });
});
