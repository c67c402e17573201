import type { IncomingHttpHeaders } from 'node:http';

/**
 * Per-request behaviour switches. Tests usually reach the mock THROUGH the
 * gateway, which forwards only the JSON body, so the primary channel is a
 * `[mock key=value ...]` token inside the last user message; `x-mock-<key>`
 * headers are the secondary channel for tests that call the mock directly.
 */
export interface MockDirectives {
  /** Wait this long before sending response headers. */
  delayMs?: number;
  /** Fail with this HTTP status in the provider's native error shape. */
  status?: number;
  /** Seconds for a `Retry-After` header on a `status` failure. */
  retryAfter?: number;
  /** Streaming: after K content chunks stop writing but keep the socket open. */
  stallAfter?: number;
  /** Streaming: after K content chunks drop the connection without terminating the stream. */
  cutAfter?: number;
  /** Streaming: pause between chunks. */
  chunkDelayMs?: number;
  /**
   * Plain (not streamed) JSON answers: the body's first half is sent, then this pause, then the
   * rest (an upstream slow to send a large answer).
   */
  bodyPauseMs?: number;
  /** Streaming: after the closing frames keep the response open this long before ending it. */
  holdAfterEndMs?: number;
  /** Streaming: number of content chunks the reply is split into. */
  chunks?: number;
  /** The reply text repeated to this many characters: a long answer, or with `chunks=1` one huge event. */
  answerChars?: number;
  /** Streaming: after K content chunks emit the provider's in-stream error event and end. */
  errorEventAfter?: number;
  /**
   * The failure directives (`status`, `delay_ms`, `stall_after`, `cut_after`, `error_event_after`) apply to the
   * first N requests carrying the same directive text (whatever the route), and the later ones are
   * answered as if they were not there: an upstream that fails a request and answers its retry, or
   * fails every attempt at one model and answers the fallback.
   */
  failFirst?: number;
  /** Gemini: answer with a SAFETY block instead of text. */
  safety?: boolean;
  /** `length` makes the reply end with the provider's "ran out of tokens" reason. */
  finish?: 'stop' | 'length';
  /** Function to call when the request declares tools. */
  tool?: string;
  /** Number of parallel tool calls. */
  tools?: number;
  /** OpenAI: report no usage (some OpenAI-compatible hosts do not), streamed or not. */
  noUsage?: boolean;
  /**
   * Streams end without their closing marker (as some compatible hosts end them): OpenAI chat after its
   * last chunk without `data: [DONE]`, Anthropic after its `message_delta` without `message_stop`.
   */
  noDone?: boolean;
  /** Anthropic and Gemini: write every count of the usage as a string (`"12"`), as a careless compatible host might, streamed or not. */
  badUsage?: boolean;
  /** OpenAI Responses: the in-stream failure of `error_event_after` is a `response.failed` event, not an `error` event. */
  failed?: boolean;
  /** Anthropic, when the request turns thinking on: a `redacted_thinking` block follows the `thinking` block. */
  redactedThinking?: boolean;
  /**
   * Anthropic, when the request lists server-side `fallbacks`: the requested model declines, and the
   * first fallback answers (the answer's `model` names it, as Anthropic's does).
   */
  decline?: boolean;
  /**
   * Usage: the prompt counts at least this many tokens (a long prompt, as the provider would count
   * it, without sending one), cache reads and writes included; the mock's own count where larger.
   */
  promptTokens?: number;
  /**
   * Usage: this many of the prompt's tokens were read from the prompt cache, in each provider's
   * field (OpenAI's `cached_tokens`, Anthropic's `cache_read_input_tokens`, Gemini's
   * `cachedContentTokenCount`); the prompt's count grows to hold them where it is smaller.
   */
  cachedTokens?: number;
  /** Anthropic usage: this many prompt tokens were written to the prompt cache for 5 minutes (`cache_creation_input_tokens`). */
  cacheWriteTokens?: number;
  /** Anthropic usage: this many more were written for an hour (`cache_creation.ephemeral_1h_input_tokens`, in the total too). */
  cacheWrite1hTokens?: number;
  /**
   * Usage: the model reasoned this many tokens before answering, added to the output's count
   * (OpenAI's `reasoning_tokens`, Gemini's `thoughtsTokenCount`); Anthropic reports none apart.
   */
  reasoningTokens?: number;
  /** SSE streams: the line ending every line of the stream is written with (all three are valid SSE). */
  eol?: 'lf' | 'crlf' | 'cr';
}

