import type {
  AnthropicErrorBody,
  AnthropicMessage,
  AnthropicStreamEvent,
  ContentBlockDeltaEvent,
  ContentBlockStartEvent,
  MessageDeltaEvent,
  MessageStartEvent,
} from './anthropic.types';
import { ANTHROPIC_AUTH, parseSse, postJson, readJson, startMock, type RunningMock } from './mock.testing';

const TOOLS = [{ name: 'get_weather', description: 'w', input_schema: { type: 'object', properties: {} } }];
const user = (content: unknown): Record<string, unknown> => ({ role: 'user', content });

function isDelta(e: AnthropicStreamEvent): e is ContentBlockDeltaEvent {
  return e.type === 'content_block_delta';
}

/** Text of a delta event, its partial JSON for tool input, its thinking or its signature. */
function deltaPayload(e: ContentBlockDeltaEvent): string {
  switch (e.delta.type) {
    case 'text_delta':
      return e.delta.text;
    case 'input_json_delta':
      return e.delta.partial_json;
    case 'thinking_delta':
      return e.delta.thinking;
    case 'signature_delta':
      return e.delta.signature;
  }
}

describe('Anthropic wire format', () => {
  let mock: RunningMock;
  beforeAll(async () => {
    mock = await startMock();
  });
  afterAll(() => mock.close());

  const messages = (body: Record<string, unknown>, headers: Record<string, string> = ANTHROPIC_AUTH): Promise<Response> =>
    postJson(mock.base, '/v1/messages', { model: 'claude-sonnet-4-5', max_tokens: 256, ...body }, headers);

  /** Parses the event stream, checking that each SSE `event:` name equals the payload's `type`. */
  const events = async (res: Response): Promise<AnthropicStreamEvent[]> => {
    const raw = await res.text();
    return parseSse(raw).map((e) => {
      const data = JSON.parse(e.data) as AnthropicStreamEvent;
      expect(data.type).toBe(e.event);
      return data;
    });
  };

  it('answers a full message with usage and the echoed model', async () => {
    const res = await messages({ system: 'sys', messages: [user('hello')] });
    expect(res.status).toBe(200);
    expect(res.headers.get('request-id')).toMatch(/^req_/);
    const body = await readJson<AnthropicMessage>(res);
    expect(body).toMatchObject({
      type: 'message',
      role: 'assistant',
      model: 'claude-sonnet-4-5',
      content: [{ type: 'text', text: 'Hello from mock anthropic! You said: hello' }],
      stop_reason: 'end_turn',
      stop_sequence: null,
      usage: { input_tokens: Math.ceil(8 / 4) + 3, output_tokens: Math.ceil('Hello from mock anthropic! You said: hello'.length / 4) },
    });
    expect(body.id).toMatch(/^msg_/);
  });

  it('reads text blocks of the last user message', async () => {
    const body = await readJson<AnthropicMessage>(
      await messages({ messages: [user('old'), { role: 'assistant', content: 'ok' }, user([{ type: 'text', text: 'new one' }])] }),
    );
    expect(body.content[0]).toEqual({ type: 'text', text: 'Hello from mock anthropic! You said: new one' });
  });

  it('streams the full event sequence', async () => {
    const res = await messages({ stream: true, messages: [user('hi [mock chunks=4]')] });
    expect(res.headers.get('content-type')).toMatch(/^text\/event-stream/);
    const evs = await events(res);
    expect(evs.map((e) => e.type)).toEqual([
      'message_start',
      'content_block_start',
      'ping',
      'content_block_delta',
      'content_block_delta',
      'content_block_delta',
      'content_block_delta',
      'content_block_stop',
      'message_delta',
      'message_stop',
    ]);
    const start = (evs[0] as MessageStartEvent).message;
    expect(start).toMatchObject({ type: 'message', role: 'assistant', model: 'claude-sonnet-4-5', content: [], stop_reason: null });
    expect(start.usage.output_tokens).toBe(1);
    expect(start.usage.input_tokens).toBeGreaterThan(0);
    expect(evs[1]).toEqual({ type: 'content_block_start', index: 0, content_block: { type: 'text', text: '' } });
    const deltas = evs.filter(isDelta);
    expect(deltas.every((d) => d.delta.type === 'text_delta')).toBe(true);
    const text = deltas.map(deltaPayload).join('');
    expect(text).toBe('Hello from mock anthropic! You said: hi');
    const messageDelta: MessageDeltaEvent = {
      type: 'message_delta',
      delta: { stop_reason: 'end_turn', stop_sequence: null },
      usage: { output_tokens: Math.ceil(text.length / 4) },
    };
    expect(evs[8]).toEqual(messageDelta);
  });

  it('no_done=1 ends a stream after its message_delta, without message_stop', async () => {
    const evs = await events(await messages({ stream: true, messages: [user('hi [mock no_done=1 chunks=2]')] }));
    expect(evs.map((e) => e.type).slice(-2)).toEqual(['content_block_stop', 'message_delta']);
  });

  it('finish=length reports max_tokens', async () => {
    const body = await readJson<AnthropicMessage>(await messages({ messages: [user('x [mock finish=length]')] }));
    expect(body.stop_reason).toBe('max_tokens');
  });

  it('gives a tool_use block input that follows the tool’s input_schema', async () => {
    const tools = [
      { name: 'lookup', input_schema: { type: 'object', properties: { q: { type: 'string' }, n: { type: 'number' } }, required: ['q'] } },
    ];
    const body = await readJson<AnthropicMessage>(await messages({ tools, messages: [user('cats [mock tool=lookup]')] }));
    expect(body.content).toEqual([{ type: 'tool_use', id: expect.stringMatching(/^toolu_/), name: 'lookup', input: { q: 'cats', n: 0 } }]);
  });

  it('answers tool_use blocks (parallel with tools=2)', async () => {
    const body = await readJson<AnthropicMessage>(await messages({ tools: TOOLS, messages: [user('w [mock tool=get_weather tools=2]')] }));
    expect(body.stop_reason).toBe('tool_use');
    expect(body.content).toHaveLength(2);
    for (const block of body.content) expect(block).toMatchObject({ type: 'tool_use', name: 'get_weather', input: { echo: 'w' } });
    const ids = body.content.map((b) => (b.type === 'tool_use' ? b.id : ''));
    expect(ids[0]).toMatch(/^toolu_/);
    expect(ids[0]).not.toBe(ids[1]);
  });

  it('honours tool_choice {type:"tool"} and answers in text after a tool_result', async () => {
    const forced = await readJson<AnthropicMessage>(
      await messages({ tools: TOOLS, tool_choice: { type: 'tool', name: 'get_weather' }, messages: [user('w')] }),
    );
    expect(forced.content[0]).toMatchObject({ type: 'tool_use', name: 'get_weather' });

    const after = await readJson<AnthropicMessage>(
      await messages({
        tools: TOOLS,
        tool_choice: { type: 'tool', name: 'get_weather' },
        messages: [
          user('w'),
          { role: 'assistant', content: [{ type: 'tool_use', id: 'toolu_1', name: 'get_weather', input: {} }] },
          user([{ type: 'tool_result', tool_use_id: 'toolu_1', content: 'sunny' }]),
        ],
      }),
    );
    expect(after.stop_reason).toBe('end_turn');
    expect(after.content[0]).toEqual({ type: 'text', text: 'Hello from mock anthropic! You said: w' });
  });

  it('bad_usage=1 writes every usage count as a string, plain and streamed', async () => {
    const plain = await readJson<AnthropicMessage>(await messages({ messages: [user('hi [mock bad_usage=1]')] }));
    expect(plain.usage).toMatchObject({ input_tokens: expect.any(String), output_tokens: expect.any(String) });
    const streamed = await events(await messages({ stream: true, messages: [user('hi [mock bad_usage=1 chunks=2]')] }));
    const start = streamed.find((e): e is MessageStartEvent => e.type === 'message_start');
    const delta = streamed.find((e): e is MessageDeltaEvent => e.type === 'message_delta');
    expect(start?.message.usage).toMatchObject({ input_tokens: expect.any(String), output_tokens: '1' });
    expect(delta?.usage).toEqual({ output_tokens: expect.any(String) });
  });

  it('streams tool_use via content_block_start + input_json_delta', async () => {
    const evs = await events(
      await messages({ stream: true, tools: TOOLS, messages: [user('w [mock tool=get_weather tools=2 chunks=2]')] }),
    );
    expect(evs.map((e) => e.type)).toEqual([
      'message_start',
      'content_block_start',
      'ping',
      'content_block_delta',
      'content_block_delta',
      'content_block_stop',
      'content_block_start',
      'content_block_delta',
      'content_block_delta',
      'content_block_stop',
      'message_delta',
      'message_stop',
    ]);
    expect((evs[1] as ContentBlockStartEvent).content_block).toMatchObject({ type: 'tool_use', name: 'get_weather', input: {} });
    expect(evs[6]).toMatchObject({ index: 1, content_block: { type: 'tool_use', name: 'get_weather' } });
    const deltas = evs.filter(isDelta);
    expect(deltas.every((d) => d.delta.type === 'input_json_delta')).toBe(true);
    for (const index of [0, 1]) {
      const json = deltas
        .filter((d) => d.index === index)
        .map(deltaPayload)
        .join('');
      expect(JSON.parse(json)).toEqual({ echo: 'w' });
    }
    expect((evs[10] as MessageDeltaEvent).delta.stop_reason).toBe('tool_use');
  });

  it('answers structured outputs (output_config.format) with JSON text of the schema, plain and streamed', async () => {
    const schema = {
      type: 'object',
      $defs: { Plan: { enum: ['free', 'team'] } },
      properties: {
        email: { type: 'string', format: 'email' },
        plan: { $ref: '#/$defs/Plan' },
        tags: { type: 'array', items: { type: 'string' }, minItems: 1 },
        id: { anyOf: [{ type: 'integer' }, { type: 'string' }] },
      },
      required: ['email', 'plan', 'tags', 'id'],
      additionalProperties: false,
    };
    const expected = { email: 'mock@example.com', plan: 'free', tags: ['mock'], id: 0 };
    const body = { messages: [user('extract')], output_config: { format: { type: 'json_schema', schema } } };
    const plain = await readJson<AnthropicMessage>(await messages(body));
    const block = plain.content[0];
    expect(block.type === 'text' && JSON.parse(block.text)).toEqual(expected);
    const streamed = (await events(await messages({ ...body, stream: true }))).filter(isDelta).map(deltaPayload).join('');
    expect(JSON.parse(streamed)).toEqual(expected);
  });

  it('takes a schema with $schema and default, as the Vercel AI SDK sends it', async () => {
    // @ai-sdk/anthropic 3.0.140, generateObject on claude-sonnet-4-5 (bounds moved into descriptions by the SDK).
    const schema = {
      $schema: 'http://json-schema.org/draft-07/schema#',
      type: 'object',
      properties: {
        name: { type: 'string', default: 'x' },
        age: { type: 'integer', description: 'minimum: 0; maximum: 9007199254740991.' },
        tags: { type: 'array', items: { type: 'string' } },
      },
      additionalProperties: false,
      required: ['name', 'age', 'tags'],
    };
    const res = await messages({ messages: [user('A person')], output_config: { format: { type: 'json_schema', schema } } });
    expect(res.status).toBe(200);
    const block = (await readJson<AnthropicMessage>(res)).content[0];
    expect(block.type === 'text' && JSON.parse(block.text)).toEqual({ name: 'mock', age: 0, tags: [] });
  });

  it.each([
    ['an open object', { type: 'object', properties: {} }, /'additionalProperties' must be explicitly set to false/],
    [
      'a numeric bound',
      { type: 'object', properties: { n: { type: 'integer', minimum: 0 } }, additionalProperties: false },
      /keyword 'minimum' is not supported/,
    ],
    [
      'an untyped node',
      { type: 'object', properties: { x: {} }, additionalProperties: false },
      /properties\.x: Schema must specify a type/,
    ],
  ])('refuses structured outputs with %s, as Claude does', async (_case, schema, message) => {
    const res = await messages({ messages: [user('x')], output_config: { format: { type: 'json_schema', schema } } });
    expect(res.status).toBe(400);
    expect((await readJson<AnthropicErrorBody>(res)).error).toMatchObject({
      type: 'invalid_request_error',
      message: expect.stringMatching(message),
    });
  });

  describe('errors', () => {
    it('401 authentication_error when x-api-key is missing or wrong', async () => {
      const missing = await messages({ messages: [user('x')] }, { 'anthropic-version': '2023-06-01' });
      expect(missing.status).toBe(401);
      expect(await readJson<AnthropicErrorBody>(missing)).toMatchObject({ type: 'error', error: { type: 'authentication_error' } });

      const wrong = await messages({ messages: [user('x')] }, { 'x-api-key': 'sk-ant-real', 'anthropic-version': '2023-06-01' });
      expect(wrong.status).toBe(401);
      expect(await readJson<AnthropicErrorBody>(wrong)).toMatchObject({
        type: 'error',
        error: { type: 'authentication_error', message: 'invalid x-api-key' },
      });
    });

    it('does not accept an OpenAI-style bearer key', async () => {
      const res = await messages({ messages: [user('x')] }, { authorization: 'Bearer sk-ant-mock-1', 'anthropic-version': '2023-06-01' });
      expect(res.status).toBe(401);
      await res.text();
    });

    it('400 invalid_request_error when anthropic-version is absent', async () => {
      const res = await messages({ messages: [user('x')] }, { 'x-api-key': 'sk-ant-mock-1' });
      expect(res.status).toBe(400);
      expect(await readJson<AnthropicErrorBody>(res)).toMatchObject({
        type: 'error',
        error: { type: 'invalid_request_error', message: 'anthropic-version: header is required' },
      });
    });

    it('400 when max_tokens is missing, as the real API requires it', async () => {
      const res = await postJson(mock.base, '/v1/messages', { model: 'claude', messages: [user('x')] }, ANTHROPIC_AUTH);
      expect(res.status).toBe(400);
      expect(await readJson<AnthropicErrorBody>(res)).toMatchObject({
        type: 'error',
        error: { type: 'invalid_request_error', message: 'max_tokens: Field required' },
      });
    });
  });
});
