import { Module } from '@nestjs/common';
import { GatewayConfig } from '@keygate/config';
import { JsonLogger } from './json.logger';
import { MetricsService } from './metrics.service';
import { KEYGATE_LOGGER } from './observability.constants';

/** The structured logger ({@link KEYGATE_LOGGER}, from `LOG_LEVEL`) and the Prometheus metrics. */
@Module({
  providers: [
    {
      provide: KEYGATE_LOGGER,
      inject: [GatewayConfig],
      useFactory: (config: GatewayConfig) => new JsonLogger(config.logLevel, config.secretManager.project),
    },
    MetricsService,
  ],
  exports: [KEYGATE_LOGGER, MetricsService],
})
export class ObservabilityModule {}
