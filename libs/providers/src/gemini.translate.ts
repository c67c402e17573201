import { createHash } from 'node:crypto';
import { GatewayError } from '@keygate/errors';
import {
  chunkHead,
  chunkText,
  invalidParameter,
  isRecord,
  reasoningEffort,
  splitDataUrl,
  unsupportedParameter,
  type Json,
  type ReasoningEffort,
} from './translate.util';
import { tokenCount, type ChatCompletionRequest, type ChatMessage, type EmbeddingsRequest, type StreamEvent } from './chat.types';
import type { CompletionMeta, OpenAiChatCompletion, OpenAiFinishReason, OpenAiToolCall, OpenAiUsage } from './openai-response.types';
import type {
  BatchEmbedContentsRequest,
  GeminiCandidate,
  GeminiContent,
  GeminiErrorBody,
  GeminiFunctionCall,
  GeminiFunctionDeclaration,
  GeminiGenerationConfig,
  GeminiPart,
  GeminiSchema,
  GeminiUsageMetadata,
  GenerateContentRequest,
  GenerateContentResponse,
} from './gemini.types';
import { retryAfter, upstreamMessage } from './upstream-body.util';
import { UpstreamError } from './upstream.error';

export type { CompletionMeta, OpenAiChatCompletion, OpenAiFinishReason, OpenAiToolCall, OpenAiUsage } from './openai-response.types';

/*
 * Pure translation between OpenAI's chat-completions / embeddings formats and Gemini's
 * generateContent / batchEmbedContents. No I/O, no clock, no randomness: ids and timestamps come
 * in as arguments, so the golden fixtures in __conformance__/gemini pin every byte.
 */

const PROVIDER = 'gemini';

/** `FunctionDeclaration.name` is at most 64 characters long. */
export const GEMINI_MAX_FUNCTION_NAME = 64;
/** `generationConfig.stopSequences` holds at most 5. */
export const GEMINI_MAX_STOP_SEQUENCES = 5;
/** Gemini before 3 returns at most 8 candidates (`candidateCount`); Gemini 3 only one. */
export const GEMINI_MAX_CANDIDATES = 8;
/** `generationConfig.seed` is an int32; OpenAI's `seed` may be any 64-bit integer. */
export const GEMINI_SEED_RANGE = { min: -(2 ** 31), max: 2 ** 31 - 1 } as const;
/** `batchEmbedContents` rejects more requests than this in one call. */
export const GEMINI_EMBED_BATCH_SIZE = 100;
/** How many `batchEmbedContents` calls one embeddings request has in flight at most. */
export const GEMINI_EMBED_CONCURRENCY = 4;

function unsupported(param: string, why: string): GatewayError {
  return unsupportedParameter('gemini', param, why);
}

const invalid = invalidParameter;

/* ------------------------------------------------------------------ request: OpenAI -> Gemini */

/**
 * OpenAI parameters Gemini cannot honour. Rejected rather than dropped: a client that asks for
 * logprobs or a logit bias and silently gets none would draw wrong conclusions from the answer.
 * The value is the reason given to the client; the check treats null, false, 0, {} and [] as unset
 * (`top_logprobs: 0`, which some SDKs send by default, asks for nothing).
 */
const UNSUPPORTED_PARAMS: ReadonlyArray<readonly [string, string]> = [
  ['logprobs', 'Gemini log probabilities are not translated by keygate'],
  ['top_logprobs', 'Gemini log probabilities are not translated by keygate'],
  ['logit_bias', 'Gemini has no logit bias'],
  ['audio', 'audio output is not available through keygate for Gemini'],
  ['prediction', 'Gemini has no predicted outputs'],
  ['web_search_options', 'Gemini search grounding is not exposed through keygate'],
  ['functions', 'use tools instead of the deprecated functions'],
  ['function_call', 'use tool_choice instead of the deprecated function_call'],
];

function isSet(value: unknown): boolean {
  if (value === undefined || value === null || value === false || value === 0) return false;
  if (Array.isArray(value)) return value.length > 0;
  if (isRecord(value)) return Object.keys(value).length > 0;
  return true;
}

/**
 * Translates a validated OpenAI chat-completions body into a Gemini `generateContent` body, in one
 * pass over the messages. Throws a {@link GatewayError} (400) for what Gemini cannot express, so a
 * rejected request never reaches the upstream.
 */
export function toGenerateContentRequest(body: ChatCompletionRequest): GenerateContentRequest {
  for (const [param, why] of UNSUPPORTED_PARAMS) if (isSet(body[param])) throw unsupported(param, why);
  if (body.parallel_tool_calls === false) throw unsupported('parallel_tool_calls', 'Gemini cannot be told to make at most one call');
  const modalities = body.modalities;
  if (Array.isArray(modalities) && modalities.some((m) => m !== 'text')) throw unsupported('modalities', 'only text output is available');

  const system: GeminiPart[] = [];
  const contents: GeminiContent[] = [];
  // A functionResponse names its function (and, for Gemini 3, its call's id); OpenAI's tool message
  // gives only the id: remember the name of every call.
  const toolNames = new Map<string, string>();
  const signsCalls = requiresCallSignatures(body.model);
  const messages = body.messages;
  for (let i = 0; i < messages.length; i++) {
    const m = messages[i];
    switch (m.role) {
      case 'system':
      case 'developer':
        // Gemini has one system instruction: every system message joins it, in order.
        textParts(m.content, `messages[${i}]`, system);
        break;
      case 'user':
        append(contents, 'user', userParts(m.content, i));
        break;
      case 'assistant':
        append(contents, 'model', assistantParts(m, i, toolNames, signsCalls));
        break;
      case 'tool':
        append(contents, 'user', [functionResponsePart(m, i, toolNames)]);
        break;
      default:
        throw unsupported(`messages[${i}].role`, `role "${m.role}" has no Gemini equivalent`);
    }
  }
  if (contents.length === 0) throw invalid('messages', 'gemini models need at least one user or assistant message');
  // Gemini refuses a conversation that ends on a model turn (it does not continue one, as Claude
  // does a prefill): said here, naming what made it end so, rather than by Google after admission.
  if (contents[contents.length - 1].role === 'model') {
    const last = messages.length - 1;
    const role = messages[last].role;
    throw unsupported(
      role === 'user' ? `messages[${last}].content` : `messages[${last}].role`,
      role === 'assistant'
        ? 'Gemini answers a conversation that ends with a user message or tool results, and does not continue an assistant turn'
        : role === 'user'
          ? 'the last message is empty, which leaves the conversation ending with the assistant turn before it; Gemini answers only one that ends with a user message or tool results'
          : 'after the last assistant turn only system messages follow; Gemini answers only a conversation that ends with a user message or tool results',
    );
  }

  const out: GenerateContentRequest = { contents };
  if (system.length) out.systemInstruction = { parts: system };
  const tools = functionDeclarations(body.tools);
  if (tools) out.tools = [{ functionDeclarations: tools }];
  const mode = toolChoice(body.tool_choice, tools !== undefined);
  if (mode) out.toolConfig = { functionCallingConfig: mode };
  const config = generationConfig(body);
  // Gemini before 3 refuses function declarations beside JSON output (400 "Function calling with a
  // response mime type: 'application/json' is unsupported"), even under tool_choice none, which
  // still declares them: refused before any upstream call, so a fallback that can take it is tried.
  if (tools && config?.responseMimeType !== undefined && !isGemini3OrLater(body.model)) {
    throw unsupported(
      'response_format',
      `${body.model} cannot answer in JSON (response_format ${(body.response_format as Json).type as string}) while tools are declared (tool_choice none still declares them); Gemini 3 and later can: send one of the two, or ask a Gemini 3 model`,
    );
  }
  if (config) out.generationConfig = config;
  return out;
}

