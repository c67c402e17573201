/**
 * Fixtures for the authentication e2e suite (issue 3), on top of `harness.ts` (not edited):
 *
 * - {@link KeyServer}: a local HTTP server the test starts, serving JWK sets (and any other
 *   document) per path, whose keys and health (ok / failing / hanging) the test controls and
 *   which counts every fetch per path: the "IdP", Google's IAP key endpoint, and an attacker's
 *   `jku`/`x5u` endpoint that must never be fetched.
 * - {@link SigningKey} and {@link forgeJwt}: compact JWS built by hand, so any header (alg none,
 *   jwk/jku/x5u/x5c, crit, hostile kids), any payload (arrays, strings) and any signing method
 *   (HS256 keyed with a public PEM) can be produced; jsonwebtoken refuses most of these.
 * - {@link mintIapAssertion}: Google IAP assertions signed with our own EC P-256 key.
 * - {@link signHmac}: the SPEC §5 HMAC headers.
 * - {@link rawRequest}: an HTTP request whose target goes on the wire byte for byte (fetch and
 *   the WHATWG URL parser would normalise `//`, `/../` and `%2e` away).
 * - {@link startGatewayListening}: a gateway that is only waited for until it listens (not
 *   `/readyz`), for configurations whose readiness may legitimately be down (Redis unreachable).
 * - {@link resolveRedis}: the SPEC §8 Redis lookup for Redis-backed tests.
 *
 * Nothing here imports from `apps/` or `libs/`.
 */
import { execFileSync, spawn } from 'node:child_process';
import {
  createHash,
  createHmac,
  createPrivateKey,
  createPublicKey,
  generateKeyPairSync,
  sign as cryptoSign,
  type JsonWebKey,
  type KeyObject,
} from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import {
  createServer,
  request as httpRequest,
  type IncomingHttpHeaders,
  type OutgoingHttpHeaders,
  type Server,
  type ServerResponse,
} from 'node:http';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  DEV_KEYS,
  GATEWAY_MAIN,
  Gateway,
  HOST,
  ManagedProcess,
  baseGatewayEnv,
  demoProducts,
  freePort,
  mintedTokens,
  nowSeconds,
  sleep,
  waitFor,
  within,
  type GatewayOptions,
} from './harness';

// ---------------------------------------------------------------------------------------------
// Keys and hand-built tokens
// ---------------------------------------------------------------------------------------------

export type AsymmetricAlg = 'RS256' | 'ES256';

/** A key pair of ours: the private half signs, the public half is published as a JWK. */
export interface SigningKey {
  kid: string;
  alg: AsymmetricAlg;
  privateKey: KeyObject;
  publicKey: KeyObject;
  /** The public key as a JWK with `kid`, `alg` and `use: "sig"`. */
  jwk: JsonWebKey & { kid: string; alg: string; use: string };
  /** The public key as SPKI PEM (what an "RS256 key as HS256 secret" attack keys its HMAC with). */
  publicPem: string;
}

export function newSigningKey(alg: AsymmetricAlg, kid: string): SigningKey {
  const { privateKey, publicKey } =
    alg === 'RS256' ? generateKeyPairSync('rsa', { modulusLength: 2048 }) : generateKeyPairSync('ec', { namedCurve: 'P-256' });
  return fromKeyObjects(kid, alg, privateKey, publicKey);
}

function fromKeyObjects(kid: string, alg: AsymmetricAlg, privateKey: KeyObject, publicKey: KeyObject): SigningKey {
  return {
    kid,
    alg,
    privateKey,
    publicKey,
    jwk: { ...publicKey.export({ format: 'jwk' }), kid, alg, use: 'sig' },
    publicPem: publicKey.export({ format: 'pem', type: 'spki' }).toString(),
  };
}

/** The development key pair of `dev/` (configured as static keys by the harness's base env). */
export function devSigningKey(kid: 'dev-rs256' | 'dev-es256'): SigningKey {
  const dev = DEV_KEYS[kid];
  return { ...fromKeyObjects(kid, dev.alg, createPrivateKey(dev.private), createPublicKey(dev.public)), publicPem: dev.public };
}

