import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import { createServer, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { MAX_JWKS_BYTES, RemoteJwksKeySet, rsaModulusBits, isInsecureKeyUrl } from './jwks.key-set';

/**
 * A real JWKS endpoint on 127.0.0.1 whose answer and health the test controls. `endless` streams
 * a body that never ends as fast as the client reads it (no Content-Length), `oversized` declares
 * 150 MB and streams it the same way, `drip` sends a byte every 50 ms; `bytesSent` counts what
 * the last answer actually handed to the socket.
 */
class JwksServer {
  fetches = 0;
  mode: 'ok' | 'fail' | 'hang' | 'endless' | 'oversized' | 'drip' = 'ok';
  keys: Array<Record<string, unknown>> = [];
  bytesSent = 0;
  private server!: Server;
  url = '';

  async start(): Promise<void> {
    this.server = createServer((_req, res) => {
      this.fetches++;
      this.bytesSent = 0;
      if (this.mode === 'hang') return;
      if (this.mode === 'fail') {
        res.writeHead(503).end();
        return;
      }
      if (this.mode === 'endless' || this.mode === 'oversized') {
        res.writeHead(200, { 'content-type': 'application/json', ...(this.mode === 'oversized' && { 'content-length': 150e6 }) });
        this.stream(res, Buffer.alloc(64 * 1024, ' '));
        return;
      }
      if (this.mode === 'drip') {
        res.writeHead(200, { 'content-type': 'application/json' }).write('{"keys":[');
        const timer = setInterval(() => res.write(' '), 50);
        res.on('close', () => clearInterval(timer));
        return;
      }
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ keys: this.keys }));
    });
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', r));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}/.well-known/jwks.json`;
  }

  /** Writes `chunk` again and again, as fast as the client takes it, until the client goes. */
  private stream(res: ServerResponse, chunk: Buffer): void {
    const pump = (): void => {
      while (!res.destroyed) {
        this.bytesSent += chunk.length;
        if (!res.write(chunk)) {
          res.once('drain', pump);
          return;
        }
      }
    };
    res.write('{"keys":[');
    pump();
  }

  async stop(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise((r) => this.server.close(r));
  }
}

const jwk = (kid: string, key: KeyObject): Record<string, unknown> => ({ ...key.export({ format: 'jwk' }), kid, use: 'sig' });

