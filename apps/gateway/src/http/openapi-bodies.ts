import type { OpenAPIObject } from '@nestjs/swagger';
import { strictBodyNames } from './dto-validation.pipe';

type Schema = { properties?: object; additionalProperties?: unknown };

/** The names of the component schemas `value` refers to, and those they refer to in turn, into `into`. */
function collectRefs(value: unknown, schemas: Record<string, unknown>, into: Set<string>): Set<string> {
  if (Array.isArray(value)) for (const item of value) collectRefs(item, schemas, into);
  else if (typeof value === 'object' && value !== null) {
    for (const [key, inner] of Object.entries(value)) {
      if (key === '$ref' && typeof inner === 'string') {
        const name = inner.slice(inner.lastIndexOf('/') + 1);
        if (!into.has(name)) {
          into.add(name);
          collectRefs(schemas[name], schemas, into);
        }
      } else if (key !== 'example' && key !== 'examples') collectRefs(inner, schemas, into);
    }
  }
  return into;
}

/**
 * Says of each request body schema whether it takes fields the document does not list: a body
 * DTO takes them and passes them on to the provider (OpenAI's, Anthropic's and Google's fields
 * keygate does not model), unless it is a {@link StrictBody}, which refuses them with a 400. Left
 * unsaid, a generated client (openapi-typescript, say) reads a body as closed and cannot send
 * `parallel_tool_calls` or `safetySettings`, nor learn that an operator's misspelt field is refused.
 * Done on the built document: @nestjs/swagger has no class-level `additionalProperties`.
 */
export function documentRequestBodies(document: OpenAPIObject, strict: ReadonlySet<string> = strictBodyNames()): void {
  const schemas = (document.components?.schemas ?? {}) as Record<string, Schema>;
  const open = new Set<string>();
  const closed = new Set<string>();
  for (const item of Object.values(document.paths)) {
    for (const operation of Object.values(item) as Array<
      { requestBody?: { content?: Record<string, { schema?: unknown }> } } | undefined
    >) {
      for (const media of Object.values(operation?.requestBody?.content ?? {})) {
        for (const name of collectRefs(media.schema, schemas, new Set())) {
          // A schema reached from a strict body is validated with it (class-validator's whitelist is deep).
          (strict.has(name) ? closed : open).add(name);
        }
      }
    }
  }
  for (const name of closed) for (const inner of collectRefs(schemas[name], schemas, new Set())) closed.add(inner);
  for (const [name, schema] of Object.entries(schemas)) {
    if (!schema.properties || schema.additionalProperties !== undefined) continue;
    if (closed.has(name)) schema.additionalProperties = false;
    else if (open.has(name)) schema.additionalProperties = true;
  }
}
