import { isUtf8 } from 'node:buffer';
import { Injectable, type ArgumentMetadata, type PipeTransform } from '@nestjs/common';
import { GatewayError } from '@keygate/errors';
import { validateSync, type ValidationError } from 'class-validator';
import secureJson from 'secure-json-parse';
import { instantiateDto } from './nested-dto';
import { isValidDto } from './valid-dto';
import { memoizeValidationMetadata } from './validation-metadata-cache';

const STRICT_BODY = Symbol('keygate:strict-body');
/** The class names of the strict body DTOs: their schemas in the API document (see documentRequestBodies). */
const STRICT_BODY_NAMES = new Set<string>();

/**
 * Marks a body DTO whose unknown fields are refused (400 naming the field): an operator's typo
 * (`user_id` for `user`) must not turn into a different action. Client-facing OpenAI bodies stay
 * open, since fields keygate does not model are passed on.
 */
export function StrictBody(): ClassDecorator {
  return (target) => {
    Reflect.defineMetadata(STRICT_BODY, true, target);
    STRICT_BODY_NAMES.add(target.name);
  };
}

/** The names of the body DTOs marked {@link StrictBody}. */
export function strictBodyNames(): ReadonlySet<string> {
  return STRICT_BODY_NAMES;
}

/**
 * Parses the JSON body (kept as bytes until now, see bootstrap) and validates it against its class-validator DTO and hands the handler the ORIGINAL plain
 * object, so fields keygate does not model still reach OpenAI-compatible upstreams. The first
 * problem becomes a 400 naming the parameter.
 */
@Injectable()
export class DtoValidationPipe implements PipeTransform {
  constructor() {
    // class-validator otherwise re-reads every class's rules for each object of each body it validates.
    memoizeValidationMetadata();
  }

