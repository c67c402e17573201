/**
 * API document, health probes and discovery metadata, black box against the built gateway.
 */
import { createRequire } from 'node:module';
import Ajv from 'ajv';
import { createParser } from 'eventsource-parser';
import { cleanupTempFiles, mintToken, startGateway, startMock, uniqueId, writeTempFile, type Gateway, type MockUpstream } from './harness';

/** The environment of `npm start` (dev/demo-env.js), whose demo product Swagger UI's examples are tried against. */
const { demoEnv } = createRequire(__filename)('../../dev/demo-env.js') as { demoEnv: (mockPort?: number) => Record<string, string> };

/** Nothing in this file calls an upstream; the base URL points at the discard port. */
const PRODUCTS = { demo: { providers: { openai: { api_key: 'sk-mock-docs', models: ['gpt-4o'], base_url: 'http://127.0.0.1:9/v1' } } } };

interface OpenApiParameter {
  name: string;
  in: string;
  required?: boolean;
  description?: string;
  schema?: Record<string, unknown>;
}

interface OpenApiDoc {
  openapi: string;
  paths: Record<
    string,
    Record<
      string,
      {
        security?: Array<Record<string, unknown>>;
        parameters?: OpenApiParameter[];
        responses?: Record<
          string,
          { description?: string; content?: Record<string, { schema?: { $ref?: string; anyOf?: Array<{ $ref?: string }> } }> }
        >;
      }
    >
  >;
  components?: {
    securitySchemes?: Record<string, { type?: string; scheme?: string }>;
    schemas?: Record<string, { properties?: Record<string, unknown>; allOf?: unknown[]; required?: string[] }>;
  };
}

let gw: Gateway;

beforeAll(async () => {
  gw = await startGateway({ products: PRODUCTS });
}, 30_000);

afterAll(async () => {
  await gw?.stop();
}, 15_000);

/** The `$ref` of the JSON schema a POST operation documents for its 200. */
function okSchema(doc: OpenApiDoc, path: string): string | undefined {
  return doc.paths[path]?.post?.responses?.['200']?.content?.['application/json']?.schema?.$ref;
}

async function get(path: string): Promise<Response> {
  return fetch(`${gw.url}${path}`, { signal: AbortSignal.timeout(10_000) });
}

/** A component schema's property, by schema and property name. */
function property(doc: OpenApiDoc, schema: string, name: string): Record<string, unknown> | undefined {
  return doc.components?.schemas?.[schema]?.properties?.[name] as Record<string, unknown> | undefined;
}

/** The statuses an operation documents, in order. */
function statuses(doc: OpenApiDoc, path: string, method: string): string[] {
  return Object.keys(doc.paths[path]?.[method]?.responses ?? {});
}

/** The query parameters an operation documents, by name. */
function queryParams(doc: OpenApiDoc, path: string, method: string): Record<string, OpenApiParameter> {
  return Object.fromEntries((doc.paths[path]?.[method]?.parameters ?? []).filter((p) => p.in === 'query').map((p) => [p.name, p]));
}

/** The routes that take a client credential (HMAC included, where configured): each may answer 503. */
const CLIENT_ROUTES: Array<[path: string, method: string]> = [
  ['/v1/chat/completions', 'post'],
  ['/chat/{product}', 'post'],
  ['/v1/embeddings', 'post'],
  ['/v1/messages', 'post'],
  ['/v1/messages/count_tokens', 'post'],
  ['/v1/responses', 'post'],
  ['/v1/responses/{id}', 'get'],
  ['/v1/responses/{id}', 'delete'],
  ['/v1/responses/{id}/input_items', 'get'],
  ['/v1/responses/{id}/cancel', 'post'],
  ['/v1/responses/input_tokens', 'post'],
  ['/v1/responses/compact', 'post'],
  ['/v1/models', 'get'],
  ['/v1/models/{model}', 'get'],
];

