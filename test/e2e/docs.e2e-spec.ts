/**
 * API document, health probes and discovery metadata, black box against the built gateway.
 */
import { startGateway, uniqueId, type Gateway } from './harness';

/** Nothing in this file calls an upstream; the base URL points at the discard port. */
const PRODUCTS = { demo: { providers: { openai: { api_key: 'sk-mock-docs', models: ['gpt-4o'], base_url: 'http://127.0.0.1:9/v1' } } } };

interface OpenApiDoc {
  openapi: string;
  paths: Record<
    string,
    Record<
      string,
      {
        security?: Array<Record<string, unknown>>;
        responses?: Record<string, { content?: Record<string, { schema?: { $ref?: string } }> }>;
      }
    >
  >;
  components?: {
    securitySchemes?: Record<string, { type?: string; scheme?: string }>;
    schemas?: Record<string, { properties?: Record<string, unknown>; allOf?: unknown[] }>;
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
      expect.objectContaining({ type: 'array', items: { type: 'integer' } }),
      expect.objectContaining({ type: 'array', items: expect.objectContaining({ type: 'array', items: { type: 'integer' } }) }),
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
    for (const op of [
      doc.paths['/v1/chat/completions'].post,
      doc.paths['/v1/responses'].post,
      doc.paths['/chat/{product}'].post,
      doc.paths['/v1/models'].get,
    ]) {
      expect(op.security).toEqual([{ bearer: [] }, hmac, { iap: [] }]);
    }
    for (const op of [doc.paths['/admin/blocks'].post, doc.paths['/admin/usage'].get]) expect(op.security).toEqual([{ bearer: [] }]);
  });

  it('offers x-api-key on the Anthropic routes only, beside the bearer JWT, and documents their answers', () => {
    expect(doc.components?.securitySchemes?.['x-api-key']).toMatchObject({ type: 'apiKey', in: 'header', name: 'x-api-key' });
    const hmac = { 'hmac-client-id': [], 'hmac-timestamp': [], 'hmac-signature': [] };
    for (const op of [doc.paths['/v1/messages'].post, doc.paths['/v1/messages/count_tokens'].post])
      expect(op.security).toEqual([{ bearer: [] }, { 'x-api-key': [] }, hmac, { iap: [] }]);
    const withKey = Object.entries(doc.paths).flatMap(([path, item]) =>
      Object.entries(item)
        .filter(([, op]) => (op.security ?? []).some((requirement) => 'x-api-key' in requirement))
        .map(([method]) => `${method} ${path}`),
    );
    expect(withKey.sort()).toEqual(['post /v1/messages', 'post /v1/messages/count_tokens']);
    expect(okSchema(doc, '/v1/messages')).toMatch(/AnthropicMessageResponseDto$/);
    expect(okSchema(doc, '/v1/messages/count_tokens')).toMatch(/AnthropicTokenCountDto$/);
    expect(okSchema(doc, '/v1/responses')).toMatch(/ResponseObjectDto$/);
  });

  it('leaves HMAC and IAP out where they are not configured (the gateway above): bearer and x-api-key only', async () => {
    const plain = (await (await get('/docs-json')).json()) as OpenApiDoc;
    expect(Object.keys(plain.components?.securitySchemes ?? {})).toEqual(['bearer', 'x-api-key']);
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
