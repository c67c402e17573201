import type { EventSourceMessage } from 'eventsource-parser';
import { maskString, type AbortSource } from '@keygate/observability';
import type { ProviderAccess } from '@keygate/secrets';
import { tokenCount, type StreamEvent, type Usage } from './chat.types';
import { isRecord } from './translate.util';
import { parseUpstreamObject } from './upstream-body.util';
import { openAiStreamFailure, UpstreamError } from './upstream.error';
import { PendingRecords } from './pending-records';

const PROVIDER = 'openai';

/** A Responses API request passed through as its client wrote it (keygate's `/v1/responses`). */
export interface ResponsesPassthrough {
  /** The client's body, with this attempt's model and the product's policy applied. */
  body: Record<string, unknown>;
  access: ProviderAccess;
  signal: AbortSource;
  /**
   * Called with the id of a Response OpenAI stores (`store` not false) and its usage so far: when a
   * stream announces it (`response.created`, no usage yet) and when it is answered (a whole answer,
   * a stream's terminal event), with the ids of its output items (none when announced). The answer,
   * or that event, goes on once the promise settles.
   */
  onStored?: (id: string, usage: Usage | null, itemIds: string[]) => Promise<void> | void;
  /**
   * A compaction's answer (no stored Response): called with the ids of its output items, which the
   * client sends back as its next input. The answer goes on once the promise settles.
   */
  onItems?: (itemIds: string[]) => Promise<void> | void;
  /**
   * Called with the ids of the code execution containers an answer names (a code interpreter run's
   * `container_id`, a shell call's container, a container file citation), stored or not, before the
   * client has them: a later request may name one to reuse it. The answer, or that event, goes on once
   * the promise settles.
   */
  onContainers?: (containerIds: string[]) => Promise<void> | void;
}

/** A stored Response's route passed through: retrieve, delete, list its input items, cancel. */
export interface StoredResponseCall {
  /** `POST` for a cancel, which carries no body. */
  method: 'GET' | 'DELETE' | 'POST';
  /** Below the host's base URL: `/responses/{id}`, `/responses/{id}/input_items` or `/responses/{id}/cancel`, with its checked query. */
  path: string;
  access: ProviderAccess;
  signal: AbortSource;
}

/** A passed-through Response object: its text as OpenAI sent it, and what keygate read of it. */
export interface ResponsesAnswer {
  body: string;
  usage: Usage | null;
  /** The answer's generated text, for an estimate when it reports no usage. */
  text: string;
}

/** The events that end a Responses stream, each carrying the whole Response with its usage. */
const TERMINAL = new Set(['response.completed', 'response.incomplete', 'response.failed']);

/** The deltas whose text is generated output (to prime a stream and estimate one cut short). */
const TEXT_DELTAS = new Set([
  'response.output_text.delta',
  'response.refusal.delta',
  'response.function_call_arguments.delta',
  'response.custom_tool_call_input.delta',
  'response.reasoning_summary_text.delta',
  'response.reasoning_text.delta',
  'response.code_interpreter_call_code.delta',
  'response.mcp_call_arguments.delta',
  'response.audio.transcript.delta',
]);

/** Events of generated output that is not text: they end priming (never held back, a partial image is large). */
const OUTPUT_EVENTS = new Set(['response.image_generation_call.partial_image', 'response.audio.delta']);

/**
 * OpenAI's own Responses stream passed on event by event: every event goes out with the name and
 * data OpenAI sent, unknown ones included; keygate only reads them.
 * - `response.completed`, `response.incomplete` and `response.failed` end the stream, with the
 *   Response's usage (`input_tokens`, `output_tokens`);
 * - output text, refusal, tool-argument (function, custom, code interpreter, MCP), reasoning and
 *   audio-transcript deltas are kept as text, to prime the stream and to estimate an answer cut
 *   short; a partial image or an audio delta primes it too (`output`);
 * - an `error` event throws `UpstreamError('stream_error')`. Its details are read from its `error`
 *   object, as OpenAI sends them, or from the event itself, as its reference documents them; a
 *   `server_error` or a rate limit stands for a 500 or a 429, retried when it comes before any content;
 * - `response.failed` is passed on, then {@link end} throws the failure its `error` names (the same
 *   way): before any content it is retried like an `error` event, after content the client has it
 *   and the request is audited as an upstream failure;
 * - a body that ends before a terminal event is a truncated answer. The API sends no `[DONE]`.
 */