describe('the OpenAPI document', () => {
  let doc: OpenApiDoc;

  beforeAll(async () => {
    const res = await get('/docs-json');
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toContain('application/json');
    doc = (await res.json()) as OpenApiDoc;
  });

  it('is OpenAPI 3', () => {
    expect(doc.openapi).toMatch(/^3\.\d+\.\d+$/);
  });

  it('declares a bearer security scheme', () => {
    const schemes = Object.values(doc.components?.securitySchemes ?? {});
    expect(schemes).toEqual(expect.arrayContaining([expect.objectContaining({ type: 'http', scheme: 'bearer' })]));
  });

  it('documents POST /v1/messages with its errors in Anthropic’s envelope ("type": "error" beside the contract’s error)', () => {
    const route = doc.paths['/v1/messages']?.post;
    expect(route).toBeDefined();
    const ref = route?.responses?.['400']?.content?.['application/json']?.schema?.$ref ?? '';
    const schema = doc.components?.schemas?.[ref.split('/').pop() ?? ''];
    expect(schema?.properties).toEqual(expect.objectContaining({ type: expect.anything(), error: expect.anything() }));
  });

  it('documents the chat, product-chat and models routes', () => {
    expect(Object.keys(doc.paths)).toEqual(expect.arrayContaining(['/v1/chat/completions', '/chat/{product}', '/v1/models']));
    expect(doc.paths['/v1/chat/completions'].post).toBeDefined();
    expect(doc.paths['/chat/{product}'].post).toBeDefined();
    expect(doc.paths['/v1/models'].get).toBeDefined();
    expect(doc.paths['/v1/models/{model}'].get).toBeDefined();
  });

  it('documents every input OpenAI embeddings take (strings and token arrays), and dimensions as an integer', () => {
    const dto = (doc.components as { schemas?: Record<string, { properties?: Record<string, { oneOf?: unknown[]; type?: string }> }> })
      .schemas?.EmbeddingsRequestDto;
    expect(dto?.properties?.input.oneOf).toEqual([
      expect.objectContaining({ type: 'string' }),
      expect.objectContaining({ type: 'array', items: expect.objectContaining({ type: 'string' }) }),
      expect.objectContaining({ type: 'array', items: { type: 'integer', minimum: 0, maximum: 2147483647 } }),
      expect.objectContaining({
        type: 'array',
        items: expect.objectContaining({ type: 'array', items: { type: 'integer', minimum: 0, maximum: 2147483647 } }),
      }),
    ]);
    expect(dto?.properties?.dimensions.type).toBe('integer');
  });

  it('documents the operator routes as they answer: 201 for a new block, a {data} list, the error statuses', () => {
    const ref = (path: string, method: string, status: string): string | undefined =>
      doc.paths[path][method].responses?.[status]?.content?.['application/json']?.schema?.$ref;
    expect(ref('/admin/blocks', 'post', '201')).toMatch(/BlockDto$/);
    expect(doc.paths['/admin/blocks'].post.responses?.['200']).toBeUndefined();
    expect(ref('/admin/blocks', 'get', '200')).toMatch(/BlockListDto$/);
    expect(ref('/admin/blocks', 'delete', '200')).toMatch(/DeletedDto$/);
    expect(ref('/admin/usage', 'get', '200')).toMatch(/UsageDto$/);
    // The day's cost beside its counts: dollars (numbers, not integers), in total and per user.
    expect(JSON.stringify(property(doc, 'UsageDto', 'cost_usd'))).toMatch(/DailyCostDto"/);
    expect(property(doc, 'UsageDto', 'cost_usd')).toMatchObject({ description: expect.stringMatching(/cost_usd/) as unknown });
    expect(property(doc, 'DailyCostDto', 'total')).toMatchObject({ type: 'number' });
    expect(property(doc, 'DailyCostDto', 'users')).toMatchObject({ additionalProperties: { type: 'number' } });
    for (const [path, method] of [
      ['/admin/blocks', 'post'],
      ['/admin/blocks', 'get'],
      ['/admin/blocks', 'delete'],
      ['/admin/usage', 'get'],
    ]) {
      for (const status of ['400', '401', '403', '429'])
        expect({ path, method, status, ref: ref(path, method, status) }).toMatchObject({
          ref: expect.stringMatching(/ErrorBodyDto$/) as unknown,
        });
    }
    expect(ref('/admin/blocks', 'delete', '503')).toMatch(/ErrorBodyDto$/);
  });

  it('names each path parameter as its path does, so Try it out can fill it in (the well-known route’s wildcard is `path`, not `*`)', () => {
    for (const [path, item] of Object.entries(doc.paths)) {
      const inPath = [...path.matchAll(/\{([^}]+)\}/g)].map((m) => m[1]).sort();
      for (const [method, op] of Object.entries(item)) {
        const documented = (op.parameters ?? []).filter((p) => p.in === 'path').map((p) => p.name);
        expect({ method, path, parameters: documented.sort() }).toEqual({ method, path, parameters: inPath });
      }
    }
    expect(doc.paths['/.well-known/oauth-protected-resource/{path}'].get.parameters).toEqual([
      expect.objectContaining({ name: 'path', in: 'path', required: true, description: expect.stringMatching(/\w/) as unknown }),
    ]);
  });

  it('uses in its examples only models the demo product of `npm start` serves', () => {
    const products = JSON.parse(demoEnv().API_KEY_SERVER_PRODUCT_KEYS) as { demo: { providers: Record<string, { models: string[] }> } };
    const served = Object.values(products.demo.providers).flatMap((p) => p.models);
    const examples = new Set<string>();
    const walk = (node: unknown, key: string): void => {
      if (typeof node === 'string') {
        if ((key === 'example' || key === 'model') && /^(gpt-|o\d|claude-|gemini-|text-embedding-)/.test(node)) examples.add(node);
      } else if (Array.isArray(node)) node.forEach((item) => walk(item, key));
      else if (node && typeof node === 'object') for (const [k, v] of Object.entries(node)) walk(v, k);
    };
    walk(doc, '');
    expect(examples).toContain('claude-3-5-sonnet-20241022');
    expect([...examples].filter((model) => !served.includes(model))).toEqual([]);
  });

  it('declares the integer fields as integers, with the bounds keygate enforces', () => {
    expect(property(doc, 'ChatCompletionRequestDto', 'max_tokens')).toMatchObject({ type: 'integer', minimum: 1 });
    expect(property(doc, 'ChatCompletionRequestDto', 'max_completion_tokens')).toMatchObject({ type: 'integer', minimum: 1 });
    expect(property(doc, 'ChatCompletionRequestDto', 'n')).toMatchObject({ type: 'integer', minimum: 1, maximum: 128 });
    expect(property(doc, 'ChatCompletionRequestDto', 'seed')).toMatchObject({ type: 'integer' });
    expect(property(doc, 'ChatCompletionRequestDto', 'top_logprobs')).toMatchObject({ type: 'integer', minimum: 0, maximum: 20 });
    expect(property(doc, 'MessagesRequestDto', 'max_tokens')).toMatchObject({ type: 'integer', minimum: 1 });
    expect(property(doc, 'MessagesRequestDto', 'top_k')).toMatchObject({ type: 'integer', minimum: 0 });
    expect(property(doc, 'ResponsesRequestDto', 'max_output_tokens')).toMatchObject({ type: 'integer', minimum: 16 });
  });

  it('says in each success answer what it is (Swagger UI shows the description beside the status)', () => {
    const bare = Object.entries(doc.paths).flatMap(([path, item]) =>
      Object.entries(item as Record<string, { responses?: Record<string, { description?: string }> }>).flatMap(([method, op]) =>
        Object.entries(op.responses ?? {})
          .filter(([status, answer]) => status.startsWith('2') && !answer.description?.trim())
          .map(([status]) => `${method.toUpperCase()} ${path} ${status}`),
      ),
    );
    expect(bare).toEqual([]);
  });

  it('documents the statuses each route can answer, and only those', () => {
    for (const [path, method] of CLIENT_ROUTES)
      expect({ path, method, statuses: statuses(doc, path, method) }).toMatchObject({
        statuses: expect.arrayContaining(['401', '403', '429', '500', '503']) as unknown,
      });
    for (const path of ['/v1/chat/completions', '/chat/{product}', '/v1/embeddings', '/v1/messages', '/v1/responses'])
      expect(statuses(doc, path, 'post')).toEqual(['200', '400', '401', '403', '404', '408', '413', '429', '500', '502', '503', '504']);
    // Keygate answers these alone: no body, no upstream; the list names no model.
    expect(statuses(doc, '/v1/models', 'get')).toEqual(['200', '400', '401', '403', '429', '500', '503']);
    expect(statuses(doc, '/v1/models/{model}', 'get')).toEqual(['200', '400', '401', '403', '404', '429', '500', '503']);
    // A model the product lacks is a 404, not a 403.
    const described = (path: string, method: string, status: string): string =>
      doc.paths[path][method].responses?.[status]?.description ?? '';
    // SPEC §6: a model of another product is 403, one no product names 404.
    expect(described('/v1/chat/completions', 'post', '403')).toMatch(/model_not_allowed/);
    expect(described('/v1/chat/completions', 'post', '404')).toMatch(/model_not_found/);
    expect(described('/v1/models', 'get', '403')).not.toMatch(/model_not_allowed/);
    // DELETE takes no query at all, stream=true included.
    expect(described('/v1/responses/{id}', 'delete', '400')).not.toMatch(/stream/);
    expect(described('/v1/responses/{id}', 'get', '400')).toMatch(/stream=true/);
  });

  it('documents the Anthropic-format query parameters of the models routes, as Anthropic-only', () => {
    const list = queryParams(doc, '/v1/models', 'get');
    expect(Object.keys(list).sort()).toEqual(['after_id', 'before_id', 'beta', 'lifecycle', 'lifecycle[]', 'limit']);
    expect(list.limit.schema).toMatchObject({ type: 'integer', minimum: 1, maximum: 1000 });
    const retrieve = queryParams(doc, '/v1/models/{model}', 'get');
    expect(Object.keys(retrieve)).toEqual(['beta']);
    for (const p of [...Object.values(list), ...Object.values(retrieve)]) expect(p.description).toMatch(/Anthropic format only/);
  });

  it('documents the query parameters the models list takes in Anthropic’s format as the gateway names them in its 400', async () => {
    const res = await gw.fetch('/v1/models?no_such_parameter=1', {
      headers: { authorization: `Bearer ${mintToken({ sub: uniqueId('docs-user') })}`, 'anthropic-version': '2023-06-01' },
    });
    expect(res.status).toBe(400);
    const body = (await res.json()) as { error: { message: string } };
    const taken = /this route takes ([^)]*)\)/.exec(body.error.message)?.[1].split(', ');
    expect(taken?.sort()).toEqual(Object.keys(queryParams(doc, '/v1/models', 'get')).sort());
  });

  it('documents Anthropic-dialect errors as they are answered: request_id beside type and error, Anthropic’s error.type', async () => {
    const schemas = doc.components?.schemas ?? {};
    const envelope = schemas.AnthropicErrorBodyDto;
    expect(Object.keys(envelope?.properties ?? {}).sort()).toEqual(['error', 'request_id', 'type']);
    expect(envelope?.required).toEqual(expect.arrayContaining(['type', 'error', 'request_id']));
    const detailRef = (envelope?.properties?.error as { $ref?: string } | undefined)?.$ref ?? '';
    const detail = schemas[detailRef.split('/').pop() ?? ''];
    expect(Object.keys(detail?.properties ?? {}).sort()).toEqual(['code', 'message', 'param', 'type']);
    expect((detail?.properties?.type as { enum?: string[] }).enum).toEqual(
      expect.arrayContaining(['not_found_error', 'request_too_large', 'timeout_error', 'api_error', 'invalid_request_error']),
    );
    // The documented shape is the real one: an error of the models route in Anthropic's format.
    const res = await gw.fetch('/v1/models?limit=0', {
      headers: { authorization: `Bearer ${mintToken({ sub: uniqueId('docs-user') })}`, 'anthropic-version': '2023-06-01' },
    });
    expect(res.status).toBe(400);
    const body = (await res.json()) as { type: string; error: Record<string, unknown>; request_id: string };
    expect(Object.keys(body).sort()).toEqual(Object.keys(envelope?.properties ?? {}).sort());
    expect(Object.keys(body.error).sort()).toEqual(Object.keys(detail?.properties ?? {}).sort());
    expect(body).toMatchObject({ type: 'error', error: { type: 'invalid_request_error' }, request_id: res.headers.get('x-request-id') });
    // The models routes answer in either envelope, as the client's dialect picks: anyOf, since an
    // Anthropic-envelope body has the contract's `error` too (it matches both).
    expect(doc.paths['/v1/models'].get.responses?.['400']?.content?.['application/json']?.schema?.anyOf).toEqual([
      { $ref: '#/components/schemas/ErrorBodyDto' },
      { $ref: '#/components/schemas/AnthropicErrorBodyDto' },
    ]);
  });

  it('marks the chat and models operations as requiring the bearer scheme', () => {
    const bearer = Object.entries(doc.components?.securitySchemes ?? {}).find(([, s]) => s.scheme === 'bearer')?.[0];
    expect(bearer).toBeDefined();
    for (const op of [
      doc.paths['/v1/chat/completions'].post,
      doc.paths['/v1/responses'].post,
      doc.paths['/chat/{product}'].post,
      doc.paths['/v1/models'].get,
      doc.paths['/v1/models/{model}'].get,
    ]) {
      expect((op.security ?? []).some((requirement) => bearer! in requirement)).toBe(true);
    }
  });
});

