import { randomUUID } from 'node:crypto';
import { Injectable } from '@nestjs/common';
import type { AbortSource } from '@keygate/observability';
import type { ProviderAccess } from '@keygate/secrets';
import { AnthropicNativeStream, containerIdOf, messageText, messageUsage, type AnswerNotes } from './anthropic.native';
import type { AnthropicMessage, AnthropicStreamEvent } from './anthropic.types';
import { AnthropicStreamTranslator, toChatCompletion, toMessagesRequest, type CompletionMeta } from './anthropic.translate';
import type { ChatResult, ChatStream, PassedHeaders, StreamEvent } from './chat.types';
import type { ProviderAdapter, ProviderCall } from './provider-adapter.interface';
import { UpstreamClient, type UpstreamResponse } from './upstream.client';
import { cutAfterAnswer, failFromStatus, parseUpstreamObject, readText, sseEvents } from './upstream-body.util';

/** The Messages API version keygate's translation is written against. */
export const ANTHROPIC_VERSION = '2023-06-01';

/** A Messages request passed through as its client wrote it (keygate's `/v1/messages`), and what its answer is read for. */
export interface MessagesPassthrough extends AnswerNotes {
  /** The client's body, with this attempt's model and the product's policy applied. */
  body: Record<string, unknown>;
  access: ProviderAccess;
  signal: AbortSource;
  /** The client's `anthropic-version` (keygate's {@link ANTHROPIC_VERSION} when absent), checked. */
  version?: string;
  /** The client's `anthropic-beta` feature list, checked. */
  beta?: string;
}

/** See {@link AnswerNotes.onMessage}. */
export type OnMessage = NonNullable<AnswerNotes['onMessage']>;

/** A passed-through answer (a message, a token count): its text as Anthropic sent it, and the headers passed on. */
export interface PassedAnswer {
  body: string;
  headers: PassedHeaders;
}

/** A passed-through Messages answer, and what keygate read of it. */
export interface MessagesAnswer extends PassedAnswer {
  usage: ChatResult['usage'];
  /** The answer's text, for an estimate when it reports no usage. */
  text: string;
}

/** What Anthropic's `request-id` may look like to be passed on (its ids are `req_` and base62). */
const REQUEST_ID = /^[\w-]{1,128}$/;

/**
 * The headers of Anthropic's answer the client gets on `/v1/messages`: its `request-id`, which the
 * SDKs expose (`_request_id`) and Anthropic's support asks for. Its rate-limit headers describe
 * keygate's key, shared by every caller, not the client's limits (keygate's own 429s carry those).
 */
export function passedHeaders(res: UpstreamResponse): PassedHeaders {
  const id = res.headers['request-id'];
  return typeof id === 'string' && REQUEST_ID.test(id) ? { 'request-id': id } : {};
}

/**
 * Anthropic Claude (Messages API). Requests and answers are translated between OpenAI's format and
 * Anthropic's by the pure functions of `anthropic.translate.ts`; this class only talks HTTP. The
 * key travels in `x-api-key`; nothing from the client's headers is forwarded.
 */
@Injectable()
export class AnthropicAdapter implements ProviderAdapter {
  readonly name = 'anthropic' as const;

  constructor(private readonly client: UpstreamClient) {}

  async chat(call: ProviderCall): Promise<ChatResult> {
    // Translated before anything is sent: a request Anthropic cannot express never reaches it.
    const request = toMessagesRequest(call.body);
    const res = await this.post(call.access, call.signal, request);
    const { completion, usage } = toChatCompletion(parse<AnthropicMessage>(await readText(res, this.name), 'response'), meta(call.body));
    return { body: JSON.stringify(completion), usage };
  }

  async chatStream(call: ProviderCall): Promise<ChatStream> {
    const request = toMessagesRequest(call.body);
    request.stream = true;
    const res = await this.post(call.access, call.signal, request);
    const translator = new AnthropicStreamTranslator({ ...meta(call.body), clientWantsUsage: call.clientWantsUsage });
    return { events: this.events(res, translator) };
  }

  /**
   * A Messages request passed through: the client's fields (after policy, re-serialised) with
   * keygate's key and the client's version headers; the answer comes back unchanged.
   */
  async messages(call: MessagesPassthrough): Promise<MessagesAnswer> {
    const res = await this.post(call.access, call.signal, call.body, call);
    const body = await readText(res, this.name);
    const message = parse<Partial<AnthropicMessage>>(body, 'response');
    const usage = messageUsage(message);
    if (call.onModel && typeof message.model === 'string') call.onModel(message.model);
    // Recorded before the answer goes out: the client may continue its thread, or reuse its container, at once.
    if (call.onMessage && typeof message.id === 'string') await call.onMessage(message.id, usage);
    const container = containerIdOf(message.container);
    if (call.onContainer && container !== undefined) await call.onContainer(container);
    return { body, headers: passedHeaders(res), usage, text: messageText(message) };
  }

