/**
 * The Gemini API under `/v1beta`, black box: the built gateway and mock upstream run as real
 * processes and Google's official SDK (`@google/genai`) talks to Gemini through the gateway, as it
 * (and Gemini CLI, `GOOGLE_GEMINI_BASE_URL`) would with keygate's address as its base URL. Every
 * case checks the outcome, what reached the upstream, and the request's single audit line.
 */
import { GoogleGenAI, type GenerateContentResponse } from '@google/genai';
import { countingOn, errorInfo, expectInvalidArgument, say, sdkError, withId, type GoogleError } from './gemini-fixtures';
import { GEMINI_MODEL, mockReply, OPENAI_MODEL, expectOneAuditOn, rid } from './provider-fixtures';
import { cleanupTempFiles, mintToken, startGateway, startMock, writeTempFile, type Gateway, type MockUpstream } from './harness';

const MAX_RETRIES = 2;
/** The product policy's default completion-token cap (SPEC §4). */
const DEFAULT_CAP = 4096;
/** A Gemini model only product `other` has. */
const OTHER_MODEL = 'gemini-2.5-pro';
/** Product `thinkers`' thinking model, which falls back to {@link GEMINI_MODEL}, which does not think. */
const THINKING_MODEL = 'gemini-2.5-flash';

let mock: MockUpstream;
let gw: Gateway;
let token: string;

