import type { ModelPrice, PriceTier } from '../policy.types';

/** Rates shaped as Gemini 2.5 Pro's (dollars per million tokens), with its tier above 200k prompt tokens. */
export const GEMINI_25_PRO_PRICE: ModelPrice = {
  input: 1.25,
  cachedInput: 0.125,
  cacheWrite: 1.25,
  cacheWrite1h: 1.25,
  output: 10,
  tiers: [{ abovePromptTokens: 200_000, input: 2.5, cachedInput: 0.25, cacheWrite: 2.5, cacheWrite1h: 2.5, output: 15 }],
};

/** Claude Sonnet 4.5's rates above 200k input tokens with the 1M-context beta (cache writes by Anthropic's multipliers). */
export const SONNET_1M_TIER: PriceTier = {
  abovePromptTokens: 200_000,
  input: 6,
  cachedInput: 0.6,
  cacheWrite: 7.5,
  cacheWrite1h: 12,
  output: 22.5,
};
