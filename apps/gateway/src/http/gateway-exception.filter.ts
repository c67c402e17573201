import { Catch, HttpException, Inject, Optional, type ArgumentsHost, type ExceptionFilter } from '@nestjs/common';
import { CredentialGuard } from '@keygate/auth';
import { GatewayConfig } from '@keygate/config';
import { GatewayError, type GatewayErrorCode } from '@keygate/errors';
import { contextOf, JsonLogger, KEYGATE_LOGGER, requestContextStorage, type RequestContext } from '@keygate/observability';
import { ADMIN_THROTTLE } from '@keygate/limits';
import { ClientAbortedError, UpstreamError } from '@keygate/providers';
import { ThrottlerException } from '@nestjs/throttler';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { askedForStream } from './dto-validation.pipe';
import { anthropicRequestIdOf, isAnthropicRequest } from '../messages/anthropic-errors';
import { errorBodyFor } from './error-envelope';
import { answerAfterBody } from './refused-body';
import { CLIENT_CLOSED_REQUEST } from './request-lifecycle';
import { resourceMetadataUrl } from './resource-url';

/** A 429 whose Retry-After is longer than this is not worth an SDK's automatic retries (the OpenAI SDK's longest wait). */
const SDK_LONGEST_RETRY_WAIT_SECONDS = 60;

/**
 * The one place errors become HTTP answers: domain errors by their code, framework errors
 * (routing, body parsing) by status, and anything unexpected as a bare 500 with the request id.
 */
@Catch()
export class GatewayExceptionFilter implements ExceptionFilter {
  constructor(
    @Inject(KEYGATE_LOGGER) private readonly logger: JsonLogger,
    @Inject(GatewayConfig) private readonly config: GatewayConfig,
    @Optional() private readonly credentials?: CredentialGuard,
  ) {}

  catch(exception: unknown, host: ArgumentsHost): void {
    const http = host.switchToHttp();
    const request = http.getRequest<FastifyRequest>();
    const reply = http.getResponse<FastifyReply>();
    const ctx = contextOf(request.raw);
    // Refused once its body was read (validation and after): audited as the stream it asked for.
    if (ctx && askedForStream(request.body)) ctx.stream = true;

    if (exception instanceof ClientAbortedError && !ctx?.endedBy) {
      ctx?.fail('client_abort', CLIENT_CLOSED_REQUEST);
      return;
    }
    // Terminus answers readiness failures with its own body; probes and dashboards read it.
    if (exception instanceof HttpException && !ctx?.auditable && request.url.startsWith('/readyz')) {
      void reply.status(exception.getStatus()).send(exception.getResponse());
      return;
    }
    // In the request's context: an error raised outside Nest's pipeline (Fastify's body parsing) is logged with its id too.
    // A request keygate ended (the drain deadline, a block) is told why, whatever its handler threw on
    // the abort; a refusal of its own raised before the end came (the guard's 429 that set off an
    // auto-block, which a replica without Redis applies before this filter runs) stands.
    const endedBy = ctx?.endedBy && !(exception instanceof GatewayError && exception !== ctx.endedBy) ? ctx.endedBy : null;
    const error = endedBy
      ? endedBy
      : ctx
        ? requestContextStorage.run(ctx, () => this.toGatewayError(exception, ctx.requestId))
        : this.toGatewayError(exception, undefined);
    ctx?.fail(error.spec.failure, error.status);
    // Refused before the credential guard ran (Fastify refuses a body over every product's limit, or
    // one it cannot take, before any guard): the audit line names the caller the headers prove, as
    // the guard would have (the answer does not wait; the audit line does).
    if (error.status !== 401) this.credentials?.nameCallerBeforeAudit(request);
    if (reply.sent || reply.raw.headersSent) return;

    const headers: Record<string, string> = { ...(error.options.headers ?? {}) };
    if (error.options.retryAfterSeconds !== undefined) headers['retry-after'] = String(error.options.retryAfterSeconds);
    // The SDKs retry a 429 (twice by default): OpenAI's within seconds when its Retry-After is over a
    // minute, Anthropic's (Claude Code's) after sleeping it out, hours for a daily cap or quota refused
    // until midnight. Either way it is refused again (each retry audited and counted toward
    // auto-block); both SDKs give up at once on this header.
    if (error.status === 429 && (error.options.retryAfterSeconds ?? 0) > SDK_LONGEST_RETRY_WAIT_SECONDS)
      headers['x-should-retry'] = 'false';
    // An upstream failure keygate already retried (with backoff, then the product's fallbacks):
    // retries belong to one layer. The SDKs' own on top would multiply the calls to a provider in
    // trouble (two SDK retries of three attempts: nine calls for one request). One attempt only (no
    // retries configured, nothing retryable) is left to the client to retry.
    else if (alreadyRetried(ctx, error) || refusedKeygatesKey(error) || cutWholeAnswer(ctx, error)) headers['x-should-retry'] = 'false';
    // Refused because keygate is shutting down: the client's next request must go to another replica.
    if (ctx?.endedBy?.code === 'service_unavailable') headers.connection = 'close';
    if (error.status === 401) headers['www-authenticate'] = this.wwwAuthenticate(request, error);
    // A refusal Anthropic sent names Anthropic's id of it (what its support asks for), as its answers
    // and stream errors do; keygate's stays in X-Request-Id.
    const upstreamId = isAnthropicRequest(ctx) ? anthropicRequestIdOf(error) : undefined;
    if (upstreamId !== undefined) headers['request-id'] = upstreamId;
    const body = errorBodyFor(ctx, error, upstreamId);
    // Anthropic's route answers in an envelope the Anthropic SDKs read, which is also the contract's.
    const answer = (): void => void reply.status(error.status).headers(headers).type('application/json').send(body);
    // A body refused before it was read (above every product's limit): answered once it has arrived.
    if (error.status === 413) answerAfterBody(request.raw, answer, { signal: ctx?.abort.signal });
    else answer();
  }

