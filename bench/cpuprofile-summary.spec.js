'use strict';
const { summarize, formatSummary, ownerOf } = require('./cpuprofile-summary');

// A profile as V8 writes it: a call tree, samples (leaf node ids) and the µs before each sample.
const frame = (functionName, url = '', lineNumber = 0) => ({ functionName, url, lineNumber, columnNumber: 0, scriptId: '0' });
const PROFILE = {
  nodes: [
    { id: 1, callFrame: frame('(root)'), children: [2, 5, 6] },
    { id: 2, callFrame: frame('handle', 'file:///srv/keygate/dist/apps/gateway/main.js', 41), children: [3, 4] },
    { id: 3, callFrame: frame('parse'), children: [] },
    { id: 4, callFrame: frame('sendCommand', 'file:///srv/keygate/node_modules/ioredis/built/Redis.js', 9), children: [7] },
    { id: 5, callFrame: frame('(garbage collector)'), children: [] },
    { id: 6, callFrame: frame('(idle)'), children: [] },
    { id: 7, callFrame: frame('writev', 'node:internal/stream_base_commons', 122), children: [] },
  ],
  startTime: 1_000,
  // Sample i lasts until sample i + 1 (the last: the median interval, 100 µs).
  samples: [6, 2, 3, 3, 4, 7, 5, 6],
  timeDeltas: [0, 100, 100, 100, 100, 100, 100, 100],
};

describe('cpuprofile summary', () => {
  it('charges each sample the time to the next one, by owner and by function, idle apart', () => {
    const s = summarize(PROFILE);
    expect(s.totalUs).toBe(800);
    expect(s.idleUs).toBe(200);
    expect(s.busyUs).toBe(600);
    expect(Object.fromEntries(s.owners.map((o) => [o.owner, o.us]))).toEqual({
      keygate: 100,
      'V8/native': 200,
      ioredis: 100,
      'node:internal/stream_base_commons': 100,
      GC: 100,
      idle: 200,
    });
    expect(s.functions.find((f) => f.name === 'parse')).toEqual({ owner: 'V8/native', name: 'parse', where: '', us: 200 });
    expect(s.functions.find((f) => f.name === 'handle')).toMatchObject({ where: 'apps/gateway/main.js:42', us: 100 });
    expect(s.matchedUs).toBeNull();
  });

  it('keeps only the samples inside the window', () => {
    // Samples at 1100 (handle), 1200 and 1300 (parse): [1100, 1300) holds two of them.
    const s = summarize(PROFILE, { from: 1_100, to: 1_300 });
    expect(s.totalUs).toBe(200);
    expect(Object.fromEntries(s.owners.map((o) => [o.owner, o.us]))).toEqual({ keygate: 100, 'V8/native': 100 });
  });

  it('gives the inclusive time of matching frames, each sample once', () => {
    // handle is on the stack of handle, parse ×2, sendCommand and writev: 500 µs.
    expect(summarize(PROFILE, { match: /keygate handle/ }).matchedUs).toBe(500);
    expect(summarize(PROFILE, { match: /^ioredis / }).matchedUs).toBe(200);
  });

  it('names owners from scoped packages, Node modules and unknown files', () => {
    expect(ownerOf(frame('f', 'file:///x/node_modules/@nestjs/core/router/a.js'), [])).toBe('@nestjs/core');
    expect(ownerOf(frame('f', 'node:internal/streams/writable'), [])).toBe('node:internal/streams');
    expect(ownerOf(frame('f', 'node:events'), [])).toBe('node:events');
    expect(ownerOf(frame('f', 'file:///tmp/other.js'), [])).toBe('/tmp/other.js');
    expect(ownerOf(frame('(program)'), [])).toBe('V8/native (program)');
  });

  it('prints shares of the busy time and µs per request', () => {
    const text = formatSummary(summarize(PROFILE), { top: 2, requests: 3 });
    expect(text).toContain('busy 1 ms of 1 ms sampled; 3 requests, 200 µs busy per request');
    expect(text).toMatch(/33\.3 % +66\.7 µs\/req {2}V8\/native\n/);
    // The idle time is no row of either table.
    expect(text).not.toMatch(/ {2}idle\n|\(idle\)/);
  });
});
