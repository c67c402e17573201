import { getMetadataStorage } from 'class-validator';

type Storage = ReturnType<typeof getMetadataStorage>;
type Lookup = Storage['getTargetValidationMetadatas'];
type Metadata = ReturnType<Lookup>;
type Grouped = ReturnType<Storage['groupByPropertyName']>;

const MEMOIZED = Symbol('keygate.validationMetadataMemo');

/**
 * Makes class-validator answer "which rules apply to this class" once per class and options.
 * `validateSync` asks for every object it validates (the body, then each message, content part and
 * tool), and each answer filters every registered rule and tests the class against every other
 * registered class with `instanceof`: a measurable share of the gateway's CPU per request. The
 * rules of a class are complete once the class is defined (its decorators and its parents' have
 * run, and a parent is always defined first), so the first answer stays right. The grouping by
 * property of an answer is kept with it. class-validator only reads both; they are frozen, so a
 * version that wrote to them would throw in the tests rather than share a change between requests.
 */
export function memoizeValidationMetadata(storage: Storage = getMetadataStorage()): void {
  const marked = storage as Storage & { [MEMOIZED]?: true };
  if (marked[MEMOIZED]) return;
  marked[MEMOIZED] = true;
  const lookup = storage.getTargetValidationMetadatas.bind(storage);
  const group = storage.groupByPropertyName.bind(storage);
  const answers = new WeakMap<object, Map<string, Metadata>>();
  const groupings = new WeakMap<Metadata, Grouped>();
  storage.getTargetValidationMetadatas = (target, schema, always, strictGroups, groups) => {
    // A schema name (string) validates no class: left to class-validator, as are unusual targets.
    if (typeof target !== 'function' || schema) return lookup(target, schema, always, strictGroups, groups);
    const key = `${always ? 1 : 0}${strictGroups ? 1 : 0}${groups?.length ? JSON.stringify(groups) : ''}`;
    let byOptions = answers.get(target);
    if (!byOptions) answers.set(target, (byOptions = new Map<string, Metadata>()));
    let answer = byOptions.get(key);
    if (!answer) byOptions.set(key, (answer = Object.freeze(lookup(target, schema, always, strictGroups, groups)) as Metadata));
    return answer;
  };
  storage.groupByPropertyName = (metadata) => {
    if (!Object.isFrozen(metadata)) return group(metadata);
    let grouped = groupings.get(metadata);
    if (!grouped) {
      grouped = group(metadata);
      for (const rules of Object.values(grouped)) Object.freeze(rules);
      groupings.set(metadata, Object.freeze(grouped));
    }
    return grouped;
  };
}
