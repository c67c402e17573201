import { Module } from '@nestjs/common';
import { TerminusModule } from '@nestjs/terminus';
import { AuthModule } from '@keygate/auth';
import { LimitsModule } from '@keygate/limits';
import { RedisModule } from '@keygate/redis';
import { SecretsModule } from '@keygate/secrets';
import { HealthController } from './health.controller';
import { LifecycleState } from './lifecycle.state';
import { SecretsHealthIndicator } from './secrets.health';

/** `/healthz` and `/readyz` (terminus). */
@Module({
  imports: [TerminusModule.forRoot({ logger: false }), SecretsModule, RedisModule, LimitsModule, AuthModule],
  controllers: [HealthController],
  providers: [SecretsHealthIndicator, LifecycleState],
  exports: [LifecycleState],
})
export class HealthModule {}
