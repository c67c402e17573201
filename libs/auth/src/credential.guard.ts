import type { IncomingHttpHeaders } from 'node:http';
import { Injectable, Optional, type ExecutionContext } from '@nestjs/common';
import { AuthGuard, AuthModuleOptions } from '@nestjs/passport';
import { GatewayError } from '@keygate/errors';
import { contextOf } from '@keygate/observability';
import type { FastifyRequest } from 'fastify';
import passport from 'passport';
import { JWT_STRATEGY } from './auth.constants';
import { parseHmacHeaders } from './hmac-signature';
import { HMAC_STRATEGY } from './hmac.strategy';
import { IAP_ASSERTION_HEADER, IAP_STRATEGY } from './iap.strategy';
import { bearerToken, malformedBearer } from './jwt.strategy';
import type { Principal } from './principal';
import { VerifiedTokenCache } from './verified-token.cache';

/** Puts the caller on the request's audit context, so every later outcome names them. */
function recordPrincipal(request: FastifyRequest, principal: Principal): void {
  const ctx = contextOf(request.raw);
  if (!ctx) return;
  ctx.product = principal.product;
  ctx.user = principal.user;
}

/** What `passport.authenticate` returns (typed `any`): a connect-style middleware. */
type PassportMiddleware = (request: unknown, response: unknown, next: () => void) => void;

/** Messages of jsonwebtoken/passport-jwt failures, rewritten so no configured value is echoed. */
const FAILURE_MESSAGES: ReadonlyArray<[RegExp, string]> = [
  [/jwt expired/i, 'the token has expired'],
  [/jwt not active/i, 'the token is not valid yet (nbf)'],
  [/jwt audience invalid/i, 'the token audience is not accepted'],
  [/jwt issuer invalid/i, 'the token issuer is not accepted'],
  [/invalid algorithm/i, 'the token algorithm is not accepted'],
  [/invalid signature/i, 'the token signature is invalid'],
  [/jwt malformed|invalid token|jwt must be|unexpected token|json/i, 'the token is malformed'],
];

/**
 * Authenticates a request with the credential strategies configured at boot (JWT, HMAC, IAP: the
 * passport module's default strategies, tried in that order) and stores the {@link Principal} on
 * the request. The first strategy that accepts its credential wins (a request carrying a valid
 * HMAC signature is served as that client even beside an unusable bearer token); when none does,
 * a strategy that found no credential of its kind steps aside and the first that found one and
 * refused it gives the answer. Every failure is a `GatewayError` (401, or 503 when the HMAC replay
 * cache is down).
 */
@Injectable()
export class CredentialGuard extends AuthGuard() {
  /** The strategies whose credential is all in the headers (JWT, IAP): every one but HMAC, which signs the body too. */
  private readonly headerStrategies: readonly string[];
  /** Every strategy this guard tries. */
  private readonly strategies: ReadonlySet<string>;

  constructor(
    private readonly verified: VerifiedTokenCache,
    @Optional() options?: AuthModuleOptions,
  ) {
    // The passport module's options carry the default strategies (see AuthModule).
    super(options);
    const configured = options?.defaultStrategy ?? [];
    const strategies = Array.isArray(configured) ? configured : [configured];
    this.strategies = new Set(strategies);
    this.headerStrategies = strategies.filter((name) => name !== HMAC_STRATEGY);
  }

  /**
   * Whether a request presents a credential of a kind configured here: a bearer token (JWT), any of
   * the HMAC headers (an HMAC attempt, as the HMAC strategy reads it), an IAP assertion. Its 401
   * says the credential is invalid (RFC 6750 §3.1's `error="invalid_token"`); a 401 for a request
   * with none, or with only a kind not configured here (an unsupported method), asks for one.
   */
  presentsCredential(headers: IncomingHttpHeaders): boolean {
    return (
      (this.strategies.has(JWT_STRATEGY) && (bearerToken(headers.authorization) !== undefined || malformedBearer(headers.authorization))) ||
      (this.strategies.has(HMAC_STRATEGY) && parseHmacHeaders(headers).status !== 'absent') ||
      (this.strategies.has(IAP_STRATEGY) && headers[IAP_ASSERTION_HEADER] !== undefined)
    );
  }

