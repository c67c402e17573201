/**
 * `POST /v1/messages`, black box: the built gateway and mock upstream run as real processes and the
 * official Anthropic SDK (`@anthropic-ai/sdk`) talks to Claude through the gateway, as it would with
 * keygate's address as its base URL. Every case checks the outcome, what reached the upstream, and
 * the request's single audit line.
 */
import { createHash } from 'node:crypto';
import Anthropic from '@anthropic-ai/sdk';
import { betaTool } from '@anthropic-ai/sdk/helpers/beta/json-schema';
import {
  ANTHROPIC_MODEL,
  CLAUDE_LIST,
  CLAUDE_THINKING_MODEL,
  GEMINI_MODEL,
  mockReply,
  OPENAI_EMBEDDING_MODEL,
  OPENAI_MODEL,
  rid,
  useProviderStack,
  type FlakyUpstream,
} from './provider-fixtures';
import { apiError, mintToken, waitFor, type Gateway, type MockUpstream } from './harness';

const MAX_RETRIES = 2;
/** The product policy's default completion-token cap (SPEC §4). */
const DEFAULT_CAP = 4096;

const suite = useProviderStack(MAX_RETRIES);
const { counting, expectOneAudit } = suite;

let mock: MockUpstream;
let flaky: FlakyUpstream;
let gw: Gateway;
let token: string;

beforeAll(() => {
  ({ mock, flaky, gw } = suite.stack());
  token = mintToken({ product: 'prov', sub: 'claude-user' });
});

/** The error an SDK call rejects with. */
async function sdkError(promise: Promise<unknown>): Promise<InstanceType<typeof Anthropic.APIError>> {
  try {
    await promise;
  } catch (error) {
    if (error instanceof Anthropic.APIError) return error;
    throw error;
  }
  throw new Error('the call succeeded');
}

function textOf(message: Anthropic.Message): string {
  return message.content.map((block) => (block.type === 'text' ? block.text : '')).join('');
}

function billed(usage: Anthropic.Usage): number {
  return usage.input_tokens + (usage.cache_creation_input_tokens ?? 0) + (usage.cache_read_input_tokens ?? 0);
}

describe('POST /v1/messages with the Anthropic SDK', () => {
  it.each([
    ['apiKey', false],
    ['authToken', true],
  ])('answers a Claude model with Anthropic’s own message, the token given as the SDK’s %s, billed and audited', async (_how, bearer) => {
    const { id, headers } = rid('msg-plain');
    const {
      result: message,
      moved,
      after,
    } = await counting(() =>
      gw
        .anthropic(token, { bearer })
        .messages.create({ model: ANTHROPIC_MODEL, max_tokens: 64, messages: [{ role: 'user', content: 'Say hi' }] }, { headers }),
    );
    expect(message).toMatchObject({ type: 'message', role: 'assistant', model: ANTHROPIC_MODEL });
    expect(textOf(message)).toBe(mockReply('anthropic', 'Say hi'));
    expect(moved).toEqual({ 'anthropic.messages': 1 });
    // The product's key and keygate's version header went upstream, the client's token did not.
    const upstream = after.last['anthropic.messages'];
    expect(upstream?.headers['x-api-key']).toBe('sk-ant-mock-prov');
    expect(upstream?.headers.authorization).toBeUndefined();
    // The SDK's own version header goes on: it knows the answer's format it reads.
    expect(upstream?.headers['anthropic-version']).toMatch(/^\d{4}-\d{2}-\d{2}$/);
    expect(upstream?.body).toMatchObject({ model: ANTHROPIC_MODEL, max_tokens: 64, messages: [{ role: 'user', content: 'Say hi' }] });
    // Anthropic's request-id comes back (the SDK's _request_id), beside keygate's own X-Request-Id.
    expect(message._request_id).toMatch(/^req_mock/);
    await expectOneAudit(id, {
      status: 200,
      failure: null,
      product: 'prov',
      user: 'claude-user',
      provider: 'anthropic',
      model: ANTHROPIC_MODEL,
      stream: false,
      tokens_in: billed(message.usage),
      tokens_out: message.usage.output_tokens,
    });
  });

  it('takes the same token in Authorization and x-api-key, and refuses two different ones (400, no upstream call)', async () => {
    const body = JSON.stringify({ model: ANTHROPIC_MODEL, max_tokens: 16, messages: [{ role: 'user', content: 'two keys' }] });
    const send = (id: string, key: string): Promise<Response> =>
      gw.fetch('/v1/messages', {
        method: 'POST',
        headers: { 'x-request-id': id, authorization: `Bearer ${token}`, 'x-api-key': key, 'content-type': 'application/json' },
        body,
      });
    const same = rid('msg-same-keys');
    const agreed = await counting(() => send(same.id, token));
    expect(agreed.result.status).toBe(200);
    await agreed.result.arrayBuffer();
    expect(agreed.moved).toEqual({ 'anthropic.messages': 1 });
    await expectOneAudit(same.id, { status: 200, user: 'claude-user' });

    const differ = rid('msg-two-keys');
    const refused = await counting(() => send(differ.id, mintToken({ product: 'prov', sub: 'someone-else' })));
    expect(refused.result.status).toBe(400);
    expect(await refused.result.json()).toMatchObject({ type: 'error', error: { code: 'invalid_request', param: 'x-api-key' } });
    expect(refused.moved).toEqual({});
    await expectOneAudit(differ.id, { status: 400, failure: 'bad_request' });
  });

  it('takes the token from x-api-key, as older SDKs and Claude Code’s key helper send it', async () => {
    const { id, headers } = rid('msg-raw-key');
    const body = JSON.stringify({ model: ANTHROPIC_MODEL, max_tokens: 32, messages: [{ role: 'user', content: 'raw key' }] });
    const { result: res, after } = await counting(() =>
      gw.fetch('/v1/messages', { method: 'POST', headers: { ...headers, 'x-api-key': token, 'content-type': 'application/json' }, body }),
    );
    expect(res.status).toBe(200);
    const text = await res.text();
    expect((JSON.parse(text) as Anthropic.Message).content).toEqual([{ type: 'text', text: mockReply('anthropic', 'raw key') }]);
    expect(after.last['anthropic.messages']?.headers['x-api-key']).toBe('sk-ant-mock-prov');
    await expectOneAudit(id, { status: 200, user: 'claude-user' });
  });

  it.each(['/v1/%6dessages', '/v1/m%65ssages'])(
    'reads x-api-key and answers in Anthropic’s envelope on %s, another spelling of the route',
    async (path) => {
      const { id, headers } = rid('msg-spelt');
      const body = JSON.stringify({ model: ANTHROPIC_MODEL, max_tokens: 32, messages: [{ role: 'user', content: 'spelt' }] });
      const send = (extra: Record<string, string>, text = body): Promise<Response> =>
        gw.fetch(path, { method: 'POST', headers: { 'content-type': 'application/json', ...extra }, body: text });
      const { result: ok, moved } = await counting(() => send({ ...headers, 'x-api-key': token }));
      expect(ok.status).toBe(200);
      expect(moved).toEqual({ 'anthropic.messages': 1 });
      await expectOneAudit(id, { status: 200, user: 'claude-user' });
      const bad = rid('msg-spelt-bad');
      const { result: refused, moved: none } = await counting(() => send({ ...bad.headers, 'x-api-key': token }, '{"model":'));
      expect(refused.status).toBe(400);
      expect(await refused.json()).toMatchObject({ type: 'error', error: { code: 'invalid_json' } });
      expect(none).toEqual({});
      await expectOneAudit(bad.id, { status: 400, failure: 'bad_request', user: 'claude-user' });
    },
  );

  it('streams Anthropic’s events as they come; the SDK assembles the message; usage billed from message_start and message_delta', async () => {
    const { id, headers } = rid('msg-stream');
    const names: string[] = [];
    let requestId: string | null | undefined;
    const { result: message, moved } = await counting(async () => {
      const stream = gw
        .anthropic(token)
        .messages.stream(
          { model: ANTHROPIC_MODEL, max_tokens: 64, messages: [{ role: 'user', content: 'Stream [mock chunks=4]' }] },
          { headers },
        );
      stream.on('streamEvent', (event) => names.push(event.type));
      const final = await stream.finalMessage();
      requestId = stream.request_id;
      return final;
    });
    expect(requestId).toMatch(/^req_mock/);
    expect(textOf(message)).toBe(mockReply('anthropic', 'Stream'));
    expect(names[0]).toBe('message_start');
    expect(names.filter((n) => n === 'content_block_delta').length).toBeGreaterThanOrEqual(2);
    expect(names.at(-1)).toBe('message_stop');
    expect(moved).toEqual({ 'anthropic.messages': 1 });
    await expectOneAudit(id, {
      status: 200,
      failure: null,
      stream: true,
      provider: 'anthropic',
      tokens_in: billed(message.usage),
      tokens_out: message.usage.output_tokens,
    });
  });

  it('streams whole from a host that ends its stream after message_delta without message_stop: the client is given the message_stop', async () => {
    const { id, headers } = rid('msg-no-stop');
    const names: string[] = [];
    const { result: message, moved } = await counting(async () => {
      const stream = gw
        .anthropic(token)
        .messages.stream(
          { model: ANTHROPIC_MODEL, max_tokens: 64, messages: [{ role: 'user', content: 'No stop [mock no_done=1 chunks=3]' }] },
          { headers },
        );
      stream.on('streamEvent', (event) => names.push(event.type));
      return stream.finalMessage();
    });
    expect(textOf(message)).toBe(mockReply('anthropic', 'No stop'));
    expect(message.stop_reason).toBe('end_turn');
    expect(names.slice(-2)).toEqual(['message_delta', 'message_stop']);
    expect(moved).toEqual({ 'anthropic.messages': 1 });
    await expectOneAudit(id, {
      status: 200,
      failure: null,
      stream: true,
      tokens_in: billed(message.usage),
      tokens_out: message.usage.output_tokens,
    });
  });

  it('passes tools and tool_use blocks through unchanged', async () => {
    const { headers } = rid('msg-tools');
    const message = await gw.anthropic(token).messages.create(
      {
        model: ANTHROPIC_MODEL,
        max_tokens: 64,
        tools: [
          { name: 'get_weather', description: 'Weather', input_schema: { type: 'object', properties: { city: { type: 'string' } } } },
        ],
        messages: [{ role: 'user', content: 'Weather in Paris? [mock tool=get_weather]' }],
      },
      { headers },
    );
    expect(message.stop_reason).toBe('tool_use');
    expect(message.content.find((b) => b.type === 'tool_use')).toMatchObject({ type: 'tool_use', name: 'get_weather' });
    const upstream = (await mock.stats()).last['anthropic.messages']?.body as { tools?: unknown[] };
    expect(upstream.tools).toEqual([
      { name: 'get_weather', description: 'Weather', input_schema: { type: 'object', properties: { city: { type: 'string' } } } },
    ]);
  });

  it('passes structured outputs whose schema names its draft ($schema), as the Vercel AI SDK sends them, and Claude’s JSON back', async () => {
    // The output_config @ai-sdk/anthropic 3.0.140 sends for generateObject on claude-sonnet-4-5.
    const schema = {
      $schema: 'http://json-schema.org/draft-07/schema#',
      type: 'object',
      properties: {
        name: { type: 'string' },
        age: { type: 'integer', description: 'minimum: 0; maximum: 9007199254740991.' },
        tags: { type: 'array', items: { type: 'string' } },
      },
      additionalProperties: false,
      required: ['name', 'age', 'tags'],
    };
    const { id, headers } = rid('msg-aisdk-object');
    const { result: message, after } = await counting(() =>
      gw.anthropic(mintToken({ product: 'claudes', sub: 'claude-user' })).messages.create(
        {
          model: 'claude-sonnet-4-5',
          max_tokens: 1024,
          output_config: { format: { type: 'json_schema', schema } },
          messages: [{ role: 'user', content: [{ type: 'text', text: 'A person' }] }],
        },
        { headers },
      ),
    );
    expect(JSON.parse(textOf(message))).toEqual({ name: 'mock', age: 0, tags: [] });
    expect(after.last['anthropic.messages']?.body).toMatchObject({ output_config: { format: { type: 'json_schema', schema } } });
    await expectOneAudit(id, {
      status: 200,
      failure: null,
      product: 'claudes',
      model: 'claude-sonnet-4-5',
      tokens_in: billed(message.usage),
      tokens_out: message.usage.output_tokens,
    });
  });

  it('passes the client’s anthropic-version and anthropic-beta on, and no other header of the client’s', async () => {
    const { headers } = rid('msg-beta');
    const { after } = await counting(() =>
      gw.anthropic(token).messages.create(
        { model: ANTHROPIC_MODEL, max_tokens: 16, messages: [{ role: 'user', content: 'beta' }] },
        {
          headers: {
            ...headers,
            'anthropic-version': '2023-06-01',
            'anthropic-beta': 'interleaved-thinking-2025-05-14, fine-grained-tool-streaming-2025-05-14',
            'x-goog-authenticated-user-email': 'x@y',
          },
        },
      ),
    );
    const upstream = after.last['anthropic.messages']?.headers ?? {};
    expect(upstream['anthropic-beta']).toBe('interleaved-thinking-2025-05-14, fine-grained-tool-streaming-2025-05-14');
    expect(upstream['anthropic-version']).toBe('2023-06-01');
    expect(upstream['x-goog-authenticated-user-email']).toBeUndefined();
    expect(upstream['x-request-id']).toBeUndefined();
  });

  it('sets max_tokens to the product’s cap and anthropic-version to 2023-06-01 when the client sends neither', async () => {
    const { id, headers } = rid('msg-cap');
    const res = await gw.fetch('/v1/messages', {
      method: 'POST',
      headers: { ...headers, authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: ANTHROPIC_MODEL, messages: [{ role: 'user', content: 'no cap given' }] }),
    });
    expect(res.status).toBe(200);
    await res.arrayBuffer();
    const upstream = (await mock.stats()).last['anthropic.messages'];
    expect(upstream?.body).toMatchObject({ max_tokens: DEFAULT_CAP });
    // A client without a version header gets the one keygate is written against.
    expect(upstream?.headers['anthropic-version']).toBe('2023-06-01');
    await expectOneAudit(id, { status: 200 });
  });
});

