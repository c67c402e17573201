import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { generatedText, OpenAiAdapter, withoutUsage, type OpenAiChunk } from './openai.adapter';
import { testUpstreamClient } from './testing/upstream-client';
import type { UpstreamClient } from './upstream.client';
import { UpstreamError } from './upstream.error';
import type { ProviderAccess } from '@keygate/secrets';
import { startMock, type RunningMock } from '../../../apps/mock-upstream/src/mock.testing';

// Unit spec: removing the `usage` member keygate asked OpenAI for, when the client did not; and an
// integration case against a real HTTP server standing in for an OpenAI-compatible host.

const strip = (data: string): string => withoutUsage(data, JSON.parse(data) as OpenAiChunk);

/**
 * A real HTTP server on 127.0.0.1 standing in for an OpenAI-compatible host, started and stopped
 * with the enclosing describe: each request is answered 200 with the SSE body `bodyFor` gives for
 * its path. `baseUrl(prefix)` is the host's `/v1` under that path prefix.
 */
function compatibleHost(bodyFor: (path: string) => string | undefined): { client(): UpstreamClient; baseUrl(prefix?: string): string } {
  let server: Server;
  let client: UpstreamClient;
  let origin = '';
  beforeAll(async () => {
    server = createServer((req, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' }).end(bodyFor(req.url ?? '/'));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    client = testUpstreamClient();
  });
  afterAll(async () => {
    await client.onApplicationShutdown();
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  });
  return { client: () => client, baseUrl: (prefix = '') => `${origin}${prefix}/v1` };
}

describe('withoutUsage', () => {
  it("cuts OpenAI's trailing usage:null and leaves every other byte as sent", () => {
    const data = '{"id":"c1","choices":[{"index":0,"delta":{"content":"caf\\u00e9 ,\\"usage\\":null}"}}],"usage":null}';
    expect(strip(data)).toBe('{"id":"c1","choices":[{"index":0,"delta":{"content":"caf\\u00e9 ,\\"usage\\":null}"}}]}');
    expect(JSON.parse(strip(data))).not.toHaveProperty('usage');
  });

  it('rewrites a chunk whose usage is not the last member', () => {
    expect(strip('{"usage":null,"id":"c2","choices":[]}')).toBe('{"id":"c2","choices":[]}');
  });

  it('does not cut a usage:null that closes a nested object', () => {
    const data = '{"id":"c3","x":{"usage":null}}';
    expect(JSON.parse(strip(data))).toEqual({ id: 'c3', x: { usage: null } });
  });
});

describe('generatedText', () => {
  it('is the text and tool-call argument deltas of every choice', () => {
    expect(generatedText({ choices: [{ delta: { content: 'Hel' } }, { delta: { content: 'lo' } }] })).toBe('Hello');
    const call = { choices: [{ delta: { content: null, tool_calls: [{ index: 0, function: { arguments: '{"city":' } }] } }] };
    expect(generatedText(call)).toBe('{"city":');
  });

  it('is the reasoning and refusal deltas too (OpenAI-compatible reasoning hosts, structured-output refusals): generated output, as their Responses deltas are', () => {
    // vLLM, SGLang and DeepSeek stream a reasoning model's thinking as `reasoning_content`, others as `reasoning`:
    // it comes long before any `content`, and is output the host bills.
    expect(generatedText({ choices: [{ delta: { reasoning_content: 'Let me think' } }] })).toBe('Let me think');
    expect(generatedText({ choices: [{ delta: { reasoning: 'Hmm' } }] })).toBe('Hmm');
    expect(generatedText({ choices: [{ delta: { refusal: 'I cannot' } }] })).toBe('I cannot');
    // An audio answer's transcript, streamed beside its audio data.
    expect(generatedText({ choices: [{ delta: { audio: { id: 'audio_1', data: 'UklGRg==', transcript: 'Hello' } } }] })).toBe('Hello');
    expect(generatedText({ choices: [{ delta: { audio: { id: 'audio_1', data: 'UklGRg==' } } }] })).toBeUndefined();
    expect(generatedText({ choices: [{ delta: { reasoning_content: '', content: '' } }] })).toBeUndefined();
  });

  it('is undefined for chunks that generated nothing: the role chunk, a tool call’s name, the usage chunk', () => {
    expect(generatedText({ choices: [{ delta: { content: '' } }] })).toBeUndefined();
    expect(
      generatedText({ choices: [{ delta: { tool_calls: [{ index: 0, id: 'call_1', function: { name: 'f', arguments: '' } }] } }] }),
    ).toBeUndefined();
    expect(generatedText({ choices: [], usage: { prompt_tokens: 1, completion_tokens: 1, total_tokens: 2 } })).toBeUndefined();
  });
});

describe('OpenAiAdapter streaming from an OpenAI-compatible host that splits events over several data lines', () => {
  // A real HTTP server on 127.0.0.1 sending valid SSE whose JSON is pretty-printed, one `data:`
  // line per line of it (as some OpenAI-compatible hosts do).
  const chunk = (delta: Record<string, unknown>, finish: string | null = null): Record<string, unknown> => ({
    id: 'chatcmpl-multi',
    object: 'chat.completion.chunk',
    created: 1,
    model: 'local-model',
    choices: [{ index: 0, delta, finish_reason: finish }],
  });
  const frames = [chunk({ role: 'assistant', content: '' }), chunk({ content: 'Hel' }), chunk({ content: 'lo' }), chunk({}, 'stop')];
  const body = `${frames
    .map((f) =>
      JSON.stringify(f, null, 2)
        .split('\n')
        .map((line) => `data: ${line}\r\n`)
        .join(''),
    )
    .join('\r\n')}\r\ndata: [DONE]\r\n\r\n`;
  const host = compatibleHost(() => body);

  it('re-sends each event as one data line of compact JSON, content unchanged', async () => {
    const adapter = new OpenAiAdapter(host.client());
    const stream = await adapter.chatStream({
      body: { model: 'local-model', messages: [{ role: 'user', content: 'Hi' }], stream: true },
      access: { provider: 'openai', apiKey: 'sk-local', baseUrl: host.baseUrl(), models: ['local-model'] },
      signal: new AbortController().signal,
      clientWantsUsage: false,
    });
    const sent: string[] = [];
    for await (const event of stream.events) if (event.data !== null) sent.push(event.data);
    expect(sent).toHaveLength(frames.length);
    for (const data of sent) expect(data).not.toContain('\n');
    expect(sent.map((data) => JSON.parse(data) as unknown)).toEqual(frames);
  });
});

describe('OpenAiAdapter Responses API against the mock upstream: a stored response is recorded before its id goes on', () => {
  let mock: RunningMock;
  let client: UpstreamClient;

  beforeAll(async () => {
    mock = await startMock();
    client = testUpstreamClient();
  });

  afterAll(async () => {
    await client.onApplicationShutdown();
    await mock.close();
  });

  const access = (): ProviderAccess => ({
    provider: 'openai',
    apiKey: 'sk-mock-adapter',
    baseUrl: `${mock.base}/v1`,
    models: ['gpt-4o-mini'],
  });

  /** An onStored that takes a few event-loop turns to write, logging when it starts and ends. */
  function slowRecorder(log: string[]): (id: string) => Promise<void> {
    return (id) => {
      log.push(`record ${id}`);
      return new Promise<void>((resolve) =>
        setTimeout(() => {
          log.push('recorded');
          resolve();
        }, 30),
      );
    };
  }

  it('passes response.created, then the terminal event, on only once each record is written', async () => {
    const log: string[] = [];
    const stream = await adapter().responsesStream({
      body: { model: 'gpt-4o-mini', input: 'hold me [mock chunks=2]' },
      access: access(),
      signal: new AbortController().signal,
      onStored: slowRecorder(log),
    });
    for await (const event of stream.events) if (event.event !== undefined) log.push(event.event);
    const id = log[0].slice('record '.length);
    expect(id).toMatch(/^resp_/);
    // Each event carrying the id follows the end of its record's write, never its start alone.
    expect(log.slice(0, 3)).toEqual([`record ${id}`, 'recorded', 'response.created']);
    expect(log.slice(-3)).toEqual([`record ${id}`, 'recorded', 'response.completed']);
  });

  it('answers a whole Response only once its record is written; none for store: false', async () => {
    const log: string[] = [];
    const answer = await adapter().responses({
      body: { model: 'gpt-4o-mini', input: 'whole' },
      access: access(),
      signal: new AbortController().signal,
      onStored: slowRecorder(log),
    });
    log.push('answered');
    const id = (JSON.parse(answer.body) as { id: string }).id;
    expect(log).toEqual([`record ${id}`, 'recorded', 'answered']);
    const unstored = await adapter().responses({
      body: { model: 'gpt-4o-mini', input: 'forget', store: false },
      access: access(),
      signal: new AbortController().signal,
      onStored: slowRecorder(log),
    });
    expect(JSON.parse(unstored.body)).toMatchObject({ store: false });
    expect(log).toHaveLength(3);
  });

  it('counts input tokens and compacts at their own paths, the compaction billed from its usage', async () => {
    const signal = new AbortController().signal;
    const count = await adapter().responsesInputTokens({ body: { model: 'gpt-4o-mini', input: 'count me' }, access: access(), signal });
    expect(JSON.parse(count)).toEqual({ object: 'response.input_tokens', input_tokens: expect.any(Number) });
    const compacted = await adapter().responsesCompact({ body: { model: 'gpt-4o-mini', input: 'compact me' }, access: access(), signal });
    const body = JSON.parse(compacted.body) as {
      object: string;
      usage: {
        input_tokens: number;
        output_tokens: number;
        input_tokens_details: { cached_tokens: number };
        output_tokens_details: { reasoning_tokens: number };
      };
    };
    expect(body.object).toBe('response.compaction');
    expect(compacted.usage).toEqual({
      prompt_tokens: body.usage.input_tokens,
      completion_tokens: body.usage.output_tokens,
      total_tokens: body.usage.input_tokens + body.usage.output_tokens,
      prompt_tokens_details: { cached_tokens: body.usage.input_tokens_details.cached_tokens },
      completion_tokens_details: { reasoning_tokens: body.usage.output_tokens_details.reasoning_tokens },
    });
    // The user messages it lists are its text, for an estimate when a host reports no usage.
    expect(compacted.text).toBe('compact me');
  });

  it('passes a cancel as a POST without a body, and the refusal of a response made without background as an http error', async () => {
    const signal = new AbortController().signal;
    const made = JSON.parse((await adapter().responses({ body: { model: 'gpt-4o-mini', input: 'x' }, access: access(), signal })).body) as {
      id: string;
    };
    const error = await adapter()
      .storedResponse({ method: 'POST', path: `/responses/${made.id}/cancel`, access: access(), signal })
      .catch((e: unknown) => e);
    expect(error).toMatchObject({ kind: 'http', status: 400 });
  });

  function adapter(): OpenAiAdapter {
    return new OpenAiAdapter(client);
  }
});

describe('OpenAiAdapter: a failed Response read whole from a host that echoed a credential in its error', () => {
  const failed = {
    id: 'resp_failed1',
    object: 'response',
    status: 'failed',
    model: 'gpt-4o-mini',
    output: [],
    error: { code: 'server_error', message: 'upstream said: bad key sk-proj-Abc123def456ghi789' },
  };
  const host = compatibleHost(() => JSON.stringify(failed));
  const access = (): ProviderAccess => ({ provider: 'openai', apiKey: 'sk-local', baseUrl: host.baseUrl(), models: ['gpt-4o-mini'] });
  const masked = { ...failed, error: { code: 'server_error', message: 'upstream said: bad key [redacted]' } };

  it('masks its error.message when read back (GET /v1/responses/{id}), as its stream’s response.failed is', async () => {
    const body = await new OpenAiAdapter(host.client()).storedResponse({
      method: 'GET',
      path: '/responses/resp_failed1',
      access: access(),
      signal: new AbortController().signal,
    });
    expect(body).not.toContain('sk-proj');
    expect(JSON.parse(body)).toEqual(masked);
  });

  it('masks it in a whole answer to a create too', async () => {
    const answer = await new OpenAiAdapter(host.client()).responses({
      body: { model: 'gpt-4o-mini', input: 'x' },
      access: access(),
      signal: new AbortController().signal,
    });
    expect(answer.body).not.toContain('sk-proj');
    expect(JSON.parse(answer.body)).toEqual(masked);
  });
});

describe('OpenAiAdapter streaming from an OpenAI-compatible host that ends its stream without [DONE]', () => {
  // Each case's stream ends (the body closes cleanly) with no `data: [DONE]`.
  const chunk = (choices: Array<[number, Record<string, unknown>, string | null]>): string =>
    `data: ${JSON.stringify({
      id: 'chatcmpl-nodone',
      object: 'chat.completion.chunk',
      created: 1,
      model: 'local-model',
      choices: choices.map(([index, delta, finish]) => ({ index, delta, finish_reason: finish })),
    })}\n\n`;
  const usage = `data: ${JSON.stringify({ id: 'chatcmpl-nodone', choices: [], usage: { prompt_tokens: 3, completion_tokens: 2, total_tokens: 5 } })}\n\n`;
  const bodies: Record<string, string> = {
    finished: chunk([[0, { role: 'assistant', content: '' }, null]]) + chunk([[0, { content: 'Hi' }, null]]) + chunk([[0, {}, 'stop']]),
    'finished-with-usage': chunk([[0, { content: 'Hi' }, null]]) + chunk([[0, {}, 'length']]) + usage,
    unfinished: chunk([[0, { role: 'assistant', content: '' }, null]]) + chunk([[0, { content: 'Hi' }, null]]),
    'one-of-two-finished':
      chunk([
        [0, { content: 'a' }, null],
        [1, { content: 'b' }, null],
      ]) + chunk([[0, {}, 'stop']]),
    'two-of-two-finished':
      chunk([
        [0, { content: 'a' }, null],
        [1, { content: 'b' }, null],
      ]) +
      chunk([
        [0, {}, 'stop'],
        [1, {}, 'stop'],
      ]),
  };
  // The body is picked by the first segment of the request's path (the case's base URL).
  const host = compatibleHost((path) => bodies[path.split('/')[1]]);

  /** The events of one stream of `bodies[name]`, or the error that ended it. */
  async function read(name: string, n?: number): Promise<{ texts: string[]; usage?: unknown; error?: unknown }> {
    const stream = await new OpenAiAdapter(host.client()).chatStream({
      body: { model: 'local-model', messages: [{ role: 'user', content: 'Hi' }], stream: true, ...(n ? { n } : {}) },
      access: { provider: 'openai', apiKey: 'sk-local', baseUrl: host.baseUrl(`/${name}`), models: ['local-model'] },
      signal: new AbortController().signal,
      clientWantsUsage: false,
    });
    const texts: string[] = [];
    let usage: unknown;
    try {
      for await (const event of stream.events) {
        if (event.text !== undefined) texts.push(event.text);
        if (event.usage) usage = event.usage;
      }
    } catch (error) {
      return { texts, usage, error };
    }
    return { texts, usage };
  }

  it('ends normally when every choice has its finish_reason, with or without usage', async () => {
    expect(await read('finished')).toEqual({ texts: ['Hi'], usage: undefined });
    expect(await read('finished-with-usage')).toEqual({
      texts: ['Hi'],
      usage: { prompt_tokens: 3, completion_tokens: 2, total_tokens: 5 },
    });
    expect(await read('two-of-two-finished', 2)).toEqual({ texts: ['ab'], usage: undefined });
  });

  it('is a lost connection when a choice never finished (a cut stream)', async () => {
    for (const [name, n] of [
      ['unfinished', undefined],
      ['one-of-two-finished', 2],
    ] as const) {
      const { error } = await read(name, n);
      expect(error).toBeInstanceOf(UpstreamError);
      expect(error).toMatchObject({ kind: 'connection_lost', message: 'stream ended without [DONE]' });
    }
  });
});
