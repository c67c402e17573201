import { isRecord, type JsonRecord } from './mock.content';

/*
 * Claude's structured outputs (`output_config.format`), as far as a gateway's translation can go
 * wrong: the mock refuses a format Anthropic would refuse for its shape or for the JSON Schema
 * keywords Claude's subset lacks (an object left open, numeric, length and pattern bounds), and
 * answers with JSON text that follows the schema, as the model does under constrained decoding.
 */

/**
 * Keywords Claude's structured outputs take (Anthropic's documentation, "JSON Schema limitations":
 * `default` is listed; `$schema`, which names the draft and constrains nothing, is not among what
 * it refuses, and the Vercel AI SDK's Anthropic provider sends it on every schema).
 */
const SUPPORTED = new Set([
  '$schema',
  'default',
  'type',
  'properties',
  'required',
  'additionalProperties',
  'items',
  'minItems',
  'enum',
  'const',
  'anyOf',
  'allOf',
  '$ref',
  '$defs',
  'definitions',
  'description',
  'title',
  'format',
]);

/** The problems of an `output_config` (Anthropic's `field: message` form), none when it is well formed. */
export function outputConfigProblems(config: unknown): string[] {
  if (config === undefined) return [];
  if (!isRecord(config)) return ['output_config: Input should be a valid dictionary'];
  const format = config.format;
  if (format === undefined || format === null) return [];
  if (!isRecord(format) || format.type !== 'json_schema') return ["output_config.format.type: Input should be 'json_schema'"];
  if (!isRecord(format.schema)) return ['output_config.format.schema: Field required'];
  const problems: string[] = [];
  check(format.schema, 'output_config.format.schema', problems, 0);
  return problems;
}

function check(node: unknown, path: string, problems: string[], depth: number): void {
  if (!isRecord(node) || depth > 64) {
    problems.push(`${path}: Input should be a valid dictionary`);
    return;
  }
  for (const key of Object.keys(node))
    if (!SUPPORTED.has(key)) problems.push(`${path}: For 'json_schema' output format, the keyword '${key}' is not supported`);
  const typed = node.type !== undefined || ['anyOf', 'allOf', 'enum', 'const', '$ref'].some((k) => node[k] !== undefined);
  if (!typed) problems.push(`${path}: Schema must specify a type`);
  const types = Array.isArray(node.type) ? node.type : [node.type];
  if (types.includes('object') && node.additionalProperties !== false)
    problems.push(`${path}: For 'object' type, 'additionalProperties' must be explicitly set to false`);
  if (node.minItems !== undefined && node.minItems !== 0 && node.minItems !== 1)
    problems.push(`${path}.minItems: only 0 and 1 are supported`);
  for (const map of ['properties', '$defs', 'definitions'])
    if (isRecord(node[map]))
      for (const [name, child] of Object.entries(node[map])) check(child, `${path}.${map}.${name}`, problems, depth + 1);
  if (node.items !== undefined) check(node.items, `${path}.items`, problems, depth + 1);
  for (const list of ['anyOf', 'allOf'])
    if (Array.isArray(node[list]))
      (node[list] as unknown[]).forEach((child, i) => check(child, `${path}.${list}[${i}]`, problems, depth + 1));
}

/** Example values of the string formats Claude enforces. */
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

/** JSON text that follows a (checked) structured-outputs schema: the first of each choice, every property. */
export function sampleJson(schema: JsonRecord): string {
  return JSON.stringify(sample(schema, schema, 0));
}

function sample(node: JsonRecord, root: JsonRecord, depth: number): unknown {
  if (depth > 16) return null;
  if (typeof node.$ref === 'string') {
    const [, map, name] = /^#\/(\$defs|definitions)\/(.+)$/.exec(node.$ref) ?? [];
    const defs = map ? root[map] : undefined;
    const target = isRecord(defs) ? defs[name] : undefined;
    return isRecord(target) ? sample(target, root, depth + 1) : null;
  }
  if (node.const !== undefined) return node.const;
  if (Array.isArray(node.enum)) return node.enum[0];
  if (Array.isArray(node.anyOf) && isRecord(node.anyOf[0])) return sample(node.anyOf[0], root, depth + 1);
  if (Array.isArray(node.allOf) && isRecord(node.allOf[0])) return sample(node.allOf[0], root, depth + 1);
  const type: unknown = Array.isArray(node.type) ? (node.type as unknown[])[0] : node.type;
  switch (type) {
    case 'object': {
      const out: JsonRecord = {};
      if (isRecord(node.properties))
        for (const [name, child] of Object.entries(node.properties)) if (isRecord(child)) out[name] = sample(child, root, depth + 1);
      return out;
    }
    case 'array':
      return node.minItems === 1 && isRecord(node.items) ? [sample(node.items, root, depth + 1)] : [];
    case 'string':
      return (typeof node.format === 'string' ? FORMAT_SAMPLES[node.format] : undefined) ?? 'mock';
    case 'integer':
    case 'number':
      return 0;
    case 'boolean':
      return false;
    default:
      return null;
  }
}