describe('POST /v1/messages refusals, in an envelope the Anthropic SDK reads', () => {
  const ASK = { model: ANTHROPIC_MODEL, max_tokens: 16, messages: [{ role: 'user', content: 'x' }] };

  it.each([
    [
      'a model another provider serves',
      { model: OPENAI_MODEL, max_tokens: 16, messages: [{ role: 'user', content: 'x' }] },
      400,
      'unsupported_parameter',
      'model',
    ],
    [
      'a model Gemini serves',
      { model: GEMINI_MODEL, max_tokens: 16, messages: [{ role: 'user', content: 'x' }] },
      400,
      'unsupported_parameter',
      'model',
    ],
    [
      'a model the product does not have',
      { model: 'claude-nope', max_tokens: 16, messages: [{ role: 'user', content: 'x' }] },
      404,
      'model_not_found',
      'model',
    ],
    [
      'a model only another product has (product claudes)',
      { model: CLAUDE_LIST[1], max_tokens: 16, messages: [{ role: 'user', content: 'x' }] },
      403,
      'model_not_allowed',
      'model',
    ],
    [
      'max_tokens over the product’s cap',
      { model: ANTHROPIC_MODEL, max_tokens: 1_000_000, messages: [{ role: 'user', content: 'x' }] },
      400,
      'policy_violation',
      'max_tokens',
    ],
    ['no messages', { model: ANTHROPIC_MODEL, max_tokens: 16, messages: [] }, 400, 'invalid_request', 'messages'],
    [
      "OpenAI's max_completion_tokens (the policy would read it as the cap; Anthropic refuses it)",
      { model: ANTHROPIC_MODEL, max_completion_tokens: 10, messages: [{ role: 'user', content: 'x' }] },
      400,
      'unsupported_parameter',
      'max_completion_tokens',
    ],
    [
      'a message with a role Anthropic does not have (OpenAI’s tool role)',
      { model: ANTHROPIC_MODEL, max_tokens: 16, messages: [{ role: 'tool', content: 'x' }] },
      400,
      'invalid_request',
      'messages[0].role',
    ],
    [
      'a tool name no provider takes',
      { ...ASK, tools: [{ name: 'get weather!', input_schema: { type: 'object' } }] },
      400,
      'invalid_request',
      'tools[0].name',
    ],
    [
      'a tool declared twice',
      {
        ...ASK,
        tools: [
          { name: 'get_weather', input_schema: { type: 'object' } },
          { type: 'custom', name: 'get_weather', input_schema: { type: 'object' } },
        ],
      },
      400,
      'invalid_request',
      'tools[1].name',
    ],
    [
      'a tool_choice naming an undeclared tool',
      { ...ASK, tools: [{ name: 'get_weather', input_schema: { type: 'object' } }], tool_choice: { type: 'tool', name: 'other' } },
      400,
      'invalid_request',
      'tool_choice',
    ],
  ])('refuses %s without calling any upstream', async (_case, body, status, code, param) => {
    const { id, headers } = rid('msg-refused');
    const { result: error, moved } = await counting(() =>
      sdkError(gw.anthropic(token).messages.create(body as unknown as Anthropic.MessageCreateParamsNonStreaming, { headers })),
    );
    expect(error.status).toBe(status);
    // Anthropic's envelope ({"type":"error","error":{"type","message"}}) that is also the contract's.
    expect(error.error).toMatchObject({ type: 'error', error: { code, param, type: expect.any(String), message: expect.any(String) } });
    expect(moved).toEqual({});
    await expectOneAudit(id, { status });
  });

  it('refuses a malformed anthropic-version with 400 naming the header, without calling any upstream', async () => {
    const { id, headers } = rid('msg-version');
    const { result: error, moved } = await counting(() =>
      sdkError(
        gw
          .anthropic(token)
          .messages.create(
            { model: ANTHROPIC_MODEL, max_tokens: 16, messages: [{ role: 'user', content: 'x' }] },
            { headers: { ...headers, 'anthropic-version': 'latest\u0020please' } },
          ),
      ),
    );
    expect(error.status).toBe(400);
    expect(error.error).toMatchObject({ type: 'error', error: { code: 'invalid_request', param: 'anthropic-version' } });
    expect(moved).toEqual({});
    await expectOneAudit(id, { status: 400, failure: 'bad_request' });
  });

  it('takes a token from x-api-key on /v1/messages only: the OpenAI routes answer it 401', async () => {
    for (const path of ['/v1/chat/completions', '/chat/prov', '/v1/embeddings']) {
      const { id, headers } = rid('xapikey-elsewhere');
      const res = await gw.fetch(path, {
        method: 'POST',
        headers: { ...headers, 'x-api-key': token, 'content-type': 'application/json' },
        body: JSON.stringify({ model: OPENAI_MODEL, messages: [{ role: 'user', content: 'x' }], input: 'x' }),
      });
      expect({ path, status: res.status }).toEqual({ path, status: 401 });
      expect(await res.json()).not.toHaveProperty('type');
      await expectOneAudit(id, { status: 401, failure: 'auth' });
    }
  });

  it('answers in the same envelope what keygate refuses before routing (a compressed body)', async () => {
    const { id, headers } = rid('msg-gzip');
    const res = await gw.fetch('/v1/messages', {
      method: 'POST',
      headers: { ...headers, authorization: `Bearer ${token}`, 'content-type': 'application/json', 'content-encoding': 'gzip' },
      body: 'not really gzip',
    });
    expect(res.status).toBe(400);
    expect(await res.json()).toMatchObject({
      type: 'error',
      error: { code: 'invalid_request', message: expect.stringMatching(/Content-Encoding/) },
    });
    await expectOneAudit(id, { status: 400, failure: 'bad_request' });
  });

  it('answers a request without a credential 401 with a challenge, in the same envelope', async () => {
    const { id, headers } = rid('msg-401');
    const error = await sdkError(
      gw
        .anthropic('not-a-jwt')
        .messages.create({ model: ANTHROPIC_MODEL, max_tokens: 16, messages: [{ role: 'user', content: 'x' }] }, { headers }),
    );
    expect(error).toBeInstanceOf(Anthropic.AuthenticationError);
    expect(error.error).toMatchObject({ type: 'error', error: { code: 'invalid_token', type: 'authentication_error' } });
    expect(error.headers?.get('www-authenticate')).toMatch(/^Bearer resource_metadata="[^"]+", error="invalid_token"/);
    await expectOneAudit(id, { status: 401, failure: 'auth' });
  });
});

