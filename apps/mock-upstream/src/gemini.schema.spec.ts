import { requestSchemaProblems, schemaProblems } from './gemini.schema';

describe("the mock's Gemini Schema check", () => {
  it('accepts every field of the Schema message, nested through properties, items and anyOf', () => {
    const schema = {
      type: 'OBJECT',
      title: 't',
      description: 'd',
      nullable: false,
      properties: {
        s: { type: 'STRING', format: 'date-time', enum: ['a'], minLength: 1, maxLength: 9, pattern: '^a', example: 'a', default: 'a' },
        list: { type: 'ARRAY', items: { type: 'INTEGER', minimum: 1, maximum: 9 }, minItems: 0, maxItems: 3 },
        either: { anyOf: [{ type: 'STRING' }, { type: 'NUMBER' }] },
        map: { type: 'OBJECT', minProperties: 0, maxProperties: 2, properties: { k: { type: 'STRING' } } },
      },
      required: ['s'],
      propertyOrdering: ['s', 'list'],
    };
    expect(schemaProblems(schema, 'p')).toEqual([]);
  });

  it('names unknown fields, non-string enum values, bad types and undeclared required names with their paths', () => {
    expect(
      schemaProblems(
        {
          type: 'OBJECT',
          $schema: 'x',
          properties: { a: { anyOf: [{ type: 'Integer' }] }, b: { type: 'ARRAY', items: { type: 'STRING', enum: ['x', 2] } } },
          required: ['a', 'ghost'],
        },
        'p',
      ),
    ).toEqual([
      `Invalid JSON payload received. Unknown name "$schema" at 'p': Cannot find field.`,
      `Invalid value at 'p.properties["a"].value.any_of[0].type' (type.googleapis.com/google.ai.generativelanguage.v1beta.Type), "Integer"`,
      `Invalid value at 'p.properties["b"].value.items.enum[1]' (TYPE_STRING), 2`,
      '* GenerateContentRequest.p.required[1]: property is not defined',
    ]);
  });

  it('takes the type names in lowercase, as the Vercel AI SDK sends its tools and response schema', () => {
    // @ai-sdk/google 3.0.141: generateText with a tool, and generateObject, on gemini-2.5-flash.
    const parameters = {
      required: ['city'],
      type: 'object',
      properties: {
        city: { type: 'string' },
        unit: { type: 'string', enum: ['c', 'f'] },
        days: { type: 'array', items: { type: 'integer' } },
      },
    };
    expect(
      requestSchemaProblems({
        tools: [{ functionDeclarations: [{ name: 'weather', description: 'Get the weather', parameters }] }],
        generationConfig: {
          responseMimeType: 'application/json',
          responseSchema: { type: 'object', properties: { n: { type: 'number', nullable: true } } },
        },
      }),
    ).toEqual([]);
    expect(requestSchemaProblems({ tools: [{ functionDeclarations: [{ name: 'f', parameters: { type: 'string' } }] }] })).toEqual([
      '* GenerateContentRequest.tools[0].function_declarations[0].parameters: parameters schema should be of type OBJECT',
    ]);
    expect(schemaProblems({ type: 'array' }, 'p')).toEqual(['* GenerateContentRequest.p.items: missing field.']);
    expect(schemaProblems({ type: 'string', properties: { a: { type: 'string' } } }, 'p')).toEqual([
      '* GenerateContentRequest.p.properties: only allowed for OBJECT type',
    ]);
  });

  it('checks function parameters (an OBJECT needs properties; none at all is fine) and the response schema', () => {
    expect(
      requestSchemaProblems({
        tools: [
          {
            functionDeclarations: [
              { name: 'noargs' },
              { name: 'ok', parameters: { type: 'OBJECT', properties: { a: { type: 'STRING' } } } },
            ],
          },
        ],
        generationConfig: { responseSchema: { type: 'STRING' } },
      }),
    ).toEqual([]);
    expect(
      requestSchemaProblems({
        tools: [{ function_declarations: [{ name: 'empty', parameters: { type: 'OBJECT' } }] }],
        generation_config: { response_schema: { type: 'OBJECT', properties: {}, additionalProperties: false } },
      }),
    ).toEqual([
      '* GenerateContentRequest.tools[0].function_declarations[0].parameters.properties: should be non-empty for OBJECT type',
      `Invalid JSON payload received. Unknown name "additionalProperties" at 'generation_config.response_schema': Cannot find field.`,
    ]);
  });

  it('takes a schema as JSON Schema ($refs resolved, recursion included), alone, and refuses it beside the Schema form or unresolved', () => {
    const tree = {
      type: 'object',
      $defs: { Node: { type: 'object', properties: { kids: { type: 'array', items: { $ref: '#/$defs/Node' } } } } },
      properties: { root: { $ref: '#/$defs/Node' } },
      additionalProperties: false,
    };
    expect(
      requestSchemaProblems({
        tools: [{ functionDeclarations: [{ name: 'tree', parametersJsonSchema: tree }] }],
        generationConfig: { responseMimeType: 'application/json', responseJsonSchema: tree },
      }),
    ).toEqual([]);
    expect(
      requestSchemaProblems({
        tools: [
          {
            function_declarations: [
              { name: 'both', parameters: { type: 'OBJECT', properties: { a: { type: 'STRING' } } }, parameters_json_schema: tree },
              { name: 'array', parametersJsonSchema: { type: 'array' } },
              { name: 'dangling', parametersJsonSchema: { type: 'object', properties: { a: { $ref: '#/$defs/Missing' } } } },
              {
                name: 'described',
                parametersJsonSchema: {
                  type: 'object',
                  $defs: { A: { type: 'string' } },
                  properties: { a: { $ref: '#/$defs/A', title: 'A' } },
                },
              },
            ],
          },
        ],
        generation_config: { response_schema: { type: 'STRING' }, response_json_schema: tree },
      }),
    ).toEqual([
      '* GenerateContentRequest.tools[0].function_declarations[0]: parameters and parameters_json_schema are mutually exclusive',
      '* GenerateContentRequest.tools[0].function_declarations[1].parameters_json_schema: must describe an object',
      '* GenerateContentRequest.tools[0].function_declarations[2].parameters_json_schema: $ref #/$defs/Missing does not resolve',
      '* GenerateContentRequest.tools[0].function_declarations[3].parameters_json_schema: a $ref may not be set beside title',
      '* GenerateContentRequest.generation_config: response_schema and response_json_schema are mutually exclusive',
      '* GenerateContentRequest.generation_config.response_mime_type: response_json_schema needs application/json',
    ]);
  });

  it('refuses properties off an OBJECT, and parameters that are no OBJECT; takes an OBJECT without properties inside a schema', () => {
    expect(
      schemaProblems(
        { type: 'OBJECT', properties: { map: { type: 'OBJECT' }, name: { type: 'STRING', properties: { x: { type: 'STRING' } } } } },
        'p',
      ),
    ).toEqual(['* GenerateContentRequest.p.properties["name"].value.properties: only allowed for OBJECT type']);
    expect(
      requestSchemaProblems({
        tools: [{ functionDeclarations: [{ name: 'typeless', parameters: { properties: { a: { type: 'STRING' } } } }] }],
      }),
    ).toEqual([
      '* GenerateContentRequest.tools[0].function_declarations[0].parameters.type: must be specified when not using one_of, any_of or all_of fields',
      '* GenerateContentRequest.tools[0].function_declarations[0].parameters: parameters schema should be of type OBJECT',
    ]);
  });

  it('refuses a node without a type (unless anyOf says it) and an ARRAY without items, as Google does', () => {
    expect(
      schemaProblems(
        { type: 'OBJECT', properties: { any: {}, list: { type: 'ARRAY' }, either: { anyOf: [{ type: 'STRING' }, { type: 'NUMBER' }] } } },
        'p',
      ),
    ).toEqual([
      '* GenerateContentRequest.p.properties["any"].value.type: must be specified when not using one_of, any_of or all_of fields',
      '* GenerateContentRequest.p.properties["list"].value.items: missing field.',
    ]);
  });
});
