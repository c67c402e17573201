/**
 * A local Secret Manager for tests: a real gRPC server implementing
 * `google.cloud.secretmanager.v1.SecretManagerService` (GetSecretVersion, AccessSecretVersion)
 * from the `.proto` files that ship with `@google-cloud/secret-manager`, on 127.0.0.1 without TLS.
 * The real client library talks to it through `apiEndpoint`/`port`/insecure `sslCreds`
 * (`API_KEY_SERVER_SECRET_MANAGER_ENDPOINT`).
 *
 * It follows the service's documented behaviour where keygate depends on it: `latest` is the most
 * recently created version whatever its state, resolved names carry the project NUMBER, a disabled
 * or destroyed version cannot be accessed (FAILED_PRECONDITION), an unknown secret or version is
 * NOT_FOUND, GetSecretVersion needs `versions.get` and AccessSecretVersion `versions.access` (an
 * identity holding only `roles/secretmanager.secretAccessor` has the second alone). Faults can be
 * injected: permissions per secret, an outage (UNAVAILABLE), or the server going away altogether
 * ({@link FakeSecretManagerServer.stop}).
 *
 * Imports nothing from `@keygate/*`, so the black-box e2e suite can use it too.
 */
import { dirname, join } from 'node:path';
import {
  Server,
  ServerCredentials,
  status,
  type sendUnaryData,
  type ServerUnaryCall,
  type ServiceDefinition,
  type UntypedServiceImplementation,
} from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';

/** The `.proto` files of the client library, and Google's common protos (google/api, google/rpc) they import. */
const LIBRARY_PROTOS = join(dirname(require.resolve('@google-cloud/secret-manager')), '..', 'protos');
const COMMON_PROTOS = join(dirname(require.resolve('google-gax', { paths: [LIBRARY_PROTOS] })), '..', 'protos');
const SERVICE = 'google.cloud.secretmanager.v1.SecretManagerService';

/** A version's state, as the API spells it. */
export type FakeVersionState = 'ENABLED' | 'DISABLED' | 'DESTROYED';

/** One RPC the server answered (or refused), for assertions such as "content was read only on change". */
export interface FakeCall {
  readonly method: 'GetSecretVersion' | 'AccessSecretVersion';
  readonly name: string;
  readonly code: status;
}

interface FakeVersion {
  readonly id: number;
  readonly data: Buffer;
  state: FakeVersionState;
  readonly createdAt: Date;
}

interface FakeSecret {
  readonly versions: FakeVersion[];
  readonly aliases: Map<string, number>;
  denied: boolean;
  metadataDenied: boolean;
  accessDenied: boolean;
}

/** The permission each RPC needs. */
type Permission = 'secretmanager.versions.get' | 'secretmanager.versions.access';

/** Options of {@link FakeSecretManagerServer.start}. */
export interface FakeSecretManagerOptions {
  /** The project id clients use (`GOOGLE_CLOUD_PROJECT`); default `test`. */
  projectId?: string;
  /** The project number resolved names carry; default `123456789012`. */
  projectNumber?: string;
  /** A fixed port (to come back on the same one after {@link FakeSecretManagerServer.stop}); default any free port. */
  port?: number;
}

interface NameRequest {
  name?: string;
}

const NAME = /^projects\/([^/]+)\/secrets\/([^/]+)\/versions\/([^/]+)$/;

class RpcError extends Error {
  constructor(
    readonly code: status,
    message: string,
  ) {
    super(message);
  }
}

export class FakeSecretManagerServer {
  /** Every call answered, in order. */
  readonly calls: FakeCall[] = [];
  private readonly secrets = new Map<string, FakeSecret>();
  private readonly definition: ServiceDefinition;
  private server?: Server;
  private outage = false;
  /** When the last version was made (ms), so no two versions share a creation time. */
  private lastCreated = 0;
  private boundPort = 0;

