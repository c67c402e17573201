'use strict';
const path = require('node:path');
const { compare, median, options } = require('./ab');
const { gatewayNodeArgs } = require('./processes');

const m = (cpuUs, rps, p50) => ({ cpuUs, rps, p50 });

describe('bench/ab', () => {
  it('takes the median of odd and even counts', () => {
    expect(median([3, 1, 2])).toBe(2);
    expect(median([4, 1, 3, 2])).toBe(2.5);
  });

  it('summarises each round by its own B/A ratio, not by ratios of the medians', () => {
    // The machine slows down threefold between rounds; B is 10 % cheaper in each.
    const rounds = [
      { a: m(500, 2000, 20), b: m(450, 2200, 18) },
      { a: m(1500, 700, 60), b: m(1350, 770, 54) },
      { a: m(1000, 1000, 40), b: m(900, 1100, 36) },
    ];
    const c = compare(rounds);
    expect(c.rounds).toBe(3);
    expect(c.cpuPerRequest).toBeCloseTo(0.9, 10);
    expect(c.requestsPerSecond).toBeCloseTo(1.1, 10);
    expect(c.p50).toBeCloseTo(0.9, 10);
    expect(c.bCheaper).toBe(3);
  });

  it('counts the rounds where B used less CPU', () => {
    const c = compare([
      { a: m(100, 1, 1), b: m(120, 1, 1) },
      { a: m(100, 1, 1), b: m(90, 1, 1) },
      { a: m(100, 1, 1), b: m(100, 1, 1) },
    ]);
    expect(c.bCheaper).toBe(1);
  });

  it('reads the two gateways and their node flags from the command line', () => {
    const o = options(['--b', 'other/dist/apps/gateway/main.js', '--b-args=--max-semi-space-size=32  --no-opt', '--rounds', '4']);
    expect(o.a.main).toBe(path.join(__dirname, '..', 'dist/apps/gateway/main.js'));
    expect(o.a.args).toEqual(gatewayNodeArgs()); // the image's, from the Dockerfile's CMD
    expect(options(['--a-args=']).a.args).toEqual([]);
    expect(o.b.main).toBe(path.resolve('other/dist/apps/gateway/main.js'));
    expect(o.b.args).toEqual(['--max-semi-space-size=32', '--no-opt']);
    expect(o.rounds).toBe(4);
    expect(() => options(['--rounds', '0'])).toThrow('--rounds must be an integer ≥ 1');
    expect(() => options(['--mode', 'batch'])).toThrow('--mode must be plain or stream');
    expect(o.memoryLimitMb).toBeNull();
    expect(options(['--memory-limit', '512']).memoryLimitMb).toBe(512);
    expect(() => options(['--memory-limit', '8'])).toThrow('--memory-limit must be an integer ≥ 64');
  });
});
