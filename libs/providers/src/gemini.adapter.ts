import { randomUUID } from 'node:crypto';
import { Injectable } from '@nestjs/common';
import { GatewayError } from '@keygate/errors';
import { abortSignalOf, type AbortSource } from '@keygate/observability';
import type { ProviderAccess } from '@keygate/secrets';
import type { PassedAnswer } from './anthropic.adapter';
import {
  tokenCount,
  type ChatResult,
  type ChatStream,
  type EmbeddingsRequest,
  type EmbeddingsResult,
  type StreamEvent,
} from './chat.types';
import { GeminiNativeStream, generateContentText, generateContentUsage, requestedCandidates } from './gemini.native';
import type { BatchEmbedContentsResponse, GenerateContentResponse } from './gemini.types';
import {
  embeddingInputs,
  GEMINI_EMBED_BATCH_SIZE,
  GEMINI_EMBED_CONCURRENCY,
  GeminiStreamTranslator,
  geminiHttpError,
  toBatchEmbedRequest,
  toChatCompletion,
  toGenerateContentRequest,
  toOpenAiEmbeddings,
  type CompletionMeta,
} from './gemini.translate';
import type { ProviderAdapter, ProviderCall } from './provider-adapter.interface';
import { TokenTally } from './token-estimate';
import { ClientAbortedError, UpstreamClient, type UpstreamResponse } from './upstream.client';
import { BODY_END_GRACE_MS, MAX_ERROR_BODY_BYTES, parseUpstreamObject, readText, sseEvents } from './upstream-body.util';
import { UpstreamError } from './upstream.error';

/** The versions of Google's API keygate passes through: the one a client called is the one called upstream. */
export type GeminiApiVersion = 'v1beta' | 'v1';

/** A Gemini request passed through as its client wrote it (keygate's `/v1beta/models/{model}:…`). */
export interface GenerateContentPassthrough {
  /** The model of this attempt, a bare id (`gemini-2.5-flash`). */
  model: string;
  /** The client's body, with the product's policy applied. */
  body: Record<string, unknown>;
  access: ProviderAccess;
  signal: AbortSource;
  /** The API version the client called, and so the one called upstream (`v1beta` when absent). */
  version?: GeminiApiVersion;
}

/** A passed-through `embedContent` or `batchEmbedContents` answer, and what keygate read of it. */
export interface EmbedContentAnswer extends PassedAnswer {
  /** The input tokens Google reported (`usageMetadata.promptTokenCount`), when it reported any. */
  promptTokens: number | undefined;
}

/**
 * Whether a Gemini model embeds (`text-embedding-004`, `gemini-embedding-001`, `embedding-001`):
 * Google names every embedding model so, and serves `embedContent` for no other. Read from the
 * name, since keygate's configuration lists models and nothing about them.
 */
export function isGeminiEmbeddingModel(model: string): boolean {
  return /embedding/i.test(model);
}

/** A passed-through `generateContent` answer, and what keygate read of it. */
export interface GenerateContentAnswer extends PassedAnswer {
  usage: ChatResult['usage'];
  /** The answer's text, for an estimate when it reports no usage. */
  text: string;
}

/**
 * Google Gemini (Generative Language API, `v1beta`). Requests and answers are translated between
 * OpenAI's format and Gemini's by the pure functions of `gemini.translate.ts`; this class only
 * talks HTTP. The key travels in `x-goog-api-key`, never as `?key=`, because URLs end up in logs.
 */
@Injectable()
export class GeminiAdapter implements ProviderAdapter {
  readonly name = 'gemini' as const;

  constructor(private readonly client: UpstreamClient) {}

  async chat(call: ProviderCall): Promise<ChatResult> {
    // Translated before anything is sent: a request Gemini cannot express never reaches it.
    const request = toGenerateContentRequest(call.body);
    const res = await this.post(call, `${modelPath(call.body.model)}:generateContent`, request);
    const { completion, usage } = toChatCompletion(
      parse<GenerateContentResponse>(await readText(res, this.name), 'response'),
      meta(call.body),
    );
    return { body: JSON.stringify(completion), usage };
  }

