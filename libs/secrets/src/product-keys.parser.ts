import {
  DEFAULT_BASE_URLS,
  PROVIDER_NAMES,
  makeProductEntry,
  type ProductCatalog,
  type ProductEntry,
  type ProviderAccess,
  type ProviderName,
} from './product-catalog';
import { fieldLabel, SecretFormatError } from './secret-format.error';
import { parseSecretJson } from './secret-json';

const PRODUCT_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

/**
 * Parses the product-keys secret (SPEC §3): the multi-provider format and the legacy
 * `"product": "sk-..."` OpenAI-only format, which routes every model to OpenAI.
 */
export function parseProductKeys(text: string, secretName: string): ProductCatalog {
  const doc = parseSecretJson(text, secretName);
  if (!isObject(doc)) throw new SecretFormatError(secretName, ['must be a JSON object keyed by product name']);
  const problems: string[] = [];
  const catalog = new Map<string, ProductEntry>();
  for (const [index, [product, entry]] of Object.entries(doc).entries()) {
    if (!PRODUCT_NAME.test(product)) {
      problems.push(`product name at index ${index}: must match ${PRODUCT_NAME.source}`);
      continue;
    }
    if (typeof entry === 'string') {
      if (!entry.trim()) problems.push(`${product}: the legacy key must be a non-empty string`);
      else if (!API_KEY.test(entry.trim())) problems.push(`${product}: the legacy key ${API_KEY_RULE}`);
      else
        catalog.set(
          product,
          makeProductEntry(product, [{ provider: 'openai', apiKey: entry.trim(), baseUrl: DEFAULT_BASE_URLS.openai, models: ['*'] }]),
        );
      continue;
    }
    if (!isObject(entry) || !isObject(entry.providers)) {
      problems.push(`${product}: must be a key string (legacy) or {"providers": {...}}`);
      continue;
    }
    Object.keys(entry).forEach((key, i) => {
      if (key !== 'providers') problems.push(`${product}.${fieldLabel(key, i)}: unknown field`);
    });
    const providers: ProviderAccess[] = [];
    // Every entry's model names, its other fields valid or not: a name under two providers is a
    // problem of its own, reported with the rest rather than only once the rest is fixed.
    const listed: { provider: string; models: string[] }[] = [];
    for (const [i, [provider, access]] of Object.entries(entry.providers).entries()) {
      if (!(PROVIDER_NAMES as readonly string[]).includes(provider)) {
        problems.push(
          `${product}.providers.${fieldLabel(provider, i, 'provider')}: unknown provider (expected one of ${PROVIDER_NAMES.join(', ')})`,
        );
        continue;
      }
      const path = `${product}.providers.${provider}`;
      const parsed = parseAccess(provider as ProviderName, access, path, problems);
      if (parsed) providers.push(parsed);
      const models = isObject(access) && Array.isArray(access.models) ? (access.models as unknown[]) : [];
      listed.push({ provider, models: models.filter((m): m is string => typeof m === 'string' && m.trim() !== '').map((m) => m.trim()) });
    }
    const before = problems.length;
    const served = new Map<string, string>();
    for (const { provider, models } of listed) {
      for (const model of models) {
        const other = served.get(model);
        // The same name under two providers: which one serves it would depend on key order.
        if (other !== undefined && other !== provider)
          problems.push(`${product}.providers: model ${model} is listed under both ${other} and ${provider}`);
        served.set(model, provider);
      }
    }
    if (providers.length === 0) {
      // Only when no provider entry was refused on its own: that refusal is the problem.
      if (Object.keys(entry.providers).length === 0) problems.push(`${product}.providers: at least one provider is required`);
    } else if (problems.length === before) catalog.set(product, makeProductEntry(product, providers));
  }
  // No product at all would refuse every request, and a rotation to it would take the whole gateway down.
  if (Object.keys(doc).length === 0) problems.push('no products: at least one product is required');
  if (problems.length) throw new SecretFormatError(secretName, problems);
  return catalog;
}

