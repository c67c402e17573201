import { Injectable } from '@nestjs/common';
import { SecretsService } from '@keygate/secrets';
import type { Principal } from './principal';

/** Where a token's verification key came from, when that was a remote JWKS: the set and its generation then. */
export interface JwksOrigin {
  readonly set: { readonly generation: number; refreshIfStale(): void };
  readonly generation: number;
}

interface Entry {
  principal: Principal;
  /** Epoch ms after which the token is no longer accepted (exp + skew). */
  until: number;
  /** The secrets snapshot the token verified against: a key rotation invalidates the entry. */
  snapshot: object;
  /** The JWKS generation the key came from: any change to that key set invalidates the entry. */
  jwks: JwksOrigin | undefined;
}

const MAX_ENTRIES = 10_000;

/**
 * Bearer tokens that verified, kept until they expire, so a client reusing its token for many
 * requests costs one signature check, not one per request. An entry dies with its token's `exp`,
 * when the secrets snapshot changes (a removed `kid` stops verifying at once), or, for a key from a
 * JWKS endpoint, when a fetch of that key set brings different keys: each cached use of such a
 * token refetches the set once it is older than the JWKS cache time (in the background, cooldown
 * permitting), so a key the IdP withdrew stops verifying cached tokens within about that time.
 */
@Injectable()
export class VerifiedTokenCache {
  private readonly entries = new Map<string, Entry>();

  constructor(private readonly secrets: SecretsService) {}

  get(token: string): Principal | undefined {
    const entry = this.entries.get(token);
    if (!entry) return undefined;
    if (
      entry.until <= Date.now() ||
      entry.snapshot !== this.secrets.current ||
      (entry.jwks && entry.jwks.set.generation !== entry.jwks.generation)
    ) {
      this.entries.delete(token);
      return undefined;
    }
    // A cached token looks no key up, so it is what keeps its key set fresh (in the background).
    entry.jwks?.set.refreshIfStale();
    return entry.principal;
  }

  set(token: string, principal: Principal, expSeconds: number, skewSeconds: number, jwks?: JwksOrigin): void {
    if (this.entries.size >= MAX_ENTRIES) {
      // Oldest first (Map keeps insertion order): cheap and good enough for short-lived tokens.
      const oldest = this.entries.keys().next().value;
      if (oldest !== undefined) this.entries.delete(oldest);
    }
    this.entries.set(token, { principal, until: (expSeconds + skewSeconds) * 1000, snapshot: this.secrets.current, jwks });
  }
}
