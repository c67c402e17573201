import type { EventSourceMessage } from 'eventsource-parser';
import { anthropicStreamError, mergeUsage, toUsage } from './anthropic.translate';
import type { AnthropicMessage, AnthropicResponseBlock, AnthropicStreamEvent, AnthropicUsage } from './anthropic.types';
import type { StreamEvent, Usage } from './chat.types';
import { isRecord } from './translate.util';
import { parseUpstreamObject } from './upstream-body.util';
import { UpstreamError } from './upstream.error';
import { PendingRecords } from './pending-records';

const PROVIDER = 'anthropic';

/**
 * Anthropic's own Messages stream passed on event by event (keygate's `/v1/messages`): every event
 * goes out with the name and data Anthropic sent, unknown ones included; keygate only reads them.
 * - `message_start` and `message_delta` carry the running usage, `message_stop` ends the stream
 *   with the final usage;
 * - text, tool-input and thinking deltas are kept as text, to estimate an answer cut short;
 * - an `error` event throws `UpstreamError('stream_error')` with the status its type stands for
 *   (the caller answers with its own error event; before any content it is retried like that status);
 * - a body that ends before `message_stop` is a truncated answer, unless its `message_delta` gave the
 *   stop reason (a compatible host that leaves `message_stop` out): that answer is whole, and the
 *   client is given the `message_stop` the host left out.
 */
export class AnthropicNativeStream {
  private readonly usage: AnthropicUsage = {};
  private ended = false;
  /** Whether a `message_delta` gave the stop reason: the answer is complete, `message_stop` or not. */
  private stopReason = false;
  /** The answer's id, from `message_start`. */
  private id: string | undefined;
  /** The code execution container already told of. */
  private container: string | undefined;
  private readonly recording = new PendingRecords();

  /**
   * `notes.onMessage`: told the answer's id at `message_start` and its usage at `message_stop`;
   * `notes.onContainer`: told the id of the code execution container it names;
   * `notes.onModel`: told the model `message_start` names (see AnswerNotes).
   */
  constructor(private readonly notes: AnswerNotes = {}) {}

  /** What the last event's notes started, to wait on before passing that event on (taken once). */
  takeRecording(): Promise<void> | void {
    return this.recording.take();
  }

  /** Whether `message_stop` has been seen: the stream is complete, whatever follows it. */
  get stopped(): boolean {
    return this.ended;
  }

  /** Whether the stop reason has been given (`message_delta`): the answer is whole, `message_stop` or not. */
  get answered(): boolean {
    return this.stopReason;
  }

  /** The event to pass on for one upstream event. */
  push(message: EventSourceMessage): StreamEvent {
    const event = parseUpstreamObject<AnthropicStreamEvent>(message.data, PROVIDER, 'stream event');
    // Data that came on several `data:` lines is joined with newlines by the parser; written back
    // as one line, since a newline would end the field on the client's side.
    const data = message.data.includes('\n') ? JSON.stringify(event) : message.data;
    const name = message.event ?? (typeof event.type === 'string' ? event.type : undefined);
    const out: StreamEvent = name === undefined ? { data } : { event: name, data };
    switch (event.type) {
      case 'message_start':
        if (isRecord(event.message?.usage)) this.merge(event.message.usage, out);
        if (typeof event.message?.id === 'string') {
          this.id = event.message.id;
          this.note(null);
        }
        this.noteContainer(event.message?.container);
        if (this.notes.onModel && typeof event.message?.model === 'string') this.notes.onModel(event.message.model);
        break;
      case 'content_block_start':
        out.text = blockText(event.content_block);
        break;
      case 'content_block_delta':
        out.text = deltaText(event.delta);
        break;
      case 'message_delta':
        if (isRecord(event.usage)) this.merge(event.usage, out);
        if (isRecord(event.delta) && typeof event.delta.stop_reason === 'string') this.stopReason = true;
        if (isRecord(event.delta)) this.noteContainer(event.delta.container);
        break;
      case 'message_stop':
        this.ended = true;
        // A compatible host that reported no usage at all, or none that reads as counts: keygate's
        // estimate stands in, not zeros.
        this.withUsage(out, 'usage');
        this.note(out.usage ?? null);
        break;
      case 'error':
        throw anthropicStreamError(event.error?.type, event.error?.message);
      case 'content_block_stop':
      case 'ping':
      default:
        // Passed on as they are, unknown event types included (Anthropic may add some).
        break;
    }
    if (out.text === undefined || out.text === '') delete out.text;
    return out;
  }

