import type { IncomingHttpHeaders } from 'node:http';
import type { GatewayError } from '@keygate/errors';
import type { RequestContext } from '@keygate/observability';
import type { RelayDialect } from '../chat/sse-relay';

/** keygate's Anthropic-compatible routes. */
const ANTHROPIC_PATHS: ReadonlySet<string | undefined> = new Set(['/v1/messages', '/v1/messages/count_tokens']);
/** Routes both APIs have: the Anthropic SDKs, which always send `anthropic-version`, get Anthropic's shapes there. */
const SHARED_PATHS: ReadonlySet<string | undefined> = new Set(['/v1/models', '/v1/models/:model']);

/**
 * Whether a request speaks Anthropic's API (its credentials and error envelope): an Anthropic
 * route matched, however its path was spelt, or its path when none matched (a `GET /v1/messages`);
 * or a route both APIs have (or a path under `/v1/models/` that none took), called with `anthropic-version`.
 */
export function speaksAnthropic(route: string | undefined, path: string, headers: IncomingHttpHeaders): boolean {
  const at = route ?? path;
  if (ANTHROPIC_PATHS.has(at)) return true;
  if (headers['anthropic-version'] === undefined) return false;
  // A models path no route took (`/v1/models/a/b`) is refused in the envelope of the client asking.
  return SHARED_PATHS.has(at) || (route === undefined && path.startsWith('/v1/models/'));
}

/** Whether a request was found to speak Anthropic's API on arrival (see {@link speaksAnthropic}). */
export function isAnthropicRequest(ctx: Pick<RequestContext, 'anthropic'> | undefined): boolean {
  return ctx?.anthropic === true;
}

/**
 * The contract's error body with Anthropic's `"type": "error"` beside it: Anthropic's envelope
 * (`{"type":"error","error":{"type","message"}}`) and OpenAI's (`error.message`, `error.code`) at once.
 */
export function anthropicErrorBody(error: GatewayError): { type: 'error' } & ReturnType<GatewayError['toBody']> {
  return { type: 'error', ...error.toBody() };
}

/** The error body for a request: Anthropic's envelope on its routes, the contract's elsewhere. */
export function errorBodyFor(ctx: Pick<RequestContext, 'anthropic'> | undefined, error: GatewayError): ReturnType<GatewayError['toBody']> {
  return isAnthropicRequest(ctx) ? anthropicErrorBody(error) : error.toBody();
}

/** Anthropic's stream: its events pass with their names; it ends with its own `message_stop`; errors are `event: error`. */
export const ANTHROPIC_STREAM: RelayDialect = {
  done: '',
  errorEvent: (error) => `event: error\ndata: ${JSON.stringify(anthropicErrorBody(error))}\n\n`,
};
