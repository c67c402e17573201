import { isRecord } from './mock.content';

/*
 * Claude's structured outputs (`output_config.format`), as far as a gateway's translation can go
 * wrong: the mock refuses a format Anthropic would refuse for its shape or for the JSON Schema
 * keywords Claude's subset lacks (an object left open, numeric, length and pattern bounds). The
 * answer, JSON text that follows the schema, is `sampleJson`'s (mock.structured.ts).
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
