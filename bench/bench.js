#!/usr/bin/env node
'use strict';
// keygate benchmark: the gateway against a bare pass-through proxy and against the mock upstream
// itself, all on 127.0.0.1, in one process tree that this script starts and always stops.
//
//   node bench/bench.js [--duration S] [--rounds N] [--connections C] [--quick] [--only plain|stream]
//                       [--redis [URL] | --no-redis] [--log-level info] [--loadgen autocannon|wrk] [--keep-logs]
//
// Targets: direct (the mock upstream), bare (bench/bare-proxy.js in front of the mock), floor
// (bench/nest-floor.js: the least a NestJS + Fastify proxy must do, nothing of keygate), gateway
// (OpenAI model), and the same gateway process with an Anthropic model (gateway-anthropic) and a
// Gemini model (gateway-gemini), which it translates to the mock's Anthropic and Gemini endpoints,
// and with the OpenAI model under HMAC authentication instead of a JWT (gateway-hmac; autocannon only).
// Load: plain and streamed chat completions at C connections and at 1, in interleaved rounds
// (all targets back to back for each mode and concurrency; the gateway targets take turns at
// going first), median across rounds.
// Limits: on Redis whenever one answers (API_KEY_SERVER_REDIS_URL, else 127.0.0.1:6379), with caps
// and token quotas set far above what the bench can reach, so every request pays for its counters
// and its token reservation but none is refused.
// Per target: req/s, p50/p99 latency, CPU time per request and RSS (idle, peak) of the target's own
// process, read from /proc. Results: a table on stdout, JSON in bench/results/latest.json.
// Exit code: 0 whenever the bench measured something (missed targets included); 1 when it could not
// (a process did not start or died, requests failed en masse); 130 on Ctrl-C.
const { spawn, fork, execFileSync, spawnSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const readline = require('node:readline');
const { parseArgs } = require('node:util');
const { hmacHeaders } = require('../dev/hmac-sign');
const { DEV_HMAC_CLIENT } = require('../dev/demo-env');
const { cleanEnv, cpuSeconds, freePort, gatewayNodeArgs, machineCpu, rssMb, UNREACHABLE_LIMITS_POLICY } = require('./processes');

const ROOT = path.join(__dirname, '..');
const MOCK_MAIN = path.join(ROOT, 'dist/apps/mock-upstream/main.js');
const GATEWAY_MAIN = path.join(ROOT, 'dist/apps/gateway/main.js');
const RESULTS_DIR = path.join(__dirname, 'results');

const CHAT_PATH = '/v1/chat/completions';
const PLAIN_BODY = { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'Say hello in one short sentence.' }], max_tokens: 64 };
/** The request of each mode for one model: the same body whatever the target, but the model. */
const bodiesFor = (model) => ({
  plain: JSON.stringify({ ...PLAIN_BODY, model }),
  stream: JSON.stringify({ ...PLAIN_BODY, model, stream: true }),
});
const UPSTREAM_KEY = 'sk-mock-bench';
// Both models are in the demo product (dev/demo-env.js), served by the mock's Anthropic and Gemini endpoints.
const PROVIDER_TARGETS = [
  { name: 'gateway-anthropic', provider: 'anthropic', model: 'claude-3-5-sonnet-20241022' },
  { name: 'gateway-gemini', provider: 'gemini', model: 'gemini-2.5-flash' },
];
// The OpenAI model again, authenticated with HMAC (SPEC §5) instead of a JWT: every request is
// signed afresh, with a body made unique by its `user` field, since the replay cache refuses a
// signature seen before. Needs autocannon (wrk cannot sign per request).
const HMAC_TARGET = 'gateway-hmac';
/** The framework floor: NestJS + Fastify + undici doing only what any proxy of chat completions must. */
const FLOOR_TARGET = 'floor';
const ALL_TARGETS = ['direct', 'bare', FLOOR_TARGET, 'gateway', ...PROVIDER_TARGETS.map((p) => p.name), HMAC_TARGET];
/** The targets of this run: all of them, but the HMAC row only with autocannon (set from the options). */
let TARGETS = ALL_TARGETS;
const isGateway = (name) => name === 'gateway' || name.startsWith('gateway-');
const DEFAULT_REDIS_URL = 'redis://127.0.0.1:6379';

// The issue's targets.
const TARGET_RPS_RATIO = 0.5;
const TARGET_ADDED_P50_MS = 0.3;
const TARGET_IDLE_RSS_MB = 90;
/**
 * The longest wait for an idle gateway's memory to settle: V8's memory reducer, which hands back the
 * young generation boot grew, runs about 16 s after start when the process idles (measured).
 */
const MEMORY_SETTLE_MS = 30_000;
// Anthropic and Gemini through translation, against the OpenAI model on the same gateway.
const TARGET_PROVIDER_RPS_RATIO = 0.8;

// A run whose failed requests exceed this share did not measure anything.
const FAILED_RUN_SHARE = 0.01;
const READY_TIMEOUT_MS = 30_000;
// 3 rounds × 2 modes × 2 concurrencies × 5 targets = 60 measured runs: at 3 s each, plus warm-up,
// settling and start-up, the default run takes about 4 minutes.
const DEFAULT_DURATION_S = 3;
const SAMPLE_MS = 50;
const SETTLE_MS = 300;
// CPU (% of one core) used by processes outside the bench above which a run is reported as disturbed.
const DISTURBED_PCT = 20;

// ---------------------------------------------------------------------------------------------
// Command line

