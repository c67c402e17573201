#!/usr/bin/env node
'use strict';
// CPU profile of the gateway under the bench's load: where each request's time goes.
//
//   npm run profile -- [--mode plain|stream] [--connections C] [--duration S] [--model M] [--auth jwt|hmac]
//                      [--interval US] [--top N] [--match REGEX] [--redis URL | --no-redis] [--out FILE]
//
// Starts the mock upstream and the built gateway (under `node --cpu-prof`, the bench's demo product
// and limits no load can reach, LOG_LEVEL=info), warms it up, then loads it with bench/load-worker.js
// for the measured window. The gateway is stopped with SIGTERM, so it writes its profile; only the
// samples of the measured window are summarised (self time by owner and by function, µs per
// request). The profile is kept (default bench/results/gateway.cpuprofile) for Chrome DevTools or
// speedscope. The profiler slows the gateway down: figures from here are shares, not speed; the
// speed is `npm run bench`'s.
const { spawn, execFileSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { parseArgs } = require('node:util');
const { demoEnv, DEV_HMAC_CLIENT } = require('../dev/demo-env');
const { summarize, formatSummary } = require('./cpuprofile-summary');
const {
  cleanEnv,
  freePort,
  gatewayNodeArgs,
  integerOption,
  loadRunOptions,
  printedHelp,
  loadWorker,
  waitFor,
  UNREACHABLE_LIMITS_POLICY,
} = require('./processes');

const ROOT = path.join(__dirname, '..');
const MOCK_MAIN = path.join(ROOT, 'dist/apps/mock-upstream/main.js');
const GATEWAY_MAIN = path.join(ROOT, 'dist/apps/gateway/main.js');
const CHAT_PATH = '/v1/chat/completions';
const log = (line) => process.stderr.write(`[profile] ${line}\n`);
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function options() {
  const { values } = parseArgs({
    options: {
      ...loadRunOptions(10),
      auth: { type: 'string', default: 'jwt' },
      interval: { type: 'string', default: '250' },
      top: { type: 'string', default: '30' },
      match: { type: 'string' },
      out: { type: 'string', default: path.join(ROOT, 'bench/results/gateway.cpuprofile') },
      policy: { type: 'string' },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (printedHelp(values, __filename)) return undefined;
  const num = (name, min) => integerOption(values, name, min);
  if (!['plain', 'stream'].includes(values.mode)) throw new Error('--mode must be plain or stream');
  if (!['jwt', 'hmac'].includes(values.auth)) throw new Error('--auth must be jwt or hmac');
  return {
    mode: values.mode,
    connections: num('connections', 1),
    duration: num('duration', 1),
    warmup: num('warmup', 0),
    model: values.model,
    auth: values.auth,
    interval: num('interval', 50),
    top: num('top', 1),
    match: values.match ? new RegExp(values.match) : undefined,
    redisUrl: values['no-redis'] ? null : values.redis,
    out: path.resolve(values.out),
    policy: values.policy ? path.resolve(values.policy) : undefined,
  };
}

const children = [];
function start(name, args, env, stdio) {
  const child = spawn(process.execPath, args, { cwd: ROOT, env, stdio });
  children.push(child);
  child.on('exit', (code, signal) => {
    if (!stopping) log(`${name} exited early (${signal ?? `code ${code}`})`);
  });
  return child;
}
let stopping = false;
process.on('exit', () => {
  for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
});

async function main() {
  const opts = options();
  if (!opts) return;
  for (const main of [MOCK_MAIN, GATEWAY_MAIN])
    if (!fs.existsSync(main)) throw new Error(`${path.relative(ROOT, main)} missing: npm run build`);
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'keygate-profile-'));
  try {
    const mockPort = await freePort();
    const mock = start('mock-upstream', [MOCK_MAIN], { ...cleanEnv(), PORT: String(mockPort) }, 'ignore');
    await waitFor(`http://127.0.0.1:${mockPort}/__mock/health`, mock, 15_000);

    const policyFile = opts.policy ?? path.join(tmp, 'policy.yaml');
    if (!opts.policy) fs.writeFileSync(policyFile, UNREACHABLE_LIMITS_POLICY);
    const port = await freePort();
    const profDir = path.join(tmp, 'prof');
    const gateway = start(
      'gateway',
      [...gatewayNodeArgs(), '--cpu-prof', `--cpu-prof-dir=${profDir}`, `--cpu-prof-interval=${opts.interval}`, GATEWAY_MAIN],
      {
        ...cleanEnv(),
        ...demoEnv(mockPort),
        PORT: String(port),
        LOG_LEVEL: 'info',
        API_KEY_SERVER_POLICY_FILE: policyFile,
        API_KEY_SERVER_SHUTDOWN_DRAIN_SECONDS: '2',
        ...(opts.redisUrl ? { API_KEY_SERVER_REDIS_URL: opts.redisUrl } : {}),
      },
      ['ignore', fs.openSync(path.join(tmp, 'gateway.stdout.jsonl'), 'w'), fs.openSync(path.join(tmp, 'gateway.stderr.log'), 'w')],
    );
    await waitFor(`http://127.0.0.1:${port}/readyz`, gateway, 30_000);
    log(
      `gateway pid ${gateway.pid} on :${port}, mock on :${mockPort}, ${opts.redisUrl ? `limits on ${opts.redisUrl}` : 'in-memory limits'}`,
    );

    const body = JSON.stringify({
      model: opts.model,
      messages: [{ role: 'user', content: 'Say hello in one short sentence.' }],
      max_tokens: 64,
      ...(opts.mode === 'stream' ? { stream: true } : {}),
    });
    const request = {
      url: `http://127.0.0.1:${port}${CHAT_PATH}`,
      method: 'POST',
      body,
      connections: opts.connections,
      timeout: 10,
      ...(opts.auth === 'hmac'
        ? { headers: { 'content-type': 'application/json' }, hmac: { id: DEV_HMAC_CLIENT.id, secret: DEV_HMAC_CLIENT.secret } }
        : {
            headers: {
              'content-type': 'application/json',
              authorization: `Bearer ${execFileSync(process.execPath, ['scripts/token.js', '--product', 'demo', '--user', 'profile', '--ttl', '900'], { cwd: ROOT, encoding: 'utf8' }).trim()}`,
            },
          }),
    };
    const worker = loadWorker(children, ROOT);
    await worker.ready;
    if (opts.warmup) await worker.run({ ...request, duration: opts.warmup });
    // The profile's timestamps are CLOCK_MONOTONIC µs, as process.hrtime.
    const from = Number(process.hrtime.bigint() / 1000n);
    const result = await worker.run({ ...request, duration: opts.duration });
    const to = Number(process.hrtime.bigint() / 1000n);
    log(
      `${opts.mode} @${opts.connections} ${opts.auth}, ${opts.model}: ${result.responses} responses in ${result.durationS.toFixed(1)} s ` +
        `(${JSON.stringify(result.statusCounts)}, ${result.errors} errors), p50 ${result.latencyMs.p50?.toFixed(3)} ms — under the profiler`,
    );

    stopping = true;
    worker.child.send({ type: 'stop' });
    gateway.kill('SIGTERM');
    const [code] = await Promise.race([
      new Promise((resolve) => gateway.once('exit', (c, s) => resolve([c ?? s]))),
      sleep(15_000).then(() => ['timeout']),
    ]);
    if (code !== 0) throw new Error(`gateway stop: ${code}; no profile written`);
    const file = fs.readdirSync(profDir).find((f) => f.endsWith('.cpuprofile'));
    if (!file) throw new Error('the gateway wrote no .cpuprofile');
    fs.mkdirSync(path.dirname(opts.out), { recursive: true });
    fs.copyFileSync(path.join(profDir, file), opts.out);
    const summary = summarize(JSON.parse(fs.readFileSync(opts.out, 'utf8')), { from, to, match: opts.match });
    process.stdout.write(formatSummary(summary, { top: opts.top, requests: result.responses }));
    log(`profile kept in ${path.relative(process.cwd(), opts.out)}`);
  } finally {
    stopping = true;
    for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

main().catch((error) => {
  log(`FAILED: ${error.message}`);
  process.exitCode = 1;
});