describe('POST /v1/messages upstream failures', () => {
  const flakyToken = (): string => mintToken({ product: 'flaky2' });

  it('retries an overloaded Anthropic (529) like chat, and does not fall back to a model of another provider', async () => {
    flaky.script({ status: 529 });
    const { id, headers } = rid('msg-529');
    const { result: error, moved } = await counting(() =>
      sdkError(
        gw
          .anthropic(flakyToken())
          .messages.create({ model: ANTHROPIC_MODEL, max_tokens: 16, messages: [{ role: 'user', content: 'busy?' }] }, { headers }),
      ),
    );
    expect(error.status).toBe(502);
    expect(error.error).toMatchObject({ type: 'error', error: { code: 'upstream_error' } });
    expect(flaky.count('/v1/messages')).toBe(1 + MAX_RETRIES);
    // flaky2 falls Claude back to Gemini for chat; an Anthropic body cannot go there.
    expect(moved).toEqual({});
    await expectOneAudit(id, { status: 502, failure: 'upstream', provider: 'anthropic', attempts: 1 + MAX_RETRIES });
  });

  it('falls back from a thinking Claude to one that does not think (Claude 3.5) without the thinking, whose history thinking is left out', async () => {
    const { id, headers } = rid('msg-think-fallback');
    // Every attempt at Sonnet 4.5 is overloaded; the fallback, which refuses thinking, answers.
    const text = `think, then fall back ${id}`;
    const {
      result: message,
      moved,
      after,
    } = await counting(() =>
      gw.anthropic(mintToken({ product: 'thinkers' })).messages.create(
        {
          model: CLAUDE_THINKING_MODEL,
          max_tokens: 2048,
          thinking: { type: 'enabled', budget_tokens: 1024 },
          messages: [
            { role: 'user', content: 'first' },
            {
              role: 'assistant',
              content: [
                { type: 'thinking', thinking: 'hmm', signature: 'sig' },
                { type: 'text', text: 'ok' },
              ],
            },
            { role: 'user', content: `${text} [mock status=529 fail_first=${1 + MAX_RETRIES}]` },
          ],
        },
        { headers },
      ),
    );
    expect(textOf(message)).toBe(mockReply('anthropic', text));
    expect(moved).toEqual({ 'anthropic.messages': 2 + MAX_RETRIES });
    const sent = after.last['anthropic.messages']?.body as { model: string; thinking?: unknown; messages: Array<{ content: unknown }> };
    expect(sent.model).toBe(ANTHROPIC_MODEL);
    expect(sent.thinking).toBeUndefined();
    expect(sent.messages[1].content).toEqual([{ type: 'text', text: 'ok' }]);
    await expectOneAudit(id, { status: 200, failure: null, model: ANTHROPIC_MODEL, attempts: 2 + MAX_RETRIES });
  });

  it('retries count_tokens on a 503 and logs each failed attempt in a WARNING with the request id, as a message call does', async () => {
    flaky.script({ status: 503 });
    const { id, headers } = rid('count-503');
    const { result: error } = await counting(() =>
      sdkError(
        gw
          .anthropic(flakyToken())
          .messages.countTokens({ model: ANTHROPIC_MODEL, messages: [{ role: 'user', content: 'count me' }] }, { headers }),
      ),
    );
    expect(error.status).toBe(502);
    expect(flaky.count('/v1/messages/count_tokens')).toBe(1 + MAX_RETRIES);
    await expectOneAudit(id, { status: 502, failure: 'upstream', attempts: 1 + MAX_RETRIES });
    const lines = gw.proc.lines
      .filter((l) => l.json?.requestId === id && String(l.json.message).startsWith('upstream attempt failed'))
      .map((l) => [l.json!.severity, l.json!.message, l.json!.provider, l.json!.upstreamStatus]);
    expect(lines).toEqual([
      ...Array.from({ length: MAX_RETRIES }, () => ['WARNING', 'upstream attempt failed; retrying', 'anthropic', 503]),
      ['WARNING', 'upstream attempt failed; no retry or fallback left', 'anthropic', 503],
    ]);
  });

  it('retries an error sent as the stream’s first event, then ends a stream whose error comes after content with an error event', async () => {
    const { id, headers } = rid('msg-stream-error');
    const { moved } = await counting(async () => {
      const stream = gw.anthropic(token).messages.stream(
        {
          model: ANTHROPIC_MODEL,
          max_tokens: 64,
          messages: [{ role: 'user', content: 'fail late [mock error_event_after=3 chunks=6]' }],
        },
        { headers },
      );
      const error = await stream.finalMessage().then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(error).toBeInstanceOf(Anthropic.APIError);
      expect(String((error as Error).message)).toMatch(/overloaded|upstream/i);
      // keygate's error event names the request as the stream's request-id header did: Anthropic's own;
      // and the failure as Anthropic did (the mock's event is an overloaded_error).
      expect((error as InstanceType<typeof Anthropic.APIError>).error).toMatchObject({
        type: 'error',
        error: { type: 'overloaded_error', code: 'upstream_error' },
        request_id: expect.stringMatching(/^req_mock/),
      });
    });
    // Content had gone out: no retry.
    expect(moved).toEqual({ 'anthropic.messages': 1 });
    await expectOneAudit(id, { status: 502, failure: 'upstream', stream: true, attempts: 1 });

    const first = rid('msg-stream-first-error');
    const early = await counting(() =>
      sdkError(
        gw.anthropic(token).messages.create(
          {
            model: ANTHROPIC_MODEL,
            max_tokens: 64,
            stream: true,
            messages: [{ role: 'user', content: 'fail first [mock error_event_after=0]' }],
          },
          { headers: first.headers },
        ),
      ),
    );
    expect(early.result.status).toBe(502);
    expect(early.moved).toEqual({ 'anthropic.messages': 1 + MAX_RETRIES });
    await expectOneAudit(first.id, { status: 502, failure: 'upstream', attempts: 1 + MAX_RETRIES });
  });

  it('answers a refusal Anthropic sent with Anthropic’s request-id (header and body), plain, streamed and counted, as its stream errors do', async () => {
    const ask = { model: ANTHROPIC_MODEL, messages: [{ role: 'user' as const, content: 'refuse me [mock status=400]' }] };
    const calls: [string, (headers: Record<string, string>) => Promise<unknown>][] = [
      ['create', (headers) => gw.anthropic(token).messages.create({ ...ask, max_tokens: 16 }, { headers })],
      ['stream', (headers) => gw.anthropic(token).messages.create({ ...ask, max_tokens: 16, stream: true }, { headers })],
      ['count_tokens', (headers) => gw.anthropic(token).messages.countTokens(ask, { headers })],
    ];
    for (const [how, call] of calls) {
      const { id, headers } = rid(`msg-upstream-400-${how}`);
      const { result: error, moved } = await counting(() => sdkError(call(headers)));
      expect(error).toBeInstanceOf(Anthropic.BadRequestError);
      // The id Anthropic's support can look up, not keygate's, which stays in X-Request-Id.
      expect({ how, requestID: error.requestID }).toEqual({ how, requestID: expect.stringMatching(/^req_mock/) });
      expect(error.error).toMatchObject({ type: 'error', error: { code: 'upstream_bad_request' }, request_id: error.requestID });
      expect(error.headers?.get('x-request-id')).toBe(id);
      expect(moved).toEqual({ [how === 'count_tokens' ? 'anthropic.countTokens' : 'anthropic.messages']: 1 });
      await expectOneAudit(id, { status: 400, failure: 'upstream', attempts: 1 });
    }
    // Overloaded after keygate's retries: the last answer's id.
    const { id, headers } = rid('msg-upstream-529-id');
    const { result: overloaded, moved } = await counting(() =>
      sdkError(
        gw
          .anthropic(token)
          .messages.create({ ...ask, max_tokens: 16, messages: [{ role: 'user', content: 'busy [mock status=529]' }] }, { headers }),
      ),
    );
    expect(overloaded.status).toBe(502);
    expect(overloaded.requestID).toMatch(/^req_mock/);
    expect(overloaded.error).toMatchObject({ request_id: overloaded.requestID });
    expect(moved).toEqual({ 'anthropic.messages': 1 + MAX_RETRIES });
    await expectOneAudit(id, { status: 502, failure: 'upstream', attempts: 1 + MAX_RETRIES });
  });

  it('bills a client that leaves mid-stream what the upstream reported, and audits it 499', async () => {
    const prompt = 'slow [mock chunk_delay_ms=200 chunks=20]';
    // What Anthropic reports as the prompt's tokens (message_start), from the same request whole.
    const whole = await gw
      .anthropic(token)
      .messages.create({ model: ANTHROPIC_MODEL, max_tokens: 64, messages: [{ role: 'user', content: prompt }] });
    const { id, headers } = rid('msg-abort');
    const abortedBefore = (await mock.stats()).aborted;
    const controller = new AbortController();
    const stream = gw
      .anthropic(token)
      .messages.stream(
        { model: ANTHROPIC_MODEL, max_tokens: 64, messages: [{ role: 'user', content: prompt }] },
        { headers, signal: controller.signal },
      );
    let deltas = 0;
    stream.on('text', () => {
      deltas++;
      if (deltas === 2) controller.abort();
    });
    await stream.finalMessage().catch(() => undefined);
    const audit = await expectOneAudit(id, { status: 499, failure: 'client_abort', stream: true, tokens_in: billed(whole.usage) });
    // At least what reached the client, less than the whole answer.
    expect(audit.tokens_out).toBeGreaterThan(0);
    expect(audit.tokens_out).toBeLessThan(whole.usage.output_tokens);
    await waitFor('the mock to see the abort', async () => ((await mock.stats()).aborted > abortedBefore ? true : undefined));
  });
});

