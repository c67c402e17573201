/**
 * Fixtures for the limits e2e suite (`limits.e2e-spec.ts`): the run's products and policy file, a
 * private `redis-server` the suite can kill and restart, and small HTTP helpers. Nothing here
 * imports from `apps/` or `libs/`: the gateway is a black box.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { freePort, HOST, sleep, waitFor, within, type Gateway } from './harness';

/** The shared Redis every replica of the suite uses (the real one). */
export const SHARED_REDIS_URL = process.env.API_KEY_SERVER_REDIS_URL ?? 'redis://127.0.0.1:6379';

/** Per-run suffix: daily counters live two days in the shared Redis, so product names never repeat. */
export const RUN = randomBytes(3).toString('hex');

/** The run's products, each with the limits of one scenario. */
export const P = {
  /** `user_requests_per_second: 4`. */
  userQps: `lim-uqps-${RUN}`,
  /** `requests_per_second: 3` (product-wide). */
  productQps: `lim-pqps-${RUN}`,
  /** `daily_requests: 5` (product, UTC day). */
  daily: `lim-daily-${RUN}`,
  /** `daily_requests: 50`: a burst of 200 concurrent requests. */
  burst: `lim-burst-${RUN}`,
  /** `user_daily_requests: 3`. */
  userDaily: `lim-udaily-${RUN}`,
  /** `daily_tokens: 5000`, `max_tokens: 1000`. */
  tokens: `lim-tok-${RUN}`,
  /** `user_daily_tokens: 1500`, `max_tokens: 1000`: one client's requests sent back to back. */
  userTokens: `lim-utok-${RUN}`,
  /** `daily_tokens: 300`: requests that overshoot their estimate (client max_tokens: 1). */
  overshoot: `lim-over-${RUN}`,
  /** No small limits: blocks. */
  blocks: `lim-blk-${RUN}`,
  /** Parameter policy: max_tokens 100, temperature 0..1, 2048 bytes, 1 s streams. */
  policy: `lim-pol-${RUN}`,
  /** `user_requests_per_second: 1` and auto-block after 3 refusals. */
  autoBlock: `lim-ab-${RUN}`,
  /** `user_requests_per_second: 2`: the Redis-outage gateway. */
  outage: `lim-out-${RUN}`,
  /** A huge token quota: warms a replica's tokenizer, and the cold-start stall test. */
  warm: `lim-warm-${RUN}`,
  /** A huge token quota: the streams a gateway finishes during its shutdown drain. */
  drain: `lim-drain-${RUN}`,
  /** `requests_per_second: 1`, `user_daily_requests: 1`: one request fills both. */
  spent: `lim-spent-${RUN}`,
  /** `user_daily_tokens: 5000`, with Claude and Gemini models too: texts sent as documents and files. */
  docs: `lim-docs-${RUN}`,
  /** No token quota, a priced model: the day's cost in `/admin/usage`. */
  cost: `lim-cost-${RUN}`,
} as const;

export const TOKEN_CAP = 5000;
export const TOKEN_MAX_TOKENS = 1000;
export const USER_TOKEN_CAP = 1500;
export const OVERSHOOT_CAP = 300;
export const POLICY_MAX_TOKENS = 100;
export const POLICY_MAX_BYTES = 2048;
export const DOCS_USER_TOKEN_CAP = 5000;
export const MODEL = 'gpt-4o-mini';
export const CLAUDE_MODEL = 'claude-3-5-sonnet-20241022';
export const GEMINI_MODEL = 'gemini-1.5-pro';

