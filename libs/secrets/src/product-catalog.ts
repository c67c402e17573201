/** Upstream providers keygate speaks to. */
export type ProviderName = 'openai' | 'anthropic' | 'gemini';

export const PROVIDER_NAMES: readonly ProviderName[] = ['openai', 'anthropic', 'gemini'];

/** The public endpoint of each provider, written as its official SDK takes it (SPEC §3). */
export const DEFAULT_BASE_URLS: Readonly<Record<ProviderName, string>> = {
  openai: 'https://api.openai.com/v1',
  anthropic: 'https://api.anthropic.com',
  gemini: 'https://generativelanguage.googleapis.com',
};

/** One product's access to one provider. */
export interface ProviderAccess {
  readonly provider: ProviderName;
  readonly apiKey: string;
  /** Without trailing slash. */
  readonly baseUrl: string;
  /** Exact model names; a trailing `*` entry is a prefix pattern; the legacy format has `['*']`. */
  readonly models: readonly string[];
}

/** A product from the product-keys secret, with model routing precomputed. */
export interface ProductEntry {
  readonly name: string;
  readonly providers: readonly ProviderAccess[];
  /** The provider that serves `model` for this product, if any. */
  route(model: string): ProviderAccess | undefined;
  /** Every exact model name this product may use, for `GET /v1/models`. */
  readonly modelIds: readonly string[];
  /**
   * The configured entry that serves `model`: its exact name, or the pattern it matched
   * (`gpt-4o*`, `*`), never a name the client made up. For metric labels.
   */
  configuredModel(model: string): string | undefined;
}

/** All products, keyed by name. */
export type ProductCatalog = ReadonlyMap<string, ProductEntry>;

/**
 * Builds a product's routing: exact names first (a map lookup), then prefix patterns, the longest
 * (most specific) first, so `gpt-4*` under one provider wins over `gpt*` under another whatever
 * the order of the keys in the secret.
 */
export function makeProductEntry(name: string, providers: ProviderAccess[]): ProductEntry {
  const exact = new Map<string, ProviderAccess>();
  const patterns: Array<{ prefix: string; entry: string; access: ProviderAccess }> = [];
  for (const access of providers) {
    for (const model of access.models) {
      if (model.endsWith('*')) patterns.push({ prefix: model.slice(0, -1), entry: model, access });
      else if (!exact.has(model)) exact.set(model, access);
    }
  }
  // Stable: equal lengths keep their order (the same pattern twice is refused by the parser).
  patterns.sort((a, b) => b.prefix.length - a.prefix.length);
  return {
    name,
    providers,
    modelIds: [...exact.keys()],
    route(model) {
      const hit = exact.get(model);
      if (hit) return hit;
      for (const p of patterns) if (model.startsWith(p.prefix)) return p.access;
      return undefined;
    },
    configuredModel(model) {
      if (exact.has(model)) return model;
      for (const p of patterns) if (model.startsWith(p.prefix)) return p.entry;
      return undefined;
    },
  };
}

/** Which products name each model: exactly, or through a pattern other than the catch-all. */
interface ModelOwners {
  /** Exact model name -> the products that list it. */
  readonly exact: ReadonlyMap<string, readonly string[]>;
  /** Prefix patterns (`gpt-4o*`, not `*`), with their product. */
  readonly patterns: ReadonlyArray<{ readonly prefix: string; readonly product: string }>;
}

/** One index per catalog (a rotation brings a new catalog, hence a new index), built when first asked. */
const ownersByCatalog = new WeakMap<ProductCatalog, ModelOwners>();

function ownersOf(products: ProductCatalog): ModelOwners {
  let owners = ownersByCatalog.get(products);
  if (owners) return owners;
  const exact = new Map<string, string[]>();
  const patterns: Array<{ prefix: string; product: string }> = [];
  for (const [name, entry] of products)
    for (const access of entry.providers)
      for (const model of access.models) {
        if (model === '*') continue;
        if (model.endsWith('*')) patterns.push({ prefix: model.slice(0, -1), product: name });
        else {
          const list = exact.get(model);
          if (!list) exact.set(model, [name]);
          else if (!list.includes(name)) list.push(name);
        }
      }
  owners = { exact, patterns };
  ownersByCatalog.set(products, owners);
  return owners;
}

