import { Inject, Injectable } from '@nestjs/common';
import { PassportStrategy } from '@nestjs/passport';
import { GatewayConfig, type JwtSettings } from '@keygate/config';
import { Strategy, type SecretOrKeyProvider } from 'passport-jwt';
import { JWT_STRATEGY } from './auth.constants';
import { GatewayError } from '@keygate/errors';
import { principalFromClaims, type JwtPayload } from './jwt-claims';
import { JwtKeyResolver } from './jwt-key.resolver';
import type { Principal } from './principal';
import { VerifiedTokenCache, type JwksOrigin } from './verified-token.cache';

/** passport-jwt's reason for a request without a token (the credential guard recognises it). */
export const NO_AUTH_TOKEN = 'No auth token';

/** Where the key provider leaves the JWKS origin of the key it found, for validate(). */
const JWKS_ORIGIN = Symbol('keygate.jwksOrigin');

/**
 * Bearer JWT authentication (SPEC §5) with passport-jwt. {@link JwtKeyResolver} picks the key from
 * configured keys only and pins its algorithm; passport-jwt (jsonwebtoken) then verifies the
 * signature, `iss`, `aud`, `exp` and `nbf` with the allowed skew; keygate's claim rules follow.
 */
@Injectable()
export class JwtStrategy extends PassportStrategy(Strategy, JWT_STRATEGY) {
  private readonly settings: JwtSettings;

  constructor(
    @Inject(GatewayConfig) config: GatewayConfig,
    resolver: JwtKeyResolver,
    private readonly cache: VerifiedTokenCache,
  ) {
    const settings = config.jwt;
    if (!settings) throw new Error('JwtStrategy registered without JWT settings');
    const keyProvider: SecretOrKeyProvider = (request: { [JWKS_ORIGIN]?: JwksOrigin }, rawJwtToken: string, done) => {
      resolver.keyFor(rawJwtToken).then(
        ({ key, jwks }) => {
          // passport-jwt hands validate() the same request: the cache entry learns where the key came from.
          request[JWKS_ORIGIN] = jwks;
          done(null, key as unknown as string);
        },
        (error: unknown) => done(error),
      );
    };
    super({
      // The same extraction as the verified-token cache's key (bearerToken), so the string that is
      // verified is exactly the string that is cached.
      jwtFromRequest: (request: { headers: { authorization?: string } }) => bearerToken(request.headers.authorization) ?? null,
      secretOrKeyProvider: keyProvider,
      algorithms: ['RS256', 'ES256'],
      issuer: settings.issuers,
      // Another audience claim is checked in validate(): jsonwebtoken reads only `aud`.
      audience: settings.audienceClaim === 'aud' ? settings.audience : undefined,
      ignoreExpiration: false,
      passReqToCallback: true,
      jsonWebTokenOptions: { clockTolerance: settings.clockSkewSeconds },
    });
    this.settings = settings;
  }

  /**
   * passport-jwt answers a request without a bearer token with `fail(new Error('No auth token'))`.
   * The JWT strategy is tried first, so every HMAC or IAP request paid for that Error (~20 µs of
   * CPU at 50 connections, in a profile). Such a request fails here with the same reason, as text;
   * the credential guard reads both as "no token". Requests with a token go to passport-jwt.
   */
  override authenticate(request: { headers: { authorization?: string } }, options?: object): void {
    const header = request.headers.authorization;
    if (bearerToken(header) === undefined) {
      this.fail(malformedBearer(header) ? MALFORMED_BEARER() : NO_AUTH_TOKEN, 401);
      return;
    }
    super.authenticate(request as Parameters<Strategy['authenticate']>[0], options);
  }

  /**
   * Called by passport-jwt after the signature and registered claims verified. A token keygate's
   * own rules refuse is a failure like a bad signature (`[false, reason]` makes passport-jwt call
   * `fail`), not an error: passport then tries the next strategy, so a valid HMAC signature beside
   * it is still served, and the guard answers with this reason when none accepts the request.
   */
  validate(
    request: { headers: { authorization?: string }; [JWKS_ORIGIN]?: JwksOrigin },
    payload: JwtPayload,
  ): Principal | [false, GatewayError] {
    const s = this.settings;
    let principal: Principal;
    try {
      if (s.audienceClaim !== 'aud') checkAudienceClaim(payload, s.audienceClaim, s.audience);
      principal = principalFromClaims(payload, s.maxTtlSeconds, s.clockSkewSeconds, Math.floor(Date.now() / 1000), s.requiredClaims);
    } catch (error) {
      if (error instanceof GatewayError) return [false, error];
      throw error;
    }
    const token = bearerToken(request.headers.authorization);
    if (token) this.cache.set(token, principal, payload.exp as number, s.clockSkewSeconds, request[JWKS_ORIGIN]);
    return principal;
  }
}

/**
 * The audience in a claim other than `aud` (API_KEY_SERVER_JWT_AUDIENCE_CLAIM): the value, or one of
 * a list of values, must be the configured audience, as jsonwebtoken checks `aud`.
 */
function checkAudienceClaim(payload: JwtPayload, claim: string, audience: string): void {
  const value = Object.hasOwn(payload, claim) ? (payload as Record<string, unknown>)[claim] : undefined;
  const values = Array.isArray(value) ? value : [value];
  if (value === undefined) throw new GatewayError('invalid_token', `the token has no ${claim} claim, which holds the audience here`);
  if (!values.includes(audience)) throw new GatewayError('invalid_token', `the token ${claim} is not the audience this gateway accepts`);
}

/** RFC 6750 §2.1: `Bearer` 1*SP b64token; anything after the token makes the header malformed. */
const BEARER_HEADER = /^bearer +([A-Za-z0-9\-._~+/]+=*) *$/i;

/** The token of an `Authorization: Bearer <token>` header; undefined for any other or malformed header. */
export function bearerToken(header: string | undefined): string | undefined {
  return header === undefined ? undefined : BEARER_HEADER.exec(header)?.[1];
}

/** The `Bearer` scheme followed by something: a bearer credential presented, well formed or not. */
const BEARER_PRESENTED = /^bearer +\S/i;

/**
 * Whether a header presents a bearer token that is not one b64token (a space or a non-ASCII byte
 * inside it, a second token after it): a credential that is invalid, not a missing one, so its 401
 * says so (RFC 6750 §3.1 `invalid_token`) rather than asking for a credential.
 */
export function malformedBearer(header: string | undefined): boolean {
  return header !== undefined && BEARER_PRESENTED.test(header) && bearerToken(header) === undefined;
}

/** The refusal of a {@link malformedBearer} header; no part of the header is echoed. */
const MALFORMED_BEARER = (): GatewayError =>
  new GatewayError('invalid_token', 'the bearer token is malformed (RFC 6750 allows letters, digits and -._~+/ then = padding)');
