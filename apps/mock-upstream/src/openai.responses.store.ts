import { asArray, isRecord, nextId, type JsonRecord } from './mock.content';
import type { ErrorReply, Exchange } from './mock.exchange';
import { sendJsonWithFaults } from './mock.stream';
import { OpenAIRouteHandler, openaiError } from './openai.handler';
import type { ResponseDeleted, ResponseInputItem, ResponseInputItemList, ResponseObject } from './openai.responses.types';

/**
 * OpenAI's stored responses: every Response created with `store` not false is kept by the mock
 * server that made it, and served back by `GET /v1/responses/{id}`, `DELETE /v1/responses/{id}`
 * and `GET /v1/responses/{id}/input_items`, and read by `previous_response_id`.
 */

/** Enough for any test run; bounded so a long benchmark cannot grow the mock without end. */
export const DEFAULT_MAX_STORED_RESPONSES = 10_000;

export interface StoredResponse {
  /** The final Response: as the plain answer or the terminal stream event carried it. */
  response: ResponseObject;
  inputItems: ResponseInputItem[];
}

/** The newest `maxEntries` responses of one mock server; the oldest is evicted first. */
export class ResponseStore {
  /** A Map iterates in insertion order, so its first key is always the oldest response. */
  private readonly entries = new Map<string, StoredResponse>();

  constructor(readonly maxEntries: number = DEFAULT_MAX_STORED_RESPONSES) {
    if (!Number.isInteger(maxEntries) || maxEntries < 0)
      throw new RangeError(`maxStoredResponses must be an integer >= 0, got ${maxEntries}`);
  }

  /** Keeps (or replaces, e.g. a stream that failed after it was stored) the response under its id. */
  save(response: ResponseObject, inputItems: ResponseInputItem[]): void {
    this.entries.set(response.id, { response, inputItems });
    while (this.entries.size > this.maxEntries) {
      const oldest = this.entries.keys().next().value as string;
      this.entries.delete(oldest);
    }
  }

  get(id: string): StoredResponse | undefined {
    return this.entries.get(id);
  }

  /** Whether a kept response has an output item of this id (what an `item_reference` may name). */
  hasOutputItem(id: string): boolean {
    for (const { response } of this.entries.values())
      if (Array.isArray(response.output) && response.output.some((item) => (item as { id?: unknown }).id === id)) return true;
    return false;
  }

  delete(id: string): boolean {
    return this.entries.delete(id);
  }

  get size(): number {
    return this.entries.size;
  }
}

/** What an input item's id starts with. OpenAI's list example shows `msg_`; the others are the mock's choice. */
function itemIdPrefix(item: JsonRecord): string {
  if (item.type === 'message' || (item.type === undefined && typeof item.role === 'string')) return 'msg_mock';
  if (item.type === 'function_call') return 'fc_mock';
  return 'item_mock';
}

/** A message's content as OpenAI lists it: text becomes one part (`output_text` for the assistant's, `input_text` else). */
function messageContent(role: unknown, content: unknown): unknown {
  if (typeof content !== 'string') return content;
  return [role === 'assistant' ? { type: 'output_text', text: content, annotations: [] } : { type: 'input_text', text: content }];
}

/**
 * The request's input items as OpenAI lists them, each with an id: a string `input` is one user
 * message item, and a message in the short `{role, content}` form becomes a full message item
 * (`type: "message"`, `status`, content parts), as the SDK's `ResponseItem` types have them; other
 * items are kept as sent (the id they carry, or a new one, goes first).
 */
export function storedInputItems(input: unknown): ResponseInputItem[] {
  if (typeof input === 'string') {
    return [{ id: nextId('msg_mock'), type: 'message', role: 'user', status: 'completed', content: [{ type: 'input_text', text: input }] }];
  }
  const items: ResponseInputItem[] = [];
  for (const item of asArray(input)) {
    if (!isRecord(item)) continue;
    const stored: ResponseInputItem = { id: typeof item.id === 'string' && item.id !== '' ? item.id : nextId(itemIdPrefix(item)) };
    for (const key of Object.keys(item)) if (key !== 'id') stored[key] = item[key];
    if (item.role !== undefined && (item.type === undefined || item.type === 'message')) {
      stored.type = 'message';
      stored.status ??= 'completed';
      stored.content = messageContent(item.role, item.content);
    }
    items.push(stored);
  }
  return items;
}

/**
 * OpenAI's 404 for a response id it does not hold (or no longer holds). Its reference gives no
 * example body; this wording is the one OpenAI-compatible servers (vLLM, others) copy from it. Some
 * of them set `param: "response_id"`; we follow the brief and the plainer majority: param and code null.
 */
export function responseNotFound(id: string): ErrorReply {
  return openaiError(404, { message: `Response with id '${id}' not found.`, type: 'invalid_request_error', code: null });
}

const MAX_LIMIT = 100;
const DEFAULT_LIMIT = 20;

type ListQuery = { limit: number; order: 'asc' | 'desc'; after: string | null } | { error: ErrorReply };

/**
 * `limit` (1-100, default 20) and `order` (`asc` | `desc`, default `desc`), rejected in OpenAI's
 * validation wording (`integer_above_max_value` / `integer_below_min_value` / `invalid_value`, as
 * OpenAI answers them on its other routes; the wording for a non-integer limit is a guess).
 */
