import { costUsd, type BilledTokens } from './audit.cost';

const price = { input: 3, cachedInput: 0.3, cacheWrite: 3.75, cacheWrite1h: 6, output: 15 };
const flat = (rate: number, output = 0) => ({ input: rate, cachedInput: rate, cacheWrite: rate, cacheWrite1h: rate, output });
const tokens = (t: Partial<BilledTokens>): BilledTokens => ({
  tokensIn: null,
  tokensOut: null,
  tokensCached: null,
  tokensCacheWrite: null,
  tokensCacheWrite1h: null,
  ...t,
});

describe('costUsd', () => {
  it('bills plain prompt tokens, cache reads, cache writes and output each at its rate (dollars per million)', () => {
    expect(costUsd(tokens({ tokensIn: 2_000, tokensCached: 1_000, tokensCacheWrite: 500, tokensOut: 100 }), price)).toBe(
      (500 * 3 + 1_000 * 0.3 + 500 * 3.75 + 100 * 15) / 1e6,
    );
  });

  it('bills the writes made for an hour at their own rate, the rest of the writes at the 5-minute one', () => {
    expect(costUsd(tokens({ tokensIn: 1_000, tokensCacheWrite: 800, tokensCacheWrite1h: 300 }), price)).toBe(
      (200 * 3 + 500 * 3.75 + 300 * 6) / 1e6,
    );
    // More hour-long writes than writes (a host's mistake) bills every write once, at the hour's rate.
    expect(costUsd(tokens({ tokensIn: 1_000, tokensCacheWrite: 100, tokensCacheWrite1h: 900 }), price)).toBe((900 * 3 + 100 * 6) / 1e6);
  });

  it('counts an unknown split as plain input, and never bills more cache than the prompt holds', () => {
    expect(costUsd(tokens({ tokensIn: 1_000, tokensOut: 0 }), price)).toBe(0.003);
    // A host reporting more cached tokens than prompt tokens: the prompt is billed once, as cache reads.
    expect(costUsd(tokens({ tokensIn: 1_000, tokensCached: 5_000, tokensCacheWrite: 9 }), price)).toBe(0.0003);
  });

  it('is null without a price or without any token count, and rounded to a billionth of a dollar', () => {
    expect(costUsd(tokens({ tokensIn: 10 }), undefined)).toBeNull();
    expect(costUsd(tokens({}), price)).toBeNull();
    expect(costUsd(tokens({ tokensOut: 1 }), flat(0, 0.0001234567))).toBe(0);
    expect(costUsd(tokens({ tokensIn: 3 }), flat(0.1))).toBe(3e-7);
  });
});