  transform(raw: unknown, metadata: ArgumentMetadata): unknown {
    const type = metadata.metatype;
    if (metadata.type !== 'body' || !type || type === Object) return raw;
    // Fastify hands a text/plain body over as a string: the content type is the mistake to name.
    if (typeof raw === 'string')
      throw new GatewayError('invalid_request', 'send the request body as JSON, with Content-Type: application/json');
    const { value, longNumber } = Buffer.isBuffer(raw) ? parseJson(raw) : { value: raw, longNumber: false };
    if (typeof value !== 'object' || value === null || Array.isArray(value)) {
      throw new GatewayError('invalid_request', 'the request body must be a JSON object');
    }
    if (Buffer.isBuffer(raw) && (value as { stream?: unknown }).stream === true) STREAMED_BODIES.add(raw);
    // Every field is copied onto the DTO and passed on: a body of a hundred thousand made-up fields
    // held the event loop half a second, before any limit counted the request.
    if (hasMoreFieldsThan(value, MAX_BODY_FIELDS))
      throw new GatewayError('invalid_request', `the request body has more than ${MAX_BODY_FIELDS} fields`);
    // A literal beyond a double's range parses as Infinity, which re-serialises as null: a field
    // keygate does not model (a tool schema's `maximum`, a `logit_bias` value, Gemini's `topP`)
    // would reach the provider as null, the request quietly changed, instead of being refused.
    const found = longNumber ? infiniteNumberPath(value) : undefined;
    if (found !== undefined) {
      // The path is made of the client's key names: bounded, as every name an error echoes.
      const overflow = found.length > MAX_ECHOED_PATH ? `${found.slice(0, MAX_ECHOED_PATH)}…` : found;
      throw new GatewayError('invalid_request', `${overflow}: the number is too large to represent (beyond ±1.8e308)`, { param: overflow });
    }
    const strict = Reflect.getMetadata(STRICT_BODY, type) === true;
    // class-validator's whitelist looks a field up in a plain object, where `toString`,
    // `hasOwnProperty` or `constructor` are found on its prototype: such a key would pass as known.
    const inherited = strict ? Object.keys(value).find((key) => key in Object.prototype) : undefined;
    if (inherited !== undefined) throw new GatewayError('invalid_request', `${inherited}: unknown field`, { param: inherited });
    const dto = instantiateDto(type as new () => object, value);
    // class-validator builds an error record for every declared field of every object even when
    // all is well: it is asked only for a body the same rules refuse, to name the problem.
    if (isValidDto(dto, strict)) return value;
    const errors = validateSync(dto, {
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

/** The most top-level fields a request body may have (OpenAI's chat request has about 45). */
export const MAX_BODY_FIELDS = 1_000;

/** Whether `value` has more than `max` own enumerable keys, counted no further than that. */
function hasMoreFieldsThan(value: object, max: number): boolean {
  let n = 0;
  for (const key in value) if (Object.hasOwn(value, key) && ++n > max) return true;
  return false;
}

/**
 * The request bodies (kept as bytes, see bootstrap) that asked for a stream: a request refused by
 * validation never reaches the service that records it, and is audited as streamed all the same.
 */
const STREAMED_BODIES = new WeakSet<Buffer>();

/** Whether a request's body, once parsed, asked for a stream (`"stream": true`). */
export function askedForStream(body: unknown): boolean {
  return Buffer.isBuffer(body) && STREAMED_BODIES.has(body);
}

/** The charset a JSON body's Content-Type declared, where it is not UTF-8 (named when the bytes are not UTF-8). */
const DECLARED_CHARSETS = new WeakMap<Buffer, string>();

/** Notes the charset `contentType` declares for `bytes`, unless it is UTF-8 (bootstrap, as the body arrives). */
export function noteDeclaredCharset(bytes: Buffer, contentType: string | undefined): void {
  if (!contentType || contentType.length < 20) return; // shorter than `application/json;charset=x`
  const charset = /;\s*charset\s*=\s*"?([^";\s]+)/i.exec(contentType)?.[1];
  if (charset && !/^utf-?8$/i.test(charset)) DECLARED_CHARSETS.set(bytes, charset);
}

/**
 * Why a body that does not parse, or is not UTF-8, is refused. JSON is exchanged as UTF-8 (RFC
 * 8259 §8.1), and keygate reads it so: read any other way, a Latin-1 `é` would reach the model as
 * U+FFFD and UTF-16 would fail as unreadable JSON with no word of why.
 */
function encodingProblem(bytes: Buffer): string | undefined {
  const declared = DECLARED_CHARSETS.get(bytes);
  const wide = (bytes[0] === 0xff && bytes[1] === 0xfe) || (bytes[0] === 0xfe && bytes[1] === 0xff) || bytes.subarray(0, 4).includes(0);
  const problem = wide ? 'it looks like UTF-16 or UTF-32' : !isUtf8(bytes) ? 'it is not valid UTF-8' : undefined;
  if (!problem) return undefined;
  return `the request body must be JSON in UTF-8, and ${problem}${declared ? ` (its Content-Type declares charset=${declared})` : ''}`;
}

/** The longest field path an error echoes (a path is the client's key names, each of any length). */
const MAX_ECHOED_PATH = 256;

/** How deeply a body's arrays and objects may nest (the deepest real tool schemas stay far below). */
export const MAX_JSON_DEPTH = 64;

/** A parsed body, and whether its text holds a number literal that may lie beyond a double's range. */
interface ParsedBody {
  value: unknown;
  longNumber: boolean;
}

/**
 * Parses a JSON body; `__proto__` and `constructor.prototype` keys are refused (prototype
 * poisoning), and so is nesting deeper than {@link MAX_JSON_DEPTH}, which would otherwise
 * exhaust the stack of the code that walks the body (a 500 for a 10 KB request).
 */
function parseJson(bytes: Buffer): ParsedBody {
  if (bytes.length === 0) throw new GatewayError('invalid_request', 'the request body is empty');
  const encoding = encodingProblem(bytes);
  if (encoding) throw new GatewayError('invalid_json', encoding);
  const scan = scanJsonText(bytes, MAX_JSON_DEPTH);
  if (scan.tooDeep)
    throw new GatewayError('invalid_request', `the request body nests arrays and objects more than ${MAX_JSON_DEPTH} levels deep`);
  try {
    return { value: secureJson.parse(bytes, undefined, { protoAction: 'error', constructorAction: 'error' }), longNumber: scan.longNumber };
  } catch (error) {
    if (error instanceof SyntaxError && /prototype/i.test(error.message))
      throw new GatewayError('invalid_request', 'the request body has a __proto__ or constructor.prototype key, which is refused');
    throw new GatewayError('invalid_json', 'the request body is not valid JSON');
  }
}

/** What one pass over a JSON text, outside its strings, finds before it is parsed. */
export interface JsonTextScan {
  /** Arrays and objects nest deeper than the limit. */
  tooDeep: boolean;
  /**
   * A number literal that may lie beyond a double's range: one with an exponent (`1e309`) or of
   * 309 characters or more. Rare, so only such a body is walked for an infinite number.
   */
  longNumber: boolean;
}

/** The bytes a JSON number literal is made of: digits, `-`, `+`, `.`, `e` and `E`. */
function inNumber(c: number): boolean {
  return (c >= 0x30 && c <= 0x39) || c === 0x2d || c === 0x2b || c === 0x2e || c === 0x65 || c === 0x45;
}

/**
 * One pass over a JSON text: whether it nests brackets deeper than `depthLimit`, and whether it
 * holds a long number literal (see {@link JsonTextScan}). Strings are skipped with a native
 * search for their closing quote (a base64 image costs one memchr, not a loop over its bytes).
 * Malformed text is left to the parser.
 */
export function scanJsonText(bytes: Buffer, depthLimit: number): JsonTextScan {
  let depth = 0;
  let longNumber = false;
  for (let i = 0; i < bytes.length; i++) {
    const c = bytes[i];
    if (c === 0x22) {
      // Find the closing quote: one not preceded by an odd number of backslashes.
      let end = i;
      for (;;) {
        end = bytes.indexOf(0x22, end + 1);
        if (end === -1) return { tooDeep: false, longNumber };
        let slashes = 0;
        while (bytes[end - 1 - slashes] === 0x5c) slashes++;
        if (slashes % 2 === 0) break;
      }
      i = end;
    } else if (c === 0x7b || c === 0x5b) {
      if (++depth > depthLimit) return { tooDeep: true, longNumber };
    } else if (c === 0x7d || c === 0x5d) {
      depth--;
    } else if (c === 0x2d || (c >= 0x30 && c <= 0x39)) {
      // Outside strings only a number holds a digit or a minus sign.
      let end = i + 1;
      let exponent = false;
      for (; end < bytes.length && inNumber(bytes[end]); end++) if (bytes[end] === 0x65 || bytes[end] === 0x45) exponent = true;
      // The shortest literals that can overflow: `1e309` (5 characters), and `1` with 309 zeros
      // (309 characters keeps a margin for a sign or a fraction); the walk after parsing decides.
      if ((exponent && end - i >= 5) || end - i >= 309) longNumber = true;
      i = end - 1;
    }
  }
  return { tooDeep: false, longNumber };
}

/**
 * Where a parsed JSON value holds a number the parser read as ±Infinity (a literal beyond a
 * double's range), as a field path (`tools[0].function.parameters.maximum`); undefined when none.
 */
export function infiniteNumberPath(value: unknown, path = ''): string | undefined {
  if (typeof value === 'number') return Number.isFinite(value) ? undefined : path;
  if (typeof value !== 'object' || value === null) return undefined;
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) {
      const found = infiniteNumberPath(value[i], `${path}[${i}]`);
      if (found !== undefined) return found;
    }
    return undefined;
  }
  for (const [key, item] of Object.entries(value)) {
    const found = infiniteNumberPath(item, path ? `${path}.${key}` : key);
    if (found !== undefined) return found;
  }
  return undefined;
}

