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

/** The counts a reply reports: the mock's own for its prompt and text, plus what the directives ask for. */
export function mockTokens(directives: MockDirectives, prompt: number, completion: number): MockTokens {
  const cached = directives.cachedTokens ?? 0;
  const cacheWrite1h = directives.cacheWrite1hTokens ?? 0;
  const cacheWrite = (directives.cacheWriteTokens ?? 0) + cacheWrite1h;
  const reasoning = directives.reasoningTokens ?? 0;
  return { prompt: Math.max(prompt, cached + cacheWrite), completion: completion + reasoning, cached, cacheWrite, cacheWrite1h, reasoning };
}