  async chatStream(call: ProviderCall): Promise<ChatStream> {
    const request = toGenerateContentRequest(call.body);
    const res = await this.post(call, `${modelPath(call.body.model)}:streamGenerateContent?alt=sse`, request);
    const translator = new GeminiStreamTranslator({ ...meta(call.body), clientWantsUsage: call.clientWantsUsage });
    return { events: this.events(res, translator) };
  }

  /** `generateContent` passed through: the client's body (after policy) with keygate's key; the answer comes back unchanged. */
  async generateContent(call: GenerateContentPassthrough): Promise<GenerateContentAnswer> {
    const res = await this.post(call, `${modelPath(call.model)}:generateContent`, call.body);
    const body = await readText(res, this.name);
    const answer = parse<Partial<GenerateContentResponse>>(body, 'response');
    return { body, headers: {}, usage: generateContentUsage(answer), text: generateContentText(answer) };
  }

  /** `streamGenerateContent?alt=sse` passed through event by event (see {@link GeminiNativeStream}). */
  async streamGenerateContent(call: GenerateContentPassthrough): Promise<ChatStream> {
    const res = await this.post(call, `${modelPath(call.model)}:streamGenerateContent?alt=sse`, call.body);
    return { events: this.nativeEvents(res, new GeminiNativeStream(requestedCandidates(call.body))), headers: {} };
  }

  /** `countTokens` passed through: the prompt's token count as Google counts it (free). The answer's text, checked to be an object. */
  async countTokens(call: GenerateContentPassthrough): Promise<PassedAnswer> {
    const res = await this.post(call, `${modelPath(call.model)}:countTokens`, call.body);
    const body = await readText(res, this.name);
    parse<{ totalTokens?: unknown }>(body, 'response');
    return { body, headers: {} };
  }

  /**
   * `embedContent`, or with `batch` `batchEmbedContents`, passed through: the client's body with
   * keygate's key; the answer comes back unchanged once checked to hold the vectors asked for (one
   * `embedding`, or one of `embeddings` per request).
   */
  async embedContent(call: GenerateContentPassthrough, batch: boolean): Promise<EmbedContentAnswer> {
    const res = await this.post(call, `${modelPath(call.model)}:${batch ? 'batchEmbedContents' : 'embedContent'}`, call.body);
    const body = await readText(res, this.name);
    const answer = parse<{ embedding?: unknown; embeddings?: unknown; usageMetadata?: unknown }>(body, 'response');
    const requests = call.body.requests;
    const complete = batch
      ? Array.isArray(answer.embeddings) && Array.isArray(requests) && answer.embeddings.length === requests.length
      : answer.embedding !== null && typeof answer.embedding === 'object';
    if (!complete) throw new UpstreamError('protocol', this.name, 'the embeddings do not match the request');
    const usage = answer.usageMetadata as { promptTokenCount?: unknown } | undefined;
    const reported = usage !== null && typeof usage === 'object' ? usage.promptTokenCount : undefined;
    return {
      body,
      headers: {},
      promptTokens: tokenCount(reported) ?? undefined,
    };
  }

