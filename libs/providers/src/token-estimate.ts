import { isUtf8 } from 'node:buffer';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import type { ChatCompletionRequest } from './chat.types';
import { PdfWork, pdfPageCount } from './pdf-pages';

type Encoder = { countTokens(text: string, options: { disallowedSpecial: Set<string> }): number };
/** One entry per token rank, as gpt-tokenizer keeps them: the token's text, or its bytes when they are not text. */
export type MergeableRanks = (string | number[])[];
type GptEncodingModule = { GptEncoding: { getEncodingApi(name: 'o200k_base', ranks: () => MergeableRanks): Encoder } };
let encoder: Encoder | undefined;

const UTF8_BOM = [0xef, 0xbb, 0xbf];

/**
 * Reads o200k's ranks from the `.tiktoken` file gpt-tokenizer ships (OpenAI's format: a token's
 * bytes in base64 and its rank, one per line). The package's own table is a 2.4 MB JavaScript
 * array literal, whose compiled form V8 keeps: read this way, the gateway settles ~22 MB lower
 * (measured with the gateway started, before and after V8's idle GC), for ~80 ms more at boot
 * (0.23 s instead of 0.14 s to load, once, before keygate listens).
 * A token is kept as text when its bytes are UTF-8 and do not start with a byte-order mark (the
 * package decodes with TextDecoder, which drops a leading BOM, so it keeps those as bytes); the
 * unit tests check the result equals the package's table entry for entry.
 */
export function readO200kRanks(): MergeableRanks {
  // Not `require.resolve`: webpack would turn it into a module id.
  return parseTiktokenRanks(readFileSync(createRequire(__filename).resolve('gpt-tokenizer/data/o200k_base.tiktoken'), 'latin1'));
}

/** The ranks of a `.tiktoken` file read as latin1 (see {@link readO200kRanks}); throws on a malformed one. */
export function parseTiktokenRanks(file: string): MergeableRanks {
  const ranks: MergeableRanks = [];
  const scratch = Buffer.allocUnsafe(1024);
  let lines = 0;
  for (let start = 0; start < file.length;) {
    let end = file.indexOf('\n', start);
    if (end < 0) end = file.length;
    const space = file.indexOf(' ', start);
    if (space < start || space > end) throw new Error(`tiktoken: no rank on the line at offset ${start}`);
    const base64 = file.slice(start, space);
    // 4 base64 characters per 3 bytes: what cannot fit the scratch buffer gets its own.
    const bytes =
      base64.length <= (scratch.length / 3) * 4 ? scratch.subarray(0, scratch.write(base64, 'base64')) : Buffer.from(base64, 'base64');
    const rankText = file.slice(space + 1, end);
    if (!/^\d{1,7}$/.test(rankText)) throw new Error(`tiktoken: bad rank at offset ${start}`);
    const rank = Number(rankText);
    if (ranks[rank] !== undefined) throw new Error(`tiktoken: rank ${rank} appears twice`);
    const bom = UTF8_BOM.every((b, i) => bytes[i] === b);
    ranks[rank] = isUtf8(bytes) && !bom ? bytes.toString('utf8') : Array.from(bytes);
    start = end + 1;
    // A file ending in a newline leaves nothing after it.
    while (file.charCodeAt(start) === 10) start++;
    lines++;
  }
  // Each rank once (checked above) and none beyond n-1: ranks are 0..n-1 with no hole.
  if (ranks.length !== lines) throw new Error('tiktoken: ranks are not 0..n-1, each once');
  return ranks;
}

/**
 * Special tokens (`<|endoftext|>`, `<|endofprompt|>`) in a caller's text are counted as the ordinary
 * text they are, as OpenAI reads them in a prompt (tiktoken's `encode_ordinary`): gpt-tokenizer's
 * default throws on them ("Disallowed special token found"), which made any prompt or answer that
 * mentions one (code about tokenizers, a pasted model transcript) a 500 wherever keygate counted it.
 */
const ORDINARY_TEXT = { disallowedSpecial: new Set<string>() };

/**
 * Loads the tokenizer on first use. QuotaService loads it at boot (the limits module is always
 * there), since loading it on a request stalls the event loop for ~200 ms; its tables cost ~20 MB.
 */
