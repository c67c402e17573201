import { mockTokens } from './mock.usage';

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
