import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { MetricsService } from '@keygate/observability';
import type { GatewayConfig } from '@keygate/config';
import type { ProviderAccess } from '@keygate/secrets';
import { getStats, eventually, startMock, type RunningMock } from '../../../apps/mock-upstream/src/mock.testing';
import type { ChatCompletionRequest, EmbeddingsRequest, StreamEvent } from './chat.types';
import { GeminiAdapter, type GenerateContentPassthrough } from './gemini.adapter';
import { GEMINI_EMBED_CONCURRENCY, type OpenAiChatCompletion, type OpenAiEmbeddings } from './gemini.translate';
import type { PartsSpend, ProviderCall } from './provider-adapter.interface';
import { countTokens } from './token-estimate';
import { ClientAbortedError, UpstreamClient } from './upstream.client';
import { UpstreamError } from './upstream.error';
import { GeminiStreamTranslator } from './gemini.translate';

/** Integration: the adapter with a real UpstreamClient against the real mock upstream, in-process. */

const MODEL = 'gemini-2.5-flash';
const KEY = 'AIza-mock-adapter-spec';
const WEATHER_TOOL = {
  type: 'function',
  function: {
    name: 'get_weather',
    description: 'Get current temperature for a given location.',
    parameters: { type: 'object', properties: { location: { type: 'string' } }, required: ['location'], additionalProperties: false },
  },
};

interface Chunk {
  choices: Array<{
    index: number;
    delta: {
      role?: string;
      content?: string;
      tool_calls?: Array<{ index: number; id: string; function: { name: string; arguments: string } }>;
    };
    finish_reason: string | null;
  }>;
  usage?: unknown;
}

