import { asString, completionTokens, isRecord, nextId, unixSeconds, type JsonRecord } from './mock.content';
import type { Exchange } from './mock.exchange';
import { sendJsonWithFaults } from './mock.stream';
import { COMPACT_ARGUMENTS, INPUT_TOKENS_ARGUMENTS, unknownArguments } from './openai.arguments';
import { contentText } from './openai.handler';
import {
  ConversationRouteHandler,
  inputItems,
  inputTokens,
  invalidInput,
  missing,
  storedContext,
  unknownParameter,
} from './openai.responses.handler';
import type { CompactedUserMessage, CompactionItem, ResponseCompaction, ResponseInputTokens } from './openai.responses.types';

/**
 * `POST /v1/responses/input_tokens` and `POST /v1/responses/compact`: the two Responses routes
 * that read a conversation without creating a response. Both check the body as create does (an
 * argument the route does not take, `input`, `previous_response_id` and item references against
 * this server's store) and count its input as create would bill it.
 */

/** A user message of the conversation, as the compaction lists it: text only, with an id. */
function userMessage(text: string): CompactedUserMessage {
  return { id: nextId('msg_mock'), type: 'message', status: 'completed', content: [{ type: 'input_text', text }], role: 'user' };
}

/** The user messages' texts among input items (short `{role, content}` form or `type: "message"`). */
function userTexts(items: unknown[]): string[] {
  return items.flatMap((item) =>
    isRecord(item) && item.role === 'user' && (item.type === undefined || item.type === 'message') ? [contentText(item.content)] : [],
  );
}

/** The text the compaction item stands for: every item's text, joined (what the mock's "encryption" wraps). */
function conversationText(items: unknown[]): string {
  return items
    .map((item) => (isRecord(item) ? contentText(item.type === 'function_call_output' ? item.output : item.content) : ''))
    .filter((text) => text !== '')
    .join('\n');
}

/**
 * OpenAI's compaction item is opaque (Fernet-style `gAAAAA…`); the mock's is that prefix and the
 * base64url of the conversation's text, so a test can tell two compactions apart, never read them.
 */
function encrypted(text: string): string {
  return `gAAAAA${Buffer.from(`mock-compaction:${text}`).toString('base64url')}`;
}

/** `POST /v1/responses/input_tokens`: `{"object": "response.input_tokens", "input_tokens": N}`. */
export class OpenAIInputTokensHandler extends ConversationRouteHandler {
  handle(ex: Exchange): void {
    const body = isRecord(ex.body) ? ex.body : {};
    const [unknown] = unknownArguments(body, INPUT_TOKENS_ARGUMENTS);
    if (unknown !== undefined) return ex.sendError(unknownParameter(unknown));
    // The model is optional here (the count is the API's, not one model's); input as create takes it.
    const rejected = invalidInput(body.input, body);
    if (rejected) return ex.sendError(rejected);
    const context = storedContext(this.store, body);
    if ('error' in context) return ex.sendError(context.error);
    const count: ResponseInputTokens = { object: 'response.input_tokens', input_tokens: inputTokens(body, context.previous) };
    sendJsonWithFaults(ex, count, { 'x-request-id': nextId('req_') });
  }
}

/**
 * `POST /v1/responses/compact`: a `response.compaction` whose output is every user message of the
 * conversation (the previous response's input, then this input), then one `compaction` item
 * carrying the rest as `encrypted_content`; billed like a response (its input, and the compaction
 * as output). Nothing is stored: the client sends the output back as the next request's input.
 */
export class OpenAICompactHandler extends ConversationRouteHandler {
  handle(ex: Exchange): void {
    const body: JsonRecord = isRecord(ex.body) ? ex.body : {};
    const [unknown] = unknownArguments(body, COMPACT_ARGUMENTS);
    if (unknown !== undefined) return ex.sendError(unknownParameter(unknown));
    const model = asString(body.model);
    if (!model) return ex.sendError(missing('model'));
    const rejected = invalidInput(body.input, body);
    if (rejected) return ex.sendError(rejected);
    const context = storedContext(this.store, body);
    if ('error' in context) return ex.sendError(context.error);
    const { previous } = context;
    const history = [...(previous?.inputItems ?? []), ...(previous?.response.output ?? []), ...inputItems(body.input)];
    const texts = userTexts(history);
    const summary = conversationText(history);
    const compaction: CompactionItem = { id: nextId('cmp_mock'), type: 'compaction', encrypted_content: encrypted(summary) };
    const input = inputTokens(body, previous);
    const output = completionTokens(summary);
    const answer: ResponseCompaction = {
      id: nextId('resp_mock'),
      object: 'response.compaction',
      created_at: unixSeconds(),
      output: [...texts.map(userMessage), compaction],
      ...(ex.directives.noUsage
        ? {}
        : {
            usage: {
              input_tokens: input,
              input_tokens_details: { cached_tokens: 0 },
              output_tokens: output,
              output_tokens_details: { reasoning_tokens: 0 },
              total_tokens: input + output,
            },
          }),
    };
    sendJsonWithFaults(ex, answer, { 'x-request-id': nextId('req_') });
  }
}
