import type { OutgoingHttpHeaders } from 'node:http';
import { stripDirectives, type MockDirectives } from './mock.directives';
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
} from './mock.content';
import { messageRolesProblem } from './anthropic.roles';
import { outputConfigProblems } from './anthropic.structured';
import { sampleJson } from './mock.structured';
import { checkThinking, thinkingAnswer, type ThinkingAnswer } from './anthropic.thinking';
import { holdThread, resolveThread } from './anthropic.threads';
import type { ErrorReply, Exchange, ProviderHandler } from './mock.exchange';
import { sendJsonWithFaults, sendStream, type StreamPlan } from './mock.stream';
import { mockTokens, writtenUsage } from './mock.usage';
import type {
  AnthropicContainer,
  AnthropicContentBlock,
  AnthropicErrorBody,
  AnthropicMessage,
  AnthropicStopReason,
  AnthropicStreamEvent,
} from './anthropic.types';

/**
 * Anthropic Messages API wire format: `POST /v1/messages` plain and as a named
 * event stream, with `{"type":"error","error":{...}}` errors.
 */

/** Anthropic's documented status -> error.type mapping. */
function errorType(status: number): string {
  switch (status) {
    case 400:
      return 'invalid_request_error';
    case 401:
      return 'authentication_error';
    case 402:
      return 'billing_error';
    case 403:
      return 'permission_error';
    case 404:
      return 'not_found_error';
    case 413:
      return 'request_too_large';
    case 429:
      return 'rate_limit_error';
    case 504:
      return 'timeout_error';
    case 529:
      return 'overloaded_error';
    default:
      return status >= 500 ? 'api_error' : 'invalid_request_error';
  }
}

function defaultMessage(status: number): string {
  switch (status) {
    case 429:
      return 'Number of request tokens has exceeded your per-minute rate limit (https://docs.anthropic.com/en/api/rate-limits); see the response headers for current usage. Please reduce the prompt length or the maximum tokens requested, or try again later.';
    case 529:
      return 'Overloaded';
    case 500:
      return 'Internal server error';
    default:
      return `Mock failure with status ${status}.`;
  }
}

/** Anthropic's error body; `code` is its `error.details.error_code` (a thread refusal's). */
function anthropicError(status: number, message?: string, code?: string): ErrorReply {
  const requestId = nextId('req_mock');
  const body: AnthropicErrorBody = {
    type: 'error',
    error: { type: errorType(status), message: message ?? defaultMessage(status), ...(code ? { details: { error_code: code } } : {}) },
    request_id: requestId,
  };
  return { status, body, headers: { 'request-id': requestId } };
}

/** Text of a message `content` (string or blocks); tool_result blocks are not the user's words. */
function blocksText(content: unknown): string {
  if (typeof content === 'string') return content;
  let out = '';
  for (const block of asArray(content)) {
    if (isRecord(block) && block.type === 'text' && typeof block.text === 'string') out = out === '' ? block.text : `${out}\n${block.text}`;
  }
  return out;
}

/** The words of the last user message that is not tool results only (undefined: none). */
function lastUserText(messages: unknown[]): string | undefined {
  for (let i = messages.length - 1; i >= 0; i--) {
    const m = messages[i];
    // A user message made only of tool results is the client talking for a tool, not the user.
    if (isRecord(m) && m.role === 'user') {
      const text = blocksText(m.content);
      if (text !== '' || !hasToolResult(m)) return text;
    }
  }
  return undefined;
}

function hasToolResult(message: unknown): boolean {
  return isRecord(message) && asArray(message.content).some((b) => isRecord(b) && b.type === 'tool_result');
}

/** Chars counted for the prompt estimate: text blocks and tool_result contents. */
function promptChars(body: JsonRecord, messages: unknown[]): number {
  let chars = blocksText(body.system).length;
  for (const m of messages) {
    if (!isRecord(m)) continue;
    chars += blocksText(m.content).length;
    for (const b of asArray(m.content)) if (isRecord(b) && b.type === 'tool_result') chars += blocksText(b.content).length;
  }
  return chars;
}

/** Anthropic names each SSE event after the payload's own `type`. */
function sse(data: AnthropicStreamEvent): string {
  return `event: ${data.type}\ndata: ${JSON.stringify(data)}\n\n`;
}

class AnthropicHandler implements ProviderHandler {
  readonly provider = 'anthropic' as const;

  error(status: number, message?: string): ErrorReply {
    return anthropicError(status, message);
  }

