import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { GatewayError } from '@keygate/errors';
import { refusalOf } from '@keygate/errors/testing';
import type { AnthropicMessage, AnthropicStreamEvent } from './anthropic.types';
import { AnthropicStreamTranslator, finishReason, toChatCompletion, toMessagesRequest, toUsage } from './anthropic.translate';
import { CACHE_WRITE_1H_TOKENS, CACHE_WRITE_TOKENS, type ChatCompletionRequest, type StreamEvent, type Usage } from './chat.types';
import { UpstreamError } from './upstream.error';

/*
 * Golden conformance cases: each JSON file in __conformance__/anthropic pins one translation
 * exactly, built from Anthropic's and OpenAI's published examples. Ids and timestamps are inputs
 * of the translation, so nothing is normalised.
 */

const CREATED = 1735689600;
const MODEL = 'claude-sonnet-4-5';
const FALLBACK_ID = 'chatcmpl-fallback';

interface RequestCase {
  name: string;
  openaiRequest: ChatCompletionRequest;
  anthropicRequest: unknown;
}
interface RequestErrorCase {
  name: string;
  openaiRequest: ChatCompletionRequest;
  error: { status: number; code: string; param: string };
}
interface ResponseCase {
  name: string;
  anthropicResponse: AnthropicMessage;
  openaiResponse: unknown;
}
interface StreamCase {
  name: string;
  clientWantsUsage: boolean;
  anthropicEvents: Array<{ event: string; data: AnthropicStreamEvent }>;
  openaiChunks: unknown[];
  usage: Usage | null;
  error?: { kind: string; message: string };
}

const dir = join(__dirname, '__conformance__', 'anthropic');
const files = readdirSync(dir)
  .filter((f) => f.endsWith('.json'))
  .sort();
const cases = files.map((file) => ({ file, doc: JSON.parse(readFileSync(join(dir, file), 'utf8')) as Record<string, unknown> }));
const requests = cases.filter((c) => 'anthropicRequest' in c.doc) as unknown as Array<{ file: string; doc: RequestCase }>;
const requestErrors = cases.filter((c) => 'openaiRequest' in c.doc && 'error' in c.doc) as unknown as Array<{
  file: string;
  doc: RequestErrorCase;
}>;
const responses = cases.filter((c) => 'anthropicResponse' in c.doc) as unknown as Array<{ file: string; doc: ResponseCase }>;
const streams = cases.filter((c) => 'anthropicEvents' in c.doc) as unknown as Array<{ file: string; doc: StreamCase }>;

/** Runs a whole event list through a translator, as the adapter does, keeping what came out before any error. */
function runStream(c: StreamCase): { events: StreamEvent[]; error: unknown } {
  const translator = new AnthropicStreamTranslator({
    fallbackId: FALLBACK_ID,
    created: CREATED,
    model: MODEL,
    clientWantsUsage: c.clientWantsUsage,
  });
  const events: StreamEvent[] = [];
  try {
    for (const { data } of c.anthropicEvents) events.push(...translator.push(data));
    events.push(...translator.end());
  } catch (error) {
    return { events, error };
  }
  return { events, error: undefined };
}

/** An assistant message calling `f` once per id. */
function assistantCalls(...ids: string[]): Record<string, unknown> {
  return {
    role: 'assistant',
    content: null,
    tool_calls: ids.map((id) => ({ id, type: 'function', function: { name: 'f', arguments: '{}' } })),
  };
}

