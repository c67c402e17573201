import type { OpenAPIObject } from '@nestjs/swagger';

/** The request id header as the document declares it on every answer. */
const REQUEST_ID_HEADER = {
  description:
    'keygate’s id of this request (the client’s own `X-Request-Id` when it sent a sane one): the audit record’s `requestId`, ' +
    'what to quote when reporting a problem',
  required: true,
  schema: { type: 'string' },
};

/**
 * Declares `X-Request-Id` on every answer of every operation: keygate sets it on each response
 * before any route runs (errors, streams and refusals too), and a generated client or Swagger UI
 * shows only the headers a response declares.
 */
export function documentRequestIdHeader(document: OpenAPIObject): void {
  for (const item of Object.values(document.paths)) {
    for (const operation of Object.values(item) as Array<
      { responses?: Record<string, { headers?: Record<string, unknown> }> } | undefined
    >) {
      for (const response of Object.values(operation?.responses ?? {})) {
        if (typeof response !== 'object' || response === null) continue;
        response.headers = { 'X-Request-Id': REQUEST_ID_HEADER, ...response.headers };
      }
    }
  }
}
