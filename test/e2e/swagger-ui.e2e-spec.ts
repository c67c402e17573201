/**
 * Swagger UI in a real browser (issue 3, item 8): Debian's `chromium` driven by playwright-core
 * opens /docs of the built gateway (with the demo product of `npm start`), authorizes with a bearer
 * JWT, and tries `POST /v1/chat/completions` against the mock upstream; then every operation of the
 * document, each with its own example as Swagger UI fills it in, the operator routes with an admin
 * token; and the page behind a path prefix, as an ingress serves it.
 *
 * Chromium is required, never skipped: install it with
 *   apt-get update && apt-get install -y chromium
 */
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer, request as httpRequest, type Server } from 'node:http';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type BrowserContext, type Locator, type Page } from 'playwright-core';
import {
  cleanupTempFiles,
  HOST,
  mintToken,
  startGateway,
  startMock,
  uniqueId,
  waitFor,
  writeTempFile,
  type Gateway,
  type MockUpstream,
} from './harness';

/** The environment of `npm start` (dev/demo-env.js): its demo product's models are the ones the examples name. */
const { demoEnv } = createRequire(__filename)('../../dev/demo-env.js') as { demoEnv: (mockPort?: number) => Record<string, string> };

const CHROMIUM = '/usr/bin/chromium';
const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];
const UI_TIMEOUT_MS = 15_000;

/** The path prefix the reverse proxy below serves keygate under, and the public URL naming it. */
const PREFIX = '/keygate';

let mock: MockUpstream;
let gw: Gateway;
let proxy: Server | undefined;
let proxyUrl: string;
let context: BrowserContext | undefined;
let page: Page | undefined;
let userDataDir: string | undefined;
/** Browser-side problems (console errors, CSP violations, page errors), shown when a step fails. */
const browserProblems: string[] = [];

/**
 * A reverse proxy that serves keygate under {@link PREFIX} and strips it, as an ingress path rule
 * does; anything outside the prefix is its own 404, so a request that missed keygate shows.
 */
function startPrefixProxy(target: Gateway): Promise<string> {
  const server = createServer((req, res) => {
    const url = req.url ?? '/';
    if (url !== PREFIX && !url.startsWith(`${PREFIX}/`)) {
      res.writeHead(404, { 'content-type': 'text/plain' }).end(`the proxy serves ${PREFIX} only, not ${url}`);
      return;
    }
    const upstream = httpRequest(
      { host: HOST, port: target.port, method: req.method, path: url.slice(PREFIX.length) || '/', headers: req.headers },
      (answer) => {
        res.writeHead(answer.statusCode ?? 502, answer.headers);
        answer.pipe(res);
      },
    );
    upstream.on('error', () => res.writeHead(502).end());
    req.pipe(upstream);
  });
  proxy = server;
  return new Promise((done) => server.listen(0, HOST, () => done(`http://${HOST}:${(server.address() as { port: number }).port}`)));
}

beforeAll(async () => {
  mock = await startMock();
  const demo = demoEnv(mock.port);
  // Limits high enough that trying every operation in a row is never a 429 (the demo allows a user 2 a second).
  const policy = writeTempFile('policy.yaml', 'defaults:\n  limits: {requests_per_second: 1000, user_requests_per_second: 1000}\n');
  gw = await startGateway({
    products: JSON.parse(demo.API_KEY_SERVER_PRODUCT_KEYS) as Record<string, unknown>,
    env: {
      // As `npm start`: the HMAC client makes the document declare its headers, which the Authorize dialog lists.
      API_KEY_SERVER_HMAC_SECRETS: demo.API_KEY_SERVER_HMAC_SECRETS,
      API_KEY_SERVER_POLICY_FILE: policy,
      // Its path is the example of GET /.well-known/oauth-protected-resource/{path}.
      API_KEY_SERVER_PUBLIC_URL: `https://gw.example.com${PREFIX}`,
    },
  });
  proxyUrl = await startPrefixProxy(gw);
}, 30_000);

afterAll(async () => {
  await context?.close().catch(() => undefined);
  if (userDataDir) rmSync(userDataDir, { recursive: true, force: true });
  await new Promise((done) => (proxy ? proxy.close(done) : done(undefined)));
  await Promise.all([gw?.stop(), mock?.stop()]);
  cleanupTempFiles();
}, 30_000);

