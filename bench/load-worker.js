'use strict';
// The autocannon load generator, forked by bench.js so that its CPU use never delays the
// orchestrator's /proc sampling (and so the orchestrator can measure it apart).
//
// Protocol (IPC): parent sends { type: 'run', id, opts }; worker answers { type: 'result', id, result }
// or { type: 'error', id, error }. opts: url, method, headers, body, hmac ({ id, secret }: sign each request), connections, duration (s),
// timeout (s).
//
// autocannon's own latency histogram stores whole milliseconds, far too coarse for a 0.3 ms target,
// so every response's exact time (a float in ms, from process.hrtime) is taken from the tracker's
// 'response' event and the percentiles are computed here.
const autocannon = require('autocannon');
const { hmacHeaders } = require('../dev/hmac-sign');

// Never reset between runs: two runs in the same second must not send the same signed body.
let seq = 0;

/**
 * With opts.hmac ({ id, secret }): every request gets a body made unique by its `user` field
 * (the gateway's replay cache refuses a signature it has seen) and fresh HMAC headers over it.
 */
function signedRequests(opts) {
  const template = JSON.parse(opts.body);
  const path = new URL(opts.url).pathname;
  return [
    {
      method: opts.method,
      path,
      setupRequest(req) {
        const body = JSON.stringify({ ...template, user: `bench-${process.pid}-${seq++}` });
        return { ...req, body, headers: { ...req.headers, ...hmacHeaders(opts.hmac, opts.method, path, body) } };
      },
    },
  ];
}

class Samples {
  constructor() {
    this.values = new Float64Array(1 << 16);
    this.length = 0;
  }
  push(v) {
    if (this.length === this.values.length) {
      const next = new Float64Array(this.values.length * 2);
      next.set(this.values);
      this.values = next;
    }
    this.values[this.length++] = v;
  }
  summary() {
    const n = this.length;
    if (n === 0) return { count: 0, mean: null, p50: null, p90: null, p99: null, max: null };
    const sorted = this.values.subarray(0, n).sort();
    // Nearest-rank percentile, as HdrHistogram and wrk report it.
    const at = (p) => sorted[Math.min(n - 1, Math.max(0, Math.ceil((p / 100) * n) - 1))];
    let sum = 0;
    for (let i = 0; i < n; i++) sum += sorted[i];
    return { count: n, mean: sum / n, p50: at(50), p90: at(90), p99: at(99), max: sorted[n - 1] };
  }
}

let current = null;

function run(id, opts) {
  const okLatency = new Samples();
  const statusCounts = {};
  const errorSamples = new Map();
  let responses = 0;
  const started = process.hrtime.bigint();

  const instance = autocannon(
    {
      url: opts.url,
      method: opts.method,
      headers: opts.headers,
      body: opts.body,
      requests: opts.hmac ? signedRequests(opts) : undefined,
      connections: opts.connections,
      pipelining: 1,
      duration: opts.duration,
      timeout: opts.timeout ?? 10,
      // No retries, no bail-out: every error must show up in the counts.
    },
    (err, result) => {
      current = null;
      const elapsedS = Number(process.hrtime.bigint() - started) / 1e9;
      if (err) {
        process.send({ type: 'error', id, error: String(err && err.stack ? err.stack : err) });
        return;
      }
      const lat = okLatency.summary();
      const durationS = result.duration || elapsedS;
      let non2xx = 0;
      for (const [code, n] of Object.entries(statusCounts)) if (code !== '200') non2xx += n;
      process.send({
        type: 'result',
        id,
        result: {
          durationS,
          responses,
          ok: lat.count,
          rps: responses / durationS,
          latencyMs: { mean: lat.mean, p50: lat.p50, p90: lat.p90, p99: lat.p99, max: lat.max },
          statusCounts,
          non2xx,
          errors: result.errors,
          timeouts: result.timeouts,
          resets: result.resets ?? 0,
          errorSamples: [...errorSamples].map(([message, count]) => ({ message, count })),
        },
      });
    },
  );
  current = instance;

  instance.on('response', (_client, statusCode, _bytes, responseTime) => {
    responses++;
    statusCounts[statusCode] = (statusCounts[statusCode] ?? 0) + 1;
    if (statusCode >= 200 && statusCode < 300) okLatency.push(responseTime);
  });
  instance.on('reqError', (error) => {
    const key = String((error && (error.code || error.message)) || error);
    if (errorSamples.size < 10 || errorSamples.has(key)) errorSamples.set(key, (errorSamples.get(key) ?? 0) + 1);
  });
}

process.on('message', (msg) => {
  if (!msg || typeof msg !== 'object') return;
  if (msg.type === 'run') {
    try {
      run(msg.id, msg.opts);
    } catch (error) {
      process.send({ type: 'error', id: msg.id, error: String(error && error.stack ? error.stack : error) });
    }
  } else if (msg.type === 'stop') {
    if (current) current.stop();
    process.exit(0);
  }
});
// Never outlive the orchestrator.
process.on('disconnect', () => {
  if (current) current.stop();
  process.exit(0);
});
process.send({ type: 'ready' });
