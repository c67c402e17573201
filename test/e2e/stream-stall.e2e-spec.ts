/**
 * A stream whose upstream answers 200 and then stalls before any content, black box: the built
 * gateway and mock upstream as real processes, driven with the official `openai` SDK. keygate gives
 * the client the stream's HTTP head once its 2 s of priming are up, and holds the events back until
 * content comes: until then the stall is retried, and falls back, as a failure before the head is.
 *
 * The mock stalls with `stall_after=0` (its OpenAI head, the role chunk, then silence: the upstream
 * idle timeout, 3 s here, fires after the priming time) and `fail_first=N` makes only the first N
 * requests with the same prompt stall, so a retry or a fallback gets the answer.
 */
import Anthropic from '@anthropic-ai/sdk';
import type { ChatCompletionChunk, ChatCompletionMessageParam } from 'openai/resources/chat/completions';
import {
  apiError,
  cleanupTempFiles,
  mintToken,
  startGateway,
  startMock,
  streamUntilError,
  uniqueId,
  waitFor,
  writeTempFile,
  type AuditRecord,
  type Gateway,
  type MockRoute,
  type MockStats,
  type MockUpstream,
} from './harness';
import { expectOneAuditOn } from './provider-fixtures';

/** Retries per model after the first attempt: two attempts per model keep the stalls short. */
const MAX_RETRIES = 1;
const IDLE_TIMEOUT_MS = 3_000;
/** Within the priming time: a stream whose headers never come fails before its HTTP head is sent. */
const TTFB_TIMEOUT_MS = 1_000;
const CLAUDE = 'claude-3-5-sonnet-20241022';
/** The `stall-limit` product's `max_stream_seconds`: its limit comes before its second attempt's idle timeout. */
const LIMIT_SECONDS = 3;
/** A product of its own for the billing of stalled attempts: its day's usage is theirs alone. */
const BILLED = 'stall-billed';
/** US dollars per million tokens, a different price for each model: each attempt is priced at its own. */
const PRICES: Record<string, { input: number; output: number }> = {
  'gpt-4o': { input: 1000, output: 4000 },
  'gpt-4o-mini': { input: 100, output: 400 },
  [CLAUDE]: { input: 10, output: 40 },
};

let mock: MockUpstream;
let gw: Gateway;
let token: string;

beforeAll(async () => {
  mock = await startMock();
  const products = {
    stall: {
      providers: {
        openai: { api_key: 'sk-mock-stall', models: ['gpt-4o', 'gpt-4o-mini'], base_url: `${mock.url}/v1` },
        anthropic: { api_key: 'sk-ant-mock-stall', models: [CLAUDE], base_url: mock.url },
      },
    },
    'stall-limit': { providers: { openai: { api_key: 'sk-mock-stall-limit', models: ['gpt-4o-mini'], base_url: `${mock.url}/v1` } } },
    [BILLED]: {
      providers: {
        openai: { api_key: 'sk-mock-stall-billed', models: ['gpt-4o', 'gpt-4o-mini'], base_url: `${mock.url}/v1` },
        anthropic: { api_key: 'sk-ant-mock-stall-billed', models: [CLAUDE], base_url: mock.url },
      },
    },
  };
  const policy = [
    'prices:',
    ...Object.entries(PRICES).map(([model, price]) => `  ${model}: {input: ${price.input}, output: ${price.output}}`),
    'products:',
    '  stall:',
    `    fallbacks: {gpt-4o: [${CLAUDE}]}`,
    '  stall-limit:',
    `    policy: {max_stream_seconds: ${LIMIT_SECONDS}}`,
    `  ${BILLED}:`,
    `    fallbacks: {gpt-4o: [${CLAUDE}]}`,
    '',
  ].join('\n');
  gw = await startGateway({
    products,
    env: {
      API_KEY_SERVER_POLICY_FILE: writeTempFile('stall-policy.yaml', policy),
      API_KEY_SERVER_UPSTREAM_IDLE_TIMEOUT_MS: String(IDLE_TIMEOUT_MS),
      API_KEY_SERVER_UPSTREAM_TTFB_TIMEOUT_MS: String(TTFB_TIMEOUT_MS),
      API_KEY_SERVER_UPSTREAM_MAX_RETRIES: String(MAX_RETRIES),
      API_KEY_SERVER_UPSTREAM_RETRY_BASE_MS: '20',
      API_KEY_SERVER_SSE_KEEPALIVE_SECONDS: '1',
    },
  });
  token = mintToken({ product: 'stall', sub: 'stall-user' });
}, 45_000);

