import { Gauge } from 'prom-client';
import { MetricsService } from './metrics.service';

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
