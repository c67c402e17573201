import { parse } from 'yaml';
import { ConfigError } from './config.error';
import { BUILT_IN_POLICY, buildPolicyBook } from './policy.loader';
import { GEMINI_25_PRO_PRICE } from './testing/prices';

const SPEC_EXAMPLE = `
defaults:
  limits:
    requests_per_second: 10
    user_requests_per_second: 2
    daily_requests: 10000
    user_daily_requests: 1000
    daily_tokens: 5000000
    user_daily_tokens: 500000
  policy:
    max_tokens: 4096
    temperature: {min: 0, max: 1.5}
    max_request_bytes: 1048576
    max_stream_seconds: 300
products:
  product-a:
    limits: {requests_per_second: 50}
    fallbacks: {gpt-4o: [claude-3-5-sonnet-20241022]}
`;

function problems(doc: unknown): string {
  try {
    buildPolicyBook(doc);
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return (error as Error).message;
  }
  throw new Error('expected a ConfigError');
}

describe('buildPolicyBook', () => {
  it('reads the SPEC example and merges defaults under a product field by field', () => {
    const book = buildPolicyBook(parse(SPEC_EXAMPLE));
    const a = book.forProduct('product-a');
    expect(a.limits.requestsPerSecond).toBe(50);
    expect(a.limits.userRequestsPerSecond).toBe(2);
    expect(a.limits.dailyTokens).toBe(5_000_000);
    expect(a.policy.temperature).toEqual({ min: 0, max: 1.5 });
    expect(a.fallbacks).toEqual({ 'gpt-4o': ['claude-3-5-sonnet-20241022'] });
  });

  it('merges the temperature range and auto_block field by field too', () => {
    const book = buildPolicyBook({
      defaults: { policy: { temperature: { min: 0.2, max: 1 } }, auto_block: { rejections: 10, window_seconds: 30, block_seconds: 600 } },
      products: { p: { policy: { temperature: { max: 0.8 } }, auto_block: { block_seconds: 60 } } },
    });
    expect(book.forProduct('p').policy.temperature).toEqual({ min: 0.2, max: 0.8 });
    expect(book.forProduct('p').autoBlock).toEqual({ rejections: 10, windowSeconds: 30, blockSeconds: 60 });
    expect(book.forProduct('other').autoBlock).toEqual({ rejections: 10, windowSeconds: 30, blockSeconds: 600 });
  });

  it('refuses a merged range whose min ends above its max, naming the product', () => {
    const message = problems({
      defaults: { policy: { temperature: { min: 0.5, max: 1 } } },
      products: { p: { policy: { temperature: { max: 0.3 } } } },
    });
    expect(message).toContain('products.p.policy.temperature');
  });

  it('refuses a max_tokens cap no model could use (it went upstream as sent)', () => {
    expect(problems({ defaults: { policy: { max_tokens: 1e300 } } })).toMatch(/defaults\.policy\.max_tokens/);
    expect(buildPolicyBook({ defaults: { policy: { max_tokens: 10_000_000 } } }).defaults.policy.maxTokens).toBe(10_000_000);
  });

  it('lets a product turn a default fallback off with [] (its list replaces the default one, model by model)', () => {
    const book = buildPolicyBook({
      defaults: { fallbacks: { 'gpt-4o': ['claude-x'], 'gpt-4o-mini': ['gemini-y'] } },
      products: { private: { fallbacks: { 'gpt-4o': [] } }, other: {} },
    });
    expect(book.forProduct('private').fallbacks).toEqual({ 'gpt-4o': [], 'gpt-4o-mini': ['gemini-y'] });
    expect(book.forProduct('other').fallbacks).toEqual({ 'gpt-4o': ['claude-x'], 'gpt-4o-mini': ['gemini-y'] });
    // A product's own section, apart from the defaults merged into it.
    expect(book.ownFallbacks('private')).toEqual({ 'gpt-4o': [] });
    expect(book.ownFallbacks('other')).toEqual({});
    expect(book.ownFallbacks('unnamed')).toEqual({});
    expect(problems({ products: { p: { fallbacks: { 'gpt-4o': [''] } } } })).toContain(
      'products.p.fallbacks.gpt-4o: must be a list of model names ([] for none)',
    );
  });

  it('refuses a pattern among fallbacks: they are looked up by the exact model and sent upstream as written', () => {
    expect(problems({ defaults: { fallbacks: { 'gpt-4o*': ['claude-x'] } } })).toContain(
      'defaults.fallbacks.gpt-4o*: fallbacks name exact models, not patterns ending in *',
    );
    expect(problems({ products: { p: { fallbacks: { 'gpt-4o': ['claude-*'] } } } })).toContain(
      'products.p.fallbacks.gpt-4o: fallbacks name exact models, not patterns ending in *',
    );
  });

  it('refuses a fallback list that names its own model or a model twice', () => {
    expect(problems({ products: { p: { fallbacks: { 'gpt-4o': ['gpt-4o', 'claude-x'] } } } })).toContain(
      'products.p.fallbacks.gpt-4o: lists the model itself',
    );
    expect(problems({ defaults: { fallbacks: { 'gpt-4o': ['claude-x', 'claude-x'] } } })).toContain(
      'defaults.fallbacks.gpt-4o: lists a model twice',
    );
  });

  it('warns where a request without max_tokens could never fit a daily token quota (the cap is reserved)', () => {
    const book = buildPolicyBook({ products: { trial: { limits: { user_daily_tokens: 2000 } }, roomy: { policy: { max_tokens: 1000 } } } });
    expect(book.warnings).toEqual([
      expect.stringMatching(/^products\.trial: policy\.max_tokens \(4096\) is not below limits\.user_daily_tokens \(2000\)/),
    ]);
    expect(buildPolicyBook({ products: { off: { limits: { user_daily_tokens: 0 } } } }).warnings).toEqual([]);
  });

  it('warns where a request without max_tokens could never fit a daily cost budget, even at the cheapest output price', () => {
    const prices = { 'gpt-4o-mini': { input: 0.15, output: 0.6 }, 'gpt-4o': { input: 2.5, output: 10 } };
    const book = buildPolicyBook({
      prices,
      products: {
        // 4096 × $0.6 per million = $0.0025 > $0.002: refused every day, whatever the model.
        tiny: { limits: { user_daily_cost_usd: 0.002 } },
        // $0.0025 fits; at gpt-4o's price it would not, but a client of gpt-4o-mini is served.
        small: { limits: { daily_cost_usd: 0.003 } },
        capped: { limits: { daily_cost_usd: 0.002 }, policy: { max_tokens: 1000 } },
      },
    });
    expect(book.warnings).toEqual([
      expect.stringMatching(
        /^products\.tiny: policy\.max_tokens \(4096\) at the lowest output price in prices \(\$0\.6 per million tokens\) costs more than limits\.user_daily_cost_usd \(\$0\.002\)/,
      ),
    ]);
  });

  it('answers defaults for products it does not name', () => {
    const book = buildPolicyBook({ defaults: { policy: { max_tokens: 100 } } });
    expect(book.forProduct('unknown').policy.maxTokens).toBe(100);
    expect(book.forProduct('unknown').limits).toEqual(BUILT_IN_POLICY.limits);
  });

  it('reads JSON documents too', () => {
    expect(
      buildPolicyBook(parse('{"products": {"p": {"policy": {"max_stream_seconds": 5}}}}')).forProduct('p').policy.maxStreamSeconds,
    ).toBe(5);
  });

  it('computes the largest body limit for the HTTP server', () => {
    const book = buildPolicyBook({
      defaults: { policy: { max_request_bytes: 1000 } },
      products: { big: { policy: { max_request_bytes: 5000 } } },
    });
    expect(book.largestRequestBytes).toBe(5000);
  });

  it('reports a value of the wrong type once, by its type (not the ranges or nested fields that follow from it)', () => {
    expect(problems({ defaults: { limits: 5 } })).toBe('policy is invalid:\n  - defaults.limits: must be an object');
    // A field left empty (YAML `limits:` or `daily_tokens:` with nothing after it) is said to be empty.
    expect(problems({ defaults: { limits: null } })).toBe(
      'policy is invalid:\n  - defaults.limits: empty (give it a value or leave the field out)',
    );
    expect(problems({ defaults: { limits: { daily_tokens: null } } })).toBe(
      'policy is invalid:\n  - defaults.limits.daily_tokens: empty (give it a value or leave the field out)',
    );
    expect(problems({ defaults: { policy: { max_tokens: '100' } } })).toBe(
      'policy is invalid:\n  - defaults.policy.max_tokens: must be an integer number',
    );
    expect(problems({ products: { a: { policy: { temperature: 'hot' } } } })).toBe(
      'policy is invalid:\n  - products.a.policy.temperature: must be an object',
    );
    // A value of the right type still gets its range checked.
    expect(problems({ defaults: { policy: { max_tokens: 0 } } })).toBe(
      'policy is invalid:\n  - defaults.policy.max_tokens: must not be less than 1',
    );
  });

  it('reports a __proto__ key as an unknown field (JSON keeps it; the whitelist never sees it)', () => {
    expect(problems(JSON.parse('{"defaults":{"__proto__":{"x":1}}}'))).toContain('defaults.__proto__: unknown field');
    expect(problems(JSON.parse('{"products":{"a":{"limits":{"__proto__":{"daily_requests":1}}}}}'))).toContain(
      'products.a.limits.__proto__: unknown field',
    );
  });

  it('reads end_user_id (off unless set), a product overriding the default, and refuses a value that is not a boolean', () => {
    expect(buildPolicyBook({}).defaults.policy.endUserId).toBe(false);
    const book = buildPolicyBook({
      defaults: { policy: { end_user_id: true } },
      products: { quiet: { policy: { end_user_id: false } }, p: {} },
    });
    expect(book.forProduct('p').policy.endUserId).toBe(true);
    expect(book.forProduct('quiet').policy.endUserId).toBe(false);
    expect(problems({ products: { p: { policy: { end_user_id: 'yes' } } } })).toMatch(/products\.p\.policy\.end_user_id/);
  });

  it('reads refused fields and tool types, a product list replacing the default one ([] refusing nothing)', () => {
    const book = buildPolicyBook({
      defaults: { policy: { refused_fields: ['service_tier', 'mcp_*'], refused_tools: ['web_search_*'] } },
      products: { open: { policy: { refused_fields: [] } }, strict: { policy: { refused_tools: ['web_*', 'code_execution_*'] } } },
    });
    expect(book.defaults.policy).toMatchObject({ refusedFields: ['service_tier', 'mcp_*'], refusedTools: ['web_search_*'] });
    expect(book.forProduct('open').policy).toMatchObject({ refusedFields: [], refusedTools: ['web_search_*'] });
    expect(book.forProduct('strict').policy).toMatchObject({
      refusedFields: ['service_tier', 'mcp_*'],
      refusedTools: ['web_*', 'code_execution_*'],
    });
    expect(buildPolicyBook({}).defaults.policy).toMatchObject({ refusedFields: [], refusedTools: [], refusedBetas: [] });
    const betas = buildPolicyBook({
      defaults: { policy: { refused_betas: ['context-1m*'] } },
      products: { open: { policy: { refused_betas: [] } } },
    });
    expect(betas.defaults.policy.refusedBetas).toEqual(['context-1m*']);
    expect(betas.forProduct('open').policy.refusedBetas).toEqual([]);
    expect(problems({ defaults: { policy: { refused_betas: ['bad name!'] } } })).toMatch(/defaults\.policy\.refused_betas/);
  });

  it('warns where refused_fields would refuse every /v1/messages request (max_tokens), without refusing the file', () => {
    const book = buildPolicyBook({ products: { chat_only: { policy: { refused_fields: ['max_*'] } } } });
    expect(book.warnings).toEqual([
      'products.chat_only: policy.refused_fields max_* refuses max_tokens, which every /v1/messages request carries (Anthropic requires it)',
    ]);
    expect(buildPolicyBook({ defaults: { policy: { refused_fields: ['max_completion_tokens'] } } }).warnings).toEqual([]);
  });

  it('refuses refusing a field every request carries, and names that are not names', () => {
    expect(problems({ products: { p: { policy: { refused_fields: ['mod*'] } } } })).toContain(
      'products.p.policy.refused_fields: mod* would refuse every request (model, messages and input are required fields)',
    );
    expect(problems({ defaults: { policy: { refused_fields: ['messages'] } } })).toMatch(
      /defaults\.policy\.refused_fields: messages would refuse/,
    );
    expect(problems({ defaults: { policy: { refused_tools: ['web search'] } } })).toMatch(/defaults\.policy\.refused_tools/);
    expect(problems({ defaults: { policy: { refused_tools: ['*'] } } })).toMatch(/defaults\.policy\.refused_tools/);
    expect(problems({ defaults: { policy: { refused_fields: 'service_tier' } } })).toMatch(/defaults\.policy\.refused_fields/);
  });

  it('reads IAP members, lowercased, a product list replacing the default one', () => {
    const book = buildPolicyBook({
      defaults: { iap_members: ['domain:Example.com'] },
      products: { a: { iap_members: ['user:Alice@Example.com'] } },
    });
    expect(book.forProduct('a').iapMembers).toEqual(['user:alice@example.com']);
    expect(book.forProduct('b').iapMembers).toEqual(['domain:example.com']);
  });

  it.each([
    [{ products: { a: { iap_members: ['alice@example.com'] } } }, 'products.a.iap_members'],
    [{ defaults: { limits: { requests_per_secnd: 5 } } }, 'defaults.limits.requests_per_secnd'],
    [{ products: { a: { policy: { max_tokens: -1 } } } }, 'products.a.policy.max_tokens'],
    [{ products: { a: { policy: { max_tokens: 1.5 } } } }, 'products.a.policy.max_tokens'],
    // A stream limit past Node's timer limit would end every stream at once.
    [{ defaults: { policy: { max_stream_seconds: 2_200_000 } } }, 'defaults.policy.max_stream_seconds'],
    [{ products: { a: { policy: { temperature: { min: 1, max: 0.5 } } } } }, 'products.a.policy.temperature'],
    [{ products: { a: { fallbacks: { 'gpt-4o': 'claude' } } } }, 'products.a.fallbacks.gpt-4o'],
    [{ products: { a: 'nope' } }, 'products.a'],
    [{ limits: {} }, 'limits: unknown top-level field'],
    // A block written as a YAML list, or a value left empty (null), would silently keep the defaults.
    [{ products: { a: { limits: [{ requests_per_second: 50 }] } } }, 'products.a.limits'],
    [{ defaults: { policy: [{ max_tokens: 5 }] } }, 'defaults.policy'],
    [{ products: { a: { policy: { temperature: [0, 1] } } } }, 'products.a.policy.temperature'],
    [{ products: { a: { auto_block: [] } } }, 'products.a.auto_block'],
    [{ products: { a: { limits: { requests_per_second: null } } } }, 'products.a.limits.requests_per_second'],
    [{ products: { a: { limits: null } } }, 'products.a.limits'],
    [{ defaults: null }, 'defaults: empty'],
    [{ products: null }, 'products: empty'],
    [{ defaults: { policy: { max_request_bytes: 1e300 } } }, 'defaults.policy.max_request_bytes'],
    [{ defaults: { auto_block: { block_seconds: 1e13 } } }, 'defaults.auto_block.block_seconds'],
  ])('rejects %j naming %s', (doc, path) => {
    expect(problems(doc)).toContain(path);
  });
});

