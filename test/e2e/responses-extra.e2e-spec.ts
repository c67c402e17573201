/**
 * The Responses API's routes beside create, black box: `POST /v1/responses/input_tokens`,
 * `POST /v1/responses/compact` (raw requests for what the SDK would not send, and the SDK's
 * `responses.inputTokens.count` and `responses.compact` as clients call them) and
 * `POST /v1/responses/{id}/cancel` (the SDK's `responses.cancel`), through the built gateway to the
 * mock upstream. Every case checks the outcome, what reached the upstream, and the request's single
 * audit line; the last suite checks what each route counts against the limits.
 */
import type { Response as OpenAIResponse } from 'openai/resources/responses/responses';
import {
  ANTHROPIC_MODEL,
  OPENAI_MODEL,
  expectOneAuditOn,
  providerProducts,
  rid,
  useProviderStack,
  type ProviderStack,
} from './provider-fixtures';
import { apiError, freePort, mintToken, startGateway, waitFor, writeTempFile, type Gateway } from './harness';

const suite = useProviderStack(2);
const { counting, expectOneAudit } = suite;

let gw: Gateway;
let token: string;

beforeAll(() => {
  ({ gw } = suite.stack());
  token = mintToken({ product: 'prov', sub: 'extra-user' });
});

interface InputTokens {
  object: string;
  input_tokens: number;
}

interface Compaction {
  id: string;
  object: string;
  created_at: number;
  output: Array<{ id: string; type: string; role?: string; content?: Array<{ type: string; text: string }>; encrypted_content?: string }>;
  usage: { input_tokens: number; output_tokens: number; total_tokens: number };
}

interface ErrorBody {
  error: { message: string; type: string; code: string; param: string | null };
}

