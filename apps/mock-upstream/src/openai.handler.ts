import type { OutgoingHttpHeaders } from 'node:http';
import { stripDirectives } from './mock.directives';
import {
  asArray,
  asString,
  completionTokens,
  DEFAULT_CHUNKS,
  embedding,
  isRecord,
  nextId,
  planToolCalls,
  promptTokens,
  replyText,
  splitChunks,
  type JsonRecord,
  type ToolCallPlan,
  unixSeconds,
} from './mock.content';
import type { ErrorReply, Exchange, ProviderHandler } from './mock.exchange';
import { openaiFormattedReply } from './mock.structured';
import { argumentsTheModelRefuses, CHAT_COMPLETION_ARGUMENTS, EMBEDDINGS_ARGUMENTS, unknownArguments } from './openai.arguments';
import { sendJsonWithFaults, sendStream, type StreamPlan } from './mock.stream';
import { mockTokens } from './mock.usage';
import type {
  ChatCompletion,
  ChatCompletionChunk,
  ChatDelta,
  ChatFinishReason,
  ChatToolCallDelta,
  ChatUsage,
  ModelList,
  OpenAIErrorBody,
} from './openai.types';

/**
 * OpenAI wire format: Chat Completions (plain + SSE), Embeddings (float +
 * base64) and the model list, with OpenAI's `{"error":{...}}` error envelope.
 */

const FINGERPRINT = 'fp_mock';

const MODELS = [
  'gpt-4o',
  'gpt-4o-mini',
  'gpt-4.1',
  'gpt-4.1-mini',
  'o4-mini',
  'text-embedding-3-small',
  'text-embedding-3-large',
  'text-embedding-ada-002',
];
/** Fixed so the list is byte-identical between runs. */
const MODELS_CREATED = 1_715_367_049;

interface OpenAIErrorShape {
  message: string;
  type: string;
  code: string | null;
  param?: string | null;
}

function openaiErrorBody(e: OpenAIErrorShape): OpenAIErrorBody {
  return { error: { message: e.message, type: e.type, param: e.param ?? null, code: e.code } };
}

export function openaiError(status: number, e: OpenAIErrorShape): ErrorReply {
  return { status, body: openaiErrorBody(e), headers: { 'x-request-id': nextId('req_') } };
}

/** Messages and type/code pairs as OpenAI sends them for each status. */
export function errorFor(status: number, message?: string): ErrorReply {
  switch (status) {
    case 400:
      return openaiError(status, { message: message ?? 'Invalid request.', type: 'invalid_request_error', code: null });
    case 401:
      return openaiError(status, {
        message: message ?? 'Incorrect API key provided.',
        type: 'invalid_request_error',
        code: 'invalid_api_key',
      });
    case 403:
      return openaiError(status, {
        message: message ?? 'Country, region, or territory not supported',
        type: 'request_forbidden',
        code: 'unsupported_country_region_territory',
      });
    case 404:
      return openaiError(status, {
        message: message ?? 'The model does not exist or you do not have access to it.',
        type: 'invalid_request_error',
        code: 'model_not_found',
      });
    case 429:
      return openaiError(status, {
        message: message ?? 'Rate limit reached for requests per min (RPM): Limit 3, Used 3, Requested 1. Please try again later.',
        type: 'requests',
        code: 'rate_limit_exceeded',
      });
    case 500:
      return openaiError(status, {
        message: message ?? 'The server had an error while processing your request. Sorry about that!',
        type: 'server_error',
        code: null,
      });
    case 503:
      return openaiError(status, {
        message: message ?? 'The engine is currently overloaded, please try again later.',
        type: 'server_error',
        code: null,
      });
    default:
      return openaiError(status, {
        message: message ?? `Mock failure with status ${status}.`,
        type: status >= 500 ? 'server_error' : 'invalid_request_error',
        code: null,
      });
  }
}

/**
 * OpenAI's 400 for top-level arguments Chat Completions or Embeddings does not take: one message
 * naming them all, sorted, with `param` and `code` null (the Responses API answers otherwise).
 */
export function unrecognizedArguments(names: readonly string[]): ErrorReply {
  const sorted = [...names].sort();
  return openaiError(400, {
    message: `Unrecognized request argument${sorted.length > 1 ? 's' : ''} supplied: ${sorted.join(', ')}`,
    type: 'invalid_request_error',
    code: null,
  });
}

/** Shows only the ends of a key, like OpenAI does in its 401 message. */
function maskKey(key: string): string {
  return key.length <= 8 ? '****' : `${key.slice(0, 3)}*${'*'.repeat(Math.min(key.length - 7, 20))}${key.slice(-4)}`;
}

