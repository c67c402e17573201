import {
  containersOfItem,
  isResponseEnd,
  outputContainerIds,
  responsesUsage,
  responseText,
  ResponsesNativeStream,
} from './openai.responses';
import { estimateResponsesPromptTokens, countTokens, NON_TEXT_PART_TOKENS } from './token-estimate';
import { UpstreamError } from './upstream.error';

const event = (type: string, fields: Record<string, unknown> = {}): { event: string; data: string } => ({
  event: type,
  data: JSON.stringify({ type, sequence_number: 1, ...fields }),
});

describe('ResponsesNativeStream', () => {
  it('passes every event on with its name and data, unknown ones included', () => {
    const stream = new ResponsesNativeStream();
    const created = event('response.created', { response: { id: 'resp_1', status: 'in_progress' } });
    // Its sequence_number read beside it (keygate's own error event follows it).
    expect(stream.push(created)).toEqual({ ...created, sequence: 1 });
    const future = event('response.something_new', { x: 1, sequence_number: 7 });
    expect(stream.push(future)).toEqual({ ...future, sequence: 7 });
    // A host that leaves `event:` out: the data's type names it.
    expect(stream.push({ data: created.data })).toEqual({ event: 'response.created', data: created.data, sequence: 1 });
    expect(stream.push({ event: 'x', data: '{"type":"x"}' })).toEqual({ event: 'x', data: '{"type":"x"}' });
    expect(stream.stopped).toBe(false);
  });

  it('keeps generated text (output, refusals, tool arguments, reasoning summaries) to prime and estimate', () => {
    const stream = new ResponsesNativeStream();
    expect(stream.push(event('response.output_text.delta', { delta: 'Hel' })).text).toBe('Hel');
    expect(stream.push(event('response.refusal.delta', { delta: 'No' })).text).toBe('No');
    expect(stream.push(event('response.function_call_arguments.delta', { delta: '{"a"' })).text).toBe('{"a"');
    expect(stream.push(event('response.reasoning_summary_text.delta', { delta: 'think' })).text).toBe('think');
    expect(stream.push(event('response.code_interpreter_call_code.delta', { delta: 'print(1)' })).text).toBe('print(1)');
    expect(stream.push(event('response.mcp_call_arguments.delta', { delta: '{"q"' })).text).toBe('{"q"');
    expect(stream.push(event('response.audio.transcript.delta', { delta: 'Hi there' })).text).toBe('Hi there');
    expect(stream.push(event('response.output_text.done', { text: 'Hello' })).text).toBeUndefined();
    expect(stream.push(event('response.output_text.delta', { delta: '' })).text).toBeUndefined();
  });

  it('marks generated output that is not text (a partial image, audio) so that it primes the stream, and nothing else', () => {
    const stream = new ResponsesNativeStream();
    const partial = stream.push(
      event('response.image_generation_call.partial_image', { partial_image_b64: 'iVBORw0KGgo=', partial_image_index: 0 }),
    );
    expect([partial.output, partial.text]).toEqual([true, undefined]);
    expect(stream.push(event('response.audio.delta', { delta: 'UklGRg==' })).output).toBe(true);
    for (const type of [
      'response.created',
      'response.in_progress',
      'response.output_item.added',
      'response.image_generation_call.generating',
    ])
      expect(stream.push(event(type, { response: { id: 'resp_1' } })).output).toBeUndefined();
  });

  it.each(['response.completed', 'response.incomplete'])('ends with %s, billed its usage', (type) => {
    const stream = new ResponsesNativeStream();
    const out = stream.push(event(type, { response: { id: 'resp_1', usage: { input_tokens: 12, output_tokens: 5, total_tokens: 17 } } }));
    expect(out.usage).toEqual({ prompt_tokens: 12, completion_tokens: 5, total_tokens: 17 });
    expect(stream.stopped).toBe(true);
    expect(() => stream.end()).not.toThrow();
  });

  it('tells of a Response OpenAI stores when announced and when it ends, failed ones included; not of one with store: false', () => {
    const seen: Array<[string, unknown]> = [];
    const written = Promise.resolve();
    const onStored = (id: string, usage: unknown): Promise<void> => {
      seen.push([id, usage]);
      return written;
    };
    const usage = { input_tokens: 3, output_tokens: 2, total_tokens: 5 };
    const stream = new ResponsesNativeStream(onStored);
    stream.push(event('response.created', { response: { id: 'resp_a', store: true, usage: null } }));
    expect(seen).toEqual([['resp_a', null]]);
    // The event goes on once the record is written; taken once.
    expect(stream.takeRecording()).toBe(written);
    expect(stream.takeRecording()).toBeUndefined();
    stream.push(event('response.output_text.delta', { delta: 'x' }));
    expect(stream.takeRecording()).toBeUndefined();
    stream.push(event('response.completed', { response: { id: 'resp_a', store: true, usage } }));
    expect(seen[1]).toEqual(['resp_a', { prompt_tokens: 3, completion_tokens: 2, total_tokens: 5 }]);
    expect(stream.takeRecording()).toBe(written);
    new ResponsesNativeStream(onStored).push(event('response.failed', { response: { id: 'resp_f', error: { code: 'server_error' } } }));
    expect(seen[2]).toEqual(['resp_f', null]);
    new ResponsesNativeStream(onStored).push(event('response.created', { response: { id: 'resp_n', store: false } }));
    new ResponsesNativeStream(onStored).push(event('response.incomplete', { response: { id: 'resp_n', store: false, usage } }));
    new ResponsesNativeStream(onStored).push(event('response.completed', { response: { usage } }));
    expect(seen).toHaveLength(3);
  });

  it('ends without usage when the host reported none (keygate then estimates)', () => {
    const stream = new ResponsesNativeStream();
    expect(stream.push(event('response.completed', { response: { id: 'resp_1' } })).usage).toBeUndefined();
    expect(stream.stopped).toBe(true);
  });

  it('throws on an error event, with the status its code stands for (retried before any content)', () => {
    const stream = new ResponsesNativeStream();
    const thrown = (fields: Record<string, unknown>): UpstreamError => {
      try {
        stream.push(event('error', fields));
      } catch (error) {
        return error as UpstreamError;
      }
      throw new Error('no error thrown');
    };
    // As OpenAI sends it: the details under `error`.
    const limited = thrown({ error: { type: 'too_many_requests', code: 'too_many_requests', message: 'Too Many Requests', param: null } });
    expect([limited.kind, limited.status, limited.retryable, limited.message]).toEqual(['stream_error', 429, true, 'Too Many Requests']);
    // As its reference documents it: the details at the top level.
    const server = thrown({ code: 'server_error', message: 'The server had an error' });
    expect([server.status, server.retryable, server.message]).toEqual([500, true, 'The server had an error']);
    expect(thrown({ error: { code: 'rate_limit_exceeded', message: 'slow down' } }).status).toBe(429);
    const other = thrown({ error: { code: 'invalid_prompt', message: 'bad' } });
    expect([other.status, other.retryable, other.message]).toEqual([undefined, false, 'bad']);
    expect(thrown({}).message).toBe('error event');
  });

  it('masks a credential the upstream echoed in the message of response.failed, as in an error message', () => {
    const failed = event('response.failed', {
      response: { id: 'resp_1', status: 'failed', error: { code: 'invalid_api_key', message: 'bad key sk-proj-Abc123def456ghi789' } },
    });
    const out = new ResponsesNativeStream().push(failed);
    expect(out.data).not.toContain('sk-proj');
    expect(JSON.parse(out.data ?? '')).toEqual({
      type: 'response.failed',
      sequence_number: 1,
      response: { id: 'resp_1', status: 'failed', error: { code: 'invalid_api_key', message: 'bad key [redacted]' } },
    });
  });

  it('passes response.failed on, then fails with what its error names (retried before any content when it stands for a 5xx or 429)', () => {
    const stream = new ResponsesNativeStream();
    const failed = event('response.failed', {
      response: {
        id: 'resp_1',
        status: 'failed',
        error: { code: 'server_error', message: 'overloaded' },
        usage: { input_tokens: 9, output_tokens: 0 },
      },
    });
    const out = stream.push(failed);
    // Its usage bills the attempt, but is no final usage (which would end a stream's priming as a success).
    expect(out).toMatchObject({ event: 'response.failed', data: failed.data, runningUsage: { prompt_tokens: 9, completion_tokens: 0 } });
    expect(out.usage).toBeUndefined();
    expect(stream.stopped).toBe(true);
    let error: UpstreamError | undefined;
    try {
      stream.end();
    } catch (e) {
      error = e as UpstreamError;
    }
    expect([error?.kind, error?.status, error?.retryable, error?.message]).toEqual(['stream_error', 500, true, 'overloaded']);
    const refused = new ResponsesNativeStream();
    refused.push(event('response.failed', { response: { error: { code: 'invalid_image', message: 'bad image' } } }));
    expect(() => refused.end()).toThrow('bad image');
    const bare = new ResponsesNativeStream();
    bare.push(event('response.failed', { response: {} }));
    expect(() => bare.end()).toThrow('response failed');
  });

  it('calls a body that closes before a terminal event a truncated answer', () => {
    const stream = new ResponsesNativeStream();
    stream.push(event('response.output_text.delta', { delta: 'Hel' }));
    expect(() => stream.end()).toThrow('stream ended without response.completed');
  });
});

