import { applyDecorators } from '@nestjs/common';
import { ApiExtraModels, ApiProperty, ApiResponse, ApiSchema, getSchemaPath } from '@nestjs/swagger';
import { ERROR_CODES } from '@keygate/errors';
import { anthropicErrorType } from '../messages/anthropic-errors';

class ErrorDetailDto {
  @ApiProperty({ example: 'the token has expired' }) message!: string;
  @ApiProperty({ example: 'authentication_error' }) type!: string;
  @ApiProperty({ example: 'invalid_token' }) code!: string;
  @ApiProperty({ nullable: true, type: String, example: null }) param!: string | null;
}

/** The contract's error body (SPEC §6). */
export class ErrorBodyDto {
  @ApiProperty({ type: ErrorDetailDto }) error!: ErrorDetailDto;
}

/** Anthropic's `error.type` for each status keygate answers, as anthropicErrorType gives them. */
const ANTHROPIC_ERROR_TYPES = [...new Set(Object.values(ERROR_CODES).map((spec) => anthropicErrorType(spec.status)))];

class AnthropicErrorDetailDto {
  @ApiProperty({ example: 'the token has expired' }) message!: string;
  @ApiProperty({
    enum: ANTHROPIC_ERROR_TYPES,
    example: 'authentication_error',
    description:
      "Anthropic's type for the status: authentication_error 401, permission_error 403, not_found_error 404, " +
      'request_too_large 413, rate_limit_error 429, timeout_error 504, api_error any other 5xx, ' +
      'invalid_request_error any other 4xx',
  })
  type!: string;
  @ApiProperty({ example: 'invalid_token', description: "The contract's code, as on the OpenAI routes" }) code!: string;
  @ApiProperty({ nullable: true, type: String, example: null, description: "The contract's param" }) param!: string | null;
}

/** The contract's error object in Anthropic's envelope, which the Anthropic SDKs read (their own error classes). */
@ApiSchema({
  description:
    'An error in Anthropic’s dialect (`/v1/messages`, `/v1/messages/count_tokens`, and `/v1/models` with `anthropic-version`): ' +
    'Anthropic’s envelope around the contract’s error object, `error.type` from Anthropic’s taxonomy and `error.code` and ' +
    '`error.param` the contract’s; `request_id` is keygate’s request id.',
})
export class AnthropicErrorBodyDto {
  @ApiProperty({ enum: ['error'], example: 'error' }) type!: 'error';
  @ApiProperty({ type: AnthropicErrorDetailDto }) error!: AnthropicErrorDetailDto;
  @ApiProperty({
    example: '5f0c2e1a-8b7d-4c1e-9a35-2d6f4b8e7c10',
    description: 'keygate’s request id, as in the X-Request-Id header (what to quote when reporting a problem)',
  })
  request_id!: string;
}

class GoogleErrorDetailDto {
  @ApiProperty({ type: 'integer', example: 401, description: 'The HTTP status' }) code!: number;
  @ApiProperty({ example: 'the token has expired' }) message!: string;
  @ApiProperty({
    example: 'UNAUTHENTICATED',
    description:
      "Google's status name: INVALID_ARGUMENT 400 and 413, UNAUTHENTICATED 401, PERMISSION_DENIED 403, NOT_FOUND 404, " +
      'RESOURCE_EXHAUSTED 429, INTERNAL 500, UNAVAILABLE 502 and 503, DEADLINE_EXCEEDED 504; a refusal Gemini itself sent keeps its own',
  })
  status!: string;
  @ApiProperty({
    type: 'array',
    items: { type: 'object', additionalProperties: true },
    description:
      'A google.rpc.ErrorInfo (domain `keygate`, reason the contract’s code in capitals, metadata `code`, `param`, `request_id`), ' +
      'and a google.rpc.RetryInfo when the answer carries Retry-After',
  })
  details!: Array<Record<string, unknown>>;
}

/** The contract's error in Google's envelope, which `@google/genai` and Gemini CLI read. */
@ApiSchema({
  description:
    'An error in Google’s dialect (the Gemini routes under `/v1beta`, and their POST methods under `/v1`): `{"error": {"code", "message", "status", "details"}}`.',
})
export class GoogleErrorBodyDto {
  @ApiProperty({ type: GoogleErrorDetailDto }) error!: GoogleErrorDetailDto;
}

/** One documented status: the code and its description. */
type Status = readonly [status: number, description: string];
/** The error body a route answers with: one DTO, or several when the client's dialect picks it. */
type ErrorBody =
  | typeof ErrorBodyDto
  | typeof AnthropicErrorBodyDto
  | typeof GoogleErrorBodyDto
  | ReadonlyArray<typeof ErrorBodyDto | typeof AnthropicErrorBodyDto>;

