import { matchesName, type ParameterPolicy } from '@keygate/config';
import { GatewayError } from '@keygate/errors';

/** The request fields the parameter policy reads and writes. */
export interface PolicedRequest {
  max_tokens?: number | null;
  max_completion_tokens?: number | null;
  max_output_tokens?: number | null;
  temperature?: number | null;
  [key: string]: unknown;
}

/** Which field carries the completion-token cap when the client sent none (`max_output_tokens`: the Responses API's, read alone). */
export type CapField = 'max_tokens' | 'max_completion_tokens' | 'max_output_tokens';

const CHAT_CAP_FIELDS = ['max_tokens', 'max_completion_tokens'] as const;
const RESPONSES_CAP_FIELDS = ['max_output_tokens'] as const;

/** The smallest `max_output_tokens` OpenAI's Responses API takes: it refuses less (`integer_below_min_value`). */
export const MIN_OUTPUT_TOKENS = 16;

/**
 * Applies the server-side parameter policy (SPEC §4) in place: a `max_tokens` (or
 * `max_completion_tokens`) above the cap is a 400 naming the cap, an absent one is set to the cap,
 * and when both are sent both become the smaller, except where the cap goes as
 * `max_completion_tokens` (OpenAI's own endpoint), which gets that field alone (and a cap below
 * {@link MIN_OUTPUT_TOKENS} is a 400 where it would go as `max_output_tokens`); a `temperature`
 * outside the range is a 400, and so is a field or a tool type the product refuses (see {@link refuseDenied}).
 * Returns the effective completion-token cap.
 */
export function applyParameterPolicy(body: PolicedRequest, policy: ParameterPolicy, capField: CapField = 'max_tokens'): number {
  refuseDenied(body, policy);
  const cap = policy.maxTokens;
  let effective: number | undefined;
  for (const field of capField === 'max_output_tokens' ? RESPONSES_CAP_FIELDS : CHAT_CAP_FIELDS) {
    const value = body[field];
    if (value === undefined || value === null) continue;
    if (value > cap) {
      throw new GatewayError('policy_violation', `${field} ${value} exceeds this product's cap of ${cap}`, { param: field });
    }
    effective = Math.min(effective ?? value, value);
  }
  if (effective === undefined) {
    // A cap below the Responses API's minimum cannot go upstream (OpenAI would refuse it after the
    // request was counted), and the minimum would break the cap: such a product has no use of that
    // API, only of chat's (which takes it).
    if (capField === 'max_output_tokens' && cap < MIN_OUTPUT_TOKENS)
      throw new GatewayError(
        'policy_violation',
        `this product's cap of ${cap} tokens is below the Responses API's minimum max_output_tokens of ${MIN_OUTPUT_TOKENS}; use the Chat Completions API`,
        { param: 'max_output_tokens' },
      );
    body[capField] = cap;
    effective = cap;
  } else if (capField === 'max_completion_tokens' && typeof body.max_tokens === 'number') {
    // OpenAI's own endpoint refuses the two together, and its reasoning models refuse
    // max_tokens: the limit goes as max_completion_tokens alone.
    delete body.max_tokens;
    body.max_completion_tokens = effective;
  } else if (typeof body.max_tokens === 'number' && typeof body.max_completion_tokens === 'number') {
    // Both sent: hosts differ on which one wins (vLLM reads max_completion_tokens, others
    // max_tokens), so both carry the smaller, the one the token reservation is sized for.
    body.max_tokens = effective;
    body.max_completion_tokens = effective;
  }
  const t = body.temperature;
  if (t !== undefined && t !== null && (t < policy.temperature.min || t > policy.temperature.max)) {
    throw new GatewayError(
      'policy_violation',
      `temperature must be between ${policy.temperature.min} and ${policy.temperature.max} for this product`,
      { param: 'temperature' },
    );
  }
  return effective;
}

