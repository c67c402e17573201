/**
 * Prompt tokens written to the provider's prompt cache (Anthropic's `cache_creation_input_tokens`),
 * billed above plain input. OpenAI's usage has no such field, so it rides on a symbol key, which
 * `JSON.stringify` leaves out of every answer sent to a client; set it with {@link withCacheWrites}.
 */
export const CACHE_WRITE_TOKENS: unique symbol = Symbol('keygate.cacheWriteTokens');

/** Of {@link CACHE_WRITE_TOKENS}, those written for an hour (Anthropic's `ephemeral_1h_input_tokens`, billed above 5-minute writes). */
export const CACHE_WRITE_1H_TOKENS: unique symbol = Symbol('keygate.cacheWrite1hTokens');

/**
 * `value` when it is a token count (a whole number, 0 or more, and at most {@link MAX_TOKEN_COUNT}),
 * else null: an OpenAI-compatible host's usage is passed on as it wrote it, so a count may be a
 * string, negative or missing. Never coerced: `"12"` is not 12 (added to another count it concatenates).
 */
export function tokenCount(value: unknown): number | null {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0 && value <= MAX_TOKEN_COUNT ? value : null;
}

/**
 * More tokens than any one request can hold (100 times the longest context window, or a whole
 * embeddings batch): a larger count is a host's nonsense, and taken as said it would spend a day's
 * token quota in one request and, priced, overflow Redis's 64-bit cost counters.
 */
export const MAX_TOKEN_COUNT = 1_000_000_000;

/**
 * Notes `tokens` cache writes on `usage` (`oneHour` of them written for an hour, when said), not
 * enumerable: the usage object is also the one a translated answer carries, and nothing that copies
 * or compares it as OpenAI's should see them.
 */
export function withCacheWrites<U extends Usage>(usage: U, tokens: number, oneHour?: number): U {
  Object.defineProperty(usage, CACHE_WRITE_TOKENS, { value: tokens, enumerable: false });
  if (oneHour !== undefined) Object.defineProperty(usage, CACHE_WRITE_1H_TOKENS, { value: oneHour, enumerable: false });
  return usage;
}

/** Token usage in OpenAI's shape. */
export interface Usage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
  /** Of `prompt_tokens`, those read from the provider's prompt cache (billed below plain input). */
  prompt_tokens_details?: { cached_tokens?: number };
  /** Of `completion_tokens`, those the model spent reasoning (billed as output, never shown). */
  completion_tokens_details?: { reasoning_tokens?: number };
  /** Of `prompt_tokens`, those written to the prompt cache (Anthropic). */
  [CACHE_WRITE_TOKENS]?: number;
  /** Of those, written for an hour. */
  [CACHE_WRITE_1H_TOKENS]?: number;
}

/** One chat message as OpenAI takes it; content is text, parts, or null (assistant tool calls). */
export interface ChatMessage {
  role: string;
  content?: string | Array<Record<string, unknown>> | null;
  name?: string;
  tool_calls?: unknown[];
  tool_call_id?: string;
  [key: string]: unknown;
}

/**
 * An OpenAI chat-completions request body, validated at the edge. Unknown fields are kept and
 * forwarded to OpenAI-compatible upstreams, so new OpenAI parameters work without a release.
 */
export interface ChatCompletionRequest {
  model: string;
  messages: ChatMessage[];
  stream?: boolean | null;
  stream_options?: { include_usage?: boolean } | null;
  max_tokens?: number | null;
  max_completion_tokens?: number | null;
  temperature?: number | null;
  [key: string]: unknown;
}

/** A finished non-streaming completion. */
export interface ChatResult {
  /** The OpenAI-shaped JSON body, serialized, ready to send. */
  body: string;
  usage: Usage | null;
}

/** One event of a streamed completion, already in OpenAI's chunk format. */
export interface StreamEvent {
  /** The chunk's JSON to send as `data: …`, or null when the event is for keygate only (usage). */
  data: string | null;
  /** The event's name, sent as `event: …` before its data (Anthropic's own stream names every event). */
  event?: string;
  /** Usage, when this event carried it. */
  usage?: Usage;
  /**
   * Usage the provider has reported so far (Anthropic's `message_start`, Gemini's running
   * `usageMetadata`): what the stream is billed if it ends before its final usage.
   */
  runningUsage?: Usage;
  /** Completion text in this event, kept to estimate usage if the stream ends early. */
  text?: string;
  /**
   * The event carries generated output that is not text (a Responses stream's partial image): it
   * ends a stream's priming as text does, so it goes to the client as it comes.
   */
  output?: true;
  /** The event's own `sequence_number` (a Responses stream's), which keygate's error event follows. */
  sequence?: number;
  /**
   * The event tells the client the answer failed, as the stream's last (a Responses stream's
   * `response.failed`): once it has gone out, the failure that follows is the client's already.
   */
  tellsFailure?: true;
}

/** A streamed completion whose upstream has answered with a success status. */
export interface ChatStream {
  events: AsyncIterable<StreamEvent>;
  /** Upstream response headers the client gets too (Anthropic's `request-id` on `/v1/messages`). */
  headers?: PassedHeaders;
}

/** Upstream response headers passed on to the client, by lower-case name. */
export type PassedHeaders = Record<string, string>;

/** An OpenAI embeddings request body (`POST /v1/embeddings`). */
export interface EmbeddingsRequest {
  model: string;
  input: string | string[] | number[] | number[][];
  encoding_format?: 'float' | 'base64';
  dimensions?: number;
  user?: string;
  [key: string]: unknown;
}

/** A finished embeddings call, already in OpenAI's shape. */
export interface EmbeddingsResult {
  /** The OpenAI-shaped JSON body, serialized. */
  body: string;
  usage: { prompt_tokens: number; total_tokens: number } | null;
}
