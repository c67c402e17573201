import { plainToInstance, type ClassConstructor } from 'class-transformer';
import { validateSync, type ValidationError } from 'class-validator';

/**
 * Validates a plain object against a class-validator DTO and returns the instance, or the list of
 * problems as `path: message` strings. Unknown properties are problems too, so a typo in a policy
 * file is reported instead of silently having no effect. Values are never echoed.
 */
export function validatePlain<T extends object>(
  cls: ClassConstructor<T>,
  plain: unknown,
  pathPrefix: string,
): { value: T; problems: string[] } {
  const value = plainToInstance(cls, plain ?? {}, { enableImplicitConversion: false });
  const errors = validateSync(value, {
    whitelist: true,
    forbidNonWhitelisted: true,
    forbidUnknownValues: true,
    validationError: { target: false, value: false },
  });
  const problems: string[] = [];
  // A `__proto__` key (JSON keeps it as an own key) never reaches the instance, so the whitelist
  // cannot see it: reported like any unknown field.
  protoKeys(plain, pathPrefix, problems);
  const empty = new Set<string>();
  emptyPaths(plain, pathPrefix, empty);
  return { value, problems: [...problems, ...flattenErrors(errors, pathPrefix, empty)] };
}

/** The paths of the fields left empty (YAML's `field:` with nothing after it reads as null). */
function emptyPaths(plain: unknown, path: string, out: Set<string>): void {
  if (typeof plain !== 'object' || plain === null || Array.isArray(plain)) return;
  for (const [key, child] of Object.entries(plain)) {
    const at = path ? `${path}.${key}` : key;
    if (child === null) out.add(at);
    else emptyPaths(child, at, out);
  }
}

/** The checks of a value's type: when one fails, the others (ranges, nested fields) only repeat it. */
const TYPE_CHECKS = new Set(['isInt', 'isNumber', 'isObject', 'isArray', 'isString', 'isBoolean']);

function flattenErrors(errors: ValidationError[], prefix: string, empty: ReadonlySet<string>): string[] {
  const out: string[] = [];
  for (const error of errors) {
    const path = prefix ? `${prefix}.${error.property}` : error.property;
    // A field left empty is refused as empty, not as the wrong type ("must be an integer number").
    if (empty.has(path)) {
      out.push(`${path}: empty (give it a value or leave the field out)`);
      continue;
    }
    const constraints = Object.entries(error.constraints ?? {});
    const wrongType = constraints.filter(([name]) => TYPE_CHECKS.has(name));
    for (const [name, message] of wrongType.length ? wrongType : constraints) {
      // The whitelist's own wording ("property x should not exist") repeats the name and differs
      // from the secrets' and the top level's "unknown field" for the same mistake.
      if (name === 'whitelistValidation') out.push(`${path}: unknown field`);
      // class-validator prefixes messages with the property name; replace it with the full path.
      else out.push(`${path}: ${message.startsWith(error.property) ? message.slice(error.property.length).trim() : message}`);
    }
    if (error.children?.length && !wrongType.length) out.push(...flattenErrors(error.children, path, empty));
  }
  return out;
}

function protoKeys(plain: unknown, path: string, out: string[]): void {
  if (typeof plain !== 'object' || plain === null) return;
  for (const [key, child] of Object.entries(plain)) {
    const at = path ? `${path}.${key}` : key;
    if (key === '__proto__') out.push(`${at}: unknown field`);
    else protoKeys(child, at, out);
  }
}