describe('GeminiAdapter against the mock upstream', () => {
  let mock: RunningMock;
  let client: UpstreamClient;
  let adapter: GeminiAdapter;

  beforeAll(async () => {
    mock = await startMock();
    const config = { upstream: { connectMs: 2_000, ttfbMs: 5_000, idleMs: 5_000, totalMs: 15_000 } } as unknown as GatewayConfig;
    client = new UpstreamClient(config, new MetricsService());
    adapter = new GeminiAdapter(client);
  });
  afterAll(async () => {
    await client.onApplicationShutdown();
    await mock.close();
  });

  const access = (apiKey = KEY): ProviderAccess => ({ provider: 'gemini', apiKey, baseUrl: mock.base, models: [MODEL] });
  const call = <T = ChatCompletionRequest>(body: T, extra: Partial<ProviderCall<T>> = {}): ProviderCall<T> => ({
    body,
    access: access(),
    signal: new AbortController().signal,
    clientWantsUsage: false,
    ...extra,
  });
  const chatBody = (text: string, extra: Record<string, unknown> = {}): ChatCompletionRequest => ({
    model: MODEL,
    messages: [{ role: 'user', content: text }],
    ...extra,
  });

  async function collect(events: AsyncIterable<StreamEvent>): Promise<StreamEvent[]> {
    const out: StreamEvent[] = [];
    for await (const e of events) out.push(e);
    return out;
  }
  const chunksOf = (events: StreamEvent[]): Chunk[] =>
    events.filter((e) => e.data !== null).map((e) => JSON.parse(e.data as string) as Chunk);
  async function rejection(p: Promise<unknown>): Promise<unknown> {
    try {
      await p;
    } catch (error) {
      return error;
    }
    throw new Error('expected a rejection');
  }

  it('answers a plain completion in OpenAI format with usage', async () => {
    const result = await adapter.chat(call(chatBody('hello')));
    const body = JSON.parse(result.body) as OpenAiChatCompletion;
    expect(body).toMatchObject({
      object: 'chat.completion',
      model: MODEL,
      choices: [{ index: 0, message: { role: 'assistant', content: 'Hello from mock gemini! You said: hello' }, finish_reason: 'stop' }],
    });
    expect(body.id).toMatch(/^chatcmpl-mock/);
    expect(result.usage).toEqual(body.usage);
    expect(result.usage?.total_tokens).toBe((result.usage?.prompt_tokens ?? 0) + (result.usage?.completion_tokens ?? 0));
  });

  it('sends the key in x-goog-api-key (never in the URL), and the translated body', async () => {
    await adapter.chat(
      call({
        model: MODEL,
        messages: [
          { role: 'system', content: 'Be brief.' },
          { role: 'user', content: 'hi there' },
        ],
        max_tokens: 64,
        temperature: 0.2,
        stop: ['END'],
      }),
    );
    const last = (await getStats(mock.base)).last['gemini.generateContent'];
    expect(last?.url).toBe(`/v1beta/models/${MODEL}:generateContent`);
    expect(last?.headers['x-goog-api-key']).toBe(KEY);
    expect(last?.headers['content-type']).toBe('application/json');
    expect(last?.headers.authorization).toBeUndefined();
    expect(last?.body).toEqual({
      systemInstruction: { parts: [{ text: 'Be brief.' }] },
      contents: [{ role: 'user', parts: [{ text: 'hi there' }] }],
      generationConfig: { maxOutputTokens: 64, temperature: 0.2, stopSequences: ['END'] },
    });
  });

  it('streams a completion that reassembles to the non-streamed text, with the usage for keygate only', async () => {
    const text = 'stream me please';
    const events = await collect((await adapter.chatStream(call(chatBody(`${text} [mock chunks=4]`)))).events);
    const chunks = chunksOf(events);
    expect(chunks[0].choices[0].delta).toEqual({ role: 'assistant', content: '', refusal: null });
    expect(chunks.map((c) => c.choices[0].delta.content ?? '').join('')).toBe(`Hello from mock gemini! You said: ${text}`);
    expect(chunks[chunks.length - 1].choices[0].finish_reason).toBe('stop');
    for (const c of chunks) expect(c).not.toHaveProperty('usage');
    const last = events[events.length - 1];
    expect(last.data).toBeNull();
    expect(last.usage?.completion_tokens).toBeGreaterThan(0);
    expect((await getStats(mock.base)).last['gemini.streamGenerateContent']?.url).toBe(
      `/v1beta/models/${MODEL}:streamGenerateContent?alt=sse`,
    );
  });

  it('ends the stream once every choice finished with the usage, though the upstream keeps the body open past the idle timeout', async () => {
    // Held 8 s after the last chunk, with a 5 s idle timeout: reading on to the body's end would
    // fail the complete answer with an idle timeout.
    const events = await collect(
      (await adapter.chatStream(call(chatBody('held [mock hold_after_end_ms=8000]'), { clientWantsUsage: true }))).events,
    );
    const chunks = chunksOf(events);
    expect(chunks.some((c) => c.choices[0]?.finish_reason === 'stop')).toBe(true);
    expect(chunks.at(-1)).toMatchObject({ choices: [], usage: { completion_tokens: expect.any(Number) } });
  });

  it('waits for every choice of n before it ends, and for the usage after the last finishReason', () => {
    const translator = new GeminiStreamTranslator({ fallbackId: 'x', created: 1, model: MODEL, n: 2, clientWantsUsage: false });
    const usageMetadata = { promptTokenCount: 3, candidatesTokenCount: 2, totalTokenCount: 5 };
    translator.push({
      candidates: [{ index: 0, content: { role: 'model', parts: [{ text: 'a' }] }, finishReason: 'STOP' }],
      usageMetadata,
    });
    expect(translator.stopped).toBe(false);
    translator.push({ candidates: [{ index: 1, content: { role: 'model', parts: [{ text: 'b' }] }, finishReason: 'STOP' }] });
    expect(translator.stopped).toBe(false);
    translator.push({ candidates: [], usageMetadata });
    expect(translator.stopped).toBe(true);
  });

  it('ends a stream with an OpenAI usage chunk when the client asked for it', async () => {
    const events = await collect((await adapter.chatStream(call(chatBody('count me'), { clientWantsUsage: true }))).events);
    const chunks = chunksOf(events);
    const final = chunks[chunks.length - 1];
    expect(final.choices).toEqual([]);
    expect(final.usage).toEqual(events[events.length - 1].usage);
    for (const c of chunks.slice(0, -1)) expect(c.usage).toBeNull();
  });

  it('turns a Gemini function call into an OpenAI tool call, streamed and not', async () => {
    const body = chatBody('weather in Paris [mock tool=get_weather]', { tools: [WEATHER_TOOL] });
    const plain = JSON.parse((await adapter.chat(call(body))).body) as OpenAiChatCompletion;
    const choice = plain.choices[0];
    expect(choice.finish_reason).toBe('tool_calls');
    expect(choice.message.content).toBeNull();
    expect(choice.message.tool_calls).toEqual([
      {
        id: expect.stringMatching(/^call_/) as unknown,
        type: 'function',
        function: { name: 'get_weather', arguments: JSON.stringify({ location: 'weather in Paris' }) },
      },
    ]);
    const sent = (await getStats(mock.base)).last['gemini.generateContent']?.body as { tools: unknown };
    expect(sent.tools).toEqual([
      {
        functionDeclarations: [
          {
            name: 'get_weather',
            description: 'Get current temperature for a given location.',
            parameters: { type: 'OBJECT', properties: { location: { type: 'STRING' } }, required: ['location'] },
          },
        ],
      },
    ]);

    const chunks = chunksOf(await collect((await adapter.chatStream(call({ ...body, tool_choice: 'required' }))).events));
    const calls = chunks.flatMap((c) => c.choices[0].delta.tool_calls ?? []);
    expect(calls).toEqual([
      {
        index: 0,
        id: expect.stringMatching(/^call_/) as unknown,
        type: 'function',
        function: { name: 'get_weather', arguments: JSON.stringify({ location: 'weather in Paris' }) },
      },
    ]);
    expect(chunks[chunks.length - 1].choices[0].finish_reason).toBe('tool_calls');
    const streamedBody = (await getStats(mock.base)).last['gemini.streamGenerateContent']?.body as { toolConfig: unknown };
    expect(streamedBody.toolConfig).toEqual({ functionCallingConfig: { mode: 'ANY' } });
  });

  it('answers a tool result with text (a full agent loop round)', async () => {
    const tools = [WEATHER_TOOL];
    const first = JSON.parse((await adapter.chat(call(chatBody('weather? [mock tools=2]', { tools })))).body) as OpenAiChatCompletion;
    const message = first.choices[0].message;
    expect(message.tool_calls).toHaveLength(2);
    expect(new Set(message.tool_calls?.map((c) => c.id)).size).toBe(2);
    const second = await adapter.chat(
      call({
        model: MODEL,
        tools,
        messages: [
          { role: 'user', content: 'weather?' },
          message,
          ...(message.tool_calls ?? []).map((c) => ({ role: 'tool', tool_call_id: c.id, content: '{"temp_c": 21}' })),
        ],
      }),
    );
    expect((JSON.parse(second.body) as OpenAiChatCompletion).choices[0].finish_reason).toBe('stop');
    const sent = (await getStats(mock.base)).last['gemini.generateContent']?.body as { contents: unknown[] };
    const [a, b] = (message.tool_calls ?? []).map((c) => c.id);
    // Each call and its response carry the same id (Gemini 3 matches them by it).
    expect(sent.contents[1]).toMatchObject({ role: 'model', parts: [{ functionCall: { id: a } }, { functionCall: { id: b } }] });
    expect(sent.contents[2]).toEqual({
      role: 'user',
      parts: [
        { functionResponse: { id: a, name: 'get_weather', response: { temp_c: 21 } } },
        { functionResponse: { id: b, name: 'get_weather', response: { temp_c: 21 } } },
      ],
    });
  });

  it('reports a SAFETY stop as content_filter, streamed and not', async () => {
    const plain = JSON.parse((await adapter.chat(call(chatBody('bad things [mock safety=1]')))).body) as OpenAiChatCompletion;
    expect(plain.choices[0]).toMatchObject({ message: { content: null }, finish_reason: 'content_filter' });
    const chunks = chunksOf(await collect((await adapter.chatStream(call(chatBody('bad things [mock safety=1]')))).events));
    expect(chunks[chunks.length - 1].choices[0].finish_reason).toBe('content_filter');
  });

  it('reports MAX_TOKENS as length', async () => {
    const plain = JSON.parse((await adapter.chat(call(chatBody('long story [mock finish=length]')))).body) as OpenAiChatCompletion;
    expect(plain.choices[0].finish_reason).toBe('length');
  });

  it('maps a bad key (400 API_KEY_INVALID) to a credential failure the client sees as 502', async () => {
    const error = await rejection(adapter.chat(call(chatBody('hi'), { access: access('AIza-wrong') })));
    expect(error).toBeInstanceOf(UpstreamError);
    expect(error).toMatchObject({ kind: 'credentials', status: 400, message: 'API key not valid. Please pass a valid API key.' });
    expect((error as UpstreamError).retryable).toBe(false);
    expect((error as UpstreamError).toGatewayError()).toMatchObject({
      status: 502,
      message: "upstream gemini refused keygate's credentials (status 400)",
    });
  });

  it('maps a missing key (403) the same way, naming the status Google answered', async () => {
    const error = await rejection(adapter.chatStream(call(chatBody('hi'), { access: access('') })));
    expect(error).toMatchObject({ kind: 'http', status: 403 });
    expect((error as UpstreamError).toGatewayError()).toMatchObject({
      status: 502,
      message: "upstream gemini refused keygate's credentials (status 403)",
    });
  });

  it('passes a 503 on as a retryable upstream failure with its Retry-After', async () => {
    const error = await rejection(adapter.chat(call(chatBody('hi [mock status=503 retry_after=7]'))));
    expect(error).toBeInstanceOf(UpstreamError);
    expect(error).toMatchObject({
      kind: 'http',
      status: 503,
      retryAfterSeconds: 7,
      retryable: true,
      message: 'The model is overloaded. Please try again later.',
    });
  });

  it('fails a stream cut mid-way with an UpstreamError after the chunks that arrived', async () => {
    const { events } = await adapter.chatStream(call(chatBody('cut me [mock chunks=5 cut_after=2]')));
    const seen: StreamEvent[] = [];
    let error: unknown;
    try {
      for await (const e of events) seen.push(e);
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(UpstreamError);
    expect((error as UpstreamError).kind).toBe('connection_lost');
    expect(chunksOf(seen).length).toBe(3); // role chunk + 2 content chunks
  });

  it('fails a stream that carries Google’s error event', async () => {
    const { events } = await adapter.chatStream(call(chatBody('oops [mock error_event_after=1]')));
    const error = await rejection(collect(events));
    expect(error).toMatchObject({ kind: 'stream_error', message: 'The model is overloaded. Please try again later.' });
  });

  it('stops on client abort with ClientAbortedError, and the mock sees the abort', async () => {
    const before = (await getStats(mock.base)).aborted;
    const controller = new AbortController();
    const { events } = await adapter.chatStream(call(chatBody('slow [mock chunks=10 chunk_delay_ms=200]'), { signal: controller.signal }));
    const error = await rejection(
      (async () => {
        for await (const e of events) if (e.text) controller.abort();
      })(),
    );
    expect(error).toBeInstanceOf(ClientAbortedError);
    const after = await eventually(
      () => getStats(mock.base),
      (s) => s.aborted > before,
    );
    expect(after.aborted).toBeGreaterThan(before);
  });

  it('rejects an unsupported parameter before calling the upstream', async () => {
    const before = (await getStats(mock.base)).byRoute['gemini.generateContent'];
    const error = await rejection(adapter.chat(call(chatBody('hi', { logprobs: true }))));
    expect(error).toMatchObject({ code: 'unsupported_parameter', options: { param: 'logprobs' } });
    expect((await getStats(mock.base)).byRoute['gemini.generateContent']).toBe(before);
  });

  describe('the Gemini API passed through (keygate’s /v1beta routes)', () => {
    const passthrough = (body: Record<string, unknown>, model = MODEL): GenerateContentPassthrough => ({
      model,
      body,
      access: access(),
      signal: new AbortController().signal,
    });
    const contents = [{ role: 'user', parts: [{ text: 'pass me through' }] }];

    it('sends the body as given with the key in x-goog-api-key, and answers Google’s text with its usage', async () => {
      const answer = await adapter.generateContent(passthrough({ contents, generationConfig: { maxOutputTokens: 50 } }));
      const parsed = JSON.parse(answer.body) as { candidates: unknown[]; usageMetadata: { promptTokenCount: number } };
      expect(parsed.candidates).toHaveLength(1);
      expect(answer.usage).toMatchObject({ prompt_tokens: parsed.usageMetadata.promptTokenCount });
      expect(answer.text).toContain('pass me through');
      const last = (await getStats(mock.base)).last['gemini.generateContent'];
      expect(last?.headers['x-goog-api-key']).toBe(KEY);
      expect(last?.url).toBe(`/v1beta/models/${MODEL}:generateContent`);
      expect(last?.body).toEqual({ contents, generationConfig: { maxOutputTokens: 50 } });
    });

    it('streams Google’s events as they are, the last with the usage', async () => {
      const { events } = await adapter.streamGenerateContent(
        passthrough({ contents: [{ role: 'user', parts: [{ text: 'hi [mock chunks=3]' }] }] }),
      );
      const out = await collect(events);
      expect(out.length).toBe(3);
      expect(out.every((e) => typeof e.data === 'string' && 'candidates' in (JSON.parse(e.data) as object))).toBe(true);
      expect(out.at(-1)?.usage).toMatchObject({ completion_tokens: expect.any(Number) as unknown });
      expect((await getStats(mock.base)).last['gemini.streamGenerateContent']?.url).toBe(
        `/v1beta/models/${MODEL}:streamGenerateContent?alt=sse`,
      );
    });

    /** An answer's events as a host sends them: the one that completes the answer, then one more after it. */
    const done = {
      candidates: [{ content: { role: 'model', parts: [{ text: 'hi' }] }, finishReason: 'STOP', index: 0 }],
      usageMetadata: { promptTokenCount: 3, candidatesTokenCount: 1, totalTokenCount: 4 },
    };
    const trailing = { candidates: [{ content: { role: 'model', parts: [{ text: '', thoughtSignature: 'c2ln' }] }, index: 0 }] };
    const answerEvents = `data: ${JSON.stringify(done)}\r\n\r\ndata: ${JSON.stringify(trailing)}\r\n\r\n`;

    /** The adapter's native stream from a host of this test's that writes `answerEvents`, then ends its body or keeps it open. */
    async function streamFromHost(endBody: boolean): Promise<StreamEvent[]> {
      const server = createServer((_req, res) => {
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        if (endBody) res.end(answerEvents);
        else res.write(answerEvents);
      });
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
      try {
        const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
        const { events } = await adapter.streamGenerateContent({ ...passthrough({ contents }), access: { ...access(), baseUrl: base } });
        return await collect(events);
      } finally {
        server.closeAllConnections();
        await new Promise((resolve) => server.close(resolve));
      }
    }

    it('passes on every event to the end of the body, one after the event that completes the answer too', async () => {
      // Google may send a part's thoughtSignature (or grounding metadata) in an event of its own.
      const out = await streamFromHost(true);
      expect(out.map((e) => e.data)).toEqual([JSON.stringify(done), JSON.stringify(trailing)]);
      expect(out[0].usage).toMatchObject({ prompt_tokens: 3, completion_tokens: 1 });
    });

    it('ends a complete answer whose body the host keeps open, its trailing events passed on, without an idle timeout after it', async () => {
      // The body is never ended: the adapter's idle timeout (5 s) would fail the stream after its answer.
      const out = await streamFromHost(false);
      expect(out.map((e) => e.data)).toEqual([JSON.stringify(done), JSON.stringify(trailing)]);
    });

    it('counts tokens through countTokens', async () => {
      const answer = await adapter.countTokens(passthrough({ contents }));
      expect(JSON.parse(answer.body)).toMatchObject({ totalTokens: expect.any(Number) as unknown });
    });

    it('keeps Google’s own status name on a refusal', async () => {
      const error = await rejection(adapter.generateContent(passthrough({ contents: [] })));
      expect(error).toMatchObject({ kind: 'http', status: 400, code: 'INVALID_ARGUMENT' });
    });

    it('calls the API version the client called (v1), v1beta when none is given', async () => {
      await adapter.countTokens({ ...passthrough({ contents }), version: 'v1' });
      expect((await getStats(mock.base)).last['gemini.countTokens']?.url).toBe(`/v1/models/${MODEL}:countTokens`);
      await adapter.countTokens(passthrough({ contents }));
      expect((await getStats(mock.base)).last['gemini.countTokens']?.url).toBe(`/v1beta/models/${MODEL}:countTokens`);
    });

    const EMBED_MODEL = 'text-embedding-004';
    const content = (text: string): Record<string, unknown> => ({ parts: [{ text }] });

    it('passes embedContent through: Google’s answer unchanged, no usage reported', async () => {
      const body = { content: content('embed me'), outputDimensionality: 4 };
      const answer = await adapter.embedContent(passthrough(body, EMBED_MODEL), false);
      expect((JSON.parse(answer.body) as { embedding: { values: number[] } }).embedding.values).toHaveLength(4);
      expect(answer.promptTokens).toBeUndefined();
      const last = (await getStats(mock.base)).last['gemini.embedContent'];
      expect(last).toMatchObject({ url: `/v1beta/models/${EMBED_MODEL}:embedContent`, body });
      expect(last?.headers['x-goog-api-key']).toBe(KEY);
    });

    it('passes batchEmbedContents through, one embedding per request, to the version called', async () => {
      const body = { requests: [{ model: `models/${EMBED_MODEL}`, content: content('a') }, { content: content('b') }] };
      const answer = await adapter.embedContent({ ...passthrough(body, EMBED_MODEL), version: 'v1' }, true);
      expect((JSON.parse(answer.body) as { embeddings: unknown[] }).embeddings).toHaveLength(2);
      expect((await getStats(mock.base)).last['gemini.batchEmbedContents']).toMatchObject({
        url: `/v1/models/${EMBED_MODEL}:batchEmbedContents`,
        body,
      });
    });

    it('reads the input tokens Google reports, and refuses an answer without the vectors asked for', async () => {
      const answers = [
        { embeddings: [{ values: [1] }], usageMetadata: { promptTokenCount: 7 } },
        { embeddings: [] },
        { embedding: 'nope' },
      ];
      const server = createServer((_req, res) =>
        res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(answers.shift())),
      );
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
      try {
        const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
        const batch = { ...passthrough({ requests: [{ content: content('a') }] }, EMBED_MODEL), access: { ...access(), baseUrl: base } };
        expect((await adapter.embedContent(batch, true)).promptTokens).toBe(7);
        expect(await rejection(adapter.embedContent(batch, true))).toMatchObject({ kind: 'protocol' });
        const single = { ...batch, body: { content: content('a') } };
        expect(await rejection(adapter.embedContent(single, false))).toMatchObject({ kind: 'protocol' });
      } finally {
        await new Promise((resolve) => server.close(resolve));
      }
    });
  });

  describe('embeddings', () => {
    const embed = (body: EmbeddingsRequest) => adapter.embeddings(call(body));

    it('returns float vectors in input order, with outputDimensionality and an estimated usage', async () => {
      const result = await embed({ model: 'gemini-embedding-001', input: ['alpha', 'beta gamma'], dimensions: 8 });
      const body = JSON.parse(result.body) as OpenAiEmbeddings;
      expect(body.object).toBe('list');
      expect(body.model).toBe('gemini-embedding-001');
      expect(body.data.map((d) => [d.object, d.index, (d.embedding as number[]).length])).toEqual([
        ['embedding', 0, 8],
        ['embedding', 1, 8],
      ]);
      expect(body.usage).toEqual(result.usage);
      expect(result.usage?.prompt_tokens).toBeGreaterThan(0);
      const last = (await getStats(mock.base)).last['gemini.batchEmbedContents'];
      expect(last?.url).toBe('/v1beta/models/gemini-embedding-001:batchEmbedContents');
      expect(last?.headers['x-goog-api-key']).toBe(KEY);
      expect(last?.body).toEqual({
        requests: [
          { model: 'models/gemini-embedding-001', content: { parts: [{ text: 'alpha' }] }, outputDimensionality: 8 },
          { model: 'models/gemini-embedding-001', content: { parts: [{ text: 'beta gamma' }] }, outputDimensionality: 8 },
        ],
      });
    });

    it('encodes base64 as little-endian float32 that decodes to the float answer', async () => {
      const floats = JSON.parse((await embed({ model: 'text-embedding-004', input: 'same text' })).body) as OpenAiEmbeddings;
      const b64 = JSON.parse(
        (await embed({ model: 'text-embedding-004', input: 'same text', encoding_format: 'base64' })).body,
      ) as OpenAiEmbeddings;
      const bytes = Buffer.from(b64.data[0].embedding as string, 'base64');
      const decoded = Array.from({ length: bytes.length / 4 }, (_, i) => bytes.readFloatLE(i * 4));
      const expected = floats.data[0].embedding as number[];
      expect(decoded).toHaveLength(768);
      expect(decoded).toEqual(expected.map((v) => Math.fround(v)));
    });

    it('splits more than 100 inputs into several batchEmbedContents calls', async () => {
      const before = (await getStats(mock.base)).byRoute['gemini.batchEmbedContents'];
      const input = Array.from({ length: 205 }, (_, i) => `text ${i}`);
      const body = JSON.parse((await embed({ model: 'gemini-embedding-001', input, dimensions: 4 })).body) as OpenAiEmbeddings;
      expect(body.data.map((d) => d.index)).toEqual(input.map((_, i) => i));
      expect((await getStats(mock.base)).byRoute['gemini.batchEmbedContents'] - before).toBe(3);
    });

    it('keeps at most GEMINI_EMBED_CONCURRENCY batches in flight, and answers every input in order', async () => {
      // The peak counts from what is open at the reset: nothing of an earlier test may be.
      await eventually(
        () => getStats(mock.base),
        (s) => s.active === 0,
      );
      await fetch(`${mock.base}/__mock/reset`, { method: 'POST' });
      // Ten batches, each held 150 ms by the mock, so that they would all overlap if sent at once.
      const input = Array.from({ length: 1000 }, (_, i) => (i % 100 === 0 ? `held ${i} [mock delay_ms=150]` : `text ${i}`));
      const body = JSON.parse((await embed({ model: 'gemini-embedding-001', input, dimensions: 4 })).body) as OpenAiEmbeddings;
      expect(body.data.map((d) => d.index)).toEqual(input.map((_, i) => i));
      const stats = await getStats(mock.base);
      expect(stats.byRoute['gemini.batchEmbedContents']).toBe(10);
      expect(stats.peakActive).toBe(GEMINI_EMBED_CONCURRENCY);
    });

    it('starts no more batches after a failure (a 429 would refuse them too); a retry sends what is left', async () => {
      const before = (await getStats(mock.base)).byRoute['gemini.batchEmbedContents'];
      // Five batches: the first is refused at once, the next three are in flight (held 300 ms), the fifth waits its turn.
      const input = Array.from({ length: 500 }, (_, i) =>
        i === 0 ? 'busy [mock status=429]' : i % 100 === 0 ? `held ${i} [mock delay_ms=300]` : `text ${i}`,
      );
      const answeredParts = new Map<number, unknown>();
      const error = await rejection(
        adapter.embeddings({ ...call({ model: 'gemini-embedding-001', input }), answeredParts, willRetry: () => true }),
      );
      expect(error).toMatchObject({ status: 429, retryable: true });
      expect([...answeredParts.keys()].sort()).toEqual([1, 2, 3]);
      expect((await getStats(mock.base)).byRoute['gemini.batchEmbedContents'] - before).toBe(4);
    });

    it('fails at once when one batch fails, cancelling the batches still running', async () => {
      const before = await getStats(mock.base);
      // Batch 1 (inputs 0–99) would take 3 s; batch 2 fails at once.
      const input = Array.from({ length: 150 }, (_, i) =>
        i === 0 ? 'slow [mock delay_ms=3000]' : i === 100 ? 'bad [mock status=400]' : `text ${i}`,
      );
      const error = await rejection(embed({ model: 'gemini-embedding-001', input }));
      expect(error).toBeInstanceOf(UpstreamError);
      expect((error as UpstreamError).status).toBe(400);
      const after = await eventually(
        () => getStats(mock.base),
        (s) => s.aborted > before.aborted && s.active === before.active,
      );
      expect(after.byRoute['gemini.batchEmbedContents'] - before.byRoute['gemini.batchEmbedContents']).toBe(2);
      expect(after.aborted - before.aborted).toBe(1);
    });

    it('after a retryable failure lets the other batches finish and keeps them: the next attempt sends only the failed one', async () => {
      const before = (await getStats(mock.base)).byRoute['gemini.batchEmbedContents'];
      const input = Array.from({ length: 150 }, (_, i) => (i === 100 ? 'busy [mock status=503]' : `text ${i}`));
      const answeredParts = new Map<number, unknown>();
      // The caller says a retry will follow (as the embeddings service does while retries are left).
      const attempt = () => adapter.embeddings({ ...call({ model: 'gemini-embedding-001', input }), answeredParts, willRetry: () => true });
      const first = await rejection(attempt());
      expect(first).toMatchObject({ status: 503, retryable: true });
      expect([...answeredParts.keys()]).toEqual([0]);
      expect((await getStats(mock.base)).byRoute['gemini.batchEmbedContents'] - before).toBe(2);
      // The retry resends batch 2 only (inputs 100-149).
      await rejection(attempt());
      const after = await getStats(mock.base);
      expect(after.byRoute['gemini.batchEmbedContents'] - before).toBe(3);
      expect((after.last['gemini.batchEmbedContents']?.body as { requests: unknown[] }).requests).toHaveLength(50);
    });

    it('cancels the other batches after a retryable failure when no retry will follow', async () => {
      const before = await getStats(mock.base);
      // Batch 1 (inputs 0-99) would take 3 s; batch 2 answers 503 at once, and this is the last attempt.
      const input = Array.from({ length: 150 }, (_, i) =>
        i === 0 ? 'slow [mock delay_ms=3000]' : i === 100 ? 'busy [mock status=503]' : `text ${i}`,
      );
      const answeredParts = new Map<number, unknown>();
      const error = await rejection(
        adapter.embeddings({ ...call({ model: 'gemini-embedding-001', input }), answeredParts, willRetry: () => false }),
      );
      expect(error).toMatchObject({ status: 503, retryable: true });
      const after = await eventually(
        () => getStats(mock.base),
        (s) => s.aborted > before.aborted && s.active === before.active,
      );
      expect(after.aborted - before.aborted).toBe(1);
      expect(answeredParts.size).toBe(0);
    });

    it('records what a call spent: every batch when it succeeds, as its usage says', async () => {
      const input = Array.from({ length: 150 }, (_, i) => `spent ${i}`);
      const spend: PartsSpend = { counted: false, promptTokens: 0 };
      const result = await adapter.embeddings({ ...call({ model: 'gemini-embedding-001', input }), spend });
      expect(spend).toEqual({ counted: true, promptTokens: result.usage?.prompt_tokens });
      expect(spend.promptTokens).toBe(input.reduce((sum, text) => sum + countTokens(text), 0));
    });

    it('records what a failed call spent: the batches answered and those cut off in flight, not the one refused', async () => {
      // Batch 1 answers at once; batch 2 is held 3 s and cut off when batch 3 is refused after 300 ms.
      const input = Array.from({ length: 250 }, (_, i) =>
        i === 100 ? 'slow [mock delay_ms=3000]' : i === 200 ? 'bad [mock delay_ms=300 status=400]' : `text ${i}`,
      );
      const spend: PartsSpend = { counted: false, promptTokens: 0 };
      const answeredParts = new Map<number, unknown>();
      const error = await rejection(adapter.embeddings({ ...call({ model: 'gemini-embedding-001', input }), answeredParts, spend }));
      expect(error).toMatchObject({ status: 400 });
      expect([...answeredParts.keys()]).toEqual([0]);
      expect(spend).toEqual({ counted: true, promptTokens: input.slice(0, 200).reduce((sum, text) => sum + countTokens(text), 0) });
    });

    it('records a batch Google did not answer in time as spent (it may have embedded it), not one it refused', async () => {
      // A client whose first-byte timeout is shorter than the mock's delay for batch 2.
      const impatient = new UpstreamClient(
        { upstream: { connectMs: 2_000, ttfbMs: 300, idleMs: 5_000, totalMs: 15_000 } } as unknown as GatewayConfig,
        new MetricsService(),
      );
      try {
        const input = Array.from({ length: 150 }, (_, i) => (i === 100 ? 'slow [mock delay_ms=1500]' : `text ${i}`));
        const spend: PartsSpend = { counted: false, promptTokens: 0 };
        const error = await rejection(
          new GeminiAdapter(impatient).embeddings({ ...call({ model: 'gemini-embedding-001', input }), spend }),
        );
        expect(error).toMatchObject({ kind: 'ttfb_timeout' });
        expect(spend.promptTokens).toBe(input.reduce((sum, text) => sum + countTokens(text), 0));
      } finally {
        await impatient.onApplicationShutdown();
      }
    });

    it('records a batch whose connection dropped after Google’s headers as spent (its answer was under way)', async () => {
      const input = Array.from({ length: 150 }, (_, i) => (i === 100 ? 'dropped [mock cut_after=10]' : `text ${i}`));
      const spend: PartsSpend = { counted: false, promptTokens: 0 };
      const error = await rejection(adapter.embeddings({ ...call({ model: 'gemini-embedding-001', input }), spend }));
      expect(error).toMatchObject({ kind: 'connection_lost' });
      expect(spend.promptTokens).toBe(input.reduce((sum, text) => sum + countTokens(text), 0));
    });

    it('records nothing spent when the only batch is refused', async () => {
      const spend: PartsSpend = { counted: false, promptTokens: 0 };
      await rejection(adapter.embeddings({ ...call({ model: 'gemini-embedding-001', input: ['bad [mock status=400]', 'x'] }), spend }));
      expect(spend).toEqual({ counted: true, promptTokens: 0 });
    });

    it('refuses token-array input without calling the upstream', async () => {
      const error = await rejection(embed({ model: 'gemini-embedding-001', input: [1, 2, 3] }));
      expect(error).toMatchObject({ code: 'unsupported_parameter', options: { param: 'input' } });
    });
  });
});