/** How a forged token's signature is produced. */
export type Signer =
  | { kind: 'key'; alg: AsymmetricAlg; key: KeyObject }
  | { kind: 'hmac'; secret: string | Buffer }
  | { kind: 'none' }
  | { kind: 'raw'; signature: string };

export function b64url(value: unknown): string {
  return Buffer.from(typeof value === 'string' ? value : JSON.stringify(value)).toString('base64url');
}

/**
 * A compact JWS from any header and payload. `payload` is JSON-encoded (so an array, a string or
 * a number gives a payload that is not a JSON object); a `rawPayload` string is used as is.
 * Every forged token is added to the harness's `mintedTokens` so log-hygiene checks cover it.
 */
export function forgeJwt(header: Record<string, unknown>, payload: unknown, signer: Signer, rawPayload?: string): string {
  const signingInput = `${b64url(header)}.${rawPayload ?? Buffer.from(JSON.stringify(payload)).toString('base64url')}`;
  let signature: string;
  switch (signer.kind) {
    case 'key':
      signature = cryptoSign('sha256', Buffer.from(signingInput), {
        key: signer.key,
        ...(signer.alg === 'ES256' ? { dsaEncoding: 'ieee-p1363' as const } : {}),
      }).toString('base64url');
      break;
    case 'hmac':
      signature = createHmac('sha256', signer.secret).update(signingInput).digest('base64url');
      break;
    case 'none':
      signature = '';
      break;
    case 'raw':
      signature = signer.signature;
      break;
  }
  const token = `${signingInput}.${signature}`;
  mintedTokens.push(token);
  return token;
}

export interface ClaimOptions {
  iss: string;
  aud?: string | string[];
  sub?: string;
  product?: string;
  ttlSeconds?: number;
  extra?: Record<string, unknown>;
}

/** A full, valid claim set (iat now, exp now + ttl). */
export function claims(opts: ClaimOptions): Record<string, unknown> {
  const iat = nowSeconds();
  return {
    iss: opts.iss,
    aud: opts.aud ?? 'keygate',
    sub: opts.sub ?? 'e2e-user',
    product: opts.product ?? 'demo',
    iat,
    exp: iat + (opts.ttlSeconds ?? 300),
    ...(opts.extra ?? {}),
  };
}

/** A token signed by `key` (its alg and kid), with `header` merged over `{alg, typ, kid}`. */
export function signedJwt(key: SigningKey, payload: unknown, header: Record<string, unknown> = {}): string {
  return forgeJwt({ alg: key.alg, typ: 'JWT', kid: key.kid, ...header }, payload, { kind: 'key', alg: key.alg, key: key.privateKey });
}

/**
 * A self-signed X.509 certificate (base64 DER) for `key`, for an `x5c` header; made with the
 * openssl CLI when it is on PATH, else the bare SPKI (the header's presence is what is refused).
 */
