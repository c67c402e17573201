/**
 * Remembers HMAC signatures for as long as they could be accepted, so each is accepted once
 * (SPEC §5). Interface and injection token share the name: one import is both type and token.
 */
export interface ReplayCache {
  /**
   * true when first seen (and now remembered for ttlSeconds); false when already seen. `signedAt`
   * (Unix seconds) is when the signature says it was made: a cache that lost what it remembered
   * refuses those made before it can be sure again (see RedisReplayCache).
   */
  remember(key: string, ttlSeconds: number, signedAt?: number): Promise<boolean>;
}

/** Injection token of the {@link ReplayCache} in use (memory for one replica, Redis for many). */
export const ReplayCache = Symbol('KEYGATE:REPLAY_CACHE');

/**
 * The cache cannot answer (store down, slow or full). Callers fail closed: without the cache a
 * replayed signature would be indistinguishable from a fresh one.
 */
export class ReplayCacheUnavailableError extends Error {
  /** When the client may try again, if the cache knows (else at once: an outage's answer). */
  readonly retryAfterSeconds?: number;
  /** What the client is told, if more than that the cache is unavailable. */
  readonly clientMessage?: string;

  constructor(message: string, options?: { cause?: unknown; retryAfterSeconds?: number; clientMessage?: string }) {
    super(message, options);
    this.name = 'ReplayCacheUnavailableError';
    this.retryAfterSeconds = options?.retryAfterSeconds;
    this.clientMessage = options?.clientMessage;
  }
}
