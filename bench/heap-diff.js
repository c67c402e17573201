#!/usr/bin/env node
'use strict';
// Compares two V8 heap snapshots (.heapsnapshot, as bench/soak.js or Chrome DevTools write them):
// live objects counted by constructor, and what retains the ones that grew.
//
//   node bench/heap-diff.js A.heapsnapshot B.heapsnapshot [--top N] [--owners N] [--retainers NAME]... [--paths K]
//
// Output: the N groups (default 25) whose count grew most from A to B, with counts and self sizes
// in both; with --owners N, the objects B has and A had not (V8's snapshot ids persist within one
// inspector session), grouped by the nearest object of A on their shortest retaining path: the N
// long-lived holders the most new objects hang from; then, for each --retainers NAME (a key as printed, e.g. `RequestContext` or
// `(closure) onClient`), the shortest retaining paths from the GC roots to K (default 3) of B's
// objects of that group. Groups: objects and native objects by constructor name, closures as
// `(closure) <function name>`, every other node type as `(<type>)`.
const fs = require('node:fs');
const { parseArgs } = require('node:util');

/** A parsed snapshot with its field offsets, as {@link load} returns it. */
function index(snapshot) {
  const meta = snapshot.snapshot.meta;
  const nf = meta.node_fields;
  const ef = meta.edge_fields;
  return {
    snapshot,
    nodes: snapshot.nodes,
    edges: snapshot.edges,
    strings: snapshot.strings,
    nodeTypes: meta.node_types[0],
    edgeTypes: meta.edge_types[0],
    nodeFieldCount: nf.length,
    edgeFieldCount: ef.length,
    nType: nf.indexOf('type'),
    nName: nf.indexOf('name'),
    nSize: nf.indexOf('self_size'),
    nEdgeCount: nf.indexOf('edge_count'),
    nId: nf.indexOf('id'),
    eType: ef.indexOf('type'),
    eName: ef.indexOf('name_or_index'),
    eTo: ef.indexOf('to_node'),
  };
}

/** Reads and indexes a .heapsnapshot file. */
function load(file) {
  return index(JSON.parse(fs.readFileSync(file, 'utf8')));
}

/** The group a node is counted in (see the header). */
function groupOf(h, i) {
  const type = h.nodeTypes[h.nodes[i + h.nType]];
  const name = h.strings[h.nodes[i + h.nName]];
  if (type === 'object' || type === 'native') return name;
  if (type === 'closure') return `(closure) ${name}`;
  return `(${type})`;
}

/** Count and self size of the live objects of each group. */
function countByConstructor(h) {
  const counts = new Map();
  for (let i = 0; i < h.nodes.length; i += h.nodeFieldCount) {
    const key = groupOf(h, i);
    const entry = counts.get(key) ?? { count: 0, size: 0 };
    entry.count += 1;
    entry.size += h.nodes[i + h.nSize];
    counts.set(key, entry);
  }
  return counts;
}

/** The groups sorted by count growth from `a` to `b` (maps from {@link countByConstructor}), largest first. */
function diffCounts(a, b) {
  const keys = new Set([...a.keys(), ...b.keys()]);
  const rows = [];
  for (const key of keys) {
    const x = a.get(key) ?? { count: 0, size: 0 };
    const y = b.get(key) ?? { count: 0, size: 0 };
    rows.push({ key, countA: x.count, countB: y.count, delta: y.count - x.count, sizeA: x.size, sizeB: y.size });
  }
  return rows.sort((p, q) => q.delta - p.delta || q.sizeB - q.sizeA - (p.sizeB - p.sizeA));
}

/**
 * The shortest retaining paths (breadth first from the snapshot's root over strong edges) to up to
 * `samples` objects of group `key`: each a list of steps `<group>.<edge name>`.
 */
function retainerPaths(h, key, samples = 3) {
  const { nodeCount, parent, parentEdge, seen } = retainingTree(h);
  const paths = [];
  for (let n = 0; n < nodeCount && paths.length < samples; n++) {
    if (groupOf(h, n * h.nodeFieldCount) !== key || !seen[n]) continue;
    paths.push(pathTo(h, n, parent, parentEdge));
  }
  return paths;
}

/** The steps from the root to node `n` in the tree of {@link retainingTree}. */
function pathTo(h, n, parent, parentEdge) {
  const steps = [];
  for (let m = n; parent[m] !== -1 && steps.length < 40; m = parent[m])
    steps.unshift(`${groupOf(h, parent[m] * h.nodeFieldCount)} --${edgeName(h, parentEdge[m])}-->`);
  steps.push(groupOf(h, n * h.nodeFieldCount));
  return steps;
}

function edgeName(h, e) {
  const type = h.edgeTypes[h.edges[e + h.eType]];
  const v = h.edges[e + h.eName];
  return type === 'element' || type === 'hidden' ? `[${v}]` : String(h.strings[v]);
}

/**
 * Breadth first from the snapshot's root over strong edges: each node's parent (the shortest
 * retaining path's last step), by node ordinal.
 */