/**
 * Whether a Gemini model is of Gemini 3 or later, read from its id: not 1.x or 2.x, nor a Gemma model
 * Gemini's API serves. An alias (`gemini-flash-latest`) is taken for a current model.
 */
function isGemini3OrLater(model: string): boolean {
  return !/^(models\/)?(gemma-|gemini-[12]([.-]|$))/.test(model);
}

/** Adds a turn, merging it into the previous one when the role repeats (Gemini wants alternating turns). */
function append(contents: GeminiContent[], role: 'user' | 'model', parts: GeminiPart[]): void {
  if (parts.length === 0) return;
  const last = contents[contents.length - 1];
  if (last?.role === role) {
    for (const p of parts) last.parts.push(p);
  } else {
    contents.push({ role, parts });
  }
}

/** Text-only content (system messages): a string or text parts. Empty text is skipped: Gemini rejects it. */
function textParts(content: ChatMessage['content'], where: string, out: GeminiPart[]): void {
  if (typeof content === 'string') {
    if (content !== '') out.push({ text: content });
    return;
  }
  if (!Array.isArray(content)) return;
  for (let j = 0; j < content.length; j++) {
    const part = content[j];
    if (part.type !== 'text' || typeof part.text !== 'string')
      throw unsupported(`${where}.content[${j}].type`, 'this message takes text parts only');
    if (part.text !== '') out.push({ text: part.text });
  }
}

function userParts(content: ChatMessage['content'], i: number): GeminiPart[] {
  if (content === undefined || content === null) throw invalid(`messages[${i}].content`, `messages[${i}].content is required`);
  if (typeof content === 'string') return content === '' ? [] : [{ text: content }];
  if (!Array.isArray(content)) return [];
  const parts: GeminiPart[] = [];
  for (let j = 0; j < content.length; j++) {
    const part = content[j];
    const where = `messages[${i}].content[${j}]`;
    switch (part.type) {
      case 'text':
        if (typeof part.text !== 'string') throw invalid(`${where}.text`, `${where}.text must be a string`);
        if (part.text !== '') parts.push({ text: part.text });
        break;
      case 'image_url': {
        const image = part.image_url;
        const url = isRecord(image) ? image.url : image;
        if (typeof url !== 'string') throw invalid(`${where}.image_url`, `${where}.image_url.url must be a string`);
        parts.push({ inlineData: dataUrl(url, `${where}.image_url`) });
        break;
      }
      case 'input_audio': {
        const audio = part.input_audio;
        if (!isRecord(audio) || typeof audio.data !== 'string' || (audio.format !== 'wav' && audio.format !== 'mp3')) {
          throw invalid(`${where}.input_audio`, `${where}.input_audio needs base64 data and a format of wav or mp3`);
        }
        parts.push({ inlineData: { mimeType: `audio/${audio.format}`, data: audio.data } });
        break;
      }
      case 'file': {
        const file = part.file;
        if (!isRecord(file) || typeof file.file_data !== 'string') {
          throw unsupported(
            `${where}.file`,
            'only inline files (file_data as a base64 data URL) can be sent; file_id refers to OpenAI storage',
          );
        }
        parts.push({ inlineData: dataUrl(file.file_data, `${where}.file.file_data`) });
        break;
      }
      default:
        // A part that names no type is malformed, as OpenAI would answer it; one of another type is OpenAI's alone.
        if (typeof part.type !== 'string')
          throw invalid(`${where}.type`, part.type === undefined ? `${where}.type is required` : `${where}.type must be a string`);
        throw unsupported(`${where}.type`, `content part type "${part.type}" has no Gemini equivalent`);
    }
  }
  return parts;
}

/**
 * A base64 data URL as Gemini inline data. http(s) URLs are refused: Gemini fetches nothing by URL
 * for inline media (its fileData takes File API or Cloud Storage URIs), and fetching on the client's
 * behalf would turn keygate into an open proxy.
 */
function dataUrl(url: string, param: string): { mimeType: string; data: string } {
  if (!url.startsWith('data:')) {
    throw unsupported(param, 'Gemini needs images inline: send a base64 data URL (data:image/png;base64,...) instead of a link');
  }
  const { mediaType, data } = splitDataUrl(url, param);
  return { mimeType: mediaType, data };
}

/**
 * Gemini 3 refuses (400) a history whose function calls lack the thought signature Gemini gave them:
 * it is carried in `extra_content.google.thought_signature`, but a client that rebuilt its history,
 * or a history from another provider (a fallback, a switch of model), has none. For those Google
 * documents a placeholder signature that skips the check; it goes on the first call of each
 * assistant turn with no signature at all (the one Gemini signs, in parallel calls), on models after
 * the 2.x series, which do not require signatures.
 */
const PLACEHOLDER_THOUGHT_SIGNATURE = 'skip_thought_signature_validator';

function requiresCallSignatures(model: string): boolean {
  return !/^(models\/)?gemini-(1|2)([.-]|$)/.test(model);
}

function assistantParts(m: ChatMessage, i: number, toolNames: Map<string, string>, signsCalls: boolean): GeminiPart[] {
  const parts: GeminiPart[] = [];
  const content = m.content;
  if (typeof content === 'string') {
    if (content !== '') parts.push({ text: content });
  } else if (Array.isArray(content)) {
    for (let j = 0; j < content.length; j++) {
      const part = content[j];
      const text = part.type === 'text' ? part.text : part.type === 'refusal' ? part.refusal : undefined;
      if (typeof text !== 'string')
        throw unsupported(`messages[${i}].content[${j}].type`, 'assistant messages take text and refusal parts only');
      if (text !== '') parts.push({ text });
    }
  }
  const calls = m.tool_calls;
  if (!Array.isArray(calls)) return parts;
  for (let k = 0; k < calls.length; k++) {
    const where = `messages[${i}].tool_calls[${k}]`;
    const call = calls[k];
    const fn = isRecord(call) ? call.function : undefined;
    if (!isRecord(call) || !isRecord(fn) || typeof fn.name !== 'string' || (call.type !== undefined && call.type !== 'function')) {
      throw invalid(where, `${where} must be a function tool call with a name`);
    }
    const functionCall: GeminiFunctionCall = { name: fn.name, args: parseArguments(fn.arguments, `${where}.function.arguments`) };
    // Gemini 3 gives every call an id (passed to the client as the tool call's id) and refuses a
    // functionResponse whose id does not match its call's: both carry the client's id back.
    if (typeof call.id === 'string' && call.id !== '') functionCall.id = call.id;
    const part: GeminiPart = { functionCall };
    const extra = call.extra_content;
    const signature = isRecord(extra) && isRecord(extra.google) ? extra.google.thought_signature : undefined;
    if (typeof signature === 'string') part.thoughtSignature = signature;
    if (typeof call.id === 'string') toolNames.set(call.id, fn.name);
    parts.push(part);
  }
  if (signsCalls && calls.length > 0 && !parts.some((p) => p.functionCall && p.thoughtSignature !== undefined)) {
    const first = parts.find((p) => p.functionCall);
    if (first) first.thoughtSignature = PLACEHOLDER_THOUGHT_SIGNATURE;
  }
  return parts;
}

/** Gemini's `args` is a JSON object; OpenAI's `arguments` is that object serialized. */
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

function functionResponsePart(m: ChatMessage, i: number, toolNames: Map<string, string>): GeminiPart {
  const id = m.tool_call_id;
  const name = typeof id === 'string' ? toolNames.get(id) : undefined;
  if (name === undefined)
    throw invalid(`messages[${i}].tool_call_id`, `messages[${i}].tool_call_id does not match a tool call of an earlier assistant message`);
  let text = '';
  if (typeof m.content === 'string') text = m.content;
  else if (Array.isArray(m.content)) {
    // One text for Gemini's one response: the parts on lines of their own, not run together.
    const texts: string[] = [];
    for (const part of m.content) if (typeof part.text === 'string') texts.push(part.text);
    text = texts.join('\n');
  }
  return { functionResponse: { id: id as string, name, response: jsonObject(text) ?? { content: text } } };
}