describe('Anthropic conformance fixtures', () => {
  it('cover every kind of case and nothing else', () => {
    expect(requests.length + requestErrors.length + responses.length + streams.length).toBe(files.length);
    expect(files.length).toBeGreaterThanOrEqual(16);
    for (const list of [requests, requestErrors, responses, streams]) expect(list.length).toBeGreaterThan(0);
  });

  describe.each(requests.map((c) => [c.file, c.doc] as const))('request %s', (_file, c) => {
    it(c.name, () => {
      expect(toMessagesRequest(c.openaiRequest)).toStrictEqual(c.anthropicRequest);
    });
  });

  describe.each(requestErrors.map((c) => [c.file, c.doc] as const))('refused request %s', (_file, c) => {
    it(c.name, () => {
      let thrown: unknown;
      try {
        toMessagesRequest(c.openaiRequest);
      } catch (error) {
        thrown = error;
      }
      expect(thrown).toBeInstanceOf(GatewayError);
      const error = thrown as GatewayError;
      expect({ status: error.status, code: error.code, param: error.options.param }).toStrictEqual(c.error);
      if (c.error.code === 'unsupported_parameter')
        expect(error.message).toContain(`${c.error.param} is not supported by anthropic models`);
    });
  });

  describe.each(responses.map((c) => [c.file, c.doc] as const))('response %s', (_file, c) => {
    it(c.name, () => {
      const { completion, usage } = toChatCompletion(c.anthropicResponse, { fallbackId: FALLBACK_ID, created: CREATED, model: MODEL });
      expect(completion).toStrictEqual(c.openaiResponse);
      expect(usage).toStrictEqual((c.openaiResponse as { usage?: Usage }).usage ?? null);
    });
  });

  describe.each(streams.map((c) => [c.file, c.doc] as const))('stream %s', (_file, c) => {
    it(c.name, () => {
      for (const { event, data } of c.anthropicEvents) expect(data.type).toBe(event);
      const { events, error } = runStream(c);
      const chunks = events.filter((e) => e.data !== null).map((e) => JSON.parse(e.data as string) as unknown);
      expect(chunks).toStrictEqual(c.openaiChunks);
      const usages = events.filter((e) => e.usage !== undefined).map((e) => e.usage);
      expect(usages).toStrictEqual(c.usage ? [c.usage] : []);
      if (c.error) {
        expect(error).toBeInstanceOf(UpstreamError);
        expect({ kind: (error as UpstreamError).kind, message: (error as UpstreamError).message }).toStrictEqual(c.error);
      } else {
        expect(error).toBeUndefined();
      }
    });
  });
});

