import { Redis } from 'ioredis';

/** Longest a request may wait on one Redis command (issue: no request waits more than ~250 ms). */
export const REDIS_COMMAND_TIMEOUT_MS = 250;

/**
 * A Redis connection for the request path: no offline queue and a command timeout, so during an
 * outage a command fails at once instead of waiting for a reconnect; reconnects keep going in the
 * background (capped backoff) so shared counting resumes by itself.
 */
export function createRequestPathRedis(url: string, onError: (error: Error) => void): Redis {
  const redis = new Redis(url, {
    enableOfflineQueue: false,
    // Commands issued in the same tick (many concurrent requests) go out in one write.
    enableAutoPipelining: true,
    maxRetriesPerRequest: 0,
    commandTimeout: REDIS_COMMAND_TIMEOUT_MS,
    connectTimeout: 2_000,
    retryStrategy: (times) => Math.min(200 * times, 2_000),
    lazyConnect: false,
  });
  redis.on('error', onError);
  return redis;
}
