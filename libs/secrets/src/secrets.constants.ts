import type { SecretKind } from './secrets-source';
/** Timing of the secrets module; the defaults suit production, tests shorten them. */
export interface SecretsTiming {
  /** Bound on one Secret Manager call. */
  callTimeoutMs: number;
  /** How long the boot keeps retrying a Secret Manager that does not answer before giving up. */
  bootTimeoutMs: number;
}

/** Production timing: a call is bounded well below the default 60 s refresh interval. */
export const DEFAULT_SECRETS_TIMING: Readonly<SecretsTiming> = { callTimeoutMs: 10_000, bootTimeoutMs: 30_000 };

/** The version a secret is read at when none is pinned. */
export const LATEST_VERSION = 'latest';

/** The variable that names each secret in Secret Manager (SPEC §2). */
export const SECRET_NAME_VARIABLES: Readonly<Record<SecretKind, string>> = {
  productKeys: 'API_KEY_SERVER_SECRET_PRODUCT_KEYS_NAME',
  jwtPublicKeys: 'API_KEY_SERVER_SECRET_JWT_PUBLIC_KEYS_NAME',
  hmacSecrets: 'API_KEY_SERVER_SECRET_HMAC_SECRETS_NAME',
};

/** The variable that pins each secret's version (`latest` by default). */
export const SECRET_VERSION_VARIABLES: Readonly<Record<SecretKind, string>> = {
  productKeys: 'API_KEY_SERVER_SECRET_PRODUCT_KEYS_VERSION',
  jwtPublicKeys: 'API_KEY_SERVER_SECRET_JWT_PUBLIC_KEYS_VERSION',
  hmacSecrets: 'API_KEY_SERVER_SECRET_HMAC_SECRETS_VERSION',
};

/** `projects/123/secrets/s/versions/7` → `version 7`. */
export function shortVersion(name: string): string {
  return `version ${name.slice(name.lastIndexOf('/') + 1)}`;
}
