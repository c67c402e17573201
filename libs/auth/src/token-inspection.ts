import { GatewayError } from '@keygate/errors';
import { JWT_KID } from '@keygate/secrets';

/** The longest compact JWT accepted (SPEC §5 hardening). */
export const MAX_TOKEN_LENGTH = 8192;
const SEGMENT = /^[A-Za-z0-9_-]+$/;
/**
 * Header parameters that carry or point at a key: honouring any of them lets a token pick its own
 * key. (`x5t`/`x5t#S256` are only certificate thumbprints, never used to find a key here: Microsoft
 * Entra ID puts `x5t` on every token, so they are allowed; the key is chosen by `kid` alone.)
 */
const KEY_CARRYING_HEADERS = ['jwk', 'jku', 'x5u', 'x5c'];
/**
 * Header parameters of an encrypted token (JWE, RFC 7516): a signed token carrying one is not what
 * it claims to be (`zip` compresses a JWE's plaintext; a JWS has none), so it is refused as JWE is.
 */
const ENCRYPTION_HEADERS = ['enc', 'zip', 'epk', 'apu', 'apv', 'iv', 'tag', 'p2s', 'p2c'];

/** A compact JWS decoded but NOT verified. */
export interface UnverifiedToken {
  header: { alg: string; kid: string } & Record<string, unknown>;
  payload: Record<string, unknown>;
}

/**
 * Everything that can be refused about a token before any key is looked up: size, JWE, shape,
 * algorithm (an allow-list, so `none` in any casing and HS* never pass), key-carrying headers,
 * `crit`, and the `kid`'s form. Throws `GatewayError('invalid_token')`.
 */
export function inspectToken(token: string, acceptedAlgs: ReadonlySet<string>): UnverifiedToken {
  if (token.length > MAX_TOKEN_LENGTH) throw invalid('the token is too large');
  const parts = token.split('.');
  if (parts.length === 5) throw invalid('encrypted tokens (JWE) are not accepted');
  if (parts.length !== 3 || !parts.every((p) => SEGMENT.test(p))) throw invalid('the token is malformed');
  const header = decodeSegment(parts[0]);
  const payload = decodeSegment(parts[1]);
  if (!header) throw invalid('the token is malformed');
  if (!payload) throw invalid('the token payload must be a JSON object');
  const alg = header.alg;
  if (typeof alg !== 'string' || !acceptedAlgs.has(alg)) throw invalid('the token algorithm is not accepted');
  if (ENCRYPTION_HEADERS.some((h) => h in header)) throw invalid('encrypted tokens (JWE) are not accepted');
  if (KEY_CARRYING_HEADERS.some((h) => h in header)) throw invalid('tokens that carry their own key or key URL are not accepted');
  if ('crit' in header) throw invalid('the token has critical header parameters keygate does not understand');
  const kid = header.kid;
  if (typeof kid !== 'string' || !JWT_KID.test(kid)) throw invalid('the token header has no usable kid');
  return { header: { ...header, alg, kid }, payload };
}

function decodeSegment(segment: string): Record<string, unknown> | undefined {
  try {
    const value: unknown = JSON.parse(Buffer.from(segment, 'base64url').toString('utf8'));
    return typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

function invalid(message: string): GatewayError {
  return new GatewayError('invalid_token', message);
}
