/**
 * The subset of Anthropic's Messages API (`POST /v1/messages`, `anthropic-version: 2023-06-01`) wire
 * format keygate writes and reads. Everything Anthropic may add later (block types, stop reasons,
 * usage fields, stream events) is typed loosely enough to be read and skipped, never to break.
 */

/** A text block, in a request or an answer. */
export interface AnthropicTextBlock {
  type: 'text';
  text: string;
}

/** An image in a user turn: inline base64 bytes, or a URL Anthropic fetches itself. */
export interface AnthropicImageBlock {
  type: 'image';
  source: { type: 'base64'; media_type: string; data: string } | { type: 'url'; url: string };
}

/** A PDF in a user turn (OpenAI's `file` part with inline `file_data`). */
export interface AnthropicDocumentBlock {
  type: 'document';
  source: { type: 'base64'; media_type: 'application/pdf'; data: string };
  title?: string;
}

/** A tool call the model made; `input` is a JSON object, never a string. */
export interface AnthropicToolUseBlock {
  type: 'tool_use';
  id: string;
  name: string;
  input: Record<string, unknown>;
}

/** The client's answer to a tool call, sent in a user turn. */
export interface AnthropicToolResultBlock {
  type: 'tool_result';
  tool_use_id: string;
  content?: string | AnthropicTextBlock[];
}

/** Claude's thinking, signed by Anthropic: sent back unchanged in the assistant turn it came with. */
export interface AnthropicThinkingBlock {
  type: 'thinking';
  thinking: string;
  signature: string;
}

/** Thinking Anthropic's safety systems encrypted: opaque, sent back unchanged. */
export interface AnthropicRedactedThinkingBlock {
  type: 'redacted_thinking';
  data: string;
}

/** Blocks keygate sends. */
export type AnthropicRequestBlock =
  | AnthropicTextBlock
  | AnthropicImageBlock
  | AnthropicDocumentBlock
  | AnthropicToolUseBlock
  | AnthropicToolResultBlock
  | AnthropicThinkingBlock
  | AnthropicRedactedThinkingBlock;

/** One turn; `content` is a plain string when the turn is a single text. */
export interface AnthropicMessageParam {
  role: 'user' | 'assistant';
  content: string | AnthropicRequestBlock[];
}

export interface AnthropicTool {
  name: string;
  description?: string;
  /** A JSON Schema of `type: "object"`; sent as the client wrote it. */
  input_schema: Record<string, unknown>;
}

export type AnthropicToolChoice =
  | { type: 'auto'; disable_parallel_tool_use?: boolean }
  | { type: 'any'; disable_parallel_tool_use?: boolean }
  | { type: 'tool'; name: string; disable_parallel_tool_use?: boolean }
  | { type: 'none' };

/** How hard an adaptive-thinking Claude thinks (`output_config.effort`). */
export type ClaudeEffort = 'low' | 'medium' | 'high' | 'xhigh' | 'max';

/** `POST /v1/messages` request body. */
export interface MessagesRequest {
  model: string;
  /** Required by Anthropic. */
  max_tokens: number;
  messages: AnthropicMessageParam[];
  system?: string;
  temperature?: number;
  top_p?: number;
  stop_sequences?: string[];
  tools?: AnthropicTool[];
  tool_choice?: AnthropicToolChoice;
  metadata?: { user_id: string };
  /** Extended thinking: a token budget (Claude 3.7 to 4.5), or adaptive (Claude 4.6 and later; `display` the thinking's text or not). */
  thinking?: { type: 'enabled'; budget_tokens: number } | { type: 'adaptive'; display?: 'summarized' | 'omitted' };
  /** Structured outputs (`format`: the answer's text is JSON of this schema) and the effort of adaptive thinking. */
  output_config?: { format?: { type: 'json_schema'; schema: Record<string, unknown> }; effort?: ClaudeEffort };
  stream?: boolean;
}

/** Why generation stopped; a string because Anthropic adds reasons over time (`pause_turn`, `refusal`, …). */
export type AnthropicStopReason = 'end_turn' | 'max_tokens' | 'stop_sequence' | 'tool_use' | 'pause_turn' | 'refusal' | (string & {});

/** Token counts; the cache fields are absent on older answers and may be null. */
export interface AnthropicUsage {
  input_tokens?: number | null;
  cache_creation_input_tokens?: number | null;
  cache_read_input_tokens?: number | null;
  /** Of `cache_creation_input_tokens`, those written for 5 minutes and for an hour (billed at other rates). */
  cache_creation?: { ephemeral_5m_input_tokens?: number | null; ephemeral_1h_input_tokens?: number | null } | null;
  output_tokens?: number | null;
}

/** A block of an answer: text, tool calls and thinking are translated, anything else (server tools) is skipped. */
export type AnthropicResponseBlock = AnthropicTextBlock | AnthropicToolUseBlock | { type: string; [key: string]: unknown };

/** A `POST /v1/messages` answer, and the `message` of a stream's `message_start`. */
export interface AnthropicMessage {
  id: string;
  type: 'message';
  role: 'assistant';
  model: string;
  content: AnthropicResponseBlock[];
  stop_reason: AnthropicStopReason | null;
  stop_sequence?: string | null;
  usage?: AnthropicUsage;
  /** The code execution container the answer ran in (`{id, expires_at}`), when a code execution tool was used. */
  container?: unknown;
}

/** Anthropic's error envelope: the body of a non-2xx answer and the data of a stream's `error` event. */
export interface AnthropicErrorBody {
  type: 'error';
  error: { type: string; message: string };
  request_id?: string;
}

export interface MessageStartEvent {
  type: 'message_start';
  message: AnthropicMessage;
}

export interface ContentBlockStartEvent {
  type: 'content_block_start';
  index: number;
  content_block: AnthropicResponseBlock;
}

export interface ContentBlockDeltaEvent {
  type: 'content_block_delta';
  index: number;
  /** Text, tool input, thinking and signature deltas are translated; citation deltas are skipped. */
  delta:
    { type: 'text_delta'; text: string } | { type: 'input_json_delta'; partial_json: string } | { type: string; [key: string]: unknown };
}

export interface ContentBlockStopEvent {
  type: 'content_block_stop';
  index: number;
}

/** Top-level changes at the end of the turn; its usage counts are cumulative. */
export interface MessageDeltaEvent {
  type: 'message_delta';
  delta: { stop_reason?: AnthropicStopReason | null; stop_sequence?: string | null; container?: unknown };
  usage?: AnthropicUsage;
}

export interface MessageStopEvent {
  type: 'message_stop';
}

export interface PingEvent {
  type: 'ping';
}

/** The data of one event of a Messages stream; `type` is also the SSE `event:` name. */
export type AnthropicStreamEvent =
  | MessageStartEvent
  | ContentBlockStartEvent
  | ContentBlockDeltaEvent
  | ContentBlockStopEvent
  | MessageDeltaEvent
  | MessageStopEvent
  | PingEvent
  | AnthropicErrorBody;