describe('toMessagesRequest', () => {
  const base: ChatCompletionRequest = { model: MODEL, max_tokens: 100, messages: [{ role: 'user', content: 'Hi' }] };

  it('takes the smaller of max_tokens and max_completion_tokens', () => {
    expect(toMessagesRequest({ ...base, max_tokens: 300, max_completion_tokens: 200 }).max_tokens).toBe(200);
  });

  it('references tool schemas and image data instead of copying them', () => {
    const parameters = { type: 'object', properties: { q: { type: 'string' } } };
    const out = toMessagesRequest({ ...base, tools: [{ type: 'function', function: { name: 'search', parameters } }] });
    expect(out.tools?.[0].input_schema).toBe(parameters);
  });

  it('does not touch the client body', () => {
    const body: ChatCompletionRequest = {
      ...base,
      messages: [
        { role: 'user', content: 'a' },
        { role: 'user', content: 'b' },
      ],
    };
    const before = JSON.stringify(body);
    toMessagesRequest(body);
    expect(JSON.stringify(body)).toBe(before);
  });

  it.each([
    ['a system-only conversation', { ...base, messages: [{ role: 'system', content: 'Be brief.' }] }, 'messages'],
    ['a deprecated function message', { ...base, messages: [{ role: 'function', name: 'f', content: '{}' }] }, 'messages[0].role'],
    [
      'an audio input part',
      { ...base, messages: [{ role: 'user', content: [{ type: 'input_audio', input_audio: { data: 'AAAA', format: 'wav' } }] }] },
      'messages[0].content[0].type',
    ],
    [
      'an image of an unsupported type',
      { ...base, messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: 'data:image/bmp;base64,Qk0=' } }] }] },
      'messages[0].content[0].image_url',
    ],
    [
      'a data URL that is not base64',
      { ...base, messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: 'data:image/png,abc' } }] }] },
      'messages[0].content[0].image_url',
    ],
    ['tool_choice required without tools', { ...base, tool_choice: 'required' }, 'tool_choice'],
    ['a non-function tool', { ...base, tools: [{ type: 'custom', custom: { name: 'x' } }] }, 'tools[0].type'],
    [
      'a namespaced tool name',
      { ...base, tools: [{ type: 'function', function: { name: 'github.create_issue' } }] },
      'tools[0].function.name',
    ],
    ['a negative temperature', { ...base, temperature: -0.1 }, 'temperature'],
    ['a stop sequence of whitespace only', { ...base, stop: ['END', '\n'] }, 'stop'],
    ['a single whitespace stop string', { ...base, stop: ' ' }, 'stop'],
    ['a conversation of whitespace only', { ...base, messages: [{ role: 'user', content: ' \n ' }] }, 'messages'],
    [
      'a tool result matching no tool call',
      {
        ...base,
        messages: [
          { role: 'user', content: 'hi' },
          { role: 'tool', tool_call_id: 'call_x', content: '{}' },
        ],
      },
      'messages[1].tool_call_id',
    ],
    [
      'a tool result for another call than the assistant made',
      {
        ...base,
        messages: [{ role: 'user', content: 'hi' }, assistantCalls('call_1'), { role: 'tool', tool_call_id: 'call_2', content: '{}' }],
      },
      'messages[2].tool_call_id',
    ],
    [
      'the same call answered twice',
      {
        ...base,
        messages: [
          { role: 'user', content: 'hi' },
          assistantCalls('call_1'),
          { role: 'tool', tool_call_id: 'call_1', content: '{}' },
          { role: 'tool', tool_call_id: 'call_1', content: '{}' },
        ],
      },
      'messages[3].tool_call_id',
    ],
    [
      'a user turn while a tool call is unanswered',
      {
        ...base,
        messages: [
          { role: 'user', content: 'hi' },
          assistantCalls('call_1', 'call_2'),
          { role: 'tool', tool_call_id: 'call_2', content: '{}' },
          { role: 'user', content: 'and?' },
        ],
      },
      'messages[3]',
    ],
    [
      'a conversation ending with the assistant’s tool calls',
      { ...base, messages: [{ role: 'user', content: 'hi' }, assistantCalls('call_1')] },
      'messages',
    ],
    [
      'a conversation ending with one of two calls answered',
      {
        ...base,
        messages: [
          { role: 'user', content: 'hi' },
          assistantCalls('call_1', 'call_2'),
          { role: 'tool', tool_call_id: 'call_1', content: '{}' },
        ],
      },
      'messages',
    ],
  ])('refuses %s with a 400 naming the parameter', (_what, body, param) => {
    expect(() => toMessagesRequest(body as ChatCompletionRequest)).toThrow(
      expect.objectContaining({ status: 400, options: expect.objectContaining({ param }) }) as Error,
    );
  });

  it('merges parallel calls sent as one assistant message each, answered after both', () => {
    const out = toMessagesRequest({
      ...base,
      messages: [
        { role: 'user', content: 'hi' },
        assistantCalls('call_1'),
        assistantCalls('call_2'),
        { role: 'tool', tool_call_id: 'call_1', content: 'one' },
        { role: 'tool', tool_call_id: 'call_2', content: 'two' },
      ],
    } as ChatCompletionRequest);
    expect(out.messages.map((m) => m.role)).toStrictEqual(['user', 'assistant', 'user']);
    expect((out.messages[1].content as Array<{ id?: string }>).map((b) => b.id)).toStrictEqual(['call_1', 'call_2']);
  });

  it('takes the results of parallel tool calls in any order, then a user turn', () => {
    const out = toMessagesRequest({
      ...base,
      messages: [
        { role: 'user', content: 'hi' },
        assistantCalls('call_1', 'call_2'),
        { role: 'tool', tool_call_id: 'call_2', content: 'two' },
        { role: 'tool', tool_call_id: 'call_1', content: 'one' },
        { role: 'user', content: 'thanks' },
      ],
    } as ChatCompletionRequest);
    expect(out.messages.map((m) => m.role)).toStrictEqual(['user', 'assistant', 'user']);
    expect((out.messages[2].content as Array<{ type: string; tool_use_id?: string }>).map((b) => b.tool_use_id ?? b.type)).toStrictEqual([
      'call_2',
      'call_1',
      'text',
    ]);
  });

  it('sends an inline PDF as a document block', () => {
    const out = toMessagesRequest({
      ...base,
      messages: [
        { role: 'user', content: [{ type: 'file', file: { filename: 'a.pdf', file_data: 'data:application/pdf;base64,JVBERi0=' } }] },
      ],
    });
    expect(out.messages[0].content).toStrictEqual([
      { type: 'document', source: { type: 'base64', media_type: 'application/pdf', data: 'JVBERi0=' } },
    ]);
  });

  it('takes image/jpg (which clients write) and any casing as the media type it means', () => {
    const out = toMessagesRequest({
      ...base,
      messages: [
        {
          role: 'user',
          content: [
            { type: 'image_url', image_url: { url: 'data:image/jpg;base64,/9j/' } },
            { type: 'image_url', image_url: { url: 'data:IMAGE/PNG;base64,iVBO' } },
          ],
        },
      ],
    });
    expect(out.messages[0].content).toStrictEqual([
      { type: 'image', source: { type: 'base64', media_type: 'image/jpeg', data: '/9j/' } },
      { type: 'image', source: { type: 'base64', media_type: 'image/png', data: 'iVBO' } },
    ]);
  });

  it('sends stop sequences with visible text, dropping empty ones', () => {
    expect(toMessagesRequest({ ...base, stop: ['END', '', ' ###'] }).stop_sequences).toStrictEqual(['END', ' ###']);
    expect(toMessagesRequest({ ...base, stop: '' }).stop_sequences).toBeUndefined();
  });

  it('leaves out text that is only whitespace, which Anthropic refuses, and merges the turns around it', () => {
    const out = toMessagesRequest({
      ...base,
      messages: [
        { role: 'system', content: [{ type: 'text', text: '  ' }] },
        { role: 'user', content: 'hi' },
        { role: 'assistant', content: '\n' },
        {
          role: 'user',
          content: [
            { type: 'text', text: '  ' },
            { type: 'text', text: 'go' },
          ],
        },
        { role: 'assistant', content: ' ', tool_calls: [{ id: 'c1', type: 'function', function: { name: 'f', arguments: '{}' } }] },
        { role: 'tool', tool_call_id: 'c1', content: ' \t' },
      ],
    });
    expect(out.system).toBeUndefined();
    expect(out.messages).toStrictEqual([
      {
        role: 'user',
        content: [
          { type: 'text', text: 'hi' },
          { type: 'text', text: 'go' },
        ],
      },
      { role: 'assistant', content: [{ type: 'tool_use', id: 'c1', name: 'f', input: {} }] },
      { role: 'user', content: [{ type: 'tool_result', tool_use_id: 'c1' }] },
    ]);
  });

  it('sends tool-call ids another host wrote (`functions.f:0`, `call_1|fc_2`) in the characters Anthropic takes, the call and its result alike', () => {
    const ids = ['functions.get_weather:0', 'call_1|fc_2', 'functions_get_weather_0', 'toolu_01A-b_c'];
    const out = toMessagesRequest({
      model: 'claude-3-5-sonnet-20241022',
      max_tokens: 100,
      messages: [
        { role: 'user', content: 'weather?' },
        {
          role: 'assistant',
          content: null,
          tool_calls: ids.map((id) => ({ id, type: 'function', function: { name: 'f', arguments: '{}' } })),
        },
        ...ids.map((id) => ({ role: 'tool', tool_call_id: id, content: 'sunny' })),
      ],
    });
    const sent = (out.messages[1].content as Array<{ id: string }>).map((b) => b.id);
    const answered = (out.messages[2].content as Array<{ tool_use_id: string }>).map((b) => b.tool_use_id);
    expect(answered).toEqual(sent);
    for (const id of sent) expect(id).toMatch(/^[a-zA-Z0-9_-]+$/);
    // Ids Anthropic takes are unchanged; two that differ only in a replaced character stay apart.
    expect(sent[3]).toBe('toolu_01A-b_c');
    expect(sent[2]).toBe('functions_get_weather_0');
    expect(sent[0]).toMatch(/^functions_get_weather_0_[0-9a-f]{12}$/);
    expect(new Set(sent).size).toBe(ids.length);
  });

  it('refuses a content part that names no type as malformed (invalid_request), one of a type Claude lacks as unsupported', () => {
    const part = (p: Record<string, unknown>) =>
      refusalOf(() => toMessagesRequest({ ...base, messages: [{ role: 'user', content: [p] }] }));
    expect(part({ text: 'hi' })).toMatchObject({ code: 'invalid_request', message: 'messages[0].content[0].type is required' });
    expect(part({ type: 'video_url' })).toMatchObject({ code: 'unsupported_parameter' });
    // A user message without content at all, as OpenAI answers it (not "needs at least one message").
    expect(refusalOf(() => toMessagesRequest({ ...base, messages: [{ role: 'user' }] }))).toMatchObject({
      code: 'invalid_request',
      options: { param: 'messages[0].content' },
    });
  });

  it('trims the trailing whitespace of a final assistant turn (a prefill), which Anthropic refuses', () => {
    const prefill = (content: ChatCompletionRequest['messages'][number]['content']) =>
      toMessagesRequest({
        ...base,
        messages: [
          { role: 'user', content: 'Write JSON' },
          { role: 'assistant', content },
        ],
      }).messages[1];
    expect(prefill('{"a": \n')).toStrictEqual({ role: 'assistant', content: '{"a":' });
    expect(
      prefill([
        { type: 'text', text: 'Sure.' },
        { type: 'text', text: ' Here: ' },
      ]),
    ).toStrictEqual({
      role: 'assistant',
      content: [
        { type: 'text', text: 'Sure.' },
        { type: 'text', text: ' Here:' },
      ],
    });
    // Not the last turn: kept as sent.
    expect(
      toMessagesRequest({
        ...base,
        messages: [
          { role: 'user', content: 'a' },
          { role: 'assistant', content: 'b ' },
          { role: 'user', content: 'c' },
        ],
      }).messages[1],
    ).toStrictEqual({ role: 'assistant', content: 'b ' });
  });

  it('drops tool_choice auto or none when no tools are declared', () => {
    expect(toMessagesRequest({ ...base, tool_choice: 'auto' }).tool_choice).toBeUndefined();
    expect(toMessagesRequest({ ...base, tool_choice: 'none', parallel_tool_calls: false }).tool_choice).toBeUndefined();
  });
});