/** The text parsed as JSON when it is a JSON object; only then is the parse attempted at all. */
function jsonObject(text: string): Record<string, unknown> | undefined {
  if (text.trimStart()[0] !== '{') return undefined;
  try {
    const parsed: unknown = JSON.parse(text);
    return isRecord(parsed) ? parsed : undefined;
  } catch {
    return undefined;
  }
}

function functionDeclarations(tools: unknown): GeminiFunctionDeclaration[] | undefined {
  if (!Array.isArray(tools) || tools.length === 0) return undefined;
  const out: GeminiFunctionDeclaration[] = [];
  for (let k = 0; k < tools.length; k++) {
    const tool: unknown = tools[k];
    if (!isRecord(tool) || tool.type !== 'function' || !isRecord(tool.function)) {
      throw unsupported(`tools[${k}].type`, 'only function tools can be declared');
    }
    const fn = tool.function;
    if (typeof fn.name !== 'string' || fn.name === '') throw invalid(`tools[${k}].function.name`, `tools[${k}].function.name is required`);
    if (fn.name.length > GEMINI_MAX_FUNCTION_NAME)
      throw unsupported(`tools[${k}].function.name`, `Gemini takes function names of at most ${GEMINI_MAX_FUNCTION_NAME} characters`);
    const decl: GeminiFunctionDeclaration = { name: fn.name };
    if (typeof fn.description === 'string') decl.description = fn.description;
    if (isRecord(fn.parameters)) {
      // Parameters without a type are an object's, as OpenAI reads them (`{}`: no arguments).
      const typed = fn.parameters.type === undefined && !isComposite(fn.parameters) ? { type: 'object', ...fn.parameters } : fn.parameters;
      const param = `tools[${k}].function.parameters`;
      // A root said by its parts (Pydantic's root `$ref`, an `anyOf` of objects) is an object's too,
      // which Gemini wants the parameters to say: its Schema cannot say both, its JSON Schema can.
      let parameters = geminiSchemaOf(typed, param, { rootType: 'object' });
      if ('schema' in parameters && parameters.schema.type === undefined) parameters = { json: geminiJsonSchema(typed, param, 'object') };
      if ('json' in parameters) decl.parametersJsonSchema = parameters.json;
      // Gemini rejects an OBJECT without properties; a function without arguments simply has no parameters.
      else if (
        parameters.schema.type !== 'OBJECT' ||
        (parameters.schema.properties !== undefined && Object.keys(parameters.schema.properties).length > 0)
      ) {
        decl.parameters = parameters.schema;
      }
    }
    out.push(decl);
  }
  return out;
}

type FunctionCallingConfig = NonNullable<GenerateContentRequest['toolConfig']>['functionCallingConfig'];

function toolChoice(choice: unknown, hasTools: boolean): FunctionCallingConfig | undefined {
  if (choice === undefined || choice === null) return undefined;
  if (choice === 'auto' || choice === 'none') return hasTools ? { mode: choice === 'auto' ? 'AUTO' : 'NONE' } : undefined;
  if (!hasTools) throw invalid('tool_choice', 'tool_choice needs tools');
  if (choice === 'required') return { mode: 'ANY' };
  if (isRecord(choice) && choice.type === 'function' && isRecord(choice.function) && typeof choice.function.name === 'string') {
    return { mode: 'ANY', allowedFunctionNames: [choice.function.name] };
  }
  throw unsupported('tool_choice', 'use auto, none, required or a named function');
}

function num(value: unknown): number | undefined {
  return typeof value === 'number' && Number.isFinite(value) ? value : undefined;
}

function generationConfig(body: ChatCompletionRequest): GeminiGenerationConfig | undefined {
  const config: GeminiGenerationConfig = {};
  const maxTokens = num(body.max_tokens);
  const maxCompletion = num(body.max_completion_tokens);
  const max = maxTokens === undefined ? maxCompletion : maxCompletion === undefined ? maxTokens : Math.min(maxTokens, maxCompletion);
  if (max !== undefined) config.maxOutputTokens = max;
  const temperature = num(body.temperature);
  if (temperature !== undefined) config.temperature = temperature;
  const topP = num(body.top_p);
  if (topP !== undefined) config.topP = topP;
  const stop = body.stop;
  if (typeof stop === 'string' && stop !== '') config.stopSequences = [stop];
  else if (Array.isArray(stop) && stop.length) config.stopSequences = stop.filter((s): s is string => typeof s === 'string' && s !== '');
  if ((config.stopSequences?.length ?? 0) > GEMINI_MAX_STOP_SEQUENCES)
    throw unsupported('stop', `Gemini takes at most ${GEMINI_MAX_STOP_SEQUENCES} stop sequences`);
  const n = num(body.n);
  if (n !== undefined && n !== 1) {
    if (n > GEMINI_MAX_CANDIDATES) throw unsupported('n', `Gemini returns at most ${GEMINI_MAX_CANDIDATES} choices`);
    // Gemini 3 answers 400 "Multiple candidates is not enabled for this model".
    if (n > 1 && isGemini3OrLater(body.model))
      throw unsupported(
        'n',
        `${body.model} returns one choice per request (Gemini 3 and later); earlier Gemini models return up to ${GEMINI_MAX_CANDIDATES}`,
      );
    config.candidateCount = n;
  }
  penalties(body, config);
  const seed = num(body.seed);
  if (seed !== undefined && (seed < GEMINI_SEED_RANGE.min || seed > GEMINI_SEED_RANGE.max))
    throw unsupported('seed', `Gemini takes a seed from ${GEMINI_SEED_RANGE.min} to ${GEMINI_SEED_RANGE.max} (a 32-bit integer)`);
  if (seed !== undefined) config.seed = seed;
  responseFormat(body.response_format, config);
  const thinking = thinkingConfig(body.reasoning_effort, body.model, config.maxOutputTokens);
  if (thinking) config.thinkingConfig = thinking;
  return Object.keys(config).length ? config : undefined;
}

/**
 * Whether a Gemini model takes `presencePenalty` and `frequencyPenalty`: Gemini 1.x and 2.0 (and the
 * Gemma models, as before); Gemini 2.5 and later answer 400 "Penalty is not enabled for models/…".
 */
function geminiTakesPenalties(model: string): boolean {
  return /^(models\/)?(gemma-|gemini-(1([.-]|$)|2\.0([.-]|$)))/.test(model);
}

/**
 * OpenAI's penalties as Gemini's, on the models that take them. Elsewhere a penalty is refused as
 * Claude's are, before Google's 400 would come after admission; 0, which asks for nothing, is left out.
 */
function penalties(body: ChatCompletionRequest, config: GeminiGenerationConfig): void {
  const takes = geminiTakesPenalties(body.model);
  for (const [param, field] of [
    ['presence_penalty', 'presencePenalty'],
    ['frequency_penalty', 'frequencyPenalty'],
  ] as const) {
    const value = num(body[param]);
    if (value === undefined || (!takes && value === 0)) continue;
    if (!takes) throw unsupported(param, `${body.model} takes no penalties (Gemini 2.5 and later refuse them; 1.5 and 2.0 take them)`);
    config[field] = value;
  }
}

/** Thinking tokens a Gemini 2.5 model may spend for each effort (0 turns thinking off, where the model allows it). */
const THINKING_BUDGETS: Readonly<Record<ReasoningEffort, number>> = {
  none: 0,
  minimal: 512,
  low: 1024,
  medium: 8192,
  high: 24576,
  xhigh: 24576,
};

/** The least thinking budget keygate lowers a Gemini 2.5 budget to under a small `maxOutputTokens`: the least Flash-Lite takes. */
const LEAST_KEPT_BUDGET = 512;

