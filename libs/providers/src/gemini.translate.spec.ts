import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { GatewayError } from '@keygate/errors';
import { refusalOf } from '@keygate/errors/testing';
import type { ChatCompletionRequest, EmbeddingsRequest, StreamEvent } from './chat.types';
import type { BatchEmbedContentsResponse, GenerateContentResponse } from './gemini.types';
import {
  embeddingInputs,
  GeminiStreamTranslator,
  geminiHttpError,
  nextUsageMetadata,
  toBatchEmbedRequest,
  toChatCompletion,
  toGeminiSchema,
  toGenerateContentRequest,
  toOpenAiEmbeddings,
  type CompletionMeta,
} from './gemini.translate';
import { countTokens } from './token-estimate';
import { UpstreamError } from './upstream.error';

/*
 * Golden fixtures: __conformance__/gemini/*.json, one case per file, its kind given by its keys.
 * Built from Google's and OpenAI's published request/response examples.
 */
interface ExpectedError {
  status: number;
  code: string;
  param: string;
}
interface Fixture {
  file: string;
  name: string;
  openaiRequest?: ChatCompletionRequest;
  geminiRequest?: unknown;
  geminiResponse?: GenerateContentResponse & BatchEmbedContentsResponse;
  openaiResponse?: unknown;
  meta?: CompletionMeta;
  geminiEvents?: Array<Record<string, unknown>>;
  openaiChunks?: unknown[];
  clientWantsUsage?: boolean;
  usage?: unknown;
  embeddingsRequest?: EmbeddingsRequest;
  promptTokens?: number;
  error?: ExpectedError & { kind?: string; message?: string };
}

const DIR = join(__dirname, '__conformance__', 'gemini');
const fixtures: Fixture[] = readdirSync(DIR)
  .filter((f) => f.endsWith('.json'))
  .sort()
  .map((file) => ({ file, ...(JSON.parse(readFileSync(join(DIR, file), 'utf8')) as Omit<Fixture, 'file'>) }));

const requestCases = fixtures.filter((f) => f.openaiRequest && f.geminiRequest);
const requestErrors = fixtures.filter((f) => f.openaiRequest && f.error);
const responseCases = fixtures.filter((f) => f.openaiRequest === undefined && f.embeddingsRequest === undefined && f.geminiResponse);
const streamCases = fixtures.filter((f) => f.geminiEvents);
const embeddingCases = fixtures.filter((f) => f.embeddingsRequest && !f.error);
const embeddingErrors = fixtures.filter((f) => f.embeddingsRequest && f.error);

/** Runs `fn` and returns what it threw. */
function thrown(fn: () => unknown): unknown {
  try {
    fn();
  } catch (error) {
    return error;
  }
  throw new Error('expected a throw');
}

function expectGatewayError(error: unknown, expected: ExpectedError): void {
  expect(error).toBeInstanceOf(GatewayError);
  const e = error as GatewayError;
  expect({ status: e.status, code: e.code, param: e.options.param }).toEqual({
    status: expected.status,
    code: expected.code,
    param: expected.param,
  });
}

/** Feeds the events to a translator, collecting chunks until the end or a throw. */
function runStream(f: Fixture): { events: StreamEvent[]; error?: unknown } {
  const translator = new GeminiStreamTranslator({ ...(f.meta as CompletionMeta), clientWantsUsage: f.clientWantsUsage ?? false });
  const events: StreamEvent[] = [];
  try {
    for (const e of f.geminiEvents ?? []) events.push(...translator.push(e));
    events.push(...translator.end());
  } catch (error) {
    return { events, error };
  }
  return { events };
}

describe('Gemini translation goldens', () => {
  it('has the documented coverage', () => {
    expect(fixtures.length).toBeGreaterThanOrEqual(16);
    expect(requestCases.length && requestErrors.length && responseCases.length && streamCases.length && embeddingCases.length).toBeTruthy();
  });

  describe.each(requestCases.map((f) => [f.file, f]))('request %s', (_file, f) => {
    it(f.name, () => {
      expect(toGenerateContentRequest(f.openaiRequest as ChatCompletionRequest)).toEqual(f.geminiRequest);
    });
  });

  describe.each(requestErrors.map((f) => [f.file, f]))('refused request %s', (_file, f) => {
    it(f.name, () => {
      expectGatewayError(
        thrown(() => toGenerateContentRequest(f.openaiRequest as ChatCompletionRequest)),
        f.error as ExpectedError,
      );
    });
  });

  describe.each(responseCases.map((f) => [f.file, f]))('response %s', (_file, f) => {
    it(f.name, () => {
      const { completion, usage } = toChatCompletion(f.geminiResponse as GenerateContentResponse, f.meta as CompletionMeta);
      expect(completion).toEqual(f.openaiResponse);
      expect(usage).toEqual((f.openaiResponse as { usage?: unknown }).usage ?? null);
    });
  });

  describe.each(streamCases.map((f) => [f.file, f]))('stream %s', (_file, f) => {
    it(f.name, () => {
      const { events, error } = runStream(f);
      const chunks = events.filter((e) => e.data !== null).map((e) => JSON.parse(e.data as string) as unknown);
      expect(chunks).toEqual(f.openaiChunks);
      if (f.error) {
        expect(error).toBeInstanceOf(UpstreamError);
        expect(error).toMatchObject({ kind: f.error.kind, message: f.error.message });
        return;
      }
      expect(error).toBeUndefined();
      // Usage is reported to keygate exactly once, on the last event.
      const withUsage = events.filter((e) => e.usage);
      expect(withUsage).toHaveLength(1);
      expect(events[events.length - 1].usage).toEqual(f.usage);
      // Without include_usage no chunk mentions usage at all, exactly like OpenAI.
      if (!f.clientWantsUsage) for (const c of chunks) expect(c).not.toHaveProperty('usage');
      else expect(events[events.length - 1].data).not.toBeNull();
      // Completion text is reported for the gateway's fallback estimate.
      const text = events.map((e) => e.text ?? '').join('');
      const expectedText = (f.openaiChunks as Array<{ choices: Array<{ delta: { content?: string } }> }>)
        .map((c) => c.choices[0]?.delta.content ?? '')
        .join('');
      expect(text).toBe(expectedText);
    });
  });

  describe.each(embeddingCases.map((f) => [f.file, f]))('embeddings %s', (_file, f) => {
    it(f.name, () => {
      const body = f.embeddingsRequest as EmbeddingsRequest;
      const texts = embeddingInputs(body);
      expect(toBatchEmbedRequest(body.model, texts, body.dimensions)).toEqual(f.geminiRequest);
      // The fixture's count is what keygate's tokenizer gives: a real count, not chars/4.
      expect(texts.reduce((n, t) => n + countTokens(t), 0)).toBe(f.promptTokens);
      const out = toOpenAiEmbeddings((f.geminiResponse as BatchEmbedContentsResponse).embeddings ?? [], {
        model: body.model,
        encodingFormat: body.encoding_format ?? 'float',
        promptTokens: f.promptTokens as number,
        normalize: body.dimensions !== undefined,
      });
      expect(out).toEqual(f.openaiResponse);
    });
  });

  describe.each(embeddingErrors.map((f) => [f.file, f]))('refused embeddings %s', (_file, f) => {
    it(f.name, () => {
      expectGatewayError(
        thrown(() => embeddingInputs(f.embeddingsRequest as EmbeddingsRequest)),
        f.error as ExpectedError,
      );
    });
  });
});

