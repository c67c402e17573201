import { Injectable } from '@nestjs/common';
import type { ChatCompletionRequest, ChatResult, ChatStream, EmbeddingsRequest, EmbeddingsResult, StreamEvent, Usage } from './chat.types';
import type { ProviderAdapter, ProviderCall } from './provider-adapter.interface';
import {
  isResponseEnd,
  maskFailureMessage,
  noteStored,
  outputContainerIds,
  outputItemIds,
  responsesUsage,
  responseText,
  ResponsesNativeStream,
  type ResponsesAnswer,
  type ResponsesPassthrough,
  type StoredResponseCall,
} from './openai.responses';
import { UpstreamClient, type UpstreamResponse } from './upstream.client';
import {
  cutAfterAnswer,
  failFromStatus,
  MAX_SSE_EVENT_BYTES,
  parseUpstreamObject,
  readText,
  sseEvents,
  TAIL_READ_LENGTH,
  trailingUsage,
} from './upstream-body.util';
import { openAiStreamFailure, UpstreamError } from './upstream.error';

export interface OpenAiChunk {
  choices?: Array<{
    index?: unknown;
    delta?: {
      content?: unknown;
      tool_calls?: unknown;
      refusal?: unknown;
      reasoning_content?: unknown;
      reasoning?: unknown;
      audio?: unknown;
    };
    finish_reason?: unknown;
  }>;
  usage?: Usage | null;
  error?: Record<string, unknown>;
}

/** The largest Responses stream event read (a terminal one carries the whole answer). */
export const MAX_RESPONSES_EVENT_BYTES = 4 * MAX_SSE_EVENT_BYTES;

/**
 * OpenAI and OpenAI-compatible hosts (`base_url`). The body is forwarded as the client sent it
 * (after policy), so parameters keygate does not know yet still reach the upstream.
 */
@Injectable()
export class OpenAiAdapter implements ProviderAdapter {
  readonly name = 'openai' as const;

  constructor(private readonly client: UpstreamClient) {}

  async chat(call: ProviderCall): Promise<ChatResult> {
    const res = await this.post(call, call.body, 'application/json');
    const text = await readText(res, this.name);
    const usage = parseUpstreamObject<{ usage?: Usage | null }>(text, this.name, 'response').usage ?? null;
    // The upstream's bytes are sent on unchanged: nothing to re-serialize on the hot path.
    return { body: text, usage };
  }

  async chatStream(call: ProviderCall): Promise<ChatStream> {
    // keygate always learns the usage of a stream, so it asks for it whatever the client said.
    const body: ChatCompletionRequest = {
      ...call.body,
      stream: true,
      stream_options: { ...(call.body.stream_options ?? {}), include_usage: true },
    };
    const res = await this.post(call, body, 'text/event-stream');
    return { events: this.events(res, call.clientWantsUsage, typeof call.body.n === 'number' ? call.body.n : 1) };
  }

  async embeddings(call: ProviderCall<EmbeddingsRequest>): Promise<EmbeddingsResult> {
    const res = await this.post(call, call.body, 'application/json', '/embeddings');
    const text = await readText(res, this.name);
    // A large answer (many float vectors) is not parsed whole just to read its usage, which ends it.
    const tail = text.length > TAIL_READ_LENGTH ? (trailingUsage(text) as EmbeddingsResult['usage']) : undefined;
    const usage = tail ?? parseUpstreamObject<{ usage?: EmbeddingsResult['usage'] }>(text, this.name, 'response').usage ?? null;
    return { body: text, usage };
  }

  /** `POST /v1/responses` passed through: the client's fields (after policy, re-serialised) with the product's key. */
  async responses(call: ResponsesPassthrough): Promise<ResponsesAnswer> {
    const { body, object: response } = await this.postForObject(call, '/responses');
    const usage = responsesUsage(response.usage);
    // Recorded before the answer goes out: the client's next request may continue from it at once.
    await noteStored(response, usage, call.onStored);
    const containers = outputContainerIds(response);
    if (call.onContainers && containers.length) await call.onContainers(containers);
    // A whole answer that is a failed Response: its error's message masked, as a stream's is.
    return { body: maskFailureMessage(response) ? JSON.stringify(response) : body, usage, text: responseText(response) };
  }

  /**
   * `POST /v1/responses/input_tokens` passed through: OpenAI's count of a request's input tokens,
   * its text checked to be a JSON object.
   */
  async responsesInputTokens(call: ResponsesPassthrough): Promise<string> {
    return (await this.postForObject(call, '/responses/input_tokens')).body;
  }

