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

/** Whether an answer shows its thinking's text (`summarized`) or leaves it out (`omitted`, signature only). */
export type ThinkingDisplay = 'summarized' | 'omitted';

/** What a request's `thinking` asks for, once it is well formed. */
type ThinkingConfig =
  | { type: 'off' | 'disabled' }
  | { type: 'adaptive'; display?: ThinkingDisplay }
  | { type: 'enabled'; budget: number; display?: ThinkingDisplay };

/** The keys each `thinking` form takes besides `type`. */
const THINKING_KEYS = new Map<string, readonly string[]>([
  ['enabled', ['budget_tokens', 'display']],
  ['disabled', []],
  ['adaptive', ['display']],
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
  const display = value.display;
  if (display !== undefined && display !== 'summarized' && display !== 'omitted')
    return `thinking.${type}.display: Input should be 'summarized' or 'omitted'`;
  if (type === 'disabled') return { type };
  if (type === 'adaptive') return { type, display };
  const budget = value.budget_tokens;
  if (budget === undefined) return 'thinking.enabled.budget_tokens: Field required';
  if (typeof budget !== 'number' || !Number.isInteger(budget)) return 'thinking.enabled.budget_tokens: Input should be a valid integer';
  if (budget < 1024) return 'thinking.enabled.budget_tokens: Input should be greater than or equal to 1024';
  return { type: 'enabled', budget, display };
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
  return seal('redacted_thinking', text);
}

/*
 * Compared as text, not as decoded bytes: base64 decoding skips stray characters, so a decoded
 * compare would let some altered strings through.
 */
function thinkingVerifies(text: string, signature: string): boolean {
  return signature === signThinking(text) || (text === '' && sealedVerifies('omitted_thinking', signature));
}

/** An omitted block's signature: its withheld text sealed (HMAC, then the text), as Anthropic's carries the full thinking. */
function seal(domain: string, text: string): string {
  return Buffer.concat([mac(domain, text), Buffer.from(text, 'utf8')]).toString('base64');
}

function sealedVerifies(domain: string, sealed: string): boolean {
  const bytes = Buffer.from(sealed, 'base64');
  return bytes.length > 32 && sealed === seal(domain, bytes.subarray(32).toString('utf8'));
}

function redactedVerifies(data: string): boolean {
  return sealedVerifies('redacted_thinking', data);
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

/** A user turn that answers tool calls: it goes on with the assistant's turn rather than starting one. */
function answersTools(m: unknown): boolean {
  return isRecord(m) && m.role === 'user' && asArray(m.content).some((b) => blockType(b) === 'tool_result');
}

const isThinking = (type: string): boolean => type === 'thinking' || type === 'redacted_thinking';

/**
 * Mid tool loop (the conversation ends with tool results), the assistant's turn, which began after
 * the user's last own message, must open with its thinking: Claude resumes the reasoning that made
 * the calls. (The loop's later assistant messages have no thinking of their own.) A final assistant
 * message (a prefill) must open with thinking too, which Claude never writes there.
 */
function turnProblem(messages: unknown[]): string | undefined {
  const lastIndex = messages.length - 1;
  const last = messages[lastIndex];
  let at: number;
  if (isRecord(last) && last.role === 'assistant') at = lastIndex;
  else if (answersTools(last)) {
    at = lastIndex;
    while (at > 0 && !(isRecord(messages[at - 1]) && (messages[at - 1] as JsonRecord).role === 'user' && !answersTools(messages[at - 1])))
      at--;
  } else return undefined;
  const turn = messages[at];
  if (!isRecord(turn) || turn.role !== 'assistant') return undefined;
  const content = typeof turn.content === 'string' ? [{ type: 'text' }] : asArray(turn.content);
  const first = blockType(content[0]);
  if (isThinking(first)) return undefined;
  return (
    `messages.${at}.content.0.type: Expected \`thinking\` or \`redacted_thinking\`, but found \`${first}\`. ` +
    'When `thinking` is enabled, a final `assistant` message must start with a thinking block (preceeding the lastmost set of ' +
    '`tool_use` and `tool_result` blocks). We recommend you include thinking blocks from previous turns. To avoid this ' +
    `requirement, disable \`thinking\`. Please consult our documentation at ${DOCS}`
  );
}

/** Thinking where Claude refuses it whatever the request asks: as an assistant message's last block. */
function trailingThinkingProblem(messages: unknown[]): string | undefined {
  for (const [i, m] of messages.entries()) {
    if (!isRecord(m) || m.role !== 'assistant') continue;
    const content = asArray(m.content);
    if (content.length > 0 && isThinking(blockType(content[content.length - 1])))
      return `messages.${i}: The final block in an assistant message cannot be \`thinking\`.`;
  }
  return undefined;
}

/** Without thinking, a final assistant message (a prefill) may not carry any. */
function prefillThinkingProblem(messages: unknown[]): string | undefined {
  const last = messages[messages.length - 1];
  if (!isRecord(last) || last.role !== 'assistant' || !asArray(last.content).some((b) => isThinking(blockType(b)))) return undefined;
  return 'When thinking is disabled, an `assistant` message in the final position cannot contain `thinking`. To use thinking blocks, enable `thinking` in your request.';
}

/* ------------------------------------------------------------------ the check and the answer */

/** Claude's 400 for a request's thinking, or whether (and how) the answer thinks. */
export type ThinkingVerdict =
  { problem: string } | { problem?: undefined; thinks: false } | { problem?: undefined; thinks: true; display: ThinkingDisplay };

/** Checks `thinking`, `output_config.effort` and, when thinking is on, what thinking requires of the rest. */
export function checkThinking(body: JsonRecord, modelId: string, messages: unknown[]): ThinkingVerdict {
  const model = claudeModel(modelId);
  const config = parseThinking(body.thinking);
  if (typeof config === 'string') return { problem: config };
  const problem = formProblem(config, model, modelId) ?? effortProblem(body.output_config, model);
  if (problem) return { problem };
  if (config.type !== 'enabled' && config.type !== 'adaptive') {
    const refused = trailingThinkingProblem(messages) ?? prefillThinkingProblem(messages);
    return refused ? { problem: refused } : { thinks: false };
  }
  const refused = settingsProblem(body, config) ?? signatureProblem(messages) ?? trailingThinkingProblem(messages) ?? turnProblem(messages);
  if (refused) return { problem: refused };
  // Claude 4.7 and later leave the thinking's text out unless asked; earlier models show a summary.
  return { thinks: true, display: config.display ?? (model.version >= 407 ? 'omitted' : 'summarized') };
}

/** The blocks an answer opens with when it thinks, and the output tokens they cost. */
export interface ThinkingAnswer {
  thinking: AnthropicThinkingBlock;
  redacted: AnthropicRedactedThinkingBlock | undefined;
  tokens: number;
}

/**
 * Deterministic reasoning about the user's words, signed (left out, the signature sealing it, when
 * `omitted`); a redacted block after it on request.
 */
export function thinkingAnswer(userText: string, redacted: boolean, display: ThinkingDisplay = 'summarized'): ThinkingAnswer {
  const text = `Mock thinking about: ${truncate(userText)}`;
  const thinking: AnthropicThinkingBlock =
    display === 'omitted'
      ? { type: 'thinking', thinking: '', signature: seal('omitted_thinking', text) }
      : { type: 'thinking', thinking: text, signature: signThinking(text) };
  if (!redacted) return { thinking, redacted: undefined, tokens: completionTokens(text) };
  const withheld = `Mock redacted thinking about: ${truncate(userText)}`;
  return {
    thinking,
    redacted: { type: 'redacted_thinking', data: redactThinking(withheld) },
    tokens: completionTokens(text) + completionTokens(withheld),
  };
}
