import type { ChatCompletionRequest } from './chat.types';

/**
 * The top-level fields of OpenAI's Chat Completions request, as its API reference lists them. A
 * request for an OpenAI model goes on with every field its client sent (an OpenAI parameter newer
 * than keygate works, and one OpenAI does not know is OpenAI's to refuse); this list is only for a
 * request written for another provider's model that falls back to an OpenAI model (see
 * {@link openAiFieldsOnly}).
 */
export const OPENAI_CHAT_FIELDS: ReadonlySet<string> = new Set([
  'model',
  'messages',
  'audio',
  'frequency_penalty',
  'function_call',
  'functions',
  'logit_bias',
  'logprobs',
  'max_completion_tokens',
  'max_tokens',
  'metadata',
  'modalities',
  'n',
  'parallel_tool_calls',
  'prediction',
  'presence_penalty',
  'prompt_cache_key',
  'prompt_cache_retention',
  'reasoning_effort',
  'response_format',
  'safety_identifier',
  'seed',
  'service_tier',
  'stop',
  'store',
  'stream',
  'stream_options',
  'temperature',
  'tool_choice',
  'tools',
  'top_logprobs',
  'top_p',
  'user',
  'verbosity',
  'web_search_options',
]);

/**
 * A chat request for a Claude or Gemini model, as its OpenAI fallback takes it: the fields of
 * OpenAI's Chat Completions API ({@link OPENAI_CHAT_FIELDS}), as sent, and nothing else. The Claude
 * and Gemini translations read OpenAI's fields and leave out any other (a `top_k`, Google's
 * `extra_body`), while OpenAI refuses a field it does not know with a 400, which is not retried:
 * the fallback would fail over a field the requested model never saw. Returns `body` itself when it
 * has no other field.
 */
export function openAiFieldsOnly(body: ChatCompletionRequest): ChatCompletionRequest {
  const keys = Object.keys(body);
  if (keys.every((key) => OPENAI_CHAT_FIELDS.has(key))) return body;
  const kept: Record<string, unknown> = {};
  for (const key of keys) if (OPENAI_CHAT_FIELDS.has(key)) kept[key] = body[key];
  return kept as ChatCompletionRequest;
}

/**
 * Whether an OpenAI model takes `reasoning_effort`: not the GPT-3.5 and GPT-4 families (`gpt-4o`,
 * `gpt-4.1`, `chatgpt-4o-latest`), which answer "Unrecognized request argument supplied:
 * reasoning_effort", nor the `-chat` variants of the GPT-5 models, which refuse it or take one value
 * only. Any other name (the o-series, GPT-5 and later, a model keygate has not heard of) is taken
 * to reason: its refusal, if it is one, is OpenAI's to send.
 */
export function openAiReasons(model: string): boolean {
  return !/^(gpt-3\.5|gpt-4|chatgpt-)/.test(model) && !/-chat(-|$)/.test(model);
}
