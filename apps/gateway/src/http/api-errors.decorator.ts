import { applyDecorators } from '@nestjs/common';
import { ApiProperty, ApiResponse } from '@nestjs/swagger';

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
function apiErrors(statuses: ReadonlyArray<[number, string]>, body: typeof ErrorBodyDto): MethodDecorator & ClassDecorator {
  return applyDecorators(...statuses.map(([status, description]) => ApiResponse({ status, description, type: body })));
}

/** Documents the error statuses of an operator route with the contract's body. */
export function ApiAdminErrors(): MethodDecorator & ClassDecorator {
  return apiErrors(ADMIN_STATUSES, ErrorBodyDto);
}

/** The contract's error body with Anthropic's `"type": "error"` beside it (`POST /v1/messages`). */
export class AnthropicErrorBodyDto extends ErrorBodyDto {
  @ApiProperty({ enum: ['error'], example: 'error' }) type!: 'error';
}

/**
 * Documents every error status of a gateway route with the contract's body (Anthropic's envelope on
 * its route); `more` adds statuses or replaces the description of one.
 */
export function ApiGatewayErrors(
  body: typeof ErrorBodyDto = ErrorBodyDto,
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
