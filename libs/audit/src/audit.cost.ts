import { ratesAt, type ModelPrice } from '@keygate/config';
import type { EarlierAttempt, TokenCounts } from '@keygate/observability';

/** A request's token counts as the audit records them (null: not known). */
export interface BilledTokens {
  tokensIn: number | null;
  tokensOut: number | null;
  tokensCached: number | null;
  tokensCacheWrite: number | null;
  tokensCacheWrite1h: number | null;
}

/**
 * What a request's tokens cost at `price`, in US dollars: the prompt's cache reads and writes (5
 * minutes, an hour) at their own rates and the rest at the input rate, the output (reasoning included) at the output
 * rate. A prompt longer than a tier's threshold (its whole count, cache reads and writes included)
 * bills every token of the request at that tier's rates, as the providers' long-context prices do.
 * Null without a price or without any token count. Rounded to a billionth of a dollar: a line
 * carries no more decimals than the amount means.
 */
export function costUsd(tokens: BilledTokens, price: ModelPrice | undefined): number | null {
  if (!price || (tokens.tokensIn === null && tokens.tokensOut === null)) return null;
  const prompt = tokens.tokensIn ?? 0;
  const cached = Math.min(tokens.tokensCached ?? 0, prompt);
  const written = Math.min(tokens.tokensCacheWrite ?? 0, prompt - cached);
  const writtenForAnHour = Math.min(tokens.tokensCacheWrite1h ?? 0, written);
  const rates = ratesAt(price, prompt);
  const micro =
    (prompt - cached - written) * rates.input +
    cached * rates.cachedInput +
    (written - writtenForAnHour) * rates.cacheWrite +
    writtenForAnHour * rates.cacheWrite1h +
    (tokens.tokensOut ?? 0) * rates.output;
  return Math.round(micro * 1000) / 1e9;
}

/**
 * What a request cost, in US dollars: its last attempt's tokens at `model`'s price, and each earlier
 * attempt it was billed for (keygate cut it while the upstream answered, then retried or fell back)
 * at its own model's price, each alone (a long-context tier is the prompt's, not the sum's). The
 * last attempt's tokens are the request's less the earlier ones'. Null when a part with tokens has
 * no price, or when no part has a token count.
 */
export function requestCostUsd(
  tokens: TokenCounts & { earlierAttempts: readonly EarlierAttempt[] | null },
  model: string,
  priceOf: (model: string) => ModelPrice | undefined,
): number | null {
  const earlier = tokens.earlierAttempts;
  if (!earlier?.length) return costUsd(tokens, priceOf(model));
  const less = (whole: number | null, part: (attempt: EarlierAttempt) => number | null): number | null =>
    whole === null ? null : whole - earlier.reduce((sum, attempt) => sum + (part(attempt) ?? 0), 0);
  const last: BilledTokens = {
    tokensIn: less(tokens.tokensIn, (a) => a.tokensIn),
    tokensOut: less(tokens.tokensOut, (a) => a.tokensOut),
    tokensCached: less(tokens.tokensCached, (a) => a.tokensCached),
    tokensCacheWrite: less(tokens.tokensCacheWrite, (a) => a.tokensCacheWrite),
    tokensCacheWrite1h: less(tokens.tokensCacheWrite1h, (a) => a.tokensCacheWrite1h),
  };
  let total = 0;
  let priced = false;
  for (const [part, partModel] of [[last, model], ...earlier.map((a) => [a, a.model] as const)] as const) {
    // A part that was billed nothing (the last attempt of a request whose earlier ones are billed) needs no price.
    if (!(part.tokensIn ?? 0) && !(part.tokensOut ?? 0)) continue;
    const cost = costUsd(part, priceOf(partModel));
    if (cost === null) return null;
    total += cost;
    priced = true;
  }
  return priced ? Math.round(total * 1e9) / 1e9 : costUsd(last, priceOf(model));
}
