import type { GatewayError } from '@keygate/errors';
import type { RequestContext } from '@keygate/observability';
import { googleErrorBody, isGoogleRequest, type GoogleErrorBody } from '../gemini/google-errors';
import { anthropicErrorBody, isAnthropicRequest } from '../messages/anthropic-errors';

/** An error body in the envelope of the API a request speaks. */
export type ErrorEnvelope = ReturnType<GatewayError['toBody']> | GoogleErrorBody;

/**
 * The error body for a request: Anthropic's envelope on its routes, Google's on the Gemini routes
 * (`/v1beta`), the contract's elsewhere. `requestId` is the id the answer names (keygate's unless
 * the refusal was Anthropic's own).
 */
export function errorBodyFor(
  ctx: Pick<RequestContext, 'anthropic' | 'google' | 'requestId'> | undefined,
  error: GatewayError,
  requestId = ctx?.requestId,
): ErrorEnvelope {
  if (ctx !== undefined && isGoogleRequest(ctx)) return googleErrorBody(error, ctx.requestId);
  return ctx !== undefined && isAnthropicRequest(ctx) ? anthropicErrorBody(error, requestId ?? null) : error.toBody();
}