const BAD_REQUEST: Status = [400, 'Malformed body, invalid parameter, or parameter policy violation'];
const UNAUTHORIZED: Status = [401, 'Missing or invalid credential (carries WWW-Authenticate)'];
const FORBIDDEN: Status = [
  403,
  '`forbidden`: the credential’s product is not configured on this gateway; `blocked`: the product or user is blocked',
];
const MODEL_FORBIDDEN: Status = [
  403,
  '`forbidden`: the credential’s product is not configured on this gateway; `blocked`: the product or user is blocked; ' +
    '`model_not_allowed`: a model this gateway serves to other products only',
];
const UNKNOWN_MODEL: Status = [404, '`model_not_found`: a model no product of this gateway has'];
const BODY_TIMEOUT: Status = [
  408,
  'The body did not arrive within the request timeout (API_KEY_SERVER_REQUEST_TIMEOUT_SECONDS; carries Connection: close)',
];
const TOO_LARGE: Status = [413, 'Body larger than the product allows (max_request_bytes)'];
const LIMITED: Status = [429, 'Rate limit or daily quota, or the upstream rate-limited keygate (carries Retry-After)'];
const INTERNAL: Status = [500, '`internal_error`: a bug; the message carries the request id'];
const UPSTREAM: Status = [502, 'Upstream failure'];
const UNAVAILABLE: Status = [
  503,
  '`service_unavailable`: the HMAC replay cache is down (an HMAC-signed request), or keygate is shutting down ' +
    '(carries Retry-After; Connection: close while shutting down)',
];
const UPSTREAM_TIMEOUT: Status = [504, 'Upstream timeout'];

/** The statuses of a route that takes a body naming a model and calls an upstream. */
const STATUSES: Status[] = [
  BAD_REQUEST,
  UNAUTHORIZED,
  MODEL_FORBIDDEN,
  UNKNOWN_MODEL,
  BODY_TIMEOUT,
  TOO_LARGE,
  LIMITED,
  INTERNAL,
  UPSTREAM,
  UNAVAILABLE,
  UPSTREAM_TIMEOUT,
];

const ADMIN_STATUSES: Status[] = [
  [400, 'Invalid body or query parameter'],
  UNAUTHORIZED,
  [403, 'The credential lacks the keygate.admin scope (or keygate.admin:<product> for the product named)'],
  [429, 'Too many requests from this operator (carries Retry-After)'],
  INTERNAL,
  [503, '`service_unavailable`: keygate is shutting down (carries Retry-After, Connection: close)'],
];

/**
 * The content of an error answer: always JSON, also on a route that answers a stream (an error comes
 * before the stream starts), so it is given as content rather than through the route's
 * `@ApiProduces`. The schema is a `$ref`, or `anyOf` the bodies of the dialects a route speaks: not
 * `oneOf`, since an Anthropic-envelope body (`type`, `error`, `request_id`) also has the contract's
 * `error` and so matches both.
 */
function errorContent(body: ErrorBody): { content: { 'application/json': { schema: Record<string, unknown> } } } {
  const schema = Array.isArray(body)
    ? { anyOf: body.map((dto: typeof ErrorBodyDto) => ({ $ref: getSchemaPath(dto) })) }
    : { $ref: getSchemaPath(body as typeof ErrorBodyDto) };
  return { content: { 'application/json': { schema } } };
}

/** Documents each status with its description and the given error body; `more` adds statuses or replaces the description of one. */
function apiErrors(statuses: readonly Status[], body: ErrorBody, more: readonly Status[] = []): MethodDecorator & ClassDecorator {
  const all = new Map([...statuses, ...more]);
  const content = errorContent(body);
  return applyDecorators(
    ApiExtraModels(ErrorBodyDto, AnthropicErrorBodyDto, GoogleErrorBodyDto),
    ...[...all].sort(([a], [b]) => a - b).map(([status, description]) => ApiResponse({ status, description, ...content })),
  );
}

/** Documents the error statuses of an operator route with the contract's body; `more` adds or replaces some. */
export function ApiAdminErrors(more: readonly Status[] = []): MethodDecorator & ClassDecorator {
  return apiErrors(ADMIN_STATUSES, ErrorBodyDto, more);
}

/**
 * Documents every error status of a model route (a body naming a model, an upstream call) with the
 * contract's body (Anthropic's envelope on its routes); `more` adds statuses or replaces the description of one.
 */
