/** Per-product limits after merging `defaults` with `products.<name>`; 0 means "no limit". */
export interface Limits {
  requestsPerSecond: number;
  userRequestsPerSecond: number;
  dailyRequests: number;
  userDailyRequests: number;
  dailyTokens: number;
  userDailyTokens: number;
  /** US dollars the product's priced requests may cost per UTC day (0: no budget). */
  dailyCostUsd: number;
  /** The same for each user of the product. */
  userDailyCostUsd: number;
}

/** Server-side parameter policy after merging. */
export interface ParameterPolicy {
  maxTokens: number;
  temperature: { min: number; max: number };
  maxRequestBytes: number;
  maxStreamSeconds: number;
  /** Top-level request fields refused; a trailing `*` matches any ending. */
  refusedFields: readonly string[];
  /** Tool types refused in `tools` (a tool without a type is `custom`); a trailing `*` matches any ending. */
  refusedTools: readonly string[];
  /** `anthropic-beta` features refused on `/v1/messages`; a trailing `*` matches any ending. */
  refusedBetas: readonly string[];
  /** Whether each request carries the caller's pseudonymous id to the provider (see `endUserId` in @keygate/policy). */
  endUserId: boolean;
}

/** Everything the policy file says about one product, resolved. */
export interface ProductPolicy {
  limits: Limits;
  policy: ParameterPolicy;
  /** model → ordered fallback models. */
  fallbacks: Readonly<Record<string, readonly string[]>>;
  /** Auto-block of users who keep hitting their limits; `rejections: 0` is off. */
  autoBlock: { rejections: number; windowSeconds: number; blockSeconds: number };
  /** IAP users allowed to call this product: `user:<email>` or `domain:<domain>` (lowercase). */
  iapMembers: readonly string[];
}

/** One set of rates, in US dollars per million tokens (the providers' price lists' unit). */
export interface PriceRates {
  /** Prompt tokens read from nowhere cheaper. */
  input: number;
  /** Prompt tokens read from the provider's prompt cache (`input` when the file says nothing). */
  cachedInput: number;
  /** Prompt tokens written to the prompt cache for 5 minutes, Anthropic's (`input` when the file says nothing). */
  cacheWrite: number;
  /** Prompt tokens written to the prompt cache for an hour, Anthropic's (`cacheWrite` when the file says nothing). */
  cacheWrite1h: number;
  /** Output tokens, reasoning included. */
  output: number;
}

/**
 * The rates of a request whose prompt (cache reads and writes included) is longer than
 * `abovePromptTokens`: every token of it, input and output, as the long-context prices of Gemini
 * 2.5 Pro (over 200k) and Claude's 1M-token context window (over 200k) bill a whole request.
 */
export interface PriceTier extends PriceRates {
  abovePromptTokens: number;
}

/**
 * What a model's tokens cost, from the policy file's `prices`: the audit's `cost_usd` and
 * `keygate_cost_usd_total`. The rates are a prompt's up to the first tier's threshold.
 */
export interface ModelPrice extends PriceRates {
  /** Higher rates for longer prompts, by ascending threshold; none when left out (see {@link ratesAt}). */
  tiers?: readonly PriceTier[];
}

/** The policy file, resolved once at boot: `forProduct` is a map lookup on the hot path. */
export interface PolicyBook {
  readonly defaults: ProductPolicy;
  forProduct(product: string): ProductPolicy;
  /** The fallbacks a product's own section gives (not the defaults'): to check against the models it serves. */
  ownFallbacks(product: string): Readonly<Record<string, readonly string[]>>;
  /** The price of a model's tokens: its own entry, else the longest `prefix*` entry it matches; undefined when none. */
  priceOf(model: string): ModelPrice | undefined;
  /** The largest `max_request_bytes` of any product: the HTTP server's hard body limit. */
  readonly largestRequestBytes: number;
  /** The products the file names under `products` (to check against the product keys). */
  readonly productNames: readonly string[];
  /** The longest `max_stream_seconds` of any product (it must fit the upstream total timeout). */
  readonly longestStreamSeconds: number;
  /** Settings that are valid but cannot work as meant, logged as WARNING lines at boot. */
  readonly warnings: readonly string[];
}