function parseCli(argv) {
  // `--redis` may come without a URL: it then means the usual local Redis.
  const args = [...argv];
  const r = args.indexOf('--redis');
  if (r !== -1 && (r === args.length - 1 || args[r + 1].startsWith('--'))) args.splice(r + 1, 0, DEFAULT_REDIS_URL);
  const { values } = parseArgs({
    args,
    options: {
      duration: { type: 'string' },
      rounds: { type: 'string' },
      connections: { type: 'string', default: '50' },
      quick: { type: 'boolean', default: false },
      only: { type: 'string' },
      redis: { type: 'string' },
      'no-redis': { type: 'boolean', default: false },
      'log-level': { type: 'string', default: 'info' },
      loadgen: { type: 'string' },
      'keep-logs': { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (values.help) {
    process.stdout.write(
      [
        'node bench/bench.js [options]',
        `  --duration S         seconds per measured run (default ${DEFAULT_DURATION_S}; --quick: 2)`,
        '  --rounds N           interleaved rounds, median taken across them (default 3; --quick: 1)',
        '  --connections C      the high concurrency (default 50); 1 connection is always run too',
        '  --quick              1 round of 2 s runs: a smoke test',
        '  --only plain|stream  one mode only',
        '  --redis [URL]        gateway limits on this Redis (default: API_KEY_SERVER_REDIS_URL if set, else',
        `                       ${DEFAULT_REDIS_URL} when it answers, else in-memory limits)`,
        '  --no-redis           in-memory limits even when a Redis answers',
        '  --log-level L        gateway LOG_LEVEL (default info, the production default)',
        '  --loadgen NAME       autocannon or wrk (default: wrk when on PATH, else autocannon)',
        "  --keep-logs          keep the temp dir with the processes' output",
        '',
      ].join('\n'),
    );
    process.exit(0);
  }
  const num = (name, v, min) => {
    const n = Number(v);
    if (!Number.isFinite(n) || n < min) throw new UsageError(`--${name} must be a number ≥ ${min}`);
    return n;
  };
  const duration = num('duration', values.duration ?? (values.quick ? 2 : DEFAULT_DURATION_S), 1);
  const rounds = Math.floor(num('rounds', values.rounds ?? (values.quick ? 1 : 3), 1));
  const connections = Math.floor(num('connections', values.connections, 1));
  if (values.only !== undefined && values.only !== 'plain' && values.only !== 'stream')
    throw new UsageError('--only must be plain or stream');
  if (values['no-redis'] && values.redis !== undefined) throw new UsageError('--redis and --no-redis contradict each other');
  if (!['debug', 'info', 'warn', 'error'].includes(values['log-level']))
    throw new UsageError('--log-level must be debug, info, warn or error');
  const loadgen = values.loadgen ?? (onPath('wrk') ? 'wrk' : 'autocannon');
  if (loadgen !== 'wrk' && loadgen !== 'autocannon') throw new UsageError('--loadgen must be autocannon or wrk');
  if (loadgen === 'wrk' && !onPath('wrk')) throw new UsageError('--loadgen wrk: wrk is not on PATH');
  return {
    duration,
    rounds,
    connections,
    warmup: Math.min(2, duration) / (values.quick ? 2 : 1),
    modes: values.only ? [values.only] : ['plain', 'stream'],
    concurrencies: connections === 1 ? [1] : [connections, 1],
    // undefined: look for one (see resolveRedis); false: in-memory limits.
    redis: values['no-redis'] ? false : values.redis,
    logLevel: values['log-level'],
    loadgen,
    keepLogs: values['keep-logs'],
  };
}

class UsageError extends Error {}

function onPath(cmd) {
  return (process.env.PATH ?? '').split(path.delimiter).some((dir) => {
    try {
      fs.accessSync(path.join(dir, cmd), fs.constants.X_OK);
      return true;
    } catch {
      return false;
    }
  });
}

// ---------------------------------------------------------------------------------------------
// Small helpers

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const log = (line) => process.stderr.write(`[bench] ${line}\n`);

function median(values) {
  const v = values.filter((x) => typeof x === 'number' && Number.isFinite(x)).sort((a, b) => a - b);
  if (v.length === 0) return null;
  const mid = v.length >> 1;
  return v.length % 2 ? v[mid] : (v[mid - 1] + v[mid]) / 2;
}

/** Keeps the last `size` lines of a stream, and how many there were. */
class Tail {
  constructor(size = 50) {
    this.size = size;
    this.lines = [];
    this.count = 0;
  }
  push(line) {
    this.count++;
    this.lines.push(line);
    if (this.lines.length > this.size) this.lines.shift();
  }
}

// ---------------------------------------------------------------------------------------------
// Child processes: everything started is tracked here and stopped on every way out.

const children = [];
let stopping = false;
const deaths = [];

/** `describe` (optional) returns the process's last output, shown if it dies. */
function track(name, child, describe) {
  const entry = { name, child, exited: false, describe };
  children.push(entry);
  child.on('exit', (code, signal) => {
    entry.exited = true;
    if (!stopping) deaths.push({ name, code, signal, describe });
  });
  child.on('error', (error) => {
    entry.exited = true;
    if (!stopping) deaths.push({ name, error: error.message });
  });
  return child;
}

async function stopAll() {
  stopping = true;
  const alive = children.filter((c) => !c.exited && c.child.exitCode === null && c.child.signalCode === null);
  for (const c of alive) {
    try {
      c.child.kill('SIGTERM');
    } catch {
      // already gone
    }
  }
  const deadline = Date.now() + 5000;
  while (Date.now() < deadline && alive.some((c) => !c.exited)) await sleep(50);
  for (const c of alive) {
    if (!c.exited) {
      log(`${c.name} (pid ${c.child.pid}) ignored SIGTERM; killing it`);
      try {
        c.child.kill('SIGKILL');
      } catch {
        // already gone
      }
    }
  }
}

// Last resort when the process ends without stopAll (uncaught error mid-way): kill synchronously.
process.on('exit', () => {
  for (const c of children) {
    if (!c.exited) {
      try {
        c.child.kill('SIGKILL');
      } catch {
        // already gone
      }
    }
  }
});

class BenchFailure extends Error {}

function checkAlive() {
  if (deaths.length) {
    const what = deaths
      .map(
        (d) =>
          `${d.name} (${d.error ?? d.signal ?? `code ${d.code}${d.code === 0 ? ': a clean exit, i.e. it was told to stop from outside the bench' : ''}`})`,
      )
      .join(', ');
    const output = deaths.map((d) => (d.describe ? `\n${d.describe()}` : '')).join('');
    throw new BenchFailure(`process exited during the bench: ${what}${output}`);
  }
}

/** Resolves with the first stdout line matching `re`; rejects when the child exits or time runs out. */
function waitForLine(name, child, stdoutTail, re, timeoutMs) {
  return new Promise((resolve, reject) => {
    const rl = readline.createInterface({ input: child.stdout });
    let done = false;
    const finish = (fn, arg) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      child.off('exit', onExit);
      fn(arg);
    };
    const onExit = (code, signal) => finish(reject, new BenchFailure(`${name} exited before it was ready (${signal ?? `code ${code}`})`));
    const timer = setTimeout(() => finish(reject, new BenchFailure(`${name} not ready after ${timeoutMs} ms`)), timeoutMs);
    child.on('exit', onExit);
    // readline keeps draining stdout after the match, so the child can never block on a full pipe.
    rl.on('line', (line) => {
      stdoutTail.push(line);
      if (re.test(line)) finish(resolve, line);
    });
  });
}

function tailText(name, out, err) {
  const lines = [...out.lines.slice(-10).map((l) => `stdout: ${l}`), ...err.lines.slice(-10).map((l) => `stderr: ${l}`)];
  return lines.length ? `  ${name} output:\n    ${lines.join('\n    ')}` : `  (${name} printed nothing)`;
}

function drainTo(stream, tail) {
  readline.createInterface({ input: stream }).on('line', (line) => tail.push(line));
}

function ensureBuilt(app, main) {
  if (fs.existsSync(main)) return;
  log(`${path.relative(ROOT, main)} is missing: running npx nest build ${app}`);
  const r = spawnSync('npx', ['nest', 'build', app], { cwd: ROOT, stdio: ['ignore', 2, 2], timeout: 300_000 });
  if (r.status !== 0 || !fs.existsSync(main))
    throw new BenchFailure(`npx nest build ${app} failed (${r.error?.message ?? `exit ${r.status}`})`);
}

/** The URL with any password masked, for printing. */
function redactUrl(url) {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString().replace(/\/$/, '');
  } catch {
    return url;
  }
}

/** PING and INFO server through ioredis (the gateway's own client): { ok, pid } or { ok: false, error }. */
async function probeRedis(url) {
  const { Redis } = require('ioredis');
  const client = new Redis(url, {
    lazyConnect: true,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    connectTimeout: 1000,
    retryStrategy: () => null,
  });
  let connectionError = null;
  client.on('error', (error) => {
    connectionError = error; // the cause behind ioredis's "Connection is closed"
  });
  try {
    await client.connect();
    await client.ping();
    // The server's pid, when it runs on this machine, so its CPU can be read from /proc like the others'.
    const m = /^process_id:(\d+)/m.exec(await client.info('server'));
    let pid = null;
    if (m && ['127.0.0.1', 'localhost', '[::1]'].includes(new URL(url).hostname)) {
      try {
        if (fs.readFileSync(`/proc/${m[1]}/comm`, 'utf8').startsWith('redis')) pid = Number(m[1]);
      } catch {
        // not in our pid namespace
      }
    }
    return { ok: true, pid };
  } catch (error) {
    return { ok: false, error: connectionError ? `${connectionError.code ?? ''} ${connectionError.message}`.trim() : error.message };
  } finally {
    client.disconnect();
  }
}

/**
 * Where the gateway's limits live: `--redis URL`, else API_KEY_SERVER_REDIS_URL, else the local
 * default when it answers; `--no-redis` (or no Redis answering) → in-memory limits. A Redis that was
 * asked for explicitly and does not answer is a failure, not a silent fallback.
 */
async function resolveRedis(opts) {
  if (opts.redis === false) return { url: null, source: '--no-redis', pid: null };
  const fromEnv = process.env.API_KEY_SERVER_REDIS_URL || undefined;
  const explicit = opts.redis ?? fromEnv;
  const source = opts.redis ? '--redis' : fromEnv ? 'API_KEY_SERVER_REDIS_URL' : 'answered on 127.0.0.1:6379';
  const url = explicit ?? DEFAULT_REDIS_URL;
  const probe = await probeRedis(url);
  if (!probe.ok) {
    if (explicit) throw new BenchFailure(`Redis ${redactUrl(url)} (from ${source}) does not answer: ${probe.error}`);
    return { url: null, source: 'none answered on 127.0.0.1:6379', pid: null };
  }
  return { url, source, pid: probe.pid };
}

async function startMock() {
  ensureBuilt('mock-upstream', MOCK_MAIN);
  const port = await freePort();
  const out = new Tail();
  const err = new Tail();
  const child = track(
    'mock-upstream',
    spawn(process.execPath, [MOCK_MAIN], { cwd: ROOT, env: { ...cleanEnv(), PORT: String(port) }, stdio: ['ignore', 'pipe', 'pipe'] }),
    () => tailText('mock-upstream', out, err),
  );
  drainTo(child.stderr, err);
  try {
    await waitForLine('mock-upstream', child, out, /listening/, 15_000);
  } catch (error) {
    error.message += err.lines.length ? `\n  mock stderr:\n    ${err.lines.join('\n    ')}` : '';
    throw error;
  }
  return { name: 'mock-upstream', child, pid: child.pid, port, out, err };
}

/** Starts one of the bench's reference proxies (bare-proxy.js, nest-floor.js) in front of the mock. */
async function startReference(name, script, mockPort) {
  const port = await freePort();
  const out = new Tail();
  const err = new Tail();
  const child = track(
    name,
    spawn(process.execPath, [path.join(__dirname, script)], {
      cwd: ROOT,
      env: { ...cleanEnv(), PORT: String(port), UPSTREAM: `http://127.0.0.1:${mockPort}` },
      stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
    }),
    () => tailText(name, out, err),
  );
  drainTo(child.stderr, err);
  try {
    await waitForLine(name, child, out, /listening/, 15_000);
  } catch (error) {
    error.message += err.lines.length ? `\n  ${name} stderr:\n    ${err.lines.join('\n    ')}` : '';
    throw error;
  }
  return { name, child, pid: child.pid, port, out, err };
}

async function startGateway(tmp, mockPort, opts) {
  ensureBuilt('gateway', GATEWAY_MAIN);
  // The repo's own demo product (three providers on the mock) with limits no bench can reach.
  const { demoEnv } = require(path.join(ROOT, 'dev/demo-env'));
  const policyFile = path.join(tmp, 'policy.yaml');
  fs.writeFileSync(policyFile, UNREACHABLE_LIMITS_POLICY);
  const port = await freePort();
  const stdoutFile = path.join(tmp, 'gateway.stdout.jsonl');
  const stderrFile = path.join(tmp, 'gateway.stderr.log');
  const outFd = fs.openSync(stdoutFile, 'w');
  const errFd = fs.openSync(stderrFile, 'w');
  const env = {
    ...cleanEnv(),
    ...demoEnv(mockPort),
    PORT: String(port),
    LOG_LEVEL: opts.logLevel,
    API_KEY_SERVER_POLICY_FILE: policyFile,
    // Only shortens the stop at the end; nothing is draining by then.
    API_KEY_SERVER_SHUTDOWN_DRAIN_SECONDS: '2',
    ...(opts.redisUrl ? { API_KEY_SERVER_REDIS_URL: opts.redisUrl } : {}),
  };
  // The audit goes straight to a file (no pipe through this process, nothing held in memory), the
  // way a container runtime collects stdout.
  const gw = { name: 'gateway', pid: null, port, stdoutFile, stderrFile, scannedTo: 0 };
  const child = track(
    'gateway',
    spawn(process.execPath, [...gatewayNodeArgs(), GATEWAY_MAIN], { cwd: ROOT, env, stdio: ['ignore', outFd, errFd] }),
    () => gatewayOutputTail(gw),
  );
  fs.closeSync(outFd);
  fs.closeSync(errFd);
  gw.child = child;
  gw.pid = child.pid;

  const deadline = Date.now() + READY_TIMEOUT_MS;
  let last = 'no answer';
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new BenchFailure(
        `gateway exited before it was ready (${child.signalCode ?? `code ${child.exitCode}`})\n${gatewayOutputTail(gw)}`,
      );
    }
    try {
      const res = await fetch(`http://127.0.0.1:${port}/readyz`, { signal: AbortSignal.timeout(1000) });
      const text = await res.text();
      // With Redis, ready means counting through it too (not the per-replica fallback).
      if (res.status === 200 && (!opts.redisUrl || redisModeOf(text) === 'shared')) break;
      last = `${res.status} ${text.slice(0, 300)}`;
    } catch (error) {
      last = error.cause?.code ?? error.message;
    }
    if (Date.now() > deadline)
      throw new BenchFailure(`gateway /readyz not 200 after ${READY_TIMEOUT_MS} ms (last: ${last})\n${gatewayOutputTail(gw)}`);
    await sleep(100);
  }
  return gw;
}

