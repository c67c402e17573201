import { randomUUID } from 'node:crypto';
import { ServerResponse, STATUS_CODES, type IncomingMessage, type Server } from 'node:http';
import type { Socket } from 'node:net';
import { NestFactory } from '@nestjs/core';
import { FastifyAdapter, type NestFastifyApplication } from '@nestjs/platform-fastify';
import { DocumentBuilder, SwaggerModule } from '@nestjs/swagger';
import helmet, { type HelmetOptions } from 'helmet';
import type { GatewayConfig } from '@keygate/config';
import fastifyCors, { type FastifyCorsOptions } from '@fastify/cors';
import { GatewayError } from '@keygate/errors';
import { contextOf, JsonLogger } from '@keygate/observability';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { AppModule } from './app.module';
import { documentRequestBodies } from './http/openapi-bodies';
import { documentCredentials } from './http/openapi-credentials';
import { documentOperationIds } from './http/openapi-operation-ids';
import { documentRequestIdHeader } from './http/openapi-request-id';
import { noteDeclaredCharset } from './http/dto-validation.pipe';
import { errorBodyFor } from './http/error-envelope';
import { expectContinue } from './http/refused-body';
import { RequestLifecycle } from './http/request-lifecycle';
import { GOOGLE_KEY_SCHEME } from './gemini/gemini.controller';
import { ANTHROPIC_KEY_SCHEME } from './messages/messages.controller';

/**
 * JSON bodies are read as bytes (up to the hard limit, refused with 413 while streaming in) and
 * parsed by the validation pipe, which runs after authentication: an anonymous caller gets 401,
 * not a JSON syntax error, and the HMAC strategy signs over exactly the bytes received.
 */
function keepJsonBodiesAsBytes(fastify: FastifyInstance, bodyLimit: number): void {
  // Fastify's own JSON parser is tried before any pattern, so it has to go first.
  fastify.removeContentTypeParser('application/json');
  const keepBytes = (request: FastifyRequest, body: string | Buffer, done: (error: null, body: Buffer) => void): void => {
    const bytes = Buffer.isBuffer(body) ? body : Buffer.from(body);
    (request as FastifyRequest & { rawBody?: Buffer }).rawBody = bytes;
    noteDeclaredCharset(bytes, request.headers['content-type']);
    done(null, bytes);
  };
  fastify.addContentTypeParser('application/json', { parseAs: 'buffer', bodyLimit }, keepBytes);
  fastify.addContentTypeParser(/^application\/[\w.-]+\+json$/i, { parseAs: 'buffer', bodyLimit }, keepBytes);
  // A text body is the client's mistake to name (400, "send it as JSON"), after authentication: its
  // bytes are kept too, so an HMAC signature over them verifies rather than failing as a 401.
  fastify.removeContentTypeParser('text/plain');
  fastify.addContentTypeParser('text/plain', { parseAs: 'buffer', bodyLimit }, (request, body, done) => {
    const bytes = Buffer.isBuffer(body) ? body : Buffer.from(body);
    (request as FastifyRequest & { rawBody?: Buffer }).rawBody = bytes;
    done(null, bytes.toString('utf8'));
  });
}

/**
 * Nest's ExceptionHandler logs an error thrown while the application is created (a secret that
 * cannot be loaded, say) and then, with `abortOnError: false`, rethrows it; main prints that error
 * as the one CRITICAL line of a failed boot (README: one line), so this copy is left out. Nest uses
 * the ExceptionHandler nowhere else.
 */
class BootLogger extends JsonLogger {
  override error(message: unknown, ...rest: unknown[]): void {
    if (rest[rest.length - 1] === 'ExceptionHandler') return;
    super.error(message, ...rest);
  }
}

/**
 * helmet's headers on every response. helmet's options are fixed at boot and none of its headers
 * depends on the request (no CSP nonce), so its middleware runs once here against a recording
 * response and each request only copies the result: running helmet's chain of a dozen middlewares
 * per request was a measurable share of the gateway's CPU (and @fastify/helmet rebuilds it per
 * request on top of that).
 */
