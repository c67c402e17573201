/**
 * A request cut at the upstream total timeout, black box: the built gateway and mock upstream as
 * real processes, driven with the official `openai` SDK. The upstream had taken the request (its
 * TTFB and idle timeouts, far longer here, never fire), so it is billed its prompt at keygate's
 * estimate, as README's "Retries" section says, whether the answer was whole or streamed; a stream
 * whose response headers had not come is billed nothing, as at its header timeout.
 */
import { apiError, cleanupTempFiles, mintToken, startGateway, startMock, writeTempFile, type Gateway, type MockUpstream } from './harness';
import { expectOneAuditOn, rid } from './provider-fixtures';

/** The policy's streams end within it (a total timeout below the longest `max_stream_seconds` is refused at boot). */
const TOTAL_TIMEOUT_MS = 1_000;

const EMBEDDING_MODEL = 'text-embedding-3-small';
const GEMINI_EMBEDDING_MODEL = 'text-embedding-004';

let mock: MockUpstream;
let gw: Gateway;
let token: string;

beforeAll(async () => {
  mock = await startMock();
  gw = await startGateway({
    products: {
      demo: {
        providers: {
          openai: { api_key: 'sk-mock-demo', models: ['gpt-4o', EMBEDDING_MODEL], base_url: `${mock.url}/v1` },
          gemini: { api_key: 'AIza-mock-demo', models: [GEMINI_EMBEDDING_MODEL], base_url: mock.url },
        },
      },
    },
    env: {
      API_KEY_SERVER_POLICY_FILE: writeTempFile('total-timeout-policy.yaml', 'defaults:\n  policy: {max_stream_seconds: 1}\n'),
      API_KEY_SERVER_UPSTREAM_TOTAL_TIMEOUT_MS: String(TOTAL_TIMEOUT_MS),
      API_KEY_SERVER_UPSTREAM_TTFB_TIMEOUT_MS: '20000',
      API_KEY_SERVER_UPSTREAM_IDLE_TIMEOUT_MS: '20000',
    },
  });
  token = mintToken();
}, 45_000);

afterAll(async () => {
  await Promise.all([gw?.stop(), mock?.stop()]);
  cleanupTempFiles();
}, 30_000);

describe('a request cut at the upstream total timeout', () => {
  it('bills a whole answer its prompt at keygate’s estimate', async () => {
    const { id, headers } = rid('total-whole');
    const error = await apiError(
      gw
        .openai(token)
        .chat.completions.create(
          { model: 'gpt-4o', messages: [{ role: 'user', content: 'a long answer [mock delay_ms=3000]' }] },
          { headers, maxRetries: 0 },
        ),
    );
    expect([error.status, error.code]).toEqual([504, 'upstream_timeout']);
    const line = await expectOneAuditOn(gw, id, { status: 504, failure: 'timeout', stream: false });
    expect(line.tokens_in).toBeGreaterThan(0);
  });

  it('bills a stream cut before its first content its prompt at keygate’s estimate', async () => {
    const { id, headers } = rid('total-stream');
    const error = await apiError(
      gw
        .openai(token)
        .chat.completions.create(
          { model: 'gpt-4o', messages: [{ role: 'user', content: 'a slow thinker [mock stall_after=0]' }], stream: true },
          { headers, maxRetries: 0 },
        ),
    );
    expect([error.status, error.code]).toEqual([504, 'upstream_timeout']);
    const line = await expectOneAuditOn(gw, id, { status: 504, failure: 'timeout', stream: true });
    expect(line.tokens_in).toBeGreaterThan(0);
  });

  it('bills nothing for a stream whose response headers had not come, as at its header timeout (nothing was answered)', async () => {
    const { id, headers } = rid('total-stream-headers');
    const error = await apiError(
      gw
        .openai(token)
        .chat.completions.create(
          { model: 'gpt-4o', messages: [{ role: 'user', content: 'a host that hangs [mock delay_ms=3000]' }], stream: true },
          { headers, maxRetries: 0 },
        ),
    );
    expect([error.status, error.code]).toEqual([504, 'upstream_timeout']);
    const line = await expectOneAuditOn(gw, id, { status: 504, failure: 'timeout', stream: true, attempts: 1 });
    expect([line.tokens_in, line.tokens_out]).toEqual([null, null]);
  });

  it('bills an OpenAI embeddings call its input at keygate’s estimate, as a Gemini batch cut so is', async () => {
    const { id, headers } = rid('total-embed');
    const error = await apiError(
      gw
        .openai(token)
        .embeddings.create({ model: EMBEDDING_MODEL, input: 'slow vectors [mock delay_ms=3000]' }, { headers, maxRetries: 0 }),
    );
    expect([error.status, error.code]).toEqual([504, 'upstream_timeout']);
    const line = await expectOneAuditOn(gw, id, { status: 504, failure: 'timeout', model: EMBEDDING_MODEL });
    expect(line.tokens_in).toBeGreaterThan(0);
    expect(line.tokens_out).toBe(0);
  });

  it('bills Gemini’s own embedContent its input at keygate’s estimate', async () => {
    const { id, headers } = rid('total-embed-gemini');
    const res = await gw.fetch(`/v1beta/models/${GEMINI_EMBEDDING_MODEL}:embedContent`, {
      method: 'POST',
      headers: { ...headers, 'x-goog-api-key': token, 'content-type': 'application/json' },
      body: JSON.stringify({ content: { parts: [{ text: 'slow vectors [mock delay_ms=3000]' }] } }),
    });
    expect(res.status).toBe(504);
    const line = await expectOneAuditOn(gw, id, { status: 504, failure: 'timeout', model: GEMINI_EMBEDDING_MODEL });
    expect(line.tokens_in).toBeGreaterThan(0);
    expect(line.tokens_out).toBe(0);
  });
});
