import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { anthropicHandler } from './anthropic.handler';
import { forgetThread } from './anthropic.threads';
import { FailureCounter, resolveDirectives } from './mock.directives';
import { Exchange, type ProviderHandler } from './mock.exchange';
import { MockStats, type RouteName } from './mock.stats';
import { geminiHandler } from './gemini.handler';
import { openaiHandler } from './openai.handler';
import { OpenAICompactHandler, OpenAIInputTokensHandler } from './openai.responses.compact';
import { OpenAIResponsesHandler } from './openai.responses.handler';
import { OpenAIStoredResponsesHandler, ResponseStore } from './openai.responses.store';

export interface MockServerOptions {
  /** Accept any non-empty key instead of only the `sk-mock` / `sk-ant-mock` / `AIza-mock` prefixes. */
  acceptAnyKey?: boolean;
  /** Inject a stats store (tests may read it directly); a fresh one by default. */
  stats?: MockStats;
  /** How many stored Responses API responses this server keeps (the oldest go first); 10 000 by default. */
  maxStoredResponses?: number;
}

/** Standard keep-alive: longer than typical client pools (undici 4s, ALB 60s) so the client closes first. */
const KEEP_ALIVE_TIMEOUT_MS = 65_000;
/** Must exceed keepAliveTimeout, or node may drop a reused socket while the next request's headers arrive. */
const HEADERS_TIMEOUT_MS = 66_000;
/** Large enough for any realistic prompt, small enough that a runaway client cannot exhaust memory. */
const MAX_BODY_BYTES = 32 * 1024 * 1024;

interface Route {
  name: RouteName;
  handler: ProviderHandler;
  /** The id in the path: Gemini's model or a stored response's id; '' elsewhere. */
  param: string;
}

/** The handlers that hold per-server state (the Responses API's store). */
interface ServerHandlers {
  responses: ProviderHandler;
  storedResponses: ProviderHandler;
  inputTokens: ProviderHandler;
  compact: ProviderHandler;
}

const GEMINI_PATH = /^\/v1(?:beta)?\/models\/([^/:]+):(generateContent|streamGenerateContent|countTokens|embedContent|batchEmbedContents)$/;
/** A stored response, or its input items: the id is matched strictly, anything else stays an unknown path. */
const STORED_RESPONSE_PATH = /^\/v1\/responses\/([A-Za-z0-9_-]+)(\/input_items)?$/;
/** Cancelling a stored response. */
const CANCEL_RESPONSE_PATH = /^\/v1\/responses\/([A-Za-z0-9_-]+)\/cancel$/;

/** Exact string compares first: these are the benchmark's hot paths. */
function matchRoute(method: string | undefined, path: string, h: ServerHandlers): Route | undefined {
  if (method === 'POST') {
    if (path === '/v1/chat/completions') return { name: 'openai.chat', handler: openaiHandler, param: '' };
    if (path === '/v1/responses') return { name: 'openai.responses', handler: h.responses, param: '' };
    // Fixed paths before the cancel pattern: `input_tokens` and `compact` are no response ids.
    if (path === '/v1/responses/input_tokens') return { name: 'openai.responses.inputTokens', handler: h.inputTokens, param: '' };
    if (path === '/v1/responses/compact') return { name: 'openai.responses.compact', handler: h.compact, param: '' };
    if (path === '/v1/messages') return { name: 'anthropic.messages', handler: anthropicHandler, param: '' };
    if (path === '/v1/messages/count_tokens') return { name: 'anthropic.countTokens', handler: anthropicHandler, param: '' };
    if (path === '/v1/embeddings') return { name: 'openai.embeddings', handler: openaiHandler, param: '' };
    const m = GEMINI_PATH.exec(path);
    if (m) return { name: `gemini.${m[2]}` as RouteName, handler: geminiHandler, param: decodeURIComponent(m[1]) };
    const cancel = CANCEL_RESPONSE_PATH.exec(path);
    if (cancel) return { name: 'openai.responses.cancel', handler: h.storedResponses, param: cancel[1] };
    return undefined;
  }
  if (method === 'GET' && path === '/v1/models') return { name: 'openai.models', handler: openaiHandler, param: '' };
  if ((method === 'GET' || method === 'DELETE') && path.startsWith('/v1/responses/')) {
    const m = STORED_RESPONSE_PATH.exec(path);
    if (!m) return undefined;
    if (m[2] !== undefined)
      return method === 'GET' ? { name: 'openai.responses.inputItems', handler: h.storedResponses, param: m[1] } : undefined;
    return { name: method === 'GET' ? 'openai.responses.retrieve' : 'openai.responses.delete', handler: h.storedResponses, param: m[1] };
  }
  return undefined;
}

interface RawBody {
  text: string;
  tooLarge: boolean;
}

function readBody(req: IncomingMessage): Promise<RawBody> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let tooLarge = false;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > MAX_BODY_BYTES) tooLarge = true;
      if (!tooLarge) chunks.push(chunk);
    });
    req.on('end', () => {
      const buf = chunks.length === 1 ? chunks[0] : Buffer.concat(chunks);
      resolve({ text: tooLarge ? '' : buf.toString('utf8'), tooLarge });
    });
    req.on('error', reject);
    // A client gone mid-upload may never emit 'end': settle anyway so nothing waits forever.
    req.on('close', () => {
      if (!req.complete) reject(new Error('request aborted during upload'));
    });
  });
}

