import { once } from 'node:events';
import { createServer, request as httpRequest, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { answerAfterBody } from './refused-body';

/*
 * A real HTTP server on 127.0.0.1 whose handler refuses every body without reading it, as Fastify
 * does for one above its limit, and answers through answerAfterBody.
 */

interface Seen {
  /** Whether the whole body had arrived when the answer went. */
  complete: boolean;
  /** Milliseconds from the request's arrival to its answer. */
  afterMs: number;
}

let server: Server;
let port: number;
let options: { signal?: AbortSignal; maxBytes?: number; maxMs?: number } = {};
const seen: Seen[] = [];

beforeAll(async () => {
  server = createServer((req, res) => {
    const arrived = performance.now();
    answerAfterBody(
      req,
      () => {
        seen.push({ complete: req.complete, afterMs: performance.now() - arrived });
        res.writeHead(413, { 'content-type': 'application/json', connection: 'close' }).end('{"error":"too large"}');
      },
      options,
    );
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  port = (server.address() as AddressInfo).port;
});

afterAll(async () => {
  server.closeAllConnections();
  server.close();
  await once(server, 'close');
});

beforeEach(() => {
  options = {};
  seen.length = 0;
});

/** Uploads `chunks` chunks of `size` bytes, a turn of the event loop apart, then stops (`end: false`) or ends. */
async function upload(chunks: number, size: number, end = true): Promise<{ status?: number; body?: string; error?: string }> {
  const req = httpRequest({ host: '127.0.0.1', port, method: 'POST', path: '/', headers: { 'content-type': 'application/json' } });
  const response = new Promise<{ status?: number; body?: string; error?: string }>((resolve) => {
    req.on('response', (res: IncomingMessage) => {
      let body = '';
      res.setEncoding('utf8').on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode, body }));
    });
    req.on('error', (error: NodeJS.ErrnoException) => resolve({ error: error.code ?? error.message }));
  });
  const closed = once(req, 'close');
  for (let i = 0; i < chunks && !req.destroyed; i++) {
    if (!req.write(Buffer.alloc(size, 0x61))) await Promise.race([once(req, 'drain'), closed]);
    await new Promise((resolve) => setImmediate(resolve));
  }
  if (end) req.end();
  const result = await response;
  req.destroy();
  return result;
}

describe('answerAfterBody', () => {
  it('answers once the whole refused body has arrived, so the client reads the answer', async () => {
    const result = await upload(20, 64 * 1024);
    expect(result).toEqual({ status: 413, body: '{"error":"too large"}' });
    expect(seen).toMatchObject([{ complete: true }]);
  });

  it('answers at once when the body had already arrived', () => {
    const req = { complete: true, destroyed: false } as IncomingMessage;
    const answered: string[] = [];
    answerAfterBody(req, () => answered.push('now'));
    expect(answered).toEqual(['now']);
  });

  it('stops reading a body beyond its byte bound and answers then', async () => {
    options = { maxBytes: 64 * 1024 };
    await upload(64, 16 * 1024);
    expect(seen).toMatchObject([{ complete: false }]);
  });

  it('answers a body that stops arriving once its wait is over', async () => {
    options = { maxMs: 200 };
    const result = await upload(2, 1024, false);
    expect(result.status).toBe(413);
    expect(seen).toMatchObject([{ complete: false }]);
    // It waited: the answer did not go when the request arrived (a timer may fire a millisecond early).
    expect(seen[0].afterMs).toBeGreaterThanOrEqual(190);
  });

  it('answers at once when its request is ended meanwhile (the drain deadline), not after the wait', async () => {
    const ended = new AbortController();
    options = { signal: ended.signal, maxMs: 60_000 };
    const response = upload(2, 1024, false);
    setTimeout(() => ended.abort(), 20);
    expect((await response).status).toBe(413);
    expect(seen).toMatchObject([{ complete: false }]);
  });
});
