'use strict';
const { keyPattern } = require('./soak');

describe('soak: keyPattern', () => {
  it('counts the keys of one kind together: ids, days, hashes and the soak users generalised', () => {
    expect(keyPattern('kg:{demo}:resp:resp_mock5zi2000001p5')).toBe('kg:{demo}:resp:resp_<id>');
    expect(keyPattern('kg:{demo}:resp:msg_mock5zi20000053m')).toBe('kg:{demo}:resp:msg_<id>');
    expect(keyPattern('kg:{demo}:op:5523ea2e-2147-4aa2-88c9-8a07acbc126d')).toBe('kg:{demo}:op:<uuid>');
    expect(keyPattern('kg:{soak-limited}:req:2026-12-07')).toBe('kg:{<user>}:req:<day>');
    expect(keyPattern(`keygate:replay:demo-client:1796676575:${'ab'.repeat(32)}`)).toBe('keygate:replay:demo-client:<n>:<hash>');
  });

  it('leaves the singletons as they are', () => {
    expect(keyPattern('kg:blocks')).toBe('kg:blocks');
    expect(keyPattern('keygate:replay:seq')).toBe('keygate:replay:seq');
  });
});
