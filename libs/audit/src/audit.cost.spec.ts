import { GEMINI_25_PRO_PRICE, SONNET_1M_TIER } from '../../config/src/testing/prices';
import type { ModelPrice } from '@keygate/config';
import { RequestContext } from '@keygate/observability';
import { costUsd, requestCostUsd, type BilledTokens } from './audit.cost';

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

describe('costUsd with long-context tiers (every token of a request whose prompt passes a threshold at the tier’s rates)', () => {
  // Rates shaped as Gemini 2.5 Pro's and Claude Sonnet 4.5's 1M-context prices (dollars per million tokens).
  const gemini = GEMINI_25_PRO_PRICE;
  const claude = { ...price, tiers: [SONNET_1M_TIER] };

  it('bills a prompt below or at the threshold at the base rates, one token above it at the tier’s, output included', () => {
    expect(costUsd(tokens({ tokensIn: 199_999, tokensOut: 1_000 }), gemini)).toBe((199_999 * 1.25 + 1_000 * 10) / 1e6);
    // Google's "prompts <= 200k tokens", Anthropic's "exceed 200K input tokens": the threshold itself is below.
    expect(costUsd(tokens({ tokensIn: 200_000, tokensOut: 1_000 }), gemini)).toBe((200_000 * 1.25 + 1_000 * 10) / 1e6);
    expect(costUsd(tokens({ tokensIn: 200_001, tokensOut: 1_000 }), gemini)).toBe((200_001 * 2.5 + 1_000 * 15) / 1e6);
    expect(costUsd(tokens({ tokensIn: 200_001, tokensOut: 1_000 }), claude)).toBe((200_001 * 6 + 1_000 * 22.5) / 1e6);
  });

  it('counts cache reads and writes toward the threshold, and bills them at the tier’s cache rates', () => {
    // Gemini: 50,001 plain and 150,000 read from the cache, 200,001 in all.
    expect(costUsd(tokens({ tokensIn: 200_001, tokensCached: 150_000, tokensOut: 10 }), gemini)).toBe(
      (50_001 * 2.5 + 150_000 * 0.25 + 10 * 15) / 1e6,
    );
    // The same split at 200,000 in all: base rates, cache reads at the base cache rate.
    expect(costUsd(tokens({ tokensIn: 200_000, tokensCached: 150_000, tokensOut: 10 }), gemini)).toBe(
      (50_000 * 1.25 + 150_000 * 0.125 + 10 * 10) / 1e6,
    );
    // Claude: 1 plain token past 100,000 read, 60,000 written for 5 minutes and 40,000 for an hour.
    expect(
      costUsd(
        tokens({ tokensIn: 200_001, tokensCached: 100_000, tokensCacheWrite: 100_000, tokensCacheWrite1h: 40_000, tokensOut: 100 }),
        claude,
      ),
    ).toBe((1 * 6 + 100_000 * 0.6 + 60_000 * 7.5 + 40_000 * 12 + 100 * 22.5) / 1e6);
  });

  it('bills at the highest tier the prompt passes, and an unknown prompt (output only) at the base rates', () => {
    const stepped = {
      ...flat(1, 10),
      tiers: [
        { ...flat(2, 20), abovePromptTokens: 1_000 },
        { ...flat(4, 40), abovePromptTokens: 5_000 },
      ],
    };
    expect(costUsd(tokens({ tokensIn: 1_000, tokensOut: 1 }), stepped)).toBe((1_000 * 1 + 10) / 1e6);
    expect(costUsd(tokens({ tokensIn: 5_000, tokensOut: 1 }), stepped)).toBe((5_000 * 2 + 20) / 1e6);
    expect(costUsd(tokens({ tokensIn: 5_001, tokensOut: 1 }), stepped)).toBe((5_001 * 4 + 40) / 1e6);
    expect(costUsd(tokens({ tokensOut: 1_000 }), stepped)).toBe(0.01);
  });
});

describe('requestCostUsd: a request billed for earlier attempts (cut by keygate, then retried or fallen back)', () => {
  const prices: Record<string, ModelPrice> = { claude: price, 'gpt-4o': flat(2.5, 10), gemini: GEMINI_25_PRO_PRICE };
  const priceOf = (model: string) => prices[model];
  const earlier = (model: string, tokensIn: number) => ({
    model,
    tokensIn,
    tokensOut: null,
    tokensCached: null,
    tokensCacheWrite: null,
    tokensCacheWrite1h: null,
    tokensReasoning: null,
  });
  const request = (): RequestContext => new RequestContext('req-1', 'POST', '/v1/chat/completions', 0n, null, true);

  it('prices the last attempt at its model and each earlier one at its own, the request’s counts holding them all', () => {
    const ctx = request();
    Object.assign(ctx, { tokensIn: 2_000, tokensCached: 1_000, tokensOut: 100 });
    ctx.billEarlierAttempts([earlier('gpt-4o', 300), earlier('gpt-4o', 300)]);
    expect([ctx.tokensIn, ctx.tokensOut, ctx.tokensCached, ctx.tokensCacheWrite]).toEqual([2_600, 100, 1_000, null]);
    const last = costUsd(tokens({ tokensIn: 2_000, tokensCached: 1_000, tokensOut: 100 }), price) ?? 0;
    expect(requestCostUsd(ctx, 'claude', priceOf)).toBeCloseTo(last + (600 * 2.5) / 1e6, 12);
  });

  it('prices each attempt’s prompt alone against a long-context tier, not their sum', () => {
    const ctx = request();
    Object.assign(ctx, { tokensIn: 150_000, tokensOut: 0 });
    ctx.billEarlierAttempts([earlier('gemini', 150_000)]);
    // 300,000 tokens in all, each prompt of 150,000 below the 200,000 threshold: the base rate.
    expect(requestCostUsd(ctx, 'gemini', priceOf)).toBe((300_000 * 1.25) / 1e6);
  });

  it('bills the earlier attempts of a request whose last attempt was billed nothing; null when a billed attempt has no price', () => {
    const ctx = request();
    ctx.billEarlierAttempts([earlier('gpt-4o', 400)]);
    expect([ctx.tokensIn, ctx.tokensOut]).toEqual([400, null]);
    expect(requestCostUsd(ctx, 'unpriced', priceOf)).toBe((400 * 2.5) / 1e6);
    const unpriced = request();
    Object.assign(unpriced, { tokensIn: 10, tokensOut: 10 });
    unpriced.billEarlierAttempts([earlier('unpriced', 400)]);
    expect(requestCostUsd(unpriced, 'gpt-4o', priceOf)).toBeNull();
  });

  it('is the plain cost of a request without earlier attempts', () => {
    const ctx = request();
    Object.assign(ctx, { tokensIn: 2_000, tokensOut: 100 });
    expect(requestCostUsd(ctx, 'gpt-4o', priceOf)).toBe(costUsd(ctx, prices['gpt-4o']));
  });
});
