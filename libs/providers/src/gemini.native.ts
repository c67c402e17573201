import type { EventSourceMessage } from 'eventsource-parser';
import { GatewayError } from '@keygate/errors';
import type { StreamEvent, Usage } from './chat.types';
import { geminiStreamError, geminiThinks, geminiThinksByBudget, nextUsageMetadata, toUsage } from './gemini.translate';
import type { GeminiErrorBody, GeminiPart, GeminiUsageMetadata, GenerateContentResponse } from './gemini.types';
import { isRecord } from './translate.util';
import { parseUpstreamObject } from './upstream-body.util';
import { UpstreamError } from './upstream.error';

const PROVIDER = 'gemini';

/**
 * Gemini's own `streamGenerateContent?alt=sse` stream passed on event by event (keygate's
 * `/v1beta/models/{model}:streamGenerateContent`): every `data:` event goes out as Google sent it;
 * keygate only reads it.
 * - `usageMetadata` carries running totals (the last one wins, save its counts that are not counts;
 *   nothing is summed): each is the stream's running usage, and the one of the event that completes
 *   the answer its final usage (none when its prompt or candidates count is not a count);
 * - the text of parts (thoughts and function calls included) is kept, to estimate an answer cut short;
 * - an error event (`{"error": {code, message, status}}`) throws `UpstreamError('stream_error')`,
 *   with its code when Google would send it as an HTTP 429 or 5xx (retried like it before any content);
 * - the answer is complete once every candidate asked for (`generationConfig.candidateCount`) has
 *   its `finishReason` (or the prompt was blocked) and an event carried the usage; a body that ends
 *   before every candidate finished is a truncated answer (one that finished without usage is not).
 */
export class GeminiNativeStream {
  private readonly finished = new Set<number>();
  private blocked = false;
  private usage: GeminiUsageMetadata | undefined;
  private complete = false;

  /** @param candidates how many candidates the request asked for (`generationConfig.candidateCount`, default 1). */
  constructor(private readonly candidates = 1) {}

  /** Whether the answer is complete: every candidate finished and the usage read (later events still pass). */
  get stopped(): boolean {
    return this.complete;
  }

  /** The event to pass on for one upstream `data:` event. */
  push(message: EventSourceMessage): StreamEvent {
    const event = parseUpstreamObject<GenerateContentResponse & GeminiErrorBody>(message.data, PROVIDER, 'stream chunk');
    if (isRecord(event.error)) throw geminiStreamError(event.error);
    // Data that came on several `data:` lines is joined with newlines by the parser; written back
    // as one line, since a newline would end the field on the client's side.
    const out: StreamEvent = { data: message.data.includes('\n') ? JSON.stringify(event) : message.data };
    const text = generateContentText(event);
    if (text !== '') out.text = text;
    if (event.promptFeedback?.blockReason) this.blocked = true;
    (Array.isArray(event.candidates) ? event.candidates : []).forEach((candidate, k) => {
      if (isRecord(candidate) && typeof candidate.finishReason === 'string')
        this.finished.add(typeof candidate.index === 'number' ? candidate.index : k);
    });
    if (isRecord(event.usageMetadata)) {
      this.usage = nextUsageMetadata(this.usage, event.usageMetadata);
      const usage = toUsage(this.usage);
      if (usage) out.runningUsage = usage;
      if (this.blocked || this.finished.size >= this.candidates) {
        this.complete = true;
        if (usage) out.usage = usage;
      }
    }
    return out;
  }

  /**
   * Checks the answer is complete; a clean close before it is a truncated answer. One whose every
   * candidate finished without any usage (a Gemini-compatible host that reports none) is complete
   * too: keygate's estimate bills it.
   */
  end(): void {
    if (this.complete || this.blocked || this.finished.size >= this.candidates) return;
    throw new UpstreamError('connection_lost', PROVIDER, 'stream ended before the answer was complete');
  }
}

/**
 * How many candidates a GenerateContentRequest asks for (`generationConfig.candidateCount`, 1 when
 * absent or not a count): each is bounded by `maxOutputTokens`, so the reservation and the stream's
 * end count them all.
 */
export function requestedCandidates(body: { generationConfig?: unknown }): number {
  const count = isRecord(body.generationConfig) ? body.generationConfig.candidateCount : undefined;
  return typeof count === 'number' && Number.isInteger(count) && count > 1 ? count : 1;
}

/** The usage of a whole `generateContent` answer, in OpenAI's shape; null when it has none. */
export function generateContentUsage(response: Partial<GenerateContentResponse>): Usage | null {
  return isRecord(response.usageMetadata) ? toUsage(response.usageMetadata) : null;
}

/** The text of an answer's parts (text, thoughts, function calls), to estimate its tokens. */
export function generateContentText(response: Partial<GenerateContentResponse>): string {
  let text = '';
  for (const candidate of Array.isArray(response.candidates) ? response.candidates : []) {
    const parts: unknown = isRecord(candidate) && isRecord(candidate.content) ? candidate.content.parts : undefined;
    for (const part of Array.isArray(parts) ? (parts as GeminiPart[]) : []) text += partText(part);
  }
  return text;
}

function partText(part: GeminiPart): string {
  if (!isRecord(part)) return '';
  if (typeof part.text === 'string') return part.text;
  if (isRecord(part.functionCall)) return JSON.stringify(part.functionCall.args ?? {});
  return '';
}

/**
 * A `generateContent` request (keygate's Gemini routes, passed through) for a fallback model, whose
 * thinking (`generationConfig.thinkingConfig`) the requested model was asked for: unchanged where
 * the fallback thinks; for one that does not (Gemini 1.x and 2.0, which refuse it) without it, as
 * chat answers a fallback without its `reasoning_effort`; a GatewayError (the fallback is skipped)
 * for a `thinkingLevel` on Gemini 2.5, which takes a budget only.
 */
export function generateContentForFallback<T extends { generationConfig?: unknown }>(body: T, model: string): T {
  const config = body.generationConfig;
  if (!isRecord(config)) return body;
  const key = config.thinkingConfig !== undefined ? 'thinkingConfig' : config.thinking_config !== undefined ? 'thinking_config' : undefined;
  if (key === undefined) return body;
  if (!geminiThinks(model)) {
    const { [key]: _thinking, ...rest } = config;
    return { ...body, generationConfig: rest };
  }
  const thinking = config[key];
  const level = isRecord(thinking) ? (thinking.thinkingLevel ?? thinking.thinking_level) : undefined;
  if (level !== undefined && geminiThinksByBudget(model))
    throw new GatewayError('unsupported_parameter', `${model} takes a thinkingBudget, not a thinkingLevel`, {
      param: `generationConfig.${key}`,
    });
  return body;
}