function listQuery(ex: Exchange): ListQuery {
  let limit = DEFAULT_LIMIT;
  const rawLimit = ex.queryParam('limit');
  if (rawLimit !== null) {
    if (!/^-?\d+$/.test(rawLimit)) {
      return {
        error: openaiError(400, {
          message: `Invalid type for 'limit': expected an integer, but got a string instead.`,
          type: 'invalid_request_error',
          param: 'limit',
          code: 'invalid_type',
        }),
      };
    }
    limit = Number(rawLimit);
    if (limit > MAX_LIMIT) {
      return {
        error: openaiError(400, {
          message: `Invalid 'limit': integer above maximum value. Expected a value <= ${MAX_LIMIT}, but got ${rawLimit} instead.`,
          type: 'invalid_request_error',
          param: 'limit',
          code: 'integer_above_max_value',
        }),
      };
    }
    if (limit < 1) {
      return {
        error: openaiError(400, {
          message: `Invalid 'limit': integer below minimum value. Expected a value >= 1, but got ${rawLimit} instead.`,
          type: 'invalid_request_error',
          param: 'limit',
          code: 'integer_below_min_value',
        }),
      };
    }
  }
  const order = ex.queryParam('order') ?? 'desc';
  if (order !== 'asc' && order !== 'desc') {
    return {
      error: openaiError(400, {
        message: `Invalid value: '${order}'. Supported values are: 'asc' and 'desc'.`,
        type: 'invalid_request_error',
        param: 'order',
        code: 'invalid_value',
      }),
    };
  }
  return { limit, order, after: ex.queryParam('after') };
}

/**
 * One page of `items` in `order`, starting after the item whose id is `after`. An `after` that
 * names no item of this response gives an empty page.
 */
export function pageOf(items: ResponseInputItem[], limit: number, order: 'asc' | 'desc', after: string | null): ResponseInputItemList {
  const ordered = order === 'asc' ? items : [...items].reverse();
  let start = 0;
  if (after !== null) {
    const at = ordered.findIndex((item) => item.id === after);
    start = at === -1 ? ordered.length : at + 1;
  }
  const data = ordered.slice(start, start + limit);
  return {
    object: 'list',
    data,
    first_id: data.length > 0 ? data[0].id : null,
    last_id: data.length > 0 ? data[data.length - 1].id : null,
    has_more: start + limit < ordered.length,
  };
}

/**
 * `GET /v1/responses/{id}`, `DELETE /v1/responses/{id}`, `GET /v1/responses/{id}/input_items` and
 * `POST /v1/responses/{id}/cancel` for one mock server's store. Keys, error envelope and status errors are the chat route's; the
 * id comes from the path (`ex.pathParam`), the query is read only where it matters.
 */
export class OpenAIStoredResponsesHandler extends OpenAIRouteHandler {
  constructor(private readonly store: ResponseStore) {
    super();
  }

  /** These routes carry no prompt: only the `x-mock-*` headers direct them. */
  directiveText(): string {
    return '';
  }

  handle(ex: Exchange): void {
    const id = ex.pathParam;
    // The list's query is checked before the lookup, as request validation comes first upstream.
    const query = ex.route === 'openai.responses.inputItems' ? listQuery(ex) : undefined;
    if (query && 'error' in query) return ex.sendError(query.error);
    const stored = this.store.get(id);
    if (!stored) return ex.sendError(responseNotFound(id));
    const headers = { 'x-request-id': nextId('req_') };

    if (query) return sendJsonWithFaults(ex, pageOf(stored.inputItems, query.limit, query.order, query.after), headers);
    if (ex.route === 'openai.responses.cancel') return this.cancel(ex);
    if (ex.route === 'openai.responses.delete') {
      // OpenAI's API reference example (and Azure's copy of it: "Always return 'response'") gives
      // `object: "response"`; a translated copy of the reference shows "response.deleted". We follow
      // the reference example. The openai SDK types the call `void` and does not read the body.
      this.store.delete(id);
      const deleted: ResponseDeleted = { id, object: 'response', deleted: true };
      return sendJsonWithFaults(ex, deleted, headers);
    }
    // Retrieve. `include` / `include[]` are accepted and ignored. Only a background response can be
    // streamed back, and the mock makes none. OpenAI's exact wording is not published; this is the
    // one OpenAI-compatible servers (Azure's agent server among them) use.
    if (ex.queryParam('stream') === 'true') {
      return ex.sendError(
        openaiError(400, {
          message: 'This response cannot be streamed because it was not created with background=true.',
          type: 'invalid_request_error',
          param: 'stream',
          code: null,
        }),
      );
    }
    sendJsonWithFaults(ex, stored.response, headers);
  }

  /**
   * `POST /v1/responses/{id}/cancel`. OpenAI cancels only a response created with `background:
   * true` and refuses any other with a 400. Its wording is not in its reference; this is the one
   * OpenAI-compatible servers (vLLM) answer with. The mock makes no background response (it
   * answers every one at once), so each response it keeps is refused.
   */
  private cancel(ex: Exchange): void {
    ex.sendError(
      openaiError(400, { message: 'Cannot cancel a synchronous response.', type: 'invalid_request_error', param: null, code: null }),
    );
  }
}
