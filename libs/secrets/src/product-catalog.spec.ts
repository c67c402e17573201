import {
  fallbacksForAnotherProductsModel,
  fallbacksForNoModel,
  makeProductEntry,
  namedByAnotherProduct,
  plainHttpUpstreams,
  unservedFallbacks,
  type ProviderAccess,
} from './product-catalog';

const access = (provider: ProviderAccess['provider'], models: string[]): ProviderAccess => ({
  provider,
  apiKey: 'k',
  baseUrl: 'https://upstream.example',
  models,
});

describe('makeProductEntry', () => {
  const entry = makeProductEntry('p', [
    access('openai', ['gpt-4o', 'ft:gpt-4o-mini:*']),
    access('anthropic', ['claude-3-5-sonnet-20241022', '*']),
  ]);

  it('routes exact names first, then patterns in order', () => {
    expect(entry.route('gpt-4o')?.provider).toBe('openai');
    expect(entry.route('ft:gpt-4o-mini:acme:1')?.provider).toBe('openai');
    expect(entry.route('anything')?.provider).toBe('anthropic');
    expect(entry.modelIds).toEqual(['gpt-4o', 'claude-3-5-sonnet-20241022']);
  });

  it('routes by the longest matching pattern, whatever the order of the providers', () => {
    for (const providers of [
      [access('openai', ['gpt*']), access('anthropic', ['gpt-4*'])],
      [access('anthropic', ['gpt-4*']), access('openai', ['gpt*'])],
    ]) {
      const overlapping = makeProductEntry('o', providers);
      expect(overlapping.route('gpt-4o-mini')?.provider).toBe('anthropic');
      expect(overlapping.configuredModel('gpt-4o-mini')).toBe('gpt-4*');
      expect(overlapping.route('gpt-3.5-turbo')?.provider).toBe('openai');
    }
  });

  it('names the configured entry that serves a model, never the name the client sent', () => {
    expect(entry.configuredModel('gpt-4o')).toBe('gpt-4o');
    expect(entry.configuredModel('ft:gpt-4o-mini:acme:1')).toBe('ft:gpt-4o-mini:*');
    expect(entry.configuredModel('x-random-123')).toBe('*');
    expect(makeProductEntry('q', [access('openai', ['gpt-4o'])]).configuredModel('gpt-4o-mini')).toBeUndefined();
  });
});

describe('unservedFallbacks', () => {
  it('names, once per product, the fallbacks of served models that the product does not serve', () => {
    const products = new Map([
      ['a', makeProductEntry('a', [access('openai', ['gpt-4o', 'gpt-4o-mini*']), access('anthropic', ['claude-x'])])],
      ['b', makeProductEntry('b', [access('openai', ['gpt-4o'])])],
    ]);
    const fallbacks = { 'gpt-4o': ['claude-x', 'gpt-4o-mini-2024', 'claude-typo'], 'gemini-z': ['claude-x', 'nowhere'] };
    // gemini-z is served by neither: its fallbacks never run. b serves gpt-4o only.
    expect(unservedFallbacks(products, () => fallbacks)).toEqual([
      'a: gpt-4o -> claude-typo',
      'b: gpt-4o -> claude-x',
      'b: gpt-4o -> gpt-4o-mini-2024',
      'b: gpt-4o -> claude-typo',
    ]);
    expect(unservedFallbacks(products, () => ({ 'gpt-4o': [] }))).toEqual([]);
  });
});

describe('fallbacksForNoModel', () => {
  it('names, once, each model given fallbacks that no product serves (a misspelt key), not one some product serves', () => {
    const products = new Map([
      ['a', makeProductEntry('a', [access('openai', ['gpt-4o', 'o3*'])])],
      ['b', makeProductEntry('b', [access('anthropic', ['claude-x'])])],
    ]);
    const fallbacks = { 'gpt-4o-minii': ['gpt-4o'], 'claude-x': ['gpt-4o'], 'o3-pro': ['gpt-4o'] };
    expect(fallbacksForNoModel(products, () => fallbacks)).toEqual(['gpt-4o-minii']);
    expect(fallbacksForNoModel(products, () => ({}))).toEqual([]);
  });
});

describe('fallbacksForAnotherProductsModel', () => {
  it("names a product's own fallbacks for a model only another product serves; not one it serves, none serves, or an empty list", () => {
    const products = new Map([
      ['a', makeProductEntry('a', [access('openai', ['gpt-4o'])])],
      ['b', makeProductEntry('b', [access('anthropic', ['claude-x']), access('openai', ['gpt-4o'])])],
    ]);
    const own: Record<string, Record<string, string[]>> = {
      a: { 'claude-x': ['gpt-4o'], 'gpt-4o': ['claude-x'], 'nobody-serves': ['gpt-4o'] },
      b: { 'claude-x': ['gpt-4o'] },
    };
    expect(fallbacksForAnotherProductsModel(products, (name) => own[name] ?? {})).toEqual(['a: claude-x']);
    expect(fallbacksForAnotherProductsModel(products, () => ({ 'claude-x': [] }))).toEqual([]);
  });
});

