/**
 * Remembers HMAC signatures for as long as they could be accepted, so each is accepted once
 * (SPEC §5). Interface and injection token share the name: one import is both type and token.
 */
export interface ReplayCache {
  /** true when first seen (and now remembered for ttlSeconds); false when already seen */
  remember(key: string, ttlSeconds: number): Promise<boolean>;
}

/** Injection token of the {@link ReplayCache} in use (memory for one replica, Redis for many). */
export const ReplayCache = Symbol('KEYGATE:REPLAY_CACHE');

/**
 * The cache cannot answer (store down, slow or full). Callers fail closed: without the cache a
 * replayed signature would be indistinguishable from a fresh one.
 */
export class ReplayCacheUnavailableError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'ReplayCacheUnavailableError';
  }
}
