import { refusalOf } from '@keygate/errors/testing';
import {
  GeminiNativeStream,
  generateContentForFallback,
  generateContentText,
  generateContentUsage,
  requestedCandidates,
} from './gemini.native';
import { UpstreamError } from './upstream.error';

const data = (value: unknown): { data: string } => ({ data: JSON.stringify(value) });
const text = (t: string, finishReason?: string, index?: number): Record<string, unknown> => ({
  content: { role: 'model', parts: [{ text: t }] },
  ...(finishReason ? { finishReason } : {}),
  ...(index === undefined ? {} : { index }),
});

describe('GeminiNativeStream', () => {
  it('passes each event on as sent, with the running usage, and the last one’s usage once the answer is complete', () => {
    const stream = new GeminiNativeStream();
    const first = data({ candidates: [text('Hel')], usageMetadata: { promptTokenCount: 7, totalTokenCount: 7 } });
    expect(stream.push(first)).toEqual({
      data: first.data,
      text: 'Hel',
      runningUsage: { prompt_tokens: 7, completion_tokens: 0, total_tokens: 7 },
    });
    expect(stream.stopped).toBe(false);
    const last = data({
      candidates: [text('lo', 'STOP')],
      usageMetadata: {
        promptTokenCount: 7,
        candidatesTokenCount: 3,
        thoughtsTokenCount: 4,
        toolUsePromptTokenCount: 2,
        totalTokenCount: 16,
      },
    });
    const usage = {
      prompt_tokens: 9,
      completion_tokens: 7,
      total_tokens: 16,
      completion_tokens_details: { reasoning_tokens: 4 },
    };
    expect(stream.push(last)).toEqual({ data: last.data, text: 'lo', runningUsage: usage, usage });
    expect(stream.stopped).toBe(true);
    expect(() => stream.end()).not.toThrow();
  });

  it('writes data that came on several lines back as one line', () => {
    const event = new GeminiNativeStream().push({ data: '{"candidates":\n[]}' });
    expect(event.data).toBe('{"candidates":[]}');
  });

  it('waits for every candidate asked for, and for the usage after the last finishReason', () => {
    const stream = new GeminiNativeStream(2);
    stream.push(data({ candidates: [text('a', 'STOP', 0), text('b', undefined, 1)], usageMetadata: { promptTokenCount: 1 } }));
    expect(stream.stopped).toBe(false);
    stream.push(data({ candidates: [text('c', 'STOP', 1)] }));
    expect(stream.stopped).toBe(false);
    stream.push(data({ usageMetadata: { promptTokenCount: 1, candidatesTokenCount: 3 } }));
    expect(stream.stopped).toBe(true);
  });

  it('takes a prompt blocked before any candidate as a complete answer', () => {
    const stream = new GeminiNativeStream();
    stream.push(data({ promptFeedback: { blockReason: 'SAFETY' }, usageMetadata: { promptTokenCount: 5 } }));
    expect(stream.stopped).toBe(true);
  });

  it('takes an answer whose every candidate finished without any usage as complete (a host that reports none): estimated', () => {
    const stream = new GeminiNativeStream();
    expect(stream.push(data({ candidates: [text('all of it', 'STOP')] }))).toEqual({
      data: JSON.stringify({ candidates: [text('all of it', 'STOP')] }),
      text: 'all of it',
    });
    expect(stream.stopped).toBe(false);
    expect(() => stream.end()).not.toThrow();
  });

  it('fails a stream that ends before its answer is complete as a lost connection', () => {
    const stream = new GeminiNativeStream();
    stream.push(data({ candidates: [text('partial')] }));
    expect(() => stream.end()).toThrow('stream ended before the answer was complete');
  });

  it.each([
    [503, 503],
    [429, 429],
    [400, 400],
    [403, undefined],
  ])('throws Google’s error event (code %s) as a stream error with status %s', (code, status) => {
    const error = (() => {
      try {
        new GeminiNativeStream().push(data({ error: { code, message: 'overloaded', status: 'UNAVAILABLE' } }));
      } catch (e) {
        return e;
      }
      throw new Error('not thrown');
    })();
    expect(error).toBeInstanceOf(UpstreamError);
    expect(error).toMatchObject({ kind: 'stream_error', status, message: 'overloaded' });
  });
});

