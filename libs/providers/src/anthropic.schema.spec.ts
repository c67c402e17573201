import { GatewayError } from '@keygate/errors';
import { claudeOutputSchema } from './anthropic.schema';

const P = 'response_format.json_schema.schema';

describe('claudeOutputSchema', () => {
  it('leaves the client schema untouched', () => {
    const schema = { type: 'object', properties: { n: { type: 'number', minimum: 1 } } };
    const before = JSON.stringify(schema);
    claudeOutputSchema(schema, P);
    expect(JSON.stringify(schema)).toBe(before);
  });

  it('closes every object, a free-form map saying what it allowed', () => {
    expect(
      claudeOutputSchema({ type: 'object', properties: { meta: { type: 'object', additionalProperties: { type: 'string' } } } }, P),
    ).toStrictEqual({
      type: 'object',
      properties: {
        meta: { type: 'object', properties: {}, additionalProperties: false, description: '{additionalProperties: {"type":"string"}}' },
      },
      additionalProperties: false,
    });
  });

  it('walks $defs, definitions and properties by value, whatever their names', () => {
    const out = claudeOutputSchema(
      {
        type: 'object',
        definitions: { default: { type: 'integer', multipleOf: 2 } },
        properties: { enum: { $ref: '#/definitions/default', title: 'dropped beside a $ref' } },
      },
      P,
    );
    expect(out).toStrictEqual({
      definitions: { default: { type: 'integer', description: '{multipleOf: 2}' } },
      type: 'object',
      properties: { enum: { $ref: '#/definitions/default' } },
      additionalProperties: false,
    });
  });

  it('keeps nullable type lists and allOf, and describes keywords of another type than the node’s', () => {
    expect(claudeOutputSchema({ type: ['string', 'null'], maxLength: 3, items: { type: 'string' } }, P)).toStrictEqual({
      type: ['string', 'null'],
      description: '{items: {"type":"string"}, maxLength: 3}',
    });
    expect(claudeOutputSchema({ allOf: [{ type: 'object', properties: {} }] }, P)).toStrictEqual({
      allOf: [{ type: 'object', properties: {}, additionalProperties: false }],
    });
  });

  it('describes an enum of objects and a string format Claude does not enforce', () => {
    expect(claudeOutputSchema({ type: 'string', format: 'regex', enum: [{ a: 1 }] }, P)).toStrictEqual({
      type: 'string',
      description: '{format: "regex", enum: [{"a":1}]}',
    });
  });

  it.each([
    ['a node that is not an object', { type: 'object', properties: { x: true } }, `${P}.properties.x`],
    ['an array whose items have no type', { type: 'array', items: { description: 'anything' } }, `${P}.items`],
    ['an anyOf variant without a type', { anyOf: [{ type: 'string' }, {}] }, `${P}.anyOf[1]`],
  ])('refuses %s, naming its path', (_case, schema, param) => {
    let thrown: unknown;
    try {
      claudeOutputSchema(schema, P);
    } catch (error) {
      thrown = error;
    }
    expect(thrown).toBeInstanceOf(GatewayError);
    expect((thrown as GatewayError).code).toBe('unsupported_parameter');
    expect((thrown as GatewayError).options.param).toBe(param);
  });

  it('refuses a schema nested deeper than 64 levels', () => {
    let schema: Record<string, unknown> = { type: 'string' };
    for (let i = 0; i < 70; i++) schema = { type: 'array', items: schema };
    expect(() => claudeOutputSchema(schema, P)).toThrow(/deeper than 64/);
  });
});
