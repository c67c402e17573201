import { once } from 'node:events';
import { createServer, request as httpRequest, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { GatewayConfig } from '@keygate/config';
import { JsonLogger, MetricsService, RequestContext } from '@keygate/observability';
import type { ChatStream, StreamEvent } from '@keygate/providers';
import type { FastifyReply } from 'fastify';
import { OPENAI_STREAM, SseRelay } from './sse-relay';

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

/** A server whose one request's response is handed to the test once its client has closed the connection. */
async function responseOfAGoneClient(): Promise<{ server: Server; res: ServerResponse }> {
  let handed: (res: ServerResponse) => void = () => undefined;
  const closed = new Promise<ServerResponse>((resolve) => (handed = resolve));
  const server = createServer((_req: IncomingMessage, res: ServerResponse) => res.once('close', () => handed(res)));
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const client = httpRequest({ host: '127.0.0.1', port: (server.address() as AddressInfo).port, method: 'POST', path: '/' });
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
      const reply = { hijack: () => undefined, raw: res, getHeaders: () => ({}) } as unknown as FastifyReply;
      const relay = new SseRelay(config, new MetricsService(), new JsonLogger('error', undefined, () => undefined));
      await relay.relay(
        ctx,
        stream([{ data: '{"choices":[]}' }, { data: '{"choices":[]}', text: 'Hello' }]),
        reply,
        OPENAI_STREAM,
        60,
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