describe('the OpenAPI document of a gateway that also takes HMAC and IAP credentials', () => {
  let other: Gateway;
  let doc: OpenApiDoc;

  beforeAll(async () => {
    other = await startGateway({
      products: PRODUCTS,
      env: {
        API_KEY_SERVER_HMAC_SECRETS: JSON.stringify({ 'docs-client': { secret: 'docs-hmac-secret-0123456789abcdef', product: 'demo' } }),
        API_KEY_SERVER_IAP_AUDIENCE: '/projects/1/global/backendServices/2',
        API_KEY_SERVER_IAP_JWKS_URL: 'http://127.0.0.1:9/iap/jwk',
      },
    });
    const res = await fetch(`${other.url}/docs-json`, { signal: AbortSignal.timeout(10_000) });
    expect(res.status).toBe(200);
    doc = (await res.json()) as OpenApiDoc;
  }, 30_000);

  afterAll(async () => {
    await other?.stop();
  }, 15_000);

  it('declares the HMAC headers and the IAP assertion as header credentials', () => {
    expect(doc.components?.securitySchemes).toMatchObject({
      'hmac-client-id': { type: 'apiKey', in: 'header', name: 'x-client-id' },
      'hmac-timestamp': { type: 'apiKey', in: 'header', name: 'x-timestamp' },
      'hmac-signature': { type: 'apiKey', in: 'header', name: 'x-signature' },
      iap: { type: 'apiKey', in: 'header', name: 'x-goog-iap-jwt-assertion' },
    });
  });

  it('offers them as alternatives to the bearer JWT on the client routes (the three HMAC headers together), not on the operator routes', () => {
    const hmac = { 'hmac-client-id': [], 'hmac-timestamp': [], 'hmac-signature': [] };
    for (const op of [doc.paths['/v1/chat/completions'].post, doc.paths['/v1/responses'].post, doc.paths['/chat/{product}'].post]) {
      expect(op.security).toEqual([{ bearer: [] }, hmac, { iap: [] }]);
    }
    for (const op of [doc.paths['/admin/blocks'].post, doc.paths['/admin/usage'].get]) expect(op.security).toEqual([{ bearer: [] }]);
  });

  it('offers x-api-key on the routes that speak Anthropic’s API (the models routes with anthropic-version), beside the bearer JWT, and documents their answers', () => {
    expect(doc.components?.securitySchemes?.['x-api-key']).toMatchObject({ type: 'apiKey', in: 'header', name: 'x-api-key' });
    const hmac = { 'hmac-client-id': [], 'hmac-timestamp': [], 'hmac-signature': [] };
    for (const op of [
      doc.paths['/v1/messages'].post,
      doc.paths['/v1/messages/count_tokens'].post,
      doc.paths['/v1/models'].get,
      doc.paths['/v1/models/{model}'].get,
    ])
      expect(op.security).toEqual([{ bearer: [] }, { 'x-api-key': [] }, hmac, { iap: [] }]);
    const withKey = Object.entries(doc.paths).flatMap(([path, item]) =>
      Object.entries(item)
        .filter(([, op]) => (op.security ?? []).some((requirement) => 'x-api-key' in requirement))
        .map(([method]) => `${method} ${path}`),
    );
    expect(withKey.sort()).toEqual(['get /v1/models', 'get /v1/models/{model}', 'post /v1/messages', 'post /v1/messages/count_tokens']);
    expect(okSchema(doc, '/v1/messages')).toMatch(/AnthropicMessageResponseDto$/);
    expect(okSchema(doc, '/v1/messages/count_tokens')).toMatch(/AnthropicTokenCountDto$/);
    expect(okSchema(doc, '/v1/responses')).toMatch(/ResponseObjectDto$/);
    expect(okSchema(doc, '/v1/responses/input_tokens')).toMatch(/ResponseInputTokensDto$/);
    expect(okSchema(doc, '/v1/responses/compact')).toMatch(/ResponseCompactionDto$/);
    expect(okSchema(doc, '/v1/responses/{id}/cancel')).toMatch(/ResponseObjectDto$/);
  });

  it('offers x-goog-api-key on the Gemini routes only, beside the bearer JWT, and documents their answers in Google’s shape', () => {
    expect(doc.components?.securitySchemes?.['x-goog-api-key']).toMatchObject({ type: 'apiKey', in: 'header', name: 'x-goog-api-key' });
    const hmac = { 'hmac-client-id': [], 'hmac-timestamp': [], 'hmac-signature': [] };
    const methods = ['generateContent', 'streamGenerateContent', 'countTokens', 'embedContent', 'batchEmbedContents'];
    // Under v1beta and the stable v1 alike; the model list under v1beta only (GET /v1/models is OpenAI's).
    const gemini = ['v1beta', 'v1'].flatMap((version) => methods.map((method) => `post /${version}/models/{model}:${method}`));
    const lists = ['get /v1beta/models', 'get /v1beta/models/{model}'];
    for (const route of [...gemini, ...lists]) {
      const [method, path] = route.split(' ');
      expect({ route, security: doc.paths[path][method].security }).toEqual({
        route,
        security: [{ bearer: [] }, { 'x-goog-api-key': [] }, hmac, { iap: [] }],
      });
      expect(JSON.stringify(doc.paths[path][method].responses?.['401'])).toMatch(/GoogleErrorBodyDto/);
    }
    const withKey = Object.entries(doc.paths).flatMap(([path, item]) =>
      Object.entries(item)
        .filter(([, op]) => (op.security ?? []).some((requirement) => 'x-goog-api-key' in requirement))
        .map(([method]) => `${method} ${path}`),
    );
    expect(withKey.sort()).toEqual([...gemini, ...lists].sort());
    expect(okSchema(doc, '/v1beta/models/{model}:generateContent')).toMatch(/GenerateContentResponseDto$/);
    expect(okSchema(doc, '/v1beta/models/{model}:countTokens')).toMatch(/CountTokensResponseDto$/);
    expect(okSchema(doc, '/v1beta/models/{model}:embedContent')).toMatch(/EmbedContentResponseDto$/);
    expect(okSchema(doc, '/v1beta/models/{model}:batchEmbedContents')).toMatch(/BatchEmbedContentsResponseDto$/);
    // Keygate answers the model list alone: no body, no upstream.
    expect(statuses(doc, '/v1beta/models', 'get')).toEqual(['200', '400', '401', '403', '429', '500', '503']);
    expect(statuses(doc, '/v1beta/models/{model}', 'get')).toEqual(['200', '400', '401', '403', '404', '429', '500', '503']);
  });

  it('leaves HMAC and IAP out where they are not configured (the gateway above): bearer, x-api-key and x-goog-api-key only', async () => {
    const plain = (await (await get('/docs-json')).json()) as OpenApiDoc;
    expect(Object.keys(plain.components?.securitySchemes ?? {})).toEqual(['bearer', 'x-api-key', 'x-goog-api-key']);
  });
});

