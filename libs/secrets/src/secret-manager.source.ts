import { createHash } from 'node:crypto';
import { shortVersion } from './secrets.constants';
import { SecretManagerServiceClient } from '@google-cloud/secret-manager';
import { credentials, status } from '@grpc/grpc-js';
import {
  SecretSourceError,
  type SecretKind,
  type SecretLocation,
  type SecretSourceFailure,
  type SecretsSource,
  type SecretVersionRef,
} from './secrets-source';

/** Settings of the {@link SecretManagerSource}. */
export interface SecretManagerSourceOptions {
  /** The project that holds the secrets (`GOOGLE_CLOUD_PROJECT`). */
  project: string;
  /** The secret id of each secret (`API_KEY_SERVER_SECRET_*_NAME`). */
  names: Readonly<Record<SecretKind, string>>;
  /** The version each secret is read at: `latest`, a version number or a version alias. */
  versions: Readonly<Record<SecretKind, string>>;
  /** `host:port` of a Secret Manager-compatible endpoint spoken to without TLS (emulators, tests). */
  endpoint?: string;
  /** Bound on one call (the client does not retry; the secrets service does). */
  callTimeoutMs: number;
}

/**
 * Google Secret Manager over gRPC with the official client. Credentials are Application Default
 * Credentials (Workload Identity on GKE), never a key file; with `endpoint` the channel is plain
 * and unauthenticated.
 *
 * A version is resolved with GetSecretVersion, which returns the version an alias (`latest`)
 * points at and its state without the payload, so an unchanged secret costs one small call per
 * interval. That call needs `secretmanager.versions.get`, which `roles/secretmanager.secretAccessor`
 * alone does not grant; without it a secret is resolved with AccessSecretVersion instead (its
 * answer names the resolved version too), and the payload read that way is handed to the next
 * {@link read} so it is never fetched twice.
 */
export class SecretManagerSource implements SecretsSource {
  private client?: SecretManagerServiceClient;
  /** Secrets whose metadata this identity may not read: resolved by reading the payload. */
  private readonly payloadOnly = new Set<SecretKind>();
  /** The payload read while resolving, per secret, until {@link read} takes it. */
  private readonly fetched = new Map<SecretKind, { name: string; text: string }>();

  /**
   * No retries inside the client: a call fails within `callTimeoutMs`, and the secrets service
   * retries (until the boot deadline at boot, at the next interval afterwards). The client's own
   * policy would hold an AccessSecretVersion for up to a minute while Secret Manager is down.
   */
  private readonly callOptions: { timeout: number; retry: null };

  constructor(private readonly options: SecretManagerSourceOptions) {
    this.callOptions = { timeout: options.callTimeoutMs, retry: null };
  }

  locate(kind: SecretKind): SecretLocation {
    return { label: this.options.names[kind], origin: 'secret-manager', rotates: true };
  }

  async resolve(kind: SecretKind): Promise<SecretVersionRef> {
    const requested = `projects/${this.options.project}/secrets/${this.options.names[kind]}/versions/${this.options.versions[kind]}`;
    if (!this.payloadOnly.has(kind)) {
      try {
        const [version] = await this.connect().getSecretVersion({ name: requested }, this.callOptions);
        if (!version.name)
          throw new SecretSourceError(this.options.names[kind], 'failed', 'Secret Manager answered without a version name');
        return { name: version.name, state: stateOf(version.state), resolvedBy: 'metadata', revision: createdAt(version.createTime) };
      } catch (error) {
        if ((error as { code?: unknown } | null)?.code !== status.PERMISSION_DENIED) throw this.failure(kind, requested, error);
        // Denied metadata may still allow the payload (secretAccessor alone); if not, access fails below and says so.
        this.payloadOnly.add(kind);
      }
    }
    const { name, text } = await this.access(kind, requested);
    this.fetched.set(kind, { name, text });
    return { name, state: 'enabled', resolvedBy: 'payload', revision: `sha256:${createHash('sha256').update(text).digest('hex')}` };
  }

  async read(kind: SecretKind, version: SecretVersionRef): Promise<string> {
    const fetched = this.fetched.get(kind);
    this.fetched.delete(kind);
    if (fetched?.name === version.name) return fetched.text;
    return (await this.access(kind, version.name)).text;
  }

