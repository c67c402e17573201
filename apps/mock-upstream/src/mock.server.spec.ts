import { connect } from 'node:net';
import type { AnthropicErrorBody, AnthropicStreamEvent } from './anthropic.types';
import type { GeminiErrorBody, GenerateContentResponse } from './gemini.types';
import {
  ANTHROPIC_AUTH,
  eventually,
  GEMINI_AUTH,
  getStats,
  OPENAI_AUTH,
  parseSse,
  postJson,
  readUntilIdle,
  startMock,
  type RunningMock,
} from './mock.testing';
import type { ResponseStreamEvent } from './openai.responses.types';
import type { ChatCompletionChunk, OpenAIErrorBody } from './openai.types';

interface ProviderCase {
  name: 'openai' | 'openai.responses' | 'anthropic' | 'gemini';
  /** Whose greeting the echoed reply carries. */
  provider: 'openai' | 'anthropic' | 'gemini';
  path: (stream: boolean) => string;
  body: (text: string, stream: boolean) => Record<string, unknown>;
  headers: Record<string, string>;
  /** Content pieces carried by one stream's frames. */
  contentOf: (raw: string) => string[];
  /** The exact error envelope check for `status=N`. */
  expectError: (body: unknown, status: number) => void;
  /** Checks the in-stream error frame at the end of `raw`. */
  expectStreamError: (raw: string) => void;
  /** The frames that only appear when a stream completes. */
  completionMarker: string;
}

const openai: ProviderCase = {
  name: 'openai',
  provider: 'openai',
  path: () => '/v1/chat/completions',
  body: (text, stream) => ({ model: 'gpt-4o-mini', stream, messages: [{ role: 'user', content: text }] }),
  headers: OPENAI_AUTH,
  contentOf: (raw) =>
    parseSse(raw)
      .filter((e) => e.data.startsWith('{'))
      .map((e) => (JSON.parse(e.data) as Partial<ChatCompletionChunk>).choices?.[0]?.delta.content ?? '')
      .filter((content) => content !== ''),
  expectError: (body, status) => {
    const { error } = body as OpenAIErrorBody;
    expect(Object.keys(body as object)).toEqual(['error']);
    expect(Object.keys(error)).toEqual(['message', 'type', 'param', 'code']);
    expect(error).toMatchObject({
      type: status === 429 ? 'requests' : 'server_error',
      param: null,
      code: status === 429 ? 'rate_limit_exceeded' : null,
    });
  },
  expectStreamError: (raw) => {
    const last = parseSse(raw).pop();
    const { error } = JSON.parse(last?.data ?? '{}') as OpenAIErrorBody;
    expect(error).toMatchObject({ type: 'server_error', param: null, code: null });
    expect(raw).not.toContain('[DONE]');
  },
  completionMarker: '[DONE]',
};

const anthropic: ProviderCase = {
  name: 'anthropic',
  provider: 'anthropic',
  path: () => '/v1/messages',
  body: (text, stream) => ({ model: 'claude-sonnet-4-5', max_tokens: 100, stream, messages: [{ role: 'user', content: text }] }),
  headers: ANTHROPIC_AUTH,
  contentOf: (raw) =>
    parseSse(raw)
      .map((e) => JSON.parse(e.data) as AnthropicStreamEvent)
      .map((e) => (e.type === 'content_block_delta' && e.delta.type === 'text_delta' ? e.delta.text : ''))
      .filter((text) => text !== ''),
  expectError: (body, status) => {
    const b = body as AnthropicErrorBody;
    expect(b.type).toBe('error');
    expect(b.error.type).toBe(status === 429 ? 'rate_limit_error' : 'api_error');
    expect(b.error.message.length).toBeGreaterThan(0);
  },
  expectStreamError: (raw) => {
    const last = parseSse(raw).pop();
    expect(last?.event).toBe('error');
    const expected: AnthropicErrorBody = { type: 'error', error: { type: 'overloaded_error', message: 'Overloaded' } };
    expect(JSON.parse(last?.data ?? '{}')).toEqual(expected);
    expect(raw).not.toContain('message_stop');
  },
  completionMarker: 'message_stop',
};

