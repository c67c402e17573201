import { GatewayError } from '@keygate/errors';
import type { ProviderAccess } from '@keygate/secrets';
import type { LastRequest } from '../../../apps/mock-upstream/src/mock.stats';
import { eventually, getStats, startMock, type RunningMock } from '../../../apps/mock-upstream/src/mock.testing';
import { AnthropicAdapter, isMessageStop, passedHeaders } from './anthropic.adapter';
import type { ChatCompletionRequest, StreamEvent } from './chat.types';
import type { ProviderCall } from './provider-adapter.interface';
import { testUpstreamClient } from './testing/upstream-client';
import { ClientAbortedError, type UpstreamClient, type UpstreamResponse } from './upstream.client';
import { DEFAULT_RATE_LIMIT_RETRY_SECONDS, UpstreamError } from './upstream.error';

/*
 * Integration: the adapter with a real UpstreamClient against the real mock upstream (in-process,
 * Anthropic's wire format over HTTP on 127.0.0.1).
 */

const MODEL = 'claude-sonnet-4-5';
const KEY = 'sk-ant-mock-product-a';
const WEATHER_TOOL = {
  type: 'function',
  function: {
    name: 'get_weather',
    description: 'Weather for a city',
    parameters: { type: 'object', properties: { location: { type: 'string' } }, required: ['location'] },
  },
};

interface Chunk {
  id: string;
  object: string;
  created: number;
  model: string;
  choices: Array<{
    index: number;
    delta: {
      role?: string;
      content?: string;
      tool_calls?: Array<{ index: number; id?: string; type?: string; function?: { name?: string; arguments?: string } }>;
    };
    finish_reason: string | null;
  }>;
  usage?: unknown;
}

interface Completion {
  id: string;
  object: string;
  model: string;
  choices: Array<{
    message: { content: string | null; tool_calls?: Array<{ id: string; type: string; function: { name: string; arguments: string } }> };
    finish_reason: string;
  }>;
  usage: { prompt_tokens: number; completion_tokens: number; total_tokens: number };
}

let mock: RunningMock;
let client: UpstreamClient;
let adapter: AnthropicAdapter;
let access: ProviderAccess;

beforeAll(async () => {
  mock = await startMock();
  client = testUpstreamClient();
  adapter = new AnthropicAdapter(client);
  access = { provider: 'anthropic', apiKey: KEY, baseUrl: mock.base, models: [MODEL] };
});

afterAll(async () => {
  await client.onApplicationShutdown();
  await mock.close();
});

function call(
  body: Partial<ChatCompletionRequest> & { messages: ChatCompletionRequest['messages'] },
  options: { clientWantsUsage?: boolean; signal?: AbortSignal } = {},
): ProviderCall {
  return {
    body: { model: MODEL, max_tokens: 64, ...body },
    access,
    signal: options.signal ?? new AbortController().signal,
    clientWantsUsage: options.clientWantsUsage ?? false,
  };
}

function user(text: string): ChatCompletionRequest['messages'] {
  return [{ role: 'user', content: text }];
}

async function collect(events: AsyncIterable<StreamEvent>): Promise<StreamEvent[]> {
  const out: StreamEvent[] = [];
  for await (const event of events) out.push(event);
  return out;
}

function chunksOf(events: StreamEvent[]): Chunk[] {
  return events.filter((e) => e.data !== null).map((e) => JSON.parse(e.data as string) as Chunk);
}

async function lastMessagesRequest(): Promise<LastRequest> {
  const stats = await getStats(mock.base);
  const last = stats.last['anthropic.messages'];
  if (!last) throw new Error('the mock saw no Messages request');
  return last;
}

async function rejection(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (error) {
    return error;
  }
  throw new Error('expected a rejection');
}