export class ResponsesNativeStream {
  private ended = false;
  private failure: UpstreamError | undefined;
  private readonly recording = new PendingRecords();
  /** The containers already told of. */
  private readonly containers = new Set<string>();

  constructor(
    private readonly onStored?: ResponsesPassthrough['onStored'],
    private readonly onContainers?: ResponsesPassthrough['onContainers'],
  ) {}

  /** What the last event's `onStored`/`onContainers` calls started, to wait on before passing that event on (taken once). */
  takeRecording(): Promise<void> | void {
    return this.recording.take();
  }

  /** Whether a terminal event has been seen: the stream is complete, whatever follows it. */
  get stopped(): boolean {
    return this.ended;
  }

  /** The event to pass on for one upstream event. */
  push(message: EventSourceMessage): StreamEvent {
    const event = parseUpstreamObject<Record<string, unknown>>(message.data, PROVIDER, 'stream event');
    // Data sent over several `data:` lines arrives joined by newlines, which one line cannot carry.
    const data = message.data.includes('\n') ? JSON.stringify(event) : message.data;
    const type = typeof event.type === 'string' ? event.type : undefined;
    const name = message.event ?? type;
    const out: StreamEvent = name === undefined ? { data } : { event: name, data };
    if (typeof event.sequence_number === 'number') out.sequence = event.sequence_number;
    if (type === 'error' || name === 'error')
      throw openAiStreamFailure(
        PROVIDER,
        isRecord(event.error) ? event.error : { code: event.code, message: event.message },
        'error event',
      );
    if (type !== undefined && TEXT_DELTAS.has(type) && typeof event.delta === 'string' && event.delta !== '') out.text = event.delta;
    else if (type !== undefined && OUTPUT_EVENTS.has(type)) out.output = true;
    // Its owner may use the id as soon as it has it: recorded when announced, again with the usage at the end.
    if (type === 'response.created' && isRecord(event.response)) this.recording.add(noteStored(event.response, null, this.onStored));
    // A container is named in its item's events (a code interpreter run), before the answer ends.
    if ((type === 'response.output_item.added' || type === 'response.output_item.done') && isRecord(event.item))
      this.noteContainers(containersOfItem(event.item));
    if (type !== undefined && TERMINAL.has(type)) {
      this.ended = true;
      const response = isRecord(event.response) ? event.response : {};
      const usage = responsesUsage(response.usage);
      this.recording.add(noteStored(response, usage, this.onStored));
      this.noteContainers(outputContainerIds(response));
      if (type === 'response.failed') {
        this.failure = openAiStreamFailure(PROVIDER, isRecord(response.error) ? response.error : {}, 'response failed');
        out.tellsFailure = true;
        if (maskFailureMessage(response)) out.data = JSON.stringify(event);
        // What the failed attempt is billed; not a final usage, which would end a priming as a success.
        if (usage) out.runningUsage = usage;
      } else if (usage) out.usage = usage;
    }
    return out;
  }

  /**
   * Checks the stream ended with a terminal event (a clean close before one is a truncated answer)
   * that is no failure (`response.failed` throws what it names).
   */
  end(): void {
    if (this.failure) throw this.failure;
    if (!this.ended) throw new UpstreamError('connection_lost', PROVIDER, 'stream ended without response.completed');
  }

  /** Tells `onContainers` of the containers not told of yet. */
  private noteContainers(ids: string[]): void {
    const fresh = ids.filter((id) => !this.containers.has(id));
    if (!fresh.length || !this.onContainers) return;
    for (const id of fresh) this.containers.add(id);
    this.recording.add(this.onContainers(fresh));
  }
}

/**
 * Masks a failed Response's `error.message` in place, like a log line; returns whether it changed.
 * The upstream's own words reach the client in a failed Response (a stream's `response.failed`, a
 * stored one read back) as they do in an error's message (see UpstreamError.toGatewayError):
 * masked, so a host that echoes a credential cannot hand it on.
 */
export function maskFailureMessage(response: Record<string, unknown>): boolean {
  const error = response.error;
  if (!isRecord(error) || typeof error.message !== 'string') return false;
  const masked = maskString(error.message);
  if (masked === error.message) return false;
  error.message = masked;
  return true;
}