  /**
   * `POST /v1/responses/compact` passed through: a `response.compaction` (stored nowhere: the
   * client sends its output back as input), with its usage and the text of its output.
   */
  async responsesCompact(call: ResponsesPassthrough): Promise<ResponsesAnswer> {
    const { body, object: compaction } = await this.postForObject(call, '/responses/compact');
    // Its items go back as the client's next input: recorded as the caller's before it has them.
    if (call.onItems) await call.onItems(outputItemIds(compaction));
    return { body, usage: responsesUsage(compaction.usage), text: responseText(compaction) };
  }

  /**
   * A stored Response's route (`GET`/`DELETE /v1/responses/{id}`, `GET …/input_items`, `POST …/cancel`) passed
   * through with the product's key: the answer's text, checked to be a JSON object.
   */
  async storedResponse(call: StoredResponseCall): Promise<string> {
    const res = await this.client.send({
      provider: this.name,
      method: call.method,
      url: `${call.access.baseUrl}${call.path}`,
      headers: { authorization: `Bearer ${call.access.apiKey}`, accept: 'application/json' },
      signal: call.signal,
    });
    if (res.statusCode < 200 || res.statusCode >= 300) await failFromStatus(res, this.name);
    const body = await readText(res, this.name);
    const response = parseUpstreamObject<Record<string, unknown>>(body, this.name, 'response');
    // A failed Response read back says what failed in the upstream's words: masked, as its stream's response.failed was.
    return maskFailureMessage(response) ? JSON.stringify(response) : body;
  }

  /** A Responses API route's JSON answer to `call.body` posted at `path`: its text, and the object it must be. */
  private async postForObject(call: ResponsesPassthrough, path: string): Promise<{ body: string; object: Record<string, unknown> }> {
    const res = await this.post(call, call.body, 'application/json', path);
    const body = await readText(res, this.name);
    return { body, object: parseUpstreamObject<Record<string, unknown>>(body, this.name, 'response') };
  }

  /** A Responses stream passed through event by event (see {@link ResponsesNativeStream}). */
  async responsesStream(call: ResponsesPassthrough): Promise<ChatStream> {
    const res = await this.post(call, { ...call.body, stream: true }, 'text/event-stream', '/responses');
    return { events: this.responseEvents(res, call.onStored, call.onContainers) };
  }

  private async *responseEvents(
    res: UpstreamResponse,
    onStored: ResponsesPassthrough['onStored'],
    onContainers: ResponsesPassthrough['onContainers'],
  ): AsyncGenerator<StreamEvent> {
    const stream = new ResponsesNativeStream(onStored, onContainers);
    // `response.completed` repeats every output item, images generated as base64 included.
    for await (const event of sseEvents(res, this.name, { isLast: isResponseEnd, maxEventBytes: MAX_RESPONSES_EVENT_BYTES })) {
      const out = stream.push(event);
      // An event carrying a stored Response's id goes out once it is recorded (see onStored).
      const recording = stream.takeRecording();
      if (recording) await recording;
      yield out;
      if (stream.stopped) break;
    }
    stream.end();
  }

  private async post(
    call: Pick<ProviderCall<unknown>, 'access' | 'signal'>,
    body: unknown,
    accept: string,
    path = '/chat/completions',
  ): Promise<UpstreamResponse> {
    const res = await this.client.send({
      provider: this.name,
      url: `${call.access.baseUrl}${path}`,
      headers: { authorization: `Bearer ${call.access.apiKey}`, 'content-type': 'application/json', accept },
      body: JSON.stringify(body),
      signal: call.signal,
    });
    if (res.statusCode < 200 || res.statusCode >= 300) await failFromStatus(res, this.name);
    return res;
  }

