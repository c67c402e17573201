import { Injectable, type ArgumentMetadata, type PipeTransform } from '@nestjs/common';
import { GatewayError } from '@keygate/errors';
import { plainToInstance } from 'class-transformer';
import { validateSync, type ValidationError } from 'class-validator';
import secureJson from 'secure-json-parse';

const STRICT_BODY = Symbol('keygate:strict-body');

/**
 * Marks a body DTO whose unknown fields are refused (400 naming the field): an operator's typo
 * (`user_id` for `user`) must not turn into a different action. Client-facing OpenAI bodies stay
 * open, since fields keygate does not model are passed on.
 */
export function StrictBody(): ClassDecorator {
  return (target) => Reflect.defineMetadata(STRICT_BODY, true, target);
}

/**
 * Parses the JSON body (kept as bytes until now, see bootstrap) and validates it against its class-validator DTO and hands the handler the ORIGINAL plain
 * object, so fields keygate does not model still reach OpenAI-compatible upstreams. The first
 * problem becomes a 400 naming the parameter.
 */
@Injectable()
export class DtoValidationPipe implements PipeTransform {
  transform(raw: unknown, metadata: ArgumentMetadata): unknown {
    const type = metadata.metatype;
    if (metadata.type !== 'body' || !type || type === Object) return raw;
    const value = Buffer.isBuffer(raw) ? parseJson(raw) : raw;
    if (typeof value !== 'object' || value === null || Array.isArray(value)) {
      throw new GatewayError('invalid_request', 'the request body must be a JSON object');
    }
    const strict = Reflect.getMetadata(STRICT_BODY, type) === true;
    const errors = validateSync(plainToInstance(type, value) as object, {
      validationError: { target: false, value: false },
      ...(strict ? { whitelist: true, forbidNonWhitelisted: true } : {}),
    });
    if (errors.length) {
      const [path, message] = firstProblem(errors[0]);
      throw new GatewayError('invalid_request', message, { param: path });
    }
    return value;
  }
}

/** Parses a JSON body; `__proto__` and `constructor.prototype` keys are refused (prototype poisoning). */
function parseJson(bytes: Buffer): unknown {
  if (bytes.length === 0) throw new GatewayError('invalid_request', 'the request body is empty');
  try {
    return secureJson.parse(bytes, undefined, { protoAction: 'error', constructorAction: 'error' });
  } catch {
    throw new GatewayError('invalid_json', 'the request body is not valid JSON');
  }
}

/** class-validator's type checks, named before any range or format rule of the same field. */
const TYPE_CONSTRAINTS = new Set(['isInt', 'isNumber', 'isString', 'isBoolean', 'isArray', 'isObject', 'isDefined', 'isIn']);

function firstProblem(error: ValidationError, prefix = ''): [string, string] {
  const path = prefix ? (/^\d+$/.test(error.property) ? `${prefix}[${error.property}]` : `${prefix}.${error.property}`) : error.property;
  // A wrong type is the problem to name first: "must be an integer", not "must not be greater than…".
  if (error.constraints?.whitelistValidation) return [path, `${path}: unknown field`];
  const constraints = Object.entries(error.constraints ?? {});
  const constraint = (constraints.find(([name]) => TYPE_CONSTRAINTS.has(name)) ?? constraints[0])?.[1];
  if (constraint)
    return [path, constraint.startsWith(error.property) ? `${path}${constraint.slice(error.property.length)}` : `${path}: ${constraint}`];
  if (error.children?.length) return firstProblem(error.children[0], path);
  return [path, `${path} is invalid`];
}
