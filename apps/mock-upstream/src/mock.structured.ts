import { isRecord, type JsonRecord } from './mock.json';

/*
 * What a model answers when the request constrains its output: OpenAI's `json_schema` and
 * `json_object` response formats (Chat Completions' `response_format`, the Responses API's
 * `text.format`), Claude's structured outputs (`output_config.format`) and Gemini's response
 * schema (`generationConfig.responseSchema` / `responseJsonSchema` / `responseMimeType`). Each
 * provider guarantees JSON there (a schema's JSON under constrained decoding), and the clients built
 * on them parse it: the SDKs' `parse()` helpers, LangChain's `withStructuredOutput`, the Agents
 * SDK's `outputType`. An echo in prose would fail all of them, so the mock answers JSON too.
 */

/** Example values of the string formats the providers enforce (JSON Schema's names; Gemini's `date-time`). */
const FORMAT_SAMPLES: Readonly<Record<string, string>> = {
  'date-time': '2026-01-01T00:00:00Z',
  time: '00:00:00Z',
  date: '2026-01-01',
  duration: 'P1D',
  email: 'mock@example.com',
  hostname: 'example.com',
  uri: 'https://example.com/',
  ipv4: '192.0.2.1',
  ipv6: '2001:db8::1',
  uuid: '00000000-0000-4000-8000-000000000000',
};

/** Items given to an array whose `minItems` asks for many: enough to show the shape, no more. */
const MAX_SAMPLE_ITEMS = 8;
/** Deeper than any schema a test writes; stops a recursive schema (`$ref: "#"`). */
const MAX_DEPTH = 16;

/**
 * JSON text that follows `schema`, a JSON Schema or Gemini's `Schema` (types in either case): the
 * first of each choice (`enum`, `anyOf`, `oneOf`, a list of types), every property, the least items
 * an array allows, the number nearest 0 that its bounds allow.
 */
export function sampleJson(schema: JsonRecord): string {
  return JSON.stringify(sample(schema, schema, 0, 'mock'));
}

/**
 * A tool call's arguments: a value of the function's parameters (strict function calling
 * guarantees one, and the clients validate them before running the tool), every free-text string
 * holding `echo`, the user's words; `{"echo": …}` for a function that declares no properties.
 */
export function toolArguments(parameters: unknown, echo: string): JsonRecord {
  if (!isRecord(parameters) || !declaresArguments(parameters)) return { echo };
  const value = sample(parameters, parameters, 0, echo);
  return isRecord(value) ? value : { echo };
}

/** The schema names some argument: properties of its own, or a reference or choice that may. */
function declaresArguments(schema: JsonRecord): boolean {
  if (isRecord(schema.properties)) return Object.keys(schema.properties).length > 0;
  return ['$ref', 'anyOf', 'oneOf', 'allOf'].some((key) => schema[key] !== undefined);
}

/** JSON mode without a schema (`json_object`, Gemini's `application/json` alone): an object holding the usual reply. */
export function jsonObjectReply(reply: string): string {
  return JSON.stringify({ reply });
}

/**
 * The answer's text under one of OpenAI's response formats (its `type` and, for `json_schema`, its
 * `schema`): JSON of the schema, a JSON object, or the usual reply for `text` and none.
 */
export function openaiFormattedReply(type: unknown, schema: unknown, reply: string): string {
  if (type === 'json_schema') return isRecord(schema) ? sampleJson(schema) : '{}';
  if (type === 'json_object') return jsonObjectReply(reply);
  return reply;
}

/** A value of `node`; `text` is what a string without a format says. */
function sample(node: JsonRecord, root: JsonRecord, depth: number, text: string): unknown {
  if (depth > MAX_DEPTH) return null;
  if (typeof node.$ref === 'string') {
    const target = resolveRef(node.$ref, root);
    return isRecord(target) ? sample(target, root, depth + 1, text) : null;
  }
  if (node.const !== undefined) return node.const;
  if (Array.isArray(node.enum)) return node.enum[0];
  for (const choice of ['anyOf', 'oneOf'] as const) {
    const first: unknown = Array.isArray(node[choice]) ? (node[choice] as unknown[])[0] : undefined;
    if (isRecord(first)) return sample(first, root, depth + 1, text);
  }
  if (Array.isArray(node.allOf)) {
    // Every branch holds: an object takes the properties of each.
    const parts = (node.allOf as unknown[]).filter(isRecord).map((branch) => sample(branch, root, depth + 1, text));
    return parts.every(isRecord) && parts.length > 0 ? Object.assign({}, ...parts) : (parts[0] ?? null);
  }
  switch (typeOf(node)) {
    case 'object': {
      const out: JsonRecord = {};
      if (isRecord(node.properties))
        for (const [name, child] of Object.entries(node.properties)) if (isRecord(child)) out[name] = sample(child, root, depth + 1, text);
      return out;
    }
    case 'array': {
      if (Array.isArray(node.prefixItems))
        return (node.prefixItems as unknown[]).map((item) => (isRecord(item) ? sample(item, root, depth + 1, text) : null));
      const count = typeof node.minItems === 'number' ? Math.min(Math.max(0, Math.ceil(node.minItems)), MAX_SAMPLE_ITEMS) : 0;
      return isRecord(node.items) ? Array.from({ length: count }, () => sample(node.items as JsonRecord, root, depth + 1, text)) : [];
    }
    case 'string': {
      const value = (typeof node.format === 'string' ? FORMAT_SAMPLES[node.format] : undefined) ?? text;
      return typeof node.minLength === 'number' && node.minLength > value.length ? value.padEnd(node.minLength, 'k') : value;
    }
    case 'integer':
      return nearestZero(node, true);
    case 'number':
      return nearestZero(node, false);
    case 'boolean':
      return false;
    default:
      return null;
  }
}

/** The node's type, lowercase (Gemini writes `OBJECT`); the first that is not null of a list; implied by its keywords when absent. */
function typeOf(node: JsonRecord): string | undefined {
  const types = (Array.isArray(node.type) ? node.type : [node.type]).filter((t): t is string => typeof t === 'string');
  const type = types.find((t) => t.toLowerCase() !== 'null') ?? types[0];
  if (type !== undefined) return type.toLowerCase();
  if (isRecord(node.properties)) return 'object';
  if (node.items !== undefined || node.prefixItems !== undefined) return 'array';
  return undefined;
}

/** The number nearest 0 that the node's bounds allow (an integer's rounded inward). */
function nearestZero(node: JsonRecord, integer: boolean): number {
  const min =
    typeof node.minimum === 'number' ? node.minimum : typeof node.exclusiveMinimum === 'number' ? node.exclusiveMinimum + 1 : -Infinity;
  const max =
    typeof node.maximum === 'number' ? node.maximum : typeof node.exclusiveMaximum === 'number' ? node.exclusiveMaximum - 1 : Infinity;
  if (min <= 0 && max >= 0) return 0;
  if (min > 0) return integer ? Math.ceil(min) : min;
  return integer ? Math.floor(max) : max;
}

/** A local `$ref`: `#` (the root) or a JSON pointer into the schema (`#/$defs/Name`, `#/definitions/Name`). */
function resolveRef(ref: string, root: JsonRecord): unknown {
  if (ref !== '#' && !ref.startsWith('#/')) return undefined;
  let target: unknown = root;
  for (const raw of ref === '#' ? [] : ref.slice(2).split('/'))
    target = isRecord(target) ? target[raw.replace(/~1/g, '/').replace(/~0/g, '~')] : undefined;
  return target;
}