  invalidJson(): ErrorReply {
    return anthropicError(400, 'There was an issue with your request. Please ensure the request body is valid JSON.');
  }

  authenticate(ex: Exchange, acceptAnyKey: boolean): ErrorReply | undefined {
    const raw = ex.req.headers['x-api-key'];
    const key = (Array.isArray(raw) ? raw[0] : raw)?.trim() ?? '';
    if (key === '') return anthropicError(401, 'x-api-key header is required');
    if (!acceptAnyKey && !key.startsWith('sk-ant-mock')) return anthropicError(401, 'invalid x-api-key');
    // Anthropic rejects an unversioned call even with a good key.
    if (!ex.req.headers['anthropic-version']) return anthropicError(400, 'anthropic-version: header is required');
    return undefined;
  }

  directiveText(ex: Exchange): string {
    const body = ex.body;
    if (!isRecord(body)) return '';
    ex.userText = lastUserText(asArray(body.messages)) ?? ex.userText;
    return ex.userText;
  }

  handle(ex: Exchange): void | Promise<void> {
    const body = isRecord(ex.body) ? ex.body : {};
    const model = asString(body.model);
    if (!model) return ex.sendError(anthropicError(400, 'model: Field required'));
    if (!Array.isArray(body.messages)) return ex.sendError(anthropicError(400, 'messages: Field required'));
    // A thread's continuation is answered as the whole conversation it continues.
    const thread = resolveThread(body, ex.req.headers['anthropic-beta']);
    if (thread.refusal) return ex.sendError(anthropicError(thread.refusal.status, thread.refusal.message, thread.refusal.code));
    const messages = thread.messages;
    const rolesProblem = messageRolesProblem(model, messages);
    if (rolesProblem !== undefined) return ex.sendError(anthropicError(400, rolesProblem));
    // POST /v1/messages/count_tokens: the prompt's tokens as a Messages answer would report them.
    if (ex.route === 'anthropic.countTokens')
      return sendJsonWithFaults(
        ex,
        { input_tokens: promptTokens(promptChars(body, messages), messages.length) },
        { 'request-id': nextId('req_mock') },
      );
    // Required by the real API: catches gateways that forget to set it when translating.
    if (typeof body.max_tokens !== 'number') return ex.sendError(anthropicError(400, 'max_tokens: Field required'));
    const formatProblems = outputConfigProblems(body.output_config);
    if (formatProblems.length) return ex.sendError(anthropicError(400, formatProblems.join('; ')));
    const verdict = checkThinking(body, model, messages);
    if (verdict.problem !== undefined) return ex.sendError(anthropicError(400, verdict.problem));

    const declared: string[] = [];
    const parameters = new Map<string, unknown>();
    for (const t of asArray(body.tools)) {
      const name = isRecord(t) ? asString(t.name) : undefined;
      if (name) {
        declared.push(name);
        parameters.set(name, (t as JsonRecord).input_schema);
      }
    }
    const choice = isRecord(body.tool_choice) ? body.tool_choice : undefined;
    const forced = choice?.type === 'tool' ? asString(choice.name) : choice?.type === 'any' ? '' : undefined;
    // A mid-conversation system message after the user's turn leaves it the user's turn.
    const last = messages.filter((m) => !(isRecord(m) && m.role === 'system')).at(-1);
    // A continuation's new turn may be tool results only: the user's words are in the thread.
    const userText = stripDirectives(thread.continues === undefined ? ex.userText : (lastUserText(messages) ?? ''));
    const plan = planToolCalls({
      declared,
      parameters,
      forced,
      disabled: choice?.type === 'none',
      userTurn: isRecord(last) && last.role === 'user' && !hasToolResult(last),
      directives: ex.directives,
      userText,
    });

    // Structured outputs: the answer is JSON of the schema (a tool call, when one is planned, still wins).
    const schema = isRecord(body.output_config) && isRecord(body.output_config.format) ? body.output_config.format.schema : undefined;
    const text = plan ? '' : isRecord(schema) ? sampleJson(schema) : replyText('anthropic', userText, ex.directives.answerChars);
    const thought = verdict.thinks ? thinkingAnswer(userText, ex.directives.redactedThinking === true, verdict.display) : undefined;
    const tokens = mockTokens(
      ex.directives,
      promptTokens(promptChars(body, messages), messages.length),
      (plan ? completionTokens(plan.argumentsJson) * plan.count : completionTokens(text)) + (thought?.tokens ?? 0),
    );
    // Anthropic's input_tokens are those after the last cache breakpoint: reads and writes are apart.
    const usage = {
      input: tokens.prompt - tokens.cached - tokens.cacheWrite,
      cacheWrite: tokens.cacheWrite,
      cacheWrite1h: tokens.cacheWrite1h,
      cacheRead: tokens.cached,
    };
    const outputTokens = tokens.completion;
    const stopReason: AnthropicStopReason = plan ? 'tool_use' : ex.directives.finish === 'length' ? 'max_tokens' : 'end_turn';
    const id = nextId('msg_mock');
    const toolIds: string[] = [];
    if (plan) for (let i = 0; i < plan.count; i++) toolIds.push(nextId('toolu_mock'));
    const requestId = nextId('req_mock');
    const headers: OutgoingHttpHeaders = { 'request-id': requestId };
    const container = codeContainer(body);
    const answering = answeringModel(body, model, ex.directives.decline === true);
    const content: AnthropicContentBlock[] = plan
      ? toolIds.map((toolId) => ({ type: 'tool_use', id: toolId, name: plan.name, input: plan.args }))
      : [{ type: 'text', text }];
    // A copy: thinking blocks put before a whole answer's content below are not the thread's (as a stream's are not).
    if (thread.holds) holdThread(id, messages, [...content], thread.continues);

    if (body.stream === true) {
      return sendStream(
        ex,
        streamPlan({
          id,
          model: answering,
          thought,
          text,
          plan,
          toolIds,
          stopReason,
          usage,
          outputTokens,
          chunks: ex.directives.chunks,
          directives: ex.directives,
          headers,
          container,
        }),
      );
    }

    if (thought) content.unshift(...thinkingBlocks(thought));
    const message: AnthropicMessage = {
      id,
      type: 'message',
      role: 'assistant',
      model: answering,
      content,
      stop_reason: stopReason,
      stop_sequence: null,
      usage: writtenUsage(ex.directives, {
        input_tokens: usage.input,
        cache_creation_input_tokens: usage.cacheWrite,
        cache_read_input_tokens: usage.cacheRead,
        cache_creation: cacheCreation(usage),
        output_tokens: outputTokens,
        service_tier: 'standard',
      }),
      ...(container ? { container } : {}),
    };
    sendJsonWithFaults(ex, message, headers);
  }
}

