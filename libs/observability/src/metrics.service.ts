import { Injectable } from '@nestjs/common';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { RequestContext } from './request-context';

/** A value read when Prometheus scrapes (Redis availability, secret refreshes, …). */
export type ScrapeProbe = (metrics: MetricsService) => void | Promise<void>;

/** A request's `product` and `model` metric labels: configured names, `none`, `unconfigured` or `other`. */
export interface RequestLabels {
  product: string;
  model: string;
}

/**
 * The most series a scrape formats in one event-loop turn. A platform of 1,000 products has ~3,000
 * latency histograms (~50,000 lines, ~7 MB of text), which prom-client formats in one synchronous
 * run of ~0.5-1.4 s; in slices of this many, requests are served between them.
 */
export const SCRAPE_SERIES_PER_TURN = 2_000;

/** A metric's data as prom-client's formatter reads it (`getForPromString` where it has one, as a histogram does). */
interface MetricData {
  values?: unknown[];
}
interface FormattableMetric {
  get(): Promise<MetricData>;
  getForPromString?(): Promise<MetricData>;
}
/** The registry's formatter of one metric (public in prom-client 15's code, left out of its types). */
type FormatOne = (metric: { get(): Promise<MetricData> }) => Promise<string>;

/**
 * keygate's Prometheus metrics. Label values come only from configuration or from small fixed
 * sets (status, failure class, provider): never user ids, raw paths or client-chosen model names,
 * so cardinality stays bounded.
 */
