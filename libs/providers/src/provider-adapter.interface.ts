import type { AbortSource } from '@keygate/observability';
import type { ProviderAccess, ProviderName } from '@keygate/secrets';
import type { ChatCompletionRequest, ChatResult, ChatStream, EmbeddingsRequest, EmbeddingsResult } from './chat.types';

/** One call to a provider: the validated OpenAI-shaped body, the product's access, the client's abort signal. */
export interface ProviderCall<TBody = ChatCompletionRequest> {
  body: TBody;
  access: ProviderAccess;
  /** The request's abort (see RequestAbort), or an AbortSignal. */
  signal: AbortSource;
  /** The client asked for the final usage chunk (`stream_options.include_usage`). */
  clientWantsUsage: boolean;
  /**
   * Kept by the caller across the attempts of one request: an adapter that splits a call into
   * several upstream requests records the answered parts here, so a retry sends only the rest.
   */
  answeredParts?: Map<number, unknown>;
  /**
   * Whether the caller will make another attempt after this failure. An adapter that splits a call
   * lets its other parts finish only then (their answers are kept for the retry); otherwise it
   * cancels them. Absent: no retry follows.
   */
  willRetry?: (error: unknown) => boolean;
  /**
   * Kept by the caller across the attempts of one request: what an adapter that splits a call has
   * spent of it, for billing a request that fails or is abandoned after some parts were answered.
   */
  spend?: PartsSpend;
}

/** The prompt tokens a split call has spent at the upstream so far. */
export interface PartsSpend {
  /** Set by an adapter that splits the call: `promptTokens` is then its whole spend, even if 0. */
  counted: boolean;
  /** Tokens of the parts the upstream answered, and of those cut off in flight (it may have processed them). */
  promptTokens: number;
}

/**
 * A provider behind keygate's OpenAI-compatible API. Each adapter translates the request to the
 * provider's wire format and the response (and event stream) back to OpenAI's. Failures are thrown
 * as `UpstreamError` (or `ClientAbortedError`), never answered directly.
 */
export interface ProviderAdapter {
  readonly name: ProviderName;
  /** A non-streaming chat completion. */
  chat(call: ProviderCall): Promise<ChatResult>;
  /** A streamed chat completion; resolves once the upstream answered with a success status. */
  chatStream(call: ProviderCall): Promise<ChatStream>;
  /** Embeddings, for providers that have them. */
  embeddings?(call: ProviderCall<EmbeddingsRequest>): Promise<EmbeddingsResult>;
}

/** Injection token and type for the list of registered adapters. */
export const ProviderAdapter = Symbol('KEYGATE:PROVIDER_ADAPTERS');
