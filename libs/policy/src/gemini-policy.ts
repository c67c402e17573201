import { matchesName, type ParameterPolicy } from '@keygate/config';
import { GatewayError } from '@keygate/errors';

/** The most candidates Gemini generates for one request (`generationConfig.candidateCount`; Gemini 3: one, which Google enforces). */
const GEMINI_MAX_CANDIDATES = 8;

/** The fields of a Gemini `generateContent` request the parameter policy reads and writes. */
export interface PolicedGeminiRequest {
  generationConfig?: { maxOutputTokens?: number | null; temperature?: number | null; [key: string]: unknown } | null;
  tools?: unknown;
  [key: string]: unknown;
}

/**
 * Fields Google's JSON parser also takes in snake_case, which would carry a cap or a candidate
 * count past the policy and the token reservation (they read the camelCase names the SDKs send):
 * refused, naming the name to use.
 */
const SNAKE_CASE_SPELLINGS: ReadonlyArray<readonly [at: 'body' | 'generationConfig', field: string, use: string]> = [
  ['body', 'generation_config', 'generationConfig'],
  ['generationConfig', 'max_output_tokens', 'maxOutputTokens'],
  ['generationConfig', 'candidate_count', 'candidateCount'],
];

/**
 * Applies the server-side parameter policy (SPEC §4) to a Gemini request in place, as
 * `applyParameterPolicy` does to OpenAI's and Anthropic's: `generationConfig.maxOutputTokens` is
 * the cap field (above the cap a 400 naming it; absent, set to the cap), `generationConfig.temperature`
 * must lie in the range, and a top-level field in `refused_fields` or a tool kind in
 * `refused_tools` is a 400 (see {@link refuseDeniedGemini}). Returns the effective completion-token cap.
 */
export function applyGeminiPolicy(body: PolicedGeminiRequest, policy: ParameterPolicy): number {
  refuseDeniedGemini(body, policy);
  const config = body.generationConfig;
  if (config !== undefined && config !== null && (typeof config !== 'object' || Array.isArray(config)))
    throw new GatewayError('invalid_request', 'generationConfig must be an object', { param: 'generationConfig' });
  for (const [at, field, use] of SNAKE_CASE_SPELLINGS) {
    const holder: Record<string, unknown> | null | undefined = at === 'body' ? body : config;
    if (holder && holder[field] !== undefined)
      throw new GatewayError('invalid_request', `send ${field} as ${use}: keygate reads the camelCase name`, {
        param: at === 'body' ? field : `generationConfig.${field}`,
      });
  }
  const cap = policy.maxTokens;
  const generation = { ...(config ?? {}) };
  const asked = generation.maxOutputTokens;
  let effective = cap;
  if (asked === undefined || asked === null) generation.maxOutputTokens = cap;
  else if (typeof asked !== 'number' || !Number.isInteger(asked) || asked < 1)
    throw new GatewayError('invalid_request', 'generationConfig.maxOutputTokens must be a positive integer', {
      param: 'generationConfig.maxOutputTokens',
    });
  else if (asked > cap)
    throw new GatewayError('policy_violation', `generationConfig.maxOutputTokens ${asked} exceeds this product's cap of ${cap}`, {
      param: 'generationConfig.maxOutputTokens',
    });
  else effective = asked;
  // Each candidate is reserved at the cap: a count the reservation could not read (Google's parser
  // also takes "2") would generate more than it reserved. Above Gemini's most, the request is the
  // client's mistake (Google refuses it), not a reservation past the daily quota (a 429 that counts
  // toward auto-block, reserving 2^53 times the cap).
  const candidates = generation.candidateCount;
  if (
    candidates !== undefined &&
    candidates !== null &&
    (typeof candidates !== 'number' || !Number.isInteger(candidates) || candidates < 1 || candidates > GEMINI_MAX_CANDIDATES)
  )
    throw new GatewayError('invalid_request', `generationConfig.candidateCount must be a whole number from 1 to ${GEMINI_MAX_CANDIDATES}`, {
      param: 'generationConfig.candidateCount',
    });
  const t = generation.temperature;
  if (t !== undefined && t !== null) {
    if (typeof t !== 'number')
      throw new GatewayError('invalid_request', 'generationConfig.temperature must be a number', { param: 'generationConfig.temperature' });
    if (t < policy.temperature.min || t > policy.temperature.max)
      throw new GatewayError(
        'policy_violation',
        `generationConfig.temperature must be between ${policy.temperature.min} and ${policy.temperature.max} for this product`,
        { param: 'generationConfig.temperature' },
      );
  }
  body.generationConfig = generation;
  return effective;
}

