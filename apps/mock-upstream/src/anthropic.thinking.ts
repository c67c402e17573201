import { createHmac, randomBytes } from 'node:crypto';
import { asArray, completionTokens, isRecord, truncate, type JsonRecord } from './mock.content';
import type { AnthropicRedactedThinkingBlock, AnthropicThinkingBlock } from './anthropic.types';

/*
 * Claude's thinking as the Messages API polices it, so a gateway's translation of OpenAI's
 * `reasoning_effort` can be tested end to end: which `thinking` forms and `output_config.effort`
 * levels each model generation takes, the sampling and tool-choice settings thinking forbids, the
 * thinking block a tool loop must carry back, and signatures that only verify for a block this
 * mock issued, unaltered.
 */

/** The version of a model id that has none: the newest. */
const NEWEST = Number.POSITIVE_INFINITY;

interface ClaudeModel {
  /** `major * 100 + minor`: 3.7 is 307. */
  version: number;
  /** Opus 4.5 takes an effort where Sonnet and Haiku 4.5 do not. */
  opus: boolean;
}

const VERSION_TOKEN = /^\d{1,2}$/;

/**
 * Reads the generation from a model id: the first 1–2 digit token after `claude` is the major, a
 * 1–2 digit token right after it the minor (an 8-digit date is a snapshot, not a version). Vertex
 * pins the date after an `@`. Mythos and Fable, and ids without a version, are the newest.
 */
export function claudeModel(id: string): ClaudeModel {
  const name = id.toLowerCase().split('@')[0];
  const at = name.indexOf('claude');
  const tokens = (at === -1 ? name : name.slice(at + 'claude'.length)).split(/[-.]/);
  const opus = tokens.includes('opus');
  if (tokens.includes('mythos') || tokens.includes('fable')) return { version: NEWEST, opus };
  const major = tokens.findIndex((t) => VERSION_TOKEN.test(t));
  if (major === -1) return { version: NEWEST, opus };
  const minor = tokens[major + 1] ?? '';
  return { version: Number(tokens[major]) * 100 + (VERSION_TOKEN.test(minor) ? Number(minor) : 0), opus };
}

/** The `thinking` forms a generation takes: none before 3.7, the budget form to 4.5, both on 4.6, adaptive from 4.7. */
function thinkingForms(version: number): { budget: boolean; adaptive: boolean } {
  return { budget: version >= 307 && version < 407, adaptive: version >= 406 };
}

const EFFORTS = ['low', 'medium', 'high', 'xhigh', 'max'] as const;

/** `output_config.effort` levels: low to high on Opus 4.5 and every 4.6+, `max` from 4.6, `xhigh` from 4.7. */
function effortLevels(model: ClaudeModel): readonly string[] {
  if (model.version >= 407) return EFFORTS;
  if (model.version >= 406) return ['low', 'medium', 'high', 'max'];
  if (model.opus && model.version === 405) return ['low', 'medium', 'high'];
  return [];
}

const DOCS = 'https://docs.claude.com/en/docs/build-with-claude/extended-thinking';
const CONSIDERATIONS = `Please consult our documentation at ${DOCS}#important-considerations-when-using-extended-thinking`;
const ADAPTIVE_ONLY = (type: string): string =>
  `"thinking.type.${type}" is not supported for this model. Use "thinking.type.adaptive" and "output_config.effort" to control thinking behavior.`;

/** What a request's `thinking` asks for, once it is well formed. */
type ThinkingConfig = { type: 'off' | 'disabled' | 'adaptive' } | { type: 'enabled'; budget: number };

/** The keys each `thinking` form takes besides `type`. */
const THINKING_KEYS = new Map<string, readonly string[]>([
  ['enabled', ['budget_tokens']],
  ['disabled', []],
  ['adaptive', []],
]);

function parseThinking(value: unknown): ThinkingConfig | string {
  if (value === undefined || value === null) return { type: 'off' };
  if (!isRecord(value)) return 'thinking: Input should be a valid dictionary or object to extract fields from';
  const type = value.type;
  if (type === undefined) return 'thinking.type: Field required';
  if (typeof type !== 'string') return 'thinking.type: Input should be a valid string';
  const keys = THINKING_KEYS.get(type);
  if (!keys)
    return `thinking: Input tag '${type}' found using 'type' does not match any of the expected tags: 'enabled', 'disabled', 'adaptive'`;
  for (const key of Object.keys(value))
    if (key !== 'type' && !keys.includes(key)) return `thinking.${type}.${key}: Extra inputs are not permitted`;
  if (type === 'disabled' || type === 'adaptive') return { type };
  const budget = value.budget_tokens;
  if (budget === undefined) return 'thinking.enabled.budget_tokens: Field required';
  if (typeof budget !== 'number' || !Number.isInteger(budget)) return 'thinking.enabled.budget_tokens: Input should be a valid integer';
  if (budget < 1024) return 'thinking.enabled.budget_tokens: Input should be greater than or equal to 1024';
  return { type: 'enabled', budget };
}

