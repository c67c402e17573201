import { readFileSync } from 'node:fs';
import { isScalar, parseDocument, type ParsedNode } from 'yaml';
import { ConfigError } from './config.error';
import { MAX_PRICE_TIERS, ModelPriceSchema, PriceTierSchema, ProductPolicySchema } from './policy.schema';
import type { Limits, ModelPrice, ParameterPolicy, PolicyBook, PriceRates, PriceTier, ProductPolicy } from './policy.types';
import { validatePlain } from './validation.util';

/** Built-in defaults, the values SPEC §4 shows; used where the policy file says nothing. */
export const BUILT_IN_POLICY: ProductPolicy = Object.freeze({
  limits: Object.freeze({
    requestsPerSecond: 10,
    userRequestsPerSecond: 2,
    dailyRequests: 10_000,
    userDailyRequests: 1_000,
    dailyTokens: 5_000_000,
    userDailyTokens: 500_000,
    dailyCostUsd: 0,
    userDailyCostUsd: 0,
  }),
  policy: Object.freeze({
    maxTokens: 4096,
    temperature: Object.freeze({ min: 0, max: 1.5 }),
    maxRequestBytes: 1_048_576,
    maxStreamSeconds: 300,
    refusedFields: Object.freeze([]),
    refusedTools: Object.freeze([]),
    refusedBetas: Object.freeze([]),
    endUserId: false,
  }),
  fallbacks: Object.freeze({}),
  autoBlock: Object.freeze({ rejections: 100, windowSeconds: 60, blockSeconds: 900 }),
  iapMembers: Object.freeze([]),
});

/** Reads and resolves the policy file at `path` (YAML or JSON); no path → built-in defaults. */
export function loadPolicyFile(path: string | undefined): PolicyBook {
  if (!path) return buildPolicyBook({});
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    throw new ConfigError(`API_KEY_SERVER_POLICY_FILE: cannot read ${path} (${(error as NodeJS.ErrnoException).code ?? 'error'})`);
  }
  const invalid = (message: string): ConfigError =>
    new ConfigError(`API_KEY_SERVER_POLICY_FILE: ${path} is not valid YAML or JSON: ${message.split('\n')[0]}`);
  let doc: unknown;
  try {
    // YAML 1.2 is a superset of JSON, so one parser reads both formats. Merge keys (`<<: *limits`)
    // are read, as YAML 1.1 and Kubernetes tooling read them, to share a block between products.
    // YAML 1.1's other tags are not: !!omap and !!set made a Map or a Set, whose fields were then
    // silently ignored, and a tag the parser cannot resolve (!!js/function, !!float on an integer)
    // left a string and printed a raw, multi-line warning on stderr: both stop the boot instead.
    const parsed = parseDocument(text, { uniqueKeys: sameKey, merge: true, resolveKnownTags: false });
    const problem = parsed.errors[0] ?? parsed.warnings[0];
    if (problem) throw invalid(problem.message);
    doc = parsed.toJS();
  } catch (error) {
    if (error instanceof ConfigError) throw error;
    throw invalid((error as Error).message);
  }
  const book = buildPolicyBook(doc ?? {}, `API_KEY_SERVER_POLICY_FILE (${path})`);
  // An empty file (a ConfigMap key mounted empty) leaves every product on the built-in defaults: said.
  if (doc === null || doc === undefined)
    return {
      ...book,
      warnings: [`API_KEY_SERVER_POLICY_FILE (${path}) is empty: every product gets the built-in defaults`, ...book.warnings],
    };
  return book;
}

/**
 * Whether two mapping keys name the same field once read: `123` and `"123"` are one product name
 * (an object's keys are strings), so the second would silently replace the first.
 */
function sameKey(a: ParsedNode, b: ParsedNode): boolean {
  if (isScalar(a) && isScalar(b)) return String(a.value) === String(b.value);
  return a === b;
}

