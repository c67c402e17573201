import type { OnApplicationBootstrap, OnApplicationShutdown, OnModuleDestroy } from '@nestjs/common';
import { ConfigError, type GatewayConfig } from '@keygate/config';
import type { JsonLogger } from '@keygate/observability';
import { clientsSharingASecret, parseHmacSecrets, type HmacClient } from './hmac-secrets.parser';
import { parseJwtPublicKeys, type JwtVerificationKey } from './jwt-keys.parser';
import {
  fallbacksForAnotherProductsModel,
  fallbacksForNoModel,
  plainHttpUpstreams,
  unservedFallbacks,
  type ProductCatalog,
  type ProductEntry,
} from './product-catalog';
import { parseProductKeys } from './product-keys.parser';
import { SECRET_NAME_VARIABLES, SECRET_VERSION_VARIABLES, shortVersion } from './secrets.constants';
import { SecretFormatError } from './secret-format.error';
import { DEFAULT_SECRETS_TIMING, type SecretsTiming } from './secrets.constants';
import {
  SECRET_KINDS,
  SecretSourceError,
  type SecretKind,
  type SecretLocation,
  type SecretSourceFailure,
  type SecretsSource,
  type SecretVersionRef,
} from './secrets-source';

/** One consistent set of secrets. Replaced whole, never mutated, so a request sees one version. */
export interface SecretsSnapshot {
  readonly products: ProductCatalog;
  readonly jwtKeys: ReadonlyMap<string, JwtVerificationKey>;
  readonly hmacClients: ReadonlyMap<string, HmacClient>;
}

/**
 * What one refresh check of one secret came to:
 * `unchanged` (same version, or a version already refused), `rotated` (a new version is in force),
 * `refused` (a new version is malformed or not enabled; the old one stays), `unreachable` (the store
 * did not answer; the old one stays), `failed` (the store answered with an error such as not found
 * or permission denied; the old one stays).
 */
export type SecretRefreshOutcome = 'unchanged' | 'rotated' | 'refused' | 'unreachable' | 'failed';

const OUTCOMES: readonly SecretRefreshOutcome[] = ['unchanged', 'rotated', 'refused', 'unreachable', 'failed'];

/** The state of one secret, for readiness and metrics. Names only, never content. */
export interface SecretStatus {
  readonly kind: SecretKind;
  /** The variable or Secret Manager secret id it is read from; undefined when not configured. */
  readonly name?: string;
  readonly origin?: SecretLocation['origin'];
  /** The version in force (Secret Manager: the full resource name). */
  readonly version?: string;
  /** Refresh checks since boot, by outcome (monotonic counters). */
  readonly refreshes: Readonly<Record<SecretRefreshOutcome, number>>;
}

/**
 * A secret the service keeps track of between refreshes. Log lines name it in `secretName`: the
 * logger masks any field called `secret`.
 */
interface HeldSecret {
  readonly kind: SecretKind;
  readonly location: SecretLocation;
  version: string;
  /** How its version is checked: metadata only, or (without `secretmanager.versions.get`) by reading the payload. */
  readonly resolvedBy?: SecretVersionRef['resolvedBy'];
  /** The revision of the version in force (see {@link SecretVersionRef.revision}). */
  revision?: string;
  /** The last version refused (with its state), so it is neither read nor reported again. */
  refused?: string;
  /** The last failure reported, so an outage is logged when it starts and when it ends, not on every check. */
  failing?: SecretSourceFailure;
  readonly refreshes: Record<SecretRefreshOutcome, number>;
}

const EMPTY: SecretsSnapshot = { products: new Map(), jwtKeys: new Map(), hmacClients: new Map() };

/**
 * The most entries of a list one reference WARNING names: a platform's configuration (a default
 * fallback most of 1,000 products do not serve) made one line of ~40 KB, which log viewers cut.
 */
export const WARNING_LIST_MAX = 50;

/** `{ [field]: items }`, the first {@link WARNING_LIST_MAX} of them, and `<field>_not_listed`: how many more there are. */
export function listed(field: string, items: readonly string[]): Record<string, unknown> {
  if (items.length <= WARNING_LIST_MAX) return { [field]: items };
  return { [field]: items.slice(0, WARNING_LIST_MAX), [`${field}_not_listed`]: items.length - WARNING_LIST_MAX };
}