/** The one browser of this file: started by the first test that needs it. */
async function openBrowser(): Promise<Page> {
  if (page) return page;
  if (!existsSync(CHROMIUM)) {
    throw new Error(
      `Chromium is not installed at ${CHROMIUM}; the Swagger UI test needs it. Install Debian's package: ` +
        '`apt-get update && apt-get install -y chromium` (.ci/run does this).',
    );
  }
  userDataDir = mkdtempSync(join(tmpdir(), 'keygate-chromium-'));
  context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: CHROMIUM,
    headless: true,
    args: CHROMIUM_ARGS,
    timeout: 30_000,
  });
  const opened = context.pages()[0] ?? (await context.newPage());
  opened.setDefaultTimeout(UI_TIMEOUT_MS);
  opened.on('console', (message) => {
    if (message.type() === 'error') browserProblems.push(`console: ${message.text()}`);
  });
  opened.on('pageerror', (error) => browserProblems.push(`page error: ${error.message}`));
  page = opened;
  return opened;
}

/** Runs a UI step; on failure, says which step and what the browser complained about. */
async function step<T>(name: string, action: () => Promise<T>): Promise<T> {
  try {
    return await action();
  } catch (error) {
    const detail = browserProblems.length ? `\nbrowser problems:\n  ${browserProblems.join('\n  ')}` : '';
    throw new Error(`Swagger UI step "${name}" failed: ${error instanceof Error ? error.message : String(error)}${detail}`);
  }
}

describe('Swagger UI', () => {
  it('authorizes with a bearer token and tries POST /v1/chat/completions, its example body as it is, against the mock upstream', async () => {
    const page = await openBrowser();
    const user = uniqueId('swagger-user');
    const token = mintToken({ sub: user });
    // The body Swagger UI starts from (the operation's example), sent as it is: what a person
    // trying the gateway for the first time does.
    const example = { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'Hello!' }] };

    await step('open /docs', async () => {
      await page.goto(`${gw.url}/docs`, { waitUntil: 'load' });
      await page.locator('.swagger-ui .auth-wrapper button.authorize').waitFor({ state: 'visible' });
    });

    await step('authorize with the token', async () => {
      await page.locator('.swagger-ui .auth-wrapper button.authorize').click();
      const modal = page.locator('.swagger-ui .dialog-ux .modal-ux');
      await modal.waitFor({ state: 'visible' });
      // The dialog holds a form per scheme (the bearer JWT, and x-api-key for the Anthropic routes).
      const bearer = modal.locator('form', { hasText: 'bearer (http, Bearer)' });
      await bearer.locator('input[type="text"], input[type="password"]').first().fill(token);
      await bearer.locator('.auth-btn-wrapper button.authorize').click();
      // Once authorized, the form offers Logout instead of Authorize.
      await bearer
        .locator('.auth-btn-wrapper button.logout, .auth-btn-wrapper button:has-text("Logout")')
        .first()
        .waitFor({ state: 'visible' });
      await modal.locator('.auth-btn-wrapper button.btn-done, .auth-btn-wrapper button:has-text("Close")').first().click();
      await modal.waitFor({ state: 'detached' });
    });

    const operation = page.locator('.opblock.opblock-post', { has: page.locator('[data-path="/v1/chat/completions"]') }).first();

    await step('expand POST /v1/chat/completions and press Try it out', async () => {
      await operation.locator('.opblock-summary').first().click();
      await operation.locator('button.try-out__btn').click();
    });

    await step('find the example in the request body (not every optional field of the schema)', async () => {
      const body = operation.locator('textarea.body-param__text');
      await body.waitFor({ state: 'visible' });
      expect(JSON.parse(await body.inputValue())).toEqual(example);
    });

    const before = await mock.stats();

    const { status, text } = await step('execute and read the response panel', async () => {
      await operation.locator('button.execute').click();
      const response = operation.locator('.live-responses-table .response').first();
      await response.locator('.response-col_status').waitFor({ state: 'visible' });
      await response.locator('.response-col_description').getByText('Hello from mock openai').first().waitFor({ state: 'visible' });
      return {
        status: (await response.locator('.response-col_status').first().innerText()).trim(),
        text: await response.locator('.response-col_description').first().innerText(),
      };
    });

    expect(status).toBe('200');
    expect(text).toContain('chat.completion');
    expect(text).toContain('Hello from mock openai! You said: Hello!');

    const after = await mock.stats();
    expect(after.byRoute['openai.chat'] - before.byRoute['openai.chat']).toBe(1);
    expect(after.total - before.total).toBe(1);
    const upstreamBody = after.last['openai.chat']?.body as { model?: string; messages?: Array<{ content: string }> };
    expect(upstreamBody.model).toBe('gpt-4o-mini');
    expect(upstreamBody.messages?.[0].content).toBe('Hello!');

    // The browser's request carried the token: the gateway audited it as the token's user. The
    // line is written when the response closes, and read from the gateway's stdout after the
    // browser showed the answer: waited for, not assumed there.
    await waitFor('the audit line of the browser request', () => gw.audits().some((a) => a.user === user), 5_000);
    const audit = gw.audits().filter((a) => a.user === user);
    expect(audit).toHaveLength(1);
    expect(audit[0]).toMatchObject({ status: 200, failure: null, product: 'demo', model: 'gpt-4o-mini', path: '/v1/chat/completions' });

    // The page ran under the gateway's CSP without violations.
    expect(browserProblems.filter((p) => /Content Security Policy|Refused to/i.test(p))).toEqual([]);
  }, 60_000);
});