/** Validates a parsed policy document and merges `defaults` under each product, field by field. */
export function buildPolicyBook(doc: unknown, source = 'policy'): PolicyBook {
  const problems: string[] = [];
  if (!isPlainObject(doc)) throw new ConfigError(`${source}: the document must be an object with "defaults" and/or "products"`);
  for (const key of Object.keys(doc)) {
    if (!TOP_LEVEL.includes(key)) problems.push(`${key}: unknown top-level field (expected "defaults", "products" or "prices")`);
  }
  // `defaults:` or `products:` left empty (YAML null), like any field left empty, reads as a block
  // that was meant to say something: refused rather than taken for an empty one.
  for (const key of TOP_LEVEL) if (key in doc && doc[key] === null) problems.push(`${key}: empty (write {} or leave it out)`);
  const warnings: string[] = [];
  const { priceOf: prices, cheapestOutput } = readPrices(doc.prices ?? {}, problems, warnings);
  const priced = isPlainObject(doc.prices) && Object.keys(doc.prices).length > 0;
  const defaultsDoc = doc.defaults ?? {};
  const defaults = validateProduct(defaultsDoc, 'defaults', problems);
  const productsDoc = doc.products ?? {};
  const products = new Map<string, ProductPolicySchema>();
  if (!isPlainObject(productsDoc)) problems.push('products: must be an object keyed by product name');
  else for (const [name, entry] of Object.entries(productsDoc)) products.set(name, validateProduct(entry, `products.${name}`, problems));
  // With the other problems, not after them: one boot names every fix to make.
  const defaultRange = temperatureRange(defaults, BUILT_IN_POLICY.policy.temperature);
  for (const [name, entry] of products) {
    const range = temperatureRange(entry, defaultRange);
    if (range.min > range.max) problems.push(`products.${name}.policy.temperature: min is above max`);
  }
  if (defaultRange.min > defaultRange.max) problems.push('defaults.policy.temperature: min is above max');
  if (problems.length) throw new ConfigError(`${source} is invalid:\n  - ${problems.join('\n  - ')}`);

  const resolvedDefaults = merge(BUILT_IN_POLICY, defaults);
  const resolved = new Map<string, ProductPolicy>();
  for (const [name, entry] of products) resolved.set(name, merge(resolvedDefaults, entry));

  const largestRequestBytes = Math.max(
    resolvedDefaults.policy.maxRequestBytes,
    ...[...resolved.values()].map((p) => p.policy.maxRequestBytes),
  );
  const longestStreamSeconds = Math.max(
    resolvedDefaults.policy.maxStreamSeconds,
    ...[...resolved.values()].map((p) => p.policy.maxStreamSeconds),
  );
  // A request without max_tokens reserves the cap: a cap above a daily token quota could never be
  // admitted (429 until midnight, every day). Valid (clients may always send a smaller max_tokens), so said, not refused.
  for (const [where, p] of [['defaults', resolvedDefaults] as const, ...[...resolved].map(([n, p]) => [`products.${n}`, p] as const)]) {
    for (const [field, quota] of [
      ['user_daily_tokens', p.limits.userDailyTokens],
      ['daily_tokens', p.limits.dailyTokens],
    ] as const) {
      if (quota > 0 && p.policy.maxTokens >= quota) {
        warnings.push(
          `${where}: policy.max_tokens (${p.policy.maxTokens}) is not below limits.${field} (${quota}): a request that sends no max_tokens reserves the cap and is refused every day`,
        );
        break;
      }
    }
    // Under a budget a model without a price is refused (its cost could not be counted): with no
    // prices at all, every request of the product would be.
    const budgeted = p.limits.dailyCostUsd > 0 || p.limits.userDailyCostUsd > 0;
    if (!priced && budgeted)
      warnings.push(
        `${where}: limits.${p.limits.dailyCostUsd > 0 ? 'daily_cost_usd' : 'user_daily_cost_usd'} sets a daily budget but the policy file has no prices: every request of it is refused (its model has no price)`,
      );
    // Likewise a fallback without a price: every request for the model it backs up is refused.
    else if (budgeted)
      for (const [model, list] of Object.entries(p.fallbacks)) {
        const unpriced = list.filter((fallback) => !prices(fallback));
        if (unpriced.length)
          warnings.push(
            `${where}: fallbacks.${model} names ${unpriced.join(', ')}, which has no price, under a daily cost budget: every request for ${model} is refused`,
          );
      }
    // A request without max_tokens reserves the cap at the highest output price of its models (see
    // QuotaService.admit): when the cap at the cheapest output price of all is already a whole
    // budget, every such request is refused every day, whatever model it asks for.
    if (budgeted && cheapestOutput !== undefined)
      for (const [field, budget] of [
        ['user_daily_cost_usd', p.limits.userDailyCostUsd],
        ['daily_cost_usd', p.limits.dailyCostUsd],
      ] as const) {
        const capCost = (p.policy.maxTokens * cheapestOutput) / 1e6;
        if (budget > 0 && capCost > budget) {
          warnings.push(
            `${where}: policy.max_tokens (${p.policy.maxTokens}) at the lowest output price in prices ($${cheapestOutput} per million tokens) costs more than limits.${field} ($${budget}): a request that sends no max_tokens reserves the cap and is refused every day`,
          );
          break;
        }
      }
    // Valid (a chat client may be told to leave the cap to keygate), but the Anthropic SDKs always send it.
    const cap = p.policy.refusedFields.find((pattern) => matchesName('max_tokens', pattern));
    if (cap !== undefined)
      warnings.push(
        `${where}: policy.refused_fields ${cap} refuses max_tokens, which every /v1/messages request carries (Anthropic requires it)`,
      );
  }
  return {
    defaults: resolvedDefaults,
    warnings,
    largestRequestBytes,
    longestStreamSeconds,
    productNames: [...resolved.keys()],
    forProduct: (product) => resolved.get(product) ?? resolvedDefaults,
    ownFallbacks: (product) => products.get(product)?.fallbacks ?? {},
    priceOf: prices,
  };
}

