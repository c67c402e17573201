import { GatewayError, type GatewayErrorCode } from '@keygate/errors';
import { maskString } from '@keygate/observability';

/** What went wrong talking to an upstream, before it is mapped to a gateway error. */
export type UpstreamFailureKind =
  | 'connect'
  | 'connect_timeout'
  | 'ttfb_timeout'
  | 'idle_timeout'
  | 'total_timeout'
  | 'http'
  | 'protocol'
  | 'stream_error'
  /**
   * The upstream dropped the connection after its headers, before its answer was whole. Retryable:
   * attempts are only retried before the client has a byte (a stream is read up to its first
   * content first; a whole answer is read before it is sent).
   */
  | 'connection_lost'
  /**
   * A stream that went silent for the idle timeout after its headers, before its first content.
   * Retryable, unlike `idle_timeout`: keygate holds a stream's events back until its first content,
   * so the client has had none of them yet (at most the HTTP head, once the priming time is up).
   * (A stream's `ttfb_timeout` is retried too, see the gateway's `retryableWhenStreamed`.)
   */
  | 'stalled'
  /** The upstream answered, but its model failed to generate a usable answer (a 5xx `status`: retryable). */
  | 'generation'
  /**
   * The upstream refused keygate's own key, whatever status it chose for that (Gemini's 400
   * `API_KEY_INVALID`): keygate's problem, not the client's, so a 502; `status` is the one it sent.
   */
  | 'credentials';

/** `Retry-After` of an upstream 429 that named no delay of its own. */
export const DEFAULT_RATE_LIMIT_RETRY_SECONDS = 1;

/**
 * A failed upstream call; `retryable` marks connect errors, 429 and 5xx (before the first byte),
 * an in-stream error the provider equates with one of those statuses included.
 */
export class UpstreamError extends Error {
  constructor(
    readonly kind: UpstreamFailureKind,
    readonly provider: string,
    message: string,
    readonly status?: number,
    readonly retryAfterSeconds?: number,
    /** The request field the upstream's error names (OpenAI's `error.param`), passed on with a refusal the client can fix. */
    readonly param?: string,
    /** The upstream's own error code (OpenAI's `error.code`, e.g. `previous_response_not_found`), for keygate to tell refusals apart. */
    readonly code?: string,
    /**
     * The upstream's id of the answer that failed (Anthropic's `request-id`): a client of the
     * provider's own API is given it, since that provider's support asks for it.
     */
    readonly upstreamRequestId?: string,
  ) {
    super(message);
    this.name = 'UpstreamError';
  }

  /**
   * Whether the call failed before the upstream's response headers came (a connect error, the TTFB
   * timeout, the total timeout while waiting for them): set by the upstream client where a call's
   * headers are awaited. A stream's headers come before the model writes, so a stream cut then was
   * not being answered (see the gateway's `cutWhileAnswering`); a whole answer's come with the answer.
   */
  beforeHeaders = false;

  get retryable(): boolean {
    return (
      this.kind === 'connect' ||
      this.kind === 'connect_timeout' ||
      this.kind === 'connection_lost' ||
      this.kind === 'stalled' ||
      ((this.kind === 'http' || this.kind === 'stream_error' || this.kind === 'generation') &&
        (this.status === 429 || (this.status ?? 0) >= 500))
    );
  }

  /**
   * The contract's answer for this failure (SPEC §6: 502/504, client errors passed on). A 429
   * always carries `Retry-After` (SPEC §6): the upstream's when it sent one, else a short default.
   */
  toGatewayError(): GatewayError {
    const [code, classified] = this.classify();
    // The upstream's own words go to the client: masked like a log line, so a host that echoes a
    // credential back (its own key, the Authorization keygate sent) cannot hand it on.
    const message = maskString(classified);
    const retryAfterSeconds = this.retryAfterSeconds ?? (code === 'upstream_rate_limited' ? DEFAULT_RATE_LIMIT_RETRY_SECONDS : undefined);
    // The field the upstream named, unless it is shaped like a credential (it is passed on as it is, never masked in part).
    const param =
      code === 'upstream_bad_request' && this.param !== undefined && maskString(this.param) === this.param ? this.param : undefined;
    // Anthropic's `details.error_code` of a refusal goes on: its SDKs recover from some by it (a
    // thread to replay). Only Anthropic's: an OpenAI(-compatible) `error.code` is read, not passed.
    const details =
      this.provider === 'anthropic' && this.code !== undefined && this.kind === 'http' ? { error_code: this.code } : undefined;
    return new GatewayError(code, message, {
      retryAfterSeconds,
      cause: this,
      ...(param === undefined ? {} : { param }),
      ...(details === undefined ? {} : { details }),
    });
  }