describe('the Swagger UI', () => {
  it('answers GET /docs with an HTML page', async () => {
    const res = await get('/docs');
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toContain('text/html');
    expect((await res.text()).toLowerCase()).toContain('swagger');
  });
});

describe('health probes', () => {
  it('answers /healthz with 200', async () => {
    const res = await get('/healthz');
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ status: 'ok' });
  });

  it('answers /readyz with 200 and the secrets indicator up', async () => {
    const res = await get('/readyz');
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ status: 'ok', info: { secrets: { status: 'up' } } });
  });
});

describe('protected-resource metadata (RFC 9728)', () => {
  it('serves the metadata document that every 401 points to', async () => {
    const unauthorized = await gw.fetch('/v1/models');
    expect(unauthorized.status).toBe(401);
    const header = unauthorized.headers.get('www-authenticate') ?? '';
    const url = /resource_metadata="([^"]+)"/.exec(header)?.[1];
    expect(url).toBe(`${gw.url}/.well-known/oauth-protected-resource`);

    const res = await fetch(url!, { signal: AbortSignal.timeout(10_000) });
    expect(res.status).toBe(200);
    const metadata = (await res.json()) as { resource?: unknown; bearer_methods_supported?: unknown };
    expect(metadata.resource).toBe(gw.url);
    expect(metadata.bearer_methods_supported).toEqual(expect.arrayContaining(['header']));
  });
});

