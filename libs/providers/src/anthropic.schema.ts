import { isRecord, unsupportedParameter, type Json } from './translate.util';

/*
 * OpenAI's `response_format: {type: "json_schema"}` as Claude's structured outputs
 * (`output_config.format`). Claude takes a subset of JSON Schema: every object closed
 * (`additionalProperties: false`), `enum`/`const` of primitives, `anyOf`/`allOf`, local `$ref`s, a
 * few string formats, `minItems` of 0 or 1, and none of the numeric, length or pattern bounds.
 * Anthropic's own SDKs adapt a schema to that before sending it: the bounds Claude cannot enforce
 * go into the node's description (the model still reads them), objects are closed, `oneOf` becomes
 * `anyOf`. keygate does the same for OpenAI clients, whose SDKs know nothing of Claude's subset.
 */

/** String formats Claude's structured outputs enforce; another format is described instead. */
const FORMATS = new Set(['date-time', 'time', 'date', 'duration', 'email', 'hostname', 'uri', 'ipv4', 'ipv6', 'uuid']);

/** Keywords that carry no constraint and are dropped rather than described. */
const DROPPED = new Set(['$schema', '$id', '$comment']);

/** Keywords read by {@link node} itself; every other one is described. */
const HANDLED = new Set([
  '$ref',
  '$defs',
  'definitions',
  'enum',
  'const',
  'type',
  'anyOf',
  'oneOf',
  'allOf',
  'description',
  'title',
  'properties',
  'required',
  'additionalProperties',
  'items',
  'minItems',
  'format',
]);

/** How deep a schema may nest before it is refused (a guard, far beyond any real one). */
const MAX_DEPTH = 64;

const primitive = (value: unknown): boolean => value === null || typeof value !== 'object';

/**
 * The schema of a `json_schema` response format, in the form Claude's structured outputs take.
 * The client's schema is not modified. Throws 400 `unsupported_parameter` (naming `param`) for a
 * node Claude cannot read at all: one that is not an object, or one without a type, `anyOf`,
 * `allOf`, `enum`, `const` or `$ref`.
 */
export function claudeOutputSchema(schema: Json, param: string): Json {
  return node(schema, param, 0);
}

function node(schema: unknown, path: string, depth: number): Json {
  if (!isRecord(schema))
    throw unsupportedParameter('anthropic', path, 'Claude’s structured outputs take a JSON Schema object at every node');
  if (depth > MAX_DEPTH) throw unsupportedParameter('anthropic', path, `the schema nests deeper than ${MAX_DEPTH} levels`);
  const out: Json = {};
  const described: Json = {};
  for (const defs of ['$defs', 'definitions'] as const) {
    const value = schema[defs];
    if (value === undefined) continue;
    if (!isRecord(value)) {
      described[defs] = value;
      continue;
    }
    // A map of schemas: each walked by value, whatever its name (`default` is a name like any other).
    const walked: Json = {};
    for (const [name, def] of Object.entries(value)) walked[name] = node(def, `${path}.${defs}.${name}`, depth + 1);
    out[defs] = walked;
  }
  if (typeof schema.$ref === 'string') {
    // A reference stands for its target: only a description may sit beside it.
    out.$ref = schema.$ref;
    if (typeof schema.description === 'string') out.description = schema.description;
    return out;
  }

  const literals = Array.isArray(schema.enum) && schema.enum.length > 0 && schema.enum.every(primitive);
  if (literals) out.enum = schema.enum;
  const constant = schema.const !== undefined && primitive(schema.const);
  if (constant) out.const = schema.const;
  const type = schema.type;
  const variants = Array.isArray(schema.anyOf) ? 'anyOf' : Array.isArray(schema.oneOf) ? 'oneOf' : undefined;
  if (variants) out.anyOf = (schema[variants] as unknown[]).map((v, i) => node(v, `${path}.${variants}[${i}]`, depth + 1));
  else if (Array.isArray(schema.allOf)) out.allOf = schema.allOf.map((v, i) => node(v, `${path}.allOf[${i}]`, depth + 1));
  // A literal says the type already (a declared one is dropped, as Anthropic's SDKs do); otherwise the node needs one.
  if (!literals && !constant && !variants && !Array.isArray(schema.allOf)) {
    if (type === undefined)
      throw unsupportedParameter(
        'anthropic',
        path,
        'Claude’s structured outputs need a type at every node that is not an anyOf, allOf, enum, const or $ref',
      );
    out.type = type;
  }
  if (typeof schema.title === 'string') out.title = schema.title;

  const types = Array.isArray(type) ? type : [type];
  if (types.includes('object')) {
    const properties = isRecord(schema.properties) ? schema.properties : {};
    const walked: Json = {};
    for (const [name, value] of Object.entries(properties)) walked[name] = node(value, `${path}.properties.${name}`, depth + 1);
    out.properties = walked;
    if (Array.isArray(schema.required)) out.required = schema.required;
    // Claude needs every object closed; a schema for a free-form map says so in its description.
    out.additionalProperties = false;
    if (schema.additionalProperties !== undefined && schema.additionalProperties !== false)
      described.additionalProperties = schema.additionalProperties;
  }
  if (types.includes('array')) {
    if (isRecord(schema.items)) out.items = node(schema.items, `${path}.items`, depth + 1);
    else if (schema.items !== undefined) described.items = schema.items;
    if (schema.minItems === 0 || schema.minItems === 1) out.minItems = schema.minItems;
    else if (schema.minItems !== undefined) described.minItems = schema.minItems;
  }
  // Keywords of another type than the node's constrain nothing Claude could enforce: said.
  if (!types.includes('object'))
    for (const key of ['properties', 'required', 'additionalProperties']) if (schema[key] !== undefined) described[key] = schema[key];
  if (!types.includes('array')) for (const key of ['items', 'minItems']) if (schema[key] !== undefined) described[key] = schema[key];
  if (typeof schema.format === 'string' && types.includes('string') && FORMATS.has(schema.format)) out.format = schema.format;
  else if (schema.format !== undefined) described.format = schema.format;
  if (schema.enum !== undefined && !literals) described.enum = schema.enum;
  if (schema.const !== undefined && !constant) described.const = schema.const;

  for (const [key, value] of Object.entries(schema)) if (!HANDLED.has(key) && !DROPPED.has(key)) described[key] = value;
  const said = Object.entries(described);
  const description = typeof schema.description === 'string' ? schema.description : undefined;
  if (said.length === 0) {
    if (description !== undefined) out.description = description;
    return out;
  }
  const bounds = `{${said.map(([key, value]) => `${key}: ${JSON.stringify(value)}`).join(', ')}}`;
  out.description = description ? `${description}\n\n${bounds}` : bounds;
  return out;
}