/**
 * Holds the current secrets. {@link SecretsService.create} loads every configured secret before
 * the application starts, so a missing or malformed secret stops the boot with a message naming
 * it; afterwards secrets that can rotate are re-read every `refreshSeconds`. Callers read `current`
 * once per request and keep that snapshot, so a request in flight finishes with the keys it
 * started with.
 */
export class SecretsService implements OnApplicationBootstrap, OnModuleDestroy, OnApplicationShutdown {
  private snapshot: SecretsSnapshot = EMPTY;
  private ready = false;
  private readonly held = new Map<SecretKind, HeldSecret>();
  private timer?: NodeJS.Timeout;
  private stopped = false;
  private running?: Promise<void>;

  constructor(
    private readonly config: GatewayConfig,
    private readonly source: SecretsSource,
    private readonly logger: JsonLogger,
    private readonly timing: SecretsTiming = DEFAULT_SECRETS_TIMING,
  ) {}

  /** Builds the service and loads every configured secret once; throws a `ConfigError` naming each that cannot be. */
  static async create(config: GatewayConfig, source: SecretsSource, logger: JsonLogger, timing?: SecretsTiming): Promise<SecretsService> {
    const service = new SecretsService(config, source, logger, timing);
    try {
      await service.load();
    } catch (error) {
      // Nest never calls the shutdown hooks of a provider that failed to build.
      await source.close().catch(() => undefined);
      throw error;
    }
    return service;
  }

  /** The snapshot in force now. */
  get current(): SecretsSnapshot {
    return this.snapshot;
  }

  /** A product's entry in the current snapshot. */
  product(name: string): ProductEntry | undefined {
    return this.snapshot.products.get(name);
  }

  /** True once every configured secret has loaded (readiness). */
  get loaded(): boolean {
    return this.ready;
  }

  /** Each secret's source, version in force and refresh counters. */
  status(): SecretStatus[] {
    return SECRET_KINDS.map((kind) => {
      const held = this.held.get(kind);
      if (!held) return { kind, refreshes: counters() };
      return { kind, name: held.location.label, origin: held.location.origin, version: held.version, refreshes: { ...held.refreshes } };
    });
  }

  /**
   * Loads every configured secret once. Transient store failures are retried until the boot
   * deadline; anything else, and every malformed secret, is collected into one `ConfigError`.
   */
  async load(): Promise<void> {
    const deadline = Date.now() + this.timing.bootTimeoutMs;
    const results = await Promise.all(
      SECRET_KINDS.map(async (kind) => {
        const location = this.source.locate(kind);
        // JWT off (Secret Manager without an issuer): its key secret is not read at all.
        if (!location || (kind === 'jwtPublicKeys' && !this.config.jwt)) return { kind, problems: [] as string[] };
        // The first transient failure is said at once: the boot may retry for a while before it gives up.
        let said = false;
        const retrying = (error: SecretSourceError): void => {
          if (said) return;
          said = true;
          this.logger.write('WARNING', `Secret Manager secret ${location.label} could not be read; retrying until the boot deadline`, {
            name: location.label,
            error: error.message,
            retryForSeconds: Math.max(0, Math.round((deadline - Date.now()) / 1000)),
          });
        };
        try {
          const version = await this.untilDeadline(() => this.source.resolve(kind), deadline, retrying);
          const name = this.title(location, version.name);
          if (version.state !== 'enabled') {
            const fix = `enable it, add a version, or pin an enabled one with ${SECRET_VERSION_VARIABLES[kind]}`;
            return { kind, problems: [`${name}: the version is ${version.state} (${fix})`] };
          }
          const text = await this.untilDeadline(() => this.source.read(kind, version), deadline, retrying);
          const value = this.parse(kind, text, name);
          return {
            kind,
            problems: [] as string[],
            held: {
              kind,
              location,
              version: version.name,
              resolvedBy: version.resolvedBy,
              revision: version.revision,
              refreshes: counters(),
            },
            value,
          };
        } catch (error) {
          return { kind, problems: this.describe(kind, location, error) };
        }
      }),
    );
    const problems = results.flatMap((r) => r.problems);
    if (problems.length) throw new ConfigError(`Secrets could not be loaded:\n  - ${problems.join('\n  - ')}`);
    let snapshot = EMPTY;
    for (const result of results) {
      if (result.held) this.held.set(result.kind, result.held);
      if (result.value) snapshot = { ...snapshot, ...result.value };
    }
    this.snapshot = snapshot;
    this.ready = true;
    this.logger.write('INFO', 'secrets loaded', {
      secrets: [...this.held.values()].map((h) => ({
        kind: h.kind,
        name: h.location.label,
        source: h.location.origin,
        version: h.version,
        ...(h.resolvedBy ? { checkedBy: h.resolvedBy } : {}),
      })),
      refreshSeconds: this.rotating().length ? this.config.secretManager.refreshSeconds : null,
    });
    this.checkReferences();
  }

