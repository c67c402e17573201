import type { SecretsService } from '@keygate/secrets';
import type { Principal } from './principal';
import { VerifiedTokenCache } from './verified-token.cache';

// Unit spec: what keeps a verified token in the cache, and what ends it.

const ALICE: Principal = { kind: 'jwt', product: 'demo', user: 'alice', scopes: [] };
const inAnHour = (): number => Math.floor(Date.now() / 1000) + 3600;

function cacheOver(): { cache: VerifiedTokenCache; secrets: { current: object } } {
  const secrets = { current: {} };
  return { cache: new VerifiedTokenCache(secrets as unknown as SecretsService), secrets };
}

describe('VerifiedTokenCache', () => {
  it('answers for a token until its exp (plus skew)', () => {
    const { cache } = cacheOver();
    cache.set('t1', ALICE, inAnHour(), 30);
    expect(cache.get('t1')).toBe(ALICE);
    cache.set('t2', ALICE, Math.floor(Date.now() / 1000) - 31, 30);
    expect(cache.get('t2')).toBeUndefined();
    expect(cache.get('never-seen')).toBeUndefined();
  });

  it('forgets every token when the secrets snapshot changes (a static key rotated out)', () => {
    const { cache, secrets } = cacheOver();
    cache.set('t', ALICE, inAnHour(), 30);
    secrets.current = {};
    expect(cache.get('t')).toBeUndefined();
  });

  it("forgets a JWKS-verified token when its key set's generation moves on (the IdP changed its keys)", () => {
    const { cache } = cacheOver();
    const set = { generation: 4, refreshes: 0, refreshIfStale: () => void set.refreshes++ };
    cache.set('remote', ALICE, inAnHour(), 30, { set, generation: 4 });
    cache.set('static', ALICE, inAnHour(), 30);
    expect(cache.get('remote')).toBe(ALICE);
    // Each cached use of a JWKS token lets its key set refetch if stale (nothing else would).
    expect(set.refreshes).toBe(1);
    expect(cache.get('static')).toBe(ALICE);
    expect(set.refreshes).toBe(1);
    set.generation = 5;
    expect(cache.get('remote')).toBeUndefined();
    // Tokens verified with configured keys do not depend on the JWKS.
    expect(cache.get('static')).toBe(ALICE);
  });
});
