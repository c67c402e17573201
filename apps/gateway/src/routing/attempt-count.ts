import type { RequestContext } from '@keygate/observability';
import { UpstreamError } from '@keygate/providers';

/**
 * Counts an attempt once it is known to have reached the upstream: it answered, or failed as an
 * upstream failure. A request an adapter refused while translating was never sent.
 */
export function countAttempt<T>(ctx: RequestContext, attempt: Promise<T>): Promise<T> {
  return attempt.then(
    (value) => {
      ctx.attempts++;
      return value;
    },
    (error: unknown) => {
      if (error instanceof UpstreamError) ctx.attempts++;
      throw error;
    },
  );
}