const gemini: ProviderCase = {
  name: 'gemini',
  provider: 'gemini',
  path: (stream) =>
    stream ? '/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse' : '/v1beta/models/gemini-2.5-flash:generateContent',
  body: (text) => ({ contents: [{ role: 'user', parts: [{ text }] }] }),
  headers: GEMINI_AUTH,
  contentOf: (raw) =>
    parseSse(raw)
      .map((e) => JSON.parse(e.data) as Partial<GenerateContentResponse>)
      .map((c) => {
        const part = c.candidates?.[0]?.content?.parts[0];
        return part && 'text' in part ? part.text : '';
      })
      .filter((text) => text !== ''),
  expectError: (body, status) => {
    const { error } = body as GeminiErrorBody;
    expect(Object.keys(error)).toEqual(['code', 'message', 'status']);
    expect(error).toMatchObject({
      code: status,
      status: status === 429 ? 'RESOURCE_EXHAUSTED' : status === 503 ? 'UNAVAILABLE' : 'INTERNAL',
    });
  },
  expectStreamError: (raw) => {
    const last = parseSse(raw).pop();
    expect((JSON.parse(last?.data ?? '{}') as GeminiErrorBody).error).toMatchObject({ code: 503, status: 'UNAVAILABLE' });
  },
  completionMarker: '"finishReason"',
};

const responses: ProviderCase = {
  name: 'openai.responses',
  provider: 'openai',
  path: () => '/v1/responses',
  body: (text, stream) => ({ model: 'gpt-4o-mini', stream, input: [{ role: 'user', content: text }] }),
  headers: OPENAI_AUTH,
  contentOf: (raw) =>
    parseSse(raw)
      .map((e) => JSON.parse(e.data) as ResponseStreamEvent)
      .map((e) => (e.type === 'response.output_text.delta' ? e.delta : ''))
      .filter((delta) => delta !== ''),
  expectError: openai.expectError,
  expectStreamError: (raw) => {
    const last = parseSse(raw).pop();
    expect(last?.event).toBe('error');
    expect(JSON.parse(last?.data ?? '{}')).toMatchObject({ type: 'error', error: { code: 'server_error', param: null } });
    expect(raw).not.toContain('response.completed');
  },
  completionMarker: 'event: response.completed',
};

const PROVIDERS = [openai, responses, anthropic, gemini];