describe('prices', () => {
  it('reads dollars per million tokens by model, cache rates defaulting to the input rate (an hour’s writes to the 5-minute rate), and matches the longest prefix', () => {
    const book = buildPolicyBook(
      parse(`
prices:
  gpt-4o: {input: 2.5, cached_input: 1.25, output: 10}
  claude-*: {input: 1, cache_write: 1.25, output: 5}
  claude-sonnet-4-5*: {input: 3, cached_input: 0.3, cache_write: 3.75, cache_write_1h: 6, output: 15}
`),
    );
    expect(book.priceOf('gpt-4o')).toEqual({ input: 2.5, cachedInput: 1.25, cacheWrite: 2.5, cacheWrite1h: 2.5, output: 10 });
    expect(book.priceOf('claude-sonnet-4-5-20250929')).toEqual({
      input: 3,
      cachedInput: 0.3,
      cacheWrite: 3.75,
      cacheWrite1h: 6,
      output: 15,
    });
    expect(book.priceOf('claude-haiku-4-5')).toEqual({ input: 1, cachedInput: 1, cacheWrite: 1.25, cacheWrite1h: 1.25, output: 5 });
    // Exact names only, but for a prefix entry: a dated snapshot of gpt-4o is not gpt-4o's price.
    expect(book.priceOf('gpt-4o-2024-08-06')).toBeUndefined();
    expect(buildPolicyBook({}).priceOf('gpt-4o')).toBeUndefined();
    expect(book.warnings).toEqual([]);
  });

  it('warns of cache rates the wrong way round (most likely two numbers swapped), and boots', () => {
    const book = buildPolicyBook({
      prices: {
        'gpt-4o': { input: 1.25, cached_input: 2.5, output: 10 },
        'claude-*': { input: 3, cache_write: 6, cache_write_1h: 3.75, output: 15 },
      },
    });
    expect(book.warnings).toEqual([
      'prices.gpt-4o: cached_input (2.5) is above input (1.25); cache reads are priced below input',
      'prices.claude-*: cache_write_1h (3.75) is below cache_write (6); an hour-long cache write is priced above a 5-minute one',
    ]);
    expect(book.priceOf('gpt-4o')?.cachedInput).toBe(2.5);
  });

  it('refuses prices that are not a table of non-negative dollar amounts, naming each', () => {
    const message = problems({
      prices: {
        a: { input: 1 },
        b: { input: -1, output: 1 },
        c: { input: '1', output: 1 },
        d: { input: 1, output: 1, per: 'token' },
        'two words': { input: 1, output: 1 },
        e: null,
        f: { input: 1, output: 1e9 },
      },
    });
    expect(message).toContain('prices.a.output: must be a number (US dollars per million tokens)');
    expect(message).toContain('prices.b.input: must not be less than 0');
    expect(message).toContain('prices.c.input');
    expect(message).toContain('prices.d.per: unknown field');
    expect(message).toContain('prices.two words: must be a model name');
    expect(message).toContain('prices.e: must be an object');
    expect(message).toContain('prices.f.output: must not be greater than 100000');
    expect(problems({ prices: null })).toContain('prices: empty');
    expect(problems({ prices: ['gpt-4o'] })).toContain('prices: must be an object keyed by model name');
    expect(problems({ price: {} })).toContain('price: unknown top-level field (expected "defaults", "products" or "prices")');
  });
});

