import { Inject, Injectable, type OnModuleInit } from '@nestjs/common';
import { GatewayConfig } from '@keygate/config';
import { GatewayError } from '@keygate/errors';
import { JsonLogger, KEYGATE_LOGGER } from '@keygate/observability';
import { AutoBlocker } from './auto-blocker';
import { countTokens } from '@keygate/providers';
import { CounterStore, secondsToUtcMidnight, utcDay, type StoreName } from './counter.store';

/** Tokens held against the day's quotas for one request, to settle when it ends. */
export interface TokenReservation {
  readonly product: string;
  readonly user: string;
  readonly day: string;
  readonly tokens: number;
  readonly store: StoreName;
}

/**
 * Daily token quotas (`daily_tokens`, `user_daily_tokens`). Before the upstream call an estimate
 * (the prompt counted with a real tokenizer plus the capped completion tokens) is reserved
 * atomically against both quotas; when the request ends the reservation is settled to the real
 * usage. A request is admitted only if the day's total, outstanding reservations included, plus
 * its estimate fits, so the settled total can pass the cap only by what requests in flight use
 * beyond their own estimates (see README for the bound).
 */
@Injectable()
export class QuotaService implements OnModuleInit {
  constructor(
    @Inject(GatewayConfig) private readonly config: GatewayConfig,
    @Inject(CounterStore) private readonly counters: CounterStore,
    private readonly autoBlocker: AutoBlocker,
    @Inject(KEYGATE_LOGGER) private readonly logger: JsonLogger,
  ) {}

  /** Loads the tokenizer at boot: loading it on the first request stalls the event loop for ~200 ms. */
  onModuleInit(): void {
    countTokens('warm up');
  }

  /** Whether either token quota applies to the product (the estimate is skipped otherwise). */
  enabled(product: string): boolean {
    const { limits } = this.config.policy.forProduct(product);
    return limits.dailyTokens > 0 || limits.userDailyTokens > 0;
  }

  /** Reserves `tokens`, or throws 429 `daily_quota_exceeded` with `Retry-After` to UTC midnight. */
  async reserve(product: string, user: string, tokens: number): Promise<TokenReservation> {
    const { limits } = this.config.policy.forProduct(product);
    const now = Date.now();
    const day = utcDay(now);
    const result = await this.counters.reserveTokens(product, user, tokens, limits.dailyTokens, limits.userDailyTokens, day);
    if (!result.reserved) {
      // Only the user's own quota counts toward auto-block: a product-wide cap is not their doing.
      if (result.refusedBy === 'user_tokens') void this.autoBlocker.refused(product, user, result.refusedBy);
      const whose = result.refusedBy === 'product_tokens' ? "this product's" : 'your';
      throw new GatewayError(
        'daily_quota_exceeded',
        `This request (about ${tokens} tokens) does not fit in ${whose} daily token quota; it resets at 00:00 UTC`,
        {
          retryAfterSeconds: secondsToUtcMidnight(now),
        },
      );
    }
    return { product, user, day, tokens, store: result.store };
  }

  /** Settles a reservation to the tokens really used (never throws: the answer is already sent). */
  settle(reservation: TokenReservation | undefined, used: number): void {
    if (!reservation) return;
    this.counters
      .settleTokens(
        reservation.product,
        reservation.user,
        used - reservation.tokens,
        reservation.day,
        reservation.store,
        reservation.tokens,
      )
      .catch((error: unknown) => {
        this.logger.write('WARNING', 'token usage could not be settled', {
          product: reservation.product,
          reason: (error as Error).message,
        });
      });
  }
}
