import { costUsd, type BilledTokens } from './audit.cost';

const price = { input: 3, cachedInput: 0.3, cacheWrite: 3.75, output: 15 };
const tokens = (t: Partial<BilledTokens>): BilledTokens => ({
  tokensIn: null,
  tokensOut: null,
  tokensCached: null,
  tokensCacheWrite: null,
  ...t,
});

describe('costUsd', () => {
  it('bills plain prompt tokens, cache reads, cache writes and output each at its rate (dollars per million)', () => {
    expect(costUsd(tokens({ tokensIn: 2_000, tokensCached: 1_000, tokensCacheWrite: 500, tokensOut: 100 }), price)).toBe(
      (500 * 3 + 1_000 * 0.3 + 500 * 3.75 + 100 * 15) / 1e6,
    );
  });

  it('counts an unknown split as plain input, and never bills more cache than the prompt holds', () => {
    expect(costUsd(tokens({ tokensIn: 1_000, tokensOut: 0 }), price)).toBe(0.003);
    // A host reporting more cached tokens than prompt tokens: the prompt is billed once, as cache reads.
    expect(costUsd(tokens({ tokensIn: 1_000, tokensCached: 5_000, tokensCacheWrite: 9 }), price)).toBe(0.0003);
  });

  it('is null without a price or without any token count, and rounded to a billionth of a dollar', () => {
    expect(costUsd(tokens({ tokensIn: 10 }), undefined)).toBeNull();
    expect(costUsd(tokens({}), price)).toBeNull();
    expect(costUsd(tokens({ tokensOut: 1 }), { input: 0, cachedInput: 0, cacheWrite: 0, output: 0.0001234567 })).toBe(0);
    expect(costUsd(tokens({ tokensIn: 3 }), { input: 0.1, cachedInput: 0.1, cacheWrite: 0.1, output: 0 })).toBe(3e-7);
  });
});