  private constructor(
    readonly projectId: string,
    readonly projectNumber: string,
  ) {
    const pkg = loadSync('google/cloud/secretmanager/v1/service.proto', {
      includeDirs: [LIBRARY_PROTOS, COMMON_PROTOS],
      longs: String,
      enums: String,
      defaults: true,
      oneofs: true,
    });
    this.definition = pkg[SERVICE] as unknown as ServiceDefinition;
  }

  /** Starts a server on 127.0.0.1 (a free port unless one is given). */
  static async start(options: FakeSecretManagerOptions = {}): Promise<FakeSecretManagerServer> {
    const fake = new FakeSecretManagerServer(options.projectId ?? 'test', options.projectNumber ?? '123456789012');
    await fake.listen(options.port ?? 0);
    return fake;
  }

  /** The port it listens (or last listened) on. */
  get port(): number {
    return this.boundPort;
  }

  /** `host:port` for `API_KEY_SERVER_SECRET_MANAGER_ENDPOINT`. */
  get endpoint(): string {
    return `127.0.0.1:${this.boundPort}`;
  }

  /** Whether the server is listening. */
  get listening(): boolean {
    return this.server !== undefined;
  }

  /** Starts listening (again) — on the same port as before unless another is given. */
  async listen(port = this.boundPort): Promise<void> {
    if (this.server) return;
    const server = new Server();
    server.addService(this.definition, this.implementation());
    this.boundPort = await new Promise<number>((done, fail) =>
      server.bindAsync(`127.0.0.1:${port}`, ServerCredentials.createInsecure(), (error, bound) => (error ? fail(error) : done(bound))),
    );
    this.server = server;
  }

  /** The server goes away: open calls are cut, new connections are refused. State is kept for {@link listen}. */
  async stop(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    if (!server) return;
    await new Promise<void>((done) => {
      const force = setTimeout(() => {
        server.forceShutdown();
        done();
      }, 500);
      server.tryShutdown(() => {
        clearTimeout(force);
        done();
      });
    });
  }

  /** While on, every call fails with UNAVAILABLE (the server stays up: a transient outage). */
  setOutage(on: boolean): void {
    this.outage = on;
  }

  /** Adds a version (ENABLED unless told otherwise) and returns its number; creates the secret on first use. */
  addVersion(secret: string, content: string | Buffer, state: FakeVersionState = 'ENABLED'): number {
    const entry = this.entry(secret);
    const id = entry.versions.length + 1;
    // Strictly later than the last version made, as the real service's microsecond times are.
    const createdAt = new Date(Math.max(Date.now(), this.lastCreated + 1));
    this.lastCreated = createdAt.getTime();
    entry.versions.push({ id, data: Buffer.isBuffer(content) ? content : Buffer.from(content, 'utf8'), state, createdAt });
    return id;
  }

  /** Enables, disables or destroys a version. */
  setState(secret: string, version: number, state: FakeVersionState): void {
    const found = this.secrets.get(secret)?.versions.find((v) => v.id === version);
    if (!found) throw new Error(`fake Secret Manager: no version ${version} of ${secret}`);
    found.state = state;
  }

  /** Points a version alias at a version. */
  setAlias(secret: string, alias: string, version: number): void {
    this.entry(secret).aliases.set(alias, version);
  }

  /** While on, every call for this secret fails with PERMISSION_DENIED (IAM binding missing). */
  deny(secret: string, denied = true): void {
    this.entry(secret).denied = denied;
  }

  /**
   * While on, GetSecretVersion for this secret fails with PERMISSION_DENIED but AccessSecretVersion
   * works: an identity granted `roles/secretmanager.secretAccessor` only (no `versions.get`).
   */
  denyMetadata(secret: string, denied = true): void {
    this.entry(secret).metadataDenied = denied;
  }

  /**
   * While on, AccessSecretVersion for this secret fails with PERMISSION_DENIED but GetSecretVersion
   * works: `roles/secretmanager.viewer` kept while `secretAccessor` was revoked.
   */
  denyAccess(secret: string, denied = true): void {
    this.entry(secret).accessDenied = denied;
  }

