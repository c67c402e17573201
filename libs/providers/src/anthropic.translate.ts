import { createHash } from 'node:crypto';
import { GatewayError } from '@keygate/errors';
import { chunkHead, chunkText, invalidParameter, isRecord, splitDataUrl, unsupportedParameter, type Json } from './translate.util';
import { tokenCount, withCacheWrites, type ChatCompletionRequest, type ChatMessage, type StreamEvent } from './chat.types';
import type {
  CompletionMeta,
  OpenAiChatCompletion,
  OpenAiFinishReason,
  OpenAiToolCall,
  OpenAiUsage,
  ThinkingBlock,
} from './openai-response.types';
import type {
  AnthropicMessage,
  AnthropicMessageParam,
  AnthropicRequestBlock,
  AnthropicResponseBlock,
  AnthropicStopReason,
  AnthropicStreamEvent,
  AnthropicTextBlock,
  AnthropicTool,
  AnthropicToolChoice,
  AnthropicToolUseBlock,
  AnthropicUsage,
  MessagesRequest,
} from './anthropic.types';
import { UpstreamError } from './upstream.error';
import { claudeOutputSchema } from './anthropic.schema';
import { applyReasoningEffort, type LimitParam, thinkingBlocksOf } from './anthropic.thinking';

export type { CompletionMeta, OpenAiChatCompletion, OpenAiFinishReason, OpenAiToolCall, OpenAiUsage } from './openai-response.types';

/*
 * Pure translation between OpenAI's chat-completions format and Anthropic's Messages API. No I/O,
 * no clock, no randomness: ids and timestamps come in as arguments, so the golden fixtures in
 * __conformance__/anthropic pin every byte.
 */

const PROVIDER = 'anthropic';

function unsupported(param: string, why: string): GatewayError {
  return unsupportedParameter('anthropic', param, why);
}

const invalid = invalidParameter;

function num(value: unknown): number | undefined {
  return typeof value === 'number' && Number.isFinite(value) ? value : undefined;
}

/* ------------------------------------------------------------------ request: OpenAI -> Anthropic */

/**
 * OpenAI parameters Anthropic cannot honour. Rejected (400 `unsupported_parameter`) rather than
 * dropped: a client that asks for logprobs, several choices or JSON mode and silently gets none
 * would draw wrong conclusions from the answer. Each check returns the reason, or undefined when
 * the value is absent or harmless (null, false, 0, 1, `{}`, `"text"`).
 *
 * Ignored on purpose (harmless, or already handled by keygate), and never sent to Anthropic:
 * - `stream`, `stream_options`: the adapter sets Anthropic's `stream`; usage is always read;
 * - `store`, `metadata`: OpenAI's stored-completions dashboard; Anthropic's `metadata` takes only a user id;
 * - `service_tier`: OpenAI's tiers (auto/default/flex/priority) have no Anthropic counterpart a client could mean;
 * - `seed`: OpenAI documents it as best-effort (and deprecated); rejecting it would break clients that
 *   send one on every call, and no answer is wrong because it was not honoured;
 * - `parallel_tool_calls: true` (Anthropic's default), `prompt_cache_key`, `verbosity`;
 * - per message: `name`; per image: `detail`; per function: `strict`.
 * The Anthropic body is built field by field, so any other unknown field is not forwarded either.
 */
const UNSUPPORTED_PARAMS: ReadonlyArray<readonly [string, (value: unknown) => string | undefined]> = [
  ['n', (v) => (typeof v === 'number' && v > 1 ? 'Claude returns one choice per request' : undefined)],
  ['logprobs', (v) => (v === true ? 'Claude does not return log probabilities' : undefined)],
  ['top_logprobs', (v) => (typeof v === 'number' && v > 0 ? 'Claude does not return log probabilities' : undefined)],
  ['presence_penalty', (v) => (typeof v === 'number' && v !== 0 ? 'Claude has no presence penalty' : undefined)],
  ['frequency_penalty', (v) => (typeof v === 'number' && v !== 0 ? 'Claude has no frequency penalty' : undefined)],
  ['logit_bias', (v) => (isRecord(v) && Object.keys(v).length > 0 ? 'Claude has no logit bias' : undefined)],
  ['response_format', responseFormatProblem],
  ['audio', (v) => (v !== undefined && v !== null ? 'Claude does not produce audio' : undefined)],
  ['modalities', (v) => (Array.isArray(v) && v.some((m) => m !== 'text') ? 'Claude produces text only' : undefined)],
  ['prediction', (v) => (v !== undefined && v !== null ? 'Claude has no predicted outputs' : undefined)],
  ['web_search_options', (v) => (v !== undefined && v !== null ? 'Claude web search is not exposed through keygate' : undefined)],
  ['functions', (v) => (v !== undefined && v !== null ? 'use tools instead of the deprecated functions' : undefined)],
  ['function_call', (v) => (v !== undefined && v !== null ? 'use tool_choice instead of the deprecated function_call' : undefined)],
];

/**
 * A JSON schema is Claude's structured outputs (see {@link outputFormat}). Claude has no JSON mode
 * without a schema: `json_object` is refused rather than imitated (a forced tool would answer with a
 * tool call the client did not declare).
 */
function responseFormatProblem(format: unknown): string | undefined {
  if (format === undefined || format === null) return undefined;
  const type = isRecord(format) ? format.type : undefined;
  if (type === 'text' || type === 'json_schema') return undefined;
  if (type === 'json_object')
    return 'Claude has no JSON mode without a schema; send response_format json_schema (structured outputs) or describe the format in the prompt';
  return 'use text or json_schema';
}

