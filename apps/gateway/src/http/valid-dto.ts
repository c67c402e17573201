import { getMetadataStorage, IS_OPTIONAL, ValidationTypes, type MetadataStorage, type ValidationArguments } from 'class-validator';

type ValidationMetadata = ReturnType<MetadataStorage['getTargetValidationMetadatas']>[number];
/** The part of class-validator's metadata storage its validator reads rules from. */
export type RuleStorage = Pick<MetadataStorage, 'getTargetValidationMetadatas' | 'groupByPropertyName' | 'getTargetValidatorConstraints'>;

/** One declared property's rules, sorted once as class-validator sorts them for every object it validates. */
interface PropertyRules {
  name: string;
  conditional: ValidationMetadata[];
  defined: ValidationMetadata[];
  custom: ValidationMetadata[];
  nested: ValidationMetadata[];
  /**
   * Marked `@IsOptional()`: when the field is null or absent, that condition is false, so class-validator
   * skips the field whatever the others say (conditions are plain tests of the object).
   */
  optional: boolean;
  /** A rule that waits for a promise held in the field: left to class-validator. */
  promise: boolean;
}

/** A class's rules grouped by property (as class-validator's storage groups them), and sorted. */
interface ClassRules {
  grouped: Record<string, ValidationMetadata[]>;
  properties: PropertyRules[];
}

/** Per grouping class-validator's (memoized) storage hands back, that class's rules sorted. */
const RULES = new WeakMap<Record<string, ValidationMetadata[]>, ClassRules>();

/**
 * Whether class-validator's `validateSync(object, options)` would find nothing wrong with `object`
 * (options: `validationError: { target: false, value: false }`, with `strict` also
 * `whitelist: true, forbidNonWhitelisted: true`), told without building what it builds to say
 * what is wrong: it makes a ValidationError, three filtered arrays and closures for every declared
 * property of every object, present or not (~37 KB a chat request, a quarter of what the request
 * allocates). The same rules are run the same way (conditions first, then each constraint's
 * `validate` with the same arguments, `each` over arrays, nested objects with their own class's
 * rules and the whitelist), only stopping at the first failure. A body it does not pass is
 * validated by class-validator, which names the problem; it passes nothing class-validator would
 * refuse, and it may leave to class-validator what it would pass (a field holding a promise, an
 * object with no rules).
 */
export function isValidDto(object: object, strict: boolean, storage?: RuleStorage): boolean {
  return objectPasses(object, undefined, strict, storage ?? (processStorage ??= getMetadataStorage()));
}

/** class-validator's process-wide storage (a global singleton), looked up once. */
let processStorage: RuleStorage | undefined;

function rulesOf(object: object, targetSchema: string | undefined, storage: RuleStorage): ClassRules | undefined {
  // As class-validator's executor asks: its options never set always, strictGroups or groups.
  const metadatas = storage.getTargetValidationMetadatas(object.constructor, targetSchema as string, false, false, undefined);
  // No rules at all is an error under forbidUnknownValues (class-validator's default).
  if (!metadatas.length) return undefined;
  const grouped = storage.groupByPropertyName(metadatas);
  let rules = RULES.get(grouped);
  if (!rules) {
    const properties = Object.keys(grouped).map((name) => {
      const all = grouped[name];
      const metadatas = all.filter((m) => m.type !== ValidationTypes.IS_DEFINED && m.type !== ValidationTypes.WHITELIST);
      const conditional = metadatas.filter((m) => m.type === ValidationTypes.CONDITIONAL_VALIDATION);
      return {
        name,
        conditional,
        optional: conditional.some((m) => m.name === IS_OPTIONAL),
        defined: all.filter((m) => m.type === ValidationTypes.IS_DEFINED),
        custom: metadatas.filter((m) => m.type === ValidationTypes.CUSTOM_VALIDATION),
        nested: metadatas.filter((m) => m.type === ValidationTypes.NESTED_VALIDATION),
        promise: metadatas.some((m) => m.type === ValidationTypes.PROMISE_VALIDATION),
      };
    });
    RULES.set(grouped, (rules = { grouped, properties }));
  }
  return rules;
}