function sendPlainJson(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

/**
 * The shared pipeline: remember the request, resolve directives, apply the
 * delay, then auth, forced status, body validity, and finally the provider's
 * answer. Auth comes after the delay so `delay_ms` also slows down rejections.
 */
async function serve(
  ex: Exchange,
  handler: ProviderHandler,
  stats: MockStats,
  acceptAnyKey: boolean,
  failures: FailureCounter,
): Promise<void> {
  const raw = await readBody(ex.req);
  if (raw.text !== '') {
    try {
      ex.body = JSON.parse(raw.text) as unknown;
    } catch {
      ex.bodyInvalid = true;
    }
  }
  stats.remember(ex.route, ex.req.headers, ex.bodyInvalid ? raw.text : (ex.body ?? null), ex.req.url ?? '');
  const text = ex.body === undefined ? '' : handler.directiveText(ex);
  ex.directives = resolveDirectives(ex.req.headers, text);
  failures.apply(text, ex.directives);

  const d = ex.directives;
  if (d.delayMs !== undefined && !(await ex.wait(d.delayMs))) return;

  const rejected = handler.authenticate(ex, acceptAnyKey);
  if (rejected) return ex.sendError(rejected);

  if (d.status !== undefined && d.status >= 400) {
    const reply = handler.error(d.status);
    if (d.retryAfter !== undefined) reply.headers = { ...reply.headers, 'retry-after': String(d.retryAfter) };
    return ex.sendError(reply);
  }
  if (raw.tooLarge) return ex.sendError(handler.error(413, `Request body exceeds ${MAX_BODY_BYTES} bytes.`));
  if (ex.bodyInvalid) return ex.sendError(handler.invalidJson());

  await handler.handle(ex);
}

/** `/__mock/*`: stats and reset for tests; never counted. */
function serveControl(req: IncomingMessage, res: ServerResponse, path: string, stats: MockStats): void {
  req.resume();
  if (req.method === 'GET' && path === '/__mock/stats') return sendPlainJson(res, 200, stats.snapshot());
  if (req.method === 'POST' && path === '/__mock/reset') {
    stats.reset();
    return sendPlainJson(res, 200, { ok: true });
  }
  if (req.method === 'GET' && path === '/__mock/health') return sendPlainJson(res, 200, { status: 'ok' });
  // An Anthropic thread expired (or lost) at Anthropic: its continuation is answered thread_not_found.
  const thread = /^\/__mock\/anthropic\/threads\/([^/]+)$/.exec(path);
  if (req.method === 'DELETE' && thread) return sendPlainJson(res, 200, { deleted: forgetThread(decodeURIComponent(thread[1])) });
  sendPlainJson(res, 404, { error: { message: `Unknown mock control route ${req.method ?? ''} ${path}` } });
}

/**
 * Builds (does not start) the mock upstream. Plain `node:http` on purpose: it is
 * the upstream of a benchmark that measures the gateway's overhead, so it must
 * add as little as possible itself.
 */
export function createMockServer(options: MockServerOptions = {}): Server {
  const stats = options.stats ?? new MockStats();
  const acceptAnyKey = options.acceptAnyKey ?? false;
  // Owned by this server: tests running several mock servers keep their stored responses apart.
  const store = new ResponseStore(options.maxStoredResponses);
  const failures = new FailureCounter();
  const handlers: ServerHandlers = {
    responses: new OpenAIResponsesHandler(store),
    storedResponses: new OpenAIStoredResponsesHandler(store),
    inputTokens: new OpenAIInputTokensHandler(store),
    compact: new OpenAICompactHandler(store),
  };

  const server = createServer({ noDelay: true }, (req, res) => {
    const url = req.url ?? '/';
    const q = url.indexOf('?');
    const path = q === -1 ? url : url.slice(0, q);

    if (path.startsWith('/__mock/')) return serveControl(req, res, path, stats);

    const route = matchRoute(req.method, path, handlers);
    if (!route) {
      req.resume();
      // OpenAI's wording; unknown paths are a client bug whichever provider was meant.
      return sendPlainJson(res, 404, {
        error: { message: `Invalid URL (${req.method ?? ''} ${path})`, type: 'invalid_request_error', param: null, code: null },
      });
    }

    stats.count(route.name);
    const ex = new Exchange(req, res, route.name, q === -1 ? '' : url.slice(q + 1), stats, route.param);
    serve(ex, route.handler, stats, acceptAnyKey, failures).catch((err: unknown) => {
      // A client that vanished mid-upload rejects readBody: nothing to answer.
      if (ex.closed) return;
      process.stderr.write(`${JSON.stringify({ message: 'mock-upstream handler failed', error: String(err) })}\n`);
      if (!res.headersSent) ex.sendError(route.handler.error(500));
      else res.destroy();
    });
  });

  server.keepAliveTimeout = KEEP_ALIVE_TIMEOUT_MS;
  server.headersTimeout = HEADERS_TIMEOUT_MS;
  return server;
}

/**
 * Stops the server and drops every connection, including stalled streams that
 * would otherwise keep `close()` waiting forever.
 */
export function closeMockServer(server: Server): Promise<void> {
  return new Promise((resolve, reject) => {
    server.close((err) => (err ? reject(err) : resolve()));
    server.closeAllConnections();
  });
}