@Injectable()
export class MetricsService {
  readonly registry = new Registry();
  readonly requests = new Counter({
    name: 'keygate_requests_total',
    help: 'Requests by product, provider, model, status and failure class',
    labelNames: ['product', 'provider', 'model', 'status', 'failure'],
    registers: [this.registry],
  });
  readonly latency = new Histogram({
    name: 'keygate_request_duration_seconds',
    help: 'Time from arrival to the end of the response',
    labelNames: ['product', 'provider', 'stream'],
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300],
    registers: [this.registry],
  });
  readonly upstreamTtfb = new Histogram({
    name: 'keygate_upstream_ttfb_seconds',
    help: 'Time from sending an upstream request to its response headers',
    labelNames: ['provider'],
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
    registers: [this.registry],
  });
  readonly tokens = new Counter({
    name: 'keygate_tokens_total',
    help: 'Prompt (in) and completion (out) tokens by product and model',
    labelNames: ['product', 'model', 'direction'],
    registers: [this.registry],
  });
  readonly cost = new Counter({
    name: 'keygate_cost_usd_total',
    help: "What the tokens cost in US dollars at the policy file's prices, by product and model (models without a price are not counted)",
    labelNames: ['product', 'model'],
    registers: [this.registry],
  });
  readonly rejections = new Counter({
    name: 'keygate_limit_rejections_total',
    help: 'Requests refused by a rate limit, a quota or a block',
    labelNames: ['product', 'reason'],
    registers: [this.registry],
  });
  readonly activeStreams = new Gauge({ name: 'keygate_active_streams', help: 'Streams being served now', registers: [this.registry] });
  readonly attempts = new Counter({
    name: 'keygate_upstream_attempts_total',
    help: 'Upstream attempts (retries and fallbacks included) by provider',
    labelNames: ['provider'],
    registers: [this.registry],
  });
  readonly fallbacks = new Counter({
    name: 'keygate_fallbacks_total',
    help: 'Requests answered by a fallback model',
    labelNames: ['product', 'model'],
    registers: [this.registry],
  });
  readonly secretRefreshes = new Counter({
    name: 'keygate_secret_refreshes_total',
    help: 'Secret refresh checks since start, by secret and result',
    labelNames: ['secret', 'result'],
    registers: [this.registry],
  });
  readonly redisUp = new Gauge({
    name: 'keygate_redis_up',
    help: '1 while the shared Redis answers, 0 while limits count per replica',
    registers: [this.registry],
  });
  readonly bufferedAnswerBytes = new Gauge({
    name: 'keygate_buffered_answer_bytes',
    help: 'Bytes of whole (not streamed) upstream answers in memory now: being read, or read and held until their response closes',
    registers: [this.registry],
  });
  readonly bufferedAnswerWaits = new Counter({
    name: 'keygate_buffered_answer_waits_total',
    help: 'Whole upstream answers whose reading waited for others to finish (the buffered-answer budget was spent)',
    registers: [this.registry],
  });

  private readonly probes: ScrapeProbe[] = [];

  constructor() {
    collectDefaultMetrics({ register: this.registry, prefix: 'keygate_' });
  }

  /** Registers a value that is read at scrape time. */
  probe(probe: ScrapeProbe): void {
    this.probes.push(probe);
  }

  /** The Prometheus text exposition. */
  async scrape(): Promise<string> {
    await Promise.all(this.probes.map(async (probe) => probe(this)));
    // prom-client 15 writes NaN as `Nan` (lib/util.js), which the text format does not allow; the
    // event-loop lag gauges are NaN when a scrape follows the previous one too closely to sample.
    return (await this.text()).replace(/ Nan$/gm, ' NaN');
  }

  /**
   * What `registry.metrics()` writes, formatted by prom-client itself, but a metric's series at most
   * {@link SCRAPE_SERIES_PER_TURN} at a time, each slice in its own event-loop turn: the registry
   * formats every metric in one synchronous run, which at a platform's scale held every request
   * for up to 1.4 s on each scrape.
   */
  private async text(): Promise<string> {
    const format = (this.registry as unknown as { getMetricsAsString: FormatOne }).getMetricsAsString.bind(this.registry);
    const parts: string[] = [];
    for (const metric of this.registry.getMetricsAsArray() as unknown as FormattableMetric[]) {
      const data = typeof metric.getForPromString === 'function' ? await metric.getForPromString() : await metric.get();
      const values = data.values ?? [];
      const lines: string[] = [];
      for (let from = 0; from === 0 || from < values.length; from += SCRAPE_SERIES_PER_TURN) {
        if (from > 0) await nextTurn();
        const slice = { ...data, values: values.slice(from, from + SCRAPE_SERIES_PER_TURN) };
        const text = await format({ get: () => Promise.resolve(slice) });
        // Each slice comes with the metric's HELP and TYPE lines: kept once, before the first.
        lines.push(from === 0 ? text : text.split('\n').slice(2).join('\n'));
      }
      parts.push(lines.join('\n'));
      if (values.length > SCRAPE_SERIES_PER_TURN) await nextTurn();
    }
    return `${parts.join('\n\n')}\n`;
  }

  /**
   * Records one finished request from its context (called once, with the audit record). `labels`
   * are the request's product and model as configured (the caller maps them; never a client's name).
   */
  observeRequest(ctx: RequestContext, labels: RequestLabels): void {
    const { product, model } = labels;
    const provider = ctx.provider ?? 'none';
    this.requests.inc({ product, provider, model, status: String(ctx.status), failure: ctx.failure ?? 'none' });
    this.latency.observe({ product, provider, stream: String(ctx.stream) }, Number(process.hrtime.bigint() - ctx.startedAt) / 1e9);
    // A counter throws on anything but a positive number, here outside any handler (the process
    // would exit): a count an upstream got wrong is left out of the metrics, whatever let it through.
    if (positive(ctx.tokensIn)) this.tokens.inc({ product, model, direction: 'in' }, ctx.tokensIn);
    if (positive(ctx.tokensOut)) this.tokens.inc({ product, model, direction: 'out' }, ctx.tokensOut);
    if (positive(ctx.costUsd)) this.cost.inc({ product, model }, ctx.costUsd);
    if (ctx.failure === 'rate_limit' || ctx.failure === 'quota' || ctx.failure === 'blocked')
      this.rejections.inc({ product, reason: ctx.failure });
    // Each attempt under the provider it went to: a fallback's are not the answering provider's.
    if (ctx.attemptsByProvider) for (const [to, count] of ctx.attemptsByProvider) this.attempts.inc({ provider: to }, count);
    else if (ctx.attempts) this.attempts.inc({ provider }, ctx.attempts);
    if (ctx.requestedModel && ctx.model && ctx.model !== ctx.requestedModel && ctx.failure === null) this.fallbacks.inc({ product, model });
  }
}

function positive(value: number | null): value is number {
  return typeof value === 'number' && value > 0 && Number.isFinite(value);
}