/**
 * `response_format: {type: "json_schema", json_schema: {schema}}` as Claude's structured outputs,
 * `output_config.format`, with the schema adapted to the subset Claude takes. The models that have
 * them (Claude Sonnet 4.5, Opus 4.5, Haiku 4.5 and later) answer with JSON text; older ones refuse
 * the field, and their refusal is passed on.
 */
function outputFormat(format: unknown): MessagesRequest['output_config'] {
  if (!isRecord(format) || format.type !== 'json_schema') return undefined;
  const spec = format.json_schema;
  if (!isRecord(spec) || !isRecord(spec.schema))
    throw invalid('response_format.json_schema.schema', 'response_format json_schema needs json_schema.schema, a JSON Schema object');
  return { format: { type: 'json_schema', schema: claudeOutputSchema(spec.schema, 'response_format.json_schema.schema') } };
}

/** Media types Anthropic accepts for image blocks. */
const IMAGE_TYPES = new Set(['image/jpeg', 'image/png', 'image/gif', 'image/webp']);

/**
 * Translates a validated OpenAI chat-completions body into an Anthropic Messages body (without
 * `stream`), in one pass over the messages. Throws a {@link GatewayError} (400) for what Anthropic
 * cannot express, so a rejected request never reaches the upstream. Nothing is deep-copied: tool
 * schemas and image data are referenced as the client sent them.
 *
 * System and developer messages, wherever they stand, become the top-level `system` (one paragraph
 * each, in order); `user` (else `safety_identifier`) becomes `metadata.user_id`.
 */
export function toMessagesRequest(body: ChatCompletionRequest): MessagesRequest {
  for (const [param, check] of UNSUPPORTED_PARAMS) {
    const why = check(body[param]);
    if (why !== undefined) throw unsupported(param, why);
  }

  const system: string[] = [];
  const messages: AnthropicMessageParam[] = [];
  const input = body.messages;
  // Anthropic pairs every tool_result with a tool_use of the assistant turn just before it, and
  // every tool_use with a result: the calls of the last assistant message still unanswered.
  let pending = new Map<string, string>();
  const unanswered = (i: number): GatewayError => {
    const [id, where] = pending.entries().next().value as [string, string];
    return invalid(
      `messages[${i}]`,
      `${where} (id ${id}) has no tool message answering it before messages[${i}]; Claude needs every tool call answered`,
    );
  };
  for (let i = 0; i < input.length; i++) {
    const m = input[i];
    switch (m.role) {
      case 'system':
      case 'developer':
        // Anthropic has one top-level system prompt: every system message joins it, in order.
        systemTexts(m.content, i, system);
        break;
      case 'user':
        if (pending.size) throw unanswered(i);
        append(messages, 'user', userContent(m.content, i));
        break;
      case 'assistant': {
        // Consecutive assistant messages merge into one turn, their calls too (some clients send
        // parallel calls as one message each); after a tool result, calls still open are unanswered.
        const merging = messages.length > 0 && messages[messages.length - 1].role === 'assistant';
        if (pending.size && !merging) throw unanswered(i);
        append(messages, 'assistant', assistantContent(m, i));
        const calls = new Map(
          (Array.isArray(m.tool_calls) ? m.tool_calls : []).flatMap((c, k) =>
            isRecord(c) && typeof c.id === 'string' ? [[c.id, `messages[${i}].tool_calls[${k}]`] as [string, string]] : [],
          ),
        );
        pending = merging ? new Map([...pending, ...calls]) : calls;
        break;
      }
      case 'tool': {
        // Consecutive tool results (and a user message after them) merge into one user turn.
        const block = toolResult(m, i);
        if (!pending.delete(m.tool_call_id as string))
          throw invalid(
            `messages[${i}].tool_call_id`,
            `messages[${i}].tool_call_id does not match an unanswered tool call of the assistant message before it`,
          );
        append(messages, 'user', [block]);
        break;
      }
      default:
        throw unsupported(`messages[${i}].role`, `role "${m.role}" has no Anthropic equivalent`);
    }
  }
  // The conversation's end answers nothing either (OpenAI refuses it too).
  if (pending.size) {
    const [id, where] = pending.entries().next().value as [string, string];
    throw invalid('messages', `${where} (id ${id}) has no tool message answering it; Claude needs every tool call answered`);
  }
  if (messages.length === 0) throw invalid('messages', 'anthropic models need at least one user or assistant message');
  // Claude reads a conversation that ends with an assistant turn as a prefill to continue (newer
  // models refuse it): only the client's own final assistant message may mean that. A blank last
  // user turn (Anthropic refuses empty text) or trailing system messages would make one silently.
  const lastIndex = input.length - 1;
  if (input[lastIndex].role !== 'assistant' && messages[messages.length - 1].role === 'assistant') {
    const blank = input[lastIndex].role === 'user' || input[lastIndex].role === 'tool';
    throw unsupported(
      blank ? `messages[${lastIndex}].content` : `messages[${lastIndex}].role`,
      blank
        ? 'Claude refuses an empty message, and without it the conversation would end with the assistant turn before it (which Claude continues instead of answering)'
        : 'after the last assistant turn only system messages follow, so Claude would continue that turn instead of answering; end with a user message',
    );
  }
  trimFinalAssistantText(messages);

  const out: MessagesRequest = { model: body.model, max_tokens: maxTokens(body), messages };
  if (system.length) out.system = system.join('\n\n');
  const temperature = num(body.temperature);
  if (temperature !== undefined) {
    if (temperature < 0 || temperature > 1) throw unsupported('temperature', 'Claude takes a temperature between 0 and 1');
    out.temperature = temperature;
  }
  // Newer Claude models refuse temperature and top_p together, and many OpenAI clients send
  // top_p: 1 by default. A top_p of 1 keeps every token (no sampling cut): the same as none, so it
  // is not sent; alongside a top_p below 1, a temperature of 1 (Anthropic's default) is not either.
  const topP = num(body.top_p);
  if (topP !== undefined && topP !== 1) {
    out.top_p = topP;
    if (out.temperature === 1) delete out.temperature;
  }
  const stop = stopSequences(body.stop);
  if (stop) out.stop_sequences = stop;
  const tools = toolDefinitions(body.tools);
  if (tools) out.tools = tools;
  const choice = toolChoice(body.tool_choice, tools !== undefined, body.parallel_tool_calls === false);
  if (choice) out.tool_choice = choice;
  const user = typeof body.user === 'string' && body.user !== '' ? body.user : body.safety_identifier;
  if (typeof user === 'string' && user !== '') out.metadata = { user_id: user };
  const format = outputFormat(body.response_format);
  if (format) out.output_config = format;
  applyReasoningEffort(out, body.reasoning_effort, limitParam(body));
  return out;
}

