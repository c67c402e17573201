import { applyDecorators } from '@nestjs/common';
import { ApiExtraModels, ApiProperty, ApiResponse, ApiSchema, getSchemaPath } from '@nestjs/swagger';
import { ERROR_CODES, GatewayError } from '@keygate/errors';
import { googleErrorBody } from '../gemini/google-errors';
import { anthropicErrorBody, anthropicErrorType } from '../messages/anthropic-errors';

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

/**
 * Anthropic's `error.type` for each status keygate answers, as anthropicErrorType gives them, and
 * Anthropic's own overload (a 529 upstream), which keygate answers 502 under Anthropic's name for it.
 */
const ANTHROPIC_ERROR_TYPES = [
  ...new Set([...Object.values(ERROR_CODES).map((spec) => anthropicErrorType(spec.status)), anthropicErrorType(529)]),
];

class AnthropicErrorDetailDto {
  @ApiProperty({ example: 'the token has expired' }) message!: string;
  @ApiProperty({
    enum: ANTHROPIC_ERROR_TYPES,
    example: 'authentication_error',
    description:
      "Anthropic's type for the status: authentication_error 401, permission_error 403, not_found_error 404, " +
      'request_too_large 413, rate_limit_error 429, timeout_error 504, overloaded_error 502 when Claude answered 529 (overloaded), ' +
      'api_error any other 5xx, ' +
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

/**
 * One documented status: the code, its description, and the error it shows as its example (the
 * status's usual one when left out).
 */
type Status = readonly [status: number, description: string, example?: GatewayError];
/** The error body a route answers with: one DTO, or several when the client's dialect picks it. */
type ErrorBody =
  | typeof ErrorBodyDto
  | typeof AnthropicErrorBodyDto
  | typeof GoogleErrorBodyDto
  | ReadonlyArray<typeof ErrorBodyDto | typeof AnthropicErrorBodyDto>;

const BAD_REQUEST: Status = [
  400,
  'Malformed body, invalid parameter, or parameter policy violation (`policy_violation` also for a model without a price under a daily cost budget)',
];
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
const LIMITED: Status = [
  429,
  'Rate limit, daily token quota or daily cost budget (`daily_quota_exceeded`), or the upstream rate-limited keygate (carries Retry-After)',
];
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
  [400, 'Invalid body or query parameter', new GatewayError('invalid_request', 'product must be a product name', { param: 'product' })],
  UNAUTHORIZED,
  // In a code span: Swagger UI renders descriptions as Markdown, where a bare <product> is an HTML tag and vanishes.
  [
    403,
    'The credential lacks the `keygate.admin` scope (or `keygate.admin:<product>` for the product named)',
    new GatewayError('forbidden', 'this route needs the keygate.admin scope, or keygate.admin:<product>'),
  ],
  [
    429,
    'Too many requests from this operator (carries Retry-After)',
    new GatewayError('rate_limit_exceeded', 'Too many requests to the operator routes; retry later'),
  ],
  INTERNAL,
  [503, '`service_unavailable`: keygate is shutting down (carries Retry-After, Connection: close)'],
];

/** The request id the examples carry (Anthropic's `request_id`, Google's ErrorInfo metadata). */
const EXAMPLE_REQUEST_ID = '5f0c2e1a-8b7d-4c1e-9a35-2d6f4b8e7c10';

/**
 * The error each status shows as its example, unless its route names another: without one, Swagger
 * UI shows the schema's own example under every status, a 401's "the token has expired" under a 400
 * or a 429 alike.
 */
const USUAL_ERRORS: Readonly<Record<number, GatewayError>> = {
  400: new GatewayError('invalid_json', 'the request body is not valid JSON'),
  401: new GatewayError('invalid_token', 'the token has expired'),
  403: new GatewayError('blocked', 'user mallory of product demo is blocked: abuse report #123'),
  404: new GatewayError('model_not_found', "The model 'no-such-model' does not exist on this gateway", { param: 'model' }),
  408: new GatewayError('invalid_request', 'the request body did not arrive in time'),
  413: new GatewayError('request_too_large', "the request body exceeds this product's limit of 1048576 bytes"),
  429: new GatewayError('rate_limit_exceeded', 'Rate limit reached for your requests per second; try again in 1 s', {
    retryAfterSeconds: 1,
  }),
  500: new GatewayError('internal_error', `internal error (request id ${EXAMPLE_REQUEST_ID})`),
  502: new GatewayError('upstream_error', 'upstream openai is unreachable'),
  503: new GatewayError('service_unavailable', 'keygate is shutting down; retry the request', { retryAfterSeconds: 1 }),
  504: new GatewayError('upstream_timeout', 'upstream openai did not answer in time'),
};

/** An error's body in a dialect, built by the code that answers it, so the example is what comes back. */
function exampleBody(body: typeof ErrorBodyDto | typeof AnthropicErrorBodyDto | typeof GoogleErrorBodyDto, error: GatewayError): unknown {
  if (body === AnthropicErrorBodyDto) return anthropicErrorBody(error, EXAMPLE_REQUEST_ID);
  if (body === GoogleErrorBodyDto) return googleErrorBody(error, EXAMPLE_REQUEST_ID);
  return error.toBody();
}

/** How Swagger UI labels each dialect's example where a route answers in several. */
const DIALECTS = new Map<unknown, { name: string; summary: string }>([
  [ErrorBodyDto, { name: 'openai', summary: 'OpenAI’s envelope' }],
  [AnthropicErrorBodyDto, { name: 'anthropic', summary: 'Anthropic’s envelope (with anthropic-version)' }],
]);

/**
 * The content of an error answer: always JSON, also on a route that answers a stream (an error comes
 * before the stream starts), so it is given as content rather than through the route's
 * `@ApiProduces`. The schema is a `$ref`, or `anyOf` the bodies of the dialects a route speaks: not
 * `oneOf`, since an Anthropic-envelope body (`type`, `error`, `request_id`) also has the contract's
 * `error` and so matches both. Its example is the status's error in each dialect.
 */
function errorContent(body: ErrorBody, error: GatewayError | undefined): { content: { 'application/json': Record<string, unknown> } } {
  if (Array.isArray(body)) {
    const dialects = body as ReadonlyArray<typeof ErrorBodyDto>;
    const schema = { anyOf: dialects.map((dto) => ({ $ref: getSchemaPath(dto) })) };
    if (!error) return { content: { 'application/json': { schema } } };
    const examples: Record<string, { summary: string; value: unknown }> = {};
    for (const dto of dialects) {
      const { name, summary } = DIALECTS.get(dto) ?? { name: dto.name, summary: dto.name };
      examples[name] = { summary, value: exampleBody(dto, error) };
    }
    return { content: { 'application/json': { schema, examples } } };
  }
  const dto = body as typeof ErrorBodyDto;
  const schema = { $ref: getSchemaPath(dto) };
  return { content: { 'application/json': error ? { schema, example: exampleBody(dto, error) } : { schema } } };
}

/**
 * The headers an error status carries, declared so that a generated client and Swagger UI show them
 * (the descriptions say "carries …"): every 401 points to the protected-resource metadata, every
 * 429 says when to retry (SPEC §6), and a 503 does while keygate shuts down.
 */
const STATUS_HEADERS: Readonly<Record<number, Record<string, { description: string; required?: boolean; schema: object }>>> = {
  401: {
    'WWW-Authenticate': {
      description: '`Bearer resource_metadata="…"`: where the protected-resource metadata (RFC 9728) is',
      required: true,
      schema: { type: 'string' },
    },
  },
  429: { 'Retry-After': { description: 'Seconds to wait before retrying', required: true, schema: { type: 'integer', minimum: 0 } } },
  503: {
    'Retry-After': { description: 'Seconds to wait before retrying (while keygate shuts down)', schema: { type: 'integer', minimum: 0 } },
  },
};

/** Documents each status with its description and the given error body; `more` adds statuses or replaces one. */
function apiErrors(statuses: readonly Status[], body: ErrorBody, more: readonly Status[] = []): MethodDecorator & ClassDecorator {
  const all = new Map([...statuses, ...more].map((status) => [status[0], status]));
  return applyDecorators(
    ApiExtraModels(ErrorBodyDto, AnthropicErrorBodyDto, GoogleErrorBodyDto),
    ...[...all]
      .sort(([a], [b]) => a - b)
      .map(([status, [, description, example]]) =>
        ApiResponse({
          status,
          description,
          ...(STATUS_HEADERS[status] ? { headers: STATUS_HEADERS[status] } : {}),
          ...errorContent(body, example ?? USUAL_ERRORS[status]),
        }),
      ),
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
      route === 'list'
        ? new GatewayError('invalid_request', 'limit must be a whole number from 1 to 1000', { param: 'limit' })
        : unknownQuery('beta'),
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
      route === 'list'
        ? new GatewayError('invalid_request', 'pageSize must be a whole number (at most 1000 are listed per page)', { param: 'pageSize' })
        : unknownQuery('none'),
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
  [
    404,
    '`response_not_found`: not a response this user created through keygate, or one OpenAI no longer has',
    new GatewayError(
      'response_not_found',
      "No response with id 'resp_67ccd2bed1ec8190b14f964abc054267' was created by this user through keygate",
    ),
  ],
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

/** The refusal of a query parameter a route does not take, as keygate words it. */
function unknownQuery(taken: string): GatewayError {
  return new GatewayError('invalid_request', `x: unknown query parameter (this route takes ${taken})`, { param: 'x' });
}

/** A stored-response route's 400 example: a query it refuses. */
const STORED_RESPONSE_BAD_QUERY: Record<'retrieve' | 'delete' | 'inputItems' | 'cancel', GatewayError> = {
  retrieve: unknownQuery('include, include[], stream'),
  delete: unknownQuery('none'),
  inputItems: new GatewayError('invalid_request', 'limit must be a whole number from 1 to 100', { param: 'limit' }),
  cancel: unknownQuery('none'),
};

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
  const more: Status[] = [[400, STORED_RESPONSE_BAD_REQUEST[route], STORED_RESPONSE_BAD_QUERY[route]]];
  // A POST may carry a body, which it does not need: one over every product's limit is refused as it arrives.
  if (route === 'cancel') more.push([413, '`request_too_large`: a body over the largest `max_request_bytes` (this route takes none)']);
  return apiErrors(STORED_RESPONSE_STATUSES, ErrorBodyDto, more);
}
