/**
 * Limits, quotas, parameter policy and blocks, black box (issue 5): THREE built gateways share the
 * real Redis like three replicas, with a policy file of small limits for this run's products; a
 * fourth gateway runs on a private redis-server that the suite kills and restarts. Every refusal is
 * checked for its status and code, for reaching no upstream, and for its single audit line.
 */
import { readFileSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import OpenAI, { APIError } from 'openai';
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
import {
  CLAUDE_MODEL,
  DOCS_USER_TOKEN_CAP,
  errorOf,
  GEMINI_MODEL,
  limitsPolicy,
  limitsProducts,
  MODEL,
  OVERSHOOT_CAP,
  P,
  POLICY_MAX_BYTES,
  POLICY_MAX_TOKENS,
  PrivateRedis,
  RUN,
  secondsToMidnight,
  send,
  SHARED_REDIS_URL,
  startOfSecond,
  today,
  TOKEN_CAP,
  TOKEN_MAX_TOKENS,
  USER_TOKEN_CAP,
  type Answer,
} from './limits-fixtures';

let mock: MockUpstream;
/** Three replicas on the shared Redis. */
let replicas: Gateway[];
/** A gateway on the private Redis that gets killed. */
let lonely: Gateway;
let privateRedis: PrivateRedis;
let shared: Redis;
let adminToken: string;
let policyFile: string;

beforeAll(async () => {
  mock = await startMock();
  policyFile = writeTempFile('policy.yaml', limitsPolicy());
  privateRedis = new PrivateRedis();
  await privateRedis.start();
  const products = limitsProducts(mock.url);
  const [a, b, c, d] = await Promise.all([
    ...[1, 2, 3].map(() =>
      startGateway({ products, env: { API_KEY_SERVER_POLICY_FILE: policyFile, API_KEY_SERVER_REDIS_URL: SHARED_REDIS_URL } }),
    ),
    startGateway({ products, env: { API_KEY_SERVER_POLICY_FILE: policyFile, API_KEY_SERVER_REDIS_URL: privateRedis.url } }),
  ]);
  replicas = [a, b, c];
  lonely = d;
  shared = new Redis(SHARED_REDIS_URL, { maxRetriesPerRequest: 1 });
  adminToken = mintToken({ product: P.blocks, sub: 'ops-admin', extraClaims: { scope: 'keygate.admin' } });
  // Warm the replicas (JIT, and the tokenizer a token quota loads on first use) so timing-sensitive
  // bursts are not skewed by a cold start. The outage gateway stays cold for the stall test.
  await Promise.all([
    ...replicas.map((g) =>
      send(g, '/v1/chat/completions', {
        id: uniqueId('warm'),
        token: mintToken({ product: P.warm, sub: 'warm' }),
        body: chatBody('warm up'),
      }),
    ),
    send(lonely, '/v1/chat/completions', {
      id: uniqueId('warm'),
      token: mintToken({ product: P.blocks, sub: 'warm' }),
      body: chatBody('warm up'),
    }),
  ]);
}, 60_000);

afterAll(async () => {
  await Promise.all([...(replicas ?? []).map((g) => g.stop()), lonely?.stop(), mock?.stop()]);
  await privateRedis?.stop();
  if (shared) {
    const keys = await shared.keys(`kg:{lim-*-${RUN}}*`);
    if (keys.length) await shared.del(...keys);
    const fields = (await shared.hkeys('kg:blocks')).filter((f) => f.includes(RUN));
    if (fields.length) await shared.hdel('kg:blocks', ...fields);
    await shared.quit();
  }
  cleanupTempFiles();
}, 30_000);

// ---------------------------------------------------------------------------------------------
// helpers
// ---------------------------------------------------------------------------------------------

function chatBody(text: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { model: MODEL, messages: [{ role: 'user', content: text }], ...extra };
}

function chat(
  gateway: Gateway,
  token: string,
  label: string,
  extra: Record<string, unknown> = {},
  text = `limits ${label}`,
): Promise<Answer> {
  return send(gateway, '/v1/chat/completions', { id: uniqueId(label), token, body: chatBody(text, extra) });
}

async function upstreamTotal(): Promise<number> {
  return (await mock.stats()).total;
}

/** A request to `model` to summarize what one content part holds (a document, a file), at most 10 tokens out. */
function askToSummarize(model: string, part: Record<string, unknown>): Record<string, unknown> {
  return { model, max_tokens: 10, messages: [{ role: 'user', content: [part, { type: 'text', text: 'Summarize' }] }] };
}

/** Exactly one audit line for the answer's request on the gateway that served it, matching `expected`. */
async function expectOneAudit(answer: Answer, expected: Partial<AuditRecord>): Promise<AuditRecord> {
  const record = await answer.gateway.waitForAudit(answer.id);
  expect(answer.gateway.auditsFor(answer.id)).toHaveLength(1);
  for (const other of [...replicas, lonely]) if (other !== answer.gateway) expect(other.auditsFor(answer.id)).toHaveLength(0);
  expect(record).toMatchObject({ status: answer.status, ...expected });
  return record;
}

async function adminCall(
  gateway: Gateway,
  method: string,
  path: string,
  body?: unknown,
  token: string | null = adminToken,
): Promise<Answer> {
  return send(gateway, path, { id: uniqueId('admin'), token, method, body });
}

interface Usage {
  product: string;
  date: string;
  scope: 'shared' | 'replica';
  requests: { total: number; users: Record<string, number> };
  tokens: { total: number; users: Record<string, number> };
  cost_usd: { total: number; users: Record<string, number> };
}

/** Whole billionths of a dollar: an audit line's cost_usd is rounded to them, and /admin/usage adds them up so. */
function nanoUsd(usd: number | null | undefined): number {
  return Math.round((usd ?? 0) * 1e9);
}

async function usage(product: string, gateway: Gateway = replicas[0]): Promise<Usage> {
  const answer = await adminCall(gateway, 'GET', `/admin/usage?product=${encodeURIComponent(product)}`);
  expect(answer.status).toBe(200);
  return answer.json as Usage;
}

function statuses(answers: Answer[]): Record<number, number> {
  const out: Record<number, number> = {};
  for (const a of answers) out[a.status] = (out[a.status] ?? 0) + 1;
  return out;
}

/** Polls `gateway` (GET /v1/models: no upstream call) with `token` until it answers `status`; returns the ms it took. */
async function msUntilStatus(gateway: Gateway, token: string, status: number, timeoutMs = 1_500): Promise<number> {
  const start = performance.now();
  await waitFor(
    `${gateway.url} to answer ${status}`,
    async () => (await send(gateway, '/v1/models', { id: uniqueId('poll'), token })).status === status,
    timeoutMs,
    25,
  );
  return performance.now() - start;
}

// ---------------------------------------------------------------------------------------------
// rate limits and daily request caps, exact across three replicas
// ---------------------------------------------------------------------------------------------

describe('request limits are exact across three replicas sharing Redis', () => {
  it('user_requests_per_second: 4 → of 5 concurrent requests over 3 replicas and 3 routes, exactly 4 × 200 and 1 × 429', async () => {
    const user = uniqueId('u');
    const token = mintToken({ product: P.userQps, sub: user });
    const routes = ['/v1/chat/completions', `/chat/${P.userQps}`, '/v1/models'];
    const before = await upstreamTotal();
    await startOfSecond();
    const answers = await Promise.all(
      Array.from({ length: 5 }, (_, i) => {
        const path = routes[i % 3];
        return send(replicas[i % 3], path, {
          id: uniqueId('uqps'),
          token,
          body: path === '/v1/models' ? undefined : chatBody(`uqps ${i}`),
        });
      }),
    );
    const upstream = (await upstreamTotal()) - before;

    expect(statuses(answers)).toEqual({ 200: 4, 429: 1 });
    const refused = answers.find((a) => a.status === 429)!;
    expect(errorOf(refused)).toMatchObject({ code: 'rate_limit_exceeded', type: 'rate_limit_error' });
    expect(refused.headers.get('retry-after')).toBe('1');
    // Worth a retry a second later: the SDKs may retry it.
    expect(refused.headers.get('x-should-retry')).toBeNull();
    expect(refused.headers.get('x-keygate-limit')).toBe('user_qps');
    expect(refused.headers.get('x-ratelimit-limit-requests')).toBe('100000');
    expect(refused.headers.get('x-ratelimit-remaining-requests')).toMatch(/^\d+$/);
    for (const ok of answers.filter((a) => a.status === 200)) {
      expect(ok.headers.get('x-ratelimit-limit-requests')).toBe('100000');
      expect(Number(ok.headers.get('x-ratelimit-remaining-requests'))).toBeLessThan(100000);
    }
    // Only the admitted chat requests reached the upstream; the 429 did not.
    const admittedChats = answers.filter((a) => a.status === 200 && !a.text.includes('"object":"list"')).length;
    expect(upstream).toBe(admittedChats);
    for (const a of answers) await expectOneAudit(a, { product: P.userQps, user, failure: a.status === 200 ? null : 'rate_limit' });
    // The refused request was charged to no counter.
    expect((await usage(P.userQps)).requests.users[user]).toBe(4);
  });

  it('user_requests_per_second: 4 paces the token-count routes too (each a call on the product key), though no daily cap counts them', async () => {
    const user = uniqueId('u');
    const token = mintToken({ product: P.userQps, sub: user });
    const before = await upstreamTotal();
    await startOfSecond();
    const answers = await Promise.all(
      Array.from({ length: 5 }, (_, i) =>
        send(replicas[i % 3], '/v1/responses/input_tokens', { id: uniqueId('count'), token, body: { model: MODEL, input: `count ${i}` } }),
      ),
    );
    expect(statuses(answers)).toEqual({ 200: 4, 429: 1 });
    const refused = answers.find((a) => a.status === 429)!;
    expect(refused.headers.get('x-keygate-limit')).toBe('user_qps');
    expect((await upstreamTotal()) - before).toBe(4);
    for (const a of answers) await expectOneAudit(a, { product: P.userQps, user, failure: a.status === 200 ? null : 'rate_limit' });
    // Not a request of the day: the daily counts hold none of them.
    expect((await usage(P.userQps)).requests.users[user] ?? 0).toBe(0);
  });

  it('requests_per_second: 3 (product-wide) → of 4 concurrent requests by 4 users over 3 replicas, exactly 3 × 200', async () => {
    const before = await upstreamTotal();
    await startOfSecond();
    const answers = await Promise.all(
      Array.from({ length: 4 }, (_, i) => chat(replicas[i % 3], mintToken({ product: P.productQps, sub: `pq-user-${i}` }), 'pqps')),
    );
    expect(statuses(answers)).toEqual({ 200: 3, 429: 1 });
    const refused = answers.find((a) => a.status === 429)!;
    expect(refused.headers.get('retry-after')).toBe('1');
    expect(refused.headers.get('x-keygate-limit')).toBe('product_qps');
    expect((await upstreamTotal()) - before).toBe(3);
    await expectOneAudit(refused, { failure: 'rate_limit', product: P.productQps });
    expect((await usage(P.productQps)).requests.total).toBe(3);
  });

  it('daily_requests: 5 → of 6 concurrent requests over 3 replicas, exactly 5 × 200 and 1 × 429 with Retry-After to UTC midnight', async () => {
    const before = await upstreamTotal();
    const answers = await Promise.all(
      Array.from({ length: 6 }, (_, i) => chat(replicas[i % 3], mintToken({ product: P.daily, sub: `daily-user-${i}` }), 'daily')),
    );
    expect(statuses(answers)).toEqual({ 200: 5, 429: 1 });
    const refused = answers.find((a) => a.status === 429)!;
    expect(errorOf(refused).code).toBe('rate_limit_exceeded');
    const retryAfter = Number(refused.headers.get('retry-after'));
    expect(Math.abs(retryAfter - secondsToMidnight())).toBeLessThanOrEqual(3);
    // Not worth the SDKs' retries, seconds later (the last minute of the day excepted).
    expect(refused.headers.get('x-should-retry')).toBe(retryAfter > 60 ? 'false' : null);
    expect(refused.headers.get('x-keygate-limit')).toBe('product_daily');
    expect((await upstreamTotal()) - before).toBe(5);
    await expectOneAudit(refused, { failure: 'rate_limit', product: P.daily, status: 429 });

    // Still refused later in the day, on any replica, by any user, with no upstream call.
    const again = await Promise.all(replicas.map((g, i) => chat(g, mintToken({ product: P.daily, sub: `late-${i}` }), 'daily-late')));
    expect(again.map((a) => a.status)).toEqual([429, 429, 429]);
    expect((await upstreamTotal()) - before).toBe(5);
    for (const a of again) await expectOneAudit(a, { failure: 'rate_limit' });
    expect((await usage(P.daily, replicas[2])).requests.total).toBe(5);

    // The OpenAI SDK with its default retries (2) sends the refused request once: its retries, a
    // second or two later, would be refused again (and each audited and counted toward auto-block).
    const sdk = new OpenAI({
      baseURL: replicas[0].baseURL,
      apiKey: mintToken({ product: P.daily, sub: 'daily-sdk' }),
      fetch: replicas[0].fetch,
    });
    const id = uniqueId('daily-sdk');
    const error = await apiError(
      sdk.chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: 'x' }] }, { headers: { 'x-request-id': id } }),
    );
    expect(error.status).toBe(429);
    await replicas[0].waitForAudit(id);
    expect(replicas[0].auditsFor(id)).toHaveLength(Number(error.headers?.get('retry-after')) > 60 ? 1 : 3);
  });

  it('daily_requests: 50 → of a burst of 200 concurrent requests over 3 replicas, exactly 50 × 200 (no replica takes its own busy event loop for a Redis outage)', async () => {
    const tokens = Array.from({ length: 200 }, (_, i) => mintToken({ product: P.burst, sub: `burst-user-${i % 7}` }));
    const before = await upstreamTotal();
    const answers = await Promise.all(tokens.map((token, i) => chat(replicas[i % 3], token, 'burst')));
    expect(statuses(answers)).toEqual({ 200: 50, 429: 150 });
    expect((await upstreamTotal()) - before).toBe(50);
    for (const a of answers) await expectOneAudit(a, { failure: a.status === 200 ? null : 'rate_limit', product: P.burst });
    expect(await usage(P.burst)).toMatchObject({ scope: 'shared', requests: { total: 50 } });
    for (const g of replicas) expect(g.proc.lines.some((l) => /degraded to per-replica/.test(String(l.json?.message)))).toBe(false);
  });

  it('user_daily_requests: 3 → of 4 concurrent requests by one user, exactly 3 × 200; the remaining-requests header counts down', async () => {
    const user = uniqueId('ud');
    const token = mintToken({ product: P.userDaily, sub: user });
    const before = await upstreamTotal();
    const answers = await Promise.all(Array.from({ length: 4 }, (_, i) => chat(replicas[i % 3], token, 'udaily')));
    expect(statuses(answers)).toEqual({ 200: 3, 429: 1 });
    const ok = answers.filter((a) => a.status === 200);
    expect(ok.map((a) => a.headers.get('x-ratelimit-remaining-requests')).sort()).toEqual(['0', '1', '2']);
    for (const a of ok) expect(a.headers.get('x-ratelimit-limit-requests')).toBe('3');
    const refused = answers.find((a) => a.status === 429)!;
    expect(refused.headers.get('x-ratelimit-remaining-requests')).toBe('0');
    expect(refused.headers.get('x-keygate-limit')).toBe('user_daily');
    expect(Math.abs(Number(refused.headers.get('retry-after')) - secondsToMidnight())).toBeLessThanOrEqual(3);
    expect((await upstreamTotal()) - before).toBe(3);
    await expectOneAudit(refused, { failure: 'rate_limit', user });
    // Another user of the product is not affected.
    const other = await chat(replicas[1], mintToken({ product: P.userDaily, sub: uniqueId('ud-other') }), 'udaily-other');
    expect(other.status).toBe(200);
  });

  it('requests_per_second: 1 and user_daily_requests: 1, both full within one second → the 429 names the daily cap, with Retry-After to UTC midnight', async () => {
    const user = uniqueId('spent');
    const token = mintToken({ product: P.spent, sub: user });
    await startOfSecond();
    const first = await chat(replicas[0], token, 'spent');
    const before = await upstreamTotal();
    const refused = await chat(replicas[1], token, 'spent-again');
    expect(first.status).toBe(200);
    expect(refused.status).toBe(429);
    // Within the second the product's per-second limit is full too; told "retry in 1 s", the
    // client (and the SDKs' retries) would come back to be refused until midnight.
    expect(refused.headers.get('x-keygate-limit')).toBe('user_daily');
    expect(errorOf(refused).message).toContain('your daily requests');
    const retryAfter = Number(refused.headers.get('retry-after'));
    expect(Math.abs(retryAfter - secondsToMidnight())).toBeLessThanOrEqual(3);
    expect(refused.headers.get('x-should-retry')).toBe(retryAfter > 60 ? 'false' : null);
    expect((await upstreamTotal()) - before).toBe(0);
    await expectOneAudit(refused, { failure: 'rate_limit', product: P.spent, user });
  });

  it('user_daily_requests: 3 → requests refused before admission (policy, unknown model) are counted in no limit', async () => {
    const user = uniqueId('ud-refused');
    const token = mintToken({ product: P.userDaily, sub: user });
    const before = await upstreamTotal();
    const refused = [
      await chat(replicas[0], token, 'ud-hot', { temperature: 1.9 }),
      await chat(replicas[1], token, 'ud-hot', { temperature: 1.9 }),
      await chat(replicas[2], token, 'ud-model', { model: 'no-such-model' }),
      await chat(replicas[0], token, 'ud-hot', { temperature: 1.9 }),
    ];
    expect(refused.map((a) => a.status)).toEqual([400, 400, 404, 400]);
    for (const a of refused) await expectOneAudit(a, { user });
    // Chat completions count the limits with the token reservation, after the body and the policy
    // passed: these were never counted.
    expect((await usage(P.userDaily)).requests.users[user]).toBeUndefined();
    expect((await upstreamTotal()) - before).toBe(0);
    // The whole cap is still there: 3 served, then the 4th refused by the cap.
    const served = [];
    for (let i = 0; i < 3; i++) served.push(await chat(replicas[i], token, 'ud-after'));
    expect(served.map((a) => a.status)).toEqual([200, 200, 200]);
    const over = await chat(replicas[1], token, 'ud-over');
    expect(over.status).toBe(429);
    expect(over.headers.get('x-keygate-limit')).toBe('user_daily');
    expect((await upstreamTotal()) - before).toBe(3);
  });
});