export function x5cFor(key: SigningKey): string {
  const dir = mkdtempSync(join(tmpdir(), 'keygate-x5c-'));
  try {
    const keyFile = join(dir, 'key.pem');
    writeFileSync(keyFile, key.privateKey.export({ format: 'pem', type: 'pkcs8' }));
    const certFile = join(dir, 'cert.der');
    execFileSync('openssl', ['req', '-x509', '-key', keyFile, '-subj', '/CN=attacker', '-days', '1', '-outform', 'DER', '-out', certFile], {
      stdio: 'ignore',
      timeout: 10_000,
    });
    return readFileSync(certFile).toString('base64');
  } catch {
    return key.publicKey.export({ format: 'der', type: 'spki' }).toString('base64');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

// ---------------------------------------------------------------------------------------------
// The counting key server (JWKS / IAP keys / attacker URLs)
// ---------------------------------------------------------------------------------------------

/** How a path answers: its document, a 500, or never (the connection is held open). */
export type RouteMode = 'ok' | 'fail' | 'hang';

interface KeyRoute {
  mode: RouteMode;
  body: () => unknown;
  fetches: number[];
}

/**
 * A local HTTP server standing in for an IdP's JWKS endpoint, Google's IAP key endpoint and an
 * attacker's key URL. Every request is counted per path (unknown paths too: a fetch of an
 * attacker URL shows up even though nothing is served there).
 */
export class KeyServer {
  private readonly routes = new Map<string, KeyRoute>();
  /** Every request by path, including paths never configured. */
  private readonly hits = new Map<string, number[]>();
  private readonly sockets = new Set<Socket>();
  private readonly hanging = new Set<ServerResponse>();
  private server: Server | undefined;
  port = 0;

  get url(): string {
    return `http://${HOST}:${this.port}`;
  }

  async start(): Promise<void> {
    this.server = createServer((req, res) => {
      const path = (req.url ?? '/').split('?', 1)[0];
      const list = this.hits.get(path) ?? [];
      list.push(Date.now());
      this.hits.set(path, list);
      const route = this.routes.get(path);
      route?.fetches.push(Date.now());
      if (!route) {
        res.writeHead(404, { 'content-type': 'application/json' }).end('{"error":"not found"}');
        return;
      }
      switch (route.mode) {
        case 'ok':
          res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(route.body()));
          return;
        case 'fail':
          res.writeHead(500, { 'content-type': 'application/json' }).end('{"error":"down"}');
          return;
        case 'hang':
          // Headers never come; the gateway's fetch timeout has to end it.
          this.hanging.add(res);
          res.once('close', () => this.hanging.delete(res));
          return;
      }
    });
    this.server.on('connection', (socket: Socket) => {
      this.sockets.add(socket);
      socket.once('close', () => this.sockets.delete(socket));
    });
    await new Promise<void>((done, fail) => {
      this.server!.once('error', fail);
      this.server!.listen(0, HOST, () => done());
    });
    const address = this.server.address();
    this.port = typeof address === 'object' && address ? address.port : 0;
  }

  /** Serves the JWK set `keys()` (read at each fetch, so rotation is a matter of changing it) at `path`. */
  jwks(path: string, keys: () => SigningKey[], mode: RouteMode = 'ok'): string {
    this.routes.set(path, { mode, body: () => ({ keys: keys().map((k) => k.jwk) }), fetches: this.routes.get(path)?.fetches ?? [] });
    return `${this.url}${path}`;
  }

  /** Serves an arbitrary JSON document at `path`. */
  document(path: string, body: () => unknown, mode: RouteMode = 'ok'): string {
    this.routes.set(path, { mode, body, fetches: this.routes.get(path)?.fetches ?? [] });
    return `${this.url}${path}`;
  }

  setMode(path: string, mode: RouteMode): void {
    const route = this.routes.get(path);
    if (!route) throw new Error(`no route ${path}`);
    route.mode = mode;
  }

  /** Requests received on `path` so far (configured or not). */
  count(path: string): number {
    return this.hits.get(path)?.length ?? 0;
  }

  /** Requests received on every path. */
  total(): number {
    let n = 0;
    for (const list of this.hits.values()) n += list.length;
    return n;
  }

  /** Per-path counts, for readable failure messages. */
  snapshot(): Record<string, number> {
    return Object.fromEntries([...this.hits.entries()].map(([path, list]) => [path, list.length]));
  }

  /** When `path` was last requested (ms since the epoch), or 0. */
  lastFetch(path: string): number {
    const list = this.hits.get(path);
    return list?.length ? list[list.length - 1] : 0;
  }

  /** Sleeps until `cooldownMs` (plus a margin) has passed since the last request on any of `paths`. */
  async untilQuiet(paths: string[], cooldownMs: number, marginMs = 150): Promise<void> {
    const last = Math.max(0, ...paths.map((p) => this.lastFetch(p)));
    const wait = last + cooldownMs + marginMs - Date.now();
    if (wait > 0) await sleep(wait);
  }

  async stop(): Promise<void> {
    for (const res of this.hanging) res.destroy();
    for (const socket of this.sockets) socket.destroy();
    const server = this.server;
    if (server) await new Promise<void>((done) => server.close(() => done()));
  }
}

// ---------------------------------------------------------------------------------------------
// Google IAP
// ---------------------------------------------------------------------------------------------

export const IAP_ISSUER = 'https://cloud.google.com/iap';

export interface IapOptions {
  email?: string | null;
  aud?: string | string[];
  iss?: string;
  iat?: number;
  exp?: number;
  sub?: string;
  /** The Workspace domain; by default the email's domain, `null` for a consumer account (no `hd`). */
  hd?: string | null;
  header?: Record<string, unknown>;
}

/** An IAP assertion (`x-goog-iap-jwt-assertion`) signed ES256 with `key`. */
export function mintIapAssertion(key: SigningKey, opts: IapOptions): string {
  const iat = opts.iat ?? nowSeconds();
  const payload: Record<string, unknown> = {
    iss: opts.iss ?? IAP_ISSUER,
    aud: opts.aud,
    sub: opts.sub ?? `accounts.google.com:${createHash('sha256').update(String(opts.email)).digest('hex').slice(0, 16)}`,
    email: opts.email,
    hd: opts.hd !== undefined ? opts.hd : typeof opts.email === 'string' ? opts.email.split('@')[1] : undefined,
    iat,
    exp: opts.exp ?? iat + 600,
    google: { access_levels: [] },
  };
  for (const k of Object.keys(payload)) if (payload[k] === undefined || payload[k] === null) delete payload[k];
  return signedJwt(key, payload, { typ: undefined, ...(opts.header ?? {}) });
}

// ---------------------------------------------------------------------------------------------
// HMAC
// ---------------------------------------------------------------------------------------------

export interface HmacSignOptions {
  clientId: string;
  secret: string;
  method: string;
  /** The request target as sent: path and query string. */
  target: string;
  body?: string | Buffer;
  /** Unix seconds; default now. A string is sent as is. */
  timestamp?: number | string;
}

export function sha256Hex(body: string | Buffer = ''): string {
  return createHash('sha256').update(body).digest('hex');
}

/** The three SPEC §5 headers for one request. */
export function signHmac(opts: HmacSignOptions): { 'x-client-id': string; 'x-timestamp': string; 'x-signature': string } {
  const timestamp = String(opts.timestamp ?? nowSeconds());
  const canonical = `${timestamp}\n${opts.method.toUpperCase()}\n${opts.target}\n${sha256Hex(opts.body ?? '')}`;
  const signature = createHmac('sha256', opts.secret).update(canonical, 'utf8').digest('hex');
  return { 'x-client-id': opts.clientId, 'x-timestamp': timestamp, 'x-signature': signature };
}

// ---------------------------------------------------------------------------------------------
// Raw HTTP
// ---------------------------------------------------------------------------------------------

export interface RawResponse {
  status: number;
  headers: IncomingHttpHeaders;
  text: string;
  json: unknown;
  elapsedMs: number;
}

/**
 * One HTTP/1.1 request with node:http, the target written exactly as given (no URL parsing, so
 * `//`, `/../` and percent-encodings reach the server untouched). Header values may be arrays
 * (sent as repeated headers).
 */
export function rawRequest(
  port: number,
  opts: { method?: string; target: string; headers?: OutgoingHttpHeaders; body?: string | Buffer; timeoutMs?: number },
): Promise<RawResponse> {
  const started = Date.now();
  return new Promise<RawResponse>((done, fail) => {
    const req = httpRequest(
      {
        host: HOST,
        port,
        method: opts.method ?? 'GET',
        path: opts.target,
        headers: opts.headers,
        agent: false,
        timeout: opts.timeoutMs ?? 15_000,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let json: unknown = null;
          try {
            json = JSON.parse(text);
          } catch {
            json = null;
          }
          done({ status: res.statusCode ?? 0, headers: res.headers, text, json, elapsedMs: Date.now() - started });
        });
        res.on('error', fail);
      },
    );
    req.on('timeout', () =>
      req.destroy(new Error(`no answer to ${opts.method ?? 'GET'} ${opts.target} within ${opts.timeoutMs ?? 15_000} ms`)),
    );
    req.on('error', fail);
    if (opts.body !== undefined) req.write(opts.body);
    req.end();
  });
}