/**
 * The model that answers: the requested one, or, when it declines (`decline`) and the request lists
 * server-side `fallbacks`, the first of them.
 */
function answeringModel(body: JsonRecord, model: string, declines: boolean): string {
  const first = declines ? asArray(body.fallbacks)[0] : undefined;
  return (isRecord(first) && asString(first.model)) || model;
}

/** How long a code execution container lives after its last use (Anthropic: 30 days at most; idle containers sooner). */
const CONTAINER_LIFETIME_MS = 30 * 86_400_000;

/**
 * The container a request with a code execution tool runs in: the one it names (`container`, an id
 * or `{id}`), else a new one. None without such a tool.
 */
function codeContainer(body: JsonRecord): AnthropicContainer | undefined {
  const codeTool = asArray(body.tools).some((t) => isRecord(t) && typeof t.type === 'string' && t.type.startsWith('code_execution'));
  if (!codeTool) return undefined;
  const named = typeof body.container === 'string' ? body.container : isRecord(body.container) ? asString(body.container.id) : undefined;
  return { id: named ?? nextId('container_mock'), expires_at: new Date(Date.now() + CONTAINER_LIFETIME_MS).toISOString() };
}

/** A prompt's tokens as Anthropic splits them: after the last cache breakpoint, written to the cache (an hour's of them apart), read from it. */
interface MessageUsage {
  input: number;
  cacheWrite: number;
  cacheWrite1h: number;
  cacheRead: number;
}

/** Anthropic's split of the cache writes by how long they are kept. */
function cacheCreation(usage: MessageUsage): { ephemeral_5m_input_tokens: number; ephemeral_1h_input_tokens: number } {
  return { ephemeral_5m_input_tokens: usage.cacheWrite - usage.cacheWrite1h, ephemeral_1h_input_tokens: usage.cacheWrite1h };
}

/** The thinking an answer opens with, in order. */
function thinkingBlocks(thought: ThinkingAnswer): AnthropicContentBlock[] {
  return thought.redacted ? [thought.thinking, thought.redacted] : [thought.thinking];
}