describe('fields and tools a product’s policy refuses (refused_fields, refused_tools)', () => {
  let guarded: string;
  beforeAll(() => {
    guarded = mintToken({ product: 'guarded', sub: 'guarded-user' });
  });
  const ask = { model: ANTHROPIC_MODEL, max_tokens: 32, messages: [{ role: 'user' as const, content: 'search the web' }] };

  it.each([
    ['service_tier', { service_tier: 'auto' }, 'service_tier'],
    ['mcp_servers (mcp_*)', { mcp_servers: [{ type: 'url', url: 'https://mcp.example/sse', name: 'x' }] }, 'mcp_servers'],
    ['a web search server tool', { tools: [{ type: 'web_search_20250305', name: 'web_search', max_uses: 5 }] }, 'tools[0].type'],
  ])('refuses %s on /v1/messages with 400 policy_violation naming it, without calling any upstream', async (_what, extra, param) => {
    const { id, headers } = rid('msg-refused');
    const { result: error, moved } = await counting(() =>
      sdkError(gw.anthropic(guarded).messages.create({ ...ask, ...extra } as Anthropic.MessageCreateParamsNonStreaming, { headers })),
    );
    expect(error.status).toBe(400);
    expect(error.error).toMatchObject({ type: 'error', error: { code: 'policy_violation', param } });
    expect(moved).toEqual({});
    await expectOneAudit(id, { status: 400, failure: 'policy', product: 'guarded', user: 'guarded-user' });
  });

  it('passes what the policy does not list: a client tool, and the listed field sent as null', async () => {
    const { id, headers } = rid('msg-allowed');
    const tools = [{ name: 'get_weather', input_schema: { type: 'object' as const, properties: {} } }];
    const { moved } = await counting(() =>
      gw
        .anthropic(guarded)
        .messages.create({ ...ask, tools, service_tier: null } as unknown as Anthropic.MessageCreateParamsNonStreaming, { headers }),
    );
    expect(moved).toEqual({ 'anthropic.messages': 1 });
    await expectOneAudit(id, { status: 200, failure: null, product: 'guarded' });
  });

  it('refuses a listed anthropic-beta feature (refused_betas) before any upstream call, and passes the others on', async () => {
    const { id, headers } = rid('msg-beta-refused');
    const { result: error, moved } = await counting(() =>
      sdkError(
        gw
          .anthropic(guarded)
          .messages.create(ask, { headers: { ...headers, 'anthropic-beta': 'interleaved-thinking-2025-05-14,context-1m-2025-08-07' } }),
      ),
    );
    expect(error.status).toBe(400);
    expect(error.error).toMatchObject({ type: 'error', error: { code: 'policy_violation', param: 'anthropic-beta' } });
    expect(moved).toEqual({});
    await expectOneAudit(id, { status: 400, failure: 'policy', product: 'guarded' });
    const allowed = await counting(() =>
      gw.anthropic(guarded).messages.create(ask, { headers: { 'anthropic-beta': 'interleaved-thinking-2025-05-14' } }),
    );
    expect(allowed.moved).toEqual({ 'anthropic.messages': 1 });
    expect(allowed.after.last['anthropic.messages']?.headers['anthropic-beta']).toBe('interleaved-thinking-2025-05-14');
  });

  it('refuses them on the OpenAI route too, through the OpenAI SDK', async () => {
    const { id, headers } = rid('chat-refused');
    const { result: error, moved } = await counting(() =>
      apiError(
        gw
          .openai(guarded)
          .chat.completions.create({ model: OPENAI_MODEL, messages: [{ role: 'user', content: 'hi' }], service_tier: 'flex' }, { headers }),
      ),
    );
    expect([error.status, error.code, error.param]).toEqual([400, 'policy_violation', 'service_tier']);
    expect(moved).toEqual({});
    await expectOneAudit(id, { status: 400, failure: 'policy', product: 'guarded' });
  });

  it('refuses chat’s web search, asked for by web_search_options rather than a tool, under refused_tools web_search*', async () => {
    const { id, headers } = rid('chat-web-search');
    const { result: error, moved } = await counting(() =>
      apiError(
        gw
          .openai(guarded)
          .chat.completions.create(
            { model: OPENAI_MODEL, messages: [{ role: 'user', content: 'news?' }], web_search_options: {} },
            { headers },
          ),
      ),
    );
    expect([error.status, error.code, error.param]).toEqual([400, 'policy_violation', 'web_search_options']);
    expect(moved).toEqual({});
    await expectOneAudit(id, { status: 400, failure: 'policy', product: 'guarded' });
  });
});

describe('end_user_id: each request names its caller to the provider', () => {
  // As README documents it: the first 32 hex digits of SHA-256 of "<product>\n<user>".
  const expected = createHash('sha256').update('traced\ntraced-user').digest('hex').slice(0, 32);
  let traced: string;
  beforeAll(() => {
    traced = mintToken({ product: 'traced', sub: 'traced-user' });
  });

  it('sends OpenAI safety_identifier on chat and the Responses API, and user on embeddings, replacing what the client claimed', async () => {
    const chat = await counting(() =>
      gw.openai(traced).chat.completions.create({
        model: OPENAI_MODEL,
        messages: [{ role: 'user', content: 'hi' }],
        safety_identifier: 'someone-else',
        user: 'someone-else',
      }),
    );
    expect(chat.after.last['openai.chat']?.body).toMatchObject({ safety_identifier: expected, user: expected });
    const responses = await counting(() => gw.openai(traced).responses.create({ model: OPENAI_MODEL, input: 'hi' }));
    expect(responses.after.last['openai.responses']?.body).toMatchObject({ safety_identifier: expected });
    // Embeddings name the caller in OpenAI's `user`, the client's own value replaced.
    const embedded = await counting(() =>
      gw.openai(traced).embeddings.create({ model: OPENAI_EMBEDDING_MODEL, input: 'hi', user: 'ceo@example.com' }),
    );
    expect(embedded.after.last['openai.embeddings']?.body).toMatchObject({ user: expected });
    // Off for other products: their bodies go as the client sent them.
    const plain = await counting(() =>
      gw.openai(token).chat.completions.create({ model: OPENAI_MODEL, messages: [{ role: 'user', content: 'hi' }] }),
    );
    expect(plain.after.last['openai.chat']?.body).not.toHaveProperty('safety_identifier');
  });

  it('sends Anthropic metadata.user_id on /v1/messages and on chat translated for Claude', async () => {
    const { id, headers } = rid('msg-traced');
    const messages = await counting(() =>
      gw
        .anthropic(traced)
        .messages.create(
          { model: ANTHROPIC_MODEL, max_tokens: 16, messages: [{ role: 'user', content: 'hi' }], metadata: { user_id: 'spoofed' } },
          { headers },
        ),
    );
    expect(messages.after.last['anthropic.messages']?.body).toMatchObject({ metadata: { user_id: expected } });
    await expectOneAudit(id, { status: 200, product: 'traced', user: 'traced-user' });
    const chat = await counting(() =>
      gw.openai(traced).chat.completions.create({ model: ANTHROPIC_MODEL, messages: [{ role: 'user', content: 'hi' }] }),
    );
    expect(chat.after.last['anthropic.messages']?.body).toMatchObject({ metadata: { user_id: expected } });
  });
});

