import { AnthropicNativeStream, messageText, messageUsage } from './anthropic.native';
import { CACHE_WRITE_1H_TOKENS, CACHE_WRITE_TOKENS } from './chat.types';
import { UpstreamError } from './upstream.error';

function sse(event: string | undefined, data: unknown): { event?: string; data: string; id?: string } {
  return { event, data: typeof data === 'string' ? data : JSON.stringify(data) };
}

describe('AnthropicNativeStream', () => {
  it('tells onContainer, once, of the code execution container a stream names (message_start or message_delta)', async () => {
    const containers: string[] = [];
    const stream = new AnthropicNativeStream({
      onContainer: (id) => {
        containers.push(id);
        return Promise.resolve();
      },
    });
    stream.push(sse('message_start', { type: 'message_start', message: { id: 'msg_c', container: null, usage: {} } }));
    expect(stream.takeRecording()).toBeUndefined();
    const delta = { stop_reason: 'end_turn', container: { id: 'container_1', expires_at: '2026-12-08T00:00:00Z' } };
    stream.push(sse('message_delta', { type: 'message_delta', delta, usage: { output_tokens: 2 } }));
    await stream.takeRecording();
    stream.push(sse('message_delta', { type: 'message_delta', delta, usage: { output_tokens: 3 } }));
    expect(stream.takeRecording()).toBeUndefined();
    expect(containers).toEqual(['container_1']);
  });

  it('tells onMessage the answer’s id at message_start (before it goes on) and its usage at message_stop, given or made up', async () => {
    const noted: Array<[string, unknown]> = [];
    let release: () => void = () => undefined;
    const stream = new AnthropicNativeStream({
      onMessage: (id, usage) => {
        noted.push([id, usage]);
        return new Promise<void>((resolve) => (release = resolve));
      },
    });
    stream.push(sse('message_start', { type: 'message_start', message: { id: 'msg_t', usage: { input_tokens: 7, output_tokens: 1 } } }));
    expect(noted).toEqual([['msg_t', null]]);
    const recording = stream.takeRecording();
    expect(recording).toBeInstanceOf(Promise);
    expect(stream.takeRecording()).toBeUndefined();
    release();
    await recording;
    stream.push(sse('message_delta', { type: 'message_delta', delta: { stop_reason: 'end_turn' }, usage: { output_tokens: 3 } }));
    expect(stream.takeRecording()).toBeUndefined();
    // The host leaves message_stop out: the one keygate gives records the usage too.
    stream.end();
    expect(noted[1]).toEqual(['msg_t', { prompt_tokens: 7, completion_tokens: 3, total_tokens: 10 }]);
    // Without an id nothing is told.
    const anonymous: string[] = [];
    const other = new AnthropicNativeStream({ onMessage: (id) => void anonymous.push(id) });
    other.push(sse('message_start', { type: 'message_start', message: { usage: { input_tokens: 1 } } }));
    other.push(sse('message_stop', { type: 'message_stop' }));
    expect(anonymous).toEqual([]);
  });

  it('passes every event on with its name and data as sent, reading usage and text on the way', () => {
    const stream = new AnthropicNativeStream();
    const start = sse('message_start', {
      type: 'message_start',
      message: {
        id: 'msg_1',
        type: 'message',
        role: 'assistant',
        content: [],
        usage: { input_tokens: 10, cache_read_input_tokens: 5, output_tokens: 1 },
      },
    });
    expect(stream.push(start)).toEqual({
      event: 'message_start',
      data: start.data,
      runningUsage: { prompt_tokens: 15, completion_tokens: 1, total_tokens: 16, prompt_tokens_details: { cached_tokens: 5 } },
    });
    expect(
      stream.push(sse('content_block_start', { type: 'content_block_start', index: 0, content_block: { type: 'text', text: '' } })),
    ).toEqual({
      event: 'content_block_start',
      data: expect.any(String) as unknown,
    });
    expect(stream.push(sse('ping', { type: 'ping' }))).toMatchObject({ event: 'ping' });
    expect(
      stream.push(sse('content_block_delta', { type: 'content_block_delta', index: 0, delta: { type: 'text_delta', text: 'Hi' } })),
    ).toMatchObject({
      text: 'Hi',
    });
    expect(
      stream.push(
        sse('content_block_delta', { type: 'content_block_delta', index: 1, delta: { type: 'thinking_delta', thinking: 'hmm' } }),
      ),
    ).toMatchObject({ text: 'hmm' });
    expect(
      stream.push(
        sse('content_block_delta', { type: 'content_block_delta', index: 2, delta: { type: 'input_json_delta', partial_json: '{"a"' } }),
      ),
    ).toMatchObject({ text: '{"a"' });
    // message_delta's counts are cumulative: they replace message_start's.
    expect(
      stream.push(sse('message_delta', { type: 'message_delta', delta: { stop_reason: 'end_turn' }, usage: { output_tokens: 7 } })),
    ).toMatchObject({
      runningUsage: { prompt_tokens: 15, completion_tokens: 7 },
    });
    expect(stream.stopped).toBe(false);
    expect(stream.push(sse('message_stop', { type: 'message_stop' }))).toMatchObject({
      event: 'message_stop',
      usage: { prompt_tokens: 15, completion_tokens: 7, total_tokens: 22 },
    });
    expect(stream.stopped).toBe(true);
    expect(() => stream.end()).not.toThrow();
  });

  it('passes an event type it does not know on unchanged (Anthropic may add some)', () => {
    const event = sse('content_block_citation', { type: 'content_block_citation', index: 0, extra: [1, 2] });
    expect(new AnthropicNativeStream().push(event)).toEqual({ event: 'content_block_citation', data: event.data });
  });

  it('names an event by its data’s type when the upstream sent no event field, and writes multi-line data back as one line', () => {
    const out = new AnthropicNativeStream().push({ data: '{"type":"ping",\n"x":1}' });
    expect(out).toEqual({ event: 'ping', data: '{"type":"ping","x":1}' });
  });

  it('throws an in-stream error with the status its type stands for (overloaded = 529, retried like it)', () => {
    const error = (() => {
      try {
        new AnthropicNativeStream().push(sse('error', { type: 'error', error: { type: 'overloaded_error', message: 'Overloaded' } }));
      } catch (e) {
        return e;
      }
      return undefined;
    })();
    expect(error).toBeInstanceOf(UpstreamError);
    expect(error).toMatchObject({ kind: 'stream_error', status: 529, retryable: true });
  });

  it('refuses data that is not a JSON object as a protocol error', () => {
    expect(() => new AnthropicNativeStream().push(sse('message_start', '[1]'))).toThrow(UpstreamError);
    expect(() => new AnthropicNativeStream().push(sse('message_start', 'not json'))).toThrow(/not JSON/);
  });

  it('reports no usage at message_stop when the upstream reported none (keygate estimates it, rather than billing 0)', () => {
    const stream = new AnthropicNativeStream();
    stream.push(sse('message_start', { type: 'message_start', message: { id: 'm', content: [] } }));
    stream.push(sse('message_delta', { type: 'message_delta', delta: { stop_reason: 'end_turn' } }));
    const stop = stream.push(sse('message_stop', { type: 'message_stop' }));
    expect(stop).toEqual({ event: 'message_stop', data: '{"type":"message_stop"}' });
    // An empty usage object reports nothing either: no running usage of zeros.
    const empty = new AnthropicNativeStream();
    expect(empty.push(sse('message_start', { type: 'message_start', message: { id: 'm', content: [], usage: {} } }))).not.toHaveProperty(
      'runningUsage',
    );
    expect(empty.push(sse('message_delta', { type: 'message_delta', delta: {}, usage: { output_tokens: null } }))).not.toHaveProperty(
      'runningUsage',
    );
    expect(stream.stopped).toBe(true);
  });

  it('calls a body that ends before message_stop a truncated answer', () => {
    const stream = new AnthropicNativeStream();
    stream.push(sse('message_start', { type: 'message_start', message: { usage: { input_tokens: 1 } } }));
    expect(() => stream.end()).toThrow(/without message_stop/);
  });

  it('takes a body that ends after message_delta gave the stop reason for whole, and gives the message_stop left out, with the usage', () => {
    const stream = new AnthropicNativeStream();
    stream.push(sse('message_start', { type: 'message_start', message: { usage: { input_tokens: 10, output_tokens: 1 } } }));
    stream.push(sse('message_delta', { type: 'message_delta', delta: { stop_reason: 'end_turn' }, usage: { output_tokens: 7 } }));
    expect(stream.end()).toEqual([
      {
        event: 'message_stop',
        data: '{"type":"message_stop"}',
        usage: expect.objectContaining({ prompt_tokens: 10, completion_tokens: 7 }),
      },
    ]);
    expect(stream.end()).toEqual([]);
    // A message_delta without a stop reason (usage alone) does not end the answer.
    const cut = new AnthropicNativeStream();
    cut.push(sse('message_delta', { type: 'message_delta', delta: {}, usage: { output_tokens: 3 } }));
    expect(() => cut.end()).toThrow(/without message_stop/);
  });
});

