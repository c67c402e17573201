import { Readable } from 'node:stream';
import { RequestContext, requestContextStorage } from '@keygate/observability';
import { AnswerBudget } from './answer-budget';
import type { UpstreamResponse } from './upstream.client';
import {
  BODY_END_GRACE_MS,
  failFromStatus,
  parseUpstreamObject,
  readText,
  sseEvents,
  trailingUsage,
  upstreamCode,
  upstreamParam,
} from './upstream-body.util';
import { UpstreamError } from './upstream.error';

function failure(text: string): unknown {
  try {
    parseUpstreamObject(text, 'anthropic', 'response');
  } catch (error) {
    return error;
  }
  throw new Error(`expected ${JSON.stringify(text)} to be refused`);
}

describe('parseUpstreamObject', () => {
  it('returns a JSON object', () => {
    expect(parseUpstreamObject<{ id: string }>('{"id":"msg_1"}', 'anthropic', 'response')).toEqual({ id: 'msg_1' });
  });

  it.each(['null', '42', '"text"', 'true', '[]', '[{"id":1}]'])('refuses %s as a protocol error (502), not a TypeError later', (text) => {
    const error = failure(text);
    expect(error).toBeInstanceOf(UpstreamError);
    expect(error).toMatchObject({ kind: 'protocol', provider: 'anthropic', message: 'response is not a JSON object' });
    expect((error as UpstreamError).toGatewayError().status).toBe(502);
  });

  it('refuses a body that is not JSON', () => {
    expect(failure('<html>bad gateway</html>')).toMatchObject({ kind: 'protocol', message: 'response is not JSON' });
  });
});