function tokenizer(): Encoder {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  encoder ??= (require('gpt-tokenizer/GptEncoding') as GptEncodingModule).GptEncoding.getEncodingApi('o200k_base', readO200kRanks);
  return encoder;
}

/**
 * Byte-pair encoding costs the square of a pre-token's length, and o200k's pre-tokenizer leaves a
 * run of letters (CJK text has no spaces), punctuation or whitespace whole: 20 000 characters of
 * one run took 0.2 s, 150 000 several seconds, all of it blocking the event loop. Runs at least
 * this long are counted in pieces of this length (a few tokens more than the run as a whole).
 */
const RUN_PIECE = 64;
const LONG_RUN = /\S{64,}|\s{64,}/g;
/**
 * Characters one {@link TokenTally} tokenizes; beyond, its texts are estimated at the tokens per
 * character measured so far. Bounds the worst case (~2 µs a character for text built to be slow)
 * to ~0.1 s per request; ordinary prompts of that size tokenize in a few milliseconds.
 */
export const TOKENIZED_CHARS_PER_TALLY = 32_768;

/**
 * Counts tokens for one request with the o200k tokenizer, within a budget of characters: the
 * estimate of a prompt of any size (and of a text built to be slow) costs the event loop at most
 * a bounded time.
 */
export class TokenTally {
  private chars = 0;
  private tokens = 0;
  /** What counting the request's PDFs' pages may inflate, all of them together. */
  readonly pdfWork = new PdfWork();

  constructor(private readonly budget = TOKENIZED_CHARS_PER_TALLY) {}

  count(text: string): number {
    if (!text) return 0;
    LONG_RUN.lastIndex = 0;
    if (!LONG_RUN.test(text)) return this.tokenize(text);
    LONG_RUN.lastIndex = 0;
    let total = 0;
    let last = 0;
    let outside = '';
    for (const run of text.matchAll(LONG_RUN)) {
      outside += text.slice(last, run.index);
      last = run.index + run[0].length;
      for (let at = 0; at < run[0].length;) {
        let end = Math.min(at + RUN_PIECE, run[0].length);
        // Never between the two halves of a surrogate pair.
        if (end < run[0].length && (run[0].charCodeAt(end) & 0xfc00) === 0xdc00) end++;
        total += this.tokenize(run[0].slice(at, end));
        at = end;
      }
    }
    return total + this.tokenize(outside + text.slice(last));
  }

  private tokenize(text: string): number {
    if (!text) return 0;
    const room = this.budget - this.chars;
    if (room <= 0) return Math.ceil(text.length * (this.tokens / this.chars));
    if (text.length > room) {
      // What fits is tokenized, cut after a space where there is one; the rest is estimated.
      let cut = text.lastIndexOf(' ', room - 1) + 1;
      if (cut === 0) cut = (text.charCodeAt(room) & 0xfc00) === 0xdc00 ? room + 1 : room;
      return this.tokenize(text.slice(0, cut)) + this.tokenize(text.slice(cut));
    }
    const n = tokenizer().countTokens(text, ORDINARY_TEXT);
    this.chars += text.length;
    this.tokens += n;
    return n;
  }
}

/** Counts the tokens of a text with OpenAI's o200k tokenizer (within one {@link TokenTally}'s budget). */
export function countTokens(text: string): number {
  return text ? new TokenTally().count(text) : 0;
}

/**
 * What one non-text content part (an image, audio, a binary file) is reserved at: about the most
 * one image costs on most models (OpenAI's gpt-4o at its largest high-detail tiling ≈1 450,
 * Anthropic's ≈1 600, Gemini's 258 a tile); settling brings the day's total back to what was really
 * used. Not an upper bound: gpt-4o-mini bills one image as up to ≈48 000 tokens (2 833 + 5 667 a
 * tile), and a PDF or an audio clip costs by its pages or its length, beyond what is reserved.
 */
export const NON_TEXT_PART_TOKENS = 1_600;

/**
 * What one page of a PDF sent inline is reserved at, on Claude's and OpenAI's routes: both bill a
 * page as its extracted text plus an image of it (Claude: ~2,100–2,500 a page of text, ~1,600 a
 * scanned one, measured). A PDF whose pages keygate cannot count (see {@link pdfPageCount}) is
 * reserved by its size, a page per {@link UNCOUNTED_PDF_BYTES_PER_PAGE}.
 */
