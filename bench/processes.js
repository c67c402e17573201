'use strict';
// What bench.js, profile.js and ab.js need to start keygate's processes the same way and to
// measure them.
const { execFileSync, fork } = require('node:child_process');
const fs = require('node:fs');
const net = require('node:net');
const path = require('node:path');

/** The integer value of a command-line option (parsed by util.parseArgs), at least `min`; throws otherwise. */
function integerOption(values, name, min) {
  const n = Number(values[name]);
  if (!Number.isInteger(n) || n < min) throw new Error(`--${name} must be an integer ≥ ${min}`);
  return n;
}

/** A free TCP port on 127.0.0.1. */
function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

/** The environment without the caller's keygate configuration, which must not leak into a measurement. */
function cleanEnv() {
  const env = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (/^(API_KEY_SERVER_|USE_SECRET_MANAGER$|GOOGLE_|LOG_LEVEL$|PORT$|HOST$|MOCK_|UPSTREAM$)/.test(k)) continue;
    env[k] = v;
  }
  return env;
}

/**
 * The policy file of a measured gateway: rate limits, daily caps, token quotas and cost budgets far
 * above any load, so every request pays for its counters, its token reservation and its budget
 * check but none is refused; and prices for the bench's models, so every request is priced too.
 */
const UNREACHABLE_LIMITS_POLICY = [
  'defaults:',
  '  limits:',
  '    requests_per_second: 1000000',
  '    user_requests_per_second: 1000000',
  '    daily_requests: 1000000000',
  '    user_daily_requests: 1000000000',
  '    daily_tokens: 100000000000',
  '    user_daily_tokens: 100000000000',
  '    daily_cost_usd: 1000000000',
  '    user_daily_cost_usd: 1000000000',
  // Priced, so every request also pays for its cost: computed for its audit line, counted in the
  // metrics and added to the day's totals (/admin/usage). Every model the demo product serves (the
  // profile and A/B tools take --model): under a budget an unpriced one is refused.
  'prices:',
  '  gpt-4o: {input: 2.5, cached_input: 1.25, output: 10}',
  '  gpt-4o-mini: {input: 0.15, cached_input: 0.075, output: 0.6}',
  '  text-embedding-3-small: {input: 0.02, output: 0}',
  '  gemini-1.5-pro: {input: 1.25, cached_input: 0.3125, output: 5}',
  '  text-embedding-004: {input: 0, output: 0}',
  '  claude-3-5-sonnet*: {input: 3, cached_input: 0.3, cache_write: 3.75, output: 15}',
  '  gemini-2.5-flash: {input: 0.3, cached_input: 0.03, output: 2.5}',
  '',
].join('\n');

/**
 * The node flags the container image starts the gateway with (the Dockerfile's CMD, less the
 * script), so that what is measured is what ships. Throws when the CMD is not the exec form ending
 * in the gateway's bundle.
 */
function gatewayNodeArgs() {
  const dockerfile = fs.readFileSync(path.join(__dirname, '..', 'Dockerfile'), 'utf8');
  const cmd = [...dockerfile.matchAll(/^CMD\s+(\[.*\])\s*$/gm)].at(-1);
  const args = cmd ? JSON.parse(cmd[1]) : null;
  if (!Array.isArray(args) || args.at(-1) !== 'dist/apps/gateway/main.js')
    throw new Error('Dockerfile: CMD must be the exec form ["<node flag>", …, "dist/apps/gateway/main.js"]');
  return args.slice(0, -1);
}

let CLK_TCK = 100;
try {
  CLK_TCK = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
} catch {
  // 100 on every Linux this will meet.
}

/** User + system CPU seconds of a whole process (all threads), from /proc/<pid>/stat. */
function cpuSeconds(pid) {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after "(comm)" start at field 3 (state); utime and stime are fields 14 and 15.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / CLK_TCK;
  } catch {
    return null;
  }
}

/** Busy and steal CPU seconds of the whole machine (all cores), from /proc/stat. */
function machineCpu() {
  try {
    const line = fs.readFileSync('/proc/stat', 'utf8').split('\n', 1)[0];
    const [user, nice, system, idle, iowait, irq, softirq, steal] = line.trim().split(/\s+/).slice(1).map(Number);
    return { busy: (user + nice + system + irq + softirq) / CLK_TCK, steal: (steal || 0) / CLK_TCK, idle: (idle + iowait) / CLK_TCK };
  } catch {
    return null;
  }
}

/** Resident set size in MB, from /proc/<pid>/status. */
function rssMb(pid) {
  try {
    const m = /^VmRSS:\s+(\d+) kB/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) / 1024 : null;
  } catch {
    return null;
  }
}

/** Polls `url` until it answers 200; throws when `child` exits first or after `timeoutMs`. */
async function waitFor(url, child, timeoutMs) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) throw new Error(`${url}: the process exited`);
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(1000) });
      if (res.status === 200) return;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) throw new Error(`${url} not 200 after ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/**
 * Forks bench/load-worker.js (added to `children`, to be stopped by the caller): `ready` resolves
 * once it listens, `run(opts)` runs one load and resolves with its result.
 */
function loadWorker(children, cwd) {
  const child = fork(path.join(__dirname, 'load-worker.js'), [], { cwd, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  children.push(child);
  let next = 1;
  const ready = new Promise((resolve) => child.once('message', resolve));
  const run = (opts) =>
    new Promise((resolve, reject) => {
      const id = next++;
      const onMessage = (msg) => {
        if (msg.id !== id) return;
        child.off('message', onMessage);
        if (msg.type === 'result') resolve(msg.result);
        else reject(new Error(`load worker: ${msg.error}`));
      };
      child.on('message', onMessage);
      child.send({ type: 'run', id, opts });
    });
  return { ready, run, child };
}

/**
 * The `parseArgs` options profile.js and ab.js share: how one load run is made (mode, connections,
 * duration and warmup in seconds, model, Redis), with the tool's own default duration.
 */
function loadRunOptions(defaultDurationS) {
  return {
    mode: { type: 'string', default: 'plain' },
    connections: { type: 'string', default: '50' },
    duration: { type: 'string', default: String(defaultDurationS) },
    warmup: { type: 'string', default: '3' },
    model: { type: 'string', default: 'gpt-4o-mini' },
    // As the bench: the configured Redis, else the local one.
    redis: { type: 'string', default: process.env.API_KEY_SERVER_REDIS_URL || 'redis://127.0.0.1:6379' },
    'no-redis': { type: 'boolean', default: false },
  };
}

/**
 * `--help` of a bench tool: the comment at the head of its file (its usage and what it does), on
 * stdout. Returns whether it was asked for.
 */
function printedHelp(values, file) {
  if (!values.help) return false;
  const lines = fs.readFileSync(file, 'utf8').split('\n');
  const head = [];
  for (const line of lines.slice(1)) {
    if (line.startsWith("'use strict'")) continue;
    if (!line.startsWith('//')) break;
    head.push(line.replace(/^\/\/ ?/, ''));
  }
  process.stdout.write(`${head.join('\n')}\n`);
  return true;
}

module.exports = {
  loadRunOptions,
  printedHelp,
  freePort,
  cleanEnv,
  gatewayNodeArgs,
  integerOption,
  UNREACHABLE_LIMITS_POLICY,
  cpuSeconds,
  machineCpu,
  rssMb,
  waitFor,
  loadWorker,
};
