import type { FailureClass } from './failure-class';

/** Every error keygate answers with. The `code` is the body's `error.code`. */
export type GatewayErrorCode =
  | 'invalid_request'
  | 'invalid_json'
  | 'unsupported_parameter'
  | 'policy_violation'
  | 'request_too_large'
  | 'invalid_token'
  | 'forbidden'
  | 'blocked'
  | 'model_not_allowed'
  | 'model_not_found'
  | 'route_not_found'
  | 'response_not_found'
  | 'thread_not_found'
  | 'container_not_found'
  | 'rate_limit_exceeded'
  | 'daily_quota_exceeded'
  | 'upstream_error'
  | 'upstream_rate_limited'
  | 'upstream_bad_request'
  | 'upstream_timeout'
  | 'stream_timeout'
  | 'service_unavailable'
  | 'internal_error';

/** How one error code is answered over HTTP and classified in the audit record. */
export interface ErrorCodeSpec {
  /** HTTP status (SPEC §6). */
  status: number;
  /** OpenAI-style `error.type`. */
  type: string;
  /** Audit `failure` class (SPEC §7). */
  failure: FailureClass;
}

/**
 * The single table from code to status, type and failure class. A `Record` over the union
 * makes the mapping exhaustive at compile time: a new code cannot be added without a row.
 */
export const ERROR_CODES: Readonly<Record<GatewayErrorCode, ErrorCodeSpec>> = {
  invalid_request: { status: 400, type: 'invalid_request_error', failure: 'bad_request' },
  invalid_json: { status: 400, type: 'invalid_request_error', failure: 'bad_request' },
  unsupported_parameter: { status: 400, type: 'invalid_request_error', failure: 'bad_request' },
  policy_violation: { status: 400, type: 'invalid_request_error', failure: 'policy' },
  request_too_large: { status: 413, type: 'invalid_request_error', failure: 'policy' },
  invalid_token: { status: 401, type: 'authentication_error', failure: 'auth' },
  forbidden: { status: 403, type: 'permission_error', failure: 'forbidden' },
  blocked: { status: 403, type: 'permission_error', failure: 'blocked' },
  model_not_allowed: { status: 403, type: 'permission_error', failure: 'forbidden' },
  model_not_found: { status: 404, type: 'invalid_request_error', failure: 'not_found' },
  route_not_found: { status: 404, type: 'invalid_request_error', failure: 'not_found' },
  response_not_found: { status: 404, type: 'invalid_request_error', failure: 'not_found' },
  thread_not_found: { status: 404, type: 'invalid_request_error', failure: 'not_found' },
  container_not_found: { status: 404, type: 'invalid_request_error', failure: 'not_found' },
  rate_limit_exceeded: { status: 429, type: 'rate_limit_error', failure: 'rate_limit' },
  daily_quota_exceeded: { status: 429, type: 'rate_limit_error', failure: 'quota' },
  upstream_error: { status: 502, type: 'upstream_error', failure: 'upstream' },
  upstream_rate_limited: { status: 429, type: 'rate_limit_error', failure: 'upstream' },
  upstream_bad_request: { status: 400, type: 'invalid_request_error', failure: 'upstream' },
  upstream_timeout: { status: 504, type: 'timeout_error', failure: 'timeout' },
  stream_timeout: { status: 504, type: 'timeout_error', failure: 'policy' },
  service_unavailable: { status: 503, type: 'api_error', failure: 'internal' },
  internal_error: { status: 500, type: 'api_error', failure: 'internal' },
};
