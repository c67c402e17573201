import { bodyCheck } from '../http/testing/body-check';
import { ResponsesCompactRequestDto, ResponsesInputTokensRequestDto, ResponsesRequestDto } from './responses.dto';

const { validate, refusal } = bodyCheck(ResponsesRequestDto);
const base = { model: 'gpt-4o-mini', input: 'hi' };

describe('ResponsesRequestDto', () => {
  it.each([1, 15])("refuses max_output_tokens %i, below OpenAI's minimum of 16, naming the parameter and the minimum", (value) => {
    const error = refusal({ ...base, max_output_tokens: value });
    expect(error).toMatchObject({ code: 'invalid_request', status: 400, options: { param: 'max_output_tokens' } });
    expect(error.message).toBe("max_output_tokens must be at least 16 (the Responses API's minimum)");
  });

  it('names a wrong type before the minimum', () => {
    const error = refusal({ ...base, max_output_tokens: 'ten' });
    expect(error.options.param).toBe('max_output_tokens');
    expect(error.message).toMatch(/integer/);
  });

  it.each([16, 4096, null])('takes max_output_tokens %p', (value) => {
    expect(validate({ ...base, max_output_tokens: value })).toEqual({ ...base, max_output_tokens: value });
  });

  it('refuses a tool_choice naming an undeclared function, but leaves the name to OpenAI where tools are declared in a namespace or an input item', () => {
    const choice = { type: 'function', name: 'exec' };
    const flat = [{ type: 'function', name: 'other', parameters: { type: 'object', properties: {} } }];
    const undeclared = refusal({ ...base, tools: flat, tool_choice: choice });
    expect(undeclared).toMatchObject({ code: 'invalid_request', options: { param: 'tool_choice' } });
    expect(undeclared.message).toMatch(/tool_choice names exec, which is not among the tools/);
    const namespaced = [{ type: 'namespace', name: 'shell', tools: [{ type: 'function', name: 'exec', parameters: {} }] }];
    expect(() => validate({ ...base, tools: namespaced, tool_choice: choice })).not.toThrow();
    const input = [
      { type: 'additional_tools', role: 'developer', tools: [{ type: 'function', name: 'exec', parameters: {} }] },
      { role: 'user', content: 'run it' },
    ];
    expect(() => validate({ ...base, input, tool_choice: choice })).not.toThrow();
  });
});

describe.each([
  ['ResponsesInputTokensRequestDto', ResponsesInputTokensRequestDto],
  ['ResponsesCompactRequestDto', ResponsesCompactRequestDto],
])('%s', (_name, metatype) => {
  const { validate: check, refusal } = bodyCheck(metatype);
  const refused = (body: unknown): { code: string; param: string | undefined } => {
    const error = refusal(body);
    return { code: error.code, param: error.options.param };
  };

  it('hands the body on as sent, fields it does not model included', () => {
    const body = {
      ...base,
      instructions: 'Be brief.',
      previous_response_id: 'resp_abc',
      prompt_cache_key: 'k',
      text: { verbosity: 'low' },
    };
    expect(check(body)).toEqual(body);
  });

  it.each([
    ['no model', { input: 'hi' }, 'model'],
    ['an input that is neither text nor items', { model: 'm', input: 42 }, 'input'],
    ['an empty input list', { model: 'm', input: [] }, 'input'],
    ['a content part that is not an object', { model: 'm', input: [{ role: 'user', content: [1] }] }, 'input[0].content[0]'],
    ['a previous_response_id that is no id', { ...base, previous_response_id: 'resp/../x' }, 'previous_response_id'],
    ['instructions that are not text', { ...base, instructions: ['x'] }, 'instructions'],
  ])('refuses %s, naming it', (_what, body, param) => {
    expect(refused(body)).toEqual({ code: 'invalid_request', param });
  });
});

describe('ResponsesInputTokensRequestDto tools', () => {
  const { validate: check } = bodyCheck(ResponsesInputTokensRequestDto);

  it('checks function tools and tool_choice as create does', () => {
    expect(() => check({ ...base, tools: [{ type: 'function', function: { name: 'f' } }] })).toThrow(/flat/);
    expect(() =>
      check({ ...base, tools: [{ type: 'function', name: 'f', parameters: {} }], tool_choice: { type: 'function', name: 'g' } }),
    ).toThrow(/tool_choice names g/);
    expect(() =>
      check({ ...base, tools: [{ type: 'function', name: 'f', parameters: {} }], tool_choice: { type: 'function', name: 'f' } }),
    ).not.toThrow();
  });
});