/* A compatible host's counts come as it wrote them (JSON carries no NaN or Infinity). */
describe('AnthropicNativeStream with counts that are not counts', () => {
  const start = (usage: Record<string, unknown>): { event?: string; data: string } =>
    sse('message_start', { type: 'message_start', message: { id: 'm', content: [], usage } });
  const delta = (usage: Record<string, unknown>): { event?: string; data: string } =>
    sse('message_delta', { type: 'message_delta', delta: { stop_reason: 'end_turn' }, usage });

  it.each(['12', -1, 1.5, 2 ** 53])('reports no usage, running or final, when the only input count is %p (keygate estimates it)', (bad) => {
    const stream = new AnthropicNativeStream();
    expect(stream.push(start({ input_tokens: bad, output_tokens: 1 }))).not.toHaveProperty('runningUsage');
    expect(stream.push(delta({ output_tokens: 3 }))).not.toHaveProperty('runningUsage');
    expect(stream.push(sse('message_stop', { type: 'message_stop' }))).not.toHaveProperty('usage');
  });

  // A string was never merged (only numbers were); these are the numbers that are not counts.
  it.each([-1, 1.5, 2 ** 53])('takes no %p in message_delta over the counts message_start reported, main and cache counts alike', (bad) => {
    const stream = new AnthropicNativeStream();
    stream.push(start({ input_tokens: 10, cache_creation_input_tokens: 4, output_tokens: 1 }));
    const usage = { prompt_tokens: 14, completion_tokens: 3, total_tokens: 17 };
    expect(stream.push(delta({ input_tokens: bad, cache_creation_input_tokens: bad, output_tokens: 3 })).runningUsage).toStrictEqual(usage);
    const stop = stream.push(sse('message_stop', { type: 'message_stop' }));
    expect(stop.usage).toStrictEqual(usage);
    expect(stop.usage?.[CACHE_WRITE_TOKENS]).toBe(4);
  });
});

