/**
 * Generated bad input, black box: every request route of the built gateway gets bodies, headers and
 * query strings derived from a valid request by seeded mutations (wrong JSON types at every depth,
 * huge and NaN-like numbers, lone surrogates, NUL, BOM, special-token text, duplicate and
 * prototype-named keys, deep nesting, damaged JSON, odd Content-Type and Content-Encoding). For each
 * request the contract is checked (SPEC §6, §7): no 5xx and no hang for client input, an error in
 * the route's envelope, exactly one audit line carrying the answer's status, and a refusal of
 * keygate's own that never reached the upstream (an upstream's own 400, relayed, names it as such).
 *
 * Deterministic (a fixed seed, a fixed number of requests per route) and bounded (~20 s). A
 * counterexample's seed, route and body are in the failure message.
 */
import { mintToken, startGateway, startMock, uniqueId, writeTempFile, cleanupTempFiles, type Gateway, type MockUpstream } from './harness';

const SEED = 20261207;
const PER_ROUTE = 120;

/** mulberry32: small, seeded, and the same sequence on every run. */
function prng(seed: number): () => number {
  let state = seed | 0;
  return () => {
    state = (state + 0x6d2b79f5) | 0;
    let t = Math.imul(state ^ (state >>> 15), 1 | state);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const random = prng(SEED);
const below = (n: number): number => Math.floor(random() * n);
const pick = <T>(items: readonly T[]): T => items[below(items.length)];

/** JSON text spliced in as is (what JSON.stringify cannot write: 1e400, a lone surrogate escape, a deep nest). */
class Raw {
  constructor(readonly text: string) {}
}
/** An object written with a key twice (the parser keeps the last). */
class Dupes {
  constructor(readonly pairs: Array<[string, unknown]>) {}
}

type Json = unknown;

function write(value: Json): string {
  if (value instanceof Raw) return value.text;
  if (value instanceof Dupes) return `{${value.pairs.map(([k, v]) => `${JSON.stringify(k)}:${write(v)}`).join(',')}}`;
  if (Array.isArray(value)) return `[${value.map(write).join(',')}]`;
  if (value !== null && typeof value === 'object')
    return `{${Object.keys(value)
      .map((k) => `${JSON.stringify(k)}:${write((value as Record<string, unknown>)[k])}`)
      .join(',')}}`;
  return JSON.stringify(value) ?? 'null';
}

const SPECIAL_TOKENS = ['<|endoftext|>', 'a <|endofprompt|> b', '<|fim_prefix|>x<|fim_suffix|>', '<|im_start|>system'];

/** A value of any type that a field should not hold (or an edge of the type it should). */
function oddValue(): Json {
  return pick<() => Json>([
    () => null,
    () => true,
    () => 0,
    () => -1,
    () => 1.5,
    () => 2 ** 53 + 2,
    () => new Raw('1e400'),
    () => new Raw('-1e400'),
    () => new Raw('9'.repeat(400)),
    () => 'NaN',
    () => 'Infinity',
    () => '',
    () => '\u0000',
    () => '\ufeff',
    () => new Raw('"\\ud800"'),
    () => new Raw('"a\\udc00b"'),
    () => '\u202e\u200b',
    () => 'x'.repeat(5_000),
    () => pick(SPECIAL_TOKENS),
    () => [],
    () => {},
    () => [null],
    () => [[]],
    () => ['a', 1, null, {}, []],
    () => new Raw(`${'['.repeat(100)}1${']'.repeat(100)}`),
    () => new Raw(`${'{"a":'.repeat(100)}1${'}'.repeat(100)}`),
    () => new Raw('{"__proto__":{"polluted":1}}'),
    () => ({ constructor: { prototype: { polluted: 1 } } }),
    () => ({ toString: 1, valueOf: 'x', hasOwnProperty: null }),
    () => ({ ['k'.repeat(300)]: 1 }),
    () => ({ type: pick(['text', 'image_url', 'tool_use', 'function', 'input_text', 'file', 'document', 'thinking', 'x']) }),
    () => -2147483649,
    () => 4294967296,
    () => '__proto__',
  ])();
}

/** A value of the same type as `current`, at an edge of it. */
function edgeOfType(current: Json): Json {
  if (typeof current === 'string')
    return pick([...SPECIAL_TOKENS, new Raw('"\\ud800"'), '\u0000', '\ufeff', '', ' ', '😀'.repeat(50), 'gpt-4o', 'null']);
  if (typeof current === 'number') return pick([0, -0, -1, 1.5, 1e-300, 4096, 4097, 2147483648, 2 ** 53 + 2, 1e20]);
  if (typeof current === 'boolean') return !current;
  return oddValue();
}

type Path = Array<string | number>;

function paths(value: Json, at: Path = [], out: Path[] = []): Path[] {
  out.push(at);
  if (Array.isArray(value)) value.forEach((v, i) => paths(v, [...at, i], out));
  else if (value !== null && typeof value === 'object' && !(value instanceof Raw) && !(value instanceof Dupes))
    for (const k of Object.keys(value)) paths((value as Record<string, unknown>)[k], [...at, k], out);
  return out;
}

function at(value: Json, path: Path): Json {
  return path.reduce<Json>((v, k) => (v as Record<string | number, unknown>)[k], value);
}

const KEYS = ['model', 'messages', 'content', 'role', 'tools', 'tool_choice', 'response_format', 'stream', 'stream_options', 'n', 'stop'];
KEYS.push('logit_bias', 'metadata', 'max_tokens', 'input', 'parts', 'contents', 'generationConfig', 'system', 'thinking', 'prediction');
KEYS.push('__proto__', 'constructor', 'toString', 'hasOwnProperty', 'text', 'type', 'source', 'functionCall', 'inlineData', 'requests');

/** One mutation of `body` (in place where it can be); returns the new body. */
function mutate(body: Json): Json {
  const all = paths(body);
  const path = pick(all);
  if (path.length === 0) return oddValue();
  const parent = at(body, path.slice(0, -1)) as Record<string | number, unknown>;
  const key = path[path.length - 1];
  const current = parent[key];
  switch (below(7)) {
    case 0:
    case 1:
      parent[key] = oddValue();
      break;
    case 2:
      parent[key] = edgeOfType(current);
      break;
    case 3:
      if (Array.isArray(parent)) parent.splice(key as number, 1);
      else delete parent[key];
      break;
    case 4:
      // A key added where the shape has an object (a known field's name, or one named like Object.prototype's own).
      if (
        current !== null &&
        typeof current === 'object' &&
        !Array.isArray(current) &&
        !(current instanceof Raw) &&
        !(current instanceof Dupes)
      ) {
        const name = pick(KEYS);
        Object.defineProperty(current, name, { value: oddValue(), enumerable: true, configurable: true, writable: true });
      } else parent[key] = [current];
      break;
    case 5:
      // The same key twice, the odd value first or last.
      if (
        current !== null &&
        typeof current === 'object' &&
        !Array.isArray(current) &&
        !(current instanceof Raw) &&
        !(current instanceof Dupes)
      ) {
        const entries = Object.entries(current);
        if (entries.length) {
          const pairs: Array<[string, unknown]> = [...entries, [pick(entries)[0], oddValue()]];
          parent[key] = new Dupes(below(2) ? pairs : pairs.reverse());
        }
      }
      break;
    default:
      // An array grown, or a value wrapped in one.
      if (Array.isArray(current) && current.length) {
        const item = current[below(current.length)];
        for (let i = 0; i < pick([2, 60]); i++) current.push(JSON.parse(write(item)) as unknown);
      } else parent[key] = Array.isArray(current) ? {} : [current];
  }
  return body;
}

/** JSON damaged as text. */
function damaged(text: string): Buffer {
  return pick<() => Buffer>([
    () => Buffer.from(text.slice(0, below(text.length))),
    () => Buffer.from(`\ufeff${text}`),
    () => Buffer.from(`${text}garbage`),
    () => Buffer.from(pick(['[]', '"x"', '1', 'null', '', ' ', '[{}]'])),
    () => Buffer.concat([Buffer.from([0xc0, 0xaf]), Buffer.from(text)]),
    () => Buffer.from(text, 'utf16le'),
    () => Buffer.from(text.replace(/}$/, ',}')),
    () => Buffer.from(text.replace(/:/, ':\u0000')),
  ])();
}

const IMG = 'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==';
const SCHEMA = { type: 'object', properties: { a: { type: 'integer' }, b: { type: 'array', items: { type: 'string' } } }, required: ['a'] };

type Envelope = 'openai' | 'anthropic' | 'google';
interface RouteCase {
  path: string;
  headers: Record<string, string>;
  body: Json;
  envelope: Envelope;
}

function chatBody(model: string): Json {
  const body: Record<string, unknown> = {
    model,
    messages: [
      { role: 'system', content: 'be brief' },
      {
        role: 'user',
        content: [
          { type: 'text', text: 'hi' },
          { type: 'image_url', image_url: { url: `data:image/png;base64,${IMG}`, detail: 'low' } },
        ],
      },
      { role: 'assistant', content: null, tool_calls: [{ id: 'call_1', type: 'function', function: { name: 'f', arguments: '{"a":1}' } }] },
      { role: 'tool', tool_call_id: 'call_1', content: '42' },
      { role: 'user', content: 'again' },
    ],
    max_tokens: 50,
    temperature: 0.5,
    stop: ['zzz'],
  };
  const extras: Array<Record<string, unknown>> = [
    {
      tools: [{ type: 'function', function: { name: 'f', description: 'd', parameters: SCHEMA } }],
      tool_choice: { type: 'function', function: { name: 'f' } },
    },
    { response_format: { type: 'json_schema', json_schema: { name: 'x', schema: SCHEMA } } },
    { stream: true, stream_options: { include_usage: true } },
    { n: 1, logit_bias: { 50256: -100 }, metadata: { k: 'v' }, seed: 7 },
  ];
  return { ...body, ...pick(extras) };
}

function messagesBody(): Record<string, unknown> {
  return {
    model: 'claude-3-5-sonnet-20241022',
    max_tokens: 50,
    system: [{ type: 'text', text: 's', cache_control: { type: 'ephemeral' } }],
    messages: [
      {
        role: 'user',
        content: [
          { type: 'text', text: 'hi' },
          { type: 'image', source: { type: 'base64', media_type: 'image/png', data: IMG } },
        ],
      },
      { role: 'assistant', content: [{ type: 'tool_use', id: 'toolu_1', name: 'f', input: { a: 1 } }] },
      { role: 'user', content: [{ type: 'tool_result', tool_use_id: 'toolu_1', content: [{ type: 'text', text: '42' }] }] },
    ],
    tools: [{ name: 'f', description: 'd', input_schema: SCHEMA }],
    tool_choice: { type: 'auto' },
    ...(below(3) === 0 ? { stream: true } : {}),
  };
}

function geminiBody(): Record<string, unknown> {
  return {
    contents: [
      { role: 'user', parts: [{ text: 'hi' }, { inlineData: { mimeType: 'image/png', data: IMG } }] },
      { role: 'model', parts: [{ functionCall: { name: 'f', args: { a: 1 } } }] },
      { role: 'user', parts: [{ functionResponse: { name: 'f', response: { r: 42 } } }] },
    ],
    systemInstruction: { parts: [{ text: 's' }] },
    tools: [
      { functionDeclarations: [{ name: 'f', description: 'd', parameters: { type: 'OBJECT', properties: { a: { type: 'INTEGER' } } } }] },
    ],
    generationConfig: { temperature: 0.5, maxOutputTokens: 50, stopSequences: ['zzz'], candidateCount: 1 },
  };
}

const CHAT_MODELS = ['gpt-4o', 'claude-3-5-sonnet-20241022', 'gemini-1.5-pro', 'gemini-2.5-flash'];

function routes(token: string): Record<string, () => RouteCase> {
  const bearer = { authorization: `Bearer ${token}` };
  const anthropic = { ...bearer, 'anthropic-version': '2023-06-01' };
  const google = { 'x-goog-api-key': token };
  return {
    'POST /v1/chat/completions': () => ({
      path: '/v1/chat/completions',
      headers: bearer,
      body: chatBody(pick(CHAT_MODELS)),
      envelope: 'openai',
    }),
    'POST /chat/{product}': () => ({ path: '/chat/fuzz', headers: bearer, body: chatBody(pick(CHAT_MODELS)), envelope: 'openai' }),
    'POST /v1/embeddings': () => ({
      path: '/v1/embeddings',
      headers: bearer,
      body: {
        model: pick(['text-embedding-3-small', 'text-embedding-004']),
        input: pick(['hi', ['a', 'b'], [1, 2, 3], [[1, 2], [3]]]),
        encoding_format: 'float',
      },
      envelope: 'openai',
    }),
    'POST /v1/responses': () => ({
      path: '/v1/responses',
      headers: bearer,
      body: {
        model: 'gpt-4o',
        input: [
          { role: 'system', content: 'be brief' },
          {
            role: 'user',
            content: [
              { type: 'input_text', text: 'hi' },
              { type: 'input_image', image_url: `data:image/png;base64,${IMG}` },
            ],
          },
          { type: 'function_call', call_id: 'c1', name: 'f', arguments: '{"a":1}' },
          { type: 'function_call_output', call_id: 'c1', output: '42' },
        ],
        instructions: 'x',
        max_output_tokens: 50,
        tools: [{ type: 'function', name: 'f', parameters: SCHEMA }],
        store: pick([true, false]),
        ...(below(3) === 0 ? { stream: true } : {}),
      },
      envelope: 'openai',
    }),
    'POST /v1/responses/input_tokens': () => ({
      path: '/v1/responses/input_tokens',
      headers: bearer,
      body: { model: 'gpt-4o', input: [{ role: 'user', content: [{ type: 'input_text', text: 'hi' }] }], instructions: 'x' },
      envelope: 'openai',
    }),
    'POST /v1/messages': () => ({ path: '/v1/messages', headers: anthropic, body: messagesBody(), envelope: 'anthropic' }),
    'POST /v1/messages/count_tokens': () => {
      const body = messagesBody();
      delete body.max_tokens;
      delete body.stream;
      return { path: '/v1/messages/count_tokens', headers: anthropic, body, envelope: 'anthropic' };
    },
    'POST /v1beta/models/{model}:{generateContent,streamGenerateContent,countTokens}': () => {
      const method = pick(['generateContent', 'streamGenerateContent?alt=sse', 'countTokens']);
      const body = geminiBody();
      if (method === 'countTokens') delete body.generationConfig;
      return {
        path: `/v1beta/models/${pick(['gemini-1.5-pro', 'gemini-2.5-flash'])}:${method}`,
        headers: google,
        body,
        envelope: 'google',
      };
    },
    'POST /v1beta/models/{model}:{embedContent,batchEmbedContents}': () =>
      below(2)
        ? {
            path: '/v1beta/models/text-embedding-004:embedContent',
            headers: google,
            body: { content: { parts: [{ text: 'a' }] }, taskType: 'RETRIEVAL_QUERY' },
            envelope: 'google',
          }
        : {
            path: '/v1beta/models/text-embedding-004:batchEmbedContents',
            headers: google,
            body: { requests: [{ model: 'models/text-embedding-004', content: { parts: [{ text: 'a' }] } }] },
            envelope: 'google',
          },
  };
}

interface Probe {
  route: string;
  id: string;
  method: string;
  path: string;
  headers: Record<string, string>;
  body: Buffer;
  envelope: Envelope;
}

/** A request of `route`: its valid body mutated, or damaged as text, or sent with odd headers or a query string. */
function generate(route: string, make: () => RouteCase): Probe {
  const base = make();
  const headers: Record<string, string> = { 'content-type': 'application/json', ...base.headers };
  let path = base.path;
  let body: Buffer;
  const kind = below(20);
  if (kind < 14) {
    let value = base.body;
    for (let i = 0, n = 1 + below(3); i < n; i++) value = mutate(value);
    body = Buffer.from(write(value));
  } else if (kind < 16) {
    body = damaged(write(base.body));
  } else if (kind < 18) {
    const type = pick([
      'text/plain',
      'application/json; charset=utf-16',
      'application/x-www-form-urlencoded',
      '',
      'application/jsonx',
      'APPLICATION/JSON',
    ]);
    headers['content-type'] = type;
    body = Buffer.from(write(base.body));
  } else if (kind < 19) {
    headers['content-encoding'] = pick(['gzip', 'br', 'bogus', 'gzip, identity', 'zstd']);
    body = Buffer.from(write(base.body));
  } else {
    const query = pick(['stream=true', 'model=gpt-4o', '__proto__[x]=1', 'a=%ff', 'alt=json', 'x=1&x=2', 'constructor=1']);
    path += path.includes('?') ? `&${query}` : `?${query}`;
    body = Buffer.from(write(base.body));
  }
  return { route, id: uniqueId('fuzz'), method: 'POST', path, headers, body, envelope: base.envelope };
}

interface Outcome {
  status: number;
  text: string;
  upstreamCalls: number;
}

/** The route's error envelope: OpenAI's (keygate's own), Anthropic's, or Google's. */
function envelopeProblem(envelope: Envelope, text: string): string | null {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    return 'the error body is not JSON';
  }
  const body = parsed as { type?: unknown; error?: { message?: unknown; type?: unknown; code?: unknown; status?: unknown } };
  const error = body?.error;
  if (!error || typeof error !== 'object') return 'no error object';
  if (typeof error.message !== 'string' || error.message === '') return 'no error message';
  if (envelope === 'google') return typeof error.code === 'number' && typeof error.status === 'string' ? null : 'not in Google’s shape';
  if (envelope === 'anthropic' && body.type !== 'error') return 'not in Anthropic’s shape';
  return typeof error.type === 'string' && 'code' in error ? null : 'no type or code';
}

