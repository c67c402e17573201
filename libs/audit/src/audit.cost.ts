import { ratesAt, type ModelPrice } from '@keygate/config';

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