/** Whether a Gemini model thinks: not Gemini 1.x and 2.0, nor the Gemma models Gemini's API serves. */
export function geminiThinks(model: string): boolean {
  return !/^(models\/)?(gemma-|gemini-(1([.-]|$)|2\.0([.-]|$)))/.test(model);
}

/** Whether a thinking Gemini model takes a token budget (`thinkingBudget`: Gemini 2.5) rather than a level (Gemini 3 and later). */
export function geminiThinksByBudget(model: string): boolean {
  return /^(models\/)?gemini-2([.-]|$)/.test(model);
}

/**
 * OpenAI's `reasoning_effort` as Gemini's `thinkingConfig`, which differs by model generation:
 * Gemini 2.5 takes a token budget (`thinkingBudget`), Gemini 3 and later a level (`thinkingLevel`,
 * the effort's own name; `none` is `minimal`, the least they think). Which levels, and whether a
 * budget of 0, a model takes is the model's: its refusal is passed on. Gemini 1.x and 2.0, and the
 * Gemma models Gemini's API serves, do not think: the least efforts ask for nothing there, and the
 * others are refused. An alias (`gemini-flash-latest`) is taken for a current model (a level).
 */
function thinkingConfig(effort: unknown, model: string, maxOutputTokens: number | undefined): GeminiGenerationConfig['thinkingConfig'] {
  const level = reasoningEffort(effort);
  if (level === undefined) return undefined;
  if (!geminiThinks(model)) {
    if (level === 'none' || level === 'minimal') return undefined;
    throw unsupported('reasoning_effort', `${model} does not think; reasoning_effort applies to Gemini 2.5 and later`);
  }
  // Gemini counts thought tokens in `maxOutputTokens`: a budget kept below it leaves the answer room
  // (as Claude's is kept below `max_tokens`); above it the model could think the whole cap away. Not
  // below 512, though, the least some 2.5 models take (Flash-Lite's): a small cap keeps the budget.
  if (geminiThinksByBudget(model)) {
    const budget = THINKING_BUDGETS[level];
    if (maxOutputTokens === undefined || budget <= LEAST_KEPT_BUDGET) return { thinkingBudget: budget };
    return { thinkingBudget: Math.max(LEAST_KEPT_BUDGET, Math.min(budget, maxOutputTokens - 1)) };
  }
  return { thinkingLevel: level === 'none' ? 'minimal' : level };
}

function responseFormat(format: unknown, config: GeminiGenerationConfig): void {
  if (format === undefined || format === null) return;
  const type = isRecord(format) ? format.type : undefined;
  if (type === 'text') return;
  if (type === 'json_object') {
    config.responseMimeType = 'application/json';
    return;
  }
  if (type === 'json_schema' && isRecord(format) && isRecord(format.json_schema)) {
    config.responseMimeType = 'application/json';
    const schema = format.json_schema.schema;
    if (isRecord(schema)) {
      const converted = geminiSchemaOf(schema, 'response_format.json_schema.schema');
      if ('json' in converted) config.responseJsonSchema = converted.json;
      else config.responseSchema = converted.schema;
    }
    return;
  }
  throw unsupported('response_format', 'use text, json_object or json_schema');
}

/* ------------------------------------------------------------------ JSON Schema -> Gemini Schema */

const SCHEMA_TYPES: Readonly<Record<string, NonNullable<GeminiSchema['type']>>> = {
  string: 'STRING',
  number: 'NUMBER',
  integer: 'INTEGER',
  boolean: 'BOOLEAN',
  array: 'ARRAY',
  object: 'OBJECT',
  null: 'NULL',
};

/** Formats the Gemini API accepts; any other (email, uri, uuid…) makes it answer 400, so it is dropped. */
const SCHEMA_FORMATS = new Set(['enum', 'date-time', 'float', 'double', 'int32', 'int64']);

const NUMERIC_KEYWORDS = [
  'minItems',
  'maxItems',
  'minProperties',
  'maxProperties',
  'minimum',
  'maximum',
  'minLength',
  'maxLength',
] as const;

interface SchemaContext {
  root: Json;
  param: string;
  /** `$ref`s being expanded, to refuse cycles. */
  expanding: Set<string>;
  /** Schemas being converted, one inside the other (a chain of `$ref`s included). */
  depth: number;
}

/** How deeply schemas may nest once `$ref`s are inlined (a chain of refs could otherwise exhaust the stack). */
const MAX_SCHEMA_DEPTH = 64;

/**
 * Converts a JSON Schema (as OpenAI takes it for tools and structured outputs) to the OpenAPI 3.0
 * subset Gemini's `Schema` accepts. Limits, documented here because they change what is enforced:
 * - kept: type, format (Gemini's few), title, description, nullable, enum (strings; one with numbers
 *   goes as JSON Schema), const (a string; a number goes as JSON Schema), properties, required, items, min/max items/length/properties, minimum/maximum,
 *   pattern, anyOf (oneOf becomes anyOf), propertyOrdering, default, example; `required` names the
 *   node does not declare are left out (Gemini refuses them);
 * - exclusiveMinimum/Maximum on integers become the inclusive bounds they mean (`> 0` is `>= 1`);
 * - `type: [x, "null"]` and `anyOf: [x, {type: "null"}]` become `nullable: true`;
 * - local `$ref`s (`#/$defs/…`, `#/definitions/…`) are inlined; a recursive one cannot be (Gemini's
 *   Schema cannot refer to itself): {@link geminiSchemaOf} sends such a schema as JSON Schema;
 *   `allOf` of one schema is inlined, longer ones refused;
 * - dropped (not enforced by Gemini): additionalProperties, $schema, $id, $defs, strict,
 *   exclusiveMinimum/Maximum on numbers, multipleOf, uniqueItems, not, if/then/else, patternProperties,
 *   enums of other values (booleans, objects), formats Gemini does not know (a tuple, whose array
 *   has no single `items`, goes as JSON Schema).
 */
export function toGeminiSchema(schema: Json, param: string): GeminiSchema {
  return convertSchema(schema, { root: schema, param, expanding: new Set(), depth: 0 });
}

/**
 * A schema Gemini's `Schema` cannot say and its JSON Schema fields can: one that refers to itself,
 * a node of any type (`{}`, which Gemini refuses: "type: must be specified"), an array whose items
 * are not given ("items: missing field").
 */
class NeedsJsonSchema extends Error {}

/**
 * A client's JSON Schema for Gemini: converted to Gemini's `Schema` (`parameters`, `responseSchema`)
 * where it can be, which every Gemini model takes as documented above; one it cannot say (see
 * {@link NeedsJsonSchema}) goes as the JSON Schema it is, `$defs` and all, in the field that takes
 * JSON Schema (`parametersJsonSchema`, `responseJsonSchema`), where Gemini resolves `$ref`s itself.
 */
export function geminiSchemaOf(
  schema: Json,
  param: string,
  options: { rootType?: 'object' } = {},
): { schema: GeminiSchema } | { json: Json } {
  try {
    return { schema: toGeminiSchema(schema, param) };
  } catch (error) {
    if (error instanceof NeedsJsonSchema) return { json: geminiJsonSchema(schema, param, options.rootType) };
    throw error;
  }
}

/**
 * A JSON Schema as Gemini's JSON Schema fields take it (the client's schema is not changed):
 * - the root says `rootType` when it says no type (a function's parameters describe an object);
 * - a node with a `$ref` may carry nothing else but `$` keywords there, so its other keywords (a
 *   description, say) go beside the reference, which moves alone into a one-schema `anyOf` (its
 *   `$defs` stay where the references resolve from); beside an `anyOf` of its own it cannot go, and
 *   is refused;
 * - draft 7's `definitions` at the root become `$defs` (the name Gemini documents), its references with
 *   them, and draft 7's tuple `items` become `prefixItems`;
 * - what neither form can say is refused, wherever it is: a `$ref` Gemini would have to fetch, an
 *   `allOf` of several schemas (Gemini takes none).
 * Values (`default`, `const`, `enum`, `examples`) are data, passed as they are.
 */
