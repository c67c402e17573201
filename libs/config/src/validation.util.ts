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
  return { value, problems: flattenErrors(errors, pathPrefix) };
}

function flattenErrors(errors: ValidationError[], prefix: string): string[] {
  const out: string[] = [];
  for (const error of errors) {
    const path = prefix ? `${prefix}.${error.property}` : error.property;
    for (const message of Object.values(error.constraints ?? {})) {
      // class-validator prefixes messages with the property name; replace it with the full path.
      out.push(`${path}: ${message.startsWith(error.property) ? message.slice(error.property.length).trim() : message}`);
    }
    if (error.children?.length) out.push(...flattenErrors(error.children, path));
  }
  return out;
}