beforeAll(async () => {
  mock = await startMock();
  const gemini = { api_key: 'AIza-mock-gem', models: [GEMINI_MODEL], base_url: mock.url };
  const openai = { api_key: 'sk-mock-gem', models: [OPENAI_MODEL], base_url: `${mock.url}/v1` };
  gw = await startGateway({
    products: {
      gem: { providers: { gemini, openai } },
      other: { providers: { gemini: { ...gemini, models: [OTHER_MODEL] } } },
      limited: { providers: { gemini } },
      guarded: { providers: { gemini } },
      thinkers: { providers: { gemini: { ...gemini, models: [GEMINI_MODEL, THINKING_MODEL] } } },
    },
    env: {
      API_KEY_SERVER_POLICY_FILE: writeTempFile(
        'gemini-policy.yaml',
        [
          'defaults:',
          '  limits: {requests_per_second: 100000, user_requests_per_second: 100000, daily_requests: 1000000, user_daily_requests: 1000000}',
          'products:',
          '  limited:',
          '    limits: {daily_requests: 1}',
          '  guarded:',
          "    policy: {refused_fields: ['cachedContent'], refused_tools: ['googleSearch*'], max_request_bytes: 4096}",
          '  thinkers:',
          `    fallbacks: {${THINKING_MODEL}: [${GEMINI_MODEL}]}`,
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

/** `@google/genai` against the gateway (its base URL is the gateway's root), every request tracked. */
function genai(key: string): GoogleGenAI {
  return new GoogleGenAI({ apiKey: key, httpOptions: { baseUrl: gw.url, fetch: gw.fetch, timeout: 20_000 } });
}

const counting = <T>(action: () => Promise<T>): ReturnType<typeof countingOn<T>> => countingOn(mock, action);
const expectOneAudit = (id: string, expected: Record<string, unknown>): ReturnType<typeof expectOneAuditOn> =>
  expectOneAuditOn(gw, id, expected);
const keygateCode = (body: GoogleError['body']): unknown => errorInfo(body).code;

describe('Gemini API with @google/genai', () => {
  it('answers generateContent with Google’s own response, the cap set to the product’s, billed and audited', async () => {
    const { id, httpOptions } = withId('gem-plain');
    const {
      result: answer,
      moved: calls,
      after,
    } = await counting(() =>
      genai(token).models.generateContent({ model: GEMINI_MODEL, contents: say('Say hi'), config: { httpOptions } }),
    );
    expect(answer.text).toBe(mockReply('gemini', 'Say hi'));
    expect(calls).toEqual({ 'gemini.generateContent': 1 });
    const upstream = after.last['gemini.generateContent'];
    // The product's key went upstream in x-goog-api-key, the client's token nowhere.
    expect(upstream?.headers['x-goog-api-key']).toBe('AIza-mock-gem');
    expect(upstream?.headers.authorization).toBeUndefined();
    expect(upstream?.url).toBe(`/v1beta/models/${GEMINI_MODEL}:generateContent`);
    expect(upstream?.body).toMatchObject({ contents: say('Say hi'), generationConfig: { maxOutputTokens: DEFAULT_CAP } });
    const usage = answer.usageMetadata;
    await expectOneAudit(id, {
      status: 200,
      failure: null,
      product: 'gem',
      user: 'gemini-user',
      provider: 'gemini',
      model: GEMINI_MODEL,
      stream: false,
      tokens_in: usage?.promptTokenCount,
      tokens_out: usage?.candidatesTokenCount,
      path: `/v1beta/models/${GEMINI_MODEL}:generateContent`,
    });
  });

  it('falls back from a thinking Gemini to one that does not think (Gemini 1.5) without its thinkingConfig', async () => {
    const { id, httpOptions } = withId('gem-think-fallback');
    // Every attempt at Gemini 2.5 Flash is refused 503; the fallback, which refuses thinking, answers.
    const text = `think, then fall back ${id}`;
    const {
      result: answer,
      moved,
      after,
    } = await counting(() =>
      genai(mintToken({ product: 'thinkers' })).models.generateContent({
        model: THINKING_MODEL,
        contents: say(`${text} [mock status=503 fail_first=${1 + MAX_RETRIES}]`),
        config: { httpOptions, thinkingConfig: { thinkingBudget: 1024 }, maxOutputTokens: 2048 },
      }),
    );
    expect(answer.text).toBe(mockReply('gemini', text));
    expect(moved).toEqual({ 'gemini.generateContent': 2 + MAX_RETRIES });
    const upstream = after.last['gemini.generateContent'];
    expect(upstream?.url).toBe(`/v1beta/models/${GEMINI_MODEL}:generateContent`);
    expect(upstream?.body).toMatchObject({ generationConfig: { maxOutputTokens: 2048 } });
    expect((upstream?.body as { generationConfig: Record<string, unknown> }).generationConfig.thinkingConfig).toBeUndefined();
    await expectOneAudit(id, { status: 200, failure: null, model: GEMINI_MODEL, attempts: 2 + MAX_RETRIES });
  });

  it('never falls back on a long decode’s next hop (continuationToken): it resumes its own model’s answer, and fails as that model failed', async () => {
    const { id, httpOptions } = withId('gem-continuation');
    // As @google/genai sends the next hop after a CONTINUATION finish; every attempt at the model is refused 503.
    const {
      result: error,
      moved,
      after,
    } = await counting(() =>
      sdkError(
        genai(mintToken({ product: 'thinkers' })).models.generateContent({
          model: THINKING_MODEL,
          contents: say(`go on ${id} [mock status=503 fail_first=${1 + MAX_RETRIES}]`),
          config: { httpOptions, continuationToken: 'Q2hlY2twb2ludA==', automaticContinuation: false },
        }),
      ),
    );
    expect(error.status).toBe(502);
    expect(error.body.error).toMatchObject({ code: 502, status: 'UNAVAILABLE' });
    // Retried at the model whose generation the token resumes; its fallback never called.
    expect(moved).toEqual({ 'gemini.generateContent': 1 + MAX_RETRIES });
    const upstream = after.last['gemini.generateContent'];
    expect(upstream?.url).toBe(`/v1beta/models/${THINKING_MODEL}:generateContent`);
    expect(upstream?.body).toMatchObject({ continuationToken: 'Q2hlY2twb2ludA==' });
    await expectOneAudit(id, { status: 502, failure: 'upstream', model: THINKING_MODEL, attempts: 1 + MAX_RETRIES });
  });

  it('passes a maxOutputTokens within the cap on as sent, and takes the model as Google’s resource name (models/…)', async () => {
    const { id, httpOptions } = withId('gem-cap');
    const { result: answer, after } = await counting(() =>
      genai(token).models.generateContent({
        model: `models/${GEMINI_MODEL}`,
        contents: say('capped'),
        config: { httpOptions, maxOutputTokens: 64, temperature: 0.5 },
      }),
    );
    expect(answer.text).toBe(mockReply('gemini', 'capped'));
    expect(after.last['gemini.generateContent']?.body).toMatchObject({ generationConfig: { maxOutputTokens: 64, temperature: 0.5 } });
    await expectOneAudit(id, { status: 200, model: GEMINI_MODEL });
  });

  it('passes tools and a response schema whose type names are lowercase (the Vercel AI SDK’s) on to Gemini, which takes them', async () => {
    // The bodies and headers @ai-sdk/google 3.0.141 sends for generateText with a tool and for
    // generateObject (@google/genai upper-cases type names itself, so they go here as raw HTTP).
    const send = (label: string, body: Record<string, unknown>): Promise<{ id: string; res: Response }> => {
      const { id, headers } = rid(label);
      return gw
        .fetch(`/v1beta/models/${GEMINI_MODEL}:generateContent`, {
          method: 'POST',
          headers: { ...headers, 'content-type': 'application/json', 'x-goog-api-key': token, 'user-agent': 'ai-sdk/google/3.0.141' },
          body: JSON.stringify(body),
        })
        .then((res) => ({ id, res }));
    };
    const parameters = {
      required: ['city'],
      type: 'object',
      properties: { city: { type: 'string' }, unit: { type: 'string', enum: ['c', 'f'] } },
    };
    const tools = [{ functionDeclarations: [{ name: 'weather', description: 'Get the weather', parameters }] }];
    const { result: called, after } = await counting(() =>
      send('gem-lower-tool', { generationConfig: { maxOutputTokens: 1024 }, contents: say('Weather? [mock tool=weather]'), tools }),
    );
    expect(called.res.status).toBe(200);
    const answer = (await called.res.json()) as GenerateContentResponse;
    expect(answer.candidates?.[0]?.content?.parts?.map((part) => part.functionCall?.name)).toEqual(['weather']);
    expect(after.last['gemini.generateContent']?.body).toMatchObject({ tools });
    await expectOneAudit(called.id, { status: 200, failure: null, model: GEMINI_MODEL, tokens_in: answer.usageMetadata?.promptTokenCount });

    const responseSchema = {
      required: ['name', 'age'],
      type: 'object',
      properties: { name: { type: 'string' }, age: { type: 'integer' } },
    };
    const { result: object } = await counting(() =>
      send('gem-lower-schema', {
        generationConfig: { maxOutputTokens: 1024, responseMimeType: 'application/json', responseSchema },
        contents: say('A person'),
      }),
    );
    expect(object.res.status).toBe(200);
    // Gemini answers JSON of the schema, which the Vercel AI SDK's generateObject parses.
    const text = ((await object.res.json()) as GenerateContentResponse).candidates?.[0]?.content?.parts?.[0]?.text;
    expect(JSON.parse(text ?? '')).toEqual({ name: 'mock', age: 0 });
    await expectOneAudit(object.id, { status: 200, failure: null, model: GEMINI_MODEL });
  });

  it('streams Google’s events as they come (alt=sse); usage billed from the last usageMetadata', async () => {
    const { id, httpOptions } = withId('gem-stream');
    const chunks: GenerateContentResponse[] = [];
    const { moved: calls, after } = await counting(async () => {
      const stream = await genai(token).models.generateContentStream({
        model: GEMINI_MODEL,
        contents: say('Stream [mock chunks=4]'),
        config: { httpOptions },
      });
      for await (const chunk of stream) chunks.push(chunk);
    });
    expect(chunks.length).toBeGreaterThanOrEqual(2);
    expect(chunks.map((c) => c.text ?? '').join('')).toBe(mockReply('gemini', 'Stream'));
    expect(calls).toEqual({ 'gemini.streamGenerateContent': 1 });
    expect(after.last['gemini.streamGenerateContent']?.url).toBe(`/v1beta/models/${GEMINI_MODEL}:streamGenerateContent?alt=sse`);
    const usage = chunks.at(-1)?.usageMetadata;
    expect(usage?.candidatesTokenCount).toBeGreaterThan(0);
    await expectOneAudit(id, {
      status: 200,
      failure: null,
      stream: true,
      provider: 'gemini',
      tokens_in: usage?.promptTokenCount,
      tokens_out: usage?.candidatesTokenCount,
    });
  });

  it('answers countTokens with Google’s count, the prompt tokens generateContent reports, audited and not billed', async () => {
    const { id, httpOptions } = withId('gem-count');
    const { result: counted, moved: calls } = await counting(() =>
      genai(token).models.countTokens({ model: GEMINI_MODEL, contents: say('How many tokens is this?'), config: { httpOptions } }),
    );
    expect(calls).toEqual({ 'gemini.countTokens': 1 });
    const answer = await genai(token).models.generateContent({ model: GEMINI_MODEL, contents: say('How many tokens is this?') });
    expect(counted.totalTokens).toBe(answer.usageMetadata?.promptTokenCount);
    await expectOneAudit(id, { status: 200, failure: null, provider: 'gemini', model: GEMINI_MODEL, tokens_in: null, tokens_out: null });
  });

  it('takes the token as Authorization: Bearer, the same one beside x-goog-api-key, and refuses two different ones (400)', async () => {
    const body = JSON.stringify({ contents: say('bearer') });
    const send = (id: string, headers: Record<string, string>): Promise<Response> =>
      gw.fetch(`/v1beta/models/${GEMINI_MODEL}:generateContent`, {
        method: 'POST',
        headers: { 'x-request-id': id, 'content-type': 'application/json', ...headers },
        body,
      });
    const bearer = rid('gem-bearer');
    const viaBearer = await counting(() => send(bearer.id, { authorization: `Bearer ${token}` }));
    expect(viaBearer.result.status).toBe(200);
    await viaBearer.result.arrayBuffer();
    expect(viaBearer.moved).toEqual({ 'gemini.generateContent': 1 });
    await expectOneAudit(bearer.id, { status: 200, user: 'gemini-user' });

    const same = rid('gem-same-keys');
    const agreed = await send(same.id, { authorization: `Bearer ${token}`, 'x-goog-api-key': token });
    expect(agreed.status).toBe(200);
    await agreed.arrayBuffer();
    await expectOneAudit(same.id, { status: 200, user: 'gemini-user' });

    const differ = rid('gem-two-keys');
    const refused = await counting(() =>
      send(differ.id, { authorization: `Bearer ${token}`, 'x-goog-api-key': mintToken({ product: 'gem', sub: 'someone-else' }) }),
    );
    expect(refused.result.status).toBe(400);
    const error = (await refused.result.json()) as GoogleError['body'];
    expect(error.error).toMatchObject({ code: 400, status: 'INVALID_ARGUMENT' });
    expect(error.error.message).toMatch(/x-goog-api-key/);
    expect(refused.moved).toEqual({});
    await expectOneAudit(differ.id, { status: 400, failure: 'bad_request' });
  });
});

describe('Gemini API refusals, in Google’s error shape', () => {
  it('refuses a key in the query (?key=) with 400, without calling any upstream, and logs no query', async () => {
    const { id, headers } = rid('gem-query-key');
    const { result: res, moved: calls } = await counting(() =>
      gw.fetch(`/v1beta/models/${GEMINI_MODEL}:generateContent?key=${token}`, {
        method: 'POST',
        headers: { ...headers, 'content-type': 'application/json' },
        body: JSON.stringify({ contents: say('query key') }),
      }),
    );
    expect(res.status).toBe(400);
    const body = (await res.json()) as GoogleError['body'];
    expect(body.error).toMatchObject({ code: 400, status: 'INVALID_ARGUMENT' });
    expect(body.error.message).toMatch(/x-goog-api-key/);
    expect(calls).toEqual({});
    const audit = await expectOneAudit(id, { status: 400, failure: 'bad_request', path: `/v1beta/models/${GEMINI_MODEL}:generateContent` });
    expect(JSON.stringify(audit)).not.toContain(token);
    expect(gw.proc.lines.some((line) => line.raw.includes(token))).toBe(false);
  });

  it('answers a request without a credential 401 UNAUTHENTICATED, with a challenge', async () => {
    const { id, headers } = rid('gem-401');
    const { result: res, moved: calls } = await counting(() =>
      gw.fetch(`/v1beta/models/${GEMINI_MODEL}:generateContent`, {
        method: 'POST',
        headers: { ...headers, 'content-type': 'application/json' },
        body: JSON.stringify({ contents: say('anonymous') }),
      }),
    );
    expect(res.status).toBe(401);
    expect(res.headers.get('www-authenticate')).toMatch(/^Bearer resource_metadata="/);
    expect(((await res.json()) as GoogleError['body']).error).toMatchObject({ code: 401, status: 'UNAUTHENTICATED' });
    expect(calls).toEqual({});
    await expectOneAudit(id, { status: 401, failure: 'auth' });
  });

  it('refuses an invalid token through the SDK (401 UNAUTHENTICATED)', async () => {
    const { id, httpOptions } = withId('gem-bad-token');
    const error = await sdkError(
      genai('not-a-jwt').models.generateContent({ model: GEMINI_MODEL, contents: say('x'), config: { httpOptions } }),
    );
    expect(error.status).toBe(401);
    expect(error.body.error).toMatchObject({ code: 401, status: 'UNAUTHENTICATED' });
    await expectOneAudit(id, { status: 401, failure: 'auth' });
  });

  it.each([
    ['a model only another product has', OTHER_MODEL, 403, 'PERMISSION_DENIED', 'model_not_allowed', 'forbidden'],
    ['a model no product has', 'gemini-nope', 404, 'NOT_FOUND', 'model_not_found', 'not_found'],
    ['an OpenAI model', OPENAI_MODEL, 400, 'INVALID_ARGUMENT', 'unsupported_parameter', 'bad_request'],
  ])('refuses %s without calling any upstream', async (_case, model, status, rpc, code, failure) => {
    const { id, httpOptions } = withId('gem-model');
    const { result: error, moved: calls } = await counting(() =>
      sdkError(genai(token).models.generateContent({ model, contents: say('x'), config: { httpOptions } })),
    );
    expect(error.status).toBe(status);
    expect(error.body.error).toMatchObject({ code: status, status: rpc });
    expect(keygateCode(error.body)).toBe(code);
    if (model === OPENAI_MODEL) expect(error.body.error.message).toMatch(/\/v1\/chat\/completions/);
    expect(calls).toEqual({});
    await expectOneAudit(id, { status, failure });
  });

  it('refuses maxOutputTokens over the product’s cap (400 policy) and a snake_case generation_config, without calling any upstream', async () => {
    const over = withId('gem-over-cap');
    const { result: error, moved: calls } = await counting(() =>
      sdkError(
        genai(token).models.generateContent({
          model: GEMINI_MODEL,
          contents: say('x'),
          config: { httpOptions: over.httpOptions, maxOutputTokens: DEFAULT_CAP + 1 },
        }),
      ),
    );
    expect(error.status).toBe(400);
    expect(error.body.error).toMatchObject({ code: 400, status: 'INVALID_ARGUMENT' });
    expect(error.body.error.message).toMatch(/maxOutputTokens/);
    expect(keygateCode(error.body)).toBe('policy_violation');
    expect(calls).toEqual({});
    await expectOneAudit(over.id, { status: 400, failure: 'policy' });

    const snake = rid('gem-snake');
    const res = await gw.fetch(`/v1beta/models/${GEMINI_MODEL}:generateContent`, {
      method: 'POST',
      headers: { ...snake.headers, 'x-goog-api-key': token, 'content-type': 'application/json' },
      body: JSON.stringify({ contents: say('x'), generation_config: { max_output_tokens: 100_000 } }),
    });
    expect(res.status).toBe(400);
    expect(((await res.json()) as GoogleError['body']).error.message).toMatch(/generationConfig/);
    await expectOneAudit(snake.id, { status: 400, failure: 'bad_request' });
  });

  it('refuses a tool kind and a field the product’s policy lists (refused_tools, refused_fields)', async () => {
    const guarded = mintToken({ product: 'guarded', sub: 'guarded-user' });
    const search = withId('gem-refused-tool');
    const { result: error, moved: calls } = await counting(() =>
      sdkError(
        genai(guarded).models.generateContent({
          model: GEMINI_MODEL,
          contents: say('x'),
          config: { httpOptions: search.httpOptions, tools: [{ googleSearch: {} }] },
        }),
      ),
    );
    expect(error.status).toBe(400);
    expect(error.body.error.message).toMatch(/googleSearch/);
    expect(keygateCode(error.body)).toBe('policy_violation');
    expect(calls).toEqual({});
    await expectOneAudit(search.id, { status: 400, failure: 'policy', product: 'guarded' });

    const cached = withId('gem-refused-field');
    const refused = await sdkError(
      genai(guarded).models.generateContent({
        model: GEMINI_MODEL,
        contents: say('x'),
        config: { httpOptions: cached.httpOptions, cachedContent: 'cachedContents/abc' },
      }),
    );
    expect(refused.status).toBe(400);
    expect(keygateCode(refused.body)).toBe('policy_violation');
    await expectOneAudit(cached.id, { status: 400, failure: 'policy' });
  });

  it('refuses a body over the product’s size limit (413) and one that fails validation (400), without calling any upstream', async () => {
    const guarded = mintToken({ product: 'guarded', sub: 'guarded-user' });
    const send = (id: string, body: unknown): Promise<Response> =>
      gw.fetch(`/v1beta/models/${GEMINI_MODEL}:generateContent`, {
        method: 'POST',
        headers: { 'x-request-id': id, 'x-goog-api-key': guarded, 'content-type': 'application/json' },
        body: JSON.stringify(body),
      });
    const large = rid('gem-413');
    const { result: tooLarge, moved: none } = await counting(() => send(large.id, { contents: say('x'.repeat(8192)) }));
    expect(tooLarge.status).toBe(413);
    const body = (await tooLarge.json()) as GoogleError['body'];
    expect(body.error).toMatchObject({ code: 413, status: 'INVALID_ARGUMENT' });
    expect(keygateCode(body)).toBe('request_too_large');
    expect(none).toEqual({});
    await expectOneAudit(large.id, { status: 413, failure: 'policy' });

    const empty = rid('gem-no-contents');
    const { result: invalid, moved: still } = await counting(() => send(empty.id, { contents: [] }));
    expect(invalid.status).toBe(400);
    const refusal = (await invalid.json()) as GoogleError['body'];
    expect(refusal.error).toMatchObject({ code: 400, status: 'INVALID_ARGUMENT' });
    expect(refusal.error.message).toMatch(/contents/);
    expect(still).toEqual({});
    await expectOneAudit(empty.id, { status: 400, failure: 'bad_request' });
  });

  it('answers the daily request limit 429 RESOURCE_EXHAUSTED with Retry-After, without calling any upstream', async () => {
    const limited = mintToken({ product: 'limited', sub: 'limited-user' });
    const first = withId('gem-daily-1');
    await genai(limited).models.generateContent({
      model: GEMINI_MODEL,
      contents: say('first'),
      config: { httpOptions: first.httpOptions },
    });
    await expectOneAudit(first.id, { status: 200, product: 'limited' });
    const { id, headers } = rid('gem-daily-2');
    const { result: res, moved: calls } = await counting(() =>
      gw.fetch(`/v1beta/models/${GEMINI_MODEL}:generateContent`, {
        method: 'POST',
        headers: { ...headers, 'x-goog-api-key': limited, 'content-type': 'application/json' },
        body: JSON.stringify({ contents: say('second') }),
      }),
    );
    expect(res.status).toBe(429);
    expect(Number(res.headers.get('retry-after'))).toBeGreaterThan(0);
    const body = (await res.json()) as GoogleError['body'];
    expect(body.error).toMatchObject({ code: 429, status: 'RESOURCE_EXHAUSTED' });
    expect(body.error.details).toContainEqual({
      '@type': 'type.googleapis.com/google.rpc.RetryInfo',
      retryDelay: `${res.headers.get('retry-after')}s`,
    });
    expect(calls).toEqual({});
    await expectOneAudit(id, { status: 429, failure: 'rate_limit', product: 'limited' });
  });

  it('refuses a blocked caller 403 PERMISSION_DENIED on generateContent and countTokens, without calling any upstream', async () => {
    const admin = mintToken({ product: 'gem', sub: 'ops', extraClaims: { scope: 'keygate.admin' } });
    const blocked = await gw.fetch('/admin/blocks', {
      method: 'POST',
      headers: { authorization: `Bearer ${admin}`, 'content-type': 'application/json' },
      body: JSON.stringify({ product: 'gem', user: 'gem-blocked', reason: 'e2e' }),
    });
    expect(blocked.status).toBe(201);
    const client = genai(mintToken({ product: 'gem', sub: 'gem-blocked' }));
    for (const op of ['generate', 'count'] as const) {
      const { id, httpOptions } = withId(`gem-blocked-${op}`);
      const request = { model: GEMINI_MODEL, contents: say('x'), config: { httpOptions } };
      const { result: error, moved: calls } = await counting(() =>
        sdkError(op === 'generate' ? client.models.generateContent(request) : client.models.countTokens(request)),
      );
      expect(error.status).toBe(403);
      expect(error.body.error).toMatchObject({ code: 403, status: 'PERMISSION_DENIED' });
      expect(keygateCode(error.body)).toBe('blocked');
      expect(calls).toEqual({});
      await expectOneAudit(id, { status: 403, failure: 'blocked', user: 'gem-blocked' });
    }
  });

  it('refuses streamGenerateContent without alt=sse (400), and a /v1beta route keygate does not serve (404), in Google’s shape', async () => {
    const stream = rid('gem-no-sse');
    const { result: res, moved: calls } = await counting(() =>
      gw.fetch(`/v1beta/models/${GEMINI_MODEL}:streamGenerateContent`, {
        method: 'POST',
        headers: { ...stream.headers, 'x-goog-api-key': token, 'content-type': 'application/json' },
        body: JSON.stringify({ contents: say('x') }),
      }),
    );
    expect(res.status).toBe(400);
    const body = (await res.json()) as GoogleError['body'];
    expect(body.error).toMatchObject({ code: 400, status: 'INVALID_ARGUMENT' });
    expect(body.error.message).toMatch(/alt=sse/);
    expect(calls).toEqual({});
    await expectOneAudit(stream.id, { status: 400, failure: 'bad_request', stream: true });

    const unknown = rid('gem-unknown-route');
    const missing = await gw.fetch(`/v1beta/models/${GEMINI_MODEL}:predict`, {
      method: 'POST',
      headers: { ...unknown.headers, 'x-goog-api-key': token, 'content-type': 'application/json' },
      body: JSON.stringify({ instances: [{ content: 'x' }] }),
    });
    expect(missing.status).toBe(404);
    expect(((await missing.json()) as GoogleError['body']).error).toMatchObject({ code: 404, status: 'NOT_FOUND' });
    await expectOneAudit(unknown.id, { status: 404, failure: 'not_found' });

    // Files are not served: the SDK's upload (to Google's /upload/v1beta/files) is refused the same way.
    const upload = await counting(() => sdkError(genai(token).files.upload({ file: new Blob(['hello'], { type: 'text/plain' }) })));
    expect(upload.result.status).toBe(404);
    expect(upload.result.body.error).toMatchObject({ code: 404, status: 'NOT_FOUND' });
    expect(upload.moved).toEqual({});
  });

  it.each([
    ['a turn', 'generateContent', { contents: [{ role: 'user', parts: { text: 'x'.repeat(1500) } }] }, 'contents[0].parts'],
    [
      'a turn',
      'streamGenerateContent?alt=sse',
      { contents: [...say('x'), { role: 'user', parts: { inlineData: { mimeType: 'text/plain', data: 'aGVsbG8=' } } }] },
      'contents[1].parts',
    ],
    [
      'the system instruction',
      'generateContent',
      { systemInstruction: { parts: { text: 'y' } }, contents: say('x') },
      'systemInstruction.parts',
    ],
    [
      'the snake_case system instruction',
      'generateContent',
      { system_instruction: { parts: { text: 'y' } }, contents: say('x') },
      'system_instruction.parts',
    ],
  ])(
    'refuses %s whose parts are one Part, not a list (%s), 400 naming it, without calling any upstream',
    async (_case, method, sent, param) => {
      // Google's parser takes one object for a repeated field; keygate's estimate read a list only,
      // so such a prompt was reserved at nothing.
      const { id, headers } = rid('gem-bare-parts');
      const { result: res, moved: calls } = await counting(() =>
        gw.fetch(`/v1beta/models/${GEMINI_MODEL}:${method}`, {
          method: 'POST',
          headers: { ...headers, 'x-goog-api-key': token, 'content-type': 'application/json' },
          body: JSON.stringify(sent),
        }),
      );
      await expectInvalidArgument(res, param, `${param} must be a list`);
      expect(calls).toEqual({});
      await expectOneAudit(id, { status: 400, failure: 'bad_request', model: GEMINI_MODEL });
    },
  );

  it.each([
    ['generateContent', { model: `models/${OTHER_MODEL}`, contents: say('x') }, 'model'],
    ['streamGenerateContent?alt=sse', { model: OTHER_MODEL, contents: say('x') }, 'model'],
    ['countTokens', { generateContentRequest: { model: `models/${OTHER_MODEL}`, contents: say('x') } }, 'generateContentRequest.model'],
    ['countTokens', { generate_content_request: { model: `models/${OTHER_MODEL}`, contents: say('x') } }, 'generate_content_request.model'],
  ])(
    'refuses a body naming another model than the path’s (%s), 400 naming it, without calling any upstream',
    async (method, sent, param) => {
      // The body goes to Google as sent: the model it names would answer, one the product may not serve.
      const { id, headers } = rid('gem-body-model');
      const { result: res, moved: calls } = await counting(() =>
        gw.fetch(`/v1beta/models/${GEMINI_MODEL}:${method}`, {
          method: 'POST',
          headers: { ...headers, 'x-goog-api-key': token, 'content-type': 'application/json' },
          body: JSON.stringify(sent),
        }),
      );
      await expectInvalidArgument(res, param, `models/${GEMINI_MODEL}`);
      expect(calls).toEqual({});
      await expectOneAudit(id, { status: 400, failure: 'bad_request', model: GEMINI_MODEL });
    },
  );

  it('takes a body naming the path’s model, as Google’s resource name or the bare id', async () => {
    for (const named of [`models/${GEMINI_MODEL}`, GEMINI_MODEL]) {
      const { id, headers } = rid('gem-body-same-model');
      const { result: res, moved: calls } = await counting(() =>
        gw.fetch(`/v1beta/models/${GEMINI_MODEL}:generateContent`, {
          method: 'POST',
          headers: { ...headers, 'x-goog-api-key': token, 'content-type': 'application/json' },
          body: JSON.stringify({ model: named, contents: say('same model') }),
        }),
      );
      expect(res.status).toBe(200);
      expect(calls).toEqual({ 'gemini.generateContent': 1 });
      await expectOneAudit(id, { status: 200, failure: null, model: GEMINI_MODEL });
    }
  });

  it('names the fallback in the body of a fallback’s attempt, where the body named the model asked for', async () => {
    const { id, headers } = rid('gem-body-model-fallback');
    const { result: res, after } = await counting(() =>
      gw.fetch(`/v1beta/models/${THINKING_MODEL}:generateContent`, {
        method: 'POST',
        headers: { ...headers, 'x-goog-api-key': mintToken({ product: 'thinkers' }), 'content-type': 'application/json' },
        body: JSON.stringify({
          model: `models/${THINKING_MODEL}`,
          contents: say(`fall back ${id} [mock status=503 fail_first=${1 + MAX_RETRIES}]`),
        }),
      }),
    );
    expect(res.status).toBe(200);
    const upstream = after.last['gemini.generateContent'];
    expect(upstream?.url).toBe(`/v1beta/models/${GEMINI_MODEL}:generateContent`);
    expect(upstream?.body).toMatchObject({ model: `models/${GEMINI_MODEL}` });
    await expectOneAudit(id, { status: 200, failure: null, model: GEMINI_MODEL, requested_model: THINKING_MODEL });
  });

  it('passes Gemini’s own refusal on with its status name (400)', async () => {
    const { id, httpOptions } = withId('gem-upstream-400');
    const { result: error, moved: calls } = await counting(() =>
      sdkError(
        genai(token).models.generateContent({
          model: GEMINI_MODEL,
          contents: say('x'),
          config: { httpOptions, thinkingConfig: { thinkingBudget: 5, thinkingLevel: 'LOW' as never } },
        }),
      ),
    );
    expect(error.status).toBe(400);
    expect(error.body.error).toMatchObject({ code: 400, status: 'INVALID_ARGUMENT' });
    expect(keygateCode(error.body)).toBe('upstream_bad_request');
    expect(calls).toEqual({ 'gemini.generateContent': 1 });
    await expectOneAudit(id, { status: 400, failure: 'upstream', provider: 'gemini' });
  });

  it('ends a stream whose upstream fails after content with Google’s error event, billed what was reported', async () => {
    const { id, httpOptions } = withId('gem-stream-cut');
    const chunks: GenerateContentResponse[] = [];
    const { result: failure, moved: calls } = await counting(async () => {
      try {
        const stream = await genai(token).models.generateContentStream({
          model: GEMINI_MODEL,
          contents: say('cut [mock chunks=4 error_event_after=2]'),
          config: { httpOptions },
        });
        for await (const chunk of stream) chunks.push(chunk);
      } catch (error) {
        return error as Error;
      }
      throw new Error('the stream ended without an error');
    });
    expect(chunks.length).toBe(2);
    // The SDK raises the error event Google's way, from its envelope.
    expect(failure.message).toMatch(/"status":"UNAVAILABLE"/);
    expect(calls).toEqual({ 'gemini.streamGenerateContent': 1 });
    const audit = await expectOneAudit(id, { status: 502, failure: 'upstream', stream: true, attempts: 1 });
    expect(audit.tokens_in).toBe(chunks[0].usageMetadata?.promptTokenCount);
    expect(audit.tokens_out).toBeGreaterThan(0);
  });

  it('retries an upstream 500, then answers 502 UNAVAILABLE', async () => {
    const { id, httpOptions } = withId('gem-upstream-500');
    const { result: error, moved: calls } = await counting(() =>
      sdkError(
        genai(token).models.generateContent({ model: GEMINI_MODEL, contents: say('fail [mock status=500]'), config: { httpOptions } }),
      ),
    );
    expect(error.status).toBe(502);
    expect(error.body.error).toMatchObject({ code: 502, status: 'UNAVAILABLE' });
    expect(keygateCode(error.body)).toBe('upstream_error');
    expect(calls).toEqual({ 'gemini.generateContent': 1 + MAX_RETRIES });
    await expectOneAudit(id, { status: 502, failure: 'upstream', provider: 'gemini', attempts: 1 + MAX_RETRIES });
  });
});

describe('a Gemini stream whose host is slow to close its body (idle timeout 500 ms)', () => {
  let slow: Gateway;
  beforeAll(async () => {
    const gemini = { api_key: 'AIza-mock-gem', models: [GEMINI_MODEL], base_url: mock.url };
    slow = await startGateway({ products: { gem: { providers: { gemini } } }, env: { API_KEY_SERVER_UPSTREAM_IDLE_TIMEOUT_MS: '500' } });
  }, 45_000);
  afterAll(() => slow?.stop(), 30_000);

  it('ends a complete answer as it is, not with a timeout error event after it (audited 200, billed its usage)', async () => {
    const { id, httpOptions } = withId('gem-slow-close');
    const client = new GoogleGenAI({ apiKey: token, httpOptions: { baseUrl: slow.url, fetch: slow.fetch, timeout: 20_000 } });
    const chunks: GenerateContentResponse[] = [];
    // The mock sends the whole answer, then keeps the body open past the idle timeout.
    const stream = await client.models.generateContentStream({
      model: GEMINI_MODEL,
      contents: say('Slow close [mock chunks=3 hold_after_end_ms=3000]'),
      config: { httpOptions },
    });
    for await (const chunk of stream) chunks.push(chunk);
    expect(chunks.map((c) => c.text ?? '').join('')).toBe(mockReply('gemini', 'Slow close'));
    expect(chunks.at(-1)?.candidates?.[0]?.finishReason).toBe('STOP');
    const usage = chunks.at(-1)?.usageMetadata;
    await expectOneAuditOn(slow, id, {
      status: 200,
      failure: null,
      stream: true,
      tokens_in: usage?.promptTokenCount,
      tokens_out: usage?.candidatesTokenCount,
    });
  });
});
