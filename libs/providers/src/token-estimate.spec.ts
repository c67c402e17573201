import { countTokens, estimatePromptTokens, NON_TEXT_PART_TOKENS } from './token-estimate';

const question = 'What is the weather in Paris today?';

describe('estimatePromptTokens', () => {
  it('counts each message text with the o200k tokenizer plus OpenAI’s framing (3 per message, 3 to prime the reply)', () => {
    const messages = [
      { role: 'system', content: 'Be brief.' },
      { role: 'user', content: question },
    ];
    expect(estimatePromptTokens({ messages })).toBe(3 + (3 + countTokens('Be brief.')) + (3 + countTokens(question)));
  });

  it('counts tool and function definitions and a response_format schema, which providers bill as prompt', () => {
    const messages = [{ role: 'user', content: question }];
    const tools = [
      {
        type: 'function',
        function: {
          name: 'get_weather',
          description: 'Current weather for a city',
          parameters: { type: 'object', properties: { city: { type: 'string' } } },
        },
      },
    ];
    const response_format = {
      type: 'json_schema',
      json_schema: { name: 'w', schema: { type: 'object', properties: { celsius: { type: 'number' } } } },
    };
    const base = estimatePromptTokens({ messages });
    expect(estimatePromptTokens({ messages, tools })).toBe(base + countTokens(JSON.stringify(tools)));
    expect(estimatePromptTokens({ messages, tools, response_format })).toBe(
      base + countTokens(JSON.stringify(tools)) + countTokens(JSON.stringify(response_format)),
    );
    expect(estimatePromptTokens({ messages, functions: [{ name: 'f', parameters: {} }] })).toBeGreaterThan(base);
  });

  it('reserves a flat amount per image, audio or file part, and counts text and refusal parts as text', () => {
    const messages = [
      {
        role: 'user',
        content: [
          { type: 'text', text: question },
          { type: 'image_url', image_url: { url: 'https://example.com/a.png' } },
          { type: 'input_audio', input_audio: { data: 'AAAA', format: 'wav' } },
        ],
      },
      { role: 'assistant', content: [{ type: 'refusal', refusal: 'I cannot help with that.' }] },
    ];
    expect(estimatePromptTokens({ messages })).toBe(
      3 + (3 + countTokens(question) + 2 * NON_TEXT_PART_TOKENS) + (3 + countTokens('I cannot help with that.')),
    );
  });

  it('counts the tool calls of the history', () => {
    const tool_calls = [{ id: 'call_1', type: 'function', function: { name: 'get_weather', arguments: '{"city":"Paris"}' } }];
    const messages = [{ role: 'assistant', content: null, tool_calls }];
    expect(estimatePromptTokens({ messages })).toBe(3 + 3 + countTokens(JSON.stringify(tool_calls)));
  });
});
