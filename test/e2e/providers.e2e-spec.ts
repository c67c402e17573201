/**
 * Providers, black box (issue 4): the built gateway and mock upstream run as real processes and
 * the official `openai` SDK talks to Anthropic and Gemini models through the gateway. Every case
 * checks the outcome, how many requests reached each upstream route, and the request's single
 * audit line. Fallbacks and retries use a second, in-test upstream that fails on demand (see
 * `provider-fixtures.ts` for why the mock's directives cannot fail only the primary).
 */
import { request as httpRequest } from 'node:http';
import OpenAI, { APIUserAbortError } from 'openai';
import type {
  ChatCompletionChunk,
  ChatCompletionCreateParamsNonStreaming,
  ChatCompletionCreateParamsStreaming,
  ChatCompletionMessageParam,
} from 'openai/resources/chat/completions';
import {
  ANTHROPIC_MODEL,
  CLAUDE_THINKING_MODEL,
  decodeFloat32Base64,
  FlakyUpstream,
  GEMINI_EMBEDDING_DIMS,
  GEMINI_EMBEDDING_MODEL,
  GEMINI_25_MODEL,
  GEMINI_3_MODEL,
  GEMINI_MODEL,
  mockReply,
  OPENAI_EMBEDDING_MODEL,
  OPENAI_MODEL,
  OPENAI_REASONING_MODEL,
  countingUpstream,
  expectOneAuditOn,
  moved,
  rid,
  startProviderStack,
  stopProviderStack,
  TIME_TOOL,
  TINY_PNG_BASE64,
  TINY_PNG_DATA_URL,
  TRANSLATED_PROVIDERS,
  WEATHER_TOOL,
} from './provider-fixtures';
import {
  apiError,
  cleanupTempFiles,
  mintToken,
  streamUntilError,
  sleep,
  waitFor,
  type AuditRecord,
  uniqueId,
  type Gateway,
  type MockRoute,
  type MockStats,
  type MockUpstream,
} from './harness';

/** Retries per model after the first attempt (the documented default, set explicitly). */
const MAX_RETRIES = 2;

let mock: MockUpstream;
let flaky: FlakyUpstream;
let gw: Gateway;
let token: string;

beforeAll(async () => {
  ({ mock, flaky, gw } = await startProviderStack(MAX_RETRIES, { API_KEY_SERVER_UPSTREAM_CONNECT_TIMEOUT_MS: '1000' }));
  token = mintToken({ product: 'prov', sub: 'prov-user' });
}, 45_000);

afterAll(async () => {
  await stopProviderStack({ gw, mock, flaky });
  cleanupTempFiles();
}, 30_000);

// ---------------------------------------------------------------------------------------------
// helpers
// ---------------------------------------------------------------------------------------------

const counting = <T>(action: () => Promise<T>): ReturnType<typeof countingUpstream<T>> => countingUpstream(mock, action);
const expectOneAudit = (requestId: string, expected: Partial<AuditRecord> & Record<string, unknown>): Promise<AuditRecord> =>
  expectOneAuditOn(gw, requestId, expected);

function user(text: string): ChatCompletionMessageParam[] {
  return [{ role: 'user', content: text }];
}

async function collect(stream: AsyncIterable<ChatCompletionChunk>): Promise<ChatCompletionChunk[]> {
  const chunks: ChatCompletionChunk[] = [];
  for await (const chunk of stream) chunks.push(chunk);
  return chunks;
}

function textOf(chunks: ChatCompletionChunk[]): string {
  return chunks.map((c) => c.choices[0]?.delta?.content ?? '').join('');
}

function finishOf(chunks: ChatCompletionChunk[]): string | null | undefined {
  return chunks.map((c) => c.choices[0]?.finish_reason).filter((f) => f)[0];
}

type Json = Record<string, unknown>;

function lastBody(stats: MockStats, route: MockRoute): Json {
  const body = stats.last[route]?.body;
  if (typeof body !== 'object' || body === null) throw new Error(`the mock recorded no ${route} body`);
  return body as Json;
}

// ---------------------------------------------------------------------------------------------
// Anthropic and Gemini behind the OpenAI API
// ---------------------------------------------------------------------------------------------

describe.each(TRANSLATED_PROVIDERS)('$provider ($model) through the OpenAI SDK', ({ provider, model, route, streamRoute }) => {
  it('answers a plain completion in OpenAI shape, with usage equal to the audited tokens', async () => {
    const { id, headers } = rid(`${provider}-plain`);
    const { result, delta } = await counting(() =>
      gw
        .openai(token)
        .chat.completions.create({ model, messages: user('plain question') }, { headers })
        .withResponse(),
    );
    const { data, response } = result;
    expect(response.status).toBe(200);
    expect(data.object).toBe('chat.completion');
    expect(data.id).toMatch(/\S/);
    expect(data.choices).toHaveLength(1);
    expect(data.choices[0].message.role).toBe('assistant');
    expect(data.choices[0].message.content).toBe(mockReply(provider, 'plain question'));
    expect(data.choices[0].finish_reason).toBe('stop');
    expect(data.usage!.prompt_tokens).toBeGreaterThan(0);
    expect(data.usage!.completion_tokens).toBeGreaterThan(0);
    expect(data.usage!.total_tokens).toBe(data.usage!.prompt_tokens + data.usage!.completion_tokens);
    expect(moved(delta)).toEqual({ [route]: 1 });
    await expectOneAudit(id, {
      status: 200,
      failure: null,
      product: 'prov',
      user: 'prov-user',
      provider,
      model,
      requested_model: model,
      attempts: 1,
      stream: false,
      tokens_in: data.usage!.prompt_tokens,
      tokens_out: data.usage!.completion_tokens,
    });
  });

  it('sends system messages and a multi-turn history in the provider format', async () => {
    const { id, headers } = rid(`${provider}-multiturn`);
    const messages: ChatCompletionMessageParam[] = [
      { role: 'system', content: 'You are terse.' },
      { role: 'user', content: 'first question' },
      { role: 'assistant', content: 'first answer' },
      { role: 'user', content: 'second question' },
    ];
    const { result, delta, after } = await counting(() => gw.openai(token).chat.completions.create({ model, messages }, { headers }));
    expect(result.choices[0].message.content).toBe(mockReply(provider, 'second question'));
    expect(moved(delta)).toEqual({ [route]: 1 });
    const sent = lastBody(after, route);
    if (provider === 'anthropic') {
      expect(JSON.stringify(sent.system)).toContain('You are terse.');
      const turns = sent.messages as Array<{ role: string; content: unknown }>;
      expect(turns.map((t) => t.role)).toEqual(['user', 'assistant', 'user']);
      expect(JSON.stringify(turns)).not.toContain('You are terse.');
      // Required by Anthropic: the policy cap (built-in 4096) when the client sent none.
      expect(sent.max_tokens).toBe(4096);
    } else {
      const instruction = (sent.systemInstruction ?? sent.system_instruction) as { parts: Array<{ text: string }> };
      expect(instruction.parts.map((p) => p.text).join('')).toContain('You are terse.');
      const contents = sent.contents as Array<{ role: string; parts: Array<{ text?: string }> }>;
      expect(contents.map((c) => c.role)).toEqual(['user', 'model', 'user']);
      expect(contents[1].parts[0].text).toBe('first answer');
      expect((sent.generationConfig as Json).maxOutputTokens).toBe(4096);
    }
    await expectOneAudit(id, { status: 200, failure: null, provider, model });
  });

  it('streams text that reassembles to the plain answer, without any usage key when not asked', async () => {
    const text = 'stream me please';
    const reference = await gw.openai(token).chat.completions.create({ model, messages: user(text) });
    const { id, headers } = rid(`${provider}-stream`);
    const { result, delta } = await counting(async () => {
      const { data: stream, response } = await gw
        .openai(token)
        .chat.completions.create({ model, messages: user(text), stream: true }, { headers })
        .withResponse();
      expect(response.headers.get('content-type')).toContain('text/event-stream');
      return collect(stream);
    });
    expect(result.length).toBeGreaterThan(2);
    expect(textOf(result)).toBe(reference.choices[0].message.content);
    expect(finishOf(result)).toBe('stop');
    for (const chunk of result) {
      expect(chunk.object).toBe('chat.completion.chunk');
      expect('usage' in chunk).toBe(false);
    }
    expect(new Set(result.map((c) => c.id)).size).toBe(1);
    expect(moved(delta)).toEqual({ [streamRoute]: 1 });
    await expectOneAudit(id, {
      status: 200,
      failure: null,
      provider,
      model,
      stream: true,
      tokens_in: reference.usage!.prompt_tokens,
      tokens_out: reference.usage!.completion_tokens,
    });
  });

  it('streams a final usage chunk when include_usage is asked, equal to the audited tokens', async () => {
    const { id, headers } = rid(`${provider}-stream-usage`);
    const { result, delta } = await counting(async () =>
      collect(
        await gw
          .openai(token)
          .chat.completions.create(
            { model, messages: user('stream with usage'), stream: true, stream_options: { include_usage: true } },
            { headers },
          ),
      ),
    );
    const last = result[result.length - 1];
    expect(last.choices).toEqual([]);
    expect(last.usage!.prompt_tokens).toBeGreaterThan(0);
    expect(last.usage!.completion_tokens).toBeGreaterThan(0);
    expect(last.usage!.total_tokens).toBe(last.usage!.prompt_tokens + last.usage!.completion_tokens);
    expect(result.slice(0, -1).filter((c) => c.usage)).toEqual([]);
    expect(textOf(result)).toBe(mockReply(provider, 'stream with usage'));
    expect(moved(delta)).toEqual({ [streamRoute]: 1 });
    await expectOneAudit(id, {
      status: 200,
      failure: null,
      stream: true,
      tokens_in: last.usage!.prompt_tokens,
      tokens_out: last.usage!.completion_tokens,
    });
  });

  it('answers a single tool call with an id, the name and JSON arguments', async () => {
    const { id, headers } = rid(`${provider}-tool`);
    const { result, delta } = await counting(() =>
      gw
        .openai(token)
        .chat.completions.create(
          { model, messages: user('weather in Paris [mock tool=get_time]'), tools: [WEATHER_TOOL, TIME_TOOL] },
          { headers },
        ),
    );
    const choice = result.choices[0];
    expect(choice.finish_reason).toBe('tool_calls');
    expect(choice.message.tool_calls).toHaveLength(1);
    const call = choice.message.tool_calls![0];
    expect(call.type).toBe('function');
    if (call.type !== 'function') throw new Error('not a function call');
    expect(call.id).toMatch(/\S/);
    expect(call.function.name).toBe('get_time');
    // The arguments follow get_time's parameters, as a model's do.
    expect(JSON.parse(call.function.arguments)).toEqual({ city: 'weather in Paris' });
    expect(moved(delta)).toEqual({ [route]: 1 });
    await expectOneAudit(id, { status: 200, failure: null, provider, model, tokens_out: result.usage!.completion_tokens });
  });

  it('forces a named tool with tool_choice, and translates the choice for the provider', async () => {
    const { id, headers } = rid(`${provider}-tool-choice`);
    const { result, delta, after } = await counting(() =>
      gw.openai(token).chat.completions.create(
        {
          model,
          messages: user('no directive here'),
          tools: [WEATHER_TOOL, TIME_TOOL],
          tool_choice: { type: 'function', function: { name: 'get_time' } },
        },
        { headers },
      ),
    );
    const calls = result.choices[0].message.tool_calls ?? [];
    expect(calls).toHaveLength(1);
    expect(calls[0].type === 'function' && calls[0].function.name).toBe('get_time');
    expect(moved(delta)).toEqual({ [route]: 1 });
    const sent = lastBody(after, route);
    if (provider === 'anthropic') {
      expect(sent.tool_choice).toEqual({ type: 'tool', name: 'get_time' });
      expect((sent.tools as Json[]).map((t) => t.name)).toEqual(['get_weather', 'get_time']);
    } else {
      expect(sent.toolConfig).toEqual({ functionCallingConfig: { mode: 'ANY', allowedFunctionNames: ['get_time'] } });
      const declarations = (sent.tools as Array<{ functionDeclarations: Json[] }>).flatMap((t) => t.functionDeclarations);
      expect(declarations.map((d) => d.name)).toEqual(['get_weather', 'get_time']);
    }
    await expectOneAudit(id, { status: 200, failure: null, provider });
  });

  it('streams parallel tool calls that the SDK stream helper assembles, then accepts the tool results turn', async () => {
    const { id, headers } = rid(`${provider}-parallel`);
    const tools = [WEATHER_TOOL, TIME_TOOL];
    const messages: ChatCompletionMessageParam[] = user('weather in Paris and Rome [mock tools=2]');
    const chunks: ChatCompletionChunk[] = [];
    const argumentsDone: Array<{ index: number; name: string; parsed: unknown }> = [];
    // The helper's argument events in order, and what each call's deltas added up to when it was done.
    const argumentEvents: string[] = [];
    const streamed = new Map<number, string>();
    const doneWith = new Map<number, string | undefined>();
    const { result: final, delta } = await counting(async () => {
      const runner = gw
        .openai(token)
        .chat.completions.stream({ model, messages, tools, stream_options: { include_usage: true } }, { headers });
      runner.on('chunk', (chunk) => chunks.push(chunk));
      runner.on('tool_calls.function.arguments.delta', (e) => {
        argumentEvents.push(`delta ${e.index}`);
        streamed.set(e.index, (streamed.get(e.index) ?? '') + e.arguments_delta);
      });
      runner.on('tool_calls.function.arguments.done', (e) => {
        argumentEvents.push(`done ${e.index}`);
        doneWith.set(e.index, streamed.get(e.index));
        argumentsDone.push({ index: e.index, name: e.name, parsed: e.parsed_arguments });
      });
      return runner.finalChatCompletion();
    });
    expect(moved(delta)).toEqual({ [streamRoute]: 1 });

    // Assembled by the SDK from the chunks: two calls, distinct ids, every argument valid JSON.
    const choice = final.choices[0];
    expect(choice.finish_reason).toBe('tool_calls');
    const calls = choice.message.tool_calls ?? [];
    expect(calls).toHaveLength(2);
    const ids = calls.map((c) => c.id);
    expect(ids.every((v) => typeof v === 'string' && v.length > 0)).toBe(true);
    expect(new Set(ids).size).toBe(2);
    for (const call of calls) {
      if (call.type !== 'function') throw new Error('not a function call');
      // With tools=2 and no tool=NAME the mock calls the first declared tool twice.
      expect(call.function.name).toBe('get_weather');
      expect(JSON.parse(call.function.arguments)).toEqual({ city: 'weather in Paris and Rome' });
    }
    expect(argumentsDone.map((e) => e.index).sort()).toEqual([0, 1]);
    // Each call's arguments stream before it is done, as OpenAI streams calls: one call per chunk.
    expect(argumentEvents.filter((e, i) => e !== argumentEvents[i - 1])).toEqual(['delta 0', 'done 0', 'delta 1', 'done 1']);
    expect([doneWith.get(0), doneWith.get(1)]).toEqual(calls.map((c) => (c.type === 'function' ? c.function.arguments : '')));
    expect(chunks.every((c) => (c.choices[0]?.delta?.tool_calls?.length ?? 0) <= 1)).toBe(true);
    // Each call's first chunk carries its own index and id.
    const firsts = chunks.flatMap((c) => c.choices[0]?.delta?.tool_calls ?? []).filter((t) => t.id);
    expect(firsts.map((t) => [t.index, t.id])).toEqual([
      [0, ids[0]],
      [1, ids[1]],
    ]);
    const usage = chunks[chunks.length - 1].usage;
    expect(usage).toBeTruthy();
    await expectOneAudit(id, {
      status: 200,
      failure: null,
      provider,
      model,
      stream: true,
      tokens_in: usage!.prompt_tokens,
      tokens_out: usage!.completion_tokens,
    });

    // Next turn: the assistant's tool calls as the SDK assembled them, and one result per call.
    const followUp = rid(`${provider}-tool-results`);
    const history: ChatCompletionMessageParam[] = [
      ...messages,
      choice.message,
      ...calls.map((c, i): ChatCompletionMessageParam => ({ role: 'tool', tool_call_id: c.id, content: `{"temp_c": ${20 + i}}` })),
    ];
    const {
      result: answer,
      delta: delta2,
      after,
    } = await counting(() => gw.openai(token).chat.completions.create({ model, messages: history, tools }, { headers: followUp.headers }));
    expect(answer.choices[0].finish_reason).toBe('stop');
    expect(answer.choices[0].message.content).toBe(mockReply(provider, 'weather in Paris and Rome'));
    expect(moved(delta2)).toEqual({ [route]: 1 });
    const sent = JSON.stringify(lastBody(after, route));
    if (provider === 'anthropic') {
      // tool_use ids on the assistant turn, tool_result blocks pointing at them on the next user turn.
      for (const callId of ids) expect(sent.split(callId).length - 1).toBe(2);
      expect(sent).toContain('"tool_result"');
    } else {
      expect(sent.match(/"functionResponse"/g)).toHaveLength(2);
      expect(sent.match(/"functionCall"/g)).toHaveLength(2);
    }
    await expectOneAudit(followUp.id, { status: 200, failure: null, provider, model });
  });

  it('accepts an image as a data URL and sends it inline', async () => {
    const { id, headers } = rid(`${provider}-image`);
    const { result, delta, after } = await counting(() =>
      gw.openai(token).chat.completions.create(
        {
          model,
          messages: [
            {
              role: 'user',
              content: [
                { type: 'text', text: 'what is in this picture' },
                { type: 'image_url', image_url: { url: TINY_PNG_DATA_URL } },
              ],
            },
          ],
        },
        { headers },
      ),
    );
    expect(result.choices[0].message.content).toBe(mockReply(provider, 'what is in this picture'));
    expect(moved(delta)).toEqual({ [route]: 1 });
    const sent = lastBody(after, route);
    if (provider === 'anthropic') {
      const blocks = (sent.messages as Array<{ content: Json[] }>)[0].content;
      expect(blocks).toContainEqual({ type: 'image', source: { type: 'base64', media_type: 'image/png', data: TINY_PNG_BASE64 } });
    } else {
      const parts = (sent.contents as Array<{ parts: Json[] }>)[0].parts;
      expect(parts).toContainEqual({ inlineData: { mimeType: 'image/png', data: TINY_PNG_BASE64 } });
    }
    await expectOneAudit(id, { status: 200, failure: null, provider });
  });

  it("maps the provider's out-of-tokens stop to finish_reason length, plain and streamed", async () => {
    const plain = rid(`${provider}-length`);
    const { result, delta } = await counting(() =>
      gw.openai(token).chat.completions.create({ model, messages: user('long answer [mock finish=length]') }, { headers: plain.headers }),
    );
    expect(result.choices[0].finish_reason).toBe('length');
    expect(moved(delta)).toEqual({ [route]: 1 });
    await expectOneAudit(plain.id, { status: 200, failure: null, provider });

    const streamed = rid(`${provider}-length-stream`);
    const chunks = await collect(
      await gw
        .openai(token)
        .chat.completions.create(
          { model, messages: user('long answer [mock finish=length]'), stream: true },
          { headers: streamed.headers },
        ),
    );
    expect(finishOf(chunks)).toBe('length');
    await expectOneAudit(streamed.id, { status: 200, failure: null, provider, stream: true });
  });

  it('retries a stream whose first event is an overloaded error, as the HTTP status it stands for, before any byte goes out', async () => {
    const { id, headers } = rid(`${provider}-error-first`);
    const { result: error, delta } = await counting(() =>
      apiError(
        gw
          .openai(token)
          .chat.completions.create(
            { model, messages: user('overloaded from the start [mock error_event_after=0]'), stream: true },
            { headers },
          ),
      ),
    );
    // Every attempt failed the same way: an HTTP error answer (no 200 and SSE error event), after the retries.
    expect(error.status).toBe(502);
    expect(error.code).toBe('upstream_error');
    expect(moved(delta)).toEqual({ [streamRoute]: MAX_RETRIES + 1 });
    await expectOneAudit(id, { status: 502, failure: 'upstream', provider, stream: true, attempts: MAX_RETRIES + 1 });
  });

  it('retries a stream whose connection drops before any content, as a dropped connection, before any byte goes out', async () => {
    const { id, headers } = rid(`${provider}-cut-first`);
    const { result: error, delta } = await counting(() =>
      apiError(
        gw.openai(token).chat.completions.create({ model, messages: user('cut at once [mock cut_after=0]'), stream: true }, { headers }),
      ),
    );
    expect({ status: error.status, code: error.code }).toEqual({ status: 502, code: 'upstream_error' });
    expect(error.message).toMatch(/closed the connection before its answer was complete/);
    expect(moved(delta)).toEqual({ [streamRoute]: MAX_RETRIES + 1 });
    await expectOneAudit(id, { status: 502, failure: 'upstream', provider, stream: true, attempts: MAX_RETRIES + 1 });
  });

  it('makes the SDK stream throw when the provider sends an error event mid-stream, without retry or fallback', async () => {
    const { id, headers } = rid(`${provider}-error-event`);
    const {
      result: { received, error },
      delta,
    } = await counting(() =>
      streamUntilError(
        gw.openai(token),
        { model, messages: user('doomed stream with some words [mock error_event_after=2]'), stream: true },
        headers,
      ),
    );
    expect(received.join('')).not.toBe('');
    expect(error.code).toBe('upstream_error');
    expect(moved(delta)).toEqual({ [streamRoute]: 1 });
    const audit = await expectOneAudit(id, { status: 502, failure: 'upstream', provider, stream: true, attempts: 1 });
    // Anthropic (message_start) and Gemini (each chunk) report the prompt's usage before the
    // error: the stream is billed that, not keygate's estimate. The same prompt unstreamed says how much.
    const plain = await gw
      .openai(token)
      .chat.completions.create({ model, messages: user('doomed stream with some words [mock error_event_after=2]') });
    expect(audit.tokens_in).toBe(plain.usage?.prompt_tokens);
  });
});

