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