describe('the code execution containers an answer names', () => {
  it('reads a code interpreter run, a shell call’s container and a message’s container file citations, each once', () => {
    expect(containersOfItem({ type: 'code_interpreter_call', id: 'ci_1', container_id: 'cntr_a' })).toEqual(['cntr_a']);
    expect(containersOfItem({ type: 'shell_call', environment: { type: 'container_reference', container_id: 'cntr_b' } })).toEqual([
      'cntr_b',
    ]);
    const cited = {
      type: 'message',
      content: [
        {
          type: 'output_text',
          annotations: [
            { type: 'container_file_citation', container_id: 'cntr_c', file_id: 'cfile_1' },
            { type: 'container_file_citation', container_id: 'cntr_c', file_id: 'cfile_2' },
            { type: 'url_citation', url: 'https://x' },
          ],
        },
      ],
    };
    expect(containersOfItem(cited)).toEqual(['cntr_c']);
    expect(containersOfItem({ type: 'function_call', id: 'fc_1' })).toEqual([]);
    expect(
      outputContainerIds({
        output: [
          { type: 'code_interpreter_call', container_id: 'cntr_a' },
          cited,
          { type: 'code_interpreter_call', container_id: 'cntr_a' },
        ],
      }),
    ).toEqual(['cntr_a', 'cntr_c']);
  });

  it('tells onContainers of a stream’s containers once each, as its items’ events name them, stored or not', async () => {
    const told: string[][] = [];
    const stream = new ResponsesNativeStream(undefined, (ids) => {
      told.push(ids);
      return Promise.resolve();
    });
    const item = { type: 'code_interpreter_call', id: 'ci_1', container_id: 'cntr_s' };
    const event = (type: string, extra: Record<string, unknown>) => ({ event: type, data: JSON.stringify({ type, ...extra }) });
    stream.push(event('response.output_item.added', { output_index: 0, item }));
    await stream.takeRecording();
    stream.push(event('response.output_item.done', { output_index: 0, item }));
    expect(stream.takeRecording()).toBeUndefined();
    stream.push(event('response.completed', { response: { id: 'resp_1', store: false, output: [item], usage: null } }));
    expect(stream.takeRecording()).toBeUndefined();
    expect(told).toEqual([['cntr_s']]);
  });
});

