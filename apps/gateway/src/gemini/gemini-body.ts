import { GatewayError } from '@keygate/errors';

/**
 * Refuses a Content (`at` names it: `contents[0]`) whose `parts` is there and not a list, before
 * anything is counted. Google's JSON front end takes one Part for the repeated field, but keygate
 * reads parts as a list (the token estimate, the whole bill of an embedding): a Part sent bare was
 * estimated as nothing, so its embedding was billed 0 tokens and its prompt reserved at nothing.
 * Refused rather than read as a list of one, so nothing that reads parts has a second shape to know.
 */
export function checkParts(content: unknown, at: string): void {
  if (typeof content !== 'object' || content === null) return;
  const parts = (content as Record<string, unknown>).parts;
  if (parts === undefined || parts === null || Array.isArray(parts)) return;
  throw new GatewayError('invalid_request', `${at}.parts must be a list of Part objects ([{"text": "…"}]), not one Part`, {
    param: `${at}.parts`,
  });
}

/** The Contents of a `generateContent` body keygate reads: each of `contents`, and the system instruction in either spelling Google's parser takes. */
export function checkGenerateContentParts(body: { contents?: unknown; systemInstruction?: unknown; system_instruction?: unknown }): void {
  if (Array.isArray(body.contents)) (body.contents as unknown[]).forEach((content, i) => checkParts(content, `contents[${i}]`));
  checkParts(body.systemInstruction, 'systemInstruction');
  checkParts(body.system_instruction, 'system_instruction');
}

/**
 * Refuses a body, or a request within one (`at`: `requests[0].`, `generateContentRequest.`), whose
 * `model` names another model than the path's (`models/{model}` and the bare id both name it, and
 * none is the path's), before anything is counted. The body goes to Google as sent, and Google may
 * serve the model it names: one the product's routing, policy and limits never saw.
 */
export function checkBodyModel(body: Record<string, unknown>, model: string, at = ''): void {
  const named = body.model;
  if (named === undefined || named === null || named === model || named === `models/${model}`) return;
  const shown = typeof named === 'string' ? named.slice(0, 128) : typeof named;
  throw new GatewayError(
    'invalid_request',
    `${at}model is ${shown}: it must name the model of the path (models/${model}), or be left out`,
    { param: `${at}model` },
  );
}

/**
 * Whether a `generateContent` body resumes a long-decode answer (Google's `continuationToken`, which
 * `@google/genai` sends by itself after a `CONTINUATION` finish, in either spelling its parser takes):
 * the token resumes that model's generation, so no other model may take the request.
 */
export function continuesGeneration(body: Record<string, unknown>): boolean {
  const token = body.continuationToken ?? body.continuation_token;
  return token !== undefined && token !== null;
}