/** Tells `onStored` of a Response OpenAI stores (its `store` is not false); what it returns, to wait on. */
export function noteStored(
  response: Record<string, unknown>,
  usage: Usage | null,
  onStored: ResponsesPassthrough['onStored'],
): Promise<void> | void {
  if (onStored && typeof response.id === 'string' && response.store !== false) return onStored(response.id, usage, outputItemIds(response));
}

/** The ids of a Response's output items (messages, reasoning, tool calls): what a later `item_reference` may name. */
export function outputItemIds(response: Record<string, unknown>): string[] {
  if (!Array.isArray(response.output)) return [];
  return response.output.flatMap((item: unknown) => (isRecord(item) && typeof item.id === 'string' ? [item.id] : []));
}

/**
 * The code execution containers an output item names: a code interpreter run's `container_id`, a
 * shell call's container (`environment.container_id`), a message's container file citations.
 */
export function containersOfItem(item: Record<string, unknown>): string[] {
  const ids: unknown[] = [];
  if (item.type === 'code_interpreter_call') ids.push(item.container_id);
  if (isRecord(item.environment)) ids.push(item.environment.container_id);
  if (item.type === 'message' && Array.isArray(item.content))
    for (const part of item.content)
      if (isRecord(part) && Array.isArray(part.annotations))
        for (const note of part.annotations) if (isRecord(note) && note.type === 'container_file_citation') ids.push(note.container_id);
  return [...new Set(ids.filter((id): id is string => typeof id === 'string' && id !== ''))];
}

/** The containers a Response's output names (see {@link containersOfItem}). */
export function outputContainerIds(response: Record<string, unknown>): string[] {
  if (!Array.isArray(response.output)) return [];
  return [...new Set(response.output.flatMap((item: unknown) => (isRecord(item) ? containersOfItem(item) : [])))];
}

/** Whether an event ends a Responses stream (its body may stay open after it). */
export function isResponseEnd(event: { event?: string; data: string }): boolean {
  if (event.event !== undefined) return TERMINAL.has(event.event);
  return /^\s*\{\s*"type"\s*:\s*"response\.(completed|incomplete|failed)"/.test(event.data);
}

/**
 * A Response's usage in OpenAI's chat shape (`input_tokens` counts cached ones too, `output_tokens`
 * reasoning ones), with those two details when OpenAI reported them; null when it has none, or
 * when its input or output count is left out or not a count (keygate's estimate then bills it). A
 * detail that is not a count is left out.
 */
export function responsesUsage(usage: unknown): Usage | null {
  if (!isRecord(usage)) return null;
  // OpenAI always sends both: one left out (absent or null) or not a count leaves the usage
  // unreported, so keygate's estimate bills it (a missing input count read as 0 would bill the
  // prompt as free).
  const input = tokenCount(usage.input_tokens);
  const output = tokenCount(usage.output_tokens);
  if (input === null || output === null) return null;
  const result: Usage = { prompt_tokens: input, completion_tokens: output, total_tokens: input + output };
  const cached = isRecord(usage.input_tokens_details) ? tokenCount(usage.input_tokens_details.cached_tokens) : null;
  const reasoning = isRecord(usage.output_tokens_details) ? tokenCount(usage.output_tokens_details.reasoning_tokens) : null;
  if (cached !== null) result.prompt_tokens_details = { cached_tokens: cached };
  if (reasoning !== null) result.completion_tokens_details = { reasoning_tokens: reasoning };
  return result;
}

/** The generated text of a Response (messages' text and refusals, tool-call arguments, reasoning summaries). */
export function responseText(response: Record<string, unknown>): string {
  let text = '';
  for (const item of Array.isArray(response.output) ? (response.output as unknown[]) : []) {
    if (!isRecord(item)) continue;
    if (typeof item.arguments === 'string') text += item.arguments;
    if (typeof item.input === 'string') text += item.input;
    for (const part of [
      ...(Array.isArray(item.content) ? (item.content as unknown[]) : []),
      ...(Array.isArray(item.summary) ? (item.summary as unknown[]) : []),
    ]) {
      if (!isRecord(part)) continue;
      if (typeof part.text === 'string') text += part.text;
      else if (typeof part.refusal === 'string') text += part.refusal;
    }
  }
  return text;
}
