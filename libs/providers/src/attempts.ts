import { setTimeout as sleep } from 'node:timers/promises';
import { abortSignalOf, type AbortSource } from '@keygate/observability';
import { ClientAbortedError } from './upstream.client';
import { UpstreamError } from './upstream.error';

/** How failed upstream attempts are retried (SPEC §2 extension, bounded). */
export interface RetryPolicy {
  /** Retries per candidate model after its first attempt. */
  maxRetries: number;
  /** First backoff; doubles per retry, with full jitter. */
  baseDelayMs: number;
  /** Longest wait before a retry; an upstream `Retry-After` above it moves on to the next candidate. */
  maxDelayMs: number;
}

/** One candidate: the requested model first, then the policy's fallbacks in order. */
export interface Candidate<T> {
  model: string;
  /** Makes one attempt. Must throw `UpstreamError` for upstream failures. */
  attempt(): Promise<T>;
}

/**
 * Whether an attempt's failure came from the upstream call (a transport or upstream failure, or the
 * client leaving during it), rather than from keygate refusing the request before sending it (a
 * fallback that cannot express it): only the former counts as an attempt made.
 */
export function reachedUpstream(error: unknown): boolean {
  return error instanceof UpstreamError || error instanceof ClientAbortedError;
}

/** Reports each attempt's outcome: `retry` and `fallback` (given up for the next candidate) and `failed` with the attempt's error. */
export type AttemptObserver = (model: string, outcome: 'ok' | 'retry' | 'fallback' | 'failed', error?: unknown) => void;

/**
 * Runs candidates in order. A retryable failure (connect error, 429, 5xx — only ever before the
 * client has been sent a byte, which is the caller's guarantee) is retried with exponential
 * backoff and full jitter, honouring the upstream's `Retry-After`; when a candidate's retries are
 * spent, the next candidate is tried. A non-retryable failure ends the run at once, as does a
 * client abort. A fallback that refuses the request before sending it is skipped. The last
 * upstream failure is thrown.
 */
export async function runAttempts<T>(
  candidates: ReadonlyArray<Candidate<T>>,
  policy: RetryPolicy,
  signal: AbortSource,
  observe: AttemptObserver = () => undefined,
  random: () => number = Math.random,
): Promise<{ value: T; model: string }> {
  let last: unknown;
  for (let c = 0; c < candidates.length; c++) {
    const candidate = candidates[c];
    for (let retry = 0; retry <= policy.maxRetries; retry++) {
      try {
        const value = await candidate.attempt();
        observe(candidate.model, 'ok');
        return { value, model: candidate.model };
      } catch (error) {
        if (c > 0 && !reachedUpstream(error) && !signal.aborted) {
          // A fallback that cannot express this request (e.g. n > 1 for Claude) is skipped; the
          // client hears about the outage that led here, not about a parameter it never chose.
          observe(candidate.model, 'fallback', error);
          break;
        }
        last = error;
        if (!(error instanceof UpstreamError) || !error.retryable || signal.aborted) {
          observe(candidate.model, 'failed', error);
          throw signal.aborted && !(error instanceof ClientAbortedError) ? new ClientAbortedError() : error;
        }
        const wait = retryDelay(error, retry, policy, random);
        if (retry === policy.maxRetries || wait === undefined) {
          observe(candidate.model, c + 1 < candidates.length ? 'fallback' : 'failed', error);
          break;
        }
        observe(candidate.model, 'retry', error);
        try {
          await sleep(wait, undefined, { signal: abortSignalOf(signal) });
        } catch {
          throw new ClientAbortedError();
        }
      }
    }
  }
  throw last;
}

/** The wait before retry number `retry + 1`, or undefined when the upstream asks for too long. */
export function retryDelay(error: UpstreamError, retry: number, policy: RetryPolicy, random: () => number): number | undefined {
  if (error.retryAfterSeconds !== undefined) {
    const ms = error.retryAfterSeconds * 1000;
    return ms > policy.maxDelayMs ? undefined : ms;
  }
  const ceiling = Math.min(policy.maxDelayMs, policy.baseDelayMs * 2 ** retry);
  return Math.floor(random() * ceiling);
}