export function geminiJsonSchema(schema: Json, param: string, rootType?: 'object'): Json {
  const defs = isRecord(schema.definitions) && schema.$defs === undefined;
  const out = jsonNode(schema, param, defs) as Json;
  if (defs) {
    const { definitions, ...rest } = out;
    return withRootType({ ...rest, $defs: definitions }, rootType);
  }
  return withRootType(out, rootType);
}

function withRootType(schema: Json, rootType: 'object' | undefined): Json {
  if (rootType === undefined || schema.type !== undefined) return schema;
  // Typed beside a root `$ref`, the reference must move into its anyOf as any other sibling makes it.
  if (typeof schema.$ref !== 'string') return { type: rootType, ...schema };
  // (A root `$ref` beside an `anyOf` was refused already.)
  const { $ref, ...rest } = schema;
  return { type: rootType, ...rest, anyOf: [{ $ref }] };
}

/** Keywords whose values are data, not schemas. */
const DATA_KEYWORDS = new Set(['default', 'const', 'enum', 'examples', 'example']);
/** Keywords whose values map names to schemas (a property may be called `default`). */
const SCHEMA_MAPS = new Set(['properties', 'patternProperties', '$defs', 'definitions', 'dependentSchemas']);

function jsonNode(node: unknown, param: string, renameDefs: boolean): unknown {
  if (Array.isArray(node)) return node.map((child) => jsonNode(child, param, renameDefs));
  if (!isRecord(node)) return node;
  const out: Json = {};
  for (const key of Object.keys(node)) {
    const value = node[key];
    if (DATA_KEYWORDS.has(key)) out[key] = value;
    else if (SCHEMA_MAPS.has(key) && isRecord(value)) {
      const schemas: Json = {};
      for (const name of Object.keys(value)) schemas[name] = jsonNode(value[name], param, renameDefs);
      out[key] = schemas;
    } else out[key] = jsonNode(value, param, renameDefs);
  }
  if (Array.isArray(out.allOf) && out.allOf.length > 1)
    throw unsupported(param, 'allOf with more than one schema cannot be expressed in Gemini schemas');
  if (Array.isArray(out.items) && out.prefixItems === undefined) {
    out.prefixItems = out.items;
    delete out.items;
  }
  if (typeof out.$ref !== 'string') return out;
  const ref = renameDefs && out.$ref.startsWith('#/definitions/') ? `#/$defs/${out.$ref.slice('#/definitions/'.length)}` : out.$ref;
  if (!ref.startsWith('#')) throw unsupported(param, `only local $refs can be resolved (got ${ref})`);
  out.$ref = ref;
  if (Object.keys(out).every((key) => key.startsWith('$'))) return out;
  const { $ref: _ref, ...rest } = out;
  if (rest.anyOf !== undefined) throw unsupported(param, `a $ref beside an anyOf (${ref}) cannot be expressed in Gemini schemas`);
  return { anyOf: [{ $ref: ref }], ...rest };
}

/** Whether a node's type is said by its parts (`anyOf`, `oneOf`, `allOf`, `$ref`) rather than by `type`. */
function isComposite(node: Json): boolean {
  return Array.isArray(node.anyOf) || Array.isArray(node.oneOf) || Array.isArray(node.allOf) || typeof node.$ref === 'string';
}

function convertSchema(node: unknown, ctx: SchemaContext): GeminiSchema {
  // `true` (any value) has no type to say.
  if (!isRecord(node)) throw new NeedsJsonSchema(ctx.param);
  if (ctx.depth >= MAX_SCHEMA_DEPTH)
    throw unsupported(ctx.param, `schemas nested more than ${MAX_SCHEMA_DEPTH} levels deep ($refs inlined)`);
  ctx.depth++;
  try {
    return convertNode(node, ctx);
  } finally {
    ctx.depth--;
  }
}

function convertNode(node: Json, ctx: SchemaContext): GeminiSchema {
  if (typeof node.$ref === 'string') return convertRef(node, node.$ref, ctx);
  if (Array.isArray(node.allOf)) {
    if (node.allOf.length !== 1) throw unsupported(ctx.param, 'allOf with more than one schema cannot be expressed in Gemini schemas');
    const { allOf, ...rest } = node;
    return convertSchema({ ...(allOf[0] as Json), ...rest }, ctx);
  }

  let out: GeminiSchema = {};
  const variants = Array.isArray(node.anyOf) ? node.anyOf : Array.isArray(node.oneOf) ? node.oneOf : undefined;
  if (variants) {
    const nonNull = variants.filter((v) => !(isRecord(v) && v.type === 'null'));
    if (nonNull.length === 1) out = convertSchema(nonNull[0], ctx);
    else if (nonNull.length > 1) out.anyOf = nonNull.map((v) => convertSchema(v, ctx));
    if (nonNull.length < variants.length) out.nullable = true;
  }

  const type = node.type;
  if (typeof type === 'string') out.type = schemaType(type, ctx);
  else if (Array.isArray(type)) {
    const nonNull = type.filter((t) => t !== 'null');
    if (nonNull.length === 1) out.type = schemaType(nonNull[0], ctx);
    else if (nonNull.length > 1) out.anyOf = nonNull.map((t) => ({ type: schemaType(t, ctx) }));
    if (nonNull.length < type.length) out.nullable = true;
  }
  if (typeof node.nullable === 'boolean') out.nullable = node.nullable;
  if (typeof node.title === 'string') out.title = node.title;
  if (typeof node.description === 'string') out.description = node.description;
  if (typeof node.format === 'string' && SCHEMA_FORMATS.has(node.format)) out.format = node.format;
  if (Array.isArray(node.enum)) {
    // `null` among the values (a nullable enum, as strict mode writes one) is Gemini's `nullable`.
    const values: unknown[] = node.enum.filter((v) => v !== null);
    if (values.length < node.enum.length) out.nullable = true;
    if (values.length > 0 && values.every((v): v is string => typeof v === 'string')) out.enum = values;
    // Numbers Gemini's Schema cannot list (its enums are strings); its JSON Schema can.
    else if (values.length > 0 && values.every((v) => typeof v === 'string' || typeof v === 'number')) throw new NeedsJsonSchema(ctx.param);
  } else if (typeof node.const === 'string') {
    out.enum = [node.const];
  } else if (typeof node.const === 'number') {
    throw new NeedsJsonSchema(ctx.param);
  }
  // Gemini takes enum values on STRING schemas only; a bare `const` or `enum` names no type. A node
  // without a type but with properties (or items) is an object (an array), as JSON Schema reads it:
  // Gemini needs it said (a function's parameters above all).
  if (out.type === undefined && out.anyOf === undefined) {
    if (out.enum) out.type = 'STRING';
    else if (isRecord(node.properties)) out.type = 'OBJECT';
    else if (isRecord(node.items)) out.type = 'ARRAY';
    else throw new NeedsJsonSchema(ctx.param);
  }
  // Properties and items only where Gemini takes them (on OBJECT, on ARRAY).
  if (isRecord(node.properties) && out.type === 'OBJECT') {
    const properties: Record<string, GeminiSchema> = {};
    for (const key of Object.keys(node.properties)) properties[key] = convertSchema(node.properties[key], ctx);
    out.properties = properties;
  }
  // Gemini refuses a `required` name its node does not declare (a free-form object's, say).
  if (Array.isArray(node.required) && out.properties) {
    const declared = out.properties;
    const required = node.required.filter((r): r is string => typeof r === 'string' && Object.hasOwn(declared, r));
    if (required.length > 0) out.required = required;
  }
  if (out.type === 'ARRAY') {
    if (!isRecord(node.items)) throw new NeedsJsonSchema(ctx.param);
    out.items = convertSchema(node.items, ctx);
  }
  for (const key of NUMERIC_KEYWORDS) {
    const value = node[key];
    if (typeof value === 'number') out[key] = value;
  }
  if (out.type === 'INTEGER') integerBounds(node, out);
  if (typeof node.pattern === 'string') out.pattern = node.pattern;
  if (Array.isArray(node.propertyOrdering)) out.propertyOrdering = node.propertyOrdering.filter((p): p is string => typeof p === 'string');
  if ('default' in node) out.default = node.default;
  if ('example' in node) out.example = node.example;
  return out;
}