interface MessageStreamInput {
  id: string;
  model: string;
  thought: ThinkingAnswer | undefined;
  text: string;
  plan: ToolCallPlan | undefined;
  toolIds: string[];
  stopReason: AnthropicStopReason;
  usage: MessageUsage;
  outputTokens: number;
  chunks: number | undefined;
  /** The request's directives: `bad_usage` writes the usage of message_start and message_delta. */
  directives: MockDirectives;
  headers: OutgoingHttpHeaders;
  /** The code execution container, sent with message_delta as Anthropic does. */
  container: AnthropicContainer | undefined;
}

/**
 * message_start, content_block_start, ping, content_block_delta..., content_block_stop,
 * message_delta (stop_reason + final output_tokens), message_stop. message_start
 * reports output_tokens 1, as Anthropic does before generation starts. A thinking answer
 * opens with its thinking block (thinking_delta..., then one signature_delta) and, on
 * request, a redacted_thinking block sent whole; the answer's blocks come after them.
 */
function streamPlan(s: MessageStreamInput): StreamPlan {
  const n = s.chunks ?? DEFAULT_CHUNKS;
  const start = sse({
    type: 'message_start',
    message: {
      id: s.id,
      type: 'message',
      role: 'assistant',
      model: s.model,
      content: [],
      stop_reason: null,
      stop_sequence: null,
      usage: writtenUsage(s.directives, {
        input_tokens: s.usage.input,
        cache_creation_input_tokens: s.usage.cacheWrite,
        cache_read_input_tokens: s.usage.cacheRead,
        cache_creation: cacheCreation(s.usage),
        output_tokens: 1,
        service_tier: 'standard',
      }),
    },
  });
  const ping = sse({ type: 'ping' });
  const blockStop = (index: number): string => sse({ type: 'content_block_stop', index });
  const thinking = s.thought ? thinkingBlocks(s.thought) : [];
  // The answer's own blocks are numbered after the thinking blocks.
  const first = thinking.length;
  const answerStart = (index: number): string =>
    sse({
      type: 'content_block_start',
      index,
      content_block: s.plan ? { type: 'tool_use', id: s.toolIds[index - first], name: s.plan.name, input: {} } : { type: 'text', text: '' },
    });

  let head: string;
  const body: string[] = [];
  // Frames that ride with the answer's first delta, so fault counts stay "K deltas".
  let lead = '';
  if (s.thought) {
    const { thinking: block, redacted } = s.thought;
    head = start + sse({ type: 'content_block_start', index: 0, content_block: { type: 'thinking', thinking: '', signature: '' } }) + ping;
    // Omitted thinking streams no text, only its signature.
    if (block.thinking !== '')
      for (const piece of splitChunks(block.thinking, n))
        body.push(sse({ type: 'content_block_delta', index: 0, delta: { type: 'thinking_delta', thinking: piece } }));
    lead = sse({ type: 'content_block_delta', index: 0, delta: { type: 'signature_delta', signature: block.signature } }) + blockStop(0);
    if (redacted) lead += sse({ type: 'content_block_start', index: 1, content_block: redacted }) + blockStop(1);
    lead += answerStart(first);
  } else {
    head = start + answerStart(first) + ping;
  }

  const answerAt = body.length;
  let lastIndex = first;
  if (s.plan) {
    const plan = s.plan;
    for (let i = 0; i < plan.count; i++) {
      splitChunks(plan.argumentsJson, n).forEach((fragment, k) => {
        // Block boundaries ride with the next delta so fault counts stay "K deltas".
        const boundary = i > 0 && k === 0 ? blockStop(first + i - 1) + answerStart(first + i) : '';
        body.push(
          boundary + sse({ type: 'content_block_delta', index: first + i, delta: { type: 'input_json_delta', partial_json: fragment } }),
        );
      });
    }
    lastIndex = first + plan.count - 1;
  } else {
    for (const piece of splitChunks(s.text, n)) {
      body.push(sse({ type: 'content_block_delta', index: first, delta: { type: 'text_delta', text: piece } }));
    }
  }
  body[answerAt] = lead + body[answerAt];

  const tail =
    blockStop(lastIndex) +
    sse({
      type: 'message_delta',
      delta: { stop_reason: s.stopReason, stop_sequence: null, ...(s.container ? { container: s.container } : {}) },
      usage: writtenUsage(s.directives, { output_tokens: s.outputTokens }),
    }) +
    (s.directives.noDone ? '' : sse({ type: 'message_stop' }));

  return {
    headers: { ...s.headers, 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache' },
    head,
    body,
    tail,
    errorFrame: () => sse({ type: 'error', error: { type: 'overloaded_error', message: 'Overloaded' } }),
  };
}

export const anthropicHandler: ProviderHandler = new AnthropicHandler();
