import { createPublicKey, type KeyObject } from 'node:crypto';
import { SecretFormatError } from './secret-format.error';
import { parseSecretJson } from './secret-json';

/** JWS algorithms keygate accepts; each key is pinned to the one its type allows. */
export type JwtAlgorithm = 'RS256' | 'ES256';

/** A verification key with its pinned algorithm. */
export interface JwtVerificationKey {
  readonly kid: string;
  readonly key: KeyObject;
  readonly alg: JwtAlgorithm;
}

/**
 * The `kid` shapes accepted, for configured keys and the tokens naming them alike: an identifier of
 * letters, digits and `._:-` (most IdPs: Okta, Auth0, Entra ID, Keycloak, Google, Clerk), or
 * standard/URL-safe base64 with its `=` padding (Amazon Cognito's `vyVQ…+…/…=`, WSO2's). Neither
 * shape holds a space, a quote or a control character, and only the one without `/` has dots, so
 * no `../` traversal or SQL passes as a kid (a kid is only ever compared with configured ones, never
 * used as a path or in a query, but it is refused before that).
 */
export const JWT_KID = /^(?:[A-Za-z0-9._:-]{1,128}|[A-Za-z0-9+/_-]{1,128}={0,2})$/;

/** Options of {@link parseJwtPublicKeys}. */
export interface JwtKeysParseOptions {
  /** Accept `{}` (remote JWKS provide the keys); by default an empty set is a mistake. */
  allowEmpty?: boolean;
}

/** Parses `{"<kid>": "<PEM public key>"}`; RSA keys (≥ 2048 bits) pin RS256, P-256 keys pin ES256. */
export function parseJwtPublicKeys(
  text: string,
  secretName: string,
  options: JwtKeysParseOptions = {},
): ReadonlyMap<string, JwtVerificationKey> {
  const doc = parseSecretJson(text, secretName);
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) {
    throw new SecretFormatError(secretName, ['must be a JSON object {"<kid>": "<PEM public key>"}']);
  }
  const problems: string[] = [];
  const keys = new Map<string, JwtVerificationKey>();
  for (const [index, [kid, pem]] of Object.entries(doc as Record<string, unknown>).entries()) {
    if (!JWT_KID.test(kid)) {
      problems.push(`kid at index ${index}: must be 1-128 characters of [A-Za-z0-9_.:-], or base64 with its = padding`);
      continue;
    }
    if (typeof pem !== 'string') {
      problems.push(`${kid}: must be a PEM string`);
      continue;
    }
    // createPublicKey derives the public half of a private key: the signing key would then sit,
    // unnoticed, in a secret many more people and services can read.
    if (/-----BEGIN [A-Z ]*PRIVATE KEY-----/.test(pem)) {
      problems.push(`${kid}: is a PRIVATE key; store only the public key here (and rotate this one: it has been exposed)`);
      continue;
    }
    let key: KeyObject;
    try {
      key = createPublicKey(pem);
    } catch {
      problems.push(`${kid}: not a PEM public key`);
      continue;
    }
    const alg = algorithmFor(key);
    if (!alg) {
      problems.push(`${kid}: unsupported key (RSA of at least 2048 bits or EC P-256 expected)`);
      continue;
    }
    keys.set(kid, { kid, key, alg });
  }
  if (problems.length) throw new SecretFormatError(secretName, problems);
  if (keys.size === 0 && !options.allowEmpty) throw new SecretFormatError(secretName, ['no keys']);
  return keys;
}

function algorithmFor(key: KeyObject): JwtAlgorithm | undefined {
  const details = key.asymmetricKeyDetails;
  if (key.asymmetricKeyType === 'rsa' && (details?.modulusLength ?? 0) >= 2048) return 'RS256';
  if (key.asymmetricKeyType === 'ec' && details?.namedCurve === 'prime256v1') return 'ES256';
  return undefined;
}
