/**
 * Daily cost budgets (`limits.daily_cost_usd`, `limits.user_daily_cost_usd`), black box: THREE built
 * gateways share the real Redis like three replicas, with a policy file that prices the mock's
 * model at $1,000 per million tokens (a request of a few dozen tokens costs a few cents) and sets
 * budgets of $0.01, which one request spends. Clients use the official `openai` SDK. Every refusal
 * is checked for its status, code and Retry-After, for reaching no upstream, and for its single
 * audit line.
 */
import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import {
  apiError,
  cleanupTempFiles,
  mintToken,
  sleep,
  startGateway,
  startMock,
  uniqueId,
  waitFor,
  writeTempFile,
  type AuditRecord,
  type Gateway,
  type MockUpstream,
} from './harness';
import { secondsToMidnight, send, SHARED_REDIS_URL } from './limits-fixtures';

const RUN = randomBytes(3).toString('hex');
/** The run's products (daily totals live two days in the shared Redis: names never repeat). */
const P = {
  /** `daily_cost_usd: 0.01`. */
  product: `bud-prod-${RUN}`,
  /** `user_daily_cost_usd: 0.01`. */
  user: `bud-user-${RUN}`,
  /** `daily_cost_usd: 100`, serving a model without a price. */
  unpriced: `bud-unpriced-${RUN}`,
  /** `daily_cost_usd: 100`, the priced model falling back to one without a price. */
  fallback: `bud-fallback-${RUN}`,
  /** No budget: admin calls. */
  ops: `bud-ops-${RUN}`,
} as const;
const MODEL = 'gpt-4o-mini';
/** Served by the mock, not priced by the policy file. */
const UNPRICED_MODEL = 'gpt-4o';
const BUDGET_USD = 0.01;

function policy(): string {
  return [
    'prices:',
    `  ${MODEL}: {input: 1000, output: 1000}`,
    'defaults:',
    '  limits: {requests_per_second: 0, user_requests_per_second: 0, daily_requests: 0, user_daily_requests: 0, daily_tokens: 0, user_daily_tokens: 0}',
    // The user's own budget refusals auto-block at the third; a product's never do.
    '  auto_block: {rejections: 3, window_seconds: 60, block_seconds: 60}',
    'products:',
    `  ${P.product}:`,
    `    limits: {daily_cost_usd: ${BUDGET_USD}}`,
    `  ${P.user}:`,
    `    limits: {user_daily_cost_usd: ${BUDGET_USD}}`,
    `  ${P.unpriced}:`,
    '    limits: {daily_cost_usd: 100}',
    `  ${P.fallback}:`,
    '    limits: {daily_cost_usd: 100}',
    `    fallbacks: {${MODEL}: [${UNPRICED_MODEL}]}`,
    '',
  ].join('\n');
}

let mock: MockUpstream;
let replicas: Gateway[];
let shared: Redis;
let adminToken: string;

beforeAll(async () => {
  mock = await startMock();
  const products: Record<string, unknown> = {};
  for (const name of Object.values(P))
    products[name] = { providers: { openai: { api_key: `sk-mock-${name}`, models: [MODEL, UNPRICED_MODEL], base_url: `${mock.url}/v1` } } };
  const policyFile = writeTempFile('budget-policy.yaml', policy());
  replicas = await Promise.all(
    [1, 2, 3].map(() =>
      startGateway({ products, env: { API_KEY_SERVER_POLICY_FILE: policyFile, API_KEY_SERVER_REDIS_URL: SHARED_REDIS_URL } }),
    ),
  );
  shared = new Redis(SHARED_REDIS_URL, { maxRetriesPerRequest: 1 });
  adminToken = mintToken({ product: P.ops, sub: 'ops-admin', extraClaims: { scope: 'keygate.admin' } });
}, 60_000);