  /**
   * `POST /v1/messages/count_tokens` passed through: the prompt's token count as Anthropic counts
   * it (free; Anthropic limits it apart from Messages). The answer's text, checked to be an object.
   */
  async countTokens(call: MessagesPassthrough): Promise<PassedAnswer> {
    const res = await this.post(call.access, call.signal, call.body, call, '/v1/messages/count_tokens');
    const body = await readText(res, this.name);
    parse<{ input_tokens?: unknown }>(body, 'response');
    return { body, headers: passedHeaders(res) };
  }

  /** A Messages stream passed through event by event (see {@link AnthropicNativeStream}). */
  async messagesStream(call: MessagesPassthrough): Promise<ChatStream> {
    const res = await this.post(call.access, call.signal, { ...call.body, stream: true }, call);
    return {
      events: this.nativeEvents(res, call),
      headers: passedHeaders(res),
    };
  }

  private async post(
    access: ProviderAccess,
    signal: AbortSource,
    body: unknown,
    client: { version?: string; beta?: string } = {},
    path = '/v1/messages',
  ): Promise<UpstreamResponse> {
    const headers: Record<string, string> = {
      'x-api-key': access.apiKey,
      'anthropic-version': client.version ?? ANTHROPIC_VERSION,
      'content-type': 'application/json',
    };
    if (client.beta !== undefined) headers['anthropic-beta'] = client.beta;
    const res = await this.client.send({
      provider: this.name,
      url: `${access.baseUrl}${path}`,
      headers,
      body: JSON.stringify(body),
      signal,
    });
    // Anthropic's `{"type":"error","error":{...}}` bodies are read by failFromStatus; 529 overloaded is a 5xx.
    // Its request-id goes with the refusal too: a client of Anthropic's API gets it, as with an answer.
    if (res.statusCode < 200 || res.statusCode >= 300) await failFromStatus(res, this.name, passedHeaders(res)['request-id']);
    return res;
  }

  private async *nativeEvents(res: UpstreamResponse, notes: AnswerNotes): AsyncGenerator<StreamEvent> {
    const stream = new AnthropicNativeStream(notes);
    try {
      for await (const event of sseEvents(res, this.name, { isLast: isMessageStop })) {
        const out = stream.push(event);
        // The event naming the answer's id goes out once its owner is recorded (see onMessage).
        const recording = stream.takeRecording();
        if (recording) await recording;
        yield out;
        if (stream.stopped) break;
      }
    } catch (error) {
      // A host that gave the stop reason and then went silent or dropped the connection: whole.
      if (!(stream.answered && cutAfterAnswer(error))) throw error;
    }
    const last = stream.end();
    const recording = stream.takeRecording();
    if (recording) await recording;
    yield* last;
  }

  /**
   * `message_stop` ends the client's stream at once, as `[DONE]` does for OpenAI: an upstream (or a
   * proxy before it) slow to close the body must not hold the client's answer back, nor fail a
   * complete answer with an idle timeout or a reset that comes after it.
   */
  private async *events(res: UpstreamResponse, translator: AnthropicStreamTranslator): AsyncGenerator<StreamEvent> {
    try {
      for await (const event of sseEvents(res, this.name, { isLast: isMessageStop })) {
        // A loop, not `yield*`: an array delegated to costs a promise more per element (the async-from-sync iterator).
        for (const out of translator.push(parse<AnthropicStreamEvent>(event.data, 'stream event'))) yield out;
        if (translator.stopped) break;
      }
    } catch (error) {
      // A host that gave the stop reason and then went silent or dropped the connection: whole.
      if (!(translator.answered && cutAfterAnswer(error))) throw error;
    }
    yield* translator.end();
  }
}

/**
 * The event that ends a Messages stream. Anthropic names it in the `event:` field; a compatible host
 * that leaves the field out is recognised by the data's leading `type` (the translator stops at the
 * same event either way, so this only decides whether the connection is kept for reuse).
 */
export function isMessageStop(event: { event?: string; data: string }): boolean {
  return event.event === 'message_stop' || (event.event === undefined && MESSAGE_STOP_DATA.test(event.data));
}

const MESSAGE_STOP_DATA = /^\s*\{\s*"type"\s*:\s*"message_stop"/;

function meta(body: ProviderCall['body']): CompletionMeta {
  return { fallbackId: `chatcmpl-${randomUUID().replace(/-/g, '')}`, created: Math.floor(Date.now() / 1000), model: body.model };
}

function parse<T extends object>(text: string, what: string): T {
  return parseUpstreamObject<T>(text, 'anthropic', what);
}