interface OpenApiOperation {
  responses?: Record<string, { content?: Record<string, unknown> }>;
  security?: Array<Record<string, unknown>>;
}
interface OpenApiDocument {
  servers?: Array<{ url: string }>;
  paths: Record<string, Record<string, OpenApiOperation>>;
  components: { securitySchemes: Record<string, { type: string; name?: string; description?: string }> };
}

/** What Swagger UI showed for one "Try it out". */
interface Outcome {
  status: string;
  text: string;
  url: string;
}

async function documentOf(base: string): Promise<OpenApiDocument> {
  return (await (await fetch(`${base}/docs-json`, { signal: AbortSignal.timeout(10_000) })).json()) as OpenApiDocument;
}

async function openDocs(target: Page, url: string): Promise<void> {
  await target.goto(url, { waitUntil: 'load' });
  await target.locator('.swagger-ui .auth-wrapper button.authorize').waitFor({ state: 'visible' });
}

/** The Authorize dialog's form of a scheme: its heading is the scheme's name and type. */
function schemeForm(modal: Locator, scheme: string, type: string): Locator {
  return modal.locator('form', { hasText: `${scheme} (${type}` });
}

/** Authorizes each scheme with its token, logging out first where the page kept an earlier one (persistAuthorization). */
async function authorize(target: Page, tokens: Array<[scheme: string, type: string, token: string]>): Promise<void> {
  await target.locator('.swagger-ui .auth-wrapper button.authorize').click();
  const modal = target.locator('.swagger-ui .dialog-ux .modal-ux');
  await modal.waitFor({ state: 'visible' });
  for (const [scheme, type, token] of tokens) {
    const form = schemeForm(modal, scheme, type);
    const logout = form.locator('.auth-btn-wrapper button:has-text("Logout")');
    if (await logout.count()) await logout.click();
    await form.locator('input[type="text"], input[type="password"]').first().fill(token);
    await form.locator('.auth-btn-wrapper button.authorize').click();
    await logout.waitFor({ state: 'visible' });
  }
  await modal.locator('.auth-btn-wrapper button.btn-done, .auth-btn-wrapper button:has-text("Close")').first().click();
  await modal.waitFor({ state: 'detached' });
}

function operationBlock(target: Page, method: string, path: string): Locator {
  return target.locator(`.opblock.opblock-${method}`, { has: target.locator(`.opblock-summary-path[data-path="${path}"]`) }).first();
}

/**
 * Expands an operation, presses Try it out, keeps what Swagger UI filled in (or edits the JSON body),
 * presses Execute, and reads the live response; then collapses the operation again.
 */
async function tryItOut(block: Locator, edit?: (body: Record<string, unknown>) => Record<string, unknown>): Promise<Outcome> {
  await block.locator('.opblock-summary').first().click();
  await block.locator('button.try-out__btn').click();
  if (edit) {
    const body = block.locator('textarea.body-param__text');
    await body.fill(JSON.stringify(edit(JSON.parse(await body.inputValue()) as Record<string, unknown>)));
  }
  await block.locator('button.execute').click();
  const response = block.locator('.live-responses-table .response').first();
  await response.locator('.response-col_status').waitFor({ state: 'visible' });
  const outcome = {
    status: (await response.locator('.response-col_status').innerText()).trim(),
    text: await response.locator('.response-col_description').first().innerText(),
    url: (await block.locator('.request-url pre').innerText()).trim(),
  };
  await block.locator('.opblock-summary').first().click();
  return outcome;
}

/**
 * The operations whose example is not theirs to succeed with: the stored-response routes' id is the
 * shape of one, no response this user made (its description says so), so they answer their documented 404.
 */
const EXAMPLE_REFUSED: Record<string, string> = {
  'GET /v1/responses/{id}': 'response_not_found',
  'DELETE /v1/responses/{id}': 'response_not_found',
  'GET /v1/responses/{id}/input_items': 'response_not_found',
  'POST /v1/responses/{id}/cancel': 'response_not_found',
};