describe('what Claude Code sends', () => {
  // Claude Code 2.1 on Opus 4.8 (its default model): the request it sends, trimmed to one tool.
  const OPUS_48 = 'claude-opus-4-8';
  const BETAS = [
    'claude-code-20250219',
    'interleaved-thinking-2025-05-14',
    'thinking-token-count-2026-05-13',
    'context-management-2025-06-27',
    'prompt-caching-scope-2026-01-05',
    'mid-conversation-system-2026-04-07',
    'effort-2025-11-24',
  ];
  const claudeCodeBody = (model: string) => ({
    model,
    max_tokens: 2048,
    system: [
      { type: 'text' as const, text: 'x-anthropic-billing-header: cc_version=2.1.197; cc_entrypoint=sdk-cli;' },
      { type: 'text' as const, text: 'You are a Claude agent.', cache_control: { type: 'ephemeral' as const } },
    ],
    tools: [
      {
        name: 'Bash',
        description: 'Runs a command',
        input_schema: { type: 'object' as const, properties: { command: { type: 'string' } } },
      },
    ],
    metadata: { user_id: JSON.stringify({ device_id: 'd', account_uuid: '', session_id: 's' }) },
    thinking: { type: 'adaptive' as const },
    output_config: { effort: 'high' as const },
    context_management: { edits: [{ type: 'clear_thinking_20251015' as const, keep: 'all' as const }] },
    messages: [
      {
        role: 'user' as const,
        content: [{ type: 'text' as const, text: 'List the files [mock tool=Bash]', cache_control: { type: 'ephemeral' as const } }],
      },
      // A mid-conversation system message (Opus 4.8 and later): Claude Code lists its agent types there.
      { role: 'system' as const, content: 'Available agent types for the Agent tool: ...' },
    ],
  });
  let claudesToken: string;
  beforeAll(() => {
    claudesToken = mintToken({ product: 'claudes', sub: 'claude-coder' });
  });

  it('passes a mid-conversation system message, its betas and its fields through to Opus 4.8, streamed, billed and audited', async () => {
    const { id, headers } = rid('cc-system-message');
    const {
      result: message,
      moved,
      after,
    } = await counting(() =>
      gw
        .anthropic(claudesToken, { bearer: true })
        .beta.messages.stream({ ...claudeCodeBody(OPUS_48), betas: BETAS }, { headers })
        .finalMessage(),
    );
    expect(message.stop_reason).toBe('tool_use');
    expect(message.content.map((block) => block.type)).toEqual(['thinking', 'tool_use']);
    expect(moved).toEqual({ 'anthropic.messages': 1 });
    const upstream = after.last['anthropic.messages'];
    expect(upstream?.url).toBe('/v1/messages');
    expect(upstream?.headers['anthropic-beta']).toBe(BETAS.join(','));
    expect(upstream?.headers['x-api-key']).toBe('sk-ant-mock-prov');
    expect(upstream?.headers.authorization).toBeUndefined();
    const { stream: _stream, ...sent } = upstream?.body as Record<string, unknown>;
    expect(sent).toEqual(claudeCodeBody(OPUS_48));
    await expectOneAudit(id, {
      status: 200,
      failure: null,
      product: 'claudes',
      user: 'claude-coder',
      model: OPUS_48,
      stream: true,
      tokens_in: billed(message.usage),
      tokens_out: message.usage.output_tokens,
    });
  });

  it('counts the tokens of the same prompt', async () => {
    const { id, headers } = rid('cc-system-count');
    const { messages, system, tools, thinking } = claudeCodeBody(OPUS_48);
    const { result: counted, moved } = await counting(() =>
      gw
        .anthropic(claudesToken)
        .beta.messages.countTokens({ model: OPUS_48, messages, system, tools, thinking, betas: BETAS }, { headers }),
    );
    expect(counted.input_tokens).toBeGreaterThan(0);
    expect(moved).toEqual({ 'anthropic.countTokens': 1 });
    await expectOneAudit(id, { status: 200, failure: null, product: 'claudes', model: OPUS_48 });
  });

  it('leaves a model that takes no system message to Anthropic, whose refusal comes back as 400 upstream_bad_request', async () => {
    const { id, headers } = rid('cc-system-old-model');
    const { messages } = claudeCodeBody(OPUS_48);
    const { result: error, moved } = await counting(() =>
      sdkError(gw.anthropic(claudesToken).beta.messages.create({ model: 'claude-sonnet-4-5', max_tokens: 64, messages }, { headers })),
    );
    expect(error.status).toBe(400);
    expect(error.error).toMatchObject({ type: 'error', error: { type: 'invalid_request_error', code: 'upstream_bad_request' } });
    expect(moved).toEqual({ 'anthropic.messages': 1 });
    await expectOneAudit(id, { status: 400, failure: 'upstream', product: 'claudes', attempts: 1 });
  });
});

describe('Anthropic server-held threads (`thread`, the message-threads beta the SDK’s tool runner uses)', () => {
  const betas: Anthropic.Beta.AnthropicBeta[] = ['message-threads-2026-08-12'];
  const client = (user: string): Anthropic => gw.anthropic(mintToken({ product: 'prov', sub: user }));

  it('continues a thread only for the user who made it: another user of the product gets 404 thread_not_found, nothing sent upstream', async () => {
    const alice = client('thread-alice');
    const bob = client('thread-bob');
    const first = rid('thread-create');
    const created = await counting(() =>
      alice.beta.messages.create(
        {
          model: ANTHROPIC_MODEL,
          max_tokens: 64,
          messages: [{ role: 'user', content: 'Remember pineapple' }],
          thread: { type: 'create' },
          betas,
        },
        { headers: first.headers },
      ),
    );
    expect(created.moved).toEqual({ 'anthropic.messages': 1 });
    expect(created.after.last['anthropic.messages']?.body).toMatchObject({ thread: { type: 'create' } });
    await expectOneAudit(first.id, { status: 200, failure: null, user: 'thread-alice' });
    const thread = { type: 'continue' as const, previous_message_id: created.result.id };

    // Another user of the same product, who has the id: refused before any upstream call, as Anthropic
    // refuses a thread it does not hold (the SDK's tool runner then replays under a thread of its own).
    const stolen = rid('thread-other-user');
    const refused = await counting(() =>
      sdkError(
        bob.beta.messages.create(
          { model: ANTHROPIC_MODEL, max_tokens: 64, messages: [{ role: 'user', content: 'What did I say?' }], thread, betas },
          { headers: stolen.headers },
        ),
      ),
    );
    expect(refused.result.status).toBe(404);
    expect(refused.result.errorCode).toBe('thread_not_found');
    expect(refused.result.error).toMatchObject({
      type: 'error',
      error: { type: 'not_found_error', code: 'thread_not_found', param: 'thread.previous_message_id' },
    });
    expect(refused.moved).toEqual({});
    await expectOneAudit(stolen.id, { status: 404, failure: 'not_found', user: 'thread-bob' });

    // A count of the continuation (the SDK's types have no thread there; a client may send one) would read the thread too.
    const count = rid('thread-count-other-user');
    const countParams = { model: ANTHROPIC_MODEL, messages: [{ role: 'user', content: 'What did I say?' }], thread, betas };
    const uncounted = await counting(() =>
      sdkError(bob.beta.messages.countTokens(countParams as Anthropic.Beta.MessageCountTokensParams, { headers: count.headers })),
    );
    expect(uncounted.result.status).toBe(404);
    expect(uncounted.result.errorCode).toBe('thread_not_found');
    expect(uncounted.moved).toEqual({});
    await expectOneAudit(count.id, { status: 404, failure: 'not_found', user: 'thread-bob' });

    // Its owner continues it: only the new turn goes upstream, with the thread.
    const next = rid('thread-continue');
    const continued = await counting(() =>
      alice.beta.messages.create(
        { model: ANTHROPIC_MODEL, max_tokens: 64, messages: [{ role: 'user', content: 'And now?' }], thread, betas },
        { headers: next.headers },
      ),
    );
    expect(continued.moved).toEqual({ 'anthropic.messages': 1 });
    expect(continued.after.last['anthropic.messages']?.body).toMatchObject({ messages: [{ role: 'user', content: 'And now?' }], thread });
    await expectOneAudit(next.id, { status: 200, failure: null, user: 'thread-alice' });
  });

  it('forgets a thread Anthropic no longer holds (its 404 thread_not_found), and answers the next continuation itself, nothing sent', async () => {
    const alice = client('thread-expired');
    const created = await alice.beta.messages.create({
      model: ANTHROPIC_MODEL,
      max_tokens: 64,
      messages: [{ role: 'user', content: 'Short-lived' }],
      thread: { type: 'create' },
      betas,
    });
    // Expired at Anthropic.
    expect((await fetch(`${mock.url}/__mock/anthropic/threads/${created.id}`, { method: 'DELETE' })).status).toBe(200);
    const thread = { type: 'continue' as const, previous_message_id: created.id };
    const params = {
      model: ANTHROPIC_MODEL,
      max_tokens: 64,
      messages: [{ role: 'user' as const, content: 'Still there?' }],
      thread,
      betas,
    };
    const first = rid('thread-expired-upstream');
    const gone = await counting(() => sdkError(alice.beta.messages.create(params, { headers: first.headers })));
    expect(gone.result.status).toBe(404);
    expect(gone.result.errorCode).toBe('thread_not_found');
    expect(gone.moved).toEqual({ 'anthropic.messages': 1 });
    await expectOneAudit(first.id, { status: 404, failure: 'not_found', user: 'thread-expired' });
    const second = rid('thread-expired-forgotten');
    const forgotten = await counting(() => sdkError(alice.beta.messages.create(params, { headers: second.headers })));
    expect(forgotten.result.status).toBe(404);
    expect(forgotten.result.errorCode).toBe('thread_not_found');
    expect(forgotten.moved).toEqual({});
    await expectOneAudit(second.id, { status: 404, failure: 'not_found' });
  });

  it('runs the SDK’s tool runner, which threads by default: the second turn sends only the tool result and is answered in context', async () => {
    const tool = betaTool({
      name: 'get_weather',
      description: 'The weather in a city',
      inputSchema: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] },
      run: () => '21C',
    });
    const {
      result: turns,
      moved,
      after,
    } = await counting(async () => {
      const out: Anthropic.Beta.BetaMessage[] = [];
      const runner = client('thread-runner').beta.messages.toolRunner({
        model: ANTHROPIC_MODEL,
        max_tokens: 256,
        messages: [{ role: 'user', content: 'Weather in Paris [mock tool=get_weather]' }],
        tools: [tool],
      });
      for await (const message of runner) out.push(message);
      return out;
    });
    expect(turns.map((t) => t.stop_reason)).toEqual(['tool_use', 'end_turn']);
    // The mock answers the whole conversation it holds: the user's question, not the tool's result.
    expect(turns[1].content).toEqual([{ type: 'text', text: mockReply('anthropic', 'Weather in Paris') }]);
    expect(moved).toEqual({ 'anthropic.messages': 2 });
    expect(after.last['anthropic.messages']?.body).toMatchObject({
      messages: [{ role: 'user', content: [{ type: 'tool_result', content: '21C' }] }],
      thread: { type: 'continue', previous_message_id: turns[0].id },
    });
  });

  it('records a streamed answer’s thread as its user’s, and passes Anthropic’s own thread refusals on with their error_code', async () => {
    const alice = client('thread-streamer');
    const first = await alice.beta.messages
      .stream({ model: ANTHROPIC_MODEL, max_tokens: 64, messages: [{ role: 'user', content: 'Hello' }], thread: { type: 'create' }, betas })
      .finalMessage();
    const thread = { type: 'continue' as const, previous_message_id: first.id };
    const again = { model: ANTHROPIC_MODEL, max_tokens: 64, messages: [{ role: 'user' as const, content: 'Again' }], thread, betas };
    const continued = await counting(() => alice.beta.messages.create(again));
    expect(continued.moved).toEqual({ 'anthropic.messages': 1 });
    expect(textOf(continued.result as Anthropic.Message)).toBe(mockReply('anthropic', 'Again'));

    // Each answer can be continued once: Anthropic's 400 comes back with its error_code, which the
    // SDK recovers from (it replays the conversation under a new thread).
    const twice = rid('thread-continued-twice');
    const refused = await counting(() => sdkError(alice.beta.messages.create(again, { headers: twice.headers })));
    expect(refused.result.status).toBe(400);
    expect(refused.result.errorCode).toBe('thread_already_continued');
    expect(refused.moved).toEqual({ 'anthropic.messages': 1 });
    await expectOneAudit(twice.id, { status: 400, failure: 'upstream', user: 'thread-streamer' });
  });

  it.each([
    ['no previous_message_id', { type: 'continue' }, 'thread.previous_message_id'],
    ['an id that is no id', { type: 'continue', previous_message_id: 'msg with spaces' }, 'thread.previous_message_id'],
    ['a type Anthropic does not have', { type: 'fork' }, 'thread'],
    ['a string', 'create', 'thread'],
  ])('refuses a thread with %s (400 naming the field), without calling any upstream', async (_what, thread, param) => {
    const bad = rid('thread-malformed');
    const { result: error, moved } = await counting(() =>
      sdkError(
        client('thread-alice').messages.create(
          {
            model: ANTHROPIC_MODEL,
            max_tokens: 64,
            messages: [{ role: 'user', content: 'Hi' }],
            ...({ thread } as Record<string, unknown>),
          } as Anthropic.MessageCreateParamsNonStreaming,
          { headers: bad.headers },
        ),
      ),
    );
    expect(error.status).toBe(400);
    expect(error.error).toMatchObject({ type: 'error', error: { code: 'invalid_request', param } });
    expect(moved).toEqual({});
    await expectOneAudit(bad.id, { status: 400, failure: 'bad_request' });
  });
});