/** The limits mode /readyz reports: 'shared' (on Redis), 'degraded: …' or 'not configured …'. */
function redisModeOf(readyzText) {
  try {
    const json = JSON.parse(readyzText);
    return (json.details ?? json.info ?? json.error)?.redis?.mode ?? null;
  } catch {
    return null;
  }
}

async function gatewayRedisMode(gw) {
  try {
    const res = await fetch(`http://127.0.0.1:${gw.port}/readyz`, { signal: AbortSignal.timeout(2000) });
    return redisModeOf(await res.text()) ?? `(no redis detail, status ${res.status})`;
  } catch (error) {
    return `(readyz failed: ${error.cause?.code ?? error.message})`;
  }
}

/** Requests per mock route so far, from the mock's own counters (GET /__mock/stats, never counted itself). */
async function mockRoutes(mock) {
  const res = await fetch(`http://127.0.0.1:${mock.port}/__mock/stats`, { signal: AbortSignal.timeout(5000) });
  if (res.status !== 200) throw new BenchFailure(`mock /__mock/stats answered ${res.status}`);
  return (await res.json()).byRoute;
}

function routeDelta(before, after) {
  const d = {};
  for (const [k, v] of Object.entries(after)) if (v - (before[k] ?? 0)) d[k] = v - (before[k] ?? 0);
  return d;
}

/** The mock route a target's requests must land on, per mode. */
function expectedRoute(target, mode) {
  if (target.provider === 'anthropic') return 'anthropic.messages';
  if (target.provider === 'gemini') return mode === 'stream' ? 'gemini.streamGenerateContent' : 'gemini.generateContent';
  return 'openai.chat';
}

function gatewayOutputTail(gw, n = 20) {
  const read = (f) => {
    try {
      const text = fs.readFileSync(f, 'utf8');
      return text.split('\n').filter(Boolean).slice(-n);
    } catch {
      return [];
    }
  };
  const lines = [...read(gw.stderrFile).map((l) => `stderr: ${l}`), ...read(gw.stdoutFile).map((l) => `stdout: ${l}`)];
  return lines.length ? `  gateway output:\n    ${lines.join('\n    ')}` : '  (gateway printed nothing)';
}

/**
 * Reads what the gateway wrote since the last scan: audit records (counted by status) and every
 * other line at WARNING or above (kept as samples). Streams the file; never loads it whole.
 */
async function scanGatewayOutput(gw) {
  const size = fs.statSync(gw.stdoutFile).size;
  const report = { auditLines: 0, auditStatus: {}, otherLines: 0, severe: 0, severeSamples: [], unparsable: 0 };
  // One example per distinct message (with its count), so a repeated warning does not hide the rest.
  const distinct = new Map();
  const keep = (key, line) => {
    const seen = distinct.get(key);
    if (seen) seen.count++;
    else if (distinct.size < 10) distinct.set(key, { count: 1, example: line.slice(0, 500) });
  };
  if (size > gw.scannedTo) {
    const rl = readline.createInterface({ input: fs.createReadStream(gw.stdoutFile, { start: gw.scannedTo, end: size - 1 }) });
    let consumed = 0;
    for await (const line of rl) {
      consumed += Buffer.byteLength(line) + 1;
      if (!line) continue;
      let rec;
      try {
        rec = JSON.parse(line);
      } catch {
        report.unparsable++;
        keep('(not JSON)', line);
        continue;
      }
      if (rec.type === 'audit') {
        report.auditLines++;
        report.auditStatus[rec.status] = (report.auditStatus[rec.status] ?? 0) + 1;
        if (rec.status !== 200 && rec.status !== 499) keep(`audit status ${rec.status} ${rec.failure}`, line);
      } else {
        report.otherLines++;
        if (['WARNING', 'ERROR', 'CRITICAL', 'ALERT'].includes(rec.severity)) {
          report.severe++;
          keep(`${rec.severity} ${rec.message}`, line);
        }
      }
    }
    report.severeSamples = [...distinct.values()].map((d) => (d.count > 1 ? `(×${d.count} in this run) ${d.example}` : d.example));
    // A last line still being written stays for the next scan.
    gw.scannedTo += Math.min(consumed, size - gw.scannedTo);
  }
  const errSize = fs.statSync(gw.stderrFile).size;
  report.stderrBytes = errSize;
  return report;
}

// ---------------------------------------------------------------------------------------------
// Load generators

class AutocannonWorker {
  async start() {
    this.child = track(
      'load-worker',
      fork(path.join(__dirname, 'load-worker.js'), [], { cwd: ROOT, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] }),
    );
    this.pid = this.child.pid;
    this.nextId = 1;
    this.pending = new Map();
    this.child.on('message', (msg) => {
      const p = this.pending.get(msg.id);
      if (!p) return;
      this.pending.delete(msg.id);
      if (msg.type === 'result') p.resolve(msg.result);
      else p.reject(new BenchFailure(`load worker: ${msg.error}`));
    });
    this.child.on('exit', (code, signal) => {
      for (const p of this.pending.values()) p.reject(new BenchFailure(`load worker exited (${signal ?? `code ${code}`})`));
      this.pending.clear();
    });
    await new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new BenchFailure('load worker did not start')), 15_000);
      this.child.once('message', (msg) => {
        clearTimeout(timer);
        if (msg.type === 'ready') resolve();
        else reject(new BenchFailure('load worker did not start'));
      });
    });
  }

  run({ url, auth, hmac, body, connections, duration }) {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => {
          this.pending.delete(id);
          reject(new BenchFailure(`load run did not finish within ${duration + 30} s`));
        },
        (duration + 30) * 1000,
      );
      this.pending.set(id, {
        resolve: (r) => (clearTimeout(timer), resolve(r)),
        reject: (e) => (clearTimeout(timer), reject(e)),
      });
      this.child.send({
        type: 'run',
        id,
        opts: {
          url,
          method: 'POST',
          headers: hmac ? { 'content-type': 'application/json' } : { 'content-type': 'application/json', authorization: auth },
          hmac,
          body,
          connections,
          duration,
          timeout: 10,
        },
      });
    });
  }
}