describe('Swagger UI, every operation with its own example', () => {
  let doc: OpenApiDocument;

  beforeAll(async () => {
    doc = await documentOf(gw.url);
  });

  it('names each credential in the Authorize dialog with its header and how to get it, its Markdown intact', async () => {
    const target = await openBrowser();
    await step('open /docs and the Authorize dialog', async () => {
      await openDocs(target, `${gw.url}/docs`);
      await target.locator('.swagger-ui .auth-wrapper button.authorize').click();
    });
    const modal = target.locator('.swagger-ui .dialog-ux .modal-ux');
    await modal.waitFor({ state: 'visible' });
    const schemes = doc.components.securitySchemes;
    expect(Object.keys(schemes)).toEqual(['bearer', 'x-api-key', 'x-goog-api-key', 'hmac-client-id', 'hmac-timestamp', 'hmac-signature']);
    const text: Record<string, string> = {};
    for (const [name, scheme] of Object.entries(schemes)) {
      const form = schemeForm(modal, name, scheme.type);
      expect({ name, forms: await form.count() }).toEqual({ name, forms: 1 });
      text[name] = await form.innerText();
      if (scheme.name) expect(text[name]).toContain(`Name: ${scheme.name}`);
    }
    expect(text.bearer).toMatch(/paste the token alone/);
    expect(text.bearer).toContain('npm run token -- --scope keygate.admin');
    // The signed string's placeholders are shown, not swallowed as HTML tags.
    expect(text['hmac-signature']).toContain('<timestamp>\\n<METHOD>\\n<request target with query>\\n<sha256 hex of the raw body>');
    for (const name of ['hmac-client-id', 'hmac-timestamp', 'hmac-signature']) expect(text[name]).toMatch(/Swagger UI cannot reuse it/);
    await modal.locator('.auth-btn-wrapper button:has-text("Close")').first().click();
    await modal.waitFor({ state: 'detached' });
  }, 30_000);

  it('shows each error status with its own example, and placeholders in descriptions as written', async () => {
    const target = await openBrowser();
    await openDocs(target, `${gw.url}/docs`);
    const exampleOf = async (method: string, path: string, status: string): Promise<string> => {
      const block = operationBlock(target, method, path);
      await block.locator('.opblock-summary').first().click();
      const row = block.locator(`.responses-table tr.response[data-code="${status}"]`);
      const text = await row.innerText();
      await block.locator('.opblock-summary').first().click();
      return text;
    };
    const badRequest = await exampleOf('post', '/v1/chat/completions', '400');
    expect(badRequest).toContain('"invalid_json"');
    expect(badRequest).not.toContain('invalid_token');
    expect(await exampleOf('post', '/v1/chat/completions', '429')).toContain('"rate_limit_exceeded"');
    expect(await exampleOf('post', '/v1/messages', '404')).toContain('"not_found_error"');
    expect(await exampleOf('post', '/v1beta/models/{model}:generateContent', '403')).toContain('"PERMISSION_DENIED"');
    const adminForbidden = await exampleOf('post', '/admin/blocks', '403');
    expect(adminForbidden).toContain('keygate.admin:<product> for the product named');
    expect(adminForbidden).toContain('"forbidden"');
  }, 30_000);

  it('answers each client operation’s example, as prefilled, with its documented success (the stored-response ones: their documented 404)', async () => {
    const target = await openBrowser();
    const token = mintToken({ sub: uniqueId('swagger-every') });
    await step('open /docs and authorize every scheme a person would fill in', async () => {
      await openDocs(target, `${gw.url}/docs`);
      await authorize(target, [
        ['bearer', 'http', token],
        ['x-api-key', 'apiKey', token],
        ['x-goog-api-key', 'apiKey', token],
      ]);
    });
    const problems: string[] = [];
    let tried = 0;
    for (const [path, item] of Object.entries(doc.paths)) {
      if (path.startsWith('/admin')) continue;
      for (const [method, op] of Object.entries(item)) {
        const key = `${method.toUpperCase()} ${path}`;
        browserProblems.length = 0;
        const outcome = await step(`try ${key}`, () => tryItOut(operationBlock(target, method, path)));
        tried++;
        const success = Object.keys(op.responses ?? {}).find((status) => status.startsWith('2'));
        const refused = EXAMPLE_REFUSED[key];
        const expected = refused ? '404' : success;
        if (outcome.status !== expected) problems.push(`${key}: ${outcome.status} (expected ${expected}): ${outcome.text.slice(0, 300)}`);
        if (refused && !outcome.text.includes(`"${refused}"`)) problems.push(`${key}: not ${refused}: ${outcome.text.slice(0, 300)}`);
        if (!op.responses?.[outcome.status]) problems.push(`${key}: answered ${outcome.status}, which it does not document`);
        if (!outcome.url.startsWith(`${gw.url}/`)) problems.push(`${key}: sent to ${outcome.url}`);
        // Nothing is filled in that the operation does not need: the models routes' Anthropic-only
        // query (beta, limit) means nothing to the OpenAI format the page asks for.
        if (key.startsWith('GET /v1/models') && outcome.url.includes('?')) problems.push(`${key}: sent a query: ${outcome.url}`);
        // Chromium logs each non-2xx answer as a failed resource; anything else is the page's problem.
        problems.push(...browserProblems.filter((p) => !/Failed to load resource: the server responded with a status of 404/.test(p)));
      }
    }
    expect(problems).toEqual([]);
    expect(tried).toBeGreaterThanOrEqual(28);
  }, 120_000);

  it('shows a stream as its events: POST /v1/chat/completions with stream: true', async () => {
    const target = await openBrowser();
    await openDocs(target, `${gw.url}/docs`);
    await authorize(target, [['bearer', 'http', mintToken({ sub: uniqueId('swagger-stream') })]]);
    const outcome = await step('try the chat example with stream: true', () =>
      tryItOut(operationBlock(target, 'post', '/v1/chat/completions'), (body) => ({ ...body, stream: true })),
    );
    expect(outcome.status).toBe('200');
    expect(outcome.text).toContain('chat.completion.chunk');
    expect(outcome.text).toContain('data: [DONE]');
  }, 30_000);

  it('answers each operator route’s example with its documented success, authorized with an admin token', async () => {
    const target = await openBrowser();
    await openDocs(target, `${gw.url}/docs`);
    await authorize(target, [['bearer', 'http', mintToken({ sub: uniqueId('swagger-admin'), extraClaims: { scope: 'keygate.admin' } })]]);
    const outcomes: Record<string, string> = {};
    for (const [path, item] of Object.entries(doc.paths)) {
      if (!path.startsWith('/admin')) continue;
      for (const [method, op] of Object.entries(item)) {
        const key = `${method.toUpperCase()} ${path}`;
        const outcome = await step(`try ${key}`, () => tryItOut(operationBlock(target, method, path)));
        const success = Object.keys(op.responses ?? {}).find((status) => status.startsWith('2'));
        outcomes[key] = outcome.status === success ? 'ok' : `${outcome.status}: ${outcome.text.slice(0, 300)}`;
      }
    }
    // In the document's order: the block made, listed, lifted, and the usage read.
    expect(outcomes).toEqual({
      'POST /admin/blocks': 'ok',
      'GET /admin/blocks': 'ok',
      'DELETE /admin/blocks': 'ok',
      'GET /admin/usage': 'ok',
    });
  }, 60_000);

  it('calls the gateway that served the page when it is served under a path prefix, and /docs/ leads to /docs', async () => {
    expect(doc.servers).toEqual([expect.objectContaining({ url: '.' })]);
    const target = await openBrowser();
    await step(`open ${PREFIX}/docs through the proxy and authorize`, async () => {
      await openDocs(target, `${proxyUrl}${PREFIX}/docs`);
      await authorize(target, [['bearer', 'http', mintToken({ sub: uniqueId('swagger-prefix') })]]);
    });
    const chat = await step('try POST /v1/chat/completions', () => tryItOut(operationBlock(target, 'post', '/v1/chat/completions')));
    expect(chat.url).toBe(`${proxyUrl}${PREFIX}/v1/chat/completions`);
    expect(chat.status).toBe('200');
    expect(chat.text).toContain('Hello from mock openai! You said: Hello!');
    // From /docs/, a relative server URL would be resolved under /docs/: it is redirected to /docs, prefix kept.
    for (const variant of ['/docs/', '/docs/index.html']) {
      await openDocs(target, `${proxyUrl}${PREFIX}${variant}`);
      expect(target.url()).toBe(`${proxyUrl}${PREFIX}/docs`);
    }
    const models = await step('try GET /v1/models from the page /docs/ led to', () =>
      tryItOut(operationBlock(target, 'get', '/v1/models')),
    );
    expect(models.url).toMatch(new RegExp(`^${proxyUrl}${PREFIX}/v1/models(\\?|$)`));
    expect(models.status).toBe('200');
  }, 60_000);
});
