import type { SecretEnvironment } from '@keygate/config';
import { SecretSourceError, type SecretKind, type SecretLocation, type SecretsSource, type SecretVersionRef } from './secrets-source';

/** The environment variable of each secret (SPEC §2). */
export const SECRET_ENV_VARIABLES: Readonly<Record<SecretKind, string>> = {
  productKeys: 'API_KEY_SERVER_PRODUCT_KEYS',
  jwtPublicKeys: 'API_KEY_SERVER_JWT_PUBLIC_KEYS',
  hmacSecrets: 'API_KEY_SERVER_HMAC_SECRETS',
};

/**
 * Secrets given as environment variables (already read once by the config module). A variable
 * cannot change while the process runs, so its one version is the variable itself.
 */
export class EnvSecretsSource implements SecretsSource {
  constructor(private readonly env: SecretEnvironment) {}

  locate(kind: SecretKind): SecretLocation | undefined {
    return this.env[kind] === undefined ? undefined : { label: SECRET_ENV_VARIABLES[kind], origin: 'environment', rotates: false };
  }

  resolve(kind: SecretKind): Promise<SecretVersionRef> {
    this.text(kind);
    return Promise.resolve({ name: SECRET_ENV_VARIABLES[kind], state: 'enabled' });
  }

  read(kind: SecretKind): Promise<string> {
    return Promise.resolve(this.text(kind));
  }

  close(): Promise<void> {
    return Promise.resolve();
  }

  private text(kind: SecretKind): string {
    const text = this.env[kind];
    if (text === undefined) throw new SecretSourceError(SECRET_ENV_VARIABLES[kind], 'not_found', 'not set');
    return text;
  }
}