describe('RemoteJwksKeySet', () => {
  const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const server = new JwksServer();
  let clock = 1_000_000;
  const now = (): number => clock;
  const failures: string[] = [];
  const make = (): RemoteJwksKeySet =>
    new RemoteJwksKeySet(server.url, { timeoutMs: 300, ttlMs: 60_000, cooldownMs: 10_000 }, (_u, reason) => failures.push(reason), now);

  beforeAll(() => server.start());
  afterAll(() => server.stop());
  beforeEach(() => {
    server.fetches = 0;
    server.mode = 'ok';
    server.keys = [jwk('rsa-1', rsa.publicKey), jwk('ec-1', ec.publicKey)];
    failures.length = 0;
    clock += 1_000_000;
  });

  it('keeps no RSA key under 2048 bits (as for keys configured as PEM)', async () => {
    const weak = generateKeyPairSync('rsa', { modulusLength: 1024 });
    server.keys = [jwk('rsa-weak', weak.publicKey), jwk('rsa-1', rsa.publicKey)];
    const set = make();
    await set.refresh(true);
    expect(await set.key({ kid: 'rsa-weak', alg: 'RS256' })).toBeUndefined();
    expect((await set.key({ kid: 'rsa-1', alg: 'RS256' }))?.asymmetricKeyType).toBe('rsa');
  });

  it('measures an RSA modulus in bits, leading zero bytes not counted', () => {
    const n = (key: KeyObject): unknown => key.export({ format: 'jwk' }).n;
    expect(rsaModulusBits(n(rsa.publicKey))).toBe(2048);
    expect(rsaModulusBits(n(generateKeyPairSync('rsa', { modulusLength: 1024 }).publicKey))).toBe(1024);
    expect(rsaModulusBits(Buffer.from([0, 0, 0x01, 0xff]).toString('base64url'))).toBe(9);
    expect(rsaModulusBits(undefined)).toBe(0);
  });

  it('selects keys by kid and algorithm', async () => {
    const set = make();
    await set.refresh(true);
    expect((await set.key({ kid: 'rsa-1', alg: 'RS256' }))?.asymmetricKeyType).toBe('rsa');
    expect((await set.key({ kid: 'ec-1', alg: 'ES256' }))?.asymmetricKeyType).toBe('ec');
    expect(await set.key({ kid: 'rsa-1', alg: 'ES256' })).toBeUndefined();
    expect(server.fetches).toBe(1);
  });

  it('drops private, symmetric and encryption keys from a fetched set', async () => {
    server.keys = [
      { ...rsa.privateKey.export({ format: 'jwk' }), kid: 'private' },
      { kty: 'oct', k: 'c2VjcmV0', kid: 'oct' },
      { ...jwk('enc', rsa.publicKey), use: 'enc' },
    ];
    const set = make();
    await set.refresh(true);
    expect(set.size).toBe(0);
    expect(failures).toEqual([expect.stringMatching(/^no usable key among the 3 it lists/)]);
  });

  it('keeps the keys held when the IdP answers a set with no usable key, and reports it', async () => {
    const set = make();
    await set.refresh(true);
    const generation = set.generation;
    server.keys = [];
    await set.refresh(true);
    server.keys = [{ ...jwk('enc', rsa.publicKey), use: 'enc' }];
    await set.refresh(true);
    expect(failures).toEqual(['the set has no keys', expect.stringMatching(/^no usable key among the 1 it lists/)]);
    expect(set.size).toBe(2);
    expect(set.generation).toBe(generation);
    expect((await set.key({ kid: 'rsa-1', alg: 'RS256' }))?.asymmetricKeyType).toBe('rsa');
  });

  it('refetches an unknown kid at most once per cooldown', async () => {
    const set = make();
    await set.refresh(true);
    clock += 10_001;
    for (let i = 0; i < 50; i++) expect(await set.key({ kid: `random-${i}`, alg: 'RS256' })).toBeUndefined();
    expect(server.fetches).toBe(2);
  });

  it('finds a rotated key after the cooldown', async () => {
    const set = make();
    await set.refresh(true);
    const rotated = generateKeyPairSync('rsa', { modulusLength: 2048 });
    server.keys.push(jwk('rsa-2', rotated.publicKey));
    expect(await set.key({ kid: 'rsa-2', alg: 'RS256' })).toBeUndefined();
    clock += 10_001;
    expect(await set.key({ kid: 'rsa-2', alg: 'RS256' })).toBeDefined();
  });

  it('moves to a new generation when a fetch brings different keys, and only then', async () => {
    const set = make();
    await set.refresh(true);
    const first = set.generation;
    expect(first).toBeGreaterThan(0);
    // The same keys again (the periodic refresh): same generation.
    await set.refresh(true);
    expect(set.generation).toBe(first);
    // A failed fetch keeps the keys and the generation.
    server.mode = 'fail';
    await set.refresh(true);
    expect(set.generation).toBe(first);
    // The IdP withdrew a key.
    server.mode = 'ok';
    server.keys = [jwk('ec-1', ec.publicKey)];
    await set.refresh(true);
    expect(set.generation).toBe(first + 1);
    expect(await set.key({ kid: 'rsa-1', alg: 'RS256' })).toBeUndefined();
  });

  it('refetches on refreshIfStale only past the cache time, and keeps the generation for the same keys in another order', async () => {
    const set = make();
    await set.refresh(true);
    const generation = set.generation;
    set.refreshIfStale();
    expect(server.fetches).toBe(1);
    clock += 60_001;
    server.keys = [...server.keys].reverse();
    set.refreshIfStale();
    await set.refresh(); // joins the fetch in flight
    expect(server.fetches).toBe(2);
    expect(set.generation).toBe(generation);
  });

  it('keeps stale keys when a refetch fails', async () => {
    const set = make();
    await set.refresh(true);
    server.mode = 'fail';
    clock += 120_000;
    expect(await set.key({ kid: 'rsa-1', alg: 'RS256' })).toBeDefined();
    await set.refresh(true);
    expect(failures).toContain('status 503');
    expect(await set.key({ kid: 'rsa-1', alg: 'RS256' })).toBeDefined();
  });

  it('answers at once with a cold cache while the IdP is down', async () => {
    server.mode = 'hang';
    const set = make();
    const started = Date.now();
    expect(await set.key({ kid: 'rsa-1', alg: 'RS256' })).toBeUndefined();
    expect(failures).toEqual(['timeout']);
    const fetchesAfterFirst = server.fetches;
    for (let i = 0; i < 20; i++) expect(await set.key({ kid: 'rsa-1', alg: 'RS256' })).toBeUndefined();
    // Only the first call waited for the fetch timeout; the others were answered from the cooldown.
    expect(server.fetches).toBe(fetchesAfterFirst);
    expect(Date.now() - started).toBeLessThan(5_000);
  });

  describe.each([
    ['a body that never ends (no Content-Length)', 'endless', /^the body is larger than 1048576 bytes$/],
    ['a body that declares 150 MB', 'oversized', /^the body is larger than 1048576 bytes$/],
    ['a body that drips past the fetch timeout', 'drip', /^timeout$/],
  ] as const)('for %s', (_what, mode, reason) => {
    it('fails the fetch quickly, without reading past the cap, and keeps the keys held', async () => {
      const set = make();
      await set.refresh(true);
      const generation = set.generation;
      server.mode = mode;
      const started = Date.now();
      await set.refresh(true);
      // The test set's timeout is 300 ms; an oversized body is refused long before it.
      expect(Date.now() - started).toBeLessThan(1_500);
      expect(failures).toEqual([expect.stringMatching(reason)]);
      // What the server got into the socket: the cap plus what the kernel buffers on loopback,
      // far below the 150 MB (or unbounded) body.
      expect(server.bytesSent).toBeLessThan(MAX_JWKS_BYTES + 16 * 1024 * 1024);
      expect(set.size).toBe(2);
      expect(set.generation).toBe(generation);
      expect((await set.key({ kid: 'rsa-1', alg: 'RS256' }))?.asymmetricKeyType).toBe('rsa');
    });
  });

  it('reads a key set just under the cap', async () => {
    const body = JSON.stringify({ keys: server.keys });
    server.keys = [...server.keys, { kty: 'oct', kid: 'padding', k: 'x'.repeat(MAX_JWKS_BYTES - body.length - 40) }];
    expect(JSON.stringify({ keys: server.keys }).length).toBeLessThanOrEqual(MAX_JWKS_BYTES);
    const set = make();
    await set.refresh(true);
    expect(failures).toEqual([]);
    expect(set.size).toBe(2);
  });

  it('shares one fetch between concurrent callers', async () => {
    const set = make();
    await Promise.all(Array.from({ length: 20 }, () => set.key({ kid: 'rsa-1', alg: 'RS256' })));
    expect(server.fetches).toBe(1);
  });
});

describe('isInsecureKeyUrl', () => {
  it.each([
    ['http://idp.internal/jwks', true],
    ['http://keycloak.auth.svc.cluster.local:8080/realms/r/protocol/openid-connect/certs', true],
    ['http://10.0.0.5/jwks', true],
    ['https://idp.example.com/.well-known/jwks.json', false],
    ['http://127.0.0.1:9000/jwks', false],
    ['http://localhost/jwks', false],
    ['http://[::1]:9000/jwks', false],
    ['not a url', false],
  ])('%s → %s', (url, insecure) => {
    expect(isInsecureKeyUrl(url)).toBe(insecure);
  });
});
