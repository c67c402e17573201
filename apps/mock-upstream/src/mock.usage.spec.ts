import { mockTokens, writtenUsage } from './mock.usage';

describe('mockTokens', () => {
  it('reports the mock’s own counts when no usage directive is given', () => {
    expect(mockTokens({}, 12, 5)).toEqual({ prompt: 12, completion: 5, cached: 0, cacheWrite: 0, cacheWrite1h: 0, reasoning: 0 });
  });

  it('adds reasoning to the output, and grows a prompt too small to hold its cache reads and writes', () => {
    expect(mockTokens({ cachedTokens: 4, reasoningTokens: 9 }, 12, 5)).toEqual({
      prompt: 12,
      completion: 14,
      cached: 4,
      cacheWrite: 0,
      cacheWrite1h: 0,
      reasoning: 9,
    });
    // An hour's writes are writes too: in the total, and apart.
    expect(mockTokens({ cachedTokens: 1000, cacheWriteTokens: 24, cacheWrite1hTokens: 6 }, 12, 5)).toMatchObject({
      prompt: 1030,
      cached: 1000,
      cacheWrite: 30,
      cacheWrite1h: 6,
    });
  });
});

describe('mockTokens prompt_tokens', () => {
  it('reports a prompt of at least prompt_tokens, its cache reads and writes inside it, and the mock’s own count where larger', () => {
    expect(mockTokens({ promptTokens: 250_000, cachedTokens: 100_000 }, 12, 5)).toMatchObject({ prompt: 250_000, cached: 100_000 });
    expect(mockTokens({ promptTokens: 10 }, 12, 5)).toMatchObject({ prompt: 12 });
    expect(mockTokens({ promptTokens: 10, cacheWriteTokens: 30 }, 12, 5)).toMatchObject({ prompt: 30, cacheWrite: 30 });
  });
});

describe('writtenUsage', () => {
  const usage = {
    input_tokens: 12,
    cache_creation: { ephemeral_1h_input_tokens: 0 },
    details: [{ modality: 'TEXT', tokenCount: 3 }],
    tier: 'standard',
  };

  it('writes a usage as it is without bad_usage', () => {
    expect(writtenUsage({}, usage)).toBe(usage);
  });

  it('writes every count as a string with bad_usage, nested ones too, and leaves the rest', () => {
    expect(writtenUsage({ badUsage: true }, usage)).toEqual({
      input_tokens: '12',
      cache_creation: { ephemeral_1h_input_tokens: '0' },
      details: [{ modality: 'TEXT', tokenCount: '3' }],
      tier: 'standard',
    });
  });
});