/**
 * Gemini's Schema has no exclusive bounds; on integers they are exact as inclusive ones (`> 0` is
 * `>= 1`), in JSON Schema's number form and in draft 4's boolean form alike. On numbers they stay
 * dropped (draft 4's `minimum` then holds inclusively).
 */
function integerBounds(node: Json, out: GeminiSchema): void {
  const { exclusiveMinimum: lower, exclusiveMaximum: upper } = node;
  if (typeof lower === 'number') out.minimum = Math.max(out.minimum ?? -Infinity, Math.floor(lower) + 1);
  else if (lower === true && out.minimum !== undefined) out.minimum = Math.floor(out.minimum) + 1;
  if (typeof upper === 'number') out.maximum = Math.min(out.maximum ?? Infinity, Math.ceil(upper) - 1);
  else if (upper === true && out.maximum !== undefined) out.maximum = Math.ceil(out.maximum) - 1;
}

function schemaType(type: unknown, ctx: SchemaContext): NonNullable<GeminiSchema['type']> {
  const mapped = typeof type === 'string' ? SCHEMA_TYPES[type] : undefined;
  if (!mapped) throw invalid(ctx.param, `${ctx.param}: unknown JSON Schema type ${JSON.stringify(type)}`);
  return mapped;
}

function convertRef(node: Json, ref: string, ctx: SchemaContext): GeminiSchema {
  if (!ref.startsWith('#')) throw unsupported(ctx.param, `only local $refs can be resolved (got ${ref})`);
  // An anchor (`#node`): Gemini's JSON Schema resolves it.
  if (ref !== '#' && !ref.startsWith('#/')) throw new NeedsJsonSchema(ref);
  if (ctx.expanding.has(ref)) throw new NeedsJsonSchema(ref);
  let target: unknown = ctx.root;
  for (const raw of ref === '#' ? [] : ref.slice(2).split('/')) {
    const key = raw.replace(/~1/g, '/').replace(/~0/g, '~');
    target = isRecord(target) ? target[key] : undefined;
  }
  // A boolean schema (`true`: any value) has no type to say.
  if (typeof target === 'boolean') throw new NeedsJsonSchema(ref);
  if (!isRecord(target)) throw invalid(ctx.param, `${ctx.param}: $ref ${ref} does not resolve`);
  const { $ref: _ref, ...siblings } = node;
  // Inlined, the reference's own type and the anyOf would be merged into one node, one of them lost.
  if (siblings.anyOf !== undefined || siblings.oneOf !== undefined)
    throw unsupported(
      ctx.param,
      `a $ref beside an ${siblings.anyOf !== undefined ? 'anyOf' : 'oneOf'} (${ref}) cannot be expressed in Gemini schemas`,
    );
  ctx.expanding.add(ref);
  const out = convertSchema({ ...target, ...siblings }, ctx);
  ctx.expanding.delete(ref);
  return out;
}

/* ------------------------------------------------------------------ response: Gemini -> OpenAI */

/**
 * A Gemini stream's error event (`{"error": {code, message, status}}`) as the failure it stands for:
 * a status Google would send as HTTP 429 or 5xx is retried like it when no content came first; a
 * 400 (the request refused) is the client's to fix, answered 400 `upstream_bad_request` as its HTTP
 * 400 would be; any other is a 502.
 */
export function geminiStreamError(error: NonNullable<GeminiErrorBody['error']>): UpstreamError {
  const code = error.code;
  const status = typeof code === 'number' && (code === 400 || code === 429 || code >= 500) ? code : undefined;
  return new UpstreamError('stream_error', PROVIDER, typeof error.message === 'string' ? error.message : 'error event', status);
}

/** `chatcmpl-<Gemini responseId>`, so a completion can be traced to Google's logs. */
export function completionId(responseId: string | undefined, fallback: string): string {
  return responseId ? `chatcmpl-${responseId}` : fallback;
}

/**
 * Gemini's function calls usually carry no id; OpenAI clients need one to answer them. Derived from
 * the completion id, choice and call position, so the streamed and non-streamed translations of the
 * same answer name their calls identically.
 */
export function toolCallId(completion: string, choice: number, index: number): string {
  return `call_${createHash('sha256').update(`${completion}:${choice}:${index}`).digest('base64url').slice(0, 24)}`;
}

/** Safety and policy stops; OpenAI calls all of them `content_filter`. */
const FILTERED = new Set([
  'SAFETY',
  'RECITATION',
  'BLOCKLIST',
  'PROHIBITED_CONTENT',
  'SPII',
  'IMAGE_SAFETY',
  'IMAGE_PROHIBITED_CONTENT',
  'IMAGE_RECITATION',
]);

/**
 * Ends of a failed generation: the model produced a function call that is invalid, one where no
 * tool was declared, or more calls than Gemini allows in a turn, and the candidate carries nothing
 * else. OpenAI has no finish reason for them; answering an empty `stop` would let an agent loop
 * take it for the final answer.
 */
const FAILED_GENERATION = new Set(['MALFORMED_FUNCTION_CALL', 'UNEXPECTED_TOOL_CALL', 'TOO_MANY_TOOL_CALLS']);
/**
 * Ends caused by the request, which sampling again cannot fix: a function call in the history
 * without the thought signature Gemini 3 requires (a client that dropped `extra_content`).
 */
const REFUSED_REQUEST = new Set(['MISSING_THOUGHT_SIGNATURE']);

/**
 * Gemini `finishReason` as OpenAI's `finish_reason`; a normal stop with function calls is
 * `tool_calls`. A failed generation throws a retryable {@link UpstreamError} (a 502 once retries and
 * fallbacks are spent; mid-stream, the stream's error event): sampling again usually succeeds.
 */
export function finishReason(reason: string | undefined, hasToolCalls: boolean): OpenAiFinishReason {
  if (reason !== undefined && FAILED_GENERATION.has(reason))
    throw new UpstreamError('generation', PROVIDER, `the model produced an invalid function call (finishReason ${reason})`, 502);
  if (reason !== undefined && REFUSED_REQUEST.has(reason))
    // Answered as Gemini answers the same mistake with a 400: the client's to fix, not retried.
    throw new UpstreamError(
      'http',
      PROVIDER,
      `finishReason ${reason}: send each assistant tool call back with its extra_content.google.thought_signature`,
      400,
    );
  if (reason === 'MAX_TOKENS') return 'length';
  if (reason !== undefined && FILTERED.has(reason)) return 'content_filter';
  return hasToolCalls ? 'tool_calls' : 'stop';
}

/**
 * Gemini token counts as OpenAI usage. Thinking tokens are billed as output, so they count as
 * completion tokens (OpenAI does the same with reasoning tokens); tool-use prompt tokens as prompt.
 * A Gemini-compatible host's counts come as it wrote them: a part that is not a count (a string,
 * which would concatenate, a negative or fractional number) is left out as if unsaid; a prompt or
 * candidates count that is not one makes the usage unreported (null), so keygate's estimate bills it,
 * and so does a prompt count left out (every request has a prompt: read as 0, it would bill the prompt
 * as free); a candidates count left out is Gemini's 0 (an answer without output).
 */