/**
 * The field {@link maxTokens} took its value from: `max_completion_tokens` when it is the smaller
 * (or only) one sent, else `max_tokens` (also where keygate's policy put the product's cap, the
 * client having sent neither).
 */
function limitParam(body: ChatCompletionRequest): LimitParam {
  const a = num(body.max_tokens);
  const b = num(body.max_completion_tokens);
  return b !== undefined && (a === undefined || b <= a) ? 'max_completion_tokens' : 'max_tokens';
}

/** `max_completion_tokens` (OpenAI's current name) or `max_tokens`, the smaller when both are set. */
function maxTokens(body: ChatCompletionRequest): number {
  const a = num(body.max_tokens);
  const b = num(body.max_completion_tokens);
  const max = a === undefined ? b : b === undefined ? a : Math.min(a, b);
  // keygate's policy sets max_tokens when the client sent none, so this is a wiring bug, not a client one.
  if (max === undefined) throw invalid('max_tokens', 'max_tokens is required for anthropic models');
  return max;
}

/**
 * Adds a turn, merging it into the previous one when the role repeats (Anthropic wants alternating
 * turns). A turn stays a plain string until something is merged into it. Content without visible
 * text is skipped: Anthropic rejects text blocks that are empty or only whitespace, and empty turns.
 */
function append(messages: AnthropicMessageParam[], role: 'user' | 'assistant', content: string | AnthropicRequestBlock[]): void {
  if (typeof content === 'string' ? !hasText(content) : content.length === 0) return;
  const last = messages[messages.length - 1];
  if (last?.role !== role) {
    messages.push({ role, content });
    return;
  }
  const blocks = typeof last.content === 'string' ? [text(last.content)] : last.content;
  if (typeof content === 'string') blocks.push(text(content));
  else for (const block of content) blocks.push(block);
  last.content = blocks;
}

/** Whether a text has something besides whitespace: Anthropic refuses text blocks that do not. */
function hasText(value: string): boolean {
  return /\S/.test(value);
}

/**
 * A conversation that ends with an assistant turn asks Claude to continue it (a prefill), and
 * Anthropic refuses a final assistant text that ends with whitespace: it is trimmed.
 */
function trimFinalAssistantText(messages: AnthropicMessageParam[]): void {
  const last = messages[messages.length - 1];
  if (last.role !== 'assistant') return;
  if (typeof last.content === 'string') {
    last.content = last.content.trimEnd();
    return;
  }
  const block = last.content[last.content.length - 1];
  if (block.type === 'text') last.content[last.content.length - 1] = text(block.text.trimEnd());
}

function text(value: string): AnthropicTextBlock {
  return { type: 'text', text: value };
}

/** System and developer content: a string or text parts, each one paragraph of the system prompt. */
function systemTexts(content: ChatMessage['content'], i: number, out: string[]): void {
  if (typeof content === 'string') {
    if (hasText(content)) out.push(content);
    return;
  }
  if (!Array.isArray(content)) return;
  for (let j = 0; j < content.length; j++) {
    const part = content[j];
    if (part.type !== 'text' || typeof part.text !== 'string')
      throw unsupported(`messages[${i}].content[${j}].type`, 'system messages take text parts only');
    if (hasText(part.text)) out.push(part.text);
  }
}

function userContent(content: ChatMessage['content'], i: number): string | AnthropicRequestBlock[] {
  // OpenAI requires a user message's content; without it the turn would vanish, or the request be refused for another reason.
  if (content === undefined || content === null) throw invalid(`messages[${i}].content`, `messages[${i}].content is required`);
  if (typeof content === 'string') return content;
  if (!Array.isArray(content)) return '';
  const blocks: AnthropicRequestBlock[] = [];
  for (let j = 0; j < content.length; j++) {
    const part = content[j];
    const where = `messages[${i}].content[${j}]`;
    switch (part.type) {
      case 'text':
        if (typeof part.text !== 'string') throw invalid(`${where}.text`, `${where}.text must be a string`);
        if (hasText(part.text)) blocks.push(text(part.text));
        break;
      case 'image_url': {
        const image = part.image_url;
        const url = isRecord(image) ? image.url : image;
        if (typeof url !== 'string') throw invalid(`${where}.image_url`, `${where}.image_url.url must be a string`);
        blocks.push(imageBlock(url, `${where}.image_url`));
        break;
      }
      case 'file': {
        const file = part.file;
        if (!isRecord(file) || typeof file.file_data !== 'string') {
          throw unsupported(
            `${where}.file`,
            'only inline PDFs (file_data as a base64 data URL) can be sent; file_id refers to OpenAI storage',
          );
        }
        const { mediaType, data } = splitDataUrl(file.file_data, `${where}.file.file_data`);
        if (mediaType !== 'application/pdf') throw unsupported(`${where}.file`, `Claude reads PDF documents, not ${mediaType}`);
        blocks.push({ type: 'document', source: { type: 'base64', media_type: 'application/pdf', data } });
        break;
      }
      default:
        // A part that names no type is malformed, as OpenAI would answer it; one of another type is OpenAI's alone.
        if (typeof part.type !== 'string')
          throw invalid(`${where}.type`, part.type === undefined ? `${where}.type is required` : `${where}.type must be a string`);
        throw unsupported(`${where}.type`, `content part type "${part.type}" has no Anthropic equivalent`);
    }
  }
  return blocks;
}