describe('Gemini translation', () => {
  const user = [{ role: 'user', content: 'Hi' }];
  const req = (extra: Record<string, unknown>): ChatCompletionRequest => ({ model: 'gemini-2.5-flash', messages: user, ...extra });
  const meta: CompletionMeta = { fallbackId: 'chatcmpl-x', created: 1, model: 'gemini-2.5-flash' };

  it('round-trips a thought signature: response tool call -> next request functionCall part', () => {
    const { completion } = toChatCompletion(
      {
        responseId: 'r1',
        candidates: [
          {
            content: { role: 'model', parts: [{ functionCall: { name: 'f', args: { a: 1 } }, thoughtSignature: 'SIG' }] },
            finishReason: 'STOP',
          },
        ],
      },
      meta,
    );
    const message = completion.choices[0].message;
    const next = toGenerateContentRequest(
      req({
        messages: [...user, message, { role: 'tool', tool_call_id: message.tool_calls?.[0].id, content: '{"ok":true}' }],
        tools: [{ type: 'function', function: { name: 'f', parameters: { type: 'object', properties: { a: { type: 'integer' } } } } }],
      }),
    );
    const id = message.tool_calls?.[0].id;
    expect(next.contents[1]).toEqual({
      role: 'model',
      parts: [{ functionCall: { id, name: 'f', args: { a: 1 } }, thoughtSignature: 'SIG' }],
    });
    expect(next.contents[2]).toEqual({ role: 'user', parts: [{ functionResponse: { id, name: 'f', response: { ok: true } } }] });
    // A tool result in several text parts: one text, a part a line.
    const parts = toGenerateContentRequest(
      req({
        messages: [
          ...user,
          message,
          {
            role: 'tool',
            tool_call_id: id,
            content: [
              { type: 'text', text: 'Paris: sunny' },
              { type: 'text', text: 'Rome: rain' },
            ],
          },
        ],
        tools: [{ type: 'function', function: { name: 'f', parameters: { type: 'object', properties: { a: { type: 'integer' } } } } }],
      }),
    );
    expect(parts.contents[2].parts[0].functionResponse?.response).toEqual({ content: 'Paris: sunny\nRome: rain' });
  });

  it("round-trips Gemini 3's own call ids: the tool call's id, then the functionCall and functionResponse ids of the next turn", () => {
    const { completion } = toChatCompletion(
      {
        responseId: 'r2',
        candidates: [
          {
            content: {
              role: 'model',
              parts: [
                { functionCall: { id: 'gq7x1k2m', name: 'f', args: { a: 1 } }, thoughtSignature: 'SIG' },
                { functionCall: { id: 'p0w9e8r7', name: 'f', args: { a: 2 } } },
              ],
            },
            finishReason: 'STOP',
          },
        ],
      },
      meta,
    );
    const message = completion.choices[0].message;
    expect(message.tool_calls?.map((c) => c.id)).toEqual(['gq7x1k2m', 'p0w9e8r7']);
    // The results come back in the other order: matched by id, not by position or name.
    const next = toGenerateContentRequest(
      req({
        model: 'gemini-3-pro-preview',
        messages: [
          ...user,
          message,
          { role: 'tool', tool_call_id: 'p0w9e8r7', content: '{"n":2}' },
          { role: 'tool', tool_call_id: 'gq7x1k2m', content: '{"n":1}' },
        ],
      }),
    );
    expect(next.contents[1].parts.map((p) => p.functionCall?.id)).toEqual(['gq7x1k2m', 'p0w9e8r7']);
    expect(next.contents[2].parts.map((p) => [p.functionResponse?.id, p.functionResponse?.response])).toEqual([
      ['p0w9e8r7', { n: 2 }],
      ['gq7x1k2m', { n: 1 }],
    ]);
  });

  it('refuses a content part that names no type as malformed (invalid_request), one of a type Gemini lacks as unsupported', () => {
    const part = (p: Record<string, unknown>) =>
      refusalOf(() => toGenerateContentRequest(req({ messages: [{ role: 'user', content: [p] }] })));
    expect(part({ text: 'hi' })).toMatchObject({ code: 'invalid_request', message: 'messages[0].content[0].type is required' });
    expect(part({ type: 'video_url' })).toMatchObject({ code: 'unsupported_parameter' });
    // A user message without content at all, as OpenAI answers it (not "needs at least one message").
    expect(refusalOf(() => toGenerateContentRequest(req({ messages: [{ role: 'user' }] })))).toMatchObject({
      code: 'invalid_request',
      options: { param: 'messages[0].content' },
    });
  });

  it('gives the same tool-call ids to the streamed and the non-streamed translation', () => {
    const parts = [{ functionCall: { name: 'a', args: {} } }, { functionCall: { name: 'b', args: {} } }];
    const res: GenerateContentResponse = {
      responseId: 'same',
      candidates: [{ content: { role: 'model', parts }, finishReason: 'STOP', index: 0 }],
    };
    const plain = toChatCompletion(res, meta).completion.choices[0].message.tool_calls?.map((c) => c.id);
    const t = new GeminiStreamTranslator({ ...meta, clientWantsUsage: false });
    const streamed = [
      ...t.push({ responseId: 'same', candidates: [{ content: { role: 'model', parts: [parts[0]] } }] }),
      ...t.push({ responseId: 'same', candidates: [{ content: { role: 'model', parts: [parts[1]] }, finishReason: 'STOP' }] }),
    ]
      .map((e) => JSON.parse(e.data as string) as { choices: Array<{ delta: { tool_calls?: Array<{ id: string }> } }> })
      .flatMap((c) => c.choices[0].delta.tool_calls ?? [])
      .map((c) => c.id);
    expect(streamed).toEqual(plain);
    expect(new Set(plain).size).toBe(2);
  });

  it('streams the parallel calls of one Gemini event one per chunk, as OpenAI does (the SDK ends a call when the next index starts)', () => {
    const t = new GeminiStreamTranslator({ ...meta, clientWantsUsage: false });
    const parts = [
      { functionCall: { name: 'a', args: { x: 1 } } },
      { functionCall: { name: 'b', args: {} } },
      { functionCall: { name: 'c', args: { y: 'z' } } },
    ];
    const deltas = t
      .push({ responseId: 'p', candidates: [{ content: { role: 'model', parts }, finishReason: 'STOP' }] })
      .map((e) => JSON.parse(e.data as string) as { choices: Array<{ delta: Record<string, unknown>; finish_reason: string | null }> })
      .map((c) => [c.choices[0].delta.tool_calls ?? c.choices[0].delta, c.choices[0].finish_reason]);
    const call = (index: number, name: string, args: string): unknown[] => [
      [{ index, id: expect.stringMatching(/^call_/), type: 'function', function: { name, arguments: args } }],
      null,
    ];
    expect(deltas).toEqual([
      [{ role: 'assistant', content: '', refusal: null }, null],
      call(0, 'a', '{"x":1}'),
      call(1, 'b', '{}'),
      call(2, 'c', '{"y":"z"}'),
      [{}, 'tool_calls'],
    ]);
  });

  it('reports each chunk’s running usageMetadata for keygate only, so a stream that fails later is billed what Gemini counted', () => {
    const t = new GeminiStreamTranslator({ ...meta, clientWantsUsage: false });
    const out = t.push({
      responseId: 'r',
      candidates: [{ content: { role: 'model', parts: [{ text: 'Hel' }] }, index: 0 }],
      usageMetadata: { promptTokenCount: 1000, candidatesTokenCount: 2, totalTokenCount: 1002 },
    });
    expect(out.at(-1)).toStrictEqual({ data: null, runningUsage: expect.objectContaining({ prompt_tokens: 1000, completion_tokens: 2 }) });
    expect(out.filter((e) => e.runningUsage && e.data !== null)).toEqual([]);
    expect(() => t.push({ error: { code: 503, message: 'unavailable' } })).toThrow(UpstreamError);
  });

  it('reads an error event as the status it stands for: 429 and 5xx retried, a 400 the client’s (400 upstream_bad_request)', () => {
    const failure = (code: number): UpstreamError =>
      thrown(() =>
        new GeminiStreamTranslator({ ...meta, clientWantsUsage: false }).push({ error: { code, message: 'no' } }),
      ) as UpstreamError;
    expect(failure(400)).toMatchObject({ kind: 'stream_error', status: 400, retryable: false });
    expect(failure(400).toGatewayError()).toMatchObject({ code: 'upstream_bad_request', status: 400 });
    expect(failure(429)).toMatchObject({ status: 429, retryable: true });
    expect(failure(503)).toMatchObject({ status: 503, retryable: true });
    expect(failure(418).toGatewayError()).toMatchObject({ code: 'upstream_error', status: 502 });
  });

  it('keeps an id Gemini did send on a functionCall', () => {
    const { completion } = toChatCompletion(
      { candidates: [{ content: { parts: [{ functionCall: { id: 'fc-1', name: 'f', args: {} } }] }, finishReason: 'STOP' }] },
      meta,
    );
    expect(completion.choices[0].message.tool_calls?.[0].id).toBe('fc-1');
  });

  it('maps every finish reason', () => {
    const finish = (reason: string, parts = [{ text: 'x' }]): string =>
      toChatCompletion({ candidates: [{ content: { parts }, finishReason: reason }] }, meta).completion.choices[0].finish_reason;
    expect(finish('STOP')).toBe('stop');
    expect(finish('STOP', [{ functionCall: { name: 'f' } }] as never)).toBe('tool_calls');
    expect(finish('MAX_TOKENS')).toBe('length');
    for (const r of ['SAFETY', 'RECITATION', 'BLOCKLIST', 'PROHIBITED_CONTENT', 'SPII']) expect(finish(r)).toBe('content_filter');
    for (const r of ['OTHER', 'LANGUAGE', 'FINISH_REASON_UNSPECIFIED']) expect(finish(r)).toBe('stop');
  });

  it('fails a generation that ended in an invalid function call, retryably, instead of answering an empty stop', () => {
    for (const reason of ['MALFORMED_FUNCTION_CALL', 'UNEXPECTED_TOOL_CALL', 'TOO_MANY_TOOL_CALLS']) {
      const error = thrown(() => toChatCompletion({ candidates: [{ content: { parts: [] }, finishReason: reason }] }, meta));
      expect(error).toBeInstanceOf(UpstreamError);
      expect(error).toMatchObject({ kind: 'generation', status: 502, retryable: true });
      expect((error as UpstreamError).toGatewayError()).toMatchObject({ code: 'upstream_error', status: 502 });
      expect((error as UpstreamError).message).toContain(reason);

      // Streamed: the translator throws on the event that carries it (before any content, the
      // attempt fails and is retried; after, the client gets the stream's error event).
      const t = new GeminiStreamTranslator({ ...meta, clientWantsUsage: false });
      expect(thrown(() => t.push({ candidates: [{ content: { parts: [] }, finishReason: reason }] }))).toMatchObject({
        kind: 'generation',
      });
    }
  });

  it("answers a history without its thought signatures (MISSING_THOUGHT_SIGNATURE) as the client's 400, not retried", () => {
    const event = { candidates: [{ content: { parts: [] }, finishReason: 'MISSING_THOUGHT_SIGNATURE' }] };
    for (const error of [
      thrown(() => toChatCompletion(event, meta)),
      thrown(() => new GeminiStreamTranslator({ ...meta, clientWantsUsage: false }).push(event)),
    ]) {
      expect(error).toBeInstanceOf(UpstreamError);
      expect(error).toMatchObject({ status: 400, retryable: false });
      expect((error as UpstreamError).toGatewayError()).toMatchObject({ code: 'upstream_bad_request', status: 400 });
      expect((error as UpstreamError).message).toContain('thought_signature');
    }
  });

  it('refuses a response with neither candidates nor a block reason as a protocol error', () => {
    expect(thrown(() => toChatCompletion({ usageMetadata: { promptTokenCount: 1 } }, meta))).toMatchObject({ kind: 'protocol' });
  });

  it('streams a blocked prompt as a content_filter finish', () => {
    const t = new GeminiStreamTranslator({ ...meta, clientWantsUsage: false });
    const events = [
      ...t.push({ promptFeedback: { blockReason: 'SAFETY' }, usageMetadata: { promptTokenCount: 4, totalTokenCount: 4 } }),
      ...t.end(),
    ];
    const chunks = events
      .filter((e) => e.data)
      .map((e) => JSON.parse(e.data as string) as { choices: Array<{ finish_reason: string | null }> });
    expect(chunks.map((c) => c.choices[0].finish_reason)).toEqual([null, 'content_filter']);
    expect(events[events.length - 1]).toEqual({ data: null, usage: { prompt_tokens: 4, completion_tokens: 0, total_tokens: 4 } });
  });

  it.each([
    [{ n: 8 }, { candidateCount: 8 }],
    [{ model: 'gemini-1.5-pro', n: 2 }, { candidateCount: 2 }],
    [{ model: 'gemini-3-pro-preview', n: 1 }, undefined],
    [{ n: 1 }, undefined],
    [{ response_format: { type: 'text' } }, undefined],
    [{ stop: [] }, undefined],
    [{ stop: ['a', '', 'b', 'c', 'd', 'e'] }, { stopSequences: ['a', 'b', 'c', 'd', 'e'] }],
    [{ max_tokens: 50, max_completion_tokens: 20 }, { maxOutputTokens: 20 }],
    // reasoning_effort: a token budget on Gemini 2.5, a level on Gemini 3 and later, nothing where the model does not think.
    [{ reasoning_effort: 'none' }, { thinkingConfig: { thinkingBudget: 0 } }],
    [{ reasoning_effort: 'minimal' }, { thinkingConfig: { thinkingBudget: 512 } }],
    [{ reasoning_effort: 'low' }, { thinkingConfig: { thinkingBudget: 1024 } }],
    [{ reasoning_effort: 'medium' }, { thinkingConfig: { thinkingBudget: 8192 } }],
    [{ reasoning_effort: 'high' }, { thinkingConfig: { thinkingBudget: 24576 } }],
    [{ model: 'models/gemini-2.5-pro', reasoning_effort: 'xhigh' }, { thinkingConfig: { thinkingBudget: 24576 } }],
    // Gemini counts thoughts in maxOutputTokens: the budget stays below it, leaving the answer room.
    [
      { reasoning_effort: 'high', max_tokens: 4096 },
      { maxOutputTokens: 4096, thinkingConfig: { thinkingBudget: 4095 } },
    ],
    [
      { reasoning_effort: 'low', max_completion_tokens: 4096 },
      { maxOutputTokens: 4096, thinkingConfig: { thinkingBudget: 1024 } },
    ],
    [
      { reasoning_effort: 'none', max_tokens: 16 },
      { maxOutputTokens: 16, thinkingConfig: { thinkingBudget: 0 } },
    ],
    // Never below 512, the least Flash-Lite takes: a small cap keeps a small effort's budget as asked.
    [
      { reasoning_effort: 'minimal', max_tokens: 300 },
      { maxOutputTokens: 300, thinkingConfig: { thinkingBudget: 512 } },
    ],
    [
      { reasoning_effort: 'medium', max_tokens: 300 },
      { maxOutputTokens: 300, thinkingConfig: { thinkingBudget: 512 } },
    ],
    [{ model: 'gemini-3-pro-preview', reasoning_effort: 'low' }, { thinkingConfig: { thinkingLevel: 'low' } }],
    [{ model: 'gemini-3-flash-preview', reasoning_effort: 'none' }, { thinkingConfig: { thinkingLevel: 'minimal' } }],
    [{ model: 'gemini-4-pro', reasoning_effort: 'xhigh' }, { thinkingConfig: { thinkingLevel: 'xhigh' } }],
    [{ model: 'gemini-1.5-pro', reasoning_effort: 'minimal' }, undefined],
    [{ model: 'gemini-2.0-flash', reasoning_effort: 'none' }, undefined],
    [{ reasoning_effort: null }, undefined],
    // Gemini's seed is an int32: its bounds are taken.
    [{ seed: 2147483647 }, { seed: 2147483647 }],
    [{ seed: -2147483648 }, { seed: -2147483648 }],
    // Penalties: Gemini 1.5 and 2.0 take them; on 2.5 and later, which refuse them, 0 (nothing asked) is left out.
    [
      { model: 'gemini-1.5-pro', presence_penalty: 0.5, frequency_penalty: -1 },
      { presencePenalty: 0.5, frequencyPenalty: -1 },
    ],
    [
      { model: 'gemini-2.0-flash', presence_penalty: 0, frequency_penalty: 0.3 },
      { presencePenalty: 0, frequencyPenalty: 0.3 },
    ],
    [{ presence_penalty: 0, frequency_penalty: 0 }, undefined],
    [{ model: 'gemini-3-pro-preview', presence_penalty: 0, frequency_penalty: null }, undefined],
  ])('maps %j to generationConfig %j', (extra, config) => {
    expect(toGenerateContentRequest(req(extra)).generationConfig).toEqual(config);
  });

  it.each([
    ['tool_choice', { tool_choice: 'required' }, 'invalid_request'],
    ['tools[0].type', { tools: [{ type: 'custom', custom: { name: 'x' } }] }, 'unsupported_parameter'],
    ['response_format', { response_format: { type: 'grammar' } }, 'unsupported_parameter'],
    ['reasoning_effort', { reasoning_effort: 'maximum' }, 'invalid_request'],
    ['reasoning_effort', { model: 'gemini-1.5-pro', reasoning_effort: 'low' }, 'unsupported_parameter'],
    ['reasoning_effort', { model: 'gemini-2.0-flash', reasoning_effort: 'high' }, 'unsupported_parameter'],
    ['reasoning_effort', { model: 'gemma-3-27b-it', reasoning_effort: 'low' }, 'unsupported_parameter'],
    ['stop', { stop: ['1', '2', '3', '4', '5', '6'] }, 'unsupported_parameter'],
    // Gemini 3 answers 400 "Multiple candidates is not enabled for this model".
    ['n', { model: 'gemini-3-pro-preview', n: 2 }, 'unsupported_parameter'],
    ['n', { model: 'models/gemini-3-flash-preview', n: 8 }, 'unsupported_parameter'],
    ['n', { model: 'gemini-flash-latest', n: 3 }, 'unsupported_parameter'],
    // OpenAI takes a 64-bit seed, Gemini an int32 only.
    ['seed', { seed: 12345678901 }, 'unsupported_parameter'],
    ['seed', { seed: 2147483648 }, 'unsupported_parameter'],
    ['seed', { model: 'gemini-1.5-pro', seed: -2147483649 }, 'unsupported_parameter'],
    // Gemini 2.5 and later answer 400 "Penalty is not enabled".
    ['presence_penalty', { presence_penalty: 0.5 }, 'unsupported_parameter'],
    ['frequency_penalty', { model: 'gemini-2.5-pro', presence_penalty: 0, frequency_penalty: -0.1 }, 'unsupported_parameter'],
    ['frequency_penalty', { model: 'gemini-3-flash-preview', frequency_penalty: 1 }, 'unsupported_parameter'],
    ['presence_penalty', { model: 'gemini-flash-latest', presence_penalty: 2 }, 'unsupported_parameter'],
    ['tools[0].function.name', { tools: [{ type: 'function', function: { name: 'f'.repeat(65) } }] }, 'unsupported_parameter'],
    ['messages', { messages: [{ role: 'system', content: 'only a system prompt' }] }, 'invalid_request'],
    ['messages[0].role', { messages: [{ role: 'function', name: 'f', content: '1' }] }, 'unsupported_parameter'],
    [
      'messages[0].content[0].file',
      { messages: [{ role: 'user', content: [{ type: 'file', file: { file_id: 'file-abc' } }] }] },
      'unsupported_parameter',
    ],
    [
      'messages[0].content[1].type',
      {
        messages: [
          {
            role: 'user',
            content: [
              { type: 'text', text: 'a' },
              { type: 'video_url', video_url: {} },
            ],
          },
        ],
      },
      'unsupported_parameter',
    ],
    [
      'messages[0].content[0].image_url',
      { messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: 'data:image/png,raw' } }] }] },
      'invalid_request',
    ],
    [
      'messages[1].tool_calls[0].function.arguments',
      {
        messages: [
          ...user,
          { role: 'assistant', tool_calls: [{ id: 'c', type: 'function', function: { name: 'f', arguments: '{oops' } }] },
        ],
      },
      'invalid_request',
    ],
    // Gemini refuses a conversation that ends on a model turn.
    ['messages[1].role', { messages: [...user, { role: 'assistant', content: 'Sure, here' }] }, 'unsupported_parameter'],
    [
      'messages[2].content',
      { messages: [...user, { role: 'assistant', content: 'ok' }, { role: 'user', content: '' }] },
      'unsupported_parameter',
    ],
    [
      'messages[2].role',
      { messages: [...user, { role: 'assistant', content: 'ok' }, { role: 'system', content: 'be brief' }] },
      'unsupported_parameter',
    ],
  ])('refuses %s', (param, extra, code) => {
    const error = thrown(() => toGenerateContentRequest(req(extra)));
    expect(error).toBeInstanceOf(GatewayError);
    expect(error).toMatchObject({ code, options: { param } });
  });

  describe('tools beside JSON output (response_format json_object or json_schema)', () => {
    const tools = [{ type: 'function', function: { name: 'f' } }];
    const schema = { type: 'json_schema', json_schema: { name: 'o', schema: { type: 'object', properties: { a: { type: 'string' } } } } };

    it.each([
      ['gemini-2.5-flash', { type: 'json_object' }, undefined],
      ['gemini-2.0-flash', schema, undefined],
      ['models/gemini-1.5-pro', { type: 'json_object' }, undefined],
      // tool_choice none still declares the tools, which is what Gemini refuses.
      ['gemini-2.5-pro', { type: 'json_object' }, 'none'],
    ])('are refused on %s (response_format %j, tool_choice %s), naming both', (model, format, choice) => {
      const error = thrown(() => toGenerateContentRequest(req({ model, tools, response_format: format, tool_choice: choice })));
      expect(error).toBeInstanceOf(GatewayError);
      expect(error).toMatchObject({ code: 'unsupported_parameter', options: { param: 'response_format' } });
      expect((error as GatewayError).message).toMatch(/response_format[\s\S]*tools/);
    });

    it.each(['gemini-3-pro-preview', 'gemini-3-flash-preview', 'gemini-flash-latest'])('are both sent to %s', (model) => {
      const out = toGenerateContentRequest(req({ model, tools, response_format: schema }));
      expect(out.tools).toEqual([{ functionDeclarations: [{ name: 'f' }] }]);
      expect(out.generationConfig).toMatchObject({ responseMimeType: 'application/json', responseSchema: { type: 'OBJECT' } });
    });

    it('leave plain text output beside tools alone, on every model', () => {
      for (const model of ['gemini-2.5-flash', 'gemini-1.5-pro'])
        expect(toGenerateContentRequest(req({ model, tools, response_format: { type: 'text' } })).tools).toHaveLength(1);
    });
  });

  it("takes a function name of 64 characters, Gemini's longest", () => {
    const name = 'f'.repeat(64);
    const request = toGenerateContentRequest(req({ tools: [{ type: 'function', function: { name } }] }));
    expect(request.tools).toEqual([{ functionDeclarations: [expect.objectContaining({ name })] }]);
  });

  it('accepts log-probability parameters that ask for nothing (top_logprobs 0, logprobs false)', () => {
    expect(() => toGenerateContentRequest(req({ top_logprobs: 0, logprobs: false }))).not.toThrow();
    expect(thrown(() => toGenerateContentRequest(req({ top_logprobs: 2 })))).toMatchObject({
      code: 'unsupported_parameter',
      options: { param: 'top_logprobs' },
    });
  });

  it('sends inline PDFs given as file_data', () => {
    const out = toGenerateContentRequest(
      req({
        messages: [
          { role: 'user', content: [{ type: 'file', file: { filename: 'a.pdf', file_data: 'data:application/pdf;base64,JVBERi0=' } }] },
        ],
      }),
    );
    expect(out.contents[0].parts).toEqual([{ inlineData: { mimeType: 'application/pdf', data: 'JVBERi0=' } }]);
  });

  it('sends image/jpg (which clients write) as image/jpeg', () => {
    const out = toGenerateContentRequest(
      req({ messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: 'data:image/jpg;base64,/9j/' } }] }] }),
    );
    expect(out.contents[0].parts).toEqual([{ inlineData: { mimeType: 'image/jpeg', data: '/9j/' } }]);
  });

  it('converts schemas: type arrays, oneOf, single allOf, unknown formats dropped', () => {
    expect(
      toGeminiSchema(
        {
          type: 'object',
          properties: {
            a: { type: ['integer', 'null'], format: 'int32', exclusiveMinimum: 0 },
            b: { oneOf: [{ type: 'string' }, { type: 'number' }] },
            c: { allOf: [{ type: 'string', format: 'email' }], description: 'mail' },
            d: { type: ['string', 'boolean'] },
          },
        },
        'p',
      ),
    ).toEqual({
      type: 'OBJECT',
      properties: {
        a: { type: 'INTEGER', nullable: true, format: 'int32', minimum: 1 },
        b: { anyOf: [{ type: 'STRING' }, { type: 'NUMBER' }] },
        c: { type: 'STRING', description: 'mail' },
        d: { anyOf: [{ type: 'STRING' }, { type: 'BOOLEAN' }] },
      },
    });
    expect(thrown(() => toGeminiSchema({ allOf: [{ type: 'string' }, { minLength: 1 }] }, 'p'))).toMatchObject({
      code: 'unsupported_parameter',
      options: { param: 'p' },
    });
  });

  it('turns exclusive bounds on integers into the inclusive bounds they mean, and drops them on numbers', () => {
    expect(toGeminiSchema({ type: 'integer', exclusiveMinimum: 0, exclusiveMaximum: 10 }, 'p')).toEqual({
      type: 'INTEGER',
      minimum: 1,
      maximum: 9,
    });
    // The stricter of both bounds holds; fractional exclusive bounds round inward.
    expect(toGeminiSchema({ type: 'integer', minimum: 5, exclusiveMinimum: 0.5, maximum: 3, exclusiveMaximum: 7.5 }, 'p')).toEqual({
      type: 'INTEGER',
      minimum: 5,
      maximum: 3,
    });
    expect(toGeminiSchema({ type: 'integer', exclusiveMinimum: -0.5, exclusiveMaximum: 2.5 }, 'p')).toEqual({
      type: 'INTEGER',
      minimum: 0,
      maximum: 2,
    });
    // Draft 4's boolean form.
    expect(toGeminiSchema({ type: 'integer', minimum: 1, exclusiveMinimum: true, maximum: 9, exclusiveMaximum: true }, 'p')).toEqual({
      type: 'INTEGER',
      minimum: 2,
      maximum: 8,
    });
    expect(toGeminiSchema({ type: ['integer', 'null'], exclusiveMinimum: 0 }, 'p')).toEqual({
      type: 'INTEGER',
      nullable: true,
      minimum: 1,
    });
    expect(toGeminiSchema({ type: 'number', exclusiveMinimum: 0, minimum: -1 }, 'p')).toEqual({ type: 'NUMBER', minimum: -1 });
  });

  it('keeps only the required names a node declares (Gemini refuses the others)', () => {
    expect(
      toGeminiSchema(
        {
          type: 'object',
          properties: {
            a: { type: 'string' },
            tags: { type: 'object', properties: { k: { type: 'string' } }, additionalProperties: { type: 'string' }, required: ['x'] },
            hasOwn: { type: 'string' },
          },
          required: ['a', 'ghost', 'constructor', 'hasOwn', 7],
        },
        'p',
      ),
    ).toEqual({
      type: 'OBJECT',
      properties: { a: { type: 'STRING' }, tags: { type: 'OBJECT', properties: { k: { type: 'STRING' } } }, hasOwn: { type: 'STRING' } },
      required: ['a', 'hasOwn'],
    });
  });

  it('says the type of a node JSON Schema reads as an object or an array, and keeps properties and items only there', () => {
    expect(
      toGeminiSchema(
        { properties: { list: { items: { type: 'string' } }, name: { type: 'string', properties: { x: { type: 'string' } } } } },
        'p',
      ),
    ).toEqual({
      type: 'OBJECT',
      properties: { list: { type: 'ARRAY', items: { type: 'STRING' } }, name: { type: 'STRING' } },
    });
  });

  it('sends no parameters for a function without arguments, and a free-form object inside a schema as a bare OBJECT', () => {
    const request = toGenerateContentRequest(
      req({ tools: [{ type: 'function', function: { name: 'ping', parameters: { type: 'object', properties: {} } } }] }),
    );
    expect(request.tools).toEqual([{ functionDeclarations: [{ name: 'ping' }] }]);
    expect(
      toGeminiSchema({ type: 'object', properties: { meta: { type: 'object', additionalProperties: { type: 'string' } } } }, 'p'),
    ).toEqual({
      type: 'OBJECT',
      properties: { meta: { type: 'OBJECT' } },
    });
  });

  it('refuses with 400 a chain of $refs that nests deeper than 64 levels (it would exhaust the stack)', () => {
    const defs: Record<string, unknown> = { d200: { type: 'string' } };
    for (let i = 0; i < 200; i++) defs[`d${i}`] = { type: 'object', properties: { next: { $ref: `#/$defs/d${i + 1}` } } };
    expect(thrown(() => toGeminiSchema({ $ref: '#/$defs/d0', $defs: defs }, 'p'))).toMatchObject({
      code: 'unsupported_parameter',
      options: { param: 'p' },
      message: expect.stringMatching(/more than 64 levels/),
    });
    expect(() => toGeminiSchema({ $ref: '#/$defs/d180', $defs: defs }, 'p')).not.toThrow();
  });

  it('sends a schema that refers to itself as JSON Schema (parametersJsonSchema, responseJsonSchema), others in Gemini’s Schema', () => {
    const list = {
      type: 'object',
      definitions: { Item: { type: 'object', properties: { value: { type: 'integer' }, next: { $ref: '#/definitions/Item' } } } },
      properties: { head: { $ref: '#/definitions/Item' } },
    };
    const flat = { type: 'object', properties: { city: { type: 'string' } } };
    // Gemini 3: the generation that takes function declarations beside JSON output.
    const out = toGenerateContentRequest(
      req({
        model: 'gemini-3-pro-preview',
        messages: [{ role: 'user', content: 'x' }],
        tools: [
          { type: 'function', function: { name: 'walk', parameters: list } },
          { type: 'function', function: { name: 'weather', parameters: flat } },
        ],
        response_format: { type: 'json_schema', json_schema: { name: 'list', schema: list } },
      }),
    );
    // Draft 7's definitions go as $defs, the name Gemini documents, their references with them.
    const sent = {
      type: 'object',
      $defs: { Item: { type: 'object', properties: { value: { type: 'integer' }, next: { $ref: '#/$defs/Item' } } } },
      properties: { head: { $ref: '#/$defs/Item' } },
    };
    expect(out.tools?.[0].functionDeclarations).toEqual([
      { name: 'walk', parametersJsonSchema: sent },
      { name: 'weather', parameters: { type: 'OBJECT', properties: { city: { type: 'STRING' } } } },
    ]);
    expect(out.generationConfig).toEqual({ responseMimeType: 'application/json', responseJsonSchema: sent });
    expect(list.properties.head).toEqual({ $ref: '#/definitions/Item' });
    // A schema that only refers to a definition more than once is still inlined.
    const twice = { type: 'object', $defs: { P: { type: 'string' } }, properties: { a: { $ref: '#/$defs/P' }, b: { $ref: '#/$defs/P' } } };
    expect(
      toGenerateContentRequest(
        req({
          messages: [{ role: 'user', content: 'x' }],
          response_format: { type: 'json_schema', json_schema: { name: 't', schema: twice } },
        }),
      ).generationConfig,
    ).toEqual({
      responseMimeType: 'application/json',
      responseSchema: { type: 'OBJECT', properties: { a: { type: 'STRING' }, b: { type: 'STRING' } } },
    });
  });

  it('sends as JSON Schema what Gemini’s Schema refuses: a node of any type, an array without items, `true`', () => {
    const declarations = (parameters: Record<string, unknown>): unknown =>
      toGenerateContentRequest(req({ tools: [{ type: 'function', function: { name: 'f', parameters } }] })).tools?.[0].functionDeclarations;
    const anything = { type: 'object', properties: { value: {}, note: { type: 'string' } } };
    expect(declarations(anything)).toEqual([{ name: 'f', parametersJsonSchema: anything }]);
    const list = { type: 'object', properties: { tags: { type: 'array', description: 'any values' } } };
    expect(declarations(list)).toEqual([{ name: 'f', parametersJsonSchema: list }]);
    const truthy = { type: 'object', properties: { x: true } };
    expect(declarations(truthy)).toEqual([{ name: 'f', parametersJsonSchema: truthy }]);
    // A $ref may carry only $ keywords there: its description goes beside it in an anyOf.
    const described = {
      type: 'object',
      $defs: { T: { type: 'object', properties: { up: { $ref: '#/$defs/T', description: 'parent' } } } },
      properties: { t: { $ref: '#/$defs/T' } },
    };
    expect(declarations(described)).toEqual([
      {
        name: 'f',
        parametersJsonSchema: {
          type: 'object',
          $defs: { T: { type: 'object', properties: { up: { anyOf: [{ $ref: '#/$defs/T' }], description: 'parent' } } } },
          properties: { t: { $ref: '#/$defs/T' } },
        },
      },
    ]);
    expect(described.$defs.T.properties.up).toEqual({ $ref: '#/$defs/T', description: 'parent' });
    // Pydantic's recursive model: a root $ref beside its $defs and a description. The $defs stay at the
    // root (where '#/$defs/…' resolves from), and the parameters say they are an object.
    const pydantic = {
      description: 'A tree',
      $ref: '#/$defs/Node',
      $defs: { Node: { type: 'object', properties: { kids: { type: 'array', items: { $ref: '#/$defs/Node' } } } } },
    };
    expect(declarations(pydantic)).toEqual([
      {
        name: 'f',
        parametersJsonSchema: { type: 'object', anyOf: [{ $ref: '#/$defs/Node' }], description: 'A tree', $defs: pydantic.$defs },
      },
    ]);
    // A $ref Gemini would have to fetch is refused wherever it is, whichever node is met first.
    for (const properties of [
      { a: {}, b: { $ref: 'https://schemas.example/x.json' } },
      { b: { $ref: 'https://schemas.example/x.json' }, a: {} },
    ]) {
      expect(thrown(() => declarations({ type: 'object', properties }))).toMatchObject({
        code: 'unsupported_parameter',
        options: { param: 'tools[0].function.parameters' },
      });
    }
    // So is an allOf of several schemas (neither form takes one), whichever node is met first.
    const both = { allOf: [{ type: 'string' }, { minLength: 1 }] };
    for (const properties of [
      { a: {}, b: both },
      { b: both, a: {} },
    ])
      expect(thrown(() => declarations({ type: 'object', properties }))).toMatchObject({ code: 'unsupported_parameter' });
    // Pydantic's recursive model as it comes: a root $ref beside its $defs, and nothing else.
    const node = {
      $defs: { Node: { type: 'object', properties: { kids: { type: 'array', items: { $ref: '#/$defs/Node' } } } } },
      $ref: '#/$defs/Node',
    };
    expect(declarations(node)).toEqual([
      { name: 'f', parametersJsonSchema: { type: 'object', $defs: node.$defs, anyOf: [{ $ref: '#/$defs/Node' }] } },
    ]);
    // An anchor is a local reference; a reference to `true` is any value: both go as JSON Schema.
    const anchored = {
      type: 'object',
      $defs: { N: { $anchor: 'node', type: 'object', properties: { x: { type: 'string' } } } },
      properties: { n: { $ref: '#node' } },
    };
    expect(declarations(anchored)).toEqual([{ name: 'f', parametersJsonSchema: anchored }]);
    const toTrue = { type: 'object', $defs: { B: true }, properties: { b: { $ref: '#/$defs/B' } } };
    expect(declarations(toTrue)).toEqual([{ name: 'f', parametersJsonSchema: toTrue }]);
    // Values are data: a default that looks like a reference is neither checked nor rewritten.
    const dataRef = { type: 'object', properties: { a: {}, link: { type: 'object', default: { $ref: 'https://x.example/y', note: 1 } } } };
    expect(declarations(dataRef)).toEqual([{ name: 'f', parametersJsonSchema: dataRef }]);
    // A property named like a data keyword is a schema all the same.
    const named = {
      type: 'object',
      $defs: { T: { type: 'string' } },
      properties: { a: {}, default: { $ref: '#/$defs/T', description: 'd' } },
    };
    expect(declarations(named)).toEqual([
      {
        name: 'f',
        parametersJsonSchema: { ...named, properties: { a: {}, default: { anyOf: [{ $ref: '#/$defs/T' }], description: 'd' } } },
      },
    ]);
    // A $ref beside an anyOf of its own cannot be put in Gemini's form: refused, not dropped.
    const refAndAnyOf = {
      type: 'object',
      $defs: { A: { type: 'object' } },
      properties: { a: {}, b: { $ref: '#/$defs/A', anyOf: [{ required: ['p'] }] } },
    };
    expect(thrown(() => declarations(refAndAnyOf))).toMatchObject({ code: 'unsupported_parameter' });
    // Draft 7's tuple items go as prefixItems.
    expect(
      declarations({ type: 'object', properties: { pair: { type: 'array', items: [{ type: 'string' }, { type: 'number' }] } } }),
    ).toEqual([
      {
        name: 'f',
        parametersJsonSchema: {
          type: 'object',
          properties: { pair: { type: 'array', prefixItems: [{ type: 'string' }, { type: 'number' }] } },
        },
      },
    ]);
    // Numbers in an enum or a const, which Gemini's Schema cannot list, go as JSON Schema.
    const levels = { type: 'object', properties: { level: { type: 'integer', enum: [1, 2, 3] }, kind: { const: 7 } } };
    expect(declarations(levels)).toEqual([{ name: 'f', parametersJsonSchema: levels }]);
    // Parameters that are an anyOf of objects say they are an object, which only the JSON Schema form can say beside it.
    const either = {
      anyOf: [
        { type: 'object', properties: { a: { type: 'string' } } },
        { type: 'object', properties: { b: { type: 'string' } } },
      ],
    };
    expect(declarations(either)).toEqual([{ name: 'f', parametersJsonSchema: { type: 'object', ...either } }]);
    // Parameters without a type are an object's: {} declares a function without arguments.
    expect(declarations({})).toEqual([{ name: 'f' }]);
    expect(declarations({ properties: { a: { type: 'string' } } })).toEqual([
      { name: 'f', parameters: { type: 'OBJECT', properties: { a: { type: 'STRING' } } } },
    ]);
  });

  it('reads null among an enum’s values as nullable, keeping the other values (strict mode’s nullable enum)', () => {
    const schema = { type: 'object', properties: { k: { type: ['string', 'null'], enum: ['a', 'b', null] } }, required: ['k'] };
    expect(toGeminiSchema(schema, 'p')).toEqual({
      type: 'OBJECT',
      properties: { k: { type: 'STRING', nullable: true, enum: ['a', 'b'] } },
      required: ['k'],
    });
    expect(toGeminiSchema({ enum: ['a', null] }, 'p')).toEqual({ type: 'STRING', nullable: true, enum: ['a'] });
  });

  it('refuses a $ref beside an anyOf in Gemini’s Schema form too (inlined, one of the two would be lost)', () => {
    const schema = {
      type: 'object',
      $defs: { B: { type: 'object', properties: { x: { type: 'string' } } } },
      properties: { a: { $ref: '#/$defs/B', anyOf: [{ type: 'object', properties: { y: { type: 'string' } } }] } },
    };
    expect(thrown(() => toGeminiSchema(schema, 'tools[0].function.parameters'))).toMatchObject({
      code: 'unsupported_parameter',
      message: expect.stringContaining('a $ref beside an anyOf (#/$defs/B)'),
    });
    const nullable = { $defs: { A: { type: 'string' } }, $ref: '#/$defs/A', anyOf: [{ type: 'null' }, { type: 'integer' }] };
    expect(thrown(() => toGeminiSchema(nullable, 'p'))).toMatchObject({ code: 'unsupported_parameter' });
  });

  it('gives a typeless const or enum the STRING type Gemini requires of enum values', () => {
    expect(toGeminiSchema({ const: 'k' }, 'p')).toEqual({ type: 'STRING', enum: ['k'] });
    expect(toGeminiSchema({ enum: ['a', 'b'] }, 'p')).toEqual({ type: 'STRING', enum: ['a', 'b'] });
    expect(toGeminiSchema({ type: 'string', enum: ['a'] }, 'p')).toEqual({ type: 'STRING', enum: ['a'] });
  });

  describe('HTTP errors', () => {
    const googleError = (code: number, status: string, message: string, details?: unknown[]): string =>
      JSON.stringify({ error: { code, message, status, ...(details ? { details } : {}) } });

    it('treats a 400 API_KEY_INVALID as keygate credential trouble (502, naming the 400 Google sent), not the client’s', () => {
      const text = googleError(400, 'INVALID_ARGUMENT', 'API key not valid. Please pass a valid API key.', [
        { '@type': 'type.googleapis.com/google.rpc.ErrorInfo', reason: 'API_KEY_INVALID', domain: 'googleapis.com' },
      ]);
      const error = geminiHttpError(400, text, undefined);
      expect(error).toMatchObject({ kind: 'credentials', status: 400, message: 'API key not valid. Please pass a valid API key.' });
      expect(error.retryable).toBe(false);
      expect(error.toGatewayError()).toMatchObject({
        code: 'upstream_error',
        status: 502,
        message: "upstream gemini refused keygate's credentials (status 400)",
      });
    });

    it('treats a 403 PERMISSION_DENIED the same way, keeping its status for the operator', () => {
      const error = geminiHttpError(403, googleError(403, 'PERMISSION_DENIED', 'Method doesn’t allow unregistered callers'), undefined);
      expect(error.status).toBe(403);
      expect(error.toGatewayError()).toMatchObject({
        status: 502,
        code: 'upstream_error',
        message: "upstream gemini refused keygate's credentials (status 403)",
      });
    });

    it('passes other 400s on as the client’s mistake', () => {
      const error = geminiHttpError(
        400,
        googleError(400, 'INVALID_ARGUMENT', '* GenerateContentRequest.contents: contents is not specified'),
        undefined,
      );
      expect(error.toGatewayError()).toMatchObject({ code: 'upstream_bad_request', status: 400 });
    });

    it('takes the retry delay from Retry-After, else from a RetryInfo detail', () => {
      const quota = googleError(429, 'RESOURCE_EXHAUSTED', 'Quota exceeded', [
        { '@type': 'type.googleapis.com/google.rpc.RetryInfo', retryDelay: '12.5s' },
      ]);
      expect(geminiHttpError(429, quota, undefined)).toMatchObject({ status: 429, retryAfterSeconds: 13, retryable: true });
      expect(geminiHttpError(429, quota, '3')).toMatchObject({ retryAfterSeconds: 3 });
      expect(geminiHttpError(503, 'not json', undefined)).toMatchObject({ status: 503, message: 'status 503' });
    });
  });
});