describe('parameters a provider cannot honour are refused with 400 naming them, before any upstream call', () => {
  const IMAGE_BY_LINK: ChatCompletionMessageParam[] = [
    {
      role: 'user',
      content: [
        { type: 'text', text: 'what is this' },
        { type: 'image_url', image_url: { url: 'https://example.com/cat.png' } },
      ],
    },
  ];

  it.each([
    ['anthropic', 'n', ANTHROPIC_MODEL, { n: 2 }],
    ['anthropic', 'response_format', ANTHROPIC_MODEL, { response_format: { type: 'json_object' } }],
    ['anthropic', 'logprobs', ANTHROPIC_MODEL, { logprobs: true }],
    ['anthropic', 'temperature', ANTHROPIC_MODEL, { temperature: 1.2 }],
    ['gemini', 'logprobs', GEMINI_MODEL, { logprobs: true }],
    ['gemini', 'logit_bias', GEMINI_MODEL, { logit_bias: { '50256': -100 } }],
    ['gemini', 'stop', GEMINI_MODEL, { stop: Array.from({ length: 6 }, (_, i) => `stop-${i}`) }],
    ['gemini', 'messages[0].content[1].image_url', GEMINI_MODEL, { messages: IMAGE_BY_LINK }],
  ] as const)('%s refuses %s', async (provider, param, model, extra) => {
    const { id, headers } = rid(`unsupported-${provider}`);
    const { result: error, total } = await counting(() =>
      apiError(gw.openai(token).chat.completions.create({ model, messages: user('refuse me'), ...extra }, { headers })),
    );
    expect(error.status).toBe(400);
    expect(error.code).toBe('unsupported_parameter');
    expect(error.param).toBe(param);
    expect(error.message).toContain(param);
    expect(total).toBe(0);
    await expectOneAudit(id, { status: 400, failure: 'bad_request', provider, model });
  });

  it('audits no upstream attempt for a request refused before it was sent', async () => {
    const { id, headers } = rid('unsupported-attempts');
    const { total } = await counting(() =>
      apiError(gw.openai(token).chat.completions.create({ model: ANTHROPIC_MODEL, messages: user('refuse me'), n: 2 }, { headers })),
    );
    expect(total).toBe(0);
    // RequestContext.attempts is documented as "upstream attempts made"; none was made.
    await expectOneAudit(id, { status: 400, attempts: 0 });
  });
});