export function limitsProducts(mockUrl: string): Record<string, unknown> {
  const products: Record<string, unknown> = {};
  for (const name of Object.values(P)) {
    products[name] = { providers: { openai: { api_key: `sk-mock-${name}`, models: [MODEL], base_url: `${mockUrl}/v1` } } };
  }
  products[P.docs] = {
    providers: {
      openai: { api_key: `sk-mock-${P.docs}`, models: [MODEL], base_url: `${mockUrl}/v1` },
      anthropic: { api_key: `sk-ant-mock-${P.docs}`, models: [CLAUDE_MODEL], base_url: mockUrl },
      gemini: { api_key: `AIza-mock-${P.docs}`, models: [GEMINI_MODEL], base_url: mockUrl },
    },
  };
  return products;
}

export function limitsPolicy(): string {
  return [
    // Dollars per million tokens: every request of MODEL gets a cost_usd, which /admin/usage adds up.
    'prices:',
    `  ${MODEL}: {input: 0.15, cached_input: 0.075, output: 0.6}`,
    'defaults:',
    '  limits:',
    '    requests_per_second: 0',
    '    user_requests_per_second: 0',
    '    daily_requests: 0',
    '    user_daily_requests: 100000',
    '    daily_tokens: 0',
    '    user_daily_tokens: 0',
    '  policy:',
    `    max_tokens: ${TOKEN_MAX_TOKENS}`,
    '  auto_block: {rejections: 0, window_seconds: 60, block_seconds: 60}',
    'products:',
    `  ${P.userQps}:`,
    '    limits: {user_requests_per_second: 4}',
    `  ${P.productQps}:`,
    '    limits: {requests_per_second: 3}',
    `  ${P.daily}:`,
    '    limits: {daily_requests: 5}',
    `  ${P.burst}:`,
    '    limits: {daily_requests: 50}',
    `  ${P.userDaily}:`,
    '    limits: {user_daily_requests: 3}',
    `  ${P.tokens}:`,
    `    limits: {daily_tokens: ${TOKEN_CAP}}`,
    `  ${P.userTokens}:`,
    `    limits: {user_daily_tokens: ${USER_TOKEN_CAP}}`,
    `  ${P.overshoot}:`,
    `    limits: {daily_tokens: ${OVERSHOOT_CAP}}`,
    `  ${P.policy}:`,
    `    policy: {max_tokens: ${POLICY_MAX_TOKENS}, temperature: {min: 0, max: 1}, max_request_bytes: ${POLICY_MAX_BYTES}, max_stream_seconds: 1}`,
    `  ${P.autoBlock}:`,
    '    limits: {user_requests_per_second: 1}',
    '    auto_block: {rejections: 3, window_seconds: 60, block_seconds: 30}',
    `  ${P.outage}:`,
    '    limits: {user_requests_per_second: 2}',
    `  ${P.warm}:`,
    '    limits: {daily_tokens: 1000000000}',
    `  ${P.drain}:`,
    '    limits: {daily_tokens: 1000000000}',
    `  ${P.spent}:`,
    '    limits: {requests_per_second: 1, user_daily_requests: 1}',
    `  ${P.docs}:`,
    `    limits: {user_daily_tokens: ${DOCS_USER_TOKEN_CAP}}`,
    '',
  ].join('\n');
}

// ---------------------------------------------------------------------------------------------
// Time
// ---------------------------------------------------------------------------------------------

/** Waits until just after a wall-clock second starts, so a burst lands inside one per-second window. */
export async function startOfSecond(offsetMs = 15): Promise<void> {
  const ms = Date.now() % 1000;
  await sleep((1000 - ms + offsetMs) % 1000 || 1000);
}

/** Whole seconds to the next UTC midnight (what the gateway's Retry-After should say for daily caps). */
export function secondsToMidnight(now = Date.now()): number {
  const next = new Date(now);
  next.setUTCHours(24, 0, 0, 0);
  return Math.ceil((next.getTime() - now) / 1000);
}

export function today(): string {
  return new Date().toISOString().slice(0, 10);
}

// ---------------------------------------------------------------------------------------------
// HTTP
// ---------------------------------------------------------------------------------------------

export interface Answer {
  id: string;
  status: number;
  headers: Headers;
  json: unknown;
  text: string;
  ms: number;
  gateway: Gateway;
}

