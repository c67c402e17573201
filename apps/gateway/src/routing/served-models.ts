import type { ProductEntry } from '@keygate/secrets';

/**
 * The product's models by exact name (a pattern names no model), each once, with the provider that
 * serves it, in the configuration's order; only `provider`'s when given. What the model lists
 * (`GET /v1/models`, `GET /v1beta/models`) show: the models a request may name.
 */
export function servedModels(product: ProductEntry, provider?: string): Array<[id: string, provider: string]> {
  const out: Array<[string, string]> = [];
  for (const id of product.modelIds) {
    const access = product.route(id);
    if (access && (provider === undefined || access.provider === provider)) out.push([id, access.provider]);
  }
  return out;
}