  /**
   * OpenAI embeddings through `batchEmbedContents`, in batches of Gemini's maximum size, up to
   * {@link GEMINI_EMBED_CONCURRENCY} of them at once.
   */
  async embeddings(call: ProviderCall<EmbeddingsRequest>): Promise<EmbeddingsResult> {
    const body = call.body;
    const texts = embeddingInputs(body);
    const format = body.encoding_format ?? 'float';
    if (format !== 'float' && format !== 'base64') {
      throw new GatewayError('invalid_request', 'encoding_format must be float or base64', { param: 'encoding_format' });
    }
    const batches: string[][] = [];
    for (let i = 0; i < texts.length; i += GEMINI_EMBED_BATCH_SIZE) batches.push(texts.slice(i, i + GEMINI_EMBED_BATCH_SIZE));
    const requests = batches.map((batch) => toBatchEmbedRequest(body.model, batch, body.dimensions ?? undefined));
    const path = `${modelPath(body.model)}:batchEmbedContents`;
    // Batches answered by an earlier attempt of this request are not sent again.
    const answered = call.answeredParts ?? new Map<number, unknown>();
    // Google bills each batch it embeds: one answered (or cut off in flight) before the request
    // fails or the client leaves is spent even though no vectors reach the client.
    const spend = call.spend ?? { counted: true, promptTokens: 0 };
    spend.counted = true;
    const tally = new TokenTally();
    const counted: number[] = [];
    const batchTokens = (b: number): number => (counted[b] ??= batches[b].reduce((sum, text) => sum + tally.count(text), 0));
    // A failure that will not be retried cancels the other batches (nothing would use them); after
    // one that will, they finish, so their vectors are kept and the retry resends only what failed.
    const willRetry = call.willRetry ?? (() => false);
    const cancel = new AbortController();
    const batchCall = { ...call, signal: AbortSignal.any([abortSignalOf(call.signal), cancel.signal]) };
    let failure: Error | undefined;
    const send = async (b: number): Promise<void> => {
      try {
        const res = await this.post(batchCall, path, requests[b]);
        const vectors = parse<BatchEmbedContentsResponse>(await readText(res, this.name), 'response').embeddings ?? [];
        if (vectors.length !== batches[b].length)
          throw new UpstreamError('protocol', this.name, 'embeddings count does not match the inputs');
        answered.set(b, vectors);
        spend.promptTokens += batchTokens(b);
      } catch (error) {
        if (cutInFlight(error)) spend.promptTokens += batchTokens(b);
        if (cancel.signal.aborted) return; // cancelled because of another batch's failure
        // Transport and upstream failures are Errors (UpstreamError, ClientAbortedError).
        if (failure === undefined || (willRetry(failure) && !willRetry(error))) failure = error as Error;
        if (!willRetry(error)) cancel.abort();
      }
    };
    // At most GEMINI_EMBED_CONCURRENCY batches in flight: 2048 inputs would otherwise be 21 calls at
    // once against the key's per-minute quota, and 21 answers held in memory together. Each batch
    // settles its own failure, so this waits for those in flight; after any failure (a 429 would
    // refuse the rest too) or the client's abort, no more start: a retry sends what is left.
    const pending = requests.map((_, b) => b).filter((b) => !answered.has(b));
    const worker = async (): Promise<void> => {
      for (let b = pending.shift(); b !== undefined && failure === undefined && !call.signal.aborted; b = pending.shift()) await send(b);
    };
    await Promise.all(Array.from({ length: Math.min(GEMINI_EMBED_CONCURRENCY, pending.length) }, worker));
    if (failure !== undefined) throw failure;
    if (answered.size < batches.length) throw new ClientAbortedError();
    const answers = batches.map((_, b) => answered.get(b) as NonNullable<BatchEmbedContentsResponse['embeddings']>);
    // Gemini reports no usage for embeddings: this is an estimate with keygate's tokenizer (OpenAI's
    // o200k), close to but not exactly what Google counts and bills.
    let promptTokens = 0;
    for (let b = 0; b < batches.length; b++) promptTokens += batchTokens(b);
    const result = toOpenAiEmbeddings(answers.flat(), {
      model: body.model,
      encodingFormat: format,
      promptTokens,
      normalize: body.dimensions !== undefined && body.dimensions !== null,
    });
    return { body: JSON.stringify(result), usage: result.usage };
  }