export interface ErrorBody {
  error: { message: string; type: string; code: string; param: string | null };
}

export function errorOf(answer: Answer): ErrorBody['error'] {
  return (answer.json as ErrorBody).error;
}

/** One request through `gateway`, with its own X-Request-Id, timed. */
export async function send(
  gateway: Gateway,
  path: string,
  options: { id: string; token: string | null; method?: string; body?: unknown; raw?: string; headers?: Record<string, string> },
): Promise<Answer> {
  const headers: Record<string, string> = { ...options.headers, 'x-request-id': options.id };
  if (options.token !== null) headers.authorization = `Bearer ${options.token}`;
  if (options.body !== undefined || options.raw !== undefined) headers['content-type'] = 'application/json';
  const start = performance.now();
  const res = await gateway.fetch(path, {
    method: options.method ?? (options.body === undefined && options.raw === undefined ? 'GET' : 'POST'),
    headers,
    body: options.raw ?? (options.body === undefined ? undefined : JSON.stringify(options.body)),
    signal: AbortSignal.timeout(20_000),
  });
  const text = await res.text();
  const ms = performance.now() - start;
  let json: unknown = null;
  try {
    json = JSON.parse(text);
  } catch {
    json = null;
  }
  return { id: options.id, status: res.status, headers: res.headers, json, text, ms, gateway };
}

// ---------------------------------------------------------------------------------------------
// A private redis-server the suite may kill
// ---------------------------------------------------------------------------------------------

/** `redis-server` on a free port, no persistence; stopped only by this object (by its own pid). */
export class PrivateRedis {
  private child: ChildProcess | null = null;
  private exited: Promise<void> = Promise.resolve();
  private readonly dir = mkdtempSync(join(tmpdir(), 'keygate-redis-'));
  port = 0;

  get url(): string {
    return `redis://${HOST}:${this.port}`;
  }

  get running(): boolean {
    return this.child !== null && this.child.exitCode === null;
  }

  /** Starts (or restarts, on the same port) and waits until it answers PING. */
  async start(): Promise<void> {
    if (!this.port) this.port = await freePort();
    const child = spawn(
      'redis-server',
      ['--port', String(this.port), '--bind', HOST, '--save', '', '--appendonly', 'no', '--dir', this.dir],
      {
        stdio: ['ignore', 'ignore', 'ignore'],
      },
    );
    this.child = child;
    this.exited = new Promise((done) => child.once('exit', () => done()));
    // Last line of defence: never outlive the Jest worker (only this pid, never by name).
    const reap = (): void => {
      if (child.exitCode === null) child.kill('SIGKILL');
    };
    process.once('exit', reap);
    child.once('exit', () => process.removeListener('exit', reap));
    const probe = new Redis(this.url, { lazyConnect: true, maxRetriesPerRequest: 0, enableOfflineQueue: false, retryStrategy: () => null });
    probe.on('error', () => undefined);
    try {
      await waitFor(
        'private redis-server to answer PING',
        async () => {
          try {
            if (probe.status !== 'ready') {
              probe.disconnect();
              await probe.connect();
            }
            return (await probe.ping()) === 'PONG';
          } catch {
            return false;
          }
        },
        5_000,
        50,
      );
    } finally {
      probe.disconnect();
    }
  }

  /** SIGKILL, like a crashed or evicted Redis; resolves once the process is gone. */
  async kill(): Promise<void> {
    if (!this.child || this.child.exitCode !== null) return;
    this.child.kill('SIGKILL');
    await within(this.exited, 5_000);
    this.child = null;
  }

  /** A client for looking at what the gateway stored. */
  client(): Redis {
    const redis = new Redis(this.url, { maxRetriesPerRequest: 1 });
    redis.on('error', () => undefined);
    return redis;
  }

  async stop(): Promise<void> {
    await this.kill();
    rmSync(this.dir, { recursive: true, force: true });
  }
}