describe('Anthropic specifics', () => {
  it('sends an http image URL as a url source, and stop as stop_sequences', async () => {
    const { id, headers } = rid('anthropic-url-image');
    const { after } = await counting(() =>
      gw.openai(token).chat.completions.create(
        {
          model: ANTHROPIC_MODEL,
          stop: ['END'],
          temperature: 0.5,
          messages: [
            {
              role: 'user',
              content: [
                { type: 'text', text: 'describe' },
                { type: 'image_url', image_url: { url: 'https://example.com/cat.png' } },
              ],
            },
          ],
        },
        { headers },
      ),
    );
    const sent = lastBody(after, 'anthropic.messages');
    expect((sent.messages as Array<{ content: Json[] }>)[0].content).toContainEqual({
      type: 'image',
      source: { type: 'url', url: 'https://example.com/cat.png' },
    });
    expect(sent.stop_sequences).toEqual(['END']);
    expect(sent.temperature).toBe(0.5);
    await expectOneAudit(id, { status: 200, provider: 'anthropic' });
  });

  it('answers response_format json_schema through Claude’s structured outputs, plain and streamed, with the schema adapted to Claude’s subset', async () => {
    // As zodResponseFormat would send it: strict, every object closed, bounds Claude cannot enforce.
    const schema = {
      type: 'object',
      properties: {
        city: { type: 'string', minLength: 1 },
        population: { type: 'integer', minimum: 0 },
        founded: { type: 'string', format: 'date' },
        districts: { type: 'array', items: { type: 'object', properties: { name: { type: 'string' } }, required: ['name'] }, minItems: 1 },
      },
      required: ['city', 'population', 'founded', 'districts'],
      additionalProperties: false,
    };
    const response_format = { type: 'json_schema' as const, json_schema: { name: 'city', strict: true, schema } };
    const expected = { city: 'mock', population: 0, founded: '2026-01-01', districts: [{ name: 'mock' }] };

    const plain = rid('anthropic-structured');
    const { result, after } = await counting(() =>
      gw
        .openai(token)
        .chat.completions.create(
          { model: ANTHROPIC_MODEL, messages: user('a city, as JSON'), response_format },
          { headers: plain.headers },
        ),
    );
    expect(JSON.parse(result.choices[0].message.content ?? '')).toEqual(expected);
    expect(result.choices[0].finish_reason).toBe('stop');
    // The mock refuses what Claude refuses (an open object, a minimum, a minLength): a 200 proves the form.
    const sent = lastBody(after, 'anthropic.messages');
    expect(sent.output_config).toEqual({
      format: {
        type: 'json_schema',
        schema: {
          type: 'object',
          properties: {
            city: { type: 'string', description: '{minLength: 1}' },
            population: { type: 'integer', description: '{minimum: 0}' },
            founded: { type: 'string', format: 'date' },
            districts: {
              type: 'array',
              items: { type: 'object', properties: { name: { type: 'string' } }, required: ['name'], additionalProperties: false },
              minItems: 1,
            },
          },
          required: ['city', 'population', 'founded', 'districts'],
          additionalProperties: false,
        },
      },
    });
    expect(sent).not.toHaveProperty('response_format');
    await expectOneAudit(plain.id, { status: 200, provider: 'anthropic', stream: false });

    const streamed = rid('anthropic-structured-stream');
    const stream = await gw
      .openai(token)
      .chat.completions.create(
        { model: ANTHROPIC_MODEL, messages: user('a city, as JSON'), response_format, stream: true },
        { headers: streamed.headers },
      );
    let text = '';
    for await (const chunk of stream) text += chunk.choices[0]?.delta?.content ?? '';
    expect(JSON.parse(text)).toEqual(expected);
    await expectOneAudit(streamed.id, { status: 200, provider: 'anthropic', stream: true });
  });

  it('refuses a response_format schema Claude cannot read (an untyped node) with 400 naming the node, before any upstream call', async () => {
    const { id, headers } = rid('anthropic-structured-untyped');
    const { result: error, total } = await counting(() =>
      apiError(
        gw.openai(token).chat.completions.create(
          {
            model: ANTHROPIC_MODEL,
            messages: user('anything'),
            response_format: {
              type: 'json_schema',
              json_schema: { name: 'any', schema: { type: 'object', properties: { value: {} }, additionalProperties: false } },
            },
          },
          { headers },
        ),
      ),
    );
    expect(error.status).toBe(400);
    expect(error.code).toBe('unsupported_parameter');
    expect(error.param).toBe('response_format.json_schema.schema.properties.value');
    expect(total).toBe(0);
    await expectOneAudit(id, { status: 400, failure: 'bad_request', provider: 'anthropic' });
  });

  it('bills a stream the client left before its first content with the usage message_start reported, not an estimate', async () => {
    const messages = [{ role: 'user' as const, content: 'a slow thinker [mock chunk_delay_ms=3000]' }];
    // The same prompt answered in full tells what Anthropic reports for it.
    const full = await gw
      .openai(token)
      .chat.completions.create({ model: ANTHROPIC_MODEL, messages }, { headers: rid('anthropic-full').headers });
    const { id, headers } = rid('anthropic-abort-priming');
    const before = await mock.stats();
    const controller = new AbortController();
    // No content for 3 s: keygate is still priming the stream (no header has gone out) when the client leaves.
    const call = gw
      .openai(token)
      .chat.completions.create({ model: ANTHROPIC_MODEL, messages, stream: true }, { headers, signal: controller.signal });
    await waitFor('the upstream to be called', async () => ((await mock.stats()).total > before.total ? true : undefined));
    await sleep(300);
    controller.abort();
    await expect(call).rejects.toThrow();
    const audit = await expectOneAudit(id, { status: 499, failure: 'client_abort', provider: 'anthropic', attempts: 1 });
    // message_start's counts: the prompt's input tokens, and the 1 output token Anthropic reports before generating.
    expect({ tokens_in: audit.tokens_in, tokens_out: audit.tokens_out }).toEqual({ tokens_in: full.usage?.prompt_tokens, tokens_out: 1 });
  });

  describe('reasoning_effort as Claude thinking', () => {
    const claudes = (): string => mintToken({ product: 'claudes', sub: 'thinker' });
    /** The message fields keygate adds for Claude's thinking, which the SDK's types do not name. */
    type ThinkingMessage = { reasoning_content?: string; thinking_blocks?: Array<Record<string, unknown>> };

    it('thinks on a budget on Claude 4.5, and a tool loop that sends the thinking back keeps thinking (the mock checks the signature)', async () => {
      const first = rid('claude-think-call');
      const ask: ChatCompletionMessageParam[] = [{ role: 'user', content: 'weather in Paris? [mock tool=get_weather]' }];
      const { result, after } = await counting(() =>
        gw
          .openai(claudes())
          .chat.completions.create(
            { model: 'claude-sonnet-4-5', messages: ask, tools: [WEATHER_TOOL], reasoning_effort: 'medium' },
            { headers: first.headers },
          ),
      );
      expect(lastBody(after, 'anthropic.messages').thinking).toEqual({ type: 'enabled', budget_tokens: 4095 });
      const message = result.choices[0].message;
      const thought = message as unknown as ThinkingMessage;
      expect(result.choices[0].finish_reason).toBe('tool_calls');
      expect(thought.reasoning_content).toEqual(expect.any(String));
      expect(thought.reasoning_content).not.toBe('');
      expect(thought.thinking_blocks).toEqual([{ type: 'thinking', thinking: thought.reasoning_content, signature: expect.any(String) }]);
      await expectOneAudit(first.id, { status: 200, provider: 'anthropic', model: 'claude-sonnet-4-5' });

      // The message goes back as the SDK returned it, thinking_blocks included, with the tool's answer.
      const call = message.tool_calls![0];
      const loop = [...ask, message, { role: 'tool' as const, tool_call_id: call.id, content: '18°C' }];
      const second = rid('claude-think-loop');
      const { result: answer, after: after2 } = await counting(() =>
        gw
          .openai(claudes())
          .chat.completions.create(
            { model: 'claude-sonnet-4-5', messages: loop, tools: [WEATHER_TOOL], reasoning_effort: 'medium' },
            { headers: second.headers },
          ),
      );
      const sent = lastBody(after2, 'anthropic.messages');
      expect(sent.thinking).toEqual({ type: 'enabled', budget_tokens: 4095 });
      expect((sent.messages as Array<{ content: unknown[] }>)[1].content[0]).toEqual(thought.thinking_blocks![0]);
      expect(answer.choices[0].finish_reason).toBe('stop');
      await expectOneAudit(second.id, { status: 200, provider: 'anthropic' });

      // A client that dropped the thinking: this turn goes without it (Claude would refuse it), and is answered.
      const bare = { role: 'assistant' as const, content: null, tool_calls: message.tool_calls };
      const third = rid('claude-think-dropped');
      const { result: plain, after: after3 } = await counting(() =>
        gw.openai(claudes()).chat.completions.create(
          {
            model: 'claude-sonnet-4-5',
            messages: [...ask, bare, loop[2]],
            tools: [WEATHER_TOOL],
            reasoning_effort: 'medium',
          },
          { headers: third.headers },
        ),
      );
      expect(lastBody(after3, 'anthropic.messages')).not.toHaveProperty('thinking');
      expect(plain.choices[0].finish_reason).toBe('stop');
      await expectOneAudit(third.id, { status: 200, provider: 'anthropic' });

      // A thinking block the client altered is Claude's to refuse (the signature no longer matches).
      const forged = { ...message, thinking_blocks: [{ ...thought.thinking_blocks![0], thinking: 'something else' }] };
      const fourth = rid('claude-think-forged');
      const error = await apiError(
        gw
          .openai(claudes())
          .chat.completions.create(
            { model: 'claude-sonnet-4-5', messages: [...ask, forged, loop[2]], tools: [WEATHER_TOOL], reasoning_effort: 'medium' },
            { headers: fourth.headers },
          ),
      );
      expect(error).toMatchObject({ status: 400, code: 'upstream_bad_request' });
      await expectOneAudit(fourth.id, { status: 400, provider: 'anthropic' });
    });

    it('thinks adaptively on Claude 4.7 at the effort, streamed as reasoning_content and a whole signed block', async () => {
      const { id, headers } = rid('claude-think-stream');
      const { result: chunks, after } = await counting(async () =>
        collect(
          await gw
            .openai(claudes())
            .chat.completions.create(
              { model: 'claude-opus-4-7', messages: user('think hard'), reasoning_effort: 'xhigh', stream: true },
              { headers },
            ),
        ),
      );
      const sent = lastBody(after, 'anthropic.messages');
      // Claude 4.7 leaves the thinking's text out unless asked to show it.
      expect(sent.thinking).toEqual({ type: 'adaptive', display: 'summarized' });
      expect(sent.output_config).toEqual({ effort: 'xhigh' });
      const deltas = chunks.map((c) => c.choices[0]?.delta as (ThinkingMessage & { content?: string | null }) | undefined);
      const reasoning = deltas.map((d) => d?.reasoning_content ?? '').join('');
      const blocks = deltas.flatMap((d) => d?.thinking_blocks ?? []);
      expect(reasoning).not.toBe('');
      expect(blocks).toEqual([{ type: 'thinking', thinking: reasoning, signature: expect.any(String) }]);
      expect(deltas.map((d) => d?.content ?? '').join('')).not.toBe('');
      // The thinking came before the answer's text.
      const firstText = deltas.findIndex((d) => typeof d?.content === 'string' && d.content !== '');
      expect(deltas.findIndex((d) => d?.reasoning_content !== undefined)).toBeLessThan(firstText);
      await expectOneAudit(id, { status: 200, provider: 'anthropic', stream: true });
    });

    it("keeps every thinking block through the OpenAI SDK's stream helper, so a streamed tool loop goes on thinking", async () => {
      // The helper keeps the last value of a delta field it does not know: keygate sends all the
      // blocks (here a signed and a redacted one) in one chunk, so the final message has them all.
      const ask: ChatCompletionMessageParam[] = [{ role: 'user', content: 'weather? [mock tool=get_weather redacted_thinking=1]' }];
      const first = rid('claude-think-helper');
      const final = await gw
        .openai(claudes())
        .chat.completions.stream(
          { model: 'claude-opus-4-7', messages: ask, tools: [WEATHER_TOOL], reasoning_effort: 'low' },
          { headers: first.headers },
        )
        .finalChatCompletion();
      const message = final.choices[0].message;
      const blocks = (message as unknown as ThinkingMessage).thinking_blocks;
      expect(blocks?.map((b) => b.type)).toEqual(['thinking', 'redacted_thinking']);
      expect(message.tool_calls).toHaveLength(1);
      await expectOneAudit(first.id, { status: 200, provider: 'anthropic', stream: true });

      const second = rid('claude-think-helper-loop');
      const { result, after } = await counting(() =>
        gw.openai(claudes()).chat.completions.create(
          {
            model: 'claude-opus-4-7',
            messages: [...ask, message, { role: 'tool', tool_call_id: message.tool_calls![0].id, content: 'sunny' }],
            tools: [WEATHER_TOOL],
            reasoning_effort: 'low',
          },
          { headers: second.headers },
        ),
      );
      const sent = lastBody(after, 'anthropic.messages');
      expect(sent.thinking).toEqual({ type: 'adaptive', display: 'summarized' });
      expect((sent.messages as Array<{ content: Array<{ type: string }> }>)[1].content.map((b) => b.type)).toEqual([
        'thinking',
        'redacted_thinking',
        'tool_use',
      ]);
      expect(result.choices[0].finish_reason).toBe('stop');
      await expectOneAudit(second.id, { status: 200, provider: 'anthropic' });
    });

    it('refuses before any upstream call what Claude refuses while thinking, and thinking on a Claude that cannot think', async () => {
      const cases: Array<[string, string, Record<string, unknown>, string, string]> = [
        ['claude-think-temperature', 'claude-sonnet-4-5', { temperature: 0.2 }, 'unsupported_parameter', 'temperature'],
        [
          'claude-think-forced-tool',
          'claude-opus-4-7',
          { tools: [WEATHER_TOOL], tool_choice: 'required' },
          'unsupported_parameter',
          'tool_choice',
        ],
        ['claude-think-too-few-tokens', 'claude-sonnet-4-5', { max_completion_tokens: 1000 }, 'invalid_request', 'max_completion_tokens'],
        ['claude-think-old-model', 'claude-3-5-sonnet-20241022', {}, 'unsupported_parameter', 'reasoning_effort'],
        [
          'claude-think-prefill',
          'claude-opus-4-7',
          {
            messages: [
              { role: 'user', content: 'answer in French' },
              { role: 'assistant', content: 'Bien sûr,' },
            ],
          },
          'unsupported_parameter',
          'reasoning_effort',
        ],
      ];
      for (const [name, model, extra, code, param] of cases) {
        const { id, headers } = rid(name);
        const { result: error, total } = await counting(() =>
          apiError(
            gw
              .openai(claudes())
              .chat.completions.create({ model, messages: user('think'), reasoning_effort: 'low', ...extra }, { headers }),
          ),
        );
        expect({ name, status: error.status, code: error.code, param: error.param }).toEqual({ name, status: 400, code, param });
        expect(total).toBe(0);
        await expectOneAudit(id, { status: 400, failure: 'bad_request', provider: 'anthropic' });
      }
    });
  });
});

