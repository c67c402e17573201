import type { IncomingHttpHeaders } from 'node:http';
import type { GatewayError } from '@keygate/errors';
import type { RequestContext } from '@keygate/observability';
import { UpstreamError } from '@keygate/providers';
import { SSE_KEEP_ALIVE, type RelayDialect } from '../chat/sse-relay';

/** keygate's Anthropic-compatible routes. */
const ANTHROPIC_PATHS: ReadonlySet<string | undefined> = new Set(['/v1/messages', '/v1/messages/count_tokens']);
/** Routes both APIs have: the Anthropic SDKs, which always send `anthropic-version`, get Anthropic's shapes there. */
const SHARED_PATHS: ReadonlySet<string | undefined> = new Set(['/v1/models', '/v1/models/:model']);

/**
 * Whether a request speaks Anthropic's API (its credentials and error envelope): an Anthropic
 * route matched, however its path was spelt, or its path when none matched (a `GET /v1/messages`,
 * a path under it such as the batches keygate does not serve, a `/V1/messages` the case-sensitive
 * router did not take); or a route both APIs have (or a path under `/v1/models/` that none took),
 * called with `anthropic-version`. `path` is the request's path decoded and lower-cased, as the
 * lifecycle classifies it (its `routedPath`).
 */
export function speaksAnthropic(route: string | undefined, path: string, headers: IncomingHttpHeaders): boolean {
  const at = route ?? path;
  if (ANTHROPIC_PATHS.has(at)) return true;
  // A Messages path no route takes (`/v1/messages/batches`, which keygate does not serve): Anthropic's.
  if (route === undefined && path.startsWith('/v1/messages/')) return true;
  if (headers['anthropic-version'] === undefined) return false;
  // A models path no route took (`/v1/models/a/b`) is refused in the envelope of the client asking.
  return SHARED_PATHS.has(at) || (route === undefined && path.startsWith('/v1/models/'));
}

/** Whether a request was found to speak Anthropic's API on arrival (see {@link speaksAnthropic}). */
export function isAnthropicRequest(ctx: Pick<RequestContext, 'anthropic'> | undefined): boolean {
  return ctx?.anthropic === true;
}

/**
 * Anthropic's `error.type` for a status (its documented taxonomy): a 404 is `not_found_error`, a 413
 * `request_too_large`, a 504 `timeout_error`; any other 4xx is `invalid_request_error` and any other
 * 5xx `api_error`, as Anthropic's own API answers them.
 */
export function anthropicErrorType(status: number): string {
  switch (status) {
    case 401:
      return 'authentication_error';
    case 403:
      return 'permission_error';
    case 404:
      return 'not_found_error';
    case 413:
      return 'request_too_large';
    case 429:
      return 'rate_limit_error';
    case 504:
      return 'timeout_error';
    case 529:
      return 'overloaded_error';
    default:
      return status >= 500 ? 'api_error' : 'invalid_request_error';
  }
}

/** Anthropic's error envelope that is the contract's too. */
export type AnthropicErrorBody = { type: 'error'; request_id: string | null } & ReturnType<GatewayError['toBody']>;

/**
 * The contract's error body in Anthropic's envelope (`{"type":"error","error":{"type","message"},
 * "request_id"}`), its `error.type` from Anthropic's taxonomy, and the contract's `error.code` and
 * `error.param` kept: both APIs' clients read it. `request_id` is keygate's (the `request-id` header's).
 */
export function anthropicErrorBody(error: GatewayError, requestId: string | null): AnthropicErrorBody {
  const body = error.toBody();
  return { type: 'error', error: { ...body.error, type: anthropicTypeOf(error) }, request_id: requestId };
}

/**
 * The `error.type` of a keygate error in Anthropic's envelope: its status's, except for Anthropic's
 * own overload (a 529, or an `overloaded_error` event in its stream), which keygate answers 502 as
 * the contract says but names as Anthropic did, so a client that backs off on it (Claude Code) still can.
 */
function anthropicTypeOf(error: GatewayError): string {
  const cause = error.cause;
  if (cause instanceof UpstreamError && cause.provider === 'anthropic' && cause.status === 529) return anthropicErrorType(529);
  return anthropicErrorType(error.status);
}

/**
 * Anthropic's own id of a refusal it sent (its `request-id`), which keygate passes on, or undefined
 * when the refusal is keygate's (or came without one).
 */
export function anthropicRequestIdOf(error: GatewayError): string | undefined {
  return error.cause instanceof UpstreamError ? error.cause.upstreamRequestId : undefined;
}

/** Anthropic's stream: its events pass with their names; it ends with its own `message_stop`; errors are `event: error`. */
export const ANTHROPIC_STREAM: RelayDialect = {
  done: '',
  errorEvent: (error, { requestId }) => `event: error\ndata: ${JSON.stringify(anthropicErrorBody(error, requestId))}\n\n`,
  keepAlive: SSE_KEEP_ALIVE,
};
