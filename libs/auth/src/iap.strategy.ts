import type { IncomingHttpHeaders } from 'node:http';
import { Inject, Injectable } from '@nestjs/common';
import { PassportStrategy } from '@nestjs/passport';
import { GatewayConfig } from '@keygate/config';
import { GatewayError } from '@keygate/errors';
import { contextOf } from '@keygate/observability';
import { SecretsService } from '@keygate/secrets';
import { Strategy } from 'passport-strategy';
import { IapVerifier, isIapMember, type IapIdentity } from './iap.verifier';
import type { Principal } from './principal';

/** Passport strategy name of the IAP strategy. */
export const IAP_STRATEGY = 'keygate-iap';

/** Header IAP adds to every request it lets through. */
export const IAP_ASSERTION_HEADER = 'x-goog-iap-jwt-assertion';

/** Header an IAP user may send to choose a product on `/v1/*` when several are open to them. */
export const PRODUCT_HEADER = 'x-keygate-product';

/** The parts of a Fastify request the strategy reads. */
export interface IapRequest {
  readonly headers: IncomingHttpHeaders;
  readonly params?: unknown;
  /** Node's request, carrying the audit context and the raw headers (absent in unit tests that build a bare request). */
  readonly raw?: object;
}

/**
 * Google IAP (SPEC §5). The user is the assertion's email; the products they may call are set in
 * the policy file (`iap_members`). The product is the one in the path (`/chat/{product}`), else
 * the `X-Keygate-Product` header, else the only product open to the user.
 */
@Injectable()
export class IapStrategy extends PassportStrategy(Strategy, IAP_STRATEGY) {
  constructor(
    private readonly verifier: IapVerifier,
    private readonly secrets: SecretsService,
    @Inject(GatewayConfig) private readonly config: GatewayConfig,
  ) {
    super();
  }

  /** Passport entry point; `this` is passport's per-request copy carrying success/fail/error. */
  override authenticate(request: IapRequest): void {
    void this.validate(request).then(
      (principal) => (principal ? this.success(principal) : this.fail(401)),
      (error: unknown) =>
        this.error(
          error instanceof GatewayError
            ? error
            : new GatewayError('internal_error', 'the IAP assertion could not be checked', { cause: error }),
        ),
    );
  }

  /** The principal, `false` when no assertion was sent, or a `GatewayError`. */
  async validate(request: IapRequest): Promise<Principal | false> {
    const assertion = request.headers[IAP_ASSERTION_HEADER];
    if (assertion === undefined) return false;
    if (typeof assertion !== 'string' || isRepeated(request, assertion))
      throw new GatewayError('invalid_token', 'send one IAP assertion header');
    const identity = await this.verifier.verify(assertion);
    let product: string;
    try {
      product = this.productFor(identity, request);
    } catch (error) {
      // The assertion was verified: the audit names who was refused (and the product asked for,
      // when it is one of this gateway's), as it does for a JWT or HMAC caller refused a product.
      const ctx = request.raw ? contextOf(request.raw) : undefined;
      if (ctx) {
        ctx.user = identity.email;
        const wanted = wantedProduct(request);
        if (wanted !== undefined && this.secrets.product(wanted)) ctx.product = wanted;
      }
      throw error;
    }
    return { kind: 'iap', product, user: identity.email, scopes: [] };
  }

  private productFor(identity: IapIdentity, request: IapRequest): string {
    const { email } = identity;
    const wanted = wantedProduct(request);
    const allowed = (name: string): boolean => isIapMember(identity, this.config.policy.forProduct(name).iapMembers);
    if (wanted !== undefined) {
      if (!this.secrets.product(wanted) || !allowed(wanted)) throw new GatewayError('forbidden', `${email} may not use product ${wanted}`);
      return wanted;
    }
    const open = [...this.secrets.current.products.keys()].filter(allowed);
    if (open.length === 1) return open[0];
    if (open.length === 0) throw new GatewayError('forbidden', `${email} may not use any product`);
    throw new GatewayError(
      'forbidden',
      `${email} may use several products: choose one with the X-Keygate-Product header or /chat/{product}`,
    );
  }
}

/**
 * Whether the assertion header was sent more than once. Node joins the repeats of a header it
 * does not know into one `a, b` value, which would be refused for the wrong reason (two compact
 * JWTs make five dot-separated parts: "JWE"). Counted in the raw headers; without them (a bare
 * request), the join gives it away, as a JWS never holds a comma.
 */
function isRepeated(request: IapRequest, assertion: string): boolean {
  const rawHeaders = (request.raw as { rawHeaders?: unknown } | undefined)?.rawHeaders;
  if (!Array.isArray(rawHeaders)) return assertion.includes(',');
  let count = 0;
  for (let i = 0; i < rawHeaders.length; i += 2)
    if (typeof rawHeaders[i] === 'string' && (rawHeaders[i] as string).toLowerCase() === IAP_ASSERTION_HEADER) count++;
  return count > 1;
}

/** The product the request names: in its path, else in the X-Keygate-Product header. */
function wantedProduct(request: IapRequest): string | undefined {
  return pathProduct(request.params) ?? single(request.headers[PRODUCT_HEADER]);
}

function pathProduct(params: unknown): string | undefined {
  const product = (params as { product?: unknown } | undefined)?.product;
  return typeof product === 'string' ? product : undefined;
}

function single(value: string | string[] | undefined): string | undefined {
  return typeof value === 'string' ? value : undefined;
}
