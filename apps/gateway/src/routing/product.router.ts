import { Inject, Injectable } from '@nestjs/common';
import type { Principal } from '@keygate/auth';
import { GatewayConfig, type ProductPolicy } from '@keygate/config';
import { GatewayError } from '@keygate/errors';
import { JsonLogger, KEYGATE_LOGGER, type RequestContext } from '@keygate/observability';
import { ProviderRegistry, type ProviderAdapter } from '@keygate/providers';
import { SecretsService, namedByAnotherProduct, type ProductEntry, type ProviderAccess } from '@keygate/secrets';

/** Where one model of one product is served, and under which policy. */
export interface ResolvedRoute {
  product: ProductEntry;
  policy: ProductPolicy;
  access: ProviderAccess;
  adapter: ProviderAdapter;
}

/**
 * The first steps of every model call: the credential's product, its body-size limit, and the
 * provider serving the requested model. Records product, model and provider on the context.
 */
@Injectable()
export class ProductRouter {
  constructor(
    @Inject(GatewayConfig) private readonly config: GatewayConfig,
    private readonly secrets: SecretsService,
    private readonly providers: ProviderRegistry,
    @Inject(KEYGATE_LOGGER) private readonly logger: JsonLogger,
  ) {}

  /** The product entry and policy of the principal; 403 when the product is not configured. */
  product(principal: Principal): { product: ProductEntry; policy: ProductPolicy } {
    const product = this.secrets.product(principal.product);
    if (!product) throw new GatewayError('forbidden', `product ${principal.product} is not configured on this gateway`);
    return { product, policy: this.config.policy.forProduct(product.name) };
  }

  /** Resolves `model` for the principal's product after checking the body size. */
  resolve(ctx: RequestContext, principal: Principal, model: string, bodyBytes: number): ResolvedRoute {
    const { product, policy } = this.product(principal);
    if (bodyBytes > policy.policy.maxRequestBytes) {
      throw new GatewayError(
        'request_too_large',
        `the request body exceeds this product's limit of ${policy.policy.maxRequestBytes} bytes`,
      );
    }
    ctx.model = model;
    ctx.requestedModel = model;
    return { product, policy, ...this.serve(ctx, product, model) };
  }

  /**
   * {@link resolve} for a route that passes one provider's API through (`/v1/messages`,
   * `/v1/responses`): a model another provider serves is refused, naming the route to use instead.
   */
  resolveServedBy(
    ctx: RequestContext,
    principal: Principal,
    model: string,
    bodyBytes: number,
    served: { provider: ProviderAccess['provider']; route: string; api: string },
  ): ResolvedRoute {
    const first = this.resolve(ctx, principal, model, bodyBytes);
    if (first.access.provider !== served.provider)
      throw new GatewayError(
        'unsupported_parameter',
        `The model '${model}' is served by ${first.access.provider}: ${served.route} serves ${served.api} models, use /v1/chat/completions for it`,
        { param: 'model' },
      );
    return first;
  }

  /**
   * `model` as resolved in `first`, then the policy's fallbacks for it that this product can serve
   * (and that `accept` takes, for a route bound to one provider).
   */
  withFallbacks(
    ctx: RequestContext,
    first: ResolvedRoute,
    model: string,
    accept: (access: ProviderAccess) => boolean = () => true,
  ): Array<{ model: string; access: ProviderAccess; adapter: ProviderAdapter }> {
    const list = [{ model, access: first.access, adapter: first.adapter }];
    // An own property only: the model is the client's, and `constructor` must not find Object's.
    const fallbacks = Object.hasOwn(first.policy.fallbacks, model) ? first.policy.fallbacks[model] : [];
    for (const fallback of fallbacks) {
      let served: { access: ProviderAccess; adapter: ProviderAdapter };
      try {
        served = this.serve(ctx, first.product, fallback);
      } catch {
        // Said once as a WARNING at boot and after each rotation (SecretsService); per request, DEBUG.
        this.logger.write('DEBUG', 'fallback model is not served for this product; skipped', {
          product: first.product.name,
          model: fallback,
        });
        continue;
      }
      if (accept(served.access)) list.push({ model: fallback, ...served });
    }
    ctx.provider = first.access.provider;
    return list;
  }

  /** The provider access and adapter for a model of a product (also used for fallbacks). */
  serve(ctx: RequestContext, product: ProductEntry, model: string): { access: ProviderAccess; adapter: ProviderAdapter } {
    const access = product.route(model);
    if (!access) {
      // SPEC §6: 403 for a model this gateway serves to other products only, 404 for one it does not know.
      if (namedByAnotherProduct(this.secrets.current.products, product.name, model))
        throw new GatewayError('model_not_allowed', `The model '${model}' is not enabled for product ${product.name}`, { param: 'model' });
      throw new GatewayError('model_not_found', `The model '${model}' does not exist on this gateway`, { param: 'model' });
    }
    const adapter = this.providers.get(access.provider);
    if (!adapter)
      throw new GatewayError('model_not_found', `The model '${model}' is served by ${access.provider}, which this gateway cannot reach`, {
        param: 'model',
      });
    ctx.provider = access.provider;
    return { access, adapter };
  }
}