describe('Anthropic cache diagnostics (`diagnostics.previous_message_id`, the cache-diagnosis beta)', () => {
  const beta = { 'anthropic-beta': 'cache-diagnosis-2026-04-07' };
  const client = (user: string): Anthropic => gw.anthropic(mintToken({ product: 'prov', sub: user }));
  const ask = (previous: string | null, extra: Record<string, unknown> = {}): Anthropic.MessageCreateParamsNonStreaming =>
    ({
      model: ANTHROPIC_MODEL,
      max_tokens: 64,
      messages: [{ role: 'user', content: 'Summarise section 1' }],
      diagnostics: { previous_message_id: previous },
      ...extra,
    }) as never;

  it.each([false, true])(
    'compares a request with its own user’s earlier answer only: another user of the product gets 400, nothing sent upstream (first answer streamed: %s)',
    async (stream) => {
      const alice = client(`diag-alice-${stream}`);
      const bob = client(`diag-bob-${stream}`);
      // The first turn opts in (null); Anthropic fingerprints it under the answer's id.
      const first = stream
        ? await alice.messages.stream(ask(null), { headers: beta }).finalMessage()
        : await alice.messages.create(ask(null), { headers: beta });
      const own = await counting(() => alice.messages.create(ask(first.id), { headers: beta }));
      expect(own.moved).toEqual({ 'anthropic.messages': 1 });
      expect(own.after.last['anthropic.messages']?.body).toMatchObject({ diagnostics: { previous_message_id: first.id } });

      // Another user who has the id would learn, prefix by prefix, whether their prompt matches alice's.
      const probe = rid('diag-other-user');
      const refused = await counting(() => sdkError(bob.messages.create(ask(first.id), { headers: { ...beta, ...probe.headers } })));
      expect(refused.result.status).toBe(400);
      expect(refused.result.error).toMatchObject({
        type: 'error',
        error: { code: 'invalid_request', param: 'diagnostics.previous_message_id' },
      });
      expect(refused.moved).toEqual({});
      await expectOneAudit(probe.id, { status: 400, failure: 'bad_request', user: `diag-bob-${stream}` });
      // Nor through the count route.
      const counted = await counting(() =>
        sdkError(bob.messages.countTokens(ask(first.id) as unknown as Anthropic.MessageCountTokensParams, { headers: beta })),
      );
      expect(counted.result.status).toBe(400);
      expect(counted.moved).toEqual({});
    },
  );

  it('compares with a thread answer of the same user, and not with an answer sent without the beta (Anthropic kept no fingerprint of it)', async () => {
    const carol = client('diag-carol');
    const plain = await carol.messages.create(ask(null, { diagnostics: undefined }));
    const unknown = rid('diag-unfingerprinted');
    const refused = await counting(() => sdkError(carol.messages.create(ask(plain.id), { headers: { ...beta, ...unknown.headers } })));
    expect(refused.result.status).toBe(400);
    expect(refused.moved).toEqual({});
    await expectOneAudit(unknown.id, { status: 400, failure: 'bad_request' });

    const threaded = await carol.beta.messages.create({
      model: ANTHROPIC_MODEL,
      max_tokens: 64,
      messages: [{ role: 'user', content: 'Hello' }],
      thread: { type: 'create' },
      betas: ['message-threads-2026-08-12'],
    });
    const compared = await counting(() => carol.messages.create(ask(threaded.id), { headers: beta }));
    expect(compared.moved).toEqual({ 'anthropic.messages': 1 });
  });

  it.each([
    ['a string', 'msg_1', 'diagnostics'],
    ['an id that is no id', { previous_message_id: 'not an id' }, 'diagnostics.previous_message_id'],
    ['a number as the id', { previous_message_id: 7 }, 'diagnostics.previous_message_id'],
  ])('refuses diagnostics as %s (400 naming the field), without calling any upstream', async (_what, diagnostics, param) => {
    const bad = rid('diag-malformed');
    const { result: error, moved } = await counting(() =>
      sdkError(client('diag-dan').messages.create(ask(null, { diagnostics }), { headers: { ...beta, ...bad.headers } })),
    );
    expect(error.status).toBe(400);
    expect(error.error).toMatchObject({ type: 'error', error: { code: 'invalid_request', param } });
    expect(moved).toEqual({});
    await expectOneAudit(bad.id, { status: 400, failure: 'bad_request' });
  });
});