describe('price tiers (long-context rates above a prompt length)', () => {
  it('reads a price’s tiers by ascending threshold, each tier’s cache rates defaulting as a price’s do, and leaves a price without tiers as it was', () => {
    const book = buildPolicyBook(
      parse(`
prices:
  gemini-2.5-pro*:
    input: 1.25
    cached_input: 0.125
    output: 10
    tiers:
      - {above_prompt_tokens: 200000, input: 2.5, cached_input: 0.25, output: 15}
  claude-sonnet-4-5*:
    input: 3
    output: 15
    tiers:
      - {above_prompt_tokens: 200000, input: 6, cache_write: 7.5, output: 22.5}
      - {above_prompt_tokens: 500000, input: 7, output: 30}
  gpt-4o: {input: 2.5, output: 10, tiers: []}
`),
    );
    expect(book.priceOf('gemini-2.5-pro')).toEqual(GEMINI_25_PRO_PRICE);
    expect(book.priceOf('claude-sonnet-4-5-20250929')?.tiers).toEqual([
      { abovePromptTokens: 200_000, input: 6, cachedInput: 6, cacheWrite: 7.5, cacheWrite1h: 7.5, output: 22.5 },
      { abovePromptTokens: 500_000, input: 7, cachedInput: 7, cacheWrite: 7, cacheWrite1h: 7, output: 30 },
    ]);
    // An empty list is no tiers: the price reads as one written without them.
    expect(book.priceOf('gpt-4o')).toEqual({ input: 2.5, cachedInput: 2.5, cacheWrite: 2.5, cacheWrite1h: 2.5, output: 10 });
    expect(book.warnings).toEqual([]);
  });

  it('refuses thresholds that are not whole positive token counts, tiers out of order, and tiers that are not rates, naming each path', () => {
    const tier = (t: Record<string, unknown>) => ({ input: 2, output: 20, ...t });
    const message = problems({
      prices: {
        zero: { input: 1, output: 10, tiers: [tier({ above_prompt_tokens: 0 })] },
        negative: { input: 1, output: 10, tiers: [tier({ above_prompt_tokens: -5 })] },
        fraction: { input: 1, output: 10, tiers: [tier({ above_prompt_tokens: 200000.5 })] },
        text: { input: 1, output: 10, tiers: [tier({ above_prompt_tokens: '200000' })] },
        huge: { input: 1, output: 10, tiers: [tier({ above_prompt_tokens: 1e9 })] },
        missing: { input: 1, output: 10, tiers: [{ input: 2, output: 20 }] },
        unordered: { input: 1, output: 10, tiers: [tier({ above_prompt_tokens: 500000 }), tier({ above_prompt_tokens: 200000 })] },
        repeated: { input: 1, output: 10, tiers: [tier({ above_prompt_tokens: 200000 }), tier({ above_prompt_tokens: 200000 })] },
        noRates: { input: 1, output: 10, tiers: [{ above_prompt_tokens: 200000, input: 2 }] },
        badRate: { input: 1, output: 10, tiers: [tier({ above_prompt_tokens: 200000, cached_input: -1 })] },
        typo: { input: 1, output: 10, tiers: [tier({ above_prompt_tokens: 200000, ouptut: 1 })] },
        scalar: { input: 1, output: 10, tiers: [200000] },
        object: { input: 1, output: 10, tiers: { above_prompt_tokens: 200000, input: 2, output: 20 } },
        empty: { input: 1, output: 10, tiers: null },
        many: { input: 1, output: 10, tiers: Array.from({ length: 9 }, (_, i) => tier({ above_prompt_tokens: (i + 1) * 1000 })) },
      },
    });
    expect(message).toContain('prices.zero.tiers[0].above_prompt_tokens: must not be less than 1');
    expect(message).toContain('prices.negative.tiers[0].above_prompt_tokens: must not be less than 1');
    expect(message).toContain('prices.fraction.tiers[0].above_prompt_tokens: must be a whole number of prompt tokens');
    expect(message).toContain('prices.text.tiers[0].above_prompt_tokens: must be a whole number of prompt tokens');
    expect(message).toContain('prices.huge.tiers[0].above_prompt_tokens: must not be greater than 100000000');
    expect(message).toContain('prices.missing.tiers[0].above_prompt_tokens: must be a whole number of prompt tokens');
    expect(message).toContain(
      'prices.unordered.tiers[1].above_prompt_tokens: must be above prices.unordered.tiers[0].above_prompt_tokens (500000): list tiers from the lowest threshold up',
    );
    expect(message).toContain(
      'prices.repeated.tiers[1].above_prompt_tokens: must be above prices.repeated.tiers[0].above_prompt_tokens (200000)',
    );
    expect(message).toContain('prices.noRates.tiers[0].output: must be a number (US dollars per million tokens)');
    expect(message).toContain('prices.badRate.tiers[0].cached_input: must not be less than 0');
    expect(message).toContain('prices.typo.tiers[0].ouptut: unknown field');
    expect(message).toContain('prices.scalar.tiers[0]: must be an object with above_prompt_tokens, input and output');
    expect(message).toContain('prices.object.tiers: must be an array');
    expect(message).toContain('prices.empty.tiers: empty');
    expect(message).toContain('prices.many.tiers: must contain no more than 8 elements');
    // The list's own problem only, not one per entry.
    expect(message).not.toContain('prices.many.tiers[');
  });

  it('names a tier’s problem beside its price’s own, in one error', () => {
    const message = problems({ prices: { m: { input: -1, output: 10, tiers: [{ above_prompt_tokens: 0, input: 2, output: 20 }] } } });
    expect(message).toContain('prices.m.input: must not be less than 0');
    expect(message).toContain('prices.m.tiers[0].above_prompt_tokens: must not be less than 1');
  });

  it('warns of a tier that leaves out a cache rate its price sets, of one priced below the rates it follows, and of swapped cache rates, and boots', () => {
    const book = buildPolicyBook({
      prices: {
        'claude-sonnet-4-5*': {
          input: 3,
          cached_input: 0.3,
          cache_write: 3.75,
          cache_write_1h: 6,
          output: 15,
          tiers: [
            { above_prompt_tokens: 200000, input: 6, cached_input: 0.6, output: 22.5 },
            { above_prompt_tokens: 400000, input: 5, cached_input: 9, cache_write: 7.5, cache_write_1h: 12, output: 30 },
          ],
        },
      },
    });
    expect(book.warnings).toEqual([
      "prices.claude-sonnet-4-5*.tiers[0]: sets no cache_write though prices.claude-sonnet-4-5* does: above 200000 prompt tokens it is the tier's input rate",
      "prices.claude-sonnet-4-5*.tiers[0]: sets no cache_write_1h though prices.claude-sonnet-4-5* does: above 200000 prompt tokens it is the tier's cache_write rate",
      'prices.claude-sonnet-4-5*.tiers[1]: cached_input (9) is above input (5); cache reads are priced below input',
      "prices.claude-sonnet-4-5*.tiers[1]: input (5) is below prices.claude-sonnet-4-5*.tiers[0]'s (6); a longer prompt is priced above a shorter one",
    ]);
    expect(book.priceOf('claude-sonnet-4-5')?.tiers?.[0].cacheWrite).toBe(6);
  });
});