describe('AnthropicAdapter against the mock upstream', () => {
  it('answers a plain completion in OpenAI format and sends exactly the translated request', async () => {
    const result = await adapter.chat(
      call({
        messages: [
          { role: 'system', content: 'Be brief.' },
          { role: 'user', content: 'Hello there' },
        ],
        user: 'user-1',
        stream_options: { include_usage: true },
      }),
    );
    const completion = JSON.parse(result.body) as Completion;
    expect(completion.object).toBe('chat.completion');
    expect(completion.id).toMatch(/^chatcmpl-msg_mock/);
    expect(completion.model).toBe(MODEL);
    expect(completion.choices[0].message.content).toBe('Hello from mock anthropic! You said: Hello there');
    expect(completion.choices[0].finish_reason).toBe('stop');
    expect(completion.usage.prompt_tokens).toBeGreaterThan(0);
    expect(completion.usage.total_tokens).toBe(completion.usage.prompt_tokens + completion.usage.completion_tokens);
    expect(result.usage).toStrictEqual(completion.usage);

    const sent = await lastMessagesRequest();
    expect(sent.url).toBe('/v1/messages');
    expect(sent.body).toStrictEqual({
      model: MODEL,
      max_tokens: 64,
      system: 'Be brief.',
      messages: [{ role: 'user', content: 'Hello there' }],
      metadata: { user_id: 'user-1' },
    });
    expect(sent.headers['x-api-key']).toBe(KEY);
    expect(sent.headers['anthropic-version']).toBe('2023-06-01');
    expect(sent.headers['content-type']).toBe('application/json');
    expect(sent.headers.authorization).toBeUndefined();
  });

  it('streams a completion whose chunks reassemble into the same answer, with the usage chunk when asked for', async () => {
    const stream = await adapter.chatStream(call({ messages: user('Hello there [mock chunks=4]') }, { clientWantsUsage: true }));
    const events = await collect(stream.events);
    const chunks = chunksOf(events);

    expect((await lastMessagesRequest()).body).toMatchObject({ stream: true, max_tokens: 64 });
    expect(new Set(chunks.map((c) => c.id)).size).toBe(1);
    expect(new Set(chunks.map((c) => c.created)).size).toBe(1);
    expect(chunks.every((c) => c.object === 'chat.completion.chunk' && c.model === MODEL)).toBe(true);
    expect(chunks[0].choices[0].delta).toMatchObject({ role: 'assistant', content: '' });

    const body = chunks.slice(0, -1);
    const text = body.map((c) => c.choices[0].delta.content ?? '').join('');
    expect(text).toBe('Hello from mock anthropic! You said: Hello there');
    expect(body.filter((c) => c.choices[0].delta.content).length).toBe(4);
    expect(body.map((c) => c.choices[0].finish_reason).filter(Boolean)).toStrictEqual(['stop']);
    expect(body.every((c) => c.usage === null)).toBe(true);

    const last = chunks[chunks.length - 1];
    expect(last.choices).toStrictEqual([]);
    expect(last.usage).toMatchObject({ prompt_tokens: expect.any(Number) as number, completion_tokens: expect.any(Number) as number });
    expect(events[events.length - 1].usage).toStrictEqual(last.usage);
    expect(events.map((e) => e.text ?? '').join('')).toBe(text);
  });

  it('keeps usage out of every chunk when the client did not ask for it, and still reports it', async () => {
    const stream = await adapter.chatStream(call({ messages: user('Hi') }));
    const events = await collect(stream.events);
    expect(chunksOf(events).every((c) => !('usage' in c))).toBe(true);
    const usageEvents = events.filter((e) => e.usage);
    expect(usageEvents).toHaveLength(1);
    expect(usageEvents[0].data).toBeNull();
    expect(usageEvents[0].usage?.prompt_tokens).toBeGreaterThan(0);
  });

  it('assembles streamed parallel tool calls by index with their ids, names and arguments', async () => {
    const stream = await adapter.chatStream(
      call({ messages: user('Weather in Paris please [mock tools=2 chunks=3]'), tools: [WEATHER_TOOL] }),
    );
    const chunks = chunksOf(await collect(stream.events));
    const calls: Array<{ id: string; name: string; arguments: string }> = [];
    for (const c of chunks) {
      for (const t of c.choices[0]?.delta.tool_calls ?? []) {
        if (t.id !== undefined) {
          expect(t.index).toBe(calls.length);
          calls.push({ id: t.id, name: t.function?.name ?? '', arguments: t.function?.arguments ?? '' });
        } else {
          calls[t.index].arguments += t.function?.arguments ?? '';
        }
      }
    }
    expect(calls).toHaveLength(2);
    expect(calls[0].id).not.toBe(calls[1].id);
    for (const c of calls) {
      expect(c.id).toMatch(/^toolu_mock/);
      expect(c.name).toBe('get_weather');
      expect(JSON.parse(c.arguments)).toStrictEqual({ location: 'Weather in Paris please' });
    }
    expect(chunks[chunks.length - 1].choices[0].finish_reason).toBe('tool_calls');
    expect((await lastMessagesRequest()).body).toMatchObject({
      tools: [{ name: 'get_weather', description: 'Weather for a city', input_schema: WEATHER_TOOL.function.parameters }],
    });
  });

  it('answers non-streamed parallel tool calls as tool_calls in order', async () => {
    const result = await adapter.chat(call({ messages: user('Weather [mock tools=2]'), tools: [WEATHER_TOOL], tool_choice: 'auto' }));
    const completion = JSON.parse(result.body) as Completion;
    const calls = completion.choices[0].message.tool_calls ?? [];
    expect(calls.map((c) => [c.type, c.function.name, JSON.parse(c.function.arguments) as unknown])).toStrictEqual([
      ['function', 'get_weather', { location: 'Weather' }],
      ['function', 'get_weather', { location: 'Weather' }],
    ]);
    expect(completion.choices[0].message.content).toBeNull();
    expect(completion.choices[0].finish_reason).toBe('tool_calls');
  });

  it('sends the tool results of an agent loop and gets text back', async () => {
    const result = await adapter.chat(
      call({
        messages: [
          { role: 'user', content: 'Weather in Paris?' },
          {
            role: 'assistant',
            content: null,
            tool_calls: [{ id: 'toolu_1', type: 'function', function: { name: 'get_weather', arguments: '{"location":"Paris"}' } }],
          },
          { role: 'tool', tool_call_id: 'toolu_1', content: '18C and sunny' },
        ],
        tools: [WEATHER_TOOL],
      }),
    );
    expect((JSON.parse(result.body) as Completion).choices[0].finish_reason).toBe('stop');
    expect((await lastMessagesRequest()).body).toMatchObject({
      messages: [
        { role: 'user', content: 'Weather in Paris?' },
        { role: 'assistant', content: [{ type: 'tool_use', id: 'toolu_1', name: 'get_weather', input: { location: 'Paris' } }] },
        { role: 'user', content: [{ type: 'tool_result', tool_use_id: 'toolu_1', content: '18C and sunny' }] },
      ],
    });
  });

  it('reports max_tokens as finish_reason length', async () => {
    const result = await adapter.chat(call({ messages: user('Tell me a story [mock finish=length]') }));
    expect((JSON.parse(result.body) as Completion).choices[0].finish_reason).toBe('length');
  });

  it.each([
    [429, 'retry_after=1', 1],
    [503, '', undefined],
    [529, '', undefined],
  ])('turns an upstream %i into a retryable UpstreamError with the status', async (status, extra, retryAfter) => {
    const error = await rejection(adapter.chat(call({ messages: user(`Hi [mock status=${status} ${extra}]`) })));
    expect(error).toBeInstanceOf(UpstreamError);
    const e = error as UpstreamError;
    expect({ kind: e.kind, status: e.status, retryable: e.retryable, retryAfter: e.retryAfterSeconds }).toStrictEqual({
      kind: 'http',
      status,
      retryable: true,
      retryAfter,
    });
    expect(e.message.length).toBeGreaterThan(0);
  });

  it('fails a stream before the first byte with the upstream status', async () => {
    const error = await rejection(adapter.chatStream(call({ messages: user('Hi [mock status=429]') })));
    expect(error).toMatchObject({ kind: 'http', status: 429 });
  });

  it("answers an upstream 429 with Retry-After: the upstream's, else a default (SPEC §6)", async () => {
    const named = await rejection(adapter.chat(call({ messages: user('Hi [mock status=429 retry_after=7]') })));
    expect((named as UpstreamError).toGatewayError()).toMatchObject({ status: 429, options: { retryAfterSeconds: 7 } });
    const unnamed = await rejection(adapter.chat(call({ messages: user('Hi [mock status=429]') })));
    expect(unnamed).toMatchObject({ retryAfterSeconds: undefined });
    expect((unnamed as UpstreamError).toGatewayError()).toMatchObject({
      status: 429,
      code: 'upstream_rate_limited',
      options: { retryAfterSeconds: DEFAULT_RATE_LIMIT_RETRY_SECONDS },
    });
  });

  it('refuses a request Anthropic cannot express without calling it', async () => {
    const before = (await getStats(mock.base)).total;
    const error = await rejection(adapter.chat(call({ messages: user('Hi'), temperature: 1.5 })));
    expect(error).toBeInstanceOf(GatewayError);
    expect(error).toMatchObject({ code: 'unsupported_parameter', status: 400, options: { param: 'temperature' } });
    expect((await getStats(mock.base)).total).toBe(before);
  });

  it('throws stream_error when the upstream sends an error event mid-stream, after the chunks before it', async () => {
    const stream = await adapter.chatStream(call({ messages: user('Hi there [mock error_event_after=2 chunks=4]') }));
    const seen: StreamEvent[] = [];
    let failure: unknown;
    try {
      for await (const event of stream.events) seen.push(event);
    } catch (error) {
      failure = error;
    }
    expect(failure).toBeInstanceOf(UpstreamError);
    expect(failure).toMatchObject({ kind: 'stream_error', message: 'Overloaded' });
    expect(chunksOf(seen).filter((c) => c.choices[0]?.delta.content).length).toBe(2);
  });

  it('ends the stream at message_stop though the upstream keeps the body open past the idle timeout', async () => {
    // Held 5 s after message_stop, with a 3 s idle timeout: reading on to the body's end would fail
    // the complete answer with an idle timeout.
    const before = (await getStats(mock.base)).total;
    const stream = await adapter.chatStream(call({ messages: user('Hi there [mock hold_after_end_ms=5000]') }, { clientWantsUsage: true }));
    const events = await collect(stream.events);
    const chunks = chunksOf(events);
    expect(chunks.at(-1)).toMatchObject({ choices: [], usage: { prompt_tokens: expect.any(Number) } });
    expect(chunks.some((c) => c.choices[0]?.finish_reason === 'stop')).toBe(true);
    expect((await getStats(mock.base)).total).toBe(before + 1);
  });

  it('throws connection_lost when the upstream connection drops mid-stream', async () => {
    const stream = await adapter.chatStream(call({ messages: user('Hi there [mock cut_after=2 chunks=4]') }));
    const error = await rejection(collect(stream.events));
    expect(error).toBeInstanceOf(UpstreamError);
    expect((error as UpstreamError).kind).toBe('connection_lost');
  });

  it('turns a client abort before the answer into ClientAbortedError and closes the upstream request', async () => {
    const before = (await getStats(mock.base)).aborted;
    const controller = new AbortController();
    const pending = adapter.chat(call({ messages: user('Hi [mock delay_ms=2000]') }, { signal: controller.signal }));
    setTimeout(() => controller.abort(), 100);
    expect(await rejection(pending)).toBeInstanceOf(ClientAbortedError);
    const stats = await eventually(
      () => getStats(mock.base),
      (s) => s.aborted > before,
    );
    expect(stats.aborted).toBe(before + 1);
  });

  it('turns a client abort mid-stream into ClientAbortedError and closes the upstream stream', async () => {
    const before = (await getStats(mock.base)).aborted;
    const controller = new AbortController();
    const stream = await adapter.chatStream(
      call({ messages: user('Hi [mock chunks=5 chunk_delay_ms=150]') }, { signal: controller.signal }),
    );
    let failure: unknown;
    let seen = 0;
    try {
      for await (const event of stream.events) {
        seen++;
        if (event.text) controller.abort();
      }
    } catch (error) {
      failure = error;
    }
    expect(failure).toBeInstanceOf(ClientAbortedError);
    expect(seen).toBeLessThan(5);
    const stats = await eventually(
      () => getStats(mock.base),
      (s) => s.aborted > before,
    );
    expect(stats.aborted).toBe(before + 1);
  });
});

