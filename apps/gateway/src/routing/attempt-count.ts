import { admissionPending } from '@keygate/limits';
import type { RequestContext } from '@keygate/observability';
import { ClientAbortedError, reachedUpstream, UpstreamError } from '@keygate/providers';

/**
 * Starts one upstream attempt and counts it once it is known to have gone to the upstream: it
 * answered, failed as an upstream failure, or was cancelled because the client went away (the
 * upstream may already be generating, and billing, by then). A request an adapter refused while
 * translating was never sent.
 *
 * Every upstream call of a request goes through here, so this is also where a request whose
 * limits were left to its handler (`@AdmitInHandler`) and never counted is stopped: a handler that
 * forgot `QuotaService.admit` fails with a 500 instead of serving requests no limit has seen. And
 * where an abort that failed an attempt is noted ({@link RequestContext.abortedInFlight}), for
 * every route's billing of an abandoned request.
 */
export function countAttempt<T>(ctx: RequestContext, start: () => Promise<T>): Promise<T> {
  if (admissionPending(ctx)) {
    return Promise.reject(new Error('an upstream attempt before the request was admitted: the handler must call QuotaService.admit first'));
  }
  // The client left (or the drain ended the request) while it was being admitted: nothing is sent,
  // and an attempt never made is not counted (so the request is given back to the daily caps and
  // billed nothing).
  if (ctx.abort.aborted) return Promise.reject(new ClientAbortedError());
  // The provider this attempt goes to (a fallback's may differ from the one that answers last).
  const provider = ctx.provider;
  // Counted as it settles; an audit line written before then (a crash) counts it as under way.
  ctx.startAttempt(provider);
  return start().then(
    (value) => {
      ctx.endAttempt(provider);
      ctx.countAttempt(provider ?? ctx.provider ?? 'none');
      return value;
    },
    (error: unknown) => {
      ctx.endAttempt(provider);
      if (reachedUpstream(error)) {
        ctx.countAttempt(provider ?? ctx.provider ?? 'none');
        // What the routes bill a request abandoned mid-attempt by (its prompt), and not one
        // abandoned while keygate waited to retry: the abort is seen here, not by runAttempts' wait.
        if (ctx.abort.aborted) ctx.abortedInFlight = true;
      }
      throw error;
    },
  );
}

/**
 * Whether keygate gave up on an attempt the upstream had taken and was answering, which the
 * provider bills: a stream that went silent before its first content (`stalled`); one cut at the
 * total timeout after its headers; a whole answer whose headers did not come in time (they come
 * with the finished answer, so the model was writing it), that went silent mid-body, or that the
 * total timeout cut. Not a stream whose headers did not come, at the header timeout or the total
 * timeout: a stream's headers come before the model writes, so nothing was answered. Every route
 * bills such a request its prompt, as one abandoned while an attempt was under way.
 */
export function cutWhileAnswering(error: unknown, streamed: boolean): boolean {
  if (!(error instanceof UpstreamError)) return false;
  switch (error.kind) {
    case 'stalled':
      return true;
    case 'total_timeout':
      return !(streamed && error.beforeHeaders);
    case 'ttfb_timeout':
    case 'idle_timeout':
      return !streamed;
    default:
      return false;
  }
}
