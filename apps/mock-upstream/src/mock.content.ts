import type { MockDirectives } from './mock.directives';
import type { ProviderName } from './mock.exchange';
import type { JsonRecord } from './mock.json';
import { toolArguments } from './mock.structured';

/* ------------------------------------------------------------------ JSON helpers */

// Kept here for the handlers that import them with the rest; mock.json.ts holds them so that
// mock.structured.ts, which this file uses for tool arguments, needs nothing from this one.
export { asArray, asString, isRecord, type JsonRecord } from './mock.json';

/* ------------------------------------------------------------------ reply text */

const MAX_ECHO = 200;

/** Truncates on a UTF-16 boundary without splitting a surrogate pair. */
export function truncate(text: string, max: number = MAX_ECHO): string {
  if (text.length <= max) return text;
  const cut = text.slice(0, max);
  const last = cut.charCodeAt(cut.length - 1);
  return last >= 0xd800 && last <= 0xdbff ? cut.slice(0, -1) : cut;
}

/** The echo reply; with `chars` (the `answer_chars` directive) repeated to that length, a long answer. */
export function replyText(provider: ProviderName, userText: string, chars?: number): string {
  const text = `Hello from mock ${provider}! You said: ${truncate(userText)}`;
  if (chars === undefined) return text;
  return truncate(`${text} `.repeat(Math.ceil(chars / (text.length + 1))), chars);
}

/* ------------------------------------------------------------------ tokens */

/**
 * Deterministic stand-in for a tokenizer (~4 chars per token plus a per-message
 * overhead). Tests only need stable, plausible numbers, not real BPE counts.
 */
export function promptTokens(totalChars: number, messageCount: number): number {
  return Math.ceil(totalChars / 4) + 3 * messageCount;
}

export function completionTokens(text: string): number {
  return Math.max(1, Math.ceil(text.length / 4));
}

/* ------------------------------------------------------------------ chunking */

export const DEFAULT_CHUNKS = 5;

/**
 * Splits `text` into `n` pieces whose lengths differ by at most one code point.
 * Never yields an empty piece (fewer pieces when the text is shorter than `n`),
 * and never splits a surrogate pair, so every chunk is valid UTF-8 on its own.
 */
export function splitChunks(text: string, n: number = DEFAULT_CHUNKS): string[] {
  const points = Array.from(text);
  if (points.length === 0) return [''];
  const count = Math.max(1, Math.min(n, points.length));
  const base = Math.floor(points.length / count);
  const extra = points.length % count;
  const out: string[] = [];
  let at = 0;
  for (let i = 0; i < count; i++) {
    const len = base + (i < extra ? 1 : 0);
    out.push(points.slice(at, at + len).join(''));
    at += len;
  }
  return out;
}

/* ------------------------------------------------------------------ tools */

export interface ToolCallPlan {
  name: string;
  /** JSON text of the arguments object; identical for every parallel call. */
  argumentsJson: string;
  args: JsonRecord;
  count: number;
}

export interface ToolDecisionInput {
  /** Names declared in the request's tools, in order. */
  declared: string[];
  /** Each declared function's parameters schema, as the request gives it (JSON Schema, or Gemini's `Schema`). */
  parameters?: ReadonlyMap<string, unknown>;
  /** Function forced by the request's tool choice; `''` means "any declared tool". */
  forced: string | undefined;
  /** The request's tool choice forbids calling tools. */
  disabled: boolean;
  /** False when the conversation ends with a tool result: answer in text, do not loop. */
  userTurn: boolean;
  directives: MockDirectives;
  userText: string;
}

/**
 * Decides whether to answer with tool calls. A directive `tool=NAME`, a named
 * tool choice, a "required/any" tool choice or `tools=N` all trigger it, but only
 * when the request declares tools and the last turn is the user's: after a tool
 * result the mock answers in text, as a real model would, so agent loops terminate.
 * The arguments follow the function's parameters, as a model's do (see `toolArguments`).
 */
export function planToolCalls(input: ToolDecisionInput): ToolCallPlan | undefined {
  if (input.declared.length === 0 || input.disabled || !input.userTurn) return undefined;
  const { directives } = input;
  let name = directives.tool ?? (input.forced === '' ? input.declared[0] : input.forced);
  if (name === undefined && directives.tools !== undefined) name = input.declared[0];
  if (name === undefined) return undefined;
  const args = toolArguments(input.parameters?.get(name), truncate(input.userText));
  return { name, args, argumentsJson: JSON.stringify(args), count: directives.tools ?? 1 };
}

/* ------------------------------------------------------------------ ids */

let seq = 0;

/**
 * Cheap unique-enough ids (a counter in base 36 plus a per-process salt)
 * instead of crypto randomness: ids only need to differ between responses.
 */
const salt = Math.floor(Math.random() * 36 ** 4)
  .toString(36)
  .padStart(4, '0');

export function nextId(prefix: string): string {
  seq = (seq + 1) % Number.MAX_SAFE_INTEGER;
  return `${prefix}${salt}${seq.toString(36).padStart(8, '0')}`;
}

export function unixSeconds(): number {
  return Math.floor(Date.now() / 1000);
}

/* ------------------------------------------------------------------ embeddings */

/** FNV-1a, to seed the PRNG from the input text. */
function hash(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

/** mulberry32: tiny, fast and good enough for "looks like an embedding". */
function prng(seed: number): () => number {
  let a = seed;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export interface EmbeddingEncodings {
  /** JSON array text, e.g. `[0.0123,-0.04]`, ready to splice into a response. */
  json: string;
  /** Base64 of the little-endian float32 bytes (OpenAI `encoding_format: "base64"`). */
  base64: string;
}

const CACHE_LIMIT = 512;
const cache = new Map<string, EmbeddingEncodings>();

/**
 * Deterministic unit-length float32 vector for (text, dims), pre-serialised.
 * Serialising thousands of floats dominates an embeddings response, so results
 * are cached: the benchmark repeats the same inputs and must not make the mock
 * the bottleneck.
 */
export function embedding(text: string, dims: number): EmbeddingEncodings {
  const key = `${dims}\u0000${text}`;
  const hit = cache.get(key);
  if (hit) return hit;
  const next = prng(hash(text) ^ dims);
  const values = new Float32Array(dims);
  let norm = 0;
  for (let i = 0; i < dims; i++) {
    const v = next() * 2 - 1;
    values[i] = v;
    norm += v * v;
  }
  norm = Math.sqrt(norm) || 1;
  const buf = Buffer.alloc(dims * 4);
  const parts: string[] = new Array<string>(dims);
  for (let i = 0; i < dims; i++) {
    const v = Math.fround(values[i] / norm);
    buf.writeFloatLE(v, i * 4);
    // 8 significant digits is what float32 can carry; longer strings are just noise.
    parts[i] = String(Number(v.toPrecision(8)));
  }
  const out: EmbeddingEncodings = { json: `[${parts.join(',')}]`, base64: buf.toString('base64') };
  if (cache.size >= CACHE_LIMIT) cache.clear();
  cache.set(key, out);
  return out;
}