afterAll(async () => {
  await Promise.all([gw?.stop(), mock?.stop()]);
  cleanupTempFiles();
}, 30_000);

function user(text: string): ChatCompletionMessageParam[] {
  return [{ role: 'user', content: text }];
}

function textOf(chunks: ChatCompletionChunk[]): string {
  return chunks.map((c) => c.choices[0]?.delta?.content ?? '').join('');
}

function calls(before: MockStats, after: MockStats, route: MockRoute): number {
  return after.byRoute[route] - (before.byRoute[route] ?? 0);
}

/** Exactly one audit line for the request, matching `expected`. */
function expectOneAudit(id: string, expected: Partial<AuditRecord>): Promise<AuditRecord> {
  return expectOneAuditOn(gw, id, expected);
}

/**
 * A stream whose every attempt at gpt-4o fails with `directive` (each a stall) is answered by its
 * fallback, Claude: the client reads Claude's answer, the audit names it, the attempt log says why.
 */
async function expectFallbackAfterStalls(name: string, directive: string, failure: 'stalled' | 'ttfb_timeout'): Promise<void> {
  const id = uniqueId(name);
  const before = await mock.stats();
  const text = `stalls ${id}`;
  const stream = await gw
    .openai(token)
    .chat.completions.create(
      { model: 'gpt-4o', messages: user(`${text} [mock ${directive} fail_first=${1 + MAX_RETRIES}]`), stream: true },
      { headers: { 'X-Request-Id': id } },
    );
  const chunks: ChatCompletionChunk[] = [];
  for await (const chunk of stream) chunks.push(chunk);
  expect(textOf(chunks)).toBe(`Hello from mock anthropic! You said: ${text}`);
  const after = await mock.stats();
  expect([calls(before, after, 'openai.chat'), calls(before, after, 'anthropic.messages')]).toEqual([1 + MAX_RETRIES, 1]);
  await expectOneAudit(id, { status: 200, failure: null, stream: true, model: CLAUDE, provider: 'anthropic', attempts: 2 + MAX_RETRIES });
  expect(attemptLines(id)).toEqual([
    ['upstream attempt failed; retrying', failure],
    ['upstream attempt failed; trying the next fallback model', failure],
  ]);
}

/** The failed-attempt lines the gateway wrote for a request: outcome, failure kind. */
function attemptLines(id: string): Array<[unknown, unknown]> {
  return gw.proc.lines
    .filter((l) => l.json?.requestId === id && String(l.json.message).startsWith('upstream attempt failed'))
    .map((l) => [l.json?.message, l.json?.failure]);
}

