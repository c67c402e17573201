/**
 * The subset of OpenAI's Responses API wire types (`POST /v1/responses`) the
 * mock produces, after the official SDK's `resources/responses` definitions.
 */

export interface ResponseUsage {
  input_tokens: number;
  input_tokens_details: { cached_tokens: number };
  output_tokens: number;
  output_tokens_details: { reasoning_tokens: number };
  total_tokens: number;
}

export type ResponseItemStatus = 'in_progress' | 'completed' | 'incomplete';

export interface ResponseOutputText {
  type: 'output_text';
  annotations: unknown[];
  logprobs: unknown[];
  text: string;
}

export interface ResponseOutputMessage {
  id: string;
  type: 'message';
  status: ResponseItemStatus;
  content: ResponseOutputText[];
  role: 'assistant';
}

export interface ResponseFunctionCall {
  id: string;
  type: 'function_call';
  status: ResponseItemStatus;
  arguments: string;
  call_id: string;
  name: string;
}

/** A code interpreter run, in the container it ran in (reusable by id: a later tool's `container`). */
export interface ResponseCodeInterpreterCall {
  id: string;
  type: 'code_interpreter_call';
  status: ResponseItemStatus;
  code: string;
  container_id: string;
  outputs: null;
}

export type ResponseOutputItem = ResponseOutputMessage | ResponseFunctionCall | ResponseCodeInterpreterCall;

export type ResponseStatus = 'queued' | 'in_progress' | 'completed' | 'incomplete' | 'failed' | 'cancelled';

export interface ResponseObject {
  id: string;
  object: 'response';
  created_at: number;
  status: ResponseStatus;
  background: boolean;
  /** Set on a failed response (`status: 'failed'`). */
  error: { code: string; message: string } | null;
  incomplete_details: { reason: 'max_output_tokens' } | null;
  instructions: string | null;
  max_output_tokens: number | null;
  max_tool_calls: null;
  model: string;
  output: ResponseOutputItem[];
  parallel_tool_calls: boolean;
  previous_response_id: string | null;
  prompt_cache_key: null;
  reasoning: { effort: null; summary: null };
  safety_identifier: null;
  service_tier: string;
  store: boolean;
  temperature: number;
  /** The request's `text` configuration, as OpenAI echoes it (`format` defaults to text, `verbosity` to medium). */
  text: { format: Record<string, unknown>; verbosity: string };
  tool_choice: unknown;
  tools: unknown[];
  top_logprobs: number;
  top_p: number;
  truncation: 'disabled';
  /** null while in progress; absent with `no_usage`. */
  usage?: ResponseUsage | null;
  user: null;
  metadata: Record<string, unknown>;
}

/**
 * An input item as the stored-response routes give it back: as the request sent it, plus the `id`
 * OpenAI gives each one (a string `input` is stored as one user message item).
 */
export interface ResponseInputItem {
  id: string;
  type?: string;
  [key: string]: unknown;
}

/** `GET /v1/responses/{id}/input_items`: one page of a response's input items. */
export interface ResponseInputItemList {
  object: 'list';
  data: ResponseInputItem[];
  /** null on an empty page. */
  first_id: string | null;
  last_id: string | null;
  has_more: boolean;
}

/** `DELETE /v1/responses/{id}`. */
export interface ResponseDeleted {
  id: string;
  object: 'response';
  deleted: true;
}

/** `POST /v1/responses/input_tokens`: the input a create request with the same fields would be billed. */
export interface ResponseInputTokens {
  object: 'response.input_tokens';
  input_tokens: number;
}

/** A user message of a compacted conversation, as `POST /v1/responses/compact` lists it. */
export interface CompactedUserMessage {
  id: string;
  type: 'message';
  status: 'completed';
  content: Array<{ type: 'input_text'; text: string }>;
  role: 'user';
}

/** The opaque item that stands for the rest of a compacted conversation. */
export interface CompactionItem {
  id: string;
  type: 'compaction';
  encrypted_content: string;
}

/** `POST /v1/responses/compact`: the conversation's user messages, then one compaction item. */
export interface ResponseCompaction {
  id: string;
  object: 'response.compaction';
  created_at: number;
  output: Array<CompactedUserMessage | CompactionItem>;
  /** Absent with `no_usage`. */
  usage?: ResponseUsage;
}

/** One event type per member (a conditional type distributes over the union), so `type` discriminates. */
type LifecycleEvent<T extends string> = T extends unknown ? { type: T; response: ResponseObject } : never;
type OutputItemEvent<T extends string> = T extends unknown ? { type: T; output_index: number; item: ResponseOutputItem } : never;
type ContentPartEvent<T extends string> = T extends unknown
  ? { type: T; item_id: string; output_index: number; content_index: number; part: ResponseOutputText }
  : never;

/** A stream event as built by the handler; the writer numbers it. */
export type ResponseStreamEventPayload =
  | LifecycleEvent<'response.created' | 'response.in_progress' | 'response.completed' | 'response.incomplete'>
  | OutputItemEvent<'response.output_item.added' | 'response.output_item.done'>
  | ContentPartEvent<'response.content_part.added' | 'response.content_part.done'>
  | {
      type: 'response.output_text.delta';
      item_id: string;
      output_index: number;
      content_index: number;
      delta: string;
      logprobs: unknown[];
    }
  | {
      type: 'response.output_text.done';
      item_id: string;
      output_index: number;
      content_index: number;
      text: string;
      logprobs: unknown[];
    }
  | { type: 'response.function_call_arguments.delta'; item_id: string; output_index: number; delta: string }
  | { type: 'response.function_call_arguments.done'; item_id: string; output_index: number; arguments: string }
  | { type: 'error'; code: string | null; message: string; param: string | null };

type Numbered<E> = E extends unknown ? E & { sequence_number: number } : never;

/** Every event carries a `sequence_number` that increases by one from 0 within a stream. */
export type ResponseStreamEvent = Numbered<ResponseStreamEventPayload>;

export type ResponseStreamEventType = ResponseStreamEvent['type'];

/** The event of one type, e.g. `ResponseStreamEventOf<'response.completed'>`. */
export type ResponseStreamEventOf<T extends ResponseStreamEventType> = Extract<ResponseStreamEvent, { type: T }>;
