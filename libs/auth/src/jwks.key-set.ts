import { createLocalJWKSet, errors, type JSONWebKeySet, type JWSHeaderParameters } from 'jose';
import { KeyObject, type webcrypto } from 'node:crypto';

/** Tuning of a {@link RemoteJwksKeySet}. */
export interface JwksOptions {
  /** A fetch, body included, slower than this fails (the IdP is treated as down). */
  timeoutMs: number;
  /** Keys older than this are refreshed (in the background while they still verify). */
  ttlMs: number;
  /** At most one fetch per this period, successful or not: bounds load from unknown-kid floods. */
  cooldownMs: number;
}

export const DEFAULT_JWKS_OPTIONS: JwksOptions = { timeoutMs: 3_000, ttlMs: 10 * 60_000, cooldownMs: 30_000 };

/** Reports fetch failures without logging key material. */
export type JwksFailureReporter = (url: string, reason: string) => void;

/**
 * One remote JWKS endpoint. jose's `createLocalJWKSet` selects and imports the key; this class
 * owns fetching, because jose's remote set drops its keys when a refetch fails and counts its
 * cooldown from successful fetches only, which lets an unreachable IdP be hit on every request.
 * Here the cooldown counts every attempt, stale keys stay in force when a refetch fails, and a
 * cold cache with the IdP down fails at once instead of waiting on each request.
 */
export class RemoteJwksKeySet {
  private local: ReturnType<typeof createLocalJWKSet> | undefined;
  private keyCount = 0;
  private content = '';
  private version = 0;
  private fetchedAt = 0;
  private attemptedAt = Number.NEGATIVE_INFINITY;
  private pending: Promise<void> | undefined;

  constructor(
    readonly url: string,
    private readonly options: JwksOptions = DEFAULT_JWKS_OPTIONS,
    private readonly onFailure: JwksFailureReporter = () => undefined,
    private readonly now: () => number = Date.now,
  ) {}

  /** Fetches the key set unless a fetch ran within the cooldown; concurrent callers share one fetch. */
  refresh(force = false): Promise<void> {
    if (this.pending) return this.pending;
    if (!force && this.now() - this.attemptedAt < this.options.cooldownMs) return Promise.resolve();
    this.attemptedAt = this.now();
    this.pending = this.fetchOnce().finally(() => {
      this.pending = undefined;
    });
    return this.pending;
  }

  /**
   * Starts a background refetch when the keys are older than the cache time (cooldown permitting).
   * Called for tokens answered from the verified-token cache, which never look a key up: without
   * it, clients that only reuse cached tokens would never make the set notice a withdrawn key.
   */
  refreshIfStale(): void {
    if (this.local && this.now() - this.fetchedAt > this.options.ttlMs) void this.refresh();
  }

  /** The verification key for a token header, or undefined when this set has no such key. */
  async key(header: JWSHeaderParameters): Promise<KeyObject | undefined> {
    if (!this.local) await this.refresh();
    else if (this.now() - this.fetchedAt > this.options.ttlMs) void this.refresh();
    let found = await this.select(header);
    if (!found && this.now() - this.attemptedAt >= this.options.cooldownMs) {
      // An unknown kid may be a rotation the cache has not seen yet.
      await this.refresh();
      found = await this.select(header);
    }
    return found;
  }

  /**
   * Bumped whenever a fetch brings keys that differ from those held (a key removed, replaced or
   * added), never by a refetch of the same set: tokens verified with an earlier generation are
   * verified again, so a key the IdP withdrew stops verifying cached tokens at the next fetch.
   */
  get generation(): number {
    return this.version;
  }

  /**
   * Number of keys held now (for readiness details): 0 until a fetch has brought keys (a fetch
   * bringing none fails), kept through later failed fetches.
   */
  get size(): number {
    return this.keyCount;
  }

  private async select(header: JWSHeaderParameters): Promise<KeyObject | undefined> {
    if (!this.local) return undefined;
    try {
      const key = await this.local(header, undefined);
      return key instanceof KeyObject ? key : KeyObject.from(key as unknown as webcrypto.CryptoKey);
    } catch (error) {
      if (error instanceof errors.JWKSNoMatchingKey || error instanceof errors.JWKSMultipleMatchingKeys) return undefined;
      throw error;
    }
  }