describe('sseEvents', () => {
  const response = (chunks: string[]): UpstreamResponse =>
    ({
      statusCode: 200,
      headers: {},
      body: Readable.from(chunks.map((c) => Buffer.from(c))),
      signal: { signal: new AbortController().signal, clientAborted: () => false, timedOut: () => false, dispose: () => undefined },
    }) as unknown as UpstreamResponse;

  async function read(res: UpstreamResponse, max: number): Promise<{ data: string[]; error?: unknown }> {
    const data: string[] = [];
    try {
      for await (const event of sseEvents(res, 'openai', { maxEventBytes: max })) data.push(event.data);
      return { data };
    } catch (error) {
      return { data, error };
    }
  }

  it('reads events split across chunks', async () => {
    const { data, error } = await read(response(['data: {"a"', ':1}\n', '\ndata: [DONE]\n\n']), 64);
    expect(error).toBeUndefined();
    expect(data).toEqual(['{"a":1}', '[DONE]']);
  });

  it('reads every event of a stream whose lines end in a bare CR, its last one included', async () => {
    const { data, error } = await read(response(['data: {"a":1}\r\r', 'event: x\rdata: {"b":2}\r\r', 'data: [DONE]\r\r']), 64);
    expect(error).toBeUndefined();
    expect(data).toEqual(['{"a":1}', '{"b":2}', '[DONE]']);
  });

  it('reads a CRLF split between chunks as one line ending', async () => {
    const events: { event?: string; data: string }[] = [];
    const chunks = ['event: x\r', '\ndata: {"a":1}\r\n\r', '\n', 'data: [DONE]\r', '\n\r', '\n'];
    for await (const event of sseEvents(response(chunks), 'openai')) events.push({ event: event.event, data: event.data });
    expect(events).toEqual([
      { event: 'x', data: '{"a":1}' },
      { event: undefined, data: '[DONE]' },
    ]);
  });

  it('reads the first event of a body that starts with a byte-order mark (split or not)', async () => {
    const bom = Buffer.from([0xef, 0xbb, 0xbf]);
    for (const chunks of [
      [Buffer.concat([bom, Buffer.from('data: {"a":1}\n\ndata: [DONE]\n\n')])],
      [bom.subarray(0, 2), Buffer.concat([bom.subarray(2), Buffer.from('data: {"a":1}\n\ndata: [DONE]\n\n')])],
    ]) {
      const res = { ...response([]), body: Readable.from(chunks) } as unknown as UpstreamResponse;
      const { data, error } = await read(res, 64);
      expect(error).toBeUndefined();
      expect(data).toEqual(['{"a":1}', '[DONE]']);
    }
  });

  it('refuses a whole JSON or HTML answer to a stream at once, as a protocol error (not retried), reading none of it', async () => {
    for (const type of ['application/json', 'application/json; charset=utf-8', 'Application/Problem+JSON', 'text/html;charset=UTF-8']) {
      const body = Readable.from([Buffer.from('{"id":"chatcmpl-1","choices":[]}')]);
      const res = { ...response([]), headers: { 'content-type': type }, body } as unknown as UpstreamResponse;
      const { data, error } = await read(res, 64);
      expect(data).toEqual([]);
      expect(error).toMatchObject({ kind: 'protocol', provider: 'openai' });
      expect((error as UpstreamError).retryable).toBe(false);
      expect((error as Error).message).toContain('not server-sent events');
      expect(body.destroyed).toBe(true);
    }
    // An event stream, or one without a type, is read as events.
    for (const type of ['text/event-stream; charset=utf-8', undefined]) {
      const res = { ...response(['data: {"a":1}\n\n']), headers: type ? { 'content-type': type } : {} };
      expect((await read(res, 64)).data).toEqual(['{"a":1}']);
    }
  });

  it('ends the stream with a protocol error when an event grows past the limit without completing (no endless buffer)', async () => {
    const endless = Array.from({ length: 10 }, () => 'x'.repeat(20));
    const { data, error } = await read(response(['data: {"a":1}\n\n', 'data: ', ...endless]), 64);
    expect(data).toEqual(['{"a":1}']);
    expect(error).toBeInstanceOf(UpstreamError);
    expect(error).toMatchObject({ kind: 'protocol', provider: 'openai' });
  });
  describe('a consumer that stops', () => {
    /** A body the test feeds by hand, and what became of it. */
    function openBody(): { res: UpstreamResponse; body: Readable; fate: { ended: boolean; error?: Error } } {
      const body = new Readable({ read: () => undefined });
      const fate: { ended: boolean; error?: Error } = { ended: false };
      body.on('end', () => (fate.ended = true));
      body.on('error', (error) => (fate.error = error));
      return { res: { ...response([]), body } as unknown as UpstreamResponse, body, fate };
    }
    const isLast = (event: { data: string }) => event.data === '[DONE]';

    async function readUntil(res: UpstreamResponse, stopAt: string): Promise<string[]> {
      const data: string[] = [];
      for await (const event of sseEvents(res, 'openai', { isLast })) {
        data.push(event.data);
        if (event.data === stopAt) break;
      }
      return data;
    }

    it('after the last event reads the rest of the body to its end, so the connection can be reused', async () => {
      const { res, body, fate } = openBody();
      body.push('data: {"a":1}\n\ndata: [DONE]\n\n');
      const reading = readUntil(res, '[DONE]');
      expect(await reading).toEqual(['{"a":1}', '[DONE]']);
      expect(body.destroyed).toBe(false);
      body.push('\n');
      body.push(null);
      await new Promise((resolve) => setImmediate(resolve));
      expect(fate).toEqual({ ended: true });
    });

    it('after the last event destroys a body that does not end within the grace period', async () => {
      const { res, body, fate } = openBody();
      body.push('data: [DONE]\n\n');
      await readUntil(res, '[DONE]');
      await new Promise((resolve) => setTimeout(resolve, BODY_END_GRACE_MS / 2));
      expect(body.destroyed).toBe(false);
      await new Promise((resolve) => setTimeout(resolve, BODY_END_GRACE_MS / 2 + 200));
      expect(body.destroyed).toBe(true);
      expect(fate.ended).toBe(false);
    });

    it('after a failure destroys the body at once, even past the last event', async () => {
      const { res, body } = openBody();
      body.push('data: [DONE]\n\n');
      const events: string[] = [];
      let failure: unknown;
      try {
        for await (const event of sseEvents(res, 'openai', { isLast, maxEventBytes: 64 })) {
          events.push(event.data);
          // The consumer reads on, and the upstream sends an event that never completes.
          body.push(`data: ${'x'.repeat(100)}`);
        }
      } catch (error) {
        failure = error;
      }
      expect(events).toEqual(['[DONE]']);
      expect(failure).toMatchObject({ kind: 'protocol' });
      expect(body.destroyed).toBe(true);
    });

    it('before the last event destroys the body at once (the client left: the upstream must stop)', async () => {
      const { res, body, fate } = openBody();
      body.push('data: {"a":1}\n\ndata: {"b":2}\n\n');
      expect(await readUntil(res, '{"a":1}')).toEqual(['{"a":1}']);
      expect(body.destroyed).toBe(true);
      expect(fate.ended).toBe(false);
    });
  });
});

