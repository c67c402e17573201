import { GatewayError } from '@keygate/errors';

/** A JSON object of unknown shape. */
export type Json = Record<string, unknown>;

/** True for a plain JSON object (not null, not an array). */
export function isRecord(value: unknown): value is Json {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** 400 `unsupported_parameter`: a parameter this provider cannot honour, named in `param`. */
export function unsupportedParameter(provider: string, param: string, why: string): GatewayError {
  return new GatewayError('unsupported_parameter', `${param} is not supported by ${provider} models: ${why}`, { param });
}

/** 400 `invalid_request` naming the offending parameter. */
export function invalidParameter(param: string, message: string): GatewayError {
  return new GatewayError('invalid_request', message, { param });
}