export const PDF_PAGE_TOKENS = 2_500;

/** The bytes taken for one page of a PDF whose pages cannot be counted (encrypted, or written to hide them): a scanned page's size. */
export const UNCOUNTED_PDF_BYTES_PER_PAGE = 100_000;

/** What one page of a PDF sent inline to Gemini's own API is reserved at: Gemini bills a page as an image (258 tokens on 2.x, ~560 on 3.x, measured). */
export const GEMINI_PDF_PAGE_TOKENS = 560;

/** A base64 PDF's reservation: its pages at `perPage`, counted within the request's work (see {@link TokenTally}), else by its size. */
function pdfTokens(base64: string, perPage: number, tally: TokenTally): number {
  const pdf = Buffer.from(base64, 'base64');
  const pages = pdfPageCount(pdf, tally.pdfWork) ?? Math.max(1, Math.ceil(pdf.length / UNCOUNTED_PDF_BYTES_PER_PAGE));
  return pages * perPage;
}

/** A `data:<type>[;…];base64,…` URL's media type (lower case) and data, else undefined. */
function base64DataUrl(url: unknown): { mediaType: string; data: string } | undefined {
  if (typeof url !== 'string' || !/^data:/i.test(url)) return undefined;
  const comma = url.indexOf(',');
  const head = url.slice(5, Math.max(comma, 5)).toLowerCase();
  if (comma < 0 || !head.endsWith(';base64')) return undefined;
  return { mediaType: head.slice(0, head.indexOf(';')), data: url.slice(comma + 1) };
}

/**
 * A chat `file` part or a Responses `input_file` part: a text file attached inline (`data:text/…`;
 * a Gemini model behind the chat route gets it as inline text and bills it as such) as its text, a
 * PDF by its pages, anything else at the flat rate.
 */
function filePartTokens(fileData: unknown, tally: TokenTally): number {
  const file = base64DataUrl(fileData);
  if (file?.mediaType.startsWith('text/')) return tally.count(Buffer.from(file.data, 'base64').toString('utf8'));
  if (file?.mediaType === 'application/pdf') return pdfTokens(file.data, PDF_PAGE_TOKENS, tally);
  return NON_TEXT_PART_TOKENS;
}

/**
 * Estimates a request's prompt tokens: the text of every message plus OpenAI's per-message framing
 * (a text file attached as a `data:text/…` URL included), the tool calls in the history, the tool
 * and function definitions and a response_format schema (providers bill them as prompt),
 * {@link PDF_PAGE_TOKENS} a page of a PDF attached as a `data:application/pdf` URL, and a flat
 * {@link NON_TEXT_PART_TOKENS} per image, audio or other file part.
 */
export function estimatePromptTokens(
  request: Pick<ChatCompletionRequest, 'messages'> & Partial<ChatCompletionRequest>,
  // One budget for the whole request, however many messages it has (its prediction's too, see
  // estimatePredictionTokens, when the caller passes both the same tally).
  tally = new TokenTally(),
): number {
  let total = 3;
  for (const m of request.messages) {
    total += 3;
    if (typeof m.content === 'string') total += tally.count(m.content);
    else if (Array.isArray(m.content)) {
      for (const part of m.content) {
        if (typeof part.text === 'string') total += tally.count(part.text);
        else if (typeof part.refusal === 'string') total += tally.count(part.refusal);
        else if (part.type === 'file' && isObject(part.file)) total += filePartTokens(part.file.file_data, tally);
        else total += NON_TEXT_PART_TOKENS;
      }
    }
    if (m.tool_calls) total += tally.count(JSON.stringify(m.tool_calls));
  }
  total += jsonTokens([request.tools, request.functions, request.response_format], tally);
  return total;
}

/**
 * Estimates the tokens of a chat request's `prediction` (OpenAI's Predicted Outputs: `content`, a
 * text or text parts; any other shape as its JSON). What of it the answer does not use OpenAI still
 * bills, as completion tokens, so it is reserved beside the completion cap, not as prompt.
 */
