import { Module } from '@nestjs/common';
import { GatewayConfig } from '@keygate/config';
import { JsonLogger, KEYGATE_LOGGER, ObservabilityModule } from '@keygate/observability';
import { EnvSecretsSource } from './env.source';
import { DEFAULT_SECRETS_TIMING, type SecretsTiming } from './secrets.constants';
import { LayeredSecretsSource, SecretsSource } from './secrets-source';
import { SecretsMetricProbe } from './secrets-metric.probe';
import { SecretsService } from './secrets.service';

/**
 * The environment first, then Secret Manager when it is on: an environment variable that is set
 * wins over its secret (SPEC §2).
 */
export function secretsSourceFor(config: GatewayConfig, timing: SecretsTiming = DEFAULT_SECRETS_TIMING): SecretsSource {
  const env = new EnvSecretsSource(config.secretEnv);
  const sm = config.secretManager;
  if (!sm.enabled || !sm.project) return new LayeredSecretsSource([env]);
  // Loaded only when Secret Manager is on: the client library costs ~27 MB of memory at import.
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { SecretManagerSource } = require('./secret-manager.source') as typeof import('./secret-manager.source');
  const manager = new SecretManagerSource({
    project: sm.project,
    names: sm.names,
    versions: sm.versions,
    endpoint: sm.endpoint,
    callTimeoutMs: timing.callTimeoutMs,
  });
  return new LayeredSecretsSource([env, manager]);
}

/**
 * Provides {@link SecretsService}: provider keys, JWT verification keys and HMAC clients, from the
 * environment or Google Secret Manager. The service is built by an async factory rather than
 * loaded in `onModuleInit`: every provider that reads secrets is built after they have loaded, and
 * a missing or malformed secret rejects `NestFactory.create`, which the gateway reports as a
 * configuration error before it listens.
 */
@Module({
  imports: [ObservabilityModule],
  providers: [
    { provide: SecretsSource, inject: [GatewayConfig], useFactory: (config: GatewayConfig) => secretsSourceFor(config) },
    {
      provide: SecretsService,
      inject: [GatewayConfig, SecretsSource, KEYGATE_LOGGER],
      useFactory: (config: GatewayConfig, source: SecretsSource, logger: JsonLogger) => SecretsService.create(config, source, logger),
    },
    SecretsMetricProbe,
  ],
  exports: [SecretsService],
})
export class SecretsModule {}
