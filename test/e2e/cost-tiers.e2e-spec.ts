/**
 * Long-context price tiers (`prices.<model>.tiers`), black box: a built gateway and the mock, with
 * Claude Sonnet 4.5 and Gemini 2.5 Pro priced as their long-context prices bill (every token of a
 * request whose prompt passes 200k tokens at the higher rates), and a budgeted product whose model's
 * tier starts at 1,000 prompt tokens. The mock is told how long the prompt it counted was
 * (`prompt_tokens`), with what part of it read from or written to the prompt cache; the audit
 * line's `cost_usd` must be those tokens at the tier's rates. Clients are the official SDKs, or plain
 * fetch where a refusal is to be seen as it is (no SDK retry).
 */
import {
  cleanupTempFiles,
  mintToken,
  startGateway,
  startMock,
  uniqueId,
  writeTempFile,
  type AuditRecord,
  type Gateway,
  type MockUpstream,
} from './harness';
import { send } from './limits-fixtures';

const CLAUDE = 'claude-sonnet-4-5';
const GEMINI = 'gemini-2.5-pro';
/** The budgeted product's model: $1,000 per million tokens (a tenth of a cent a token), twice that above 1,000 prompt tokens. */
const CHEAP = 'gpt-4o-mini';
const BUDGET_USD = 1.2;
const MAX_TOKENS = 50;

function policy(): string {
  return [
    'prices:',
    `  ${CLAUDE}:`,
    '    {input: 3, cached_input: 0.3, cache_write: 3.75, cache_write_1h: 6, output: 15,',
    '     tiers: [{above_prompt_tokens: 200000, input: 6, cached_input: 0.6, cache_write: 7.5, cache_write_1h: 12, output: 22.5}]}',
    `  ${GEMINI}:`,
    '    {input: 1.25, cached_input: 0.125, output: 10, tiers: [{above_prompt_tokens: 200000, input: 2.5, cached_input: 0.25, output: 15}]}',
    `  ${CHEAP}: {input: 1000, output: 1000, tiers: [{above_prompt_tokens: 1000, input: 2000, output: 2000}]}`,
    'defaults:',
    '  limits: {requests_per_second: 0, user_requests_per_second: 0, daily_requests: 0, user_daily_requests: 0, daily_tokens: 0, user_daily_tokens: 0}',
    'products:',
    '  budgeted:',
    `    limits: {daily_cost_usd: ${BUDGET_USD}}`,
    `    policy: {max_tokens: ${MAX_TOKENS}}`,
    '',
  ].join('\n');
}

let mock: MockUpstream;
let gw: Gateway;

beforeAll(async () => {
  mock = await startMock();
  const providers = {
    openai: { api_key: 'sk-mock-tiers', models: [CHEAP], base_url: `${mock.url}/v1` },
    anthropic: { api_key: 'sk-ant-mock-tiers', models: [CLAUDE], base_url: mock.url },
    gemini: { api_key: 'AIza-mock-tiers', models: [GEMINI], base_url: mock.url },
  };
  gw = await startGateway({
    products: { tiered: { providers }, budgeted: { providers } },
    env: { API_KEY_SERVER_POLICY_FILE: writeTempFile('tiers-policy.yaml', policy()) },
  });
}, 60_000);

afterAll(async () => {
  await gw?.stop();
  await mock?.stop();
  cleanupTempFiles();
}, 30_000);

/** Exactly one audit line for the request, matching `expected`. */
async function expectOneAudit(id: string, expected: Partial<AuditRecord>): Promise<AuditRecord> {
  const record = await gw.waitForAudit(id);
  expect(gw.auditsFor(id)).toHaveLength(1);
  expect(record).toMatchObject(expected);
  return record;
}