  /**
   * Re-emits the upstream's chunks. When the client did not ask for usage, the usage chunk is
   * dropped and the `"usage": null` OpenAI adds to every other chunk is removed, so the client's
   * stream is byte-for-byte what OpenAI would have sent it.
   *
   * A stream ends at `[DONE]`. Some OpenAI-compatible hosts (llama.cpp's server, for one, in some
   * versions) close the body after their last chunk without it: a stream that ends that way after
   * each of its `choices` choices (`n`) has its `finish_reason` is whole, and ends as if `[DONE]` had
   * come (usage it did not report is estimated, as for any host that reports none). Without a
   * finish for every choice it was cut: an upstream failure.
   */
  private async *events(res: UpstreamResponse, clientWantsUsage: boolean, choices: number): AsyncGenerator<StreamEvent> {
    let done = false;
    // The indexes of the choices the host has finished (a non-null `finish_reason`).
    let finished: Set<unknown> | undefined;
    try {
      for await (const event of sseEvents(res, this.name, { isLast: isDone })) {
        if (isDone(event)) {
          done = true;
          break;
        }
        const chunk = parseUpstreamObject<OpenAiChunk>(event.data, this.name, 'stream chunk');
        if (chunk.error) throw openAiStreamFailure(this.name, chunk.error, 'error event');
        for (const choice of chunk.choices ?? []) {
          if (choice?.finish_reason != null) (finished ??= new Set()).add(choice.index ?? 0);
        }
        const usage = chunk.usage ?? undefined;
        const text = generatedText(chunk);
        // An event sent over several `data:` lines (valid SSE; pretty-printed JSON from some
        // OpenAI-compatible hosts) arrives joined by newlines, which one `data:` line cannot carry.
        const data = event.data.includes('\n') ? JSON.stringify(chunk) : event.data;
        if (clientWantsUsage || !('usage' in chunk)) {
          yield { data, usage, text };
        } else if (usage && (chunk.choices?.length ?? 0) === 0) {
          yield { data: null, usage };
        } else {
          yield { data: withoutUsage(data, chunk), usage, text };
        }
      }
    } catch (error) {
      // A host that finished every choice and then went silent or dropped the connection, with no
      // [DONE]: the answer is whole, as when it closes the body.
      if (!((finished?.size ?? 0) >= choices && cutAfterAnswer(error))) throw error;
    }
    if (!done && (finished?.size ?? 0) < choices) throw new UpstreamError('connection_lost', this.name, 'stream ended without [DONE]');
  }
}

/** A chat delta's generated text besides `content` (see {@link generatedText}). */
const OTHER_TEXT_DELTAS = ['refusal', 'reasoning_content', 'reasoning'] as const;

/**
 * What a chunk generated: its text, refusal, reasoning, audio-transcript and tool-call argument deltas, every choice's (undefined when
 * none: the role chunk's `""` is no content). Priming stops at the first (so a tool-call stream is
 * not held back), and an answer nobody reported usage for is counted from them.
 */
export function generatedText(chunk: OpenAiChunk): string | undefined {
  let text = '';
  for (const choice of chunk.choices ?? []) {
    const delta = choice.delta;
    if (!delta) continue;
    if (typeof delta.content === 'string') text += delta.content;
    // A refusal, and the thinking of a reasoning model on an OpenAI-compatible host (vLLM, SGLang and
    // DeepSeek send it as `reasoning_content`, others as `reasoning`), long before any `content`:
    // generated output too, which primes the stream (else held back until the answer begins) and
    // is billed as output.
    for (const field of OTHER_TEXT_DELTAS) if (typeof delta[field] === 'string') text += delta[field];
    // An audio answer (`modalities: ["text", "audio"]`) streams its transcript beside the audio.
    const transcript = (delta.audio as { transcript?: unknown } | null | undefined)?.transcript;
    if (typeof transcript === 'string') text += transcript;
    if (!Array.isArray(delta.tool_calls)) continue;
    for (const call of delta.tool_calls as unknown[]) {
      const args = (call as { function?: { arguments?: unknown } } | null)?.function?.arguments;
      if (typeof args === 'string') text += args;
    }
  }
  return text === '' ? undefined : text;
}

/** OpenAI's last event of a stream. */
const isDone = (event: { data: string }): boolean => event.data === '[DONE]';

/** How OpenAI ends every chunk of a stream that asked for usage, but the last one. */
const NULL_USAGE_SUFFIX = ',"usage":null}';

/**
 * A chunk without its `usage` key. OpenAI puts `"usage":null` last, so it is cut from the text (no
 * re-serialization per chunk; the rest stays byte for byte as sent); a chunk in any other shape is
 * rewritten from its parsed form. The suffix can only be the top-level object's last member: inside
 * a string the quotes would be escaped, and a nested object would end in `}}`.
 */
export function withoutUsage(data: string, chunk: OpenAiChunk): string {
  if (chunk.usage === null && data.endsWith(NULL_USAGE_SUFFIX)) return `${data.slice(0, -NULL_USAGE_SUFFIX.length)}}`;
  delete chunk.usage;
  return JSON.stringify(chunk);
}