  /** Deletes a secret and all its versions. */
  deleteSecret(secret: string): void {
    this.secrets.delete(secret);
  }

  /** The full resource name the server resolves a version to (with the project number, as the real service does). */
  versionName(secret: string, version: number): string {
    return `projects/${this.projectNumber}/secrets/${secret}/versions/${version}`;
  }

  /** Calls of one method, optionally for one secret. */
  callsOf(method: FakeCall['method'], secret?: string): FakeCall[] {
    return this.calls.filter((c) => c.method === method && (secret === undefined || c.name.split('/')[3] === secret));
  }

  private entry(secret: string): FakeSecret {
    let entry = this.secrets.get(secret);
    if (!entry) {
      entry = { versions: [], aliases: new Map(), denied: false, metadataDenied: false, accessDenied: false };
      this.secrets.set(secret, entry);
    }
    return entry;
  }

  private implementation(): UntypedServiceImplementation {
    return {
      GetSecretVersion: this.unary('GetSecretVersion', (name) => {
        const { secret, version } = this.find(name, 'secretmanager.versions.get');
        return {
          name: this.versionName(secret, version.id),
          state: version.state,
          createTime: {
            seconds: String(Math.floor(version.createdAt.getTime() / 1000)),
            nanos: (version.createdAt.getTime() % 1000) * 1e6,
          },
        };
      }),
      AccessSecretVersion: this.unary('AccessSecretVersion', (name) => {
        const { secret, version } = this.find(name, 'secretmanager.versions.access');
        const resolved = this.versionName(secret, version.id);
        if (version.state !== 'ENABLED')
          throw new RpcError(status.FAILED_PRECONDITION, `Secret Version [${resolved}] is in ${version.state} state.`);
        return { name: resolved, payload: { data: version.data } };
      }),
    };
  }

  private unary(method: FakeCall['method'], answer: (name: string) => object) {
    return (call: ServerUnaryCall<NameRequest, object>, callback: sendUnaryData<object>): void => {
      const name = call.request.name ?? '';
      try {
        if (this.outage) throw new RpcError(status.UNAVAILABLE, 'The service is currently unavailable.');
        const response = answer(name);
        this.calls.push({ method, name, code: status.OK });
        callback(null, response);
      } catch (error) {
        const rpc = error instanceof RpcError ? error : new RpcError(status.INTERNAL, 'fake Secret Manager failed');
        this.calls.push({ method, name, code: rpc.code });
        callback({ code: rpc.code, details: rpc.message });
      }
    };
  }

  private find(name: string, permission: Permission): { secret: string; version: FakeVersion } {
    const match = NAME.exec(name);
    if (!match) throw new RpcError(status.INVALID_ARGUMENT, `Invalid resource field value in the request.`);
    const [, project, secret, ref] = match as unknown as [string, string, string, string];
    const entry = this.secrets.get(secret);
    const denied =
      entry?.denied ||
      (entry?.metadataDenied && permission === 'secretmanager.versions.get') ||
      (entry?.accessDenied && permission === 'secretmanager.versions.access');
    if ((project !== this.projectId && project !== this.projectNumber) || denied) {
      throw new RpcError(status.PERMISSION_DENIED, `Permission '${permission}' denied for resource '${name}' (or it may not exist).`);
    }
    if (!entry || entry.versions.length === 0)
      throw new RpcError(status.NOT_FOUND, `Secret [projects/${this.projectNumber}/secrets/${secret}] not found or has no versions.`);
    const id = ref === 'latest' ? entry.versions.length : /^\d+$/.test(ref) ? Number(ref) : entry.aliases.get(ref);
    const version = entry.versions.find((v) => v.id === id);
    if (!version)
      throw new RpcError(status.NOT_FOUND, `Secret Version [projects/${this.projectNumber}/secrets/${secret}/versions/${ref}] not found.`);
    return { secret, version };
  }
}