describe('a stream that stalls after its head, before any content', () => {
  it('is retried once the client has the HTTP head: the SDK reads the whole answer of the retry, no error', async () => {
    const id = uniqueId('stall-retry');
    const before = await mock.stats();
    const stream = await gw.openai(token).chat.completions.create(
      {
        model: 'gpt-4o-mini',
        messages: user(`stall once ${id} [mock stall_after=0 fail_first=1]`),
        stream: true,
        stream_options: { include_usage: true },
      },
      { headers: { 'X-Request-Id': id } },
    );
    // The head came while the first attempt was still stalled (the retry comes only at its idle timeout).
    expect(calls(before, await mock.stats(), 'openai.chat')).toBe(1);
    const chunks: ChatCompletionChunk[] = [];
    for await (const chunk of stream) chunks.push(chunk);
    expect(textOf(chunks)).toBe(`Hello from mock openai! You said: stall once ${id}`);
    // One role chunk: the stalled attempt's head events never reached the client.
    expect(chunks.filter((c) => c.choices[0]?.delta?.role === 'assistant')).toHaveLength(1);
    const usage = chunks.at(-1)?.usage;
    expect(usage?.prompt_tokens).toBeGreaterThan(0);
    expect(calls(before, await mock.stats(), 'openai.chat')).toBe(2);
    const audit = await expectOneAudit(id, {
      status: 200,
      failure: null,
      stream: true,
      model: 'gpt-4o-mini',
      provider: 'openai',
      attempts: 2,
      tokens_out: usage?.completion_tokens,
    });
    // The answer's prompt, and the stalled attempt's (keygate's estimate: see 'bills each stalled attempt').
    expect(audit.tokens_in).toBeGreaterThan(usage?.prompt_tokens ?? Infinity);
    expect(attemptLines(id)).toEqual([['upstream attempt failed; retrying', 'stalled']]);
  }, 20_000);

  it('falls back when every attempt at the model stalls: the fallback answers, and the audit names it', async () => {
    await expectFallbackAfterStalls('stall-fallback', 'stall_after=0', 'stalled');
  }, 30_000);

  it('ends the stream with the error event when every attempt stalls: an APIError for the SDK, one audit line with the timeout', async () => {
    const id = uniqueId('stall-always');
    const before = await mock.stats();
    const { received, error } = await streamUntilError(
      gw.openai(token),
      { model: 'gpt-4o-mini', messages: user(`stall always ${id} [mock stall_after=0]`), stream: true },
      { 'X-Request-Id': id },
    );
    expect(received).toEqual([]);
    expect(error.code).toBe('upstream_timeout');
    expect(calls(before, await mock.stats(), 'openai.chat')).toBe(1 + MAX_RETRIES);
    const audit = await expectOneAudit(id, {
      status: 504,
      failure: 'timeout',
      stream: true,
      model: 'gpt-4o-mini',
      attempts: 1 + MAX_RETRIES,
    });
    // keygate cut the last attempt, which the upstream had begun to answer: its prompt is billed
    // (keygate's estimate: OpenAI reports no usage before the end).
    expect(audit.tokens_in).toBeGreaterThan(0);
    expect(attemptLines(id)).toEqual([
      ['upstream attempt failed; retrying', 'stalled'],
      ['upstream attempt failed; no retry or fallback left', 'stalled'],
    ]);
  }, 30_000);

  describe('bills each stalled attempt its prompt, as the last one is, whether a retry or a fallback answers', () => {
    const billed = (): string => mintToken({ product: BILLED, sub: 'stall-billed-user' });

    /** One stream of `messages` read to its end: its text and reported usage, and its audit line. */
    async function streamed(
      model: string,
      messages: ChatCompletionMessageParam[],
    ): Promise<{ text: string; usage?: ChatCompletionChunk['usage']; audit: AuditRecord }> {
      const id = uniqueId('stall-billed');
      const stream = await gw
        .openai(billed())
        .chat.completions.create(
          { model, messages, stream: true, stream_options: { include_usage: true } },
          { headers: { 'X-Request-Id': id } },
        );
      const chunks: ChatCompletionChunk[] = [];
      for await (const chunk of stream) chunks.push(chunk);
      const audit = await expectOneAudit(id, { status: 200, failure: null, stream: true, product: BILLED });
      return { text: textOf(chunks), usage: chunks.at(-1)?.usage, audit };
    }

    /** The day's tokens and cost of the BILLED product, as GET /admin/usage reports them. */
    async function usageOfDay(): Promise<{ tokens: number; cost: number }> {
      const admin = mintToken({ product: BILLED, sub: uniqueId('stall-admin'), extraClaims: { scope: 'keygate.admin' } });
      const res = await gw.fetch(`/admin/usage?product=${BILLED}`, { headers: { authorization: `Bearer ${admin}` } });
      expect(res.status).toBe(200);
      const body = (await res.json()) as { tokens: { total: number }; cost_usd: { total: number } };
      return { tokens: body.tokens.total, cost: body.cost_usd.total };
    }

    it('a retry answers: the stalled attempt adds keygate’s estimate of the prompt to the tokens, the cost and the day’s usage', async () => {
      const before = await usageOfDay();
      // The mock reports no usage (no_usage=1): the answer is billed keygate's estimate of the prompt too.
      const messages = user(`stall then answer ${uniqueId('billed-retry')} [mock stall_after=0 fail_first=1 no_usage=1]`);
      const retried = await streamed('gpt-4o-mini', messages);
      expect(retried.audit.attempts).toBe(2);
      // The same messages again, answered at once (fail_first spent): one attempt's bill.
      const once = await streamed('gpt-4o-mini', messages);
      expect(once.audit.attempts).toBe(1);
      expect(retried.text).toBe(once.text);
      const estimate = once.audit.tokens_in ?? 0;
      expect(estimate).toBeGreaterThan(0);
      expect(retried.audit).toMatchObject({ tokens_in: 2 * estimate, tokens_out: once.audit.tokens_out });
      expect(retried.audit.cost_usd).toBeCloseTo((once.audit.cost_usd ?? 0) + (estimate * PRICES['gpt-4o-mini'].input) / 1e6, 9);
      // The day's usage counts the line's tokens and cost.
      const lines = [retried.audit, once.audit];
      const expected = {
        tokens: before.tokens + lines.reduce((sum, l) => sum + (l.tokens_in ?? 0) + (l.tokens_out ?? 0), 0),
        cost: before.cost + lines.reduce((sum, l) => sum + (l.cost_usd ?? 0), 0),
      };
      await waitFor(
        'the day’s usage to count both requests',
        async () => (await usageOfDay()).tokens === expected.tokens || undefined,
        5_000,
      );
      const after = await usageOfDay();
      expect(after.cost).toBeCloseTo(expected.cost, 6);
    }, 30_000);

    it('a fallback answers: each stalled attempt at gpt-4o is billed its prompt at gpt-4o’s price, the answer at Claude’s', async () => {
      const messages = user(
        `stall then fall back ${uniqueId('billed-fallback')} [mock stall_after=0 fail_first=${1 + MAX_RETRIES} no_usage=1]`,
      );
      const fellBack = await streamed('gpt-4o', messages);
      expect(fellBack.audit).toMatchObject({ model: CLAUDE, provider: 'anthropic', attempts: 2 + MAX_RETRIES });
      const claude = fellBack.usage;
      expect(claude?.prompt_tokens).toBeGreaterThan(0);
      // keygate's estimate of the prompt at gpt-4o: the same messages, answered by gpt-4o at once (without usage).
      const once = await streamed('gpt-4o', messages);
      expect(once.audit).toMatchObject({ model: 'gpt-4o', attempts: 1 });
      const estimate = once.audit.tokens_in ?? 0;
      const stalled = 1 + MAX_RETRIES;
      expect(fellBack.audit).toMatchObject({
        tokens_in: stalled * estimate + (claude?.prompt_tokens ?? 0),
        tokens_out: claude?.completion_tokens,
      });
      const cost =
        (stalled * estimate * PRICES['gpt-4o'].input +
          (claude?.prompt_tokens ?? 0) * PRICES[CLAUDE].input +
          (claude?.completion_tokens ?? 0) * PRICES[CLAUDE].output) /
        1e6;
      expect(fellBack.audit.cost_usd).toBeCloseTo(cost, 9);
    }, 30_000);
  });

  it('cancels the upstream request of a client that leaves while keygate waits after the head: one audit line, 499', async () => {
    const id = uniqueId('stall-leave');
    const before = await mock.stats();
    const abort = new AbortController();
    const { response } = await gw
      .openai(token)
      .chat.completions.create(
        { model: 'gpt-4o-mini', messages: user(`stall and leave ${id} [mock stall_after=0]`), stream: true },
        { headers: { 'X-Request-Id': id }, signal: abort.signal },
      )
      .withResponse();
    expect([response.status, response.headers.get('content-type')]).toEqual([200, 'text/event-stream; charset=utf-8']);
    // The client leaves with nothing but the head read, while keygate waits for the stalled attempt.
    abort.abort();
    const after = await waitFor('the mock to see its request cancelled', async () => {
      const stats = await mock.stats();
      return stats.aborted > before.aborted ? stats : undefined;
    });
    expect(after.aborted - before.aborted).toBe(1);
    expect(calls(before, after, 'openai.chat')).toBe(1);
    await expectOneAudit(id, { status: 499, failure: 'client_abort', stream: true, attempts: 1 });
  }, 20_000);

  it('keeps the waiting client alive with SSE comments, and ends the wait at max_stream_seconds, counted from the head, with the stream_timeout event', async () => {
    const id = uniqueId('stall-limit');
    const before = await mock.stats();
    // The head at 2 s, comments every second, the first attempt's idle timeout at 3 s, its retry's
    // at 6 s: the limit (2 + 3 s) ends the retry's wait.
    const response = await gw
      .openai(mintToken({ product: 'stall-limit', sub: 'stall-user' }))
      .chat.completions.create(
        { model: 'gpt-4o-mini', messages: user(`stall past the limit ${id} [mock stall_after=0]`), stream: true },
        { headers: { 'X-Request-Id': id } },
      )
      .asResponse();
    expect(response.status).toBe(200);
    const frames = (await response.text()).split('\n\n').filter((frame) => frame !== '');
    // Comments only, then the error event: no event of either attempt (no role chunk) went out.
    const last = frames.pop();
    expect(frames.length).toBeGreaterThan(0);
    expect(new Set(frames)).toEqual(new Set([': keep-alive']));
    expect(JSON.parse(String(last?.replace(/^data: /, '')))).toMatchObject({
      error: { code: 'stream_timeout', message: `the stream exceeded this product's limit of ${LIMIT_SECONDS} seconds` },
    });
    expect(calls(before, await mock.stats(), 'openai.chat')).toBe(2);
    await expectOneAudit(id, { status: 504, failure: 'policy', stream: true, model: 'gpt-4o-mini', attempts: 2 });
  }, 20_000);
});

