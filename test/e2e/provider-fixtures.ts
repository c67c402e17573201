/**
 * Fixtures for the provider e2e suite (`providers.e2e-spec.ts`): products and policy, tool
 * declarations, a tiny image, base64 embedding decoding, and a scriptable failing upstream.
 *
 * Why a second upstream: the mock's `[mock ...]` directives live in the last user message and
 * have no per-provider scoping (no `openai_status=503`), and the gateway forwards only the body,
 * never the client's `x-mock-*` headers. A fallback attempt carries the same prompt, so a
 * directive that fails the primary fails the fallback too. {@link FlakyUpstream} fails on demand
 * whatever the body says, counts every request with its arrival time, and lets the fallback land
 * on the real mock.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { ChatCompletionTool } from 'openai/resources/chat/completions';
import {
  cleanupTempFiles,
  freePort,
  HOST,
  startGateway,
  startMock,
  uniqueId,
  writeTempFile,
  type AuditRecord,
  type Gateway,
  type MockRoute,
  type MockStats,
  type MockUpstream,
} from './harness';

// ---------------------------------------------------------------------------------------------
// Models and providers under test
// ---------------------------------------------------------------------------------------------

export const OPENAI_MODEL = 'gpt-4o';
export const ANTHROPIC_MODEL = 'claude-3-5-sonnet-20241022';
/** The Claude models product `claudes` names exactly, in its configuration's order. */
export const CLAUDE_LIST = [ANTHROPIC_MODEL, 'claude-sonnet-4-5', 'claude-haiku-4-5'] as const;
/** Models that reason (take `reasoning_effort`), for fallbacks to models that do not. */
export const OPENAI_REASONING_MODEL = 'o4-mini';
export const CLAUDE_THINKING_MODEL = 'claude-sonnet-4-5';
export const GEMINI_MODEL = 'gemini-1.5-pro';
/** A Gemini 2.5 model: it thinks by budget and, like Gemini 3, refuses penalties. */
export const GEMINI_25_MODEL = 'gemini-2.5-flash';
/** A Gemini 3 model: the mock gives its function calls ids and checks them on the responses. */
export const GEMINI_3_MODEL = 'gemini-3-pro-preview';
export const OPENAI_EMBEDDING_MODEL = 'text-embedding-3-small';
export const GEMINI_EMBEDDING_MODEL = 'text-embedding-004';
/** Dimensions the mock gives `text-embedding-004` (its non-`gemini-embedding` default). */
export const GEMINI_EMBEDDING_DIMS = 768;

/** One translated provider, as the parameterised chat tests see it. */
export interface TranslatedProvider {
  provider: 'anthropic' | 'gemini';
  model: string;
  /** Mock route of a plain call. */
  route: MockRoute;
  /** Mock route of a streamed call. */
  streamRoute: MockRoute;
}

export const TRANSLATED_PROVIDERS: readonly TranslatedProvider[] = [
  { provider: 'anthropic', model: ANTHROPIC_MODEL, route: 'anthropic.messages', streamRoute: 'anthropic.messages' },
  { provider: 'gemini', model: GEMINI_MODEL, route: 'gemini.generateContent', streamRoute: 'gemini.streamGenerateContent' },
];

/** What the mock answers a plain user turn with (`replyText` in the mock). */
export function mockReply(provider: 'openai' | 'anthropic' | 'gemini', userText: string): string {
  return `Hello from mock ${provider}! You said: ${userText}`;
}

// ---------------------------------------------------------------------------------------------
// Products and policy
// ---------------------------------------------------------------------------------------------

export interface ProductUrls {
  /** The bundled mock upstream. */
  mock: string;
  /** The scriptable failing upstream. */
  flaky: string;
  /** A port nobody listens on (connect errors). */
  closedPort: number;
}

/**
 * - `prov`: every provider on the mock (chat and embeddings); `gpt-4o` falls back to Claude.
 * - `flaky`: OpenAI on the failing upstream, Claude and Gemini on the mock; `gpt-4o` and `o4-mini` → Claude 3.5.
 * - `flaky2`: Anthropic on the failing upstream, Gemini on the mock; Claude → Gemini.
 * - `flaky3`: Anthropic on the failing upstream, OpenAI on the mock; Claude 3.5 and Sonnet 4.5 → `gpt-4o`.
 * - `flaky4`: Gemini on the failing upstream, OpenAI on the mock; Gemini → `gpt-4o`.
 * - `flakyalone`: OpenAI on the failing upstream, no fallbacks.
 * - `deadend`: OpenAI on a closed port, Claude on the mock; `gpt-4o` → Claude.
 * - `guarded`: like `prov`, with a policy refusing `service_tier`, `mcp_*`, server tools `web_search*` and betas `context-1m*`.
 * - `traced`: like `prov`, with `end_user_id` on (each request names its caller to the provider).
 * - `tinycap`: OpenAI on the mock, with a `max_tokens` cap of 8, below the Responses API's minimum `max_output_tokens` (16).
 * - `thinkers`: Claude on the mock; a thinking model falls back to one that does not think (Claude Sonnet 4.5 → Claude 3.5).
 */