describe('Gemini specifics', () => {
  it('maps a SAFETY block to finish_reason content_filter, plain and streamed', async () => {
    const plain = rid('gemini-safety');
    const { result, delta } = await counting(() =>
      gw
        .openai(token)
        .chat.completions.create({ model: GEMINI_MODEL, messages: user('blocked [mock safety=1]') }, { headers: plain.headers }),
    );
    expect(result.choices[0].finish_reason).toBe('content_filter');
    expect(result.choices[0].message.content ?? '').toBe('');
    expect(moved(delta)).toEqual({ 'gemini.generateContent': 1 });
    await expectOneAudit(plain.id, { status: 200, failure: null, provider: 'gemini' });

    const streamed = rid('gemini-safety-stream');
    const chunks = await collect(
      await gw
        .openai(token)
        .chat.completions.create(
          { model: GEMINI_MODEL, messages: user('blocked [mock safety=1]'), stream: true },
          { headers: streamed.headers },
        ),
    );
    expect(finishOf(chunks)).toBe('content_filter');
    expect(textOf(chunks)).toBe('');
    await expectOneAudit(streamed.id, { status: 200, failure: null, provider: 'gemini', stream: true });
  });

  it('answers n > 1 with candidateCount: n choices, plain and streamed, with the SDK assembling each', async () => {
    const plain = rid('gemini-n');
    const { result, after } = await counting(() =>
      gw.openai(token).chat.completions.create({ model: GEMINI_MODEL, messages: user('twice'), n: 2 }, { headers: plain.headers }),
    );
    expect((lastBody(after, 'gemini.generateContent').generationConfig as Json).candidateCount).toBe(2);
    expect(result.choices.map((c) => [c.index, c.finish_reason, c.message.content])).toEqual([
      [0, 'stop', mockReply('gemini', 'twice')],
      [1, 'stop', mockReply('gemini', 'twice')],
    ]);
    await expectOneAudit(plain.id, { status: 200, failure: null, provider: 'gemini', tokens_out: result.usage!.completion_tokens });

    const streamed = rid('gemini-n-stream');
    const final = await gw
      .openai(token)
      .chat.completions.stream(
        { model: GEMINI_MODEL, messages: user('twice streamed [mock chunks=3]'), n: 2, stream_options: { include_usage: true } },
        { headers: streamed.headers },
      )
      .finalChatCompletion();
    expect(final.choices.map((c) => [c.index, c.finish_reason, c.message.content])).toEqual([
      [0, 'stop', mockReply('gemini', 'twice streamed')],
      [1, 'stop', mockReply('gemini', 'twice streamed')],
    ]);
    await expectOneAudit(streamed.id, {
      status: 200,
      failure: null,
      provider: 'gemini',
      stream: true,
      tokens_out: final.usage!.completion_tokens,
    });
  });

  it('translates JSON mode and a JSON schema into responseMimeType and responseSchema, and the SDK parses Gemini’s JSON answer, plain and streamed', async () => {
    const jsonMode = rid('gemini-json-mode');
    const { result: json, after } = await counting(() =>
      gw
        .openai(token)
        .chat.completions.create(
          { model: GEMINI_MODEL, messages: user('answer in JSON'), response_format: { type: 'json_object' } },
          { headers: jsonMode.headers },
        ),
    );
    expect(lastBody(after, 'gemini.generateContent').generationConfig).toMatchObject({ responseMimeType: 'application/json' });
    expect(JSON.parse(json.choices[0].message.content ?? '')).toEqual({ reply: mockReply('gemini', 'answer in JSON') });
    await expectOneAudit(jsonMode.id, { status: 200, provider: 'gemini' });

    // What zodResponseFormat sends (strict, closed objects, a nullable field): parse() reads the answer as JSON.
    const response_format = {
      type: 'json_schema' as const,
      json_schema: {
        name: 'city',
        strict: true,
        schema: {
          type: 'object',
          properties: {
            name: { type: 'string' },
            population: { type: 'integer' },
            nickname: { anyOf: [{ type: 'string' }, { type: 'null' }] },
            districts: { type: 'array', items: { type: 'string' } },
          },
          required: ['name', 'population', 'nickname', 'districts'],
          additionalProperties: false,
        },
      },
    };
    const expected = { name: 'mock', population: 0, nickname: 'mock', districts: [] };
    const schema = rid('gemini-json-schema');
    const { result: parsed, after: after2 } = await counting(() =>
      gw
        .openai(token)
        .chat.completions.parse(
          { model: GEMINI_MODEL, messages: user('answer with a city'), response_format },
          { headers: schema.headers },
        ),
    );
    expect(lastBody(after2, 'gemini.generateContent').generationConfig).toMatchObject({
      responseMimeType: 'application/json',
      responseSchema: {
        type: 'OBJECT',
        properties: {
          name: { type: 'STRING' },
          population: { type: 'INTEGER' },
          nickname: { type: 'STRING', nullable: true },
          districts: { type: 'ARRAY', items: { type: 'STRING' } },
        },
        required: ['name', 'population', 'nickname', 'districts'],
      },
    });
    expect(parsed.choices[0].message.parsed).toEqual(expected);
    await expectOneAudit(schema.id, { status: 200, provider: 'gemini' });

    const streamed = rid('gemini-json-schema-stream');
    const final = await gw
      .openai(token)
      .chat.completions.stream(
        { model: GEMINI_MODEL, messages: user('answer with a city [mock chunks=4]'), response_format },
        { headers: streamed.headers },
      )
      .finalChatCompletion();
    // The stream helper parses zod formats only; the JSON text it assembled is Gemini's answer whole.
    expect(JSON.parse(final.choices[0].message.content ?? '')).toEqual(expected);
    await expectOneAudit(streamed.id, { status: 200, provider: 'gemini', stream: true });
  });

  it('maps reasoning_effort to Gemini thinking: a level on Gemini 3, nothing where the model does not think, refused where it cannot', async () => {
    const level = rid('gemini-effort-level');
    const { result, after } = await counting(() =>
      gw
        .openai(token)
        .chat.completions.create(
          { model: GEMINI_3_MODEL, messages: user('think a little'), reasoning_effort: 'low' },
          { headers: level.headers },
        ),
    );
    expect(lastBody(after, 'gemini.generateContent').generationConfig).toMatchObject({ thinkingConfig: { thinkingLevel: 'low' } });
    // The mock spends 16 tokens thinking when asked to: they are completion tokens, as OpenAI counts reasoning.
    expect(result.usage?.completion_tokens_details).toEqual({ reasoning_tokens: 16 });
    await expectOneAudit(level.id, { status: 200, provider: 'gemini', tokens_out: result.usage!.completion_tokens });

    const quiet = rid('gemini-effort-none');
    const { after: after2 } = await counting(() =>
      gw
        .openai(token)
        .chat.completions.create(
          { model: GEMINI_MODEL, messages: user('no thinking'), reasoning_effort: 'minimal' },
          { headers: quiet.headers },
        ),
    );
    expect(lastBody(after2, 'gemini.generateContent').generationConfig).not.toHaveProperty('thinkingConfig');
    await expectOneAudit(quiet.id, { status: 200, provider: 'gemini' });

    const refused = rid('gemini-effort-refused');
    const { result: error, total } = await counting(() =>
      apiError(
        gw
          .openai(token)
          .chat.completions.create(
            { model: GEMINI_MODEL, messages: user('think hard'), reasoning_effort: 'high' },
            { headers: refused.headers },
          ),
      ),
    );
    expect(error).toMatchObject({ status: 400, code: 'unsupported_parameter', param: 'reasoning_effort' });
    expect(total).toBe(0);
    await expectOneAudit(refused.id, { status: 400, failure: 'bad_request', provider: 'gemini' });
  });

  it("declares a tool whose JSON Schema Gemini cannot take as is (an MCP server's: $defs, exclusive bounds, free-form maps) in a form it accepts", async () => {
    // The mock refuses what the real API refuses (any field outside Gemini's Schema, an undeclared
    // required name, an OBJECT without properties as the parameters), so a 200 proves the form.
    const { id, headers } = rid('gemini-mcp-schema');
    const mcpTool = {
      type: 'function' as const,
      function: {
        name: 'create_issue',
        description: 'Create an issue',
        parameters: {
          $schema: 'http://json-schema.org/draft-07/schema#',
          type: 'object',
          additionalProperties: false,
          $defs: { Priority: { type: 'integer', exclusiveMinimum: 0, exclusiveMaximum: 5 } },
          properties: {
            title: { type: 'string', minLength: 1, format: 'uri-reference' },
            priority: { $ref: '#/$defs/Priority' },
            labels: {
              type: 'object',
              additionalProperties: { type: 'string' },
              propertyNames: { pattern: '^[a-z]+$' },
              required: ['team'],
            },
            assignees: { type: 'array', items: { type: 'string', format: 'email' }, uniqueItems: true },
          },
          required: ['title', 'priority', 'milestone'],
        },
      },
    };
    const { result, delta, after } = await counting(() =>
      gw
        .openai(token)
        .chat.completions.create(
          { model: GEMINI_MODEL, messages: user('file it [mock tool=create_issue]'), tools: [mcpTool] },
          { headers },
        ),
    );
    expect(result.choices[0].finish_reason).toBe('tool_calls');
    expect(result.choices[0].message.tool_calls?.[0]).toMatchObject({ function: { name: 'create_issue' } });
    expect(moved(delta)).toEqual({ 'gemini.generateContent': 1 });
    const tools = lastBody(after, 'gemini.generateContent').tools as Array<{ functionDeclarations: Json[] }>;
    expect(tools[0].functionDeclarations[0].parameters).toEqual({
      type: 'OBJECT',
      properties: {
        title: { type: 'STRING', minLength: 1 },
        priority: { type: 'INTEGER', minimum: 1, maximum: 4 },
        labels: { type: 'OBJECT' },
        assignees: { type: 'ARRAY', items: { type: 'STRING' } },
      },
      required: ['title', 'priority'],
    });
    await expectOneAudit(id, { status: 200, failure: null, provider: 'gemini' });
  });

  it('sends a schema that refers to itself (a tree) as JSON Schema, which Gemini resolves, for a tool and for structured output', async () => {
    // Gemini's Schema cannot refer to itself; its parametersJsonSchema and responseJsonSchema take $refs.
    const tree = {
      type: 'object',
      $defs: {
        Node: {
          type: 'object',
          properties: { name: { type: 'string' }, children: { type: 'array', items: { $ref: '#/$defs/Node' } } },
          required: ['name'],
        },
      },
      properties: { root: { $ref: '#/$defs/Node' } },
      required: ['root'],
    };
    /** Declares one tool of `parameters` to Gemini, which calls it; what Gemini was sent for it. */
    const declare = async (name: string, parameters: Record<string, unknown>): Promise<Json> => {
      const { id, headers } = rid(`gemini-schema-${name}`);
      const { result, delta, after } = await counting(() =>
        gw.openai(token).chat.completions.create(
          {
            model: GEMINI_MODEL,
            messages: user(`call it [mock tool=${name}]`),
            tools: [{ type: 'function', function: { name, parameters } }],
          },
          { headers },
        ),
      );
      expect(result.choices[0].message.tool_calls?.[0]).toMatchObject({ function: { name } });
      expect(moved(delta)).toEqual({ 'gemini.generateContent': 1 });
      await expectOneAudit(id, { status: 200, failure: null, provider: 'gemini' });
      return (lastBody(after, 'gemini.generateContent').tools as Array<{ functionDeclarations: Json[] }>)[0].functionDeclarations[0];
    };
    expect(await declare('draw_tree', tree)).toEqual({ name: 'draw_tree', parametersJsonSchema: tree });

    // Pydantic's model_json_schema() of a recursive model: a root $ref beside its $defs.
    const pydantic = {
      $defs: {
        Node: {
          title: 'Node',
          type: 'object',
          properties: {
            value: { title: 'Value', type: 'integer' },
            children: { title: 'Children', type: 'array', items: { $ref: '#/$defs/Node' }, default: [] },
          },
          required: ['value'],
        },
      },
      $ref: '#/$defs/Node',
    };
    expect(await declare('walk', pydantic)).toEqual({
      name: 'walk',
      parametersJsonSchema: { type: 'object', $defs: pydantic.$defs, anyOf: [{ $ref: '#/$defs/Node' }] },
    });

    const output = rid('gemini-recursive-output');
    const structured = await counting(() =>
      gw.openai(token).chat.completions.create(
        {
          model: GEMINI_MODEL,
          messages: user('a tree, please'),
          response_format: { type: 'json_schema', json_schema: { name: 'tree', schema: tree } },
        },
        { headers: output.headers },
      ),
    );
    expect(moved(structured.delta)).toEqual({ 'gemini.generateContent': 1 });
    const config = lastBody(structured.after, 'gemini.generateContent').generationConfig as Json;
    expect(config).toMatchObject({ responseMimeType: 'application/json', responseJsonSchema: tree });
    expect(config).not.toHaveProperty('responseSchema');
    await expectOneAudit(output.id, { status: 200, failure: null, provider: 'gemini' });
  });

  it("gemini 3: passes the model's call ids to the client as the tool call ids, and sends them back on the calls and their results", async () => {
    const first = rid('gemini3-calls');
    const { result } = await counting(() =>
      gw
        .openai(token)
        .chat.completions.create(
          { model: GEMINI_3_MODEL, tools: [WEATHER_TOOL], messages: user('weather twice [mock tool=get_weather tools=2]') },
          { headers: first.headers },
        ),
    );
    const message = result.choices[0].message;
    const ids = (message.tool_calls ?? []).map((c) => c.id);
    expect(ids).toHaveLength(2);
    expect(ids.every((id) => id.startsWith('fc'))).toBe(true);
    // The results answered in the other order: the mock (as Gemini 3) refuses an id matching no call.
    const second = rid('gemini3-results');
    const {
      result: answer,
      delta,
      after,
    } = await counting(() =>
      gw.openai(token).chat.completions.create(
        {
          model: GEMINI_3_MODEL,
          tools: [WEATHER_TOOL],
          messages: [
            ...user('weather twice'),
            message as ChatCompletionMessageParam,
            { role: 'tool', tool_call_id: ids[1], content: '{"temp_c": 21}' },
            { role: 'tool', tool_call_id: ids[0], content: '{"temp_c": 19}' },
          ],
        },
        { headers: second.headers },
      ),
    );
    expect(answer.choices[0].finish_reason).toBe('stop');
    expect(moved(delta)).toEqual({ 'gemini.generateContent': 1 });
    const contents = lastBody(after, 'gemini.generateContent').contents as Array<{ parts: Array<Record<string, { id?: string }>> }>;
    expect(contents[1].parts.map((p) => p.functionCall.id)).toEqual(ids);
    expect(contents[2].parts.map((p) => p.functionResponse.id)).toEqual([ids[1], ids[0]]);
    await expectOneAudit(first.id, { status: 200, failure: null, provider: 'gemini', model: GEMINI_3_MODEL });
    await expectOneAudit(second.id, { status: 200, failure: null, provider: 'gemini', model: GEMINI_3_MODEL });
  });

  it("forwards a tool call's extra_content.google.thought_signature as the functionCall part's thoughtSignature", async () => {
    // The mock never emits thought signatures, so only the client → Gemini direction is provable here.
    const { id, headers } = rid('gemini-signature');
    const signature = 'CiQBcsjafFl2WbJWp0t0Ay3eAuCSkQjrhdlYO2jbzmiIffv9yqcKYwFyyNp8';
    const assistant = {
      role: 'assistant',
      content: null,
      tool_calls: [
        {
          id: 'call_sig_1',
          type: 'function',
          function: { name: 'get_weather', arguments: '{"city":"Paris"}' },
          extra_content: { google: { thought_signature: signature } },
        },
      ],
    } as unknown as ChatCompletionMessageParam;
    const { result, delta, after } = await counting(() =>
      gw.openai(token).chat.completions.create(
        {
          model: GEMINI_MODEL,
          tools: [WEATHER_TOOL],
          messages: [...user('weather in Paris'), assistant, { role: 'tool', tool_call_id: 'call_sig_1', content: '{"temp_c": 21}' }],
        },
        { headers },
      ),
    );
    expect(result.choices[0].message.content).toBe(mockReply('gemini', 'weather in Paris'));
    expect(moved(delta)).toEqual({ 'gemini.generateContent': 1 });
    const contents = lastBody(after, 'gemini.generateContent').contents as Array<{ role: string; parts: Json[] }>;
    expect(contents.map((c) => c.role)).toEqual(['user', 'model', 'user']);
    expect(contents[1].parts).toEqual([
      { functionCall: { id: 'call_sig_1', name: 'get_weather', args: { city: 'Paris' } }, thoughtSignature: signature },
    ]);
    expect(contents[2].parts[0]).toMatchObject({ functionResponse: { id: 'call_sig_1', name: 'get_weather' } });
    await expectOneAudit(id, { status: 200, failure: null, provider: 'gemini' });
  });

  describe("what a Gemini model's generation cannot take is refused with 400 naming it, before any upstream call", () => {
    it.each([
      [
        'tools beside JSON output before Gemini 3',
        GEMINI_MODEL,
        { tools: [WEATHER_TOOL], response_format: { type: 'json_object' as const } },
        'response_format',
      ],
      [
        'tools beside JSON output before Gemini 3, under tool_choice none (which still declares them)',
        GEMINI_MODEL,
        { tools: [WEATHER_TOOL], tool_choice: 'none' as const, response_format: { type: 'json_object' as const } },
        'response_format',
      ],
      ['a presence penalty on Gemini 2.5', GEMINI_25_MODEL, { presence_penalty: 0.5 }, 'presence_penalty'],
      ['a frequency penalty on Gemini 3', GEMINI_3_MODEL, { frequency_penalty: -1 }, 'frequency_penalty'],
      ['a seed outside int32 (OpenAI takes 64-bit seeds)', GEMINI_MODEL, { seed: 12345678901 }, 'seed'],
      ['n over 1 on Gemini 3 (which answers one candidate)', GEMINI_3_MODEL, { n: 2 }, 'n'],
    ])('%s', async (_what, model, extra, param) => {
      const { id, headers } = rid('gemini-refused');
      const { result: error, total } = await counting(() =>
        apiError(gw.openai(token).chat.completions.create({ model, messages: user('refuse me'), ...extra }, { headers })),
      );
      expect(error).toMatchObject({ status: 400, code: 'unsupported_parameter', param });
      expect(error.message).toContain(param);
      expect(total).toBe(0);
      await expectOneAudit(id, { status: 400, failure: 'bad_request', provider: 'gemini', model });
    });

    it('penalties go to Gemini 1.5 (which takes them); a penalty of 0 is left out on Gemini 2.5', async () => {
      const taken = rid('gemini-penalties');
      const { delta, after } = await counting(() =>
        gw
          .openai(token)
          .chat.completions.create(
            { model: GEMINI_MODEL, messages: user('less repetition'), presence_penalty: 0.5, frequency_penalty: -1 },
            { headers: taken.headers },
          ),
      );
      expect(moved(delta)).toEqual({ 'gemini.generateContent': 1 });
      expect(lastBody(after, 'gemini.generateContent').generationConfig).toMatchObject({ presencePenalty: 0.5, frequencyPenalty: -1 });
      await expectOneAudit(taken.id, { status: 200, failure: null, provider: 'gemini', model: GEMINI_MODEL });

      const zero = rid('gemini-penalties-zero');
      const { delta: delta2, after: after2 } = await counting(() =>
        gw
          .openai(token)
          .chat.completions.create(
            { model: GEMINI_25_MODEL, messages: user('as usual'), presence_penalty: 0, frequency_penalty: 0 },
            { headers: zero.headers },
          ),
      );
      expect(moved(delta2)).toEqual({ 'gemini.generateContent': 1 });
      const config = lastBody(after2, 'gemini.generateContent').generationConfig as Json;
      expect(config).not.toHaveProperty('presencePenalty');
      expect(config).not.toHaveProperty('frequencyPenalty');
      await expectOneAudit(zero.id, { status: 200, failure: null, provider: 'gemini', model: GEMINI_25_MODEL });
    });

    it('Gemini 3 takes tools beside JSON output: both are sent', async () => {
      const { id, headers } = rid('gemini3-tools-json');
      const { result, delta, after } = await counting(() =>
        gw
          .openai(token)
          .chat.completions.create(
            { model: GEMINI_3_MODEL, messages: user('answer in JSON'), tools: [WEATHER_TOOL], response_format: { type: 'json_object' } },
            { headers },
          ),
      );
      expect(moved(delta)).toEqual({ 'gemini.generateContent': 1 });
      const sent = lastBody(after, 'gemini.generateContent');
      expect(sent.tools).toHaveLength(1);
      expect(sent.generationConfig).toMatchObject({ responseMimeType: 'application/json' });
      expect(JSON.parse(result.choices[0].message.content ?? '')).toEqual({ reply: mockReply('gemini', 'answer in JSON') });
      await expectOneAudit(id, { status: 200, failure: null, provider: 'gemini', model: GEMINI_3_MODEL });
    });
  });
});