function objectPasses(object: object, targetSchema: string | undefined, strict: boolean, storage: RuleStorage): boolean {
  const rules = rulesOf(object, targetSchema, storage);
  if (!rules) return false;
  // class-validator's whitelist test, as it is (a key found on Object.prototype included).
  if (strict) for (const key of Object.keys(object)) if (!rules.grouped[key] || rules.grouped[key].length === 0) return false;
  const record = object as Record<string, unknown>;
  for (const rule of rules.properties) {
    const value = record[rule.name];
    // Most declared fields are optional and absent: nothing to ask.
    if (rule.optional && (value === undefined || value === null)) continue;
    if (rule.promise && value instanceof Promise) return false;
    if (!propertyPasses(object, value, rule.conditional, rule.defined, rule.custom, rule.nested, strict, storage)) return false;
  }
  return true;
}

/** class-validator's performValidations, as a yes or no. */
function propertyPasses(
  object: object,
  value: unknown,
  conditional: ValidationMetadata[],
  defined: ValidationMetadata[],
  custom: ValidationMetadata[],
  nested: ValidationMetadata[],
  strict: boolean,
  storage: RuleStorage,
): boolean {
  // Every condition is asked (as class-validator does); any false skips the property.
  let validate = true;
  for (const metadata of conditional) validate = (metadata.constraints[0] as (o: object, v: unknown) => boolean)(object, value) && validate;
  if (!validate) return true;
  return (
    customPasses(object, value, defined, storage) &&
    customPasses(object, value, custom, storage) &&
    nestedPasses(value, nested, strict, storage)
  );
}

/** class-validator's customValidations (its validateSync ignores async constraints and promised results). */
function customPasses(object: object, value: unknown, metadatas: ValidationMetadata[], storage: RuleStorage): boolean {
  for (const metadata of metadatas) {
    if (metadata.validateIf && !metadata.validateIf(object, value)) continue;
    for (const constraint of storage.getTargetValidatorConstraints(metadata.constraintCls)) {
      if (constraint.async) continue;
      const args: ValidationArguments = {
        targetName: object.constructor ? object.constructor.name : (undefined as unknown as string),
        property: metadata.propertyName,
        object,
        value,
        constraints: metadata.constraints,
      };
      const validator = constraint.instance as { validate(value: unknown, args: ValidationArguments): unknown };
      if (!metadata.each || !(Array.isArray(value) || value instanceof Set || value instanceof Map)) {
        const result = validator.validate(value, args);
        if (!result && !isPromise(result)) return false;
        continue;
      }
      const items: unknown[] = value instanceof Map ? Array.from(value.values()) : Array.isArray(value) ? value : Array.from(value);
      const results = items.map((item) => validator.validate(item, args));
      if (!results.some(isPromise) && !results.every(Boolean)) return false;
    }
  }
  return true;
}

/** class-validator's nestedValidations: each item of an array, set or map, or the object, by its own class's rules. */
function nestedPasses(value: unknown, metadatas: ValidationMetadata[], strict: boolean, storage: RuleStorage): boolean {
  if (value === undefined) return true;
  for (const metadata of metadatas) {
    if (Array.isArray(value) || value instanceof Set || value instanceof Map) {
      const items: unknown[] = value instanceof Set ? Array.from(value) : Array.isArray(value) ? value : Array.from(value.values());
      for (const item of items) if (!nestedPasses(item, metadatas, strict, storage)) return false;
    } else if (value instanceof Object) {
      const targetSchema = typeof metadata.target === 'string' ? metadata.target : metadata.target.name;
      if (!objectPasses(value, targetSchema, strict, storage)) return false;
    } else return false;
  }
  return true;
}

function isPromise(value: unknown): boolean {
  return value !== null && typeof value === 'object' && typeof (value as { then?: unknown }).then === 'function';
}