describe('finishReason and toUsage', () => {
  it.each([
    ['end_turn', 'stop'],
    ['stop_sequence', 'stop'],
    ['pause_turn', 'stop'],
    ['max_tokens', 'length'],
    ['model_context_window_exceeded', 'length'],
    ['tool_use', 'tool_calls'],
    ['refusal', 'content_filter'],
    [null, 'stop'],
    ['something_new', 'stop'],
  ])('maps %s to %s', (reason, expected) => {
    expect(finishReason(reason)).toBe(expected);
  });

  it('treats null cache counts as zero', () => {
    expect(toUsage({ input_tokens: 5, cache_creation_input_tokens: null, cache_read_input_tokens: null, output_tokens: 2 })).toStrictEqual({
      prompt_tokens: 5,
      completion_tokens: 2,
      total_tokens: 7,
    });
  });
});

describe('AnthropicStreamTranslator', () => {
  const meta = { fallbackId: FALLBACK_ID, created: CREATED, model: MODEL, clientWantsUsage: false };
  const START: AnthropicStreamEvent = {
    type: 'message_start',
    message: { id: 'msg_1', type: 'message', role: 'assistant', model: 'm', content: [], stop_reason: null },
  };
  /** A signed thinking block's events at `index`. */
  const thinkingEvents = (index: number, thinking: string, signature: string): AnthropicStreamEvent[] => [
    { type: 'content_block_start', index, content_block: { type: 'thinking', thinking: '', signature: '' } },
    { type: 'content_block_delta', index, delta: { type: 'thinking_delta', thinking } },
    { type: 'content_block_delta', index, delta: { type: 'signature_delta', signature } },
    { type: 'content_block_stop', index },
  ];
  /** A fresh translator's output for `events`, after message_start. */
  const translated = (events: AnthropicStreamEvent[]): StreamEvent[] => {
    const t = new AnthropicStreamTranslator(meta);
    return [START, ...events].flatMap((event) => t.push(event));
  };
  const deltasOf = (out: StreamEvent[]): Array<[Record<string, unknown>, string | null]> =>
    out
      .filter((e) => e.data !== null)
      .map((e) => JSON.parse(e.data as string) as { choices: Array<{ delta: Record<string, unknown>; finish_reason: string | null }> })
      .filter((c) => c.choices.length > 0)
      .map((c) => [c.choices[0].delta, c.choices[0].finish_reason]);

  it('reports the usage seen so far (message_start, message_delta), so a stream that fails later is billed what Anthropic counted', () => {
    const t = new AnthropicStreamTranslator(meta);
    const [role] = t.push({
      type: 'message_start',
      message: {
        id: 'msg_1',
        type: 'message',
        role: 'assistant',
        model: 'm',
        content: [],
        stop_reason: null,
        usage: { input_tokens: 1000, cache_read_input_tokens: 5000, output_tokens: 1 },
      },
    });
    expect(role.data).not.toBeNull();
    expect(role.runningUsage).toMatchObject({ prompt_tokens: 6000, completion_tokens: 1 });
    const delta = t.push({ type: 'message_delta', delta: { stop_reason: null }, usage: { output_tokens: 42 } });
    expect(delta).toStrictEqual([{ data: null, runningUsage: expect.objectContaining({ prompt_tokens: 6000, completion_tokens: 42 }) }]);
    expect(() => t.push({ type: 'error', error: { type: 'overloaded_error', message: 'Overloaded' } })).toThrow(UpstreamError);
  });

  it.each([false, true])(
    'gives a stream whose host reported no usage no usage at all (keygate estimates it; no usage chunk of zeros), client wants usage: %s',
    (clientWantsUsage) => {
      const t = new AnthropicStreamTranslator({ ...meta, clientWantsUsage });
      // `usage: {}` (a compatible host) reports nothing: no running usage of zeros either.
      const [role] = t.push({
        type: 'message_start',
        message: { id: 'msg_1', type: 'message', role: 'assistant', model: 'm', content: [], stop_reason: null, usage: {} },
      });
      expect(role).not.toHaveProperty('runningUsage');
      expect(t.push({ type: 'message_delta', delta: { stop_reason: 'end_turn' }, usage: {} }).some((e) => e.runningUsage)).toBe(false);
      const end = t.push({ type: 'message_stop' });
      expect(end.some((e) => e.usage !== undefined)).toBe(false);
      expect(end.filter((e) => e.data !== null).map((e) => JSON.parse(e.data as string) as { usage?: unknown })).not.toContainEqual(
        expect.objectContaining({ choices: [] }),
      );
    },
  );

  it('refuses content before message_start', () => {
    const t = new AnthropicStreamTranslator(meta);
    expect(() => t.push({ type: 'content_block_delta', index: 0, delta: { type: 'text_delta', text: 'x' } })).toThrow(UpstreamError);
  });

  it('refuses argument deltas for a block that is not a tool call', () => {
    const t = new AnthropicStreamTranslator(meta);
    t.push({
      type: 'message_start',
      message: { id: 'msg_1', type: 'message', role: 'assistant', model: 'm', content: [], stop_reason: null },
    });
    expect(() => t.push({ type: 'content_block_delta', index: 3, delta: { type: 'input_json_delta', partial_json: '{' } })).toThrow(
      UpstreamError,
    );
  });

  it('skips unknown events and deltas, and finishes a stop without stop_reason', () => {
    const t = new AnthropicStreamTranslator(meta);
    const out = [
      ...t.push({
        type: 'message_start',
        message: { id: 'msg_1', type: 'message', role: 'assistant', model: 'm', content: [], stop_reason: null },
      }),
      ...t.push({
        type: 'content_block_start',
        index: 0,
        content_block: { type: 'server_tool_use', id: 'srvtoolu_1', name: 'web_search' },
      }),
      ...t.push({
        type: 'content_block_delta',
        index: 0,
        delta: { type: 'citations_delta', citation: { type: 'web_search_result_location' } },
      }),
      ...t.push({ type: 'brand_new_event' } as unknown as AnthropicStreamEvent),
      ...t.push({ type: 'message_stop' }),
    ];
    const chunks = out
      .filter((e) => e.data !== null)
      .map((e) => JSON.parse(e.data as string) as { choices: Array<{ finish_reason: string | null }> });
    expect(chunks.map((c) => c.choices[0].finish_reason)).toStrictEqual([null, 'stop']);
    expect(() => t.end()).not.toThrow();
  });

  it('ends a stream whose host left message_stop out after the stop reason as whole: its usage chunk, no error', () => {
    const t = new AnthropicStreamTranslator({ fallbackId: FALLBACK_ID, created: CREATED, model: MODEL, clientWantsUsage: true });
    t.push({ type: 'message_start', message: { id: 'msg_1', usage: { input_tokens: 10, output_tokens: 1 } } } as AnthropicStreamEvent);
    t.push({ type: 'content_block_start', index: 0, content_block: { type: 'text', text: '' } });
    t.push({ type: 'content_block_delta', index: 0, delta: { type: 'text_delta', text: 'hi' } });
    const finish = t.push({
      type: 'message_delta',
      delta: { stop_reason: 'end_turn' },
      usage: { output_tokens: 2 },
    });
    expect(finish.some((e) => e.data?.includes('"finish_reason":"stop"'))).toBe(true);
    const closing = t.end();
    expect(closing).toHaveLength(1);
    expect(closing[0].usage).toMatchObject({ prompt_tokens: 10, completion_tokens: 2 });
    expect(JSON.parse(closing[0].data as string)).toMatchObject({ choices: [], usage: { completion_tokens: 2 } });
    // Without the stop reason the answer was cut short.
    const cut = new AnthropicStreamTranslator({ fallbackId: FALLBACK_ID, created: CREATED, model: MODEL, clientWantsUsage: true });
    cut.push({ type: 'message_start', message: { id: 'msg_2', usage: { input_tokens: 10 } } } as AnthropicStreamEvent);
    expect(() => cut.end()).toThrow(/without message_stop/);
  });

  it('sends the thinking blocks before the finish when the answer ends while thinking (max_tokens)', () => {
    const out = translated([
      ...thinkingEvents(0, 'long thought', 'sig'),
      { type: 'message_delta', delta: { stop_reason: 'max_tokens' }, usage: { output_tokens: 9 } },
      { type: 'message_stop' },
    ]);
    expect(deltasOf(out).slice(1)).toStrictEqual([
      [{ reasoning_content: 'long thought' }, null],
      [{ thinking_blocks: [{ type: 'thinking', thinking: 'long thought', signature: 'sig' }] }, null],
      [{}, 'length'],
    ]);
    // The thinking is output too: a stream cut short is estimated with it.
    expect(out.map((e) => e.text).filter(Boolean)).toStrictEqual(['long thought']);
  });

  it('keeps thinking blocks apart from the answer’s blocks between them: text with a blank line between, all blocks at the end, in order', () => {
    const out = translated([
      ...thinkingEvents(0, 'first', 's1'),
      { type: 'content_block_start', index: 1, content_block: { type: 'text', text: '' } },
      { type: 'content_block_delta', index: 1, delta: { type: 'text_delta', text: 'Let me look.' } },
      { type: 'content_block_stop', index: 1 },
      ...thinkingEvents(2, 'second', 's2'),
      { type: 'message_delta', delta: { stop_reason: 'end_turn' }, usage: { output_tokens: 9 } },
      { type: 'message_stop' },
    ]);
    expect(
      deltasOf(out)
        .slice(1, -1)
        .map(([delta]) => delta),
    ).toStrictEqual([
      { reasoning_content: 'first' },
      { content: 'Let me look.' },
      { reasoning_content: '\n\nsecond' },
      {
        thinking_blocks: [
          { type: 'thinking', thinking: 'first', signature: 's1' },
          { type: 'thinking', thinking: 'second', signature: 's2' },
        ],
      },
    ]);
    const { completion } = toChatCompletion(
      {
        id: 'msg_2',
        type: 'message',
        role: 'assistant',
        model: 'm',
        content: [
          { type: 'thinking', thinking: 'first', signature: 's1' },
          { type: 'text', text: 'Let me look.' },
          { type: 'thinking', thinking: 'second', signature: 's2' },
        ],
        stop_reason: 'end_turn',
      },
      { fallbackId: FALLBACK_ID, created: CREATED, model: MODEL },
    );
    expect(completion.choices[0].message.reasoning_content).toBe('first\n\nsecond');
  });

  it('refuses a thinking delta for a block that is not a thinking block', () => {
    const t = new AnthropicStreamTranslator(meta);
    t.push(START);
    t.push({ type: 'content_block_start', index: 0, content_block: { type: 'text', text: '' } });
    expect(() => t.push({ type: 'content_block_delta', index: 0, delta: { type: 'thinking_delta', thinking: 'x' } })).toThrow(
      UpstreamError,
    );
  });

  it('uses the fallback id when message_start has no id', () => {
    const t = new AnthropicStreamTranslator(meta);
    const [first] = t.push({
      type: 'message_start',
      message: { type: 'message', role: 'assistant', model: 'm', content: [], stop_reason: null } as unknown as AnthropicMessage,
    });
    expect((JSON.parse(first.data as string) as { id: string }).id).toBe(FALLBACK_ID);
  });
});

