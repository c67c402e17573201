import type { GatewayError } from '@keygate/errors';
import type { ChatMessage } from './chat.types';
import { invalidParameter, isRecord, reasoningEffort, unsupportedParameter, type ReasoningEffort } from './translate.util';
import type {
  AnthropicMessageParam,
  AnthropicRedactedThinkingBlock,
  AnthropicThinkingBlock,
  ClaudeEffort,
  MessagesRequest,
} from './anthropic.types';

/*
 * OpenAI's `reasoning_effort` as Claude's thinking, and Claude's signed thinking blocks carried
 * through OpenAI's chat format the way LiteLLM and the clients written for it do: an answer's
 * thinking comes back as `reasoning_content` (the text) and `thinking_blocks` (the blocks, signed),
 * and an assistant message sent back with its `thinking_blocks` gives Claude its thinking again.
 */

/** How a Claude model thinks: not at all, with a token budget, or adaptively at an effort. */
export type ClaudeThinkingForm = 'none' | 'budget' | 'adaptive';

/** A Claude model's version, read from its id. */
export interface ClaudeVersion {
  major: number;
  minor: number;
}

/**
 * The version in a Claude model id, wherever the version stands (`claude-3-7-sonnet-20250219`,
 * `claude-sonnet-4-5`, `claude-opus-4-20250514`, Vertex's `claude-opus-4-1@20250805`, Bedrock's
 * `anthropic.claude-opus-4-6-v1`, `claude-2.1`): the first number of one or two digits is the major,
 * a number right after it the minor (a date is not a version). Null for an id that names none
 * (`claude-mythos-preview`).
 */
export function claudeVersion(model: string): ClaudeVersion | null {
  const id = model.toLowerCase();
  const at = id.indexOf('claude-');
  if (at === -1) return null;
  const tokens = id
    .slice(at + 'claude-'.length)
    .replace(/@.*$/, '')
    .split('-');
  for (let i = 0; i < tokens.length; i++) {
    const dotted = /^(\d{1,2})(?:\.(\d{1,2}))?$/.exec(tokens[i]);
    if (!dotted) continue;
    const major = Number(dotted[1]);
    if (dotted[2] !== undefined) return { major, minor: Number(dotted[2]) };
    const next = tokens[i + 1];
    return { major, minor: next !== undefined && /^\d{1,2}$/.test(next) ? Number(next) : 0 };
  }
  return null;
}

/**
 * How a Claude model thinks. Claude 3.5 and earlier do not; 3.7 to 4.5 take a token budget
 * (`thinking: {type: "enabled", budget_tokens}`); 4.6 and later think adaptively at an effort
 * (`thinking: {type: "adaptive"}`, `output_config.effort`): Anthropic deprecated the budget on 4.6 and
 * refuses it from 4.7. An id without a version is taken for a current model.
 */
export function thinkingForm(model: string): ClaudeThinkingForm {
  const v = claudeVersion(model);
  if (v === null) return 'adaptive';
  if (v.major < 3 || (v.major === 3 && v.minor < 7)) return 'none';
  if (v.major === 3 || (v.major === 4 && v.minor <= 5)) return 'budget';
  return 'adaptive';
}

/** Thinking tokens a budget-form Claude may spend for each effort; Anthropic's least is 1,024. */
const THINKING_BUDGETS: Readonly<Record<Exclude<ReasoningEffort, 'none'>, number>> = {
  minimal: 1024,
  low: 2048,
  medium: 8192,
  high: 16384,
  xhigh: 32768,
};

const LEAST_BUDGET = 1024;

/** An OpenAI effort as an adaptive Claude's: `minimal` is `low`, the least; `xhigh` is `max` on 4.6, which has no `xhigh`. */
function adaptiveEffort(effort: Exclude<ReasoningEffort, 'none'>, model: string): ClaudeEffort {
  if (effort === 'minimal') return 'low';
  if (effort !== 'xhigh') return effort;
  const v = claudeVersion(model);
  return v !== null && v.major === 4 && v.minor === 6 ? 'max' : 'xhigh';
}

function unsupported(param: string, why: string): GatewayError {
  return unsupportedParameter('anthropic', param, why);
}