  /**
   * Names on the audit context the caller a request's headers prove, for a request refused before
   * its body arrived (the request timeout), which never reaches the guard: Fastify reads the body
   * before any guard runs. A bearer JWT or an IAP assertion is checked as the guard checks it; an
   * HMAC signature covers the body, so its X-Client-Id is only a claim and names no one. Resolves
   * once done, whatever the outcome; nothing is refused here.
   */
  async nameCallerFromHeaders(request: FastifyRequest): Promise<void> {
    const token = bearerToken(request.headers.authorization);
    let principal = token === undefined ? undefined : this.verified.get(token);
    if (!principal && this.headerStrategies.length > 0) {
      principal = await new Promise<Principal | undefined>((resolve) => {
        const done = (error: unknown, user: unknown): void => resolve(!error && user ? (user as Principal) : undefined);
        // With a callback, passport answers through it alone and never writes to the response.
        const middleware = passport.authenticate([...this.headerStrategies], { session: false }, done) as PassportMiddleware;
        middleware(request, undefined, () => resolve(undefined));
      });
    }
    if (principal) recordPrincipal(request, principal);
  }

  /**
   * For a request refused before the guard ran (an upload timeout, a body Fastify refused): its audit
   * line names the caller {@link nameCallerFromHeaders} finds, and waits for that check; the answer
   * does not. Nothing to do for a request not audited, or whose caller is known already.
   */
  nameCallerBeforeAudit(request: FastifyRequest): void {
    const ctx = contextOf(request.raw);
    if (!ctx?.auditable || ctx.user !== null) return;
    const settled = ctx.settled;
    ctx.settled = this.nameCallerFromHeaders(request).then(() => settled);
  }

  /** A bearer token seen and verified before skips passport and the signature check. */
  override async canActivate(context: ExecutionContext): Promise<boolean> {
    const request = context.switchToHttp().getRequest<FastifyRequest & { user?: Principal }>();
    const token = bearerToken(request.headers.authorization);
    const known = token === undefined ? undefined : this.verified.get(token);
    if (known) {
      request.user = known;
      recordPrincipal(request, known);
    } else if (!((await super.canActivate(context)) as boolean)) {
      return false;
    }
    // A route naming its product (/chat/{product}) serves only the credential's own: refused here,
    // before the body is read and before any limit counts the request.
    const pathProduct = (request.params as { product?: unknown } | undefined)?.product;
    const principal = request.user;
    if (typeof pathProduct === 'string' && principal && pathProduct !== principal.product)
      throw new GatewayError('forbidden', `this credential is for product ${principal.product}, not ${pathProduct}`);
    return true;
  }

  override handleRequest<TUser = Principal>(err: unknown, user: unknown, info: unknown, context: ExecutionContext): TUser {
    if (err instanceof GatewayError) throw err;
    if (user) {
      recordPrincipal(context.switchToHttp().getRequest<FastifyRequest>(), user as Principal);
      return user as TUser;
    }
    const reasons: unknown[] = Array.isArray(info) ? info : [info ?? err];
    const refusal = reasons.find((r): r is GatewayError => r instanceof GatewayError);
    if (refusal) throw refusal;
    for (const reason of reasons) {
      const text = reason instanceof Error ? reason.message : typeof reason === 'string' ? reason : '';
      if (/no auth token/i.test(text) || text === '') continue;
      const hit = FAILURE_MESSAGES.find(([pattern]) => pattern.test(text));
      throw new GatewayError('invalid_token', hit ? hit[1] : 'the credential is invalid');
    }
    throw new GatewayError('invalid_token', 'a credential is required (a bearer token, an HMAC signature or an IAP assertion)');
  }
}