describe('isResponseEnd', () => {
  it('is a terminal event, by its name or (without one) by its data’s type', () => {
    expect(isResponseEnd(event('response.completed'))).toBe(true);
    expect(isResponseEnd({ data: '{"type":"response.incomplete","response":{}}' })).toBe(true);
    expect(isResponseEnd(event('response.output_text.delta', { delta: '"type":"response.completed"' }))).toBe(false);
    expect(isResponseEnd({ data: '{"type":"response.output_text.delta","delta":"{\\"type\\":\\"response.completed\\"}"}' })).toBe(false);
  });
});

describe('responsesUsage and responseText', () => {
  it('reads input and output tokens (cached ones are inside input_tokens, reasoning ones inside output_tokens); none when neither is there', () => {
    expect(
      responsesUsage({
        input_tokens: 100,
        input_tokens_details: { cached_tokens: 80 },
        output_tokens: 7,
        output_tokens_details: { reasoning_tokens: 5 },
        total_tokens: 107,
      }),
    ).toEqual({
      prompt_tokens: 100,
      completion_tokens: 7,
      total_tokens: 107,
      prompt_tokens_details: { cached_tokens: 80 },
      completion_tokens_details: { reasoning_tokens: 5 },
    });
    // An input or output count left out: none (keygate estimates it), not a prompt billed as free.
    expect(responsesUsage({ output_tokens: 3 })).toBeNull();
    expect(responsesUsage({ input_tokens: null, output_tokens: 3 })).toBeNull();
    expect(responsesUsage({ input_tokens: 4 })).toBeNull();
    expect(responsesUsage({ input_tokens: 4, output_tokens: null })).toBeNull();
    // A detail that is not a count is left out, not passed on as one.
    expect(
      responsesUsage({ input_tokens: 4, input_tokens_details: { cached_tokens: -2 }, output_tokens: 1, output_tokens_details: null }),
    ).toEqual({
      prompt_tokens: 4,
      completion_tokens: 1,
      total_tokens: 5,
    });
    expect(responsesUsage({})).toBeNull();
    expect(responsesUsage(undefined)).toBeNull();
    expect(responsesUsage({ input_tokens: -1, output_tokens: 'x' })).toBeNull();
  });

  it.each(['4', -4, 4.5, NaN, Infinity, 2 ** 53])(
    'reads none when an input or output count is %p (keygate estimates it), and leaves out such a detail',
    (bad) => {
      expect(responsesUsage({ input_tokens: bad, output_tokens: 1 })).toBeNull();
      expect(responsesUsage({ input_tokens: 4, output_tokens: bad })).toBeNull();
      expect(
        responsesUsage({
          input_tokens: 4,
          input_tokens_details: { cached_tokens: bad },
          output_tokens: 1,
          output_tokens_details: { reasoning_tokens: bad },
        }),
      ).toStrictEqual({ prompt_tokens: 4, completion_tokens: 1, total_tokens: 5 });
      // Neither said (null is how a host leaves one out): none, not zeros.
      expect(responsesUsage({ input_tokens: null, output_tokens: null })).toBeNull();
    },
  );

  it('collects the text of messages, refusals, tool calls and reasoning summaries', () => {
    const response = {
      output: [
        { type: 'reasoning', summary: [{ type: 'summary_text', text: 'plan. ' }] },
        {
          type: 'message',
          content: [
            { type: 'output_text', text: 'Hi' },
            { type: 'refusal', refusal: ' no' },
          ],
        },
        { type: 'function_call', name: 'f', arguments: '{"x":1}' },
        { type: 'custom_tool_call', name: 'g', input: 'raw' },
      ],
    };
    expect(responseText(response)).toBe('plan. Hi no{"x":1}raw');
    expect(responseText({})).toBe('');
  });
});

