import { Injectable } from '@nestjs/common';
import { MetricsService } from '@keygate/observability';
import { SecretsService } from './secrets.service';

/**
 * Reports each secret's refresh checks at scrape time, as `keygate_secret_refreshes{secret, result}`
 * (`result`: unchanged, rotated, refused, unreachable, failed). An alert on a rising `refused` or
 * `failed` catches a bad rotation that the gateway survived by keeping the old version.
 */
@Injectable()
export class SecretsMetricProbe {
  constructor(secrets: SecretsService, metrics: MetricsService) {
    metrics.probe((m) => {
      for (const status of secrets.status()) {
        if (!status.name) continue;
        for (const [result, count] of Object.entries(status.refreshes)) m.secretRefreshes.set({ secret: status.name, result }, count);
      }
    });
  }
}
