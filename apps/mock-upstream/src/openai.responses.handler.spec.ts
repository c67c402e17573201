import {
  getStats,
  OPENAI_AUTH,
  parseSse,
  postJson,
  readJson,
  readUntilIdle,
  responsesCalls,
  startMock,
  type RunningMock,
} from './mock.testing';
import type { ResponseObject, ResponseOutputMessage, ResponseStreamEvent, ResponseStreamEventOf } from './openai.responses.types';
import type { ChatCompletion, OpenAIErrorBody } from './openai.types';

const RESPONSES = '/v1/responses';
const TOOLS = [{ type: 'function', name: 'get_weather', description: 'Weather', parameters: { type: 'object', properties: {} } }];
const user = (content: unknown): Record<string, unknown> => ({ role: 'user', content });

/** What the shared token helpers give: ~4 chars a token plus 3 a message. */
const promptTokens = (chars: number, messages: number): number => Math.ceil(chars / 4) + 3 * messages;
const completionTokens = (text: string): number => Math.max(1, Math.ceil(text.length / 4));

const TEXT_EVENTS = ['response.created', 'response.in_progress', 'response.output_item.added', 'response.content_part.added'];
const TEXT_TAIL = ['response.output_text.done', 'response.content_part.done', 'response.output_item.done'];