/**
 * Adds the thinking `reasoning_effort` asks for to a translated request, in place, or refuses
 * (400, nothing sent) what Claude refuses while it thinks:
 * - `none` asks for no thinking: nothing is added (a model that always thinks keeps its own default);
 * - Claude 3.5 and earlier do not think: `minimal` asks for nothing there, the rest is refused;
 * - a budget-form model gets the effort's budget (minimal 1,024 … xhigh 32,768 tokens), kept below
 *   `max_tokens`, which counts the thinking as OpenAI's `max_completion_tokens` counts reasoning; a
 *   request allowing 1,024 completion tokens or fewer cannot think and is refused;
 * - an adaptive model gets `thinking: {type: "adaptive"}` and the effort (`minimal` as `low`), and
 *   from Claude 4.7 on `display: "summarized"` (their default omits the thinking's text);
 * - a temperature other than 1, a `top_p` below 0.95, a forced tool choice and a final assistant
 *   message (a prefill) are refused, as Claude refuses them with thinking;
 * - mid tool loop, Claude needs the turn's first assistant message (the one that began the loop)
 *   sent back with its thinking first (its `thinking_blocks`); a client that did not keep them gets
 *   this request without thinking rather than Claude's 400 (the effort applies again from the next
 *   user turn).
 * Without thinking, a final assistant message (a prefill) loses any thinking blocks: Claude refuses
 * them there when it does not think.
 */
export function applyReasoningEffort(out: MessagesRequest, rawEffort: unknown, limitParam: LimitParam = 'max_completion_tokens'): void {
  addThinking(out, rawEffort, limitParam);
  const last = out.messages[out.messages.length - 1];
  if (out.thinking === undefined && last.role === 'assistant' && typeof last.content !== 'string')
    last.content = last.content.filter((b) => b.type !== 'thinking' && b.type !== 'redacted_thinking');
}

/** The request field that set `max_tokens`, for the refusal's `param`: the client's, or keygate's cap put as `max_tokens`. */
export type LimitParam = 'max_tokens' | 'max_completion_tokens';

function addThinking(out: MessagesRequest, rawEffort: unknown, limitParam: LimitParam): void {
  const effort = reasoningEffort(rawEffort);
  if (effort === undefined || effort === 'none') return;
  const form = thinkingForm(out.model);
  if (form === 'none') {
    if (effort === 'minimal') return;
    throw unsupported('reasoning_effort', `${out.model} does not think; reasoning_effort applies to Claude 3.7 Sonnet and later`);
  }
  if (out.temperature !== undefined && out.temperature !== 1)
    throw unsupported('temperature', 'Claude thinks (reasoning_effort) only at temperature 1: send 1 or leave temperature out');
  if (out.top_p !== undefined && out.top_p < 0.95)
    throw unsupported('top_p', 'Claude thinks (reasoning_effort) only with top_p between 0.95 and 1');
  if (out.tool_choice?.type === 'any' || out.tool_choice?.type === 'tool')
    throw unsupported('tool_choice', 'Claude cannot be made to call a tool while it thinks (reasoning_effort): use auto');
  if (out.messages[out.messages.length - 1].role === 'assistant')
    throw unsupported(
      'reasoning_effort',
      'Claude does not continue a final assistant message (a prefill) while it thinks: leave out reasoning_effort or that message',
    );
  if (toolLoopWithoutThinking(out.messages)) return;
  if (form === 'budget') {
    const budget = Math.min(THINKING_BUDGETS[effort], out.max_tokens - 1);
    if (budget < LEAST_BUDGET)
      throw invalidParameter(
        limitParam,
        `reasoning_effort ${effort} needs more than ${LEAST_BUDGET} completion tokens on ${out.model} (Claude's least thinking budget, which ${limitParam} counts); this request allows ${out.max_tokens}`,
      );
    out.thinking = { type: 'enabled', budget_tokens: budget };
    return;
  }
  out.thinking = omitsThinkingText(out.model) ? { type: 'adaptive', display: 'summarized' } : { type: 'adaptive' };
  out.output_config = { ...out.output_config, effort: adaptiveEffort(effort, out.model) };
}

/** Claude 4.7 and later (and ids without a version) leave the thinking's text out unless asked (`display`). */
function omitsThinkingText(model: string): boolean {
  const v = claudeVersion(model);
  return v === null || v.major > 4 || (v.major === 4 && v.minor >= 7);
}

/** A user turn that answers tool calls: it goes on with the assistant's turn rather than starting one. */
function answersTools(m: AnthropicMessageParam): boolean {
  return m.role === 'user' && typeof m.content !== 'string' && m.content.some((b) => b.type === 'tool_result');
}

/**
 * Whether the conversation is mid tool loop (it ends with tool results) and the assistant's turn,
 * which began after the user's last own message, does not open with its thinking: Claude refuses
 * that while thinking. (Later messages of the loop have no thinking of their own to send back.)
 */
function toolLoopWithoutThinking(messages: AnthropicMessageParam[]): boolean {
  if (!answersTools(messages[messages.length - 1])) return false;
  let start = messages.length - 1;
  while (start > 0 && !(messages[start - 1].role === 'user' && !answersTools(messages[start - 1]))) start--;
  const first = messages[start];
  const opening = typeof first.content === 'string' ? 'text' : first.content[0]?.type;
  return opening !== 'thinking' && opening !== 'redacted_thinking';
}