describe('routes outside /v1 and /chat', () => {
  it('write no audit line', async () => {
    for (const path of ['/healthz', '/readyz', '/docs', '/docs-json', '/.well-known/oauth-protected-resource', '/no-such-page']) {
      await get(path).then((r) => r.arrayBuffer());
    }
    // A sentinel audited request: once its line is out, lines for the requests above would be too.
    const sentinel = uniqueId('sentinel');
    await gw.fetch('/v1/models', { headers: { 'x-request-id': sentinel } }).then((r) => r.arrayBuffer());
    await gw.waitForAudit(sentinel);
    expect(gw.audits().filter((a) => !/^\/(v1|chat)\//.test(a.path ?? ''))).toEqual([]);
    expect(gw.audits()).toHaveLength(gw.requests.length);
  });
});

/**
 * The document against the gateway's answers, as a client generated from it or a person in Swagger
 * UI meets them: every operation is tried as documented (its examples, its parameters' examples),
 * and every answer must be one the operation documents, in a media type documented for that status,
 * with a body that the schema documented for it describes.
 */
/** A stream's first and last events, each by its name, else its data's `type`, else `[DONE]` or `object`. */
function sseEnds(text: string): string[] {
  const found: string[] = [];
  const parser = createParser({
    onEvent: ({ event, data }) => {
      if (event) return found.push(event);
      if (data === '[DONE]') return found.push(data);
      const parsed = JSON.parse(data) as Record<string, unknown>;
      found.push(typeof parsed.type === 'string' ? parsed.type : 'object');
    },
  });
  parser.feed(text);
  return [found[0], found.at(-1) ?? ''];
}

describe('the OpenAPI document against what the gateway answers', () => {
  type Operation = {
    parameters?: OpenApiParameter[];
    security?: Array<Record<string, unknown>>;
    requestBody?: { content?: Record<string, { schema?: Record<string, unknown>; examples?: Record<string, { value: unknown }> }> };
    responses?: Record<
      string,
      { headers?: Record<string, { required?: boolean }>; content?: Record<string, { schema?: Record<string, unknown> }> }
    >;
  };
  interface Answer {
    status: number;
    media: string;
    text: string;
    headers: Headers;
  }

  let mock: MockUpstream;
  let real: Gateway;
  let doc: OpenApiDoc;
  let operations: Array<{ key: string; path: string; method: string; op: Operation }>;
  const ajv = new Ajv({ strict: false, allErrors: true, validateFormats: false });
  const user = uniqueId('docs-truth');
  const bearer = { authorization: `Bearer ${mintToken({ sub: user })}` };
  const admin = { authorization: `Bearer ${mintToken({ sub: user, extraClaims: { scope: 'keygate.admin' } })}` };

  beforeAll(async () => {
    mock = await startMock();
    // Limits high enough that trying every operation in a row is never a 429.
    const policy = writeTempFile('policy.yaml', 'defaults:\n  limits: {requests_per_second: 1000, user_requests_per_second: 1000}\n');
    // The products of `npm start`, whose models the examples name.
    real = await startGateway({
      products: JSON.parse(demoEnv(mock.port).API_KEY_SERVER_PRODUCT_KEYS) as Record<string, unknown>,
      env: { API_KEY_SERVER_POLICY_FILE: policy },
    });
    doc = (await (await fetch(`${real.url}/docs-json`, { signal: AbortSignal.timeout(10_000) })).json()) as OpenApiDoc;
    ajv.addSchema({ $id: 'openapi', components: doc.components });
    operations = Object.entries(doc.paths).flatMap(([path, item]) =>
      Object.entries(item).map(([method, op]) => ({ key: `${method.toUpperCase()} ${path}`, path, method, op })),
    );
  }, 30_000);

  afterAll(async () => {
    await Promise.all([real?.stop(), mock?.stop()]);
    cleanupTempFiles();
  }, 15_000);

  /** A parameter's example: the value Swagger UI's Try it out fills in. */
  function exampleOf(p: OpenApiParameter): string | undefined {
    const schema = p.schema as { example?: unknown; enum?: unknown[] } | undefined;
    const value = (p as { example?: unknown }).example ?? schema?.example ?? schema?.enum?.[0];
    return value === undefined ? undefined : typeof value === 'string' ? value : JSON.stringify(value);
  }

  /** The request target of an operation, its path parameters and required query parameters filled from their examples. */
  function target(path: string, op: Operation, overrides: Record<string, string> = {}): string {
    const params = op.parameters ?? [];
    const filled = path.replace(/\{([^}]+)\}/g, (_, name: string) => {
      const value = overrides[name] ?? exampleOf(params.find((p) => p.in === 'path' && p.name === name)!);
      return encodeURIComponent(value ?? '');
    });
    const query = params
      .filter((p) => p.in === 'query' && p.required)
      .map((p) => `${encodeURIComponent(p.name)}=${encodeURIComponent(exampleOf(p) ?? '')}`);
    return query.length ? `${filled}?${query.join('&')}` : filled;
  }

  async function send(method: string, path: string, headers: Record<string, string>, body?: unknown): Promise<Answer> {
    const res = await real.fetch(path, {
      method: method.toUpperCase(),
      headers: body === undefined ? headers : { ...headers, 'content-type': 'application/json' },
      body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
      signal: AbortSignal.timeout(20_000),
    });
    return {
      status: res.status,
      media: (res.headers.get('content-type') ?? '').split(';')[0].trim(),
      text: await res.text(),
      headers: res.headers,
    };
  }

  /**
   * What is wrong with an answer by the document: an undocumented status, a media type the status
   * does not document, no schema for it, or a body the schema does not describe (a JSON body parsed,
   * an event stream as the text it is). Empty when the document tells the truth.
   */
  function mismatch(key: string, op: Operation, answer: Answer): string[] {
    const documented = op.responses?.[String(answer.status)];
    if (!documented) return [`${key}: answered ${answer.status}, which it does not document`];
    const media = documented.content?.[answer.media];
    if (!media?.schema)
      return [
        `${key}: answered ${answer.status} as ${answer.media}, for which it documents no schema (${Object.keys(documented.content ?? {}).join(', ') || 'none'})`,
      ];
    const body: unknown = answer.media === 'application/json' ? JSON.parse(answer.text) : answer.text;
    const validate = ajv.compile(JSON.parse(JSON.stringify(media.schema).replace(/"#\/components\//g, '"openapi#/components/')) as object);
    return validate(body)
      ? []
      : [`${key}: its ${answer.status} ${answer.media} body does not match the documented schema: ${ajv.errorsText(validate.errors)}`];
  }

  function credentialFor(path: string): Record<string, string> {
    return path.startsWith('/admin') ? admin : bearer;
  }

  it('gives every required parameter an example and every parameter a type, so Try it out and a generated client get them right', () => {
    const problems = operations.flatMap(({ key, op }) =>
      (op.parameters ?? []).flatMap((p) => [
        ...((p.schema as { type?: string } | undefined)?.type ? [] : [`${key}: ${p.in} parameter ${p.name} has no type`]),
        ...(p.required && exampleOf(p) === undefined ? [`${key}: required ${p.in} parameter ${p.name} has no example`] : []),
      ]),
    );
    expect(problems).toEqual([]);
  });

  it('gives every JSON body an example, which the gateway accepts (the documented 2xx, its body as documented)', async () => {
    const problems: string[] = [];
    for (const { key, path, method, op } of operations) {
      const media = op.requestBody?.content?.['application/json'];
      if (!media) continue;
      const examples = Object.entries(media.examples ?? {});
      if (!examples.length) problems.push(`${key}: its body has no example (Swagger UI would fill in every optional field)`);
      const success = Object.keys(op.responses ?? {}).find((status) => status.startsWith('2'));
      for (const [name, { value }] of examples) {
        const answer = await send(method, target(path, op), credentialFor(path), value);
        if (String(answer.status) !== success)
          problems.push(`${key}: example ${name} answered ${answer.status}: ${answer.text.slice(0, 300)}`);
        problems.push(...mismatch(key, op, answer));
      }
    }
    expect(problems).toEqual([]);
  }, 60_000);

  it('documents the answer of every operation tried with its parameters’ examples', async () => {
    const problems: string[] = [];
    for (const { key, path, method, op } of operations) {
      if (op.requestBody) continue; // tried with its examples above
      problems.push(...mismatch(key, op, await send(method, target(path, op), credentialFor(path))));
    }
    expect(problems).toEqual([]);
  }, 60_000);

  it('documents each stream as it is answered (stream: true, and the operations that answer only a stream)', async () => {
    const problems: string[] = [];
    let streams = 0;
    for (const { key, path, method, op } of operations) {
      const media = op.requestBody?.content?.['application/json'];
      const schemaRef = (media?.schema?.$ref as string | undefined)?.split('/').pop() ?? '';
      const takesStream = (doc.components?.schemas?.[schemaRef]?.properties?.stream as { type?: string } | undefined)?.type === 'boolean';
      const example = Object.values(media?.examples ?? {})[0]?.value as Record<string, unknown> | undefined;
      if (!example || !(takesStream || path.endsWith(':streamGenerateContent'))) continue;
      const answer = await send(method, target(path, op), credentialFor(path), takesStream ? { ...example, stream: true } : example);
      // Some take `stream` and answer JSON all the same (count_tokens): checked as whatever they answer.
      if (answer.status === 200 && answer.media === 'text/event-stream') {
        streams++;
        // The example Swagger UI shows begins and ends as the real stream does.
        const documented = (op.responses?.['200']?.content?.['text/event-stream'] as { example?: unknown } | undefined)?.example;
        if (typeof documented !== 'string') problems.push(`${key}: its event stream has no example`);
        else {
          const [shown, real] = [sseEnds(documented), sseEnds(answer.text)];
          if (JSON.stringify(shown) !== JSON.stringify(real))
            problems.push(`${key}: its stream example runs ${JSON.stringify(shown)}, the stream ${JSON.stringify(real)}`);
        }
      }
      problems.push(...mismatch(key, op, answer));
    }
    expect(streams).toBeGreaterThanOrEqual(5);
    expect(problems).toEqual([]);
  }, 60_000);

  it('documents the error answers as they are answered: no credential, a malformed body, an unknown model, in each dialect', async () => {
    const problems: string[] = [];
    for (const { key, path, method, op } of operations) {
      if (!op.security?.length) continue;
      const example = Object.values(op.requestBody?.content?.['application/json']?.examples ?? {})[0]?.value;
      const dialects: Array<Record<string, string>> = [{}];
      // The models routes answer in Anthropic's envelope when the client sends anthropic-version.
      if ((op.parameters ?? []).some((p) => p.in === 'header' && p.name === 'anthropic-version'))
        dialects.push({ 'anthropic-version': '2023-06-01' });
      for (const dialect of dialects) {
        const anonymous = await send(method, target(path, op), dialect, example);
        if (anonymous.status !== 401) problems.push(`${key}: without a credential answered ${anonymous.status}`);
        problems.push(...mismatch(key, op, anonymous));
        if (example !== undefined) {
          const malformed = await send(method, target(path, op), { ...credentialFor(path), ...dialect }, '{"model":');
          if (malformed.status !== 400) problems.push(`${key}: a malformed body answered ${malformed.status}`);
          problems.push(...mismatch(key, op, malformed));
        }
        const named = path.includes('{model}')
          ? send(method, target(path, op, { model: 'no-such-model' }), { ...credentialFor(path), ...dialect }, example)
          : example && typeof example === 'object' && 'model' in example
            ? send(method, target(path, op), { ...credentialFor(path), ...dialect }, { ...example, model: 'no-such-model' })
            : undefined;
        if (named) {
          const unknown = await named;
          if (unknown.status !== 404) problems.push(`${key}: an unknown model answered ${unknown.status}`);
          problems.push(...mismatch(key, op, unknown));
        }
      }
    }
    expect(problems).toEqual([]);
  }, 60_000);

  it('declares the headers its errors carry, and they come with them: WWW-Authenticate on every 401, Retry-After on a 429', async () => {
    const problems: string[] = [];
    const required = (op: Operation, status: string): string[] =>
      Object.entries(op.responses?.[status]?.headers ?? {})
        .filter(([, header]) => header.required)
        .map(([name]) => name);
    for (const { key, path, method, op } of operations) {
      if (!op.security?.length) continue;
      if (op.responses?.['401'] && !required(op, '401').includes('WWW-Authenticate'))
        problems.push(`${key}: its 401 declares no WWW-Authenticate`);
      if (op.responses?.['429'] && !required(op, '429').includes('Retry-After')) problems.push(`${key}: its 429 declares no Retry-After`);
      const example = Object.values(op.requestBody?.content?.['application/json']?.examples ?? {})[0]?.value;
      const anonymous = await send(method, target(path, op), {}, example);
      for (const name of required(op, String(anonymous.status)))
        if (!anonymous.headers.get(name)) problems.push(`${key}: its ${anonymous.status} came without ${name}`);
    }
    // An upstream's 429, passed on.
    const chat = doc.paths['/v1/chat/completions'].post as Operation;
    const limited = await send('post', '/v1/chat/completions', bearer, {
      model: 'gpt-4o-mini',
      messages: [{ role: 'user', content: 'Hello [mock status=429]' }],
    });
    expect(limited.status).toBe(429);
    for (const name of required(chat, '429'))
      if (!limited.headers.get(name)) problems.push(`POST /v1/chat/completions: its 429 came without ${name}`);
    expect(problems).toEqual([]);
  }, 60_000);

  it('gives every operation an id a client generator can make a method name of, unique (the Gemini routes under /v1beta and /v1 apart)', () => {
    const ids = operations.map(({ op }) => (op as { operationId?: string }).operationId ?? '');
    expect(ids.filter((id) => !/^[A-Za-z_][A-Za-z0-9_]*$/.test(id))).toEqual([]);
    expect(new Set(ids).size).toBe(ids.length);
    expect((doc.paths['/v1/models/{model}:generateContent'].post as { operationId?: string }).operationId).toBe(
      'GeminiController_generateContent_v1',
    );
  });

  it('says of every operation which credentials it takes, the public ones none (security: []), and the public ones answer without one', async () => {
    expect(operations.filter(({ op }) => op.security === undefined).map(({ key }) => key)).toEqual([]);
    const open = operations.filter(({ op }) => op.security?.length === 0);
    expect(open.map(({ key }) => key)).toEqual([
      'GET /.well-known/oauth-protected-resource',
      'GET /.well-known/oauth-protected-resource/{path}',
    ]);
    for (const { key, path, method, op } of open)
      expect([key, mismatch(key, op, await send(method, target(path, op), {}))]).toEqual([key, []]);
  });

  it('declares X-Request-Id on every answer of every operation, and every answer carries it', async () => {
    const problems: string[] = [];
    for (const { key, path, method, op } of operations) {
      for (const [status, response] of Object.entries(op.responses ?? {}))
        if (!response.headers?.['X-Request-Id']?.required) problems.push(`${key}: its ${status} declares no X-Request-Id`);
      const example = Object.values(op.requestBody?.content?.['application/json']?.examples ?? {})[0]?.value;
      const anonymous = await send(method, target(path, op), {}, example);
      if (!anonymous.headers.get('x-request-id')) problems.push(`${key}: its ${anonymous.status} came without X-Request-Id`);
    }
    // And an answer that is not a refusal.
    const answered = await send('post', '/v1/chat/completions', bearer, {
      model: 'gpt-4o-mini',
      messages: [{ role: 'user', content: 'Hello' }],
    });
    expect(answered.status).toBe(200);
    expect(answered.headers.get('x-request-id')).toMatch(/\S/);
    expect(problems).toEqual([]);
  }, 60_000);

  it('documents Claude’s overload as it is answered: a 529 from Anthropic is a 502 whose error.type is overloaded_error', async () => {
    const op = doc.paths['/v1/messages'].post as Operation;
    const body = { model: 'claude-3-5-sonnet-20241022', max_tokens: 16, messages: [{ role: 'user', content: 'Hello [mock status=529]' }] };
    const answer = await send('post', '/v1/messages', bearer, body);
    expect(answer.status).toBe(502);
    expect((JSON.parse(answer.text) as { error: { type: string } }).error.type).toBe('overloaded_error');
    expect(mismatch('POST /v1/messages', op, answer)).toEqual([]);
  });

  /** Every schema object in the document (components, parameters, bodies, answers, and those within them), with where it is. */
  function schemaObjects(): Array<[at: string, schema: Record<string, unknown>]> {
    const found: Array<[string, Record<string, unknown>]> = [];
    const holdsSchemas = new Set(['schema', 'items', 'not', 'oneOf', 'anyOf', 'allOf']);
    const walk = (value: unknown, at: string, isSchema: boolean): void => {
      if (Array.isArray(value)) value.forEach((item, i) => walk(item, `${at}[${i}]`, isSchema));
      if (typeof value !== 'object' || value === null || Array.isArray(value)) return;
      if (isSchema) found.push([at, value as Record<string, unknown>]);
      for (const [key, inner] of Object.entries(value)) {
        if ((key === 'properties' && isSchema) || (key === 'schemas' && at === '#/components')) {
          for (const [name, schema] of Object.entries(inner as object)) walk(schema, `${at}/${key}/${name}`, true);
        } else if (!['example', 'examples', 'default', 'enum'].includes(key)) {
          walk(inner, `${at}/${key}`, holdsSchemas.has(key) || (isSchema && key === 'additionalProperties'));
        }
      }
    };
    walk(doc, '#', false);
    return found;
  }

  it('puts `nullable` only beside a `type` (OpenAPI 3.0.3), so the null a chat takes is in its schema: an assistant’s tool call with content null', async () => {
    expect(
      schemaObjects()
        .filter(([, s]) => 'nullable' in s && !('type' in s))
        .map(([at]) => at),
    ).toEqual([]);
    const op = doc.paths['/v1/chat/completions'].post as Operation;
    const toolCall = { id: 'call_1', type: 'function', function: { name: 'weather', arguments: '{}' } };
    const body = {
      model: 'gpt-4o-mini',
      messages: [
        { role: 'user', content: 'The weather?' },
        { role: 'assistant', content: null, tool_calls: [toolCall] },
        { role: 'tool', tool_call_id: 'call_1', content: 'sunny' },
      ],
      tools: [{ type: 'function', function: { name: 'weather', parameters: { type: 'object', properties: {} } } }],
    };
    const schema = op.requestBody!.content!['application/json'].schema!;
    const validate = ajv.compile(JSON.parse(JSON.stringify(schema).replace(/"#\/components\//g, '"openapi#/components/')) as object);
    expect(validate(body) ? [] : validate.errors).toEqual([]);
    expect((await send('post', '/v1/chat/completions', bearer, body)).status).toBe(200);
  });

  it('says of every object what fields beyond its own it takes, so a generated client can send a tool or a field keygate passes on', () => {
    // An object without its fields listed is read as an empty one by openapi-typescript, say (a tool could not be sent).
    const unsaid = schemaObjects().filter(([, s]) => s.type === 'object' && !s.properties && s.additionalProperties === undefined);
    expect(unsaid.map(([at]) => at)).toEqual([]);
  });

  it('documents each body as taking fields it does not list where keygate passes them on, and as closed where it refuses them', async () => {
    const problems: string[] = [];
    let closed = 0;
    for (const { key, path, method, op } of operations) {
      const media = op.requestBody?.content?.['application/json'];
      const example = Object.values(media?.examples ?? {})[0]?.value as Record<string, unknown> | undefined;
      if (!media || !example) continue;
      const name = ((media.schema?.$ref as string | undefined) ?? '').split('/').pop() ?? '';
      const open = (doc.components?.schemas?.[name] as { additionalProperties?: unknown } | undefined)?.additionalProperties;
      const answer = await send(method, target(path, op), credentialFor(path), { ...example, x_unlisted: 1 });
      const refused = answer.status === 400 && answer.text.includes('x_unlisted: unknown field');
      if (open === false) closed++;
      if (open === true ? refused : open === false ? !refused : true)
        problems.push(
          `${key}: documents additionalProperties ${String(open)}, and a field it does not list answered ${answer.status}: ${answer.text.slice(0, 200)}`,
        );
    }
    expect(closed).toBeGreaterThanOrEqual(1);
    expect(problems).toEqual([]);
    const schemas = doc.components?.schemas as Record<string, { additionalProperties?: unknown }>;
    for (const open of [
      'ChatCompletionRequestDto',
      'ChatMessageDto',
      'MessagesRequestDto',
      'GenerateContentRequestDto',
      'ResponsesRequestDto',
    ])
      expect([open, schemas[open].additionalProperties]).toEqual([open, true]);
    expect(schemas.CreateBlockDto.additionalProperties).toBe(false);
  }, 60_000);
});