describe('isMessageStop', () => {
  it('is the message_stop event, named or (from a host that leaves `event:` out) by its data type only', () => {
    expect(isMessageStop({ event: 'message_stop', data: '{"type":"message_stop"}' })).toBe(true);
    expect(isMessageStop({ data: '{"type":"message_stop"}' })).toBe(true);
    expect(isMessageStop({ data: ' { "type" : "message_stop" }' })).toBe(true);
    expect(isMessageStop({ event: 'message_delta', data: '{"type":"message_delta"}' })).toBe(false);
    // A text delta that mentions it is no stop.
    expect(
      isMessageStop({ data: '{"type":"content_block_delta","delta":{"type":"text_delta","text":"{\\"type\\":\\"message_stop\\"}"}}' }),
    ).toBe(false);
  });
});

describe('passedHeaders', () => {
  const answer = (headers: Record<string, string | string[]>): UpstreamResponse =>
    ({ statusCode: 200, headers, body: undefined, signal: undefined }) as unknown as UpstreamResponse;

  it('passes Anthropic’s request-id on, and none of its other headers (its rate limits are keygate’s key’s)', () => {
    expect(
      passedHeaders(answer({ 'request-id': 'req_011CTe4Yq', 'anthropic-ratelimit-requests-remaining': '49', 'set-cookie': 'a=b' })),
    ).toEqual({ 'request-id': 'req_011CTe4Yq' });
  });

  it('drops a request-id that is not an id (header injection, a list, over 128 characters)', () => {
    expect(passedHeaders(answer({ 'request-id': 'req_1\r\nx-evil: 1' }))).toEqual({});
    expect(passedHeaders(answer({ 'request-id': ['req_1', 'req_2'] }))).toEqual({});
    expect(passedHeaders(answer({ 'request-id': `req_${'a'.repeat(125)}` }))).toEqual({});
    expect(passedHeaders(answer({}))).toEqual({});
  });
});
