import type { ChatStream, StreamEvent } from '@keygate/providers';
import { primed } from './primed-stream';

const role: StreamEvent = { data: '{"role":"assistant"}' };
const content: StreamEvent = { data: '{"content":"hi"}', text: 'hi' };

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
    const stream = await primed({ events: events() });
    expect(reads).toBe(2); // the role chunk and the first content, nothing after
    expect(await all(stream)).toEqual([role.data, content.data, '{"content":"!"}']);
  });

  it('keeps the headers the upstream answered with, for the client’s response head', async () => {
    async function* events(): AsyncGenerator<StreamEvent> {
      await upstream();
      yield content;
    }
    const stream = await primed({ events: events(), headers: { 'request-id': 'req_1' } });
    expect(stream.headers).toEqual({ 'request-id': 'req_1' });
    expect(await all(stream)).toEqual([content.data]);
  });

  it('fails the attempt when the provider’s error comes before any content (so it can be retried)', async () => {
    async function* events(): AsyncGenerator<StreamEvent> {
      await upstream();
      yield role;
      throw new Error('overloaded');
    }
    await expect(primed({ events: events() })).rejects.toThrow('overloaded');
  });

  it('hands the usage the upstream reported before failing to onUsage (those events are never replayed)', async () => {
    const running = { prompt_tokens: 10, completion_tokens: 1, total_tokens: 11 };
    async function* events(): AsyncGenerator<StreamEvent> {
      await upstream();
      yield { data: '{"role":"assistant"}', runningUsage: running };
      throw new Error('client left');
    }
    const seen: unknown[] = [];
    await expect(primed({ events: events() }, (usage) => seen.push(usage))).rejects.toThrow('client left');
    expect(seen).toEqual([running]);

    // Nothing reported: nothing handed on.
    async function* bare(): AsyncGenerator<StreamEvent> {
      await upstream();
      yield role;
      throw new Error('overloaded');
    }
    await expect(primed({ events: bare() }, (usage) => seen.push(usage))).rejects.toThrow('overloaded');
    expect(seen).toHaveLength(1);
  });

  it('hands the stream on after 2 s without content (a model still thinking), the read in progress included', async () => {
    jest.useFakeTimers();
    let release: () => void = () => undefined;
    const gate = new Promise<void>((resolve) => (release = resolve));
    async function* events(): AsyncGenerator<StreamEvent> {
      yield role;
      await gate;
      yield content;
    }
    let done = false;
    const priming = primed({ events: events() }).then((s) => {
      done = true;
      return s;
    });
    await jest.advanceTimersByTimeAsync(1_900);
    expect(done).toBe(false);
    await jest.advanceTimersByTimeAsync(200);
    expect(done).toBe(true);
    release();
    expect(await all(await priming)).toEqual([role.data, content.data]);
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
    const stream = await primed({ events: events() });
    for await (const event of stream.events) if (event.text) break;
    expect(released).toBe(true);
  });
});