afterAll(async () => {
  await Promise.all((replicas ?? []).map((g) => g.stop()));
  await mock?.stop();
  if (shared) {
    const keys = await shared.keys(`kg:{bud-*-${RUN}}*`);
    if (keys.length) await shared.del(...keys);
    const fields = (await shared.hkeys('kg:blocks')).filter((f) => f.includes(RUN));
    if (fields.length) await shared.hdel('kg:blocks', ...fields);
    await shared.quit();
  }
  cleanupTempFiles();
}, 30_000);

/** A chat completion through the openai SDK, with its own request id. */
function chat(gateway: Gateway, token: string, model = MODEL): { id: string; call: Promise<unknown> } {
  const id = uniqueId('budget');
  const call = gateway
    .openai(token)
    .chat.completions.create({ model, messages: [{ role: 'user', content: `spend ${id}` }] }, { headers: { 'x-request-id': id } });
  return { id, call };
}

async function upstreamTotal(): Promise<number> {
  return (await mock.stats()).total;
}

/** Exactly one audit line for the request, on the gateway that served it, matching `expected`. */
async function expectOneAudit(gateway: Gateway, id: string, expected: Partial<AuditRecord>): Promise<AuditRecord> {
  const record = await gateway.waitForAudit(id);
  expect(gateway.auditsFor(id)).toHaveLength(1);
  for (const other of replicas) if (other !== gateway) expect(other.auditsFor(id)).toHaveLength(0);
  expect(record).toMatchObject(expected);
  return record;
}

/** The day's cost of a product (and of its users), as GET /admin/usage reports it. */
async function costOf(product: string, gateway: Gateway): Promise<{ total: number; users: Record<string, number> }> {
  const answer = await send(gateway, `/admin/usage?product=${encodeURIComponent(product)}`, { id: uniqueId('admin'), token: adminToken });
  expect(answer.status).toBe(200);
  return (answer.json as { cost_usd: { total: number; users: Record<string, number> } }).cost_usd;
}

/** Until the shared day's cost shows `usd` (costs reach Redis in 25 ms batches after the answer). */
async function costReaches(product: string, usd: number, gateway: Gateway): Promise<void> {
  await waitFor(`the day's cost of ${product} to reach $${usd}`, async () => (await costOf(product, gateway)).total >= usd, 5_000, 20);
}

describe("a product's daily budget, across three replicas sharing Redis", () => {
  it('serves requests until the day has cost the budget, then refuses every user on every replica (429, Retry-After to midnight, no upstream call)', async () => {
    const first = chat(replicas[0], mintToken({ product: P.product, sub: 'ann' }));
    await first.call;
    const served = await expectOneAudit(replicas[0], first.id, { status: 200, failure: null, product: P.product });
    expect(served.cost_usd).toBeGreaterThanOrEqual(BUDGET_USD);
    // Reached through replica 0; read through replica 2.
    await costReaches(P.product, BUDGET_USD, replicas[2]);

    const before = await upstreamTotal();
    for (const [i, gateway] of replicas.entries())
      for (const user of ['ann', `other-${i}`]) {
        const refused = chat(gateway, mintToken({ product: P.product, sub: user }));
        const error = await apiError(refused.call);
        expect(error.status).toBe(429);
        expect(error.code).toBe('daily_quota_exceeded');
        expect(error.message).toContain(`this product's daily budget of $${BUDGET_USD}`);
        expect(error.message).toContain('it resets at 00:00 UTC');
        const retryAfter = Number(error.headers?.get('retry-after'));
        expect(retryAfter).toBeGreaterThan(0);
        expect(Math.abs(retryAfter - secondsToMidnight())).toBeLessThanOrEqual(2);
        await expectOneAudit(gateway, refused.id, { status: 429, failure: 'quota', product: P.product, user, tokens_in: null });
      }
    expect(await upstreamTotal()).toBe(before);
    // Not a user's doing: ann, refused three times (auto_block's rejections), is not blocked.
    await sleep(200);
    const again = chat(replicas[2], mintToken({ product: P.product, sub: 'ann' }));
    expect(await apiError(again.call)).toMatchObject({ status: 429, code: 'daily_quota_exceeded' });
    // The refusals cost nothing.
    expect((await costOf(P.product, replicas[1])).total).toBe(served.cost_usd);
  });

  it('still answers the free routes over budget: the model list and a token count', async () => {
    const token = mintToken({ product: P.product, sub: 'ann' });
    await costReaches(P.product, BUDGET_USD, replicas[1]);
    const models = await replicas[1].openai(token).models.list();
    expect(models.data.map((m) => m.id)).toContain(MODEL);
    const id = uniqueId('budget-input-tokens');
    const count = await send(replicas[1], '/v1/responses/input_tokens', { id, token, body: { model: MODEL, input: 'how many tokens?' } });
    expect(count.status).toBe(200);
    expect(count.json).toMatchObject({ object: 'response.input_tokens' });
    await expectOneAudit(replicas[1], id, { status: 200, failure: null });
  });
});