/** The fields keygate's Claude answers add to an assistant message: Claude's own, signed for Claude alone. */
const CLAUDE_THINKING_FIELDS = ['thinking_blocks', 'reasoning_content'] as const;

/**
 * The messages without the thinking a Claude answer carried (`thinking_blocks`, `reasoning_content`),
 * for a request that falls back from Claude to an OpenAI-compatible model: that thinking (and its
 * signatures) is Claude's alone, and older OpenAI models refuse a message field they do not know.
 * Returns `messages` itself when no message carries any.
 */
export function withoutClaudeThinking(messages: ChatMessage[]): ChatMessage[] {
  if (!messages.some((m) => CLAUDE_THINKING_FIELDS.some((f) => m[f] !== undefined))) return messages;
  return messages.map((m) => {
    if (!CLAUDE_THINKING_FIELDS.some((f) => m[f] !== undefined)) return m;
    const copy = { ...m };
    for (const f of CLAUDE_THINKING_FIELDS) delete copy[f];
    return copy;
  });
}

/**
 * An assistant message's `thinking_blocks`, as Claude's blocks to send back first in its turn: each
 * `{type: "thinking", thinking, signature}` or `{type: "redacted_thinking", data}`, exactly as an
 * answer gave them (Claude checks the signature). Anything else is refused, naming it.
 */
export function thinkingBlocksOf(value: unknown, where: string): Array<AnthropicThinkingBlock | AnthropicRedactedThinkingBlock> {
  if (value === undefined || value === null) return [];
  if (!Array.isArray(value)) throw invalidParameter(where, `${where} must be an array of thinking blocks`);
  return value.map((block: unknown, k) => {
    const at = `${where}[${k}]`;
    if (isRecord(block) && block.type === 'thinking' && typeof block.thinking === 'string' && typeof block.signature === 'string')
      return { type: 'thinking', thinking: block.thinking, signature: block.signature };
    if (isRecord(block) && block.type === 'redacted_thinking' && typeof block.data === 'string')
      return { type: 'redacted_thinking', data: block.data };
    throw invalidParameter(
      at,
      `${at} must be a thinking block as an answer gave it: {type: "thinking", thinking, signature} or {type: "redacted_thinking", data}`,
    );
  });
}

/**
 * A Messages request (keygate's `/v1/messages`, passed through) for a fallback model, whose thinking
 * the requested model was asked for: unchanged where the fallback thinks the same way; for one that
 * does not think (Claude 3.5 and earlier) without it, as chat answers a fallback without its
 * `reasoning_effort` (no `thinking`, no `output_config.effort`, and the history's thinking blocks,
 * Claude's signed thinking, left out); a GatewayError (the fallback is skipped) for one that thinks
 * in another form: a budget (`enabled`) on Claude 4.7 and later, which refuse it, or `adaptive` on
 * Claude 3.7 to 4.5, which know only the budget.
 */
export function messagesForFallback<T extends { thinking?: unknown; output_config?: unknown; messages: unknown[] }>(
  body: T,
  model: string,
): T {
  const asked = isRecord(body.thinking) ? body.thinking.type : undefined;
  if (asked !== 'enabled' && asked !== 'adaptive') return body;
  const form = thinkingForm(model);
  if (form === 'none') {
    const { thinking: _thinking, ...rest } = body;
    // An assistant turn that was only thinking goes (Anthropic joins the turns either side of it).
    const messages = body.messages.map(withoutThinkingBlocks).filter((m) => m !== undefined);
    const out = { ...rest, messages } as unknown as T;
    if (isRecord(body.output_config) && body.output_config.effort !== undefined) {
      const { effort: _effort, ...config } = body.output_config;
      if (Object.keys(config).length > 0) out.output_config = config;
      else delete out.output_config;
    }
    return out;
  }
  const v = claudeVersion(model);
  const takesBudget = form === 'budget' || (v !== null && v.major === 4 && v.minor === 6);
  if (asked === 'enabled' ? takesBudget : form === 'adaptive') return body;
  throw unsupported('thinking', `${model} does not take thinking of type ${asked}`);
}

/**
 * An assistant message without its thinking blocks (any other message, or one without them, as it
 * is); undefined for one that held nothing else.
 */
function withoutThinkingBlocks(m: unknown): unknown {
  if (!isRecord(m) || m.role !== 'assistant' || !Array.isArray(m.content)) return m;
  const isThinking = (b: unknown): boolean => isRecord(b) && (b.type === 'thinking' || b.type === 'redacted_thinking');
  const content: unknown[] = m.content;
  if (!content.some(isThinking)) return m;
  const rest = content.filter((b) => !isThinking(b));
  return rest.length > 0 ? { ...m, content: rest } : undefined;
}