describe('mock server', () => {
  let mock: RunningMock;
  beforeAll(async () => {
    mock = await startMock();
  });
  afterAll(() => mock.close());
  beforeEach(async () => {
    await fetch(`${mock.base}/__mock/reset`, { method: 'POST' });
  });

  const call = (
    p: ProviderCase,
    text: string,
    stream: boolean,
    extraHeaders: Record<string, string> = {},
    signal?: AbortSignal,
  ): Promise<Response> => postJson(mock.base, p.path(stream), p.body(text, stream), { ...p.headers, ...extraHeaders }, signal);

  it('keeps standard keep-alive timeouts', () => {
    expect(mock.server.keepAliveTimeout).toBe(65_000);
    expect(mock.server.headersTimeout).toBeGreaterThan(mock.server.keepAliveTimeout);
  });

  describe.each(PROVIDERS)('$name directives', (p) => {
    it.each([429, 500, 503])('status=%i answers the native error shape', async (status) => {
      const res = await call(p, `x [mock status=${status}]`, false);
      expect(res.status).toBe(status);
      p.expectError(await res.json(), status);
    });

    it('status on a stream request is a plain JSON error, with retry_after as Retry-After', async () => {
      const res = await call(p, 'x [mock status=429 retry_after=7]', true);
      expect(res.status).toBe(429);
      expect(res.headers.get('retry-after')).toBe('7');
      expect(res.headers.get('content-type')).toBe('application/json');
      p.expectError(await res.json(), 429);
    });

    it('reads the same keys from x-mock-* headers', async () => {
      const res = await call(p, 'x', false, { 'x-mock-status': '503', 'x-mock-retry-after': '2' });
      expect(res.status).toBe(503);
      expect(res.headers.get('retry-after')).toBe('2');
    });

    it('delay_ms holds the response headers back', async () => {
      const t0 = Date.now();
      const res = await call(p, 'x [mock delay_ms=150]', false);
      expect(Date.now() - t0).toBeGreaterThanOrEqual(140);
      expect(res.status).toBe(200);
      await res.text();
    });

    it('chunks=N splits the streamed text into N pieces', async () => {
      const raw = await (await call(p, 'abc [mock chunks=7]', true)).text();
      const pieces = p.contentOf(raw);
      expect(pieces).toHaveLength(7);
      expect(pieces.join('')).toBe(`Hello from mock ${p.provider}! You said: abc`);
    });

    it('answer_chars=N repeats the reply to N characters, split into the chunks asked for', async () => {
      const pieces = p.contentOf(await (await call(p, 'abc [mock answer_chars=5000 chunks=3]', true)).text());
      expect(pieces).toHaveLength(3);
      expect(pieces.join('')).toHaveLength(5000);
      expect(pieces.join('')).toMatch(new RegExp(`^Hello from mock ${p.provider}! You said: abc Hello from mock ${p.provider}!`));
    });

    it('eol=cr writes every line of the stream with a bare CR', async () => {
      const raw = await (await call(p, 'abc [mock eol=cr]', true)).text();
      expect(raw).not.toContain('\n');
      expect(raw.endsWith('\r\r')).toBe(true);
      expect(p.contentOf(raw.replace(/\r/g, '\n')).join('')).toBe(`Hello from mock ${p.provider}! You said: abc`);
      expect(raw).toContain(p.completionMarker);
    });

    it('eol=crlf writes every line of the stream with CRLF', async () => {
      const raw = await (await call(p, 'abc [mock eol=crlf]', true)).text();
      expect(raw.replace(/\r\n/g, '')).not.toMatch(/[\r\n]/);
      expect(raw.endsWith('\r\n\r\n')).toBe(true);
      expect(p.contentOf(raw).join('')).toBe(`Hello from mock ${p.provider}! You said: abc`);
    });

    it('chunk_delay_ms paces the stream', async () => {
      const t0 = Date.now();
      const raw = await (await call(p, 'x [mock chunks=3 chunk_delay_ms=40]', true)).text();
      expect(Date.now() - t0).toBeGreaterThanOrEqual(110);
      expect(raw).toContain(p.completionMarker);
    });

    it('stall_after=K sends K chunks then goes silent; the client leaving counts as aborted', async () => {
      const ac = new AbortController();
      const res = await call(p, 'x [mock chunks=5 stall_after=2]', true, {}, ac.signal);
      expect(res.status).toBe(200);
      const read = await readUntilIdle(res, 250);
      expect(read.idle).toBe(true);
      expect(p.contentOf(read.text)).toHaveLength(2);
      expect(read.text).not.toContain(p.completionMarker);
      expect((await getStats(mock.base)).active).toBe(1);
      ac.abort();
      const stats = await eventually(
        () => getStats(mock.base),
        (s) => s.aborted === 1 && s.active === 0,
      );
      expect(stats).toMatchObject({ aborted: 1, active: 0 });
    });

    it('cut_after=K sends K chunks then drops the connection (not counted as a client abort)', async () => {
      const res = await call(p, 'x [mock chunks=5 cut_after=3]', true);
      expect(res.status).toBe(200);
      const read = await readUntilIdle(res, 2_000);
      expect(read.idle).toBe(false);
      expect(read.done).toBe(false);
      expect(read.error).toBeDefined();
      expect(p.contentOf(read.text)).toHaveLength(3);
      const stats = await eventually(
        () => getStats(mock.base),
        (s) => s.active === 0,
      );
      expect(stats.aborted).toBe(0);
    });

    it('error_event_after=K sends K chunks then the in-stream error and ends cleanly', async () => {
      const res = await call(p, 'x [mock chunks=5 error_event_after=2]', true);
      const read = await readUntilIdle(res, 2_000);
      expect(read.done).toBe(true);
      expect(p.contentOf(read.text)).toHaveLength(2);
      p.expectStreamError(read.text);
    });

    it('non-streaming stall_after=0 sends headers but never the body', async () => {
      const ac = new AbortController();
      const res = await call(p, 'x [mock stall_after=0]', false, {}, ac.signal);
      expect(res.status).toBe(200);
      const read = await readUntilIdle(res, 200);
      expect(read).toMatchObject({ text: '', idle: true });
      ac.abort();
      await eventually(
        () => getStats(mock.base),
        (s) => s.active === 0,
      );
    });

    it('fail_first=N fails the first N requests with the same directive text, and answers the later ones whole', async () => {
      const text = `x ${p.name} [mock status=503 fail_first=2]`;
      expect((await call(p, text, false)).status).toBe(503);
      // The same text on a stream (another route for Gemini): still counted together.
      expect((await call(p, text, true)).status).toBe(503);
      const res = await call(p, text, true);
      expect(res.status).toBe(200);
      expect(await res.text()).toContain(p.completionMarker);
      // Another text has its own count.
      expect((await call(p, `y ${p.name} [mock status=503 fail_first=2]`, false)).status).toBe(503);
    });

    it('fail_first=N holds back only the first N answers of a delay_ms (an upstream that hangs once)', async () => {
      const text = `slow once ${p.name} [mock delay_ms=60000 fail_first=1]`;
      // The first request is still held back when the client gives up on it.
      await expect(call(p, text, true, {}, AbortSignal.timeout(300))).rejects.toThrow();
      const res = await call(p, text, true);
      expect(res.status).toBe(200);
      expect(await res.text()).toContain(p.completionMarker);
    });

    it('non-streaming cut_after drops the connection with a truncated body', async () => {
      const res = await call(p, 'x [mock cut_after=0]', false);
      expect(res.status).toBe(200);
      await expect(res.text()).rejects.toThrow();
    });

    it('non-streaming body_pause_ms sends half the body, pauses, then the rest', async () => {
      const res = await call(p, 'x [mock body_pause_ms=1500]', false);
      expect(res.status).toBe(200);
      const first = await readUntilIdle(res, 300);
      expect(first.idle).toBe(true);
      const declared = Number(res.headers.get('content-length'));
      expect(Buffer.byteLength(first.text)).toBe(Math.floor(declared / 2));
      const rest = await readUntilIdle(res, 5_000);
      expect(rest.done).toBe(true);
      expect(JSON.parse(first.text + rest.text)).toBeInstanceOf(Object);
    });
  });

  it('stops timers when a client leaves a paced stream early', async () => {
    const ac = new AbortController();
    const res = await call(openai, 'x [mock chunks=50 chunk_delay_ms=1000]', true, {}, ac.signal);
    const read = await readUntilIdle(res, 100);
    expect(read.idle).toBe(true);
    ac.abort();
    const stats = await eventually(
      () => getStats(mock.base),
      (s) => s.active === 0,
    );
    expect(stats).toMatchObject({ aborted: 1, active: 0 });
  });

  it('counts a client that leaves during delay_ms as aborted', async () => {
    const ac = new AbortController();
    const pending = call(anthropic, 'x [mock delay_ms=5000]', false, {}, ac.signal).catch((e: unknown) => e);
    await eventually(
      () => getStats(mock.base),
      (s) => s.active === 1,
    );
    ac.abort();
    await pending;
    const stats = await eventually(
      () => getStats(mock.base),
      (s) => s.aborted === 1,
    );
    expect(stats).toMatchObject({ aborted: 1, active: 0 });
  });

  it('counts a client that leaves in the middle of uploading its body as aborted', async () => {
    const { port } = new URL(mock.base);
    const socket = connect(Number(port), '127.0.0.1');
    await new Promise<void>((resolve) => socket.once('connect', resolve));
    socket.write(
      'POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer sk-mock-1\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"model":',
    );
    await eventually(
      () => getStats(mock.base),
      (s) => s.active === 1,
    );
    socket.destroy();
    const stats = await eventually(
      () => getStats(mock.base),
      (s) => s.active === 0,
    );
    expect(stats).toMatchObject({ total: 1, aborted: 1, active: 0 });
  });

  describe('stats', () => {
    it('counts every provider request, including rejected and forced failures', async () => {
      await (await call(openai, 'a', false)).text();
      await (await call(openai, 'b [mock status=500]', false)).text();
      await (await postJson(mock.base, '/v1/chat/completions', { model: 'm', messages: [] }, {})).text();
      await (await call(anthropic, 'c', true)).text();
      await (await call(gemini, 'd', true)).text();
      await (await call(gemini, 'e', false)).text();
      await (await postJson(mock.base, '/v1/embeddings', { model: 'text-embedding-3-small', input: 'x' }, OPENAI_AUTH)).text();
      await (await call(responses, 'f', true)).text();
      await (await postJson(mock.base, '/v1/responses', { model: 'm', input: 'g' }, {})).text();
      await (
        await postJson(mock.base, '/v1beta/models/text-embedding-004:embedContent', { content: { parts: [{ text: 'x' }] } }, GEMINI_AUTH)
      ).text();
      await (await postJson(mock.base, '/v1beta/models/text-embedding-004:batchEmbedContents', { requests: [] }, GEMINI_AUTH)).text();
      await (await fetch(`${mock.base}/v1/models`)).text();
      const counted = await postJson(
        mock.base,
        '/v1/messages/count_tokens',
        { model: 'claude-x', messages: [{ role: 'user', content: 'count me' }] },
        ANTHROPIC_AUTH,
      );
      expect(await counted.json()).toEqual({ input_tokens: expect.any(Number) });
      await (await fetch(`${mock.base}/v1/responses/resp_unknown`, { headers: OPENAI_AUTH })).text();
      await (await fetch(`${mock.base}/v1/responses/resp_unknown/input_items?limit=2`, { headers: OPENAI_AUTH })).text();
      await (await fetch(`${mock.base}/v1/responses/resp_unknown`, { method: 'DELETE' })).text();
      await (await fetch(`${mock.base}/v1/responses/resp_unknown/cancel`, { method: 'POST', headers: OPENAI_AUTH })).text();
      await (await postJson(mock.base, '/v1/responses/input_tokens', { input: 'h' }, OPENAI_AUTH)).text();
      await (await postJson(mock.base, '/v1/responses/compact', { model: 'm', input: 'i' }, {})).text();

      const stats = await getStats(mock.base);
      expect(stats.total).toBe(19);
      expect(stats.byRoute).toEqual({
        'openai.chat': 3,
        'openai.responses': 2,
        'openai.responses.retrieve': 1,
        'openai.responses.delete': 1,
        'openai.responses.inputItems': 1,
        'openai.responses.cancel': 1,
        'openai.responses.inputTokens': 1,
        'openai.responses.compact': 1,
        'openai.embeddings': 1,
        'openai.models': 1,
        'anthropic.messages': 1,
        'anthropic.countTokens': 1,
        'gemini.generateContent': 1,
        'gemini.streamGenerateContent': 1,
        'gemini.countTokens': 0,
        'gemini.embedContent': 1,
        'gemini.batchEmbedContents': 1,
      });
      expect(stats.aborted).toBe(0);
    });

    it('remembers the last request per route: lowercased headers, parsed body, url', async () => {
      await (await call(gemini, 'remember me', true, { 'X-Custom-Header': 'Yes' })).text();
      const stats = await getStats(mock.base);
      const last = stats.last['gemini.streamGenerateContent'];
      expect(last?.url).toBe('/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse');
      expect(last?.headers['x-custom-header']).toBe('Yes');
      expect(last?.headers['x-goog-api-key']).toBe('AIza-mock-test');
      expect(last?.body).toEqual({ contents: [{ role: 'user', parts: [{ text: 'remember me' }] }] });
    });

    it('keeps a non-JSON body as raw text', async () => {
      await (await postJson(mock.base, '/v1/messages', 'not json', ANTHROPIC_AUTH)).text();
      expect((await getStats(mock.base)).last['anthropic.messages']?.body).toBe('not json');
    });

    it('reset zeroes counts and last; control routes and unknown routes are not counted', async () => {
      await (await call(openai, 'a', false)).text();
      const unknown = await fetch(`${mock.base}/v2/whatever`);
      expect(unknown.status).toBe(404);
      await unknown.text();
      expect((await fetch(`${mock.base}/__mock/health`)).status).toBe(200);
      let stats = await getStats(mock.base);
      expect(stats.total).toBe(1);

      const reset = await fetch(`${mock.base}/__mock/reset`, { method: 'POST' });
      expect(reset.status).toBe(200);
      await reset.text();
      stats = await getStats(mock.base);
      expect(stats).toMatchObject({ total: 0, aborted: 0, last: {} });
      expect(Object.values(stats.byRoute).every((n) => n === 0)).toBe(true);
    });
  });

  it('closes promptly even with a stalled stream open', async () => {
    const other = await startMock();
    const res = await postJson(other.base, '/v1/chat/completions', openai.body('x [mock stall_after=0]', true), OPENAI_AUTH);
    expect(res.status).toBe(200);
    const t0 = Date.now();
    await other.close();
    expect(Date.now() - t0).toBeLessThan(1_000);
    await expect(res.text()).rejects.toThrow();
  });
});
