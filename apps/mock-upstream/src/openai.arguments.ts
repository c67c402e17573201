import { isRecord } from './mock.content';

/**
 * The top-level request arguments each OpenAI route takes, as OpenAI's API reference lists them
 * (its openai-node SDK's `…CreateParams`, generated from that reference). OpenAI refuses any other
 * with a 400, so a gateway that forwards a field of its own, another provider's, or a typo fails
 * against the mock as it would against OpenAI. A new OpenAI argument is one line here.
 */

/** `POST /v1/chat/completions` (`ChatCompletionCreateParams`). */
export const CHAT_COMPLETION_ARGUMENTS: ReadonlySet<string> = new Set([
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
 * `POST /v1/responses` (`ResponseCreateParams`), and `max_tool_calls`, which the API reference
 * documents though the SDK's type leaves it out.
 */
export const RESPONSES_ARGUMENTS: ReadonlySet<string> = new Set([
  'model',
  'input',
  'background',
  'context_management',
  'conversation',
  'include',
  'instructions',
  'max_output_tokens',
  'max_tool_calls',
  'metadata',
  'moderation',
  'parallel_tool_calls',
  'previous_response_id',
  'prompt',
  'prompt_cache_key',
  'prompt_cache_retention',
  'reasoning',
  'safety_identifier',
  'service_tier',
  'store',
  'stream',
  'stream_options',
  'temperature',
  'text',
  'tool_choice',
  'tools',
  'top_logprobs',
  'top_p',
  'truncation',
  'user',
]);

/** `POST /v1/responses/input_tokens` (`InputTokenCountParams`): the fields of a create request that shape its input. */
export const INPUT_TOKENS_ARGUMENTS: ReadonlySet<string> = new Set([
  'model',
  'input',
  'conversation',
  'instructions',
  'parallel_tool_calls',
  'previous_response_id',
  'reasoning',
  'text',
  'tool_choice',
  'tools',
  'truncation',
]);

/** `POST /v1/responses/compact` (`ResponseCompactParams`). */
export const COMPACT_ARGUMENTS: ReadonlySet<string> = new Set([
  'model',
  'input',
  'instructions',
  'previous_response_id',
  'prompt_cache_key',
  'prompt_cache_options',
  'prompt_cache_retention',
  'service_tier',
]);

/** `POST /v1/embeddings` (`EmbeddingCreateParams`). */
export const EMBEDDINGS_ARGUMENTS: ReadonlySet<string> = new Set(['model', 'input', 'dimensions', 'encoding_format', 'user']);

/** The body's top-level keys the route does not take, in the body's order (a null value counts: the key is still sent). */
export function unknownArguments(body: unknown, known: ReadonlySet<string>): string[] {
  if (!isRecord(body)) return [];
  const unknown: string[] = [];
  for (const key of Object.keys(body)) if (!known.has(key)) unknown.push(key);
  return unknown;
}

/**
 * The arguments a Chat Completions model does not take though the route does: `reasoning_effort` on
 * the models that do not reason (the GPT-3.5 and GPT-4 families, `chatgpt-4o-latest`, GPT-5's `-chat`
 * variants), which OpenAI answers as it answers an unknown argument. A null value is not sent.
 */
export function argumentsTheModelRefuses(body: Record<string, unknown>, model: string): string[] {
  const reasons = !/^(gpt-3\.5|gpt-4|chatgpt-)/.test(model) && !/-chat(-|$)/.test(model);
  return !reasons && body.reasoning_effort !== undefined && body.reasoning_effort !== null ? ['reasoning_effort'] : [];
}
