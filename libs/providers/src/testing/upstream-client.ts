import type { GatewayConfig } from '@keygate/config';
import { MetricsService } from '@keygate/observability';
import { UpstreamClient } from '../upstream.client';

/** For specs: a real UpstreamClient with short time limits (connect 1 s, first byte and idle 3 s, whole call 8 s). */
export function testUpstreamClient(): UpstreamClient {
  return new UpstreamClient(
    { upstream: { connectMs: 1_000, ttfbMs: 3_000, idleMs: 3_000, totalMs: 8_000 } } as unknown as GatewayConfig,
    new MetricsService(),
  );
}