describe('plainHttpUpstreams', () => {
  it('names each provider reached over plain HTTP at another host, by its host only; not HTTPS, not this machine', () => {
    const at = (provider: ProviderAccess['provider'], baseUrl: string): ProviderAccess => ({ ...access(provider, ['m']), baseUrl });
    const products = new Map([
      [
        'a',
        makeProductEntry('a', [at('openai', 'http://proxy.internal:8080/v1/secret-path'), at('anthropic', 'https://api.anthropic.com')]),
      ],
      [
        'b',
        makeProductEntry('b', [
          at('gemini', 'http://127.0.0.1:8090'),
          at('openai', 'HTTP://LOCALHOST:9000/v1'),
          at('anthropic', 'http://[::1]:9001'),
        ]),
      ],
      ['c', makeProductEntry('c', [at('anthropic', 'http://10.0.0.7')])],
    ]);
    expect(plainHttpUpstreams(products)).toEqual(['a: openai http://proxy.internal:8080', 'c: anthropic http://10.0.0.7']);
  });
});

describe('namedByAnotherProduct', () => {
  it("answers from an index of the catalog's models, not by asking each product in turn", () => {
    // Asked on every request refused for its model: a scan of 1,000 products cost ~0.26 ms of CPU each.
    const catalog = new Map(
      Array.from({ length: 1_000 }, (_, i) => {
        const entry = makeProductEntry(`p${i}`, [access('openai', [`m${i}`, 'shared']), access('anthropic', [`claude-p${i}-*`])]);
        return [`p${i}`, { ...entry, route: jest.fn(entry.route), configuredModel: jest.fn(entry.configuredModel) }] as const;
      }),
    );
    expect(namedByAnotherProduct(catalog, 'p1', 'm734')).toBe(true);
    expect(namedByAnotherProduct(catalog, 'p734', 'm734')).toBe(false);
    expect(namedByAnotherProduct(catalog, 'p1', 'shared')).toBe(true);
    expect(namedByAnotherProduct(catalog, 'p1', 'claude-p734-x')).toBe(true);
    expect(namedByAnotherProduct(catalog, 'p734', 'claude-p734-x')).toBe(false);
    expect(namedByAnotherProduct(catalog, 'p1', 'unknown')).toBe(false);
    for (const entry of catalog.values()) {
      expect(entry.configuredModel).not.toHaveBeenCalled();
      expect(entry.route).not.toHaveBeenCalled();
    }
  });

  it('answers for the catalog it is given: a rotated catalog is indexed anew', () => {
    const before = new Map([
      ['a', makeProductEntry('a', [access('openai', ['gpt-4o'])])],
      ['b', makeProductEntry('b', [access('openai', ['o3'])])],
    ]);
    expect(namedByAnotherProduct(before, 'a', 'o3')).toBe(true);
    const after = new Map([
      ['a', makeProductEntry('a', [access('openai', ['gpt-4o'])])],
      ['b', makeProductEntry('b', [access('openai', ['o4*'])])],
    ]);
    expect(namedByAnotherProduct(after, 'a', 'o3')).toBe(false);
    expect(namedByAnotherProduct(after, 'a', 'o4-mini')).toBe(true);
    expect(namedByAnotherProduct(before, 'a', 'o4-mini')).toBe(false);
  });

  const products = new Map([
    ['a', makeProductEntry('a', [access('openai', ['gpt-4o'])])],
    ['b', makeProductEntry('b', [access('openai', ['gpt-4o-mini', 'o3*'])])],
    ['legacy', makeProductEntry('legacy', [access('openai', ['*'])])],
  ]);

  it('is true for a model another product names exactly or through a pattern', () => {
    expect(namedByAnotherProduct(products, 'a', 'gpt-4o-mini')).toBe(true);
    expect(namedByAnotherProduct(products, 'a', 'o3-pro')).toBe(true);
    expect(namedByAnotherProduct(products, 'b', 'gpt-4o')).toBe(true);
  });

  it("is false for the product's own models and for a model only a catch-all would take", () => {
    expect(namedByAnotherProduct(products, 'b', 'gpt-4o-mini')).toBe(false);
    expect(namedByAnotherProduct(products, 'a', 'gpt-9-ultra')).toBe(false);
    expect(namedByAnotherProduct(products, 'legacy', 'gpt-9-ultra')).toBe(false);
  });
});
