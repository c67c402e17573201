#!/usr/bin/env node
'use strict';
// Soak test: the gateway under a steady mix of traffic for minutes, watched for leaks.
//
//   npm run soak -- [--minutes M] [--concurrency C] [--sample-seconds S] [--quiesce-seconds Q]
//                   [--redis-port P] [--port-base B] [--no-snapshots] [--out DIR]
//                   [--per-kind N [--kinds REGEX] [--snapshot-kind KIND|all]] [--idle-connections N]
//
// Starts a private Redis (`redis-server --port P`, default 6395, no persistence; shut down at the
// end), the mock upstream and the built gateway (the container's node flags plus
// `--inspect=127.0.0.1:<free port>`, the demo product plus a `soak-limited` product whose one user
// is over a low per-user rate limit, limits on that Redis, short upstream timeouts). For M minutes
// (default 5), C clients (default 20) send a mix: plain and streamed chat for OpenAI, Anthropic and
// Gemini models, /chat/{product}, /v1/responses, /v1/messages, embeddings, Gemini's own API,
// clients that abort mid-stream, bad tokens, bad bodies, the over-limit user, upstream errors,
// in-stream errors, cut streams, upstream timeouts, and streams of a user whom an operator loop
// blocks and unblocks every few seconds (POST/DELETE /admin/blocks); and the same outcomes on the
// other providers and routes (Responses, Messages, Gemini's API, embeddings), aborts before the
// headers, during retries and mid-stream, token-quota and cost-budget refusals (two more products,
// `soak-quota` and `soak-budget`, that refuse every request), HMAC-signed requests and replayed
// signatures, and model names and paths made up afresh for each request. Every /v1 request carries
// its own X-Request-Id. --port-base B puts the mock on B, the gateway on B+1 and its inspector on
// B+2 (free ports otherwise).
// Every S seconds (default 30), and once more after Q seconds without traffic (default 20), it
// forces a full GC over the inspector protocol (CDP) and records heap used, RSS, active handles
// and requests (by type), listener counts (process, and on the active handles), requests sent and
// audit lines written so far. With snapshots (the default) it takes a heap snapshot half way
// through the run and one after the quiet period and prints what grew between them (dig further
// with `node bench/heap-diff.js DIR/a.heapsnapshot DIR/b.heapsnapshot --owners 10`). A snapshot
// stops the gateway for seconds (Redis commands time out meanwhile) and leaves its RSS hundreds of
// MB higher: the RSS trend is read from the samples before the first one.
// With --per-kind N, once the mixed traffic is over, each kind of request (those matching --kinds)
// runs alone: N/4 of them to warm up, then N between two forced GCs, which gives the heap each kind
// leaves behind per 1,000 requests and the handles and listeners it leaves open (the gateway then
// runs with --no-flush-bytecode, so that the code other kinds compiled is not dropped meanwhile).
// That figure is noisy (±1 MB per 1,000 at N=400: compiled code, caches filling): a real leak is a
// kind far above the others, confirmed with --snapshot-kind KIND (snapshots kind-a, kind-b around
// it; `all`: around every kind) and `node bench/heap-diff.js DIR/kind-a.heapsnapshot
// DIR/kind-b.heapsnapshot --owners 15`, which names the long-lived objects the new ones hang from.
// After the quiet period, --idle-connections N (default 20; 0: not) opens N connections per case,
// each sending one request with a 500 kB prompt (answered, streamed, refused by the parameter
// policy, for an unknown model) and staying open: what the gateway keeps per idle kept-alive
// connection is the heap then less the heap once they are closed.
// At the end, every key in the soak's Redis is counted by pattern, with those that have no TTL.
// Output: the sample table, per-resource trends, the outcome of each kind of request, the audit
// check (exactly one audit line per request sent, matched by X-Request-Id; a 408 that answers no
// request of ours, Node's request timeout on a spare connection the client sent nothing on, which
// the client then reads as its next request's answer, is counted apart), warnings from the
// gateway's stderr and its WARNING/ERROR log lines; JSON and the gateway's logs in DIR (default
// bench/results/soak/). Exit code 0 when nothing grew steadily and the audit check held, 1 otherwise.
const { spawn, spawnSync, execFileSync } = require('node:child_process');
const fs = require('node:fs');
const http = require('node:http');
const path = require('node:path');
const readline = require('node:readline');
const { parseArgs } = require('node:util');
const OpenAI = require('openai').default;
const { WebSocket } = require('undici');
const { demoEnv, DEV_HMAC_CLIENT } = require('../dev/demo-env');
const { hmacHeaders } = require('../dev/hmac-sign');
const { countByConstructor, diffCounts, formatDiff, index } = require('./heap-diff');
const {
  cleanEnv,
  freePort,
  gatewayNodeArgs,
  integerOption,
  printedHelp,
  rssMb,
  waitFor,
  UNREACHABLE_LIMITS_POLICY,
} = require('./processes');

const ROOT = path.join(__dirname, '..');
const MOCK_MAIN = path.join(ROOT, 'dist/apps/mock-upstream/main.js');
const GATEWAY_MAIN = path.join(ROOT, 'dist/apps/gateway/main.js');
const log = (line) => process.stderr.write(`[soak] ${new Date().toISOString().slice(11, 19)} ${line}\n`);
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

const LIMITED_PRODUCT = 'soak-limited';
const LIMITED_USER = 'soak-over-limit';
// Products whose every chat request is refused by a daily token quota, and by a daily cost budget.
const QUOTA_PRODUCT = 'soak-quota';
const BUDGET_PRODUCT = 'soak-budget';
const BLOCKED_USER = 'soak-blocked';
const USERS = ['soak-a', 'soak-b', 'soak-c', 'soak-d'];
const GPT = 'gpt-4o-mini';
const CLAUDE = 'claude-3-5-sonnet-20241022';
const GEMINI = 'gemini-2.5-flash';
// The gateway's upstream timeouts in the soak: short, so that the mock's delays and stalls hit them.
const TTFB_TIMEOUT_MS = 1500;
const IDLE_TIMEOUT_MS = 1500;
const CLIENT_TIMEOUT_MS = 30_000;
const ADMIN_PERIOD_MS = 3000;
const TOKEN_REFRESH_MS = 10 * 60_000;

