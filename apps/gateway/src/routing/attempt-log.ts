import type { JsonLogger } from '@keygate/observability';
import { UpstreamError, type AttemptObserver } from '@keygate/providers';

const MESSAGES = {
  retry: 'upstream attempt failed; retrying',
  fallback: 'upstream attempt failed; trying the next fallback model',
  failed: 'upstream attempt failed; no retry or fallback left',
} as const;

/**
 * An observer for `runAttempts` that writes a WARNING for each upstream attempt that failed and is
 * retried or given up for the next fallback model, and for the last one when the request fails on
 * the upstream's side (unreachable, a 5xx or 429, a timeout, an answer keygate cannot read, a refusal
 * of keygate's own key): which provider and model, the kind of failure and the upstream's status,
 * never what the upstream said (its error text may quote the prompt). An upstream's refusal of the
 * request itself (a 400) is the audit line's to tell. The line carries the request's id and trace from its context.
 */
export function upstreamAttemptLog(logger: JsonLogger): AttemptObserver {
  return (model, outcome, error) => {
    if (outcome === 'ok' || !(error instanceof UpstreamError)) return;
    // The upstream refused the request itself (answered to the client as a 4xx other than 429): the
    // client's to fix, the audit line's to tell. A refusal of keygate's own key (a 401 or 403, Gemini's
    // 400 API_KEY_INVALID) is answered 502 and is the operator's to fix: written, with its status.
    if (outcome === 'failed' && refusedRequest(error)) return;
    logger.write('WARNING', MESSAGES[outcome], {
      provider: error.provider,
      model,
      failure: error.kind,
      upstreamStatus: error.status ?? null,
    });
  };
}

/** Whether the client is told the upstream refused its request (a 4xx other than a rate limit), not that the upstream failed. */
function refusedRequest(error: UpstreamError): boolean {
  const { status } = error.toGatewayError();
  return status < 500 && status !== 429;
}
