#!/usr/bin/env node
'use strict';
// Side-by-side A/B of two gateways: is change B cheaper than A?
//
//   npm run bench:ab -- [--a MAIN] [--b MAIN] [--a-args="NODE FLAGS"] [--b-args="NODE FLAGS"]
//                       [--rounds N] [--duration S] [--warmup S] [--connections C] [--mode plain|stream]
//                       [--model M] [--redis URL | --no-redis] [--memory-limit MB] [--policy FILE]
//
// MAIN is a built gateway's main.js (default: this checkout's dist/apps/gateway/main.js; another
// build comes from a `git worktree` of the older commit, built there). NODE FLAGS replace the
// flags the container image starts node with (the Dockerfile's CMD), which each gateway gets
// otherwise; `--b-args=` (empty) runs B on Node's defaults. Both gateways run at once
// against one mock upstream, with the bench's demo product and unreachable limits, and are loaded
// in turns: short bursts, A then B, then B then A, round after round. On a shared VM whose speed
// drifts by tens of percent within minutes (this project's CI machine), two runs of `npm run bench`
// minutes apart cannot resolve a 5 % change; two bursts seconds apart see the same machine, so the
// ratio of each round is steady where the absolute figures are not. For each round it prints the
// gateway's CPU time per request (from /proc, all threads), req/s and p50, then the median B/A
// ratio of each and how many rounds B used less CPU. The bench's targets are `npm run bench`'s,
// never this tool's.
//
// --policy FILE gives both gateways that policy file instead of the bench's (an older build may
// not know a field the bench's policy sets: it would refuse to boot).
//
// --memory-limit MB starts each gateway in a memory cgroup of its own with that limit (Linux, root:
// cgroup v2 or v1's memory controller), as a Kubernetes memory limit does: Node sizes its heap,
// and V8 its young generation, from it.
const { spawn, execFileSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { parseArgs } = require('node:util');
const { demoEnv } = require('../dev/demo-env');
const {
  cleanEnv,
  cpuSeconds,
  freePort,
  gatewayNodeArgs,
  integerOption,
  loadRunOptions,
  printedHelp,
  loadWorker,
  rssMb,
  waitFor,
  UNREACHABLE_LIMITS_POLICY,
} = require('./processes');

const ROOT = path.join(__dirname, '..');
const DEFAULT_MAIN = path.join(ROOT, 'dist/apps/gateway/main.js');
const MOCK_MAIN = path.join(ROOT, 'dist/apps/mock-upstream/main.js');
const log = (line) => process.stderr.write(`[ab] ${line}\n`);

function options(argv) {
  const { values } = parseArgs({
    args: argv,
    options: {
      a: { type: 'string', default: DEFAULT_MAIN },
      b: { type: 'string', default: DEFAULT_MAIN },
      'a-args': { type: 'string' },
      'b-args': { type: 'string' },
      ...loadRunOptions(3),
      rounds: { type: 'string', default: '10' },
      'memory-limit': { type: 'string' },
      policy: { type: 'string' },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (printedHelp(values, __filename)) return undefined;
  const num = (name, min) => integerOption(values, name, min);
  if (!['plain', 'stream'].includes(values.mode)) throw new Error('--mode must be plain or stream');
  // Without --a-args/--b-args, a gateway gets the node flags the container image gives it.
  const flags = (text) => (text === undefined ? gatewayNodeArgs() : text.split(/\s+/).filter(Boolean));
  return {
    a: { name: 'A', main: path.resolve(values.a), args: flags(values['a-args']) },
    b: { name: 'B', main: path.resolve(values.b), args: flags(values['b-args']) },
    rounds: num('rounds', 1),
    duration: num('duration', 1),
    warmup: num('warmup', 0),
    connections: num('connections', 1),
    mode: values.mode,
    model: values.model,
    policy: values.policy === undefined ? UNREACHABLE_LIMITS_POLICY : fs.readFileSync(values.policy, 'utf8'),
    redisUrl: values['no-redis'] ? null : values.redis,
    memoryLimitMb: values['memory-limit'] === undefined ? null : num('memory-limit', 64),
  };
}

/** The median of a non-empty list of numbers. */
function median(values) {
  const sorted = [...values].sort((x, y) => x - y);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

/**
 * The rounds' B/A ratios summarised: the median of each measure, and in how many rounds B used
 * less CPU per request than A. `rounds`: [{ a: { cpuUs, rps, p50 }, b: { … } }].
 */
function compare(rounds) {
  const ratio = (key) => rounds.map((r) => r.b[key] / r.a[key]);
  const cpu = ratio('cpuUs');
  return {
    rounds: rounds.length,
    cpuPerRequest: median(cpu),
    requestsPerSecond: median(ratio('rps')),
    p50: median(ratio('p50')),
    bCheaper: cpu.filter((x) => x < 1).length,
  };
}

/**
 * A new memory cgroup limited to `mb` MiB: returns the file a process joins it through, and its
 * removal (once its processes are gone). cgroup v2 where mounted with the memory controller, else v1.
 */
function memoryCgroup(name, mb) {
  const v2 = '/sys/fs/cgroup';
  const unified =
    fs.existsSync(path.join(v2, 'cgroup.controllers')) && fs.readFileSync(path.join(v2, 'cgroup.controllers'), 'utf8').includes('memory');
  const dir = unified ? path.join(v2, name) : path.join(v2, 'memory', name);
  try {
    fs.mkdirSync(dir);
    fs.writeFileSync(path.join(dir, unified ? 'memory.max' : 'memory.limit_in_bytes'), String(mb * 1024 * 1024));
  } catch (error) {
    throw new Error(`--memory-limit needs a writable memory cgroup (root, Linux): ${error.message}`);
  }
  // rmdir(2), as a cgroup is removed: its files are the kernel's, not to be deleted one by one.
  const remove = () => {
    try {
      fs.rmdirSync(dir);
    } catch (error) {
      log(`cgroup ${dir} left behind: ${error.message}`);
    }
  };
  return { procs: path.join(dir, 'cgroup.procs'), remove };
}

async function main() {
  const opts = options(process.argv.slice(2));
  if (!opts) return;
  for (const main of [MOCK_MAIN, opts.a.main, opts.b.main])
    if (!fs.existsSync(main)) throw new Error(`${main} missing: npm run build (there, for another checkout)`);
  const children = [];
  const start = (command, args, env, stdio) => {
    const child = spawn(command, args, { cwd: ROOT, env, stdio });
    children.push(child);
    return child;
  };
  process.on('exit', () => {
    for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'keygate-ab-'));
  try {
    const mockPort = await freePort();
    const mock = start(process.execPath, [MOCK_MAIN], { ...cleanEnv(), PORT: String(mockPort) }, 'ignore');
    await waitFor(`http://127.0.0.1:${mockPort}/__mock/health`, mock, 15_000);
    const policyFile = path.join(tmp, 'policy.yaml');
    fs.writeFileSync(policyFile, opts.policy);
    const gateways = [opts.a, opts.b];
    for (const g of gateways) {
      g.port = await freePort();
      let command = process.execPath;
      let args = [...g.args, g.main];
      if (opts.memoryLimitMb) {
        g.cgroup = memoryCgroup(`keygate-ab-${process.pid}-${g.name}`, opts.memoryLimitMb);
        // The shell joins the cgroup, then becomes node: the limit is in force before V8 sizes its heap.
        args = ['-c', 'echo $$ > "$0" && exec "$@"', g.cgroup.procs, command, ...args];
        command = '/bin/sh';
      }
      g.process = start(
        command,
        args,
        {
          ...cleanEnv(),
          ...demoEnv(mockPort),
          PORT: String(g.port),
          LOG_LEVEL: 'info',
          API_KEY_SERVER_POLICY_FILE: policyFile,
          ...(opts.redisUrl ? { API_KEY_SERVER_REDIS_URL: opts.redisUrl } : {}),
        },
        ['ignore', 'ignore', fs.openSync(path.join(tmp, `${g.name}.stderr.log`), 'w')],
      );
    }
    for (const g of gateways) await waitFor(`http://127.0.0.1:${g.port}/readyz`, g.process, 30_000);
    for (const g of gateways)
      log(
        `${g.name}: ${[...g.args, path.relative(process.cwd(), g.main)].join(' ')} (pid ${g.process.pid}` +
          `${opts.memoryLimitMb ? `, memory limit ${opts.memoryLimitMb} MiB` : ''})`,
      );

    const token = execFileSync(process.execPath, ['scripts/token.js', '--product', 'demo', '--user', 'ab', '--ttl', '900'], {
      cwd: ROOT,
      encoding: 'utf8',
    }).trim();
    const body = JSON.stringify({
      model: opts.model,
      messages: [{ role: 'user', content: 'Say hello in one short sentence.' }],
      max_tokens: 64,
      ...(opts.mode === 'stream' ? { stream: true } : {}),
    });
    const request = (g, duration) => ({
      url: `http://127.0.0.1:${g.port}/v1/chat/completions`,
      method: 'POST',
      body,
      connections: opts.connections,
      duration,
      timeout: 10,
      headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
    });
    const worker = loadWorker(children, ROOT);
    await worker.ready;
    if (opts.warmup) for (const g of gateways) await worker.run(request(g, opts.warmup));

    const burst = async (g) => {
      const before = cpuSeconds(g.process.pid);
      const result = await worker.run(request(g, opts.duration));
      const used = cpuSeconds(g.process.pid) - before;
      const failed = result.responses - (result.statusCounts['200'] ?? 0) + result.errors;
      if (failed > 0 || result.responses === 0)
        throw new Error(
          `${g.name}: ${failed} failed of ${result.responses} (${JSON.stringify(result.statusCounts)}, ${result.errors} errors)`,
        );
      return {
        cpuUs: (used * 1e6) / result.responses,
        rps: result.responses / result.durationS,
        p50: result.latencyMs.p50,
        rss: rssMb(g.process.pid),
      };
    };
    const rounds = [];
    const row = (m) =>
      `${m.cpuUs.toFixed(0).padStart(5)} µs/req ${m.rps.toFixed(0).padStart(5)} req/s p50 ${m.p50.toFixed(3)} ms RSS ${m.rss?.toFixed(0)} MB`;
    for (let i = 0; i < opts.rounds; i++) {
      const round = {};
      // Alternate who goes first, so a drift within a round favours neither.
      for (const g of i % 2 === 0 ? [opts.a, opts.b] : [opts.b, opts.a]) round[g.name.toLowerCase()] = await burst(g);
      rounds.push(round);
      process.stdout.write(
        `round ${String(i + 1).padStart(2)}: A ${row(round.a)} | B ${row(round.b)} | B/A CPU ${(round.b.cpuUs / round.a.cpuUs).toFixed(3)}\n`,
      );
    }
    const c = compare(rounds);
    process.stdout.write(
      `\nB/A over ${c.rounds} rounds (${opts.mode} @${opts.connections}), medians: CPU per request ${c.cpuPerRequest.toFixed(3)} ` +
        `(B cheaper in ${c.bCheaper} of ${c.rounds}), req/s ${c.requestsPerSecond.toFixed(3)}, p50 ${c.p50.toFixed(3)}\n`,
    );
  } finally {
    const running = children.filter((child) => child.exitCode === null && child.signalCode === null);
    const exited = running.map((child) => new Promise((resolve) => child.once('exit', resolve)));
    for (const child of running) child.kill('SIGTERM');
    await Promise.race([Promise.all(exited), new Promise((resolve) => setTimeout(resolve, 10_000))]);
    for (const g of [opts.a, opts.b]) g.cgroup?.remove();
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

if (require.main === module) {
  main().catch((error) => {
    log(`FAILED: ${error.message}`);
    process.exitCode = 1;
  });
}

module.exports = { compare, median, options };
