import type { OutgoingHttpHeaders } from 'node:http';
import { stripDirectives } from './mock.directives';
import {
  asArray,
  asString,
  completionTokens,
  DEFAULT_CHUNKS,
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
import type { ErrorReply, Exchange } from './mock.exchange';
import { openaiFormattedReply } from './mock.structured';
import { sendJsonWithFaults, sendStream, type StreamPlan } from './mock.stream';
import { RESPONSES_ARGUMENTS, unknownArguments } from './openai.arguments';
import { contentText, errorFor, OpenAIRouteHandler, openaiError, toolCallIds } from './openai.handler';
import { storedInputItems, type ResponseStore, type StoredResponse } from './openai.responses.store';
import type { OpenAIErrorBody } from './openai.types';
import { mockTokens } from './mock.usage';
import type {
  ResponseCodeInterpreterCall,
  ResponseFunctionCall,
  ResponseObject,
  ResponseOutputItem,
  ResponseOutputMessage,
  ResponseOutputText,
  ResponseStreamEventPayload,
  ResponseUsage,
} from './openai.responses.types';

/**
 * OpenAI Responses API wire format: `POST /v1/responses`, plain and as a named
 * event stream (`event: <type>` + `data: {"type":..,"sequence_number":n,..}`,
 * no `[DONE]`). Keys, error envelope and status errors are the chat route's.
 * Responses are kept in the server's store unless `store` is false (see
 * openai.responses.store.ts for the routes that read them back).
 */

/** `input` as a list of items: a plain string is one user message. */
export function inputItems(input: unknown): unknown[] {
  return typeof input === 'string' ? [{ role: 'user', content: input }] : asArray(input);
}

/** A user message, in the short `{role, content}` form or as a `type: "message"` item. */
function isUserMessage(item: unknown): item is JsonRecord {
  return isRecord(item) && item.role === 'user' && (item.type === undefined || item.type === 'message');
}

export function lastUserText(items: unknown[]): string {
  for (let i = items.length - 1; i >= 0; i--) {
    const item = items[i];
    if (isUserMessage(item)) return contentText(item.content);
  }
  return '';
}

/**
 * Characters an input item adds to the prompt count: a message's text parts,
 * or a tool result's output. Other items (function_call, reasoning, images)
 * count as a message with no text, as an assistant tool-call message does on chat.
 */
function itemChars(item: unknown): number {
  if (!isRecord(item)) return 0;
  if (item.type === 'function_call_output') return contentText(item.output).length;
  return contentText(item.content).length;
}

interface ToolInfo {
  declared: string[];
  parameters: Map<string, unknown>;
  forced: string | undefined;
  disabled: boolean;
}

/** Function tools in the Responses flat shape: `{type: "function", name, parameters}`. */
function toolInfo(body: JsonRecord): ToolInfo {
  const declared: string[] = [];
  const parameters = new Map<string, unknown>();
  for (const t of asArray(body.tools)) {
    const name = isRecord(t) && t.type === 'function' ? asString(t.name) : undefined;
    if (name) {
      declared.push(name);
      parameters.set(name, (t as JsonRecord).parameters);
    }
  }
  const choice = body.tool_choice;
  let forced: string | undefined;
  if (choice === 'required') forced = '';
  else if (isRecord(choice) && choice.type === 'function') forced = asString(choice.name);
  return { declared, parameters, forced, disabled: choice === 'none' };
}

export function missing(param: string): ErrorReply {
  return openaiError(400, {
    message: `Missing required parameter: '${param}'.`,
    type: 'invalid_request_error',
    param,
    code: 'missing_required_parameter',
  });
}

/**
 * OpenAI's 400 for a top-level argument the Responses API does not take: it names the first one, as
 * `param` too. Chat's `messages` gets its own pointer to `input`.
 */
export function unknownParameter(name: string): ErrorReply {
  if (name === 'messages')
    return openaiError(400, {
      message:
        "Unsupported parameter: 'messages'. In the Responses API, this parameter has moved to 'input'. Try again with the new parameter. See the API documentation for more information: https://platform.openai.com/docs/api-reference/responses/create.",
      type: 'invalid_request_error',
      code: 'unsupported_parameter',
    });
  return openaiError(400, {
    message: `Unknown parameter: '${name}'.`,
    type: 'invalid_request_error',
    param: name,
    code: 'unknown_parameter',
  });
}

/**
 * Why `input` cannot be answered, or undefined when it can. It may be left out where stored context
 * carries the conversation (a `prompt` template, a `conversation`, a previous response), as OpenAI allows.
 */
export function invalidInput(input: unknown, body: Record<string, unknown>): ErrorReply | undefined {
  if (input === undefined || input === null)
    return body.prompt !== undefined || body.conversation !== undefined || body.previous_response_id !== undefined
      ? undefined
      : missing('input');
  if (Array.isArray(input)) {
    if (input.length > 0) return undefined;
    return openaiError(400, {
      message: "Invalid 'input': empty array. Expected an array with minimum length 1, but got an empty array instead.",
      type: 'invalid_request_error',
      param: 'input',
      code: 'empty_array',
    });
  }
  if (typeof input === 'string') return undefined;
  return openaiError(400, {
    message: `Invalid type for 'input': expected one of a string or an array of input items, but got ${typeof input === 'object' ? 'an object' : `a ${typeof input}`} instead.`,
    type: 'invalid_request_error',
    param: 'input',
    code: 'invalid_type',
  });
}

/**
 * The stored context a request names, checked as OpenAI checks it: its `previous_response_id`
 * (a string this server holds) and its `item_reference` inputs (output items of kept responses).
 * Shared by create, input_tokens and compact.
 */
export function storedContext(store: ResponseStore, body: JsonRecord): { previous: StoredResponse | undefined } | { error: ErrorReply } {
  let previous: StoredResponse | undefined;
  const previousId = body.previous_response_id;
  if (previousId !== undefined && previousId !== null) {
    if (typeof previousId !== 'string') {
      return {
        error: openaiError(400, {
          message: `Invalid type for 'previous_response_id': expected a string, but got ${Array.isArray(previousId) ? 'an array' : typeof previousId === 'object' ? 'an object' : `a ${typeof previousId}`} instead.`,
          type: 'invalid_request_error',
          param: 'previous_response_id',
          code: 'invalid_type',
        }),
      };
    }
    previous = store.get(previousId);
    if (!previous) return { error: previousNotFound(previousId) };
  }
  // An item reference names an item OpenAI stored (here: an output item of a kept response).
  const references = Array.isArray(body.input) ? body.input.filter((item) => isRecord(item) && item.type === 'item_reference') : [];
  for (const reference of references as JsonRecord[]) {
    const id = reference.id;
    if (typeof id !== 'string' || !store.hasOutputItem(id))
      return {
        error: openaiError(404, {
          message: `Item with id '${String(id)}' not found. Items are not persisted when \`store\` is set to false. Try again with \`store\` set to true, or remove this item from your input.`,
          type: 'invalid_request_error',
          param: 'input',
          code: null,
        }),
      };
  }
  return { previous };
}

/**
 * The input tokens of a request: its instructions and input items, and a continuation's previous
 * response (its input and output) as context. What create bills and input_tokens counts alike.
 */
export function inputTokens(body: JsonRecord, previous: StoredResponse | undefined): number {
  const items = inputItems(body.input);
  const instructions = asString(body.instructions);
  let promptChars = instructions ? instructions.length : 0;
  for (const item of items) promptChars += itemChars(item);
  const context = previous?.response.usage ? previous.response.usage.input_tokens + previous.response.usage.output_tokens : 0;
  return context + promptTokens(promptChars, items.length + (instructions ? 1 : 0));
}

/** OpenAI refuses a `max_output_tokens` below 16. */
function tooFewOutputTokens(value: unknown): ErrorReply | undefined {
  if (typeof value !== 'number' || value >= 16) return undefined;
  return openaiError(400, {
    message: `Invalid 'max_output_tokens': integer below minimum value. Expected a value >= 16, but got ${value} instead.`,
    type: 'invalid_request_error',
    param: 'max_output_tokens',
    code: 'integer_below_min_value',
  });
}

const numberOr = (value: unknown, fallback: number): number => (typeof value === 'number' ? value : fallback);
const booleanOr = (value: unknown, fallback: boolean): boolean => (typeof value === 'boolean' ? value : fallback);

/** Everything a finished answer needs; the stream derives its in-progress snapshots from it. */
interface Answer {
  /** The response without status, output, incomplete_details and usage. */
  base: Omit<ResponseObject, 'status' | 'output' | 'incomplete_details' | 'usage'>;
  text: string;
  plan: ToolCallPlan | undefined;
  messageId: string;
  calls: Array<{ id: string; callId: string }>;
  incomplete: boolean;
  /** `failed` directive: the stream's injected failure is a response.failed event. */
  failed: boolean;
  /** undefined with `no_usage`. */
  usage: ResponseUsage | undefined;
  /** A code interpreter tool's run before the answer, and the container it ran in. */
  codeRun: { id: string; containerId: string } | undefined;
}

function outputText(text: string): ResponseOutputText {
  return { type: 'output_text', annotations: [], logprobs: [], text };
}

function messageItem(a: Answer, status: ResponseOutputMessage['status'], content: ResponseOutputText[]): ResponseOutputMessage {
  return { id: a.messageId, type: 'message', status, content, role: 'assistant' };
}

function callItem(a: Answer, index: number, done: boolean): ResponseFunctionCall {
  const plan = a.plan as ToolCallPlan;
  return {
    id: a.calls[index].id,
    type: 'function_call',
    status: done ? 'completed' : 'in_progress',
    arguments: done ? plan.argumentsJson : '',
    call_id: a.calls[index].callId,
    name: plan.name,
  };
}

function finalOutput(a: Answer): ResponseOutputItem[] {
  const run = a.codeRun ? [codeRunItem(a.codeRun)] : [];
  if (a.plan) return [...run, ...a.calls.map((_, i) => callItem(a, i, true))];
  return [...run, messageItem(a, a.incomplete ? 'incomplete' : 'completed', [outputText(a.text)])];
}

function codeRunItem(run: { id: string; containerId: string }): ResponseCodeInterpreterCall {
  return { id: run.id, type: 'code_interpreter_call', status: 'completed', code: 'print(1)', container_id: run.containerId, outputs: null };
}

/**
 * The code interpreter run of a request that declares the tool: in the container its `container`
 * names (an id), else in a new one (`{type: "auto"}`). None without the tool.
 */
function codeRunOf(body: JsonRecord): { id: string; containerId: string } | undefined {
  const tool = asArray(body.tools).find((t) => isRecord(t) && t.type === 'code_interpreter');
  if (!isRecord(tool)) return undefined;
  const containerId = typeof tool.container === 'string' ? tool.container : nextId('cntr_mock');
  return { id: nextId('ci_mock'), containerId };
}

function finalResponse(a: Answer): ResponseObject {
  return {
    ...a.base,
    status: a.incomplete ? 'incomplete' : 'completed',
    output: finalOutput(a),
    incomplete_details: a.incomplete ? { reason: 'max_output_tokens' } : null,
    ...(a.usage ? { usage: a.usage } : {}),
  };
}

/**
 * A response that failed mid-stream: what the `failed` directive's `response.failed` event carries
 * (no output, the prompt's usage), and what the store keeps after any in-stream failure.
 */
function failedResponse(a: Answer, message: string): ResponseObject {
  return {
    ...a.base,
    status: 'failed',
    output: [],
    incomplete_details: null,
    error: { code: 'server_error', message },
    ...(a.usage ? { usage: { ...a.usage, output_tokens: 0, total_tokens: a.usage.input_tokens } } : {}),
  };
}

/**
 * OpenAI's 400 for a `previous_response_id` it does not hold (unknown, deleted, or made with
 * `store: false`). Its API reference documents this error on the WebSocket transport (400,
 * `previous_response_not_found`, param `previous_response_id`, "Previous response with id '…' not
 * found."); over HTTP the same fields come in the usual `{"error": {...}}` envelope with type
 * `invalid_request_error`, as client reports of that error show. (vLLM's imitation answers 404;
 * we follow OpenAI's documented 400.)
 */
export function previousNotFound(id: string): ErrorReply {
  return openaiError(400, {
    message: `Previous response with id '${id}' not found.`,
    type: 'invalid_request_error',
    param: 'previous_response_id',
    code: 'previous_response_not_found',
  });
}

/** What `response.created` and `response.in_progress` carry: no output yet, usage null. */
function pendingResponse(a: Answer): ResponseObject {
  return { ...a.base, status: 'in_progress', output: [], incomplete_details: null, ...(a.usage ? { usage: null } : {}) };
}

/**
 * A route that reads a conversation (`input`, `previous_response_id`, item references) against one
 * mock server's store: create, input_tokens and compact. Its directives are in the last user message.
 */
export abstract class ConversationRouteHandler extends OpenAIRouteHandler {
  constructor(protected readonly store: ResponseStore) {
    super();
  }

  directiveText(ex: Exchange): string {
    const body = ex.body;
    if (!isRecord(body)) return '';
    ex.userText = lastUserText(inputItems(body.input));
    return ex.userText;
  }
}

/** `POST /v1/responses` for one mock server: its responses go to that server's store. */
export class OpenAIResponsesHandler extends ConversationRouteHandler {
  handle(ex: Exchange): void | Promise<void> {
    const body = isRecord(ex.body) ? ex.body : {};
    const [unknown] = unknownArguments(body, RESPONSES_ARGUMENTS);
    if (unknown !== undefined) return ex.sendError(unknownParameter(unknown));
    const model = asString(body.model);
    if (!model) return ex.sendError(missing('model'));
    const rejected = invalidInput(body.input, body) ?? tooFewOutputTokens(body.max_output_tokens);
    if (rejected) return ex.sendError(rejected);
    const context = storedContext(this.store, body);
    if ('error' in context) return ex.sendError(context.error);
    const { previous } = context;

    const items = inputItems(body.input);
    const instructions = asString(body.instructions) ?? null;
    const userText = stripDirectives(ex.userText);
    const plan = planToolCalls({
      ...toolInfo(body),
      userTurn: isUserMessage(items[items.length - 1]),
      directives: ex.directives,
      userText,
    });

    // `text.format` constrains the answer to JSON (a tool call, when one is planned, still wins).
    const textConfig = isRecord(body.text) ? body.text : {};
    const format = isRecord(textConfig.format) ? textConfig.format : { type: 'text' };
    const text = plan ? '' : openaiFormattedReply(format.type, format.schema, replyText('openai', userText, ex.directives.answerChars));
    const tokens = mockTokens(
      ex.directives,
      inputTokens(body, previous),
      plan ? completionTokens(plan.argumentsJson) * plan.count : completionTokens(text),
    );
    const answer: Answer = {
      base: {
        id: nextId('resp_mock'),
        object: 'response',
        created_at: unixSeconds(),
        background: false,
        error: null,
        instructions,
        max_output_tokens: typeof body.max_output_tokens === 'number' ? body.max_output_tokens : null,
        max_tool_calls: null,
        model,
        parallel_tool_calls: booleanOr(body.parallel_tool_calls, true),
        previous_response_id: asString(body.previous_response_id) ?? null,
        prompt_cache_key: null,
        reasoning: { effort: null, summary: null },
        safety_identifier: null,
        service_tier: 'default',
        store: booleanOr(body.store, true),
        temperature: numberOr(body.temperature, 1),
        text: { format, verbosity: typeof textConfig.verbosity === 'string' ? textConfig.verbosity : 'medium' },
        tool_choice: body.tool_choice ?? 'auto',
        tools: asArray(body.tools),
        top_logprobs: 0,
        top_p: numberOr(body.top_p, 1),
        truncation: 'disabled',
        user: null,
        metadata: isRecord(body.metadata) ? body.metadata : {},
      },
      text,
      plan,
      messageId: nextId('msg_mock'),
      calls: plan ? toolCallIds(plan).map((callId) => ({ id: nextId('fc_mock'), callId })) : [],
      incomplete: !plan && ex.directives.finish === 'length',
      codeRun: codeRunOf(body),
      failed: ex.directives.failed === true,
      usage: ex.directives.noUsage
        ? undefined
        : {
            input_tokens: tokens.prompt,
            input_tokens_details: { cached_tokens: tokens.cached },
            output_tokens: tokens.completion,
            output_tokens_details: { reasoning_tokens: tokens.reasoning },
            total_tokens: tokens.prompt + tokens.completion,
          },
    };
    const headers: OutgoingHttpHeaders = { 'x-request-id': nextId('req_') };

    // Stored before the answer goes out (as OpenAI keeps a response whether or not the client stays),
    // so a client that has the final event can retrieve it at once.
    const final = finalResponse(answer);
    const inputs = answer.base.store ? storedInputItems(body.input) : [];
    if (answer.base.store) this.store.save(final, inputs);
    if (body.stream === true) {
      // An in-stream failure leaves the response failed upstream: the store keeps that instead.
      const onFailure = (failed: ResponseObject): void => {
        if (answer.base.store) this.store.save(failed, inputs);
      };
      return sendStream(ex, streamPlan(answer, ex.directives.chunks ?? DEFAULT_CHUNKS, headers, onFailure));
    }
    sendJsonWithFaults(ex, final, headers);
  }
}

/** Numbers events in the order they are serialised, from 0. */
class EventWriter {
  seq = 0;

  frame(event: ResponseStreamEventPayload): string {
    // `type` first, then `sequence_number`, then the payload: OpenAI's key order.
    const data = Object.assign({ type: event.type, sequence_number: this.seq++ }, event);
    return `event: ${event.type}\ndata: ${JSON.stringify(data)}\n\n`;
  }
}

/**
 * The real event order. Text: response.created, response.in_progress,
 * output_item.added, content_part.added (head); output_text.delta x N (body);
 * output_text.done, content_part.done, output_item.done, response.completed or
 * response.incomplete (tail). Function calls: each call is output_item.added,
 * function_call_arguments.delta x N, function_call_arguments.done,
 * output_item.done; a later call's opening events travel with its first delta.
 */
function streamPlan(a: Answer, chunks: number, headers: OutgoingHttpHeaders, onFailure: (failed: ResponseObject) => void): StreamPlan {
  const w = new EventWriter();
  const pending = pendingResponse(a);
  let head = w.frame({ type: 'response.created', response: pending }) + w.frame({ type: 'response.in_progress', response: pending });
  const body: string[] = [];
  /** Sequence number the error event takes after K body frames. */
  const seqAfter: number[] = [];
  let tail = '';

  // A code interpreter run comes first, whole: the answer's items follow it.
  const first = a.codeRun ? 1 : 0;
  if (a.codeRun) {
    const run = codeRunItem(a.codeRun);
    head +=
      w.frame({ type: 'response.output_item.added', output_index: 0, item: { ...run, status: 'in_progress' } }) +
      w.frame({ type: 'response.output_item.done', output_index: 0, item: run });
  }
  if (a.plan) {
    const plan = a.plan;
    const closeCall = (i: number): string =>
      w.frame({
        type: 'response.function_call_arguments.done',
        item_id: a.calls[i].id,
        output_index: first + i,
        arguments: plan.argumentsJson,
      }) + w.frame({ type: 'response.output_item.done', output_index: first + i, item: callItem(a, i, true) });
    head += w.frame({ type: 'response.output_item.added', output_index: first, item: callItem(a, 0, false) });
    seqAfter.push(w.seq);
    for (let i = 0; i < plan.count; i++) {
      splitChunks(plan.argumentsJson, chunks).forEach((delta, k) => {
        const open =
          i > 0 && k === 0
            ? closeCall(i - 1) + w.frame({ type: 'response.output_item.added', output_index: first + i, item: callItem(a, i, false) })
            : '';
        body.push(
          open + w.frame({ type: 'response.function_call_arguments.delta', item_id: a.calls[i].id, output_index: first + i, delta }),
        );
        seqAfter.push(w.seq);
      });
    }
    tail = closeCall(plan.count - 1);
  } else {
    const at = { item_id: a.messageId, output_index: first, content_index: 0 };
    head +=
      w.frame({ type: 'response.output_item.added', output_index: first, item: messageItem(a, 'in_progress', []) }) +
      w.frame({ type: 'response.content_part.added', ...at, part: outputText('') });
    seqAfter.push(w.seq);
    for (const delta of splitChunks(a.text, chunks)) {
      body.push(w.frame({ type: 'response.output_text.delta', ...at, delta, logprobs: [] }));
      seqAfter.push(w.seq);
    }
    const final = finalOutput(a)[first];
    tail =
      w.frame({ type: 'response.output_text.done', ...at, text: a.text, logprobs: [] }) +
      w.frame({ type: 'response.content_part.done', ...at, part: outputText(a.text) }) +
      w.frame({ type: 'response.output_item.done', output_index: first, item: final });
  }
  tail += w.frame({ type: a.incomplete ? 'response.incomplete' : 'response.completed', response: finalResponse(a) });

  const { message } = (errorFor(500).body as OpenAIErrorBody).error;
  return {
    headers: { ...headers, 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache' },
    head,
    body,
    tail,
    errorFrame: (sent) => {
      const failed = failedResponse(a, message);
      onFailure(failed);
      // `failed`: the failure comes as the terminal response.failed, which carries the usage so far.
      if (a.failed) {
        const data = JSON.stringify({ type: 'response.failed', sequence_number: seqAfter[sent], response: failed });
        return `event: response.failed
data: ${data}

`;
      }
      // As OpenAI sends it: the details nested under `error` (its reference shows them at the top level).
      const error = {
        type: 'error',
        sequence_number: seqAfter[sent],
        error: { type: 'server_error', code: 'server_error', message, param: null },
      };
      return `event: error\ndata: ${JSON.stringify(error)}\n\n`;
    },
  };
}