  private async fetchOnce(): Promise<void> {
    try {
      // One deadline for the whole exchange, body included: an IdP that drips its answer fails
      // like one that never answers.
      const signal = AbortSignal.timeout(this.options.timeoutMs);
      const res = await fetch(this.url, {
        redirect: 'error',
        headers: { accept: 'application/json, application/jwk-set+json' },
        signal,
      });
      if (res.status !== 200) {
        await res.body?.cancel().catch(() => undefined);
        throw new Error(`status ${res.status}`);
      }
      const jwks = JSON.parse(await readCappedText(res, MAX_JWKS_BYTES, signal)) as JSONWebKeySet;
      if (!jwks || !Array.isArray(jwks.keys)) throw new Error('not a JWK set');
      // Only public signing keys of the two accepted types are kept; RSA ones of 2048 bits at
      // least, as for the keys configured as PEM (jsonwebtoken checks the size when signing only).
      const keys = jwks.keys.filter(
        (k) =>
          ((k.kty === 'RSA' && rsaModulusBits(k.n) >= MIN_RSA_BITS) || (k.kty === 'EC' && k.crv === 'P-256')) &&
          (k.use === undefined || k.use === 'sig') &&
          typeof k.kid === 'string' &&
          !('d' in k),
      );
      // A set with no usable key is an IdP fault (a half-deployed rotation, a wrong endpoint, keys
      // of a type keygate refuses), not a revocation of every key: it is reported as a failed fetch
      // and the keys held stay in force, as for any other failure. An operator who means to revoke
      // an issuer removes it from the configuration.
      if (keys.length === 0) {
        throw new Error(
          jwks.keys.length === 0
            ? 'the set has no keys'
            : `no usable key among the ${jwks.keys.length} it lists (RS256 of 2048 bits or more, or ES256, with a kid, for signing)`,
        );
      }
      // Order-insensitive: an IdP that reorders its keys has not changed them.
      const content = JSON.stringify([...keys].sort((a, b) => String(a.kid).localeCompare(String(b.kid))));
      if (content !== this.content) {
        this.content = content;
        this.version++;
      }
      this.local = createLocalJWKSet({ keys });
      this.keyCount = keys.length;
      this.fetchedAt = this.now();
    } catch (error) {
      // AbortSignal.timeout rejects with a DOMException, which is not always an Error instance.
      const { name, message } = (error ?? {}) as { name?: unknown; message?: unknown };
      const reason = name === 'TimeoutError' ? 'timeout' : typeof message === 'string' ? message : 'error';
      this.onFailure(this.url, reason);
    }
  }
}

/**
 * The largest JWKS body read, in bytes. A real key set is a few KB (Google's, Entra ID's, Okta's
 * and Keycloak's are under 10 KB); a body past this is an IdP fault or an attack, and reading it
 * whole would hold its bytes in memory and the event loop in JSON.parse.
 */
export const MAX_JWKS_BYTES = 1024 * 1024;

/**
 * The body of `res` as UTF-8 text, refused without reading further (the connection is dropped)
 * once it passes `maxBytes`, or at once when its Content-Length says it will. `signal` is the
 * fetch's own deadline: checked between chunks, so the read stops when it expires even if the
 * body stream did not.
 */
async function readCappedText(res: Response, maxBytes: number, signal: AbortSignal): Promise<string> {
  const tooLarge = (): Error => new Error(`the body is larger than ${maxBytes} bytes`);
  if (Number(res.headers.get('content-length')) > maxBytes) {
    await res.body?.cancel().catch(() => undefined);
    throw tooLarge();
  }
  if (!res.body) return '';
  const reader = res.body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  try {
    for (;;) {
      const { done, value } = await reader.read();
      signal.throwIfAborted();
      if (done) break;
      size += value.byteLength;
      if (size > maxBytes) throw tooLarge();
      chunks.push(value);
    }
  } catch (error) {
    await reader.cancel().catch(() => undefined);
    throw error;
  }
  // TextDecoder drops a leading BOM, as res.json() did.
  return new TextDecoder().decode(Buffer.concat(chunks));
}

/** The smallest RSA modulus accepted from a JWKS, in bits (as for PEM keys). */
const MIN_RSA_BITS = 2048;

/** The size in bits of a JWK's base64url modulus `n` (leading zero bytes not counted); 0 when absent. */
export function rsaModulusBits(n: unknown): number {
  if (typeof n !== 'string') return 0;
  const bytes = Buffer.from(n, 'base64url');
  let i = 0;
  while (i < bytes.length && bytes[i] === 0) i++;
  if (i === bytes.length) return 0;
  return (bytes.length - i - 1) * 8 + (32 - Math.clz32(bytes[i]));
}

/**
 * Whether keys fetched from `url` could be swapped on the way: plain http to anything but this
 * host. Such a URL works (in-cluster IdPs behind a mesh, tests), but an operator is told.
 */
export function isInsecureKeyUrl(url: string): boolean {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return false;
  }
  if (parsed.protocol !== 'http:') return false;
  const host = parsed.hostname.replace(/^\[|\]$/g, '');
  return !(host === 'localhost' || host === '::1' || /^127\.\d+\.\d+\.\d+$/.test(host));
}