  /**
   * Names that point at no product: a policy entry for a product the keys do not have (a typo
   * leaves the real product on the defaults) or an HMAC client of such a product (every request
   * it signs is refused). Said at boot and after each rotation; not fatal, since the keys and the
   * policy may be rolled out one after the other.
   */
  private checkReferences(): void {
    const { products, hmacClients } = this.snapshot;
    const policy = this.config.policy.productNames.filter((name) => !products.has(name));
    if (policy.length)
      this.logger.write(
        'WARNING',
        'the policy file has settings for products the product keys do not have: they apply to nothing',
        listed('products', policy),
      );
    const clients = [...hmacClients.values()].filter((c) => !products.has(c.product)).map((c) => c.clientId);
    if (clients.length)
      this.logger.write(
        'WARNING',
        'HMAC clients of products the product keys do not have: their requests are refused',
        listed('clients', clients),
      );
    const fallbacks = unservedFallbacks(products, (name) => this.config.policy.forProduct(name).fallbacks);
    if (fallbacks.length)
      this.logger.write('WARNING', 'fallback models the product does not serve: they are skipped', listed('fallbacks', fallbacks));
    const elsewhere = fallbacksForAnotherProductsModel(products, (name) => this.config.policy.ownFallbacks(name));
    if (elsewhere.length)
      this.logger.write(
        'WARNING',
        "fallbacks a product's own policy gives for models only other products serve: they never apply to it",
        listed('fallbacks', elsewhere),
      );
    const plain = plainHttpUpstreams(products);
    if (plain.length)
      this.logger.write(
        'WARNING',
        'provider base_url over plain HTTP to another host: the key and the prompts cross the network unencrypted',
        listed('upstreams', plain),
      );
    const keyed = fallbacksForNoModel(products, (name) => this.config.policy.forProduct(name).fallbacks);
    if (keyed.length)
      this.logger.write(
        'WARNING',
        'fallbacks given for models no product serves: they never apply (a misspelt model?)',
        listed('models', keyed),
      );
    // A static key bound only to issuers this gateway does not accept verifies nothing (a typo in either).
    const accepted = new Set(this.config.jwt?.issuers ?? []);
    const keys = [...this.snapshot.jwtKeys.values()]
      .filter((k) => k.issuers && ![...k.issuers].some((i) => accepted.has(i)))
      .map((k) => k.kid);
    if (keys.length)
      this.logger.write(
        'WARNING',
        'JWT keys bound only to issuers API_KEY_SERVER_JWT_ISSUER does not list: they verify no token',
        listed('keys', keys),
      );
  }

  /** Starts the refresh loop once the application is up. */
  onApplicationBootstrap(): void {
    this.start();
  }

  /** Stops refreshing before the application closes; requests still draining keep their snapshot. */
  async onModuleDestroy(): Promise<void> {
    await this.stop();
  }

  /** Closes the store's connections last. */
  async onApplicationShutdown(): Promise<void> {
    await this.stop();
    await this.source.close();
  }

  /** Re-reads secrets every `refreshSeconds` (0 turns refreshing off); a no-op when nothing can rotate. */
  start(): void {
    if (this.timer || this.stopped || !this.rotating().length || this.config.secretManager.refreshSeconds <= 0) return;
    this.schedule();
  }

  /** Stops the refresh loop and waits for a refresh in progress. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    this.timer = undefined;
    await this.running;
  }

  /**
   * One refresh of every secret that can rotate. Each secret's version is resolved first; its
   * content is read and parsed only when the version changed. Every new valid version is put in
   * force in one snapshot replacement. Never throws: failures are logged and counted.
   */
  refreshNow(): Promise<void> {
    this.running ??= this.refreshAll().finally(() => (this.running = undefined));
    return this.running;
  }