function effortProblem(config: unknown, model: ClaudeModel): string | undefined {
  if (!isRecord(config) || config.effort === undefined) return undefined;
  const effort = config.effort;
  if (typeof effort !== 'string' || !(EFFORTS as readonly string[]).includes(effort))
    return "output_config.effort: Input should be 'low', 'medium', 'high', 'xhigh' or 'max'";
  const levels = effortLevels(model);
  if (levels.length === 0) return 'This model does not support the effort parameter.';
  if (!levels.includes(effort))
    return `This model does not support effort level '${effort}'. Supported levels: ${[...levels].sort().join(', ')}.`;
  return undefined;
}

/** The form's refusal on this generation, if it refuses it. */
function formProblem(config: ThinkingConfig, model: ClaudeModel, id: string): string | undefined {
  const forms = thinkingForms(model.version);
  switch (config.type) {
    case 'off':
      return undefined;
    case 'disabled':
      // Models that only think adaptively have no "off" switch.
      return forms.adaptive && !forms.budget ? ADAPTIVE_ONLY('disabled') : undefined;
    case 'enabled':
      if (forms.budget) return undefined;
      return forms.adaptive ? ADAPTIVE_ONLY('enabled') : `'${id}' does not support thinking.`;
    case 'adaptive':
      if (forms.adaptive) return undefined;
      return forms.budget ? 'adaptive thinking is not supported on this model' : `'${id}' does not support thinking.`;
  }
}

/** What thinking forbids alongside it: a short budget, sampling changes, forced tool use. */
function settingsProblem(body: JsonRecord, config: ThinkingConfig): string | undefined {
  if (config.type === 'enabled' && typeof body.max_tokens === 'number' && body.max_tokens <= config.budget)
    return `\`max_tokens\` must be greater than \`thinking.budget_tokens\`. Please consult our documentation at ${DOCS}#max-tokens-and-context-window-size`;
  if (body.temperature !== undefined && body.temperature !== null && body.temperature !== 1)
    return `\`temperature\` may only be set to 1 when thinking is enabled. ${CONSIDERATIONS}`;
  if (typeof body.top_p === 'number' && body.top_p < 0.95)
    return `\`top_p\` must be greater than or equal to 0.95 or unset when thinking is enabled. ${CONSIDERATIONS}`;
  if (body.top_k !== undefined && body.top_k !== null) return `\`top_k\` must be unset when thinking is enabled. ${CONSIDERATIONS}`;
  const choice = isRecord(body.tool_choice) ? body.tool_choice.type : undefined;
  if (choice === 'any' || choice === 'tool') return 'Thinking may not be enabled when tool_choice forces tool use.';
  return undefined;
}

/* ------------------------------------------------------------------ signatures */

/** Drawn at start: a block signed by an earlier run of the mock, or altered, does not verify, as upstream. */
const KEY = randomBytes(32);

function mac(domain: string, text: string): Buffer {
  return createHmac('sha256', KEY).update(domain).update('\0').update(text, 'utf8').digest();
}

/** A `thinking` block's signature: base64 of an HMAC-SHA256 of its text. */
export function signThinking(text: string): string {
  return mac('thinking', text).toString('base64');
}

/** A `redacted_thinking` block's data: base64 of an HMAC-SHA256 of the withheld text, then the text. */
export function redactThinking(text: string): string {
  return Buffer.concat([mac('redacted_thinking', text), Buffer.from(text, 'utf8')]).toString('base64');
}

/*
 * Compared as text, not as decoded bytes: base64 decoding skips stray characters, so a decoded
 * compare would let some altered strings through.
 */
function thinkingVerifies(text: string, signature: string): boolean {
  return signature === signThinking(text);
}

function redactedVerifies(data: string): boolean {
  const bytes = Buffer.from(data, 'base64');
  return bytes.length > 32 && data === redactThinking(bytes.subarray(32).toString('utf8'));
}

