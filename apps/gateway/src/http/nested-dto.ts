import { GatewayError } from '@keygate/errors';
import { ValidateNested, type ValidationOptions } from 'class-validator';

type DtoClass = new () => object;

interface Nested {
  type: () => DtoClass;
  /** The most items an array of them may hold (see {@link NestedDto}). */
  maxItems?: number;
  /** What one item is called, for the refusal (`messages`). */
  items?: string;
}

/** Per DTO class, its properties holding nested DTOs (an object, or with `each` an array of them), and their classes. */
const NESTED = new WeakMap<object, Map<string, Nested>>();

/**
 * A property holding a nested DTO (with `each`, an array of them): validated with its class's rules
 * (`ValidateNested`), and instantiated as that class by {@link instantiateDto}. keygate's own
 * marker, in place of class-transformer's `@Type`: see {@link instantiateDto}.
 *
 * With `maxItems`, an array holding more is refused (400 naming the property) before any item is
 * instantiated or validated: class-validator takes ~13 µs an item, so 33,000 one-letter messages
 * (1 MB) held the event loop for 0.4 s, whatever the request's fate.
 */
export function NestedDto(
  type: () => DtoClass,
  options: ValidationOptions & { maxItems?: number; items?: string } = {},
): PropertyDecorator {
  const { maxItems, items, ...validation } = options;
  const validate = ValidateNested(validation);
  return (prototype, key) => {
    let nested = NESTED.get(prototype.constructor);
    if (!nested) NESTED.set(prototype.constructor, (nested = new Map<string, Nested>()));
    nested.set(String(key), { type, maxItems, items });
    validate(prototype, key);
  };
}

/** Whether `property` of `type` (or of an ancestor) is marked {@link NestedDto}. */
export function isNestedDto(type: DtoClass, property: string): boolean {
  return nestedOf(type)?.has(property) === true;
}

/** The nested-DTO properties of a class, its ancestors' included; undefined when it has none. */
function nestedOf(type: DtoClass): Map<string, Nested> | undefined {
  let found: Map<string, Nested> | undefined;
  for (let at: unknown = type; typeof at === 'function' && at !== Function.prototype; at = Object.getPrototypeOf(at)) {
    const own = NESTED.get(at);
    if (own) found = found ? new Map([...own, ...found]) : own;
  }
  return found;
}

/**
 * A request body as an instance of its DTO, for class-validator: the body's own fields are set on a
 * new instance as they are (by reference), except those marked {@link NestedDto}, whose objects
 * become instances of their class in turn. Nothing else is copied: class-transformer's
 * `plainToInstance` deep-copied every object in the body, fields no DTO declares included, at
 * ~25 µs a key, so a 600 KB body of one object with 60,000 keys held the event loop for 1.7 s
 * before any check could refuse it. class-validator reads only the declared fields and walks only
 * the nested DTOs, so what it validates is the same.
 *
 * An array over its {@link NestedDto} `maxItems` is refused here (a `GatewayError`).
 *
 * A `constructor` or `__proto__` key is not set: class-validator looks an object's rules up by its
 * `constructor`, and `__proto__` would replace the instance's prototype. No DTO declares either.
 */
export function instantiateDto(type: DtoClass, plain: object): object {
  const instance = new type() as Record<string, unknown>;
  const nested = nestedOf(type);
  for (const key of Object.keys(plain)) {
    if (key === 'constructor' || key === '__proto__') continue;
    const value = (plain as Record<string, unknown>)[key];
    const rule = nested?.get(key);
    if (rule === undefined) instance[key] = value;
    else if (Array.isArray(value)) {
      if (rule.maxItems !== undefined && value.length > rule.maxItems)
        throw new GatewayError(
          'invalid_request',
          `${key} may hold at most ${rule.maxItems.toLocaleString('en-US')} ${rule.items ?? 'items'}`,
          {
            param: key,
          },
        );
      const itemType = rule.type();
      instance[key] = value.map((item) => asDto(itemType, item));
    } else instance[key] = asDto(rule.type(), value);
  }
  return instance;
}

/** An object (not an array) as an instance of `type`; anything else as it is, for the validator to refuse. */
function asDto(type: DtoClass, value: unknown): unknown {
  return typeof value === 'object' && value !== null && !Array.isArray(value) ? instantiateDto(type, value) : value;
}