describe('readText', () => {
  const response = (chunks: string[], headers: Record<string, string> = {}): { res: UpstreamResponse; body: Readable } => {
    const body = Readable.from(chunks.map((c) => Buffer.from(c)));
    const res = {
      statusCode: 200,
      headers,
      body: Object.assign(body, { text: async () => Buffer.concat(await body.toArray()).toString('utf8') }),
      signal: { signal: new AbortController().signal, clientAborted: () => false, timedOut: () => false, dispose: () => undefined },
    } as unknown as UpstreamResponse;
    return { res, body };
  };

  it('reads a body within the limit, with or without a declared length', async () => {
    expect(await readText(response(['{"a":', '1}'], { 'content-length': '7' }).res, 'openai', 7)).toBe('{"a":1}');
    expect(await readText(response(['{"a":', '1}']).res, 'openai', 7)).toBe('{"a":1}');
  });

  it('refuses a declared length over the limit before reading a byte', async () => {
    const { res, body } = response(['x'.repeat(10)], { 'content-length': '10' });
    const error = await readText(res, 'openai', 9).catch((e: unknown) => e);
    expect(error).toMatchObject({ kind: 'protocol', message: 'the response body exceeds 9 bytes' });
    expect((error as UpstreamError).toGatewayError().status).toBe(502);
    expect(body.destroyed).toBe(true);
  });

  it('stops reading an undeclared body once it passes the limit', async () => {
    let produced = 0;
    const body = new Readable({
      read() {
        produced++;
        this.push(Buffer.alloc(4, 0x61));
      },
    });
    const res = {
      ...response([]).res,
      body,
    } as unknown as UpstreamResponse;
    const error = await readText(res, 'gemini', 10).catch((e: unknown) => e);
    expect(error).toMatchObject({ kind: 'protocol', provider: 'gemini' });
    expect(body.destroyed).toBe(true);
    // An endless body: a few chunks past the limit at most, not until the total timeout.
    expect(produced).toBeLessThan(40);
  });
});

