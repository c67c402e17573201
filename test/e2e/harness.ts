/**
 * Black-box e2e harness: runs the BUILT gateway and mock upstream (`dist/`) as real child
 * processes on 127.0.0.1, captures every line they print, and talks to them over HTTP only.
 * Nothing here imports from `apps/` or `libs/`.
 *
 * Every test file gets its own module instance (Jest module registry), so the child registry,
 * the minted-token list and the request log below never leak between files.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { generateKeyPairSync, randomBytes, type KeyObject } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import jwt from 'jsonwebtoken';
import Anthropic from '@anthropic-ai/sdk';
import OpenAI, { APIError } from 'openai';

export const ROOT = resolve(__dirname, '..', '..');
export const GATEWAY_MAIN = join(ROOT, 'dist', 'apps', 'gateway', 'main.js');
export const MOCK_MAIN = join(ROOT, 'dist', 'apps', 'mock-upstream', 'main.js');
export const DEV_ISSUER = 'keygate-dev';
export const AUDIENCE = 'keygate';
export const HOST = '127.0.0.1';

const DEV_DIR = join(ROOT, 'dev');
// A bound on a process's start, not a measure of it: a loaded CI runner (two cores, three gateways
// booting at once beside other suites' processes) once took over 15 s to print "keygate listening".
const READY_TIMEOUT_MS = 30_000;
const STOP_TIMEOUT_MS = 5_000;
const KILL_TIMEOUT_MS = 2_000;

// ---------------------------------------------------------------------------------------------
// Small utilities
// ---------------------------------------------------------------------------------------------

export function sleep(ms: number): Promise<void> {
  return new Promise((done) => setTimeout(done, ms));
}

/** `promise`'s value, or null after `ms` (the timer is cleared either way, so nothing lingers). */
export async function within<T>(promise: Promise<T>, ms: number): Promise<T | null> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([promise, new Promise<null>((done) => (timer = setTimeout(() => done(null), ms)))]);
  } finally {
    clearTimeout(timer);
  }
}

/** Polls `probe` until it returns a value other than undefined/false, or fails after `timeoutMs`. */
export async function waitFor<T>(
  what: string,
  probe: () => T | undefined | false | Promise<T | undefined | false>,
  timeoutMs = 5_000,
  intervalMs = 20,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined && value !== false) return value;
    if (Date.now() >= deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(intervalMs);
  }
}

/** A port that was free a moment ago (listen on 0, read it, close). */
export function freePort(): Promise<number> {
  return new Promise((done, fail) => {
    const server = createServer();
    server.unref();
    server.once('error', fail);
    server.listen(0, HOST, () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => done(port));
    });
  });
}

/** A unique, header-safe id (matches the gateway's accepted X-Request-Id pattern). */
export function uniqueId(prefix = 'e2e'): string {
  return `${prefix}-${Date.now().toString(36)}-${randomBytes(6).toString('hex')}`;
}

/** Writes `text` to a fresh temp file; the directory is removed by {@link cleanupTempFiles}. */
const tempDirs: string[] = [];
export function writeTempFile(name: string, text: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'keygate-e2e-'));
  tempDirs.push(dir);
  const path = join(dir, name);
  writeFileSync(path, text);
  return path;
}
export function cleanupTempFiles(): void {
  for (const dir of tempDirs.splice(0)) rmSync(dir, { recursive: true, force: true });
}

// ---------------------------------------------------------------------------------------------
// Child processes
// ---------------------------------------------------------------------------------------------

export interface LogLine {
  stream: 'stdout' | 'stderr';
  raw: string;
  /** The parsed JSON object, or null when the line is not a JSON object. */
  json: Record<string, unknown> | null;
}

export interface ExitInfo {
  code: number | null;
  signal: NodeJS.Signals | null;
}

const liveChildren = new Set<ChildProcess>();
let exitHookInstalled = false;

/** Last line of defence: if the Jest worker dies without afterAll, no child outlives it. */
function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.once('exit', () => {
    for (const child of liveChildren) {
      try {
        child.kill('SIGKILL');
      } catch {
        // already gone
      }
    }
  });
}