describe('a stream whose upstream sends no response headers within the TTFB timeout', () => {
  it('is retried, and falls back: a stream’s headers normally come before the model writes', async () => {
    // Every attempt at gpt-4o hangs before its headers; the fallback answers.
    await expectFallbackAfterStalls('ttfb-stream', 'delay_ms=60000', 'ttfb_timeout');
  }, 20_000);

  it('answers 504 upstream_timeout as JSON when every attempt hangs (no head went out), billed nothing (nothing was answered)', async () => {
    const id = uniqueId('ttfb-stream-always');
    const before = await mock.stats();
    const error = await apiError(
      gw
        .openai(token)
        .chat.completions.create(
          { model: 'gpt-4o-mini', messages: user(`never any headers ${id} [mock delay_ms=60000]`), stream: true },
          { headers: { 'X-Request-Id': id }, maxRetries: 0 },
        ),
    );
    expect([error.status, error.code]).toEqual([504, 'upstream_timeout']);
    expect(calls(before, await mock.stats(), 'openai.chat')).toBe(1 + MAX_RETRIES);
    const audit = await expectOneAudit(id, {
      status: 504,
      failure: 'timeout',
      stream: true,
      model: 'gpt-4o-mini',
      attempts: 1 + MAX_RETRIES,
    });
    expect(audit.tokens_in).toBeNull();
  }, 20_000);

  it('is not retried for a whole (non-streamed) answer, whose headers come with the finished answer', async () => {
    const id = uniqueId('ttfb-whole');
    const before = await mock.stats();
    const error = await apiError(
      gw
        .openai(token)
        .chat.completions.create(
          { model: 'gpt-4o-mini', messages: user(`whole, no headers ${id} [mock delay_ms=60000]`) },
          { headers: { 'X-Request-Id': id }, maxRetries: 0 },
        ),
    );
    expect([error.status, error.code]).toEqual([504, 'upstream_timeout']);
    expect(calls(before, await mock.stats(), 'openai.chat')).toBe(1);
    const audit = await expectOneAudit(id, { status: 504, failure: 'timeout', stream: false, attempts: 1 });
    // The model was writing the answer when keygate cut it (see the stream case above): its prompt is billed.
    expect(audit.tokens_in).toBeGreaterThan(0);
    expect(attemptLines(id)).toEqual([['upstream attempt failed; no retry or fallback left', 'ttfb_timeout']]);
  }, 20_000);

  it('tells the SDKs not to retry a whole answer cut so (x-should-retry: false): the Anthropic SDK, at its default two retries, calls once', async () => {
    const id = uniqueId('ttfb-whole-sdk');
    const before = await mock.stats();
    let error: unknown;
    try {
      await gw
        .anthropic(token)
        .messages.create(
          { model: CLAUDE, max_tokens: 64, messages: [{ role: 'user', content: `whole, no headers ${id} [mock delay_ms=60000]` }] },
          { headers: { 'X-Request-Id': id }, maxRetries: 2 },
        );
    } catch (caught) {
      error = caught;
    }
    // Each retry would have had Claude generate the whole answer again, to be cut at the same point.
    expect(error).toBeInstanceOf(Anthropic.APIError);
    expect(error).toMatchObject({ status: 504, error: { type: 'error', error: { type: 'timeout_error', code: 'upstream_timeout' } } });
    expect((error as InstanceType<typeof Anthropic.APIError>).headers?.get('x-should-retry')).toBe('false');
    expect(calls(before, await mock.stats(), 'anthropic.messages')).toBe(1);
    await expectOneAudit(id, { status: 504, failure: 'timeout', stream: false, attempts: 1 });
  }, 20_000);
});