export function securityHeaders(options: HelmetOptions): ReadonlyArray<readonly [string, string]> {
  const csp = options.contentSecurityPolicy;
  const directives = typeof csp === 'object' ? Object.values(csp.directives ?? {}) : [];
  if (directives.some((value) => typeof value === 'function' || (Array.isArray(value) && value.some((v) => typeof v === 'function')))) {
    // A per-request directive (a nonce) cannot be computed once; it would need helmet per request.
    throw new Error('security headers are computed once at boot: a CSP directive may not be a function');
  }
  const set = new Map<string, string>();
  const recorder = {
    setHeader: (name: string, value: string | number | readonly string[]) => set.set(name.toLowerCase(), String(value)),
    removeHeader: (name: string) => set.delete(name.toLowerCase()),
    getHeader: (name: string) => set.get(name.toLowerCase()),
  };
  let failure: unknown;
  helmet(options)({} as IncomingMessage, recorder as unknown as ServerResponse, (error?: unknown) => (failure = error));
  if (failure) throw failure instanceof Error ? failure : new Error('helmet refused its options');
  return [...set];
}

function applySecurityHeaders(fastify: FastifyInstance, headers: ReadonlyArray<readonly [string, string]>): void {
  fastify.addHook('onRequest', (_request, reply, done) => {
    // On the raw response, so hijacked (streamed) replies and Fastify's own answers carry them too.
    const raw = reply.raw;
    for (const [name, value] of headers) raw.setHeader(name, value);
    done();
  });
}

/**
 * Node answers a request whose `Expect` is anything but `100-continue` with a bare 417 of its own,
 * before any hook: no `X-Request-Id`, no contract body, no audit line. RFC 9110 §10.1.1 lets a
 * server that does not know an expectation ignore it (417 is a MAY), so such a request is served
 * like any other: handed to the normal request handler, which authenticates and audits it.
 * `100-continue` is answered only when the declared body fits some product's limit ({@link expectContinue}).
 */
function serveExpectations(server: Server, largestBytes: number): void {
  server.on('checkExpectation', (request: IncomingMessage, response: ServerResponse) => server.emit('request', request, response));
  server.on('checkContinue', (request: IncomingMessage, response: ServerResponse) => {
    expectContinue(request, response, largestBytes);
    server.emit('request', request, response);
  });
}

/** How long a connection that sent `CONNECT` may stay open once handed over (its answer is a few hundred bytes). */
const CONNECT_SOCKET_TIMEOUT_MS = 10_000;

/**
 * Node hands a `CONNECT` request to the server's `connect` listeners, not to the request handler,
 * and with none it drops the connection: no answer, no audit line, even on an API path. keygate
 * tunnels nothing, so such a request is served like any other method no route takes (404
 * `route_not_found` in the contract's shape, audited on an API path) on a response made for it, as
 * Node makes one for any request: it gets the connection once an answer still owed before it on the
 * connection is written (pipelined), is closed once written (so the lifecycle ends it), and the
 * connection is ended after it (its bytes after the head are no HTTP any more). Node has taken its
 * own error, timeout and close handling off the socket before the handover: they are given back here.
 */
function serveConnect(server: Server): void {
  server.on('connect', (request: IncomingMessage, socket: Socket) => {
    socket.on('error', () => socket.destroy());
    socket.setTimeout(CONNECT_SOCKET_TIMEOUT_MS, () => socket.destroy());
    const response = new ServerResponse(request);
    response.shouldKeepAlive = false;
    response.once('finish', () => {
      response.detachSocket(socket);
      process.nextTick(() => closed(response));
      socket.destroySoon();
    });
    const assign = (): void => {
      if (!socket.destroyed) response.assignSocket(socket);
    };
    const owed = (socket as Socket & { _httpMessage?: ServerResponse | null })._httpMessage;
    if (owed) owed.once('finish', assign);
    else assign();
    server.emit('request', request, response);
  });
}