/** The first thinking block, in any assistant turn, that is malformed or was not issued as it stands. */
function signatureProblem(messages: unknown[]): string | undefined {
  for (const [i, message] of messages.entries()) {
    if (!isRecord(message) || message.role !== 'assistant') continue;
    for (const [j, block] of asArray(message.content).entries()) {
      if (!isRecord(block)) continue;
      const at = `messages.${i}.content.${j}`;
      if (block.type === 'thinking') {
        if (typeof block.thinking !== 'string') return `${at}.thinking.thinking: Field required`;
        if (typeof block.signature !== 'string') return `${at}.thinking.signature: Field required`;
        if (!thinkingVerifies(block.thinking, block.signature)) return `${at}: Invalid \`signature\` in \`thinking\` block`;
      } else if (block.type === 'redacted_thinking') {
        if (typeof block.data !== 'string') return `${at}.redacted_thinking.data: Field required`;
        if (!redactedVerifies(block.data)) return `${at}: Invalid \`data\` in \`redacted_thinking\` block`;
      }
    }
  }
  return undefined;
}

function blockType(block: unknown): string {
  return isRecord(block) && typeof block.type === 'string' ? block.type : 'unknown';
}

/**
 * Mid tool loop (the last assistant turn calls tools and only the tools' results follow it), that
 * turn must open with its thinking: Claude resumes the reasoning that made the calls.
 */
function toolLoopProblem(messages: unknown[]): string | undefined {
  let last = -1;
  for (let i = messages.length - 1; i >= 0 && last === -1; i--) {
    const m = messages[i];
    if (isRecord(m) && m.role === 'assistant') last = i;
  }
  if (last === -1 || last === messages.length - 1) return undefined;
  const turn = messages[last] as JsonRecord;
  const content = asArray(turn.content);
  if (!content.some((b) => blockType(b) === 'tool_use')) return undefined;
  const resultsOnly = messages
    .slice(last + 1)
    .every((m) => isRecord(m) && m.role === 'user' && asArray(m.content).some((b) => blockType(b) === 'tool_result'));
  const first = blockType(content[0]);
  if (!resultsOnly || first === 'thinking' || first === 'redacted_thinking') return undefined;
  return (
    `messages.${last}.content.0.type: Expected \`thinking\` or \`redacted_thinking\`, but found \`${first}\`. ` +
    'When `thinking` is enabled, a final `assistant` message must start with a thinking block (preceeding the lastmost set of ' +
    '`tool_use` and `tool_result` blocks). We recommend you include thinking blocks from previous turns. To avoid this ' +
    `requirement, disable \`thinking\`. Please consult our documentation at ${DOCS}`
  );
}

/* ------------------------------------------------------------------ the check and the answer */

/** Claude's 400 for a request's thinking, or whether the answer thinks. */
export type ThinkingVerdict = { problem: string } | { problem?: undefined; thinks: boolean };

/** Checks `thinking`, `output_config.effort` and, when thinking is on, what thinking requires of the rest. */
export function checkThinking(body: JsonRecord, modelId: string, messages: unknown[]): ThinkingVerdict {
  const model = claudeModel(modelId);
  const config = parseThinking(body.thinking);
  if (typeof config === 'string') return { problem: config };
  const problem = formProblem(config, model, modelId) ?? effortProblem(body.output_config, model);
  if (problem) return { problem };
  if (config.type !== 'enabled' && config.type !== 'adaptive') return { thinks: false };
  const refused = settingsProblem(body, config) ?? signatureProblem(messages) ?? toolLoopProblem(messages);
  return refused ? { problem: refused } : { thinks: true };
}

/** The blocks an answer opens with when it thinks, and the output tokens they cost. */
export interface ThinkingAnswer {
  thinking: AnthropicThinkingBlock;
  redacted: AnthropicRedactedThinkingBlock | undefined;
  tokens: number;
}

/** Deterministic reasoning about the user's words, signed; a redacted block after it on request. */
export function thinkingAnswer(userText: string, redacted: boolean): ThinkingAnswer {
  const text = `Mock thinking about: ${truncate(userText)}`;
  const thinking: AnthropicThinkingBlock = { type: 'thinking', thinking: text, signature: signThinking(text) };
  if (!redacted) return { thinking, redacted: undefined, tokens: completionTokens(text) };
  const withheld = `Mock redacted thinking about: ${truncate(userText)}`;
  return {
    thinking,
    redacted: { type: 'redacted_thinking', data: redactThinking(withheld) },
    tokens: completionTokens(text) + completionTokens(withheld),
  };
}