/**
 * Whether a product other than `except` names `model`: exactly, or through a pattern with a prefix.
 * The legacy format's catch-all (`*`) names no model in particular, so it does not count. Asked on
 * every request refused for its model (403 or 404): answered from an index of the catalog (a Map
 * of exact names, and the patterns), not by asking each of a platform's 1,000 products in turn.
 */
export function namedByAnotherProduct(products: ProductCatalog, except: string, model: string): boolean {
  const { exact, patterns } = ownersOf(products);
  const named = exact.get(model);
  if (named && named.some((name) => name !== except)) return true;
  return patterns.some((p) => p.product !== except && model.startsWith(p.prefix));
}

/**
 * The models the policy gives fallbacks for that no product serves (once each): a typo in a
 * `fallbacks` key (`gpt-4o-minii`) leaves the real model without its fallbacks, silently. Said at
 * boot and after each rotation, with {@link unservedFallbacks}.
 */
export function fallbacksForNoModel(
  products: ProductCatalog,
  fallbacksOf: (product: string) => Readonly<Record<string, readonly string[]>>,
): string[] {
  const models = new Set<string>();
  for (const name of products.keys()) for (const model of Object.keys(fallbacksOf(name))) models.add(model);
  return [...models].filter((model) => ![...products.values()].some((entry) => entry.route(model)));
}

/**
 * The models a product's own `fallbacks` are given for that it does not serve, though another
 * product does (`product: model`): a key copied from another product's section, or misspelt into
 * another product's model, never applies to this one. (Keys no product serves are
 * {@link fallbacksForNoModel}'s; the defaults' keys apply only where a product serves them.)
 */
export function fallbacksForAnotherProductsModel(
  products: ProductCatalog,
  ownFallbacksOf: (product: string) => Readonly<Record<string, readonly string[]>>,
): string[] {
  const out: string[] = [];
  for (const [name, entry] of products)
    for (const [model, list] of Object.entries(ownFallbacksOf(name)))
      if (list.length && !entry.route(model) && [...products.values()].some((other) => other.route(model))) out.push(`${name}: ${model}`);
  return out;
}

/**
 * A product's fallbacks that name a model its keys do not serve (`product: model -> fallback`), for
 * the models it does serve: each request of that model would skip them. Said once at boot and
 * after each rotation rather than on every request.
 */
export function unservedFallbacks(
  products: ProductCatalog,
  fallbacksOf: (product: string) => Readonly<Record<string, readonly string[]>>,
): string[] {
  const out: string[] = [];
  for (const [name, entry] of products) {
    for (const [model, list] of Object.entries(fallbacksOf(name))) {
      if (!entry.route(model)) continue;
      for (const fallback of list) if (!entry.route(fallback)) out.push(`${name}: ${model} -> ${fallback}`);
    }
  }
  return out;
}

/** Hosts a plain-HTTP base_url may name without leaving the machine (a sidecar, a local mock). */
const LOOPBACK = /^(localhost|127(?:\.\d{1,3}){3}|\[::1\])$/i;

/**
 * The providers whose `base_url` is plain HTTP to a host other than this machine's
 * (`product: provider http://host`): the product's key and every prompt would cross the network
 * unencrypted. Allowed (an in-cluster proxy may terminate TLS itself) but said at boot and after
 * each rotation.
 */
export function plainHttpUpstreams(products: ProductCatalog): string[] {
  const out: string[] = [];
  for (const [name, entry] of products)
    for (const access of entry.providers) {
      if (!access.baseUrl.toLowerCase().startsWith('http://')) continue;
      // Its host only: a path or user info may hold something secret.
      const url = new URL(access.baseUrl);
      if (!LOOPBACK.test(url.hostname)) out.push(`${name}: ${access.provider} http://${url.host}`);
    }
  return out;
}