export function estimatePredictionTokens(request: Partial<ChatCompletionRequest>, tally = new TokenTally()): number {
  const prediction = request.prediction;
  if (prediction === undefined || prediction === null) return 0;
  const content = isObject(prediction) ? prediction.content : undefined;
  if (typeof content === 'string') return tally.count(content);
  if (!Array.isArray(content)) return jsonTokens([prediction], tally);
  let total = 0;
  for (const part of content as unknown[])
    total += isObject(part) && typeof part.text === 'string' ? tally.count(part.text) : jsonTokens([part], tally);
  return total;
}

/**
 * Estimates the prompt tokens of an Anthropic Messages request (keygate's `/v1/messages`): the
 * system prompt, the text of every message's blocks (tool inputs and results, thinking, plain-text
 * and custom-content documents, search results), the tool definitions, the structured output's
 * schema (`output_config.format`, or the beta's `output_format`: Anthropic bills it as prompt),
 * {@link PDF_PAGE_TOKENS} a page of a base64 PDF, and a flat {@link NON_TEXT_PART_TOKENS} per image
 * or other PDF.
 */
export function estimateMessagesPromptTokens(request: {
  system?: unknown;
  messages?: unknown;
  tools?: unknown;
  output_format?: unknown;
  output_config?: unknown;
}): number {
  const tally = new TokenTally();
  let total = 3 + blockTokens(request.system, tally);
  for (const message of Array.isArray(request.messages) ? (request.messages as unknown[]) : []) {
    total += 3;
    if (isObject(message)) total += blockTokens(message.content, tally);
  }
  const format = isObject(request.output_config) ? request.output_config.format : undefined;
  total += jsonTokens([request.tools, request.output_format, format], tally);
  return total;
}

/** Definitions billed as prompt (tools, schemas): each value that is there, as its JSON. */
function jsonTokens(values: unknown[], tally: TokenTally): number {
  let total = 0;
  for (const value of values) if (value !== undefined && value !== null) total += tally.count(JSON.stringify(value));
  return total;
}

/**
 * The longest prompt-cache write an Anthropic Messages request asks for: `1h` when a `cache_control`
 * anywhere in it (the request's own, the system prompt's, a tool's, a message block's, however
 * deeply nested) says `"ttl": "1h"`, else `5m` when there is one, else undefined. Anthropic bills the
 * tokens such a request writes to the cache above `input`, so a cost budget reserves its prompt at
 * that rate.
 */
export function promptCacheWrite(request: { system?: unknown; messages?: unknown; tools?: unknown }): '5m' | '1h' | undefined {
  let found: '5m' | '1h' | undefined;
  // Iterative, so no nesting depth can overflow the stack; strings and numbers are never entered.
  const pending: unknown[] = [request];
  while (pending.length > 0) {
    const value = pending.pop();
    if (Array.isArray(value)) {
      for (const item of value) if (typeof item === 'object' && item !== null) pending.push(item);
      continue;
    }
    if (!isObject(value)) continue;
    for (const key in value) {
      const item = value[key];
      if (typeof item !== 'object' || item === null) continue;
      if (key === 'cache_control' && !Array.isArray(item)) {
        if ((item as Record<string, unknown>).ttl === '1h') return '1h';
        found = '5m';
      } else pending.push(item);
    }
  }
  return found;
}

/**
 * Estimates a Gemini `generateContent` request's prompt tokens (keygate's `/v1beta` routes): the
 * text of every part (an inline `text/*` file's included) plus a per-turn framing, function calls
 * and responses as their JSON, the system instruction, the tool declarations and the answer's
 * schema (`responseSchema` or `responseJsonSchema`: Gemini bills it as prompt),
 * {@link GEMINI_PDF_PAGE_TOKENS} a page of an inline PDF, and a flat
 * {@link NON_TEXT_PART_TOKENS} per other inline or file part. Google's JSON parser takes each
 * field in snake_case too (`system_instruction`, `inline_data`, `mime_type`, `function_call`,
 * `generation_config`, `response_schema`, as its REST examples write them): both spellings are
 * read.
 */
export function estimateGenerateContentPromptTokens(request: {
  contents?: unknown;
  systemInstruction?: unknown;
  system_instruction?: unknown;
  tools?: unknown;
  generationConfig?: unknown;
  generation_config?: unknown;
}): number {
  const tally = new TokenTally();
  let total = 3;
  for (const system of [request.systemInstruction, request.system_instruction])
    if (isObject(system)) total += partsTokens(system.parts, tally);
  for (const content of Array.isArray(request.contents) ? (request.contents as unknown[]) : []) {
    total += 3;
    if (isObject(content)) total += partsTokens(content.parts, tally);
  }
  total += jsonTokens([request.tools], tally);
  for (const config of [request.generationConfig, request.generation_config])
    if (isObject(config))
      total += jsonTokens([config.responseSchema, config.response_schema, config.responseJsonSchema, config.response_json_schema], tally);
  return total;
}