function retainingTree(h) {
  const nodeCount = h.nodes.length / h.nodeFieldCount;
  const firstEdge = new Uint32Array(nodeCount + 1);
  for (let n = 0; n < nodeCount; n++) firstEdge[n + 1] = firstEdge[n] + h.nodes[n * h.nodeFieldCount + h.nEdgeCount] * h.edgeFieldCount;
  const parent = new Int32Array(nodeCount).fill(-1);
  const parentEdge = new Int32Array(nodeCount).fill(-1);
  const seen = new Uint8Array(nodeCount);
  const queue = new Uint32Array(nodeCount);
  let head = 0;
  let tail = 0;
  queue[tail++] = 0;
  seen[0] = 1;
  while (head < tail) {
    const n = queue[head++];
    for (let e = firstEdge[n]; e < firstEdge[n + 1]; e += h.edgeFieldCount) {
      if (h.edgeTypes[h.edges[e + h.eType]] === 'weak') continue;
      const to = h.edges[e + h.eTo] / h.nodeFieldCount;
      if (seen[to]) continue;
      seen[to] = 1;
      parent[to] = n;
      parentEdge[to] = e;
      queue[tail++] = to;
    }
  }
  return { nodeCount, parent, parentEdge, seen };
}

/**
 * The objects of `b` that `a` did not have (V8 keeps an object's snapshot id across the snapshots of
 * one session), grouped by the nearest object that `a` had on their shortest retaining path: the
 * long-lived holder that the growth hangs from. Each owner with the count of new objects under it,
 * their groups, and the path to one of them.
 */
function growthOwners(a, b) {
  const old = new Set();
  for (let i = 0; i < a.nodes.length; i += a.nodeFieldCount) old.add(a.nodes[i + a.nId]);
  const { nodeCount, parent, parentEdge, seen } = retainingTree(b);
  const owners = new Map();
  for (let n = 0; n < nodeCount; n++) {
    if (!seen[n] || old.has(b.nodes[n * b.nodeFieldCount + b.nId])) continue;
    let m = n;
    while (parent[m] !== -1 && !old.has(b.nodes[m * b.nodeFieldCount + b.nId])) m = parent[m];
    const key = `${groupOf(b, m * b.nodeFieldCount)} @${b.nodes[m * b.nodeFieldCount + b.nId]}`;
    let owner = owners.get(key);
    if (!owner) {
      owner = { owner: key, count: 0, size: 0, groups: new Map(), path: pathTo(b, n, parent, parentEdge) };
      owners.set(key, owner);
    }
    owner.count += 1;
    owner.size += b.nodes[n * b.nodeFieldCount + b.nSize];
    const g = groupOf(b, n * b.nodeFieldCount);
    owner.groups.set(g, (owner.groups.get(g) ?? 0) + 1);
  }
  return [...owners.values()].sort((x, y) => y.count - x.count);
}

function formatDiff(rows, top) {
  const lines = ['  Δcount    count A    count B   size A (kB)  size B (kB)  group'];
  for (const r of rows.slice(0, top))
    lines.push(
      `${String(r.delta).padStart(8)} ${String(r.countA).padStart(10)} ${String(r.countB).padStart(10)} ` +
        `${(r.sizeA / 1024).toFixed(0).padStart(13)} ${(r.sizeB / 1024).toFixed(0).padStart(12)}  ${r.key}`,
    );
  return lines.join('\n') + '\n';
}

function main() {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: {
      top: { type: 'string', default: '25' },
      retainers: { type: 'string', multiple: true, default: [] },
      paths: { type: 'string', default: '3' },
      owners: { type: 'string', default: '0' },
    },
  });
  if (positionals.length !== 2)
    throw new Error('usage: node bench/heap-diff.js A.heapsnapshot B.heapsnapshot [--top N] [--retainers NAME]');
  const [a, b] = positionals.map(load);
  process.stdout.write(formatDiff(diffCounts(countByConstructor(a), countByConstructor(b)), Number(values.top)));
  const ownersTop = Number(values.owners);
  if (ownersTop > 0) {
    process.stdout.write(`\nobjects new in B, by the nearest object of A that retains them:\n`);
    for (const o of growthOwners(a, b).slice(0, ownersTop)) {
      const groups = [...o.groups].sort((x, y) => y[1] - x[1]).slice(0, 6);
      process.stdout.write(
        `${String(o.count).padStart(8)} objects, ${(o.size / 1024).toFixed(0)} kB under ${o.owner}: ${groups.map(([g, c]) => `${g} ${c}`).join(', ')}\n`,
      );
      process.stdout.write(`    e.g. ${o.path.slice(-12).join(' ')}\n`);
    }
  }
  for (const key of values.retainers) {
    process.stdout.write(`\nretaining paths of ${key} in B:\n`);
    for (const steps of retainerPaths(b, key, Number(values.paths))) process.stdout.write(`  ${steps.join('\n    ')}\n\n`);
  }
}

module.exports = { index, load, countByConstructor, diffCounts, retainerPaths, growthOwners, formatDiff };

if (require.main === module) {
  try {
    main();
  } catch (error) {
    process.stderr.write(`[heap-diff] ${error.message}\n`);
    process.exitCode = 1;
  }
}
