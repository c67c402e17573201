import type { KeyObject } from 'node:crypto';
import { Inject, Injectable, type OnApplicationBootstrap } from '@nestjs/common';
import { GatewayConfig } from '@keygate/config';
import { GatewayError } from '@keygate/errors';
import { JsonLogger, KEYGATE_LOGGER } from '@keygate/observability';
import { SecretsService } from '@keygate/secrets';
import { isInsecureKeyUrl, RemoteJwksKeySet } from './jwks.key-set';
import { inspectToken, type UnverifiedToken } from './token-inspection';
import type { JwksOrigin } from './verified-token.cache';

const ACCEPTED_ALGS: ReadonlySet<string> = new Set(['RS256', 'ES256']);

/**
 * Chooses the verification key of a JWT from configured keys only: static keys by `kid`, then the
 * JWKS endpoints bound to the token's issuer. Everything checkable without a key is checked first,
 * so hostile tokens cost no key lookup and never cause a fetch.
 */
@Injectable()
export class JwtKeyResolver implements OnApplicationBootstrap {
  private readonly issuers: ReadonlySet<string>;
  private readonly jwksByIssuer: ReadonlyMap<string, RemoteJwksKeySet[]>;
  private readonly allSets: RemoteJwksKeySet[];

  constructor(
    @Inject(GatewayConfig) config: GatewayConfig,
    private readonly secrets: SecretsService,
    @Inject(KEYGATE_LOGGER) private readonly logger: JsonLogger,
  ) {
    this.issuers = new Set(config.jwt?.issuers ?? []);
    const report = (url: string, reason: string): void =>
      this.logger.write('WARNING', 'JWKS fetch failed; keeping the keys already held', { url, reason });
    this.allSets = (config.jwt?.jwksUrls ?? []).map((url) => new RemoteJwksKeySet(url, config.jwt?.jwks, report));
    for (const url of config.jwt?.jwksUrls ?? [])
      if (isInsecureKeyUrl(url))
        this.logger.write('WARNING', 'JWKS URL is plain http: whoever can alter the traffic can supply keys that sign any token', { url });
    this.jwksByIssuer = bindToIssuers(config.jwt?.issuers ?? [], this.allSets);
  }

  /**
   * Starts fetching every JWKS at boot without waiting: an IdP that is down must not hold the
   * boot up. A request arriving before the fetch ends shares it.
   */
  onApplicationBootstrap(): void {
    for (const set of this.allSets) void set.refresh(true);
  }

  /**
   * The key for `token` (with the JWKS generation it came from, for a remote key), or a
   * `GatewayError('invalid_token')` saying why not.
   */
  async keyFor(token: string): Promise<{ key: KeyObject; jwks?: JwksOrigin }> {
    const { header, issuer } = this.inspect(token);
    const staticKey = this.secrets.current.jwtKeys.get(header.kid);
    // A static key bound to other issuers does not hide the token issuer's own JWKS key of that kid
    // (kids are chosen by each IdP, and may collide).
    if (staticKey && (!staticKey.issuers || staticKey.issuers.has(issuer))) {
      if (staticKey.alg !== header.alg) throw invalid(`the token alg is not allowed for this key (expected ${staticKey.alg})`);
      return { key: staticKey.key };
    }
    const sets = this.jwksByIssuer.get(issuer) ?? [];
    for (const set of sets) {
      const generation = set.generation;
      const key = await set.key({ alg: header.alg, kid: header.kid });
      // The generation before the lookup: if the lookup itself refetched, the entry is re-verified once.
      if (key) return { key, jwks: { set, generation } };
    }
    // Whoever debugs the 401 must learn that the IdP is unreachable, not that the token names a wrong key.
    if (sets.length && sets.every((set) => set.size === 0))
      throw invalid("the token issuer's keys are not available: its JWKS endpoint has not been fetched successfully yet; retry shortly");
    if (staticKey) throw invalid('the token issuer is not one this key signs for');
    throw invalid('the token kid is not a known key');
  }

  /** Each JWKS endpoint and how many keys it holds now (0: never fetched successfully), for readiness details. */
  keySets(): Array<{ url: string; keys: number }> {
    return this.allSets.map((set) => ({ url: set.url, keys: set.size }));
  }

  /** Checks the header and the claimed issuer of a token without verifying it. */
  private inspect(token: string): { header: UnverifiedToken['header']; issuer: string } {
    const { header, payload } = inspectToken(token, ACCEPTED_ALGS);
    // An issuer that is not configured is refused here, so it can never cause a JWKS fetch.
    if (typeof payload.iss !== 'string' || !this.issuers.has(payload.iss)) throw invalid('the token issuer is not accepted');
    return { header, issuer: payload.iss };
  }
}

/**
 * Binds each JWKS URL to the issuers it lives under (the OIDC convention: the `jwks_uri` is below
 * the issuer URL). A URL under no configured issuer is shared by all of them.
 */
function bindToIssuers(issuers: readonly string[], sets: readonly RemoteJwksKeySet[]): Map<string, RemoteJwksKeySet[]> {
  const byIssuer = new Map<string, RemoteJwksKeySet[]>(issuers.map((i) => [i, []]));
  for (const set of sets) {
    const owners = issuers.filter((i) => /^https?:\/\//.test(i) && set.url.startsWith(i.replace(/\/+$/, '') + '/'));
    for (const issuer of owners.length ? owners : issuers) byIssuer.get(issuer)?.push(set);
  }
  return byIssuer;
}

function invalid(message: string): GatewayError {
  return new GatewayError('invalid_token', message);
}
