import { once } from 'node:events';
import { createServer, request as httpRequest, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { connect, type AddressInfo } from 'node:net';
import type { GatewayConfig } from '@keygate/config';
import { JsonLogger, MetricsService, RequestContext } from '@keygate/observability';
import { countTokens, UpstreamError, withCacheWrites, type ChatStream, type StreamEvent } from '@keygate/providers';
import type { FastifyReply } from 'fastify';
import { OPENAI_STREAM, recordUsage, SseRelay } from './sse-relay';

// The relay against a real HTTP response, for what the audit line says when the client is gone
// before the stream's first byte: the upstream's first content arrived (priming succeeded) just
// as the client closed its connection, and the request lifecycle recorded the client's abort.

const config = { sseKeepAliveSeconds: 0 } as unknown as GatewayConfig;

/** An upstream stream whose events are already read (primed): each is handed on at once. */
function stream(events: StreamEvent[]): ChatStream {
  let next = 0;
  return {
    events: {
      [Symbol.asyncIterator]: () => ({
        next: () => Promise.resolve(next < events.length ? { value: events[next++], done: false } : { value: undefined, done: true }),
      }),
    },
  };
}

/** The relay as the gateway builds it (no keep-alives), with a silent logger. */
const newRelay = (): SseRelay => new SseRelay(config, new MetricsService(), new JsonLogger('error', undefined, () => undefined));

/** The hijacked Fastify reply the relay writes through: `res` itself. */
const replyOver = (res: ServerResponse): FastifyReply =>
  ({ hijack: () => undefined, raw: res, getHeaders: () => ({}) }) as unknown as FastifyReply;

/** A listening server whose requests `onRequest` takes, and its port. */
async function listening(onRequest: (res: ServerResponse) => void): Promise<{ server: Server; port: number }> {
  const server = createServer((_req: IncomingMessage, res: ServerResponse) => onRequest(res));
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return { server, port: (server.address() as AddressInfo).port };
}

/** A server whose one request's response is handed to the test once its client has closed the connection. */
async function responseOfAGoneClient(): Promise<{ server: Server; res: ServerResponse }> {
  let handed: (res: ServerResponse) => void = () => undefined;
  const closed = new Promise<ServerResponse>((resolve) => (handed = resolve));
  const { server, port } = await listening((res) => res.once('close', () => handed(res)));
  const client = httpRequest({ host: '127.0.0.1', port, method: 'POST', path: '/' });
  client.on('error', () => undefined);
  client.end('{}');
  // Gone before any answer.
  setTimeout(() => client.destroy(), 20);
  return { server, res: await closed };
}

describe('SseRelay', () => {
  it('keeps the 499 of a client that left before the stream started, though the upstream had begun answering', async () => {
    const { server, res } = await responseOfAGoneClient();
    try {
      const ctx = new RequestContext('req-gone', 'POST', '/v1/chat/completions', process.hrtime.bigint(), null, true);
      // What the request lifecycle does when the response closes undelivered.
      ctx.fail('client_abort', 499);
      ctx.abort.abort();
      const reply = replyOver(res);
      const relay = newRelay();
      await relay.relay(
        ctx,
        stream([{ data: '{"choices":[]}' }, { data: '{"choices":[]}', text: 'Hello' }]),
        relay.open(ctx, reply, OPENAI_STREAM, 60),
        () => 7,
      );
      expect(ctx.failure).toBe('client_abort');
      expect(ctx.status).toBe(499);
      // Billed what the upstream began: the prompt (keygate's estimate here).
      expect(ctx.tokensIn).toBe(7);
    } finally {
      server.close();
    }
  });
});

describe('SseRelay without usage from the upstream', () => {
  it('estimates the answer from a bounded share of its text: a million characters counted, the rest at four a token', async () => {
    let handed: (res: ServerResponse) => void = () => undefined;
    const served = new Promise<ServerResponse>((resolve) => (handed = resolve));
    const { server, port } = await listening((res) => handed(res));
    const client = httpRequest({ host: '127.0.0.1', port, method: 'POST', path: '/' }, (answer) => answer.resume());
    client.on('error', () => undefined);
    client.end('{}');
    const res = await served;
    try {
      const ctx = new RequestContext('req-long', 'POST', '/v1/chat/completions', process.hrtime.bigint(), null, true);
      // 300 events of 10,000 characters: 3 million, no usage anywhere.
      const piece = 'word '.repeat(2_000);
      const relay = newRelay();
      await relay.relay(
        ctx,
        stream(Array.from({ length: 300 }, () => ({ data: '{"choices":[]}', text: piece }))),
        relay.open(ctx, replyOver(res), OPENAI_STREAM, 60),
        () => 7,
      );
      expect(ctx.tokensOut).toBe(countTokens(piece.repeat(100)) + 2_000_000 / 4);
    } finally {
      client.destroy();
      server.close();
    }
  });
});

describe('recordUsage', () => {
  const context = (): RequestContext =>
    new RequestContext('req-usage', 'POST', '/v1/chat/completions', process.hrtime.bigint(), null, true);

  it('records the totals and how they split: cache reads, cache writes, reasoning', () => {
    const ctx = context();
    const usage = withCacheWrites(
      {
        prompt_tokens: 150,
        completion_tokens: 40,
        total_tokens: 190,
        prompt_tokens_details: { cached_tokens: 100 },
        completion_tokens_details: { reasoning_tokens: 25 },
      },
      30,
      10,
    );
    recordUsage(ctx, usage);
    expect([ctx.tokensIn, ctx.tokensOut, ctx.tokensCached, ctx.tokensCacheWrite, ctx.tokensCacheWrite1h, ctx.tokensReasoning]).toEqual([
      150, 40, 100, 30, 10, 25,
    ]);
    // The cache writes ride along unseen by anything that serialises the usage for a client.
    expect(JSON.parse(JSON.stringify(usage))).toEqual({
      prompt_tokens: 150,
      completion_tokens: 40,
      total_tokens: 190,
      prompt_tokens_details: { cached_tokens: 100 },
      completion_tokens_details: { reasoning_tokens: 25 },
    });
  });

  it('reads a split an upstream wrote as anything but a count as not said, and a later usage replaces an earlier one', () => {
    const ctx = context();
    recordUsage(ctx, { prompt_tokens: 5, completion_tokens: 1, total_tokens: 6, prompt_tokens_details: { cached_tokens: 4 } });
    expect(ctx.tokensCached).toBe(4);
    const odd = {
      prompt_tokens: 9,
      completion_tokens: 2,
      total_tokens: 11,
      prompt_tokens_details: null,
      completion_tokens_details: { reasoning_tokens: -1 },
    };
    recordUsage(ctx, odd as never);
    expect([ctx.tokensIn, ctx.tokensCached, ctx.tokensCacheWrite, ctx.tokensReasoning]).toEqual([9, null, null, null]);
  });

  it('reads a part larger than its whole as not said (a careless host): 1,000 cached tokens of a 10-token prompt', () => {
    const ctx = context();
    const usage = withCacheWrites(
      {
        prompt_tokens: 10,
        completion_tokens: 5,
        total_tokens: 15,
        prompt_tokens_details: { cached_tokens: 1000 },
        completion_tokens_details: { reasoning_tokens: 1000 },
      },
      4,
      1000,
    );
    recordUsage(ctx, usage);
    expect([ctx.tokensIn, ctx.tokensOut, ctx.tokensCached, ctx.tokensCacheWrite, ctx.tokensCacheWrite1h, ctx.tokensReasoning]).toEqual([
      10,
      5,
      null,
      4,
      null,
      null,
    ]);
    // Parts equal to their whole are parts.
    recordUsage(
      ctx,
      withCacheWrites({ prompt_tokens: 8, completion_tokens: 3, total_tokens: 11, prompt_tokens_details: { cached_tokens: 8 } }, 8, 8),
    );
    expect([ctx.tokensCached, ctx.tokensCacheWrite, ctx.tokensCacheWrite1h, ctx.tokensReasoning]).toEqual([8, 8, 8, null]);
  });
});

describe('SseRelay usage that is not a count', () => {
  it('bills the estimate, not a running usage whose counts recordUsage refused', async () => {
    const { server, res } = await responseOfAGoneClient();
    try {
      const ctx = new RequestContext('req-odd', 'POST', '/v1/chat/completions', process.hrtime.bigint(), null, true);
      const reply = replyOver(res);
      const relay = newRelay();
      // An Anthropic-compatible host's message_start with a negative count: toUsage passes it on as the running usage.
      const odd = { prompt_tokens: -3, completion_tokens: 1.5, total_tokens: -1.5, prompt_tokens_details: { cached_tokens: 2 } };
      await relay.relay(
        ctx,
        stream([
          { data: null, runningUsage: odd },
          { data: null, usage: odd, runningUsage: odd },
        ]),
        relay.open(ctx, reply, OPENAI_STREAM, 60),
        () => 7,
      );
      expect([ctx.tokensIn, ctx.tokensOut, ctx.tokensCached]).toEqual([7, 0, null]);
    } finally {
      server.close();
    }
  });
});

describe('SseRelay running usage of a stream that ends early', () => {
  it('keeps the split the running usage reported: the reasoning of a Gemini stream cut after it thought', async () => {
    const { server, res } = await responseOfAGoneClient();
    try {
      const ctx = new RequestContext('req-cut', 'POST', '/v1/chat/completions', process.hrtime.bigint(), null, true);
      const relay = newRelay();
      // Gemini's running usageMetadata once it has thought (300 thought tokens, 1,000 of the prompt
      // cached) and before its last chunk: toUsage counts the thoughts as completion tokens.
      const running = {
        prompt_tokens: 1000,
        completion_tokens: 300,
        total_tokens: 1300,
        prompt_tokens_details: { cached_tokens: 1000 },
        completion_tokens_details: { reasoning_tokens: 300 },
      };
      // Then the connection drops, before the last chunk and its usage.
      const cut: ChatStream = {
        events: {
          [Symbol.asyncIterator]: () => {
            let sent = false;
            return {
              next: () => {
                if (sent) return Promise.reject(new UpstreamError('connection_lost', 'gemini', 'stream ended early'));
                sent = true;
                return Promise.resolve({ value: { data: null, text: 'Hello', runningUsage: running }, done: false });
              },
            };
          },
        },
      };
      await relay.relay(ctx, cut, relay.open(ctx, replyOver(res), OPENAI_STREAM, 60), () => 7);
      expect([ctx.tokensIn, ctx.tokensOut, ctx.tokensCached, ctx.tokensReasoning]).toEqual([1000, 300, 1000, 300]);
    } finally {
      server.close();
    }
  });
});

describe('SseRelay.fail', () => {
  it('ends a stream whose head went out before its attempts all failed with the error event, and audits the failure', async () => {
    let handed: (res: ServerResponse) => void = () => undefined;
    const response = new Promise<ServerResponse>((resolve) => (handed = resolve));
    const { server, port } = await listening((res) => handed(res));
    try {
      const answered = new Promise<{ status: number | undefined; type: string | undefined; body: string }>((resolve, reject) => {
        const client = httpRequest({ host: '127.0.0.1', port, method: 'POST', path: '/' }, (res) => {
          let body = '';
          res.setEncoding('utf8');
          res.on('data', (chunk: string) => (body += chunk));
          res.on('end', () => resolve({ status: res.statusCode, type: res.headers['content-type'], body }));
        });
        client.on('error', reject);
        client.end('{}');
      });
      const res = await response;
      const ctx = new RequestContext('req-stalled', 'POST', '/v1/chat/completions', process.hrtime.bigint(), null, true);
      const reply = replyOver(res);
      const relay = newRelay();
      const out = relay.open(ctx, reply, OPENAI_STREAM, 60);
      expect(ctx.status).toBe(200);
      relay.fail(ctx, out, new UpstreamError('stalled', 'openai', 'no data in time'));
      const { status, type, body } = await answered;
      expect([status, type]).toEqual([200, 'text/event-stream; charset=utf-8']);
      // The error event alone: no event of the failed attempts, no [DONE].
      expect(body.split('\n\n').filter((frame) => frame !== '')).toHaveLength(1);
      expect(JSON.parse(body.replace(/^data: /, ''))).toMatchObject({ error: { code: 'upstream_timeout' } });
      expect([ctx.status, ctx.failure]).toEqual([504, 'timeout']);
    } finally {
      server.close();
    }
  });
});

describe('SseRelay writes', () => {
  /** A served request whose response the test gets, and the raw bytes (chunked framing included) its client reads. */
  async function served(): Promise<{ server: Server; res: ServerResponse; raw: Promise<string> }> {
    let handed: (res: ServerResponse) => void = () => undefined;
    const response = new Promise<ServerResponse>((resolve) => (handed = resolve));
    const { server, port } = await listening((res) => handed(res));
    const socket = connect(port, '127.0.0.1');
    socket.write('POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}');
    let raw = '';
    socket.setEncoding('latin1');
    socket.on('data', (chunk: string) => (raw += chunk));
    const ended = once(socket, 'close').then(() => raw);
    return { server, res: await response, raw: ended };
  }

  it('writes the events read with the first of a turn together, in one write and one HTTP chunk', async () => {
    const { server, res, raw } = await served();
    try {
      const ctx = new RequestContext('req-batch', 'POST', '/v1/chat/completions', process.hrtime.bigint(), null, true);
      const relay = newRelay();
      const write = jest.spyOn(res, 'write');
      const events: StreamEvent[] = [
        { data: '{"n":1}', text: 'a' },
        { data: null, usage: { prompt_tokens: 1, completion_tokens: 2, total_tokens: 3 } },
        { data: '{"n":2}', text: 'b' },
        { event: 'named', data: '{"n":3}' },
      ];
      // Read together (one upstream read), then the upstream's end a turn of the event loop later.
      let next = 0;
      const together: ChatStream = {
        events: {
          [Symbol.asyncIterator]: () => ({
            next: () =>
              next < events.length
                ? Promise.resolve({ value: events[next++], done: false })
                : new Promise((resolve) => setImmediate(() => resolve({ value: undefined, done: true }))),
          }),
        },
      };
      await relay.relay(ctx, together, relay.open(ctx, replyOver(res), OPENAI_STREAM, 60), () => 7);
      // The first at once, the others read with it together.
      const first = 'data: {"n":1}\n\n';
      const rest = 'data: {"n":2}\n\nevent: named\ndata: {"n":3}\n\n';
      expect(write.mock.calls.map((call) => call[0] as unknown)).toEqual([first, rest]);
      const body = (await raw).split('\r\n\r\n').slice(1).join('\r\n\r\n');
      const hex = (text: string): string => Buffer.byteLength(text).toString(16);
      const chunk = (text: string): string => `${hex(text)}\r\n${text}\r\n`;
      expect(body).toBe(`${chunk(first)}${chunk(rest)}${chunk('data: [DONE]\n\n')}0\r\n\r\n`);
    } finally {
      server.close();
    }
  });

  it('writes the events queued in a turn before the error event of an upstream that fails in that turn, and nothing after it', async () => {
    const { server, res, raw } = await served();
    try {
      const ctx = new RequestContext('req-batch-fail', 'POST', '/v1/chat/completions', process.hrtime.bigint(), null, true);
      const relay = newRelay();
      const events: StreamEvent[] = [{ data: '{"n":1}' }, { data: '{"n":2}' }, { data: '{"n":3}' }];
      // All read in one turn, the upstream's failure with them.
      let next = 0;
      const failing: ChatStream = {
        events: {
          [Symbol.asyncIterator]: () => ({
            next: () =>
              next < events.length
                ? Promise.resolve({ value: events[next++], done: false })
                : Promise.reject(new UpstreamError('connection_lost', 'openai', 'cut')),
          }),
        },
      };
      await relay.relay(ctx, failing, relay.open(ctx, replyOver(res), OPENAI_STREAM, 60), () => 7);
      const body = await raw;
      const frames = [...body.matchAll(/data: (\{[^\n]*\})\n\n/g)].map((m) => JSON.parse(m[1]) as Record<string, unknown>);
      expect(frames.slice(0, 3)).toEqual([{ n: 1 }, { n: 2 }, { n: 3 }]);
      expect(frames).toHaveLength(4);
      expect(frames[3]).toMatchObject({ error: { code: 'upstream_error' } });
      expect(body.endsWith('0\r\n\r\n')).toBe(true);
      expect(ctx.failure).toBe('upstream');
    } finally {
      server.close();
    }
  });

  it('writes each event as it comes when the upstream sends them apart', async () => {
    const { server, res, raw } = await served();
    try {
      const ctx = new RequestContext('req-apart', 'POST', '/v1/chat/completions', process.hrtime.bigint(), null, true);
      const relay = newRelay();
      const write = jest.spyOn(res, 'write');
      const events: StreamEvent[] = [{ data: '{"n":1}' }, { data: '{"n":2}' }];
      let next = 0;
      const apart: ChatStream = {
        events: {
          [Symbol.asyncIterator]: () => ({
            next: () =>
              new Promise((resolve) =>
                setImmediate(() =>
                  resolve(next < events.length ? { value: events[next++], done: false } : { value: undefined, done: true }),
                ),
              ),
          }),
        },
      };
      await relay.relay(ctx, apart, relay.open(ctx, replyOver(res), OPENAI_STREAM, 60), () => 7);
      expect(write.mock.calls.map((call) => call[0] as unknown)).toEqual(['data: {"n":1}\n\n', 'data: {"n":2}\n\n']);
      expect(await raw).toContain('data: {"n":1}\n\n\r\n');
    } finally {
      server.close();
    }
  });

  it('stops reading the upstream while a client that does not read has a full buffer', async () => {
    let handed: (res: ServerResponse) => void = () => undefined;
    const response = new Promise<ServerResponse>((resolve) => (handed = resolve));
    const { server, port } = await listening((res) => handed(res));
    const socket = connect(port, '127.0.0.1');
    socket.write('POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}');
    socket.pause();
    const res = await response;
    try {
      const ctx = new RequestContext('req-unread', 'POST', '/v1/chat/completions', process.hrtime.bigint(), null, true);
      const relay = newRelay();
      // An endless upstream of 64 KB events, a few read together each time.
      const data = JSON.stringify({ text: 'x'.repeat(64 * 1024) });
      let pulled = 0;
      const endless: ChatStream = {
        events: {
          [Symbol.asyncIterator]: () => ({
            next: () =>
              pulled++ % 4 === 0
                ? new Promise((resolve) => setImmediate(() => resolve({ value: { data }, done: false })))
                : Promise.resolve({ value: { data }, done: false }),
          }),
        },
      };
      const relayed = relay.relay(ctx, endless, relay.open(ctx, replyOver(res), OPENAI_STREAM, 60), () => 7);
      await new Promise((resolve) => setTimeout(resolve, 300));
      const held = pulled;
      await new Promise((resolve) => setTimeout(resolve, 300));
      // Waiting for the client: nothing more read (what went out is in the socket buffers).
      expect(pulled).toBe(held);
      ctx.abort.abort();
      socket.destroy();
      await relayed;
    } finally {
      server.close();
    }
  });
});
