import { Gauge } from 'prom-client';
import { MetricsService } from './metrics.service';
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
