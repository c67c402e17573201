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
  /**
   * The issuers whose tokens this key may sign (*extension*: `{"pem": …, "issuer": …}`); absent, it
   * signs for every configured issuer, as SPEC §2's plain PEM value does.
   */
  readonly issuers?: ReadonlySet<string>;
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

/**
 * Parses `{"<kid>": "<PEM public key>"}`; RSA keys (≥ 2048 bits) pin RS256, P-256 keys pin ES256. A
 * value may also be `{"pem": "<PEM public key>", "issuer": "<iss>" | ["<iss>", …]}`, which binds the
 * key to those issuers: where several issuers are accepted, whoever holds one issuer's signing key
 * cannot then mint tokens in another's name.
 */
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
  for (const [index, [kid, value]] of Object.entries(doc as Record<string, unknown>).entries()) {
    if (!JWT_KID.test(kid)) {
      problems.push(`kid at index ${index}: must be 1-128 characters of [A-Za-z0-9_.:-], or base64 with its = padding`);
      continue;
    }
    const entry = keyEntry(value);
    if (typeof entry === 'string') {
      problems.push(`${kid}: ${entry}`);
      continue;
    }
    const { pem, issuers } = entry;
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
    keys.set(kid, issuers ? { kid, key, alg, issuers } : { kid, key, alg });
  }
  if (problems.length) throw new SecretFormatError(secretName, problems);
  if (keys.size === 0 && !options.allowEmpty) throw new SecretFormatError(secretName, ['no keys']);
  return keys;
}

/** A key's value: a PEM string, or `{"pem", "issuer"}`; a string says what is wrong with it. */
function keyEntry(value: unknown): { pem: string; issuers?: ReadonlySet<string> } | string {
  if (typeof value === 'string') return { pem: value };
  if (typeof value !== 'object' || value === null || Array.isArray(value))
    return 'must be a PEM string, or {"pem": "<PEM public key>", "issuer": "<iss>"}';
  const { pem, issuer, ...rest } = value as Record<string, unknown>;
  const unknown = Object.keys(rest);
  if (unknown.length) return `unknown field ${JSON.stringify(unknown[0])} (expected "pem" and "issuer")`;
  if (typeof pem !== 'string') return '"pem" must be a PEM string';
  const list = typeof issuer === 'string' ? [issuer] : issuer;
  if (!Array.isArray(list) || list.length === 0 || !list.every((i) => typeof i === 'string' && i.trim() === i && i !== ''))
    return '"issuer" must be an issuer (a non-empty string without surrounding spaces) or a non-empty list of them';
  return { pem, issuers: new Set(list as string[]) };
}

function algorithmFor(key: KeyObject): JwtAlgorithm | undefined {
  const details = key.asymmetricKeyDetails;
  if (key.asymmetricKeyType === 'rsa' && (details?.modulusLength ?? 0) >= 2048) return 'RS256';
  if (key.asymmetricKeyType === 'ec' && details?.namedCurve === 'prime256v1') return 'ES256';
  return undefined;
}
