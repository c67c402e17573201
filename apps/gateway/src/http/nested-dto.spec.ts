import { refusalOf } from '@keygate/errors/testing';
import { getMetadataStorage, IsString, ValidationTypes } from 'class-validator';
import { ChatCompletionRequestDto, ChatMessageDto, MAX_MESSAGES } from '../chat/chat-completion.dto';
import { MessagesRequestDto } from '../messages/messages.dto';
import { DtoValidationPipe } from './dto-validation.pipe';
import { NestedDto, instantiateDto, isNestedDto } from './nested-dto';

class PartDto {
  @IsString() text!: string;
}

class BaseDto {
  @NestedDto(() => PartDto, { each: true, maxItems: 3, items: 'parts' }) parts?: PartDto[];
}

class DerivedDto extends BaseDto {
  @NestedDto(() => PartDto) main?: PartDto;
}

describe('instantiateDto', () => {
  it('makes instances of the nested DTOs (inherited ones too) and sets every other value as it is, by reference', () => {
    const extra = { deep: { deeper: [1, 2, 3] } };
    const plain = { parts: [{ text: 'a' }, 'not an object', [1]], main: { text: 'b' }, extra };
    const dto = instantiateDto(DerivedDto, plain) as DerivedDto & { extra: unknown };
    expect(dto).toBeInstanceOf(DerivedDto);
    expect(dto.parts?.[0]).toBeInstanceOf(PartDto);
    expect(dto.parts?.[0]).toEqual({ text: 'a' });
    // What is not an object is left for the validator to refuse.
    expect(dto.parts?.slice(1)).toEqual(['not an object', [1]]);
    expect(dto.main).toBeInstanceOf(PartDto);
    expect(dto.extra).toBe(extra);
    expect(plain.parts[0]).not.toBeInstanceOf(PartDto);
  });

  it('sets no constructor or __proto__ key, so the instance keeps its class', () => {
    const plain = JSON.parse(
      '{"constructor": {"x": 1}, "__proto__": {"polluted": true}, "main": {"text": "b", "constructor": 2}}',
    ) as object;
    const dto = instantiateDto(DerivedDto, plain) as DerivedDto & { polluted?: unknown };
    expect(dto.constructor).toBe(DerivedDto);
    expect(Object.getPrototypeOf(dto)).toBe(DerivedDto.prototype);
    expect(dto.polluted).toBeUndefined();
    expect(dto.main?.constructor).toBe(PartDto);
  });

  it('refuses an array over its maxItems before making any instance, naming the property', () => {
    expect(() => instantiateDto(BaseDto, { parts: [{ text: 'a' }, { text: 'b' }, { text: 'c' }] })).not.toThrow();
    const refused = refusalOf(() => instantiateDto(BaseDto, { parts: [{}, {}, {}, {}] }));
    expect([refused.code, refused.message, refused.options.param]).toEqual(['invalid_request', 'parts may hold at most 3 parts', 'parts']);
  });
});

describe('DtoValidationPipe with nested DTOs', () => {
  const pipe = new DtoValidationPipe();
  const validate = (metatype: new () => object, body: unknown): unknown =>
    pipe.transform(Buffer.from(JSON.stringify(body)), { type: 'body', metatype });

  it('validates each message as its DTO and hands back the body as sent, fields no DTO declares included', () => {
    const foo = Object.fromEntries(Array.from({ length: 5000 }, (_, i) => [`k${i}`, { v: i }]));
    const body = { model: 'gpt-4o', messages: [{ role: 'user', content: 'hi' }], foo };
    expect(validate(ChatCompletionRequestDto, body)).toEqual(body);
    const refused = refusalOf(() => validate(ChatCompletionRequestDto, { model: 'gpt-4o', messages: [{ role: 'robot', content: 'hi' }] }));
    expect([refused.code, refused.options.param]).toEqual(['invalid_request', 'messages[0].role']);
    expect(new ChatMessageDto()).toBeInstanceOf(ChatMessageDto);
  });

  it(`refuses more than ${MAX_MESSAGES} messages on chat and /v1/messages, and takes ${MAX_MESSAGES}`, () => {
    const messages = (n: number): unknown[] => Array.from({ length: n }, () => ({ role: 'user', content: 'a' }));
    expect(() => validate(ChatCompletionRequestDto, { model: 'gpt-4o', messages: messages(MAX_MESSAGES) })).not.toThrow();
    for (const [metatype, extra] of [
      [ChatCompletionRequestDto, {}],
      [MessagesRequestDto, { max_tokens: 5 }],
    ] as const) {
      const refused = refusalOf(() => validate(metatype, { model: 'm', ...extra, messages: messages(MAX_MESSAGES + 1) }));
      expect([refused.code, refused.message, refused.options.param]).toEqual([
        'invalid_request',
        'messages may hold at most 10,000 messages',
        'messages',
      ]);
    }
  });
});

describe('every body DTO', () => {
  it('marks each property class-validator validates as nested with @NestedDto (a bare @ValidateNested would validate plain objects: every body refused)', async () => {
    const modules = await Promise.all([
      import('../admin/admin.dto'),
      import('../chat/chat-completion.dto'),
      import('../embeddings/embeddings.dto'),
      import('../gemini/gemini.dto'),
      import('../messages/messages.dto'),
      import('../responses/responses.dto'),
    ]);
    const storage = getMetadataStorage();
    const classes = modules.flatMap((m): unknown[] => Object.values(m)).filter((v): v is new () => object => typeof v === 'function');
    const nested = classes.flatMap((cls) =>
      storage
        .getTargetValidationMetadatas(cls, '', true, false)
        .filter((rule) => rule.type === ValidationTypes.NESTED_VALIDATION)
        .map((rule) => [cls, rule.propertyName] as const),
    );
    // The ones there are today: the check below is not vacuous.
    expect(nested.map(([cls, property]) => `${cls.name}.${property}`)).toEqual(
      expect.arrayContaining([
        'ChatCompletionRequestDto.messages',
        'ChatCompletionRequestDto.stream_options',
        'MessagesRequestDto.messages',
      ]),
    );
    expect(nested.filter(([cls, property]) => !isNestedDto(cls, property)).map(([cls, property]) => `${cls.name}.${property}`)).toEqual([]);
  });
});