/** Text of a message `content`: a string or an array of content parts. */
export function contentText(content: unknown): string {
  if (typeof content === 'string') return content;
  let out = '';
  for (const part of asArray(content)) {
    if (isRecord(part) && typeof part.text === 'string') out = out === '' ? part.text : `${out}\n${part.text}`;
  }
  return out;
}

function lastUserText(messages: unknown[]): string {
  for (let i = messages.length - 1; i >= 0; i--) {
    const m = messages[i];
    if (isRecord(m) && m.role === 'user') return contentText(m.content);
  }
  return '';
}

/** Embedding `input` as a list of texts; token-id arrays are turned into text for seeding. */
function embeddingInputs(input: unknown): string[] {
  if (typeof input === 'string') return [input];
  if (!Array.isArray(input)) return [];
  if (input.length > 0 && input.every((x) => typeof x === 'number')) return [JSON.stringify(input)];
  return input.map((x) => (typeof x === 'string' ? x : JSON.stringify(x)));
}

function embeddingDims(model: string, requested: unknown): number {
  if (typeof requested === 'number' && Number.isInteger(requested) && requested > 0 && requested <= 8192) return requested;
  return model.includes('3-large') ? 3072 : 1536;
}

interface ChatToolInfo {
  declared: string[];
  parameters: Map<string, unknown>;
  forced: string | undefined;
  disabled: boolean;
}

function toolInfo(body: JsonRecord): ChatToolInfo {
  const declared: string[] = [];
  const parameters = new Map<string, unknown>();
  for (const t of asArray(body.tools)) {
    const fn = isRecord(t) && isRecord(t.function) ? t.function : undefined;
    const name = fn ? asString(fn.name) : undefined;
    if (fn && name) {
      declared.push(name);
      parameters.set(name, fn.parameters);
    }
  }
  const choice = body.tool_choice;
  let forced: string | undefined;
  if (choice === 'required') forced = '';
  else if (isRecord(choice) && isRecord(choice.function)) forced = asString(choice.function.name);
  return { declared, parameters, forced, disabled: choice === 'none' };
}

class OpenAIHandler implements ProviderHandler {
  readonly provider = 'openai' as const;

  error(status: number, message?: string): ErrorReply {
    return errorFor(status, message);
  }

  invalidJson(): ErrorReply {
    return errorFor(
      400,
      "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent was not valid JSON.)",
    );
  }

  authenticate(ex: Exchange, acceptAnyKey: boolean): ErrorReply | undefined {
    const header = ex.req.headers.authorization;
    const key = header?.startsWith('Bearer ') ? header.slice(7).trim() : '';
    if (key === '') {
      return openaiError(401, {
        message:
          "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY), or as the password field (with blank username) if you're accessing the API from your browser and are prompted for a username and password. You can obtain an API key from https://platform.openai.com/account/api-keys.",
        type: 'invalid_request_error',
        code: null,
      });
    }
    if (acceptAnyKey || key.startsWith('sk-mock')) return undefined;
    return openaiError(401, {
      message: `Incorrect API key provided: ${maskKey(key)}. You can find your API key at https://platform.openai.com/account/api-keys.`,
      type: 'invalid_request_error',
      code: 'invalid_api_key',
    });
  }

  directiveText(ex: Exchange): string {
    const body = ex.body;
    if (!isRecord(body)) return '';
    if (ex.route === 'openai.chat') ex.userText = lastUserText(asArray(body.messages));
    else if (ex.route === 'openai.embeddings') ex.userText = embeddingInputs(body.input).join('\n');
    return ex.userText;
  }

  handle(ex: Exchange): void | Promise<void> {
    switch (ex.route) {
      case 'openai.models':
        return this.models(ex);
      case 'openai.embeddings':
        return this.embeddings(ex);
      default:
        return this.chat(ex);
    }
  }

  private models(ex: Exchange): void {
    const list: ModelList = {
      object: 'list',
      data: MODELS.map((id) => ({ id, object: 'model', created: MODELS_CREATED, owned_by: 'system' })),
    };
    ex.sendJson(200, list);
  }

