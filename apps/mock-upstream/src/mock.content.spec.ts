import { completionTokens, embedding, planToolCalls, promptTokens, replyText, splitChunks, truncate } from './mock.content';

describe('mock content', () => {
  it('builds the echo reply and truncates the user text to 200 chars', () => {
    expect(replyText('openai', 'hi')).toBe('Hello from mock openai! You said: hi');
    const long = 'x'.repeat(500);
    expect(replyText('gemini', long)).toBe(`Hello from mock gemini! You said: ${'x'.repeat(200)}`);
  });

  it('never truncates inside a surrogate pair', () => {
    const s = `${'a'.repeat(199)}😀`;
    expect(truncate(s)).toBe('a'.repeat(199));
  });

  it('splits text into ~even, non-empty chunks that join back to the text', () => {
    const text = 'Hello from mock openai! You said: hi';
    for (const n of [1, 2, 5, 7, 36, 100]) {
      const parts = splitChunks(text, n);
      expect(parts.join('')).toBe(text);
      expect(parts.length).toBe(Math.min(n, text.length));
      expect(parts.every((p) => p.length > 0)).toBe(true);
      const lens = parts.map((p) => p.length);
      expect(Math.max(...lens) - Math.min(...lens)).toBeLessThanOrEqual(1);
    }
    expect(splitChunks('😀😀', 2)).toEqual(['😀', '😀']);
  });

  it('estimates tokens deterministically', () => {
    expect(promptTokens(10, 2)).toBe(3 + 6);
    expect(completionTokens('abcde')).toBe(2);
    expect(completionTokens('')).toBe(1);
  });

  it('produces deterministic unit-length embeddings with matching base64', () => {
    const a = embedding('hello', 16);
    expect(embedding('hello', 16)).toBe(a);
    const values = JSON.parse(a.json) as number[];
    expect(values).toHaveLength(16);
    const norm = Math.sqrt(values.reduce((s, v) => s + v * v, 0));
    expect(norm).toBeCloseTo(1, 5);
    const buf = Buffer.from(a.base64, 'base64');
    expect(buf.length).toBe(64);
    for (let i = 0; i < 16; i++) expect(buf.readFloatLE(i * 4)).toBeCloseTo(values[i], 6);
    expect(embedding('other', 16).json).not.toBe(a.json);
  });

  describe('planToolCalls', () => {
    const base = {
      declared: ['get_weather', 'search'],
      forced: undefined,
      disabled: false,
      userTurn: true,
      directives: {},
      userText: 'hi',
    };

    it('needs a trigger', () => {
      expect(planToolCalls(base)).toBeUndefined();
    });
    it('follows the tool directive', () => {
      expect(planToolCalls({ ...base, directives: { tool: 'search' } })).toMatchObject({
        name: 'search',
        count: 1,
        argumentsJson: '{"echo":"hi"}',
      });
    });
    it('follows a forced tool choice, and "any" picks the first tool', () => {
      expect(planToolCalls({ ...base, forced: 'search' })?.name).toBe('search');
      expect(planToolCalls({ ...base, forced: '' })?.name).toBe('get_weather');
    });
    it('tools=N alone means N calls of the first tool', () => {
      expect(planToolCalls({ ...base, directives: { tools: 2 } })).toMatchObject({ name: 'get_weather', count: 2 });
    });
    it('answers in text after a tool result, without tools, or when disabled', () => {
      expect(planToolCalls({ ...base, userTurn: false, directives: { tool: 'search' } })).toBeUndefined();
      expect(planToolCalls({ ...base, declared: [], directives: { tool: 'search' } })).toBeUndefined();
      expect(planToolCalls({ ...base, disabled: true, directives: { tool: 'search' } })).toBeUndefined();
    });
  });
});
