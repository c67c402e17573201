import type { Usage } from './chat.types';

/** What a translated completion is labelled with; supplied by the caller so translation stays deterministic. */
export interface CompletionMeta {
  /** Used as the completion id when the provider sent none. */
  fallbackId: string;
  /** Unix seconds. */
  created: number;
  /** The model the client asked for (OpenAI echoes the request's model). */
  model: string;
  /** Choices requested (`n`), for answers blocked before any candidate was generated. */
  n?: number;
}

/** OpenAI's `finish_reason` values keygate produces when it translates another provider's answer. */
export type OpenAiFinishReason = 'stop' | 'length' | 'tool_calls' | 'content_filter';

/** OpenAI usage, with the cached-prompt and reasoning details when the provider reported them. */
export interface OpenAiUsage extends Usage {
  prompt_tokens_details?: { cached_tokens: number };
  completion_tokens_details?: { reasoning_tokens: number };
}

/** An OpenAI tool call. Gemini's carries its thought signature in `extra_content` (Google's OpenAI layer does the same). */
export interface OpenAiToolCall {
  index?: number;
  id: string;
  type: 'function';
  function: { name: string; arguments: string };
  extra_content?: { google: { thought_signature: string } };
}

/** Claude's thinking as an answer carries it and the client sends it back: signed, or redacted (opaque). */
export type ThinkingBlock = { type: 'thinking'; thinking: string; signature: string } | { type: 'redacted_thinking'; data: string };

/** An OpenAI `chat.completion` object, as translated from another provider's answer. */
export interface OpenAiChatCompletion {
  id: string;
  object: 'chat.completion';
  created: number;
  model: string;
  choices: Array<{
    index: number;
    message: {
      role: 'assistant';
      content: string | null;
      refusal: null;
      tool_calls?: OpenAiToolCall[];
      /** Claude's thinking, as text (LiteLLM's and DeepSeek's field). */
      reasoning_content?: string;
      /** Claude's signed thinking blocks, to send back with the message (LiteLLM's field). */
      thinking_blocks?: ThinkingBlock[];
    };
    logprobs: null;
    finish_reason: OpenAiFinishReason;
  }>;
  usage?: OpenAiUsage;
}