type IntKey =
  | 'delayMs'
  | 'status'
  | 'retryAfter'
  | 'stallAfter'
  | 'cutAfter'
  | 'chunkDelayMs'
  | 'holdAfterEndMs'
  | 'bodyPauseMs'
  | 'chunks'
  | 'answerChars'
  | 'errorEventAfter'
  | 'failFirst'
  | 'tools'
  | 'promptTokens'
  | 'cachedTokens'
  | 'cacheWriteTokens'
  | 'cacheWrite1hTokens'
  | 'reasoningTokens';

/** Wire name -> field, plus the inclusive range a value must fall in to be honoured. */
const INT_KEYS: ReadonlyArray<readonly [string, IntKey, number, number]> = [
  ['delay_ms', 'delayMs', 0, 600_000],
  ['status', 'status', 100, 599],
  ['retry_after', 'retryAfter', 0, 86_400],
  ['stall_after', 'stallAfter', 0, 100_000],
  ['cut_after', 'cutAfter', 0, 100_000],
  ['chunk_delay_ms', 'chunkDelayMs', 0, 600_000],
  ['hold_after_end_ms', 'holdAfterEndMs', 0, 600_000],
  ['body_pause_ms', 'bodyPauseMs', 0, 600_000],
  ['chunks', 'chunks', 1, 10_000],
  ['answer_chars', 'answerChars', 1, 64 * 1024 * 1024],
  ['error_event_after', 'errorEventAfter', 0, 100_000],
  ['fail_first', 'failFirst', 0, 100_000],
  ['tools', 'tools', 1, 16],
  ['prompt_tokens', 'promptTokens', 0, 10_000_000],
  ['cached_tokens', 'cachedTokens', 0, 10_000_000],
  ['cache_write_tokens', 'cacheWriteTokens', 0, 10_000_000],
  ['cache_write_1h_tokens', 'cacheWrite1hTokens', 0, 10_000_000],
  ['reasoning_tokens', 'reasoningTokens', 0, 10_000_000],
];

const INT_KEY_BY_NAME = new Map<string, readonly [string, IntKey, number, number]>(INT_KEYS.map((k) => [k[0], k]));

/**
 * Every key we accept with its two header spellings (`x-mock-delay_ms`, `x-mock-delay-ms`),
 * precomputed so each request does plain property lookups instead of scanning all headers.
 */
const HEADER_KEYS: ReadonlyArray<readonly [string, string, string]> = [
  ...INT_KEYS.map((k) => k[0]),
  'safety',
  'finish',
  'tool',
  'no_usage',
  'no_done',
  'bad_usage',
  'failed',
  'redacted_thinking',
  'decline',
  'eol',
].map((key) => [key, `x-mock-${key}`, `x-mock-${key.replace(/_/g, '-')}`] as const);

/** `[mock k=v k=v]`; case-insensitive on the `mock` word so hand-typed prompts still work. */
const TOKEN_RE = /\[mock((?:\s+[A-Za-z_][\w-]*=[^\s\]]*)*)\s*\]/gi;
const PAIR_RE = /([A-Za-z_][\w-]*)=([^\s\]]*)/g;

