/**
 * The subset of OpenAI's wire types the mock produces. Typing the responses
 * lets the compiler catch shape drift in the handler, and the specs parse
 * responses with the same types.
 */

export interface OpenAIErrorBody {
  error: { message: string; type: string; param: string | null; code: string | null };
}

export interface ChatUsage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
  prompt_tokens_details: { cached_tokens: number; audio_tokens: number };
  completion_tokens_details: {
    reasoning_tokens: number;
    audio_tokens: number;
    accepted_prediction_tokens: number;
    rejected_prediction_tokens: number;
  };
}

export type ChatFinishReason = 'stop' | 'length' | 'tool_calls';

export interface ChatToolCall {
  id: string;
  type: 'function';
  function: { name: string; arguments: string };
}

export interface ChatCompletion {
  id: string;
  object: 'chat.completion';
  created: number;
  model: string;
  choices: Array<{
    index: number;
    message: {
      role: 'assistant';
      content: string | null;
      tool_calls?: ChatToolCall[];
      refusal: null;
      annotations: unknown[];
    };
    logprobs: null;
    finish_reason: ChatFinishReason;
  }>;
  /** Absent from hosts that do not report usage. */
  usage?: ChatUsage;
  service_tier: string;
  system_fingerprint: string;
}

/** Streamed tool call fragment: the first one for an index carries id/type/name. */
export interface ChatToolCallDelta {
  index: number;
  id?: string;
  type?: 'function';
  function?: { name?: string; arguments?: string };
}

export interface ChatDelta {
  role?: 'assistant';
  content?: string | null;
  refusal?: null;
  tool_calls?: ChatToolCallDelta[];
}

export interface ChatCompletionChunk {
  id: string;
  object: 'chat.completion.chunk';
  created: number;
  model: string;
  service_tier: string;
  system_fingerprint: string;
  choices: Array<{ index: number; delta: ChatDelta; logprobs: null; finish_reason: ChatFinishReason | null }>;
  /** Present only with `stream_options.include_usage`: null except on the final usage chunk. */
  usage?: ChatUsage | null;
}

export interface EmbeddingList {
  object: 'list';
  data: Array<{ object: 'embedding'; index: number; embedding: number[] | string }>;
  model: string;
  usage: { prompt_tokens: number; total_tokens: number };
}

export interface ModelList {
  object: 'list';
  data: Array<{ id: string; object: 'model'; created: number; owned_by: string }>;
}
