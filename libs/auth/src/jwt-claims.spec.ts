import { GatewayError } from '@keygate/errors';
import { lifetimeProblem, principalFromClaims } from './jwt-claims';

const NOW = 1_800_000_000;
const ok = { sub: 'alice', product: 'demo', iat: NOW, exp: NOW + 300 };

function rejected(payload: Record<string, unknown>): string {
  try {
    principalFromClaims(payload, 900, 60, NOW);
  } catch (error) {
    expect(error).toBeInstanceOf(GatewayError);
    expect((error as GatewayError).code).toBe('invalid_token');
    return (error as Error).message;
  }
  throw new Error('expected rejection');
}

/** Whether a token with these claims on top of `ok` passes these claim rules. */
function pass(claims: Record<string, unknown>, rules: Record<string, string>): boolean {
  try {
    principalFromClaims({ ...ok, ...claims }, 900, 60, NOW, rules);
    return true;
  } catch {
    return false;
  }
}

describe('principalFromClaims', () => {
  it('builds the principal from sub, product and scope', () => {
    expect(principalFromClaims({ ...ok, scope: 'a keygate.admin' }, 900, 60, NOW)).toEqual({
      kind: 'jwt',
      product: 'demo',
      user: 'alice',
      scopes: ['a', 'keygate.admin'],
    });
    expect(principalFromClaims({ ...ok, scope: ['x'] }, 900, 60, NOW).scopes).toEqual(['x']);
  });

  it('takes a sub drawn with an emoji joiner, and refuses the joiner between letters', () => {
    expect(principalFromClaims({ ...ok, sub: 'kid-\u{1F468}\u200D\u{1F467}' }, 900, 60, NOW).user).toBe('kid-\u{1F468}\u200D\u{1F467}');
    expect(rejected({ ...ok, sub: 'ali\u200Dce' })).toMatch(/sub claim has control or invisible characters/);
  });

  it('measures lifetime from now when iat is absent', () => {
    expect(() => principalFromClaims({ sub: 'a', product: 'p', exp: NOW + 900 }, 900, 60, NOW)).not.toThrow();
    expect(rejected({ sub: 'a', product: 'p', exp: NOW + 901 })).toMatch(/lifetime/);
  });

  it.each([
    [{ ...ok, exp: undefined }, /exp/],
    [{ ...ok, exp: '1900000000' }, /exp/],
    [{ ...ok, exp: NOW + 1000 }, /lifetime exceeds the maximum of 900/],
    [{ ...ok, iat: NOW + 120, exp: NOW + 200 }, /issued in the future/],
    [{ ...ok, iat: 'yesterday' }, /iat/],
    [{ ...ok, sub: undefined }, /sub/],
    [{ ...ok, sub: '' }, /sub/],
    [{ ...ok, sub: 'evil\u0001\nuser' }, /sub claim has control or invisible characters/],
    [{ ...ok, sub: 'next\u0085line' }, /sub claim has control or invisible characters/],
    [{ ...ok, sub: 'alice\u202eevil' }, /sub claim has control or invisible characters/],
    [{ ...ok, sub: 'ali\u200bce' }, /sub claim has control or invisible characters/],
    [{ ...ok, sub: 'alice\ufeff' }, /sub claim has control or invisible characters/],
    [{ ...ok, sub: 'demo\u2066admin\u2069' }, /sub claim has control or invisible characters/],
    [{ ...ok, product: 'demo\u202e' }, /product claim has control or invisible characters/],
    [{ ...ok, sub: undefined }, /the token has no sub claim/],
    [{ ...ok, sub: 'x'.repeat(257) }, /the token sub claim is longer than 256 characters/],
    [{ ...ok, product: 7 }, /the token has no product claim/],
    [{ ...ok, product: 'p'.repeat(65) }, /the token product claim is longer than 64 characters/],
  ])('rejects %j', (payload, message) => {
    expect(rejected(payload)).toMatch(message);
  });

  it('enforces the configured claim rules', () => {
    expect(() => principalFromClaims({ ...ok, token_use: 'access' }, 900, 60, NOW, { token_use: 'access' })).not.toThrow();
    expect(() => principalFromClaims({ ...ok, token_use: 'id' }, 900, 60, NOW, { token_use: 'access' })).toThrow(
      /token_use claim must be access/,
    );
    expect(() => principalFromClaims(ok, 900, 60, NOW, { token_use: 'access' })).toThrow(/token_use/);
  });

  it('matches a required value against boolean, number and list claims as written in the environment', () => {
    expect(pass({ email_verified: true }, { email_verified: 'true' })).toBe(true);
    expect(pass({ email_verified: false }, { email_verified: 'true' })).toBe(false);
    expect(pass({ email_verified: 'true' }, { email_verified: 'true' })).toBe(true);
    expect(pass({ tier: 2 }, { tier: '2' })).toBe(true);
    expect(pass({ groups: ['staff', 'keygate-users'] }, { groups: 'keygate-users' })).toBe(true);
    expect(pass({ groups: ['staff'] }, { groups: 'keygate-users' })).toBe(false);
    expect(pass({ groups: { 'keygate-users': true } }, { groups: 'keygate-users' })).toBe(false);
    expect(pass({ tier: Number.NaN }, { tier: 'NaN' })).toBe(false);
  });

  it('reads a dotted rule name as a top-level claim of that name first, else as a path into nested claims', () => {
    const rule = { 'realm_access.roles': 'keygate-user' };
    // Keycloak's realm roles.
    expect(pass({ realm_access: { roles: ['offline_access', 'keygate-user'] } }, rule)).toBe(true);
    expect(pass({ realm_access: { roles: ['offline_access'] } }, rule)).toBe(false);
    expect(pass({ realm_access: [{ roles: ['keygate-user'] }] }, rule)).toBe(false);
    expect(pass({ realm_access: 'keygate-user' }, rule)).toBe(false);
    // A namespaced claim whose name holds dots (Auth0 style) is found as it is.
    expect(pass({ 'https://corp.example/tier': 'gold' }, { 'https://corp.example/tier': 'gold' })).toBe(true);
    expect(pass({ 'a.b': 'flat', a: { b: 'nested' } }, { 'a.b': 'flat' })).toBe(true);
    // Inherited properties are no claims.
    expect(pass({}, { 'constructor.name': 'Object' })).toBe(false);
    expect(pass({ a: {} }, { 'a.toString.name': 'toString' })).toBe(false);
  });

  it('accepts an iat within the skew', () => {
    expect(() => principalFromClaims({ ...ok, iat: NOW + 30, exp: NOW + 300 }, 900, 60, NOW)).not.toThrow();
  });
});

describe('lifetimeProblem', () => {
  const limits = { maxTtlSeconds: 900, skewSeconds: 60, nowSeconds: NOW };

  it.each([
    [NOW + 900, NOW, undefined],
    [NOW + 900, undefined, undefined],
    [NOW + 960, NOW + 60, undefined],
    [NOW + 901, NOW, 'lifetime exceeds the maximum of 900 seconds'],
    [NOW + 600, NOW + 61, 'was issued in the future'],
    [undefined, NOW, 'has no numeric exp claim'],
    [NOW + 600, 'now', 'iat claim is not numeric'],
  ])('exp %p, iat %p → %p', (exp, iat, problem) => {
    expect(lifetimeProblem(exp, iat, limits)).toBe(problem);
  });
});
