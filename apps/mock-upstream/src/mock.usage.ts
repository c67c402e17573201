import type { MockDirectives } from './mock.directives';

/** A reply's token counts once the usage directives are applied: what each provider's usage reports. */
export interface MockTokens {
  /** The whole prompt, cache reads and writes included (OpenAI's and Gemini's prompt count). */
  prompt: number;
  /** The whole output, reasoning included (OpenAI's and Gemini's sum; Anthropic's `output_tokens`). */
  completion: number;
  /** Of `prompt`, read from the prompt cache. */
  cached: number;
  /** Of `prompt`, written to the prompt cache (Anthropic reports it; the others do not write apart). */
  cacheWrite: number;
  /** Of `cacheWrite`, written for an hour. */
  cacheWrite1h: number;
  /** Of `completion`, spent reasoning. */
  reasoning: number;
}

/** The counts a reply reports: the mock's own for its prompt and text, plus what the directives ask for (a prompt at least `prompt_tokens` long). */
export function mockTokens(directives: MockDirectives, prompt: number, completion: number): MockTokens {
  const cached = directives.cachedTokens ?? 0;
  const cacheWrite1h = directives.cacheWrite1hTokens ?? 0;
  const cacheWrite = (directives.cacheWriteTokens ?? 0) + cacheWrite1h;
  const reasoning = directives.reasoningTokens ?? 0;
  return {
    prompt: Math.max(prompt, directives.promptTokens ?? 0, cached + cacheWrite),
    completion: completion + reasoning,
    cached,
    cacheWrite,
    cacheWrite1h,
    reasoning,
  };
}

/**
 * A usage as a reply writes it: with `bad_usage`, every count in it (nested ones too) a string
 * (`"12"`), as a careless compatible host writes them; else as it is. Typed as the usage it stands
 * in for, which is what a client reading it takes it to be.
 */
export function writtenUsage<T extends object>(directives: MockDirectives, usage: T): T {
  return directives.badUsage ? (countsAsStrings(usage) as T) : usage;
}

function countsAsStrings(value: unknown): unknown {
  if (typeof value === 'number') return String(value);
  if (Array.isArray(value)) return value.map(countsAsStrings);
  if (typeof value === 'object' && value !== null)
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, countsAsStrings(v)]));
  return value;
}
