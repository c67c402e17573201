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
    ['José', true],
    ['山田太郎', true],
    ['alice\u{1f600}', true],
    [42, false],
    [undefined, false],
  ])('%p → %p', (value, nameable) => expect(isNameableUserId(value)).toBe(nameable));

  it.each([
    // Bidirectional controls: embeddings and overrides, isolates, marks, the Arabic letter mark.
    ...['202A', '202B', '202C', '202D', '202E', '2066', '2067', '2068', '2069', '200E', '200F', '061C'],
    // Zero-width space, non-joiner, joiner, word joiner, byte order mark; a tag character.
    ...['200B', '200C', '200D', '2060', 'FEFF', 'E0041'],
    // Line and paragraph separators.
    ...['2028', '2029'],
  ])('refuses U+%s, which an operator reading the id would not see', (hex) => {
    expect(isNameableUserId(`ali${String.fromCodePoint(Number.parseInt(hex, 16))}ce`)).toBe(false);
  });

  it.each([
    ['a family (pictographs joined by U+200D)', 'kid-\u{1F468}\u200D\u{1F469}\u200D\u{1F467}'],
    ['a joined emoji whose first part has a variation selector', 'heart-\u2764\uFE0F\u200D\u{1F525}'],
    ['a joined emoji whose first part has a skin tone', 'cook-\u{1F469}\u{1F3FD}\u200D\u{1F373}'],
    ['a subdivision flag (tag characters after the black flag)', 'scot-\u{1F3F4}\u{E0067}\u{E0062}\u{E0073}\u{E0063}\u{E0074}\u{E007F}'],
  ])('takes %s: its format characters draw one visible emoji', (_, id) => {
    expect(isNameableUserId(id)).toBe(true);
  });

  it.each([
    ['a joiner after a letter', 'ali\u200D\u{1F600}'],
    ['a joiner before a letter', '\u{1F600}\u200Dce'],
    ['a joiner at the end', 'alice\u{1F600}\u200D'],
    ['tag characters without the black flag', 'ali\u{E0067}\u{E007F}ce'],
    ['a flag tag run without its cancel tag', '\u{1F3F4}\u{E0067}\u{E0062}'],
    ['an uppercase tag letter', '\u{1F3F4}\u{E0047}\u{E0042}\u{E007F}'],
    ['a valid emoji beside a zero-width space', '\u{1F468}\u200D\u{1F469}\u200B'],
  ])('refuses %s: there it is invisible', (_, id) => {
    expect(isNameableUserId(id)).toBe(false);
  });

  it('refuses an unpaired surrogate (written to Redis as U+FFFD, so two such ids would share a key)', () => {
    expect(isNameableUserId('alice\ud800')).toBe(false);
  });
});