const TOP_LEVEL = ['defaults', 'products', 'prices'];

/**
 * Reads `prices` (model name, or a prefix ending in `*`, to dollars per million tokens) into a
 * lookup: a model's own entry, else the longest prefix it starts with (`claude-sonnet-4-5*` covers
 * its dated snapshots). Looked up once per request, when its audit line is written.
 */
function readPrices(doc: unknown, problems: string[], warnings: string[]): PriceTable {
  const exact = new Map<string, ModelPrice>();
  const prefixes: Array<[string, ModelPrice]> = [];
  let cheapestOutput: number | undefined;
  if (!isPlainObject(doc)) {
    problems.push('prices: must be an object keyed by model name');
    return { priceOf: () => undefined, cheapestOutput };
  }
  for (const [name, entry] of Object.entries(doc)) {
    const path = `prices.${name}`;
    if (!/^[^\s*]{1,200}\*?$/.test(name)) {
      problems.push(`${path}: must be a model name, or a prefix ending in * (no spaces, at most 200 characters)`);
      continue;
    }
    if (!isPlainObject(entry)) {
      problems.push(`${path}: must be an object with input and output (dollars per million tokens)`);
      continue;
    }
    const { value, problems: found } = validatePlain(ModelPriceSchema, entry, path);
    problems.push(...found);
    if (!found.length) warnSwapped(ratesOf(value), path, warnings);
    // A list too long is reported as such, not entry by entry.
    const listed = Array.isArray(value.tiers) && value.tiers.length <= MAX_PRICE_TIERS ? value.tiers : [];
    const tiers = readTiers(listed, value, path, problems, warnings);
    if (found.length || tiers === undefined) continue;
    const price: ModelPrice = tiers.length ? { ...ratesOf(value), tiers } : ratesOf(value);
    if (name.endsWith('*')) prefixes.push([name.slice(0, -1), price]);
    else exact.set(name, price);
    cheapestOutput = Math.min(cheapestOutput ?? Infinity, price.output);
  }
  prefixes.sort((a, b) => b[0].length - a[0].length);
  return { priceOf: (model) => exact.get(model) ?? prefixes.find(([prefix]) => model.startsWith(prefix))?.[1], cheapestOutput };
}

/**
 * A price's `tiers` (each checked, thresholds ascending), or undefined when one is invalid. Valid,
 * but warned of: a tier that leaves out a cache rate the model's own rates set (it would default to
 * the tier's input rate: likely forgotten), and a tier priced below the rates it follows.
 */
