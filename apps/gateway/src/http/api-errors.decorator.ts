import { applyDecorators } from '@nestjs/common';
import { ApiProperty, ApiResponse, ApiSchema } from '@nestjs/swagger';

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

const STATUSES: Array<[number, string]> = [
  [400, 'Malformed body, invalid parameter, or parameter policy violation'],
  [401, 'Missing or invalid credential (carries WWW-Authenticate)'],
  [403, 'Credential valid but not allowed (product, model, block)'],
  [404, 'Unknown model for this product'],
  [413, 'Body larger than the product allows'],
  [429, 'Rate limit or daily quota (carries Retry-After)'],
  [502, 'Upstream failure'],
  [504, 'Upstream timeout'],
];

const ADMIN_STATUSES: Array<[number, string]> = [
  [400, 'Invalid body or query parameter'],
  [401, 'Missing or invalid credential (carries WWW-Authenticate)'],
  [403, 'The credential lacks the keygate.admin scope'],
  [429, 'Too many requests from this operator (carries Retry-After)'],
];

/** Documents each status with its description and the given error body. */
function apiErrors(
  statuses: ReadonlyArray<[number, string]>,
  body: typeof ErrorBodyDto | typeof AnthropicErrorBodyDto,
): MethodDecorator & ClassDecorator {
  return applyDecorators(...statuses.map(([status, description]) => ApiResponse({ status, description, type: body })));
}

/** Documents the error statuses of an operator route with the contract's body. */
export function ApiAdminErrors(): MethodDecorator & ClassDecorator {
  return apiErrors(ADMIN_STATUSES, ErrorBodyDto);
}

/** Anthropic's `error.type` for each status keygate answers (see anthropicErrorType). */
const ANTHROPIC_ERROR_TYPES = [
  'invalid_request_error',
  'authentication_error',
  'permission_error',
  'not_found_error',
  'request_too_large',
  'rate_limit_error',
  'api_error',
  'timeout_error',
];

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

/**
 * Documents every error status of a gateway route with the contract's body (Anthropic's envelope on
 * its route); `more` adds statuses or replaces the description of one.
 */
export function ApiGatewayErrors(
  body: typeof ErrorBodyDto | typeof AnthropicErrorBodyDto = ErrorBodyDto,
  more: ReadonlyArray<[number, string]> = [],
): MethodDecorator & ClassDecorator {
  const statuses = new Map([...STATUSES, ...more]);
  return apiErrors(
    [...statuses].sort(([a], [b]) => a - b),
    body,
  );
}

/** The error statuses of the stored-response routes: no model or body of their own, a record kept in Redis. */
const STORED_RESPONSE_STATUSES: Array<[number, string]> = [
  [400, 'Invalid query parameter (`stream=true`: only background responses stream back)'],
  [401, 'Missing or invalid credential (carries WWW-Authenticate)'],
  [403, 'Credential valid but not allowed (product, block)'],
  [404, '`response_not_found`: not a response this user created through keygate, or one OpenAI no longer has'],
  [429, 'Per-second rate limit (carries Retry-After)'],
  [502, 'Upstream failure'],
  [503, 'Redis, which records who owns each response, is unavailable (carries Retry-After)'],
  [504, 'Upstream timeout'],
];

/** Documents the error statuses of `GET`/`DELETE /v1/responses/{id}` and its input items. */
export function ApiStoredResponseErrors(): MethodDecorator & ClassDecorator {
  return apiErrors(STORED_RESPONSE_STATUSES, ErrorBodyDto);
}
