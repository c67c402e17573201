import { SetMetadata } from '@nestjs/common';
import type { RequestContext } from '@keygate/observability';
import type { BudgetAsk, QuotaName, StoreName, TokenAsk } from './counter.store';

/** Route metadata: the route's handler admits the request itself, with its token reservation. */
export const ADMIT_IN_HANDLER = 'keygate:admit-in-handler';

/**
 * Marks a route handler that reserves tokens (chat completions, embeddings): the limits guard
 * resolves the request's throttlers but leaves the counting to {@link QuotaService.admit}, which
 * counts them and reserves the tokens in one store step, one Redis round trip instead of two. A
 * request refused before that step (invalid body, parameter policy, unknown model) is counted in
 * no limit. The handler must call `admit` before any upstream call (the gateway's `countAttempt`
 * fails an attempt made before it). A handler method only: the guard reads the handler's metadata,
 * never the controller's.
 */
export const AdmitInHandler = (): MethodDecorator => SetMetadata(ADMIT_IN_HANDLER, true);

/**
 * Counts a request's throttlers, its daily ones on `day` (the UTC day of the admission, which may
 * follow the guard's across midnight), and reserves `tokens` and `budget` (its cost estimate) if
 * given, in one step: throws the 429 of a full request limit; otherwise tells the store that
 * counted (null when a token quota or a budget refused, with the day's token and cost totals the
 * shared store found).
 */
export type DeferredAdmission = (
  day: string,
  tokens?: TokenAsk,
  budget?: BudgetAsk,
) => Promise<{
  store: StoreName | null;
  refusedBy?: QuotaName;
  tokenTotals?: { product: number; user: number };
  costTotals?: { product: number; user: number };
}>;

const deferred = new WeakMap<RequestContext, DeferredAdmission>();

/** The guard's side: the request's counting, left for its handler. */
export function deferAdmission(ctx: RequestContext, admit: DeferredAdmission): void {
  deferred.set(ctx, admit);
}

/**
 * Whether the guard left this request's counting to its handler and the handler has not done it
 * yet: such a request must not reach an upstream (it would bypass every limit).
 */
export function admissionPending(ctx: RequestContext): boolean {
  return deferred.has(ctx);
}

/** The handler's side: the request's deferred counting, once (undefined when the guard counted it, or nothing is counted). */
export function takeDeferredAdmission(ctx: RequestContext): DeferredAdmission | undefined {
  const admit = deferred.get(ctx);
  deferred.delete(ctx);
  return admit;
}
