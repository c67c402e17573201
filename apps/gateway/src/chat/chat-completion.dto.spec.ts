import { bodyCheck } from '../http/testing/body-check';
import { ChatCompletionRequestDto } from './chat-completion.dto';

const { validate, refusal } = bodyCheck(ChatCompletionRequestDto);
const base = { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] };
const tool = (name: string, extra: Record<string, unknown> = {}): Record<string, unknown> => ({
  type: 'function',
  function: { name, parameters: { type: 'object', properties: {} }, ...extra },
});

describe('ChatCompletionRequestDto', () => {
  it.each([
    ['a null content part', { messages: [{ role: 'user', content: [null] }] }, 'messages[0].content', /array of content parts/],
    ['a content part that is a string', { messages: [{ role: 'user', content: ['hi'] }] }, 'messages[0].content', /content parts/],
    ['a message that is an array', { messages: [[{ role: 'user', content: 'x' }]] }, 'messages', /each message must be an object/],
    [
      'a tool call that is not an object',
      { messages: [{ role: 'assistant', content: null, tool_calls: [1] }] },
      'messages[0].tool_calls',
      /tool call objects/,
    ],
    ['n above 128', { n: 200000 }, 'n', /128/],
    ['top_p above 1', { top_p: 2 }, 'top_p', /1/],
    ['top_p below 0', { top_p: -1 }, 'top_p', /0/],
    ['presence_penalty above 2', { presence_penalty: 5 }, 'presence_penalty', /2/],
    ['frequency_penalty below -2', { frequency_penalty: -3 }, 'frequency_penalty', /-2/],
    ['a logit_bias that is an array', { logit_bias: [1, 2] }, 'logit_bias', /object/],
    ['metadata that is a string', { metadata: 'x' }, 'metadata', /object/],
    ['a seed that is a string', { seed: 'x' }, 'seed', /integer/],
    ['logprobs that is a string', { logprobs: 'yes' }, 'logprobs', /boolean/],
    ['top_logprobs above 20', { top_logprobs: 21 }, 'top_logprobs', /20/],
    ['a stop entry that is a number', { stop: [1] }, 'stop', /array of strings/],
    ['stream_options without stream', { stream_options: { include_usage: true } }, 'stream_options', /only allowed when stream is true/],
    ['stream_options with stream false', { stream: false, stream_options: { include_usage: true } }, 'stream_options', /only allowed/],
    ['a tool name with a space', { tools: [tool('my tool!')] }, 'tools[0].function.name', /tools\[0\]\.function\.name must be 1 to 128/],
    ['a tool name of 129 characters', { tools: [tool('a'.repeat(129))] }, 'tools[0].function.name', /1 to 128/],
    [
      'two tools with one name',
      { tools: [tool('f'), tool('f')] },
      'tools[1].function.name',
      /tools\[1\]\.function\.name: f is declared twice/,
    ],
    ['a tool that is not an object', { tools: ['f'] }, 'tools[0]', /tools\[0\] must be an object/],
    [
      'a function tool without its function',
      { tools: [{ type: 'function' }] },
      'tools[0].function',
      /tools\[0\]\.function must be an object/,
    ],
    [
      'parameters that are not an object',
      { tools: [tool('f', { parameters: 'x' })] },
      'tools[0].function.parameters',
      /parameters must be a JSON Schema object/,
    ],
    [
      'tool_choice naming an undeclared tool',
      { tools: [tool('f')], tool_choice: { type: 'function', function: { name: 'g' } } },
      'tool_choice',
      /tool_choice names g, which is not among the tools/,
    ],
    [
      'response_format json_schema without its object',
      { response_format: { type: 'json_schema' } },
      'response_format.json_schema',
      /json_schema is required/,
    ],
    ['an unknown response_format type', { response_format: { type: 'xml' } }, 'response_format.type', /text, json_object or json_schema/],
    ['a response_format that is a string', { response_format: 'json' }, 'response_format', /must be an object/],
    [
      'tool_choice naming a tool without any tools',
      { tool_choice: { type: 'function', function: { name: 'g' } } },
      'tool_choice',
      /not among the tools/,
    ],
  ])('refuses %s with 400 naming the field', (_what, extra, param, message) => {
    const error = refusal({ ...base, ...extra });
    expect(error.status).toBe(400);
    expect(error.options.param).toBe(param);
    expect(error.message).toMatch(message);
  });

  it('accepts what OpenAI accepts at the bounds, and passes fields it does not model through', () => {
    const body = {
      ...base,
      stream: true,
      stream_options: { include_usage: true },
      n: 128,
      top_p: 0,
      presence_penalty: -2,
      frequency_penalty: 2,
      logit_bias: { '50256': -100 },
      seed: 7,
      logprobs: true,
      top_logprobs: 20,
      stop: ['END', 'STOP'],
      // Namespaced MCP names (Gemini and many hosts take dots and colons) and OpenAI's custom tools.
      tools: [
        tool('get_weather'),
        tool('get-time_2'),
        tool('github.create_issue'),
        tool('mcp:fs:read'),
        { type: 'custom', custom: { name: 'code_exec' } },
      ],
      tool_choice: { type: 'function', function: { name: 'get_weather' } },
      response_format: { type: 'json_schema', json_schema: { name: 'x', schema: { type: 'object' } } },
      service_tier: 'flex',
      metadata: { team: 'search' },
      messages: [{ role: 'user', content: [{ type: 'text', text: 'hi' }] }],
    };
    expect(validate(body)).toEqual(body);
    expect(validate({ ...base, tool_choice: 'auto' })).toEqual({ ...base, tool_choice: 'auto' });
  });
});