export function providerProducts(urls: ProductUrls): Record<string, unknown> {
  const openaiOnMock = {
    api_key: 'sk-mock-prov',
    models: [OPENAI_MODEL, 'gpt-4o-mini', OPENAI_EMBEDDING_MODEL],
    base_url: `${urls.mock}/v1`,
  };
  const anthropicOnMock = { api_key: 'sk-ant-mock-prov', models: [ANTHROPIC_MODEL], base_url: urls.mock };
  const geminiOnMock = {
    api_key: 'AIza-mock-prov',
    models: [GEMINI_MODEL, GEMINI_25_MODEL, GEMINI_3_MODEL, GEMINI_EMBEDDING_MODEL],
    base_url: urls.mock,
  };
  return {
    prov: { providers: { openai: openaiOnMock, anthropic: anthropicOnMock, gemini: geminiOnMock } },
    guarded: { providers: { openai: openaiOnMock, anthropic: anthropicOnMock, gemini: geminiOnMock } },
    traced: { providers: { openai: openaiOnMock, anthropic: anthropicOnMock, gemini: geminiOnMock } },
    tinycap: { providers: { openai: openaiOnMock } },
    thinkers: { providers: { anthropic: { ...anthropicOnMock, models: [ANTHROPIC_MODEL, CLAUDE_THINKING_MODEL] } } },
    // Three Claude models by name and a pattern, beside other providers': Anthropic's model list pages.
    claudes: {
      providers: {
        openai: openaiOnMock,
        anthropic: { ...anthropicOnMock, models: [...CLAUDE_LIST, 'claude-opus-*'] },
        gemini: geminiOnMock,
      },
    },
    flaky: {
      providers: {
        openai: { api_key: 'sk-mock-flaky', models: [OPENAI_MODEL, OPENAI_REASONING_MODEL], base_url: `${urls.flaky}/v1` },
        anthropic: anthropicOnMock,
        gemini: geminiOnMock,
      },
    },
    flaky2: {
      providers: {
        anthropic: { api_key: 'sk-ant-mock-flaky2', models: [ANTHROPIC_MODEL], base_url: urls.flaky },
        gemini: geminiOnMock,
      },
    },
    flaky3: {
      providers: {
        anthropic: { api_key: 'sk-ant-mock-flaky3', models: [ANTHROPIC_MODEL, CLAUDE_THINKING_MODEL], base_url: urls.flaky },
        openai: openaiOnMock,
      },
    },
    flaky4: {
      providers: {
        gemini: { api_key: 'AIza-mock-flaky4', models: [GEMINI_MODEL], base_url: urls.flaky },
        openai: openaiOnMock,
      },
    },
    flakyalone: {
      providers: {
        openai: { api_key: 'sk-mock-flakyalone', models: [OPENAI_MODEL, OPENAI_EMBEDDING_MODEL], base_url: `${urls.flaky}/v1` },
      },
    },
    deadend: {
      providers: {
        openai: { api_key: 'sk-mock-deadend', models: [OPENAI_MODEL], base_url: `http://${HOST}:${urls.closedPort}/v1` },
        anthropic: anthropicOnMock,
      },
    },
  };
}

/** The `tinycap` product's completion-token cap: below the Responses API's minimum `max_output_tokens` (16). */
export const TINY_CAP = 8;

