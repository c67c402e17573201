/**
 * Daily cost budgets (`limits.daily_cost_usd`, `limits.user_daily_cost_usd`), black box: THREE built
 * gateways share the real Redis like three replicas, with a policy file that prices the mock's
 * model at $1,000 per million tokens (a tenth of a cent a token) and caps completions at 50 tokens,
 * so a request reserves its prompt's estimate plus 50 tokens, a few cents. The budgets of $0.2 are
 * spent by one request whose answer the mock makes far longer than the cap (the mock ignores
 * max_tokens: a cost beyond the estimate, which a budget may be passed by). Clients use the
 * official `openai` SDK, or plain fetch where an SDK retry would hide a refusal. Every refusal is
 * checked for its status, code and Retry-After, for reaching no upstream, and for its single audit line.
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
import { secondsToMidnight, send, SHARED_REDIS_URL, type Answer } from './limits-fixtures';

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
  /** `daily_cost_usd: 100`: a request's reservation measured while it is in flight. */
  probe: `bud-probe-${RUN}`,
  /** `daily_cost_usd: RACE_BUDGET_USD`: concurrent requests, of which only as many as the budget holds estimates for are admitted. */
  race: `bud-race-${RUN}`,
  /** `daily_cost_usd: ONE_ESTIMATE_BUDGET_USD`: room for one request's estimate at a time. */
  failing: `bud-failing-${RUN}`,
  /** `daily_cost_usd: CACHE_BUDGET_USD`, Claude on the mock at a cache-write price above its input price. */
  cache: `bud-cache-${RUN}`,
  /** No budget: admin calls. */
  ops: `bud-ops-${RUN}`,
} as const;
const MODEL = 'gpt-4o-mini';
/** Served by the mock, not priced by the policy file. */
const UNPRICED_MODEL = 'gpt-4o';
const BUDGET_USD = 0.2;
/** The completion cap, reserved in full by every request (whatever the mock then answers). */
const MAX_TOKENS = 50;
const RACE_BUDGET_USD = 0.3;
const ONE_ESTIMATE_BUDGET_USD = 0.1;
const CLAUDE = 'claude-sonnet-4-5';
/** Served beside CLAUDE by the cache product, not priced by the policy file. */
const UNPRICED_CLAUDE = 'claude-haiku-4-5';
/**
 * A ~400-token prompt and the 50-token cap at CLAUDE's prices: ~$0.45 at `input`, ~$0.55 as a
 * 5-minute cache write, ~$0.85 as an hour-long one. The budget holds the first two, never the third.
 */
const CACHE_BUDGET_USD = 0.7;

function policy(): string {
  return [
    'prices:',
    `  ${MODEL}: {input: 1000, output: 1000}`,
    `  ${CLAUDE}: {input: 1000, cache_write: 1250, cache_write_1h: 2000, output: 1000}`,
    'defaults:',
    '  limits: {requests_per_second: 0, user_requests_per_second: 0, daily_requests: 0, user_daily_requests: 0, daily_tokens: 0, user_daily_tokens: 0}',
    `  policy: {max_tokens: ${MAX_TOKENS}}`,
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
    `  ${P.probe}:`,
    '    limits: {daily_cost_usd: 100}',
    `  ${P.race}:`,
    `    limits: {daily_cost_usd: ${RACE_BUDGET_USD}}`,
    `  ${P.failing}:`,
    `    limits: {daily_cost_usd: ${ONE_ESTIMATE_BUDGET_USD}}`,
    `  ${P.cache}:`,
    `    limits: {daily_cost_usd: ${CACHE_BUDGET_USD}}`,
    '',
  ].join('\n');
}

let mock: MockUpstream;
let replicas: Gateway[];
let shared: Redis;