function parseAccess(provider: ProviderName, access: unknown, path: string, problems: string[]): ProviderAccess | undefined {
  if (!isObject(access)) {
    problems.push(`${path}: must be an object with api_key and models`);
    return undefined;
  }
  const before = problems.length;
  Object.keys(access).forEach((key, i) => {
    if (!['api_key', 'models', 'base_url'].includes(key)) problems.push(`${path}.${fieldLabel(key, i)}: unknown field`);
  });
  const { api_key: apiKey, models, base_url: baseUrl } = access;
  if (typeof apiKey !== 'string' || !apiKey.trim()) problems.push(`${path}.api_key: must be a non-empty string`);
  else if (!API_KEY.test(apiKey.trim())) problems.push(`${path}.api_key: ${API_KEY_RULE}`);
  if (!Array.isArray(models) || models.length === 0 || !models.every((m) => typeof m === 'string' && m.trim().length > 0)) {
    problems.push(`${path}.models: must be a non-empty list of model names`);
  } else {
    // A request names at most MAX_MODEL_LENGTH characters: a longer name could never be called.
    models.forEach((m: string, i) => {
      if (m.trim().length > MAX_MODEL_LENGTH) problems.push(`${path}.models[${i}]: longer than ${MAX_MODEL_LENGTH} characters`);
      // No provider names a model with whitespace or a control character (a pasted tab, a newline
      // inside the quotes): such a name could only be called by repeating the mistake.
      else if (/[\s\p{Cc}]/u.test(m.trim())) problems.push(`${path}.models[${i}]: must not hold whitespace or control characters`);
    });
  }
  let base = DEFAULT_BASE_URLS[provider];
  if (baseUrl !== undefined) {
    const url = typeof baseUrl === 'string' ? httpBaseUrl(baseUrl) : undefined;
    if (url === undefined) problems.push(`${path}.base_url: must be an http(s) URL without spaces, user name, password, query or fragment`);
    else {
      base = url;
      const appended = appendedPathIn(provider, base);
      if (appended)
        problems.push(
          `${path}.base_url: ends in ${appended}, which keygate appends itself: write it as the provider's SDK takes it (${DEFAULT_BASE_URLS[provider]})`,
        );
    }
  }
  if (problems.length > before) return undefined;
  return { provider, apiKey: (apiKey as string).trim(), baseUrl: base, models: (models as string[]).map((m) => m.trim()) };
}

/**
 * The end of a base URL's path that keygate appends to it itself (every call would go to
 * `…/v1/v1/messages`, answered 404 as if the model were unknown), per provider; undefined when none.
 */
const APPENDED_PATHS: Readonly<Record<ProviderName, RegExp>> = {
  openai: /\/(chat\/completions|responses|embeddings)$/i,
  anthropic: /\/v1(\/messages)?$/i,
  gemini: /\/(v1beta|v1)(\/models)?$/i,
};

function appendedPathIn(provider: ProviderName, base: string): string | undefined {
  return APPENDED_PATHS[provider].exec(new URL(base).pathname.replace(/\/+$/, ''))?.[0];
}

/** The longest model name a request may carry (the request schemas' limit). */
export const MAX_MODEL_LENGTH = 256;

/** A key goes into an HTTP header: visible ASCII only (a control character would break the request). */
const API_KEY = /^[\x21-\x7e]+$/;
const API_KEY_RULE = 'must be printable ASCII without spaces or control characters';

/**
 * A base URL as keygate appends the provider's paths to it: normalized, without a trailing slash,
 * or undefined when it is not one. Surrounding whitespace is trimmed, as the key's is. A `?` or `#`
 * is refused even with nothing after it (`…/v1?`, which URL reads as no query): the appended path
 * would land in it, every call going to the base itself, answered 404 as an unknown model. So is a
 * space inside (`…/v1 /chat/completions`).
 */
function httpBaseUrl(value: string): string | undefined {
  const text = value.trim();
  if (/[\s?#]/.test(text)) return undefined;
  try {
    const u = new URL(text);
    if ((u.protocol !== 'http:' && u.protocol !== 'https:') || u.username || u.password) return undefined;
    return u.href.replace(/\/+$/, '');
  } catch {
    return undefined;
  }
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
