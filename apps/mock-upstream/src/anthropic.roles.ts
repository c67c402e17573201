import { claudeModel } from './anthropic.thinking';
import { asArray, isRecord } from './mock.content';

/** Claude Opus 4.8 is the first model to take `role: "system"` inside `messages` (no beta needed). */
const MID_CONVERSATION_SYSTEM_FROM = 408;

const ROLES = new Set(['user', 'assistant', 'system']);

function isServerToolUse(block: unknown): boolean {
  return isRecord(block) && block.type === 'server_tool_use';
}

/**
 * Anthropic's 400 for the roles of `messages`, if it refuses them: `user` and `assistant`, and on
 * Claude Opus 4.8 and later a mid-conversation `system` message, under Anthropic's placement rules:
 * never first, right after a user message (or an assistant message ending in a server tool use),
 * last or followed by an assistant turn, never beside another one, and text only.
 */
export function messageRolesProblem(model: string, messages: unknown[]): string | undefined {
  for (const [i, m] of messages.entries()) {
    if (!isRecord(m)) continue;
    if (typeof m.role !== 'string' || !ROLES.has(m.role)) return `messages.${i}.role: Input should be 'user', 'assistant' or 'system'`;
    if (m.role !== 'system') continue;
    if (claudeModel(model).version < MID_CONVERSATION_SYSTEM_FROM)
      return `messages.${i}: system messages in \`messages\` are not supported on ${model}; use the top-level \`system\` parameter`;
    if (i === 0) return 'messages.0: a system message cannot be the first message; use the top-level `system` parameter';
    const before = messages[i - 1];
    const after = messages[i + 1];
    if ([before, after].some((n) => isRecord(n) && n.role === 'system'))
      return `messages.${i}: consecutive system messages are not allowed`;
    const followsUser = isRecord(before) && before.role === 'user';
    const followsServerTool = isRecord(before) && before.role === 'assistant' && isServerToolUse(asArray(before.content).at(-1));
    if (!followsUser && !followsServerTool)
      return `messages.${i}: a system message must follow a user message or an assistant message ending in a server tool use`;
    if (after !== undefined && !(isRecord(after) && after.role === 'assistant'))
      return `messages.${i}: a system message must be the last message or be followed by an assistant message`;
    if (typeof m.content !== 'string' && !asArray(m.content).every((b) => isRecord(b) && b.type === 'text'))
      return `messages.${i}.content: a system message takes text blocks only`;
  }
  return undefined;
}
