import { asArray, isRecord, type JsonRecord } from './mock.content';

/**
 * The fields of the Gemini API's `Schema` message (v1beta discovery document, `schemas.Schema`).
 * The real API parses a schema as protobuf JSON: any other key ("additionalProperties", "$ref",
 * "exclusiveMinimum"…) fails the whole request with 400 INVALID_ARGUMENT.
 */
const SCHEMA_FIELDS = new Set([
  'type',
  'format',
  'title',
  'description',
  'nullable',
  'enum',
  'maxItems',
  'minItems',
  'properties',
  'required',
  'minProperties',
  'maxProperties',
  'minLength',
  'maxLength',
  'pattern',
  'example',
  'anyOf',
  'propertyOrdering',
  'default',
  'items',
  'minimum',
  'maximum',
]);

const SCHEMA_TYPES = new Set(['TYPE_UNSPECIFIED', 'STRING', 'NUMBER', 'INTEGER', 'BOOLEAN', 'ARRAY', 'OBJECT', 'NULL']);

/**
 * A node's `Type` as the enum names it (`OBJECT`), undefined when it names none. Google's parser
 * takes the names in lowercase too (`"type": "object"`, as Google's own REST examples and the
 * Vercel AI SDK's Google provider write them); a mixed-case spelling is not a name.
 */
function schemaType(type: unknown): string | undefined {
  if (typeof type !== 'string' || (type !== type.toUpperCase() && type !== type.toLowerCase())) return undefined;
  return SCHEMA_TYPES.has(type.toUpperCase()) ? type.toUpperCase() : undefined;
}

/**
 * What the real API says about a `Schema` it refuses, one line each, in its own wording: unknown
 * fields and wrong value types (the protobuf JSON parser's "Invalid JSON payload received"), and
 * the semantic checks Google documents or users have reported (`required` names a property the
 * node does not declare). `at` is the proto path of the node (snake_case, as Google prints it).
 */
export function schemaProblems(schema: unknown, at: string): string[] {
  const problems: string[] = [];
  walk(schema, at, problems);
  return problems;
}

function walk(node: unknown, at: string, problems: string[]): void {
  if (!isRecord(node)) {
    problems.push(`Invalid value at '${at}' (type.googleapis.com/google.ai.generativelanguage.v1beta.Schema), ${JSON.stringify(node)}`);
    return;
  }
  for (const key of Object.keys(node)) {
    if (!SCHEMA_FIELDS.has(key)) problems.push(`Invalid JSON payload received. Unknown name "${key}" at '${at}': Cannot find field.`);
  }
  const type = schemaType(node.type);
  if (node.type !== undefined && type === undefined)
    problems.push(
      `Invalid value at '${at}.type' (type.googleapis.com/google.ai.generativelanguage.v1beta.Type), ${JSON.stringify(node.type)}`,
    );
  asArray(node.enum).forEach((value, i) => {
    if (typeof value !== 'string') problems.push(`Invalid value at '${at}.enum[${i}]' (TYPE_STRING), ${JSON.stringify(value)}`);
  });
  const properties = isRecord(node.properties) ? node.properties : undefined;
  if (properties)
    for (const [name, child] of Object.entries(properties)) walk(child, `${at}.properties[${JSON.stringify(name)}].value`, problems);
  asArray(node.required).forEach((name, i) => {
    if (typeof name !== 'string' || !properties || !Object.hasOwn(properties, name))
      problems.push(`* GenerateContentRequest.${at}.required[${i}]: property is not defined`);
  });
  // Google needs every node typed and every array's items given (LibreChat#6971, cline#7339).
  if (node.type === undefined && node.anyOf === undefined)
    problems.push(`* GenerateContentRequest.${at}.type: must be specified when not using one_of, any_of or all_of fields`);
  if (type === 'ARRAY' && node.items === undefined) problems.push(`* GenerateContentRequest.${at}.items: missing field.`);
  if (node.items !== undefined) walk(node.items, `${at}.items`, problems);
  asArray(node.anyOf).forEach((child, i) => walk(child, `${at}.any_of[${i}]`, problems));
  // Google refuses properties on a node of another type (anomalyco/opencode#11888). An OBJECT
  // without properties inside a schema is taken (Kilo-Org/kilocode#11955: array items without
  // properties); only a declaration's parameters need some (requestSchemaProblems).
  if (node.properties !== undefined && node.type !== undefined && type !== 'OBJECT')
    problems.push(`* GenerateContentRequest.${at}.properties: only allowed for OBJECT type`);
}

/**
 * The problems of a request's function declarations and response schema. A declaration's
 * `parameters` must be an OBJECT (python-genai#981) with properties (Google: "should be non-empty
 * for OBJECT type"); a function without arguments leaves `parameters` out.
 */