/**
 * Input tokens of a Gemini `embedContent` body (`{content, title?}`) or, with `batch`, of a
 * `batchEmbedContents` body (`{requests: [{content, title?}, …]}`): the parts' text (and each
 * title) counted with the tokenizer, a flat {@link NON_TEXT_PART_TOKENS} per other part. An
 * estimate: Gemini reports no usage for embeddings.
 */
export function estimateEmbedContentTokens(body: { content?: unknown; requests?: unknown }, batch: boolean): number {
  const tally = new TokenTally();
  const one = (request: unknown): number => {
    if (!isObject(request)) return 0;
    const title = typeof request.title === 'string' ? tally.count(request.title) : 0;
    return title + (isObject(request.content) ? partsTokens(request.content.parts, tally) : 0);
  };
  if (!batch) return one(body);
  let total = 0;
  for (const request of Array.isArray(body.requests) ? (body.requests as unknown[]) : []) total += one(request);
  return total;
}

/** Gemini part fields that are billed as their JSON (either spelling Google's parser takes). */
const GEMINI_JSON_PARTS = [
  'functionCall',
  'function_call',
  'functionResponse',
  'function_response',
  'executableCode',
  'executable_code',
  'codeExecutionResult',
  'code_execution_result',
] as const;

/**
 * A Gemini part's tokens: its text, a function call's or response's (or generated code's and its
 * result's) JSON, inline text or PDF pages, else the flat rate. Each field in either spelling, both
 * counted where a part carries both, so no second spelling slips past the estimate.
 */
function partsTokens(parts: unknown, tally: TokenTally): number {
  let total = 0;
  for (const part of Array.isArray(parts) ? (parts as unknown[]) : []) {
    if (!isObject(part)) continue;
    let counted = typeof part.text === 'string';
    if (typeof part.text === 'string') total += tally.count(part.text);
    for (const key of GEMINI_JSON_PARTS) {
      const value = part[key];
      if (!isObject(value)) continue;
      total += tally.count(JSON.stringify(value));
      counted = true;
    }
    for (const data of [part.inlineData, part.inline_data]) {
      const inline = inlineData(data);
      if (inline === undefined) continue;
      total += inlineTokens(inline, tally);
      counted = true;
    }
    if (!counted) total += NON_TEXT_PART_TOKENS;
  }
  return total;
}

/**
 * Inline data's tokens: a text file sent inline (`text/plain`, `text/csv`, …) as the text it holds,
 * which may be a whole book, not as one image; a PDF by its pages; anything else at the flat rate.
 */
function inlineTokens(inline: { mimeTypes: string[]; data: string }, tally: TokenTally): number {
  if (inline.mimeTypes.some((type) => type.startsWith('text/'))) return tally.count(Buffer.from(inline.data, 'base64').toString('utf8'));
  if (inline.mimeTypes.includes('application/pdf')) return pdfTokens(inline.data, GEMINI_PDF_PAGE_TOKENS, tally);
  return NON_TEXT_PART_TOKENS;
}

/** A part's inline data (base64, and its MIME type in either spelling, both where it has both), if it is well formed. */
function inlineData(data: unknown): { mimeTypes: string[]; data: string } | undefined {
  if (!isObject(data) || typeof data.data !== 'string') return undefined;
  const mimeTypes = [data.mimeType, data.mime_type].filter((type): type is string => typeof type === 'string');
  return mimeTypes.length > 0 ? { mimeTypes, data: data.data } : undefined;
}