describe('OpenAI Responses API wire format', () => {
  let mock: RunningMock;
  beforeAll(async () => {
    mock = await startMock();
  });
  afterAll(() => mock.close());

  const { create, plain } = responsesCalls(() => mock.base);

  const messageOf = (r: ResponseObject): ResponseOutputMessage => {
    expect(r.output).toHaveLength(1);
    expect(r.output[0].type).toBe('message');
    return r.output[0] as ResponseOutputMessage;
  };

  /**
   * Parses a Responses stream, asserting the framing every event shares: an
   * `event:` line equal to the data's `type`, and sequence numbers 0, 1, 2...
   */
  const streamEvents = async (body: Record<string, unknown>): Promise<{ events: ResponseStreamEvent[]; raw: string }> => {
    const res = await create({ ...body, stream: true });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/event-stream/);
    expect(res.headers.get('x-request-id')).toMatch(/^req_/);
    const raw = await res.text();
    const sse = parseSse(raw);
    const events = sse.map((e) => JSON.parse(e.data) as ResponseStreamEvent);
    sse.forEach((e, i) => expect(e.event).toBe(events[i].type));
    expect(events.map((e) => e.sequence_number)).toEqual(events.map((_, i) => i));
    expect(raw).not.toContain('[DONE]');
    return { events, raw };
  };

  const deltasOf = (events: ResponseStreamEvent[]): string[] =>
    events.flatMap((e) => (e.type === 'response.output_text.delta' ? [e.delta] : []));

  describe('plain answers', () => {
    it('answers a completed Response with one output_text message and usage', async () => {
      const res = await create({ input: 'hi there' });
      expect(res.status).toBe(200);
      expect(res.headers.get('content-type')).toBe('application/json');
      expect(res.headers.get('x-request-id')).toMatch(/^req_/);
      const body = await readJson<ResponseObject>(res);
      const text = 'Hello from mock openai! You said: hi there';
      expect(body).toMatchObject({
        object: 'response',
        status: 'completed',
        model: 'gpt-4o-mini',
        error: null,
        incomplete_details: null,
        instructions: null,
        max_output_tokens: null,
        tool_choice: 'auto',
        tools: [],
      });
      expect(body.id).toMatch(/^resp_/);
      expect(Number.isInteger(body.created_at)).toBe(true);
      expect(body.output).toEqual([
        {
          id: expect.stringMatching(/^msg_/),
          type: 'message',
          status: 'completed',
          content: [{ type: 'output_text', annotations: [], logprobs: [], text }],
          role: 'assistant',
        },
      ]);
      const input = promptTokens('hi there'.length, 1);
      const output = completionTokens(text);
      expect(body.usage).toEqual({
        input_tokens: input,
        input_tokens_details: { cached_tokens: 0 },
        output_tokens: output,
        output_tokens_details: { reasoning_tokens: 0 },
        total_tokens: input + output,
      });
    });

    it('gives the same text and token counts as the chat route for the same conversation', async () => {
      const chat = await readJson<ChatCompletion>(
        await postJson(
          mock.base,
          '/v1/chat/completions',
          { model: 'gpt-4o-mini', messages: [{ role: 'system', content: 'be brief' }, user('compare me')] },
          OPENAI_AUTH,
        ),
      );
      const body = await plain({ instructions: 'be brief', input: 'compare me' });
      expect(messageOf(body).content[0].text).toBe(chat.choices[0].message.content);
      expect(body.usage?.input_tokens).toBe(chat.usage?.prompt_tokens);
      expect(body.usage?.output_tokens).toBe(chat.usage?.completion_tokens);
    });

    it('counts instructions as one more message and echoes them and max_output_tokens', async () => {
      const without = await plain({ input: 'hello' });
      const withInstructions = await plain({ input: 'hello', instructions: 'You are terse.', max_output_tokens: 64 });
      expect(without.usage?.input_tokens).toBe(promptTokens(5, 1));
      expect(withInstructions.usage?.input_tokens).toBe(promptTokens(5 + 'You are terse.'.length, 2));
      expect(withInstructions).toMatchObject({ instructions: 'You are terse.', max_output_tokens: 64 });
      expect(withInstructions.usage?.output_tokens).toBe(without.usage?.output_tokens);
    });

    it('reads an array of input items: the reply and directives come from the last user message', async () => {
      const input = [
        { role: 'developer', content: 'dev rules' },
        user([
          { type: 'input_text', text: 'first [mock status=500]' },
          { type: 'input_image', image_url: 'https://example.com/cat.png', detail: 'auto' },
        ]),
        { type: 'message', role: 'assistant', content: [{ type: 'output_text', text: 'ok' }] },
        {
          type: 'message',
          role: 'user',
          content: [
            { type: 'input_text', text: 'second' },
            { type: 'input_text', text: 'part' },
          ],
        },
      ];
      const body = await plain({ input });
      expect(messageOf(body).content[0].text).toBe('Hello from mock openai! You said: second\npart');
      const chars = 'dev rules'.length + 'first [mock status=500]'.length + 'ok'.length + 'second\npart'.length;
      expect(body.usage?.input_tokens).toBe(promptTokens(chars, 4));
    });

    it('reads directives from a string input and strips them from the echo', async () => {
      const body = await plain({ input: 'plain [mock chunks=2] words' });
      expect(messageOf(body).content[0].text).toBe('Hello from mock openai! You said: plain words');
      const failed = await create({ input: 'x [mock status=503 retry_after=3]' });
      expect(failed.status).toBe(503);
      expect(failed.headers.get('retry-after')).toBe('3');
      expect((await readJson<OpenAIErrorBody>(failed)).error).toMatchObject({ type: 'server_error', param: null, code: null });
    });

    it('no_usage omits usage, plain and streamed', async () => {
      const body = await plain({ input: 'x [mock no_usage=1]' });
      expect(body.status).toBe('completed');
      expect('usage' in body).toBe(false);
      const { raw, events } = await streamEvents({ input: 'x [mock no_usage=1]' });
      expect(events[events.length - 1].type).toBe('response.completed');
      expect(raw).not.toContain('"usage"');
    });

    it('answers a json_schema text.format with JSON of the schema, plain and streamed, and echoes the text configuration', async () => {
      const format = {
        type: 'json_schema',
        name: 'person',
        strict: true,
        schema: {
          type: 'object',
          properties: { name: { type: 'string' }, age: { type: 'number' }, nick: { anyOf: [{ type: 'string' }, { type: 'null' }] } },
          required: ['name', 'age', 'nick'],
          additionalProperties: false,
        },
      };
      const expected = { name: 'mock', age: 0, nick: 'mock' };
      const body = await plain({ input: 'Bob is 30', text: { format, verbosity: 'low' } });
      expect(JSON.parse(messageOf(body).content[0].text)).toEqual(expected);
      expect(body.text).toEqual({ format, verbosity: 'low' });
      const { events } = await streamEvents({ input: 'Bob [mock chunks=3]', text: { format } });
      expect(JSON.parse(deltasOf(events).join(''))).toEqual(expected);
      const json = await plain({ input: 'in JSON please', text: { format: { type: 'json_object' } } });
      expect(JSON.parse(messageOf(json).content[0].text)).toEqual({ reply: 'Hello from mock openai! You said: in JSON please' });
      expect((await plain({ input: 'x' })).text).toEqual({ format: { type: 'text' }, verbosity: 'medium' });
    });

    it('finish=length answers status incomplete with reason max_output_tokens', async () => {
      const body = await plain({ input: 'long [mock finish=length]' });
      expect(body.status).toBe('incomplete');
      expect(body.incomplete_details).toEqual({ reason: 'max_output_tokens' });
      expect(messageOf(body).status).toBe('incomplete');
      expect(messageOf(body).content[0].text).toBe('Hello from mock openai! You said: long');
      expect(body.usage?.output_tokens).toBeGreaterThan(0);
    });
  });

  describe('tool calls', () => {
    it('gives a function_call arguments that follow the function’s parameters', async () => {
      const tools = [
        { type: 'function', name: 'lookup', parameters: { type: 'object', properties: { q: { type: 'string' } }, required: ['q'] } },
      ];
      const body = await plain({ tools, input: 'cats [mock tool=lookup]' });
      expect(body.output[0]).toMatchObject({ type: 'function_call', name: 'lookup', arguments: '{"q":"cats"}' });
    });

    it('answers function_call items when tools are declared and the directive names one', async () => {
      const body = await plain({ tools: TOOLS, input: 'weather? [mock tool=get_weather]' });
      expect(body.status).toBe('completed');
      expect(body.tools).toEqual(TOOLS);
      expect(body.output).toEqual([
        {
          id: expect.stringMatching(/^fc_/),
          type: 'function_call',
          status: 'completed',
          arguments: '{"echo":"weather?"}',
          call_id: expect.stringMatching(/^call_/),
          name: 'get_weather',
        },
      ]);
      expect(body.usage?.output_tokens).toBe(completionTokens('{"echo":"weather?"}'));
    });

    it('a function tool_choice forces the call; tools=2 makes two items with distinct ids', async () => {
      const body = await plain({
        tools: TOOLS,
        tool_choice: { type: 'function', name: 'get_weather' },
        input: [user('go [mock tools=2]')],
      });
      expect(body.tool_choice).toEqual({ type: 'function', name: 'get_weather' });
      expect(body.output.map((o) => o.type)).toEqual(['function_call', 'function_call']);
      const [a, b] = body.output as Array<{ id: string; call_id: string; name: string }>;
      expect(a.id).not.toBe(b.id);
      expect(a.call_id).not.toBe(b.call_id);
      expect(body.usage?.output_tokens).toBe(2 * completionTokens('{"echo":"go"}'));
    });

    it('tool_choice none, chat-shaped tools and no tools all answer in text', async () => {
      for (const extra of [
        { tools: TOOLS, tool_choice: 'none' },
        { tools: [{ type: 'function', function: { name: 'get_weather' } }] },
        {},
      ]) {
        const body = await plain({ ...extra, input: 'w [mock tool=get_weather]' });
        expect(messageOf(body).content[0].text).toBe('Hello from mock openai! You said: w');
      }
    });

    it('answers in text once the input ends with a function_call_output', async () => {
      const body = await plain({
        tools: TOOLS,
        input: [
          user('weather? [mock tool=get_weather]'),
          { type: 'function_call', call_id: 'call_1', name: 'get_weather', arguments: '{}' },
          { type: 'function_call_output', call_id: 'call_1', output: 'sunny' },
        ],
      });
      expect(messageOf(body).content[0].text).toBe('Hello from mock openai! You said: weather?');
      const chars = 'weather? [mock tool=get_weather]'.length + 'sunny'.length;
      expect(body.usage?.input_tokens).toBe(promptTokens(chars, 3));
    });
  });

  describe('streaming', () => {
    it('emits the real event order; the deltas and final usage match the plain answer', async () => {
      const reference = await plain({ input: 'stream me', instructions: 'sys' });
      const { events, raw } = await streamEvents({ input: 'stream me', instructions: 'sys' });
      expect(events.map((e) => e.type)).toEqual([
        ...TEXT_EVENTS,
        ...Array<string>(5).fill('response.output_text.delta'),
        ...TEXT_TAIL,
        'response.completed',
      ]);
      expect(raw.startsWith('event: response.created\ndata: {"type":"response.created","sequence_number":0,')).toBe(true);

      const created = events[0] as ResponseStreamEventOf<'response.created'>;
      expect(created.response).toMatchObject({ status: 'in_progress', output: [], usage: null, instructions: 'sys' });
      expect(created.response.id).toMatch(/^resp_/);

      const text = messageOf(reference).content[0].text;
      const deltas = deltasOf(events);
      expect(deltas.every((d) => d.length > 0)).toBe(true);
      expect(deltas.join('')).toBe(text);

      const added = events[2] as ResponseStreamEventOf<'response.output_item.added'>;
      expect(added.item).toEqual({
        id: expect.stringMatching(/^msg_/),
        type: 'message',
        status: 'in_progress',
        content: [],
        role: 'assistant',
      });
      for (const e of events.slice(3, -2)) {
        expect(e).toMatchObject({ item_id: added.item.id, output_index: 0, content_index: 0 });
      }
      expect(events[events.length - 4]).toMatchObject({ type: 'response.output_text.done', text });
      expect(events[events.length - 3]).toMatchObject({ type: 'response.content_part.done', part: { type: 'output_text', text } });

      const completed = events[events.length - 1] as ResponseStreamEventOf<'response.completed'>;
      expect(completed.response.id).toBe(created.response.id);
      expect(completed.response.status).toBe('completed');
      expect(completed.response.usage).toEqual(reference.usage);
      expect(completed.response.output).toEqual([{ ...reference.output[0], id: added.item.id }]);
    });

    it('chunks=N makes N deltas', async () => {
      const { events } = await streamEvents({ input: 'abc [mock chunks=3]' });
      expect(deltasOf(events)).toHaveLength(3);
      expect(events).toHaveLength(4 + 3 + 3 + 1);
    });

    it('finish=length ends with response.incomplete', async () => {
      const { events } = await streamEvents({ input: 'x [mock finish=length]' });
      const last = events[events.length - 1] as ResponseStreamEventOf<'response.incomplete'>;
      expect(last.type).toBe('response.incomplete');
      expect(last.response).toMatchObject({ status: 'incomplete', incomplete_details: { reason: 'max_output_tokens' } });
      expect(events.map((e) => e.type)).not.toContain('response.completed');
      expect(events[events.length - 2]).toMatchObject({ type: 'response.output_item.done', item: { status: 'incomplete' } });
    });

    it('streams each tool call as item added, argument deltas, arguments done, item done', async () => {
      const { events } = await streamEvents({ tools: TOOLS, input: 'w [mock tools=2 chunks=3]' });
      const call = [
        'response.output_item.added',
        ...Array<string>(3).fill('response.function_call_arguments.delta'),
        'response.function_call_arguments.done',
        'response.output_item.done',
      ];
      expect(events.map((e) => e.type)).toEqual(['response.created', 'response.in_progress', ...call, ...call, 'response.completed']);
      for (const index of [0, 1]) {
        const mine = events.filter((e) => 'output_index' in e && e.output_index === index);
        const added = mine[0] as ResponseStreamEventOf<'response.output_item.added'>;
        expect(added.item).toMatchObject({ type: 'function_call', status: 'in_progress', arguments: '', name: 'get_weather' });
        const args = mine.flatMap((e) => (e.type === 'response.function_call_arguments.delta' ? [e.delta] : []));
        expect(args.join('')).toBe('{"echo":"w"}');
        for (const e of mine.slice(1, -1)) expect(e).toMatchObject({ item_id: added.item.id });
        expect(mine[4]).toMatchObject({ type: 'response.function_call_arguments.done', arguments: '{"echo":"w"}' });
        expect(mine[5]).toMatchObject({ type: 'response.output_item.done', item: { id: added.item.id, status: 'completed' } });
      }
      const completed = events[events.length - 1] as ResponseStreamEventOf<'response.completed'>;
      expect(completed.response.output.map((o) => o.type)).toEqual(['function_call', 'function_call']);
    });

    it('failed turns the in-stream failure into a response.failed carrying the error and the prompt’s usage', async () => {
      const res = await create({ stream: true, input: 'x [mock chunks=5 error_event_after=1 failed=1]' });
      const read = await readUntilIdle(res, 2_000);
      expect(read.done).toBe(true);
      const sse = parseSse(read.text);
      expect(sse.map((e) => e.event)).toEqual([...TEXT_EVENTS, 'response.output_text.delta', 'response.failed']);
      const failed = JSON.parse(sse[sse.length - 1].data) as ResponseStreamEventOf<'response.completed'>;
      expect(failed).toMatchObject({
        type: 'response.failed',
        sequence_number: 5,
        response: { status: 'failed', error: { code: 'server_error' }, usage: { output_tokens: 0 } },
      });
      expect(failed.response.usage?.input_tokens).toBeGreaterThan(0);
      expect(read.text).not.toContain('response.completed');
    });

    it('error_event_after=K sends K deltas then the in-stream error event and ends', async () => {
      const res = await create({ stream: true, input: 'x [mock chunks=5 error_event_after=2]' });
      const read = await readUntilIdle(res, 2_000);
      expect(read.done).toBe(true);
      const sse = parseSse(read.text);
      expect(sse.map((e) => e.event)).toEqual([...TEXT_EVENTS, 'response.output_text.delta', 'response.output_text.delta', 'error']);
      // OpenAI's wire shape: the details nested under `error`.
      expect(JSON.parse(sse[sse.length - 1].data)).toEqual({
        type: 'error',
        sequence_number: 6,
        error: { type: 'server_error', code: 'server_error', message: expect.any(String) as unknown, param: null },
      });
      expect(read.text).not.toContain('response.completed');
      expect(read.text).not.toContain('[DONE]');
    });

    it('error_event_after in a tool call stream numbers the error after the last event sent', async () => {
      const res = await create({ stream: true, tools: TOOLS, input: 'w [mock tools=2 chunks=2 error_event_after=3]' });
      const events = parseSse(await res.text()).map((e) => JSON.parse(e.data) as ResponseStreamEvent);
      expect(events.map((e) => e.sequence_number)).toEqual(events.map((_, i) => i));
      // added, delta, delta | done, item done, added, delta | error
      expect(events.slice(-2).map((e) => e.type)).toEqual(['response.function_call_arguments.delta', 'error']);
      expect(events).toHaveLength(2 + 1 + 2 + 4 + 1);
    });

    it('hold_after_end_ms keeps the body open after response.completed', async () => {
      const t0 = Date.now();
      const res = await create({ stream: true, input: 'x [mock hold_after_end_ms=150]' });
      const text = await res.text();
      expect(Date.now() - t0).toBeGreaterThanOrEqual(140);
      expect(parseSse(text).pop()?.event).toBe('response.completed');
    });
  });

  describe('errors', () => {
    it('401 in OpenAI shape when the key is missing or wrong', async () => {
      const none = await create({ input: 'x' }, {});
      expect(none.status).toBe(401);
      expect(none.headers.get('x-request-id')).toMatch(/^req_/);
      const noneBody = await readJson<OpenAIErrorBody>(none);
      expect(noneBody.error).toMatchObject({ type: 'invalid_request_error', param: null, code: null });
      expect(noneBody.error.message).toContain("You didn't provide an API key");

      const wrong = await create({ input: 'x' }, { authorization: 'Bearer sk-real-key-123456' });
      expect(wrong.status).toBe(401);
      const wrongBody = await readJson<OpenAIErrorBody>(wrong);
      expect(wrongBody.error).toMatchObject({ type: 'invalid_request_error', param: null, code: 'invalid_api_key' });
      expect(wrongBody.error.message).not.toContain('sk-real-key-123456');
    });

    it('accepts any non-empty key with acceptAnyKey', async () => {
      const open = await startMock({ acceptAnyKey: true });
      try {
        const res = await postJson(open.base, RESPONSES, { model: 'm', input: 'x' }, { authorization: 'Bearer anything' });
        expect(res.status).toBe(200);
        expect((await readJson<ResponseObject>(res)).status).toBe('completed');
      } finally {
        await open.close();
      }
    });

    it('400 without model', async () => {
      const res = await postJson(mock.base, RESPONSES, { input: 'x' }, OPENAI_AUTH);
      expect(res.status).toBe(400);
      expect(await readJson<OpenAIErrorBody>(res)).toEqual({
        error: {
          message: "Missing required parameter: 'model'.",
          type: 'invalid_request_error',
          param: 'model',
          code: 'missing_required_parameter',
        },
      });
    });

    it('answers without input where stored context carries the conversation (a prompt template, a conversation, a previous response)', async () => {
      const earlier = await plain({ input: 'earlier turn' });
      for (const stored of [
        { prompt: { id: 'pmpt_1', variables: { city: 'Paris' } } },
        { conversation: 'conv_1' },
        { previous_response_id: earlier.id },
      ]) {
        const response = await plain(stored);
        expect(response.status).toBe('completed');
      }
    });

    it('400 without input, with an empty input array, or an input of the wrong type', async () => {
      const missing = await create({});
      expect(missing.status).toBe(400);
      expect(await readJson<OpenAIErrorBody>(missing)).toEqual({
        error: {
          message: "Missing required parameter: 'input'.",
          type: 'invalid_request_error',
          param: 'input',
          code: 'missing_required_parameter',
        },
      });
      const empty = await create({ input: [] });
      expect(empty.status).toBe(400);
      expect((await readJson<OpenAIErrorBody>(empty)).error).toMatchObject({ param: 'input', code: 'empty_array' });
      const wrongType = await create({ input: { role: 'user', content: 'x' } });
      expect(wrongType.status).toBe(400);
      expect((await readJson<OpenAIErrorBody>(wrongType)).error).toMatchObject({ param: 'input', code: 'invalid_type' });
    });

    it('400 for a max_output_tokens below 16, as OpenAI refuses it; 16 is answered', async () => {
      const few = await create({ input: 'hi', max_output_tokens: 15 });
      expect(few.status).toBe(400);
      expect((await readJson<OpenAIErrorBody>(few)).error).toMatchObject({ param: 'max_output_tokens', code: 'integer_below_min_value' });
      expect((await plain({ input: 'hi', max_output_tokens: 16 })).max_output_tokens).toBe(16);
    });

    it("400 for a top-level argument the Responses API does not take, naming the first as OpenAI does; chat's messages points to input", async () => {
      const unknown = await create({ input: 'hi', max_tokens: 20, seed: 1 });
      expect(unknown.status).toBe(400);
      expect(await readJson<OpenAIErrorBody>(unknown)).toEqual({
        error: {
          message: "Unknown parameter: 'max_tokens'.",
          type: 'invalid_request_error',
          param: 'max_tokens',
          code: 'unknown_parameter',
        },
      });
      const messages = await create({ messages: [user('hi')] });
      expect(messages.status).toBe(400);
      const moved = (await readJson<OpenAIErrorBody>(messages)).error;
      expect(moved).toMatchObject({ type: 'invalid_request_error', param: null, code: 'unsupported_parameter' });
      expect(moved.message).toMatch(/^Unsupported parameter: 'messages'\. In the Responses API, this parameter has moved to 'input'\./);
    });

    it('takes every argument of the API reference', async () => {
      const response = await plain({
        input: 'hi',
        background: false,
        context_management: null,
        include: [],
        instructions: 'be brief',
        max_output_tokens: 16,
        max_tool_calls: 2,
        metadata: { k: 'v' },
        moderation: null,
        parallel_tool_calls: true,
        prompt_cache_key: 'k',
        prompt_cache_retention: '24h',
        reasoning: { effort: 'low' },
        safety_identifier: 'abc',
        service_tier: 'auto',
        store: false,
        stream: false,
        stream_options: null,
        temperature: 1,
        text: { format: { type: 'text' } },
        tool_choice: 'auto',
        tools: [],
        top_logprobs: 0,
        top_p: 1,
        truncation: 'disabled',
        user: 'u',
      });
      expect(response.status).toBe('completed');
    });

    it('400 for a body that is not JSON', async () => {
      const res = await postJson(mock.base, RESPONSES, '{nope', OPENAI_AUTH);
      expect(res.status).toBe(400);
      expect((await readJson<OpenAIErrorBody>(res)).error.type).toBe('invalid_request_error');
    });
  });

  it('is counted and remembered under openai.responses', async () => {
    const other = await startMock();
    try {
      await (await postJson(other.base, RESPONSES, { model: 'm', input: 'count me' }, OPENAI_AUTH)).text();
      await (await postJson(other.base, RESPONSES, { model: 'm', input: 'and me' }, {})).text();
      const stats = await getStats(other.base);
      expect(stats.total).toBe(2);
      expect(stats.byRoute['openai.responses']).toBe(2);
      expect(stats.byRoute['openai.chat']).toBe(0);
      expect(stats.last['openai.responses']?.body).toEqual({ model: 'm', input: 'and me' });
      expect(stats.last['openai.responses']?.url).toBe(RESPONSES);
    } finally {
      await other.close();
    }
  });
});
