import { createServer, type ServerResponse } from 'node:http';
import { connect, type AddressInfo } from 'node:net';
import { Writable } from 'node:stream';
import { endStream } from './stream-end';

/** A real Writable whose destination takes bytes only when told to: a client that stopped reading. */
function stalledClient(): { res: Writable; received: string[]; resume: () => void } {
  const received: string[] = [];
  let pending: (() => void) | undefined;
  const res = new Writable({
    highWaterMark: 1,
    write(chunk: Buffer, _encoding, callback) {
      received.push(chunk.toString());
      pending = callback;
    },
  });
  return { res, received, resume: () => pending?.() };
}

describe('endStream', () => {
  // Only setTimeout's clock is faked: the stream's own events come on real ticks.
  beforeEach(() => jest.useFakeTimers({ doNotFake: ['nextTick', 'setImmediate', 'queueMicrotask'] }));
  afterEach(() => jest.useRealTimers());

  it('destroys a response whose last bytes a client never reads, after the grace', () => {
    const { res, received } = stalledClient();
    endStream(res, 'data: [DONE]\n\n', 5_000);
    expect(received).toEqual(['data: [DONE]\n\n']);
    jest.advanceTimersByTime(4_999);
    expect(res.destroyed).toBe(false);
    jest.advanceTimersByTime(1);
    expect(res.destroyed).toBe(true);
    expect(res.writableFinished).toBe(false);
  });

  it('leaves alone a response that finishes within the grace', async () => {
    const { res, resume } = stalledClient();
    const finished = jest.fn();
    res.on('finish', finished);
    endStream(res, 'data: {"error":{}}\n\n', 5_000);
    resume();
    await new Promise((resolve) => setImmediate(resolve));
    expect(finished).toHaveBeenCalledTimes(1);
    expect(res.writableFinished).toBe(true);
    // The grace timer went with the finish: nothing is left to cut the connection later.
    expect(jest.getTimerCount()).toBe(0);
  });

  it('writes nothing to a response already destroyed (the client left)', () => {
    const { res, received } = stalledClient();
    res.destroy();
    endStream(res, 'data: [DONE]\n\n');
    expect(received).toEqual([]);
    expect(jest.getTimerCount()).toBe(0);
  });

  it('resets the connection of a real client that stopped reading (RST: the unread megabytes are dropped, not held)', async () => {
    jest.useRealTimers();
    let res: ServerResponse | undefined;
    const server = createServer((_req, response) => {
      res = response;
      response.writeHead(200, { 'content-type': 'text/event-stream' });
      // Far more than the socket buffers hold: most of it stays unsent.
      const chunk = `data: ${'x'.repeat(64 * 1024)}\n\n`;
      for (let i = 0; i < 200; i++) response.write(chunk);
      endStream(response, 'data: [DONE]\n\n', 200);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const { port } = server.address() as AddressInfo;
      // Reads nothing until the server has given up on it, then counts what still reaches it: after
      // a FIN the kernel delivers every byte it had queued (~4 MB here), after a RST none.
      const received = await new Promise<number>((resolve) => {
        let bytes = 0;
        const client = connect(port, '127.0.0.1', () => client.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n'));
        client.pause();
        client.on('data', (chunk: Buffer) => (bytes += chunk.length));
        client.on('error', () => undefined);
        client.on('close', () => resolve(bytes));
        setTimeout(() => client.resume(), 1_000);
      });
      expect(received).toBeLessThan(1024 * 1024);
      expect(res?.destroyed).toBe(true);
    } finally {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    }
  });
});