/** Applies one `key=value` pair; unknown keys and out-of-range values are ignored on purpose. */
function apply(target: MockDirectives, rawKey: string, value: string): void {
  const key = rawKey.toLowerCase().replace(/-/g, '_');
  const intSpec = INT_KEY_BY_NAME.get(key);
  if (intSpec) {
    if (!/^\d+$/.test(value)) return;
    const n = Number(value);
    if (n < intSpec[2] || n > intSpec[3]) return;
    target[intSpec[1]] = n;
    return;
  }
  switch (key) {
    case 'safety':
      target.safety = value === '1' || value.toLowerCase() === 'true';
      return;
    case 'no_usage':
      target.noUsage = value === '1' || value.toLowerCase() === 'true';
      return;
    case 'no_done':
      target.noDone = value === '1' || value.toLowerCase() === 'true';
      return;
    case 'bad_usage':
      target.badUsage = value === '1' || value.toLowerCase() === 'true';
      return;
    case 'failed':
      target.failed = value === '1' || value.toLowerCase() === 'true';
      return;
    case 'redacted_thinking':
      target.redactedThinking = value === '1' || value.toLowerCase() === 'true';
      return;
    case 'decline':
      target.decline = value === '1' || value.toLowerCase() === 'true';
      return;
    case 'finish': {
      const v = value.toLowerCase();
      if (v === 'length' || v === 'max_tokens') target.finish = 'length';
      else if (v === 'stop') target.finish = 'stop';
      return;
    }
    case 'tool':
      if (/^[\w.-]{1,64}$/.test(value)) target.tool = value;
      return;
    case 'eol': {
      const v = value.toLowerCase();
      if (v === 'lf' || v === 'crlf' || v === 'cr') target.eol = v;
      return;
    }
    default:
      return;
  }
}

/** Parses every `[mock ...]` token in `text`; later tokens override earlier ones. */
export function parseDirectiveText(text: string, into: MockDirectives = {}): MockDirectives {
  // Fast path: the benchmark sends plain prompts, skip the regex entirely.
  if (text.length < 6 || !/\[mock/i.test(text)) return into;
  for (const token of text.matchAll(TOKEN_RE)) {
    for (const pair of token[1].matchAll(PAIR_RE)) apply(into, pair[1], pair[2]);
  }
  return into;
}

/** Reads `x-mock-<key>` headers; both `x-mock-delay_ms` and `x-mock-delay-ms` spellings work. */
export function parseDirectiveHeaders(headers: IncomingHttpHeaders, into: MockDirectives = {}): MockDirectives {
  for (const [key, underscored, dashed] of HEADER_KEYS) {
    const raw = headers[underscored] ?? headers[dashed];
    const value = Array.isArray(raw) ? raw[raw.length - 1] : raw;
    if (value !== undefined) apply(into, key, value.trim());
  }
  return into;
}

/** Headers first, then the body token, so the body (what the gateway forwards) wins on conflict. */
export function resolveDirectives(headers: IncomingHttpHeaders, text: string): MockDirectives {
  return parseDirectiveText(text, parseDirectiveHeaders(headers));
}

/**
 * Counts requests by their directive text, for `fail_first`: one per server, so servers running side
 * by side (tests) keep their counts apart; the oldest texts are forgotten past a bound.
 */
export class FailureCounter {
  private readonly seen = new Map<string, number>();

  constructor(private readonly limit = 10_000) {}

  /** Drops the failure directives from a request past its `fail_first` count. */
  apply(text: string, directives: MockDirectives): void {
    if (directives.failFirst === undefined) return;
    const count = this.seen.get(text) ?? 0;
    if (this.seen.size >= this.limit && !this.seen.has(text)) this.seen.delete(this.seen.keys().next().value as string);
    this.seen.set(text, count + 1);
    if (count < directives.failFirst) return;
    delete directives.status;
    delete directives.delayMs;
    delete directives.stallAfter;
    delete directives.cutAfter;
    delete directives.errorEventAfter;
  }
}

/** The user's words without the control tokens, so echoes stay readable in assertions. */
export function stripDirectives(text: string): string {
  if (!/\[mock/i.test(text)) return text.trim();
  return text.replace(TOKEN_RE, ' ').replace(/\s+/g, ' ').trim();
}