  private classify(): [GatewayErrorCode, string] {
    const who = `upstream ${this.provider}`;
    switch (this.kind) {
      case 'connect_timeout':
        return ['upstream_timeout', `${who} did not accept a connection in time`];
      case 'ttfb_timeout':
        return ['upstream_timeout', `${who} did not answer in time`];
      case 'idle_timeout':
        return ['upstream_timeout', `${who} stopped sending data`];
      case 'stalled':
        return ['upstream_timeout', `${who} stopped sending data before its answer began`];
      case 'total_timeout':
        return ['upstream_timeout', `${who} took longer than the total timeout`];
      case 'connect':
        return ['upstream_error', `${who} is unreachable`];
      case 'connection_lost':
        return ['upstream_error', `${who} closed the connection before its answer was complete`];
      case 'protocol':
        return ['upstream_error', `${who} sent an invalid response`];
      case 'stream_error':
        // A rate limit sent in the stream (Anthropic's rate_limit_error, a Gemini error chunk with
        // code 429) before any byte reached the client is answered like the same HTTP status.
        if (this.status === 429) return ['upstream_rate_limited', `${who} is rate limiting keygate; retry later`];
        // A refusal of the request itself, sent as the stream's first event: the client's to fix, as its HTTP 400 would be.
        if (this.status === 400) return ['upstream_bad_request', `${who} rejected the request: ${this.message}`];
        return ['upstream_error', `${who} reported an error in its stream: ${this.message}`];
      case 'generation':
        return ['upstream_error', `${who} failed to generate an answer: ${this.message}`];
      case 'credentials':
        return ['upstream_error', `${who} refused keygate's credentials (status ${this.status ?? 'unknown'})`];
      case 'http':
        return this.classifyStatus(who);
    }
  }

  private classifyStatus(who: string): [GatewayErrorCode, string] {
    const status = this.status ?? 502;
    // The client's own mistakes are passed on with the upstream's explanation; keygate's own
    // credential problems and upstream outages become 502, which the client cannot fix.
    if (status === 400 || status === 422) return ['upstream_bad_request', `${who} rejected the request: ${this.message}`];
    // Anthropic holds no thread for a `previous_message_id` (expired, or never stored): not the model.
    if (status === 404 && this.code === 'thread_not_found') return ['thread_not_found', `${who}: ${this.message}`];
    if (status === 404) return ['model_not_found', `${who}: ${this.message}`];
    if (status === 413) return ['request_too_large', `${who}: request too large`];
    if (status === 429) return ['upstream_rate_limited', `${who} is rate limiting keygate; retry later`];
    if (status === 401 || status === 403) return ['upstream_error', `${who} refused keygate's credentials (status ${status})`];
    if (status === 408 || status === 504) return ['upstream_timeout', `${who} timed out (status ${status})`];
    return ['upstream_error', `${who} failed with status ${status}`];
  }
}

/** In-stream error codes of OpenAI's APIs (an `error` event's, a failed Response's) that stand for an HTTP status: before any content, retried like it. */
const IN_STREAM_ERROR_STATUS: Readonly<Record<string, number>> = {
  invalid_request_error: 400,
  server_error: 500,
  rate_limit_exceeded: 429,
  too_many_requests: 429,
};

/**
 * The failure an OpenAI-style in-stream error (`{code, type, message}`; a chat stream's `data:
 * {"error": …}`, a Responses `error` event or failed Response) stands for: a `server_error` or a
 * rate limit, by its code or else its type, is a 500 or a 429, so one before any content is
 * retried (then falls back) like that status, and a rate limit the client is answered is a 429.
 */
export function openAiStreamFailure(provider: string, detail: Record<string, unknown>, fallback: string): UpstreamError {
  const { code, type, message } = detail;
  const named = typeof code === 'string' ? code : typeof type === 'string' ? type : undefined;
  const text = typeof message === 'string' ? message : (named ?? fallback);
  return new UpstreamError('stream_error', provider, text, inStreamStatus(code) ?? inStreamStatus(type));
}

/** The HTTP status an in-stream error's code or type stands for: a known name, or a number (vLLM's `code: 500`) of 429 or 5xx. */
function inStreamStatus(value: unknown): number | undefined {
  if (typeof value === 'string' && Object.hasOwn(IN_STREAM_ERROR_STATUS, value)) return IN_STREAM_ERROR_STATUS[value];
  // A status as a number (vLLM's `code: 503`) or as digits (`"429"`, as some proxies write it).
  const status = typeof value === 'number' ? value : typeof value === 'string' && /^\d{3}$/.test(value) ? Number(value) : undefined;
  return status !== undefined && (status === 400 || status === 429 || (status >= 500 && status <= 599)) ? status : undefined;
}
