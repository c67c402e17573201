/**
 * The subset of Anthropic's Messages API wire types the mock produces, shared
 * by the handler (compile-time shape checks) and the specs (typed parsing).
 */

export interface AnthropicErrorBody {
  type: 'error';
  error: { type: string; message: string; details?: { error_code: string } };
  request_id?: string;
}

export interface AnthropicTextBlock {
  type: 'text';
  text: string;
}

export interface AnthropicToolUseBlock {
  type: 'tool_use';
  id: string;
  name: string;
  input: Record<string, unknown>;
}

/** Claude's reasoning; `signature` lets the API check the text comes back unaltered in a later turn. */
export interface AnthropicThinkingBlock {
  type: 'thinking';
  thinking: string;
  signature: string;
}

/** Reasoning the API withholds: `data` is opaque, only to be sent back as it came. */
export interface AnthropicRedactedThinkingBlock {
  type: 'redacted_thinking';
  data: string;
}

export type AnthropicContentBlock = AnthropicThinkingBlock | AnthropicRedactedThinkingBlock | AnthropicTextBlock | AnthropicToolUseBlock;

export type AnthropicStopReason = 'end_turn' | 'max_tokens' | 'tool_use';

export interface AnthropicUsage {
  input_tokens: number;
  cache_creation_input_tokens: number;
  cache_read_input_tokens: number;
  cache_creation: { ephemeral_5m_input_tokens: number; ephemeral_1h_input_tokens: number };
  output_tokens: number;
  service_tier: string;
}

export interface AnthropicMessage {
  id: string;
  type: 'message';
  role: 'assistant';
  model: string;
  content: AnthropicContentBlock[];
  stop_reason: AnthropicStopReason | null;
  stop_sequence: null;
  usage: AnthropicUsage;
  /** The code execution container the answer ran in (a code execution tool was declared). */
  container?: AnthropicContainer | null;
}

/** A code execution container, reusable by id for its lifetime (`container` on a later request). */
export interface AnthropicContainer {
  id: string;
  expires_at: string;
}

export interface MessageStartEvent {
  type: 'message_start';
  message: AnthropicMessage;
}
export interface ContentBlockStartEvent {
  type: 'content_block_start';
  index: number;
  content_block: AnthropicContentBlock;
}
export interface PingEvent {
  type: 'ping';
}
export interface ContentBlockDeltaEvent {
  type: 'content_block_delta';
  index: number;
  delta:
    | { type: 'text_delta'; text: string }
    | { type: 'input_json_delta'; partial_json: string }
    | { type: 'thinking_delta'; thinking: string }
    | { type: 'signature_delta'; signature: string };
}
export interface ContentBlockStopEvent {
  type: 'content_block_stop';
  index: number;
}
export interface MessageDeltaEvent {
  type: 'message_delta';
  delta: { stop_reason: AnthropicStopReason; stop_sequence: null; container?: AnthropicContainer | null };
  usage: { output_tokens: number };
}
export interface MessageStopEvent {
  type: 'message_stop';
}

/** Every event of a Messages stream; `type` doubles as the SSE `event:` name. */
export type AnthropicStreamEvent =
  | MessageStartEvent
  | ContentBlockStartEvent
  | PingEvent
  | ContentBlockDeltaEvent
  | ContentBlockStopEvent
  | MessageDeltaEvent
  | MessageStopEvent
  | AnthropicErrorBody;