  private schedule(): void {
    // A chain of timeouts rather than an interval: a slow check never overlaps the next.
    this.timer = setTimeout(() => {
      void this.refreshNow().finally(() => {
        if (!this.stopped) this.schedule();
      });
    }, this.config.secretManager.refreshSeconds * 1000);
    // The refresh loop alone must never keep the process alive.
    this.timer.unref();
  }

  private rotating(): HeldSecret[] {
    return [...this.held.values()].filter((h) => h.location.rotates);
  }

  private async refreshAll(): Promise<void> {
    const changes = await Promise.all(
      this.rotating().map((held) =>
        this.refreshOne(held).catch((error: unknown) => {
          this.failed(held, error);
          return undefined;
        }),
      ),
    );
    const fresh = changes.filter((c): c is Partial<SecretsSnapshot> => c !== undefined);
    if (fresh.length) {
      this.snapshot = Object.assign({}, this.snapshot, ...fresh) as SecretsSnapshot;
      this.checkReferences();
    }
  }

  private async refreshOne(held: HeldSecret): Promise<Partial<SecretsSnapshot> | undefined> {
    let version: SecretVersionRef;
    try {
      version = await this.source.resolve(held.kind);
    } catch (error) {
      this.failed(held, error);
      return undefined;
    }
    const key = `${version.name}#${version.state}#${version.revision ?? ''}`;
    const inForce = sameVersion(held, version);
    if (inForce || key === held.refused) {
      // The check is complete: whatever failed before answers again.
      this.recovered(held);
      if (inForce && version.state !== 'enabled' && key !== held.refused) {
        // The content is still in memory and stays in force, but the next boot could not read it.
        held.refused = key;
        this.logger.write('WARNING', 'the version in force is no longer enabled; keeping it, but a restart would fail', {
          secretName: held.location.label,
          kind: held.kind,
          version: version.name,
          state: version.state,
        });
      }
      this.count(held, 'unchanged');
      return undefined;
    }
    if (version.state !== 'enabled') {
      this.recovered(held);
      this.refuse(held, key, 'WARNING', 'secret version is not enabled; keeping the version in force', {
        version: version.name,
        state: version.state,
      });
      return undefined;
    }
    let text: string;
    try {
      text = await this.source.read(held.kind, version);
    } catch (error) {
      // Still failing (a version whose content cannot be read): said once, not "readable again"
      // and a new error on every refresh.
      this.failed(held, error);
      return undefined;
    }
    this.recovered(held);
    let value: Partial<SecretsSnapshot>;
    try {
      value = this.parse(held.kind, text, this.title(held.location, version.name));
    } catch (error) {
      if (!(error instanceof SecretFormatError)) throw error;
      this.refuse(held, key, 'ERROR', 'secret version refused: malformed; keeping the version in force', {
        version: version.name,
        problems: error.problems,
      });
      return undefined;
    }
    this.count(held, 'rotated');
    this.logger.write('INFO', 'secret rotated; the new version is in force', {
      secretName: held.location.label,
      kind: held.kind,
      version: version.name,
      previousVersion: held.version,
    });
    // Valid, but every HMAC client loses access at once: a rotation that left the list out by mistake
    // must not read as routine.
    if (held.kind === 'hmacSecrets' && value.hmacClients?.size === 0 && this.snapshot.hmacClients.size > 0)
      this.logger.write('WARNING', 'the new HMAC secrets version lists no client: every HMAC-signed request is refused now', {
        secretName: held.location.label,
        version: version.name,
        clientsBefore: this.snapshot.hmacClients.size,
      });
    held.version = version.name;
    held.revision = version.revision;
    held.refused = undefined;
    return value;
  }

  private refuse(held: HeldSecret, key: string, severity: 'WARNING' | 'ERROR', message: string, fields: Record<string, unknown>): void {
    held.refused = key;
    this.count(held, 'refused');
    this.logger.write(severity, message, { secretName: held.location.label, kind: held.kind, ...fields, inForce: held.version });
  }

  /**
   * Counts and reports a check that could not complete. Each kind of failure is logged when it
   * starts (an outage is one WARNING, not one per interval) and its end by {@link recovered}.
   */
  private failed(held: HeldSecret, error: unknown): void {
    // An unexpected error is named by type only: its message could quote anything.
    const failure =
      error instanceof SecretSourceError
        ? error
        : new SecretSourceError(held.location.label, 'failed', `unexpected ${(error as Error)?.name ?? 'error'}`);
    const [outcome, severity, message] = failure.transient
      ? (['unreachable', 'WARNING', 'Secret Manager unreachable; keeping the last good values'] as const)
      : failure.failure === 'not_enabled'
        ? (['refused', 'WARNING', 'secret version is not enabled; keeping the version in force'] as const)
        : (['failed', 'ERROR', 'secret could not be refreshed; keeping the last good values'] as const);
    this.count(held, outcome);
    if (held.failing === failure.failure) return;
    held.failing = failure.failure;
    this.logger.write(severity, message, {
      secretName: held.location.label,
      kind: held.kind,
      failure: failure.failure,
      reason: failure.detail,
      inForce: held.version,
    });
  }