describe("a user's daily budget", () => {
  it('refuses the user who spent it (on any replica), not another user', async () => {
    const first = chat(replicas[1], mintToken({ product: P.user, sub: 'bob' }));
    await first.call;
    await expectOneAudit(replicas[1], first.id, { status: 200, failure: null });
    await costReaches(P.user, BUDGET_USD, replicas[0]);

    const before = await upstreamTotal();
    const refused = chat(replicas[0], mintToken({ product: P.user, sub: 'bob' }));
    const error = await apiError(refused.call);
    expect(error.status).toBe(429);
    expect(error.code).toBe('daily_quota_exceeded');
    expect(error.message).toContain(`your daily budget of $${BUDGET_USD}`);
    expect(Number(error.headers?.get('retry-after'))).toBeGreaterThan(0);
    await expectOneAudit(replicas[0], refused.id, { status: 429, failure: 'quota', user: 'bob' });
    // The user's own budget counts toward their auto-block (3 refusals), as their token quota does.
    for (let i = 0; i < 2; i++)
      expect(await apiError(chat(replicas[0], mintToken({ product: P.user, sub: 'bob' })).call)).toMatchObject({
        status: 429,
        code: 'daily_quota_exceeded',
      });
    await sleep(200);
    expect(await apiError(chat(replicas[0], mintToken({ product: P.user, sub: 'bob' })).call)).toMatchObject({
      status: 403,
      code: 'blocked',
    });
    expect(await upstreamTotal()).toBe(before);

    const other = chat(replicas[2], mintToken({ product: P.user, sub: 'cy' }));
    await other.call;
    await expectOneAudit(replicas[2], other.id, { status: 200, failure: null, user: 'cy' });
  });
});

describe('models without a price under a budget', () => {
  it('refuses a model without a price with 400 policy_violation, before any upstream call', async () => {
    const before = await upstreamTotal();
    const refused = chat(replicas[0], mintToken({ product: P.unpriced, sub: 'dee' }), UNPRICED_MODEL);
    const error = await apiError(refused.call);
    expect(error.status).toBe(400);
    expect(error.code).toBe('policy_violation');
    expect(error.message).toContain(`The model '${UNPRICED_MODEL}' has no price`);
    expect(error.message).toContain('this product has a daily cost budget');
    await expectOneAudit(replicas[0], refused.id, { status: 400, failure: 'policy', model: UNPRICED_MODEL });
    expect(await upstreamTotal()).toBe(before);
    // The priced model of the same product is served.
    const priced = chat(replicas[0], mintToken({ product: P.unpriced, sub: 'dee' }));
    await priced.call;
    await expectOneAudit(replicas[0], priced.id, { status: 200, failure: null });
  });

  it('refuses a priced model whose fallback has no price', async () => {
    const before = await upstreamTotal();
    const refused = chat(replicas[2], mintToken({ product: P.fallback, sub: 'eli' }));
    const error = await apiError(refused.call);
    expect(error.status).toBe(400);
    expect(error.code).toBe('policy_violation');
    expect(error.message).toContain(`The model '${UNPRICED_MODEL}' (a fallback of '${MODEL}') has no price`);
    await expectOneAudit(replicas[2], refused.id, { status: 400, failure: 'policy' });
    expect(await upstreamTotal()).toBe(before);
  });
});
