import { GatewayError } from '@keygate/errors';
import { CONTROL_CHARACTERS, type Principal } from './principal';

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
  if (typeof exp !== 'number' || !Number.isFinite(exp)) throw invalid('the token has no numeric exp claim');
  if (iat !== undefined && (typeof iat !== 'number' || !Number.isFinite(iat))) throw invalid('the token iat claim is not numeric');
  if (typeof iat === 'number' && iat > nowSeconds + skewSeconds) throw invalid('the token was issued in the future');
  const lifetime = exp - (typeof iat === 'number' ? iat : nowSeconds);
  if (lifetime > maxTtlSeconds) throw invalid(`the token lifetime exceeds the maximum of ${maxTtlSeconds} seconds`);
  if (typeof sub !== 'string' || sub.length === 0 || sub.length > 256) throw invalid('the token has no sub claim');
  // The user id keys limits and blocks: an operator could not name one with control characters
  // (POST /admin/blocks refuses them), so such a user could never be blocked alone.
  if (CONTROL_CHARACTERS.test(sub)) throw invalid('the token sub claim has control characters');
  if (typeof product !== 'string' || product.length === 0 || product.length > 64) throw invalid('the token has no product claim');
  return { kind: 'jwt', product, user: sub, scopes: scopesOf(payload.scope) };
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
