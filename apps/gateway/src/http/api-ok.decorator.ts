import { applyDecorators, type Type } from '@nestjs/common';
import { ApiExtraModels, ApiOkResponse, getSchemaPath } from '@nestjs/swagger';

/**
 * The 200 of a route that answers JSON, server-sent events, or either (`stream: true`), each under
 * its own media type: the JSON object's schema for `application/json` and, for
 * `text/event-stream`, the stream as the text it is (a generated client reads it as a string, and an
 * event is no JSON object of the route's). Used instead of `@ApiProduces`, which would give the
 * event stream the JSON object's schema and every error answer (always JSON) the event stream's
 * media type.
 */
export function ApiOkAnswer(options: {
  description: string;
  json?: Type<unknown>;
  /** The event stream: what it is, and an example of it (see stream-examples.ts). */
  stream?: { description: string; example: string };
}): MethodDecorator & ClassDecorator {
  const content: Record<string, { schema: Record<string, unknown>; example?: string }> = {};
  if (options.json) content['application/json'] = { schema: { $ref: getSchemaPath(options.json) } };
  if (options.stream)
    content['text/event-stream'] = { schema: { type: 'string', description: options.stream.description }, example: options.stream.example };
  return applyDecorators(
    ...(options.json ? [ApiExtraModels(options.json)] : []),
    ApiOkResponse({ description: options.description, content }),
  );
}