describe('readText under a budget for buffered answers', () => {
  const MB = 1024 * 1024;
  /** An upstream body the test feeds chunk by chunk, counted against `budget`. */
  const fed = (budget: AnswerBudget, headers: Record<string, string> = {}): { res: UpstreamResponse; body: Readable } => {
    const body = new Readable({ read: () => undefined });
    const res = {
      statusCode: 200,
      headers,
      body,
      signal: { signal: new AbortController().signal, clientAborted: () => false, timedOut: () => false, dispose: () => undefined },
      answerBudget: budget,
    } as unknown as UpstreamResponse;
    return { res, body };
  };
  const settle = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));
  const request = (): RequestContext => new RequestContext('req-1', 'POST', '/v1/embeddings', process.hrtime.bigint(), null, true);

  it('counts nothing of an answer up to 1 MB, then all of it', async () => {
    const budget = new AnswerBudget(10 * MB);
    const { res, body } = fed(budget);
    const text = readText(res, 'openai');
    body.push('a'.repeat(MB));
    await settle();
    expect(budget.held).toBe(0);
    body.push('a');
    await settle();
    expect(budget.held).toBe(MB + 1);
    body.push(null);
    expect((await text).length).toBe(MB + 1);
    expect(budget.held).toBe(0);
  });

  it('holds a later answer back while an earlier one fills the budget, and reads both whole', async () => {
    const budget = new AnswerBudget(2 * MB);
    const first = fed(budget);
    const second = fed(budget);
    const firstText = readText(first.res, 'openai');
    const secondText = readText(second.res, 'openai');
    first.body.push('a'.repeat(1.5 * MB));
    await settle();
    second.body.push('b'.repeat(MB));
    second.body.push('b'.repeat(MB));
    second.body.push(null);
    await settle();
    // Past its uncounted megabyte the second answer does not fit: it waits, and is not done.
    expect(budget.waits).toBe(1);
    let secondDone = false;
    void secondText.then(() => (secondDone = true));
    await settle();
    expect(secondDone).toBe(false);
    first.body.push('a'.repeat(MB)); // the oldest reader goes on past the budget
    first.body.push(null);
    expect((await firstText).length).toBe(2.5 * MB);
    expect(await secondText).toBe('b'.repeat(2 * MB));
    expect(budget.held).toBe(0);
  });

  it('holds an answer read within a request until the request ends, and one read outside any request until it is read', async () => {
    const budget = new AnswerBudget(100 * MB);
    const inRequest = fed(budget);
    const ctx = request();
    const text = requestContextStorage.run(ctx, () => readText(inRequest.res, 'openai'));
    inRequest.body.push('x'.repeat(2 * MB));
    inRequest.body.push(null);
    expect((await text).length).toBe(2 * MB);
    expect(budget.held).toBe(2 * MB);
    ctx.end();
    expect(budget.held).toBe(0);

    const outside = fed(budget);
    const alone = readText(outside.res, 'openai');
    outside.body.push('y'.repeat(2 * MB));
    outside.body.push(null);
    expect((await alone).length).toBe(2 * MB);
    expect(budget.held).toBe(0);
  });

  it('makes a reader over the budget wait for answers already read to be released, not only for readers', async () => {
    const budget = new AnswerBudget(3 * MB);
    const done = fed(budget);
    const ctx = request();
    await requestContextStorage.run(ctx, async () => {
      const text = readText(done.res, 'openai');
      done.body.push('x'.repeat(2 * MB));
      done.body.push(null);
      await text;
    });
    const next = fed(budget);
    const nextText = readText(next.res, 'openai');
    next.body.push('y'.repeat(2 * MB));
    next.body.push(null);
    await settle();
    // 2 MB read and held + 2 MB more: over the budget, and the first answer's request is still open.
    expect(budget.waits).toBe(1);
    ctx.end();
    expect((await nextText).length).toBe(2 * MB);
    expect(budget.held).toBe(0);
  });

  it('gives the room back when a read fails', async () => {
    const budget = new AnswerBudget(100 * MB);
    const { res, body } = fed(budget);
    const text = readText(res, 'openai', 3 * MB);
    body.push('x'.repeat(2 * MB));
    await settle();
    expect(budget.held).toBe(2 * MB);
    body.push('x'.repeat(2 * MB));
    await expect(text).rejects.toMatchObject({ kind: 'protocol' });
    expect(budget.held).toBe(0);
  });

  it('does not count an answer that declares a small length', async () => {
    const budget = new AnswerBudget(1);
    const { res, body } = fed(budget, { 'content-length': '2' });
    Object.assign(body, { text: () => Promise.resolve('{}') });
    expect(await readText(res, 'openai')).toBe('{}');
    expect(budget.waits).toBe(0);
  });
});

