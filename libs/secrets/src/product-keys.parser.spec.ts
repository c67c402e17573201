import { plainHttpUpstreams } from './product-catalog';
import { parseProductKeys } from './product-keys.parser';
import { SecretFormatError } from './secret-format.error';

const KEY = 'sk-secret-value-never-printed';

function problems(text: string): string {
  try {
    parseProductKeys(text, 'openai-api-keys');
  } catch (error) {
    expect(error).toBeInstanceOf(SecretFormatError);
    const message = (error as Error).message;
    expect(message).not.toContain(KEY);
    return message;
  }
  throw new Error('expected SecretFormatError');
}

describe('parseProductKeys', () => {
  const catalog = parseProductKeys(
    JSON.stringify({
      'product-a': {
        providers: {
          openai: { api_key: 'sk-a', models: ['gpt-4o', 'gpt-4o-mini'], base_url: 'http://127.0.0.1:8090/v1/' },
          gemini: { api_key: 'AIza', models: ['gemini-1.5-pro', 'gemini-2*'] },
          anthropic: { api_key: 'sk-ant', models: ['claude-3-5-sonnet-20241022'] },
        },
      },
      'product-b': 'sk-legacy',
    }),
    'keys',
  );

  it('routes each model to the provider that lists it', () => {
    const a = catalog.get('product-a')!;
    expect(a.route('gpt-4o')?.provider).toBe('openai');
    expect(a.route('claude-3-5-sonnet-20241022')?.provider).toBe('anthropic');
    expect(a.route('gemini-1.5-pro')?.provider).toBe('gemini');
    expect(a.route('gemini-2.0-flash')?.provider).toBe('gemini');
    expect(a.route('gpt-5')).toBeUndefined();
    expect(a.modelIds).toEqual(['gpt-4o', 'gpt-4o-mini', 'gemini-1.5-pro', 'claude-3-5-sonnet-20241022']);
  });

  it('takes a base URL with a path of its own (a proxy’s prefix) that is not one keygate appends', () => {
    const catalog = parseProductKeys(
      JSON.stringify({
        p: {
          providers: {
            anthropic: { api_key: KEY, models: ['c'], base_url: 'https://proxy.example/anthropic' },
            openai: { api_key: KEY, models: ['o'], base_url: 'https://proxy.example/openai/v1' },
            // Azure AI Foundry's OpenAI-compatible endpoint ends in /models (chat at /models/chat/completions).
            gemini: { api_key: KEY, models: ['g'], base_url: 'https://proxy.example/google' },
          },
        },
        azure: { providers: { openai: { api_key: KEY, models: ['a'], base_url: 'https://res.services.ai.azure.com/models' } } },
      }),
      'openai-api-keys',
    );
    expect(catalog.get('azure')?.providers[0].baseUrl).toBe('https://res.services.ai.azure.com/models');
    expect(catalog.get('p')?.providers.map((a) => a.baseUrl)).toEqual([
      'https://proxy.example/anthropic',
      'https://proxy.example/openai/v1',
      'https://proxy.example/google',
    ]);
  });

  it('strips a trailing slash from base_url and defaults the rest to the public endpoints', () => {
    const a = catalog.get('product-a')!;
    expect(a.route('gpt-4o')?.baseUrl).toBe('http://127.0.0.1:8090/v1');
    expect(a.route('gemini-1.5-pro')?.baseUrl).toBe('https://generativelanguage.googleapis.com');
    expect(a.route('claude-3-5-sonnet-20241022')?.baseUrl).toBe('https://api.anthropic.com');
  });

  it('trims the spaces around a base_url and normalizes it, as keygate appends paths to it', () => {
    const withBase = (baseUrl: string) =>
      parseProductKeys(JSON.stringify({ p: { providers: { openai: { api_key: KEY, models: ['m'], base_url: baseUrl } } } }), 'S');
    expect(withBase(' https://h.example/v1 \n').get('p')?.route('m')?.baseUrl).toBe('https://h.example/v1');
    expect(withBase('HTTPS://H.Example:443/v1/').get('p')?.route('m')?.baseUrl).toBe('https://h.example/v1');
    // Still said as plain HTTP to another host (the WARNING at boot), not passed over for its leading space.
    expect(plainHttpUpstreams(withBase(' http://10.0.0.5/v1'))).toEqual(['p: openai http://10.0.0.5']);
  });

  it('routes every model of a legacy product to OpenAI', () => {
    const b = catalog.get('product-b')!;
    expect(b.route('anything')).toMatchObject({ provider: 'openai', apiKey: 'sk-legacy', baseUrl: 'https://api.openai.com/v1' });
    expect(b.modelIds).toEqual([]);
  });

  it.each([
    ['not json ' + KEY, 'not valid JSON'],
    ['[]', 'must be a JSON object'],
    [JSON.stringify({ p: { providers: { mistral: { api_key: KEY, models: ['m'] } } } }), 'p.providers.mistral: unknown provider'],
    [JSON.stringify({ p: { providers: { openai: { api_key: '', models: ['m'] } } } }), 'p.providers.openai.api_key'],
    [JSON.stringify({ p: { providers: { openai: { api_key: KEY, models: [] } } } }), 'p.providers.openai.models'],
    [JSON.stringify({ p: { providers: { openai: { api_key: KEY, models: ['m'], base_url: 'ftp://x' } } } }), 'p.providers.openai.base_url'],
    // keygate appends its paths to the base: they would land in a query or a fragment, even an empty one.
    ...[
      'https://h.example/v1?',
      'https://h.example/v1#',
      'https://h.example/v1?key=x',
      'https://h.example/v 1',
      'https://u:p@h.example/v1',
    ].map((baseUrl) => [
      JSON.stringify({ p: { providers: { openai: { api_key: KEY, models: ['m'], base_url: baseUrl } } } }),
      'p.providers.openai.base_url: must be an http(s) URL without spaces, user name, password, query or fragment',
    ]),
    // A path keygate appends itself: every call would go to …/v1/v1/messages, a 404 read as an unknown model.
    [
      JSON.stringify({ p: { providers: { anthropic: { api_key: KEY, models: ['m'], base_url: 'https://api.anthropic.com/v1/' } } } }),
      "p.providers.anthropic.base_url: ends in /v1, which keygate appends itself: write it as the provider's SDK takes it (https://api.anthropic.com)",
    ],
    [
      JSON.stringify({ p: { providers: { openai: { api_key: KEY, models: ['m'], base_url: 'https://h.example/v1/chat/completions' } } } }),
      'p.providers.openai.base_url: ends in /chat/completions',
    ],
    [
      JSON.stringify({
        p: { providers: { gemini: { api_key: KEY, models: ['m'], base_url: 'https://generativelanguage.googleapis.com/v1beta' } } },
      }),
      'p.providers.gemini.base_url: ends in /v1beta',
    ],
    [
      JSON.stringify({ p: { providers: { openai: { api_key: KEY, models: ['m'], extra: 1 } } } }),
      'p.providers.openai.extra: unknown field',
    ],
    [JSON.stringify({ p: { providers: {} } }), 'p.providers: at least one provider'],
    [JSON.stringify({ p: 42 }), 'p: must be a key string'],
    [JSON.stringify({ 'bad name!': KEY }), 'product name at index 0'],
    [JSON.stringify({ a: KEY, b: KEY, 'bad name!': KEY, c: KEY, 'also bad': KEY }), 'product name at index 4'],
    [
      JSON.stringify({ p: { providers: { openai: { api_key: `${KEY}\nInjected: 1`, models: ['m'] } } } }),
      'p.providers.openai.api_key: must be printable ASCII',
    ],
    [JSON.stringify({ p: `${KEY}\u0000` }), 'p: the legacy key must be printable ASCII'],
    [
      JSON.stringify({
        p: { providers: { anthropic: { api_key: KEY, models: ['gpt-4o-mini'] }, openai: { api_key: KEY, models: ['gpt-4o-mini', 'x'] } } },
      }),
      'p.providers: model gpt-4o-mini is listed under both anthropic and openai',
    ],
  ])('rejects %s naming the problem', (text, expected) => {
    expect(problems(text)).toContain(expected);
  });

  it('reports a model under two providers together with the other problems of those entries, not only once they are fixed', () => {
    const text = JSON.stringify({
      p: { providers: { anthropic: { api_key: '', models: ['gpt-4o-mini'] }, openai: { api_key: KEY, models: [' gpt-4o-mini ', 7] } } },
    });
    expect(problems(text)).toContain('p.providers.anthropic.api_key: must be a non-empty string');
    expect(problems(text)).toContain('p.providers.openai.models: must be a non-empty list of model names');
    expect(problems(text)).toContain('p.providers: model gpt-4o-mini is listed under both anthropic and openai');
  });

  it('refuses a secret with no product: every request would be refused', () => {
    expect(problems('{}')).toMatch(/no products: at least one product is required/);
  });

  it('refuses a product listed twice (JSON.parse would keep the second silently), naming the line, never the key', () => {
    const text = `{\n  "${KEY}": "sk-legacy-one",\n  "${KEY}": "sk-legacy-two"\n}`;
    expect(problems(text)).toMatch(/a key appears twice in one object \(line 3, column 3\)/);
    expect(
      problems(
        JSON.stringify({ p: { providers: { openai: { api_key: 'sk-1', models: ['m'] } } } }).replace('"models"', '"api_key":"x","models"'),
      ),
    ).toMatch(/appears twice/);
  });

  it('refuses a model name holding whitespace or a control character, naming its place', () => {
    for (const name of ['gpt 4o', 'gpt-4o\tmini', 'gpt-4o\nmini', 'gpt-4o\u0000', 'gpt\u00a04o'])
      expect(() =>
        parseProductKeys(
          JSON.stringify({ p: { providers: { openai: { api_key: 'sk-test-0123456789', models: ['gpt-4o', name] } } } }),
          'KEYS',
        ),
      ).toThrow(/p\.providers\.openai\.models\[1\]: must not hold whitespace or control characters/);
    // Padding around a name is trimmed, as before.
    expect(
      parseProductKeys(JSON.stringify({ p: { providers: { openai: { api_key: 'sk-test-0123456789', models: [' gpt-4o '] } } } }), 'KEYS')
        .get('p')
        ?.route('gpt-4o')?.provider,
    ).toBe('openai');
  });

  it('refuses a model name longer than a request may carry', () => {
    const long = 'm'.repeat(257);
    expect(problems(JSON.stringify({ p: { providers: { openai: { api_key: 'sk-1', models: ['ok', long] } } } }))).toMatch(
      /p\.providers\.openai\.models\[1\]: longer than 256 characters/,
    );
    expect(() =>
      parseProductKeys(JSON.stringify({ p: { providers: { openai: { api_key: 'sk-1', models: ['m'.repeat(256)] } } } }), 'k'),
    ).not.toThrow();
  });

  it('names a refused provider entry without also claiming there is none', () => {
    const message = problems(JSON.stringify({ p: { providers: { openai: { api_key: KEY, models: 'gpt-4o' } } } }));
    expect(message).toContain('p.providers.openai.models');
    expect(message).not.toContain('at least one provider');
  });

  it('names an unexpected field or provider by position when it is not a plain word: it may be a key pasted in the wrong place', () => {
    const pasted = 'sk-proj-Abc123Def456Ghi789';
    const message = problems(
      JSON.stringify({
        p: { providers: { [pasted]: { api_key: KEY, models: ['m'] }, openai: { api_key: KEY, models: ['m'], [`${pasted}x`]: 1 } } },
        q: { providers: { openai: { api_key: KEY, models: ['m'] } }, AIzaSyA1234567890abcdefghijklmnop: 1 },
      }),
    );
    expect(message).toContain('p.providers.(provider at position 0): unknown provider');
    expect(message).toContain('p.providers.openai.(field at position 2): unknown field');
    expect(message).toContain('q.(field at position 1): unknown field');
    expect(message).not.toMatch(/sk-proj|AIzaSy/);
    // A hex secret of the minimum length, pasted as a field name.
    const hex = 'd41d8cd98f00b204e9800998ecf8427e';
    const again = problems(JSON.stringify({ p: { providers: { openai: { api_key: KEY, models: ['m'], [hex]: 1 } } } }));
    expect(again).toContain('p.providers.openai.(field at position 2): unknown field');
    expect(again).not.toContain(hex);
  });
});