/** Marks a response closed and says so, as Node does for the responses it makes (`close` ends the request's lifecycle). */
function closed(response: ServerResponse): void {
  const state = response as ServerResponse & { _closed?: boolean };
  if (state._closed) return;
  state._closed = true;
  response.destroyed = true;
  response.emit('close');
}

/**
 * What Node's HTTP parser refuses before there is a request (headers over the size limit, a body
 * framed two ways, headers that did not arrive in time) gets the contract's error body with an
 * `X-Request-Id` and the security headers, like every other answer, instead of Fastify's own JSON.
 * There is no request to audit: the parser never produced one. A request whose body did not arrive
 * in time is one, though: `timedOut` answers it as itself (its id, its audit line) when it can.
 */
function refuseMalformed(
  error: Error & { code?: string },
  socket: Socket,
  securityHeaders: ReadonlyArray<readonly [string, string]>,
  timedOut?: (socket: Socket, answerNext: () => void) => boolean,
  malformed?: (socket: Socket, answerNext: () => void) => boolean,
): void {
  if (error.code === 'ECONNRESET' || socket.destroyed) return;
  // A request whose body is late is answered as itself; one whose headers are late, after the answers before it.
  if (error.code === 'ERR_HTTP_REQUEST_TIMEOUT' && timedOut?.(socket, () => refuseMalformed(error, socket, securityHeaders))) return;
  // A request open on the connection is answered as itself, or first (see RequestLifecycle.refuseMalformed).
  // Not when the client closed mid-request (the parser's end-of-input error): it left, it sent nothing malformed.
  if (
    error.code !== 'ERR_HTTP_REQUEST_TIMEOUT' &&
    error.code !== 'HPE_INVALID_EOF_STATE' &&
    malformed?.(socket, () => refuseMalformed(error, socket, securityHeaders))
  )
    return;
  const [status, message] =
    error.code === 'HPE_HEADER_OVERFLOW'
      ? [431, 'the request headers are too large']
      : error.code === 'ERR_HTTP_REQUEST_TIMEOUT'
        ? [408, 'the request did not arrive in time']
        : [400, 'the request is not valid HTTP/1.1'];
  const body = JSON.stringify(new GatewayError('invalid_request', message).toBody());
  const lines = [
    `HTTP/1.1 ${status} ${STATUS_CODES[status]}`,
    'content-type: application/json',
    `content-length: ${Buffer.byteLength(body)}`,
    `x-request-id: ${randomUUID()}`,
    'connection: close',
    ...securityHeaders.map(([name, value]) => `${name}: ${value}`),
  ];
  if (!socket.writable) {
    socket.destroy();
    return;
  }
  socket.write(`${lines.join('\r\n')}\r\n\r\n${body}`);
  // An answer to an earlier request may still be in the socket's buffer: it is flushed first.
  if (socket.writableLength > 0) socket.destroySoon();
  else socket.destroy();
}

/**
 * How often Node looks for requests over their time limit (its default is every 30 s, so a 60 s
 * limit would end requests anywhere from 60 to 90 s): a quarter of the limit, between 0.5 and 30 s.
 */
function timeoutCheckInterval(requestTimeoutMs: number): number {
  return Math.min(30_000, Math.max(500, Math.floor(requestTimeoutMs / 4)));
}

/** helmet's options for every answer. */
const SECURITY_HEADER_OPTIONS: HelmetOptions = {
  // Swagger UI loads its own script and styles from /docs; nothing else is HTML.
  contentSecurityPolicy: {
    directives: {
      defaultSrc: ["'self'"],
      scriptSrc: ["'self'"],
      styleSrc: ["'self'", "'unsafe-inline'"],
      imgSrc: ["'self'", 'data:'],
      connectSrc: ["'self'"],
      // TLS ends at the load balancer; upgrading would break plain-HTTP local and in-cluster use.
      upgradeInsecureRequests: null,
    },
  },
  crossOriginResourcePolicy: { policy: 'same-site' },
};