/** Generous limits (this suite is not about them), the fallbacks of {@link providerProducts}. */
export function providerPolicyYaml(): string {
  return [
    // Dollars per million tokens, for the audit's cost_usd (Gemini's models have none).
    'prices:',
    `  ${OPENAI_MODEL}: {input: 2.5, cached_input: 1.25, output: 10}`,
    "  'claude-3-5-*': {input: 3, cached_input: 0.3, cache_write: 3.75, cache_write_1h: 6, output: 15}",
    'defaults:',
    '  limits:',
    '    requests_per_second: 100000',
    '    user_requests_per_second: 100000',
    '    daily_requests: 10000000',
    '    user_daily_requests: 10000000',
    '    daily_tokens: 1000000000',
    '    user_daily_tokens: 1000000000',
    'products:',
    '  prov:',
    `    fallbacks: {${OPENAI_MODEL}: [${ANTHROPIC_MODEL}]}`,
    '  flaky:',
    `    fallbacks: {${OPENAI_MODEL}: [${ANTHROPIC_MODEL}], ${OPENAI_REASONING_MODEL}: [${ANTHROPIC_MODEL}]}`,
    '  flaky2:',
    `    fallbacks: {${ANTHROPIC_MODEL}: [${GEMINI_MODEL}]}`,
    '  flaky3:',
    `    fallbacks: {${ANTHROPIC_MODEL}: [${OPENAI_MODEL}], ${CLAUDE_THINKING_MODEL}: [${OPENAI_MODEL}]}`,
    '  flaky4:',
    `    fallbacks: {${GEMINI_MODEL}: [${OPENAI_MODEL}]}`,
    '  deadend:',
    `    fallbacks: {${OPENAI_MODEL}: [${ANTHROPIC_MODEL}]}`,
    '  guarded:',
    "    policy: {refused_fields: [service_tier, 'mcp_*'], refused_tools: ['web_search*'], refused_betas: ['context-1m*']}",
    '  traced:',
    '    policy: {end_user_id: true}',
    '  tinycap:',
    `    policy: {max_tokens: ${TINY_CAP}}`,
    '  thinkers:',
    `    fallbacks: {${CLAUDE_THINKING_MODEL}: [${ANTHROPIC_MODEL}]}`,
    '',
  ].join('\n');
}

// ---------------------------------------------------------------------------------------------
// Request material
// ---------------------------------------------------------------------------------------------

export const WEATHER_TOOL: ChatCompletionTool = {
  type: 'function',
  function: {
    name: 'get_weather',
    description: 'Current weather for a city',
    parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] },
  },
};

export const TIME_TOOL: ChatCompletionTool = {
  type: 'function',
  function: {
    name: 'get_time',
    description: 'Local time in a city',
    parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] },
  },
};

/** A 1×1 transparent PNG. */
export const TINY_PNG_BASE64 = 'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==';
export const TINY_PNG_DATA_URL = `data:image/png;base64,${TINY_PNG_BASE64}`;

/** OpenAI's base64 embedding encoding: little-endian float32s. */
export function decodeFloat32Base64(base64: string): number[] {
  const bytes = Buffer.from(base64, 'base64');
  if (bytes.length % 4 !== 0) throw new Error(`base64 embedding has ${bytes.length} bytes, not a multiple of 4`);
  const out: number[] = [];
  for (let i = 0; i < bytes.length; i += 4) out.push(bytes.readFloatLE(i));
  return out;
}

// ---------------------------------------------------------------------------------------------
// The failing upstream
// ---------------------------------------------------------------------------------------------

export interface FlakyBehaviour {
  /** HTTP status of every answer. */
  status: number;
  /** `Retry-After` seconds, when set. */
  retryAfter?: number;
  /**
   * On a streamed chat request: answer 200 and an SSE stream whose first event (after the role
   * chunk, before any content) is this error object, as OpenAI sends one (`data: {"error": …}`).
   */
  streamError?: { type: string; code: string | null };
  /** On a streamed chat request: answer 200 and an SSE stream that ends at once, cleanly, with no event. */
  emptyStream?: boolean;
  /** On a streamed chat request: answer 200 with a whole JSON completion, as a host that ignores `stream: true` does. */
  wholeAnswer?: boolean;
  /**
   * On a chat request: answer 200 with a one-word completion (plain, or streamed with a usage
   * chunk), on an embeddings request one vector, whose `usage` is this object as written, as a
   * careless OpenAI-compatible host may send it.
   */
  usage?: Record<string, unknown>;
}

export interface FlakyHit {
  path: string;
  /** `Date.now()` when the request arrived. */
  at: number;
  /** The request's JSON body, once it was read (undefined until then, or when it is not JSON). */
  body?: unknown;
}

/**
 * A one-trick upstream on 127.0.0.1: answers every POST with the configured error status, in
 * OpenAI's error shape (Anthropic's on `/v1/messages`), after reading the whole body. Every
 * request is counted with its arrival time, so retry waits can be measured from the upstream side.
 */
export class FlakyUpstream {
  readonly hits: FlakyHit[] = [];
  behaviour: FlakyBehaviour = { status: 503 };

  private constructor(
    private readonly server: Server,
    readonly port: number,
  ) {}

