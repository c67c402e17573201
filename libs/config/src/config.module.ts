import { Module, type DynamicModule } from '@nestjs/common';
import { loadGatewayConfig } from './config.loader';
import { GatewayConfig } from './gateway-config';

/** Options for {@link ConfigModule.forRoot}. */
export interface ConfigModuleOptions {
  /** The environment to read; `process.env` by default. Tests pass their own. */
  env?: NodeJS.ProcessEnv;
  /** An already-built configuration (wins over `env`). */
  config?: GatewayConfig;
}

/** Provides the validated {@link GatewayConfig}, parsed once at boot. */
@Module({})
export class ConfigModule {
  static forRoot(options: ConfigModuleOptions = {}): DynamicModule {
    return {
      module: ConfigModule,
      global: true,
      providers: [{ provide: GatewayConfig, useFactory: () => options.config ?? loadGatewayConfig(options.env ?? process.env) }],
      exports: [GatewayConfig],
    };
  }
}
