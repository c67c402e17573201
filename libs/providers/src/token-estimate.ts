import type { ChatCompletionRequest } from './chat.types';

type Encoder = { countTokens(text: string): number };
let encoder: Encoder | undefined;

/**
 * Loads the tokenizer on first use. QuotaService loads it at boot (the limits module is always
 * there), since loading it on a request stalls the event loop for ~250 ms; its tables cost ~70 MB.
 */
function tokenizer(): Encoder {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  encoder ??= require('gpt-tokenizer') as Encoder;
  return encoder;
}

/** Counts the tokens of a text with OpenAI's o200k tokenizer. */
export function countTokens(text: string): number {
  return text ? tokenizer().countTokens(text) : 0;
}

/**
 * What one non-text content part (an image, audio, a file) is reserved at: above what any of the
 * three providers charges for one image (OpenAI's largest high-detail tiling ≈1 450, Anthropic's
 * ≈1 600, Gemini's 258); settling brings the day's total back to what was really used.
 */
export const NON_TEXT_PART_TOKENS = 1_600;

/**
 * Estimates a request's prompt tokens: the text of every message plus OpenAI's per-message framing,
 * the tool calls in the history, the tool and function definitions and a response_format schema
 * (providers bill them as prompt), and a flat {@link NON_TEXT_PART_TOKENS} per image, audio or file part.
 */
export function estimatePromptTokens(request: Pick<ChatCompletionRequest, 'messages'> & Partial<ChatCompletionRequest>): number {
  let total = 3;
  for (const m of request.messages) {
    total += 3;
    if (typeof m.content === 'string') total += countTokens(m.content);
    else if (Array.isArray(m.content)) {
      for (const part of m.content) {
        const text = typeof part.text === 'string' ? part.text : typeof part.refusal === 'string' ? part.refusal : undefined;
        total += text === undefined ? NON_TEXT_PART_TOKENS : countTokens(text);
      }
    }
    if (m.tool_calls) total += countTokens(JSON.stringify(m.tool_calls));
  }
  for (const field of ['tools', 'functions', 'response_format'] as const) {
    const value = request[field];
    if (value !== undefined && value !== null) total += countTokens(JSON.stringify(value));
  }
  return total;
}