export function toUsage(u: GeminiUsageMetadata): OpenAiUsage | null {
  const input = tokenCount(u.promptTokenCount);
  // Google leaves the candidates count out of an answer without output: 0, unless it is there and not a count.
  const output = u.candidatesTokenCount === undefined || u.candidatesTokenCount === null ? 0 : tokenCount(u.candidatesTokenCount);
  if (input === null || output === null) return null;
  const thoughts = tokenCount(u.thoughtsTokenCount);
  const cached = tokenCount(u.cachedContentTokenCount);
  const prompt = input + (tokenCount(u.toolUsePromptTokenCount) ?? 0);
  const completion = output + (thoughts ?? 0);
  const usage: OpenAiUsage = {
    prompt_tokens: prompt,
    completion_tokens: completion,
    total_tokens: tokenCount(u.totalTokenCount) ?? prompt + completion,
  };
  if (cached !== null) usage.prompt_tokens_details = { cached_tokens: cached };
  if (thoughts !== null) usage.completion_tokens_details = { reasoning_tokens: thoughts };
  return usage;
}

/**
 * The running usage after `next`, one of a stream's `usageMetadata` (running totals: the last one
 * wins), where a count of `next` that is not one, or that `next` leaves out, keeps the one
 * `previous` had, if that was a count: a later event's bad or missing count does not spoil the usage
 * read so far (a prompt count left out would leave the stream's usage unreported).
 */
export function nextUsageMetadata(previous: GeminiUsageMetadata | undefined, next: GeminiUsageMetadata): GeminiUsageMetadata {
  if (previous === undefined) return next;
  const merged: GeminiUsageMetadata = { ...next };
  for (const key of new Set([...Object.keys(previous), ...Object.keys(next)]) as Set<keyof GeminiUsageMetadata>) {
    if (tokenCount(next[key]) === null && tokenCount(previous[key]) !== null) merged[key] = previous[key];
  }
  return merged;
}

/** One functionCall part as an OpenAI tool call; its thought signature rides along in `extra_content`. */
function toOpenAiToolCall(part: GeminiPart, id: string, choice: number, index: number, withIndex: boolean): OpenAiToolCall {
  const fc = part.functionCall ?? { name: '' };
  const call: OpenAiToolCall = {
    id: fc.id ?? toolCallId(id, choice, index),
    type: 'function',
    function: { name: fc.name, arguments: JSON.stringify(fc.args ?? {}) },
  };
  if (withIndex) call.index = index;
  if (part.thoughtSignature) call.extra_content = { google: { thought_signature: part.thoughtSignature } };
  return call;
}

interface CandidateOutput {
  text: string | null;
  toolCalls: OpenAiToolCall[];
}

/**
 * The visible text and the function calls of a candidate's parts. Thought summaries are not
 * answer text; the signatures Gemini puts on text parts are optional to echo and are dropped.
 */
function readParts(parts: GeminiPart[] | undefined, id: string, choice: number, firstCall: number, withIndex: boolean): CandidateOutput {
  let text: string | null = null;
  const toolCalls: OpenAiToolCall[] = [];
  if (parts) {
    for (const part of parts) {
      if (part.thought === true) continue;
      if (typeof part.text === 'string') text = text === null ? part.text : text + part.text;
      else if (part.functionCall) toolCalls.push(toOpenAiToolCall(part, id, choice, firstCall + toolCalls.length, withIndex));
    }
  }
  return { text, toolCalls };
}

/**
 * A `generateContent` response as an OpenAI chat completion. A prompt blocked before any candidate
 * (`promptFeedback.blockReason`) becomes a completion whose choices have `finish_reason:
 * "content_filter"` and null content, rather than an error: the SDKs parse it like any answer,
 * clients already branch on `content_filter`, the prompt tokens Google bills are reported, and the
 * streamed form of the same answer looks the same.
 */
export function toChatCompletion(
  res: GenerateContentResponse,
  meta: CompletionMeta,
): { completion: OpenAiChatCompletion; usage: OpenAiUsage | null } {
  const id = completionId(res.responseId, meta.fallbackId);
  const choices: OpenAiChatCompletion['choices'] = [];
  const candidates = res.candidates ?? [];
  if (candidates.length === 0) {
    if (!res.promptFeedback?.blockReason) throw new UpstreamError('protocol', PROVIDER, 'response has no candidates');
    for (let i = 0; i < (meta.n ?? 1); i++) {
      choices.push({
        index: i,
        message: { role: 'assistant', content: null, refusal: null },
        logprobs: null,
        finish_reason: 'content_filter',
      });
    }
  }
  for (let k = 0; k < candidates.length; k++) {
    const c: GeminiCandidate = candidates[k];
    const index = c.index ?? k;
    const { text, toolCalls } = readParts(c.content?.parts, id, index, 0, false);
    const message: OpenAiChatCompletion['choices'][number]['message'] = { role: 'assistant', content: text, refusal: null };
    if (toolCalls.length) message.tool_calls = toolCalls;
    choices.push({ index, message, logprobs: null, finish_reason: finishReason(c.finishReason, toolCalls.length > 0) });
  }
  const completion: OpenAiChatCompletion = { id, object: 'chat.completion', created: meta.created, model: meta.model, choices };
  const usage = res.usageMetadata ? toUsage(res.usageMetadata) : null;
  if (usage) completion.usage = usage;
  return { completion, usage };
}

/** Options of a {@link GeminiStreamTranslator}. */
export interface StreamMeta extends CompletionMeta {
  /** The client asked for the usage chunk (`stream_options.include_usage`). */
  clientWantsUsage: boolean;
}

interface ChoiceState {
  toolCalls: number;
  finished: boolean;
}

/**
 * Turns the `data:` events of `streamGenerateContent?alt=sse` into OpenAI chunks. Stateful (role
 * chunk once per choice, tool-call indexes, usage) but free of I/O. Gemini repeats `usageMetadata`
 * on several events with running totals: the last one wins (save its counts that are not counts,
 * see {@link nextUsageMetadata}), nothing is summed.
 */
export class GeminiStreamTranslator {
  private id: string | undefined;
  /** What every chunk opens with (see {@link chunkHead}). */
  private head: string | undefined;
  private readonly choices = new Map<number, ChoiceState>();
  private usage: GeminiUsageMetadata | undefined;
  private blocked = false;
  private complete = false;

  constructor(private readonly meta: StreamMeta) {}

  /**
   * Whether the answer is complete: every choice has its finishReason and the event that ended the
   * last one (or a later one) carried the usage. Gemini sends nothing after that but the body's end,
   * which the client's answer need not wait for (see GeminiAdapter).
   */
  get stopped(): boolean {
    return this.complete;
  }

  /** The chunks for one Gemini event. Throws `UpstreamError('stream_error')` for an error event. */
  push(event: GenerateContentResponse & GeminiErrorBody): StreamEvent[] {
    if (event.error) throw geminiStreamError(event.error);
    this.id ??= completionId(event.responseId, this.meta.fallbackId);
    if (event.usageMetadata) this.usage = nextUsageMetadata(this.usage, event.usageMetadata);
    const out: StreamEvent[] = [];
    const candidates = event.candidates ?? [];
    if (candidates.length === 0 && event.promptFeedback?.blockReason) {
      this.blocked = true;
      for (let i = 0; i < (this.meta.n ?? 1); i++) {
        const state = this.choice(i, out);
        if (!state.finished) {
          state.finished = true;
          out.push(this.chunk(i, {}, 'content_filter'));
        }
      }
    }
    for (let k = 0; k < candidates.length; k++) {
      const c = candidates[k];
      const index = c.index ?? k;
      const state = this.choice(index, out);
      const { text, toolCalls } = readParts(c.content?.parts, this.id, index, state.toolCalls, true);
      if (text !== null && text !== '') out.push({ ...this.chunk(index, { content: text }, null), text });
      // Gemini sends parallel calls whole in one event; OpenAI streams one call per chunk, and the
      // SDK's stream helper reads a call at a new index as the end of the one before: together, the
      // first call was reported done before any of its arguments.
      state.toolCalls += toolCalls.length;
      for (const call of toolCalls) out.push(this.chunk(index, { tool_calls: [call] }, null));
      if (c.finishReason && !state.finished) {
        state.finished = true;
        out.push(this.chunk(index, {}, finishReason(c.finishReason, state.toolCalls > 0)));
      }
    }
    // Running totals: what the stream is billed if it fails before its end.
    if (this.usage && event.usageMetadata) {
      const running = toUsage(this.usage);
      if (running) out.push({ data: null, runningUsage: running });
      this.complete = this.allFinished();
    }
    return out;
  }

