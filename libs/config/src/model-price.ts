import type { ModelPrice, PriceRates } from './policy.types';

/**
 * The rates a request whose prompt holds `promptTokens` tokens (cache reads and writes included)
 * is billed at: those of the highest tier whose threshold it passes, else the model's own. A prompt
 * of exactly a threshold stays below it (Google's "prompts <= 200k tokens", Anthropic's "exceed
 * 200K input tokens").
 */
export function ratesAt(price: ModelPrice, promptTokens: number): PriceRates {
  let rates: PriceRates = price;
  for (const tier of price.tiers ?? []) if (promptTokens > tier.abovePromptTokens) rates = tier;
  return rates;
}
