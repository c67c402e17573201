import { MetricsService } from './metrics.service';

describe('MetricsService.scrape', () => {
  it('writes NaN as the text format spells it (prom-client writes "Nan"), even for scrapes in quick succession', async () => {
    const metrics = new MetricsService();
    // The event-loop lag gauges have no sample between two immediate scrapes: their value is NaN.
    const texts = [await metrics.scrape(), await metrics.scrape(), await metrics.scrape()];
    const values = texts.flatMap((text) =>
      text
        .split('\n')
        .filter((line) => line !== '' && !line.startsWith('#'))
        .map((line) => line.split(' ').pop()),
    );
    expect(values.some((v) => v === 'NaN')).toBe(true);
    for (const value of values) expect(value).toMatch(/^(NaN|[+-]Inf|-?\d+(\.\d+)?(e[+-]?\d+)?)$/);
  });
});
