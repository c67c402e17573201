import { Module } from '@nestjs/common';
import { PassportModule } from '@nestjs/passport';
import { GatewayConfig } from '@keygate/config';
import { JsonLogger, KEYGATE_LOGGER, ObservabilityModule } from '@keygate/observability';
import { SecretsModule, SecretsService } from '@keygate/secrets';
import { redisErrorReporter } from '@keygate/redis';
import { AdminScopeGuard } from './admin-scope.guard';
import { JWT_STRATEGY } from './auth.constants';
import { CredentialGuard } from './credential.guard';
import { HMAC_WINDOW_SECONDS } from './hmac-signature';
import { HMAC_STRATEGY, HmacClientLookup, HmacStrategy } from './hmac.strategy';
import { IAP_STRATEGY, IapStrategy } from './iap.strategy';
import { IapVerifier } from './iap.verifier';
import { JwtKeyResolver } from './jwt-key.resolver';
import { JwtStrategy } from './jwt.strategy';
import { MemoryReplayCache } from './memory.replay-cache';
import { createReplayRedis, RedisReplayCache } from './redis.replay-cache';
import { ReplayCache } from './replay-cache';
import { VerifiedTokenCache } from './verified-token.cache';

/** HMAC is on when its secret comes from the environment or from Secret Manager. */
function hmacEnabled(config: GatewayConfig): boolean {
  return Boolean(config.secretEnv.hmacSecrets) || config.secretManager.enabled;
}

/** The credential strategies this configuration turns on, in the order the guard tries them. */
export function activeStrategies(config: GatewayConfig): string[] {
  const names: string[] = [];
  if (config.jwt) names.push(JWT_STRATEGY);
  if (hmacEnabled(config)) names.push(HMAC_STRATEGY);
  if (config.iap) names.push(IAP_STRATEGY);
  return names;
}

/**
 * Credential verification. Each strategy is built only when its credential type is configured
 * (building a passport strategy registers it), and the guard tries exactly those.
 */
@Module({
  imports: [
    PassportModule.registerAsync({
      inject: [GatewayConfig],
      useFactory: (config: GatewayConfig) => ({ session: false, defaultStrategy: activeStrategies(config) }),
    }),
    SecretsModule,
    ObservabilityModule,
  ],
  providers: [
    JwtKeyResolver,
    VerifiedTokenCache,
    IapVerifier,
    {
      provide: JwtStrategy,
      inject: [GatewayConfig, JwtKeyResolver, VerifiedTokenCache],
      useFactory: (config: GatewayConfig, resolver: JwtKeyResolver, cache: VerifiedTokenCache) =>
        config.jwt ? new JwtStrategy(config, resolver, cache) : undefined,
    },
    {
      provide: HmacClientLookup,
      inject: [SecretsService],
      useFactory: (secrets: SecretsService): HmacClientLookup => ({ client: (id) => secrets.current.hmacClients.get(id) }),
    },
    {
      // Shared by every replica through Redis when configured; per process otherwise.
      provide: ReplayCache,
      inject: [GatewayConfig, KEYGATE_LOGGER],
      useFactory: (config: GatewayConfig, logger: JsonLogger): ReplayCache =>
        config.redisUrl
          ? new RedisReplayCache(
              createReplayRedis(
                config.redisUrl,
                redisErrorReporter(logger, 'replay-cache Redis unavailable; HMAC requests are refused (503) until it returns'),
              ),
              HMAC_WINDOW_SECONDS,
              (severity, message, fields) => logger.write(severity, message, fields),
            )
          : new MemoryReplayCache(),
    },
    {
      provide: HmacStrategy,
      inject: [GatewayConfig, HmacClientLookup, ReplayCache],
      useFactory: (config: GatewayConfig, clients: HmacClientLookup, replay: ReplayCache) =>
        hmacEnabled(config) ? new HmacStrategy(clients, replay) : undefined,
    },
    {
      provide: IapStrategy,
      inject: [GatewayConfig, IapVerifier, SecretsService],
      useFactory: (config: GatewayConfig, verifier: IapVerifier, secrets: SecretsService) =>
        config.iap ? new IapStrategy(verifier, secrets, config) : undefined,
    },
    CredentialGuard,
    AdminScopeGuard,
  ],
  // PassportModule is re-exported so guards built in importing modules see the default strategies.
  exports: [PassportModule, VerifiedTokenCache, CredentialGuard, AdminScopeGuard, JwtKeyResolver, IapVerifier],
})
export class AuthModule {}