describe('buildPolicyBook temperature range', () => {
  it('refuses a range whose min is above its max, in the defaults or once a product overrides one end', () => {
    expect(problems({ defaults: { policy: { temperature: { min: 1.8, max: 1 } } } })).toContain(
      'defaults.policy.temperature: min is above max',
    );
    // The product's min is checked against the max it inherits (1.5, built in).
    expect(problems({ products: { demo: { policy: { temperature: { min: 1.6 } } } } })).toContain(
      'products.demo.policy.temperature: min is above max',
    );
  });

  it('names a reversed range beside the document’s other problems, in one error', () => {
    const message = problems({
      defaults: { limits: { request_per_second: 5 } },
      products: { demo: { policy: { temperature: { min: 1.8, max: 1 } } } },
    });
    expect(message).toContain('defaults.limits.request_per_second');
    expect(message).toContain('products.demo.policy.temperature: min is above max');
  });

  it('leaves an end that is itself refused to its own message', () => {
    const message = problems({ products: { demo: { policy: { temperature: { min: 5, max: 1 } } } } });
    expect(message).toContain('products.demo.policy.temperature.min');
    expect(message).not.toContain('min is above max');
  });
});

describe('daily cost budgets', () => {
  const PRICES = { 'gpt-4o': { input: 2.5, output: 10 } };

  it('reads daily_cost_usd and user_daily_cost_usd (off by default), merged field by field, fractions allowed', () => {
    const book = buildPolicyBook({
      prices: PRICES,
      defaults: { limits: { daily_cost_usd: 100, user_daily_cost_usd: 2.5 } },
      products: { cheap: { limits: { user_daily_cost_usd: 0.25 } }, free: { limits: { daily_cost_usd: 0, user_daily_cost_usd: 0 } } },
    });
    expect(book.forProduct('cheap').limits).toMatchObject({ dailyCostUsd: 100, userDailyCostUsd: 0.25 });
    expect(book.forProduct('free').limits).toMatchObject({ dailyCostUsd: 0, userDailyCostUsd: 0 });
    expect(book.forProduct('other').limits).toMatchObject({ dailyCostUsd: 100, userDailyCostUsd: 2.5 });
    expect(buildPolicyBook({}).defaults.limits).toMatchObject({ dailyCostUsd: 0, userDailyCostUsd: 0 });
    expect(book.warnings).toEqual([]);
  });

  it('refuses a budget that is not a number of dollars from 0 to a billion, and a misspelt one, naming each', () => {
    const message = problems({
      defaults: { limits: { daily_cost_usd: -1, user_daily_cost_usd: '5' } },
      products: { p: { limits: { daily_cost_usd: 2e9 } }, q: { limits: { daily_costs_usd: 5 } } },
    });
    expect(message).toContain('defaults.limits.daily_cost_usd');
    expect(message).toContain('defaults.limits.user_daily_cost_usd: must be a number (US dollars per UTC day, 0 for no budget)');
    expect(message).toContain('products.p.limits.daily_cost_usd');
    expect(message).toContain('products.q.limits.daily_costs_usd: unknown field');
    // Counted in billionths of a dollar: less would round to 0, which is no budget at all.
    expect(problems({ products: { r: { limits: { user_daily_cost_usd: 1e-10 } } } })).toContain(
      'products.r.limits.user_daily_cost_usd: must be 0 (no budget) or at least 0.000000001 (a billionth of a dollar)',
    );
    expect(
      buildPolicyBook({ defaults: { limits: { daily_cost_usd: 1e-9 } }, prices: { m: { input: 1, output: 1 } } }).defaults.limits
        .dailyCostUsd,
    ).toBe(1e-9);
  });

  it('warns at boot of a fallback without a price under a budget (every request for the model it backs up is refused)', () => {
    const book = buildPolicyBook({
      defaults: { limits: { daily_cost_usd: 10 } },
      products: {
        p: { fallbacks: { 'gpt-4o': ['claude-sonnet-4-5', 'gemini-2.5-pro'] } },
        q: { limits: { daily_cost_usd: 0 }, fallbacks: { 'gpt-4o': ['gemini-2.5-pro'] } },
      },
      prices: { 'gpt-4o': { input: 2.5, output: 10 }, 'claude-*': { input: 3, output: 15 } },
    });
    expect(book.warnings).toEqual([
      'products.p: fallbacks.gpt-4o names gemini-2.5-pro, which has no price, under a daily cost budget: every request for gpt-4o is refused',
    ]);
  });

  it('warns at boot of a budget with no prices at all (every request would be refused as unpriced)', () => {
    const book = buildPolicyBook({ products: { p: { limits: { user_daily_cost_usd: 1 } }, q: {} } });
    expect(book.warnings).toEqual([
      expect.stringMatching(/^products\.p: limits\.user_daily_cost_usd sets a daily budget but the policy file has no prices/),
    ]);
    expect(buildPolicyBook({ defaults: { limits: { daily_cost_usd: 1 } } }).warnings).toEqual([
      expect.stringMatching(/^defaults: limits\.daily_cost_usd sets a daily budget/),
    ]);
    expect(buildPolicyBook({ prices: PRICES, defaults: { limits: { daily_cost_usd: 1 } } }).warnings).toEqual([]);
  });
});

describe('buildPolicyBook unknown fields', () => {
  it('calls a misspelt field an unknown field, with its path, as the secrets do', () => {
    const message = problems({ defaults: { limits: { request_per_second: 5 } }, products: { demo: { policy: { max_tokenz: 1 } } } });
    expect(message).toContain('defaults.limits.request_per_second: unknown field');
    expect(message).toContain('products.demo.policy.max_tokenz: unknown field');
    expect(message).not.toContain('should not exist');
  });
});
