import { Inject, Injectable } from '@nestjs/common';
import { GatewayConfig, type ModelPrice } from '@keygate/config';
import { JsonLogger, KEYGATE_LOGGER, redact, type RequestContext } from '@keygate/observability';
import { requestCostUsd } from './audit.cost';

/** One audit record, SPEC §7. */
export interface AuditRecord {
  type: 'audit';
  requestId: string;
  product: string | null;
  user: string | null;
  model: string | null;
  requested_model: string | null;
  /**
   * Extension: `model` as `/metrics` labels it: the configured name or pattern that served it,
   * `other`, or `none`. Bounded whatever a client sends, unlike `model`: what log-based metrics read.
   */
  model_label: string;
  /**
   * Extension: `product` as `/metrics` labels it: a configured product, `unconfigured` (a token's
   * claim naming none), or `none`. Bounded, unlike `product`: what log-based metrics read.
   */
  product_label: string;
  provider: string | null;
  stream: boolean;
  tokens_in: number | null;
  tokens_out: number | null;
  /** Extension: of `tokens_in`, read from the provider's prompt cache; null when it did not say. */
  tokens_cached: number | null;
  /** Extension: of `tokens_in`, written to the prompt cache (Anthropic); null when it did not say. */
  tokens_cache_write: number | null;
  /** Extension: of `tokens_cache_write`, written for an hour (Anthropic); null when it did not say. */
  tokens_cache_write_1h: number | null;
  /** Extension: of `tokens_out`, spent reasoning; null when the provider did not say. */
  tokens_reasoning: number | null;
  /** Extension: what the tokens cost in US dollars at the policy file's `prices` for `model`; null without one. */
  cost_usd: number | null;
  latency_ms: number;
  status: number;
  failure: RequestContext['failure'];
  attempts: number;
  method: string;
  path: string;
}

/** The labels of a request whose product and model are not known. */
const NO_LABELS = Object.freeze({ product: 'none', model: 'none' });

/**
 * A string of the record that the client chose (the model it asked for, the path it sent), masked
 * as every other log line is: a request whose model or path holds a key or a token (a client that
 * passed its API key where the model goes) must not put it in the log.
 */
function masked<T extends string | null>(text: T): T {
  return (text === null ? null : redact(text)) as T;
}

/**
 * A path as sent, masked; with percent-escapes, masked as decoded too: a key or a token written with
 * escapes (`%2E` for a JWT's dots) is not recognised as sent, and the decoded form, masked, is kept
 * when it hides something the raw form showed.
 */
function maskedPath(path: string): string {
  const shown = redact(path) as string;
  if (!path.includes('%')) return shown;
  let decoded: string;
  try {
    decoded = decodeURIComponent(path);
  } catch {
    return shown;
  }
  const decodedShown = redact(decoded) as string;
  return decodedShown === decoded ? shown : decodedShown;
}

/**
 * The most of a client-chosen string an audit line keeps (a path may be ~16 KB, all the headers
 * Node takes): masked first, so a cut never leaves part of a key unrecognised, then cut with `…`.
 */
export const AUDIT_TEXT_MAX_CHARS = 1024;

function clipped<T extends string | null>(text: T, shown: T = masked(text)): T {
  return (shown !== null && shown.length > AUDIT_TEXT_MAX_CHARS ? `${shown.slice(0, AUDIT_TEXT_MAX_CHARS)}…` : shown) as T;
}

/**
 * Writes exactly one audit line per auditable request. It never holds prompt or completion text:
 * the record is built only from the context's counters and names, and the names a client chose
 * (model, path) are masked (SPEC §7: credentials never appear in any log).
 */
@Injectable()
export class AuditService {
  constructor(
    @Inject(KEYGATE_LOGGER) private readonly logger: JsonLogger,
    @Inject(GatewayConfig) private readonly config: Pick<GatewayConfig, 'policy'>,
  ) {}

  /** A model's configured price (made once, not a closure per audited request). */
  private readonly priceOf = (model: string): ModelPrice | undefined => this.config.policy.priceOf(model);

  /**
   * Writes the record for `ctx` unless it was written already; returns whether it wrote. `labels`:
   * the request's metrics labels (see {@link AuditRecord.model_label}, {@link AuditRecord.product_label}).
   */
  record(ctx: RequestContext, labels: { product: string; model: string } = NO_LABELS): boolean {
    if (!ctx.auditable || ctx.audited) return false;
    ctx.audited = true;
    // Priced by the model that answered (a fallback's own price), as configured: never a client's name.
    // Earlier attempts the request is billed for at their own models' prices.
    ctx.costUsd = ctx.provider && ctx.model !== null ? requestCostUsd(ctx, ctx.model, this.priceOf) : null;
    const record = {
      type: 'audit',
      requestId: ctx.requestId,
      product: ctx.product,
      user: ctx.user,
      model: clipped(ctx.model),
      requested_model: clipped(ctx.requestedModel),
      model_label: masked(labels.model),
      product_label: labels.product,
      provider: ctx.provider,
      stream: ctx.stream,
      tokens_in: ctx.tokensIn,
      tokens_out: ctx.tokensOut,
      tokens_cached: ctx.tokensCached,
      tokens_cache_write: ctx.tokensCacheWrite,
      tokens_cache_write_1h: ctx.tokensCacheWrite1h,
      tokens_reasoning: ctx.tokensReasoning,
      cost_usd: ctx.costUsd,
      latency_ms: Math.round(Number(process.hrtime.bigint() - ctx.startedAt) / 1e4) / 100,
      status: ctx.status,
      failure: ctx.failure,
      attempts: ctx.attempts,
      method: ctx.method,
      path: clipped(ctx.path, maskedPath(ctx.path)),
    } satisfies AuditRecord;
    // SPEC §7: one record per request whatever LOG_LEVEL says. Handed over as built: the logger
    // copies its fields into the line it writes.
    this.logger.always(ctx.failure && ctx.failure !== 'client_abort' && ctx.status >= 500 ? 'WARNING' : 'INFO', 'audit', record, ctx);
    return true;
  }
}