  private embeddings(ex: Exchange): void {
    const body = isRecord(ex.body) ? ex.body : {};
    const unknown = unknownArguments(body, EMBEDDINGS_ARGUMENTS);
    if (unknown.length > 0) return ex.sendError(unrecognizedArguments(unknown));
    const model = asString(body.model);
    if (!model) return ex.sendError(errorFor(400, 'you must provide a model parameter'));
    const inputs = embeddingInputs(body.input);
    if (inputs.length === 0 || body.input === '') {
      return ex.sendError(
        openaiError(400, { message: "'input' is a required property", type: 'invalid_request_error', param: 'input', code: null }),
      );
    }
    const dims = embeddingDims(model, body.dimensions);
    const base64 = body.encoding_format === 'base64';
    let tokens = 0;
    // Spliced as strings (shape: EmbeddingList): the vectors are cached pre-serialised (see embedding()).
    const data = inputs.map((text, index) => {
      tokens += Math.max(1, Math.ceil(text.length / 4));
      const e = embedding(text, dims);
      return `{"object":"embedding","index":${index},"embedding":${base64 ? JSON.stringify(e.base64) : e.json}}`;
    });
    const usage = ex.directives.noUsage ? '' : `,"usage":{"prompt_tokens":${tokens},"total_tokens":${tokens}}`;
    const text = `{"object":"list","data":[${data.join(',')}],"model":${JSON.stringify(model)}${usage}}`;
    sendJsonWithFaults(ex, text, { 'x-request-id': nextId('req_') });
  }

  private chat(ex: Exchange): void | Promise<void> {
    const body = isRecord(ex.body) ? ex.body : {};
    const unknown = unknownArguments(body, CHAT_COMPLETION_ARGUMENTS);
    if (unknown.length > 0) return ex.sendError(unrecognizedArguments(unknown));
    const model = asString(body.model);
    if (!model) return ex.sendError(errorFor(400, 'you must provide a model parameter'));
    const refused = argumentsTheModelRefuses(body, model);
    if (refused.length > 0) return ex.sendError(unrecognizedArguments(refused));
    const messages = asArray(body.messages);
    if (messages.length === 0) {
      return ex.sendError(
        openaiError(400, {
          message: Array.isArray(body.messages)
            ? "Invalid 'messages': empty array. Expected an array with minimum length 1, but got an empty array instead."
            : "Missing required parameter: 'messages'.",
          type: 'invalid_request_error',
          param: 'messages',
          code: Array.isArray(body.messages) ? 'empty_array' : 'missing_required_parameter',
        }),
      );
    }

    let promptChars = 0;
    for (const m of messages) if (isRecord(m)) promptChars += contentText(m.content).length;
    const lastMessage = messages[messages.length - 1];
    const userText = stripDirectives(ex.userText);
    const tools = toolInfo(body);
    const plan = planToolCalls({
      ...tools,
      userTurn: isRecord(lastMessage) && lastMessage.role === 'user',
      directives: ex.directives,
      userText,
    });

    // A response format constrains the answer to JSON (a tool call, when one is planned, still wins).
    const format = isRecord(body.response_format) ? body.response_format : {};
    const schema = isRecord(format.json_schema) ? format.json_schema.schema : undefined;
    const text = plan ? '' : openaiFormattedReply(format.type, schema, replyText('openai', userText, ex.directives.answerChars));
    const completionCount = plan ? completionTokens(plan.argumentsJson) * plan.count : completionTokens(text);
    const tokens = mockTokens(ex.directives, promptTokens(promptChars, messages.length), completionCount);
    const usage: ChatUsage = {
      prompt_tokens: tokens.prompt,
      completion_tokens: tokens.completion,
      total_tokens: tokens.prompt + tokens.completion,
      prompt_tokens_details: { cached_tokens: tokens.cached, audio_tokens: 0 },
      completion_tokens_details: {
        reasoning_tokens: tokens.reasoning,
        audio_tokens: 0,
        accepted_prediction_tokens: 0,
        rejected_prediction_tokens: 0,
      },
    };
    const finish: ChatFinishReason = plan ? 'tool_calls' : ex.directives.finish === 'length' ? 'length' : 'stop';
    const id = nextId('chatcmpl-mock');
    const created = unixSeconds();
    const headers: OutgoingHttpHeaders = { 'x-request-id': nextId('req_') };
    const toolCalls = plan ? toolCallIds(plan) : [];

    if (body.stream === true) {
      const includeUsage = isRecord(body.stream_options) && body.stream_options.include_usage === true && !ex.directives.noUsage;
      return sendStream(
        ex,
        streamPlan({
          id,
          created,
          model,
          includeUsage,
          text,
          plan,
          toolCalls,
          finish,
          usage,
          chunks: ex.directives.chunks,
          headers,
          done: !ex.directives.noDone,
        }),
      );
    }

    const message: ChatCompletion['choices'][number]['message'] = plan
      ? {
          role: 'assistant',
          content: null,
          tool_calls: toolCalls.map((callId) => ({
            id: callId,
            type: 'function',
            function: { name: plan.name, arguments: plan.argumentsJson },
          })),
          refusal: null,
          annotations: [],
        }
      : { role: 'assistant', content: text, refusal: null, annotations: [] };
    const completion: ChatCompletion = {
      id,
      object: 'chat.completion',
      created,
      model,
      choices: [{ index: 0, message, logprobs: null, finish_reason: finish }],
      ...(ex.directives.noUsage ? {} : { usage }),
      service_tier: 'default',
      system_fingerprint: FINGERPRINT,
    };
    sendJsonWithFaults(ex, completion, headers);
  }
}