/** A data URL becomes inline bytes; an http(s) URL is passed on for Anthropic to fetch (keygate fetches nothing). */
function imageBlock(url: string, param: string): AnthropicRequestBlock {
  if (url.startsWith('https://') || url.startsWith('http://')) return { type: 'image', source: { type: 'url', url } };
  if (!url.startsWith('data:')) throw invalid(param, `${param} must be an http(s) URL or a base64 data URL`);
  const { mediaType, data } = splitDataUrl(url, param);
  if (!IMAGE_TYPES.has(mediaType)) throw unsupported(param, `Claude reads JPEG, PNG, GIF and WebP images, not ${mediaType}`);
  return { type: 'image', source: { type: 'base64', media_type: mediaType, data } };
}

/** An assistant message as Claude's turn: its thinking blocks (sent back as they came), text, then tool calls. */
function assistantContent(m: ChatMessage, i: number): string | AnthropicRequestBlock[] {
  const content = m.content;
  const calls = m.tool_calls;
  const hasCalls = Array.isArray(calls) && calls.length > 0;
  const blocks: AnthropicRequestBlock[] = thinkingBlocksOf(m.thinking_blocks, `messages[${i}].thinking_blocks`);
  if (typeof content === 'string' && !hasCalls && blocks.length === 0) return content;
  if (typeof content === 'string') {
    if (hasText(content)) blocks.push(text(content));
  } else if (Array.isArray(content)) {
    for (let j = 0; j < content.length; j++) {
      const part = content[j];
      const value = part.type === 'text' ? part.text : part.type === 'refusal' ? part.refusal : undefined;
      if (typeof value !== 'string')
        throw unsupported(`messages[${i}].content[${j}].type`, 'assistant messages take text and refusal parts only');
      if (hasText(value)) blocks.push(text(value));
    }
  }
  if (hasCalls) for (let k = 0; k < calls.length; k++) blocks.push(toolUse(calls[k], `messages[${i}].tool_calls[${k}]`));
  // Thinking alone (an answer cut short while thinking) is left out: Claude refuses a turn that ends in thinking.
  return blocks.every((b) => b.type === 'thinking' || b.type === 'redacted_thinking') ? [] : blocks;
}

/** The characters Anthropic takes in a `tool_use` block's id (and a `tool_result`'s `tool_use_id`). */
const ANTHROPIC_TOOL_ID = /^[a-zA-Z0-9_-]+$/;

/**
 * A tool call's id as Anthropic takes it: unchanged when it is one Anthropic could have written;
 * else (a history from another host: `functions.get_weather:0`, `call_…|fc_…`) its other characters
 * as `_`, with a digest of the whole id after them so two ids that differ only there stay apart.
 * The same for the call and its result, so they still match; Claude's answer names its own ids.
 */
export function anthropicToolId(id: string): string {
  if (ANTHROPIC_TOOL_ID.test(id)) return id;
  return `${id.replace(/[^a-zA-Z0-9_-]/g, '_')}_${createHash('sha256').update(id).digest('hex').slice(0, 12)}`;
}

/** An OpenAI tool call as a `tool_use` block; its id is kept (see {@link anthropicToolId}) so the later tool result still matches. */
function toolUse(call: unknown, where: string): AnthropicToolUseBlock {
  const fn = isRecord(call) ? call.function : undefined;
  if (
    !isRecord(call) ||
    !isRecord(fn) ||
    typeof call.id !== 'string' ||
    typeof fn.name !== 'string' ||
    (call.type !== undefined && call.type !== 'function')
  ) {
    throw invalid(where, `${where} must be a function tool call with an id and a name`);
  }
  return {
    type: 'tool_use',
    id: anthropicToolId(call.id),
    name: fn.name,
    input: parseArguments(fn.arguments, `${where}.function.arguments`),
  };
}

/** Anthropic's `input` is a JSON object; OpenAI's `arguments` is that object serialized. */
function parseArguments(raw: unknown, param: string): Record<string, unknown> {
  if (raw === undefined || raw === null || raw === '') return {};
  if (typeof raw !== 'string') throw invalid(param, `${param} must be a JSON string`);
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw);
  } catch {
    throw invalid(param, `${param} is not valid JSON`);
  }
  if (!isRecord(parsed)) throw invalid(param, `${param} must encode a JSON object`);
  return parsed;
}

function toolResult(m: ChatMessage, i: number): AnthropicRequestBlock {
  if (typeof m.tool_call_id !== 'string' || m.tool_call_id === '')
    throw invalid(`messages[${i}].tool_call_id`, `messages[${i}].tool_call_id is required`);
  const id = anthropicToolId(m.tool_call_id);
  const content = m.content;
  if (typeof content === 'string')
    return hasText(content) ? { type: 'tool_result', tool_use_id: id, content } : { type: 'tool_result', tool_use_id: id };
  const blocks: AnthropicTextBlock[] = [];
  if (Array.isArray(content)) {
    for (let j = 0; j < content.length; j++) {
      const part = content[j];
      if (part.type !== 'text' || typeof part.text !== 'string')
        throw unsupported(`messages[${i}].content[${j}].type`, 'tool messages take text parts only');
      if (hasText(part.text)) blocks.push(text(part.text));
    }
  }
  return blocks.length ? { type: 'tool_result', tool_use_id: id, content: blocks } : { type: 'tool_result', tool_use_id: id };
}

