import 'reflect-metadata';
import { plainToInstance, Type } from 'class-transformer';
import { getMetadataStorage, IsInt, IsPositive, IsString, ValidateNested, validateSync } from 'class-validator';
import { memoizeValidationMetadata } from './validation-metadata-cache';

class Part {
  @IsString()
  text!: string;
}

class Base {
  @IsString({ groups: ['admin'] })
  note?: string;

  @IsString()
  name!: string;
}

class Child extends Base {
  @IsInt()
  count!: number;

  @ValidateNested({ each: true })
  @Type(() => Part)
  parts!: Part[];
}

/** The rules of each lookup, as names and kinds (the same metadata objects either way). */
const shapes = [
  [Child, '', false, false, undefined],
  [Child, '', false, false, ['admin']],
  [Child, '', false, true, undefined],
  [Child, '', true, false, ['other']],
  [Base, '', false, false, undefined],
  [Part, '', false, false, undefined],
] as const;

describe('memoizeValidationMetadata', () => {
  const storage = getMetadataStorage();
  // Taken before the cache is installed: what class-validator itself answers.
  const uncached = shapes.map(([target, schema, always, strict, groups]) =>
    storage.getTargetValidationMetadatas(target, schema, always, strict, groups ? [...groups] : undefined),
  );
  beforeAll(() => memoizeValidationMetadata());

  it('answers every lookup as class-validator does, inherited and grouped rules included, the same array each time', () => {
    shapes.forEach(([target, schema, always, strict, groups], i) => {
      const first = storage.getTargetValidationMetadatas(target, schema, always, strict, groups ? [...groups] : undefined);
      expect(first).toEqual(uncached[i]);
      expect(storage.getTargetValidationMetadatas(target, schema, always, strict, groups ? [...groups] : undefined)).toBe(first);
    });
    // The subclass inherits `name` and `note`; strict groups leave the admin group's `note` out.
    const names = (i: number) => uncached[i].map((m) => m.propertyName).sort();
    expect(names(0)).toEqual(['count', 'name', 'note', 'parts']);
    expect(names(2)).toEqual(['count', 'name', 'parts']);
    expect(names(3)).toEqual(['count', 'name', 'parts']);
  });

  it('groups a lookup by property once, and validates as before', () => {
    const rules = storage.getTargetValidationMetadatas(Child, '', false, false);
    expect(storage.groupByPropertyName(rules)).toBe(storage.groupByPropertyName(rules));
    const ok = plainToInstance(Child, { name: 'a', note: 'n', count: 1, parts: [{ text: 'x' }] });
    expect(validateSync(ok)).toEqual([]);
    const bad = plainToInstance(Child, { name: 1, note: 'n', count: 1.5, parts: [{ text: 2 }] });
    const errors = validateSync(bad, { validationError: { target: false, value: false } });
    expect(errors.map((e) => e.property).sort()).toEqual(['count', 'name', 'parts']);
    expect(errors.find((e) => e.property === 'parts')?.children?.[0].children?.[0].constraints).toHaveProperty('isString');
  });

  it('sees a rule registered after a lookup (a class loaded late)', () => {
    expect(validateSync(plainToInstance(Child, { name: 'a', note: 'n', count: 1, parts: [], extra: -1 }))).toEqual([]);
    IsPositive()(Child.prototype, 'extra');
    const errors = validateSync(plainToInstance(Child, { name: 'a', note: 'n', count: 1, parts: [], extra: -1 }));
    expect(errors.map((e) => e.property)).toEqual(['extra']);
  });

  it('wraps the storage once, however often it is called', () => {
    const lookup = storage.getTargetValidationMetadatas;
    memoizeValidationMetadata();
    expect(storage.getTargetValidationMetadatas).toBe(lookup);
  });
});