/* A Gemini-compatible host's counts come as it wrote them (JSON carries no NaN or Infinity). */
describe.each(['12', -1, 1.5, 2 ** 53])('GeminiNativeStream with the count %p', (bad) => {
  it('as the prompt count of the answer’s only usage: complete, with no usage (keygate estimates it)', () => {
    const stream = new GeminiNativeStream();
    const out = stream.push(data({ candidates: [text('hi', 'STOP')], usageMetadata: { promptTokenCount: bad, candidatesTokenCount: 1 } }));
    expect(out).not.toHaveProperty('usage');
    expect(out).not.toHaveProperty('runningUsage');
    expect(stream.stopped).toBe(true);
  });

  it('in a later event: the counts read before it stand, for a main count and a detail alike', () => {
    const stream = new GeminiNativeStream();
    stream.push(data({ candidates: [text('h')], usageMetadata: { promptTokenCount: 7, candidatesTokenCount: 1, thoughtsTokenCount: 2 } }));
    const last = stream.push(
      data({ candidates: [text('i', 'STOP')], usageMetadata: { promptTokenCount: bad, candidatesTokenCount: 3, thoughtsTokenCount: bad } }),
    );
    const usage = { prompt_tokens: 7, completion_tokens: 5, total_tokens: 12, completion_tokens_details: { reasoning_tokens: 2 } };
    expect(last.usage).toStrictEqual(usage);
    expect(last.runningUsage).toStrictEqual(usage);
  });
});

describe('generateContentUsage and generateContentText', () => {
  it('read a whole answer’s usage and its text, function calls and thoughts included', () => {
    const answer = {
      candidates: [
        {
          content: {
            parts: [
              { text: 'thinking', thought: true },
              { text: 'Hi' },
              { functionCall: { name: 'f', args: { a: 1 } } },
              { inlineData: {} },
            ],
          },
        },
      ],
      usageMetadata: { promptTokenCount: 2, candidatesTokenCount: 3 },
    };
    expect(generateContentText(answer as never)).toBe('thinkingHi{"a":1}');
    expect(generateContentUsage(answer as never)).toEqual({ prompt_tokens: 2, completion_tokens: 3, total_tokens: 5 });
    expect(generateContentUsage({})).toBeNull();
    // A main count that is not one: none read (keygate estimates it); a detail that is not one: left out.
    for (const bad of ['2', -2, 2.5, NaN, Infinity, 2 ** 53]) {
      expect(generateContentUsage({ usageMetadata: { promptTokenCount: 2, candidatesTokenCount: bad } } as never)).toBeNull();
      expect(
        generateContentUsage({ usageMetadata: { promptTokenCount: 2, candidatesTokenCount: 3, cachedContentTokenCount: bad } } as never),
      ).toEqual({
        prompt_tokens: 2,
        completion_tokens: 3,
        total_tokens: 5,
      });
    }
    expect(generateContentText({ candidates: 'nonsense' } as never)).toBe('');
  });
});

describe('requestedCandidates', () => {
  it.each([
    [{}, 1],
    [{ generationConfig: { candidateCount: 3 } }, 3],
    [{ generationConfig: { candidateCount: 0 } }, 1],
    [{ generationConfig: { candidateCount: 2.5 } }, 1],
    [{ generationConfig: { candidateCount: '4' } }, 1],
    [{ generationConfig: null }, 1],
  ])('reads %j as %i', (body, count) => {
    expect(requestedCandidates(body)).toBe(count);
  });
});

describe('generateContentForFallback', () => {
  const body = { contents: [], generationConfig: { maxOutputTokens: 64, thinkingConfig: { thinkingBudget: 1024 } } };

  it('leaves the thinking to a fallback that thinks, and takes it away from one that does not (Gemini 1.x, 2.0)', () => {
    expect(generateContentForFallback(body, 'gemini-2.5-pro')).toBe(body);
    expect(generateContentForFallback(body, 'gemini-1.5-pro')).toEqual({ contents: [], generationConfig: { maxOutputTokens: 64 } });
    const snake = { generationConfig: { thinking_config: { thinking_budget: 0 } } };
    expect(generateContentForFallback(snake, 'models/gemini-2.0-flash')).toEqual({ generationConfig: {} });
    // The client's body is not changed: the requested model's next attempt still thinks.
    expect(body.generationConfig.thinkingConfig).toEqual({ thinkingBudget: 1024 });
  });

  it('skips (refuses) a Gemini 2.5 fallback for a thinkingLevel, which it does not take; Gemini 3 takes both', () => {
    const level = { generationConfig: { thinkingConfig: { thinkingLevel: 'high' } } };
    expect(refusalOf(() => generateContentForFallback(level, 'gemini-2.5-flash')).code).toBe('unsupported_parameter');
    expect(generateContentForFallback(level, 'gemini-3-pro-preview')).toBe(level);
    expect(generateContentForFallback(body, 'gemini-3-pro-preview')).toBe(body);
  });

  it('passes a request without thinking as it is', () => {
    const plain = { contents: [], generationConfig: { temperature: 0.2 } };
    expect(generateContentForFallback(plain, 'gemini-1.5-pro')).toBe(plain);
    const none: { contents: unknown[]; generationConfig?: unknown } = { contents: [] };
    expect(generateContentForFallback(none, 'gemini-1.5-pro')).toBe(none);
  });
});