describe('the audit prices a long prompt at its model’s long-context tier, every token of the request', () => {
  const token = mintToken({ product: 'tiered', sub: 'tier-user' });

  it('bills a Claude prompt of 250,000 tokens (cache reads and writes counted in it) at the 1M-context rates, its output too', async () => {
    const id = uniqueId('tier-claude');
    const message = await gw.anthropic(token).messages.create(
      {
        model: CLAUDE,
        max_tokens: 64,
        messages: [
          {
            role: 'user',
            content: 'a long session [mock prompt_tokens=250000 cached_tokens=100000 cache_write_tokens=40000 cache_write_1h_tokens=10000]',
          },
        ],
      },
      { headers: { 'x-request-id': id } },
    );
    expect(message.usage).toMatchObject({ input_tokens: 100_000, cache_read_input_tokens: 100_000, cache_creation_input_tokens: 50_000 });
    const record = await expectOneAudit(id, {
      status: 200,
      tokens_in: 250_000,
      tokens_cached: 100_000,
      tokens_cache_write: 50_000,
      tokens_cache_write_1h: 10_000,
    });
    // $6 plain, $0.60 a cache read, $7.50 a 5-minute write, $12 an hour's, $22.50 out (per million).
    expect(record.cost_usd).toBeCloseTo(
      (100_000 * 6 + 100_000 * 0.6 + 40_000 * 7.5 + 10_000 * 12 + message.usage.output_tokens * 22.5) / 1e6,
      9,
    );
  });

  it('bills a Claude prompt of exactly 200,000 tokens at the usual rates (the tier is for prompts above it)', async () => {
    const id = uniqueId('tier-claude-at');
    const message = await gw
      .anthropic(token)
      .messages.create(
        { model: CLAUDE, max_tokens: 64, messages: [{ role: 'user', content: 'at the line [mock prompt_tokens=200000]' }] },
        { headers: { 'x-request-id': id } },
      );
    const record = await expectOneAudit(id, { status: 200, tokens_in: 200_000 });
    expect(record.cost_usd).toBeCloseTo((200_000 * 3 + message.usage.output_tokens * 15) / 1e6, 9);
  });

  it('bills a Gemini 2.5 Pro prompt one token past 200,000, on the chat route, at the long-prompt rates, cache reads included', async () => {
    const id = uniqueId('tier-gemini');
    const answer = await gw
      .openai(token)
      .chat.completions.create(
        { model: GEMINI, messages: [{ role: 'user', content: 'a long document [mock prompt_tokens=200001 cached_tokens=150000]' }] },
        { headers: { 'x-request-id': id } },
      );
    expect(answer.usage?.prompt_tokens).toBe(200_001);
    const record = await expectOneAudit(id, { status: 200, provider: 'gemini', tokens_in: 200_001, tokens_cached: 150_000 });
    // $2.50 plain, $0.25 a cache read, $15 out (per million).
    expect(record.cost_usd).toBeCloseTo((50_001 * 2.5 + 150_000 * 0.25 + (answer.usage?.completion_tokens ?? 0) * 15) / 1e6, 9);
  });
  it('bills a Gemini 2.5 Pro prompt of 300,000 tokens on the native route (generateContent) at the long-prompt rates, thought tokens as output', async () => {
    const id = uniqueId('tier-gemini-native');
    const res = await gw.fetch(`/v1beta/models/${GEMINI}:generateContent`, {
      method: 'POST',
      headers: { 'x-request-id': id, 'x-goog-api-key': token, 'content-type': 'application/json' },
      body: JSON.stringify({
        contents: [{ role: 'user', parts: [{ text: 'a long video [mock prompt_tokens=300000 reasoning_tokens=40]' }] }],
      }),
    });
    expect(res.status).toBe(200);
    const usage = (
      (await res.json()) as { usageMetadata: { promptTokenCount: number; candidatesTokenCount: number; thoughtsTokenCount: number } }
    ).usageMetadata;
    expect(usage).toMatchObject({ promptTokenCount: 300_000, thoughtsTokenCount: 40 });
    const record = await expectOneAudit(id, { status: 200, provider: 'gemini', tokens_in: 300_000, tokens_reasoning: 40 });
    expect(record.cost_usd).toBeCloseTo((300_000 * 2.5 + (usage.candidatesTokenCount + 40) * 15) / 1e6, 9);
  });
});

describe('a budget reserves a prompt estimated near a tier’s threshold at the tier’s rates', () => {
  /** A chat request whose prompt is `words` words (about as many tokens), by plain fetch: a refusal is seen as it is. */
  function ask(words: number) {
    return send(gw, '/v1/chat/completions', {
      id: uniqueId('tier-budget'),
      token: mintToken({ product: 'budgeted', sub: uniqueId('tier-budget-user') }),
      body: { model: CHEAP, messages: [{ role: 'user', content: `${'word '.repeat(words)}[mock answer_chars=8]` }] },
    });
  }

  it('refuses a prompt of ~800 tokens whose real count may pass 1,000 (reserved at $0.002 a token: more than the budget), serves one of ~500', async () => {
    const before = (await mock.stats()).total;
    // ~800 prompt tokens and the 50-token cap: ~$0.85 at the base rates, which the $1.20 budget holds,
    // but ~$1.70 at the tier's, which the reservation takes (the estimate times 1.5 passes 1,000).
    const refused = await ask(800);
    expect(refused.status).toBe(429);
    expect(refused.json).toMatchObject({ error: { type: 'rate_limit_error', code: 'daily_quota_exceeded' } });
    const message = (refused.json as { error: { message: string } }).error.message;
    const upTo = Number(/may cost up to \$([\d.]+)/.exec(message)?.[1]);
    expect(upTo).toBeGreaterThan(1.6);
    expect(upTo).toBeLessThan(1.8);
    expect(message).toContain(`more than this product's whole daily budget of $${BUDGET_USD}`);
    await expectOneAudit(refused.id, { status: 429, failure: 'quota', cost_usd: null });
    expect((await mock.stats()).total).toBe(before);

    // ~500 tokens: 750 with the margin, below the threshold, so reserved at the base rates (~$0.55) and served.
    const served = await ask(500);
    expect(served.status).toBe(200);
    await expectOneAudit(served.id, { status: 200, failure: null, model: CHEAP });
  });
});