/**
 * OpenAI's `stop` as Anthropic's `stop_sequences`. Empty strings ask for nothing and are dropped;
 * a sequence of whitespace only (`"\n"` is common) Anthropic refuses, and dropping it would let
 * the answer run on where the client wanted it cut, so the request is refused before it is sent.
 */
function stopSequences(stop: unknown): string[] | undefined {
  const list = typeof stop === 'string' ? [stop] : Array.isArray(stop) ? stop : [];
  const out = list.filter((s): s is string => typeof s === 'string' && s !== '');
  if (out.some((s) => !hasText(s)))
    throw unsupported('stop', 'Claude does not accept stop sequences made only of whitespace (such as "\\n")');
  return out.length ? out : undefined;
}

/** OpenAI function tools as Anthropic tools; the JSON Schema is passed by reference, unchanged. */
function toolDefinitions(tools: unknown): AnthropicTool[] | undefined {
  if (!Array.isArray(tools) || tools.length === 0) return undefined;
  const out: AnthropicTool[] = [];
  for (let k = 0; k < tools.length; k++) {
    const tool: unknown = tools[k];
    if (!isRecord(tool) || tool.type !== 'function' || !isRecord(tool.function))
      throw unsupported(`tools[${k}].type`, 'only function tools can be declared');
    const fn = tool.function;
    if (typeof fn.name !== 'string' || fn.name === '') throw invalid(`tools[${k}].function.name`, `tools[${k}].function.name is required`);
    // Dots and colons (namespaced MCP tools) are valid for Gemini and many hosts; Anthropic refuses them.
    if (/[.:]/.test(fn.name))
      throw unsupported(`tools[${k}].function.name`, 'Claude takes only letters, digits, underscores and dashes in tool names');
    const def: AnthropicTool = { name: fn.name, input_schema: inputSchema(fn.parameters) };
    if (typeof fn.description === 'string') def.description = fn.description;
    out.push(def);
  }
  return out;
}

/**
 * A function's parameters as Anthropic's `input_schema`, which must say `"type": "object"`. OpenAI
 * takes a function without parameters, or a schema that leaves the type out (`{}`, or only
 * `properties`), as an object: so does this, adding the type to a shallow copy (the client's schema
 * stays as sent). A schema that names another type is passed on for Anthropic to refuse.
 */
function inputSchema(parameters: unknown): Record<string, unknown> {
  if (!isRecord(parameters)) return { type: 'object', properties: {} };
  if (parameters.type !== undefined) return parameters;
  return { type: 'object', properties: {}, ...parameters };
}

/**
 * OpenAI `tool_choice` (and `parallel_tool_calls: false`) as Anthropic's. Without tools, `auto` and
 * `none` mean nothing and are dropped; forcing a tool that is not declared is the client's mistake.
 */
function toolChoice(choice: unknown, hasTools: boolean, serial: boolean): AnthropicToolChoice | undefined {
  if (choice === undefined || choice === null) return hasTools && serial ? { type: 'auto', disable_parallel_tool_use: true } : undefined;
  if (choice === 'none') return hasTools ? { type: 'none' } : undefined;
  if (choice === 'auto') return hasTools ? withSerial({ type: 'auto' }, serial) : undefined;
  if (!hasTools) throw invalid('tool_choice', 'tool_choice needs tools');
  if (choice === 'required') return withSerial({ type: 'any' }, serial);
  if (isRecord(choice) && choice.type === 'function' && isRecord(choice.function) && typeof choice.function.name === 'string') {
    return withSerial({ type: 'tool', name: choice.function.name }, serial);
  }
  throw unsupported('tool_choice', 'use auto, none, required or a named function');
}

/** `disable_parallel_tool_use` is only defined on the choices that allow tool use. */
function withSerial(choice: Exclude<AnthropicToolChoice, { type: 'none' }>, serial: boolean): AnthropicToolChoice {
  if (serial) choice.disable_parallel_tool_use = true;
  return choice;
}

/* ------------------------------------------------------------------ response: Anthropic -> OpenAI */

/** `chatcmpl-<Anthropic message id>`, so a completion can be traced to Anthropic's logs. */
export function completionId(messageId: string | undefined, fallback: string): string {
  return messageId ? `chatcmpl-${messageId}` : fallback;
}

/**
 * Anthropic `stop_reason` as OpenAI's `finish_reason`. `pause_turn` (a server tool paused a long
 * turn) is a normal end for a client that cannot resume it; `refusal` is a safety stop;
 * `model_context_window_exceeded` ran out of room like `max_tokens`. Unknown future reasons are `stop`.
 */
export function finishReason(reason: AnthropicStopReason | null | undefined): OpenAiFinishReason {
  switch (reason) {
    case 'max_tokens':
    case 'model_context_window_exceeded':
      return 'length';
    case 'tool_use':
      return 'tool_calls';
    case 'refusal':
      return 'content_filter';
    default:
      return 'stop';
  }
}

/**
 * Anthropic usage as OpenAI's. Anthropic's `input_tokens` excludes the tokens written to and read
 * from the prompt cache; OpenAI's `prompt_tokens` includes cached tokens, so all three are added.
 * A compatible host's counts come as it wrote them: a cache count that is not a count (a string, a
 * negative or fractional number) is left out as if unsaid; an input or output count that is not one,
 * or is left out (Anthropic always sends both: read as 0, a missing input count would bill the
 * prompt as free), makes the usage unreported (null), so keygate's estimate bills the request.
 */