/*
 * A compatible host's counts come as it wrote them: only a non-negative safe integer is a count.
 * JSON cannot carry NaN or Infinity, but a translator takes objects and must not trust them.
 */
describe('Anthropic usage counts that are not counts', () => {
  const meta = { fallbackId: FALLBACK_ID, created: CREATED, model: MODEL };
  const NUMBERS_NOT_COUNTS: unknown[] = [-1, 1.5, NaN, Infinity, 2 ** 53, 2 ** 53 - 1, 1_000_000_001];
  const NOT_COUNTS: unknown[] = ['12', ...NUMBERS_NOT_COUNTS];
  /** An answer with `usage`, which may hold anything. */
  const answer = (usage: Record<string, unknown>): AnthropicMessage => ({
    id: 'msg_1',
    type: 'message',
    role: 'assistant',
    model: 'm',
    content: [{ type: 'text', text: 'hi' }],
    stop_reason: 'end_turn',
    usage,
  });
  const streamed = (starting: Record<string, unknown>, final: Record<string, unknown>, clientWantsUsage: boolean): StreamEvent[] => {
    const t = new AnthropicStreamTranslator({ ...meta, clientWantsUsage });
    return [
      { ...answer(starting), content: [], stop_reason: null },
      { type: 'content_block_start', index: 0, content_block: { type: 'text', text: '' } },
      { type: 'content_block_delta', index: 0, delta: { type: 'text_delta', text: 'hi' } },
      { type: 'content_block_stop', index: 0 },
      { type: 'message_delta', delta: { stop_reason: 'end_turn' }, usage: final },
      { type: 'message_stop' },
    ].flatMap((event, i) => t.push((i === 0 ? { type: 'message_start', message: event } : event) as AnthropicStreamEvent));
  };
  const usageChunks = (events: StreamEvent[]): unknown[] =>
    events
      .filter((e) => e.data !== null)
      .map((e) => JSON.parse(e.data as string) as { choices: unknown[]; usage?: unknown })
      .filter((c) => c.choices.length === 0 || (c.usage !== undefined && c.usage !== null));

  it.each([undefined, null])(
    'an input or output count left out (%p): the answer carries no usage (keygate estimates it; a prompt read as 0 would be billed as free)',
    (missing) => {
      for (const usage of [
        { input_tokens: missing, output_tokens: 3 },
        { input_tokens: 12, output_tokens: missing },
        { input_tokens: missing, output_tokens: missing, cache_read_input_tokens: 5 },
      ]) {
        const { completion, usage: read } = toChatCompletion(answer(usage), meta);
        expect(read).toBeNull();
        expect(completion).not.toHaveProperty('usage');
        expect(toUsage(usage as never)).toBeNull();
      }
    },
  );

  describe.each(NOT_COUNTS)('%p', (bad) => {
    it.each(['input_tokens', 'output_tokens'])('as %s: the answer carries no usage (keygate estimates it)', (field) => {
      const { completion, usage } = toChatCompletion(answer({ input_tokens: 12, output_tokens: 3, [field]: bad }), meta);
      expect(usage).toBeNull();
      expect(completion).not.toHaveProperty('usage');
    });

    it('as a cache count (reads, writes, hour-long writes): left out, the rest kept', () => {
      const usage = toUsage({
        input_tokens: 12,
        cache_read_input_tokens: bad,
        cache_creation_input_tokens: bad,
        output_tokens: 3,
      } as never);
      expect(usage).toStrictEqual({ prompt_tokens: 12, completion_tokens: 3, total_tokens: 15 });
      expect(usage?.[CACHE_WRITE_TOKENS]).toBeUndefined();
      const oneHour = toUsage({
        input_tokens: 12,
        cache_creation_input_tokens: 8,
        cache_creation: { ephemeral_5m_input_tokens: 8, ephemeral_1h_input_tokens: bad },
        output_tokens: 3,
      } as never);
      expect(oneHour).toStrictEqual({ prompt_tokens: 20, completion_tokens: 3, total_tokens: 23 });
      expect(oneHour?.[CACHE_WRITE_TOKENS]).toBe(8);
      expect(oneHour?.[CACHE_WRITE_1H_TOKENS]).toBeUndefined();
    });

    it.each([false, true])(
      'in message_start: a count message_delta reports instead is taken; none, and the stream has no usage, running or final, nor usage chunk (client wants it: %s)',
      (wants) => {
        const replaced = streamed({ input_tokens: 12, output_tokens: bad }, { output_tokens: 3 }, wants);
        expect(replaced.filter((e) => e.usage).map((e) => e.usage)).toStrictEqual([
          { prompt_tokens: 12, completion_tokens: 3, total_tokens: 15 },
        ]);
        const events = streamed({ input_tokens: bad, output_tokens: 1 }, { output_tokens: 3 }, wants);
        expect(events.filter((e) => e.usage || e.runningUsage)).toEqual([]);
        expect(usageChunks(events)).toEqual([]);
      },
    );
  });

  // A string was never merged (only numbers were); these are the numbers that are not counts.
  it.each(NUMBERS_NOT_COUNTS)(
    'takes no %p in message_delta over the counts message_start reported, for main counts and cache counts alike',
    (bad) => {
      const events = streamed(
        { input_tokens: 12, cache_read_input_tokens: 5, output_tokens: 1 },
        { input_tokens: bad, cache_read_input_tokens: bad, output_tokens: 3 },
        true,
      );
      const usage = { prompt_tokens: 17, completion_tokens: 3, total_tokens: 20, prompt_tokens_details: { cached_tokens: 5 } };
      expect(events.filter((e) => e.runningUsage).at(-1)?.runningUsage).toStrictEqual(usage);
      expect(events.filter((e) => e.usage).map((e) => e.usage)).toStrictEqual([usage]);
      expect(usageChunks(events)).toEqual([expect.objectContaining({ choices: [], usage })]);
    },
  );
});
