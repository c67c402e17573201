import { createHash } from 'node:crypto';

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/**
 * The pseudonymous id of a product's user that goes to the providers with the policy's
 * `end_user_id`: the first 32 hex digits of the SHA-256 of `<product>\n<user>`. Stable for a user,
 * distinct across products, and not the user's name; an operator told of one by a provider finds
 * the user by hashing the candidates from the audit (README, Policy file).
 */
export function endUserId(product: string, user: string): string {
  return createHash('sha256').update(`${product}\n${user}`).digest('hex').slice(0, 32);
}

/**
 * Names the caller in an OpenAI-style body (chat completions, the Responses API): its
 * `safety_identifier`, and its `user` where the client sent one. The client's own values are
 * replaced: they would let a caller pass for someone else. The Anthropic translation reads them as
 * `metadata.user_id`; the Gemini one has no such field.
 */
export function identifyCaller(body: Record<string, unknown>, id: string): void {
  body.safety_identifier = id;
  if (body.user !== undefined && body.user !== null) body.user = id;
}

/** Names the caller in an Anthropic Messages body: `metadata.user_id`, the client's replaced (its other metadata kept). */
export function identifyAnthropicCaller(body: Record<string, unknown>, id: string): void {
  body.metadata = { ...(isRecord(body.metadata) ? body.metadata : {}), user_id: id };
}