// ---------------------------------------------------------------------------------------------
// Embeddings
// ---------------------------------------------------------------------------------------------

describe('POST /v1/embeddings', () => {
  it.each([
    ['openai', OPENAI_EMBEDDING_MODEL, 'openai.embeddings', 1536],
    ['gemini', GEMINI_EMBEDDING_MODEL, 'gemini.batchEmbedContents', GEMINI_EMBEDDING_DIMS],
  ] as const)(
    '%s: float, base64 and the SDK default encode the same vectors, counted and audited',
    async (provider, model, route, dims) => {
      const input = ['the first sentence', 'a second, different sentence'];
      const client = gw.openai(token);

      const floatReq = rid(`emb-${provider}-float`);
      const { result: floats, delta } = await counting(() =>
        client.embeddings.create({ model, input, encoding_format: 'float' }, { headers: floatReq.headers }),
      );
      expect(moved(delta)).toEqual({ [route]: 1 });
      expect(floats.object).toBe('list');
      expect(floats.data.map((d) => d.index)).toEqual([0, 1]);
      for (const d of floats.data) {
        expect(d.object).toBe('embedding');
        expect(Array.isArray(d.embedding)).toBe(true);
        expect(d.embedding).toHaveLength(dims);
      }
      expect(floats.data[0].embedding).not.toEqual(floats.data[1].embedding);
      expect(floats.usage.prompt_tokens).toBeGreaterThan(0);
      await expectOneAudit(floatReq.id, {
        status: 200,
        failure: null,
        provider,
        model,
        product: 'prov',
        tokens_in: floats.usage.prompt_tokens,
        tokens_out: 0,
        path: '/v1/embeddings',
      });

      const b64Req = rid(`emb-${provider}-base64`);
      const { result: b64, delta: delta2 } = await counting(() =>
        client.embeddings.create({ model, input, encoding_format: 'base64' }, { headers: b64Req.headers }),
      );
      expect(moved(delta2)).toEqual({ [route]: 1 });
      expect(b64.usage.prompt_tokens).toBe(floats.usage.prompt_tokens);
      b64.data.forEach((d, i) => {
        expect(typeof d.embedding).toBe('string');
        const decoded = decodeFloat32Base64(d.embedding as unknown as string);
        expect(decoded).toHaveLength(dims);
        decoded.forEach((v, j) => expect(v).toBeCloseTo(floats.data[i].embedding[j], 6));
      });
      await expectOneAudit(b64Req.id, { status: 200, provider, tokens_in: b64.usage.prompt_tokens, tokens_out: 0 });

      // The SDK's own default: it asks for base64 and decodes it itself.
      const sdkReq = rid(`emb-${provider}-sdk`);
      const sdk = await client.embeddings.create({ model, input }, { headers: sdkReq.headers });
      sdk.data.forEach((d, i) => {
        expect(d.embedding).toHaveLength(dims);
        d.embedding.forEach((v, j) => expect(v).toBeCloseTo(floats.data[i].embedding[j], 6));
      });
      await expectOneAudit(sdkReq.id, { status: 200, provider });
    },
  );

  it('openai: counts a large float answer (megabytes of vectors, its usage read from its end) as the upstream reported it', async () => {
    const { id, headers } = rid('emb-openai-large');
    const input = Array.from({ length: 120 }, (_, i) => `sentence number ${i} of a long batch`);
    const res = await gw.fetch('/v1/embeddings', {
      method: 'POST',
      headers: { ...headers, authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: OPENAI_EMBEDDING_MODEL, input, encoding_format: 'float' }),
    });
    expect(res.status).toBe(200);
    const text = await res.text();
    // Over the length above which keygate reads the usage from the answer's end.
    expect(text.length).toBeGreaterThan(1024 * 1024);
    const answer = JSON.parse(text) as { data: unknown[]; usage: { prompt_tokens: number } };
    expect(answer.data).toHaveLength(120);
    expect(answer.usage.prompt_tokens).toBeGreaterThan(0);
    await expectOneAudit(id, { status: 200, provider: 'openai', tokens_in: answer.usage.prompt_tokens, tokens_out: 0 });
  });

  it('a large answer waits while earlier ones fill the budget for buffered answers; a Gemini request of many batches never waits on its own', async () => {
    // A gateway of its own, with a 1 MB budget: each answer here is ~3 MB.
    const small = await startProviderStack(0, { API_KEY_SERVER_BUFFERED_ANSWERS_MB: '1' });
    try {
      const metric = async (name: string): Promise<number> => {
        const text = await (await fetch(`${small.gw.url}/metrics`, { signal: AbortSignal.timeout(5_000) })).text();
        const line = new RegExp(`^${name} (\\S+)$`, 'm').exec(text);
        if (!line) throw new Error(`${name} is not on /metrics`);
        return Number(line[1]);
      };
      const embed = (label: string, first: string): { id: string; done: Promise<{ status: number; text: string }> } => {
        const { id, headers } = rid(label);
        const input = [first, ...Array.from({ length: 119 }, (_, i) => `sentence number ${i} of a long batch`)];
        const done = small.gw
          .fetch('/v1/embeddings', {
            method: 'POST',
            headers: { ...headers, authorization: `Bearer ${token}`, 'content-type': 'application/json' },
            body: JSON.stringify({ model: OPENAI_EMBEDDING_MODEL, input, encoding_format: 'float' }),
          })
          .then(async (res) => ({ status: res.status, text: await res.text() }));
        return { id, done };
      };
      expect(await metric('keygate_buffered_answer_waits_total')).toBe(0);
      // The first answer's upstream sends half of it, then pauses: keygate holds that half (over the budget).
      const slow = embed('emb-budget-first', 'a slow one [mock body_pause_ms=2500]');
      await waitFor('the first answer to be held', async () => (await metric('keygate_buffered_answer_bytes')) > 1024 * 1024, 5_000, 20);
      const later = embed('emb-budget-later', 'a quick one');
      let laterDone = false;
      void later.done.then(() => (laterDone = true));
      await waitFor('the later answer to wait', async () => (await metric('keygate_buffered_answer_waits_total')) === 1, 5_000, 20);
      // Its upstream sent it whole at once; it waits for the first, which is still paused.
      await sleep(300);
      expect(laterDone).toBe(false);
      const [first, second] = await Promise.all([slow.done, later.done]);
      for (const [answer, id] of [
        [first, slow.id],
        [second, later.id],
      ] as const) {
        expect(answer.status).toBe(200);
        const body = JSON.parse(answer.text) as { data: Array<{ embedding: number[] }>; usage: { prompt_tokens: number } };
        expect(body.data).toHaveLength(120);
        for (const d of body.data) expect(d.embedding).toHaveLength(1536);
        await expectOneAuditOn(small.gw, id, { status: 200, failure: null, provider: 'openai', tokens_in: body.usage.prompt_tokens });
      }
      expect(await metric('keygate_buffered_answer_bytes')).toBe(0);
      expect(await metric('keygate_buffered_answer_waits_total')).toBe(1);

      // A Gemini request of several batches (100 inputs of 3,072 numbers: ~3 MB each), each over the budget: its later batches are read while
      // its earlier ones are held for it (they are given back only when it ends).
      const gemini = rid('emb-budget-gemini');
      const many = Array.from({ length: 300 }, (_, i) => `gemini sentence ${i} of a long batch`);
      const { result } = await countingUpstream(small.mock, () =>
        small.gw
          .openai(token)
          .embeddings.create(
            { model: GEMINI_EMBEDDING_MODEL, input: many, dimensions: 3072, encoding_format: 'float' },
            { headers: gemini.headers },
          ),
      );
      expect(result.data).toHaveLength(300);
      for (const d of result.data) expect(d.embedding).toHaveLength(3072);
      expect(result.data.map((d) => d.index)).toEqual(many.map((_, i) => i));
      await expectOneAuditOn(small.gw, gemini.id, { status: 200, failure: null, provider: 'gemini' });
      expect(await metric('keygate_buffered_answer_bytes')).toBe(0);
    } finally {
      await stopProviderStack(small);
    }
  }, 30_000);

  it('gemini: passes dimensions on as outputDimensionality', async () => {
    const { id, headers } = rid('emb-gemini-dims');
    const { result, after } = await counting(() =>
      gw
        .openai(token)
        .embeddings.create({ model: GEMINI_EMBEDDING_MODEL, input: 'short', dimensions: 256, encoding_format: 'float' }, { headers }),
    );
    expect(result.data[0].embedding).toHaveLength(256);
    const requests = lastBody(after, 'gemini.batchEmbedContents').requests as Json[];
    expect(requests).toHaveLength(1);
    expect(requests[0]).toMatchObject({ model: `models/${GEMINI_EMBEDDING_MODEL}`, outputDimensionality: 256 });
    await expectOneAudit(id, { status: 200, provider: 'gemini' });
  });

  it('counts an answer without usage (some OpenAI-compatible hosts) at keygate’s estimate of the input', async () => {
    const { id, headers } = rid('emb-no-usage');
    const { result, delta } = await counting(() =>
      gw
        .openai(token)
        .embeddings.create(
          { model: OPENAI_EMBEDDING_MODEL, input: ['count me [mock no_usage=1]', 'and me'], encoding_format: 'float' },
          { headers },
        ),
    );
    expect(moved(delta)).toEqual({ 'openai.embeddings': 1 });
    expect(result.data).toHaveLength(2);
    expect(result.usage).toBeUndefined();
    const audit = await expectOneAudit(id, { status: 200, failure: null, provider: 'openai', tokens_out: 0 });
    expect(audit.tokens_in).toBeGreaterThan(0);
  });

  it('bills a client that goes away after the upstream was called its input, as chat bills its prompt', async () => {
    const { id, headers } = rid('emb-abort');
    const before = await mock.stats();
    const controller = new AbortController();
    const call = gw
      .openai(token)
      .embeddings.create(
        { model: OPENAI_EMBEDDING_MODEL, input: 'embed me slowly [mock delay_ms=1500]' },
        { headers, signal: controller.signal },
      );
    await waitFor('the upstream to be called', async () => ((await mock.stats()).total > before.total ? true : undefined));
    controller.abort();
    await expect(call).rejects.toThrow();
    const audit = await expectOneAudit(id, { status: 499, failure: 'client_abort', provider: 'openai', attempts: 1 });
    expect(audit.tokens_in).toBeGreaterThan(0);
  });

  it('gemini: splits more than 100 inputs into batches and keeps every vector at its index', async () => {
    const input = Array.from({ length: 150 }, (_, i) => `sentence number ${i}`);
    const { id, headers } = rid('emb-gemini-batches');
    const { result, delta } = await counting(() =>
      gw.openai(token).embeddings.create({ model: GEMINI_EMBEDDING_MODEL, input, encoding_format: 'float' }, { headers }),
    );
    expect(moved(delta)).toEqual({ 'gemini.batchEmbedContents': 2 });
    expect(result.data.map((d) => d.index)).toEqual(input.map((_, i) => i));
    // The mock's vectors depend only on the text: each must match a single-input call for the same text.
    for (const i of [0, 99, 100, 149]) {
      const single = await gw.openai(token).embeddings.create({ model: GEMINI_EMBEDDING_MODEL, input: input[i], encoding_format: 'float' });
      expect(result.data[i].embedding).toEqual(single.data[0].embedding);
    }
    const audit = await expectOneAudit(id, { status: 200, provider: 'gemini', tokens_in: result.usage.prompt_tokens });
    expect(audit.tokens_in).toBeGreaterThanOrEqual(150);
  });

  it('retries an embeddings call that fails with 503 like a chat call (1 + retries upstream calls)', async () => {
    const { id, headers } = rid('emb-retry');
    const { result: error, delta } = await counting(() =>
      apiError(
        gw
          .openai(token)
          .embeddings.create({ model: OPENAI_EMBEDDING_MODEL, input: 'down [mock status=503]', encoding_format: 'float' }, { headers }),
      ),
    );
    expect(error.status).toBe(502);
    expect(moved(delta)).toEqual({ 'openai.embeddings': 1 + MAX_RETRIES });
    await expectOneAudit(id, { status: 502, failure: 'upstream', provider: 'openai', attempts: 1 + MAX_RETRIES });
  });

  it('bills nothing to a client that leaves while keygate waits to retry a refused embeddings call (no call in flight)', async () => {
    const { id, headers } = rid('emb-abort-backoff');
    const before = await mock.stats();
    const controller = new AbortController();
    // The upstream refuses with 503 and Retry-After: 4 s, which keygate waits out before its retry.
    const pending = apiError(
      gw
        .openai(token)
        .embeddings.create(
          { model: OPENAI_EMBEDDING_MODEL, input: 'abort in backoff [mock status=503 retry_after=4]', encoding_format: 'float' },
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
    const audit = await expectOneAudit(id, { status: 499, failure: 'client_abort', provider: 'openai', attempts: 1 });
    // The provider bills nothing for its refusal and no other call went out: there is nothing to bill.
    expect(audit.tokens_in).toBeNull();
    expect(audit.tokens_out).toBeNull();
    expect((await mock.stats()).byRoute['openai.embeddings'] - before.byRoute['openai.embeddings']).toBe(1);
  });

  it('gemini: a retry resends only the batch that failed, not the ones already answered', async () => {
    const input = Array.from({ length: 150 }, (_, i) => (i === 120 ? 'busy [mock status=503]' : `retry sentence ${i}`));
    const { id, headers } = rid('emb-gemini-batch-retry');
    const { result: error, delta } = await counting(() =>
      apiError(gw.openai(token).embeddings.create({ model: GEMINI_EMBEDDING_MODEL, input, encoding_format: 'float' }, { headers })),
    );
    expect(error.status).toBe(502);
    // Batch 1 (inputs 0-99) once; batch 2 (100-149) on every attempt.
    expect(moved(delta)).toEqual({ 'gemini.batchEmbedContents': 1 + (1 + MAX_RETRIES) });
    // Google embedded (and bills) batch 1: the failed request is billed its tokens, what a request
    // for those 100 inputs alone reports.
    const firstBatch = await gw.openai(token).embeddings.create({ model: GEMINI_EMBEDDING_MODEL, input: input.slice(0, 100) });
    await expectOneAudit(id, {
      status: 502,
      failure: 'upstream',
      provider: 'gemini',
      attempts: 1 + MAX_RETRIES,
      tokens_in: firstBatch.usage.prompt_tokens,
    });
  });

  it('audits client_abort (499), not 200, when the client leaves halfway through reading a large answer', async () => {
    // About 18 MB of vectors: more than the connection's socket buffers hold, so the client's
    // leaving is what ends the answer (a small one would be in the kernel's buffers, delivered).
    const body = JSON.stringify({
      model: OPENAI_EMBEDDING_MODEL,
      input: Array.from({ length: 600 }, (_, i) => `line ${i}`),
      encoding_format: 'float',
    });
    const { id } = rid('emb-leave-reading');
    // Sent with node:http: tracked by hand for the file's one-audit-line-per-request check.
    gw.requests.push({ id, method: 'POST', path: '/v1/embeddings' });
    const received = await new Promise<number>((resolve, reject) => {
      const req = httpRequest(`${gw.url}/v1/embeddings`, {
        method: 'POST',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', 'x-request-id': id },
      });
      req.on('error', reject);
      req.on('response', (res) => {
        if (res.statusCode !== 200) {
          res.destroy();
          return reject(new Error(`answered ${res.statusCode}, not 200`));
        }
        let bytes = 0;
        res.on('data', (chunk: Buffer) => {
          bytes += chunk.length;
          // Stop reading after the first 64 KB: the connection closes with the rest unread.
          if (bytes >= 65_536 && !res.destroyed) {
            res.destroy();
            resolve(bytes);
          }
        });
        res.on('end', () => reject(new Error(`read the whole answer (${bytes} bytes): the test proves nothing`)));
      });
      req.end(body);
    });
    expect(received).toBeLessThan(1_000_000);
    const audit = await expectOneAudit(id, { status: 499, failure: 'client_abort', provider: 'openai', path: '/v1/embeddings' });
    // The upstream embedded the input: it is billed, as for a client that left while waiting.
    expect(audit.tokens_in).toBeGreaterThan(0);
  });

  it('refuses an Anthropic model with 400 naming model, without calling any upstream', async () => {
    const { id, headers } = rid('emb-anthropic');
    const { result: error, total } = await counting(() =>
      apiError(
        gw.openai(token).embeddings.create({ model: ANTHROPIC_MODEL, input: 'no embeddings here', encoding_format: 'float' }, { headers }),
      ),
    );
    expect(error.status).toBe(400);
    expect(error.param).toBe('model');
    expect(total).toBe(0);
    await expectOneAudit(id, { status: 400, provider: 'anthropic' });
  });

  it('gemini: refuses a generative Gemini model with 400 naming model, without calling any upstream, as Gemini’s own route does', async () => {
    const { id, headers } = rid('emb-gemini-generative');
    const { result: error, total } = await counting(() =>
      apiError(
        gw.openai(token).embeddings.create({ model: GEMINI_MODEL, input: 'no embeddings here', encoding_format: 'float' }, { headers }),
      ),
    );
    expect(error.status).toBe(400);
    expect(error.code).toBe('unsupported_parameter');
    expect(error.param).toBe('model');
    expect(total).toBe(0);
    await expectOneAudit(id, { status: 400, failure: 'bad_request', provider: 'gemini' });
  });

  it("openai: passes a field keygate does not know as sent; OpenAI's refusal comes back 400, not retried", async () => {
    const { id, headers } = rid('emb-unknown-field');
    const body = { model: OPENAI_EMBEDDING_MODEL, input: 'a query', input_type: 'query' };
    const { result: error, delta } = await counting(() =>
      apiError(gw.openai(token).embeddings.create(body as Parameters<OpenAI['embeddings']['create']>[0], { headers })),
    );
    expect(error).toMatchObject({ status: 400, code: 'upstream_bad_request' });
    expect(error.message).toContain('Unrecognized request argument supplied: input_type');
    expect(moved(delta)).toEqual({ 'openai.embeddings': 1 });
    expect(lastBody(await mock.stats(), 'openai.embeddings')).toMatchObject({ input_type: 'query' });
    await expectOneAudit(id, { status: 400, failure: 'upstream', provider: 'openai', attempts: 1 });
  });
});

// ---------------------------------------------------------------------------------------------
// Retries and fallbacks
// ---------------------------------------------------------------------------------------------

describe('retries and fallbacks', () => {
  const flakyToken = (): string => mintToken({ product: 'flaky' });

  it('retries a 503 primary, then falls back: 1 + retries primary calls, 1 fallback call, 200 from the fallback', async () => {
    flaky.script({ status: 503 });
    const { id, headers } = rid('fb-503');
    const started = Date.now();
    const { result, delta } = await counting(() =>
      gw.openai(flakyToken()).chat.completions.create({ model: OPENAI_MODEL, messages: user('primary is down') }, { headers }),
    );
    expect(result.choices[0].message.content).toBe(mockReply('anthropic', 'primary is down'));
    expect(flaky.count('/v1/chat/completions')).toBe(1 + MAX_RETRIES);
    expect(moved(delta)).toEqual({ 'anthropic.messages': 1 });
    // Backoff with base 20 ms: full jitter under 20, then 40.
    expect(Date.now() - started).toBeLessThan(1_500);
    await expectOneAudit(id, {
      status: 200,
      failure: null,
      product: 'flaky',
      model: ANTHROPIC_MODEL,
      requested_model: OPENAI_MODEL,
      provider: 'anthropic',
      attempts: MAX_RETRIES + 2,
      tokens_in: result.usage!.prompt_tokens,
      tokens_out: result.usage!.completion_tokens,
    });
  });

  it.each([
    ['whose first event is a server_error', { status: 200, streamError: { type: 'server_error', code: null } }],
    ['that ends cleanly before any event', { status: 200, emptyStream: true }],
  ])('retries an OpenAI stream %s, then falls back (no byte had reached the client)', async (_what, behaviour) => {
    flaky.script(behaviour);
    const { id, headers } = rid('fb-stream-first');
    const { result: chunks, delta } = await counting(async () =>
      collect(
        await gw
          .openai(flakyToken())
          .chat.completions.create({ model: OPENAI_MODEL, messages: user('primary breaks'), stream: true }, { headers }),
      ),
    );
    expect(textOf(chunks)).toBe(mockReply('anthropic', 'primary breaks'));
    expect(flaky.count('/v1/chat/completions')).toBe(1 + MAX_RETRIES);
    expect(moved(delta)).toEqual({ 'anthropic.messages': 1 });
    await expectOneAudit(id, { status: 200, failure: null, provider: 'anthropic', stream: true, attempts: MAX_RETRIES + 2 });
  });

  it('refuses a whole JSON answer to a stream (a host that ignores stream: true) at once, 502, without retrying it', async () => {
    flaky.script({ status: 200, wholeAnswer: true });
    const { id, headers } = rid('stream-whole-answer');
    const error = await apiError(
      gw
        .openai(mintToken({ product: 'flakyalone' }))
        .chat.completions.create({ model: OPENAI_MODEL, messages: user('stream please'), stream: true }, { headers, maxRetries: 0 }),
    );
    expect(error.status).toBe(502);
    expect(error.message).toContain('upstream openai sent an invalid response');
    // Generated (and billed) once: a protocol error is not retried.
    expect(flaky.count('/v1/chat/completions')).toBe(1);
    await expectOneAudit(id, { status: 502, failure: 'upstream', attempts: 1, stream: true });
    const warnings = gw.proc.lines.filter((l) => l.json?.requestId === id && l.json.type !== 'audit').map((l) => l.json!);
    expect(warnings.map((j) => [j.severity, j.failure])).toEqual([['WARNING', 'protocol']]);
  });

  it('answers a rate limit sent as an OpenAI stream’s first event as one, 429, where no fallback is left', async () => {
    flaky.script({ status: 200, streamError: { type: 'rate_limit_error', code: 'rate_limit_exceeded' } });
    const limited = rid('stream-rate-limited');
    const error = await apiError(
      gw
        .openai(mintToken({ product: 'flakyalone' }))
        .chat.completions.create(
          { model: OPENAI_MODEL, messages: user('too fast'), stream: true },
          { headers: limited.headers, maxRetries: 0 },
        ),
    );
    expect({ status: error.status, code: error.code }).toEqual({ status: 429, code: 'upstream_rate_limited' });
    expect(flaky.count('/v1/chat/completions')).toBe(1 + MAX_RETRIES);
    await expectOneAudit(limited.id, { status: 429, failure: 'upstream', provider: 'openai', attempts: MAX_RETRIES + 1 });
  });

  it('tells the SDK not to retry what keygate already retried: one SDK call with two retries of its own is three upstream calls, not nine', async () => {
    flaky.script({ status: 503 });
    const { id, headers } = rid('one-layer-retries');
    const error = await apiError(
      gw
        .openai(mintToken({ product: 'flakyalone' }))
        .chat.completions.create({ model: OPENAI_MODEL, messages: user('down for good') }, { headers, maxRetries: 2 }),
    );
    expect(error.status).toBe(502);
    expect(error.headers?.get('x-should-retry')).toBe('false');
    expect(flaky.count('/v1/chat/completions')).toBe(1 + MAX_RETRIES);
    await expectOneAudit(id, { status: 502, failure: 'upstream', attempts: MAX_RETRIES + 1 });
  });

  it('tells the SDK not to retry a provider’s refusal of keygate’s own key, which keygate tried once: one upstream call, not three', async () => {
    flaky.script({ status: 401 });
    const { id, headers } = rid('refused-key');
    const error = await apiError(
      gw
        .openai(mintToken({ product: 'flakyalone' }))
        .chat.completions.create({ model: OPENAI_MODEL, messages: user('bad key') }, { headers, maxRetries: 2 }),
    );
    expect(error.status).toBe(502);
    expect(error.message).toContain("refused keygate's credentials (status 401)");
    expect(error.headers?.get('x-should-retry')).toBe('false');
    expect(flaky.count('/v1/chat/completions')).toBe(1);
    await expectOneAudit(id, { status: 502, failure: 'upstream', attempts: 1 });
    // The operator's to fix, not the client's: its WARNING names the status the provider sent (a
    // revoked key, not an outage), as the log-based alert on failed upstream attempts reads it.
    const warnings = gw.proc.lines.filter((l) => l.json?.requestId === id && l.json.type !== 'audit').map((l) => l.json!);
    expect(warnings.map((j) => [j.severity, j.message, j.provider, j.failure, j.upstreamStatus])).toEqual([
      ['WARNING', 'upstream attempt failed; no retry or fallback left', 'openai', 'http', 401],
    ]);
  });

  it("waits the upstream's Retry-After between retries of a 429, then falls back when the 429s go on", async () => {
    flaky.script({ status: 429, retryAfter: 1 });
    const { id, headers } = rid('fb-429');
    const started = Date.now();
    const { result, delta } = await counting(() =>
      gw.openai(flakyToken()).chat.completions.create({ model: OPENAI_MODEL, messages: user('slow down') }, { headers }),
    );
    const elapsed = Date.now() - started;
    expect(result.choices[0].message.content).toBe(mockReply('anthropic', 'slow down'));
    expect(flaky.count('/v1/chat/completions')).toBe(1 + MAX_RETRIES);
    for (const gap of flaky.gaps()) expect(gap).toBeGreaterThanOrEqual(990);
    expect(elapsed).toBeGreaterThanOrEqual(MAX_RETRIES * 1_000);
    expect(elapsed).toBeLessThan(MAX_RETRIES * 1_000 + 2_000);
    expect(moved(delta)).toEqual({ 'anthropic.messages': 1 });
    await expectOneAudit(id, {
      status: 200,
      failure: null,
      model: ANTHROPIC_MODEL,
      requested_model: OPENAI_MODEL,
      provider: 'anthropic',
      attempts: MAX_RETRIES + 2,
    });
  });

  it('does not wait a Retry-After longer than the retry ceiling: straight to the fallback', async () => {
    flaky.script({ status: 429, retryAfter: 60 });
    const { id, headers } = rid('fb-429-long');
    const started = Date.now();
    const { result, delta } = await counting(() =>
      gw.openai(flakyToken()).chat.completions.create({ model: OPENAI_MODEL, messages: user('come back in a minute') }, { headers }),
    );
    expect(Date.now() - started).toBeLessThan(1_000);
    expect(result.choices[0].message.content).toBe(mockReply('anthropic', 'come back in a minute'));
    expect(flaky.count('/v1/chat/completions')).toBe(1);
    expect(moved(delta)).toEqual({ 'anthropic.messages': 1 });
    await expectOneAudit(id, { status: 200, model: ANTHROPIC_MODEL, requested_model: OPENAI_MODEL, provider: 'anthropic', attempts: 2 });
  });

  it('neither retries nor falls back on a 400 from the primary', async () => {
    const { id, headers } = rid('fb-400');
    const { result: error, delta } = await counting(() =>
      apiError(
        gw.openai(token).chat.completions.create({ model: OPENAI_MODEL, messages: user('bad request [mock status=400]') }, { headers }),
      ),
    );
    expect(error.status).toBe(400);
    expect(moved(delta)).toEqual({ 'openai.chat': 1 });
    await expectOneAudit(id, {
      status: 400,
      failure: 'upstream',
      provider: 'openai',
      model: OPENAI_MODEL,
      requested_model: OPENAI_MODEL,
      attempts: 1,
    });
  });

  it('neither retries nor falls back on a 400 from a primary that has a fallback and a failing upstream', async () => {
    flaky.script({ status: 400 });
    const { id, headers } = rid('fb-400-flaky');
    const { result: error, delta } = await counting(() =>
      apiError(gw.openai(flakyToken()).chat.completions.create({ model: OPENAI_MODEL, messages: user('refused') }, { headers })),
    );
    expect(error.status).toBe(400);
    expect(flaky.count('/v1/chat/completions')).toBe(1);
    expect(moved(delta)).toEqual({});
    await expectOneAudit(id, { status: 400, failure: 'upstream', provider: 'openai', attempts: 1 });
  });

  it('never retries nor falls back once the stream has started: a mid-stream cut ends the SDK stream with an error', async () => {
    const { id, headers } = rid('fb-cut');
    const {
      result: { received, error },
      delta,
    } = await counting(() =>
      streamUntilError(
        gw.openai(token),
        { model: OPENAI_MODEL, messages: user('a stream that will be cut [mock cut_after=2]'), stream: true },
        headers,
      ),
    );
    expect(received.join('')).not.toBe('');
    expect(error.code).toBe('upstream_error');
    expect(moved(delta)).toEqual({ 'openai.chat': 1 });
    await expectOneAudit(id, { failure: 'upstream', stream: true, provider: 'openai', model: OPENAI_MODEL, attempts: 1 });
  });

  it('serves a streamed request from the fallback, as a stream, when the primary fails before the first byte', async () => {
    flaky.script({ status: 503 });
    const { id, headers } = rid('fb-stream');
    const { result: chunks, delta } = await counting(async () =>
      collect(
        await gw
          .openai(mintToken({ product: 'flaky2' }))
          .chat.completions.create(
            { model: ANTHROPIC_MODEL, messages: user('stream from anywhere'), stream: true, stream_options: { include_usage: true } },
            { headers },
          ),
      ),
    );
    expect(textOf(chunks)).toBe(mockReply('gemini', 'stream from anywhere'));
    expect(finishOf(chunks)).toBe('stop');
    expect(chunks.length).toBeGreaterThan(2);
    const usage = chunks[chunks.length - 1].usage;
    expect(usage).toBeTruthy();
    expect(flaky.count('/v1/messages')).toBe(1 + MAX_RETRIES);
    expect(moved(delta)).toEqual({ 'gemini.streamGenerateContent': 1 });
    await expectOneAudit(id, {
      status: 200,
      failure: null,
      product: 'flaky2',
      stream: true,
      model: GEMINI_MODEL,
      requested_model: ANTHROPIC_MODEL,
      provider: 'gemini',
      attempts: MAX_RETRIES + 2,
      tokens_in: usage!.prompt_tokens,
      tokens_out: usage!.completion_tokens,
    });
  });

  it('retries an unreachable primary (connect error) and falls back', async () => {
    const { id, headers } = rid('fb-connect');
    const { result, delta } = await counting(() =>
      gw
        .openai(mintToken({ product: 'deadend' }))
        .chat.completions.create({ model: OPENAI_MODEL, messages: user('nobody home') }, { headers }),
    );
    expect(result.choices[0].message.content).toBe(mockReply('anthropic', 'nobody home'));
    expect(moved(delta)).toEqual({ 'anthropic.messages': 1 });
    await expectOneAudit(id, {
      status: 200,
      model: ANTHROPIC_MODEL,
      requested_model: OPENAI_MODEL,
      provider: 'anthropic',
      attempts: MAX_RETRIES + 2,
    });
  });

  it("skips a fallback that cannot express the request rather than blame the client's valid parameter", async () => {
    // n: 2 is valid for gpt-4o; Claude (the fallback) cannot honour it. The client asked for gpt-4o.
    flaky.script({ status: 503 });
    const { id, headers } = rid('fb-inexpressible');
    const { result: error, delta } = await counting(() =>
      apiError(
        gw.openai(flakyToken()).chat.completions.create({ model: OPENAI_MODEL, messages: user('two answers please'), n: 2 }, { headers }),
      ),
    );
    expect(flaky.count('/v1/chat/completions')).toBe(1 + MAX_RETRIES);
    expect(moved(delta)).toEqual({});
    expect({ status: error.status, code: error.code }).toEqual({ status: 502, code: 'upstream_error' });
    // The model that was tried is audited, not the skipped fallback that was never called.
    await expectOneAudit(id, {
      status: 502,
      failure: 'upstream',
      requested_model: OPENAI_MODEL,
      model: OPENAI_MODEL,
      provider: 'openai',
      attempts: 1 + MAX_RETRIES,
    });
  });

  it('answers the last failure when the fallback fails too, having tried each model 1 + retries times', async () => {
    // The directive reaches the fallback as well (it is in the prompt), so Gemini fails with 503 too.
    flaky.script({ status: 503 });
    const { id, headers } = rid('fb-all-down');
    const { result: error, delta } = await counting(() =>
      apiError(
        gw
          .openai(mintToken({ product: 'flaky2' }))
          .chat.completions.create({ model: ANTHROPIC_MODEL, messages: user('everyone is down [mock status=503]') }, { headers }),
      ),
    );
    expect(error.status).toBe(502);
    expect(error.code).toBe('upstream_error');
    expect(flaky.count('/v1/messages')).toBe(1 + MAX_RETRIES);
    expect(moved(delta)).toEqual({ 'gemini.generateContent': 1 + MAX_RETRIES });
    await expectOneAudit(id, {
      status: 502,
      failure: 'upstream',
      model: GEMINI_MODEL,
      requested_model: ANTHROPIC_MODEL,
      provider: 'gemini',
      attempts: 2 * (1 + MAX_RETRIES),
    });
  });
});

describe('a fallback from Claude to an OpenAI model', () => {
  it("sends the OpenAI model the conversation without Claude's thinking (thinking_blocks, reasoning_content), the rest as sent", async () => {
    flaky.script({ status: 503 });
    const { id, headers } = rid('fb-claude-thinking');
    const answered = {
      role: 'assistant',
      content: 'It is 4.',
      reasoning_content: 'Two and two make four.',
      thinking_blocks: [{ type: 'thinking', thinking: 'Two and two make four.', signature: 'c2lnbmVk' }],
    };
    const messages = [{ role: 'user', content: 'What is 2 + 2?' }, answered, { role: 'user', content: 'And 3 + 3?' }];
    const { result, delta } = await counting(() =>
      gw
        .openai(mintToken({ product: 'flaky3' }))
        .chat.completions.create({ model: ANTHROPIC_MODEL, messages: messages as ChatCompletionMessageParam[] }, { headers }),
    );
    expect(result.choices[0].message.content).toBe(mockReply('openai', 'And 3 + 3?'));
    expect(flaky.count('/v1/messages')).toBe(1 + MAX_RETRIES);
    expect(moved(delta)).toEqual({ 'openai.chat': 1 });
    expect(lastBody(await mock.stats(), 'openai.chat').messages).toStrictEqual([
      messages[0],
      { role: 'assistant', content: 'It is 4.' },
      messages[2],
    ]);
    await expectOneAudit(id, {
      status: 200,
      failure: null,
      product: 'flaky3',
      model: OPENAI_MODEL,
      provider: 'openai',
      attempts: MAX_RETRIES + 2,
    });
  });
});

describe('a fallback to a model that does not reason', () => {
  it('sends an OpenAI fallback that does not reason (gpt-4o) the request without the reasoning_effort asked of Claude, which OpenAI would refuse', async () => {
    flaky.script({ status: 503 });
    const { id, headers } = rid('fb-effort-to-gpt-4o');
    const { result, delta } = await counting(() =>
      gw
        .openai(mintToken({ product: 'flaky3' }))
        .chat.completions.create({ model: CLAUDE_THINKING_MODEL, messages: user('think hard'), reasoning_effort: 'high' }, { headers }),
    );
    expect(result.choices[0].message.content).toBe(mockReply('openai', 'think hard'));
    // Claude was asked to think (the budget went to the failing upstream), gpt-4o was not.
    expect(flaky.count('/v1/messages')).toBe(1 + MAX_RETRIES);
    expect(flaky.hits[0].body).toMatchObject({ thinking: { type: 'enabled', budget_tokens: expect.any(Number) } });
    expect(moved(delta)).toEqual({ 'openai.chat': 1 });
    expect(lastBody(await mock.stats(), 'openai.chat')).not.toHaveProperty('reasoning_effort');
    await expectOneAudit(id, { status: 200, failure: null, product: 'flaky3', model: OPENAI_MODEL, attempts: MAX_RETRIES + 2 });
  });

  it('sends a Claude fallback that does not think (3.5) the request without reasoning_effort, rather than skipping it', async () => {
    flaky.script({ status: 503 });
    const { id, headers } = rid('fb-effort-to-claude-3-5');
    const { result, delta } = await counting(() =>
      gw
        .openai(mintToken({ product: 'flaky' }))
        .chat.completions.create(
          { model: OPENAI_REASONING_MODEL, messages: user('reason it out'), reasoning_effort: 'medium' },
          { headers },
        ),
    );
    expect(result.choices[0].message.content).toBe(mockReply('anthropic', 'reason it out'));
    expect(flaky.count('/v1/chat/completions')).toBe(1 + MAX_RETRIES);
    expect(flaky.hits[0].body).toMatchObject({ reasoning_effort: 'medium' });
    expect(moved(delta)).toEqual({ 'anthropic.messages': 1 });
    expect(lastBody(await mock.stats(), 'anthropic.messages')).not.toHaveProperty('thinking');
    await expectOneAudit(id, { status: 200, failure: null, product: 'flaky', model: ANTHROPIC_MODEL, provider: 'anthropic' });
  });
});

describe('fields the OpenAI API does not take', () => {
  // The mock refuses any top-level argument OpenAI's API reference does not list, as OpenAI does.

  it("passes a field keygate does not know to an OpenAI model as sent; OpenAI's refusal comes back 400, neither retried nor fallen back", async () => {
    const { id, headers } = rid('unknown-field-openai');
    const body = { model: OPENAI_MODEL, messages: user('sampled'), top_k: 40 };
    const { result: error, delta } = await counting(() =>
      apiError(gw.openai(token).chat.completions.create(body as ChatCompletionCreateParamsNonStreaming, { headers })),
    );
    expect(error).toMatchObject({ status: 400, code: 'upstream_bad_request' });
    expect(error.message).toContain('Unrecognized request argument supplied: top_k');
    // `prov` falls back from gpt-4o to Claude, but a refusal of the request is the client's to fix.
    expect(moved(delta)).toEqual({ 'openai.chat': 1 });
    expect(lastBody(await mock.stats(), 'openai.chat')).toMatchObject({ top_k: 40 });
    await expectOneAudit(id, { status: 400, failure: 'upstream', provider: 'openai', model: OPENAI_MODEL, attempts: 1 });
  });

  it('passes the OpenAI parameters keygate does not read to an OpenAI model as sent', async () => {
    const { id, headers } = rid('openai-params-as-sent');
    const params = {
      verbosity: 'low',
      prompt_cache_key: 'cache-1',
      prompt_cache_retention: '24h',
      service_tier: 'default',
      store: false,
      metadata: { team: 'search' },
      seed: 7,
    };
    const body = { model: OPENAI_MODEL, messages: user('all known'), ...params };
    const { result, delta } = await counting(() =>
      gw.openai(token).chat.completions.create(body as ChatCompletionCreateParamsNonStreaming, { headers }),
    );
    expect(result.choices[0].message.content).toBe(mockReply('openai', 'all known'));
    expect(moved(delta)).toEqual({ 'openai.chat': 1 });
    expect(lastBody(await mock.stats(), 'openai.chat')).toMatchObject(params);
    await expectOneAudit(id, { status: 200, provider: 'openai', attempts: 1 });
  });

  it("sends an OpenAI fallback of a Claude model only the OpenAI API's fields: what Claude's translation left out (top_k, thinking) is left out, the rest as sent", async () => {
    flaky.script({ status: 503 });
    const { id, headers } = rid('fb-claude-top-k');
    // top_k and thinking as clients written for Claude behind OpenAI-compatible proxies send them.
    const body = {
      model: ANTHROPIC_MODEL,
      messages: user('sampled by claude'),
      top_k: 40,
      thinking: { type: 'enabled', budget_tokens: 2048 },
      seed: 7,
      store: false,
    };
    const { result, delta } = await counting(() =>
      gw.openai(mintToken({ product: 'flaky3' })).chat.completions.create(body as ChatCompletionCreateParamsNonStreaming, { headers }),
    );
    expect(result.choices[0].message.content).toBe(mockReply('openai', 'sampled by claude'));
    expect(flaky.count('/v1/messages')).toBe(1 + MAX_RETRIES);
    expect(moved(delta)).toEqual({ 'openai.chat': 1 });
    const sent = lastBody(await mock.stats(), 'openai.chat');
    expect(sent).not.toHaveProperty('top_k');
    expect(sent).not.toHaveProperty('thinking');
    expect(sent).toMatchObject({ model: OPENAI_MODEL, seed: 7, store: false });
    await expectOneAudit(id, { status: 200, failure: null, product: 'flaky3', model: OPENAI_MODEL, attempts: MAX_RETRIES + 2 });
  });

  it("sends a streamed OpenAI fallback of a Gemini model without the Gemini-only fields Gemini's translation left out (extra_body, top_k)", async () => {
    flaky.script({ status: 503 });
    const { id, headers } = rid('fb-gemini-extra-body');
    const body = {
      model: GEMINI_MODEL,
      messages: user('sampled by gemini'),
      stream: true,
      top_k: 20,
      extra_body: { google: { thinking_config: { include_thoughts: true } } },
      temperature: 0.5,
    };
    const { result: chunks, delta } = await counting(async () =>
      collect(
        await gw.openai(mintToken({ product: 'flaky4' })).chat.completions.create(body as ChatCompletionCreateParamsStreaming, { headers }),
      ),
    );
    expect(chunks.map((c) => c.choices[0]?.delta?.content ?? '').join('')).toBe(mockReply('openai', 'sampled by gemini'));
    expect(flaky.hits.length).toBe(1 + MAX_RETRIES);
    expect(moved(delta)).toEqual({ 'openai.chat': 1 });
    const sent = lastBody(await mock.stats(), 'openai.chat');
    expect(sent).not.toHaveProperty('top_k');
    expect(sent).not.toHaveProperty('extra_body');
    expect(sent).toMatchObject({ model: OPENAI_MODEL, stream: true, temperature: 0.5 });
    await expectOneAudit(id, {
      status: 200,
      failure: null,
      product: 'flaky4',
      model: OPENAI_MODEL,
      stream: true,
      attempts: MAX_RETRIES + 2,
    });
  });
});

// ---------------------------------------------------------------------------------------------
// the whole file
// ---------------------------------------------------------------------------------------------

describe('the audit splits tokens as providers bill them: prompt-cache reads and writes, reasoning', () => {
  it('records OpenAI’s cached and reasoning tokens from a completion, and passes its usage on as sent', async () => {
    const { id, headers } = rid('usage-openai');
    const answer = await gw
      .openai(token)
      .chat.completions.create({ model: OPENAI_MODEL, messages: user('hi [mock cached_tokens=40 reasoning_tokens=12]') }, { headers });
    expect(answer.usage?.prompt_tokens_details?.cached_tokens).toBe(40);
    expect(answer.usage?.completion_tokens_details?.reasoning_tokens).toBe(12);
    const record = await expectOneAudit(id, {
      status: 200,
      tokens_in: answer.usage?.prompt_tokens,
      tokens_out: answer.usage?.completion_tokens,
      tokens_cached: 40,
      tokens_cache_write: null,
      tokens_reasoning: 12,
    });
    // The policy's gpt-4o prices: $2.50 per million plain input, $1.25 cached, $10 output.
    const prompt = answer.usage?.prompt_tokens ?? 0;
    expect(record.cost_usd).toBeCloseTo(((prompt - 40) * 2.5 + 40 * 1.25 + (answer.usage?.completion_tokens ?? 0) * 10) / 1e6, 9);
  });

  it('records Claude’s cache reads and writes from a translated stream, whose usage chunk carries OpenAI’s fields only', async () => {
    const { id, headers } = rid('usage-claude-stream');
    const stream = await gw.openai(token).chat.completions.create(
      {
        model: ANTHROPIC_MODEL,
        messages: user('hi [mock cached_tokens=30 cache_write_tokens=20]'),
        stream: true,
        stream_options: { include_usage: true },
      },
      { headers },
    );
    let usage: ChatCompletionChunk['usage'] | undefined;
    for await (const chunk of stream) if (chunk.usage) usage = chunk.usage;
    // Anthropic's input_tokens leave the cache out; OpenAI's prompt_tokens hold reads and writes.
    expect(usage?.prompt_tokens).toBeGreaterThanOrEqual(50);
    expect(Object.keys(usage ?? {}).sort()).toEqual(['completion_tokens', 'prompt_tokens', 'prompt_tokens_details', 'total_tokens']);
    expect(usage?.prompt_tokens_details).toEqual({ cached_tokens: 30 });
    const record = await expectOneAudit(id, {
      status: 200,
      stream: true,
      tokens_in: usage?.prompt_tokens,
      tokens_cached: 30,
      tokens_cache_write: 20,
      tokens_reasoning: null,
    });
    // Priced by the policy's 'claude-3-5-*' entry: reads at $0.30, writes at $3.75, the rest at $3, output at $15.
    const plain = (usage?.prompt_tokens ?? 0) - 50;
    expect(record.cost_usd).toBeCloseTo((plain * 3 + 30 * 0.3 + 20 * 3.75 + (usage?.completion_tokens ?? 0) * 15) / 1e6, 9);
  });

  it('records Gemini’s cached and thought tokens from a translated stream the client asked no usage of', async () => {
    const { id, headers } = rid('usage-gemini-stream');
    const stream = await gw
      .openai(token)
      .chat.completions.create(
        { model: GEMINI_MODEL, messages: user('hi [mock cached_tokens=25 reasoning_tokens=8]'), stream: true },
        { headers },
      );
    for await (const chunk of stream) expect(chunk.usage ?? null).toBeNull();
    const record = await expectOneAudit(id, {
      status: 200,
      stream: true,
      tokens_cached: 25,
      tokens_cache_write: null,
      tokens_reasoning: 8,
    });
    expect(record.tokens_in).toBeGreaterThanOrEqual(25);
    // The policy has no price for Gemini's models.
    expect(record.cost_usd).toBeNull();
  });

  it('records Claude’s hour-long cache writes apart, and prices them at the hour’s rate (Claude Code’s long sessions write them)', async () => {
    const { id, headers } = rid('usage-claude-1h');
    const message = await gw.anthropic(token).messages.create(
      {
        model: ANTHROPIC_MODEL,
        max_tokens: 64,
        messages: [{ role: 'user', content: 'hi [mock cache_write_tokens=20 cache_write_1h_tokens=10]' }],
      },
      { headers },
    );
    expect(message.usage).toMatchObject({
      cache_creation_input_tokens: 30,
      cache_creation: { ephemeral_5m_input_tokens: 20, ephemeral_1h_input_tokens: 10 },
    });
    const record = await expectOneAudit(id, { status: 200, tokens_cache_write: 30, tokens_cache_write_1h: 10, tokens_cached: 0 });
    // 'claude-3-5-*': $3 plain, $3.75 a 5-minute write, $6 an hour's, $15 out (per million).
    expect(record.cost_usd).toBeCloseTo((message.usage.input_tokens * 3 + 20 * 3.75 + 10 * 6 + message.usage.output_tokens * 15) / 1e6, 9);
  });

  it('leaves a split the provider did not report null, and records the zeros it did report', async () => {
    const claude = rid('usage-claude-plain');
    await gw.openai(token).chat.completions.create({ model: ANTHROPIC_MODEL, messages: user('hi') }, { headers: claude.headers });
    await expectOneAudit(claude.id, { status: 200, tokens_cached: 0, tokens_cache_write: 0, tokens_reasoning: null });
    const gemini = rid('usage-gemini-plain');
    await gw.openai(token).chat.completions.create({ model: GEMINI_MODEL, messages: user('hi') }, { headers: gemini.headers });
    await expectOneAudit(gemini.id, { status: 200, tokens_cached: null, tokens_cache_write: null, tokens_reasoning: null });
  });

  it('records the split on the native routes too: Responses, Messages and generateContent', async () => {
    const responses = rid('usage-responses');
    const made = await gw
      .openai(token)
      .responses.create(
        { model: OPENAI_MODEL, input: 'hi [mock cached_tokens=9 reasoning_tokens=4]', store: false },
        { headers: responses.headers },
      );
    await expectOneAudit(responses.id, {
      status: 200,
      tokens_in: made.usage?.input_tokens,
      tokens_out: made.usage?.output_tokens,
      tokens_cached: 9,
      tokens_reasoning: 4,
    });

    const messages = rid('usage-messages');
    const message = await gw
      .anthropic(token)
      .messages.create(
        { model: ANTHROPIC_MODEL, max_tokens: 64, messages: [{ role: 'user', content: 'hi [mock cached_tokens=7 cache_write_tokens=5]' }] },
        { headers: messages.headers },
      );
    expect(message.usage).toMatchObject({ cache_read_input_tokens: 7, cache_creation_input_tokens: 5 });
    await expectOneAudit(messages.id, {
      status: 200,
      tokens_in: message.usage.input_tokens + 7 + 5,
      tokens_cached: 7,
      tokens_cache_write: 5,
    });

    const generate = rid('usage-generate');
    const res = await gw.fetch(`/v1beta/models/${GEMINI_MODEL}:generateContent`, {
      method: 'POST',
      headers: { ...generate.headers, 'content-type': 'application/json', 'x-goog-api-key': token },
      body: JSON.stringify({ contents: [{ role: 'user', parts: [{ text: 'hi [mock cached_tokens=6 reasoning_tokens=3]' }] }] }),
    });
    const body = (await res.json()) as { usageMetadata: { promptTokenCount: number; cachedContentTokenCount: number } };
    expect(res.status).toBe(200);
    expect(body.usageMetadata.cachedContentTokenCount).toBe(6);
    await expectOneAudit(generate.id, {
      status: 200,
      tokens_in: body.usageMetadata.promptTokenCount,
      tokens_cached: 6,
      tokens_reasoning: 3,
    });
  });

  it('keeps the split a stream cut before its last chunk reported so far: a Gemini stream that thought, native and on chat', async () => {
    const native = rid('usage-gemini-cut');
    const res = await gw.fetch(`/v1beta/models/${GEMINI_MODEL}:streamGenerateContent?alt=sse`, {
      method: 'POST',
      headers: { ...native.headers, 'content-type': 'application/json', 'x-goog-api-key': token },
      body: JSON.stringify({
        contents: [{ role: 'user', parts: [{ text: 'hi [mock cached_tokens=6 reasoning_tokens=30 cut_after=2]' }] }],
      }),
    });
    expect(res.status).toBe(200);
    await res.text();
    // Billed what Gemini's running usage said: the prompt, its cached part, and the thoughts as output.
    const record = await expectOneAudit(native.id, { status: 502, failure: 'upstream', tokens_cached: 6, tokens_reasoning: 30 });
    expect(record.tokens_out).toBeGreaterThanOrEqual(30);

    const chat = rid('usage-gemini-chat-cut');
    const stream = await gw
      .openai(token)
      .chat.completions.create(
        { model: GEMINI_MODEL, messages: user('hi [mock cached_tokens=6 reasoning_tokens=30 cut_after=2]'), stream: true },
        { headers: chat.headers },
      );
    await expect(async () => {
      for await (const chunk of stream) void chunk;
    }).rejects.toThrow();
    const translated = await expectOneAudit(chat.id, { status: 502, failure: 'upstream', tokens_cached: 6, tokens_reasoning: 30 });
    expect(translated.tokens_out).toBeGreaterThanOrEqual(30);
  });
});

describe('the cost of a request at the policy file’s prices', () => {
  /** `keygate_cost_usd_total` of a product and configured model on the gateway's /metrics, 0 when absent. */
  async function costMetric(product: string, model: string): Promise<number> {
    const res = await fetch(`${gw.url}/metrics`, { signal: AbortSignal.timeout(5_000) });
    const text = await res.text();
    const line = text.split('\n').find((l) => l.startsWith(`keygate_cost_usd_total{product="${product}",model="${model}"}`));
    return line ? Number(line.split(' ').pop()) : 0;
  }

  it('adds each priced request’s cost_usd to keygate_cost_usd_total, under the model that answered', async () => {
    const before = await costMetric('prov', OPENAI_MODEL);
    const { id, headers } = rid('cost-metric');
    await gw.openai(token).chat.completions.create({ model: OPENAI_MODEL, messages: user('what does this cost') }, { headers });
    const record = await expectOneAudit(id, { status: 200, model: OPENAI_MODEL });
    expect(record.cost_usd).toBeGreaterThan(0);
    expect((await costMetric('prov', OPENAI_MODEL)) - before).toBeCloseTo(record.cost_usd as number, 9);
  });

  it('takes no usage whose counts are not counts: keygate’s estimate bills it, and the gateway stays up', async () => {
    // An OpenAI-compatible host's usage is passed on as written: counts as strings, a negative one, one missing.
    const broken = [
      { prompt_tokens: '5', completion_tokens: '3', total_tokens: 8 },
      { prompt_tokens: -1000, completion_tokens: 1, total_tokens: -999 },
      { completion_tokens: 3, total_tokens: 3 },
    ];
    const alone = gw.openai(mintToken({ product: 'flakyalone' }));
    for (const usage of broken) {
      flaky.script({ status: 200, usage });
      for (const stream of [false, true]) {
        const { id, headers } = rid('cost-broken-usage');
        if (stream)
          await collect(await alone.chat.completions.create({ model: OPENAI_MODEL, messages: user('hi'), stream: true }, { headers }));
        else await alone.chat.completions.create({ model: OPENAI_MODEL, messages: user('hi') }, { headers });
        const record = await expectOneAudit(id, { status: 200, model: OPENAI_MODEL, tokens_cached: null, tokens_reasoning: null });
        // The estimate: whole counts, the answer's one word at least, and a price from them.
        expect(Number.isSafeInteger(record.tokens_in) && (record.tokens_in as number) > 0).toBe(true);
        expect(record.tokens_out).toBe(1);
        expect(record.cost_usd).toBeCloseTo(((record.tokens_in as number) * 2.5 + 10) / 1e6, 9);
      }
      const { id, headers } = rid('cost-broken-embedding-usage');
      await alone.embeddings.create({ model: OPENAI_EMBEDDING_MODEL, input: 'hello world' }, { headers });
      const record = await expectOneAudit(id, { status: 200, tokens_out: 0, cost_usd: null });
      expect(Number.isSafeInteger(record.tokens_in) && (record.tokens_in as number) > 0).toBe(true);
    }
    // The metrics took every one of them: a scrape answers, with the counters as numbers.
    expect(await costMetric('flakyalone', OPENAI_MODEL)).toBeGreaterThan(0);
    expect(gw.proc.exitInfo).toBeNull();
    flaky.script({ status: 503 });
  });

  it('adds the day’s cost_usd up in GET /admin/usage, in total and per user, as the audit lines say (per replica without Redis)', async () => {
    const admin = mintToken({ product: 'prov', sub: 'cost-ops', extraClaims: { scope: 'keygate.admin' } });
    type Usage = { scope: string; cost_usd: { total: number; users: Record<string, number> } };
    const usage = async (): Promise<Usage> => {
      const res = await gw.fetch('/admin/usage?product=prov', { headers: { authorization: `Bearer ${admin}` } });
      expect(res.status).toBe(200);
      return (await res.json()) as Usage;
    };
    const before = await usage();
    const users = [uniqueId('spender'), uniqueId('spender')];
    const nano: Record<string, number> = { [users[0]]: 0, [users[1]]: 0 };
    // OpenAI's and Claude's prices (cache reads and writes included), plain and streamed.
    for (let i = 0; i < 6; i++) {
      const { id, headers } = rid('cost-usage');
      const client = gw.openai(mintToken({ product: 'prov', sub: users[i % 2] }));
      const model = i % 3 === 1 ? ANTHROPIC_MODEL : OPENAI_MODEL;
      const messages = user(
        `what does this cost ${i} [mock cached_tokens=${i * 10}${model === ANTHROPIC_MODEL ? ' cache_write_tokens=20' : ''}]`,
      );
      if (i === 5) await collect(await client.chat.completions.create({ model, messages, stream: true }, { headers }));
      else await client.chat.completions.create({ model, messages }, { headers });
      const record = await expectOneAudit(id, { status: 200, model, user: users[i % 2] });
      expect(record.cost_usd).toBeGreaterThan(0);
      nano[users[i % 2]] += Math.round((record.cost_usd as number) * 1e9);
    }
    // A model without a price adds nothing.
    const { id, headers } = rid('cost-usage-unpriced');
    await gw
      .openai(mintToken({ product: 'prov', sub: users[0] }))
      .chat.completions.create({ model: GEMINI_MODEL, messages: user('free?') }, { headers });
    await expectOneAudit(id, { status: 200, cost_usd: null });
    const after = await usage();
    expect(after.scope).toBe('replica');
    expect(after.cost_usd.users).toMatchObject({ [users[0]]: nano[users[0]] / 1e9, [users[1]]: nano[users[1]] / 1e9 });
    expect(Math.round((after.cost_usd.total - before.cost_usd.total) * 1e9)).toBe(nano[users[0]] + nano[users[1]]);
  });

  it('prices a refused request at nothing: no upstream answered it', async () => {
    const { id, headers } = rid('cost-refused');
    const error = await apiError(
      gw.openai(token).chat.completions.create({ model: OPENAI_MODEL, messages: user('x'), temperature: 9 }, { headers }),
    );
    expect(error.status).toBe(400);
    await expectOneAudit(id, { status: 400, cost_usd: null, tokens_in: null });
  });
});

describe('audit trail and logs', () => {
  it('kept the gateway and the mock running', () => {
    for (const p of [gw.proc, mock.proc]) expect({ name: p.name, exit: p.exitInfo }).toEqual({ name: p.name, exit: null });
  });

  it('wrote exactly one audit line per request', () => {
    const audits = gw.audits();
    const missing = gw.requests.filter((r) => !audits.some((a) => a.requestId === r.id));
    const duplicated = gw.requests.filter((r) => audits.filter((a) => a.requestId === r.id).length > 1);
    expect({ missing, duplicated }).toEqual({ missing: [], duplicated: [] });
    expect(audits).toHaveLength(gw.requests.length);
  });

  it('never logged a provider key', () => {
    const everything = gw.proc.lines.map((l) => l.raw);
    for (const key of ['sk-mock', 'sk-ant-mock', 'AIza-mock']) expect(everything.filter((line) => line.includes(key))).toEqual([]);
  });
});
