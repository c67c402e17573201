import type { IncomingHttpHeaders } from 'node:http';
import { Inject, Injectable, Optional } from '@nestjs/common';
import { PassportStrategy } from '@nestjs/passport';
import { GatewayError } from '@keygate/errors';
import { contextOf } from '@keygate/observability';
import type { HmacClient } from '@keygate/secrets';
import { Strategy } from 'passport-strategy';
import {
  HMAC_WINDOW_SECONDS,
  canonicalString,
  isNormalisedTarget,
  originFormTarget,
  parseHmacHeaders,
  sha256Hex,
  verifySignature,
  withinWindow,
} from './hmac-signature';
import type { Principal } from './principal';
import { ReplayCache, ReplayCacheUnavailableError } from './replay-cache';

/** Passport strategy name of the HMAC strategy. */
export const HMAC_STRATEGY = 'keygate-hmac';

/**
 * How long a signature is remembered: a timestamp is accepted from 300 s before to 300 s after it
 * (in whole seconds of the gateway clock, so up to 601 s of real time), and replicas' clocks may
 * differ; a signature first seen at the earliest moment must still be known at the latest on any
 * replica. The minute of margin covers the rounding and a clock drift far beyond NTP's.
 */
export const HMAC_REPLAY_TTL_SECONDS = 2 * HMAC_WINDOW_SECONDS + 60;

/** Finds an HMAC client by id in the secrets in force now (bound to the secrets service). */
export interface HmacClientLookup {
  client(id: string): HmacClient | undefined;
}

/** Injection token of the {@link HmacClientLookup}. */
export const HmacClientLookup = Symbol('KEYGATE:HMAC_CLIENTS');

/** Current time in unix seconds. */
export type HmacClock = () => number;

/** Injection token of the {@link HmacClock}; unbound, the system clock is used. */
export const HMAC_CLOCK = Symbol('KEYGATE:HMAC_CLOCK');

/** The system clock in unix seconds. */
export const systemClockSeconds: HmacClock = () => Math.floor(Date.now() / 1000);

/** The parts of a Fastify request the strategy reads. */
export interface HmacRequest {
  readonly headers: IncomingHttpHeaders;
  readonly method: string;
  /** The request target exactly as received: path and query string, or an absolute URL (absolute form). */
  readonly url: string;
  /** The body bytes as received; Nest sets it for parsed bodies when the app has `rawBody: true`. */
  readonly rawBody?: Buffer;
  /** Node's request, carrying the audit context (absent in unit tests that build a bare request). */
  readonly raw?: object;
}

/**
 * HMAC request signing (SPEC §5). A request without any of the three headers is left to the
 * other strategies (`fail` without info). A request with any of them is an HMAC attempt and
 * ends in success or a `GatewayError`, handed to passport through `error()`: that stops the
 * chain, so the guard surfaces this reason rather than another strategy's "no token".
 * The replay check runs last, so only correctly signed requests spend a cache write, and an
 * attacker cannot burn a legitimate client's signature with a forged one.
 */
@Injectable()
export class HmacStrategy extends PassportStrategy(Strategy, HMAC_STRATEGY) {
  private readonly clock: HmacClock;

  constructor(
    @Inject(HmacClientLookup) private readonly clients: HmacClientLookup,
    @Inject(ReplayCache) private readonly replay: ReplayCache,
    @Optional() @Inject(HMAC_CLOCK) clock?: HmacClock,
  ) {
    super();
    this.clock = clock ?? systemClockSeconds;
  }

  /** Passport entry point; `this` is passport's per-request copy carrying success/fail/error. */
  override authenticate(request: HmacRequest): void {
    void this.validate(request).then(
      (principal) => (principal ? this.success(principal) : this.fail(401)),
      (error: unknown) =>
        this.error(
          error instanceof GatewayError
            ? error
            : new GatewayError('internal_error', 'the HMAC credential could not be checked', { cause: error }),
        ),
    );
  }

  /**
   * The HMAC check. Resolves to the principal, or to `false` when the request carries no HMAC
   * header at all; rejects with a `GatewayError` for every failed attempt.
   */
  async validate(request: HmacRequest): Promise<Principal | false> {
    const parsed = parseHmacHeaders(request.headers);
    if (parsed.status === 'absent') return false;
    if (parsed.status === 'invalid') throw invalid(parsed.problem);
    const { clientId, timestamp, signature } = parsed.headers;

    // An absolute-form target is signed, checked and routed as its path and query.
    const target = typeof request.url === 'string' ? originFormTarget(request.url) : undefined;
    if (target === undefined || !isNormalisedTarget(target)) {
      // Every rule is named: a client refused for /chat/%64emo was told only of dots and slashes.
      throw invalid(
        'the request path must be in normal form (no //, dot segments or backslashes, no percent-encoded / or \\, and no percent-encoded letter, digit, -, ., _ or ~, which need no encoding)',
      );
    }
    const client = this.clients.client(clientId);
    if (!client) throw invalid('the X-Client-Id is not a known HMAC client');
    if (!withinWindow(Number(timestamp), this.clock(), HMAC_WINDOW_SECONDS)) {
      throw invalid(`the X-Timestamp is more than ${HMAC_WINDOW_SECONDS} s away from the gateway clock`);
    }
    const body = bodyOf(request);
    const canonical = canonicalString(timestamp, request.method, target, sha256Hex(body));
    if (!verifySignature(client.secret, canonical, signature)) throw invalid('the X-Signature does not match the request');

    let firstUse: boolean;
    try {
      firstUse = await this.replay.remember(`${clientId}:${timestamp}:${signature}`, HMAC_REPLAY_TTL_SECONDS, Number(timestamp));
    } catch (error) {
      if (error instanceof ReplayCacheUnavailableError) {
        // The signature verified, so the client is known though the request is refused: the audit
        // names it, as it names a verified caller refused a product.
        nameCaller(request, client);
        throw new GatewayError('service_unavailable', error.clientMessage ?? 'the replay cache is unavailable; retry shortly', {
          retryAfterSeconds: error.retryAfterSeconds ?? 1,
          cause: error,
        });
      }
      throw error;
    }
    if (!firstUse) throw invalid('this signature was already used');
    return { kind: 'hmac', product: client.product, user: client.clientId, scopes: [] };
  }
}

/**
 * The signed body bytes. A request that declares a body the gateway holds no raw bytes of is
 * refused: hashing it as empty would let a body be added to a request signed without one.
 */
function bodyOf(request: HmacRequest): Buffer | undefined {
  if (Buffer.isBuffer(request.rawBody)) return request.rawBody;
  const length = request.headers['content-length'];
  if (request.headers['transfer-encoding'] !== undefined || (length !== undefined && length !== '0')) {
    // Fastify reads no body of a GET or HEAD: the client's mistake, not a failed signature.
    if (request.method === 'GET' || request.method === 'HEAD')
      throw new GatewayError('invalid_request', `a ${request.method} request takes no body`);
    throw invalid('the request body cannot be verified (send it as application/json)');
  }
  return undefined;
}

/** Puts a verified client on the request's audit context. */
function nameCaller(request: HmacRequest, client: HmacClient): void {
  const ctx = request.raw ? contextOf(request.raw) : undefined;
  if (!ctx) return;
  ctx.product = client.product;
  ctx.user = client.clientId;
}

function invalid(message: string): GatewayError {
  return new GatewayError('invalid_token', message);
}