/*
 * A Gemini-compatible host's counts come as it wrote them: only a non-negative safe integer is a
 * count. JSON cannot carry NaN or Infinity, but a translator takes objects and must not trust them.
 */
describe('Gemini usage counts that are not counts', () => {
  const meta: CompletionMeta = { fallbackId: 'chatcmpl-x', created: 1, model: 'gemini-2.5-flash' };
  const NOT_COUNTS: unknown[] = ['12', -1, 1.5, NaN, Infinity, 2 ** 53, 2 ** 53 - 1, 1_000_000_001];
  const candidate = (finishReason?: string): GenerateContentResponse['candidates'] => [
    { content: { role: 'model', parts: [{ text: 'hi' }] }, index: 0, ...(finishReason ? { finishReason } : {}) },
  ];
  /** An answer with `usageMetadata`, which may hold anything. */
  const answer = (usageMetadata: Record<string, unknown>): GenerateContentResponse => ({ candidates: candidate('STOP'), usageMetadata });
  const streamed = (events: Array<Record<string, unknown>>, clientWantsUsage: boolean): StreamEvent[] => {
    const t = new GeminiStreamTranslator({ ...meta, clientWantsUsage });
    return [...events.flatMap((e) => t.push(e as GenerateContentResponse)), ...t.end()];
  };

  it.each([undefined, null])(
    'a promptTokenCount left out (%p): the answer and the stream carry no usage (keygate estimates it; a prompt read as 0 would be billed as free)',
    (missing) => {
      for (const usageMetadata of [
        { promptTokenCount: missing, candidatesTokenCount: 3 },
        {},
        { totalTokenCount: 15, thoughtsTokenCount: 2 },
      ]) {
        const { completion, usage } = toChatCompletion(answer(usageMetadata), meta);
        expect(usage).toBeNull();
        expect(completion).not.toHaveProperty('usage');
        const events = streamed([{ candidates: candidate('STOP'), usageMetadata }], true);
        expect(events.filter((e) => e.usage || e.runningUsage)).toEqual([]);
      }
      // A candidatesTokenCount left out is Gemini's way of saying 0 (an answer without output).
      expect(toChatCompletion(answer({ promptTokenCount: 12, candidatesTokenCount: missing }), meta).usage).toStrictEqual({
        prompt_tokens: 12,
        completion_tokens: 0,
        total_tokens: 12,
      });
    },
  );

  it('a count a later event of a stream leaves out keeps the one read before (running totals; the native route merges them alike)', () => {
    const events = [
      { candidates: candidate(), usageMetadata: { promptTokenCount: 12, candidatesTokenCount: 1, thoughtsTokenCount: 4 } },
      { candidates: candidate('STOP'), usageMetadata: { candidatesTokenCount: 3, totalTokenCount: 19 } },
    ];
    const usage = { prompt_tokens: 12, completion_tokens: 7, total_tokens: 19, completion_tokens_details: { reasoning_tokens: 4 } };
    expect(
      streamed(events, true)
        .filter((e) => e.usage)
        .map((e) => e.usage),
    ).toStrictEqual([usage]);
    expect(nextUsageMetadata(events[0].usageMetadata, events[1].usageMetadata)).toStrictEqual({
      promptTokenCount: 12,
      candidatesTokenCount: 3,
      thoughtsTokenCount: 4,
      totalTokenCount: 19,
    });
  });

  describe.each(NOT_COUNTS)('%p', (bad) => {
    it.each(['promptTokenCount', 'candidatesTokenCount'])('as %s: the answer carries no usage (keygate estimates it)', (field) => {
      const { completion, usage } = toChatCompletion(answer({ promptTokenCount: 12, candidatesTokenCount: 3, [field]: bad }), meta);
      expect(usage).toBeNull();
      expect(completion).not.toHaveProperty('usage');
    });

    it.each([false, true])(
      'as promptTokenCount of a stream: no usage, running or final, nor usage chunk (client wants it: %s)',
      (wants) => {
        const events = streamed(
          [{ candidates: candidate('STOP'), usageMetadata: { promptTokenCount: bad, candidatesTokenCount: 3 } }],
          wants,
        );
        expect(events.filter((e) => e.usage || e.runningUsage)).toEqual([]);
        const chunks = events
          .filter((e) => e.data !== null)
          .map((e) => JSON.parse(e.data as string) as { choices: unknown[]; usage?: unknown });
        expect(chunks.filter((c) => c.choices.length === 0 || (c.usage !== undefined && c.usage !== null))).toEqual([]);
      },
    );

    it('as a detail (thoughts, cached, tool-use prompt, total): left out, the rest kept', () => {
      const { completion, usage } = toChatCompletion(
        answer({
          promptTokenCount: 12,
          candidatesTokenCount: 3,
          thoughtsTokenCount: bad,
          cachedContentTokenCount: bad,
          toolUsePromptTokenCount: bad,
          totalTokenCount: bad,
        }),
        meta,
      );
      expect(usage).toStrictEqual({ prompt_tokens: 12, completion_tokens: 3, total_tokens: 15 });
      expect(completion.usage).toStrictEqual(usage);
      // A candidatesTokenCount left out (an answer without output) still reads as 0.
      expect(toChatCompletion(answer({ promptTokenCount: 12, thoughtsTokenCount: bad }), meta).usage).toStrictEqual({
        prompt_tokens: 12,
        completion_tokens: 0,
        total_tokens: 12,
      });
    });

    it('in a later event of a stream: the count read before it stands, for a main count and a detail alike', () => {
      const events = streamed(
        [
          { candidates: candidate(), usageMetadata: { promptTokenCount: 12, candidatesTokenCount: 1, thoughtsTokenCount: 4 } },
          { candidates: candidate('STOP'), usageMetadata: { promptTokenCount: bad, candidatesTokenCount: 3, thoughtsTokenCount: bad } },
        ],
        true,
      );
      const usage = { prompt_tokens: 12, completion_tokens: 7, total_tokens: 19, completion_tokens_details: { reasoning_tokens: 4 } };
      expect(events.filter((e) => e.runningUsage).at(-1)?.runningUsage).toStrictEqual(usage);
      const last = events.at(-1);
      expect(last?.usage).toStrictEqual(usage);
      expect(JSON.parse(last?.data as string)).toMatchObject({ choices: [], usage });
    });
  });

  it('never adds string counts up as text ("12" + "3")', () => {
    const { completion } = toChatCompletion(answer({ promptTokenCount: '12', candidatesTokenCount: '3', totalTokenCount: '15' }), meta);
    expect(JSON.stringify(completion)).not.toContain('"123"');
    expect(completion.usage).toBeUndefined();
  });
});
