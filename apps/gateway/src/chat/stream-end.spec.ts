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
});
