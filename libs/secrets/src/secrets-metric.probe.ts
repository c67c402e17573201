import { Injectable } from '@nestjs/common';
import { MetricsService } from '@keygate/observability';
import { SecretsService } from './secrets.service';

/**
 * Reports each secret's refresh checks at scrape time, as the counter
 * `keygate_secret_refreshes_total{secret, result}` (`result`: unchanged, rotated, refused,
 * unreachable, failed), so `rate()` and `increase()` read it. An alert on a rising `refused` or
 * `failed` catches a bad rotation that the gateway survived by keeping the old version.
 */
@Injectable()
export class SecretsMetricProbe {
  /** What each series reported at the last scrape: a counter only goes up by what happened since. */
  private readonly reported = new Map<string, number>();

  constructor(secrets: SecretsService, metrics: MetricsService) {
    metrics.probe((m) => {
      for (const status of secrets.status()) {
        if (!status.name) continue;
        for (const [result, count] of Object.entries(status.refreshes)) {
          const series = `${status.name}\n${result}`;
          const since = count - (this.reported.get(series) ?? 0);
          // inc(0) still creates the series, so a result that never happened reads 0, not absent.
          if (since >= 0) m.secretRefreshes.inc({ secret: status.name, result }, since);
          this.reported.set(series, count);
        }
      }
    });
  }
}