  private toGatewayError(exception: unknown, requestId: string | undefined): GatewayError {
    if (exception instanceof GatewayError) return exception;
    // The stock guard of the operator routes: the contract's 429, with Retry-After (SPEC §6).
    if (exception instanceof ThrottlerException) {
      return new GatewayError('rate_limit_exceeded', 'Too many requests to the operator routes; retry later', {
        retryAfterSeconds: Math.ceil(ADMIN_THROTTLE.ttl / 1000),
      });
    }
    if (exception instanceof UpstreamError) return exception.toGatewayError();
    const status = statusOf(exception);
    if (status !== undefined && status < 500) return new GatewayError(codeForStatus(status, exception), messageFor(status, exception));
    this.logger.error(exception instanceof Error ? exception : String(exception), undefined, 'GatewayExceptionFilter');
    return new GatewayError('internal_error', `internal error (request id ${requestId ?? 'unknown'})`);
  }

  private wwwAuthenticate(request: FastifyRequest, error: GatewayError): string {
    const parts = [`resource_metadata="${resourceMetadataUrl(request, this.config.resource.publicUrl)}"`];
    // RFC 6750 §3.1: the error code only where a credential was presented, a bearer token or keygate's
    // others alike (an HMAC signature, an IAP assertion): not for none, Basic, a bare "Bearer", or a
    // kind not configured here.
    if (this.credentials?.presentsCredential(request.headers))
      parts.push('error="invalid_token"', `error_description="${challengeText(error.message)}"`);
    return `Bearer ${parts.join(', ')}`;
  }
}

/**
 * A message as an `error_description` (RFC 6750 §3: printable ASCII but `"` and `\`): a double quote
 * becomes a single one, and any other character outside that set is dropped (Node refuses a header
 * value holding a control character or one above U+00FF).
 */
export function challengeText(message: string): string {
  return message.replace(/"/g, "'").replace(/[^\x20\x21\x23-\x5b\x5d-\x7e]/g, '');
}

function statusOf(exception: unknown): number | undefined {
  if (exception instanceof HttpException) return exception.getStatus();
  const s = (exception as { statusCode?: unknown } | null)?.statusCode;
  return typeof s === 'number' ? s : undefined;
}

/** Nest re-wraps Fastify's body-parser errors as HttpException(message, status), dropping the code. */
function isJsonSyntaxError(exception: unknown): boolean {
  if (exception instanceof SyntaxError) return true;
  const { code, message } = (exception ?? {}) as { code?: unknown; message?: unknown };
  return (
    (typeof code === 'string' && code.includes('INVALID_JSON')) ||
    (typeof message === 'string' && message.startsWith('Body is not valid JSON'))
  );
}

function codeForStatus(status: number, exception: unknown): GatewayErrorCode {
  switch (status) {
    case 400:
      return isJsonSyntaxError(exception) ? 'invalid_json' : 'invalid_request';
    case 401:
      return 'invalid_token';
    case 403:
      return 'forbidden';
    case 404:
      return 'route_not_found';
    case 413:
      return 'request_too_large';
    case 429:
      return 'rate_limit_exceeded';
    default:
      return 'invalid_request';
  }
}

function messageFor(status: number, exception: unknown): string {
  if (status === 404) return 'no such route';
  if (status === 413) return 'the request body is too large';
  if (status === 415) return 'the request body must be JSON (Content-Type: application/json)';
  if (isJsonSyntaxError(exception)) return 'the request body is not valid JSON';
  const message = (exception as { message?: unknown } | null)?.message;
  if (typeof message === 'string' && message.startsWith('Body cannot be empty')) return 'the request body is empty';
  return exception instanceof Error ? exception.message : 'bad request';
}

/**
 * Whether the upstream refused keygate's own key (a 502 the client cannot fix): a retry a moment
 * later is refused the same until an operator replaces the key, so the SDKs are told not to.
 */
function refusedKeygatesKey(error: GatewayError): boolean {
  const cause = error.cause;
  if (!(cause instanceof UpstreamError)) return false;
  return cause.kind === 'credentials' || (cause.kind === 'http' && (cause.status === 401 || cause.status === 403));
}

/**
 * Whether a whole (non-streamed) answer was cut by keygate's timeout for the upstream's headers or
 * for the whole request: its headers come with the finished answer, so the provider may have
 * generated (and billed) all of it. keygate does not retry it; neither should the SDKs (twice by
 * default), whose retry would generate it again and, as long again, be cut at the same point.
 */
function cutWholeAnswer(ctx: RequestContext | undefined, error: GatewayError): boolean {
  const cause = error.cause;
  return ctx?.stream === false && cause instanceof UpstreamError && (cause.kind === 'ttfb_timeout' || cause.kind === 'total_timeout');
}

/** Whether a failure the SDKs would retry (429, 5xx) is an upstream's that keygate itself made more than one attempt at. */
function alreadyRetried(ctx: RequestContext | undefined, error: GatewayError): boolean {
  if (ctx === undefined || ctx.attempts < 2) return false;
  if (error.status !== 429 && error.status < 500) return false;
  return error.spec.failure === 'upstream' || error.spec.failure === 'timeout';
}