/** A JSON POST to the gateway as `bearer`, with the request id of `headers`. */
async function post<T>(
  on: Gateway,
  path: string,
  body: unknown,
  headers: Record<string, string>,
  bearer = token,
): Promise<{ status: number; json: T }> {
  const res = await on.fetch(path, {
    method: 'POST',
    headers: { ...headers, authorization: `Bearer ${bearer}`, 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  return { status: res.status, json: (await res.json()) as T };
}

/** A response made through keygate by `bearer`. */
function created(bearer = token, input = 'Remember me'): Promise<OpenAIResponse> {
  return gw.openai(bearer).responses.create({ model: OPENAI_MODEL, input });
}

const other = (): string => mintToken({ product: 'prov', sub: 'someone-else' });
const guarded = (): string => mintToken({ product: 'guarded', sub: 'guarded-user' });

describe('POST /v1/responses/input_tokens', () => {
  it('answers OpenAI’s count, which is what create bills for the same fields; passed as sent, audited without tokens', async () => {
    const fields = { model: OPENAI_MODEL, instructions: 'Be brief.', input: [{ role: 'user', content: 'How many tokens is this?' }] };
    const { id, headers } = rid('input-tokens');
    const { result, moved, after } = await counting(() => post<InputTokens>(gw, '/v1/responses/input_tokens', fields, headers));
    expect(result.status).toBe(200);
    expect(result.json).toEqual({ object: 'response.input_tokens', input_tokens: expect.any(Number) });
    expect(moved).toEqual({ 'openai.responses.inputTokens': 1 });
    const upstream = after.last['openai.responses.inputTokens'];
    expect(upstream?.headers.authorization).toBe('Bearer sk-mock-prov');
    // Nothing added: no cap (nothing is generated), no caller id (the route takes none).
    expect(upstream?.body).toEqual(fields);
    await expectOneAudit(id, {
      status: 200,
      failure: null,
      product: 'prov',
      user: 'extra-user',
      provider: 'openai',
      model: OPENAI_MODEL,
      stream: false,
      tokens_in: null,
      tokens_out: null,
    });
    const made = await gw
      .openai(token)
      .responses.create({ ...fields, input: [{ role: 'user' as const, content: 'How many tokens is this?' }] });
    expect(made.usage?.input_tokens).toBe(result.json.input_tokens);
  });

  it('counts a previous response of this user as context, at the host that stores it', async () => {
    const made = await created(token, 'A first turn worth counting');
    const { id, headers } = rid('input-tokens-previous');
    const alone = await post<InputTokens>(gw, '/v1/responses/input_tokens', { model: OPENAI_MODEL, input: 'And?' }, rid('alone').headers);
    const { result, moved } = await counting(() =>
      post<InputTokens>(gw, '/v1/responses/input_tokens', { model: OPENAI_MODEL, input: 'And?', previous_response_id: made.id }, headers),
    );
    expect(result.status).toBe(200);
    expect(result.json.input_tokens).toBe(alone.json.input_tokens + made.usage!.total_tokens);
    expect(moved).toEqual({ 'openai.responses.inputTokens': 1 });
    await expectOneAudit(id, { status: 200, failure: null });
  });

  it('answers a previous response OpenAI no longer has 404, and forgets it', async () => {
    const made = await created();
    await fetch(`${suite.stack().mock.url}/v1/responses/${made.id}`, {
      method: 'DELETE',
      headers: { authorization: 'Bearer sk-mock-prov' },
    });
    const { id, headers } = rid('input-tokens-gone');
    const body = { model: OPENAI_MODEL, input: 'x', previous_response_id: made.id };
    const first = await counting(() => post<ErrorBody>(gw, '/v1/responses/input_tokens', body, headers));
    expect([first.result.status, first.result.json.error.code, first.result.json.error.param]).toEqual([
      404,
      'response_not_found',
      'previous_response_id',
    ]);
    expect(first.moved).toEqual({ 'openai.responses.inputTokens': 1 });
    await expectOneAudit(id, { status: 404, failure: 'not_found' });
    const again = await counting(() => post<ErrorBody>(gw, '/v1/responses/input_tokens', body, rid('again').headers));
    expect(again.result.json.error.code).toBe('response_not_found');
    expect(again.moved).toEqual({});
  });
});

describe('POST /v1/responses/compact', () => {
  it('answers OpenAI’s response.compaction, billed and audited with its usage', async () => {
    const input = [
      { role: 'user', content: 'Create a landing page for a café.' },
      { type: 'message', role: 'assistant', content: [{ type: 'output_text', text: '<html>the page</html>', annotations: [] }] },
      { role: 'user', content: 'Make it blue.' },
    ];
    const { id, headers } = rid('compact');
    const { result, moved, after } = await counting(() =>
      post<Compaction>(gw, '/v1/responses/compact', { model: OPENAI_MODEL, input, prompt_cache_key: 'k1' }, headers),
    );
    expect(result.status).toBe(200);
    const compaction = result.json;
    expect(compaction.object).toBe('response.compaction');
    expect(compaction.output.map((item) => [item.type, item.role])).toEqual([
      ['message', 'user'],
      ['message', 'user'],
      ['compaction', undefined],
    ]);
    expect(compaction.output[2].encrypted_content).toEqual(expect.any(String));
    expect(moved).toEqual({ 'openai.responses.compact': 1 });
    const upstream = after.last['openai.responses.compact'];
    expect(upstream?.headers.authorization).toBe('Bearer sk-mock-prov');
    // The client's fields as sent: the route takes no cap and no caller id.
    expect(upstream?.body).toEqual({ model: OPENAI_MODEL, input, prompt_cache_key: 'k1' });
    await expectOneAudit(id, {
      status: 200,
      failure: null,
      product: 'prov',
      user: 'extra-user',
      provider: 'openai',
      model: OPENAI_MODEL,
      stream: false,
      tokens_in: compaction.usage.input_tokens,
      tokens_out: compaction.usage.output_tokens,
    });
    // Its output goes back as the next request's input, compaction item included.
    const next = await gw
      .openai(token)
      .responses.create({ model: OPENAI_MODEL, input: [...compaction.output, { role: 'user', content: 'Go on.' }] as never });
    expect(next.status).toBe('completed');
  });

  it('compacts from a previous response of this user', async () => {
    const made = await created(token, 'First turn');
    const { id, headers } = rid('compact-previous');
    const { result, moved } = await counting(() =>
      post<Compaction>(gw, '/v1/responses/compact', { model: OPENAI_MODEL, input: 'Second turn', previous_response_id: made.id }, headers),
    );
    expect(result.status).toBe(200);
    expect(result.json.output.filter((item) => item.type === 'message').map((item) => item.content?.[0].text)).toEqual([
      'First turn',
      'Second turn',
    ]);
    expect(moved).toEqual({ 'openai.responses.compact': 1 });
    await expectOneAudit(id, { status: 200, tokens_in: result.json.usage.input_tokens });
  });
});

describe('input_tokens and compact refusals, before any upstream call', () => {
  it.each([
    ['a model the product does not have', () => token, { model: 'gpt-nope', input: 'x' }, 404, 'model_not_found', 'model'],
    ['a model Anthropic serves (as create)', () => token, { model: ANTHROPIC_MODEL, input: 'x' }, 400, 'unsupported_parameter', 'model'],
    ['no model', () => token, { input: 'x' }, 400, 'invalid_request', 'model'],
    ['an input that is neither text nor items', () => token, { model: OPENAI_MODEL, input: 42 }, 400, 'invalid_request', 'input'],
    [
      'a previous response nobody made through keygate',
      () => token,
      { model: OPENAI_MODEL, input: 'x', previous_response_id: 'resp_nobody' },
      404,
      'response_not_found',
      'previous_response_id',
    ],
    [
      'an item reference to an item no response of this user made',
      () => token,
      { model: OPENAI_MODEL, input: [{ type: 'item_reference', id: 'msg_abc' }] },
      404,
      'response_not_found',
      'input[0].id',
    ],
    [
      'a conversation (kept at OpenAI, owner unknown)',
      () => token,
      { model: OPENAI_MODEL, input: 'x', conversation: 'conv_abc' },
      400,
      'unsupported_parameter',
      'conversation',
    ],
    [
      'a field the product refuses',
      guarded,
      { model: OPENAI_MODEL, input: 'x', service_tier: 'priority' },
      400,
      'policy_violation',
      'service_tier',
    ],
  ])('refuses %s on both routes', async (_what, who, body, status, code, param) => {
    for (const [route, path] of [
      ['input_tokens', '/v1/responses/input_tokens'],
      ['compact', '/v1/responses/compact'],
    ] as const) {
      const { id, headers } = rid(`extra-refused-${route}`);
      const { result, moved } = await counting(() => post<ErrorBody>(gw, path, body, headers, who()));
      expect([route, result.status, result.json.error.code, result.json.error.param]).toEqual([route, status, code, param]);
      expect(moved).toEqual({});
      await expectOneAudit(id, {
        status,
        failure: status === 404 ? 'not_found' : code === 'policy_violation' ? 'policy' : 'bad_request',
      });
    }
  });

  it('refuses stream: true on compact (answered as one JSON object) before any upstream call', async () => {
    const { id, headers } = rid('compact-stream');
    const { result, moved } = await counting(() =>
      post<ErrorBody>(gw, '/v1/responses/compact', { model: OPENAI_MODEL, input: 'x', stream: true }, headers),
    );
    expect([result.status, result.json.error.code, result.json.error.param]).toEqual([400, 'unsupported_parameter', 'stream']);
    expect(moved).toEqual({});
    await expectOneAudit(id, { status: 400, failure: 'bad_request' });
  });

  it('refuses another user’s previous response on both routes, as create does, and still serves its owner', async () => {
    const made = await created();
    for (const path of ['/v1/responses/input_tokens', '/v1/responses/compact']) {
      const { id, headers } = rid('extra-foreign');
      const { result, moved } = await counting(() =>
        post<ErrorBody>(gw, path, { model: OPENAI_MODEL, input: 'x', previous_response_id: made.id }, headers, other()),
      );
      expect([path, result.status, result.json.error.code]).toEqual([path, 404, 'response_not_found']);
      expect(moved).toEqual({});
      await expectOneAudit(id, { status: 404, failure: 'not_found', user: 'someone-else' });
    }
    const own = await post<InputTokens>(
      gw,
      '/v1/responses/input_tokens',
      { model: OPENAI_MODEL, input: 'x', previous_response_id: made.id },
      rid('own').headers,
    );
    expect(own.status).toBe(200);
  });
});

describe('the official SDK’s responses.inputTokens.count and responses.compact', () => {
  it('counts and compacts through keygate as against OpenAI, each audited once, compact with its usage and cost', async () => {
    const client = gw.openai(token);
    const counted = rid('sdk-input-tokens');
    const count = await client.responses.inputTokens.count(
      { model: OPENAI_MODEL, instructions: 'Be brief.', input: 'How many tokens is this?' },
      { headers: counted.headers },
    );
    expect(count).toEqual({ object: 'response.input_tokens', input_tokens: expect.any(Number) });
    expect(count.input_tokens).toBeGreaterThan(0);
    await expectOneAudit(counted.id, { status: 200, failure: null, model: OPENAI_MODEL, tokens_in: null, cost_usd: null });

    const compacted = rid('sdk-compact');
    const compaction = await client.responses.compact(
      { model: OPENAI_MODEL, input: [{ role: 'user', content: 'Summarise our chat so far.' }] },
      { headers: compacted.headers },
    );
    expect(compaction.object).toBe('response.compaction');
    expect(compaction.output.at(-1)?.type).toBe('compaction');
    const record = await expectOneAudit(compacted.id, {
      status: 200,
      failure: null,
      tokens_in: compaction.usage.input_tokens,
      tokens_out: compaction.usage.output_tokens,
    });
    // The provider stack's gpt-4o prices: $2.50 per million in, $10 out.
    expect(record.cost_usd).toBeCloseTo((compaction.usage.input_tokens * 2.5 + compaction.usage.output_tokens * 10) / 1e6, 9);
  });

  it('raises the SDK’s own error for a model the route cannot serve, refused before any upstream call', async () => {
    const { id, headers } = rid('sdk-compact-claude');
    const { result, moved } = await counting(() =>
      apiError(gw.openai(token).responses.compact({ model: ANTHROPIC_MODEL, input: 'x' }, { headers })),
    );
    expect(result.status).toBe(400);
    expect(moved).toEqual({});
    await expectOneAudit(id, { status: 400 });
  });
});

describe('POST /v1/responses/{id}/cancel with the OpenAI SDK', () => {
  it('passes OpenAI’s refusal to cancel a response not made in the background on (400), audited with its model', async () => {
    const made = await created();
    const { id, headers } = rid('cancel');
    const { result: error, moved, after } = await counting(() => apiError(gw.openai(token).responses.cancel(made.id, { headers })));
    expect(error.status).toBe(400);
    expect(error.code).toBe('upstream_bad_request');
    expect(error.message).toContain('Cannot cancel a synchronous response.');
    expect(moved).toEqual({ 'openai.responses.cancel': 1 });
    expect(after.last['openai.responses.cancel']).toMatchObject({ url: `/v1/responses/${made.id}/cancel`, body: null });
    expect(after.last['openai.responses.cancel']?.headers.authorization).toBe('Bearer sk-mock-prov');
    await expectOneAudit(id, {
      status: 400,
      failure: 'upstream',
      user: 'extra-user',
      provider: 'openai',
      model: OPENAI_MODEL,
      tokens_in: null,
      tokens_out: null,
      attempts: 1,
    });
    // Still there.
    expect((await gw.openai(token).responses.retrieve(made.id)).id).toBe(made.id);
  });

  it.each([
    ['another user of the product', () => mintToken({ product: 'prov', sub: 'someone-else' })],
    ['another product on the same OpenAI host and key', () => mintToken({ product: 'guarded', sub: 'extra-user' })],
  ])('refuses %s 404 response_not_found, before any upstream call', async (_who, tokenOf) => {
    const made = await created();
    const { id, headers } = rid('cancel-foreign');
    const { result: error, moved } = await counting(() => apiError(gw.openai(tokenOf()).responses.cancel(made.id, { headers })));
    expect([error.status, error.code]).toEqual([404, 'response_not_found']);
    expect(error.message).toContain(made.id);
    expect(moved).toEqual({});
    await expectOneAudit(id, { status: 404, failure: 'not_found', model: null });
  });

  it('refuses an unknown id and a query parameter before any upstream call', async () => {
    const unknown = rid('cancel-unknown');
    const missing = await counting(() => apiError(gw.openai(token).responses.cancel('resp_nobody', { headers: unknown.headers })));
    expect([missing.result.status, missing.result.code]).toEqual([404, 'response_not_found']);
    expect(missing.moved).toEqual({});
    await expectOneAudit(unknown.id, { status: 404, failure: 'not_found' });

    const made = await created();
    const { id, headers } = rid('cancel-query');
    const { result, moved } = await counting(() =>
      gw.fetch(`/v1/responses/${made.id}/cancel?stream=false`, {
        method: 'POST',
        headers: { ...headers, authorization: `Bearer ${token}` },
      }),
    );
    expect(result.status).toBe(400);
    expect(((await result.json()) as ErrorBody).error).toMatchObject({ code: 'invalid_request', param: 'stream' });
    expect(moved).toEqual({});
    await expectOneAudit(id, { status: 400, failure: 'bad_request' });
  });
});

describe('what each route counts against the limits', () => {
  const PRODUCT = 'compactquota';
  const DAILY_TOKENS = 1000;
  const CAP = 100;
  /** A prompt of ~1600 characters: the mock bills it ~400 tokens in and ~400 out, over half the day's quota. */
  const LONG = 'The quick brown fox jumps over the lazy dog, again and again. '.repeat(26);
  let quota: Gateway | undefined;
  let user: string;
  let admin: string;

  interface Usage {
    requests: { total: number };
    tokens: { total: number; users: Record<string, number> };
  }

  beforeAll(async () => {
    const stack: ProviderStack = suite.stack();
    const products = {
      ...providerProducts({ mock: stack.mock.url, flaky: stack.flaky.url, closedPort: await freePort() }),
      [PRODUCT]: { providers: { openai: { api_key: 'sk-mock-quota', models: [OPENAI_MODEL], base_url: `${stack.mock.url}/v1` } } },
    };
    const policy = [
      'defaults:',
      '  limits: {requests_per_second: 1000, user_requests_per_second: 1000, daily_requests: 100, user_daily_requests: 100}',
      'products:',
      `  ${PRODUCT}:`,
      `    limits: {daily_tokens: ${DAILY_TOKENS}}`,
      `    policy: {max_tokens: ${CAP}}`,
      '',
    ].join('\n');
    quota = await startGateway({ products, env: { API_KEY_SERVER_POLICY_FILE: writeTempFile('quota-policy.yaml', policy) } });
    user = mintToken({ product: PRODUCT, sub: 'quota-user' });
    admin = mintToken({ product: PRODUCT, sub: 'quota-admin', extraClaims: { scope: 'keygate.admin' } });
  }, 45_000);

  afterAll(async () => {
    // The suite's own afterAll removes the temp files.
    await quota?.stop();
  }, 30_000);

  async function usage(): Promise<Usage> {
    const res = await quota!.fetch(`/admin/usage?product=${PRODUCT}`, { headers: { authorization: `Bearer ${admin}` } });
    expect(res.status).toBe(200);
    return (await res.json()) as Usage;
  }

  it('charges compact’s tokens to the daily token quota, which then refuses the next; input_tokens counts against nothing', async () => {
    expect(await usage()).toMatchObject({ requests: { total: 0 }, tokens: { total: 0 } });

    // A count: no request counted, no token reserved or billed.
    const counted = rid('quota-count');
    const count = await post<InputTokens>(
      quota!,
      '/v1/responses/input_tokens',
      { model: OPENAI_MODEL, input: LONG },
      counted.headers,
      user,
    );
    expect(count.status).toBe(200);
    await expectOneAuditOn(quota!, counted.id, { status: 200, product: PRODUCT, tokens_in: null });
    expect(await usage()).toMatchObject({ requests: { total: 0 }, tokens: { total: 0 } });

    // A compaction: one request, its reported usage billed once it settles.
    const first = rid('quota-compact');
    const { result, moved } = await counting(() =>
      post<Compaction>(quota!, '/v1/responses/compact', { model: OPENAI_MODEL, input: LONG }, first.headers, user),
    );
    expect(result.status).toBe(200);
    expect(moved).toEqual({ 'openai.responses.compact': 1 });
    const billed = result.json.usage.total_tokens;
    expect(billed).toBeGreaterThan(DAILY_TOKENS / 2);
    await expectOneAuditOn(quota!, first.id, {
      status: 200,
      failure: null,
      product: PRODUCT,
      user: 'quota-user',
      tokens_in: result.json.usage.input_tokens,
      tokens_out: result.json.usage.output_tokens,
    });
    await waitFor('the settled total', async () => (await usage()).tokens.total === billed, 3_000, 50);
    expect(await usage()).toMatchObject({ requests: { total: 1 }, tokens: { total: billed, users: { 'quota-user': billed } } });

    // The same compaction no longer fits what is left of the day: refused, never sent upstream.
    const refused = rid('quota-refused');
    const second = await counting(() =>
      post<ErrorBody>(quota!, '/v1/responses/compact', { model: OPENAI_MODEL, input: LONG }, refused.headers, user),
    );
    expect(second.result.status).toBe(429);
    expect(second.result.json.error.code).toBe('daily_quota_exceeded');
    expect(second.moved).toEqual({});
    await expectOneAuditOn(quota!, refused.id, { status: 429, failure: 'quota', product: PRODUCT });

    // A count still answers, and still adds nothing.
    const after = rid('quota-count-after');
    const again = await counting(() =>
      post<InputTokens>(quota!, '/v1/responses/input_tokens', { model: OPENAI_MODEL, input: LONG }, after.headers, user),
    );
    expect(again.result.status).toBe(200);
    expect(again.moved).toEqual({ 'openai.responses.inputTokens': 1 });
    await expectOneAuditOn(quota!, after.id, { status: 200, failure: null });
    expect(await usage()).toMatchObject({ requests: { total: 1 }, tokens: { total: billed } });
  });
});