/**
 * Refuses (400 `policy_violation`, naming it) a top-level field in the policy's `refused_fields`
 * (`cachedContent`, say) and a tool in its `refused_tools`. A Gemini tool entry names its kind by
 * its keys (`{"googleSearch": {}}`, `{"codeExecution": {}}`, `{"urlContext": {}}`,
 * `{"functionDeclarations": [...]}`): each key is matched in its camelCase form (`google_search`,
 * which Google's parser also takes, is matched as `googleSearch`). A field or tool sent as null asks for nothing and passes.
 */
export function refuseDeniedGemini(body: PolicedGeminiRequest, policy: ParameterPolicy): void {
  refuseFields(body, policy, '');
  if (!policy.refusedTools.length || !Array.isArray(body.tools)) return;
  (body.tools as unknown[]).forEach((tool, i) => {
    if (typeof tool !== 'object' || tool === null) return;
    for (const [key, value] of Object.entries(tool)) {
      if (value === undefined || value === null) continue;
      const kind = camelCase(key);
      if (policy.refusedTools.some((pattern) => matchesGemini(kind, pattern)))
        throw new GatewayError('policy_violation', `tools[${i}]: the tool ${kind} is not allowed for this product`, {
          param: `tools[${i}].${key}`,
        });
    }
  });
}

/**
 * Applies the parameter policy to a Gemini `embedContent` body, or with `batch` a
 * `batchEmbedContents` one (`{requests: [...]}`): a field in `refused_fields` (`title`,
 * `outputDimensionality`, matched in camelCase as on `generateContent`) is a 400 `policy_violation`,
 * at the top of the body or in any request of a batch (`param` `requests[i].title`). The token cap
 * and the temperature range do not apply: an embedding generates nothing.
 */
export function applyGeminiEmbedPolicy(body: Record<string, unknown>, policy: ParameterPolicy, batch: boolean): void {
  refuseFields(body, policy, '');
  if (!batch || !Array.isArray(body.requests)) return;
  (body.requests as unknown[]).forEach((request, i) => {
    if (typeof request === 'object' && request !== null) refuseFields(request as Record<string, unknown>, policy, `requests[${i}].`);
  });
}

/** Refuses a field of `holder` the policy's `refused_fields` names (its camelCase name matched too); `at` prefixes the param. */
function refuseFields(holder: Record<string, unknown>, policy: ParameterPolicy, at: string): void {
  if (!policy.refusedFields.length) return;
  for (const field of Object.keys(holder)) {
    if (holder[field] === undefined || holder[field] === null) continue;
    if (policy.refusedFields.some((pattern) => matchesName(field, pattern) || matchesGemini(camelCase(field), pattern)))
      throw new GatewayError('policy_violation', `${at}${field} is not allowed for this product`, { param: `${at}${field}` });
  }
}

/**
 * Whether a Gemini name (in camelCase) is refused by `pattern`, written in either spelling: Google's
 * parser takes both, its Python SDK and REST reference write `google_search` and `code_execution`,
 * and one `code_execution*` entry is meant to cover Anthropic's `code_execution_20250522` and
 * Gemini's `codeExecution` alike. A snake_case pattern matched only as written let every Gemini
 * request through.
 */
function matchesGemini(name: string, pattern: string): boolean {
  return matchesName(name, pattern) || matchesName(name, camelCase(pattern));
}

/** `google_search` → `googleSearch`; a camelCase name is left as it is. */
function camelCase(name: string): string {
  return name.replace(/_([a-z0-9])/g, (_, c: string) => c.toUpperCase());
}