// ---------------------------------------------------------------------------------------------
// daily token quotas
// ---------------------------------------------------------------------------------------------

describe('daily token quotas (reserve an estimate, settle to the real usage)', () => {
  it(`admits exactly as many concurrent requests as their estimates fit in daily_tokens (${TOKEN_CAP}); the rest get 429 daily_quota_exceeded`, async () => {
    const before = await upstreamTotal();
    const inFlight = Array.from({ length: 8 }, (_, i) =>
      chat(replicas[i % 3], mintToken({ product: P.tokens, sub: `tok-user-${i}` }), 'tok', {}, 'quota please [mock delay_ms=1500]'),
    );
    // While the admitted ones wait on the upstream, their reservations are visible in the usage.
    await sleep(600);
    const reserved = (await usage(P.tokens)).tokens.total;
    const answers = await Promise.all(inFlight);
    const upstream = (await upstreamTotal()) - before;

    // Each estimate is the prompt (a handful of tokens) plus max_tokens 1000, so 4 fit in 5000 and 5 do not.
    expect(statuses(answers)).toEqual({ 200: 4, 429: 4 });
    const estimate = reserved / 4;
    expect(Number.isInteger(estimate)).toBe(true);
    expect(estimate).toBeGreaterThan(TOKEN_MAX_TOKENS);
    expect(4 * estimate).toBeLessThanOrEqual(TOKEN_CAP);
    expect(5 * estimate).toBeGreaterThan(TOKEN_CAP);
    expect(upstream).toBe(4);
    // A replica refusing while its own admitted requests are in flight knows their reservations make
    // room when they end: retry in 2 s. One that admitted none cannot know what other replicas hold:
    // midnight. With 4 of 8 admitted over replicas of 3, 3 and 2 requests, one replica has both.
    const soon = answers.filter((a) => a.status === 429 && a.headers.get('retry-after') === '2');
    expect(soon.length).toBeGreaterThan(0);
    for (const refused of answers.filter((a) => a.status === 429)) {
      expect(errorOf(refused)).toMatchObject({ code: 'daily_quota_exceeded', type: 'rate_limit_error' });
      if (soon.includes(refused)) {
        expect(errorOf(refused).message).toMatch(/while requests in flight hold \d+ tokens of it .*; try again in 2 s$/);
        expect(refused.headers.get('x-should-retry')).toBeNull();
      } else {
        expect(Math.abs(Number(refused.headers.get('retry-after')) - secondsToMidnight())).toBeLessThanOrEqual(3);
        expect(refused.headers.get('x-should-retry')).toBe(Number(refused.headers.get('retry-after')) > 60 ? 'false' : null);
      }
      await expectOneAudit(refused, { failure: 'quota', product: P.tokens });
    }
    // Settled to the real usage: the day's total is what the audits say was used.
    let used = 0;
    for (const ok of answers.filter((a) => a.status === 200)) {
      const audit = await expectOneAudit(ok, { failure: null });
      used += (audit.tokens_in ?? 0) + (audit.tokens_out ?? 0);
    }
    await waitFor('the settled total', async () => (await usage(P.tokens)).tokens.total === used, 3_000, 50);
    expect(used).toBeLessThan(reserved);
  });

  it('never lets the settled total pass the cap while many concurrent requests race near it', async () => {
    const start = (await usage(P.tokens)).tokens.total;
    let highest = 0;
    let polling = true;
    const poller = (async () => {
      while (polling) {
        highest = Math.max(highest, (await usage(P.tokens, replicas[1])).tokens.total);
        // Not faster: the admin routes have a per-operator throttle (120 per minute per route).
        await sleep(40);
      }
    })();
    const before = await upstreamTotal();
    const answers = await Promise.all(
      Array.from({ length: 30 }, (_, i) =>
        chat(replicas[i % 3], mintToken({ product: P.tokens, sub: `race-${i % 6}` }), 'race', {}, 'race [mock delay_ms=100]'),
      ),
    );
    polling = false;
    await poller;
    const counts = statuses(answers);
    expect((counts[200] ?? 0) + (counts[429] ?? 0)).toBe(30);
    expect(counts[200]).toBeGreaterThanOrEqual(4);
    expect((await upstreamTotal()) - before).toBe(counts[200]);
    let used = 0;
    for (const a of answers) {
      const audit = await expectOneAudit(a, { failure: a.status === 200 ? null : 'quota' });
      used += (audit.tokens_in ?? 0) + (audit.tokens_out ?? 0);
    }
    const settled = await waitFor(
      'the settled total',
      async () => {
        const t = (await usage(P.tokens)).tokens.total;
        return t === start + used ? t : undefined;
      },
      3_000,
      50,
    );
    // Reservations included, the day's total never went past the cap; settled, it is below it.
    expect(highest).toBeLessThanOrEqual(TOKEN_CAP);
    expect(settled).toBeLessThanOrEqual(TOKEN_CAP);
  });

  /**
   * Each request (path, label, body, headers), sent by a new user of the docs product across the
   * replicas, is refused 429 as one whose reservation alone exceeds the user's daily quota: audited,
   * never sent upstream, counted nowhere.
   */
  async function expectNeverServed(
    name: string,
    asked: Array<[string, string, Record<string, unknown>, Record<string, string>?]>,
  ): Promise<void> {
    const user = uniqueId(name);
    const token = mintToken({ product: P.docs, sub: user });
    const before = await upstreamTotal();
    for (const [i, [path, label, body, headers]] of asked.entries()) {
      const a = await send(replicas[i % 3], path, { id: uniqueId(name), token, body, headers });
      expect({ label, status: a.status }).toEqual({ label, status: 429 });
      expect(a.text).toContain('daily_quota_exceeded');
      expect(a.text).toContain(`whole daily token quota (${DOCS_USER_TOKEN_CAP}): it can never be served`);
      await expectOneAudit(a, { failure: 'quota', product: P.docs, user, attempts: 0 });
    }
    expect((await upstreamTotal()) - before).toBe(0);
    expect((await usage(P.docs)).tokens.users[user]).toBeUndefined();
  }

  it(`reserves a text as the text it holds however it is sent: one longer than user_daily_tokens (${DOCS_USER_TOKEN_CAP}) is refused as a text block, a text document, inline text or a system instruction to Gemini, or a text file on chat`, async () => {
    // About 8,000 tokens: a user quota of 5,000 can never hold it. Sent as a document or a file it
    // was reserved as one image (1,600 tokens) and let through, and the provider bills every token.
    const text = Array.from({ length: 4000 }, (_, i) => `word${i % 97}`).join(' ');
    const base64 = Buffer.from(text).toString('base64');
    const anthropic = { 'anthropic-version': '2023-06-01' };
    const asked: Array<[string, string, Record<string, unknown>, Record<string, string>?]> = [
      ['/v1/messages', 'text block', { model: CLAUDE_MODEL, max_tokens: 10, messages: [{ role: 'user', content: text }] }, anthropic],
      [
        '/v1/messages',
        'text document',
        askToSummarize(CLAUDE_MODEL, { type: 'document', source: { type: 'text', media_type: 'text/plain', data: text } }),
        anthropic,
      ],
      [
        `/v1beta/models/${GEMINI_MODEL}:generateContent`,
        'inline text',
        { contents: [{ role: 'user', parts: [{ inlineData: { mimeType: 'text/plain', data: base64 } }, { text: 'Summarize' }] }] },
      ],
      // Google's parser takes snake_case too, as its REST examples write it.
      [
        `/v1beta/models/${GEMINI_MODEL}:generateContent`,
        'snake_case system instruction',
        { system_instruction: { parts: [{ text }] }, contents: [{ role: 'user', parts: [{ text: 'Summarize' }] }] },
      ],
      [
        '/v1/chat/completions',
        'text file',
        {
          model: GEMINI_MODEL,
          messages: [
            {
              role: 'user',
              content: [
                { type: 'file', file: { filename: 'notes.txt', file_data: `data:text/plain;base64,${base64}` } },
                { type: 'text', text: 'Summarize' },
              ],
            },
          ],
        },
      ],
    ];
    await expectNeverServed('docs', asked);
  });

  it(`reserves a chat prediction (Predicted Outputs) beside the cap: one longer than user_daily_tokens (${DOCS_USER_TOKEN_CAP}) is refused, as a text or as text parts`, async () => {
    // About 8,000 tokens: OpenAI bills what of a prediction the answer leaves out as completion
    // tokens, beyond max_tokens. Left out of the reservation, it was reserved at ~17 tokens.
    const text = Array.from({ length: 4000 }, (_, i) => `word${i % 97}`).join(' ');
    const predicting = (content: unknown): Record<string, unknown> =>
      chatBody('hi', { max_tokens: 10, prediction: { type: 'content', content } });
    await expectNeverServed('prediction', [
      ['/v1/chat/completions', 'prediction text', predicting(text)],
      ['/v1/chat/completions', 'prediction text parts', predicting([{ type: 'text', text }])],
    ]);
  });

  it(`reserves a PDF sent inline by its pages: a 7-page one (~17,500 tokens) is refused under user_daily_tokens (${DOCS_USER_TOKEN_CAP}) on chat, /v1/messages and /v1/responses`, async () => {
    // Its page objects sit in a compressed object stream (written by qpdf). Reserved as one image
    // (1,600 tokens), it was let through, and the provider bills every page.
    const pdf = readFileSync(join(__dirname, '../../libs/providers/src/testing/pdf/seven-pages-object-streams.pdf')).toString('base64');
    const dataUrl = `data:application/pdf;base64,${pdf}`;
    const asked: Array<[string, string, Record<string, unknown>, Record<string, string>?]> = [
      [
        '/v1/chat/completions',
        'chat file',
        askToSummarize(CLAUDE_MODEL, { type: 'file', file: { filename: 'report.pdf', file_data: dataUrl } }),
      ],
      [
        '/v1/messages',
        'document',
        askToSummarize(CLAUDE_MODEL, { type: 'document', source: { type: 'base64', media_type: 'application/pdf', data: pdf } }),
        { 'anthropic-version': '2023-06-01' },
      ],
      [
        '/v1/responses',
        'input_file',
        {
          model: MODEL,
          max_output_tokens: 16,
          input: [
            {
              role: 'user',
              content: [
                { type: 'input_file', filename: 'report.pdf', file_data: dataUrl },
                { type: 'input_text', text: 'Summarize' },
              ],
            },
          ],
        },
      ],
    ];
    await expectNeverServed('pdf', asked);
  });

  it('tells a request whose reservation alone exceeds the daily quota that it can never be served as it is, counting nothing', async () => {
    const before = await usage(P.overshoot);
    const a = await chat(
      replicas[1],
      mintToken({ product: P.overshoot, sub: 'too-big' }),
      'too-big',
      { max_tokens: OVERSHOOT_CAP + 1 },
      'too big',
    );
    expect(a.status).toBe(429);
    expect(errorOf(a)).toMatchObject({ code: 'daily_quota_exceeded' });
    expect(errorOf(a).message).toContain(`whole daily token quota (${OVERSHOOT_CAP}): it can never be served`);
    expect(Number(a.headers.get('retry-after'))).toBeGreaterThan(0);
    await expectOneAudit(a, { status: 429, failure: 'quota', product: P.overshoot, attempts: 0 });
    expect(await usage(P.overshoot)).toEqual(before);
  });

  it('bounds the overshoot by what requests in flight use beyond their estimates (settled ≤ cap + Σ (actual − estimate))', async () => {
    // The client's max_tokens: 1 makes each estimate small, while the mock answers with more tokens
    // than that: every admitted request overshoots its own estimate.
    const text = `overshoot ${'lorem ipsum dolor sit amet '.repeat(6)}[mock delay_ms=1200]`;
    const inFlight = Array.from({ length: 10 }, (_, i) =>
      chat(replicas[i % 3], mintToken({ product: P.overshoot, sub: `over-${i}` }), 'over', { max_tokens: 1 }, text),
    );
    await sleep(600);
    const reserved = (await usage(P.overshoot)).tokens.total;
    const answers = await Promise.all(inFlight);
    const admitted = answers.filter((a) => a.status === 200);
    expect(admitted.length).toBeGreaterThan(0);
    expect(reserved).toBeLessThanOrEqual(OVERSHOOT_CAP);
    const estimate = reserved / admitted.length;
    let settledFromAudits = 0;
    const overshoots: number[] = [];
    for (const a of admitted) {
      const audit = await expectOneAudit(a, { failure: null });
      const actual = (audit.tokens_in ?? 0) + (audit.tokens_out ?? 0);
      settledFromAudits += actual;
      overshoots.push(actual - estimate);
    }
    for (const refused of answers.filter((a) => a.status !== 200)) await expectOneAudit(refused, { status: 429, failure: 'quota' });
    const settled = await waitFor(
      'the settled total',
      async () => {
        const t = (await usage(P.overshoot)).tokens.total;
        return t === settledFromAudits ? t : undefined;
      },
      3_000,
      50,
    );
    expect(settled).toBeLessThanOrEqual(OVERSHOOT_CAP + overshoots.reduce((s, o) => s + Math.max(0, o), 0));
    process.stdout.write(
      `[limits e2e] overshoot: cap ${OVERSHOOT_CAP}, ${admitted.length} in flight, estimate ${estimate} each, ` +
        `settled ${settled}, largest single overshoot ${Math.max(...overshoots)} (cap + one overshoot = ${OVERSHOOT_CAP + Math.max(...overshoots)})\n`,
    );
  });

  it(`admits one client's requests sent back to back while their settled usage fits in user_daily_tokens (${USER_TOKEN_CAP})`, async () => {
    // Each request reserves its prompt plus max_output_tokens 1000 and uses a few dozen tokens: two
    // reservations never fit together, so each request is admitted only once the one before it is
    // settled, which the client's next request, sent as soon as the answer arrived, must not outrun.
    const user = `back-to-back-${RUN}`;
    const client = replicas[0].openai(mintToken({ product: P.userTokens, sub: user }));
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) {
      const id = uniqueId('b2b');
      ids.push(id);
      const response = await client.responses.create({ model: MODEL, input: `back to back ${i}` }, { headers: { 'x-request-id': id } });
      expect(response.status).toBe('completed');
    }
    let used = 0;
    for (const id of ids) {
      const audit = await replicas[0].waitForAudit(id);
      expect(replicas[0].auditsFor(id)).toHaveLength(1);
      expect(audit).toMatchObject({ status: 200, failure: null, user });
      used += (audit.tokens_in ?? 0) + (audit.tokens_out ?? 0);
    }
    expect(used).toBeLessThan(USER_TOKEN_CAP - TOKEN_MAX_TOKENS);
    await waitFor('the settled total', async () => (await usage(P.userTokens)).tokens.users[user] === used, 3_000, 50);
  });
});