  /**
   * Checks the stream ended with `message_stop`, or after the stop reason (then gives the
   * `message_stop` left out, with the final usage); a clean close before either is a truncated answer.
   */
  end(): StreamEvent[] {
    if (this.ended) return [];
    if (!this.stopReason) throw new UpstreamError('connection_lost', PROVIDER, 'stream ended without message_stop');
    this.ended = true;
    const out: StreamEvent = { event: 'message_stop', data: '{"type":"message_stop"}' };
    this.withUsage(out, 'usage');
    this.note(out.usage ?? null);
    return [out];
  }

  /** Tells `onMessage` of the answer's id (and usage, at the end), when it has one. */
  private note(usage: Usage | null): void {
    if (this.notes.onMessage && this.id !== undefined) this.recording.add(this.notes.onMessage(this.id, usage));
  }

  /** Tells `onContainer` of a container the stream names, once. */
  private noteContainer(container: unknown): void {
    const id = containerIdOf(container);
    if (id === undefined || id === this.container || !this.notes.onContainer) return;
    this.container = id;
    this.recording.add(this.notes.onContainer(id));
  }

  /** Merges reported counts; the running usage goes on the event only once some count is known (`{}` is none). */
  private merge(usage: AnthropicUsage, out: StreamEvent): void {
    mergeUsage(this.usage, usage);
    this.withUsage(out, 'runningUsage');
  }

  /** Puts the usage reported so far on `out` as `field`, when there is one (see {@link toUsage}). */
  private withUsage(out: StreamEvent, field: 'usage' | 'runningUsage'): void {
    const usage = Object.keys(this.usage).length ? toUsage(this.usage) : null;
    if (usage) out[field] = usage;
  }
}

/** What a passed-through answer is read for (a whole answer's, or its stream's events). */
export interface AnswerNotes {
  /**
   * Told the id of the answer (a `message_start`'s, a whole answer's) before the client has it, and
   * again with the answer's usage once it is whole: a request that asked Anthropic to hold a thread
   * records whose it is (the client continues from that id). Awaited before the event goes out.
   */
  onMessage?: (id: string, usage: Usage | null) => Promise<void> | void;
  /**
   * Told the id of the code execution container the answer ran in (a whole answer's `container`, a
   * stream's `message_start` or `message_delta`), before the client has it: a later request may
   * name it (`container`) to reuse it, and only its user may. Awaited before the event goes out.
   */
  onContainer?: (containerId: string) => Promise<void> | void;
  /**
   * Told the model the answer names (a whole answer's `model`, a stream's `message_start`): another
   * than the one asked for when one of Anthropic's server-side `fallbacks` answered.
   */
  onModel?: (model: string) => void;
}

/** The id of an answer's `container` (`{id, expires_at}`), when it names one. */
export function containerIdOf(container: unknown): string | undefined {
  return isRecord(container) && typeof container.id === 'string' && container.id !== '' ? container.id : undefined;
}

/** The usage of a whole Messages answer, in OpenAI's shape; null when it has none. */
export function messageUsage(message: Partial<AnthropicMessage>): Usage | null {
  return isRecord(message.usage) ? toUsage(message.usage) : null;
}

/** The text of a Messages answer's blocks (text, tool input, thinking), to estimate its tokens. */
export function messageText(message: Partial<AnthropicMessage>): string {
  return (Array.isArray(message.content) ? message.content : []).map(blockText).join('');
}

function blockText(block: AnthropicResponseBlock | undefined): string | undefined {
  if (!isRecord(block)) return undefined;
  if (typeof block.text === 'string') return block.text;
  if (typeof block.thinking === 'string') return block.thinking;
  if (block.type === 'tool_use' && isRecord(block.input) && Object.keys(block.input).length) return JSON.stringify(block.input);
  return undefined;
}

function deltaText(delta: unknown): string | undefined {
  if (!isRecord(delta)) return undefined;
  for (const field of ['text', 'partial_json', 'thinking'] as const) if (typeof delta[field] === 'string') return delta[field];
  return undefined;
}