/**
 * Bytes written on a raw TCP connection as they are (what node:http would not send: no Host, a
 * CONNECT), and everything the server answers until it ends the connection. `end`: the client
 * half-closes after its bytes (else it keeps its side open, as a tunnel would).
 */
export function socketExchange(port: number, bytes: string, { end = true }: { end?: boolean } = {}): Promise<string> {
  return new Promise<string>((done, fail) => {
    const socket = connect(port, HOST, () => (end ? socket.end(bytes) : socket.write(bytes)));
    const chunks: Buffer[] = [];
    socket.on('data', (c: Buffer) => chunks.push(c));
    socket.on('end', () => done(Buffer.concat(chunks).toString('utf8')));
    socket.on('error', fail);
    socket.setTimeout(5_000, () => socket.destroy(new Error('no answer')));
  });
}

// ---------------------------------------------------------------------------------------------
// Gateways
// ---------------------------------------------------------------------------------------------

const LISTEN_TIMEOUT_MS = 20_000;

/**
 * Starts a gateway like the harness's `startGateway` but waits only for its "keygate listening"
 * line and a `/healthz` answer: for configurations whose readiness may be down on purpose.
 */
export async function startGatewayListening(options: GatewayOptions = {}): Promise<Gateway> {
  const port = await freePort();
  const products = options.products ?? demoProducts(options.mockUrl ?? 'http://127.0.0.1:9');
  const env: Record<string, string> = { ...baseGatewayEnv(port, products) };
  for (const [k, v] of Object.entries(options.env ?? {})) {
    if (v === undefined) delete env[k];
    else env[k] = v;
  }
  const proc = new ManagedProcess('gateway', GATEWAY_MAIN, env);
  const gateway = new Gateway(proc, port);
  try {
    await proc.waitForLine('"keygate listening" line', (l) => l.json?.message === 'keygate listening', LISTEN_TIMEOUT_MS);
    await waitFor(
      'gateway /healthz to answer 200',
      async () => {
        try {
          const res = await fetch(`${gateway.url}/healthz`, { signal: AbortSignal.timeout(1_000) });
          await res.arrayBuffer();
          return res.status === 200;
        } catch {
          return false;
        }
      },
      LISTEN_TIMEOUT_MS,
      50,
    );
    return gateway;
  } catch (error) {
    await proc.stop();
    throw error;
  }
}

