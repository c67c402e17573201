import { adminReach, administers, isNameableUserId } from './principal';

describe('adminReach', () => {
  it('takes in every product for keygate.admin, whatever else the credential carries', () => {
    const reach = adminReach({ scopes: ['openid', 'keygate.admin:alpha', 'keygate.admin'] });
    expect(reach).toEqual({ all: true });
    expect(administers(reach, 'anything')).toBe(true);
  });

  it('takes in the products keygate.admin:<product> scopes name, and no other', () => {
    const reach = adminReach({ scopes: ['keygate.admin:alpha', 'openid', 'keygate.admin:beta'] });
    expect(reach).toEqual({ all: false, products: new Set(['alpha', 'beta']) });
    expect(administers(reach, 'alpha')).toBe(true);
    expect(administers(reach, 'gamma')).toBe(false);
    // A scope is matched whole: a prefix or a different case is another scope.
    expect(administers(reach, 'alph')).toBe(false);
    expect(administers(adminReach({ scopes: ['Keygate.Admin', 'keygate.admins', 'keygate.admin.alpha'] }), 'alpha')).toBe(false);
  });

  it('takes in nothing without an admin scope, for a scope naming no product, or without a credential', () => {
    for (const principal of [{ scopes: [] }, { scopes: ['keygate.admin:'] }, undefined])
      expect(adminReach(principal)).toEqual({ all: false, products: new Set() });
  });
});

describe('isNameableUserId', () => {
  it.each([
    ['alice', true],
    ['a'.repeat(256), true],
    ['', false],
    ['a'.repeat(257), false],
    ['tab\there', false],
    ['del\u007f', false],
    ['next\u0085line', false],
    [42, false],
    [undefined, false],
  ])('%p → %p', (value, nameable) => expect(isNameableUserId(value)).toBe(nameable));
});