function blockTokens(content: unknown, tally: TokenTally): number {
  if (typeof content === 'string') return tally.count(content);
  if (!Array.isArray(content)) return 0;
  let total = 0;
  for (const block of content as unknown[]) {
    if (!isObject(block)) continue;
    if (typeof block.text === 'string') total += tally.count(block.text);
    else if (typeof block.thinking === 'string') total += tally.count(block.thinking);
    else if (block.type === 'tool_use') total += tally.count(JSON.stringify(block.input ?? {}));
    else if (block.type === 'tool_result') total += blockTokens(block.content, tally);
    else if (block.type === 'document') total += documentTokens(block, tally);
    else if (block.type === 'search_result') total += stringsTokens([block.title, block.source], tally) + blockTokens(block.content, tally);
    else if (block.type !== 'redacted_thinking') total += NON_TEXT_PART_TOKENS;
  }
  return total;
}

/**
 * An Anthropic document: a plain-text one (`source.type: "text"`) or one of custom content
 * (`"content"`: text and image blocks) is billed as the text it holds, which may be a whole book
 * (the Vercel AI SDK sends a text file so); a base64 PDF by its pages; one by URL or by file id
 * (not in the request) at the flat rate.
 * Its title and context are prompt text too.
 */
function documentTokens(block: Record<string, unknown>, tally: TokenTally): number {
  const source = isObject(block.source) ? block.source : {};
  const framing = stringsTokens([block.title, block.context], tally);
  if (source.type === 'text' && typeof source.data === 'string') return framing + tally.count(source.data);
  if (source.type === 'content') return framing + blockTokens(source.content, tally);
  if (source.type === 'base64' && source.media_type === 'application/pdf' && typeof source.data === 'string')
    return framing + pdfTokens(source.data, PDF_PAGE_TOKENS, tally);
  return framing + NON_TEXT_PART_TOKENS;
}

function stringsTokens(values: unknown[], tally: TokenTally): number {
  let total = 0;
  for (const value of values) if (typeof value === 'string') total += tally.count(value);
  return total;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/**
 * Estimates the prompt tokens of an OpenAI Responses request (keygate's `/v1/responses`): the
 * instructions, every input item's text (messages' parts, function calls' arguments and outputs,
 * reasoning summaries), the tool definitions and a `text.format` schema, a stored prompt's
 * variables (text, or input parts), an `input_file`'s text or PDF pages (as on chat), and a flat {@link NON_TEXT_PART_TOKENS} per image, other file or audio part. An item of a type it does not know is
 * counted as its JSON.
 */
export function estimateResponsesPromptTokens(request: {
  instructions?: unknown;
  input?: unknown;
  tools?: unknown;
  text?: unknown;
  prompt?: unknown;
}): number {
  const tally = new TokenTally();
  let total = 3 + (typeof request.instructions === 'string' ? tally.count(request.instructions) : 0);
  if (typeof request.input === 'string') total += 3 + tally.count(request.input);
  for (const item of Array.isArray(request.input) ? (request.input as unknown[]) : []) {
    total += 3;
    if (!isObject(item)) continue;
    if (item.content !== undefined) total += partTokens(item.content, tally);
    else if (typeof item.arguments === 'string') total += tally.count(item.arguments);
    else if (item.output !== undefined)
      total += typeof item.output === 'string' ? tally.count(item.output) : partTokens(item.output, tally);
    else if (Array.isArray(item.summary)) total += partTokens(item.summary, tally);
    else if (item.type !== 'item_reference') total += tally.count(JSON.stringify(item));
  }
  total += jsonTokens([request.tools, isObject(request.text) ? request.text.format : undefined], tally);
  // A stored prompt's variables are substituted into it: each is text or an input part. The stored
  // template itself is OpenAI's, unknown here (as a previous response's items are).
  if (isObject(request.prompt) && isObject(request.prompt.variables))
    for (const value of Object.values(request.prompt.variables))
      total += typeof value === 'string' ? tally.count(value) : partTokens([value], tally);
  return total;
}

/** A Responses content: text, or parts (`input_text`, `output_text`, `refusal`, `summary_text`, `input_file`; anything else at the flat rate). */
function partTokens(content: unknown, tally: TokenTally): number {
  if (typeof content === 'string') return tally.count(content);
  if (!Array.isArray(content)) return 0;
  let total = 0;
  for (const part of content as unknown[]) {
    if (!isObject(part)) continue;
    if (typeof part.text === 'string') total += tally.count(part.text);
    else if (typeof part.refusal === 'string') total += tally.count(part.refusal);
    else if (part.type === 'input_file') total += filePartTokens(part.file_data, tally);
    else total += NON_TEXT_PART_TOKENS;
  }
  return total;
}
