import { jsonObjectReply, openaiFormattedReply, sampleJson, toolArguments } from './mock.structured';

const parsed = (schema: Record<string, unknown>): unknown => JSON.parse(sampleJson(schema));

describe('sampleJson', () => {
  it('fills every property with the first of each choice and a sample of each string format', () => {
    const schema = {
      type: 'object',
      $defs: { Plan: { enum: ['free', 'team'] } },
      properties: {
        email: { type: 'string', format: 'email' },
        plan: { $ref: '#/$defs/Plan' },
        id: { anyOf: [{ type: 'integer' }, { type: 'string' }] },
        kind: { oneOf: [{ const: 'a' }, { const: 'b' }] },
        nick: { type: ['string', 'null'] },
        flag: { type: 'boolean' },
      },
    };
    expect(parsed(schema)).toEqual({ email: 'mock@example.com', plan: 'free', id: 0, kind: 'a', nick: 'mock', flag: false });
  });

  it('reads Gemini’s Schema, whose types are upper case and whose nullable is a flag', () => {
    const schema = {
      type: 'OBJECT',
      properties: {
        name: { type: 'STRING' },
        age: { type: 'INTEGER', nullable: true },
        tags: { type: 'ARRAY', items: { type: 'STRING' } },
      },
      required: ['name', 'age'],
      propertyOrdering: ['name', 'age', 'tags'],
    };
    expect(parsed(schema)).toEqual({ name: 'mock', age: 0, tags: [] });
  });

  it('gives an array the least items it allows, and a tuple one item per position', () => {
    expect(parsed({ type: 'array', items: { type: 'string' }, minItems: 2 })).toEqual(['mock', 'mock']);
    expect(parsed({ type: 'array', prefixItems: [{ type: 'string' }, { type: 'number' }] })).toEqual(['mock', 0]);
  });

  it('keeps numbers and strings within their bounds', () => {
    const schema = {
      type: 'object',
      properties: {
        safe: { type: 'integer', minimum: -9007199254740991, maximum: 9007199254740991 },
        positive: { type: 'integer', exclusiveMinimum: 0 },
        atLeast: { type: 'number', minimum: 2.5 },
        negative: { type: 'integer', maximum: -3 },
        code: { type: 'string', minLength: 6 },
      },
    };
    expect(parsed(schema)).toEqual({ safe: 0, positive: 1, atLeast: 2.5, negative: -3, code: 'mockkk' });
  });

  it('merges the objects of an allOf, and stops a schema that refers to itself', () => {
    const merged = {
      allOf: [
        { type: 'object', properties: { a: { type: 'string' } } },
        { type: 'object', properties: { b: { type: 'number' } } },
      ],
    };
    expect(parsed(merged)).toEqual({ a: 'mock', b: 0 });
    const tree = { type: 'object', properties: { name: { type: 'string' }, children: { type: 'array', items: { $ref: '#' } } } };
    expect(parsed(tree)).toEqual({ name: 'mock', children: [] });
    const chain = { type: 'object', properties: { next: { $ref: '#' } } };
    expect(JSON.stringify(parsed(chain))).toMatch(/^(\{"next":)+null\}+$/);
  });
});

describe('toolArguments', () => {
  it('follows the function’s parameters, its free-text strings holding the user’s words', () => {
    const parameters = {
      type: 'object',
      properties: {
        city: { type: 'string' },
        unit: { type: 'string', enum: ['c', 'f'] },
        days: { type: 'integer', minimum: 1 },
        when: { type: 'string', format: 'date' },
        filters: { type: 'array', items: { type: 'object', properties: { k: { type: 'string' } } } },
      },
      required: ['city', 'unit', 'days', 'when', 'filters'],
      additionalProperties: false,
    };
    expect(toolArguments(parameters, 'weather in Paris')).toEqual({
      city: 'weather in Paris',
      unit: 'c',
      days: 1,
      when: '2026-01-01',
      filters: [],
    });
    expect(toolArguments({ type: 'OBJECT', properties: { q: { type: 'STRING' } } }, 'find')).toEqual({ q: 'find' });
  });

  it('echoes the user’s words for a function that declares no properties, or none at all', () => {
    expect(toolArguments({ type: 'object', properties: {} }, 'hi')).toEqual({ echo: 'hi' });
    expect(toolArguments({ type: 'object' }, 'hi')).toEqual({ echo: 'hi' });
    expect(toolArguments(undefined, 'hi')).toEqual({ echo: 'hi' });
  });
});

describe('openaiFormattedReply', () => {
  it('answers JSON of a json_schema format, a JSON object for json_object, and the reply otherwise', () => {
    const schema = { type: 'object', properties: { city: { type: 'string' } }, required: ['city'], additionalProperties: false };
    expect(JSON.parse(openaiFormattedReply('json_schema', schema, 'hi'))).toEqual({ city: 'mock' });
    expect(JSON.parse(openaiFormattedReply('json_object', undefined, 'hi'))).toEqual({ reply: 'hi' });
    expect(openaiFormattedReply('text', undefined, 'hi')).toBe('hi');
    expect(openaiFormattedReply(undefined, undefined, 'hi')).toBe('hi');
    expect(jsonObjectReply('x')).toBe('{"reply":"x"}');
  });
});