/** Headers a browser client may send: credentials, JSON, and the ones the official SDKs add. */
const CORS_ALLOWED_HEADERS = [
  'authorization',
  'content-type',
  'x-request-id',
  'x-client-id',
  'x-timestamp',
  'x-signature',
  'openai-organization',
  'openai-project',
  'x-stainless-arch',
  'x-stainless-lang',
  'x-stainless-os',
  'x-stainless-package-version',
  'x-stainless-runtime',
  'x-stainless-runtime-version',
  'x-stainless-retry-count',
  'x-stainless-timeout',
  // Sent by the SDKs' helpers (chat.completions.stream, responses.stream, runTools, messages.stream,
  // the tool runners, the pollers): without them a browser's preflight fails every such call.
  'x-stainless-helper',
  'x-stainless-helper-method',
  'x-stainless-poll-helper',
  'x-stainless-custom-poll-interval',
  // The Anthropic SDK's, on /v1/messages (a browser build also sends the last one).
  'x-api-key',
  'anthropic-version',
  'anthropic-beta',
  'anthropic-dangerous-direct-browser-access',
  // @google/genai's, on the Gemini routes (under /v1beta, and /v1 with apiVersion 'v1') (its key header, and its client identification).
  'x-goog-api-key',
  'x-goog-api-client',
  // @google/genai's deadline, sent whenever `httpOptions.timeout` is set.
  'x-server-timeout',
  // Every official SDK sets its own User-Agent: Chromium drops it, but Firefox sends it and asks for
  // it in the preflight, so without it no SDK call from a Firefox page gets past CORS.
  'user-agent',
];

/**
 * CORS for the exact origins configured, nothing else: no wildcard, no credentials (browsers send
 * the bearer token explicitly), a strict preflight, and only the headers a client needs exposed.
 */
export function corsOptions(origins: string[]): FastifyCorsOptions {
  return {
    origin: origins,
    // DELETE: the Responses API's `responses.delete` (and the operator routes).
    methods: ['GET', 'POST', 'DELETE'],
    allowedHeaders: CORS_ALLOWED_HEADERS,
    // request-id: Anthropic's, on /v1/messages (the SDK's `_request_id`); x-ratelimit-*: the daily
    // request cap's (see RequestLimitsGuard), which a browser client can pace itself by;
    // x-should-retry: read by the SDKs (see GatewayExceptionFilter); www-authenticate: a 401's
    // challenge, whose resource_metadata a browser client follows to find the authorization
    // servers (RFC 9728 §5.1), as MCP's browser clients do.
    exposedHeaders: [
      'x-request-id',
      'retry-after',
      'request-id',
      'x-ratelimit-limit-requests',
      'x-ratelimit-remaining-requests',
      'x-should-retry',
      'www-authenticate',
    ],
    credentials: false,
    maxAge: 600,
    strictPreflight: true,
  };
}

/**
 * A preflight from an origin that is not listed gets a 403 in the contract's shape rather than a
 * 204 the browser must then refuse, and an OPTIONS request that is no preflight (no Origin or no
 * Access-Control-Request-Method) a 400 in that shape rather than the CORS plugin's text answer.
 * Other requests are left alone: same-origin pages (Swagger UI) send Origin too, and need no CORS
 * grant.
 */
function refuseForeignPreflights(fastify: FastifyInstance, origins: string[]): void {
  const allowed = new Set(origins);
  fastify.addHook('onRequest', (request, reply, done) => {
    if (request.method !== 'OPTIONS') {
      done();
      return;
    }
    const origin = request.headers.origin;
    let error: GatewayError | undefined;
    // An empty Access-Control-Request-Method is no preflight either (the CORS plugin would answer it in plain text).
    if (origin === undefined || !request.headers['access-control-request-method']?.trim())
      error = new GatewayError('invalid_request', 'an OPTIONS request must be a CORS preflight (Origin and Access-Control-Request-Method)');
    else if (!allowed.has(origin)) error = new GatewayError('forbidden', 'this origin may not call keygate from a browser');
    if (!error) {
      done();
      return;
    }
    const ctx = contextOf(request.raw);
    ctx?.fail(error.spec.failure, error.status);
    // In the envelope of the API the path speaks (Anthropic's, Google's), as every other refusal there.
    void reply.code(error.status).type('application/json').send(errorBodyFor(ctx, error));
  });
}