describe('Anthropic code execution containers (`container`, reused by id)', () => {
  const codeTool = { type: 'code_execution_20250825', name: 'code_execution' } as unknown as Anthropic.ToolUnion;
  const ask = (content: string, extra: Record<string, unknown> = {}): Anthropic.MessageCreateParamsNonStreaming => ({
    model: ANTHROPIC_MODEL,
    max_tokens: 64,
    messages: [{ role: 'user', content }],
    tools: [codeTool],
    ...extra,
  });
  const containerIdOf = (message: unknown): string => (message as { container: { id: string } }).container.id;

  it('lets only the user whose answer ran in a container reuse it: another user of the product gets 404, nothing sent upstream', async () => {
    const alice = gw.anthropic(mintToken({ product: 'prov', sub: 'box-alice' }));
    const bob = gw.anthropic(mintToken({ product: 'prov', sub: 'box-bob' }));
    const first = await alice.messages.create(ask('Write a file'));
    const container = containerIdOf(first);
    expect(container).toMatch(/^container_mock/);

    for (const named of [container, { id: container }]) {
      const stolen = rid('container-other-user');
      const refused = await counting(() =>
        sdkError(bob.messages.create(ask('Read the file', { container: named }), { headers: stolen.headers })),
      );
      expect(refused.result.status).toBe(404);
      expect(refused.result.error).toMatchObject({
        type: 'error',
        error: { type: 'not_found_error', code: 'container_not_found', param: typeof named === 'string' ? 'container' : 'container.id' },
      });
      expect(refused.moved).toEqual({});
      await expectOneAudit(stolen.id, { status: 404, failure: 'not_found', user: 'box-bob' });
    }
    // Counting tokens with it reads nothing of the container, but is refused alike.
    const counted = await counting(() =>
      sdkError(bob.messages.countTokens({ model: ANTHROPIC_MODEL, messages: [{ role: 'user', content: 'x' }], container } as never)),
    );
    expect(counted.result.status).toBe(404);
    expect(counted.moved).toEqual({});

    // Its user reuses it, plain and streamed; a streamed answer's container (in message_delta) is recorded too.
    const again = await counting(() => alice.messages.create(ask('Read the file', { container })));
    expect(again.moved).toEqual({ 'anthropic.messages': 1 });
    expect(again.after.last['anthropic.messages']?.body).toMatchObject({ container });
    const streamed: string[] = [];
    const stream = bob.messages.stream({ ...ask('Fresh box for bob'), stream: true });
    stream.on('streamEvent', (event) => {
      const delta = (event as { type: string; delta?: { container?: { id: string } } }).delta;
      if (event.type === 'message_delta' && delta?.container) streamed.push(delta.container.id);
    });
    await stream.finalMessage();
    expect(streamed).toHaveLength(1);
    const reuse = await counting(() => bob.messages.create(ask('Back in my box', { container: streamed[0] })));
    expect(reuse.moved).toEqual({ 'anthropic.messages': 1 });
  });

  it('refuses a container that is neither an id nor an object with one (400 naming it), without calling any upstream', async () => {
    const bad = rid('container-malformed');
    const { result: error, moved } = await counting(() =>
      sdkError(gw.anthropic(token).messages.create(ask('Hi', { container: 42 }), { headers: bad.headers })),
    );
    expect(error.status).toBe(400);
    expect(error.error).toMatchObject({ error: { code: 'invalid_request', param: 'container' } });
    expect(moved).toEqual({});
    await expectOneAudit(bad.id, { status: 400, failure: 'bad_request' });
  });
});

describe('Files API ids (a file kept by Anthropic under the product’s key)', () => {
  it.each([
    ['a document', { type: 'document', source: { type: 'file', file_id: 'file_011someone' } }, 'messages[0].content[0].source.file_id'],
    ['an image', { type: 'image', source: { type: 'file', file_id: 'file_011someone' } }, 'messages[0].content[0].source.file_id'],
    ['a container upload', { type: 'container_upload', file_id: 'file_011someone' }, 'messages[0].content[0].file_id'],
    [
      'a document in a tool result',
      {
        type: 'tool_result',
        tool_use_id: 'toolu_1',
        content: [{ type: 'document', source: { type: 'file', file_id: 'file_011someone' } }],
      },
      'messages[0].content[0].content[0].source.file_id',
    ],
    [
      'an image inside a document made of content blocks',
      {
        type: 'document',
        source: { type: 'content', content: [{ type: 'image', source: { type: 'file', file_id: 'file_011someone' } }] },
      },
      'messages[0].content[0].source.content[0].source.file_id',
    ],
  ])('refuses %s named by its file id, 400 naming it, before any upstream call (count_tokens too)', async (_what, block, param) => {
    const messages = [{ role: 'user', content: [block, { type: 'text', text: 'What is in it?' }] }];
    const bad = rid('file-id');
    const { result: error, moved } = await counting(() =>
      sdkError(
        gw.anthropic(token).messages.create({ model: ANTHROPIC_MODEL, max_tokens: 64, messages } as never, { headers: bad.headers }),
      ),
    );
    expect(error.status).toBe(400);
    expect(error.error).toMatchObject({ error: { code: 'unsupported_parameter', param } });
    expect(moved).toEqual({});
    await expectOneAudit(bad.id, { status: 400, failure: 'bad_request' });
    const counted = await counting(() => sdkError(gw.anthropic(token).messages.countTokens({ model: ANTHROPIC_MODEL, messages } as never)));
    expect(counted.result.status).toBe(400);
    expect(counted.moved).toEqual({});
  });
});

describe('Anthropic’s server-side fallbacks (`fallbacks`)', () => {
  const ask = (fallbacks: unknown): Anthropic.MessageCreateParamsNonStreaming =>
    ({ model: ANTHROPIC_MODEL, max_tokens: 64, messages: [{ role: 'user', content: 'Hi' }], fallbacks }) as never;

  it.each([
    ['a model the product does not serve', [{ model: 'claude-opus-4-8' }], 403, 'model_not_allowed', 'fallbacks[0].model'],
    [
      'a model another provider serves',
      [{ model: ANTHROPIC_MODEL }, { model: OPENAI_MODEL }],
      403,
      'model_not_allowed',
      'fallbacks[1].model',
    ],
    ['Anthropic’s own choice ("default")', 'default', 400, 'unsupported_parameter', 'fallbacks'],
    ['an entry without a model', [{ max_tokens: 10 }], 400, 'invalid_request', 'fallbacks[0].model'],
    // Its own overrides would skip the parameter policy (a cap of 4096 here) and the reservation.
    [
      'an entry with its own max_tokens',
      [{ model: ANTHROPIC_MODEL, max_tokens: 200_000 }],
      400,
      'unsupported_parameter',
      'fallbacks[0].max_tokens',
    ],
  ])(
    'refuses %s before any upstream call: the answer would come from a model keygate did not check',
    async (_what, fallbacks, status, code, param) => {
      const bad = rid('server-fallbacks');
      const { result: error, moved } = await counting(() =>
        sdkError(gw.anthropic(token).messages.create(ask(fallbacks), { headers: bad.headers })),
      );
      expect(error.status).toBe(status);
      expect(error.error).toMatchObject({ error: { code, param } });
      expect(moved).toEqual({});
      await expectOneAudit(bad.id, { status, failure: status === 403 ? 'forbidden' : 'bad_request' });
    },
  );

  it('passes fallbacks to the product’s own Claude models on', async () => {
    // The product serves this one Claude model at the mock: the fallback the client lists.
    const fallbacks = [{ model: ANTHROPIC_MODEL }];
    const { moved, after } = await counting(() => gw.anthropic(token).messages.create(ask(fallbacks)));
    expect(moved).toEqual({ 'anthropic.messages': 1 });
    expect(after.last['anthropic.messages']?.body).toMatchObject({ fallbacks });
  });

  it.each([false, true])(
    'audits and prices an answer one of them gave as that model’s, not the one asked for (streamed: %s)',
    async (stream) => {
      // Product claudes serves both at the mock; the policy file prices the fallback, not the model asked for.
      const [, asked] = CLAUDE_LIST;
      const { id, headers } = rid('server-fallback-answered');
      const client = gw.anthropic(mintToken({ product: 'claudes', sub: 'fallback-user' }));
      const body = {
        model: asked,
        max_tokens: 64,
        messages: [{ role: 'user', content: 'Hi [mock decline=1]' }],
        fallbacks: [{ model: ANTHROPIC_MODEL }],
      } as never as Anthropic.MessageCreateParamsNonStreaming;
      let answered: string;
      if (stream) {
        const events = await client.messages.create({ ...body, stream: true }, { headers });
        answered = '';
        for await (const event of events) if (event.type === 'message_start') answered = event.message.model;
      } else answered = (await client.messages.create(body, { headers })).model;
      expect(answered).toBe(ANTHROPIC_MODEL);
      const record = await expectOneAudit(id, {
        status: 200,
        failure: null,
        provider: 'anthropic',
        model: ANTHROPIC_MODEL,
        requested_model: asked,
        model_label: ANTHROPIC_MODEL,
      });
      expect(record.cost_usd).toBeGreaterThan(0);
    },
  );
});

describe('POST /v1/messages/count_tokens', () => {
  const body = { model: ANTHROPIC_MODEL, messages: [{ role: 'user' as const, content: 'How many tokens is this?' }] };

  it('answers Anthropic’s count through the SDK, the same the upstream reports for the prompt, audited and not billed', async () => {
    const { id, headers } = rid('msg-count');
    const { result: counted, moved } = await counting(() => gw.anthropic(token).messages.countTokens(body, { headers }));
    expect(moved).toEqual({ 'anthropic.countTokens': 1 });
    expect(counted._request_id).toMatch(/^req_mock/);
    const message = await gw.anthropic(token).messages.create({ ...body, max_tokens: 16 });
    expect(counted.input_tokens).toBe(message.usage.input_tokens);
    await expectOneAudit(id, {
      status: 200,
      failure: null,
      provider: 'anthropic',
      model: ANTHROPIC_MODEL,
      tokens_in: null,
      tokens_out: null,
    });
  });

  it('is outside the daily request caps (Claude Code sends them in bursts): no daily rate-limit headers, unlike a message', async () => {
    const send = (path: string, extra: Record<string, unknown> = {}): Promise<Response> =>
      gw.fetch(path, {
        method: 'POST',
        headers: { 'x-api-key': token, 'content-type': 'application/json' },
        body: JSON.stringify({ ...body, ...extra }),
      });
    const count = await send('/v1/messages/count_tokens');
    expect(count.status).toBe(200);
    expect(await count.json()).toEqual({ input_tokens: expect.any(Number) });
    expect(count.headers.get('x-ratelimit-limit-requests')).toBeNull();
    const message = await send('/v1/messages', { max_tokens: 16 });
    expect(message.status).toBe(200);
    await message.arrayBuffer();
    expect(message.headers.get('x-ratelimit-limit-requests')).not.toBeNull();
  });

  it('refuses a blocked caller (403 blocked) without calling any upstream, though it counts against no daily cap', async () => {
    const admin = mintToken({ product: 'prov', sub: 'ops', extraClaims: { scope: 'keygate.admin' } });
    const blocked = await gw.fetch('/admin/blocks', {
      method: 'POST',
      headers: { authorization: `Bearer ${admin}`, 'content-type': 'application/json' },
      body: JSON.stringify({ product: 'prov', user: 'count-blocked', reason: 'e2e' }),
    });
    expect(blocked.status).toBe(201);
    const { id, headers } = rid('msg-count-blocked');
    const { result: error, moved } = await counting(() =>
      sdkError(gw.anthropic(mintToken({ product: 'prov', sub: 'count-blocked' })).messages.countTokens(body, { headers })),
    );
    expect(error).toBeInstanceOf(Anthropic.PermissionDeniedError);
    expect(error.error).toMatchObject({ type: 'error', error: { code: 'blocked' } });
    expect(moved).toEqual({});
    await expectOneAudit(id, { status: 403, failure: 'blocked', user: 'count-blocked' });
  });

  it('refuses a model another provider serves, in Anthropic’s envelope, without calling any upstream', async () => {
    const { id, headers } = rid('msg-count-gpt');
    const { result: error, moved } = await counting(() =>
      sdkError(gw.anthropic(token).messages.countTokens({ ...body, model: OPENAI_MODEL }, { headers })),
    );
    expect(error.status).toBe(400);
    expect(error.error).toMatchObject({ type: 'error', error: { code: 'unsupported_parameter', param: 'model' } });
    expect(moved).toEqual({});
    await expectOneAudit(id, { status: 400, failure: 'bad_request' });
  });
});

