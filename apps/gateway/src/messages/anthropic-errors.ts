import type { GatewayError } from '@keygate/errors';
import type { RequestContext } from '@keygate/observability';
import type { RelayDialect } from '../chat/sse-relay';

/** keygate's Anthropic-compatible routes. */
const ANTHROPIC_PATHS: ReadonlySet<string | undefined> = new Set(['/v1/messages', '/v1/messages/count_tokens']);

/**
 * Whether a request is for one of the Anthropic-compatible routes (their credentials and error
 * envelope): the route matched, however its path was spelt, or its path when none matched (a
 * `GET /v1/messages`).
 */
export function isAnthropicRequest(ctx: Pick<RequestContext, 'path' | 'route'> | undefined): boolean {
  return ctx !== undefined && ANTHROPIC_PATHS.has(ctx.route ?? ctx.path);
}

/**
 * The contract's error body with Anthropic's `"type": "error"` beside it: Anthropic's envelope
 * (`{"type":"error","error":{"type","message"}}`) and OpenAI's (`error.message`, `error.code`) at once.
 */
export function anthropicErrorBody(error: GatewayError): { type: 'error' } & ReturnType<GatewayError['toBody']> {
  return { type: 'error', ...error.toBody() };
}

/** The error body for a request: Anthropic's envelope on its routes, the contract's elsewhere. */
export function errorBodyFor(
  ctx: Pick<RequestContext, 'path' | 'route'> | undefined,
  error: GatewayError,
): ReturnType<GatewayError['toBody']> {
  return isAnthropicRequest(ctx) ? anthropicErrorBody(error) : error.toBody();
}

/** Anthropic's stream: its events pass with their names; it ends with its own `message_stop`; errors are `event: error`. */
export const ANTHROPIC_STREAM: RelayDialect = {
  done: '',
  errorEvent: (error) => `event: error\ndata: ${JSON.stringify(anthropicErrorBody(error))}\n\n`,
};