describe('a replica shutting down while it streams', () => {
  /**
   * Ten streams on a replica of the shared Redis, SIGTERM once all ten hold their reservation; the
   * replica exits 0. Returns the answers, their audit lines, and how much the shared day grew.
   */
  async function streamThroughShutdown(
    drainSeconds: number,
    chunks: number,
  ): Promise<{ answers: Answer[]; audits: AuditRecord[]; grew: number }> {
    const draining = await startGateway({
      products: limitsProducts(mock.url),
      env: {
        API_KEY_SERVER_POLICY_FILE: policyFile,
        API_KEY_SERVER_REDIS_URL: SHARED_REDIS_URL,
        API_KEY_SERVER_SHUTDOWN_DRAIN_SECONDS: String(drainSeconds),
      },
    });
    try {
      const before = (await usage(P.drain)).tokens.total;
      const streams = Array.from({ length: 10 }, (_, i) =>
        chat(
          draining,
          mintToken({ product: P.drain, sub: `drain-user-${i % 3}` }),
          'drain',
          { stream: true },
          `drain [mock chunk_delay_ms=100 chunks=${chunks}]`,
        ),
      );
      // Every stream is admitted (its reservation is in the shared totals) before the signal.
      await waitFor('10 reservations', async () => (await usage(P.drain)).tokens.total - before >= 10 * TOKEN_MAX_TOKENS, 5_000, 25);
      const exit = draining.proc.stop(20_000);
      const answers = await Promise.all(streams);
      expect(await exit).toEqual({ code: 0, signal: null });
      expect(draining.proc.lines.some((l) => /not sent to Redis before exit/.test(String(l.json?.message)))).toBe(false);
      const audits: AuditRecord[] = [];
      for (const answer of answers) {
        expect(draining.auditsFor(answer.id)).toHaveLength(1);
        audits.push(draining.auditsFor(answer.id)[0]);
      }
      // Read through another replica: the shared totals, complete at exit (no wait).
      const after = await usage(P.drain);
      expect(after.scope).toBe('shared');
      return { answers, audits, grew: after.tokens.total - before };
    } finally {
      await draining.stop();
    }
  }

  const usedBy = (audits: AuditRecord[]): number => audits.reduce((n, a) => n + (a.tokens_in ?? 0) + (a.tokens_out ?? 0), 0);

  // The usage must reach the shared Redis before the replica closes its connection, or the day's
  // totals keep each stream's reservation (prompt + max_tokens) instead of what it used.
  it('settles the streams it finishes during the drain in the shared totals before it closes Redis', async () => {
    const { answers, audits, grew } = await streamThroughShutdown(10, 12);
    for (const [i, answer] of answers.entries()) {
      expect(answer.status).toBe(200);
      expect(answer.text.endsWith('data: [DONE]\n\n')).toBe(true);
      expect(audits[i]).toMatchObject({ status: 200, failure: null, product: P.drain, stream: true });
      expect(audits[i].tokens_out).toBeGreaterThan(0);
    }
    expect(grew).toBe(usedBy(audits));
    expect(grew).toBeLessThan(10 * TOKEN_MAX_TOKENS);
  }, 60_000);

  it('settles the streams it cuts at the drain deadline to the usage they had, before it closes Redis', async () => {
    // 40 chunks 100 ms apart outlast the 1 s drain: each stream ends with the SSE error event.
    const { answers, audits, grew } = await streamThroughShutdown(1, 40);
    for (const [i, answer] of answers.entries()) {
      expect(answer.status).toBe(200);
      expect(answer.text).toContain('"service_unavailable"');
      expect(audits[i]).toMatchObject({ status: 503, failure: 'internal', product: P.drain, stream: true });
      expect(audits[i].tokens_out).toBeGreaterThan(0);
    }
    expect(grew).toBe(usedBy(audits));
    expect(grew).toBeLessThan(10 * TOKEN_MAX_TOKENS);
  }, 60_000);
});