export function requestSchemaProblems(body: JsonRecord): string[] {
  const problems: string[] = [];
  asArray(body.tools).forEach((tool, t) => {
    if (!isRecord(tool)) return;
    asArray(tool.functionDeclarations ?? tool.function_declarations).forEach((fn, f) => {
      if (!isRecord(fn)) return;
      const json = fn.parametersJsonSchema ?? fn.parameters_json_schema;
      if (json !== undefined) {
        problems.push(...jsonSchemaProblems(json, fn.parameters !== undefined, `tools[${t}].function_declarations[${f}]`, 'parameters'));
        return;
      }
      if (fn.parameters === undefined) return;
      const at = `tools[${t}].function_declarations[${f}].parameters`;
      problems.push(...schemaProblems(fn.parameters, at));
      const parameters = fn.parameters;
      if (isRecord(parameters) && schemaType(parameters.type) !== 'OBJECT')
        problems.push(`* GenerateContentRequest.${at}: parameters schema should be of type OBJECT`);
      else if (isRecord(parameters) && !(isRecord(parameters.properties) && Object.keys(parameters.properties).length > 0))
        problems.push(`* GenerateContentRequest.${at}.properties: should be non-empty for OBJECT type`);
    });
  });
  const config = body.generationConfig ?? body.generation_config;
  if (isRecord(config)) {
    const schema = config.responseSchema ?? config.response_schema;
    if (schema !== undefined) problems.push(...schemaProblems(schema, 'generation_config.response_schema'));
    const json = config.responseJsonSchema ?? config.response_json_schema;
    if (json !== undefined) {
      problems.push(...jsonSchemaProblems(json, schema !== undefined, 'generation_config', 'response'));
      const mime = config.responseMimeType ?? config.response_mime_type;
      if (mime !== 'application/json')
        problems.push('* GenerateContentRequest.generation_config.response_mime_type: response_json_schema needs application/json');
    }
  }
  return problems;
}

/**
 * The problems of a schema given as JSON Schema (`parametersJsonSchema`, `responseJsonSchema`): a
 * JSON object, never beside the same schema in Gemini's own form; a function's parameters describe
 * an object. Gemini resolves its local `$ref`s, so one that names nothing is refused; a schema that
 * refers to itself is what the field is for. (Worded as the mock's own, not Google's.)
 */
function jsonSchemaProblems(json: unknown, alsoOpenApi: boolean, at: string, what: 'parameters' | 'response'): string[] {
  const field = `${what === 'parameters' ? 'parameters' : 'response'}_json_schema`;
  if (!isRecord(json)) return [`* GenerateContentRequest.${at}.${field}: must be a JSON Schema object`];
  const problems: string[] = [];
  if (alsoOpenApi)
    problems.push(
      `* GenerateContentRequest.${at}: ${what === 'parameters' ? 'parameters' : 'response_schema'} and ${field} are mutually exclusive`,
    );
  if (what === 'parameters' && json.type !== 'object') problems.push(`* GenerateContentRequest.${at}.${field}: must describe an object`);
  // "If $ref is set on a sub-schema, no other properties, except for those starting as a $, may be set."
  for (const node of refNodes(json)) {
    const others = Object.keys(node).filter((key) => !key.startsWith('$'));
    if (others.length > 0) problems.push(`* GenerateContentRequest.${at}.${field}: a $ref may not be set beside ${others.join(', ')}`);
  }
  const anchors = new Set(keywordValues(json, '$anchor'));
  for (const ref of keywordValues(json, '$ref')) {
    // `#name` names a node by its $anchor; `#/a/b` is a JSON pointer from the root.
    if (ref !== '#' && !ref.startsWith('#/')) {
      if (!anchors.has(ref.slice(1))) problems.push(`* GenerateContentRequest.${at}.${field}: $ref ${ref} does not resolve`);
      continue;
    }
    let target: unknown = json;
    for (const raw of ref === '#' ? [] : ref.slice(2).split('/'))
      target = isRecord(target) ? target[raw.replace(/~1/g, '/').replace(/~0/g, '~')] : undefined;
    if (!isRecord(target) && typeof target !== 'boolean')
      problems.push(`* GenerateContentRequest.${at}.${field}: $ref ${ref} does not resolve`);
  }
  return problems;
}

/** The nodes of a JSON Schema that hold a `$ref`. */
function refNodes(node: unknown, out: JsonRecord[] = []): JsonRecord[] {
  if (Array.isArray(node)) for (const child of node) refNodes(child, out);
  else if (isRecord(node)) {
    if (typeof node.$ref === 'string') out.push(node);
    for (const value of Object.values(node)) refNodes(value, out);
  }
  return out;
}

/** Every string a JSON Schema gives `keyword` (`$ref`, `$anchor`), wherever it is. */
function keywordValues(node: unknown, keyword: string, out: string[] = []): string[] {
  if (Array.isArray(node)) for (const child of node) keywordValues(child, keyword, out);
  else if (isRecord(node))
    for (const [key, value] of Object.entries(node)) {
      if (key === keyword && typeof value === 'string') out.push(value);
      else keywordValues(value, keyword, out);
    }
  return out;
}
