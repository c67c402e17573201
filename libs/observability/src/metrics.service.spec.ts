import { Gauge } from 'prom-client';
import { MetricsService, SCRAPE_SERIES_PER_TURN } from './metrics.service';
import { RequestContext } from './request-context';

describe('MetricsService.scrape', () => {
  it('writes NaN as the text format spells it (prom-client writes "Nan")', async () => {
    const metrics = new MetricsService();
    // What the event-loop lag gauges hold when a scrape follows the previous one too closely to sample.
    new Gauge({ name: 'spec_not_a_number', help: 'a gauge holding NaN', registers: [metrics.registry] }).set(NaN);
    const text = await metrics.scrape();
    expect(text).toMatch(/^spec_not_a_number NaN$/m);
    const values = text
      .split('\n')
      .filter((line) => line !== '' && !line.startsWith('#'))
      .map((line) => line.split(' ').pop());
    for (const value of values) expect(value).toMatch(/^(NaN|[+-]Inf|-?\d+(\.\d+)?(e[+-]?\d+)?)$/);
  });
});

describe('MetricsService.scrape at a platform scale', () => {
  /** A registry as 1,000 products of three providers leave it: ~3,000 latency histograms, more counters. */
  function platformMetrics(): MetricsService {
    const metrics = new MetricsService();
    for (let p = 0; p < 1_000; p++)
      for (const provider of ['openai', 'anthropic', 'gemini']) {
        const ctx = new RequestContext(`req-${p}`, 'POST', '/v1/chat/completions', process.hrtime.bigint(), null, true);
        Object.assign(ctx, { provider, status: 200, tokensIn: 7, tokensOut: 2, costUsd: 0.001 });
        metrics.observeRequest(ctx, { product: `product-${p} "quoted" \\ \n`, model: `${provider}-model-${p}` });
      }
    return metrics;
  }

  it('writes exactly what prom-client writes for the whole registry', async () => {
    const metrics = platformMetrics();
    const expected = (await metrics.registry.metrics()).replace(/ Nan$/gm, ' NaN');
    // The process metrics change between two reads: compare keygate's own series, and the metric order.
    const own = (text: string): string[] =>
      text.split('\n').filter((line) => !line.includes('keygate_process') && !line.includes('keygate_nodejs'));
    const text = await metrics.scrape();
    expect(own(text)).toEqual(own(expected));
    expect(text.endsWith('\n')).toBe(true);
    expect(text.match(/^keygate_request_duration_seconds_bucket/gm)).toHaveLength(3_000 * 16);
  });

  it('formats a large metric a slice at a time, serving the event loop between slices', async () => {
    // ~50,000 histogram lines in one synchronous run held every request for 0.5-1.4 s per scrape.
    const metrics = platformMetrics();
    let turns = 0;
    let done = false;
    const count = (): void => {
      if (done) return;
      turns++;
      setImmediate(count);
    };
    setImmediate(count);
    await metrics.scrape();
    done = true;
    expect(turns).toBeGreaterThanOrEqual(Math.floor((3_000 * 16) / SCRAPE_SERIES_PER_TURN));
  });
});

describe('MetricsService.observeRequest', () => {
  it('counts tokens and cost, and leaves out counts no counter can take instead of throwing', async () => {
    const metrics = new MetricsService();
    const ctx = new RequestContext('req-m', 'POST', '/v1/chat/completions', process.hrtime.bigint(), null, true);
    Object.assign(ctx, { provider: 'openai', status: 200, tokensIn: 12, tokensOut: 3, costUsd: 0.00006 });
    metrics.observeRequest(ctx, { product: 'demo', model: 'gpt-4o' });
    // What an upstream may get wrong, whatever let it through: a counter throws on each of these.
    Object.assign(ctx, { tokensIn: -3, tokensOut: '5' as unknown as number, costUsd: Number.NaN });
    expect(() => metrics.observeRequest(ctx, { product: 'demo', model: 'gpt-4o' })).not.toThrow();
    const text = await metrics.scrape();
    expect(text).toContain('keygate_tokens_total{product="demo",model="gpt-4o",direction="in"} 12');
    expect(text).toContain('keygate_tokens_total{product="demo",model="gpt-4o",direction="out"} 3');
    expect(text).toContain('keygate_cost_usd_total{product="demo",model="gpt-4o"} 0.00006');
  });
});