describe('messageUsage and messageText', () => {
  it('read a whole answer’s usage (cache tokens included, as OpenAI counts them) and its text, thinking and tool input', () => {
    const message = {
      usage: { input_tokens: 3, cache_creation_input_tokens: 4, output_tokens: 9 },
      content: [
        { type: 'thinking', thinking: 'Let me see. ' },
        { type: 'text', text: 'Calling. ' },
        { type: 'tool_use', id: 't', name: 'f', input: { city: 'Paris' } },
      ],
    };
    expect(messageUsage(message)).toEqual({ prompt_tokens: 7, completion_tokens: 9, total_tokens: 16 });
    expect(messageText(message)).toBe('Let me see. Calling. {"city":"Paris"}');
  });

  it('keep the cache writes, and those made for an hour, beside the usage (never in its JSON)', () => {
    const usage = messageUsage({
      usage: {
        input_tokens: 3,
        cache_creation_input_tokens: 40,
        cache_read_input_tokens: 5,
        cache_creation: { ephemeral_5m_input_tokens: 30, ephemeral_1h_input_tokens: 10 },
        output_tokens: 2,
      },
    });
    expect(usage?.[CACHE_WRITE_TOKENS]).toBe(40);
    expect(usage?.[CACHE_WRITE_1H_TOKENS]).toBe(10);
    expect(JSON.parse(JSON.stringify(usage))).toEqual({
      prompt_tokens: 48,
      completion_tokens: 2,
      total_tokens: 50,
      prompt_tokens_details: { cached_tokens: 5 },
    });
    // An older answer without the split: the writes, none said to be an hour's.
    expect(messageUsage({ usage: { input_tokens: 1, cache_creation_input_tokens: 4 } })?.[CACHE_WRITE_1H_TOKENS]).toBeUndefined();
  });

  it.each(['3', -3, 3.5, NaN, Infinity, 2 ** 53])(
    'give null usage for an answer whose output count is %p, and leave out such a cache count',
    (bad) => {
      expect(messageUsage({ usage: { input_tokens: 3, output_tokens: bad } } as never)).toBeNull();
      const usage = messageUsage({
        usage: { input_tokens: 3, cache_read_input_tokens: bad, cache_creation_input_tokens: bad, output_tokens: 2 },
      } as never);
      expect(usage).toStrictEqual({ prompt_tokens: 3, completion_tokens: 2, total_tokens: 5 });
      expect(usage?.[CACHE_WRITE_TOKENS]).toBeUndefined();
    },
  );

  it('give null usage and no text for an answer without them', () => {
    expect(messageUsage({})).toBeNull();
    expect(messageText({ content: 'nope' } as never)).toBe('');
  });
});