  /**
   * Closes the stream: the usage chunk (or keygate-only usage event), or `stream_error` when a
   * choice never got its finishReason (the connection ended cleanly, but early).
   */
  end(): StreamEvent[] {
    if (!this.allFinished()) throw new UpstreamError('connection_lost', PROVIDER, 'stream ended early');
    // None reported, or none that reads as a count: no usage chunk, and keygate's estimate bills it.
    const usage = this.usage && toUsage(this.usage);
    if (!usage) return [];
    if (!this.meta.clientWantsUsage) return [{ data: null, usage }];
    const chunk = { id: this.id, object: 'chat.completion.chunk', created: this.meta.created, model: this.meta.model, choices: [], usage };
    return [{ data: JSON.stringify(chunk), usage }];
  }

  /** Whether every choice asked for (`n`, at least those seen) got its finishReason, or the prompt was blocked. */
  private allFinished(): boolean {
    if (this.blocked) return true;
    if (this.choices.size === 0 || this.choices.size < (this.meta.n ?? 1)) return false;
    for (const state of this.choices.values()) if (!state.finished) return false;
    return true;
  }

  /** The choice's state; its first sight emits OpenAI's role chunk. */
  private choice(index: number, out: StreamEvent[]): ChoiceState {
    let state = this.choices.get(index);
    if (!state) {
      state = { toolCalls: 0, finished: false };
      this.choices.set(index, state);
      out.push(this.chunk(index, { role: 'assistant', content: '', refusal: null }, null));
    }
    return state;
  }

  private chunk(index: number, delta: Json, finish: OpenAiFinishReason | null): StreamEvent {
    // Serialised once the id is known (the first event's, set once).
    this.head ??= chunkHead(this.id, this.meta.created, this.meta.model);
    // OpenAI puts `"usage": null` on every chunk only when the client asked for the usage chunk.
    return { data: chunkText(this.head, index, delta, finish, this.meta.clientWantsUsage) };
  }
}

/* ------------------------------------------------------------------ errors */

/**
 * A non-2xx Gemini answer as an {@link UpstreamError}. Google never answers 401 to API-key
 * callers: a bad key is 400 INVALID_ARGUMENT with reason API_KEY_INVALID, a missing or
 * unauthorised one 403. Both are keygate's credential problem, not the client's, so they are
 * reported as a credentials failure (which the gateway answers as 502, naming the status Google
 * sent) instead of a 400 blaming the client.
 * Retry hints come from `Retry-After` or, as Google sends them, a `RetryInfo` detail.
 */
export function geminiHttpError(status: number, text: string, retryAfterHeader: string | string[] | undefined): UpstreamError {
  const message = upstreamMessage(text) ?? `status ${status}`;
  let body: GeminiErrorBody | undefined;
  try {
    body = JSON.parse(text) as GeminiErrorBody;
  } catch {
    body = undefined;
  }
  const details = body?.error?.details;
  const keyInvalid = status === 400 && details?.some((d) => d.reason === 'API_KEY_INVALID') === true;
  // A key Google calls invalid is a credentials failure whatever the status; a 403 already is one.
  if (keyInvalid) return new UpstreamError('credentials', PROVIDER, message, status);
  if (status === 403) return new UpstreamError('http', PROVIDER, message, 403);
  let retry = retryAfter(retryAfterHeader);
  if (retry === undefined && details) {
    const delay = details.find((d) => typeof d.retryDelay === 'string')?.retryDelay;
    const seconds = delay && /^\d+(\.\d+)?s$/.test(delay) ? Math.ceil(Number(delay.slice(0, -1))) : undefined;
    retry = seconds;
  }
  // Google's own status name (`FAILED_PRECONDITION`, …), which keygate's Gemini routes pass on with a refusal.
  const rpc = body?.error?.status;
  const code = typeof rpc === 'string' && /^[A-Z_]{1,64}$/.test(rpc) ? rpc : undefined;
  return new UpstreamError('http', PROVIDER, message, status, retry, undefined, code);
}

/* ------------------------------------------------------------------ embeddings */

/** The texts of an OpenAI embeddings `input`; token arrays cannot be sent to Gemini. */
export function embeddingInputs(body: EmbeddingsRequest): string[] {
  const input = body.input;
  if (typeof input === 'string') return [input];
  if (!Array.isArray(input) || input.length === 0) throw invalid('input', 'input must be a string or a non-empty array of strings');
  for (const item of input) {
    if (typeof item !== 'string') throw unsupported('input', 'token arrays are OpenAI tokenizer ids; send text for Gemini models');
  }
  return input as string[];
}

/** The `batchEmbedContents` body for (a batch of) texts. */
export function toBatchEmbedRequest(model: string, texts: readonly string[], dimensions?: number): BatchEmbedContentsRequest {
  if (dimensions !== undefined && (!Number.isInteger(dimensions) || dimensions < 1))
    throw invalid('dimensions', 'dimensions must be a positive integer');
  const name = `models/${model}`;
  return {
    requests: texts.map((text) =>
      dimensions === undefined
        ? { model: name, content: { parts: [{ text }] } }
        : { model: name, content: { parts: [{ text }] }, outputDimensionality: dimensions },
    ),
  };
}

/** An OpenAI embeddings list, as translated from Gemini vectors. */
export interface OpenAiEmbeddings {
  object: 'list';
  data: Array<{ object: 'embedding'; index: number; embedding: number[] | string }>;
  model: string;
  usage: { prompt_tokens: number; total_tokens: number };
}

/** Float32 little-endian bytes in base64: OpenAI's `encoding_format: "base64"`. */
export function floatsToBase64(values: readonly number[]): string {
  const buf = Buffer.allocUnsafe(values.length * 4);
  for (let i = 0; i < values.length; i++) buf.writeFloatLE(values[i], i * 4);
  return buf.toString('base64');
}

/**
 * A vector scaled to length 1. OpenAI's embeddings have unit length (clients compare them with a dot
 * product); Gemini's have it only at full size, and Google leaves a shortened one
 * (`outputDimensionality`, OpenAI's `dimensions`) to the caller to normalise.
 */
function unitLength(values: number[]): number[] {
  let sum = 0;
  for (const x of values) sum += x * x;
  if (sum === 0) return values;
  const norm = Math.sqrt(sum);
  return values.map((x) => x / norm);
}

/** Gemini embedding vectors (in input order) as an OpenAI embeddings list; `normalize` scales each to unit length. */
export function toOpenAiEmbeddings(
  vectors: ReadonlyArray<{ values?: number[] }>,
  meta: { model: string; encodingFormat: 'float' | 'base64'; promptTokens: number; normalize?: boolean },
): OpenAiEmbeddings {
  const data: OpenAiEmbeddings['data'] = vectors.map((v, index) => {
    const values = meta.normalize ? unitLength(v.values ?? []) : (v.values ?? []);
    return { object: 'embedding', index, embedding: meta.encodingFormat === 'base64' ? floatsToBase64(values) : values };
  });
  return { object: 'list', data, model: meta.model, usage: { prompt_tokens: meta.promptTokens, total_tokens: meta.promptTokens } };
}