export function toUsage(u: AnthropicUsage): OpenAiUsage | null {
  const input = tokenCount(u.input_tokens);
  const completion = tokenCount(u.output_tokens);
  if (input === null || completion === null) return null;
  const cacheRead = tokenCount(u.cache_read_input_tokens);
  const cacheWrite = tokenCount(u.cache_creation_input_tokens);
  const prompt = input + (cacheWrite ?? 0) + (cacheRead ?? 0);
  const usage: OpenAiUsage = { prompt_tokens: prompt, completion_tokens: completion, total_tokens: prompt + completion };
  if (cacheRead !== null) usage.prompt_tokens_details = { cached_tokens: cacheRead };
  if (cacheWrite === null) return usage;
  const oneHour = tokenCount(u.cache_creation?.ephemeral_1h_input_tokens);
  return withCacheWrites(usage, cacheWrite, oneHour ?? undefined);
}

function isText(block: AnthropicResponseBlock): block is AnthropicTextBlock {
  return block.type === 'text' && typeof (block as Json).text === 'string';
}

function isToolUse(block: AnthropicResponseBlock): block is AnthropicToolUseBlock {
  const b = block as Json;
  return b.type === 'tool_use' && typeof b.id === 'string' && typeof b.name === 'string';
}

/** A thinking block of an answer, as the client sends it back (see {@link thinkingBlocksOf}); undefined for any other block. */
function thinkingBlock(block: AnthropicResponseBlock): ThinkingBlock | undefined {
  const b = block as Json;
  if (b.type === 'thinking' && typeof b.thinking === 'string')
    return { type: 'thinking', thinking: b.thinking, signature: typeof b.signature === 'string' ? b.signature : '' };
  if (b.type === 'redacted_thinking' && typeof b.data === 'string') return { type: 'redacted_thinking', data: b.data };
  return undefined;
}

/**
 * A Messages answer as an OpenAI chat completion: text blocks joined into `content` (null when
 * there are none), tool_use blocks as `tool_calls` in order. Claude's thinking, when it thought,
 * comes as `reasoning_content` (its text) and `thinking_blocks` (the signed blocks, to send back
 * with the message). Server-tool blocks are not part of the answer and are skipped.
 */
export function toChatCompletion(
  res: AnthropicMessage,
  meta: CompletionMeta,
): { completion: OpenAiChatCompletion; usage: OpenAiUsage | null } {
  if (!Array.isArray(res.content)) throw new UpstreamError('protocol', PROVIDER, 'response has no content');
  let content: string | null = null;
  const toolCalls: OpenAiToolCall[] = [];
  const thinking: ThinkingBlock[] = [];
  for (const block of res.content) {
    if (isText(block)) content = content === null ? block.text : content + block.text;
    else if (isToolUse(block))
      toolCalls.push({ id: block.id, type: 'function', function: { name: block.name, arguments: JSON.stringify(block.input ?? {}) } });
    else {
      const thought = thinkingBlock(block);
      if (thought) thinking.push(thought);
    }
  }
  const message: OpenAiChatCompletion['choices'][number]['message'] = { role: 'assistant', content, refusal: null };
  if (toolCalls.length) message.tool_calls = toolCalls;
  if (thinking.length) {
    message.reasoning_content = thinking.flatMap((b) => (b.type === 'thinking' && b.thinking !== '' ? [b.thinking] : [])).join('\n\n');
    message.thinking_blocks = thinking;
  }
  const completion: OpenAiChatCompletion = {
    id: completionId(res.id, meta.fallbackId),
    object: 'chat.completion',
    created: meta.created,
    model: meta.model,
    choices: [{ index: 0, message, logprobs: null, finish_reason: finishReason(res.stop_reason) }],
  };
  const usage = res.usage ? toUsage(res.usage) : null;
  if (usage) completion.usage = usage;
  return { completion, usage };
}

/* ------------------------------------------------------------------ stream: Anthropic events -> OpenAI chunks */

/** Options of an {@link AnthropicStreamTranslator}. */
export interface StreamMeta extends CompletionMeta {
  /** The client asked for the usage chunk (`stream_options.include_usage`). */
  clientWantsUsage: boolean;
}

/**
 * Turns the events of a Messages stream into OpenAI `chat.completion.chunk`s, one event at a time
 * (nothing is buffered). Stateful (completion id, which content block is which tool call, usage,
 * finish) but free of I/O.
 *
 * - `message_start` gives the id and the prompt usage, and becomes OpenAI's role chunk;
 * - text deltas become `delta.content`; a `tool_use` block start becomes a tool call with its id,
 *   name and empty arguments, its `input_json_delta`s argument fragments under the same index
 *   (tool calls are numbered from 0 in order, whatever their block index);
 * - `message_delta` gives the finish reason and the final (cumulative) usage;
 * - `message_stop` ends the stream with the usage: a `choices: []` chunk when the client asked for
 *   it (every earlier chunk then carries `"usage": null`, as OpenAI's do), else an event for
 *   keygate only, and no chunk has a `usage` key;
 * - a tool call that streamed no argument JSON gets `{}` when its block stops;
 * - Claude's thinking streams as `delta.reasoning_content` (a blank line between two blocks); the
 *   blocks themselves, signed (redacted ones too), come in one chunk as `delta.thinking_blocks` when
 *   the message ends, before the finish, so the client can send them back with the message, whether
 *   it adds up array deltas or (as the OpenAI SDK's stream helper does) keeps a field's last value;
 * - `ping`, other block stops, citation deltas and unknown events are skipped;
 * - an `error` event throws `UpstreamError('stream_error')`.
 */
