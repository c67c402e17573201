import { GatewayError } from '@keygate/errors';

/** A JSON object of unknown shape. */
export type Json = Record<string, unknown>;

/** True for a plain JSON object (not null, not an array). */
export function isRecord(value: unknown): value is Json {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/**
 * The members every `chat.completion.chunk` of a translated stream shares (`id`, `object`, `created`,
 * `model`), as {@link chunkText} takes them: the JSON object they open, serialised once a stream.
 */
export function chunkHead(id: string | undefined, created: number, model: string): string {
  return JSON.stringify({ id, object: 'chat.completion.chunk', created, model }).slice(0, -1);
}

/**
 * A translated stream's chunk of one choice: exactly what `JSON.stringify` writes for
 * `{ id, object, created, model, choices: [{ index, delta, logprobs: null, finish_reason }] }` (and
 * `usage: null` last with `nullUsage`), its shared members given by {@link chunkHead}. A long
 * stream's thousands of chunks each serialised them again.
 */
export function chunkText(head: string, index: number, delta: Json, finish: string | null, nullUsage: boolean): string {
  const choice = `{"index":${JSON.stringify(index)},"delta":${JSON.stringify(delta)},"logprobs":null,"finish_reason":${JSON.stringify(finish)}}`;
  return `${head},"choices":[${choice}]${nullUsage ? ',"usage":null' : ''}}`;
}

/** 400 `unsupported_parameter`: a parameter this provider cannot honour, named in `param`. */
export function unsupportedParameter(provider: string, param: string, why: string): GatewayError {
  return new GatewayError('unsupported_parameter', `${param} is not supported by ${provider} models: ${why}`, { param });
}

/** 400 `invalid_request` naming the offending parameter. */
export function invalidParameter(param: string, message: string): GatewayError {
  return new GatewayError('invalid_request', message, { param });
}

/** OpenAI's reasoning efforts, least to most. */
export const REASONING_EFFORTS = ['none', 'minimal', 'low', 'medium', 'high', 'xhigh'] as const;
export type ReasoningEffort = (typeof REASONING_EFFORTS)[number];

/** A request's `reasoning_effort`: undefined when absent or null, else one of OpenAI's efforts (400 otherwise). */
export function reasoningEffort(value: unknown): ReasoningEffort | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'string' || !(REASONING_EFFORTS as readonly string[]).includes(value))
    throw invalidParameter('reasoning_effort', `reasoning_effort must be one of ${REASONING_EFFORTS.join(', ')}`);
  return value as ReasoningEffort;
}

/**
 * Splits `data:<media type>;base64,<payload>` (with indexOf, not a regex: the payload may be
 * megabytes long). The media type is lowercased, and `image/jpg`, which clients write but no
 * registry has, becomes `image/jpeg` (Anthropic refuses the first; Gemini reads it as unknown).
 */
export function splitDataUrl(url: string, param: string): { mediaType: string; data: string } {
  const comma = url.indexOf(',');
  const meta = comma === -1 ? '' : url.slice(5, comma);
  if (!url.startsWith('data:') || !meta.endsWith(';base64')) throw invalidParameter(param, `${param} must be a base64 data URL`);
  const mediaType = meta.slice(0, meta.indexOf(';')).toLowerCase();
  if (mediaType === '') throw invalidParameter(param, `${param} must name its media type`);
  return { mediaType: mediaType === 'image/jpg' ? 'image/jpeg' : mediaType, data: url.slice(comma + 1) };
}
