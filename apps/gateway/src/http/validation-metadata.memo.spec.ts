import 'reflect-metadata';
import { IsInt, IsOptional, IsString, MetadataStorage, Min, ValidateNested, validateSync } from 'class-validator';
import { Type, plainToInstance } from 'class-transformer';
import { memoizeValidationMetadata } from './validation-metadata.memo';

class Part {
  @IsString() text!: string;
}
class Base {
  @IsInt() @Min(1) n!: number;
}
class Body extends Base {
  @IsString() model!: string;
  @IsOptional() @ValidateNested({ each: true }) @Type(() => Part) parts?: Part[];
}

/** Validation messages of `plain` as `Body`, against whichever storage class-validator uses. */
const problems = (plain: unknown): string[] =>
  validateSync(plainToInstance(Body, plain) as object).flatMap((e) => [
    ...Object.values(e.constraints ?? {}),
    ...(e.children ?? []).flatMap((c) => (c.children ?? []).flatMap((g) => Object.values(g.constraints ?? {}))),
  ]);

describe('memoizeValidationMetadata', () => {
  const cases: unknown[] = [
    { model: 'm', n: 1, parts: [{ text: 'a' }] },
    { model: 7, n: 0, parts: [{ text: 1 }, { text: 'b' }] },
    { n: 'x' },
  ];
  const before = cases.map(problems);

  it('leaves validation as it was: the same rules, inherited ones included, for every class and option', () => {
    memoizeValidationMetadata();
    expect(cases.map(problems)).toEqual(before);
    expect(before[1]).toEqual(expect.arrayContaining(['model must be a string', 'n must not be less than 1', 'text must be a string']));
    // Twice is harmless: the second call sees the storage is already wrapped.
    memoizeValidationMetadata();
    expect(cases.map(problems)).toEqual(before);
  });

  it('asks the storage once per class and options, and keeps a schema lookup and the groups apart', () => {
    const storage = new MetadataStorage();
    const lookup = jest.spyOn(storage, 'getTargetValidationMetadatas').mockImplementation(() => []);
    memoizeValidationMetadata(storage);
    const first = storage.getTargetValidationMetadatas(Body, '', false, false, undefined);
    expect(storage.getTargetValidationMetadatas(Body, '', false, false, undefined)).toBe(first);
    expect(Object.isFrozen(first)).toBe(true);
    storage.getTargetValidationMetadatas(Body, '', true, false, undefined);
    storage.getTargetValidationMetadatas(Body, '', false, false, ['admin']);
    storage.getTargetValidationMetadatas(Part, '', false, false, undefined);
    storage.getTargetValidationMetadatas(Body, 'a-schema', false, false, undefined);
    storage.getTargetValidationMetadatas(Body, 'a-schema', false, false, undefined);
    expect(lookup).toHaveBeenCalledTimes(6);
  });

  it('keeps the grouping of an answer with it, frozen, and groups any other list afresh', () => {
    const storage = new MetadataStorage();
    memoizeValidationMetadata(storage);
    const answer = storage.getTargetValidationMetadatas(Body, '', false, false, undefined);
    const grouped = storage.groupByPropertyName(answer);
    expect(storage.groupByPropertyName(answer)).toBe(grouped);
    expect(Object.isFrozen(grouped)).toBe(true);
    const loose = [...answer];
    expect(storage.groupByPropertyName(loose)).not.toBe(storage.groupByPropertyName(loose));
  });
});
