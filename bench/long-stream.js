#!/usr/bin/env node
'use strict';
// CPU per streamed chunk on long streams: the gateway against the bare pass-through proxy
// (bench/bare-proxy.js) on the same upstream stream, path by path, in interleaved rounds.
//
//   node bench/long-stream.js [--chunks N] [--requests R] [--concurrency C] [--rounds K]
//                             [--pace burst|paced] [--paths p1,p2,…] [--port-base P] [--json FILE]
//                             [--gateway MAIN.js] [--baseline MAIN.js] [--profile FILE [--top N]]
//
// Paths (gateway route → the mock route the bare proxy relays):
//   chat-openai      /v1/chat/completions on an OpenAI model  → the mock's chat completions
//   chat-anthropic   /v1/chat/completions on a Claude model   → the mock's /v1/messages (translated)
//   chat-gemini      /v1/chat/completions on a Gemini model   → the mock's streamGenerateContent (translated)
//   messages         /v1/messages (Anthropic's API)           → the same
//   gemini           Gemini's streamGenerateContent?alt=sse   → the same
//   responses        /v1/responses                            → the same
// The mock streams N content chunks (`[mock chunks=N answer_chars=4N]`): all at once (burst: the
// gateway reads many events per socket read) or one per millisecond (paced: about one event per
// read, as a model's stream arrives). CPU is the target process's own, all threads, read from
// /proc/<pid>/task/*/schedstat (nanoseconds), over the R requests of a run; µs per chunk divides it
// by R × N. The gateway runs on in-memory limits (no Redis), under a policy no load reaches.
// --baseline starts a second gateway from another build (a copy of dist/apps/gateway/main.js made
// before a change, beside a node_modules link), measured in the same rounds: the "paired" column is
// the median of the per-round differences, which a loaded machine's drift moves far less than either
// figure. --profile runs the gateway alone under `node --cpu-prof` and prints its self time per chunk
// by function (the profiler slows it: shares, not speed). Needs `npm run build`.
const { spawn, execFileSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { parseArgs } = require('node:util');
const { request } = require('undici');
const { demoEnv } = require('../dev/demo-env');
const { summarize, formatSummary } = require('./cpuprofile-summary');
const { cleanEnv, freePort, gatewayNodeArgs, integerOption, printedHelp, waitFor, UNREACHABLE_LIMITS_POLICY } = require('./processes');

const ROOT = path.join(__dirname, '..');
const MOCK_MAIN = path.join(ROOT, 'dist/apps/mock-upstream/main.js');
const GATEWAY_MAIN = path.join(ROOT, 'dist/apps/gateway/main.js');
const log = (line) => process.stderr.write(`[long-stream] ${line}\n`);

const ALL_PATHS = ['chat-openai', 'chat-anthropic', 'chat-gemini', 'messages', 'gemini', 'responses'];

function options() {
  const { values } = parseArgs({
    options: {
      chunks: { type: 'string', default: '4000' },
      requests: { type: 'string', default: '8' },
      concurrency: { type: 'string', default: '4' },
      rounds: { type: 'string', default: '3' },
      pace: { type: 'string', default: 'burst' },
      paths: { type: 'string', default: ALL_PATHS.join(',') },
      'port-base': { type: 'string' },
      json: { type: 'string' },
      baseline: { type: 'string' },
      gateway: { type: 'string' },
      profile: { type: 'string' },
      top: { type: 'string', default: '40' },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (printedHelp(values, __filename)) return undefined;
  const paths = values.paths.split(',').filter(Boolean);
  for (const p of paths) if (!ALL_PATHS.includes(p)) throw new Error(`unknown path ${p}`);
  if (!['burst', 'paced'].includes(values.pace)) throw new Error('--pace must be burst or paced');
  return {
    chunks: integerOption(values, 'chunks', 1),
    requests: integerOption(values, 'requests', 1),
    concurrency: integerOption(values, 'concurrency', 1),
    rounds: integerOption(values, 'rounds', 1),
    pace: values.pace,
    paths,
    portBase: values['port-base'] ? integerOption(values, 'port-base', 1024) : undefined,
    json: values.json,
    baseline: values.baseline ? path.resolve(values.baseline) : undefined,
    gateway: values.gateway ? path.resolve(values.gateway) : GATEWAY_MAIN,
    profile: values.profile ? path.resolve(values.profile) : undefined,
    top: integerOption(values, 'top', 1),
  };
}

/** CPU nanoseconds of a whole process (all its threads), from schedstat. */
function cpuNs(pid) {
  let total = 0;
  for (const tid of fs.readdirSync(`/proc/${pid}/task`)) {
    try {
      total += Number(fs.readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').split(' ')[0]);
    } catch {
      // a thread that just ended
    }
  }
  return total;
}

const children = [];
process.on('exit', () => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
});
function start(args, env, stdio) {
  const child = spawn(process.execPath, args, { cwd: ROOT, env, stdio });
  children.push(child);
  return child;
}

/** The request of each target for one path: the gateway's, and the bare proxy's to the mock. */
function requestsFor(name, prompt, token) {
  const gw = { authorization: `Bearer ${token}`, 'content-type': 'application/json' };
  const chat = (model) => ({ model, max_tokens: 4096, stream: true, messages: [{ role: 'user', content: prompt }] });
  const anthropic = { model: 'claude-3-5-sonnet-20241022', max_tokens: 4096, stream: true, messages: [{ role: 'user', content: prompt }] };
  const anthropicHeaders = (key) => ({ 'x-api-key': key, 'anthropic-version': '2023-06-01', 'content-type': 'application/json' });
  const geminiPath = '/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse';
  const gemini = { contents: [{ role: 'user', parts: [{ text: prompt }] }] };
  const responses = { model: 'gpt-4o-mini', input: prompt, stream: true };
  switch (name) {
    case 'chat-openai':
      return {
        gateway: { path: '/v1/chat/completions', headers: gw, body: chat('gpt-4o-mini') },
        bare: {
          path: '/v1/chat/completions',
          headers: { authorization: 'Bearer sk-mock-demo', 'content-type': 'application/json' },
          body: { ...chat('gpt-4o-mini'), stream_options: { include_usage: true } },
        },
      };
    case 'chat-anthropic':
      return {
        gateway: { path: '/v1/chat/completions', headers: gw, body: chat('claude-3-5-sonnet-20241022') },
        bare: { path: '/v1/messages', headers: anthropicHeaders('sk-ant-mock-demo'), body: anthropic },
      };
    case 'chat-gemini':
      return {
        gateway: { path: '/v1/chat/completions', headers: gw, body: chat('gemini-2.5-flash') },
        bare: { path: geminiPath, headers: { 'x-goog-api-key': 'AIza-mock-demo', 'content-type': 'application/json' }, body: gemini },
      };
    case 'messages':
      return {
        gateway: { path: '/v1/messages', headers: { ...anthropicHeaders(token), authorization: `Bearer ${token}` }, body: anthropic },
        bare: { path: '/v1/messages', headers: anthropicHeaders('sk-ant-mock-demo'), body: anthropic },
      };
    case 'gemini':
      return {
        gateway: { path: geminiPath, headers: gw, body: gemini },
        bare: { path: geminiPath, headers: { 'x-goog-api-key': 'AIza-mock-demo', 'content-type': 'application/json' }, body: gemini },
      };
    case 'responses':
      return {
        gateway: { path: '/v1/responses', headers: gw, body: responses },
        bare: {
          path: '/v1/responses',
          headers: { authorization: 'Bearer sk-mock-demo', 'content-type': 'application/json' },
          body: responses,
        },
      };
    default:
      throw new Error(name);
  }
}

/** One streamed request, read to its end: its status, bytes and `data:` lines. */
async function one(port, req) {
  const res = await request(`http://127.0.0.1:${port}${req.path}`, {
    method: 'POST',
    headers: req.headers,
    body: JSON.stringify(req.body),
  });
  let bytes = 0;
  let tail = '';
  let dataLines = 0;
  let head = '';
  for await (const chunk of res.body) {
    if (head.length < 300) head += chunk.toString('utf8', 0, 300);
    bytes += chunk.length;
    const text = tail + chunk.toString('latin1');
    let at = 0;
    for (;;) {
      const i = text.indexOf('data:', at);
      if (i === -1) break;
      dataLines++;
      at = i + 5;
    }
    // A `data:` split between reads: the tail keeps at most its first four bytes, never the whole word.
    tail = text.slice(-4);
  }
  return { status: res.statusCode, bytes, dataLines, head };
}

async function run(port, pid, req, opts) {
  const before = cpuNs(pid);
  let next = 0;
  const results = [];
  const worker = async () => {
    while (next < opts.requests) {
      next++;
      results.push(await one(port, req));
    }
  };
  const t0 = process.hrtime.bigint();
  await Promise.all(Array.from({ length: Math.min(opts.concurrency, opts.requests) }, worker));
  const wallS = Number(process.hrtime.bigint() - t0) / 1e9;
  const cpu = cpuNs(pid) - before;
  const bad = results.filter((r) => r.status !== 200);
  if (bad.length) throw new Error(`${req.path}: ${bad.length} request(s) not 200: ${bad[0].status} ${bad[0].head}`);
  // Every path writes at least one `data:` line per content chunk: fewer is a stream cut short.
  const short = results.find((r) => r.dataLines < opts.chunks);
  if (short) throw new Error(`${req.path}: a stream of ${short.dataLines} data lines, fewer than the ${opts.chunks} chunks asked for`);
  return { usPerChunk: cpu / 1e3 / (opts.requests * opts.chunks), wallS, dataLines: results[0].dataLines, bytes: results[0].bytes };
}

async function main() {
  const opts = options();
  if (!opts) return;
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'keygate-long-stream-'));
  const port = async (i) => (opts.portBase === undefined ? freePort() : opts.portBase + i);
  try {
    const mockPort = await port(0);
    const mock = start([MOCK_MAIN], { ...cleanEnv(), PORT: String(mockPort) }, 'ignore');
    await waitFor(`http://127.0.0.1:${mockPort}/__mock/health`, mock, 15_000);
    const barePort = await port(1);
    const bare = start(
      [path.join(__dirname, 'bare-proxy.js')],
      { ...cleanEnv(), PORT: String(barePort), UPSTREAM: `http://127.0.0.1:${mockPort}` },
      ['ignore', 'ignore', 'inherit'],
    );
    const policyFile = path.join(tmp, 'policy.yaml');
    fs.writeFileSync(policyFile, UNREACHABLE_LIMITS_POLICY);
    const profDir = path.join(tmp, 'prof');
    const startGateway = (main, gwPort, name, profile) =>
      start(
        [...gatewayNodeArgs(), ...(profile ? ['--cpu-prof', `--cpu-prof-dir=${profDir}`, '--cpu-prof-interval=100'] : []), main],
        {
          ...cleanEnv(),
          ...demoEnv(mockPort),
          PORT: String(gwPort),
          LOG_LEVEL: 'info',
          API_KEY_SERVER_POLICY_FILE: policyFile,
          API_KEY_SERVER_SHUTDOWN_DRAIN_SECONDS: '2',
          METADATA_SERVER_DETECTION: 'none',
        },
        ['ignore', fs.openSync(path.join(tmp, `${name}.stdout.jsonl`), 'w'), fs.openSync(path.join(tmp, `${name}.stderr.log`), 'w')],
      );
    const gwPort = await port(2);
    const gateway = startGateway(opts.gateway, gwPort, 'gateway', !!opts.profile);
    await waitFor(`http://127.0.0.1:${gwPort}/readyz`, gateway, 30_000);
    const targets = { gateway: { port: gwPort, pid: gateway.pid }, bare: { port: barePort, pid: 0 } };
    if (opts.baseline) {
      // Another build of the gateway (the one before a change), measured in the same rounds.
      const basePort = await port(3);
      const base = startGateway(opts.baseline, basePort, 'base', false);
      await waitFor(`http://127.0.0.1:${basePort}/readyz`, base, 30_000);
      targets.base = { port: basePort, pid: base.pid };
    }
    // The bare proxy answers any path: its readiness is the mock's health through it.
    await waitFor(`http://127.0.0.1:${barePort}/__mock/health`, bare, 15_000);
    // Tokens live 15 minutes at most: a fresh one every 10.
    let token;
    let minted = 0;
    const reqFor = (p, t) => {
      if (Date.now() - minted > 600_000) {
        token = execFileSync(process.execPath, ['scripts/token.js', '--product', 'demo', '--user', 'long-stream', '--ttl', '900'], {
          cwd: ROOT,
          encoding: 'utf8',
        }).trim();
        minted = Date.now();
      }
      return requestsFor(p, prompt, token)[t === 'base' ? 'gateway' : t];
    };
    const pace = opts.pace === 'paced' ? ' chunk_delay_ms=1' : '';
    const prompt = `Write a long answer. [mock chunks=${opts.chunks} answer_chars=${opts.chunks * 4}${pace}]`;
    targets.bare.pid = bare.pid;
    log(`gateway pid ${gateway.pid} :${gwPort}, bare pid ${bare.pid} :${barePort}, mock :${mockPort}; ${opts.pace}, ${opts.chunks} chunks`);
    // Warm-up: every path on both targets, a few requests.
    for (const p of opts.paths)
      for (const t of Object.keys(targets)) {
        const w = await run(targets[t].port, targets[t].pid, reqFor(p, t), { ...opts, requests: Math.min(4, opts.requests) });
        log(`warm-up ${p} ${t}: ${w.dataLines} data lines, ${w.bytes} bytes`);
      }
    const rows = [];
    if (opts.profile) {
      // The gateway alone, under the profiler: where its time per chunk goes.
      const from = Number(process.hrtime.bigint() / 1000n);
      for (let round = 1; round <= opts.rounds; round++)
        for (const p of opts.paths) await run(targets.gateway.port, targets.gateway.pid, reqFor(p, 'gateway'), opts);
      const to = Number(process.hrtime.bigint() / 1000n);
      gateway.kill('SIGTERM');
      await new Promise((resolve) => gateway.once('exit', resolve));
      const file = fs.readdirSync(profDir).find((f) => f.endsWith('.cpuprofile'));
      fs.copyFileSync(path.join(profDir, file), opts.profile);
      const summary = summarize(JSON.parse(fs.readFileSync(opts.profile, 'utf8')), { from, to });
      const chunks = opts.rounds * opts.paths.length * opts.requests * opts.chunks;
      process.stdout.write(formatSummary(summary, { top: opts.top, requests: chunks }).replace(/µs\/req/g, 'µs/chunk'));
      return;
    }
    for (let round = 1; round <= opts.rounds; round++) {
      for (const p of opts.paths) {
        // Each target takes its turn at going first.
        const names = Object.keys(targets);
        const order = names.map((_, i) => names[(i + round) % names.length]);
        for (const t of order) {
          const r = await run(targets[t].port, targets[t].pid, reqFor(p, t), opts);
          rows.push({ round, path: p, target: t, ...r });
          log(`round ${round} ${p.padEnd(15)} ${t.padEnd(8)} ${r.usPerChunk.toFixed(2).padStart(7)} µs/chunk  (${r.wallS.toFixed(2)} s)`);
        }
      }
    }
    const median = (xs) => {
      const s = [...xs].sort((a, b) => a - b);
      return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
    };
    process.stdout.write(
      `\n${opts.pace}, ${opts.chunks} chunks × ${opts.requests} requests @${opts.concurrency}, ${opts.rounds} rounds (µs CPU per chunk)\n`,
    );
    const fmt = (xs) => `${median(xs).toFixed(2)} (${xs.map((x) => x.toFixed(2)).join(' ')})`;
    const of = (p, t) => rows.filter((r) => r.path === p && r.target === t).map((r) => r.usPerChunk);
    const cols = Object.keys(targets);
    process.stdout.write(
      `${'path'.padEnd(16)}${cols.map((t) => `${t} (runs)`.padEnd(34)).join('')}gw−bare${targets.base ? '  base−bare  gw−base' : ''}\n`,
    );
    for (const p of opts.paths) {
      const m = Object.fromEntries(cols.map((t) => [t, median(of(p, t))]));
      process.stdout.write(
        `${p.padEnd(16)}${cols.map((t) => fmt(of(p, t)).padEnd(34)).join('')}${(m.gateway - m.bare).toFixed(2).padStart(7)}` +
          (targets.base ? `${(m.base - m.bare).toFixed(2).padStart(11)}${(m.gateway - m.base).toFixed(2).padStart(9)}` : '') +
          // Paired by round: the two builds measured back to back, under the same load.
          (targets.base
            ? `  paired gw−base ${median(of(p, 'gateway').map((g, i) => g - of(p, 'base')[i])).toFixed(2)} (${of(p, 'gateway')
                .map((g, i) => (g - of(p, 'base')[i]).toFixed(2))
                .join(' ')})`
            : '') +
          '\n',
      );
    }
    if (opts.json) fs.writeFileSync(opts.json, JSON.stringify({ opts, rows }, null, 2));
  } finally {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGTERM');
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

main().catch((error) => {
  log(`FAILED: ${error.stack ?? error.message}`);
  process.exitCode = 1;
});
