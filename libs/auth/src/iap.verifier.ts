import { Inject, Injectable, type OnApplicationBootstrap } from '@nestjs/common';
import { GatewayConfig } from '@keygate/config';
import { GatewayError } from '@keygate/errors';
import { JsonLogger, KEYGATE_LOGGER } from '@keygate/observability';
import { jwtVerify, errors as joseErrors, type JWTPayload } from 'jose';
import { isInsecureKeyUrl, RemoteJwksKeySet } from './jwks.key-set';
import { lifetimeProblem } from './jwt-claims';
import { INVISIBLE_CHARACTERS_RULE, isNameableUserId } from './principal';
import { inspectToken } from './token-inspection';

/** The issuer of every IAP assertion. */
export const IAP_ISSUER = 'https://cloud.google.com/iap';
const ES256_ONLY: ReadonlySet<string> = new Set(['ES256']);

/**
 * The longest IAP assertion lifetime accepted (`exp - iat`), in seconds. Google's assertions live
 * 10 minutes; this is the JWT maximum's documented default (SPEC §2), fixed rather than read from
 * API_KEY_SERVER_JWT_MAX_TTL_SECONDS: that setting is for the operator's own IdP, and lowering it
 * under 600 s would refuse every IAP user.
 */
export const IAP_MAX_LIFETIME_SECONDS = 900;

/** The clock skew allowed on `exp` and `iat`, as for JWTs (SPEC §5). */
const IAP_CLOCK_SKEW_SECONDS = 60;

/** The identity IAP vouches for. */
export interface IapIdentity {
  email: string;
  subject: string;
  /** The Google Workspace (Cloud Identity) domain of the account (`hd`), lowercase; absent for consumer accounts. */
  hostedDomain?: string;
}

/**
 * Verifies Google IAP's signed header (`x-goog-iap-jwt-assertion`): ES256 only, Google's keys
 * (URL overridable for tests), issuer `https://cloud.google.com/iap`, exact audience. The
 * unsigned `x-goog-authenticated-user-*` headers are never read.
 */
@Injectable()
export class IapVerifier implements OnApplicationBootstrap {
  private readonly keys: RemoteJwksKeySet | undefined;
  private readonly audience: string | undefined;

  constructor(@Inject(GatewayConfig) config: GatewayConfig, @Inject(KEYGATE_LOGGER) logger: JsonLogger) {
    if (!config.iap) return;
    this.audience = config.iap.audience;
    this.keys = new RemoteJwksKeySet(config.iap.jwksUrl, config.jwt?.jwks, (url, reason) =>
      logger.write('WARNING', 'IAP key fetch failed; keeping the keys already held', { url, reason }),
    );
    if (isInsecureKeyUrl(config.iap.jwksUrl))
      logger.write('WARNING', 'IAP key URL is plain http: whoever can alter the traffic can supply keys that sign any assertion', {
        url: config.iap.jwksUrl,
      });
  }

  /** Google's key set and how many keys it holds now (0: never fetched successfully), for readiness details; undefined without IAP. */
  keySet(): { url: string; keys: number } | undefined {
    return this.keys ? { url: this.keys.url, keys: this.keys.size } : undefined;
  }

  /** Starts fetching Google's keys at boot without waiting (see JwtKeyResolver). */
  onApplicationBootstrap(): void {
    void this.keys?.refresh(true);
  }

  /** The verified identity of an assertion, or `GatewayError('invalid_token')`. */
  async verify(assertion: string): Promise<IapIdentity> {
    if (!this.keys || !this.audience) throw new GatewayError('invalid_token', 'IAP authentication is not enabled');
    const { header } = inspectToken(assertion, ES256_ONLY);
    try {
      // Inside the try: a published key jose cannot import is this assertion's failure (401), not a 500.
      const key = await this.keys.key({ alg: 'ES256', kid: header.kid });
      if (!key)
        throw new GatewayError(
          'invalid_token',
          this.keys.size > 0
            ? 'the IAP assertion kid is not a known Google key'
            : "Google's IAP keys are not available: they have not been fetched successfully yet; retry shortly",
        );
      const { payload } = await jwtVerify(assertion, key, {
        algorithms: ['ES256'],
        issuer: IAP_ISSUER,
        audience: this.audience,
        clockTolerance: IAP_CLOCK_SKEW_SECONDS,
        requiredClaims: ['exp', 'iat', 'sub', 'email'],
      });
      // Exactly this audience: jose also accepts an array that merely contains it.
      if (payload.aud !== this.audience) throw new GatewayError('invalid_token', 'the IAP assertion aud claim is not accepted');
      return identityOf(payload, Math.floor(Date.now() / 1000));
    } catch (error) {
      if (error instanceof GatewayError) throw error;
      throw new GatewayError('invalid_token', iapMessage(error));
    }
  }
}

/**
 * keygate's own rules on a verified assertion's claims, as on a JWT's (see principalFromClaims):
 * a bounded lifetime, no `iat` in the future beyond the skew, and an email that can serve as a
 * user id an operator can block.
 */
function identityOf(payload: JWTPayload, nowSeconds: number): IapIdentity {
  const lifetime = lifetimeProblem(payload.exp, payload.iat, {
    maxTtlSeconds: IAP_MAX_LIFETIME_SECONDS,
    skewSeconds: IAP_CLOCK_SKEW_SECONDS,
    nowSeconds,
  });
  if (lifetime) throw new GatewayError('invalid_token', `the IAP assertion ${lifetime}`);
  if (typeof payload.email !== 'string' || !payload.email.includes('@'))
    throw new GatewayError('invalid_token', 'the IAP assertion has no email');
  const email = payload.email.toLowerCase();
  if (!isNameableUserId(email))
    throw new GatewayError('invalid_token', `the IAP assertion email claim must be 1-256 characters without ${INVISIBLE_CHARACTERS_RULE}`);
  const hostedDomain = typeof payload.hd === 'string' && payload.hd !== '' ? payload.hd.toLowerCase() : undefined;
  return { email, subject: payload.sub as string, hostedDomain };
}

function iapMessage(error: unknown): string {
  if (error instanceof joseErrors.JWTExpired) return 'the IAP assertion has expired';
  if (error instanceof joseErrors.JWTClaimValidationFailed) return `the IAP assertion ${error.claim} claim is not accepted`;
  if (error instanceof joseErrors.JWSSignatureVerificationFailed) return 'the IAP assertion signature is invalid';
  return 'the IAP assertion is invalid';
}

/**
 * Whether an IAP identity is among a product's members: `user:<email>`, or `domain:<domain>` for
 * an account of that Google Workspace domain (the assertion's `hd`), as IAM reads `domain:`. The
 * email's own domain does not count: anyone can register a consumer Google account under an
 * address of any domain whose mail they read, and a Workspace user may have an address on one of
 * its secondary domains.
 */
export function isIapMember(identity: IapIdentity, members: readonly string[]): boolean {
  if (members.includes(`user:${identity.email}`)) return true;
  return identity.hostedDomain !== undefined && members.includes(`domain:${identity.hostedDomain}`);
}