/**
 * Refuses (400 `policy_violation`, naming it) a top-level field in the policy's `refused_fields`
 * and a tool whose type is in its `refused_tools`: features a provider bills apart from tokens
 * (`service_tier`, Anthropic's server tools such as `web_search_20250305`, `mcp_servers`), which
 * keygate's token quotas do not count. A field sent as null asks for nothing and passes; a tool
 * without a type is `custom` (Anthropic's name for a client tool).
 */
export function refuseDenied(body: PolicedRequest, policy: ParameterPolicy): void {
  if (policy.refusedFields.length) {
    for (const field of Object.keys(body)) {
      if (body[field] === undefined || body[field] === null) continue;
      if (policy.refusedFields.some((pattern) => matchesName(field, pattern)))
        throw new GatewayError('policy_violation', `${field} is not allowed for this product`, { param: field });
    }
  }
  if (policy.refusedTools.length) {
    refuseTools(body.tools, 'tools', policy);
    // Responses API input items that declare tools (Codex's `additional_tools`, a `tool_search_output`):
    // OpenAI serves those tools as it serves the request's own.
    if (Array.isArray(body.input))
      body.input.forEach((item: unknown, i) => {
        if (typeof item === 'object' && item !== null) refuseTools((item as { tools?: unknown }).tools, `input[${i}].tools`, policy);
      });
  }
  // Tools asked for by a field rather than in `tools`: Chat Completions' web search
  // (`web_search_options`, billed per search) and the legacy `functions` (function tools).
  for (const [field, type] of TOOL_FIELDS) {
    const value = body[field];
    if (value === undefined || value === null || (Array.isArray(value) && value.length === 0)) continue;
    if (policy.refusedTools.some((pattern) => matchesName(type, pattern)))
      throw new GatewayError('policy_violation', `${field}: the tool type ${type} is not allowed for this product`, { param: field });
  }
}

/**
 * Refuses a tool of a type in `refused_tools` among `tools` (at `at`), and among the tools of a
 * namespace (`{type: "namespace", tools: [...]}`, the Responses API's group of tools).
 */
function refuseTools(tools: unknown, at: string, policy: ParameterPolicy): void {
  if (!Array.isArray(tools)) return;
  tools.forEach((tool: unknown, i) => {
    const declared = typeof tool === 'object' && tool !== null ? (tool as { type?: unknown }).type : undefined;
    // A type that is not a string names no tool: the provider refuses it.
    const type = declared === undefined || declared === null ? 'custom' : typeof declared === 'string' ? declared : undefined;
    if (type !== undefined && policy.refusedTools.some((pattern) => matchesName(type, pattern)))
      throw new GatewayError('policy_violation', `${at}[${i}]: the tool type ${type} is not allowed for this product`, {
        param: `${at}[${i}].type`,
      });
    if (type === 'namespace') refuseTools((tool as { tools?: unknown }).tools, `${at}[${i}].tools`, policy);
  });
}

/** Request fields that ask for a tool of a type, as `tools` would. */
const TOOL_FIELDS: ReadonlyArray<readonly [field: string, type: string]> = [
  ['web_search_options', 'web_search'],
  ['functions', 'function'],
];

/**
 * Refuses (400 `policy_violation`, `param: "anthropic-beta"`) an `anthropic-beta` feature in the
 * policy's `refused_betas`: betas such as the 1M-token context window are billed at other rates
 * than the tokens keygate's quotas count. `beta` is the header's checked comma-separated list.
 */
export function refuseBetas(beta: string | undefined, policy: ParameterPolicy): void {
  if (beta === undefined || policy.refusedBetas.length === 0) return;
  for (const feature of beta.split(',')) {
    const name = feature.trim();
    // In any letter case: the list is a refusal, and a capital must not slip a feature past it.
    const lower = name.toLowerCase();
    if (policy.refusedBetas.some((pattern) => matchesName(lower, pattern.toLowerCase())))
      throw new GatewayError('policy_violation', `the anthropic-beta feature ${name} is not allowed for this product`, {
        param: 'anthropic-beta',
      });
  }
}