  async close(): Promise<void> {
    const client = this.client;
    this.client = undefined;
    await client?.close();
  }

  private async access(kind: SecretKind, name: string): Promise<{ name: string; text: string }> {
    const label = this.options.names[kind];
    try {
      const [response] = await this.connect().accessSecretVersion({ name }, this.callOptions);
      const resolved = response.name || name;
      const data = response.payload?.data;
      if (!(data instanceof Uint8Array))
        throw new SecretSourceError(label, 'failed', `${shortVersion(resolved)}: the version has no payload`);
      return { name: resolved, text: decodeUtf8(data, label, resolved) };
    } catch (error) {
      throw this.failure(kind, name, error);
    }
  }

  /** The client is built on first use, so a gateway whose secrets all come from the environment never opens a channel. */
  private connect(): SecretManagerServiceClient {
    if (this.client) return this.client;
    const endpoint = this.options.endpoint;
    if (endpoint) {
      const colon = endpoint.lastIndexOf(':');
      this.client = new SecretManagerServiceClient({
        apiEndpoint: endpoint.slice(0, colon),
        port: Number(endpoint.slice(colon + 1)),
        sslCreds: credentials.createInsecure(),
      });
    } else {
      this.client = new SecretManagerServiceClient();
    }
    return this.client;
  }

  /** Maps a client error to a typed failure; the client's messages name resources, never payloads. */
  private failure(kind: SecretKind, resource: string, error: unknown): SecretSourceError {
    if (error instanceof SecretSourceError) return error;
    const label = this.options.names[kind];
    const code = (error as { code?: unknown } | null)?.code;
    const message = error instanceof Error ? error.message : String(error);
    const [failure, detail] = classify(typeof code === 'number' ? code : undefined, message);
    return new SecretSourceError(label, failure, `${detail} (${resource}; ${clip(message)})`);
  }
}

function classify(code: number | undefined, message: string): [SecretSourceFailure, string] {
  switch (code) {
    case status.NOT_FOUND:
      return ['not_found', 'the secret or version does not exist'];
    case status.PERMISSION_DENIED:
      return [
        'permission_denied',
        'permission denied: grant roles/secretmanager.secretAccessor on the secret to the runtime service account',
      ];
    case status.UNAUTHENTICATED:
      return ['unauthenticated', 'not authenticated: no valid Application Default Credentials'];
    case status.FAILED_PRECONDITION:
      return ['not_enabled', 'the version is disabled or destroyed'];
    case status.UNAVAILABLE:
    case status.DEADLINE_EXCEEDED:
    case status.RESOURCE_EXHAUSTED:
    case status.INTERNAL:
    case status.UNKNOWN:
    case status.ABORTED:
    case status.CANCELLED:
      return ['unavailable', 'Secret Manager is unreachable or failing'];
    default:
      // google-auth-library throws plain errors when no credentials can be found.
      if (/default credentials|could not refresh access token|metadata/i.test(message)) {
        return ['unauthenticated', 'not authenticated: no valid Application Default Credentials'];
      }
      return ['failed', 'the call failed'];
  }
}

/** A version's creation time as a revision (`created:<seconds>.<nanos>`), or undefined when the answer has none. */
function createdAt(
  time: { seconds?: string | number | { toString(): string } | null; nanos?: number | null } | null | undefined,
): string | undefined {
  if (time?.seconds === undefined || time.seconds === null) return undefined;
  return `created:${time.seconds.toString()}.${time.nanos ?? 0}`;
}

function stateOf(state: unknown): SecretVersionRef['state'] {
  if (state === 'ENABLED' || state === 1) return 'enabled';
  if (state === 'DESTROYED' || state === 3) return 'destroyed';
  return 'disabled';
}

const UTF8 = new TextDecoder('utf-8', { fatal: true });

function decodeUtf8(data: Uint8Array, label: string, version: string): string {
  try {
    // A byte-order mark from an editor would make valid JSON fail to parse.
    return UTF8.decode(data).replace(/^\uFEFF/, '');
  } catch {
    throw new SecretSourceError(label, 'failed', `${shortVersion(version)}: the payload is not UTF-8 text`);
  }
}

function clip(message: string): string {
  const line = message.split('\n')[0] ?? '';
  return line.length > 200 ? `${line.slice(0, 200)}…` : line;
}
