import { getMetadataStorage, type MetadataStorage } from 'class-validator';

/** The part of class-validator's metadata storage the cache wraps (public methods, called by its validator). */
export type ValidationMetadataStorage = Pick<
  MetadataStorage,
  'getTargetValidationMetadatas' | 'groupByPropertyName' | 'addValidationMetadata'
>;
type ValidationMetadata = Parameters<MetadataStorage['addValidationMetadata']>[0];
/** What class-validator looks rules up by: the validated object's constructor. */
type Target = Parameters<MetadataStorage['getTargetValidationMetadatas']>[0];

const MEMOIZED = Symbol('keygate:validation-metadata-memoized');

/**
 * Memoizes class-validator's metadata lookups, which it repeats for every object it validates:
 * `getTargetValidationMetadatas` walks every decorated class registered (to find a class's
 * ancestors, typestack/class-validator#2686) and filters their rules, and `groupByPropertyName`
 * regroups the result, for the request body and again for each nested message, part and tool, on
 * every request, though a class's rules never change once its module has loaded. The validator
 * only reads what they return, so the same arrays and groupings are handed back each time; a rule
 * registered later (a class loaded after a first validation) empties the cache, so the answers stay
 * the uncached ones. Idempotent: the storage is a process-wide singleton.
 */
export function memoizeValidationMetadata(storage: ValidationMetadataStorage = getMetadataStorage()): void {
  const tagged = storage as ValidationMetadataStorage & { [MEMOIZED]?: true };
  if (tagged[MEMOIZED]) return;
  tagged[MEMOIZED] = true;
  const lookup = storage.getTargetValidationMetadatas.bind(storage);
  const group = storage.groupByPropertyName.bind(storage);
  const add = storage.addValidationMetadata.bind(storage);
  // Per class, per call shape (schema, always, strictGroups, groups): the validator's options decide the last three.
  let byTarget = new WeakMap<Target, Map<string, ValidationMetadata[]>>();
  let grouped = new WeakMap<ValidationMetadata[], Record<string, ValidationMetadata[]>>();

  storage.getTargetValidationMetadatas = (targetConstructor, targetSchema, always, strictGroups, groups) => {
    // A schema's name or an unusual target is looked up as before (keygate validates classes only).
    if (typeof targetConstructor !== 'function') return lookup(targetConstructor, targetSchema, always, strictGroups, groups);
    const key = `${targetSchema ?? ''}\u0000${always ? 1 : 0}${strictGroups ? 1 : 0}\u0000${groups?.join('\u0000') ?? ''}`;
    let shapes = byTarget.get(targetConstructor);
    if (!shapes) byTarget.set(targetConstructor, (shapes = new Map<string, ValidationMetadata[]>()));
    let found = shapes.get(key);
    if (!found) shapes.set(key, (found = lookup(targetConstructor, targetSchema, always, strictGroups, groups)));
    return found;
  };
  storage.groupByPropertyName = (metadata) => {
    let found = grouped.get(metadata);
    if (!found) grouped.set(metadata, (found = group(metadata)));
    return found;
  };
  storage.addValidationMetadata = (metadata) => {
    add(metadata);
    byTarget = new WeakMap();
    grouped = new WeakMap();
  };
}