describe("GET /v1/models with the Anthropic SDK: the Claude models, in Anthropic's format", () => {
  const claudes = (): Anthropic => gw.anthropic(mintToken({ product: 'claudes', sub: 'lister' }));

  it('lists the product’s Claude models by name, none of another provider’s, without calling any upstream, audited', async () => {
    const { id, headers } = rid('anth-models');
    const { result: page, moved } = await counting(() => claudes().models.list({}, { headers }));
    expect(page.data.map((m) => m.id)).toEqual([...CLAUDE_LIST]);
    expect(page.data[1]).toEqual({
      type: 'model',
      id: 'claude-sonnet-4-5',
      display_name: 'claude-sonnet-4-5',
      created_at: '1970-01-01T00:00:00Z',
      lifecycle: 'active',
      capabilities: null,
      line: null,
      max_input_tokens: null,
      max_tokens: null,
      deprecated_at: null,
      retires_at: null,
    });
    expect(page).toMatchObject({ has_more: false, first_id: CLAUDE_LIST[0], last_id: CLAUDE_LIST[2] });
    expect(moved).toEqual({});
    await expectOneAudit(id, { status: 200, failure: null, product: 'claudes', user: 'lister', method: 'GET', path: '/v1/models' });
  });

  it('pages as Anthropic does: limit, after_id, before_id, and the SDK’s auto-paging', async () => {
    const first = await claudes().models.list({ limit: 2 });
    expect(first.data.map((m) => m.id)).toEqual(CLAUDE_LIST.slice(0, 2));
    expect(first).toMatchObject({ has_more: true, first_id: CLAUDE_LIST[0], last_id: CLAUDE_LIST[1] });
    const after = await claudes().models.list({ limit: 2, after_id: CLAUDE_LIST[1] });
    expect(after.data.map((m) => m.id)).toEqual([CLAUDE_LIST[2]]);
    expect(after.has_more).toBe(false);
    const before = await claudes().models.list({ limit: 1, before_id: CLAUDE_LIST[2] });
    expect(before.data.map((m) => m.id)).toEqual([CLAUDE_LIST[1]]);
    expect(before.has_more).toBe(true);
    const all: string[] = [];
    for await (const model of claudes().models.list({ limit: 1 })) all.push(model.id);
    expect(all).toEqual([...CLAUDE_LIST]);
    // Every model a product may use is active: asking only for retired ones lists none.
    expect((await claudes().models.list({ lifecycle: ['retired'] })).data).toEqual([]);
    expect((await claudes().models.list({ lifecycle: ['deprecated', 'active'] })).data).toHaveLength(3);
  });

  it('retrieves a Claude model, also one the product serves through a pattern; the key in x-api-key as in the Authorization header', async () => {
    for (const bearer of [false, true]) {
      const client = gw.anthropic(mintToken({ product: 'claudes', sub: 'lister' }), { bearer });
      expect(await client.models.retrieve('claude-haiku-4-5')).toMatchObject({
        type: 'model',
        id: 'claude-haiku-4-5',
        lifecycle: 'active',
      });
      expect(await client.models.retrieve('claude-opus-4-1')).toMatchObject({ type: 'model', id: 'claude-opus-4-1' });
    }
  });

  it.each([
    [
      'another provider’s model',
      (c: Anthropic, o: { headers: Record<string, string> }) => c.models.retrieve(OPENAI_MODEL, {}, o),
      404,
      'model_not_found',
    ],
    [
      'a model the product may not use',
      (c: Anthropic, o: { headers: Record<string, string> }) => c.models.retrieve('claude-2.1', {}, o),
      404,
      'model_not_found',
    ],
    ['limit 0', (c: Anthropic, o: { headers: Record<string, string> }) => c.models.list({ limit: 0 }, o), 400, 'invalid_request'],
    ['limit 1001', (c: Anthropic, o: { headers: Record<string, string> }) => c.models.list({ limit: 1001 }, o), 400, 'invalid_request'],
    [
      'an after_id not in the list',
      (c: Anthropic, o: { headers: Record<string, string> }) => c.models.list({ after_id: OPENAI_MODEL }, o),
      400,
      'invalid_request',
    ],
    [
      'after_id and before_id together',
      (c: Anthropic, o: { headers: Record<string, string> }) => c.models.list({ after_id: CLAUDE_LIST[0], before_id: CLAUDE_LIST[2] }, o),
      400,
      'invalid_request',
    ],
    [
      'a lifecycle no model has',
      (c: Anthropic, o: { headers: Record<string, string> }) => c.models.list({ lifecycle: ['gone' as 'retired'] }, o),
      400,
      'invalid_request',
    ],
  ])('refuses %s in Anthropic’s envelope, without calling any upstream, audited', async (_what, call, status, code) => {
    const { id, headers } = rid('anth-models-bad');
    const { result: error, moved } = await counting(() => sdkError(call(claudes(), { headers })));
    expect(error.status).toBe(status);
    // Anthropic's error type for the status; keygate's request id in its body and its request-id header (the SDK's requestID).
    const type = status === 404 ? 'not_found_error' : 'invalid_request_error';
    expect(error.error).toMatchObject({ type: 'error', error: { code, type }, request_id: id });
    expect(error.requestID).toBe(id);
    expect(moved).toEqual({});
    await expectOneAudit(id, { status, failure: status === 404 ? 'not_found' : 'bad_request', product: 'claudes' });
  });

  it('refuses a missing token in Anthropic’s envelope (401) and an unknown query parameter (400), and takes the SDKs’ beta=true', async () => {
    const anonymous = await gw.fetch('/v1/models', { headers: { 'anthropic-version': '2023-06-01' } });
    expect(anonymous.status).toBe(401);
    expect(await anonymous.json()).toMatchObject({ type: 'error', error: { code: 'invalid_token', type: 'authentication_error' } });
    expect(anonymous.headers.get('request-id')).toEqual(expect.any(String));
    expect(anonymous.headers.get('request-id')).toBe(anonymous.headers.get('x-request-id'));
    const unknown = await gw.fetch('/v1/models?workspace=1', {
      headers: { 'anthropic-version': '2023-06-01', 'x-api-key': mintToken({ product: 'claudes' }) },
    });
    expect(unknown.status).toBe(400);
    expect(await unknown.json()).toMatchObject({ type: 'error', error: { code: 'invalid_request', param: 'workspace' } });
    // A models path no route takes is refused in the same envelope.
    const nested = await gw.fetch('/v1/models/a/b', {
      headers: { 'anthropic-version': '2023-06-01', 'x-api-key': mintToken({ product: 'claudes' }) },
    });
    expect(nested.status).toBe(404);
    expect(await nested.json()).toMatchObject({ type: 'error', error: { code: 'route_not_found', type: 'not_found_error' } });
    // The Anthropic SDKs' beta.models calls add ?beta=true: taken.
    for (const path of ['/v1/models?beta=true', `/v1/models/${CLAUDE_LIST[1]}?beta=true`]) {
      const beta = await gw.fetch(path, { headers: { 'anthropic-version': '2023-06-01', 'x-api-key': mintToken({ product: 'claudes' }) } });
      expect({ path, status: beta.status, requestId: beta.headers.get('request-id') }).toEqual({
        path,
        status: 200,
        requestId: beta.headers.get('x-request-id'),
      });
      await beta.arrayBuffer();
    }
    // The OpenAI dialect of the same route carries keygate's X-Request-Id only.
    const openai = await gw.fetch('/v1/models', { headers: { authorization: `Bearer ${mintToken({ product: 'claudes' })}` } });
    expect(openai.status).toBe(200);
    expect(openai.headers.get('request-id')).toBeNull();
    await openai.arrayBuffer();
  });

  it('still answers the OpenAI SDK, which sends no anthropic-version, in OpenAI’s format with every provider’s models', async () => {
    const page = await gw.openai(mintToken({ product: 'claudes' })).models.list();
    expect(page.data.map((m) => [m.id, m.owned_by])).toEqual(
      expect.arrayContaining([
        [OPENAI_MODEL, 'openai'],
        [CLAUDE_LIST[1], 'anthropic'],
        [GEMINI_MODEL, 'gemini'],
      ]),
    );
    expect(page.data.every((m) => m.object === 'model')).toBe(true);
  });
});