describe('the field an upstream refusal names', () => {
  it('is read from an OpenAI error body when it is a field path, and nothing else', () => {
    expect(upstreamParam('{"error":{"message":"bad","param":"input","code":"empty_array"}}')).toBe('input');
    expect(upstreamParam('{"error":{"message":"bad","param":"tools[0].name"}}')).toBe('tools[0].name');
    expect(upstreamParam('{"error":{"message":"bad","param":null}}')).toBeUndefined();
    expect(upstreamParam('{"error":{"message":"bad","param":"a\\nb"}}')).toBeUndefined();
    expect(upstreamParam('{"type":"error","error":{"type":"invalid_request_error","message":"x"}}')).toBeUndefined();
    expect(upstreamParam('not json')).toBeUndefined();
  });

  it('reads the upstream’s error code the same way', () => {
    expect(upstreamCode('{"error":{"message":"gone","param":"previous_response_id","code":"previous_response_not_found"}}')).toBe(
      'previous_response_not_found',
    );
    expect(upstreamCode('{"error":{"message":"bad","code":null}}')).toBeUndefined();
    expect(upstreamCode('{"error":{"message":"bad","code":429}}')).toBeUndefined();
    expect(upstreamCode('not json')).toBeUndefined();
    // Anthropic's bodies have no error.code: its details.error_code stands in.
    expect(
      upstreamCode('{"type":"error","error":{"type":"not_found_error","message":"x","details":{"error_code":"thread_not_found"}}}'),
    ).toBe('thread_not_found');
    expect(upstreamCode('{"type":"error","error":{"type":"invalid_request_error","message":"x","details":null}}')).toBeUndefined();
  });

  it('goes on with the 400 the client can fix, not with keygate’s own failures', async () => {
    const answer = (status: number): UpstreamResponse =>
      ({
        statusCode: status,
        headers: {},
        body: Readable.from([Buffer.from('{"error":{"message":"Invalid input","param":"input"}}')]),
        signal: { signal: new AbortController().signal, clientAborted: () => false, timedOut: () => false, dispose: () => undefined },
      }) as unknown as UpstreamResponse;
    const refused = await failFromStatus(answer(400), 'openai').catch((e: unknown) => (e as UpstreamError).toGatewayError());
    expect([refused.code, refused.options.param, refused.toBody().error.param]).toEqual(['upstream_bad_request', 'input', 'input']);
    expect(refused.message).toBe('upstream openai rejected the request: Invalid input');
    const outage = await failFromStatus(answer(503), 'openai').catch((e: unknown) => (e as UpstreamError).toGatewayError());
    expect([outage.code, outage.options.param]).toEqual(['upstream_error', undefined]);
  });
});

describe('trailingUsage', () => {
  const vectors = Array.from({ length: 50 }, (_, index) => ({ object: 'embedding', index, embedding: [0.1, -0.2, 3e-5] }));

  it('reads the usage an embeddings answer ends with, as a whole parse would', () => {
    for (const text of [
      JSON.stringify({ object: 'list', data: vectors, model: 'm', usage: { prompt_tokens: 12, total_tokens: 12 } }),
      `${JSON.stringify({ object: 'list', data: vectors, model: 'm', usage: { prompt_tokens: 3, total_tokens: 3 } }, null, 2)}\n`,
      // A compatible host that puts a key after it.
      JSON.stringify({ object: 'list', data: vectors, usage: { prompt_tokens: 5, total_tokens: 5 }, model: 'm' }),
    ])
      expect(trailingUsage(text)).toEqual((JSON.parse(text) as { usage: unknown }).usage);
  });

  it.each([
    ['no usage', JSON.stringify({ object: 'list', data: vectors })],
    ['usage null', JSON.stringify({ object: 'list', data: vectors, usage: null })],
    ['not an object', JSON.stringify([{ usage: { prompt_tokens: 1 } }])],
    ['a text cut short', JSON.stringify({ object: 'list', data: vectors, usage: { prompt_tokens: 1 } }).slice(0, -2)],
    ['not JSON', 'upstream said no'],
  ])('is undefined for %s (the caller parses it whole)', (_case, text) => {
    expect(trailingUsage(text)).toBeUndefined();
  });
});