describe('estimateResponsesPromptTokens', () => {
  it('counts the instructions and a text input', () => {
    expect(estimateResponsesPromptTokens({ instructions: 'Be brief.', input: 'Hello there' })).toBe(
      3 + countTokens('Be brief.') + 3 + countTokens('Hello there'),
    );
  });

  it('counts input items: message parts, tool calls and outputs, images at the flat rate, unknown items as JSON', () => {
    const unknown = { type: 'mcp_list_tools', server_label: 'x' };
    const input = [
      {
        role: 'user',
        content: [
          { type: 'input_text', text: 'Look' },
          { type: 'input_image', image_url: 'https://x/y.png' },
        ],
      },
      { type: 'function_call', call_id: 'c1', name: 'f', arguments: '{"q":"weather"}' },
      { type: 'function_call_output', call_id: 'c1', output: 'sunny' },
      unknown,
    ];
    const tools = [{ type: 'function', name: 'f', parameters: { type: 'object' } }];
    expect(estimateResponsesPromptTokens({ input, tools })).toBe(
      3 +
        (3 + countTokens('Look') + NON_TEXT_PART_TOKENS) +
        (3 + countTokens('{"q":"weather"}')) +
        (3 + countTokens('sunny')) +
        (3 + countTokens(JSON.stringify(unknown))) +
        countTokens(JSON.stringify(tools)),
    );
  });

  it('counts a stored prompt’s variables, substituted into it: text as text, an input part as that part', () => {
    const book = 'Chapter one. '.repeat(300);
    const variables = {
      topic: book,
      picture: { type: 'input_image', image_url: 'https://x/y.png' },
      note: { type: 'input_text', text: 'Look' },
    };
    expect(estimateResponsesPromptTokens({ input: 'Go', prompt: { id: 'pmpt_1', version: '2', variables } })).toBe(
      3 + 3 + countTokens('Go') + countTokens(book) + NON_TEXT_PART_TOKENS + countTokens('Look'),
    );
    expect(estimateResponsesPromptTokens({ input: 'Go', prompt: { id: 'pmpt_1' } })).toBe(3 + 3 + countTokens('Go'));
    expect(estimateResponsesPromptTokens({ input: 'Go', prompt: 'nonsense' })).toBe(3 + 3 + countTokens('Go'));
  });
});