describe('a stream whose host leaves out its closing marker and holds the connection open', () => {
  it.each([
    ['gpt-4o-mini', 'openai.chat' as const, 'openai'],
    [CLAUDE, 'anthropic.messages' as const, 'anthropic'],
  ])(
    '%s: the whole answer ends at the idle timeout after every choice finished, as if [DONE] had come, not with an error',
    async (model, route, provider) => {
      const id = uniqueId('held-open');
      const before = await mock.stats();
      const text = `held open ${id}`;
      const stream = await gw
        .openai(token)
        .chat.completions.create(
          { model, messages: user(`${text} [mock no_done=1 hold_after_end_ms=20000 chunks=3]`), stream: true },
          { headers: { 'X-Request-Id': id } },
        );
      const chunks: ChatCompletionChunk[] = [];
      for await (const chunk of stream) chunks.push(chunk);
      expect(textOf(chunks)).toBe(`Hello from mock ${provider}! You said: ${text}`);
      expect(chunks.at(-1)?.choices[0]?.finish_reason).toBe('stop');
      expect(calls(before, await mock.stats(), route)).toBe(1);
      const audit = await expectOneAudit(id, { status: 200, failure: null, stream: true, model, attempts: 1 });
      expect(audit.tokens_out).toBeGreaterThan(0);
    },
    20_000,
  );
});
