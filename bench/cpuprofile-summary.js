'use strict';
// Summarises a V8 .cpuprofile (node --cpu-prof) for bench/profile.js: where a time window's CPU
// went, by owner (keygate's bundle, each npm package, Node's internals, GC) and by function.
//
// Each sample is charged the time until the next one (as Chrome DevTools does), the last one the
// median interval. "Self" is the time a function was the one running; "inclusive" (for --match) is
// the time it was anywhere on the stack, each sample counted once however deep the recursion.

/** The owner of a frame: its npm package, Node's module, keygate, or V8's pseudo-frames. */
function ownerOf(callFrame, keygateUrls) {
  const { url, functionName } = callFrame;
  if (!url) {
    if (functionName === '(garbage collector)') return 'GC';
    if (functionName === '(idle)') return 'idle';
    if (functionName === '(program)') return 'V8/native (program)';
    if (functionName === '(root)') return 'root';
    return 'V8/native';
  }
  if (url.startsWith('node:')) return `node:${url.slice(5).split('/').slice(0, 2).join('/')}`;
  const nm = url.lastIndexOf('/node_modules/');
  if (nm !== -1) {
    const parts = url.slice(nm + '/node_modules/'.length).split('/');
    return parts[0].startsWith('@') ? `${parts[0]}/${parts[1]}` : parts[0];
  }
  if (keygateUrls.some((k) => url.endsWith(k))) return 'keygate';
  return url.replace(/^file:\/\//, '');
}

function median(values) {
  if (!values.length) return 0;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}

/**
 * @param profile a parsed .cpuprofile: { nodes: [{ id, callFrame, children }], startTime, samples, timeDeltas }
 * @param opts from/to: the window, in the profile's clock (µs, CLOCK_MONOTONIC, as process.hrtime);
 *   match: a RegExp over "owner functionName" for the inclusive figure; keygateUrls: url suffixes
 *   that are keygate's own code (default: the gateway bundle).
 * @returns totals and rows, times in µs.
 */
function summarize(profile, opts = {}) {
  const keygateUrls = opts.keygateUrls ?? ['/dist/apps/gateway/main.js'];
  const byId = new Map();
  for (const node of profile.nodes) byId.set(node.id, node);
  const parent = new Map();
  for (const node of profile.nodes) for (const child of node.children ?? []) parent.set(child, node.id);

  const { samples, timeDeltas } = profile;
  const times = new Array(samples.length);
  let t = profile.startTime;
  for (let i = 0; i < samples.length; i++) times[i] = t += timeDeltas[i];
  const intervals = [];
  for (let i = 0; i + 1 < samples.length; i++) intervals.push(times[i + 1] - times[i]);
  const lastInterval = median(intervals);

  const from = opts.from ?? -Infinity;
  const to = opts.to ?? Infinity;
  const self = new Map(); // node id → µs
  let total = 0;
  let matched = 0;
  const matchCache = new Map(); // node id → whether it or an ancestor matches
  const matches = (id) => {
    if (!opts.match) return false;
    if (matchCache.has(id)) return matchCache.get(id);
    const node = byId.get(id);
    const { callFrame } = node;
    const here = opts.match.test(`${ownerOf(callFrame, keygateUrls)} ${callFrame.functionName || '(anonymous)'}`);
    const up = parent.get(id);
    const result = here || (up !== undefined && matches(up));
    matchCache.set(id, result);
    return result;
  };
  for (let i = 0; i < samples.length; i++) {
    if (times[i] < from || times[i] >= to) continue;
    const dt = i + 1 < samples.length ? times[i + 1] - times[i] : lastInterval;
    self.set(samples[i], (self.get(samples[i]) ?? 0) + dt);
    total += dt;
    if (matches(samples[i])) matched += dt;
  }

  const owners = new Map();
  const functions = new Map();
  for (const [id, us] of self) {
    const { callFrame } = byId.get(id);
    const owner = ownerOf(callFrame, keygateUrls);
    owners.set(owner, (owners.get(owner) ?? 0) + us);
    const name = callFrame.functionName || '(anonymous)';
    const where = callFrame.url ? `${callFrame.url.replace(/^.*\/(node_modules|dist)\//, '')}:${callFrame.lineNumber + 1}` : '';
    const key = `${owner}\u0000${name}\u0000${where}`;
    const row = functions.get(key) ?? { owner, name, where, us: 0 };
    row.us += us;
    functions.set(key, row);
  }
  const idle = owners.get('idle') ?? 0;
  return {
    totalUs: total,
    idleUs: idle,
    busyUs: total - idle,
    matchedUs: opts.match ? matched : null,
    owners: [...owners].map(([owner, us]) => ({ owner, us })).sort((a, b) => b.us - a.us),
    functions: [...functions.values()].sort((a, b) => b.us - a.us),
  };
}

/** The summary as text: shares of the busy (non-idle) time, and µs per request when `requests` is given. */
function formatSummary(summary, { top = 30, requests } = {}) {
  const busy = summary.busyUs || 1;
  const pct = (us) => `${((100 * us) / busy).toFixed(1).padStart(5)} %`;
  const perReq = (us) => (requests ? `${(us / requests).toFixed(1).padStart(8)} µs/req` : '');
  const lines = [
    `busy ${(summary.busyUs / 1000).toFixed(0)} ms of ${(summary.totalUs / 1000).toFixed(0)} ms sampled` +
      (requests ? `; ${requests} requests, ${(summary.busyUs / requests).toFixed(0)} µs busy per request` : ''),
  ];
  if (summary.matchedUs !== null)
    lines.push(`matching frames on the stack (inclusive): ${pct(summary.matchedUs)} ${perReq(summary.matchedUs)}`);
  lines.push('', 'self time by owner (idle excluded):');
  for (const row of summary.owners.filter((r) => r.owner !== 'idle').slice(0, top))
    lines.push(`  ${pct(row.us)} ${perReq(row.us)}  ${row.owner}`);
  lines.push('', `top ${top} functions by self time:`);
  for (const row of summary.functions.filter((r) => r.owner !== 'idle').slice(0, top))
    lines.push(`  ${pct(row.us)} ${perReq(row.us)}  ${row.name}  [${row.owner}${row.where ? ` ${row.where}` : ''}]`);
  return lines.join('\n') + '\n';
}

module.exports = { summarize, formatSummary, ownerOf };