// ---------------------------------------------------------------------------------------------
// Redis (SPEC §8: API_KEY_SERVER_REDIS_URL, else 127.0.0.1:6379, else a private redis-server)
// ---------------------------------------------------------------------------------------------

/** True when a Redis answers PING at host:port within `timeoutMs`. */
export function redisAnswers(host: string, port: number, timeoutMs = 1_000): Promise<boolean> {
  return new Promise<boolean>((done) => {
    const socket = connect({ host, port });
    let reply = '';
    const finish = (ok: boolean): void => {
      clearTimeout(timer);
      socket.destroy();
      done(ok);
    };
    const timer = setTimeout(() => finish(false), timeoutMs);
    socket.once('connect', () => socket.write('PING\r\n'));
    socket.on('data', (chunk: Buffer) => {
      reply += chunk.toString('utf8');
      if (reply.includes('\r\n')) finish(reply.startsWith('+PONG'));
    });
    socket.once('error', () => finish(false));
  });
}

export interface RedisHandle {
  url: string;
  stop(): Promise<void>;
}

export async function resolveRedis(): Promise<RedisHandle> {
  const fromEnv = process.env.API_KEY_SERVER_REDIS_URL;
  if (fromEnv) return { url: fromEnv, stop: () => Promise.resolve() };
  if (await redisAnswers('127.0.0.1', 6379)) return { url: 'redis://127.0.0.1:6379', stop: () => Promise.resolve() };
  const port = await freePort();
  const child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], {
    stdio: 'ignore',
  });
  const spawnError = new Promise<Error>((done) => child.once('error', done));
  const up = await within(
    Promise.race([
      waitFor('redis-server to answer PING', () => redisAnswers('127.0.0.1', port, 300), 5_000, 100).then(() => 'up' as const),
      spawnError,
    ]).catch((error: unknown) => (error instanceof Error ? error : new Error(String(error)))),
    6_000,
  );
  if (up !== 'up') {
    child.kill('SIGKILL');
    throw new Error(
      'The HMAC replay tests need Redis: set API_KEY_SERVER_REDIS_URL, run one on 127.0.0.1:6379, or install redis-server ' +
        `(Debian/Ubuntu: apt-get install -y redis-server). Cause: ${up instanceof Error ? up.message : 'no answer'}`,
    );
  }
  return {
    url: `redis://127.0.0.1:${port}`,
    stop: async () => {
      child.kill('SIGTERM');
      await within(new Promise((done) => child.once('exit', done)), 3_000);
    },
  };
}