describe('a credential for a product this gateway does not serve', () => {
  it('is refused on GET /v1/models as on chat (403 forbidden), not answered an empty list', async () => {
    const answer = await send(replicas[0], '/v1/models', {
      id: uniqueId('ghost-models'),
      token: mintToken({ product: `ghost-${RUN}`, sub: 'g' }),
    });
    expect(answer.status).toBe(403);
    expect(errorOf(answer).code).toBe('forbidden');
    await expectOneAudit(answer, { failure: 'forbidden' });
  });
});

describe('a client that leaves right after sending', () => {
  it('is audited once, and charged to the daily caps and quotas exactly what its audit line says reached the upstream', async () => {
    // Half-closing the connection after the request makes the response close at once, usually
    // while the guards or the handler are still running: the audit line is written then, and
    // what runs after it must not charge anything it does not show.
    const g = replicas[0];
    const user = uniqueId('halfclose');
    const ids = Array.from({ length: 6 }, (_, i) => `${user}-${i}`);
    const body = JSON.stringify(chatBody('half close'));
    await Promise.all(
      ids.map(
        (id) =>
          new Promise<void>((done) => {
            const socket = connect(g.port, '127.0.0.1', () => {
              socket.end(
                `POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${mintToken({ product: P.warm, sub: user })}\r\n` +
                  `Content-Type: application/json\r\nX-Request-Id: ${id}\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
              );
            });
            socket.on('error', () => undefined);
            socket.on('close', () => done());
            socket.resume();
          }),
      ),
    );
    g.requests.push(...ids.map((id) => ({ id, method: 'POST', path: '/v1/chat/completions' })));
    const audits = await Promise.all(ids.map((id) => g.waitForAudit(id)));
    for (const id of ids) expect(g.auditsFor(id)).toHaveLength(1);
    const upstreamReached = audits.filter((a) => (a.attempts ?? 0) > 0).length;
    const tokens = audits.reduce((sum, a) => sum + (a.tokens_in ?? 0) + (a.tokens_out ?? 0), 0);
    const day = await waitFor(
      'the settlements',
      async () => {
        const u = await usage(P.warm);
        return (u.tokens.users[user] ?? 0) === tokens ? u : undefined;
      },
      3_000,
      50,
    );
    expect(day.requests.users[user] ?? 0).toBe(upstreamReached);
    expect(day.tokens.users[user] ?? 0).toBe(tokens);
  });
});

// ---------------------------------------------------------------------------------------------
// blocks and the admin API
// ---------------------------------------------------------------------------------------------

describe('blocks: created on one replica, in force on all of them at once (SPEC §6)', () => {
  it('blocks a user through replica 1; the next requests on replicas 2 and 3 get 403 blocked, with no upstream call; DELETE lifts it as fast', async () => {
    const user = uniqueId('target');
    const token = mintToken({ product: P.blocks, sub: user });
    const bystander = mintToken({ product: P.blocks, sub: uniqueId('bystander') });
    expect((await chat(replicas[1], token, 'pre-block')).status).toBe(200);

    const created = await adminCall(replicas[0], 'POST', '/admin/blocks', { product: P.blocks, user, reason: `e2e ${RUN}` });
    expect(created.status).toBe(201);
    expect(created.json).toMatchObject({ product: P.blocks, user, reason: `e2e ${RUN}`, expiresAt: null, createdBy: 'ops-admin' });

    // The very next requests, not after the replicas' next read of the blocks (every 500 ms).
    const before = await upstreamTotal();
    const refused = await Promise.all([replicas[1], replicas[2], replicas[0]].map((g) => chat(g, token, 'blocked')));
    expect((await upstreamTotal()) - before).toBe(0);
    for (const a of refused) {
      expect(a.status).toBe(403);
      expect(errorOf(a)).toMatchObject({ code: 'blocked', type: 'permission_error' });
      expect(errorOf(a).message).toContain(`e2e ${RUN}`);
      await expectOneAudit(a, { failure: 'blocked', product: P.blocks, user });
    }
    // Only that user: the product's other users go on.
    expect((await chat(replicas[2], bystander, 'bystander')).status).toBe(200);

    const listed = await adminCall(replicas[2], 'GET', '/admin/blocks');
    expect(listed.status).toBe(200);
    expect((listed.json as { data: Array<{ product: string; user: string | null }> }).data).toEqual(
      expect.arrayContaining([expect.objectContaining({ product: P.blocks, user })]),
    );

    // Filtered by product, and by one of its users; a filter that would be ignored is refused.
    type Listed = { data: Array<{ product: string; user: string | null }> };
    const ofProduct = (await adminCall(replicas[2], 'GET', `/admin/blocks?product=${P.blocks}`)).json as Listed;
    expect(ofProduct.data.length).toBeGreaterThan(0);
    expect(ofProduct.data.every((b) => b.product === P.blocks)).toBe(true);
    const ofUser = (await adminCall(replicas[2], 'GET', `/admin/blocks?product=${P.blocks}&user=${encodeURIComponent(user)}`))
      .json as Listed;
    expect(ofUser.data).toEqual([expect.objectContaining({ product: P.blocks, user })]);
    for (const path of [`/admin/blocks?user=${encodeURIComponent(user)}`, `/admin/blocks?prodcut=${P.blocks}`])
      expect({ path, status: (await adminCall(replicas[2], 'GET', path)).status }).toEqual({ path, status: 400 });
    // A misspelt parameter is refused: `usr` would otherwise lift a whole-product block, if there were one.
    const misspelt = await adminCall(replicas[1], 'DELETE', `/admin/blocks?product=${P.blocks}&usr=${encodeURIComponent(user)}`);
    expect(misspelt.status).toBe(400);
    expect(errorOf(misspelt)).toMatchObject({ code: 'invalid_request', param: 'usr' });
    expect((await chat(replicas[1], token, 'still-blocked')).status).toBe(403);

    const deleted = await adminCall(replicas[1], 'DELETE', `/admin/blocks?product=${P.blocks}&user=${encodeURIComponent(user)}`);
    expect(deleted.status).toBe(200);
    expect(deleted.json).toEqual({ deleted: true });
    const lifted = await Promise.all([replicas[0], replicas[2]].map((g) => chat(g, token, 'post-block')));
    expect(lifted.map((a) => a.status)).toEqual([200, 200]);
    // Who blocked and who lifted stays in the log once the block is gone.
    const said = async (g: Gateway, message: string): Promise<unknown[]> => {
      await g.proc.waitForLine(`"${message}" line`, (l) => l.json?.message === message && l.json.user === user, 5_000);
      return g.proc.lines.filter((l) => l.json?.message === message && l.json.user === user).map((l) => l.json);
    };
    // Each under the id of the request that did it.
    expect(await said(replicas[0], 'block created')).toEqual([
      expect.objectContaining({
        severity: 'NOTICE',
        product: P.blocks,
        user,
        reason: `e2e ${RUN}`,
        by: 'ops-admin',
        requestId: created.id,
      }),
    ]);
    expect(await said(replicas[1], 'block lifted')).toEqual([
      expect.objectContaining({ severity: 'NOTICE', product: P.blocks, user, by: 'ops-admin', requestId: deleted.id }),
    ]);
    expect((await adminCall(replicas[0], 'DELETE', `/admin/blocks?product=${P.blocks}&user=${encodeURIComponent(user)}`)).status).toBe(404);
  });

  it('ends the requests in flight a new block covers, on every replica: a stream with its error event, a call waiting on the upstream with 403; other users go on', async () => {
    const user = uniqueId('runaway');
    const token = mintToken({ product: P.blocks, sub: user });
    const before = await upstreamTotal();
    // A stream of 100 chunks 100 ms apart (10 s) on replica 2, read with the openai SDK.
    const streamId = uniqueId('cut-stream');
    const sdk = new OpenAI({ baseURL: replicas[1].baseURL, apiKey: token, fetch: replicas[1].fetch, maxRetries: 0 });
    const stream = await sdk.chat.completions.create(
      { model: MODEL, messages: [{ role: 'user', content: 'runaway [mock chunk_delay_ms=100 chunks=100]' }], stream: true },
      { headers: { 'x-request-id': streamId } },
    );
    let chunks = 0;
    const reading = (async (): Promise<unknown> => {
      try {
        for await (const chunk of stream) if (chunk.choices[0]?.delta?.content) chunks++;
        return null;
      } catch (error) {
        return error;
      }
    })();
    // A call whose upstream answers in 10 s, on replica 3; another user's stream beside it on replica 2.
    const waiting = chat(replicas[2], token, 'cut-waiting', {}, 'slow [mock delay_ms=10000]');
    const bystander = chat(
      replicas[1],
      mintToken({ product: P.blocks, sub: uniqueId('bystander') }),
      'cut-bystander',
      { stream: true },
      'bystander [mock chunk_delay_ms=100 chunks=15]',
    );
    await waitFor(
      'the three calls to reach the upstream, and the stream to flow',
      async () => (await upstreamTotal()) - before >= 3 && chunks >= 2,
      5_000,
      25,
    );

    const blockedAt = performance.now();
    expect((await adminCall(replicas[0], 'POST', '/admin/blocks', { product: P.blocks, user, reason: `runaway ${RUN}` })).status).toBe(201);
    const streamError = await reading;
    const cut = await waiting;
    const endedWithinMs = performance.now() - blockedAt;
    // Ended by the block, not by the upstream finishing (10 s).
    expect(endedWithinMs).toBeLessThan(5_000);
    expect(streamError).toBeInstanceOf(APIError);
    expect((streamError as APIError).error).toMatchObject({ code: 'blocked', type: 'permission_error' });
    expect((streamError as APIError).message).toContain(`runaway ${RUN}`);
    expect(chunks).toBeGreaterThanOrEqual(2);
    expect(chunks).toBeLessThan(100);
    expect(cut.status).toBe(403);
    expect(errorOf(cut)).toMatchObject({ code: 'blocked', type: 'permission_error' });

    // One audit line each, saying so, with the tokens the stream used up to the cut.
    const streamAudit = await replicas[1].waitForAudit(streamId);
    expect(replicas[1].auditsFor(streamId)).toHaveLength(1);
    expect(streamAudit).toMatchObject({ failure: 'blocked', status: 403, stream: true, product: P.blocks, user });
    expect(streamAudit.tokens_out).toBeGreaterThan(0);
    await expectOneAudit(cut, { failure: 'blocked', status: 403, product: P.blocks, user });

    // The product's other user's stream ran to its end.
    const other = await bystander;
    expect(other.status).toBe(200);
    expect(other.text.endsWith('data: [DONE]\n\n')).toBe(true);
    await expectOneAudit(other, { failure: null, product: P.blocks });

    expect((await adminCall(replicas[0], 'DELETE', `/admin/blocks?product=${P.blocks}&user=${encodeURIComponent(user)}`)).status).toBe(200);
  }, 30_000);

  it('blocks a whole product with an expiry, and lifts it by itself when it expires', async () => {
    const token = mintToken({ product: P.blocks, sub: uniqueId('anyone') });
    const created = await adminCall(replicas[2], 'POST', '/admin/blocks', {
      product: P.blocks,
      reason: 'maintenance',
      expires_in_seconds: 2,
    });
    expect(created.status).toBe(201);
    expect((created.json as { user: string | null }).user).toBeNull();
    for (const a of await Promise.all([replicas[0], replicas[1]].map((g) => chat(g, token, 'product-blocked')))) {
      expect(a.status).toBe(403);
      await expectOneAudit(a, { failure: 'blocked' });
    }
    await msUntilStatus(replicas[1], token, 200, 3_500);
    expect((await chat(replicas[0], token, 'product-unblocked')).status).toBe(200);
  });

  it('refuses the admin routes to a token without the keygate.admin scope (403) and to no token (401)', async () => {
    const plain = mintToken({ product: P.blocks, sub: 'not-admin' });
    for (const [method, path, body] of [
      ['GET', '/admin/blocks', undefined],
      ['POST', '/admin/blocks', { product: P.blocks, reason: 'nope' }],
      ['DELETE', `/admin/blocks?product=${P.blocks}`, undefined],
      ['GET', `/admin/usage?product=${P.blocks}`, undefined],
    ] as const) {
      const answer = await adminCall(replicas[0], method, path, body, plain);
      expect({ method, path, status: answer.status, code: errorOf(answer).code }).toEqual({ method, path, status: 403, code: 'forbidden' });
      expect((await adminCall(replicas[1], method, path, body, null)).status).toBe(401);
    }
    // The refused POST created nothing.
    expect(
      ((await adminCall(replicas[0], 'GET', '/admin/blocks')).json as { data: Array<{ reason: string }> }).data.some(
        (b) => b.reason === 'nope',
      ),
    ).toBe(false);
  });

  it('keeps an operator of one product (scope keygate.admin:<product>) to it: its blocks and usage, nothing of another', async () => {
    const operator = mintToken({
      product: P.blocks,
      sub: uniqueId('product-ops'),
      extraClaims: { scope: `openid keygate.admin:${P.blocks}` },
    });
    const user = uniqueId('scoped-target');
    const token = mintToken({ product: P.blocks, sub: user });
    const created = await adminCall(replicas[0], 'POST', '/admin/blocks', { product: P.blocks, user, reason: 'scoped' }, operator);
    expect(created.status).toBe(201);
    expect(await msUntilStatus(replicas[1], token, 403)).toBeLessThan(1_000);
    expect((await adminCall(replicas[2], 'GET', `/admin/usage?product=${P.blocks}`, undefined, operator)).status).toBe(200);

    // Another product's block, made by an operator of every product (for a user no test uses); listed
    // where both were made, so that nothing waits on the other replicas' refresh.
    const ghost = uniqueId('ghost');
    expect((await adminCall(replicas[0], 'POST', '/admin/blocks', { product: P.daily, user: ghost, reason: 'other product' })).status).toBe(
      201,
    );
    const listedTo = async (who: string): Promise<Array<{ product: string; user: string | null }>> =>
      (
        (await adminCall(replicas[0], 'GET', '/admin/blocks', undefined, who)).json as {
          data: Array<{ product: string; user: string | null }>;
        }
      ).data;
    expect(await listedTo(adminToken)).toEqual(expect.arrayContaining([expect.objectContaining({ product: P.daily, user: ghost })]));
    const seen = await listedTo(operator);
    expect(seen).toEqual(expect.arrayContaining([expect.objectContaining({ product: P.blocks, user })]));
    expect(seen.every((b) => b.product === P.blocks)).toBe(true);

    // Every route refuses it another product (403), a product this gateway does not serve too (it learns nothing of the others).
    for (const [method, path, body] of [
      ['POST', '/admin/blocks', { product: P.daily, reason: 'not mine' }],
      ['DELETE', `/admin/blocks?product=${P.daily}&user=${ghost}`, undefined],
      ['GET', `/admin/usage?product=${P.daily}`, undefined],
      ['GET', '/admin/usage?product=no-such-product', undefined],
    ] as const) {
      const answer = await adminCall(replicas[0], method, path, body, operator);
      expect({ method, path, status: answer.status, code: errorOf(answer).code }).toEqual({ method, path, status: 403, code: 'forbidden' });
    }
    expect(await listedTo(adminToken)).toEqual(expect.arrayContaining([expect.objectContaining({ product: P.daily, user: ghost })]));
    expect((await listedTo(adminToken)).some((b) => b.product === P.daily && b.user === null)).toBe(false);

    // A scope naming no product is no admin scope at all.
    const empty = await adminCall(
      replicas[0],
      'GET',
      '/admin/blocks',
      undefined,
      mintToken({ product: P.blocks, extraClaims: { scope: 'keygate.admin:' } }),
    );
    expect(empty.status).toBe(403);

    expect((await adminCall(replicas[1], 'DELETE', `/admin/blocks?product=${P.blocks}&user=${user}`, undefined, operator)).status).toBe(
      200,
    );
    expect((await adminCall(replicas[1], 'DELETE', `/admin/blocks?product=${P.daily}&user=${ghost}`)).status).toBe(200);
    expect(await msUntilStatus(replicas[2], token, 200)).toBeLessThan(1_000);
  });

  it('throttles the operator routes per operator (120 a minute), with the contract 429 and Retry-After; another operator is unaffected', async () => {
    const busy = mintToken({ product: P.blocks, sub: uniqueId('busy-ops'), extraClaims: { scope: 'keygate.admin' } });
    const answers: Answer[] = [];
    // Sequential, one replica: well inside the minute window.
    for (let i = 0; i < 121; i++) answers.push(await adminCall(replicas[0], 'GET', '/admin/blocks', undefined, busy));
    expect(statuses(answers)).toEqual({ 200: 120, 429: 1 });
    const refused = answers[120];
    expect(errorOf(refused).code).toBe('rate_limit_exceeded');
    expect(refused.headers.get('retry-after')).toBe('60');
    // Shared through Redis: the busy operator is refused on another replica too; another operator is not.
    expect((await adminCall(replicas[1], 'GET', '/admin/blocks', undefined, busy)).status).toBe(429);
    expect((await adminCall(replicas[1], 'GET', '/admin/blocks')).status).toBe(200);
  });

  it('validates the admin inputs', async () => {
    expect((await adminCall(replicas[0], 'POST', '/admin/blocks', { product: 'bad product!', reason: 'x' })).status).toBe(400);
    expect((await adminCall(replicas[0], 'POST', '/admin/blocks', { product: P.blocks })).status).toBe(400);
    // An expiry beyond any date (it used to end in a 500 from an invalid Date).
    const farOff = await adminCall(replicas[0], 'POST', '/admin/blocks', { product: P.blocks, reason: 'x', expires_in_seconds: 1e17 });
    expect(farOff.status).toBe(400);
    expect(farOff.json).toMatchObject({ error: { code: 'invalid_request', param: 'expires_in_seconds' } });
    // A misspelt field would otherwise block the whole product (user_id) or for ever (expires_at).
    const blocksBefore = (await adminCall(replicas[0], 'GET', '/admin/blocks')).json as { data: unknown[] };
    for (const [field, value] of [
      ['user_id', 'alice'],
      ['expires_at', '2030-01-01T00:00:00Z'],
    ] as const) {
      const typo = await adminCall(replicas[0], 'POST', '/admin/blocks', { product: P.blocks, user: 'x', reason: 'typo', [field]: value });
      expect({ field, status: typo.status, error: errorOf(typo) }).toMatchObject({
        field,
        status: 400,
        error: { code: 'invalid_request', param: field, message: `${field}: unknown field` },
      });
    }
    // No block for a user id with a control character (C0 or C1) or an invisible one (a bidi
    // override, a zero-width space), as no credential may carry one; there is none to lift (404).
    for (const user of ['bob\t', 'bob\u0085', 'bob\u202e', 'b\u200bob']) {
      const control = await adminCall(replicas[0], 'POST', '/admin/blocks', { product: P.blocks, user, reason: 'x' });
      expect(control.status).toBe(400);
      expect(control.json).toMatchObject({ error: { param: 'user' } });
      const lift = await adminCall(replicas[0], 'DELETE', `/admin/blocks?product=${P.blocks}&user=${encodeURIComponent(user)}`);
      expect({ user, status: lift.status, code: errorOf(lift).code }).toEqual({ user, status: 404, code: 'route_not_found' });
    }
    expect(((await adminCall(replicas[0], 'GET', '/admin/blocks')).json as { data: unknown[] }).data).toEqual(blocksBefore.data);
    // A block made before keygate refused such ids (written here as that keygate wrote it) is found and lifted.
    const legacyUser = `old\u200b${uniqueId('zwsp')}`;
    const legacy = {
      product: P.blocks,
      user: legacyUser,
      reason: 'before the rule',
      createdAt: new Date().toISOString(),
      expiresAt: null,
      createdBy: 'ops',
    };
    await shared.hset('kg:blocks', `${P.blocks}\n${legacyUser}`, JSON.stringify(legacy));
    const named = `/admin/blocks?product=${P.blocks}&user=${encodeURIComponent(legacyUser)}`;
    // Read by the replica's next refresh of the blocks (within a second: nothing announced this write).
    await waitFor('the legacy block to be listed', async () => {
      const listed = (await adminCall(replicas[1], 'GET', named)).json as { data: Array<{ user: string }> };
      return listed.data.some((b) => b.user === legacyUser);
    });
    expect((await adminCall(replicas[1], 'DELETE', named)).status).toBe(200);
    expect(await shared.hexists('kg:blocks', `${P.blocks}\n${legacyUser}`)).toBe(0);
    expect((await adminCall(replicas[0], 'GET', '/admin/usage')).status).toBe(400);
    // Repeated parameters arrive as arrays: refused, not sent to Redis as several keys.
    for (const path of [
      `/admin/usage?product=${P.blocks}&product=${P.daily}`,
      `/admin/usage?product=${P.blocks}&date=2024-02-30`,
      `/admin/usage?product=${P.blocks}&date=${today()}&date=${today()}`,
      `/admin/usage?product=${encodeURIComponent(`${P.blocks}\nx`)}`,
    ]) {
      const answer = await adminCall(replicas[0], 'GET', path);
      expect({ path, status: answer.status, code: errorOf(answer).code }).toEqual({ path, status: 400, code: 'invalid_request' });
    }
    const twoProducts = await adminCall(replicas[0], 'DELETE', `/admin/blocks?product=${P.blocks}&product=${P.daily}`);
    expect(twoProducts.status).toBe(400);
    expect(twoProducts.json).toMatchObject({ error: { param: 'product' } });
    expect((await adminCall(replicas[0], 'GET', `/admin/usage?product=${P.blocks}&date=yesterday`)).status).toBe(400);
    // A misspelt parameter, or a product this gateway does not serve, would read as a day without traffic.
    const misspeltDate = await adminCall(replicas[0], 'GET', `/admin/usage?product=${P.blocks}&dat=${today()}`);
    expect({ status: misspeltDate.status, param: errorOf(misspeltDate).param }).toEqual({ status: 400, param: 'dat' });
    const unknownProduct = await adminCall(replicas[0], 'GET', '/admin/usage?product=not-configured-here');
    expect({ status: unknownProduct.status, param: errorOf(unknownProduct).param }).toEqual({ status: 400, param: 'product' });
    const emptyUser = await adminCall(replicas[0], 'POST', '/admin/blocks', { product: P.blocks, user: '', reason: 'x' });
    expect(errorOf(emptyUser)).toMatchObject({ param: 'user', message: expect.stringMatching(/longer than or equal to 1/) });
    const user = uniqueId('counted');
    expect((await chat(replicas[1], mintToken({ product: P.blocks, sub: user }), 'counted')).status).toBe(200);
    const day = await adminCall(replicas[2], 'GET', `/admin/usage?product=${P.blocks}&date=${today()}`);
    expect(day.status).toBe(200);
    expect(day.json).toMatchObject({ product: P.blocks, date: today(), scope: 'shared' });
    expect((day.json as Usage).requests.users[user]).toBe(1);
    // Yesterday is still kept (nothing was counted then for this run's product); older or later days
    // are not, and a 200 with zeros would be a false answer.
    const yesterday = new Date(Date.now() - 86_400_000).toISOString().slice(0, 10);
    const empty = await adminCall(replicas[0], 'GET', `/admin/usage?product=${P.blocks}&date=${yesterday}`);
    expect(empty.json).toEqual({
      product: P.blocks,
      date: yesterday,
      scope: 'shared',
      requests: { total: 0, users: {} },
      tokens: { total: 0, users: {} },
      cost_usd: { total: 0, users: {} },
    });
    const tomorrow = new Date(Date.now() + 86_400_000).toISOString().slice(0, 10);
    for (const date of ['2001-01-01', tomorrow]) {
      const gone = await adminCall(replicas[0], 'GET', `/admin/usage?product=${P.blocks}&date=${date}`);
      expect({ date, status: gone.status, error: gone.json }).toEqual({
        date,
        status: 400,
        error: {
          error: expect.objectContaining({
            code: 'invalid_request',
            param: 'date',
            message: expect.stringMatching(/today .* or yesterday/),
          }),
        },
      });
    }
    // A block for a product this gateway does not serve would stop nothing: refused, nothing created.
    const stray = `${RUN}-not-a-product`;
    const typo = await adminCall(replicas[0], 'POST', '/admin/blocks', { product: stray, reason: 'typo' });
    expect({ status: typo.status, error: typo.json }).toEqual({
      status: 400,
      error: {
        error: expect.objectContaining({
          code: 'invalid_request',
          param: 'product',
          message: `product ${stray} is not configured on this gateway`,
        }),
      },
    });
    const listed = (await adminCall(replicas[1], 'GET', '/admin/blocks')).json as { data: Array<{ product: string }> };
    expect(listed.data.filter((b) => b.product === stray)).toEqual([]);
  });

  it('refuses to list the blocks of a product it does not serve, but lists and lifts one a product since removed left behind', async () => {
    // A misspelt product would read as "no block": refused as POST /admin/blocks and GET /admin/usage refuse it.
    const stray = `${RUN}-not-a-product`;
    for (const path of [`/admin/blocks?product=${stray}`, `/admin/blocks?product=${stray}&user=bob`]) {
      const typo = await adminCall(replicas[0], 'GET', path);
      expect({ path, status: typo.status, error: typo.json }).toEqual({
        path,
        status: 400,
        error: {
          error: expect.objectContaining({
            code: 'invalid_request',
            param: 'product',
            message: `product ${stray} is not configured on this gateway`,
          }),
        },
      });
    }
    // A block of a product no longer in the configuration stays in Redis (written here as keygate
    // wrote it when it served the product): listed, and lifted, by naming that product.
    const removed = `${RUN}-removed-product`;
    const left = {
      product: removed,
      user: null,
      reason: 'before the product went',
      createdAt: new Date().toISOString(),
      expiresAt: null,
      createdBy: 'ops',
    };
    await shared.hset('kg:blocks', removed, JSON.stringify(left));
    const named = `/admin/blocks?product=${removed}`;
    // Read by the replica's next refresh of the blocks (within a second: nothing announced this write).
    const found = await waitFor('the left-over block to be listed', async () => {
      const answer = await adminCall(replicas[1], 'GET', named);
      return answer.status === 200 ? answer : undefined;
    });
    expect(found.json).toEqual({ data: [left] });
    const lifted = await adminCall(replicas[1], 'DELETE', named);
    expect({ status: lifted.status, body: lifted.json }).toEqual({ status: 200, body: { deleted: true } });
    expect(await shared.hexists('kg:blocks', removed)).toBe(0);
    // Gone, the product is one this gateway does not serve again.
    const after = await adminCall(replicas[1], 'GET', named);
    expect({ status: after.status, param: errorOf(after).param }).toEqual({ status: 400, param: 'product' });
  });
});

// ---------------------------------------------------------------------------------------------
// the day's cost
// ---------------------------------------------------------------------------------------------

describe("the day's cost in /admin/usage, added up across three replicas", () => {
  it("equals the sum of the audit lines' cost_usd (and tokens), in total and per user, for a product without token quotas", async () => {
    const users = [uniqueId('cost-a'), uniqueId('cost-b')];
    const sent: Array<{ gateway: Gateway; id: string }> = [];
    // Plain answers and streams of several lengths, through every replica, with the official SDK.
    await Promise.all(
      Array.from({ length: 9 }, async (_, i) => {
        const gateway = replicas[i % 3];
        const id = uniqueId('cost');
        sent.push({ gateway, id });
        const client = gateway.openai(mintToken({ product: P.cost, sub: users[i % 2] }));
        const messages = [{ role: 'user' as const, content: `what does this cost ${'and this '.repeat(i * 7)}` }];
        const headers = { 'x-request-id': id };
        if (i % 4 === 3) {
          const stream = await client.chat.completions.create({ model: MODEL, messages, stream: true }, { headers });
          for await (const chunk of stream) void chunk;
        } else await client.chat.completions.create({ model: MODEL, messages, max_tokens: 10 + i }, { headers });
      }),
    );
    // A request refused before any upstream call costs nothing and is counted nowhere.
    const refused = await apiError(
      replicas[0]
        .openai(mintToken({ product: P.cost, sub: users[0] }))
        .chat.completions.create({ model: 'not-a-model-of-this-product', messages: [{ role: 'user', content: 'x' }] }),
    );
    expect(refused.status).toBeGreaterThanOrEqual(400);
    const audits = await Promise.all(sent.map(({ gateway, id }) => gateway.waitForAudit(id)));
    const sum = { total: 0, users: {} as Record<string, number> };
    const tokens = { total: 0, users: {} as Record<string, number> };
    let dollars = 0;
    for (const record of audits) {
      expect(record).toMatchObject({ status: 200, product: P.cost, model: MODEL });
      expect(record.cost_usd).toBeGreaterThan(0);
      const used = (record.tokens_in ?? 0) + (record.tokens_out ?? 0);
      expect(used).toBeGreaterThan(0);
      tokens.total += used;
      tokens.users[record.user as string] = (tokens.users[record.user as string] ?? 0) + used;
      sum.total += nanoUsd(record.cost_usd);
      sum.users[record.user as string] = (sum.users[record.user as string] ?? 0) + nanoUsd(record.cost_usd);
      dollars += record.cost_usd as number;
    }
    const expected = {
      total: sum.total / 1e9,
      users: Object.fromEntries(Object.entries(sum.users).map(([user, nano]) => [user, nano / 1e9])),
    };
    expect(Object.keys(expected.users).sort()).toEqual([...users].sort());
    // Each replica sends its costs with its settlements, every 25 ms: the last ones are waited for.
    await waitFor(
      'every replica’s costs and tokens to reach Redis',
      async () => {
        const day = await usage(P.cost);
        return day.cost_usd.total === expected.total && day.tokens.total === tokens.total;
      },
      3_000,
      50,
    );
    for (const gateway of replicas) {
      const day = await usage(P.cost, gateway);
      expect(day).toEqual({
        product: P.cost,
        date: today(),
        scope: 'shared',
        requests: { total: 9, users: { [users[0]]: 5, [users[1]]: 4 } },
        // Counted without a token quota too: the audit lines' tokens, as its cost.
        tokens,
        cost_usd: expected,
      });
      expect(day.cost_usd.total).toBeCloseTo(dollars, 9);
    }
  });
});

// ---------------------------------------------------------------------------------------------
// parameter policy
// ---------------------------------------------------------------------------------------------

describe('parameter policy, audited as failure "policy"', () => {
  const token = (): string => mintToken({ product: P.policy, sub: 'policy-user' });

  it(`answers 400 policy_violation naming the cap when max_tokens is above ${POLICY_MAX_TOKENS}, with no upstream call`, async () => {
    const before = await upstreamTotal();
    const a = await chat(replicas[0], token(), 'over-cap', { max_tokens: POLICY_MAX_TOKENS + 1 });
    expect(a.status).toBe(400);
    expect(errorOf(a)).toMatchObject({ code: 'policy_violation', param: 'max_tokens' });
    expect(errorOf(a).message).toContain(String(POLICY_MAX_TOKENS));
    expect((await upstreamTotal()) - before).toBe(0);
    await expectOneAudit(a, { failure: 'policy', product: P.policy });
  });

  it('sends the cap as max_tokens when the client sent none', async () => {
    const a = await chat(replicas[1], token(), 'no-cap');
    expect(a.status).toBe(200);
    expect(((await mock.stats()).last['openai.chat']?.body as { max_tokens?: number }).max_tokens).toBe(POLICY_MAX_TOKENS);
    await expectOneAudit(a, { failure: null });
  });

  it('answers 400 policy_violation for a temperature outside the range', async () => {
    const before = await upstreamTotal();
    const a = await chat(replicas[2], token(), 'hot', { temperature: 1.2 });
    expect(a.status).toBe(400);
    expect(errorOf(a)).toMatchObject({ code: 'policy_violation', param: 'temperature' });
    expect((await upstreamTotal()) - before).toBe(0);
    await expectOneAudit(a, { failure: 'policy' });
  });

  it(`answers 413 for a body over max_request_bytes (${POLICY_MAX_BYTES})`, async () => {
    const before = await upstreamTotal();
    const a = await chat(replicas[0], token(), 'big', {}, 'x'.repeat(POLICY_MAX_BYTES * 2));
    expect(a.status).toBe(413);
    expect(errorOf(a).code).toBe('request_too_large');
    expect((await upstreamTotal()) - before).toBe(0);
    await expectOneAudit(a, { failure: 'policy', product: P.policy });
  });

  it('ends a stream longer than max_stream_seconds (1 s) with an SSE error event', async () => {
    const started = Date.now();
    const a = await chat(replicas[1], token(), 'long-stream', { stream: true }, 'long [mock chunk_delay_ms=200 chunks=20]');
    expect(Date.now() - started).toBeLessThan(3_500);
    expect(a.status).toBe(200);
    const events = a.text
      .split('\n\n')
      .filter((e) => e.startsWith('data: ') && e !== 'data: [DONE]')
      .map((e) => JSON.parse(e.slice(6)) as Record<string, unknown>);
    expect(events.length).toBeGreaterThan(1);
    expect(events[events.length - 1]).toMatchObject({ error: { code: 'stream_timeout' } });
    expect(a.text).not.toContain('[DONE]');
    // The 200 is on the wire; the audit records the error the stream ended with.
    await expectOneAudit(a, { status: 504, failure: 'policy', stream: true, product: P.policy });
  });
});

// ---------------------------------------------------------------------------------------------
// auto-block
// ---------------------------------------------------------------------------------------------

describe('auto-block', () => {
  it('blocks a user after 3 refusals (429) with an ALERT line naming product and user; every replica then answers 403 blocked', async () => {
    const user = uniqueId('hammer');
    const token = mintToken({ product: P.autoBlock, sub: user });
    const before = await upstreamTotal();
    await startOfSecond();
    const answers: Answer[] = [];
    for (let i = 0; i < 4; i++) answers.push(await chat(replicas[0], token, 'hammer'));
    expect(answers.map((a) => a.status)).toEqual([200, 429, 429, 429]);
    for (const a of answers.slice(1)) await expectOneAudit(a, { failure: 'rate_limit', user });

    for (const g of replicas) expect(await msUntilStatus(g, token, 403)).toBeLessThan(1_000);
    const blocked = await Promise.all(replicas.map((g) => chat(g, token, 'hammer-blocked')));
    for (const a of blocked) {
      expect(a.status).toBe(403);
      expect(errorOf(a).code).toBe('blocked');
      await expectOneAudit(a, { failure: 'blocked', user });
    }
    expect((await upstreamTotal()) - before).toBe(1);

    const alertsOf = (): (typeof replicas)[number]['proc']['lines'] =>
      replicas
        .flatMap((g) => g.proc.lines.filter((l) => l.stream === 'stdout' && l.json?.severity === 'ALERT'))
        .filter((l) => l.json?.product === P.autoBlock && l.json?.user === user);
    // The ALERT follows the block's creation, which other replicas may act on before the replica that
    // made it has heard back from Redis (a loaded CI machine saw the 403s first): waited for, then counted.
    await waitFor('the auto-block ALERT line', () => alertsOf().length > 0);
    await sleep(50);
    const mine = alertsOf();
    expect(mine).toHaveLength(1);
    expect(mine[0].json).toMatchObject({ product: P.autoBlock, user, reason: 'user_qps' });
    // Written while serving the refused request (in its guard): its request id, like every such line.
    expect(answers.slice(1).map((a) => a.id)).toContain(mine[0].json?.requestId);

    const listed = (await adminCall(replicas[1], 'GET', '/admin/blocks')).json as { data: Array<Record<string, unknown>> };
    const block = listed.data.find((b) => b.product === P.autoBlock && b.user === user);
    expect(block).toMatchObject({ createdBy: 'auto-block' });
    expect(Date.parse(String(block!.expiresAt)) - Date.parse(String(block!.createdAt))).toBe(30_000);
    // Another user of the product is not blocked.
    expect((await chat(replicas[2], mintToken({ product: P.autoBlock, sub: uniqueId('calm') }), 'calm')).status).toBe(200);
  });

  it('on a replica without Redis too: the refusal that sets it off is still the 429, and the stream the user has running is ended with the block', async () => {
    // In memory the block comes into force while that refusal is still being answered.
    const solo = await startGateway({ products: limitsProducts(mock.url), env: { API_KEY_SERVER_POLICY_FILE: policyFile } });
    try {
      const user = uniqueId('hammer-solo');
      const token = mintToken({ product: P.autoBlock, sub: user });
      const streamId = uniqueId('hammer-stream');
      const sdk = new OpenAI({ baseURL: solo.baseURL, apiKey: token, fetch: solo.fetch, maxRetries: 0 });
      const stream = await sdk.chat.completions.create(
        { model: MODEL, messages: [{ role: 'user', content: 'long [mock chunk_delay_ms=100 chunks=100]' }], stream: true },
        { headers: { 'x-request-id': streamId } },
      );
      const reading = (async (): Promise<unknown> => {
        try {
          for await (const chunk of stream) void chunk;
          return null;
        } catch (error) {
          return error;
        }
      })();
      await startOfSecond();
      const answers: Answer[] = [];
      for (let i = 0; i < 4; i++) answers.push(await chat(solo, token, 'hammer-solo'));
      expect(answers.map((a) => a.status)).toEqual([200, 429, 429, 429]);
      for (const a of answers.slice(1)) {
        expect(errorOf(a).code).toBe('rate_limit_exceeded');
        await solo.waitForAudit(a.id);
        expect(solo.auditsFor(a.id)).toHaveLength(1);
        expect(solo.auditsFor(a.id)[0]).toMatchObject({ failure: 'rate_limit', status: 429, user });
      }
      const streamError = await reading;
      expect(streamError).toBeInstanceOf(APIError);
      expect((streamError as APIError).error).toMatchObject({ code: 'blocked', type: 'permission_error' });
      const streamAudit = await solo.waitForAudit(streamId);
      expect(solo.auditsFor(streamId)).toHaveLength(1);
      expect(streamAudit).toMatchObject({ failure: 'blocked', status: 403, stream: true, user });
      const next = await chat(solo, token, 'hammer-solo-blocked');
      expect(next.status).toBe(403);
      expect(errorOf(next).code).toBe('blocked');
    } finally {
      await solo.stop();
    }
  }, 30_000);
});

// ---------------------------------------------------------------------------------------------
// Redis outage (private redis-server, killed and restarted)
// ---------------------------------------------------------------------------------------------

describe('a cold replica', () => {
  it('does not freeze other requests (>= 150 ms) while it loads the tokenizer for its first token-quota request', async () => {
    // The first request of a product with a token quota counts its prompt with the tokenizer; if
    // loading it blocks the event loop longer than the Redis command timeout, every Redis command in
    // flight meanwhile "times out" and the replica drops to per-replica counting for a second.
    const gaps: number[] = [];
    let polling = true;
    const poller = (async () => {
      while (polling) {
        const t = performance.now();
        const res = await fetch(`${lonely.url}/healthz`, { signal: AbortSignal.timeout(5_000) });
        await res.arrayBuffer();
        gaps.push(performance.now() - t);
        await sleep(5);
      }
    })();
    await sleep(100);
    const first = await chat(lonely, mintToken({ product: P.warm, sub: 'cold' }), 'cold-quota');
    await sleep(100);
    polling = false;
    await poller;
    expect(first.status).toBe(200);
    await expectOneAudit(first, { failure: null });
    const worst = Math.max(...gaps);
    process.stdout.write(
      `[limits e2e] cold first token-quota request: ${first.ms.toFixed(0)} ms; longest /healthz meanwhile ${worst.toFixed(0)} ms\n`,
    );
    // A gateway must not freeze every request for a tokenizer load; near 250 ms it also trips the Redis failover.
    expect(worst).toBeLessThan(150);
  });
});

/** The value of `keygate_redis_up` on the outage gateway's /metrics, or null when absent. */
async function redisUpMetric(): Promise<string | null> {
  const metrics = await send(lonely, '/metrics', { id: uniqueId('metrics'), token: null });
  expect(metrics.status).toBe(200);
  return /^keygate_redis_up(?:\{[^}]*\})? (\S+)$/m.exec(metrics.text)?.[1] ?? null;
}

describe('Redis outage on a private redis-server (killed, then restarted)', () => {
  const hash = (): string => `kg:{${P.outage}}:req:${today()}`;
  let killedAt = 0;
  /** What the requests admitted during the outage cost (billionths of a dollar), by their audit lines. */
  let duringCost = 0;

  it('counts in the private Redis while it is up', async () => {
    const inspect = privateRedis.client();
    try {
      const first = await chat(lonely, mintToken({ product: P.outage, sub: 'before' }), 'before-outage');
      expect(first.status).toBe(200);
      expect(await inspect.hget(hash(), 'u:before')).toBe('1');
    } finally {
      inspect.disconnect();
    }
  });

  it('holds a block made while Redis is up (restored after the restart, below)', async () => {
    const created = await adminCall(lonely, 'POST', '/admin/blocks', {
      product: P.outage,
      user: 'Kept.Blocked@corp.example',
      reason: `e2e ${RUN}`,
    });
    expect(created.status).toBe(201);
    const refused = await chat(lonely, mintToken({ product: P.outage, sub: 'kept.blocked@corp.example' }), 'blocked-before-outage');
    expect(refused.status).toBe(403);
    await expectOneAudit(refused, { failure: 'blocked', product: P.outage });
  });

  it('when Redis is killed, answers every request within ~300 ms with limits per replica, still enforced (over the limit → 429, no upstream call)', async () => {
    // Kill Redis at the start of a second, then three requests by one user (limit 2 per second).
    const token = mintToken({ product: P.outage, sub: 'during' });
    await startOfSecond();
    await privateRedis.kill();
    killedAt = Date.now();
    const before = await upstreamTotal();
    const during: Answer[] = [];
    for (let i = 0; i < 3; i++) during.push(await chat(lonely, token, 'during-outage'));
    expect(during.map((a) => a.status)).toEqual([200, 200, 429]);
    for (const a of during) expect(a.ms).toBeLessThan(300);
    expect(errorOf(during[2]).code).toBe('rate_limit_exceeded');
    expect(during[2].headers.get('retry-after')).toBe('1');
    expect((await upstreamTotal()) - before).toBe(2);
    await expectOneAudit(during[2], { failure: 'rate_limit', product: P.outage, cost_usd: null });
    for (const a of during.slice(0, 2)) duringCost += nanoUsd((await expectOneAudit(a, { failure: null })).cost_usd);
    expect(duringCost).toBeGreaterThan(0);
  });

  it('stays ready during the outage, and /readyz says counting is degraded', async () => {
    expect(privateRedis.running).toBe(false);
    const ready = await send(lonely, '/readyz', { id: uniqueId('ready'), token: null });
    process.stdout.write(`[limits e2e] /readyz during the Redis outage: ${ready.status} ${ready.text}\n`);
    expect(ready.status).toBe(200);
    expect(ready.ms).toBeLessThan(300);
    expect(JSON.stringify((ready.json as { details?: Record<string, unknown> }).details?.redis ?? null)).toMatch(/degraded|per-replica/i);
  });

  it('says so in a log line', async () => {
    const line = await lonely.proc.waitForLine(
      'a Redis-unavailable log line',
      (l) =>
        /redis/i.test(String(l.json?.message)) &&
        /unavailable/i.test(String(l.json?.message)) &&
        Date.parse(String(l.json?.time)) >= killedAt - 1000,
      2_000,
    );
    expect(['WARNING', 'ERROR']).toContain(line.json?.severity);
  });

  it('says so in the keygate_redis_up metric (0 while counting per replica)', async () => {
    expect(await redisUpMetric()).toBe('0');
  });

  it('keeps the operator routes answering during the outage (GET /admin/usage and /admin/blocks)', async () => {
    expect(privateRedis.running).toBe(false);
    const usageDuring = await adminCall(lonely, 'GET', `/admin/usage?product=${P.outage}`);
    const blocksDuring = await adminCall(lonely, 'GET', '/admin/blocks');
    expect({ usage: usageDuring.status, blocks: blocksDuring.status }).toEqual({ usage: 200, blocks: 200 });
    expect(usageDuring.ms).toBeLessThan(300);
    expect((usageDuring.json as Usage).requests.users.during).toBe(2);
    // Their cost too, counted in memory as their requests are.
    expect((usageDuring.json as Usage).cost_usd.users).toEqual({ during: duringCost / 1e9 });
    // Said in the answer: these are this replica's counts only.
    expect((usageDuring.json as Usage).scope).toBe('replica');
  });

  it('resumes shared counting by itself when Redis returns on the same port', async () => {
    // An outage of a real restart's length: longer than a replica's view stays fresh (1.25 s), so
    // the blocks write-back below is the restart's, not a quick blip's.
    await sleep(Math.max(0, killedAt + 2_000 - Date.now()));
    await privateRedis.start();
    const back = privateRedis.client();
    try {
      let n = 0;
      await waitFor(
        'the gateway to count in the restarted Redis',
        async () => {
          const a = await chat(lonely, mintToken({ product: P.outage, sub: `probe-${n++}` }), 'probe');
          expect(a.status).toBe(200);
          return (await back.exists(hash())) === 1;
        },
        10_000,
        200,
      );
      await lonely.proc.waitForLine('a back-on-shared-Redis line', (l) => /back on shared redis/i.test(String(l.json?.message)), 2_000);
      // The requests admitted in memory during the outage reach the restarted (empty) Redis's daily
      // counts, so /admin/usage and the daily caps do not forget them.
      await waitFor(
        'the outage requests to reach the shared daily counts',
        async () => (await back.hget(hash(), 'u:during')) === '2',
        5_000,
        100,
      );
      // And so does their cost, once (the restarted Redis held nothing of it).
      await waitFor(
        'the outage requests’ cost to reach the shared day',
        async () => (await back.hget(`kg:{${P.outage}}:cost:${today()}`, 'u:during')) === String(duringCost),
        5_000,
        100,
      );
      const usageAfter = await adminCall(lonely, 'GET', `/admin/usage?product=${P.outage}`);
      expect(usageAfter.json).toMatchObject({
        scope: 'shared',
        requests: { users: { during: 2 } },
        cost_usd: { users: { during: duringCost / 1e9 } },
      });
      const after = mintToken({ product: P.outage, sub: 'after' });
      await startOfSecond();
      const resumed: Answer[] = [];
      for (let i = 0; i < 3; i++) resumed.push(await chat(lonely, after, 'after-outage'));
      expect(resumed.map((a) => a.status)).toEqual([200, 200, 429]);
      expect(await back.hget(hash(), 'u:after')).toBe('2');
      await expectOneAudit(resumed[2], { failure: 'rate_limit' });
      expect(await redisUpMetric()).toBe('1');
      const ready = await send(lonely, '/readyz', { id: uniqueId('ready'), token: null });
      expect(ready.status).toBe(200);
      expect(JSON.stringify((ready.json as { details?: Record<string, unknown> }).details?.redis ?? null)).not.toMatch(/degraded/i);
    } finally {
      back.disconnect();
    }
  }, 20_000);

  it('writes its blocks back to the restarted (empty) Redis, says so in one ERROR line, and still enforces them', async () => {
    const back = privateRedis.client();
    try {
      const field = `${P.outage}\nkept.blocked@corp.example`;
      await waitFor('the block to be written back', async () => (await back.hexists('kg:blocks', field)) === 1, 2_000, 50);
      expect(JSON.parse(String(await back.hget('kg:blocks', field)))).toMatchObject({
        product: P.outage,
        user: 'Kept.Blocked@corp.example',
      });
      const lost = lonely.proc.lines.filter((l) => /^Redis lost its data/.test(String(l.json?.message)));
      expect(lost.map((l) => ({ severity: l.json?.severity, restored: l.json?.restored }))).toEqual([{ severity: 'ERROR', restored: 1 }]);
      const before = await upstreamTotal();
      const refused = await chat(lonely, mintToken({ product: P.outage, sub: 'kept.blocked@corp.example' }), 'blocked-after-outage');
      expect(refused.status).toBe(403);
      expect((await upstreamTotal()) - before).toBe(0);
      await expectOneAudit(refused, { failure: 'blocked', product: P.outage });
      expect((await adminCall(lonely, 'DELETE', `/admin/blocks?product=${P.outage}&user=KEPT.BLOCKED%40corp.example`)).status).toBe(200);
    } finally {
      back.disconnect();
    }
  });

  it('says counting is degraded in /readyz as keygate_redis_up does while Redis hangs with the connection still open', async () => {
    const redisDetail = async (): Promise<{ mode?: string; connection?: string }> => {
      const ready = await send(lonely, '/readyz', { id: uniqueId('ready'), token: null });
      expect(ready.status).toBe(200);
      return (ready.json as { details: { redis: { mode?: string; connection?: string } } }).details.redis;
    };
    const admin = privateRedis.client();
    try {
      // Redis stops answering for 2 s; the gateway's connection stays "ready".
      expect(await admin.call('CLIENT', 'PAUSE', '2000', 'ALL')).toBe('OK');
      const hung = chat(lonely, mintToken({ product: P.outage, sub: 'hung' }), 'hung');
      // The request waits ~250 ms, then is counted in memory, and counting stays per replica for
      // the 1 s cool-off: within it, both views say so (polled, so a slow machine cannot miss it).
      const seen = await waitFor(
        '/readyz and keygate_redis_up to say per-replica counting',
        async () => {
          const [detail, up] = [await redisDetail(), await redisUpMetric()];
          return /degraded/.test(detail.mode ?? '') && up === '0' ? detail : undefined;
        },
        1_500,
        20,
      );
      expect(seen).toMatchObject({ connection: 'ready' });
      expect((await hung).status).toBe(200);
    } finally {
      admin.disconnect();
    }
    await waitFor(
      'shared counting again',
      async () => (await redisDetail()).mode === 'shared' && (await redisUpMetric()) === '1',
      6_000,
      200,
    );
  }, 20_000);
});

// ---------------------------------------------------------------------------------------------
// audit completeness and logs (run last)
// ---------------------------------------------------------------------------------------------

describe('audit trail and logs', () => {
  it('kept every gateway and the mock running through the whole file', () => {
    for (const p of [...replicas.map((g) => g.proc), lonely.proc, mock.proc])
      expect({ name: p.name, exit: p.exitInfo }).toEqual({ name: p.name, exit: null });
  });

  it('wrote exactly one audit line per /v1 and /chat request on every gateway', async () => {
    for (const g of [...replicas, lonely]) {
      await waitFor('every request to be audited', () => g.audits().length >= g.requests.length, 5_000).catch(() => undefined);
      const audits = g.audits();
      const missing = g.requests.filter((r) => !audits.some((a) => a.requestId === r.id));
      const duplicated = g.requests.filter((r) => audits.filter((a) => a.requestId === r.id).length > 1);
      expect({ gateway: g.url, missing, duplicated }).toEqual({ gateway: g.url, missing: [], duplicated: [] });
      expect(audits).toHaveLength(g.requests.length);
    }
  });

  it('printed only JSON on stdout, nothing on stderr, and no ERROR line on the replicas (ALERT only for auto-blocks)', () => {
    for (const g of replicas) {
      const stdout = g.proc.lines.filter((l) => l.stream === 'stdout');
      expect(stdout.filter((l) => l.json === null).map((l) => l.raw)).toEqual([]);
      expect(stdout.filter((l) => ['ERROR', 'CRITICAL', 'EMERGENCY'].includes(String(l.json?.severity))).map((l) => l.raw)).toEqual([]);
      expect(stdout.filter((l) => l.json?.severity === 'ALERT' && l.json.product !== P.autoBlock).map((l) => l.raw)).toEqual([]);
      expect(g.proc.lines.filter((l) => l.stream === 'stderr').map((l) => l.raw)).toEqual([]);
    }
  });
});