/** class-validator's type checks, named before any range or format rule of the same field. */
const TYPE_CONSTRAINTS = new Set(['isInt', 'isNumber', 'isString', 'isBoolean', 'isArray', 'isObject', 'isDefined', 'isIn']);

/** A field path at the start of a message: `tools[1].function.name`, `input[0].content[2]`. */
const FIELD_PATH = /^[A-Za-z_]\w*(?:\[\d+\]|\.[A-Za-z_]\w*)*/;

function firstProblem(error: ValidationError, prefix = ''): [string, string] {
  const path = prefix ? (/^\d+$/.test(error.property) ? `${prefix}[${error.property}]` : `${prefix}.${error.property}`) : error.property;
  // A wrong type is the problem to name first: "must be an integer", not "must not be greater than…".
  if (error.constraints?.whitelistValidation) return [path, `${path}: unknown field`];
  const constraints = Object.entries(error.constraints ?? {});
  const constraint = (constraints.find(([name]) => TYPE_CONSTRAINTS.has(name)) ?? constraints[0])?.[1];
  if (constraint) {
    if (!constraint.startsWith(error.property)) return [path, `${path}: ${constraint}`];
    // A message that names a place inside the field (`tools[1].function.name: … declared twice`)
    // gives that place as the param, as OpenAI's own errors do.
    const named = FIELD_PATH.exec(constraint)?.[0] ?? error.property;
    return [`${path}${named.slice(error.property.length)}`, `${path}${constraint.slice(error.property.length)}`];
  }
  if (error.children?.length) return firstProblem(error.children[0], path);
  return [path, `${path} is invalid`];
}
