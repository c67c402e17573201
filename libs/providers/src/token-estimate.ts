import type { ChatMessage } from './chat.types';

type Encoder = { countTokens(text: string): number };
let encoder: Encoder | undefined;

/**
 * Loads the tokenizer on first use: its tables cost tens of MB, so a gateway that never estimates
 * (no token quotas) never pays for them. With quotas on, QuotaService loads it at boot, since
 * loading it on a request stalls the event loop for ~250 ms.
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

/** Estimates a prompt's tokens: the text of every message plus OpenAI's per-message framing. */
export function estimatePromptTokens(messages: readonly ChatMessage[]): number {
  let total = 3;
  for (const m of messages) {
    total += 3;
    if (typeof m.content === 'string') total += countTokens(m.content);
    else if (Array.isArray(m.content)) {
      for (const part of m.content) if (typeof part.text === 'string') total += countTokens(part.text);
    }
    if (m.tool_calls) total += countTokens(JSON.stringify(m.tool_calls));
  }
  return total;
}
