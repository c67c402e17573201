import { EventEmitter } from 'node:events';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { Exchange } from './mock.exchange';
import { MockStats } from './mock.stats';

class FakeResponse extends EventEmitter {
  writableFinished = false;
  socket = null;
  destroy(): void {
    this.emit('close');
  }
}

function makeExchange(): { ex: Exchange; res: FakeResponse; stats: MockStats } {
  const stats = new MockStats();
  const res = new FakeResponse();
  const req = new EventEmitter() as unknown as IncomingMessage;
  const ex = new Exchange(req, res as unknown as ServerResponse, 'openai.chat', 'alt=sse&key=k', stats);
  return { ex, res, stats };
}

describe('Exchange', () => {
  afterEach(() => jest.useRealTimers());

  it('clears pending timers and resolves waits with false when the client goes away', async () => {
    jest.useFakeTimers();
    const { ex, res, stats } = makeExchange();
    const pending = [ex.wait(60_000), ex.wait(5_000)];
    expect(jest.getTimerCount()).toBe(2);
    expect(stats.snapshot().active).toBe(1);

    res.emit('close');

    await expect(Promise.all(pending)).resolves.toEqual([false, false]);
    expect(jest.getTimerCount()).toBe(0);
    expect(ex.closed).toBe(true);
    expect(stats.snapshot()).toMatchObject({ aborted: 1, active: 0 });
    await expect(ex.wait(10)).resolves.toBe(false);
  });

  it('resolves waits with true when the timer fires', async () => {
    jest.useFakeTimers();
    const { ex } = makeExchange();
    const p = ex.wait(100);
    jest.advanceTimersByTime(100);
    await expect(p).resolves.toBe(true);
    expect(jest.getTimerCount()).toBe(0);
  });

  it('does not count a normally finished response as aborted', () => {
    const { res, stats } = makeExchange();
    res.writableFinished = true;
    res.emit('close');
    expect(stats.snapshot()).toMatchObject({ aborted: 0, active: 0 });
  });

  it('does not count its own cut as a client abort', () => {
    const { ex, stats } = makeExchange();
    ex.cut();
    expect(stats.snapshot()).toMatchObject({ aborted: 0, active: 0 });
  });

  it('parses the query lazily', () => {
    const { ex } = makeExchange();
    expect(ex.queryParam('alt')).toBe('sse');
    expect(ex.queryParam('key')).toBe('k');
    expect(ex.queryParam('nope')).toBeNull();
  });
});