beforeAll(async () => {
  mock = await startMock();
  const products: Record<string, unknown> = {};
  for (const name of Object.values(P))
    products[name] = { providers: { openai: { api_key: `sk-mock-${name}`, models: [MODEL, UNPRICED_MODEL], base_url: `${mock.url}/v1` } } };
  products[P.cache] = {
    providers: { anthropic: { api_key: `sk-ant-mock-${P.cache}`, models: [CLAUDE, UNPRICED_CLAUDE], base_url: mock.url } },
  };
  const policyFile = writeTempFile('budget-policy.yaml', policy());
  replicas = await Promise.all(
    [1, 2, 3].map(() =>
      startGateway({ products, env: { API_KEY_SERVER_POLICY_FILE: policyFile, API_KEY_SERVER_REDIS_URL: SHARED_REDIS_URL } }),
    ),
  );
  shared = new Redis(SHARED_REDIS_URL, { maxRetriesPerRequest: 1 });
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

/**
 * A chat completion through the openai SDK, with its own request id, whose answer the mock makes
 * 1,000 characters long (250 completion tokens, $0.25: past the cap it was reserved for).
 */
function chat(gateway: Gateway, token: string, model = MODEL): { id: string; call: Promise<unknown> } {
  const id = uniqueId('budget');
  const call = gateway
    .openai(token)
    .chat.completions.create(
      { model, messages: [{ role: 'user', content: `spend ${id} [mock answer_chars=1000]` }] },
      { headers: { 'x-request-id': id } },
    );
  return { id, call };
}

/** Billionths of a dollar, as the stores add them up (an audit's cost_usd is rounded to them). */
function nanoUsd(usd: number): number {
  return Math.round(usd * 1e9);
}

/**
 * One chat completion by plain fetch (no SDK retry: a refusal is seen as it is), every one with the
 * same prompt, so the same estimate: the mock answers 8 characters (2 tokens, far below the cap it
 * was reserved for) after `delayMs`, or fails with `status`.
 */
function raw(gateway: Gateway, product: string, user: string, directives: string): Promise<Answer> {
  return send(gateway, '/v1/chat/completions', {
    id: uniqueId('budget-raw'),
    token: mintToken({ product, sub: user }),
    body: { model: MODEL, messages: [{ role: 'user', content: `How much may this cost? [mock answer_chars=8 ${directives}]` }] },
  });
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
  // An operator of its own per call: the tests poll, past the admin routes' 120 a minute per operator.
  const token = mintToken({ product: P.ops, sub: uniqueId('ops-admin'), extraClaims: { scope: 'keygate.admin' } });
  const answer = await send(gateway, `/admin/usage?product=${encodeURIComponent(product)}`, { id: uniqueId('admin'), token });
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

  it('refuses a priced Claude model whose Anthropic server-side fallback (`fallbacks`) has no price: that model may answer', async () => {
    const before = await upstreamTotal();
    const refused = await send(replicas[1], '/v1/messages', {
      id: uniqueId('budget-server-fallback'),
      token: mintToken({ product: P.cache, sub: 'gus' }),
      body: { model: CLAUDE, max_tokens: MAX_TOKENS, messages: [{ role: 'user', content: 'Hi' }], fallbacks: [{ model: UNPRICED_CLAUDE }] },
    });
    expect(refused.status).toBe(400);
    expect(refused.json).toMatchObject({ type: 'error', error: { type: 'invalid_request_error', code: 'policy_violation' } });
    expect(refused.text).toContain(`The model '${UNPRICED_CLAUDE}' (a fallback of '${CLAUDE}') has no price`);
    await expectOneAudit(replicas[1], refused.id, { status: 400, failure: 'policy', model: CLAUDE });
    expect(await upstreamTotal()).toBe(before);
  });
});

describe('cost reserved ahead: the most each request may cost is held against the budget while it runs', () => {
  /**
   * The reservation of one request of {@link raw}'s prompt (its estimate at the model's prices),
   * measured in /admin/usage while a slow one is in flight on a product whose budget never refuses;
   * once it has ended, the day's cost is what its audit line says it cost.
   */
  async function measuredEstimate(): Promise<number> {
    const before = nanoUsd((await costOf(P.probe, replicas[1])).total);
    const call = raw(replicas[0], P.probe, 'probe', 'delay_ms=1500');
    let held = 0;
    await waitFor(
      'the reservation to show in /admin/usage',
      async () => (held = nanoUsd((await costOf(P.probe, replicas[1])).total) - before) > 0,
      5_000,
      20,
    );
    const answer = await call;
    expect(answer.status).toBe(200);
    const record = await expectOneAudit(replicas[0], answer.id, { status: 200, failure: null });
    const cost = nanoUsd(record.cost_usd ?? 0);
    // Settled: the day's cost grew by the audit's, the reservation's surplus given back.
    await waitFor('the settlement', async () => nanoUsd((await costOf(P.probe, replicas[2])).total) === before + cost, 5_000, 20);
    expect(cost).toBeLessThan(held);
    return held / 1e9;
  }

  it('admits, of N concurrent requests on three replicas, at most the k whose estimates the budget holds; the rest get 429 with no upstream call; the day settles within the budget', async () => {
    const estimate = await measuredEstimate();
    const k = Math.floor(nanoUsd(RACE_BUDGET_USD) / nanoUsd(estimate));
    const n = 10;
    // The fixture's premise: the budget holds some of the requests' estimates, not all.
    expect(k).toBeGreaterThanOrEqual(1);
    expect(k).toBeLessThan(n);
    const before = await upstreamTotal();
    // Slow answers: all are in flight together, none settles before the others are admitted or refused.
    const answers = await Promise.all(
      Array.from({ length: n }, (_, i) => raw(replicas[i % replicas.length], P.race, `racer-${i}`, 'delay_ms=1000')),
    );
    const admitted = answers.filter((a) => a.status === 200);
    const refused = answers.filter((a) => a.status !== 200);
    expect(admitted.length).toBeGreaterThanOrEqual(1);
    expect(admitted.length).toBeLessThanOrEqual(k);
    // Only the admitted reached the upstream.
    expect(await upstreamTotal()).toBe(before + admitted.length);
    let settled = 0;
    for (const answer of admitted) {
      const record = await expectOneAudit(answer.gateway, answer.id, { status: 200, failure: null, product: P.race });
      // Each cost at most its estimate (the mock answered 2 tokens of the 50 reserved)…
      expect(record.cost_usd).toBeLessThanOrEqual(estimate);
      settled += nanoUsd(record.cost_usd ?? 0);
    }
    for (const answer of refused) {
      expect(answer.status).toBe(429);
      expect(answer.json).toMatchObject({ error: { code: 'daily_quota_exceeded' } });
      expect(Number(answer.headers.get('retry-after'))).toBeGreaterThan(0);
      await expectOneAudit(answer.gateway, answer.id, { status: 429, failure: 'quota', product: P.race, tokens_in: null, cost_usd: null });
    }
    // …so the day's settled cost, the sum of the audit lines', stays within the budget.
    await waitFor('the settlements', async () => nanoUsd((await costOf(P.race, replicas[0])).total) === settled, 5_000, 20);
    expect(settled).toBeLessThanOrEqual(nanoUsd(RACE_BUDGET_USD));
  });

  it('settles the reservation of a stream the client leaves midway to what its audit line says it cost', async () => {
    const before = nanoUsd((await costOf(P.probe, replicas[1])).total);
    const id = uniqueId('budget-abort');
    const controller = new AbortController();
    const stream = await replicas[1]
      .openai(mintToken({ product: P.probe, sub: 'leaver' }))
      .chat.completions.create(
        { model: MODEL, messages: [{ role: 'user', content: 'Stream, slowly. [mock chunk_delay_ms=200 chunks=20]' }], stream: true },
        { headers: { 'x-request-id': id }, signal: controller.signal },
      );
    // The reservation is held while the stream runs.
    await waitFor('the reservation to show', async () => nanoUsd((await costOf(P.probe, replicas[0])).total) > before, 5_000, 20);
    let chunks = 0;
    try {
      for await (const chunk of stream) if (chunk.choices[0]?.delta?.content && ++chunks === 2) controller.abort();
    } catch {
      // The SDK's abort error: the client left.
    }
    const record = await expectOneAudit(replicas[1], id, { status: 499, failure: 'client_abort', stream: true });
    // Billed for what it used so far (the prompt at least), no more: the rest of the estimate comes back.
    const cost = nanoUsd(record.cost_usd ?? 0);
    expect(cost).toBeGreaterThan(0);
    await waitFor('the settlement', async () => nanoUsd((await costOf(P.probe, replicas[2])).total) === before + cost, 5_000, 20);
  });

  it('gives the whole reservation back when the upstream fails: the budget is not eaten', async () => {
    const estimate = await measuredEstimate();
    // The fixture's premise: one estimate fits the budget, two do not.
    expect(Math.floor(nanoUsd(ONE_ESTIMATE_BUDGET_USD) / nanoUsd(estimate))).toBe(1);
    const before = await upstreamTotal();
    // A request the upstream will refuse, slowly: while it is in flight it holds the budget…
    const failing = raw(replicas[0], P.failing, 'fay', 'delay_ms=1500 status=400');
    await waitFor('the reservation to show', async () => (await costOf(P.failing, replicas[1])).total > 0, 5_000, 20);
    const held = await raw(replicas[1], P.failing, 'gus', 'delay_ms=0');
    expect(held.status).toBe(429);
    expect(held.json).toMatchObject({ error: { code: 'daily_quota_exceeded' } });
    await expectOneAudit(replicas[1], held.id, { status: 429, failure: 'quota' });
    const failed = await failing;
    expect(failed.status).toBe(400);
    await expectOneAudit(replicas[0], failed.id, { status: 400, cost_usd: null });
    // …and gives all of it back when it fails.
    await waitFor('the reservation to be given back', async () => (await costOf(P.failing, replicas[2])).total === 0, 5_000, 20);
    // Failing again and again, on each replica, eats nothing either. (Each give-back reaches Redis in
    // the replica's next 25 ms batch: a request sent to another replica before then may still be refused.)
    for (let i = 0; i < 3; i++) {
      expect((await raw(replicas[i], P.failing, 'fay', 'status=400')).status).toBe(400);
      await waitFor('the reservation to be given back', async () => (await costOf(P.failing, replicas[2])).total === 0, 5_000, 20);
    }
    const served = await raw(replicas[2], P.failing, 'gus', 'delay_ms=0');
    expect(served.status).toBe(200);
    const record = await expectOneAudit(replicas[2], served.id, { status: 200, failure: null });
    // Four failed calls and one answered reached the upstream; the day cost the one answer alone.
    expect(await upstreamTotal()).toBe(before + 5);
    await waitFor('the settlement', async () => (await costOf(P.failing, replicas[0])).total === record.cost_usd, 5_000, 20);
  });
});

describe('a budget and the prompt cache (Anthropic bills cache writes above input)', () => {
  /** A Messages request of ~400 prompt tokens whose last block asks for a cache write of `ttl` (none: no cache_control). */
  function messages(ttl: '5m' | '1h' | null): Promise<Answer> {
    const block: Record<string, unknown> = { type: 'text', text: `${'word '.repeat(400)}[mock answer_chars=8]` };
    if (ttl) block.cache_control = { type: 'ephemeral', ttl };
    return send(replicas[0], '/v1/messages', {
      id: uniqueId('budget-cache'),
      token: mintToken({ product: P.cache, sub: 'flo' }),
      body: { model: CLAUDE, max_tokens: MAX_TOKENS, messages: [{ role: 'user', content: [block] }] },
    });
  }

  it("reserves a prompt that asks for an hour-long cache write at that write price: over the whole budget, refused before any upstream call; a 5-minute write's fits", async () => {
    const before = await upstreamTotal();
    const refused = await messages('1h');
    expect(refused.status).toBe(429);
    expect(refused.json).toMatchObject({ type: 'error', error: { type: 'rate_limit_error' } });
    expect(refused.text).toContain(`whole daily budget of $${CACHE_BUDGET_USD}: it can never be served`);
    await expectOneAudit(replicas[0], refused.id, { status: 429, failure: 'quota', product: P.cache, tokens_in: null });
    expect(await upstreamTotal()).toBe(before);

    const served = await messages('5m');
    expect(served.status).toBe(200);
    await expectOneAudit(replicas[0], served.id, { status: 200, failure: null, product: P.cache, model: CLAUDE });
    expect(await upstreamTotal()).toBe(before + 1);
  });
});
