import { getStats, OPENAI_AUTH, parseSse, postJson, readJson, startMock, type RunningMock } from './mock.testing';
import type { ChatCompletion, ChatCompletionChunk, EmbeddingList, ModelList, OpenAIErrorBody } from './openai.types';

const CHAT = '/v1/chat/completions';
const TOOLS = [{ type: 'function', function: { name: 'get_weather', parameters: { type: 'object', properties: {} } } }];
const user = (content: unknown): Record<string, unknown> => ({ role: 'user', content });

describe('OpenAI wire format', () => {
  let mock: RunningMock;
  beforeAll(async () => {
    mock = await startMock();
  });
  afterAll(() => mock.close());

  const chat = (body: Record<string, unknown>, headers: Record<string, string> = OPENAI_AUTH): Promise<Response> =>
    postJson(mock.base, CHAT, { model: 'gpt-4o-mini', ...body }, headers);

  /** Parses a chat stream, asserting it ends with `data: [DONE]`. */
  const streamChunks = async (res: Response): Promise<{ chunks: ChatCompletionChunk[]; raw: string }> => {
    const raw = await res.text();
    const data = parseSse(raw).map((e) => e.data);
    expect(data[data.length - 1]).toBe('[DONE]');
    return { chunks: data.slice(0, -1).map((d) => JSON.parse(d) as ChatCompletionChunk), raw };
  };

  describe('chat completions', () => {
    it('answers a full chat.completion echoing the model and the last user message', async () => {
      const res = await chat({
        messages: [
          { role: 'system', content: 'be nice' },
          user('first'),
          { role: 'assistant', content: 'ok' },
          user([{ type: 'text', text: 'second' }]),
        ],
      });
      expect(res.status).toBe(200);
      expect(res.headers.get('content-type')).toBe('application/json');
      const body = await readJson<ChatCompletion>(res);
      expect(body).toMatchObject({
        object: 'chat.completion',
        model: 'gpt-4o-mini',
        system_fingerprint: 'fp_mock',
        choices: [
          {
            index: 0,
            message: { role: 'assistant', content: 'Hello from mock openai! You said: second', refusal: null },
            logprobs: null,
            finish_reason: 'stop',
          },
        ],
      });
      expect(body.id).toMatch(/^chatcmpl-/);
      expect(typeof body.created).toBe('number');
      const chars = 'be nice'.length + 'first'.length + 'ok'.length + 'second'.length;
      const usage = body.usage!;
      expect(usage.prompt_tokens).toBe(Math.ceil(chars / 4) + 12);
      expect(usage.completion_tokens).toBe(Math.ceil('Hello from mock openai! You said: second'.length / 4));
      expect(usage.total_tokens).toBe(usage.prompt_tokens + usage.completion_tokens);
    });

    it('reports no usage with no_usage, streamed (even with include_usage) or not', async () => {
      const plain = await readJson<ChatCompletion>(await chat({ messages: [user('hi [mock no_usage=1]')] }));
      expect(plain.choices[0].message.content).toContain('You said: hi');
      expect('usage' in plain).toBe(false);
      const streamed = await chat({
        stream: true,
        stream_options: { include_usage: true },
        messages: [user('hi [mock no_usage=1 chunks=2]')],
      });
      const text = await streamed.text();
      expect(text).toContain('data: [DONE]');
      expect(text).not.toContain('"usage"');
    });

    it('ends a stream after its finish chunk and usage without [DONE] with no_done', async () => {
      const res = await chat({ stream: true, stream_options: { include_usage: true }, messages: [user('hi [mock no_done=1 chunks=2]')] });
      const text = await res.text();
      expect(text).not.toContain('[DONE]');
      expect(text).toContain('"finish_reason":"stop"');
      expect(text.trimEnd().split('\n\n').pop()).toContain('"usage":{"prompt_tokens"');
    });

    it('streams chat.completion.chunk events: role chunk, content, finish chunk, [DONE]; no usage key', async () => {
      const res = await chat({ stream: true, messages: [user('hi there')] });
      expect(res.status).toBe(200);
      expect(res.headers.get('content-type')).toMatch(/^text\/event-stream/);
      const { chunks, raw } = await streamChunks(res);
      expect(raw.endsWith('data: [DONE]\n\n')).toBe(true);
      expect(chunks).toHaveLength(1 + 5 + 1);
      for (const c of chunks) {
        expect(c).toMatchObject({ id: chunks[0].id, object: 'chat.completion.chunk', model: 'gpt-4o-mini', system_fingerprint: 'fp_mock' });
        expect(c).not.toHaveProperty('usage');
        expect(c.choices[0]).toMatchObject({ index: 0, logprobs: null });
      }
      expect(chunks[0].choices[0]).toMatchObject({ delta: { role: 'assistant', content: '' }, finish_reason: null });
      const content = chunks.slice(1, 6).map((c) => c.choices[0].delta.content ?? '');
      expect(content.every((piece) => piece.length > 0)).toBe(true);
      expect(content.join('')).toBe('Hello from mock openai! You said: hi there');
      expect(chunks[6].choices[0]).toEqual({ index: 0, delta: {}, logprobs: null, finish_reason: 'stop' });
    });

    it('with include_usage: usage:null on every chunk plus a final choices:[] usage chunk', async () => {
      const res = await chat({ stream: true, stream_options: { include_usage: true }, messages: [user('hi [mock chunks=3]')] });
      const { chunks } = await streamChunks(res);
      expect(chunks).toHaveLength(1 + 3 + 1 + 1);
      for (const c of chunks.slice(0, -1)) expect(c.usage).toBeNull();
      const last = chunks[chunks.length - 1];
      expect(last.choices).toEqual([]);
      expect(last.usage?.total_tokens).toBe((last.usage?.prompt_tokens ?? 0) + (last.usage?.completion_tokens ?? 0));
      expect(last.usage?.completion_tokens).toBeGreaterThan(0);
    });

    it('finish=length reports finish_reason "length"', async () => {
      const plain = await readJson<ChatCompletion>(await chat({ messages: [user('x [mock finish=length]')] }));
      expect(plain.choices[0].finish_reason).toBe('length');
      const { chunks } = await streamChunks(await chat({ stream: true, messages: [user('x [mock finish=length]')] }));
      expect(chunks[chunks.length - 1].choices[0].finish_reason).toBe('length');
    });

    it('answers a tool call when tools are declared and the directive names one', async () => {
      const body = await readJson<ChatCompletion>(await chat({ tools: TOOLS, messages: [user('weather? [mock tool=get_weather]')] }));
      const choice = body.choices[0];
      expect(choice.finish_reason).toBe('tool_calls');
      expect(choice.message.content).toBeNull();
      expect(choice.message.tool_calls).toHaveLength(1);
      const call = choice.message.tool_calls?.[0];
      expect(call?.id).toMatch(/^call_/);
      expect(call).toMatchObject({ type: 'function', function: { name: 'get_weather', arguments: '{"echo":"weather?"}' } });
    });

    it('honours a tool_choice that names a function, and tools=2 makes two parallel calls', async () => {
      const body = await readJson<ChatCompletion>(
        await chat({
          tools: TOOLS,
          tool_choice: { type: 'function', function: { name: 'get_weather' } },
          messages: [user('go [mock tools=2]')],
        }),
      );
      const calls = body.choices[0].message.tool_calls ?? [];
      expect(calls).toHaveLength(2);
      expect(calls[0].id).not.toBe(calls[1].id);
      expect(calls.map((c) => c.function.name)).toEqual(['get_weather', 'get_weather']);
    });

    it('answers in text once the conversation ends with a tool result', async () => {
      const body = await readJson<ChatCompletion>(
        await chat({
          tools: TOOLS,
          messages: [
            user('weather? [mock tool=get_weather]'),
            {
              role: 'assistant',
              content: null,
              tool_calls: [{ id: 'call_1', type: 'function', function: { name: 'get_weather', arguments: '{}' } }],
            },
            { role: 'tool', tool_call_id: 'call_1', content: 'sunny' },
          ],
        }),
      );
      expect(body.choices[0].finish_reason).toBe('stop');
      expect(body.choices[0].message.content).toBe('Hello from mock openai! You said: weather?');
    });

    it('streams tool calls as index/id/name deltas followed by argument fragments', async () => {
      const { chunks } = await streamChunks(await chat({ stream: true, tools: TOOLS, messages: [user('w [mock tools=2 chunks=3]')] }));
      const deltas = chunks.map((c) => c.choices[0].delta);
      expect(deltas[0]).toMatchObject({ role: 'assistant', content: null });
      expect(deltas[0].tool_calls?.[0]).toMatchObject({ index: 0, type: 'function', function: { name: 'get_weather', arguments: '' } });
      const args: Record<number, string> = { 0: '', 1: '' };
      const ids = new Set<string>();
      for (const d of deltas) {
        for (const tc of d.tool_calls ?? []) {
          if (tc.id) ids.add(tc.id);
          args[tc.index] += tc.function?.arguments ?? '';
        }
      }
      expect(ids.size).toBe(2);
      expect(args).toEqual({ 0: '{"echo":"w"}', 1: '{"echo":"w"}' });
      expect(chunks[chunks.length - 1].choices[0]).toMatchObject({ delta: {}, finish_reason: 'tool_calls' });
    });

    it('answers a json_schema response format with JSON of the schema, plain and streamed, and json_object with a JSON object', async () => {
      const schema = {
        type: 'object',
        properties: { city: { type: 'string' }, days: { type: 'integer' }, tags: { type: 'array', items: { type: 'string' } } },
        required: ['city', 'days', 'tags'],
        additionalProperties: false,
      };
      const response_format = { type: 'json_schema', json_schema: { name: 'trip', strict: true, schema } };
      const expected = { city: 'mock', days: 0, tags: [] };
      const plain = await readJson<ChatCompletion>(await chat({ messages: [user('Paris for 3 days')], response_format }));
      expect(JSON.parse(plain.choices[0].message.content!)).toEqual(expected);
      expect(plain.choices[0].finish_reason).toBe('stop');
      const { chunks } = await streamChunks(await chat({ stream: true, messages: [user('Paris [mock chunks=4]')], response_format }));
      expect(JSON.parse(chunks.map((c) => c.choices[0]?.delta.content ?? '').join(''))).toEqual(expected);
      const json = await readJson<ChatCompletion>(
        await chat({ messages: [user('answer in JSON')], response_format: { type: 'json_object' } }),
      );
      expect(JSON.parse(json.choices[0].message.content!)).toEqual({ reply: 'Hello from mock openai! You said: answer in JSON' });
    });

    it('gives a tool call arguments that follow the function’s parameters', async () => {
      const tools = [
        {
          type: 'function',
          function: {
            name: 'get_weather',
            parameters: { type: 'object', properties: { city: { type: 'string' }, days: { type: 'integer' } }, required: ['city', 'days'] },
          },
        },
      ];
      const body = await readJson<ChatCompletion>(await chat({ tools, messages: [user('Paris [mock tool=get_weather]')] }));
      expect(JSON.parse(body.choices[0].message.tool_calls![0].function.arguments)).toEqual({ city: 'Paris', days: 0 });
    });

    it('calls a planned tool rather than answer a response format', async () => {
      const response_format = { type: 'json_schema', json_schema: { name: 'x', schema: { type: 'object', properties: {} } } };
      const body = await readJson<ChatCompletion>(
        await chat({ tools: TOOLS, messages: [user('w [mock tool=get_weather]')], response_format }),
      );
      expect(body.choices[0]).toMatchObject({ finish_reason: 'tool_calls', message: { content: null } });
    });

    it('rejects a request without messages like OpenAI does', async () => {
      const res = await chat({});
      expect(res.status).toBe(400);
      expect(await readJson<OpenAIErrorBody>(res)).toEqual({
        error: {
          message: "Missing required parameter: 'messages'.",
          type: 'invalid_request_error',
          param: 'messages',
          code: 'missing_required_parameter',
        },
      });
    });

    it('refuses a top-level argument OpenAI does not take, as OpenAI does, and counts nothing', async () => {
      const res = await chat({ messages: [user('x')], top_k: 40 });
      expect(res.status).toBe(400);
      expect(await readJson<OpenAIErrorBody>(res)).toEqual({
        error: { message: 'Unrecognized request argument supplied: top_k', type: 'invalid_request_error', param: null, code: null },
      });
    });

    it('names every unknown argument, sorted, in one refusal; a null value is still an argument', async () => {
      const res = await chat({ messages: [user('x')], thinking: { type: 'enabled' }, end_user_id: null, max_output_tokens: 5 });
      expect(res.status).toBe(400);
      expect((await readJson<OpenAIErrorBody>(res)).error.message).toBe(
        'Unrecognized request arguments supplied: end_user_id, max_output_tokens, thinking',
      );
    });

    it('refuses reasoning_effort on a model that does not reason, as OpenAI answers an unknown argument; takes it on one that does', async () => {
      for (const model of ['gpt-4o-mini', 'gpt-4.1', 'gpt-3.5-turbo', 'chatgpt-4o-latest', 'gpt-5-chat-latest']) {
        const res = await chat({ model, messages: [user('x')], reasoning_effort: 'low' });
        expect(res.status).toBe(400);
        expect(await readJson<OpenAIErrorBody>(res)).toEqual({
          error: {
            message: 'Unrecognized request argument supplied: reasoning_effort',
            type: 'invalid_request_error',
            param: null,
            code: null,
          },
        });
      }
      for (const model of ['o4-mini', 'gpt-5', 'gpt-5.1-codex']) {
        const res = await chat({ model, messages: [user('x')], reasoning_effort: 'low' });
        expect(res.status).toBe(200);
        await res.text();
      }
      // Null is the value a client sends for "none" to a model that does not reason; OpenAI takes it.
      const unset = await chat({ messages: [user('x')], reasoning_effort: null });
      expect(unset.status).toBe(200);
      await unset.text();
    });

    it('takes every argument of the API reference', async () => {
      const res = await chat({
        model: 'gpt-5',
        messages: [user('x')],
        audio: null,
        frequency_penalty: 0,
        function_call: null,
        functions: null,
        logit_bias: {},
        logprobs: false,
        max_completion_tokens: 10,
        max_tokens: 10,
        metadata: { k: 'v' },
        modalities: ['text'],
        n: 1,
        parallel_tool_calls: true,
        prediction: null,
        presence_penalty: 0,
        prompt_cache_key: 'k',
        prompt_cache_retention: '24h',
        reasoning_effort: 'low',
        response_format: { type: 'text' },
        safety_identifier: 'abc',
        seed: 1,
        service_tier: 'auto',
        stop: null,
        store: false,
        stream: false,
        temperature: 1,
        top_logprobs: null,
        top_p: 1,
        user: 'u',
        verbosity: 'low',
        web_search_options: null,
      });
      expect(res.status).toBe(200);
      await res.text();
      const streamed = await chat({ messages: [user('x')], stream: true, stream_options: { include_usage: true } });
      expect(streamed.status).toBe(200);
      await streamed.text();
    });

    it('rejects a body that is not JSON', async () => {
      const res = await postJson(mock.base, CHAT, '{nope', OPENAI_AUTH);
      expect(res.status).toBe(400);
      expect((await readJson<OpenAIErrorBody>(res)).error.type).toBe('invalid_request_error');
    });
  });

  describe('auth', () => {
    it('401 with OpenAI shape when the key is missing', async () => {
      const res = await chat({ messages: [user('x')] }, {});
      expect(res.status).toBe(401);
      const body = await readJson<OpenAIErrorBody>(res);
      expect(body.error).toMatchObject({ type: 'invalid_request_error', param: null, code: null });
      expect(body.error.message).toContain("You didn't provide an API key");
    });

    it('401 invalid_api_key when the key is wrong', async () => {
      const res = await chat({ messages: [user('x')] }, { authorization: 'Bearer sk-real-key-123456' });
      expect(res.status).toBe(401);
      const body = await readJson<OpenAIErrorBody>(res);
      expect(body.error).toMatchObject({ type: 'invalid_request_error', param: null, code: 'invalid_api_key' });
      expect(body.error.message).not.toContain('sk-real-key-123456');
    });

    it('accepts any non-empty key with acceptAnyKey', async () => {
      const open = await startMock({ acceptAnyKey: true });
      try {
        const res = await postJson(open.base, CHAT, { model: 'm', messages: [user('x')] }, { authorization: 'Bearer anything' });
        expect(res.status).toBe(200);
        await res.text();
        const none = await postJson(open.base, CHAT, { model: 'm', messages: [user('x')] });
        expect(none.status).toBe(401);
        await none.text();
      } finally {
        await open.close();
      }
    });
  });

  describe('embeddings', () => {
    it('returns float vectors (default 1536 dims) with usage', async () => {
      const res = await postJson(mock.base, '/v1/embeddings', { model: 'text-embedding-3-small', input: ['a', 'bb'] }, OPENAI_AUTH);
      expect(res.status).toBe(200);
      const body = await readJson<EmbeddingList>(res);
      expect(body).toMatchObject({ object: 'list', model: 'text-embedding-3-small', usage: { prompt_tokens: 2, total_tokens: 2 } });
      expect(body.data).toHaveLength(2);
      expect(body.data[1]).toMatchObject({ object: 'embedding', index: 1 });
      expect(body.data[0].embedding).toHaveLength(1536);
      expect(body.data[0].embedding).not.toEqual(body.data[1].embedding);
    });

    it('honours dimensions and returns base64 little-endian float32 on request', async () => {
      const request = { model: 'text-embedding-3-large', input: 'hello', dimensions: 8 };
      const floats = await readJson<EmbeddingList>(await postJson(mock.base, '/v1/embeddings', request, OPENAI_AUTH));
      const b64 = await readJson<EmbeddingList>(
        await postJson(mock.base, '/v1/embeddings', { ...request, encoding_format: 'base64' }, OPENAI_AUTH),
      );
      const values = floats.data[0].embedding as number[];
      expect(values).toHaveLength(8);
      expect(typeof b64.data[0].embedding).toBe('string');
      const buf = Buffer.from(b64.data[0].embedding as string, 'base64');
      expect(buf.length).toBe(32);
      values.forEach((v, i) => expect(buf.readFloatLE(i * 4)).toBeCloseTo(v, 6));
    });

    it('refuses a top-level argument OpenAI does not take, and takes those it does', async () => {
      const embed = (body: Record<string, unknown>): Promise<Response> =>
        postJson(mock.base, '/v1/embeddings', { model: 'text-embedding-3-small', input: 'x', ...body }, OPENAI_AUTH);
      const refused = await embed({ task_type: 'RETRIEVAL_QUERY' });
      expect(refused.status).toBe(400);
      expect(await readJson<OpenAIErrorBody>(refused)).toEqual({
        error: { message: 'Unrecognized request argument supplied: task_type', type: 'invalid_request_error', param: null, code: null },
      });
      const taken = await embed({ dimensions: 4, encoding_format: 'float', user: 'u' });
      expect(taken.status).toBe(200);
      await taken.text();
    });

    it('reads directives from the input text', async () => {
      const res = await postJson(
        mock.base,
        '/v1/embeddings',
        { model: 'text-embedding-3-small', input: 'x [mock status=429]' },
        OPENAI_AUTH,
      );
      expect(res.status).toBe(429);
      expect((await readJson<OpenAIErrorBody>(res)).error).toMatchObject({ type: 'requests', code: 'rate_limit_exceeded' });
    });
  });

  it('lists models', async () => {
    const res = await fetch(`${mock.base}/v1/models`, { headers: OPENAI_AUTH });
    expect(res.status).toBe(200);
    const body = await readJson<ModelList>(res);
    expect(body.object).toBe('list');
    expect(body.data.find((m) => m.id === 'gpt-4o-mini')).toMatchObject({ object: 'model', owned_by: 'system' });
    expect((await getStats(mock.base)).byRoute['openai.models']).toBeGreaterThanOrEqual(1);
  });
});