export class AnthropicStreamTranslator {
  private id: string | undefined;
  /** What every chunk opens with (see {@link chunkHead}). */
  private head: string | undefined;
  private readonly usage: AnthropicUsage = {};
  /** Anthropic content-block index -> the OpenAI tool call it streams. */
  private readonly tools = new Map<number, { index: number; hasArguments: boolean }>();
  /** Anthropic content-block index -> the thinking block it streams, gathered to be sent whole with its signature. */
  private readonly thoughts = new Map<number, { thinking: string; signature: string }>();
  /** Thinking blocks complete and not yet sent. */
  private readonly thoughtsDone: ThinkingBlock[] = [];
  /** Whether thinking text went out already (a later block's text then starts after a blank line). */
  private reasoned = false;
  private finished = false;
  private ended = false;

  constructor(private readonly meta: StreamMeta) {}

  /** Whether `message_stop` has been seen: the stream is complete, whatever follows it. */
  get stopped(): boolean {
    return this.ended;
  }

  /** Whether the stop reason has been given (`message_delta`): the answer is whole, `message_stop` or not. */
  get answered(): boolean {
    return this.finished;
  }

  /** The chunks for one event's data. */
  push(event: AnthropicStreamEvent): StreamEvent[] {
    if (this.ended) return [];
    switch (event.type) {
      case 'message_start': {
        if (this.id !== undefined) return [];
        this.id = completionId(event.message?.id, this.meta.fallbackId);
        const role = this.chunk({ role: 'assistant', content: '', refusal: null }, null);
        if (!event.message?.usage) return [role];
        mergeUsage(this.usage, event.message.usage);
        // `usage: {}` reports nothing: no running usage of zeros (keygate's estimate then bills it).
        const running = this.runningUsage();
        return running ? [{ ...role, runningUsage: running }] : [role];
      }
      case 'content_block_start':
        return this.blockStart(event.index, event.content_block);
      case 'content_block_delta': {
        this.started();
        const delta = event.delta;
        if (delta.type === 'text_delta' && typeof delta.text === 'string' && delta.text !== '') {
          return [{ ...this.chunk({ content: delta.text }, null), text: delta.text }];
        }
        if (delta.type === 'input_json_delta' && typeof delta.partial_json === 'string' && delta.partial_json !== '') {
          const tool = this.tools.get(event.index);
          if (tool === undefined) throw new UpstreamError('protocol', PROVIDER, 'tool input for a block that is not a tool call');
          tool.hasArguments = true;
          const toolCalls = [{ index: tool.index, function: { arguments: delta.partial_json } }];
          return [{ ...this.chunk({ tool_calls: toolCalls }, null), text: delta.partial_json }];
        }
        if (delta.type === 'thinking_delta' || delta.type === 'signature_delta') return this.thinkingDelta(event.index, delta);
        return [];
      }
      case 'message_delta': {
        this.started();
        const running: StreamEvent[] = [];
        if (event.usage) {
          mergeUsage(this.usage, event.usage);
          const usage = this.runningUsage();
          if (usage) running.push({ data: null, runningUsage: usage });
        }
        const reason = event.delta?.stop_reason;
        const thoughts = this.thoughtsChunk();
        if (reason === undefined || reason === null || this.finished) return [...thoughts, ...running];
        this.finished = true;
        return [...thoughts, this.chunk({}, finishReason(reason)), ...running];
      }
      case 'message_stop': {
        this.started();
        this.ended = true;
        // A stop without a stop_reason still ends the choice, so clients see a finish_reason.
        const out = this.thoughtsChunk();
        if (!this.finished) out.push(this.chunk({}, 'stop'));
        this.finished = true;
        out.push(this.usageEvent());
        return out;
      }
      case 'error':
        throw anthropicStreamError(event.error?.type, event.error?.message);
      case 'content_block_stop': {
        const thought = this.thoughts.get(event.index);
        if (thought !== undefined) {
          this.thoughts.delete(event.index);
          this.thoughtsDone.push({ type: 'thinking', ...thought });
          return [];
        }
        // A call without arguments streams no JSON at all; OpenAI clients expect `{}` to parse.
        const tool = this.tools.get(event.index);
        if (tool === undefined || tool.hasArguments) return [];
        tool.hasArguments = true;
        return [this.chunk({ tool_calls: [{ index: tool.index, function: { arguments: '{}' } }] }, null)];
      }
      case 'ping':
        return [];
      default:
        // Anthropic's versioning policy allows new event types: they are skipped, not fatal.
        return [];
    }
  }

  /**
   * Checks the stream ended with `message_stop`, or after the stop reason (a compatible host that
   * leaves `message_stop` out: the answer is whole, and its closing events are given here); a clean
   * close before either is a truncated answer.
   */
  end(): StreamEvent[] {
    if (this.ended) return [];
    if (!this.finished) throw new UpstreamError('connection_lost', PROVIDER, 'stream ended without message_stop');
    this.ended = true;
    return [...this.thoughtsChunk(), this.usageEvent()];
  }

  private blockStart(blockIndex: number, block: AnthropicResponseBlock | undefined): StreamEvent[] {
    this.started();
    if (!block) return [];
    const thought = thinkingBlock(block);
    if (thought === undefined) return this.answerBlockStart(blockIndex, block);
    if (thought.type === 'redacted_thinking') {
      this.thoughtsDone.push(thought);
      return [];
    }
    this.thoughts.set(blockIndex, { thinking: '', signature: thought.signature });
    return this.reasoning(blockIndex, thought.thinking);
  }