  private async post(
    call: Pick<ProviderCall<unknown>, 'access' | 'signal'> & { version?: GeminiApiVersion },
    path: string,
    body: unknown,
  ): Promise<UpstreamResponse> {
    const res = await this.client.send({
      provider: this.name,
      url: `${call.access.baseUrl}/${call.version ?? 'v1beta'}/models/${path}`,
      headers: { 'x-goog-api-key': call.access.apiKey, 'content-type': 'application/json' },
      body: JSON.stringify(body),
      signal: call.signal,
    });
    if (res.statusCode < 200 || res.statusCode >= 300) {
      const text = await readText(res, this.name, MAX_ERROR_BODY_BYTES).catch(() => '');
      throw geminiHttpError(res.statusCode, text, res.headers['retry-after']);
    }
    return res;
  }

  /**
   * The native stream passes on every event Google sends, to the end of its body: a pass-through
   * drops nothing (an event after the one that completes the answer may still carry a part's
   * `thoughtSignature` or grounding metadata); its end is checked (see {@link GeminiNativeStream}).
   * Once the answer is complete the body gets {@link BODY_END_GRACE_MS} between events to end, as
   * the other streams get after their last event: a host slow to close it must not hold a finished
   * answer back until the idle timeout, nor turn it into a failure (the idle timeout, a reset) after
   * the client has had all of it.
   */
  private async *nativeEvents(res: UpstreamResponse, stream: GeminiNativeStream): AsyncGenerator<StreamEvent> {
    let grace: NodeJS.Timeout | undefined;
    try {
      for await (const event of sseEvents(res, this.name)) {
        clearTimeout(grace);
        yield stream.push(event);
        // Timed while keygate waits for the upstream, not while a slow client reads.
        if (stream.stopped) grace = setTimeout(() => res.body.destroy(), BODY_END_GRACE_MS).unref();
      }
    } catch (error) {
      // A client that left (or a stream keygate ended) is not a complete answer to deliver.
      if (!stream.stopped || error instanceof ClientAbortedError) throw error;
    } finally {
      clearTimeout(grace);
    }
    stream.end();
  }

  /**
   * The stream ends for the client once the answer is complete (every choice finished, the usage
   * read), as OpenAI's ends at `[DONE]`: a host slow to close the body must not hold the answer
   * back, nor fail it with an idle timeout or a reset that comes after it.
   */
  private async *events(res: UpstreamResponse, translator: GeminiStreamTranslator): AsyncGenerator<StreamEvent> {
    for await (const event of sseEvents(res, this.name, { isLast: isFinalChunk })) {
      // A loop, not `yield*`: an array delegated to costs a promise more per element (the async-from-sync iterator).
      for (const out of translator.push(parse<GenerateContentResponse>(event.data, 'stream chunk'))) yield out;
      if (translator.stopped) break;
    }
    yield* translator.end();
  }
}

/**
 * Whether a chunk may be the stream's last (a finishReason with the usage): only decides whether
 * the rest of the body is read for the connection's reuse once the translator stops.
 */
function isFinalChunk(event: { data: string }): boolean {
  return event.data.includes('"finishReason"') && event.data.includes('"usageMetadata"');
}

/** The model as a path segment; encoded so a model name can never change the path. */
function modelPath(model: string): string {
  return encodeURIComponent(model);
}

function meta(body: ProviderCall['body']): CompletionMeta {
  const n = typeof body.n === 'number' ? body.n : undefined;
  return { fallbackId: `chatcmpl-${randomUUID().replace(/-/g, '')}`, created: Math.floor(Date.now() / 1000), model: body.model, n };
}

function parse<T extends object>(text: string, what: string): T {
  return parseUpstreamObject<T>(text, 'gemini', what);
}

/**
 * A batch given up after it was sent: the client left (or another batch failed), Google took too
 * long to answer, or its connection dropped after Google's headers (its answer was under way). Google
 * may have embedded it, so it is billed; a batch Google refused is not.
 */
function cutInFlight(error: unknown): boolean {
  if (error instanceof ClientAbortedError) return true;
  return error instanceof UpstreamError && CUT_IN_FLIGHT.has(error.kind);
}

const CUT_IN_FLIGHT: ReadonlySet<UpstreamError['kind']> = new Set(['ttfb_timeout', 'idle_timeout', 'total_timeout', 'connection_lost']);
