'use strict';
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { load, countByConstructor, diffCounts, growthOwners, retainerPaths } = require('./heap-diff');
const { trend } = require('./soak');

// A small process that writes a snapshot, then keeps 3000 objects more in a long-lived Map and
// writes a second one: what a leak looks like between two snapshots of one process.
const SCRIPT = `
const v8 = require('node:v8');
class SoakProbeRecord { constructor(i) { this.i = i; } }
class SoakProbeHolder { constructor() { this.records = new Map(); } }
globalThis.holder = new SoakProbeHolder();
for (let i = 0; i < 100; i++) holder.records.set('k' + i, new SoakProbeRecord(i));
v8.writeHeapSnapshot(process.argv[1]);
for (let i = 100; i < 3100; i++) holder.records.set('k' + i, new SoakProbeRecord(i));
v8.writeHeapSnapshot(process.argv[2]);
`;

describe('heap-diff', () => {
  let dir;
  let a;
  let b;
  beforeAll(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'heap-diff-'));
    const [fa, fb] = [path.join(dir, 'a.heapsnapshot'), path.join(dir, 'b.heapsnapshot')];
    const r = spawnSync(process.execPath, ['-e', SCRIPT, fa, fb], { encoding: 'utf8', timeout: 60_000 });
    if (r.status !== 0) throw new Error(r.stderr);
    [a, b] = [load(fa), load(fb)];
  }, 60_000);
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('counts the objects of each constructor and ranks the growth first', () => {
    expect(countByConstructor(a).get('SoakProbeRecord').count).toBe(100);
    expect(countByConstructor(b).get('SoakProbeRecord').count).toBe(3100);
    const rows = diffCounts(countByConstructor(a), countByConstructor(b));
    expect(rows.find((r) => r.key === 'SoakProbeRecord')).toMatchObject({ countA: 100, countB: 3100, delta: 3000 });
    expect(rows.findIndex((r) => r.key === 'SoakProbeRecord')).toBeLessThan(5);
    expect(rows.find((r) => r.key === 'SoakProbeHolder').delta).toBe(0);
  });

  it('finds the long-lived holder of the new objects, and the path from the roots to one', () => {
    // Nearly all: the last one made may also be held, on a shorter path, by the code that made it.
    const [owner] = growthOwners(a, b);
    expect(owner.groups.get('SoakProbeRecord')).toBeGreaterThanOrEqual(2990);
    expect(owner.owner).toMatch(/^Map @/);
    expect(owner.path.join(' ')).toContain('SoakProbeHolder --records--> Map');
    const paths = retainerPaths(b, 'SoakProbeRecord', 5);
    expect(paths).toHaveLength(5);
    for (const steps of paths) expect(steps.at(-1)).toBe('SoakProbeRecord');
    expect(paths.filter((steps) => steps.join(' ').includes('--holder--> SoakProbeHolder --records--> Map')).length).toBeGreaterThanOrEqual(
      4,
    );
  });
});

describe('soak trend', () => {
  const samples = (f) => Array.from({ length: 12 }, (_, i) => ({ phase: 'load', t: i * 30, v: f(i) }));

  it('calls steady growth growing, and growth that flattens or noise flat', () => {
    expect(
      trend(
        samples((i) => 50 + i * 0.5),
        'v',
        0.25,
      ).steady,
    ).toBe(true);
    expect(
      trend(
        samples((i) => 50 + Math.min(i, 5)),
        'v',
        0.25,
      ).steady,
    ).toBe(false);
    expect(
      trend(
        samples((i) => 50 + (i % 3) * 0.4),
        'v',
        0.25,
      ).steady,
    ).toBe(false);
  });

  it('leaves out the idle sample and the first one under load (warm-up)', () => {
    const s = [{ phase: 'idle', t: 0, v: 0 }, ...samples((i) => (i === 0 ? 10 : 50))];
    expect(trend(s, 'v', 0.25)).toMatchObject({ first: 50, last: 50, steady: false });
  });
});