  private answerBlockStart(blockIndex: number, block: AnthropicResponseBlock): StreamEvent[] {
    if (isToolUse(block)) {
      const index = this.tools.size;
      this.tools.set(blockIndex, { index, hasArguments: false });
      return [this.chunk({ tool_calls: [{ index, id: block.id, type: 'function', function: { name: block.name, arguments: '' } }] }, null)];
    }
    // Text blocks start empty; should one ever carry text, it is not lost.
    if (isText(block) && block.text !== '') return [{ ...this.chunk({ content: block.text }, null), text: block.text }];
    return [];
  }

  /** The thinking blocks complete and not yet sent, as one chunk (none when there are none). */
  private thoughtsChunk(): StreamEvent[] {
    return this.thoughtsDone.length === 0 ? [] : [this.chunk({ thinking_blocks: this.thoughtsDone.splice(0) }, null)];
  }

  /** A thinking block's text (sent on as `reasoning_content`) or signature (kept for the whole block). */
  private thinkingDelta(blockIndex: number, delta: Json): StreamEvent[] {
    const thought = this.thoughts.get(blockIndex);
    if (thought === undefined) throw new UpstreamError('protocol', PROVIDER, 'thinking for a block that is not a thinking block');
    if (delta.type === 'signature_delta') {
      if (typeof delta.signature === 'string') thought.signature += delta.signature;
      return [];
    }
    return typeof delta.thinking === 'string' ? this.reasoning(blockIndex, delta.thinking) : [];
  }

  /** Thinking text: kept for its block, sent on as `reasoning_content`. */
  private reasoning(blockIndex: number, text: string): StreamEvent[] {
    const thought = this.thoughts.get(blockIndex);
    if (thought === undefined || text === '') return [];
    const sent = thought.thinking === '' && this.reasoned ? `\n\n${text}` : text;
    thought.thinking += text;
    this.reasoned = true;
    return [{ ...this.chunk({ reasoning_content: sent }, null), text }];
  }

  private started(): void {
    if (this.id === undefined) throw new UpstreamError('protocol', PROVIDER, 'stream event before message_start');
  }

  /** The usage reported so far; none while nothing is (`usage: {}`) or a main count is not a count. */
  private runningUsage(): OpenAiUsage | null {
    return Object.keys(this.usage).length ? toUsage(this.usage) : null;
  }

  private usageEvent(): StreamEvent {
    // A compatible host that reported no usage at all, or none that reads as counts: no zeros, so
    // keygate's estimate bills the stream, and the client gets no usage chunk rather than a false one.
    const usage = this.runningUsage();
    if (!usage) return { data: null };
    if (!this.meta.clientWantsUsage) return { data: null, usage };
    const chunk = { id: this.id, object: 'chat.completion.chunk', created: this.meta.created, model: this.meta.model, choices: [], usage };
    return { data: JSON.stringify(chunk), usage };
  }

  private chunk(delta: Json, finish: OpenAiFinishReason | null): StreamEvent {
    // Serialised once the id is known (`message_start`, which sets it once).
    this.head ??= chunkHead(this.id, this.meta.created, this.meta.model);
    // OpenAI puts `"usage": null` on every chunk only when the client asked for the usage chunk.
    return { data: chunkText(this.head, 0, delta, finish, this.meta.clientWantsUsage) };
  }
}

/**
 * The HTTP status Anthropic documents for the error types it may also send inside a stream: an
 * in-stream `overloaded_error` "would normally correspond to an HTTP 529". Known as such, they are
 * retried like their status when they come before any content.
 */
const IN_STREAM_ERROR_STATUS: Readonly<Record<string, number>> = {
  overloaded_error: 529,
  rate_limit_error: 429,
  api_error: 500,
  invalid_request_error: 400,
};

/** The failure an in-stream `error` event stands for, with the status its type corresponds to. */
export function anthropicStreamError(type: string | undefined, message: string | undefined): UpstreamError {
  const status = type !== undefined && Object.hasOwn(IN_STREAM_ERROR_STATUS, type) ? IN_STREAM_ERROR_STATUS[type] : undefined;
  const text = message ?? type ?? 'error event';
  return new UpstreamError('stream_error', PROVIDER, text, status);
}

/**
 * Copies the counts `from` carries; `message_delta` usage is cumulative, so its counts replace
 * `message_start`'s. A count that is not one (a compatible host's string or negative number) never
 * replaces one that is: a later event's bad count does not spoil the usage read so far. Where none
 * was, it is kept, so that {@link toUsage} sees it said and not counted.
 */
export function mergeUsage(into: AnthropicUsage, from: AnthropicUsage): void {
  mergeCount(into, from, 'input_tokens');
  mergeCount(into, from, 'cache_creation_input_tokens');
  mergeCount(into, from, 'cache_read_input_tokens');
  if (typeof from.cache_creation === 'object' && from.cache_creation !== null) {
    const cacheCreation = { ...into.cache_creation };
    mergeCount(cacheCreation, from.cache_creation, 'ephemeral_5m_input_tokens');
    mergeCount(cacheCreation, from.cache_creation, 'ephemeral_1h_input_tokens');
    into.cache_creation = cacheCreation;
  }
  mergeCount(into, from, 'output_tokens');
}

/** `from[key]` into `into` when it is said, unless it is not a count and `into` already has one. */
function mergeCount<K extends string>(into: Partial<Record<K, number | null>>, from: Partial<Record<K, number | null>>, key: K): void {
  const value = from[key];
  if (value === undefined || value === null) return;
  if (tokenCount(value) !== null || tokenCount(into[key]) === null) into[key] = value;
}
