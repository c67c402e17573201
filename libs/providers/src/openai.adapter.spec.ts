import { generatedText, withoutUsage, type OpenAiChunk } from './openai.adapter';

// Unit spec: removing the `usage` member keygate asked OpenAI for, when the client did not.

const strip = (data: string): string => withoutUsage(data, JSON.parse(data) as OpenAiChunk);

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

  it('is undefined for chunks that generated nothing: the role chunk, a tool call’s name, the usage chunk', () => {
    expect(generatedText({ choices: [{ delta: { content: '' } }] })).toBeUndefined();
    expect(
      generatedText({ choices: [{ delta: { tool_calls: [{ index: 0, id: 'call_1', function: { name: 'f', arguments: '' } }] } }] }),
    ).toBeUndefined();
    expect(generatedText({ choices: [], usage: { prompt_tokens: 1, completion_tokens: 1, total_tokens: 2 } })).toBeUndefined();
  });
});
