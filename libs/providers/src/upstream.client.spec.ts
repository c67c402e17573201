import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { GatewayConfig } from '@keygate/config';
import { MetricsService } from '@keygate/observability';
import { readText } from './upstream-body.util';
import { ClientAbortedError, UpstreamClient } from './upstream.client';
import { UpstreamError } from './upstream.error';

/** A local upstream whose handler is `handle`; resolves its base URL. */
async function upstream(server: Server): Promise<string> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

function client(totalMs: number): UpstreamClient {
  return new UpstreamClient(
    { upstream: { connectMs: 1_000, ttfbMs: 5_000, idleMs: 5_000, totalMs } } as unknown as GatewayConfig,
    new MetricsService(),
  );
}

async function rejection(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (error) {
    return error;
  }
  throw new Error('expected a rejection');
}

describe('UpstreamClient aborts', () => {
  let server: Server;
  let base: string;
  const open: ServerResponse[] = [];

  beforeAll(async () => {
    server = createServer((req: IncomingMessage, res: ServerResponse) => {
      req.resume();
      open.push(res);
      // /headers answers its head and one chunk, then holds the body; anything else holds the head.
      if (req.url === '/headers') {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.write('{"partial":');
      }
    });
    base = await upstream(server);
  });

  afterEach(() => {
    for (const res of open.splice(0)) res.destroy();
  });

  afterAll(async () => {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  });

  it('fails a call waiting for headers with ClientAbortedError when the client leaves', async () => {
    const c = client(10_000);
    try {
      const clientSignal = new AbortController();
      const sent = c.send({ provider: 'openai', url: `${base}/wait`, headers: {}, body: '{}', signal: clientSignal.signal });
      setTimeout(() => clientSignal.abort(), 50);
      expect(await rejection(sent)).toBeInstanceOf(ClientAbortedError);
    } finally {
      await c.onApplicationShutdown();
    }
  });

  it('fails a call whose client left before it was sent, without waiting', async () => {
    const c = client(10_000);
    try {
      const clientSignal = new AbortController();
      clientSignal.abort();
      const sent = c.send({ provider: 'openai', url: `${base}/wait`, headers: {}, body: '{}', signal: clientSignal.signal });
      expect(await rejection(sent)).toBeInstanceOf(ClientAbortedError);
    } finally {
      await c.onApplicationShutdown();
    }
  });

  it('fails a call waiting for headers at the total timeout, as total_timeout before its headers', async () => {
    const c = client(100);
    try {
      const sent = c.send({ provider: 'openai', url: `${base}/wait`, headers: {}, body: '{}', signal: new AbortController().signal });
      const error = await rejection(sent);
      expect(error).toBeInstanceOf(UpstreamError);
      expect(error).toMatchObject({ kind: 'total_timeout', beforeHeaders: true });
    } finally {
      await c.onApplicationShutdown();
    }
  });

  it('fails the read of a body at the total timeout or the client leaving, each as itself', async () => {
    const c = client(150);
    try {
      const timed = await c.send({ provider: 'openai', url: `${base}/headers`, headers: {}, signal: new AbortController().signal });
      expect(timed.signal.signal.aborted).toBe(false);
      expect(await rejection(readText(timed, 'openai'))).toMatchObject({ kind: 'total_timeout', beforeHeaders: false });
      expect(timed.signal.timedOut()).toBe(true);
      expect(timed.signal.clientAborted()).toBe(false);
      // The AbortSignal a caller asks for after the fact is aborted, with the same reason.
      expect(timed.signal.signal.aborted).toBe(true);
      expect(timed.signal.signal.reason).toMatchObject({ kind: 'total_timeout' });

      const clientSignal = new AbortController();
      const left = await c.send({ provider: 'openai', url: `${base}/headers`, headers: {}, signal: clientSignal.signal });
      const mirror = left.signal.signal;
      setTimeout(() => clientSignal.abort(), 20);
      expect(await rejection(readText(left, 'openai'))).toBeInstanceOf(ClientAbortedError);
      expect(left.signal.clientAborted()).toBe(true);
      // One asked for before the abort follows it.
      expect(mirror.aborted).toBe(true);
      expect(mirror.reason).toBeInstanceOf(ClientAbortedError);
    } finally {
      await c.onApplicationShutdown();
    }
  });

  it("leaves no listener on the client's signal once a call is done", async () => {
    const c = client(10_000);
    try {
      const clientSignal = new AbortController();
      const added = jest.spyOn(clientSignal.signal, 'addEventListener');
      const removed = jest.spyOn(clientSignal.signal, 'removeEventListener');
      const res = await c.send({ provider: 'openai', url: `${base}/headers`, headers: {}, signal: clientSignal.signal });
      res.signal.dispose();
      res.body.destroy();
      expect(added).toHaveBeenCalledTimes(1);
      expect(removed).toHaveBeenCalledWith('abort', added.mock.calls[0][1]);
    } finally {
      await c.onApplicationShutdown();
    }
  });
});