  static async start(): Promise<FlakyUpstream> {
    const handler: { answer?: (req: IncomingMessage, res: ServerResponse) => void } = {};
    const server = createServer((req, res) => handler.answer?.(req, res));
    await new Promise<void>((done, fail) => {
      server.once('error', fail);
      server.listen(0, HOST, () => done());
    });
    const self = new FlakyUpstream(server, (server.address() as AddressInfo).port);
    handler.answer = (req, res) => self.answer(req, res);
    return self;
  }

  get url(): string {
    return `http://${HOST}:${this.port}`;
  }

  /** Sets the behaviour for what follows and forgets earlier hits. */
  script(behaviour: FlakyBehaviour): void {
    this.behaviour = behaviour;
    this.hits.length = 0;
  }

  count(path: string): number {
    return this.hits.filter((h) => h.path === path).length;
  }

  /** Milliseconds between consecutive hits. */
  gaps(): number[] {
    return this.hits.slice(1).map((h, i) => h.at - this.hits[i].at);
  }

  close(): Promise<void> {
    this.server.closeAllConnections();
    return new Promise((done) => this.server.close(() => done()));
  }

  private answer(req: IncomingMessage, res: ServerResponse): void {
    const path = (req.url ?? '/').split('?')[0];
    const hit: FlakyHit = { path, at: Date.now() };
    this.hits.push(hit);
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.once('end', () => {
      try {
        hit.body = JSON.parse(Buffer.concat(chunks).toString());
      } catch {
        // not JSON: left undefined
      }
      const { status, retryAfter, streamError, emptyStream, wholeAnswer, usage } = this.behaviour;
      const streamed = path === '/v1/chat/completions' && /"stream"\s*:\s*true/.test(Buffer.concat(chunks).toString());
      if (usage && path === '/v1/embeddings') {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ object: 'list', data: [{ object: 'embedding', index: 0, embedding: [0.5, -0.5] }], model: 'x', usage }));
        return;
      }
      if (usage && path === '/v1/chat/completions') {
        const head = { id: 'chatcmpl-flaky', created: 0, model: 'gpt-4o' };
        if (!streamed) {
          const message = { role: 'assistant', content: 'Hello', refusal: null };
          res.writeHead(200, { 'content-type': 'application/json' });
          res.end(JSON.stringify({ ...head, object: 'chat.completion', choices: [{ index: 0, message, finish_reason: 'stop' }], usage }));
          return;
        }
        const chunk = (choices: unknown[], chunkUsage: unknown): string =>
          `data: ${JSON.stringify({ ...head, object: 'chat.completion.chunk', choices, usage: chunkUsage })}\n\n`;
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        res.end(
          chunk([{ index: 0, delta: { role: 'assistant', content: 'Hello' }, finish_reason: null }], null) +
            chunk([{ index: 0, delta: {}, finish_reason: 'stop' }], null) +
            chunk([], usage) +
            'data: [DONE]\n\n',
        );
        return;
      }
      if (wholeAnswer && streamed) {
        const message = { role: 'assistant', content: 'Hello', refusal: null };
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(
          JSON.stringify({
            id: 'chatcmpl-flaky',
            object: 'chat.completion',
            created: 0,
            model: 'gpt-4o',
            choices: [{ index: 0, message, finish_reason: 'stop' }],
          }),
        );
        return;
      }
      if (emptyStream && streamed) {
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        res.end();
        return;
      }
      if (streamError && streamed) {
        const role = {
          id: 'chatcmpl-flaky',
          object: 'chat.completion.chunk',
          created: 0,
          model: 'gpt-4o-mini',
          choices: [{ index: 0, delta: { role: 'assistant', content: '' }, finish_reason: null }],
        };
        const error = { error: { message: `flaky upstream streams ${streamError.type}`, ...streamError, param: null } };
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        res.end(`data: ${JSON.stringify(role)}\n\ndata: ${JSON.stringify(error)}\n\n`);
        return;
      }
      const message = `flaky upstream answers ${status}`;
      const body =
        path === '/v1/messages'
          ? { type: 'error', error: { type: status === 429 ? 'rate_limit_error' : 'api_error', message } }
          : { error: { message, type: status === 429 ? 'rate_limit_error' : 'server_error', code: null, param: null } };
      const headers: Record<string, string> = { 'content-type': 'application/json' };
      if (retryAfter !== undefined) headers['retry-after'] = String(retryAfter);
      res.writeHead(status, headers);
      res.end(JSON.stringify(body));
    });
  }
}

// ---------------------------------------------------------------------------------------------
// The suites' processes and bookkeeping (providers and messages)
// ---------------------------------------------------------------------------------------------