export function toolCallIds(plan: ToolCallPlan): string[] {
  const ids: string[] = [];
  for (let i = 0; i < plan.count; i++) ids.push(nextId('call_mock'));
  return ids;
}

interface ChatStreamInput {
  id: string;
  created: number;
  model: string;
  includeUsage: boolean;
  text: string;
  plan: ToolCallPlan | undefined;
  toolCalls: string[];
  finish: ChatFinishReason;
  usage: ChatUsage;
  chunks: number | undefined;
  headers: OutgoingHttpHeaders;
  /** Whether the stream ends with `data: [DONE]` (OpenAI's does; some compatible hosts' do not). */
  done: boolean;
}

/**
 * `chat.completion.chunk` frames. With `stream_options.include_usage` every
 * chunk carries `"usage":null` and one extra chunk with `"choices":[]` carries
 * the totals before `[DONE]`, exactly as OpenAI does.
 */
function streamPlan(s: ChatStreamInput): StreamPlan {
  const frame = (delta: ChatDelta, finish: ChatFinishReason | null): string => {
    const chunk: ChatCompletionChunk = {
      id: s.id,
      object: 'chat.completion.chunk',
      created: s.created,
      model: s.model,
      service_tier: 'default',
      system_fingerprint: FINGERPRINT,
      choices: [{ index: 0, delta, logprobs: null, finish_reason: finish }],
    };
    if (s.includeUsage) chunk.usage = null;
    return `data: ${JSON.stringify(chunk)}\n\n`;
  };
  const n = s.chunks ?? DEFAULT_CHUNKS;

  let head: string;
  const body: string[] = [];
  if (s.plan) {
    const plan = s.plan;
    const header = (index: number): ChatToolCallDelta => ({
      index,
      id: s.toolCalls[index],
      type: 'function',
      function: { name: plan.name, arguments: '' },
    });
    head = frame({ role: 'assistant', content: null, tool_calls: [header(0)], refusal: null }, null);
    for (let i = 0; i < plan.count; i++) {
      splitChunks(plan.argumentsJson, n).forEach((fragment, k) => {
        // A later call announces itself (id + name) in its own chunk right before its arguments.
        const announce = i > 0 && k === 0 ? frame({ tool_calls: [header(i)] }, null) : '';
        body.push(announce + frame({ tool_calls: [{ index: i, function: { arguments: fragment } }] }, null));
      });
    }
  } else {
    head = frame({ role: 'assistant', content: '', refusal: null }, null);
    for (const piece of splitChunks(s.text, n)) body.push(frame({ content: piece }, null));
  }

  let tail = frame({}, s.finish);
  if (s.includeUsage) {
    const usageChunk: ChatCompletionChunk = {
      id: s.id,
      object: 'chat.completion.chunk',
      created: s.created,
      model: s.model,
      service_tier: 'default',
      system_fingerprint: FINGERPRINT,
      choices: [],
      usage: s.usage,
    };
    tail += `data: ${JSON.stringify(usageChunk)}\n\n`;
  }
  if (s.done) tail += 'data: [DONE]\n\n';

  const errorBody = errorFor(500).body;
  return {
    headers: { ...s.headers, 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache' },
    head,
    body,
    tail,
    errorFrame: () => `data: ${JSON.stringify(errorBody)}\n\n`,
  };
}

export const openaiHandler: ProviderHandler = new OpenAIHandler();

/**
 * A route of OpenAI's API besides chat (the Responses API's): its keys, error envelope, status
 * errors and invalid-JSON answer are chat's.
 */
export abstract class OpenAIRouteHandler implements ProviderHandler {
  readonly provider = 'openai' as const;

  error(status: number, message?: string): ErrorReply {
    return openaiHandler.error(status, message);
  }

  invalidJson(): ErrorReply {
    return openaiHandler.invalidJson();
  }

  authenticate(ex: Exchange, acceptAnyKey: boolean): ErrorReply | undefined {
    return openaiHandler.authenticate(ex, acceptAnyKey);
  }

  abstract directiveText(ex: Exchange): string;

  abstract handle(ex: Exchange): void | Promise<void>;
}
