import type { RequestContext } from '@keygate/observability';
import { ClientAbortedError, UpstreamError } from '@keygate/providers';

/**
 * Counts an attempt once it is known to have gone to the upstream: it answered, failed as an
 * upstream failure, or was cancelled because the client went away (the upstream may already be
 * generating, and billing, by then). A request an adapter refused while translating was never sent.
 */
export function countAttempt<T>(ctx: RequestContext, attempt: Promise<T>): Promise<T> {
  return attempt.then(
    (value) => {
      ctx.attempts++;
      return value;
    },
    (error: unknown) => {
      if (error instanceof UpstreamError || error instanceof ClientAbortedError) ctx.attempts++;
      throw error;
    },
  );
}