/** The mock upstream, the failing upstream, and a gateway serving {@link providerProducts} under {@link providerPolicyYaml}. */
export interface ProviderStack {
  mock: MockUpstream;
  flaky: FlakyUpstream;
  gw: Gateway;
}

/** Starts a {@link ProviderStack}; `maxRetries` per model, 20 ms backoff base, and any extra variables. */
export async function startProviderStack(maxRetries: number, env: Record<string, string> = {}): Promise<ProviderStack> {
  const [mock, flaky] = await Promise.all([startMock(), FlakyUpstream.start()]);
  const closedPort = await freePort();
  const gw = await startGateway({
    products: providerProducts({ mock: mock.url, flaky: flaky.url, closedPort }),
    env: {
      API_KEY_SERVER_POLICY_FILE: writeTempFile('policy.yaml', providerPolicyYaml()),
      API_KEY_SERVER_UPSTREAM_MAX_RETRIES: String(maxRetries),
      API_KEY_SERVER_UPSTREAM_RETRY_BASE_MS: '20',
      API_KEY_SERVER_UPSTREAM_RETRY_MAX_MS: '5000',
      ...env,
    },
  });
  return { mock, flaky, gw };
}

export async function stopProviderStack(stack: Partial<ProviderStack>): Promise<void> {
  await Promise.all([stack.gw?.stop(), stack.mock?.stop(), stack.flaky?.close()]);
}

/** A spec file's {@link ProviderStack} and the two checks its cases share. */
export interface ProviderSuite {
  /** The running stack (after the suite's `beforeAll`). */
  stack(): ProviderStack;
  /** Runs `action` and reports the mock routes that received requests meanwhile (those that moved). */
  counting<T>(action: () => Promise<T>): Promise<{ result: T; moved: Partial<RouteDelta>; after: MockStats }>;
  /** The request's one audit line, checked against `expected`. */
  expectOneAudit(requestId: string, expected: Partial<AuditRecord> & Record<string, unknown>): Promise<AuditRecord>;
}

/**
 * Starts a {@link ProviderStack} before the spec file's tests (a `beforeAll` registered where this
 * is called, so it runs before the file's own) and stops it, and the temp files, after them.
 */
export function useProviderStack(maxRetries: number): ProviderSuite {
  let running: ProviderStack | undefined;
  beforeAll(async () => {
    running = await startProviderStack(maxRetries);
  }, 45_000);
  afterAll(async () => {
    await stopProviderStack(running ?? {});
    cleanupTempFiles();
  }, 30_000);
  const stack = (): ProviderStack => {
    if (!running) throw new Error('the provider stack has not started');
    return running;
  };
  return {
    stack,
    counting: async <T>(action: () => Promise<T>) => {
      const { result, delta, after } = await countingUpstream(stack().mock, action);
      return { result, moved: moved(delta), after };
    },
    expectOneAudit: (requestId, expected) => expectOneAuditOn(stack().gw, requestId, expected),
  };
}

export type RouteDelta = Record<MockRoute, number>;

/** Runs `action` and reports how many requests each mock route received meanwhile. */
export async function countingUpstream<T>(
  mock: MockUpstream,
  action: () => Promise<T>,
): Promise<{ result: T; delta: RouteDelta; total: number; after: MockStats }> {
  const before = await mock.stats();
  const result = await action();
  const after = await mock.stats();
  const delta = {} as RouteDelta;
  for (const route of Object.keys(after.byRoute) as MockRoute[]) delta[route] = after.byRoute[route] - (before.byRoute[route] ?? 0);
  return { result, delta, total: after.total - before.total, after };
}

/** Only the routes that moved, so a failing expectation shows every unexpected call at once. */
export function moved(delta: RouteDelta): Partial<RouteDelta> {
  const out: Partial<RouteDelta> = {};
  for (const [route, n] of Object.entries(delta) as Array<[MockRoute, number]>) if (n !== 0) out[route] = n;
  return out;
}

/** Exactly one audit line for `requestId` on `gw`, matching `expected`. */
export async function expectOneAuditOn(
  gw: Gateway,
  requestId: string,
  expected: Partial<AuditRecord> & Record<string, unknown>,
): Promise<AuditRecord> {
  const record = await gw.waitForAudit(requestId);
  expect(gw.auditsFor(requestId)).toHaveLength(1);
  expect(record).toMatchObject(expected);
  return record;
}

/** A request id for `label`, and the header that sends it. */
export function rid(label: string): { id: string; headers: Record<string, string> } {
  const id = uniqueId(label);
  return { id, headers: { 'X-Request-Id': id } };
}