class WrkRunner {
  async start() {
    this.pid = null;
    this.currentPid = null;
  }

  run({ url, auth, body, connections, duration }) {
    const seconds = Math.max(1, Math.round(duration));
    const threads = Math.min(connections, Math.max(1, os.availableParallelism?.() ?? os.cpus().length));
    const args = [
      '-t',
      String(threads),
      '-c',
      String(connections),
      '-d',
      `${seconds}s`,
      '--timeout',
      '10s',
      '-s',
      path.join(__dirname, 'wrk-report.lua'),
      url,
    ];
    return new Promise((resolve, reject) => {
      const child = track(
        'wrk',
        spawn('wrk', args, { env: { ...process.env, BENCH_BODY: body, BENCH_AUTH: auth }, stdio: ['ignore', 'pipe', 'pipe'] }),
      );
      this.currentPid = child.pid;
      // wrk ending is part of a run, not a death.
      child.removeAllListeners('exit');
      const entry = children.find((c) => c.child === child);
      let out = '';
      let err = '';
      child.stdout.on('data', (d) => (out += d));
      child.stderr.on('data', (d) => (err += d));
      const timer = setTimeout(() => child.kill('SIGKILL'), (seconds + 30) * 1000);
      child.on('exit', (code, signal) => {
        entry.exited = true;
        this.currentPid = null;
        clearTimeout(timer);
        const line = out.split('\n').find((l) => l.startsWith('BENCH_RESULT '));
        if (!line) return reject(new BenchFailure(`wrk failed (${signal ?? `code ${code}`}): ${(err || out).trim().slice(0, 500)}`));
        const r = JSON.parse(line.slice('BENCH_RESULT '.length));
        const durationS = r.duration_us / 1e6;
        const errors = r.connect + r.read + r.write;
        resolve({
          durationS,
          responses: r.requests,
          ok: r.requests - r.status,
          rps: r.requests / durationS,
          latencyMs: { mean: r.mean_us / 1000, p50: r.p50_us / 1000, p90: r.p90_us / 1000, p99: r.p99_us / 1000, max: r.max_us / 1000 },
          statusCounts: null,
          non2xx: r.status,
          errors,
          timeouts: r.timeout,
          resets: 0,
          errorSamples: errors ? [{ message: `connect ${r.connect}, read ${r.read}, write ${r.write}`, count: errors }] : [],
        });
      });
    });
  }
}

// ---------------------------------------------------------------------------------------------
// Checks before load: each target answers the bench's request correctly once.

/** A body made unique by its `user` field and the three HMAC headers over it (the scheme of scripts/sign.js). */
function signedRequest(hmac, urlPath, body, tag) {
  const unique = JSON.stringify({ ...JSON.parse(body), user: `bench-${tag}` });
  return { body: unique, headers: { 'content-type': 'application/json', ...hmacHeaders(hmac, 'POST', urlPath, unique) } };
}