/**
 * Swagger UI is served at /docs, and by @nestjs/swagger also at /docs/ and /docs/index.html. The
 * document's server URL is relative (`.`), which the UI resolves against the page: from /docs/ it
 * would call /docs/v1/..., and /docs/index.html loads its assets from /docs/docs/ (a blank page).
 * Both are redirected to /docs, by a relative Location so that a path prefix in front is kept.
 * Done on the routes at registration, so no request pays for it.
 */
function redirectDocsVariants(fastify: FastifyInstance): void {
  fastify.addHook('onRoute', (route) => {
    if (route.url !== '/docs/' && route.url !== '/docs/index.html') return;
    route.handler = (request: FastifyRequest, reply: FastifyReply) => {
      const query = request.url.indexOf('?');
      return reply.redirect(`../docs${query === -1 ? '' : request.url.slice(query)}`, 308);
    };
  });
}

/**
 * Builds the gateway application from a validated configuration (used by `main.ts` and tests).
 * The HTTP server's hard body limit is the largest `max_request_bytes` of any product, so an
 * oversized body is refused while it streams in, never buffered whole.
 */
export async function createGateway(config: GatewayConfig): Promise<NestFastifyApplication> {
  const headers = securityHeaders(SECURITY_HEADER_OPTIONS);
  // Fastify's router turns some targets away before any hook runs, and Node times out requests
  // whose body is still arriving; the lifecycle answers both once the application exists (nothing
  // is served before that).
  const late: {
    refuse?: (error: Error, request: FastifyRequest, reply: FastifyReply) => void;
    timedOut?: (socket: Socket, answerNext: () => void) => boolean;
    malformed?: (socket: Socket, answerNext: () => void) => boolean;
  } = {};
  const requestTimeoutMs = config.requestTimeoutSeconds * 1000;
  const adapter = new FastifyAdapter({
    clientErrorHandler: (error: Error & { code?: string }, socket: Socket) =>
      refuseMalformed(error, socket, headers, late.timedOut, late.malformed),
    frameworkErrors: (error: Error, request: FastifyRequest, reply: FastifyReply) => {
      for (const [name, value] of headers) reply.raw.setHeader(name, value);
      if (late.refuse) late.refuse(error, request, reply);
      else void reply.status(400).send(new GatewayError('invalid_request', error.message).toBody());
    },
    bodyLimit: config.policy.largestRequestBytes,
    // A model id in GET /v1/models/{model} may be 256 characters, as chat takes (the router measures
    // the decoded parameter): Fastify's default of 100 would refuse a long one as a malformed target,
    // and a longer one is refused as one (400), as chat refuses it.
    routerOptions: { maxParamLength: 256 },
    // Google's load balancers keep backend connections for 600 s; a shorter server timeout races them.
    keepAliveTimeout: 620_000,
    // A request must arrive whole (headers and body) within this: Fastify's default is no limit, so
    // a client trickling its body (slowloris) could hold a request open for ever.
    requestTimeout: requestTimeoutMs,
    // The lifecycle refuses an HTTP/1.1 request without Host itself, with the contract's 400 and an
    // audit line; Node's own refusal happens before any hook.
    // Node's check ends a request over requestTimeout only while headersTimeout is no longer
    // (measured on Node 20: 60 s headers with a 1 s request limit never fired).
    http: {
      requireHostHeader: false,
      headersTimeout: Math.min(60_000, requestTimeoutMs),
      connectionsCheckingInterval: timeoutCheckInterval(requestTimeoutMs),
    },
    // During the drain, RequestLifecycle answers requests on kept-alive connections itself (the
    // contract's 503, audited, Connection: close); Fastify's own 503 has neither.
    return503OnClosing: false,
    logger: false,
  });
  // Nest logs through keygate's JSON logger from the first line, so even a boot failure inside Nest
  // (a malformed secret) reaches Cloud Logging as structured entries.
  const logger = new BootLogger(config.logLevel, config.secretManager.project);
  const app = await NestFactory.create<NestFastifyApplication>(AppModule.forRoot(config), adapter, {
    bodyParser: false,
    logger,
    abortOnError: false,
  });
  const fastify = app.getHttpAdapter().getInstance();
  keepJsonBodiesAsBytes(fastify, config.policy.largestRequestBytes);
  // First of the hooks: every answer carries them, those the lifecycle hook gives itself (the 503
  // of the drain) included.
  applySecurityHeaders(fastify, headers);
  const lifecycle = app.get(RequestLifecycle);
  lifecycle.install(fastify, headers);
  late.refuse = (error, request, reply) => lifecycle.refuseUnroutable(error, request, reply);
  late.timedOut = (socket, answerNext) => lifecycle.refuseTimedOut(socket, answerNext);
  late.malformed = (socket, answerNext) => lifecycle.refuseMalformed(socket, answerNext);
  serveExpectations(app.getHttpServer(), config.policy.largestRequestBytes);
  serveConnect(app.getHttpServer());
  // Registered after the lifecycle and helmet hooks (hooks run in registration order), so a
  // preflight is audited and carries X-Request-Id and the security headers like any answer.
  // (Nest's enableCors would install its hook when the adapter is built, ahead of ours.)
  if (config.corsOrigins.length) {
    refuseForeignPreflights(fastify, config.corsOrigins);
    await app.register(fastifyCors, corsOptions(config.corsOrigins));
  }

  // Before SwaggerModule.setup, whose routes this hook rewrites.
  redirectDocsVariants(fastify);
  const document = SwaggerModule.createDocument(
    app,
    new DocumentBuilder()
      .setTitle('keygate')
      .setDescription(
        'OpenAI-compatible gateway to OpenAI, Gemini and Claude. Press **Authorize** and paste a short-lived JWT (`npm run token` ' +
          'mints one for the demo; `npm run token -- --scope keygate.admin` one for the `/admin` routes).',
      )
      .setVersion('1')
      // Relative to where the document (/docs-json) or Swagger UI (/docs) was loaded from (OpenAPI 3.0
      // §4.7.5), so "Try it out" calls the gateway that served the page, behind a path prefix too
      // (https://host/keygate/docs calls https://host/keygate/v1/...). Without servers, Swagger UI
      // calls the host's root, which behind a prefix is not keygate.
      .addServer('.', 'This gateway: where this document was loaded from')
      .addBearerAuth({
        type: 'http',
        scheme: 'bearer',
        bearerFormat: 'JWT',
        description:
          'A short-lived RS256/ES256 JWT, for every route: paste the token alone (Swagger UI adds `Bearer `). ' +
          '`npm run token` mints one for the demo; the `/admin` routes need the `keygate.admin` scope ' +
          '(`npm run token -- --scope keygate.admin`).',
      })
      .addApiKey(
        {
          type: 'apiKey',
          in: 'header',
          name: 'x-api-key',
          description:
            'Optional: the same JWT, in the header where Anthropic’s clients send their key (`/v1/messages`, ' +
            '`/v1/messages/count_tokens`, and `/v1/models` and `/v1/models/{model}` with `anthropic-version`). The bearer JWT alone does as well.',
        },
        ANTHROPIC_KEY_SCHEME,
      )
      .addApiKey(
        {
          type: 'apiKey',
          in: 'header',
          name: 'x-goog-api-key',
          description:
            'Optional: the same JWT, in the header where Google’s clients send their key (the Gemini routes under `/v1beta`, ' +
            'and their methods under `/v1`; never as `?key=`, which is refused). The bearer JWT alone does as well.',
        },
        GOOGLE_KEY_SCHEME,
      )
      .build(),
  );
  documentCredentials(document, config);
  documentRequestBodies(document);
  documentOperationIds(document);
  documentRequestIdHeader(document);
  SwaggerModule.setup('docs', app, document, { jsonDocumentUrl: 'docs-json', swaggerOptions: { persistAuthorization: true } });
  return app;
}