/** A 4xx that is the upstream's own answer, relayed (it reached the upstream by design: the body was the provider's to judge). */
function isRelayedUpstreamRefusal(text: string): boolean {
  return /upstream/i.test(text);
}

describe('generated bad input on every request route', () => {
  let mock: MockUpstream;
  let gw: Gateway;
  let token: string;

  beforeAll(async () => {
    mock = await startMock();
    const models = {
      openai: { api_key: 'sk-mock-fuzz', models: ['gpt-4o', 'text-embedding-3-small'], base_url: `${mock.url}/v1` },
      anthropic: { api_key: 'sk-ant-mock-fuzz', models: ['claude-3-5-sonnet-20241022'], base_url: mock.url },
      gemini: { api_key: 'AIza-mock-fuzz', models: ['gemini-1.5-pro', 'gemini-2.5-flash', 'text-embedding-004'], base_url: mock.url },
    };
    // Token quotas on (they make keygate count every prompt), the per-second limits out of the way.
    const policy = [
      'defaults:',
      '  limits: {requests_per_second: 100000, user_requests_per_second: 100000, daily_tokens: 1000000000, user_daily_tokens: 1000000000}',
      '',
    ].join('\n');
    gw = await startGateway({
      products: { fuzz: { providers: models } },
      env: { API_KEY_SERVER_POLICY_FILE: writeTempFile('policy.yaml', policy), API_KEY_SERVER_UPSTREAM_MAX_RETRIES: '0' },
    });
    token = mintToken({ product: 'fuzz', sub: 'fuzz-user' });
  }, 45_000);

  afterAll(async () => {
    await Promise.all([gw?.stop(), mock?.stop()]);
    cleanupTempFiles();
  }, 30_000);

  async function send(probe: Probe): Promise<Outcome> {
    const before = (await mock.stats()).total;
    const res = await gw.fetch(probe.path, {
      method: probe.method,
      headers: { ...probe.headers, 'x-request-id': probe.id },
      body: new Uint8Array(probe.body),
      signal: AbortSignal.timeout(10_000),
    });
    const text = await res.text();
    const after = (await mock.stats()).total;
    return { status: res.status, text, upstreamCalls: after - before };
  }

  it('counts a special token’s text in a prompt as text on every route, under token quotas (no 500)', async () => {
    const text = 'what does <|endoftext|> mean, and <|endofprompt|>?';
    const cases: Array<[string, Record<string, string>, Json]> = [
      ['/v1/chat/completions', {}, { model: 'gpt-4o', messages: [{ role: 'user', content: text }] }],
      ['/v1/chat/completions', {}, { model: 'gemini-1.5-pro', messages: [{ role: 'user', content: text }], stream: true }],
      // No usage from the upstream: the answer, which echoes the prompt, is counted by keygate.
      ['/v1/chat/completions', {}, { model: 'gpt-4o', messages: [{ role: 'user', content: `${text} [mock no_usage=1]` }], stream: true }],
      ['/v1/embeddings', {}, { model: 'text-embedding-004', input: text }],
      ['/v1/embeddings', {}, { model: 'text-embedding-3-small', input: [text] }],
      ['/v1/responses', {}, { model: 'gpt-4o', input: text }],
      [
        '/v1/messages',
        { 'anthropic-version': '2023-06-01' },
        { model: 'claude-3-5-sonnet-20241022', max_tokens: 20, messages: [{ role: 'user', content: text }] },
      ],
      ['/v1beta/models/gemini-1.5-pro:generateContent', {}, { contents: [{ role: 'user', parts: [{ text }] }] }],
      ['/v1beta/models/text-embedding-004:embedContent', {}, { content: { parts: [{ text }] } }],
    ];
    for (const [path, extra, body] of cases) {
      const id = uniqueId('fuzz-special');
      const res = await gw.fetch(path, {
        method: 'POST',
        headers: { ...extra, authorization: `Bearer ${token}`, 'content-type': 'application/json', 'x-request-id': id },
        body: JSON.stringify(body),
      });
      const answer = await res.text();
      expect({ path, status: res.status, answer: res.status === 200 ? '' : answer }).toEqual({ path, status: 200, answer: '' });
      const audit = await gw.waitForAudit(id);
      expect(audit).toMatchObject({ status: 200, failure: null });
      expect(audit.tokens_in).toBeGreaterThan(5);
    }
  });

  it(`answers ${PER_ROUTE} generated requests per route within the contract`, async () => {
    const problems: string[] = [];
    const sent: Array<{ probe: Probe; status: number }> = [];
    const perRoute: Record<string, Record<number, number>> = {};
    for (let round = 0; round < PER_ROUTE; round++) {
      for (const [route, make] of Object.entries(routes(token))) {
        const probe = generate(route, make);
        const where = `${route} ${probe.path} (seed ${SEED}, round ${round}) body ${probe.body.toString('utf8').slice(0, 300)}`;
        let outcome: Outcome;
        try {
          outcome = await send(probe);
        } catch (error) {
          problems.push(`no answer (${String(error)}): ${where}`);
          continue;
        }
        (perRoute[route] ??= {})[outcome.status] = (perRoute[route][outcome.status] ?? 0) + 1;
        sent.push({ probe, status: outcome.status });
        if (outcome.status >= 500) problems.push(`${outcome.status} ${outcome.text.slice(0, 200)}: ${where}`);
        else if (outcome.status >= 400) {
          if (![400, 401, 403, 404, 413, 415, 429].includes(outcome.status)) problems.push(`status ${outcome.status}: ${where}`);
          const shape = envelopeProblem(probe.envelope, outcome.text);
          if (shape) problems.push(`${shape} (${outcome.text.slice(0, 200)}): ${where}`);
          if (outcome.upstreamCalls > 0 && !isRelayedUpstreamRefusal(outcome.text))
            problems.push(
              `refused ${outcome.status} after ${outcome.upstreamCalls} upstream call(s) (${outcome.text.slice(0, 200)}): ${where}`,
            );
        }
      }
    }
    // Every request's one audit line, with the status its client read.
    for (const { probe, status } of sent) {
      try {
        const audit = await gw.waitForAudit(probe.id, 3_000);
        const lines = gw.auditsFor(probe.id);
        if (lines.length !== 1) problems.push(`${lines.length} audit lines: ${probe.route} ${probe.id}`);
        if (audit.status !== status) problems.push(`audited ${audit.status}, answered ${status}: ${probe.route} ${probe.id}`);
        if (status >= 400 && audit.failure === null) problems.push(`audited no failure for ${status}: ${probe.route} ${probe.id}`);
      } catch {
        problems.push(`no audit line: ${probe.route} ${probe.id}`);
      }
    }
    expect(problems).toEqual([]);
    // The generator reaches past validation on every route: some requests are served, most refused.
    for (const [route, statuses] of Object.entries(perRoute)) {
      expect({ route, served: (statuses[200] ?? 0) > 0, refused: (statuses[400] ?? 0) > 0 }).toEqual({
        route,
        served: true,
        refused: true,
      });
    }
    expect(sent).toHaveLength(PER_ROUTE * Object.keys(routes(token)).length);
  });
});