export function ApiGatewayErrors(body: ErrorBody = ErrorBodyDto, more: readonly Status[] = []): MethodDecorator & ClassDecorator {
  return apiErrors(STATUSES, body, more);
}

/**
 * The error statuses of `GET /v1/models` and `GET /v1/models/{model}`: answered by keygate alone
 * (no upstream, no body), in OpenAI's envelope or, with `anthropic-version`, Anthropic's.
 */
export function ApiModelsErrors(route: 'list' | 'retrieve'): MethodDecorator & ClassDecorator {
  const statuses: Status[] = [
    [
      400,
      route === 'list'
        ? 'Malformed request; with anthropic-version, also a query parameter the route does not take (it takes limit, after_id, ' +
          'before_id, lifecycle, lifecycle[], beta), a limit outside 1–1000, a cursor naming no listed model, or both cursors'
        : 'Malformed request; with anthropic-version, also a query parameter the route does not take (it takes beta)',
    ],
    UNAUTHORIZED,
    route === 'retrieve' ? MODEL_FORBIDDEN : FORBIDDEN,
    ...(route === 'retrieve'
      ? [
          [
            404,
            '`model_not_found`: a model no product of this gateway has (with anthropic-version, also one another provider serves)',
          ] as Status,
        ]
      : []),
    [429, 'Rate limit (carries Retry-After)'],
    INTERNAL,
    UNAVAILABLE,
  ];
  return apiErrors(statuses, [ErrorBodyDto, AnthropicErrorBodyDto]);
}

/**
 * The error statuses of `GET /v1beta/models` and `GET /v1beta/models/{model}`: answered by keygate
 * alone (no upstream, no body), in Google's envelope.
 */
export function ApiGeminiModelsErrors(route: 'list' | 'retrieve'): MethodDecorator & ClassDecorator {
  const statuses: Status[] = [
    [
      400,
      route === 'list'
        ? 'A query parameter the route does not take (it takes pageSize and pageToken), a malformed pageSize, or a pageToken it did not give'
        : 'A query parameter (the route takes none)',
    ],
    UNAUTHORIZED,
    route === 'retrieve' ? MODEL_FORBIDDEN : FORBIDDEN,
    ...(route === 'retrieve'
      ? [[404, '`model_not_found`: a model no product of this gateway has, or one another provider serves'] as Status]
      : []),
    [429, 'Rate limit (carries Retry-After)'],
    INTERNAL,
    UNAVAILABLE,
  ];
  return apiErrors(statuses, GoogleErrorBodyDto);
}

/** The error statuses of the stored-response routes: no model or body of their own, a record kept in Redis. */
const STORED_RESPONSE_STATUSES: Status[] = [
  UNAUTHORIZED,
  FORBIDDEN,
  [404, '`response_not_found`: not a response this user created through keygate, or one OpenAI no longer has'],
  [429, 'Per-second rate limit, or the upstream rate-limited keygate (carries Retry-After)'],
  INTERNAL,
  UPSTREAM,
  [
    503,
    '`service_unavailable`: Redis, which records who owns each response, is unavailable; the HMAC replay cache is down ' +
      '(an HMAC-signed request); or keygate is shutting down (carries Retry-After)',
  ],
  UPSTREAM_TIMEOUT,
];

/** What each stored-response route refuses with a 400: its query. */
const STORED_RESPONSE_BAD_REQUEST: Record<'retrieve' | 'delete' | 'inputItems' | 'cancel', string> = {
  retrieve:
    'A query parameter other than include[] and stream, a malformed include, or `stream=true` ' +
    '(`unsupported_parameter`: only background responses stream back)',
  delete: 'Any query parameter: this route takes none',
  inputItems: 'A query parameter other than after, limit, order and include[], or a malformed one (limit 1–100, order asc or desc)',
  cancel:
    'Any query parameter: this route takes none; or OpenAI’s refusal to cancel a response not created in the background ' +
    '(`upstream_bad_request`), which is every response made through keygate',
};

/** Documents the error statuses of `GET`/`DELETE /v1/responses/{id}`, its input items and its cancel. */
export function ApiStoredResponseErrors(route: 'retrieve' | 'delete' | 'inputItems' | 'cancel'): MethodDecorator & ClassDecorator {
  const more: Status[] = [[400, STORED_RESPONSE_BAD_REQUEST[route]]];
  // A POST may carry a body, which it does not need: one over every product's limit is refused as it arrives.
  if (route === 'cancel') more.push([413, '`request_too_large`: a body over the largest `max_request_bytes` (this route takes none)']);
  return apiErrors(STORED_RESPONSE_STATUSES, ErrorBodyDto, more);
}
