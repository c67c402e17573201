import type { ParameterPolicy } from '@keygate/config';
import { GatewayError } from '@keygate/errors';

/** The request fields the parameter policy reads and writes. */
export interface PolicedRequest {
  max_tokens?: number | null;
  max_completion_tokens?: number | null;
  temperature?: number | null;
  [key: string]: unknown;
}

/** Which field carries the completion-token cap when the client sent none. */
export type CapField = 'max_tokens' | 'max_completion_tokens';

/**
 * Applies the server-side parameter policy (SPEC §4) in place: a `max_tokens` (or
 * `max_completion_tokens`) above the cap is a 400 naming the cap, an absent one is set to the cap,
 * and when both are sent both become the smaller, except where the cap goes as
 * `max_completion_tokens` (OpenAI's own endpoint), which gets that field alone; a `temperature`
 * outside the range is a 400.
 * Returns the effective completion-token cap.
 */
export function applyParameterPolicy(body: PolicedRequest, policy: ParameterPolicy, capField: CapField = 'max_tokens'): number {
  const cap = policy.maxTokens;
  let effective: number | undefined;
  for (const field of ['max_tokens', 'max_completion_tokens'] as const) {
    const value = body[field];
    if (value === undefined || value === null) continue;
    if (value > cap) {
      throw new GatewayError('policy_violation', `${field} ${value} exceeds this product's cap of ${cap}`, { param: field });
    }
    effective = Math.min(effective ?? value, value);
  }
  if (effective === undefined) {
    body[capField] = cap;
    effective = cap;
  } else if (capField === 'max_completion_tokens' && typeof body.max_tokens === 'number') {
    // OpenAI's own endpoint refuses the two together, and its reasoning models refuse
    // max_tokens: the limit goes as max_completion_tokens alone.
    delete body.max_tokens;
    body.max_completion_tokens = effective;
  } else if (typeof body.max_tokens === 'number' && typeof body.max_completion_tokens === 'number') {
    // Both sent: hosts differ on which one wins (vLLM reads max_completion_tokens, others
    // max_tokens), so both carry the smaller, the one the token reservation is sized for.
    body.max_tokens = effective;
    body.max_completion_tokens = effective;
  }
  const t = body.temperature;
  if (t !== undefined && t !== null && (t < policy.temperature.min || t > policy.temperature.max)) {
    throw new GatewayError(
      'policy_violation',
      `temperature must be between ${policy.temperature.min} and ${policy.temperature.max} for this product`,
      { param: 'temperature' },
    );
  }
  return effective;
}