function options() {
  const { values } = parseArgs({
    options: {
      minutes: { type: 'string', default: '5' },
      concurrency: { type: 'string', default: '20' },
      'sample-seconds': { type: 'string', default: '30' },
      'quiesce-seconds': { type: 'string', default: '20' },
      'redis-port': { type: 'string', default: '6395' },
      'port-base': { type: 'string', default: '0' },
      'per-kind': { type: 'string', default: '0' },
      'idle-connections': { type: 'string', default: '20' },
      'snapshot-kind': { type: 'string' },
      kinds: { type: 'string' },
      'no-snapshots': { type: 'boolean', default: false },
      out: { type: 'string', default: path.join(ROOT, 'bench/results/soak') },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (printedHelp(values, __filename)) return undefined;
  const minutes = Number(values.minutes);
  if (!Number.isFinite(minutes) || minutes <= 0 || minutes > 120) throw new Error('--minutes must be a number in (0, 120]');
  return {
    minutes,
    concurrency: integerOption(values, 'concurrency', 1),
    sampleSeconds: integerOption(values, 'sample-seconds', 5),
    quiesceSeconds: integerOption(values, 'quiesce-seconds', 0),
    redisPort: integerOption(values, 'redis-port', 1),
    portBase: integerOption(values, 'port-base', 0),
    perKind: integerOption(values, 'per-kind', 0),
    idleConnections: integerOption(values, 'idle-connections', 0),
    snapshotKind: values['snapshot-kind'],
    kinds: values.kinds === undefined ? undefined : new RegExp(values.kinds),
    snapshots: !values['no-snapshots'],
    out: path.resolve(values.out),
  };
}

// ---------------------------------------------------------------------------------------------
// Processes

const children = [];
let stopping = false;
let redis = null;

function start(name, args, env, stdio) {
  const child = spawn(process.execPath, args, { cwd: ROOT, env, stdio });
  children.push(child);
  child.on('exit', (code, signal) => {
    if (!stopping) log(`${name} exited early (${signal ?? `code ${code}`})`);
  });
  return child;
}

function startRedis(port, dir) {
  const probe = spawnSync('redis-cli', ['-h', '127.0.0.1', '-p', String(port), 'ping'], { encoding: 'utf8', timeout: 5000 });
  if (probe.stdout?.trim() === 'PONG') throw new Error(`a Redis already answers on 127.0.0.1:${port}: not ours, not touched`);
  const pidfile = path.join(dir, 'redis.pid');
  const r = spawnSync(
    'redis-server',
    [
      '--port',
      String(port),
      '--bind',
      '127.0.0.1',
      '--daemonize',
      'yes',
      '--save',
      '',
      '--appendonly',
      'no',
      '--dir',
      dir,
      '--pidfile',
      pidfile,
    ],
    { encoding: 'utf8', timeout: 10_000 },
  );
  if (r.error || r.status !== 0) throw new Error(`redis-server: ${r.error?.message ?? r.stderr}`);
  redis = { port, pidfile };
}

function stopRedis() {
  if (!redis) return;
  const { port, pidfile } = redis;
  redis = null;
  const r = spawnSync('redis-cli', ['-h', '127.0.0.1', '-p', String(port), 'shutdown', 'nosave'], { timeout: 10_000 });
  if (r.status !== 0 && fs.existsSync(pidfile)) {
    try {
      process.kill(Number(fs.readFileSync(pidfile, 'utf8').trim()), 'SIGTERM');
    } catch {
      // gone already
    }
  }
}

process.on('exit', () => {
  for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  stopRedis();
});
process.on('SIGINT', () => {
  log('interrupted');
  process.exit(130);
});

function token(product, user, scope) {
  const args = ['scripts/token.js', '--product', product, '--user', user, '--ttl', '900', ...(scope ? ['--scope', scope] : [])];
  return execFileSync(process.execPath, args, { cwd: ROOT, encoding: 'utf8' }).trim();
}

// ---------------------------------------------------------------------------------------------
// A small CDP client over the inspector's WebSocket (undici's WebSocket: Node 20 has no global one).

async function cdpConnect(port) {
  const targets = await (await fetch(`http://127.0.0.1:${port}/json/list`)).json();
  const ws = new WebSocket(targets[0].webSocketDebuggerUrl);
  await new Promise((resolve, reject) => {
    ws.onopen = resolve;
    ws.onerror = (e) => reject(new Error(`inspector: ${e.message ?? 'connection failed'}`));
  });
  let next = 1;
  const pending = new Map();
  const listeners = new Map();
  ws.onmessage = (event) => {
    const msg = JSON.parse(event.data);
    if (msg.id !== undefined) {
      const p = pending.get(msg.id);
      pending.delete(msg.id);
      if (msg.error) p?.reject(new Error(`${p.method}: ${msg.error.message}`));
      else p?.resolve(msg.result);
    } else listeners.get(msg.method)?.(msg.params);
  };
  ws.onclose = () => {
    for (const p of pending.values()) p.reject(new Error('inspector closed'));
    pending.clear();
  };
  const send = (method, params = {}) =>
    new Promise((resolve, reject) => {
      const id = next++;
      pending.set(id, { resolve, reject, method });
      ws.send(JSON.stringify({ id, method, params }));
    });
  return { send, on: (method, fn) => listeners.set(method, fn), close: () => ws.close() };
}

/**
 * Evaluated in the gateway (listening on `port`): active handles and requests by type (sockets as
 * `Socket in`, a client's connection, or `Socket out`: upstream, Redis), and listener counts.
 */
const probe = (port) => `(() => {
  const handles = process._getActiveHandles();
  const byType = {};
  const sockets = {};
  const listenersByType = {};
  let maxListeners = { count: 0, on: null };
  for (const h of handles) {
    const type = (h && h.constructor && h.constructor.name) || typeof h;
    byType[type] = (byType[type] || 0) + 1;
    if (type === 'Socket') {
      const dir = h.localPort === ${port} ? 'Socket in' : 'Socket out';
      sockets[dir] = (sockets[dir] || 0) + 1;
    }
    if (h && typeof h.eventNames === 'function') {
      for (const e of h.eventNames()) {
        const n = h.listenerCount(e);
        listenersByType[type] = (listenersByType[type] || 0) + n;
        if (n > maxListeners.count) maxListeners = { count: n, on: type + ' ' + String(e) };
      }
    }
  }
  const resources = {};
  for (const r of process.getActiveResourcesInfo()) resources[r] = (resources[r] || 0) + 1;
  const processListeners = {};
  for (const e of process.eventNames()) processListeners[String(e)] = process.listenerCount(e);
  const m = process.memoryUsage();
  return JSON.stringify({
    handles: handles.length,
    requests: process._getActiveRequests().length,
    byType, sockets, resources, listenersByType, maxListeners, processListeners,
    external: m.external, arrayBuffers: m.arrayBuffers,
  });
})()`;

async function sample(cdp, pid, port) {
  await cdp.send('HeapProfiler.collectGarbage');
  await cdp.send('HeapProfiler.collectGarbage');
  const heap = await cdp.send('Runtime.getHeapUsage');
  const evaluated = await cdp.send('Runtime.evaluate', { expression: probe(port), returnByValue: true });
  if (evaluated.exceptionDetails) throw new Error(`probe: ${evaluated.exceptionDetails.text}`);
  const p = JSON.parse(evaluated.result.value);
  const listeners =
    Object.values(p.listenersByType).reduce((a, b) => a + b, 0) + Object.values(p.processListeners).reduce((a, b) => a + b, 0);
  // Each connection carries its own listeners: what would leak is more listeners per handle.
  return { heapMb: heap.usedSize / 1048576, rssMb: rssMb(pid), ...p, listeners, listenersPerHandle: listeners / Math.max(1, p.handles) };
}

async function heapSnapshot(cdp, file) {
  const chunks = [];
  cdp.on('HeapProfiler.addHeapSnapshotChunk', ({ chunk }) => chunks.push(chunk));
  await cdp.send('HeapProfiler.takeHeapSnapshot', { reportProgress: false });
  const text = chunks.join('');
  fs.writeFileSync(file, text);
  return countByConstructor(index(JSON.parse(text)));
}

// ---------------------------------------------------------------------------------------------
// Traffic

function makeTraffic(base, tokens, stats) {
  let seq = 0;
  const runId = Date.now().toString(36);
  const sent = new Set();
  /** A fresh X-Request-Id for an audited request, counted as sent. */
  const rid = () => {
    const id = `soak-${runId}-${++seq}`;
    sent.add(id);
    return id;
  };
  const clients = new Map();
  const openai = (tok) => {
    let c = clients.get(tok);
    if (!c) {
      c = new OpenAI({ apiKey: tok, baseURL: `${base}/v1`, maxRetries: 0, timeout: CLIENT_TIMEOUT_MS });
      clients.set(tok, c);
    }
    return c;
  };
  const user = () => tokens.users[Math.floor(Math.random() * tokens.users.length)];
  const msgs = (text) => [{ role: 'user', content: text }];

  /** Runs an SDK call to its end (a stream read whole); its HTTP status, or `network`. */
  async function sdk(fn) {
    try {
      const res = await fn();
      if (res && typeof res[Symbol.asyncIterator] === 'function') for await (const _ of res);
      return 200;
    } catch (error) {
      const answeredId = typeof error?.headers?.get === 'function' ? error.headers.get('x-request-id') : error?.headers?.['x-request-id'];
      if (error?.status === 408 && notReceived(answeredId ?? undefined)) return '408 not received';
      // No status: an error event inside a stream (APIError), a transport error, or this client's own abort.
      return typeof error?.status === 'number' || error?.status === 'aborted' ? error.status : (error?.constructor?.name ?? 'error');
    }
  }
  /**
   * A 408 that is not the answer to a request keygate read: Node's request timeout on a connection
   * the client opened and sent nothing on for the headers timeout (undici keeps spare connections),
   * which keygate answers without a request id of ours and audits nothing (no request arrived); the
   * client reads that answer as its next request's. Counted, so that the audit check leaves those out.
   */
  function notReceived(answeredId = '') {
    if (answeredId.startsWith('soak-')) return false;
    stats.notReceived = (stats.notReceived ?? 0) + 1;
    return true;
  }
  /** A fetch read to its end; its status, or `network`. */
  async function http(method, pathname, { tok, body, raw, headers = {}, audited = true, abortAfterChunks, abortAfterMs } = {}) {
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(), abortAfterMs ?? CLIENT_TIMEOUT_MS);
    const id = audited ? rid() : undefined;
    try {
      const res = await fetch(`${base}${pathname}`, {
        method,
        signal: controller.signal,
        headers: {
          ...(body !== undefined || raw !== undefined ? { 'content-type': 'application/json' } : {}),
          ...(tok ? { authorization: `Bearer ${tok}` } : {}),
          ...(id ? { 'x-request-id': id } : {}),
          ...headers,
        },
        body: raw ?? (body === undefined ? undefined : JSON.stringify(body)),
      });
      if (abortAfterChunks !== undefined) {
        const reader = res.body.getReader();
        for (let i = 0; i < abortAfterChunks; i++) if ((await reader.read()).done) break;
        controller.abort();
        return `${res.status} aborted`;
      }
      await res.arrayBuffer();
      if (res.status === 408 && id && res.headers.get('x-request-id') !== id && notReceived()) return '408 not received';
      return res.status;
    } catch (error) {
      return error?.name === 'AbortError' ? 'aborted' : 'network';
    } finally {
      clearTimeout(timer);
    }
  }
  const opts = (extra = {}) => ({ headers: { 'x-request-id': rid() }, ...extra });
  const chat =
    (model, stream, text = 'Say hello in one short sentence.') =>
    () =>
      sdk(() =>
        openai(user()).chat.completions.create(
          { model, messages: msgs(text), max_tokens: 64, ...(stream ? { stream: true } : {}) },
          opts(),
        ),
      );
  const messages =
    (stream, text = 'Say hello.') =>
    () =>
      http('POST', '/v1/messages', {
        tok: user(),
        headers: { 'anthropic-version': '2023-06-01' },
        body: { model: CLAUDE, max_tokens: 64, messages: msgs(text), ...(stream ? { stream: true } : {}) },
      });

  // [weight, kind, run]
  const scenarios = [
    [8, 'chat openai', chat(GPT, false)],
    [8, 'chat openai stream', chat(GPT, true)],
    [5, 'chat anthropic', chat(CLAUDE, false)],
    [5, 'chat anthropic stream', chat(CLAUDE, true)],
    [5, 'chat gemini', chat(GEMINI, false)],
    [5, 'chat gemini stream', chat(GEMINI, true)],
    [2, 'chat /chat/demo', () => http('POST', '/chat/demo', { tok: user(), body: { model: GPT, messages: msgs('Hi'), max_tokens: 32 } })],
    [4, 'responses', () => sdk(() => openai(user()).responses.create({ model: GPT, input: 'Say hello.', max_output_tokens: 64 }, opts()))],
    [
      4,
      'responses stream',
      () => sdk(() => openai(user()).responses.create({ model: GPT, input: 'Say hello.', max_output_tokens: 64, stream: true }, opts())),
    ],
    [4, 'messages', messages(false)],
    [4, 'messages stream', messages(true)],
    [
      3,
      'embeddings openai',
      () => sdk(() => openai(user()).embeddings.create({ model: 'text-embedding-3-small', input: 'hello' }, opts())),
    ],
    [2, 'embeddings gemini', () => sdk(() => openai(user()).embeddings.create({ model: 'text-embedding-004', input: 'hello' }, opts()))],
    [
      2,
      'gemini native',
      () =>
        http('POST', `/v1beta/models/${GEMINI}:generateContent`, {
          headers: { 'x-goog-api-key': user() },
          body: { contents: [{ role: 'user', parts: [{ text: 'Say hello.' }] }] },
        }),
    ],
    [
      2,
      'gemini native stream',
      () =>
        http('POST', `/v1beta/models/${GEMINI}:streamGenerateContent?alt=sse`, {
          headers: { 'x-goog-api-key': user() },
          body: { contents: [{ role: 'user', parts: [{ text: 'Say hello.' }] }] },
        }),
    ],
    [1, 'models list', () => http('GET', '/v1/models', { tok: user() })],
    [
      3,
      'abort: chat stream',
      () => {
        const controller = new AbortController();
        return sdk(async () => {
          const stream = await openai(user()).chat.completions.create(
            { model: GPT, messages: msgs('Count. [mock chunks=40 chunk_delay_ms=50]'), max_tokens: 200, stream: true },
            opts({ signal: controller.signal }),
          );
          let n = 0;
          for await (const _ of stream) if (++n === 3) controller.abort();
          // The SDK ends the iteration quietly on its own abort.
          if (controller.signal.aborted) throw Object.assign(new Error('aborted'), { status: 'aborted' });
        });
      },
    ],
    [
      2,
      'abort: messages stream',
      () =>
        http('POST', '/v1/messages', {
          tok: user(),
          headers: { 'anthropic-version': '2023-06-01' },
          body: { model: CLAUDE, max_tokens: 200, stream: true, messages: msgs('Count. [mock chunks=40 chunk_delay_ms=50]') },
          abortAfterChunks: 2,
        }),
    ],
    [
      2,
      'abort: before headers',
      () =>
        http('POST', '/v1/chat/completions', {
          tok: user(),
          body: { model: GPT, messages: msgs('Slow. [mock delay_ms=1000]') },
          abortAfterMs: 300,
        }),
    ],
    [3, 'auth: bad token', () => http('POST', '/v1/chat/completions', { tok: 'not-a-jwt', body: { model: GPT, messages: msgs('Hi') } })],
    [1, 'auth: no credential', () => http('POST', '/v1/chat/completions', { body: { model: GPT, messages: msgs('Hi') } })],
    [
      2,
      'validation: invalid JSON',
      () => http('POST', '/v1/chat/completions', { tok: user(), raw: '{"model": "gpt-4o-mini", "messages": [' }),
    ],
    [2, 'validation: no messages', () => http('POST', '/v1/chat/completions', { tok: user(), body: { model: GPT } })],
    [
      1,
      'policy: temperature',
      () => http('POST', '/v1/chat/completions', { tok: user(), body: { model: GPT, messages: msgs('Hi'), temperature: 9 } }),
    ],
    [
      1,
      'unknown model',
      () => http('POST', '/v1/chat/completions', { tok: user(), body: { model: 'no-such-model', messages: msgs('Hi') } }),
    ],
    [
      5,
      'limits: over-limit user',
      () => sdk(() => openai(tokens.limited).chat.completions.create({ model: GPT, messages: msgs('Hi'), max_tokens: 16 }, opts())),
    ],
    [2, 'upstream: 500', chat(GPT, false, 'Fail. [mock status=500]')],
    [1, 'upstream: 429', chat(CLAUDE, false, 'Busy. [mock status=429 retry_after=1]')],
    [2, 'upstream: error event in stream', chat(GPT, true, 'Err. [mock error_event_after=2]')],
    [2, 'upstream: cut stream', chat(GEMINI, true, 'Cut. [mock cut_after=2]')],
    [2, 'timeout: first byte', chat(GPT, false, `Slow. [mock delay_ms=${TTFB_TIMEOUT_MS + 1000}]`), true],
    [2, 'timeout: stalled stream', chat(CLAUDE, true, 'Stall. [mock stall_after=2]'), true],
    [
      3,
      'blocks: stream of the blocked user',
      () =>
        sdk(() =>
          openai(tokens.blocked).chat.completions.create(
            { model: GPT, messages: msgs('Long. [mock chunks=30 chunk_delay_ms=50]'), max_tokens: 200, stream: true },
            opts(),
          ),
        ),
    ],
    // Outcomes beyond the happy paths, each on the providers and routes it can meet.
    [
      1,
      'blocks: chat of the blocked user',
      () => sdk(() => openai(tokens.blocked).chat.completions.create({ model: GPT, messages: msgs('Hi'), max_tokens: 16 }, opts())),
    ],
    [
      1,
      'limits: over-limit user stream',
      () =>
        sdk(() =>
          openai(tokens.limited).chat.completions.create({ model: GPT, messages: msgs('Hi'), max_tokens: 16, stream: true }, opts()),
        ),
    ],
    [
      2,
      'quota: daily tokens',
      () => sdk(() => openai(tokens.quota).chat.completions.create({ model: GPT, messages: msgs('Hi'), max_tokens: 16 }, opts())),
    ],
    [
      2,
      'quota: daily cost stream',
      () =>
        sdk(() =>
          openai(tokens.budget).chat.completions.create({ model: GPT, messages: msgs('Hi'), max_tokens: 16, stream: true }, opts()),
        ),
    ],
    [1, 'upstream: 500 anthropic stream', chat(CLAUDE, true, 'Fail. [mock status=500]')],
    [1, 'upstream: 503 gemini', chat(GEMINI, false, 'Fail. [mock status=503]')],
    [1, 'upstream: cut stream openai', chat(GPT, true, 'Cut. [mock cut_after=2]')],
    [1, 'upstream: error event anthropic', chat(CLAUDE, true, 'Err. [mock error_event_after=1]')],
    [1, 'upstream: fail once, retried', () => chat(GPT, false, `Once. [mock status=503 fail_first=1 n=${Math.random()}]`)()],
    [1, 'timeout: stalled stream gemini', chat(GEMINI, true, 'Stall. [mock stall_after=1]'), true],
    [1, 'timeout: first byte stream', chat(CLAUDE, true, `Slow. [mock delay_ms=${TTFB_TIMEOUT_MS + 1000}]`), true],
    [1, 'timeout: slow body', chat(GPT, false, `Pause. [mock body_pause_ms=${IDLE_TIMEOUT_MS + 1000}]`), true],
    [
      1,
      'embeddings: upstream 500',
      () => sdk(() => openai(user()).embeddings.create({ model: 'text-embedding-3-small', input: 'x [mock status=500]' }, opts())),
    ],
    [
      1,
      'embeddings gemini: upstream 500',
      () => sdk(() => openai(user()).embeddings.create({ model: 'text-embedding-004', input: 'x [mock status=500]' }, opts())),
    ],
    [
      1,
      'responses: upstream 500',
      () => sdk(() => openai(user()).responses.create({ model: GPT, input: 'x [mock status=500]', max_output_tokens: 64 }, opts())),
    ],
    [
      1,
      'responses stream: cut',
      () =>
        sdk(() =>
          openai(user()).responses.create({ model: GPT, input: 'x [mock cut_after=2]', max_output_tokens: 64, stream: true }, opts()),
        ),
    ],
    [
      1,
      'responses stream: stalled',
      () =>
        sdk(() =>
          openai(user()).responses.create({ model: GPT, input: 'x [mock stall_after=2]', max_output_tokens: 64, stream: true }, opts()),
        ),
      true,
    ],
    [
      1,
      'responses: a Claude model (refused)',
      () => sdk(() => openai(user()).responses.create({ model: CLAUDE, input: 'Say hello.', max_output_tokens: 64, stream: true }, opts())),
    ],
    [
      1,
      'responses: a Gemini model (refused)',
      () => sdk(() => openai(user()).responses.create({ model: GEMINI, input: 'Say hello.', max_output_tokens: 64 }, opts())),
    ],
    [
      1,
      'abort: responses stream',
      () =>
        http('POST', '/v1/responses', {
          tok: user(),
          body: { model: GPT, input: 'Count. [mock chunks=40 chunk_delay_ms=50]', max_output_tokens: 200, stream: true },
          abortAfterChunks: 2,
        }),
    ],
    [
      1,
      'abort: gemini native stream',
      () =>
        http('POST', `/v1beta/models/${GEMINI}:streamGenerateContent?alt=sse`, {
          headers: { 'x-goog-api-key': user() },
          body: { contents: [{ role: 'user', parts: [{ text: 'Count. [mock chunks=40 chunk_delay_ms=50]' }] }] },
          abortAfterChunks: 2,
        }),
    ],
    [
      1,
      'abort: stream before headers',
      () =>
        http('POST', '/v1/chat/completions', {
          tok: user(),
          body: { model: GEMINI, stream: true, messages: msgs('Slow. [mock delay_ms=1000]') },
          abortAfterMs: 300,
        }),
    ],
    [
      1,
      'abort: during retries',
      () =>
        http('POST', '/v1/chat/completions', {
          tok: user(),
          body: { model: CLAUDE, messages: msgs('Busy. [mock status=529]') },
          abortAfterMs: 150,
        }),
    ],
    [
      1,
      'abort: embeddings before headers',
      () =>
        http('POST', '/v1/embeddings', {
          tok: user(),
          body: { model: 'text-embedding-3-small', input: 'Slow. [mock delay_ms=1000]' },
          abortAfterMs: 300,
        }),
    ],
    [1, 'messages: upstream 529', messages(false, 'Busy. [mock status=529]')],
    [1, 'messages stream: cut', messages(true, 'Cut. [mock cut_after=2]')],
    [
      1,
      'gemini native: upstream 500',
      () =>
        http('POST', `/v1beta/models/${GEMINI}:generateContent`, {
          headers: { 'x-goog-api-key': user() },
          body: { contents: [{ role: 'user', parts: [{ text: 'Fail. [mock status=500]' }] }] },
        }),
    ],
    // Names the client makes up (a model, a path): nothing may be kept per distinct name.
    [
      1,
      'unknown model, a new name each time',
      () =>
        http('POST', '/v1/chat/completions', {
          tok: user(),
          body: { model: `no-such-model-${Math.random().toString(36).slice(2)}`, messages: msgs('Hi') },
        }),
    ],
    [
      1,
      'gemini native: unknown model, a new name each time',
      () =>
        http('POST', `/v1beta/models/gemini-${Math.random().toString(36).slice(2)}:generateContent`, {
          headers: { 'x-goog-api-key': user() },
          body: { contents: [{ role: 'user', parts: [{ text: 'Hi' }] }] },
        }),
    ],
    [
      1,
      'no such route, a new path each time',
      () => http('GET', `/v1/no-such-route/${Math.random().toString(36).slice(2)}`, { tok: user() }),
    ],
    [
      1,
      'hmac: signed chat',
      () => {
        // A body of its own: the same body signed in the same second is a replay.
        const raw = JSON.stringify({ model: GPT, messages: msgs(`Hi ${Math.random()}`), max_tokens: 16 });
        return http('POST', '/v1/chat/completions', { raw, headers: hmacHeaders(DEV_HMAC_CLIENT, 'POST', '/v1/chat/completions', raw) });
      },
    ],
    [
      1,
      'hmac: replayed signature',
      () => {
        const raw = JSON.stringify({ model: GPT, messages: msgs(`Hi ${Math.random()}`), max_tokens: 16 });
        const headers = hmacHeaders(DEV_HMAC_CLIENT, 'POST', '/v1/chat/completions', raw);
        return http('POST', '/v1/chat/completions', { raw, headers }).then((first) =>
          http('POST', '/v1/chat/completions', { raw, headers }).then((second) => `${first} then ${second}`),
        );
      },
    ],
  ];
  const total = scenarios.reduce((a, s) => a + s[0], 0);
  const pick = () => {
    let r = Math.random() * total;
    for (const s of scenarios) if ((r -= s[0]) < 0) return s;
    return scenarios[0];
  };

  const count = (kind, outcome) => {
    const byKind = (stats.outcomes[kind] ??= {});
    byKind[outcome] = (byKind[outcome] ?? 0) + 1;
  };
  async function worker(until) {
    while (Date.now() < until) {
      const [, kind, run] = pick();
      count(kind, String(await run()));
    }
  }

  /** Runs `n` requests of one kind only, `concurrency` at a time, to their ends. */
  async function runKind(kind, n, concurrency) {
    const [, , run] = scenarios.find((s) => s[1] === kind);
    let left = n;
    const one = async () => {
      while (left-- > 0) count(kind, String(await run()));
    };
    await Promise.all(Array.from({ length: Math.min(concurrency, n) }, one));
  }

  /** Every ADMIN_PERIOD_MS: block the blocked user, and lift the block halfway to the next. */
  async function admin(until) {
    const call = async (method, pathname, body) => {
      const status = await http(method, pathname, { tok: tokens.admin, body, audited: false });
      const key = `${method} ${pathname.split('?')[0]} ${status}`;
      stats.admin[key] = (stats.admin[key] ?? 0) + 1;
    };
    while (Date.now() < until) {
      const t = Date.now();
      await call('POST', '/admin/blocks', { product: 'demo', user: BLOCKED_USER, reason: 'soak test' });
      await sleep(ADMIN_PERIOD_MS / 2);
      await call('DELETE', `/admin/blocks?product=demo&user=${BLOCKED_USER}`);
      await sleep(Math.max(0, ADMIN_PERIOD_MS - (Date.now() - t)));
    }
  }

  // A slow kind (one that waits out a timeout) runs at a higher concurrency in --per-kind.
  // (Upstream failures wait for retries, aborts for their moment, too.)
  const kinds = scenarios.map(([, kind, , slow]) => ({ kind, slow: slow === true || /^abort|upstream/.test(kind) }));
  return {
    worker,
    admin,
    sent,
    kinds,
    runKind,
    rid,
    block: () =>
      http('POST', '/admin/blocks', {
        tok: tokens.admin,
        body: { product: 'demo', user: BLOCKED_USER, reason: 'soak test' },
        audited: false,
      }),
  };
}

// ---------------------------------------------------------------------------------------------
// --per-kind: each kind of request alone

/** After a kind's last request: deferred clean-ups (a stream body's end grace, a response's close) run meanwhile. */
const SETTLE_MS = 2000;

/**
 * --per-kind N: each kind of request alone, N of them (a slow kind, which waits out a timeout, at
 * four times the concurrency), between two forced full GCs: the heap it left behind per 1,000
 * requests, and the handles and listeners it left open. The blocked user is blocked throughout.
 * With --snapshot-kind KIND, heap snapshots before and after that kind (kind-a, kind-b); with
 * --snapshot-kind all, before the first kind and after the last.
 */
async function measureKinds(opts, traffic, cdp, gateway, port, mint, out) {
  mint();
  await traffic.block();
  const rows = [];
  const all = opts.snapshotKind === 'all';
  const allA = all ? await heapSnapshot(cdp, out('kind-a.heapsnapshot')) : null;
  for (const { kind, slow } of traffic.kinds.filter((k) => !opts.kinds || opts.kinds.test(k.kind))) {
    const concurrency = slow ? opts.concurrency * 4 : opts.concurrency;
    // A quarter as many first, not measured: the kind's own code compiled, its caches filled.
    await traffic.runKind(kind, Math.ceil(opts.perKind / 4), concurrency);
    const snap = opts.snapshotKind === kind;
    const snapA = snap ? await heapSnapshot(cdp, out('kind-a.heapsnapshot')) : null;
    const before = await sample(cdp, gateway.pid, port);
    const sentBefore = traffic.sent.size;
    const t = Date.now();
    await traffic.runKind(kind, opts.perKind, concurrency);
    const seconds = (Date.now() - t) / 1000;
    await sleep(SETTLE_MS);
    const after = await sample(cdp, gateway.pid, port);
    const row = {
      kind,
      n: opts.perKind,
      seconds,
      sent: traffic.sent.size - sentBefore,
      retainedPer1000: Math.round((((after.heapMb - before.heapMb) * 1048576) / opts.perKind) * 1000),
      handles: after.handles - before.handles,
      listeners: after.listeners - before.listeners,
      heapMb: after.heapMb,
    };
    rows.push(row);
    log(
      `${kind}: ${row.n} in ${seconds.toFixed(1)} s, ${(row.retainedPer1000 / 1024).toFixed(1)} kB retained per 1,000, ` +
        `handles ${row.handles >= 0 ? '+' : ''}${row.handles}, listeners ${row.listeners >= 0 ? '+' : ''}${row.listeners}`,
    );
    if (snap) {
      const grew = diffCounts(snapA, await heapSnapshot(cdp, out('kind-b.heapsnapshot')));
      row.grew = grew.slice(0, 30);
    }
  }
  if (all) rows.push({ kind: 'all', grew: diffCounts(allA, await heapSnapshot(cdp, out('kind-b.heapsnapshot'))).slice(0, 30) });
  return rows;
}

// ---------------------------------------------------------------------------------------------
// Idle kept-alive connections

/** The body of each request of {@link measureIdleConnections}: large, so that a connection that keeps it shows. */
const IDLE_PROMPT_CHARS = 500_000;

/**
 * What a kept-alive connection keeps of its last request once it is idle (the gateway keeps such a
 * connection up to 620 s): `n` connections each send one request with a 500 kB prompt and stay
 * open; the heap after forced GCs then, less the heap once they are closed, per connection. For
 * an answered request, a refused one (parameter policy, unknown model) and a stream.
 */
async function measureIdleConnections(n, cdp, gateway, port, tok, rid) {
  const heapMb = async () => (await sample(cdp, gateway.pid, port)).heapMb;
  const send = (agent, body) =>
    new Promise((resolve) => {
      const text = JSON.stringify(body);
      const req = http.request(
        {
          host: '127.0.0.1',
          port,
          path: '/v1/chat/completions',
          method: 'POST',
          agent,
          headers: {
            authorization: `Bearer ${tok}`,
            'content-type': 'application/json',
            'content-length': Buffer.byteLength(text),
            'x-request-id': rid(),
          },
        },
        (res) => res.resume().on('end', () => resolve(res.statusCode)),
      );
      req.on('error', () => resolve('network'));
      req.end(text);
    });
  const prompt = [{ role: 'user', content: 'x '.repeat(IDLE_PROMPT_CHARS / 2) }];
  const cases = [
    ['answered', { model: GPT, messages: prompt, max_tokens: 16 }],
    ['answered stream', { model: GPT, messages: prompt, max_tokens: 16, stream: true }],
    ['refused: parameter policy', { model: GPT, messages: prompt, temperature: 9 }],
    ['refused: unknown model', { model: 'no-such-model', messages: prompt }],
  ];
  const rows = [];
  for (const [name, body] of cases) {
    const agents = Array.from({ length: n }, () => new http.Agent({ keepAlive: true, maxSockets: 1 }));
    const statuses = await Promise.all(agents.map((agent) => send(agent, body)));
    await sleep(SETTLE_MS);
    const open = await heapMb();
    for (const agent of agents) agent.destroy();
    await sleep(SETTLE_MS);
    const closed = await heapMb();
    const row = {
      case: name,
      connections: n,
      statuses: [...new Set(statuses)],
      keptKbPerConnection: Math.round(((open - closed) * 1024) / n),
    };
    rows.push(row);
    log(`idle connections, ${name} (${row.statuses.join(', ')}): ${row.keptKbPerConnection} kB kept per connection`);
  }
  return rows;
}

// ---------------------------------------------------------------------------------------------
// Redis keys

/** A key with its ids, days, hashes and soak users generalised, to count keys by kind. */
function keyPattern(key) {
  return key
    .replace(/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/g, '<uuid>')
    .replace(/\b(resp|msg|rs|fc|fs|ws|ig|ci|cntr)_[A-Za-z0-9]+/g, '$1_<id>')
    .replace(/\d{4}-\d{2}-\d{2}/g, '<day>')
    .replace(/[0-9a-f]{32,}/g, '<hash>')
    .replace(/:\d{6,}:/g, ':<n>:')
    .replace(/soak-[a-z-]+/g, '<user>');
}

/**
 * Every key in the soak's Redis, counted by pattern ({@link keyPattern}): how many, how many have no
 * TTL (what nothing will ever remove), and for those the most elements one holds (a hash's fields).
 */
function scanRedis(port) {
  const cli = (args, input) => {
    const r = spawnSync('redis-cli', ['-h', '127.0.0.1', '-p', String(port), ...args], {
      encoding: 'utf8',
      input,
      maxBuffer: 256 * 1024 * 1024,
      timeout: 120_000,
    });
    if (r.error || r.status !== 0) throw new Error(`redis-cli: ${r.error?.message ?? r.stderr}`);
    return r.stdout.split('\n').filter((line) => line !== '');
  };
  try {
    const keys = cli(['--scan']);
    const ttls = keys.length ? cli([], keys.map((k) => `PTTL ${k}`).join('\n')) : [];
    const patterns = {};
    const forever = keys.filter((k, i) => Number(ttls[i]) === -1);
    const types = forever.length ? cli([], forever.map((k) => `TYPE ${k}`).join('\n')) : [];
    const LENGTH = { hash: 'HLEN', set: 'SCARD', zset: 'ZCARD', list: 'LLEN', string: 'STRLEN', stream: 'XLEN' };
    const lengths = forever.length ? cli([], forever.map((k, i) => `${LENGTH[types[i]] ?? 'EXISTS'} ${k}`).join('\n')) : [];
    keys.forEach((key, i) => {
      const p = (patterns[keyPattern(key)] ??= { keys: 0, noTtl: 0, largest: 0 });
      p.keys++;
      const j = forever.indexOf(key);
      if (Number(ttls[i]) === -1) {
        p.noTtl++;
        p.type = types[j];
        p.largest = Math.max(p.largest, Number(lengths[j]) || 0);
      }
    });
    return { total: keys.length, patterns };
  } catch (error) {
    return { error: error.message };
  }
}

// ---------------------------------------------------------------------------------------------
// Verdicts

/** Least-squares slope of `ys` against `xs`, per unit of x. */
function slope(xs, ys) {
  const n = xs.length;
  const mx = xs.reduce((a, b) => a + b, 0) / n;
  const my = ys.reduce((a, b) => a + b, 0) / n;
  let num = 0;
  let den = 0;
  for (let i = 0; i < n; i++) {
    num += (xs[i] - mx) * (ys[i] - my);
    den += (xs[i] - mx) ** 2;
  }
  return den ? num / den : 0;
}

/**
 * The trend of one resource over the samples under load, the first one left out (warm-up):
 * growth per minute over the whole window and over its second half; `steady` when the second
 * half still grows by more than `tolerance` per minute (growth that does not flatten).
 */
function trend(samples, field, tolerance) {
  const load = samples.filter((s) => s.phase === 'load').slice(1);
  if (load.length < 4) return { steady: false, note: 'too few samples' };
  const xs = load.map((s) => s.t / 60);
  const ys = load.map((s) => s[field]);
  const half = Math.floor(load.length / 2);
  const whole = slope(xs, ys);
  const late = slope(xs.slice(half), ys.slice(half));
  return { perMinute: whole, latePerMinute: late, first: ys[0], last: ys.at(-1), steady: whole > tolerance && late > tolerance };
}

// ---------------------------------------------------------------------------------------------

async function main() {
  const opts = options();
  if (!opts) return;
  for (const main of [MOCK_MAIN, GATEWAY_MAIN])
    if (!fs.existsSync(main)) throw new Error(`${path.relative(ROOT, main)} missing: npm run build`);
  fs.mkdirSync(opts.out, { recursive: true });
  const out = (name) => path.join(opts.out, name);
  for (const f of fs.readdirSync(opts.out)) if (f.endsWith('.heapsnapshot')) fs.rmSync(out(f));
  const stats = { outcomes: {}, admin: {} };
  const samples = [];
  let cdp = null;
  try {
    startRedis(opts.redisPort, opts.out);
    // With --port-base B: the mock on B, the gateway on B+1, its inspector on B+2; free ports otherwise.
    const pickPort = (offset) => (opts.portBase ? Promise.resolve(opts.portBase + offset) : freePort());
    const mockPort = await pickPort(0);
    const mock = start('mock-upstream', [MOCK_MAIN], { ...cleanEnv(), PORT: String(mockPort) }, 'ignore');
    await waitFor(`http://127.0.0.1:${mockPort}/__mock/health`, mock, 15_000);

    const env = demoEnv(mockPort);
    const products = JSON.parse(env.API_KEY_SERVER_PRODUCT_KEYS);
    for (const name of [LIMITED_PRODUCT, QUOTA_PRODUCT, BUDGET_PRODUCT])
      products[name] = {
        providers: { openai: { api_key: `sk-mock-${name}`, models: [GPT], base_url: `http://127.0.0.1:${mockPort}/v1` } },
      };
    const policyFile = out('policy.yaml');
    fs.writeFileSync(
      policyFile,
      UNREACHABLE_LIMITS_POLICY +
        [
          'products:',
          `  ${LIMITED_PRODUCT}:`,
          '    limits: {user_requests_per_second: 1}',
          '    auto_block: {rejections: 30, window_seconds: 10, block_seconds: 3}',
          `  ${QUOTA_PRODUCT}:`,
          '    limits: {user_daily_tokens: 5}',
          '    auto_block: {rejections: 50, window_seconds: 10, block_seconds: 2}',
          `  ${BUDGET_PRODUCT}:`,
          '    limits: {user_daily_cost_usd: 0.000001}',
          '    auto_block: {rejections: 50, window_seconds: 10, block_seconds: 2}',
          '',
        ].join('\n'),
    );
    const port = await pickPort(1);
    const inspectPort = await pickPort(2);
    const gatewayOut = out('gateway.stdout.jsonl');
    const gatewayErr = out('gateway.stderr.log');
    const gateway = start(
      'gateway',
      // --per-kind: V8 keeps the bytecode of functions not run lately (it drops it by default, after a
      // few GCs), or each kind's heap would be the code the kinds before it compiled and it dropped.
      [...gatewayNodeArgs(), ...(opts.perKind ? ['--no-flush-bytecode'] : []), `--inspect=127.0.0.1:${inspectPort}`, GATEWAY_MAIN],
      {
        ...cleanEnv(),
        ...env,
        API_KEY_SERVER_PRODUCT_KEYS: JSON.stringify(products),
        PORT: String(port),
        LOG_LEVEL: 'info',
        METADATA_SERVER_DETECTION: 'none',
        API_KEY_SERVER_POLICY_FILE: policyFile,
        API_KEY_SERVER_REDIS_URL: `redis://127.0.0.1:${opts.redisPort}`,
        API_KEY_SERVER_SHUTDOWN_DRAIN_SECONDS: '2',
        API_KEY_SERVER_UPSTREAM_TTFB_TIMEOUT_MS: String(TTFB_TIMEOUT_MS),
        API_KEY_SERVER_UPSTREAM_IDLE_TIMEOUT_MS: String(IDLE_TIMEOUT_MS),
      },
      ['ignore', 'pipe', 'pipe'],
    );
    // The gateway's output: audit lines counted by request id, other WARNING/ERROR lines and stderr kept.
    const audits = new Map();
    let auditLines = 0;
    const logLines = {};
    const stderrLines = {};
    const outFile = fs.createWriteStream(gatewayOut);
    const errFile = fs.createWriteStream(gatewayErr);
    const outDone = new Promise((resolve) => {
      readline.createInterface({ input: gateway.stdout }).on('line', (line) => {
        outFile.write(line + '\n');
        let rec;
        try {
          rec = JSON.parse(line);
        } catch {
          logLines[`(not JSON) ${line.slice(0, 120)}`] = (logLines[`(not JSON) ${line.slice(0, 120)}`] ?? 0) + 1;
          return;
        }
        if (rec.type === 'audit') {
          auditLines++;
          audits.set(rec.requestId, (audits.get(rec.requestId) ?? 0) + 1);
        } else if (['WARNING', 'ERROR', 'CRITICAL', 'ALERT', 'EMERGENCY'].includes(rec.severity)) {
          const key = `${rec.severity} ${String(rec.message).slice(0, 160)}`;
          logLines[key] = (logLines[key] ?? 0) + 1;
        }
      });
      gateway.stdout.on('end', resolve);
    });
    readline.createInterface({ input: gateway.stderr }).on('line', (line) => {
      errFile.write(line + '\n');
      if (/^(Debugger (listening|attached|ending)|For help, see|Waiting for the debugger)/.test(line)) return;
      const key = line.slice(0, 200);
      stderrLines[key] = (stderrLines[key] ?? 0) + 1;
    });
    await waitFor(`http://127.0.0.1:${port}/readyz`, gateway, 30_000);
    log(`gateway pid ${gateway.pid} on :${port} (inspector :${inspectPort}), mock on :${mockPort}, Redis on :${opts.redisPort}`);

    const tokens = {};
    const mint = () =>
      Object.assign(tokens, {
        users: USERS.map((u) => token('demo', u)),
        limited: token(LIMITED_PRODUCT, LIMITED_USER),
        quota: token(QUOTA_PRODUCT, 'soak-quota-user'),
        budget: token(BUDGET_PRODUCT, 'soak-budget-user'),
        blocked: token('demo', BLOCKED_USER),
        admin: token('demo', 'soak-operator', 'keygate.admin'),
      });
    mint();
    const traffic = makeTraffic(`http://127.0.0.1:${port}`, tokens, stats);
    cdp = await cdpConnect(inspectPort);
    await cdp.send('HeapProfiler.enable');

    const t0 = Date.now();
    let snapA = null;
    const record = async (phase) => {
      const s = {
        t: Math.round((Date.now() - t0) / 1000),
        phase,
        afterSnapshot: snapA !== null,
        ...(await sample(cdp, gateway.pid, port)),
        sent: traffic.sent.size,
        audited: auditLines,
      };
      samples.push(s);
      log(
        `t=${s.t}s ${phase}: heap ${s.heapMb.toFixed(1)} MB, RSS ${s.rssMb?.toFixed(1)} MB, handles ${s.handles}, requests ${s.requests}, ` +
          `listeners ${s.listeners}, sent ${s.sent}, audited ${s.audited}`,
      );
      return s;
    };
    await record('idle');

    const until = Date.now() + opts.minutes * 60_000;
    // Half way: far enough from the end for a trend between A and B, late enough for the warm-up to be over.
    const snapshotAt = t0 + (opts.minutes * 60_000) / 2;
    // The tokens live 15 minutes (the gateway's longest): fresh ones every 10.
    const refresh = async () => {
      for (let next = Date.now() + TOKEN_REFRESH_MS; Date.now() < until; await sleep(1000)) {
        if (Date.now() < next) continue;
        mint();
        next = Date.now() + TOKEN_REFRESH_MS;
      }
    };
    const runs = [...Array.from({ length: opts.concurrency }, () => traffic.worker(until)), traffic.admin(until), refresh()];
    const allDone = Promise.all(runs);
    let finished = false;
    void allDone.then(() => (finished = true));
    while (!finished) {
      await Promise.race([allDone, sleep(Math.min(opts.sampleSeconds * 1000, Math.max(0, until - Date.now()) + 10))]);
      if (finished) break;
      if (Date.now() >= until) continue;
      await record('load');
      if (opts.snapshots && !opts.perKind && !snapA && Date.now() >= snapshotAt) {
        log('heap snapshot A');
        snapA = await heapSnapshot(cdp, out('a.heapsnapshot'));
      }
    }
    await allDone;
    log(`traffic over: ${traffic.sent.size} audited requests sent; quiet for ${opts.quiesceSeconds} s`);
    await sleep(opts.quiesceSeconds * 1000);
    await record('quiesced');
    let grew = null;
    if (opts.snapshots && snapA) {
      log('heap snapshot B');
      grew = diffCounts(snapA, await heapSnapshot(cdp, out('b.heapsnapshot')));
    }
    const idle = opts.idleConnections
      ? await measureIdleConnections(opts.idleConnections, cdp, gateway, port, tokens.users[0], traffic.rid)
      : null;
    const perKind = opts.perKind ? await measureKinds(opts, traffic, cdp, gateway, port, mint, out) : null;
    if (opts.perKind) await record('per-kind done');
    cdp.close();
    cdp = null;
    const redisKeys = scanRedis(opts.redisPort);

    stopping = true;
    gateway.kill('SIGTERM');
    await Promise.race([new Promise((resolve) => gateway.once('exit', resolve)), sleep(15_000)]);
    if (gateway.exitCode === null && gateway.signalCode === null) {
      log('gateway still running 15 s after SIGTERM: killed');
      gateway.kill('SIGKILL');
    }
    await Promise.race([outDone, sleep(5000)]);
    outFile.end();
    errFile.end();

    // The audit contract: exactly one line per request sent.
    const missing = [...traffic.sent].filter((id) => !audits.has(id));
    // Requests answered 408 before keygate read them (see notReceived) have no audit line to find.
    const notReceived = stats.notReceived ?? 0;
    const duplicated = [...audits].filter(([, n]) => n > 1).map(([id]) => id);
    const unknown = [...audits.keys()].filter((id) => !traffic.sent.has(id)).length;

    const verdicts = {
      heapMb: trend(samples, 'heapMb', 0.25),
      // Taking a heap snapshot grows the RSS by hundreds of MB (V8 builds and serialises it in the
      // process), so the RSS trend is read from the samples before the first snapshot.
      rssMb: trend(
        samples.filter((s) => !s.afterSnapshot),
        'rssMb',
        1,
      ),
      handles: trend(samples, 'handles', 0.5),
      listenersPerHandle: trend(samples, 'listenersPerHandle', 0.05),
    };
    const report = [];
    report.push('');
    report.push('    t  phase      heap MB   RSS MB  handles  requests  listeners  external MB     sent  audited');
    for (const s of samples)
      report.push(
        `${String(s.t).padStart(5)}  ${s.phase.padEnd(9)} ${s.heapMb.toFixed(1).padStart(8)} ${(s.rssMb ?? NaN).toFixed(1).padStart(8)} ` +
          `${String(s.handles).padStart(8)} ${String(s.requests).padStart(9)} ${String(s.listeners).padStart(10)} ` +
          `${(s.external / 1048576).toFixed(1).padStart(12)} ${String(s.sent).padStart(8)} ${String(s.audited).padStart(8)}`,
      );
    report.push('');
    for (const [name, v] of Object.entries(verdicts))
      report.push(
        v.note
          ? `${name}: ${v.note}`
          : `${name}: ${v.first.toFixed(1)} → ${v.last.toFixed(1)} under load; ${v.perMinute.toFixed(2)}/min overall, ` +
              `${v.latePerMinute.toFixed(2)}/min in the second half: ${v.steady ? 'GROWING' : 'flat'}`,
      );
    const last = samples.at(-1);
    report.push(`final handles by type: ${JSON.stringify(last.byType)} (${JSON.stringify(last.sockets)})`);
    report.push(`final resources: ${JSON.stringify(last.resources)}`);
    report.push(`final listeners: ${JSON.stringify(last.listenersByType)}; process: ${JSON.stringify(last.processListeners)}`);
    report.push(`most listeners on one emitter event: ${JSON.stringify(last.maxListeners)}`);
    report.push('');
    report.push(
      `audit: ${traffic.sent.size} requests sent, ${auditLines} audit lines; ${missing.length} without an audit line, ` +
        `${duplicated.length} with more than one, ${unknown} lines for ids not sent; ${notReceived} answered 408 before keygate read them`,
    );
    for (const id of missing.slice(0, 10)) report.push(`  no audit line: ${id}`);
    for (const id of duplicated.slice(0, 10)) report.push(`  duplicated: ${id}`);
    report.push('');
    report.push('outcomes by kind:');
    for (const [kind, o] of Object.entries(stats.outcomes).sort()) report.push(`  ${kind.padEnd(36)} ${JSON.stringify(o)}`);
    report.push(`admin: ${JSON.stringify(stats.admin)}`);
    report.push('');
    report.push(`gateway stderr (${Object.keys(stderrLines).length} distinct lines):`);
    for (const [line, n] of Object.entries(stderrLines).slice(0, 30)) report.push(`  ${n} × ${line}`);
    report.push(`gateway WARNING/ERROR log lines (${Object.keys(logLines).length} distinct):`);
    for (const [line, n] of Object.entries(logLines)
      .sort((a, b) => b[1] - a[1])
      .slice(0, 30))
      report.push(`  ${n} × ${line}`);
    if (idle) {
      report.push('');
      report.push(`idle kept-alive connections (${opts.idleConnections} each, one request with a ${IDLE_PROMPT_CHARS / 1000} kB prompt):`);
      for (const r of idle)
        report.push(`  ${String(r.keptKbPerConnection).padStart(6)} kB kept per connection  ${r.case} (${r.statuses.join(', ')})`);
    }
    if (perKind) {
      report.push('');
      report.push(`each kind alone (${opts.perKind} requests each; heap after forced GCs):`);
      report.push('  kB per 1,000   handles  listeners  seconds  kind');
      for (const r of perKind.filter((k) => k.n))
        report.push(
          `${(r.retainedPer1000 / 1024).toFixed(1).padStart(13)} ${String(r.handles).padStart(9)} ${String(r.listeners).padStart(10)} ` +
            `${r.seconds.toFixed(1).padStart(8)}  ${r.kind}`,
        );
      for (const r of perKind.filter((k) => k.grew)) {
        report.push(`heap snapshots around ${r.kind}, groups that grew most:`);
        report.push(formatDiff(r.grew, 25));
      }
    }
    report.push('');
    if (redisKeys.error) report.push(`Redis keys: ${redisKeys.error}`);
    else {
      report.push(`Redis keys at the end: ${redisKeys.total}, by pattern (no TTL: what nothing removes; largest: its most elements):`);
      for (const [p, v] of Object.entries(redisKeys.patterns).sort((a, b) => b[1].keys - a[1].keys))
        report.push(`  ${String(v.keys).padStart(7)} ${p}${v.noTtl ? `  (${v.noTtl} without TTL, ${v.type}, largest ${v.largest})` : ''}`);
    }
    if (grew) {
      report.push('');
      report.push('heap snapshot A (half way) → B (quiesced), groups that grew most:');
      report.push(formatDiff(grew, 25));
    }
    process.stdout.write(report.join('\n') + '\n');
    fs.writeFileSync(
      out('soak.json'),
      JSON.stringify(
        {
          opts,
          samples,
          verdicts,
          audit: { sent: traffic.sent.size, lines: auditLines, missing, duplicated, unknown },
          stats,
          stderrLines,
          logLines,
          grew: grew?.slice(0, 50),
          perKind,
          idle,
          redisKeys,
        },
        null,
        2,
      ),
    );
    log(`results in ${path.relative(process.cwd(), opts.out)}`);
    const leaking = Object.entries(verdicts).some(([name, v]) => name !== 'rssMb' && v.steady);
    if (leaking || missing.length > notReceived || duplicated.length) process.exitCode = 1;
  } finally {
    stopping = true;
    cdp?.close();
    for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
    stopRedis();
  }
}

module.exports = { trend, probe, keyPattern };

if (require.main === module)
  main().catch((error) => {
    log(`FAILED: ${error.stack ?? error.message}`);
    process.exitCode = 1;
  });
