/** The three secrets keygate reads (SPEC §2, §3, §5). */
export type SecretKind = 'productKeys' | 'jwtPublicKeys' | 'hmacSecrets';

/** Every {@link SecretKind}, in the order they are loaded and reported. */
export const SECRET_KINDS: readonly SecretKind[] = ['productKeys', 'jwtPublicKeys', 'hmacSecrets'];

/** Where a source keeps one secret. Names only: nothing here is secret. */
export interface SecretLocation {
  /** How messages and logs name it: the variable (`API_KEY_SERVER_PRODUCT_KEYS`) or the secret id. */
  readonly label: string;
  /** The kind of store, for logs and readiness. */
  readonly origin: 'environment' | 'secret-manager';
  /** Whether it can change while the process runs (and so is re-read on the refresh interval). */
  readonly rotates: boolean;
}

/** The version a secret resolves to now, known from metadata where the store allows it. */
export interface SecretVersionRef {
  /** Identifies the content: equal names mean equal content (Secret Manager: `projects/…/versions/7`). */
  readonly name: string;
  /** Only an `enabled` version can be read. */
  readonly state: 'enabled' | 'disabled' | 'destroyed';
  /** How the version was found: from its metadata alone, or by reading its payload (metadata not readable). */
  readonly resolvedBy?: 'metadata' | 'payload';
  /**
   * What tells apart two versions of the same name, where a store can reuse one: a secret deleted
   * and created again (a Terraform replacement) numbers its versions from 1 again. Secret Manager:
   * the creation time (metadata) or a digest of the payload, each prefixed by which it is.
   */
  readonly revision?: string;
}

/**
 * A store of secrets. Resolving (cheap metadata) and reading (the content) are separate so a
 * refresh reads content only when the version changed. Implementations never put a secret's
 * content in an error or a log.
 */
export interface SecretsSource {
  /** Where this source keeps `kind`, or undefined when it does not provide it. */
  locate(kind: SecretKind): SecretLocation | undefined;
  /** The version `kind` points at now (Secret Manager: the pinned version or alias, `latest` by default). */
  resolve(kind: SecretKind): Promise<SecretVersionRef>;
  /** The content of a version returned by {@link resolve}, as text. */
  read(kind: SecretKind, version: SecretVersionRef): Promise<string>;
  /** Releases connections; the source is not used afterwards. */
  close(): Promise<void>;
}

/** Injection token for the {@link SecretsSource} the secrets service reads from. */
export const SecretsSource = Symbol('KEYGATE:SECRETS_SOURCE');

/** Why a source could not resolve or read a secret. */
export type SecretSourceFailure =
  /** The secret or the version does not exist. */
  | 'not_found'
  /** The runtime identity may not read it. */
  | 'permission_denied'
  /** No credentials could be found (ADC / Workload Identity missing). */
  | 'unauthenticated'
  /** The version exists but is disabled or destroyed. */
  | 'not_enabled'
  /** The store did not answer, or answered with a transient error: retrying may help. */
  | 'unavailable'
  /** Anything else (a malformed name, an unexpected answer). */
  | 'failed';

/** A source could not resolve or read a secret. The message names the secret, never its content. */
export class SecretSourceError extends Error {
  constructor(
    readonly label: string,
    readonly failure: SecretSourceFailure,
    /** What went wrong, without the secret's name. */
    readonly detail: string,
  ) {
    super(`${label}: ${detail}`);
    this.name = 'SecretSourceError';
  }

  /** Whether retrying later may succeed (an outage, not a configuration mistake). */
  get transient(): boolean {
    return this.failure === 'unavailable';
  }
}

/**
 * Reads each secret from the first source that provides it. Built with the environment first,
 * that is how "an environment variable that is set wins over its secret" is implemented.
 */
export class LayeredSecretsSource implements SecretsSource {
  constructor(private readonly sources: readonly SecretsSource[]) {}

  locate(kind: SecretKind): SecretLocation | undefined {
    for (const source of this.sources) {
      const location = source.locate(kind);
      if (location) return location;
    }
    return undefined;
  }

  resolve(kind: SecretKind): Promise<SecretVersionRef> {
    return this.owner(kind).resolve(kind);
  }

  read(kind: SecretKind, version: SecretVersionRef): Promise<string> {
    return this.owner(kind).read(kind, version);
  }

  async close(): Promise<void> {
    await Promise.all(this.sources.map((source) => source.close()));
  }

  private owner(kind: SecretKind): SecretsSource {
    const owner = this.sources.find((source) => source.locate(kind));
    if (!owner) throw new SecretSourceError(kind, 'not_found', 'no source provides this secret');
    return owner;
  }
}