function readTiers(
  list: readonly unknown[],
  base: ModelPriceSchema,
  path: string,
  problems: string[],
  warnings: string[],
): PriceTier[] | undefined {
  const tiers: PriceTier[] = [];
  let valid = true;
  let previous: { at: string; rates: PriceRates; threshold: number } | undefined;
  list.forEach((entry, i) => {
    const at = `${path}.tiers[${i}]`;
    if (!isPlainObject(entry)) {
      problems.push(`${at}: must be an object with above_prompt_tokens, input and output (dollars per million tokens)`);
      valid = false;
      return;
    }
    const { value, problems: found } = validatePlain(PriceTierSchema, entry, at);
    problems.push(...found);
    if (found.length) {
      valid = false;
      return;
    }
    const threshold = value.above_prompt_tokens;
    if (previous && threshold <= previous.threshold) {
      problems.push(
        `${at}.above_prompt_tokens: must be above ${previous.at}.above_prompt_tokens (${previous.threshold}): list tiers from the lowest threshold up`,
      );
      valid = false;
      return;
    }
    const rates = ratesOf(value);
    warnSwapped(rates, at, warnings);
    for (const field of ['cached_input', 'cache_write', 'cache_write_1h'] as const)
      if (base[field] !== undefined && value[field] === undefined)
        warnings.push(
          `${at}: sets no ${field} though ${path} does: above ${threshold} prompt tokens it is ${field === 'cache_write_1h' ? "the tier's cache_write" : "the tier's input"} rate`,
        );
    const below = previous?.rates ?? ratesOf(base);
    for (const field of ['input', 'output'] as const)
      if (rates[field] < below[field])
        warnings.push(
          `${at}: ${field} (${rates[field]}) is below ${previous?.at ?? path}'s (${below[field]}); a longer prompt is priced above a shorter one`,
        );
    tiers.push({ abovePromptTokens: threshold, ...rates });
    previous = { at, rates, threshold };
  });
  return valid ? tiers : undefined;
}

/** The rates a price or tier entry gives, the cache rates it leaves out defaulted (to `input`; an hour's writes to `cache_write`). */
function ratesOf(value: {
  input: number;
  output: number;
  cached_input?: number;
  cache_write?: number;
  cache_write_1h?: number;
}): PriceRates {
  return {
    input: value.input,
    cachedInput: value.cached_input ?? value.input,
    cacheWrite: value.cache_write ?? value.input,
    cacheWrite1h: value.cache_write_1h ?? value.cache_write ?? value.input,
    output: value.output,
  };
}

/**
 * Valid, but every provider discounts cache reads and charges more for the longer cache write:
 * the other way round is most likely two numbers swapped, which would skew every cost quietly.
 */
function warnSwapped(rates: PriceRates, path: string, warnings: string[]): void {
  if (rates.cachedInput > rates.input)
    warnings.push(`${path}: cached_input (${rates.cachedInput}) is above input (${rates.input}); cache reads are priced below input`);
  if (rates.cacheWrite1h < rates.cacheWrite)
    warnings.push(
      `${path}: cache_write_1h (${rates.cacheWrite1h}) is below cache_write (${rates.cacheWrite}); an hour-long cache write is priced above a 5-minute one`,
    );
}

/** The policy file's prices: a model's, and the lowest output rate of any (undefined: no prices). */
interface PriceTable {
  priceOf: (model: string) => ModelPrice | undefined;
  cheapestOutput: number | undefined;
}

function validateProduct(entry: unknown, path: string, problems: string[]): ProductPolicySchema {
  if (!isPlainObject(entry)) {
    problems.push(`${path}: must be an object`);
    return {};
  }
  const { value, problems: found } = validatePlain(ProductPolicySchema, entry, path);
  problems.push(...found);
  // Budgets are counted in billionths of a dollar: a smaller one would round to 0, no budget at all.
  for (const field of ['daily_cost_usd', 'user_daily_cost_usd'] as const) {
    const budget = value.limits?.[field];
    if (typeof budget === 'number' && budget > 0 && budget < 1e-9)
      problems.push(`${path}.limits.${field}: must be 0 (no budget) or at least 0.000000001 (a billionth of a dollar)`);
  }
  // Every request carries these: refusing them would refuse every request of the product.
  for (const name of value.policy?.refused_fields ?? []) {
    if (['model', 'messages', 'input'].some((required) => matchesName(required, name)))
      problems.push(`${path}.policy.refused_fields: ${name} would refuse every request (model, messages and input are required fields)`);
  }
  if (value.fallbacks !== undefined) {
    for (const [model, list] of Object.entries(value.fallbacks)) {
      // `[]` is allowed: a product's list replaces the default's, so `[]` turns a default's fallbacks off.
      if (!Array.isArray(list) || !list.every((m) => typeof m === 'string' && m.length > 0)) {
        problems.push(`${path}.fallbacks.${model}: must be a list of model names ([] for none)`);
      } else if (model.endsWith('*') || list.some((m) => m.endsWith('*'))) {
        // Fallbacks are looked up by the requested model's exact name and sent upstream as written:
        // a pattern (as prices and the product keys take) never applied, and matching the keys'
        // own patterns it escaped the boot's WARNING about fallbacks that apply to nothing.
        problems.push(`${path}.fallbacks.${model}: fallbacks name exact models, not patterns ending in *`);
      } else if (list.includes(model)) {
        // The model again after its own retries: its failures would be retried twice over.
        problems.push(`${path}.fallbacks.${model}: lists the model itself`);
      } else if (new Set(list).size !== list.length) {
        problems.push(`${path}.fallbacks.${model}: lists a model twice`);
      }
    }
  }
  return value;
}

