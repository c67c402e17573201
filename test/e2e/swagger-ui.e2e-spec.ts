/**
 * Swagger UI in a real browser (issue 3, item 8): Debian's `chromium` driven by playwright-core
 * opens /docs of the built gateway, authorizes with a bearer JWT, and tries
 * `POST /v1/chat/completions` against the mock upstream.
 *
 * Chromium is required, never skipped: install it with
 *   apt-get update && apt-get install -y chromium
 */
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { mintToken, startGateway, startMock, uniqueId, waitFor, type Gateway, type MockUpstream } from './harness';

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

let mock: MockUpstream;
let gw: Gateway;
let context: BrowserContext | undefined;
let userDataDir: string | undefined;
/** Browser-side problems (console errors, CSP violations, page errors), shown when a step fails. */
const browserProblems: string[] = [];

beforeAll(async () => {
  mock = await startMock();
  gw = await startGateway({ mockUrl: mock.url });
}, 30_000);

afterAll(async () => {
  await context?.close().catch(() => undefined);
  if (userDataDir) rmSync(userDataDir, { recursive: true, force: true });
  await Promise.all([gw?.stop(), mock?.stop()]);
}, 30_000);

async function openBrowser(): Promise<Page> {
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
  const page = context.pages()[0] ?? (await context.newPage());
  page.setDefaultTimeout(UI_TIMEOUT_MS);
  page.on('console', (message) => {
    if (message.type() === 'error') browserProblems.push(`console: ${message.text()}`);
  });
  page.on('pageerror', (error) => browserProblems.push(`page error: ${error.message}`));
  return page;
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
