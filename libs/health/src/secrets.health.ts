import { Injectable } from '@nestjs/common';
import { HealthIndicatorService, type HealthIndicatorResult } from '@nestjs/terminus';
import { SecretsService } from '@keygate/secrets';

/** Ready once every configured secret has loaded. */
@Injectable()
export class SecretsHealthIndicator {
  constructor(
    private readonly indicators: HealthIndicatorService,
    private readonly secrets: SecretsService,
  ) {}

  check(): HealthIndicatorResult {
    const session = this.indicators.check('secrets');
    if (!this.secrets.loaded) return session.down({ message: 'secrets not loaded' });
    return session.up({
      products: this.secrets.current.products.size,
      jwtKeys: this.secrets.current.jwtKeys.size,
      hmacClients: this.secrets.current.hmacClients.size,
    });
  }
}