function merge(base: ProductPolicy, over: ProductPolicySchema): ProductPolicy {
  const l = over.limits ?? {};
  const p = over.policy ?? {};
  const limits: Limits = {
    requestsPerSecond: l.requests_per_second ?? base.limits.requestsPerSecond,
    userRequestsPerSecond: l.user_requests_per_second ?? base.limits.userRequestsPerSecond,
    dailyRequests: l.daily_requests ?? base.limits.dailyRequests,
    userDailyRequests: l.user_daily_requests ?? base.limits.userDailyRequests,
    dailyTokens: l.daily_tokens ?? base.limits.dailyTokens,
    userDailyTokens: l.user_daily_tokens ?? base.limits.userDailyTokens,
    dailyCostUsd: l.daily_cost_usd ?? base.limits.dailyCostUsd,
    userDailyCostUsd: l.user_daily_cost_usd ?? base.limits.userDailyCostUsd,
  };
  const policy: ParameterPolicy = {
    maxTokens: p.max_tokens ?? base.policy.maxTokens,
    // Field by field (SPEC §4), down to the range's ends and auto_block's settings.
    temperature: { min: p.temperature?.min ?? base.policy.temperature.min, max: p.temperature?.max ?? base.policy.temperature.max },
    maxRequestBytes: p.max_request_bytes ?? base.policy.maxRequestBytes,
    maxStreamSeconds: p.max_stream_seconds ?? base.policy.maxStreamSeconds,
    // A list replaces the one it overrides (`[]` refuses nothing).
    refusedFields: p.refused_fields ?? base.policy.refusedFields,
    refusedTools: p.refused_tools ?? base.policy.refusedTools,
    refusedBetas: p.refused_betas ?? base.policy.refusedBetas,
    endUserId: p.end_user_id ?? base.policy.endUserId,
  };
  return {
    limits,
    policy,
    // Model by model: a product's list replaces the default's for that model (`[]`: none).
    fallbacks: { ...base.fallbacks, ...(over.fallbacks ?? {}) },
    autoBlock: {
      rejections: over.auto_block?.rejections ?? base.autoBlock.rejections,
      windowSeconds: over.auto_block?.window_seconds ?? base.autoBlock.windowSeconds,
      blockSeconds: over.auto_block?.block_seconds ?? base.autoBlock.blockSeconds,
    },
    iapMembers: over.iap_members ? over.iap_members.map((m) => m.toLowerCase()) : base.iapMembers,
  };
}

/**
 * The temperature range an entry ends up with over `base`, read before the document is known to
 * be valid: an end that is not a number in range is already reported, and `base`'s is taken for it.
 */
function temperatureRange(entry: ProductPolicySchema, base: { min: number; max: number }): { min: number; max: number } {
  const range: unknown = (entry.policy as { temperature?: unknown } | null | undefined)?.temperature;
  const end = (key: 'min' | 'max'): number => {
    const value: unknown = isPlainObject(range) ? range[key] : undefined;
    return typeof value === 'number' && value >= 0 && value <= 2 ? value : base[key];
  };
  return { min: end('min'), max: end('max') };
}

/** Whether `name` is `pattern`, or starts with what comes before its trailing `*`. */
export function matchesName(name: string, pattern: string): boolean {
  return pattern.endsWith('*') ? name.startsWith(pattern.slice(0, -1)) : name === pattern;
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