  /** Reports the end of a failure once the store answers again. */
  private recovered(held: HeldSecret): void {
    if (!held.failing) return;
    const message = held.failing === 'unavailable' ? 'Secret Manager reachable again' : 'secret readable again';
    held.failing = undefined;
    this.logger.write('INFO', message, { secretName: held.location.label, kind: held.kind, inForce: held.version });
  }

  private count(held: HeldSecret, outcome: SecretRefreshOutcome): void {
    held.refreshes[outcome] += 1;
  }

  private parse(kind: SecretKind, text: string, name: string): Partial<SecretsSnapshot> {
    switch (kind) {
      case 'productKeys':
        return { products: parseProductKeys(text, name) };
      case 'jwtPublicKeys':
        // Remote JWKS can be the only JWT keys; then an empty static set is a valid choice, not a mistake.
        return { jwtKeys: parseJwtPublicKeys(text, name, { allowEmpty: (this.config.jwt?.jwksUrls.length ?? 0) > 0 }) };
      case 'hmacSecrets': {
        const hmacClients = parseHmacSecrets(text, name);
        const shared = clientsSharingASecret(hmacClients);
        if (shared.length)
          this.logger.write('WARNING', 'HMAC clients share a secret: each of them can sign as the others; give every client its own', {
            secretName: name,
            clients: shared,
          });
        return { hmacClients };
      }
    }
  }

  /** How messages name a secret: the variable, or the Secret Manager id and version. */
  private title(location: SecretLocation, version: string): string {
    return location.origin === 'environment' ? location.label : `Secret Manager secret ${location.label} (${shortVersion(version)})`;
  }

  private describe(kind: SecretKind, location: SecretLocation, error: unknown): string[] {
    if (error instanceof SecretFormatError) return error.problems.map((p) => `${error.secret}: ${p}`);
    const where = location.origin === 'environment' ? location.label : `Secret Manager secret ${location.label}`;
    if (error instanceof SecretSourceError) {
      const hint =
        error.failure === 'not_found' && location.origin === 'secret-manager'
          ? ` (create it, or name it with ${SECRET_NAME_VARIABLES[kind]})`
          : '';
      return [`${where}: ${error.detail}${hint}`];
    }
    // Unexpected errors are named by type only: their message could quote anything.
    return [`${where}: unexpected ${(error as Error)?.name ?? 'error'}`];
  }

  /** Retries transient store failures with backoff until `deadline`; other failures are thrown at once. */
  private async untilDeadline<T>(call: () => Promise<T>, deadline: number, retrying: (error: SecretSourceError) => void): Promise<T> {
    for (let delay = 250; ; delay = Math.min(delay * 2, 4_000)) {
      try {
        return await call();
      } catch (error) {
        const left = deadline - Date.now();
        if (!(error instanceof SecretSourceError) || !error.transient || left <= 0) throw error;
        retrying(error);
        await new Promise((done) => setTimeout(done, Math.min(delay, left)));
      }
    }
  }
}

/**
 * Whether `version` is the one in force: the same name and, where both carry a revision of the same
 * kind, the same revision (a secret created again reuses the name `…/versions/1` for new content,
 * which was otherwise never read until a restart). A revision of another kind (the metadata became
 * unreadable since) cannot tell, and is not taken for a change.
 */
function sameVersion(held: HeldSecret, version: SecretVersionRef): boolean {
  if (version.name !== held.version) return false;
  const kind = (revision: string | undefined): string | undefined => revision?.slice(0, revision.indexOf(':'));
  return !held.revision || !version.revision || kind(held.revision) !== kind(version.revision) || held.revision === version.revision;
}

function counters(): Record<SecretRefreshOutcome, number> {
  return Object.fromEntries(OUTCOMES.map((o) => [o, 0])) as Record<SecretRefreshOutcome, number>;
}
