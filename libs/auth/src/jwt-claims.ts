import { GatewayError } from '@keygate/errors';
import { hasInvisibleCharacters, INVISIBLE_CHARACTERS_RULE, MAX_USER_ID_LENGTH, type Principal } from './principal';

/** The JWT payload after signature, `iss`, `aud`, `exp` and `nbf` checks by the JWT library. */
export interface JwtPayload {
  sub?: unknown;
  product?: unknown;
  exp?: unknown;
  iat?: unknown;
  scope?: unknown;
  [claim: string]: unknown;
}

/**
 * keygate's own claim rules on top of the library's: `exp`, `sub` and `product` are required, the
 * lifetime is bounded, and `iat` may not lie in the future beyond the skew.
 */
export function principalFromClaims(
  payload: JwtPayload,
  maxTtlSeconds: number,
  skewSeconds: number,
  nowSeconds: number,
  requiredClaims: Readonly<Record<string, string>> = {},
): Principal {
  if (typeof payload !== 'object' || payload === null || Array.isArray(payload)) throw invalid('the token payload must be a JSON object');
  for (const [claim, expected] of Object.entries(requiredClaims)) {
    // A deployment rule such as token_use=access refuses ID tokens where access tokens are expected.
    if (!claimMatches(claimValue(payload, claim), expected)) throw invalid(`the token ${claim} claim must be ${expected}`);
  }
  const { exp, iat, sub, product } = payload;
  const lifetime = lifetimeProblem(exp, iat, { maxTtlSeconds, skewSeconds, nowSeconds });
  if (lifetime) throw invalid(`the token ${lifetime}`);
  if (typeof sub !== 'string' || sub.length === 0) throw invalid('the token has no sub claim');
  if (sub.length > MAX_USER_ID_LENGTH) throw invalid(`the token sub claim is longer than ${MAX_USER_ID_LENGTH} characters`);
  // The user id keys limits and blocks and is printed in the audit: one an operator cannot see
  // whole (POST /admin/blocks refuses it) could pass for another user and never be blocked alone.
  if (hasInvisibleCharacters(sub)) throw invalid(`the token sub claim has ${INVISIBLE_CHARACTERS_RULE}`);
  if (typeof product !== 'string' || product.length === 0) throw invalid('the token has no product claim');
  if (product.length > 64) throw invalid('the token product claim is longer than 64 characters');
  // The product is printed in the audit too, even when no product of that name is served (403).
  if (hasInvisibleCharacters(product)) throw invalid(`the token product claim has ${INVISIBLE_CHARACTERS_RULE}`);
  return { kind: 'jwt', product, user: sub, scopes: scopesOf(payload.scope) };
}

/** The bounds {@link lifetimeProblem} holds a token's timing claims to (SPEC §5). */
export interface LifetimeLimits {
  /** Longest accepted lifetime. */
  maxTtlSeconds: number;
  /** How far `iat` may lie in the future (the allowed clock skew). */
  skewSeconds: number;
  nowSeconds: number;
}

/**
 * keygate's timing rules on top of the library's `exp`/`nbf` checks, for JWTs and IAP assertions
 * alike: `exp` numeric, `iat` numeric when present and not in the future beyond the skew, and a
 * lifetime (`exp - iat`, or `exp - now` without `iat`) of at most the maximum: every caller holds
 * a short-lived credential, so a leaked one is of use for minutes only. The problem, worded to
 * follow "the token", or undefined when the claims pass.
 */
export function lifetimeProblem(exp: unknown, iat: unknown, limits: LifetimeLimits): string | undefined {
  if (typeof exp !== 'number' || !Number.isFinite(exp)) return 'has no numeric exp claim';
  if (iat !== undefined && (typeof iat !== 'number' || !Number.isFinite(iat))) return 'iat claim is not numeric';
  if (typeof iat === 'number' && iat > limits.nowSeconds + limits.skewSeconds) return 'was issued in the future';
  const lifetime = exp - (typeof iat === 'number' ? iat : limits.nowSeconds);
  if (lifetime > limits.maxTtlSeconds) return `lifetime exceeds the maximum of ${limits.maxTtlSeconds} seconds`;
  return undefined;
}

/**
 * A claim by name: a top-level claim of that exact name first (names such as
 * `https://example.com/roles` hold dots), else, for a dotted name, the path into nested objects
 * (Keycloak's `realm_access.roles`). Own properties only: `constructor` is no claim.
 */
function claimValue(payload: JwtPayload, name: string): unknown {
  if (Object.hasOwn(payload, name)) return payload[name];
  if (!name.includes('.')) return undefined;
  let value: unknown = payload;
  for (const segment of name.split('.')) {
    if (typeof value !== 'object' || value === null || Array.isArray(value) || !Object.hasOwn(value, segment)) return undefined;
    value = (value as Record<string, unknown>)[segment];
  }
  return value;
}

/**
 * Whether a claim satisfies a required value (given as text in the environment): a string equal
 * to it, a boolean or number written as it (`email_verified=true`), or a list of strings holding
 * it (`groups=keygate-users`).
 */
function claimMatches(value: unknown, expected: string): boolean {
  if (typeof value === 'string') return value === expected;
  if (typeof value === 'boolean' || (typeof value === 'number' && Number.isFinite(value))) return String(value) === expected;
  if (Array.isArray(value)) return value.some((v) => typeof v === 'string' && v === expected);
  return false;
}

function scopesOf(scope: unknown): string[] {
  if (typeof scope === 'string') return scope.split(' ').filter(Boolean);
  if (Array.isArray(scope)) return scope.filter((s): s is string => typeof s === 'string');
  return [];
}

function invalid(message: string): GatewayError {
  return new GatewayError('invalid_token', message);
}
