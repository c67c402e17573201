import { createServer, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { OpenAiAdapter, UpstreamError, type ChatStream, type StreamEvent } from '@keygate/providers';
import { testUpstreamClient } from '../../../../libs/providers/src/testing/upstream-client';
import { MAX_HELD_CHARS, MAX_HELD_EVENTS, primed, retryableWhenStreamed } from './primed-stream';

const role: StreamEvent = { data: '{"role":"assistant"}' };
const content: StreamEvent = { data: '{"content":"hi"}', text: 'hi' };

/** Priming that never reaches its time limit (or whose caller does nothing then). */
const noCommit = { commit: () => undefined };

/** An upstream read: a turn of the event loop, as a socket read would take. */
const upstream = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

async function all(stream: ChatStream): Promise<Array<string | null>> {
  const out: Array<string | null> = [];
  for await (const event of stream.events) out.push(event.data);
  return out;
}

describe('primed', () => {
  afterEach(() => jest.useRealTimers());

  it('reads up to the first content, then replays it all, in order', async () => {
    let reads = 0;
    async function* events(): AsyncGenerator<StreamEvent> {
      await upstream();
      reads++;
      yield role;
      reads++;
      yield content;
      reads++;
      yield { data: '{"content":"!"}', text: '!' };
    }
    const stream = await primed({ events: events() }, noCommit);
    expect(reads).toBe(2); // the role chunk and the first content, nothing after
    expect(await all(stream)).toEqual([role.data, content.data, '{"content":"!"}']);
  });

  it('stops at generated output that is not text (a partial image): it is not held back until text comes', async () => {
    const image: StreamEvent = {
      event: 'response.image_generation_call.partial_image',
      data: '{"partial_image_b64":"iVBO"}',
      output: true,
    };
    let reads = 0;
    async function* events(): AsyncGenerator<StreamEvent> {
      await upstream();
      reads++;
      yield role;
      reads++;
      yield image;
      reads++;
      yield content;
    }
    const stream = await primed({ events: events() }, noCommit);
    expect(reads).toBe(2);
    expect(await all(stream)).toEqual([role.data, image.data, content.data]);
  });

  it('keeps the headers the upstream answered with, for the client’s response head', async () => {
    async function* events(): AsyncGenerator<StreamEvent> {
      await upstream();
      yield content;
    }
    const stream = await primed({ events: events(), headers: { 'request-id': 'req_1' } }, noCommit);
    expect(stream.headers).toEqual({ 'request-id': 'req_1' });
    expect(await all(stream)).toEqual([content.data]);
  });

  it('fails the attempt when the provider’s error comes before any content (so it can be retried)', async () => {
    async function* events(): AsyncGenerator<StreamEvent> {
      await upstream();
      yield role;
      throw new Error('overloaded');
    }
    await expect(primed({ events: events() }, noCommit)).rejects.toThrow('overloaded');
  });

  it('hands the usage the upstream reported before failing to onUsage (those events are never replayed)', async () => {
    const running = { prompt_tokens: 10, completion_tokens: 1, total_tokens: 11 };
    async function* events(): AsyncGenerator<StreamEvent> {
      await upstream();
      yield { data: '{"role":"assistant"}', runningUsage: running };
      throw new Error('client left');
    }
    const seen: unknown[] = [];
    await expect(primed({ events: events() }, { ...noCommit, onUsage: (usage) => seen.push(usage) })).rejects.toThrow('client left');
    expect(seen).toEqual([running]);

    // Nothing reported: nothing handed on.
    async function* bare(): AsyncGenerator<StreamEvent> {
      await upstream();
      yield role;
      throw new Error('overloaded');
    }
    await expect(primed({ events: bare() }, { ...noCommit, onUsage: (usage) => seen.push(usage) })).rejects.toThrow('overloaded');
    expect(seen).toHaveLength(1);
  });

  it('gives the client the HTTP head after 2 s without content (a model still thinking), then waits for the content', async () => {
    jest.useFakeTimers();
    let release: () => void = () => undefined;
    const gate = new Promise<void>((resolve) => (release = resolve));
    async function* events(): AsyncGenerator<StreamEvent> {
      yield role;
      await gate;
      yield content;
    }
    let commits = 0;
    let done = false;
    const priming = primed({ events: events() }, { commit: () => commits++ }).then((s) => {
      done = true;
      return s;
    });
    await jest.advanceTimersByTimeAsync(1_900);
    expect(commits).toBe(0);
    await jest.advanceTimersByTimeAsync(200);
    expect(commits).toBe(1);
    // Still the attempt's: its head events are held back, and a failure now would be retried.
    await jest.advanceTimersByTimeAsync(60_000);
    expect([commits, done]).toEqual([1, false]);
    release();
    expect(await all(await priming)).toEqual([role.data, content.data]);
    expect(commits).toBe(1);
  });

  it('fails the attempt when the upstream fails after the HTTP head went out, before any content', async () => {
    jest.useFakeTimers();
    let fail: (error: Error) => void = () => undefined;
    const gate = new Promise<void>((_resolve, reject) => (fail = reject));
    async function* events(): AsyncGenerator<StreamEvent> {
      yield role;
      await gate;
      yield content;
    }
    let commits = 0;
    const priming = primed({ events: events() }, { commit: () => commits++ });
    const outcome = priming.then(
      () => 'answered',
      (error: unknown) => error,
    );
    await jest.advanceTimersByTimeAsync(2_100);
    expect(commits).toBe(1);
    fail(new UpstreamError('connection_lost', 'openai', 'connection lost'));
    expect(await outcome).toMatchObject({ kind: 'connection_lost', retryable: true });
  });

  it('reads an idle timeout before the first content as a stall, which is retried; one after it stays an idle timeout', async () => {
    async function* stalls(): AsyncGenerator<StreamEvent> {
      await upstream();
      yield role;
      throw new UpstreamError('idle_timeout', 'anthropic', 'no data in time');
    }
    await expect(primed({ events: stalls() }, noCommit)).rejects.toMatchObject({ kind: 'stalled', provider: 'anthropic', retryable: true });

    async function* stallsLater(): AsyncGenerator<StreamEvent> {
      await upstream();
      yield content;
      throw new UpstreamError('idle_timeout', 'anthropic', 'no data in time');
    }
    const stream = await primed({ events: stallsLater() }, noCommit);
    await expect(all(stream)).rejects.toMatchObject({ kind: 'idle_timeout', retryable: false });
  });

  it('makes a stream request’s TTFB timeout retryable, still a ttfb_timeout (a 504, billed nothing); other failures pass unchanged', () => {
    const ttfb = new UpstreamError('ttfb_timeout', 'openai', 'no response headers in time');
    expect(ttfb.retryable).toBe(false);
    const retried = retryableWhenStreamed(ttfb);
    expect(retried).toBeInstanceOf(UpstreamError);
    expect(retried).toMatchObject({ kind: 'ttfb_timeout', provider: 'openai', retryable: true });
    expect((retried as UpstreamError).toGatewayError()).toMatchObject({ code: 'upstream_timeout', status: 504 });
    expect(retryableWhenStreamed(retried)).toBe(retried);
    const refused = new UpstreamError('http', 'openai', 'bad request', 400);
    expect(retryableWhenStreamed(refused)).toBe(refused);
  });

  it('hands on a stream that ends with no content after the HTTP head went out, as it ended', async () => {
    jest.useFakeTimers();
    let release: () => void = () => undefined;
    const gate = new Promise<void>((resolve) => (release = resolve));
    async function* events(): AsyncGenerator<StreamEvent> {
      yield role;
      await gate;
    }
    let commits = 0;
    const priming = primed({ events: events() }, { commit: () => commits++ });
    await jest.advanceTimersByTimeAsync(2_100);
    release();
    expect(await all(await priming)).toEqual([role.data]);
    expect(commits).toBe(1);
  });

  it('returns the upstream’s iterator when the consumer stops early (the upstream is released)', async () => {
    let released = false;
    async function* events(): AsyncGenerator<StreamEvent> {
      await upstream();
      try {
        yield role;
        yield content;
        yield content;
      } finally {
        released = true;
      }
    }
    const stream = await primed({ events: events() }, noCommit);
    for await (const event of stream.events) if (event.text) break;
    expect(released).toBe(true);
  });

  it('holds back at most MAX_HELD_EVENTS events without content, then hands the stream on as it is', async () => {
    const ping: StreamEvent = { event: 'ping', data: '{"type":"ping"}' };
    let reads = 0;
    async function* events(): AsyncGenerator<StreamEvent> {
      await upstream();
      for (let i = 0; i < MAX_HELD_EVENTS + 10; i++) {
        reads++;
        yield ping;
      }
      reads++;
      yield content;
    }
    const stream = await primed({ events: events() }, noCommit);
    expect(reads).toBe(MAX_HELD_EVENTS); // stopped there, not at the content
    const out = await all(stream);
    expect(out).toHaveLength(MAX_HELD_EVENTS + 11);
    expect(out.at(-1)).toBe(content.data);
  });

  it('holds back at most MAX_HELD_CHARS characters of events without content, however few the events', async () => {
    // A role chunk padded to 400 KB, as a broken or hostile host might send: three pass the bound.
    const padded: StreamEvent = { data: `{"choices":[{"delta":{"role":"assistant"}}],"pad":"${'x'.repeat(400 * 1024)}"}` };
    let reads = 0;
    async function* events(): AsyncGenerator<StreamEvent> {
      await upstream();
      for (let i = 0; i < 10; i++) {
        reads++;
        yield padded;
      }
      reads++;
      yield content;
    }
    const stream = await primed({ events: events() }, noCommit);
    expect(reads).toBe(Math.ceil(MAX_HELD_CHARS / padded.data!.length));
    const out = await all(stream);
    expect(out).toHaveLength(11);
    expect(out.at(-1)).toBe(content.data);
  });
});

describe('primed, over an OpenAI-compatible reasoning host', () => {
  // A real HTTP server on 127.0.0.1 standing in for vLLM/DeepSeek: the role chunk and the model's
  // thinking (`reasoning_content`) come at once, then nothing until the test ends the answer.
  const chunk = (delta: Record<string, unknown>): string =>
    `data: ${JSON.stringify({ id: 'chatcmpl-r', object: 'chat.completion.chunk', created: 1, model: 'r1', choices: [{ index: 0, delta, finish_reason: null }] })}\n\n`;
  let server: Server;
  let origin = '';
  const open: ServerResponse[] = [];
  beforeAll(async () => {
    server = createServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write(chunk({ role: 'assistant', content: '' }) + chunk({ reasoning_content: 'Let me think' }));
      open.push(res);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(async () => {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  });

  it('hands the stream on at the first reasoning delta: the thinking reaches the client as it comes, not held back until the answer', async () => {
    const client = testUpstreamClient();
    try {
      const stream = await new OpenAiAdapter(client).chatStream({
        body: { model: 'r1', messages: [{ role: 'user', content: 'Hi' }], stream: true },
        access: { provider: 'openai', apiKey: 'sk-local', baseUrl: `${origin}/v1`, models: ['r1'] },
        signal: new AbortController().signal,
        clientWantsUsage: false,
      });
      // Resolves with what the host sent so far (no content yet), while the host is still thinking.
      const handed = await primed(stream, noCommit);
      const iterator = handed.events[Symbol.asyncIterator]();
      expect((await iterator.next()).value).toMatchObject({ data: expect.stringContaining('"role":"assistant"') });
      expect((await iterator.next()).value).toMatchObject({ text: 'Let me think' });
      await iterator.return?.();
    } finally {
      for (const res of open) res.end();
      await client.onApplicationShutdown();
    }
  });
});