async function preflight(targets, modes, mock) {
  for (const t of targets) {
    for (const mode of modes) {
      let res;
      let text;
      const routesBefore = await mockRoutes(mock);
      try {
        const signed = t.hmac ? signedRequest(t.hmac, new URL(t.url).pathname, t.bodies[mode], `preflight-${mode}`) : null;
        res = await fetch(t.url, {
          method: 'POST',
          headers: signed ? signed.headers : { 'content-type': 'application/json', authorization: t.auth() },
          body: signed ? signed.body : t.bodies[mode],
          signal: AbortSignal.timeout(10_000),
        });
        text = await res.text();
      } catch (error) {
        throw new BenchFailure(`preflight ${t.name} ${mode}: request failed: ${error.cause?.code ?? error.message}`);
      }
      const bad = (why) => new BenchFailure(`preflight ${t.name} ${mode}: ${why}; status ${res.status}, body: ${text.slice(0, 400)}`);
      if (res.status !== 200) throw bad('not 200');
      if (mode === 'plain') {
        let json;
        try {
          json = JSON.parse(text);
        } catch {
          throw bad('body is not JSON');
        }
        if (typeof json?.choices?.[0]?.message?.content !== 'string') throw bad('no choices[0].message.content');
      } else {
        if (!String(res.headers.get('content-type')).includes('text/event-stream'))
          throw bad(`content-type ${res.headers.get('content-type')}`);
        if (!/^data: \{/m.test(text) || !/data: \[DONE\]\s*$/.test(text)) throw bad('not an SSE stream ending in data: [DONE]');
        if (!/"chat\.completion\.chunk"/.test(text)) throw bad('no chat.completion.chunk in the stream');
      }
      // The request went to the provider the model names, and only there (no retry, no fallback).
      const delta = routeDelta(routesBefore, await mockRoutes(mock));
      const want = expectedRoute(t, mode);
      if (JSON.stringify(delta) !== JSON.stringify({ [want]: 1 }))
        throw bad(`expected exactly one mock ${want} request, the mock saw ${JSON.stringify(delta)}`);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// One measured run

async function measure(loadgen, target, mock, redis, { mode, connections, duration }) {
  await sleep(SETTLE_MS);
  checkAlive();
  const routesBefore = await mockRoutes(mock);
  const redisCpu0 = redis.pid ? cpuSeconds(redis.pid) : null;
  const pid = target.pid;
  const separateMock = target.pid !== mock.pid;
  const rssIdle = rssMb(pid);
  const mockRssIdle = separateMock ? rssMb(mock.pid) : null;
  let rssPeak = rssIdle ?? 0;
  let mockRssPeak = mockRssIdle ?? 0;
  // The autocannon worker lives across runs; wrk is a new process per run, starting at zero CPU and
  // read for the last time by the sampler just before it exits.
  let loadCpuLast = null;
  const sample = () => {
    if (loadgen.currentPid) {
      const c = cpuSeconds(loadgen.currentPid);
      if (c !== null) loadCpuLast = c;
    }
    const r = rssMb(pid);
    if (r !== null && r > rssPeak) rssPeak = r;
    if (separateMock) {
      const m = rssMb(mock.pid);
      if (m !== null && m > mockRssPeak) mockRssPeak = m;
    }
  };
  const cpu0 = cpuSeconds(pid);
  const mockCpu0 = separateMock ? cpuSeconds(mock.pid) : null;
  const loadCpu0 = loadgen.pid ? cpuSeconds(loadgen.pid) : 0;
  const machine0 = machineCpu();
  const self0 = process.cpuUsage();
  const wall0 = process.hrtime.bigint();
  const timer = setInterval(sample, SAMPLE_MS);
  let r;
  try {
    r = await loadgen.run({ url: target.url, auth: target.auth(), hmac: target.hmac, body: target.bodies[mode], connections, duration });
  } finally {
    clearInterval(timer);
  }
  sample();
  const wallS = Number(process.hrtime.bigint() - wall0) / 1e9;
  const cpu = cpuSeconds(pid) - cpu0;
  const mockCpu = separateMock ? cpuSeconds(mock.pid) - mockCpu0 : null;
  const loadCpu = loadgen.pid ? cpuSeconds(loadgen.pid) - loadCpu0 : loadCpuLast;
  // Redis may also serve other clients (tests of other sessions); during a gateway run it is mostly the gateway.
  const redisCpu = redis.pid && redisCpu0 !== null ? (cpuSeconds(redis.pid) ?? redisCpu0) - redisCpu0 : null;
  const machine1 = machineCpu();
  const self = process.cpuUsage(self0);
  // Whatever else ran on the machine meanwhile (other sessions, builds): it competes for the same cores.
  let machineBusyPct = null;
  let otherPct = null;
  let stealPct = null;
  if (machine0 && machine1) {
    machineBusyPct = ((machine1.busy - machine0.busy) / wallS) * 100;
    stealPct = ((machine1.steal - machine0.steal) / wallS) * 100;
    const ours = cpu + (mockCpu ?? 0) + (loadCpu ?? 0) + (redisCpu ?? 0) + (self.user + self.system) / 1e6;
    otherPct = loadCpu === null ? null : Math.max(0, ((machine1.busy - machine0.busy - ours) / wallS) * 100);
  }
  const n = r.responses;
  const failed = r.non2xx + r.errors + r.timeouts;
  // Every upstream request of the run went where the target's model says (requests still in flight
  // when the run stopped reach the mock too, so a few more than the responses is normal).
  const routes = routeDelta(routesBefore, await mockRoutes(mock));
  const want =
    target.name === 'direct' || target.name === 'bare' || target.name === FLOOR_TARGET ? 'openai.chat' : expectedRoute(target, mode);
  const strayRoutes = Object.fromEntries(Object.entries(routes).filter(([k]) => k !== want));
  return {
    target: target.name,
    mode,
    connections,
    rps: r.rps,
    responses: n,
    p50: r.latencyMs.p50,
    p90: r.latencyMs.p90,
    p99: r.latencyMs.p99,
    maxMs: r.latencyMs.max,
    meanMs: r.latencyMs.mean,
    cpuUsPerReq: n ? (cpu * 1e6) / n : null,
    cpuPct: (cpu / wallS) * 100,
    mockCpuUsPerReq: separateMock && n ? (mockCpu * 1e6) / n : null,
    loadgenCpuPct: loadCpu === null ? null : (loadCpu / wallS) * 100,
    mockCpuPct: separateMock ? (mockCpu / wallS) * 100 : null,
    redisCpuUsPerReq: redisCpu !== null && n ? (redisCpu * 1e6) / n : null,
    redisCpuPct: redisCpu !== null ? (redisCpu / wallS) * 100 : null,
    upstreamRequests: routes[want] ?? 0,
    strayRoutes: Object.keys(strayRoutes).length ? strayRoutes : null,
    machineBusyPct,
    otherPct,
    stealPct,
    rssIdleMb: rssIdle,
    rssPeakMb: rssPeak,
    mockRssIdleMb: mockRssIdle,
    mockRssPeakMb: separateMock ? mockRssPeak : null,
    statusCounts: r.statusCounts,
    non2xx: r.non2xx,
    errors: r.errors,
    timeouts: r.timeouts,
    errorSamples: r.errorSamples,
    flagged: failed > 0,
    failedShare: n + r.errors + r.timeouts ? failed / (n + r.errors + r.timeouts) : 1,
  };
}

// ---------------------------------------------------------------------------------------------
// Output

const fmt = (v, digits = 0) => (v === null || v === undefined || !Number.isFinite(v) ? '-' : v.toFixed(digits));
const fmtMs = (v) => (v === null || v === undefined ? '-' : v < 10 ? v.toFixed(3) : v < 100 ? v.toFixed(2) : v.toFixed(1));

function table(rows, columns) {
  const widths = columns.map((c) => Math.max(c.title.length, ...rows.map((r) => String(c.get(r)).length)));
  const line = (cells) =>
    cells
      .map((cell, i) => (columns[i].left ? String(cell).padEnd(widths[i]) : String(cell).padStart(widths[i])))
      .join('  ')
      .trimEnd();
  return [line(columns.map((c) => c.title)), ...rows.map((r) => line(columns.map((c) => c.get(r))))].join('\n');
}

function aggregate(runs, opts) {
  const groups = [];
  for (const mode of opts.modes) {
    for (const connections of opts.concurrencies) {
      const rows = TARGETS.map((target) => {
        const rs = runs.filter((r) => r.target === target && r.mode === mode && r.connections === connections);
        const pick = (k) => rs.map((r) => r[k]);
        return {
          target,
          mode,
          connections,
          rounds: rs.length,
          rps: median(pick('rps')),
          rpsMin: rs.length ? Math.min(...pick('rps')) : null,
          rpsMax: rs.length ? Math.max(...pick('rps')) : null,
          p50: median(pick('p50')),
          p99: median(pick('p99')),
          cpuUsPerReq: median(pick('cpuUsPerReq')),
          cpuPct: median(pick('cpuPct')),
          mockCpuUsPerReq: median(pick('mockCpuUsPerReq')),
          redisCpuUsPerReq: median(pick('redisCpuUsPerReq')),
          loadgenCpuPct: median(pick('loadgenCpuPct')),
          otherPct: median(pick('otherPct')),
          rssIdleMb: median(pick('rssIdleMb')),
          rssPeakMb: rs.length ? Math.max(...pick('rssPeakMb')) : null,
          non2xx: rs.reduce((s, r) => s + r.non2xx, 0),
          errors: rs.reduce((s, r) => s + r.errors + r.timeouts, 0),
          flaggedRounds: rs.filter((r) => r.flagged).length,
        };
      });
      groups.push({ mode, connections, rows });
    }
  }
  return groups;
}

/** Per-round paired comparisons (same round, back to back), then the median across rounds. */
function paired(runs, mode, connections, fn) {
  const rounds = [...new Set(runs.map((r) => r.round))];
  const values = rounds.map((round) => {
    const get = (target) => runs.find((r) => r.round === round && r.mode === mode && r.connections === connections && r.target === target);
    const x = Object.fromEntries(TARGETS.map((t) => [t, get(t)]));
    // Only the targets fn reads must be there (a round cut short by a failure may lack the others).
    try {
      const v = fn(x);
      return typeof v === 'number' && Number.isFinite(v) ? v : null;
    } catch {
      return null;
    }
  });
  return { median: median(values), perRound: values };
}

function summarize(runs, opts, startup) {
  const checks = [];
  const hi = Math.max(...opts.concurrencies);
  for (const mode of opts.modes) {
    const ratio = paired(runs, mode, hi, (x) => x.gateway.rps / x.bare.rps);
    checks.push({
      name: `gateway/bare req/s, ${mode} @${hi}`,
      value: ratio.median,
      perRound: ratio.perRound,
      shown: `${fmt(ratio.median, 2)}×`,
      target: `≥ ${TARGET_RPS_RATIO.toFixed(2)}×`,
      pass: ratio.median === null ? undefined : ratio.median >= TARGET_RPS_RATIO,
      note: hi === 1 ? 'no high-concurrency runs; measured @1' : undefined,
    });
  }
  // Where the gateway's cost goes: the framework's share (floor/bare) and keygate's own (gateway/floor).
  if (TARGETS.includes(FLOOR_TARGET)) {
    for (const mode of opts.modes) {
      const floorVsBare = paired(runs, mode, hi, (x) => x[FLOOR_TARGET].rps / x.bare.rps);
      const gatewayVsFloor = paired(runs, mode, hi, (x) => x.gateway.rps / x[FLOOR_TARGET].rps);
      checks.push({
        name: `floor/bare req/s, ${mode} @${hi} (NestJS + Fastify alone)`,
        value: floorVsBare.median,
        perRound: floorVsBare.perRound,
        shown: `${fmt(floorVsBare.median, 2)}×`,
        target: '(info)',
        pass: null,
      });
      checks.push({
        name: `gateway/floor req/s, ${mode} @${hi} (keygate's own work)`,
        value: gatewayVsFloor.median,
        perRound: gatewayVsFloor.perRound,
        shown: `${fmt(gatewayVsFloor.median, 2)}×`,
        target: '(info)',
        pass: null,
      });
    }
  }
  for (const p of PROVIDER_TARGETS) {
    for (const mode of opts.modes) {
      for (const c of opts.concurrencies) {
        const ratio = paired(runs, mode, c, (x) => x[p.name].rps / x.gateway.rps);
        const addedP50 = paired(runs, mode, c, (x) => x[p.name].p50 - x.gateway.p50);
        checks.push({
          name: `${p.name}/gateway${p.provider === 'anthropic' ? ' (openai)' : ''} req/s, ${mode} @${c}`,
          value: ratio.median,
          perRound: ratio.perRound,
          shown: `${fmt(ratio.median, 2)}×`,
          target: `≥ ${TARGET_PROVIDER_RPS_RATIO.toFixed(2)}×`,
          pass: ratio.median === null ? undefined : ratio.median >= TARGET_PROVIDER_RPS_RATIO,
          note: `p50 ${addedP50.median !== null && addedP50.median >= 0 ? '+' : ''}${fmt(addedP50.median, 3)} ms vs gateway (openai)`,
        });
      }
    }
  }
  if (TARGETS.includes(HMAC_TARGET)) {
    for (const mode of opts.modes) {
      for (const c of opts.concurrencies) {
        const ratio = paired(runs, mode, c, (x) => x[HMAC_TARGET].rps / x.gateway.rps);
        const addedP50 = paired(runs, mode, c, (x) => x[HMAC_TARGET].p50 - x.gateway.p50);
        checks.push({
          name: `${HMAC_TARGET}/gateway (jwt) req/s, ${mode} @${c}`,
          value: ratio.median,
          perRound: ratio.perRound,
          shown: `${fmt(ratio.median, 2)}×`,
          target: '(info)',
          pass: null,
          note: `p50 ${addedP50.median !== null && addedP50.median >= 0 ? '+' : ''}${fmt(addedP50.median, 3)} ms vs JWT`,
        });
      }
    }
  }
  for (const mode of opts.modes) {
    const vsBare = paired(runs, mode, 1, (x) => x.gateway.p50 - x.bare.p50);
    const vsDirect = paired(runs, mode, 1, (x) => x.gateway.p50 - x.direct.p50);
    const bareVsDirect = paired(runs, mode, 1, (x) => x.bare.p50 - x.direct.p50);
    checks.push({
      name: `added p50 @1, ${mode}: gateway − bare`,
      value: vsBare.median,
      perRound: vsBare.perRound,
      shown: `${fmt(vsBare.median, 3)} ms`,
      target: `≤ ${TARGET_ADDED_P50_MS.toFixed(2)} ms`,
      pass: vsBare.median === null ? undefined : vsBare.median <= TARGET_ADDED_P50_MS,
      note: `gateway − direct ${fmt(vsDirect.median, 3)} ms, bare − direct ${fmt(bareVsDirect.median, 3)} ms`,
      vsDirect: vsDirect.median,
      bareVsDirect: bareVsDirect.median,
    });
  }
  for (const mode of opts.modes) {
    for (const c of opts.concurrencies) {
      const g = median(runs.filter((r) => r.target === 'gateway' && r.mode === mode && r.connections === c).map((r) => r.cpuUsPerReq));
      const b = median(runs.filter((r) => r.target === 'bare' && r.mode === mode && r.connections === c).map((r) => r.cpuUsPerReq));
      checks.push({
        name: `gateway CPU/req vs bare, ${mode} @${c}`,
        value: g !== null && b ? g / b : null,
        shown: `${fmt(g)} vs ${fmt(b)} µs = ${fmt(g !== null && b ? g / b : null, 2)}×`,
        target: '(info)',
        pass: null,
      });
    }
  }
  checks.push({
    name: 'gateway idle RSS (started, before any load)',
    value: startup.gateway,
    shown: `${fmt(startup.gateway, 1)} MB`,
    target: `≤ ${TARGET_IDLE_RSS_MB} MB`,
    pass: startup.gateway === null ? undefined : startup.gateway <= TARGET_IDLE_RSS_MB,
  });
  if (startup.gatewaySettled !== undefined) {
    checks.push({
      name: startup.gatewayShrunk
        ? `gateway idle RSS settled (${fmt(startup.settledAfterMs / 1000)} s later, after V8's idle GC)`
        : `gateway idle RSS ${fmt(startup.settledAfterMs / 1000)} s later (V8's idle GC had not run)`,
      value: startup.gatewaySettled,
      shown: `${fmt(startup.gatewaySettled, 1)} MB`,
      target: `≤ ${TARGET_IDLE_RSS_MB} MB`,
      pass: startup.gatewaySettled === null ? undefined : startup.gatewaySettled <= TARGET_IDLE_RSS_MB,
    });
  }
  if (startup.gatewayAfter !== undefined) {
    checks.push({
      name: 'gateway idle RSS after the load',
      value: startup.gatewayAfter,
      shown: `${fmt(startup.gatewayAfter, 1)} MB`,
      target: '(info)',
      pass: null,
    });
  }
  return checks;
}

function report(result) {
  const { meta, startup, groups, checks, gatewayOutput, anomalies } = result;
  const out = [];
  out.push('');
  if (!result.complete) out.push('*** INCOMPLETE: the bench failed part-way; these figures cover the runs before the failure ***');
  out.push(
    `keygate benchmark — ${meta.loadgen}, node ${meta.node}, ${meta.cpus} CPUs, ${meta.rounds} round(s) × ${meta.duration} s per run, ` +
      `gateway LOG_LEVEL=${meta.logLevel}${meta.commit ? `, commit ${meta.commit}` : ''}`,
  );
  out.push(
    meta.redis
      ? `Redis: ${meta.redis} (${meta.redisSource}; rate limits, daily caps and token-quota reservations all on it, caps far above the load)`
      : `Redis: none (${meta.redisSource}): in-memory limits and token quotas, caps far above the load`,
  );
  out.push(
    `idle RSS after start: mock ${fmt(startup.direct, 1)} MB, bare proxy ${fmt(startup.bare, 1)} MB, framework floor ${fmt(startup.floor, 1)} MB, gateway ${fmt(startup.gateway, 1)} MB` +
      (startup.gatewaySettled !== undefined
        ? `; ${startup.gatewayShrunk ? 'settled ' : ''}(${fmt(startup.settledAfterMs / 1000)} s later): framework floor ${fmt(startup.floorSettled, 1)} MB, gateway ${fmt(startup.gatewaySettled, 1)} MB`
        : ''),
  );
  const columns = [
    { title: 'target', left: true, get: (r) => r.target },
    { title: 'req/s', get: (r) => fmt(r.rps) },
    { title: '(min–max)', left: true, get: (r) => (r.rounds > 1 ? `(${fmt(r.rpsMin)}–${fmt(r.rpsMax)})` : '') },
    { title: 'p50 ms', get: (r) => fmtMs(r.p50) },
    { title: 'p99 ms', get: (r) => fmtMs(r.p99) },
    { title: 'CPU µs/req', get: (r) => fmt(r.cpuUsPerReq) },
    { title: 'CPU %', get: (r) => fmt(r.cpuPct) },
    { title: 'loadgen %', get: (r) => fmt(r.loadgenCpuPct) },
    { title: 'other %', get: (r) => fmt(r.otherPct) },
    { title: 'mock µs/req', get: (r) => (r.target === 'direct' ? '(=)' : fmt(r.mockCpuUsPerReq)) },
    ...(meta.redisPid ? [{ title: 'redis µs/req', get: (r) => (isGateway(r.target) ? fmt(r.redisCpuUsPerReq) : '') }] : []),
    { title: 'RSS idle MB', get: (r) => fmt(r.rssIdleMb, 1) },
    { title: 'RSS peak MB', get: (r) => fmt(r.rssPeakMb, 1) },
    { title: 'non-200', get: (r) => String(r.non2xx) },
    { title: 'errors', get: (r) => String(r.errors) },
    { title: '', left: true, get: (r) => (r.flaggedRounds ? `FLAGGED (${r.flaggedRounds} run(s) with failures)` : '') },
  ];
  for (const g of groups) {
    if (g.rows.every((r) => r.rounds === 0)) continue;
    out.push('');
    out.push(
      `${g.mode} · ${g.connections} connection${g.connections === 1 ? '' : 's'} · median of ${Math.max(...g.rows.map((r) => r.rounds))} round(s)`,
    );
    out.push(table(g.rows, columns));
  }
  out.push('');
  out.push(
    [
      'CPU µs/req and CPU % (of one core) are the target process\'s own, user+system, all threads. "mock µs/req" is the upstream\'s',
      "share behind bare and gateway (the Anthropic and Gemini rows: the mock's Anthropic and Gemini endpoints);",
      ...(meta.redisPid ? ['"redis µs/req" is redis-server\'s CPU per gateway request (it may also serve other clients meanwhile);'] : []),
      "loadgen % is the load generator's CPU; other % is everything else on the machine (other sessions, builds), which",
      'competes for the same cores. Latencies are timed per response, with sub-millisecond resolution. gateway-anthropic and',
      'gateway-gemini are the same gateway process as gateway, with the model of the request changed.',
    ].join('\n'),
  );
  out.push('');
  out.push('Summary (ratios and differences paired within each round, then the median across rounds)');
  out.push(
    table(checks, [
      { title: 'measure', left: true, get: (c) => c.name },
      { title: 'value', left: true, get: (c) => c.shown },
      { title: 'target', left: true, get: (c) => c.target },
      { title: '', left: true, get: (c) => (c.pass === null ? '' : c.pass === undefined ? 'n/a' : c.pass ? 'PASS' : 'MISS') },
      { title: '', left: true, get: (c) => c.note ?? '' },
    ]),
  );
  out.push('');
  out.push(
    `gateway output during measured runs: ${gatewayOutput.auditLines} audit line(s) for ${gatewayOutput.gatewayResponses} response(s)` +
      ` (statuses ${JSON.stringify(gatewayOutput.auditStatus)}; 499 = in flight when a run stopped), ${gatewayOutput.severe} other line(s) at WARNING or above, ${gatewayOutput.stderrBytes} byte(s) on stderr`,
  );
  if (anomalies.length) {
    out.push('');
    out.push('Anomalies:');
    for (const a of anomalies) out.push(`  - ${a}`);
  }
  out.push('');
  return out.join('\n');
}

// ---------------------------------------------------------------------------------------------
// Main

async function main() {
  const opts = parseCli(process.argv.slice(2));
  TARGETS = opts.loadgen === 'wrk' ? ALL_TARGETS.filter((t) => t !== HMAC_TARGET) : ALL_TARGETS;
  const started = Date.now();
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'keygate-bench-'));
  let failed = null;
  let interrupted = false;
  // What has been measured so far: reported even when the bench fails half-way.
  const state = {
    meta: null,
    startup: null,
    runs: [],
    gatewayOutput: newGatewayOutput(),
    mock: null,
    bare: null,
    floor: null,
    gw: null,
    redis: null,
    complete: false,
  };

  const onSignal = (signal) => {
    if (interrupted) return;
    interrupted = true;
    log(`${signal}: stopping everything`);
    stopAll().finally(() => {
      if (!opts.keepLogs) fs.rmSync(tmp, { recursive: true, force: true });
      process.exit(130);
    });
  };
  process.on('SIGINT', () => onSignal('SIGINT'));
  process.on('SIGTERM', () => onSignal('SIGTERM'));

  try {
    log(
      `load generator: ${opts.loadgen}; ${opts.rounds} round(s) × ${opts.modes.length} mode(s) × ${opts.concurrencies.length} concurrencies × ${TARGETS.length} targets, ${opts.duration} s each`,
    );
    const redis = (state.redis = await resolveRedis(opts));
    opts.redisUrl = redis.url;
    log(
      redis.url
        ? `Redis: ${redactUrl(redis.url)} (${redis.source}${redis.pid ? `, redis-server pid ${redis.pid}` : ''})`
        : `Redis: none (${redis.source}); in-memory limits`,
    );
    const mock = (state.mock = await startMock());
    log(`mock upstream pid ${mock.pid} on :${mock.port}`);
    const bare = (state.bare = await startReference('bare-proxy', 'bare-proxy.js', mock.port));
    log(`bare proxy pid ${bare.pid} on :${bare.port}`);
    const floor = (state.floor = await startReference('nest-floor', 'nest-floor.js', mock.port));
    log(`framework floor pid ${floor.pid} on :${floor.port}`);
    const gw = (state.gw = await startGateway(tmp, mock.port, opts));
    log(`gateway pid ${gw.pid} on :${gw.port} (output in ${tmp})`);

    let jwt = mintToken();
    const targets = [
      { name: 'direct', pid: mock.pid, url: `http://127.0.0.1:${mock.port}${CHAT_PATH}`, auth: () => `Bearer ${UPSTREAM_KEY}` },
      { name: 'bare', pid: bare.pid, url: `http://127.0.0.1:${bare.port}${CHAT_PATH}`, auth: () => `Bearer ${UPSTREAM_KEY}` },
      { name: FLOOR_TARGET, pid: floor.pid, url: `http://127.0.0.1:${floor.port}${CHAT_PATH}`, auth: () => `Bearer ${UPSTREAM_KEY}` },
      { name: 'gateway', pid: gw.pid, url: `http://127.0.0.1:${gw.port}${CHAT_PATH}`, auth: () => `Bearer ${jwt}` },
      // Same process, same token, same body but the model.
      ...PROVIDER_TARGETS.map((p) => ({
        name: p.name,
        provider: p.provider,
        pid: gw.pid,
        url: `http://127.0.0.1:${gw.port}${CHAT_PATH}`,
        auth: () => `Bearer ${jwt}`,
        bodies: bodiesFor(p.model),
      })),
      // Same process and body, HMAC instead of the JWT (the demo product's development client).
      {
        name: HMAC_TARGET,
        pid: gw.pid,
        url: `http://127.0.0.1:${gw.port}${CHAT_PATH}`,
        auth: () => null,
        hmac: { id: DEV_HMAC_CLIENT.id, secret: DEV_HMAC_CLIENT.secret },
      },
    ].filter((t) => TARGETS.includes(t.name));
    for (const t of targets) t.bodies ??= bodiesFor(PLAIN_BODY.model);

    // Idle memory: started and ready, no request served yet.
    await sleep(1000);
    state.startup = { direct: rssMb(mock.pid), bare: rssMb(bare.pid), floor: rssMb(floor.pid), gateway: rssMb(gw.pid) };
    // And once V8's memory reducer has run on both (it shrinks the young generation by far more than
    // a tenth): what an idle replica holds for as long as it idles. Else as found at the longest wait.
    const settleStart = Date.now();
    const shrunk = (pid, before) => before !== null && (rssMb(pid) ?? before) < 0.9 * before;
    while (
      Date.now() - settleStart < MEMORY_SETTLE_MS &&
      !(shrunk(gw.pid, state.startup.gateway) && shrunk(floor.pid, state.startup.floor))
    )
      await sleep(1000);
    await sleep(1000);
    Object.assign(state.startup, {
      floorSettled: rssMb(floor.pid),
      gatewaySettled: rssMb(gw.pid),
      settledAfterMs: Date.now() - settleStart,
      gatewayShrunk: shrunk(gw.pid, state.startup.gateway),
    });

    await preflight(targets, opts.modes, mock);
    checkAlive();

    const loadgen = opts.loadgen === 'wrk' ? new WrkRunner() : new AutocannonWorker();
    await loadgen.start();
    state.meta = {
      date: new Date().toISOString(),
      node: process.version,
      cpus: os.availableParallelism?.() ?? os.cpus().length,
      loadgen: opts.loadgen === 'wrk' ? 'wrk' : `autocannon ${require('autocannon/package.json').version}`,
      rounds: opts.rounds,
      duration: opts.duration,
      warmup: opts.warmup,
      connections: opts.concurrencies,
      modes: opts.modes,
      logLevel: opts.logLevel,
      redis: redis.url ? redactUrl(redis.url) : null,
      redisSource: redis.source,
      redisPid: redis.pid,
      commit: gitCommit(),
    };

    log(`warm-up: ${opts.warmup} s per target and mode @${opts.concurrencies[0]}`);
    for (const mode of opts.modes) {
      for (const t of targets) {
        const w = await measure(loadgen, t, mock, redis, { mode, connections: opts.concurrencies[0], duration: opts.warmup });
        if (w.failedShare > FAILED_RUN_SHARE) throw new BenchFailure(`warm-up ${t.name} ${mode}: ${describeFailures(w)}`);
      }
    }
    await scanGatewayOutput(gw); // warm-up and preflight lines are not part of the measurement

    const total = opts.rounds * opts.modes.length * opts.concurrencies.length * targets.length;
    for (let round = 1; round <= opts.rounds; round++) {
      jwt = mintToken(); // a fresh 15-minute token each round, however long the bench runs
      // The gateway targets take turns at going first, so that none always runs on a gateway
      // that has just been loaded (heap grown, GC pending) or always right after bare.
      const gatewayTargets = targets.filter((t) => isGateway(t.name));
      const shift = (round - 1) % gatewayTargets.length;
      const order = [...targets.filter((t) => !isGateway(t.name)), ...gatewayTargets.slice(shift), ...gatewayTargets.slice(0, shift)];
      for (const mode of opts.modes) {
        for (const connections of opts.concurrencies) {
          for (const t of order) {
            const r = await measure(loadgen, t, mock, redis, { mode, connections, duration: opts.duration });
            r.round = round;
            state.runs.push(r);
            if (isGateway(t.name)) {
              await sleep(100);
              r.gatewayOutput = await scanGatewayOutput(gw);
              addGatewayOutput(state.gatewayOutput, r.gatewayOutput, r.responses);
            }
            log(
              `[${state.runs.length}/${total}] round ${round} ${mode} @${connections} ${t.name.padEnd(17)} ${fmt(r.rps).padStart(6)} req/s  p50 ${fmtMs(r.p50)} ms  p99 ${fmtMs(r.p99)} ms  ` +
                `${fmt(r.cpuUsPerReq)} µs/req${r.flagged ? `  FLAGGED: ${describeFailures(r)}` : ''}`,
            );
          }
        }
      }
    }

    await sleep(1500);
    state.startup.gatewayAfter = rssMb(gw.pid);
    checkAlive();
    if (redis.url) {
      // Still counting on Redis at the end, not on the per-replica fallback.
      const mode = await gatewayRedisMode(gw);
      state.redisModeAfter = mode;
      if (mode !== 'shared') throw new BenchFailure(`after the load the gateway's /readyz reports limits "${mode}", not "shared" on Redis`);
    }
    state.complete = true;

    const massFailures = state.runs.filter((r) => r.failedShare > FAILED_RUN_SHARE);
    if (massFailures.length) {
      failed = `${massFailures.length} run(s) with more than ${FAILED_RUN_SHARE * 100}% failed requests: ${massFailures.map((r) => `${r.mode}@${r.connections} ${r.target} round ${r.round}`).join(', ')}`;
    }
  } catch (error) {
    if (interrupted) return;
    failed = error instanceof BenchFailure || error instanceof UsageError ? error.message : String(error?.stack ?? error);
  } finally {
    if (!interrupted) await stopAll();
  }
  if (interrupted) return;

  if (state.meta && state.runs.length) {
    const result = buildResult(state, opts, started);
    result.failed = failed;
    process.stdout.write(report(result));
    fs.mkdirSync(RESULTS_DIR, { recursive: true });
    fs.writeFileSync(path.join(RESULTS_DIR, 'latest.json'), JSON.stringify(result, null, 2) + '\n');
    log(`results written to ${path.relative(ROOT, path.join(RESULTS_DIR, 'latest.json'))} (${fmt(result.meta.elapsedS)} s in all)`);
  }
  if (failed) {
    log(`BENCH FAILED: ${failed}`);
    log(`processes' output kept in ${tmp}`);
    process.exitCode = 1;
  } else if (opts.keepLogs) {
    log(`processes' output kept in ${tmp}`);
  } else {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

function newGatewayOutput() {
  return { auditLines: 0, auditStatus: {}, severe: 0, severeSamples: [], unparsable: 0, stderrBytes: 0, gatewayResponses: 0 };
}

function addGatewayOutput(total, scan, responses) {
  total.auditLines += scan.auditLines;
  total.severe += scan.severe;
  total.unparsable += scan.unparsable;
  total.gatewayResponses += responses;
  for (const [s, n] of Object.entries(scan.auditStatus)) total.auditStatus[s] = (total.auditStatus[s] ?? 0) + n;
  for (const s of scan.severeSamples) if (total.severeSamples.length < 20) total.severeSamples.push(s);
  total.stderrBytes = scan.stderrBytes;
}

/** Tables, checks and anomalies from the runs so far (all of them, or those before a failure). */
function buildResult(state, opts, started) {
  const { runs, gatewayOutput, mock, bare, floor, gw, startup } = state;
  const anomalies = [];
  if (!state.complete) {
    const planned = opts.rounds * opts.modes.length * opts.concurrencies.length * TARGETS.length;
    anomalies.push(`INCOMPLETE: the bench failed after ${runs.length} of ${planned} runs; the figures cover those runs only`);
  }
  for (const r of runs.filter((x) => x.flagged))
    anomalies.push(`round ${r.round} ${r.mode} @${r.connections} ${r.target}: ${describeFailures(r)}`);
  for (const r of runs) {
    const where = `round ${r.round} ${r.mode} @${r.connections} ${r.target}`;
    if (r.strayRoutes)
      anomalies.push(`${where}: the mock also saw ${JSON.stringify(r.strayRoutes)} (retries or fallbacks to another provider?)`);
    if (r.upstreamRequests < r.responses - r.non2xx)
      anomalies.push(
        `${where}: ${r.responses - r.non2xx} successful response(s) but only ${r.upstreamRequests} upstream request(s) at the mock`,
      );
  }
  const measuredGatewayOk = runs.filter((r) => isGateway(r.target)).reduce((s, r) => s + r.responses - r.non2xx, 0);
  if (gatewayOutput.auditLines === 0 && measuredGatewayOk > 0) {
    anomalies.push(
      `the gateway wrote no audit line for ${measuredGatewayOk} successful request(s) at LOG_LEVEL=${opts.logLevel}: ` +
        'the audit (INFO severity) is filtered by the log level, so its cost is NOT in these figures',
    );
  } else if (gatewayOutput.auditLines < measuredGatewayOk) {
    anomalies.push(`the gateway wrote ${gatewayOutput.auditLines} audit line(s) for ${measuredGatewayOk} successful request(s)`);
  }
  const badAudit = Object.entries(gatewayOutput.auditStatus).filter(([s]) => s !== '200' && s !== '499');
  if (badAudit.length) anomalies.push(`gateway audit statuses other than 200/499: ${JSON.stringify(Object.fromEntries(badAudit))}`);
  if (gatewayOutput.severe || gatewayOutput.unparsable)
    anomalies.push(`gateway wrote ${gatewayOutput.severe} line(s) at WARNING or above and ${gatewayOutput.unparsable} non-JSON line(s)`);
  for (const s of gatewayOutput.severeSamples) anomalies.push(`gateway: ${s}`);
  if (gatewayOutput.stderrBytes)
    anomalies.push(`gateway stderr (${gatewayOutput.stderrBytes} bytes):\n      ${tailFile(gw.stderrFile, 10).join('\n      ')}`);
  if (mock.err.count)
    anomalies.push(`mock upstream stderr (${mock.err.count} line(s)):\n      ${mock.err.lines.slice(-10).join('\n      ')}`);
  if (bare.err.count) anomalies.push(`bare proxy stderr (${bare.err.count} line(s)):\n      ${bare.err.lines.slice(-10).join('\n      ')}`);
  if (floor?.err.count)
    anomalies.push(`framework floor stderr (${floor.err.count} line(s)):\n      ${floor.err.lines.slice(-10).join('\n      ')}`);
  const disturbed = runs.filter((r) => (r.otherPct ?? 0) > DISTURBED_PCT || (r.stealPct ?? 0) > DISTURBED_PCT);
  if (disturbed.length) {
    anomalies.push(
      `${disturbed.length} of ${runs.length} run(s) shared the cores with processes outside the bench (> ${DISTURBED_PCT}% of a core; ` +
        `"other %" column): ${disturbed
          .map(
            (r) =>
              `r${r.round} ${r.mode}@${r.connections} ${r.target} ${fmt(r.otherPct)}%${(r.stealPct ?? 0) > 1 ? ` (steal ${fmt(r.stealPct)}%)` : ''}`,
          )
          .join(', ')}`,
    );
  }
  for (const r of runs) {
    if (r.loadgenCpuPct !== null && r.loadgenCpuPct > 95 && r.connections > 1) {
      anomalies.push(
        `round ${r.round} ${r.mode} @${r.connections} ${r.target}: the load generator used ${fmt(r.loadgenCpuPct)}% of a core — that target's req/s may be the load generator's limit`,
      );
    }
  }
  return {
    meta: { ...state.meta, elapsedS: (Date.now() - started) / 1000 },
    complete: state.complete,
    startup,
    groups: aggregate(runs, opts),
    checks: summarize(runs, opts, startup),
    gatewayOutput,
    anomalies,
    runs,
  };
}

function describeFailures(r) {
  const parts = [];
  if (r.non2xx)
    parts.push(
      `${r.non2xx} non-200${r.statusCounts ? ` ${JSON.stringify(Object.fromEntries(Object.entries(r.statusCounts).filter(([s]) => s !== '200')))}` : ''}`,
    );
  if (r.errors)
    parts.push(
      `${r.errors} error(s)${r.errorSamples?.length ? ` ${r.errorSamples.map((e) => `${e.message}×${e.count}`).join(', ')}` : ''}`,
    );
  if (r.timeouts) parts.push(`${r.timeouts} timeout(s)`);
  if (!r.responses) parts.push('no response at all');
  return `${parts.join(', ')} of ${r.responses} response(s)`;
}

function tailFile(file, n) {
  try {
    return fs.readFileSync(file, 'utf8').split('\n').filter(Boolean).slice(-n);
  } catch {
    return [];
  }
}

function mintToken() {
  try {
    return execFileSync(process.execPath, [path.join(ROOT, 'scripts/token.js'), '--product', 'demo', '--user', 'bench', '--ttl', '900'], {
      cwd: ROOT,
      encoding: 'utf8',
      timeout: 15_000,
    }).trim();
  } catch (error) {
    throw new BenchFailure(`scripts/token.js failed: ${error.stderr || error.message}`);
  }
}

function gitCommit() {
  try {
    const sha = execFileSync('git', ['rev-parse', '--short', 'HEAD'], {
      cwd: ROOT,
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'ignore'],
    }).trim();
    const dirty = execFileSync('git', ['status', '--porcelain', '--untracked-files=no'], {
      cwd: ROOT,
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'ignore'],
    }).trim();
    return dirty ? `${sha}+dirty` : sha;
  } catch {
    return null;
  }
}

main().catch(async (error) => {
  if (error instanceof UsageError) {
    process.stderr.write(`${error.message} (see --help)\n`);
    process.exit(2);
  }
  log(`BENCH FAILED: ${error?.stack ?? error}`);
  await stopAll();
  process.exit(1);
});