/** A child process whose every output line is captured and parsed. */
export class ManagedProcess {
  readonly lines: LogLine[] = [];
  readonly exited: Promise<ExitInfo>;
  exitInfo: ExitInfo | null = null;
  /** Set by {@link stop}; an exit without it is unexpected and reported with the output tail. */
  private stopping = false;
  private readonly child: ChildProcess;
  private readonly listeners = new Set<(line: LogLine) => void>();

  constructor(
    readonly name: string,
    script: string,
    env: NodeJS.ProcessEnv,
    /** The process is expected to exit on its own (boot-failure tests). */
    expectExit = false,
  ) {
    installExitHook();
    this.child = spawn(process.execPath, [script], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
    liveChildren.add(this.child);
    this.exited = new Promise<ExitInfo>((done) => {
      this.child.once('exit', (code, signal) => {
        liveChildren.delete(this.child);
        this.exitInfo = { code, signal };
        if (!this.stopping && !expectExit) {
          process.stderr.write(
            `[e2e] ${name} (pid ${this.child.pid}) exited unexpectedly (code ${code}, signal ${signal}); last output:\n${this.output.slice(-3000)}\n`,
          );
        }
        done(this.exitInfo);
      });
      this.child.once('error', () => {
        liveChildren.delete(this.child);
        this.exitInfo ??= { code: null, signal: null };
        done(this.exitInfo);
      });
    });
    this.capture('stdout');
    this.capture('stderr');
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  private capture(stream: 'stdout' | 'stderr'): void {
    let pending = '';
    const source = this.child[stream];
    if (!source) return;
    source.setEncoding('utf8');
    source.on('data', (chunk: string) => {
      pending += chunk;
      let nl: number;
      while ((nl = pending.indexOf('\n')) !== -1) {
        this.push(stream, pending.slice(0, nl));
        pending = pending.slice(nl + 1);
      }
    });
    source.on('end', () => {
      if (pending) this.push(stream, pending);
      pending = '';
    });
  }

  private push(stream: 'stdout' | 'stderr', raw: string): void {
    if (raw.trim() === '') return;
    let json: Record<string, unknown> | null = null;
    try {
      const parsed = JSON.parse(raw) as unknown;
      if (typeof parsed === 'object' && parsed !== null && !Array.isArray(parsed)) json = parsed as Record<string, unknown>;
    } catch {
      json = null;
    }
    const line: LogLine = { stream, raw, json };
    this.lines.push(line);
    for (const listener of this.listeners) listener(line);
  }

  /** All output so far, stdout and stderr interleaved as received. */
  get output(): string {
    return this.lines.map((l) => l.raw).join('\n');
  }

  /** Resolves with the first line (already printed or future) matching `match`; rejects on exit or timeout. */
  waitForLine(what: string, match: (line: LogLine) => boolean, timeoutMs: number): Promise<LogLine> {
    const seen = this.lines.find(match);
    if (seen) return Promise.resolve(seen);
    return new Promise<LogLine>((done, fail) => {
      const finish = (error: Error | null, line?: LogLine): void => {
        clearTimeout(timer);
        this.listeners.delete(listener);
        if (error) fail(error);
        else done(line as LogLine);
      };
      const listener = (line: LogLine): void => {
        if (match(line)) finish(null, line);
      };
      const timer = setTimeout(
        () => finish(new Error(`${this.name}: no ${what} within ${timeoutMs} ms; output:\n${this.output.slice(-4000)}`)),
        timeoutMs,
      );
      this.listeners.add(listener);
      void this.exited.then((info) => {
        // Let the last buffered lines arrive before giving up.
        setTimeout(() => {
          const line = this.lines.find(match);
          if (line) finish(null, line);
          else
            finish(
              new Error(
                `${this.name} exited (code ${info.code}, signal ${info.signal}) before ${what}; output:\n${this.output.slice(-4000)}`,
              ),
            );
        }, 50);
      });
    });
  }

  /** Sends `signal` (the process is expected to exit: not reported as unexpected). */
  signal(signal: NodeJS.Signals): void {
    this.stopping = true;
    this.child.kill(signal);
  }

  /** SIGTERM, then SIGKILL after a bound. Safe to call twice. */
  async stop(timeoutMs = STOP_TIMEOUT_MS): Promise<ExitInfo> {
    if (this.exitInfo) return this.exitInfo;
    this.stopping = true;
    this.child.kill('SIGTERM');
    const graceful = await within(this.exited, timeoutMs);
    if (graceful) return graceful;
    this.child.kill('SIGKILL');
    const killed = await within(this.exited, KILL_TIMEOUT_MS);
    return killed ?? { code: null, signal: 'SIGKILL' };
  }
}

// ---------------------------------------------------------------------------------------------
// Mock upstream
// ---------------------------------------------------------------------------------------------

export type MockRoute =
  | 'openai.chat'
  | 'openai.responses'
  | 'openai.responses.retrieve'
  | 'openai.responses.delete'
  | 'openai.responses.inputItems'
  | 'openai.responses.cancel'
  | 'openai.responses.inputTokens'
  | 'openai.responses.compact'
  | 'openai.embeddings'
  | 'openai.models'
  | 'anthropic.messages'
  | 'anthropic.countTokens'
  | 'gemini.generateContent'
  | 'gemini.streamGenerateContent'
  | 'gemini.countTokens'
  | 'gemini.embedContent'
  | 'gemini.batchEmbedContents';

export interface MockLastRequest {
  headers: Record<string, string | string[] | undefined>;
  body: unknown;
  url: string;
}

export interface MockStats {
  total: number;
  byRoute: Record<MockRoute, number>;
  aborted: number;
  active?: number;
  last: Partial<Record<MockRoute, MockLastRequest>>;
}

export class MockUpstream {
  constructor(
    readonly proc: ManagedProcess,
    readonly port: number,
  ) {}

  get url(): string {
    return `http://${HOST}:${this.port}`;
  }

  async stats(): Promise<MockStats> {
    const res = await fetch(`${this.url}/__mock/stats`, { signal: AbortSignal.timeout(5_000) });
    if (res.status !== 200) throw new Error(`mock stats answered ${res.status}`);
    // Parsed in the test realm so toStrictEqual accepts the objects (fetch's parser builds them in Node's realm).
    return JSON.parse(await res.text()) as MockStats;
  }

  async reset(): Promise<void> {
    const res = await fetch(`${this.url}/__mock/reset`, { method: 'POST', signal: AbortSignal.timeout(5_000) });
    await res.arrayBuffer();
    if (res.status !== 200) throw new Error(`mock reset answered ${res.status}`);
  }

  stop(): Promise<ExitInfo> {
    return this.proc.stop();
  }
}

/** Starts the mock upstream on a port it picks itself (PORT=0) and waits for its "listening" line. */
export async function startMock(extraEnv: Record<string, string> = {}): Promise<MockUpstream> {
  const proc = new ManagedProcess('mock-upstream', MOCK_MAIN, { PATH: process.env.PATH ?? '', PORT: '0', HOST, ...extraEnv });
  try {
    const line = await proc.waitForLine(
      '"listening" line',
      (l) => typeof l.json?.message === 'string' && l.json.message.includes('listening'),
      READY_TIMEOUT_MS,
    );
    const port = Number(line.json?.port);
    if (!Number.isInteger(port) || port <= 0) throw new Error(`mock-upstream printed no port: ${line.raw}`);
    return new MockUpstream(proc, port);
  } catch (error) {
    await proc.stop();
    throw error;
  }
}

// ---------------------------------------------------------------------------------------------
// Credentials
// ---------------------------------------------------------------------------------------------

export const DEV_KEYS = {
  'dev-rs256': {
    alg: 'RS256' as const,
    private: readFileSync(join(DEV_DIR, 'dev-rs256.key.pem'), 'utf8'),
    public: readFileSync(join(DEV_DIR, 'dev-rs256.pub.pem'), 'utf8'),
  },
  'dev-es256': {
    alg: 'ES256' as const,
    private: readFileSync(join(DEV_DIR, 'dev-es256.key.pem'), 'utf8'),
    public: readFileSync(join(DEV_DIR, 'dev-es256.pub.pem'), 'utf8'),
  },
};

/** `API_KEY_SERVER_JWT_PUBLIC_KEYS` for the development key pair. */
export function devJwtPublicKeys(): string {
  return JSON.stringify({ 'dev-rs256': DEV_KEYS['dev-rs256'].public, 'dev-es256': DEV_KEYS['dev-es256'].public });
}

export interface TokenOptions {
  /** Claims; `null` leaves the claim out. */
  sub?: string | null;
  product?: string | null;
  iss?: string | null;
  aud?: string | string[] | null;
  /** Absolute unix seconds; default now. `null` omits `iat`. */
  iat?: number | null;
  /** Absolute unix seconds; default iat + ttlSeconds. `null` omits `exp`. */
  exp?: number | null;
  ttlSeconds?: number;
  /** Header `kid`; `null` omits it. Default: the dev key of `alg`. */
  kid?: string | null;
  alg?: 'RS256' | 'ES256';
  /** Signing key; default the dev private key of `alg`. */
  privateKey?: string | KeyObject;
  extraClaims?: Record<string, unknown>;
}

/** Every token minted in this file, so the security test can grep logs for them. */
export const mintedTokens: string[] = [];

export function nowSeconds(): number {
  return Math.floor(Date.now() / 1000);
}

function claimsFor(opts: TokenOptions): Record<string, unknown> {
  const now = nowSeconds();
  const iat = opts.iat === undefined ? now : opts.iat;
  const exp = opts.exp === undefined ? (iat ?? now) + (opts.ttlSeconds ?? 300) : opts.exp;
  const claims: Record<string, unknown> = {
    sub: opts.sub === undefined ? 'e2e-user' : opts.sub,
    product: opts.product === undefined ? 'demo' : opts.product,
    iss: opts.iss === undefined ? DEV_ISSUER : opts.iss,
    aud: opts.aud === undefined ? AUDIENCE : opts.aud,
    iat,
    exp,
    ...(opts.extraClaims ?? {}),
  };
  for (const key of Object.keys(claims)) if (claims[key] === null) delete claims[key];
  return claims;
}

/** Mints a JWT with the development keys; every field can be overridden or left out. */
export function mintToken(opts: TokenOptions = {}): string {
  const alg = opts.alg ?? 'RS256';
  const devKid = alg === 'RS256' ? 'dev-rs256' : 'dev-es256';
  const kid = opts.kid === undefined ? devKid : opts.kid;
  const key = opts.privateKey ?? DEV_KEYS[devKid].private;
  // jsonwebtoken keeps a payload `iat` unless `noTimestamp` is set, which deletes it: only for iat: null.
  const token = jwt.sign(claimsFor(opts), key, { algorithm: alg, noTimestamp: opts.iat === null, ...(kid === null ? {} : { keyid: kid }) });
  mintedTokens.push(token);
  return token;
}

/** An unsigned `alg: none` token carrying otherwise valid claims. */
export function mintUnsignedToken(opts: TokenOptions = {}): string {
  const b64 = (v: unknown): string => Buffer.from(JSON.stringify(v)).toString('base64url');
  const kid = opts.kid === undefined ? 'dev-rs256' : opts.kid;
  const header = { alg: 'none', typ: 'JWT', ...(kid === null ? {} : { kid }) };
  const token = `${b64(header)}.${b64(claimsFor(opts))}.`;
  mintedTokens.push(token);
  return token;
}

/** A fresh RSA key nobody configured (for "signed with the wrong key"). */
export function foreignRsaKey(): KeyObject {
  return generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey;
}

// ---------------------------------------------------------------------------------------------
// Gateway
// ---------------------------------------------------------------------------------------------

export interface AuditRecord {
  severity: string;
  time: string;
  message: string;
  type: 'audit';
  requestId: string;
  product: string | null;
  user: string | null;
  model: string | null;
  requested_model?: string | null;
  model_label?: string;
  product_label?: string;
  provider: string | null;
  stream: boolean;
  tokens_in: number | null;
  tokens_out: number | null;
  tokens_cached?: number | null;
  tokens_cache_write?: number | null;
  tokens_cache_write_1h?: number | null;
  tokens_reasoning?: number | null;
  cost_usd?: number | null;
  latency_ms: number;
  status: number;
  failure: string | null;
  attempts?: number;
  method?: string;
  path?: string;
}

export interface TrackedRequest {
  id: string;
  method: string;
  path: string;
}

/** SPEC §7: `/v1/*` and `/chat/*` requests are audited (and the Gemini routes under `/v1beta/*`), however their path is spelt (`/V1/models` is one, refused 404; so is `//v1/…`). */
const AUDITED_PATH = /^\/+(v1|v1beta|chat)\//i;

/**
 * The path the gateway's router matches: percent-escapes decoded (`/%761/…` reaches a `/v1` route,
 * and is audited), but not an escaped slash (`/v1%2Fchat/…` matches no route); as sent when malformed.
 */
function routePath(pathname: string): string {
  try {
    return decodeURIComponent(pathname.replace(/%2f/gi, '%252F'));
  } catch {
    return pathname;
  }
}

/** Product keys in the multi-provider format, a `demo` product like `dev/demo-env.js` gives. */
export function demoProducts(mockUrl: string): Record<string, unknown> {
  return {
    demo: {
      providers: {
        openai: { api_key: 'sk-mock-demo', models: ['gpt-4o', 'gpt-4o-mini'], base_url: `${mockUrl}/v1` },
        anthropic: { api_key: 'sk-ant-mock-demo', models: ['claude-3-5-sonnet-20241022'], base_url: mockUrl },
        gemini: { api_key: 'AIza-mock-demo', models: ['gemini-1.5-pro'], base_url: mockUrl },
      },
    },
  };
}

/** The environment every e2e gateway starts from (SPEC §2 variables only, plus PATH). */
export function baseGatewayEnv(port: number, products: Record<string, unknown>): Record<string, string> {
  return {
    PATH: process.env.PATH ?? '',
    METADATA_SERVER_DETECTION: 'none',
    PORT: String(port),
    API_KEY_SERVER_PRODUCT_KEYS: JSON.stringify(products),
    API_KEY_SERVER_JWT_PUBLIC_KEYS: devJwtPublicKeys(),
    API_KEY_SERVER_JWT_ISSUER: DEV_ISSUER,
    API_KEY_SERVER_SHUTDOWN_DRAIN_SECONDS: '2',
  };
}

function mergeEnv(base: Record<string, string>, overrides: Record<string, string | undefined>): Record<string, string> {
  const env = { ...base };
  for (const [key, value] of Object.entries(overrides)) {
    if (value === undefined) delete env[key];
    else env[key] = value;
  }
  return env;
}

export interface GatewayOptions {
  /** Product keys (SPEC §3); default {@link demoProducts} of `mockUrl`. */
  products?: Record<string, unknown>;
  mockUrl?: string;
  /** Extra or replaced variables; `undefined` removes one. */
  env?: Record<string, string | undefined>;
}

export class Gateway {
  /** Every `/v1/*` and `/chat/*` request sent through {@link fetch} or an SDK client of this harness. */
  readonly requests: TrackedRequest[] = [];

  constructor(
    readonly proc: ManagedProcess,
    readonly port: number,
  ) {}

  get url(): string {
    return `http://${HOST}:${this.port}`;
  }

  get baseURL(): string {
    return `${this.url}/v1`;
  }

  /**
   * `fetch` against the gateway that gives every request an `X-Request-Id` (unless the caller set
   * one) and records auditable requests, so each can be matched with its audit line.
   */
  readonly fetch = async (input: string | URL | Request, init: RequestInit = {}): Promise<Response> => {
    const url = new URL(
      typeof input === 'string' ? (input.startsWith('/') ? `${this.url}${input}` : input) : input instanceof URL ? input.href : input.url,
    );
    const headers = new Headers(input instanceof Request ? input.headers : undefined);
    new Headers(init.headers).forEach((value, key) => headers.set(key, value));
    if (!headers.has('x-request-id')) headers.set('x-request-id', uniqueId('auto'));
    const method = (init.method ?? (input instanceof Request ? input.method : 'GET')).toUpperCase();
    if (AUDITED_PATH.test(routePath(url.pathname)))
      this.requests.push({ id: headers.get('x-request-id') as string, method, path: url.pathname });
    return input instanceof Request ? fetch(new Request(input, { ...init, headers })) : fetch(url, { ...init, headers });
  };

  /** An OpenAI SDK client for this gateway: no retries, every request tracked. */
  openai(token: string, options: { timeoutMs?: number } = {}): OpenAI {
    return new OpenAI({ baseURL: this.baseURL, apiKey: token, maxRetries: 0, timeout: options.timeoutMs ?? 20_000, fetch: this.fetch });
  }

  /**
   * An Anthropic SDK client for this gateway (its base URL is the gateway's root): no retries, every
   * request tracked. The token is given as the SDK's `apiKey` or `authToken` (this SDK version sends
   * both as `Authorization: Bearer`; `x-api-key` is tested with raw requests).
   */
  anthropic(token: string, options: { bearer?: boolean; timeoutMs?: number } = {}): Anthropic {
    return new Anthropic({
      baseURL: this.url,
      ...(options.bearer ? { authToken: token, apiKey: null } : { apiKey: token }),
      maxRetries: 0,
      timeout: options.timeoutMs ?? 20_000,
      fetch: this.fetch,
    });
  }

  /** Every audit line printed so far. */
  audits(): AuditRecord[] {
    return this.proc.lines.filter((l) => l.stream === 'stdout' && l.json?.type === 'audit').map((l) => l.json as unknown as AuditRecord);
  }

  auditsFor(requestId: string): AuditRecord[] {
    return this.audits().filter((a) => a.requestId === requestId);
  }

  /** The audit line of a request, once it is printed (bounded wait). */
  async waitForAudit(requestId: string, timeoutMs = 5_000): Promise<AuditRecord> {
    const line = await this.proc.waitForLine(
      `audit line for ${requestId}`,
      (l) => l.stream === 'stdout' && l.json?.type === 'audit' && l.json.requestId === requestId,
      timeoutMs,
    );
    return line.json as unknown as AuditRecord;
  }

  stop(): Promise<ExitInfo> {
    return this.proc.stop();
  }
}

/** Starts a gateway on a free port and waits for its "keygate listening" line and `/readyz` 200. */
export async function startGateway(options: GatewayOptions = {}): Promise<Gateway> {
  const port = await freePort();
  const products = options.products ?? demoProducts(options.mockUrl ?? 'http://127.0.0.1:9');
  const env = mergeEnv(baseGatewayEnv(port, products), options.env ?? {});
  const proc = new ManagedProcess('gateway', GATEWAY_MAIN, env);
  const gateway = new Gateway(proc, port);
  try {
    await proc.waitForLine('"keygate listening" line', (l) => l.json?.message === 'keygate listening', READY_TIMEOUT_MS);
    await waitFor(
      'gateway /readyz to answer 200',
      async () => {
        try {
          const res = await fetch(`${gateway.url}/readyz`, { signal: AbortSignal.timeout(1_000) });
          await res.arrayBuffer();
          return res.status === 200;
        } catch {
          return false;
        }
      },
      READY_TIMEOUT_MS,
      50,
    );
    return gateway;
  } catch (error) {
    await proc.stop();
    throw error;
  }
}

export interface BootResult extends ExitInfo {
  timedOut: boolean;
  output: string;
}

/** Runs a gateway that is expected to refuse to boot; kills it if it is still up after `timeoutMs`. */
export async function runGatewayExpectingExit(env: Record<string, string>, timeoutMs = 10_000): Promise<BootResult> {
  const proc = new ManagedProcess('gateway (boot)', GATEWAY_MAIN, env, true);
  const exited = await within(proc.exited, timeoutMs);
  if (!exited) {
    const info = await proc.stop(1_000);
    return { ...info, timedOut: true, output: proc.output };
  }
  // Let the pipes drain.
  await sleep(50);
  return { ...exited, timedOut: false, output: proc.output };
}

/** The APIError a call through the openai SDK fails with; anything else (or success) fails the test. */
export async function apiError(promise: Promise<unknown>): Promise<APIError> {
  try {
    await promise;
  } catch (error) {
    if (error instanceof APIError) return error;
    throw error;
  }
  throw new Error('expected the call to fail with an APIError');
}

/** Streams a completion until it fails: the text that arrived first and the APIError the SDK raised. */
export async function streamUntilError(
  client: OpenAI,
  body: OpenAI.Chat.Completions.ChatCompletionCreateParamsStreaming,
  headers: Record<string, string>,
): Promise<{ received: string[]; error: APIError }> {
  const received: string[] = [];
  const stream = await client.chat.completions.create(body, { headers });
  const error = await apiError(
    (async () => {
      for await (const chunk of stream) received.push(chunk.choices[0]?.delta?.content ?? '');
    })(),
  );
  return { received, error };
}
