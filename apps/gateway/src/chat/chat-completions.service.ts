import { Injectable } from '@nestjs/common';
import type { Principal } from '@keygate/auth';
import { GatewayError } from '@keygate/errors';
import type { RequestContext } from '@keygate/observability';
import { applyParameterPolicy, endUserId, identifyCaller } from '@keygate/policy';
import {
  estimatePredictionTokens,
  estimatePromptTokens,
  openAiFieldsOnly,
  reasons,
  TokenTally,
  withoutClaudeThinking,
  type ChatCompletionRequest,
  type ProviderCall,
} from '@keygate/providers';
import type { ProviderAccess } from '@keygate/secrets';
import type { FastifyReply } from 'fastify';
import { ProductRouter } from '../routing/product.router';
import { CompletionRunner } from './completion-runner';
import { isOpenAiOwnHost } from './openai-host';
import { OPENAI_STREAM } from './sse-relay';

/**
 * An assistant message's `audio` names an earlier audio answer by id, which OpenAI keeps under the
 * product's shared key: keygate cannot tell whose it is, so it is refused (its transcript, sent as
 * the message's content, carries the same turn).
 */
function refuseAudioReferences(body: ChatCompletionRequest): void {
  body.messages.forEach((message, i) => {
    const audio = (message as { audio?: unknown }).audio;
    if (audio !== undefined && audio !== null)
      throw new GatewayError(
        'unsupported_parameter',
        "an earlier audio answer named by id is not served through keygate (it cannot tell whose it is): send the answer's transcript as content",
        { param: `messages[${i}].audio` },
      );
  });
}

/**
 * The chat-completions path: product and model resolution, parameter policy, the provider call,
 * and the answer (JSON or SSE). Every outcome is recorded on the request context for the audit.
 */
@Injectable()
export class ChatCompletionsService {
  constructor(
    private readonly router: ProductRouter,
    private readonly runner: CompletionRunner,
  ) {}

  async complete(
    ctx: RequestContext,
    principal: Principal,
    body: ChatCompletionRequest,
    bodyBytes: number,
    reply: FastifyReply,
  ): Promise<void> {
    ctx.stream = body.stream === true;
    const first = this.router.resolve(ctx, principal, body.model, bodyBytes);
    const { policy } = first.policy;
    refuseAudioReferences(body);
    // Policy violations are the client's to fix: refused before any upstream is called.
    const completionCap = applyParameterPolicy({ ...body }, policy, capFieldFor(first.access));
    const clientWantsUsage = body.stream_options?.include_usage === true;
    const caller = policy.endUserId ? endUserId(principal.product, principal.user) : undefined;
    // The prompt and the prediction are counted within one budget of the tokenizer's work.
    const tally = new TokenTally();
    await this.runner.run(
      ctx,
      principal,
      {
        candidates: this.router.withFallbacks(ctx, first, body.model),
        call: ({ model, access, adapter }) => {
          // Falling back from Claude or Gemini to OpenAI: only what OpenAI's API takes goes, as the
          // translations took only that (OpenAI refuses the rest, a 400 that would end the fallback).
          const crossing = access.provider === 'openai' && first.access.provider !== 'openai';
          const attemptBody: ChatCompletionRequest = { ...(crossing ? openAiFieldsOnly(body) : body), model };
          // Falling back from Claude: the thinking its answers carried is Claude's alone.
          if (crossing && first.access.provider === 'anthropic') attemptBody.messages = withoutClaudeThinking(body.messages);
          // A fallback that does not reason answers without the effort asked of the requested model
          // (OpenAI's older models refuse the field; Claude and Gemini translations would refuse it).
          if (model !== body.model && attemptBody.reasoning_effort != null && !reasons(access.provider, model))
            delete attemptBody.reasoning_effort;
          applyParameterPolicy(attemptBody, policy, capFieldFor(access));
          if (caller !== undefined) identifyCaller(attemptBody, caller);
          const call: ProviderCall = { body: attemptBody, access, signal: ctx.abort, clientWantsUsage };
          return ctx.stream ? adapter.chatStream(call) : adapter.chat(call);
        },
        // A prediction's tokens the answer leaves out are billed as completion, beyond the cap.
        reserve: (prompt) => ({ prompt, completion: completionCap * choices(body) + estimatePredictionTokens(body, tally) }),
        promptTokens: () => estimatePromptTokens(body, tally),
        answerText: (answer) => completionText(answer.body),
        dialect: OPENAI_STREAM,
        maxStreamSeconds: policy.maxStreamSeconds,
      },
      reply,
    );
  }
}

/** The text of an OpenAI-shaped completion's choices (message content and tool call arguments). */
function completionText(body: string): string {
  const doc = JSON.parse(body) as {
    choices?: Array<{ message?: { content?: unknown; tool_calls?: Array<{ function?: { arguments?: unknown } }> } }>;
  };
  const parts: string[] = [];
  for (const choice of Array.isArray(doc.choices) ? doc.choices : []) {
    if (typeof choice.message?.content === 'string') parts.push(choice.message.content);
    for (const call of choice.message?.tool_calls ?? [])
      if (typeof call.function?.arguments === 'string') parts.push(call.function.arguments);
  }
  return parts.join('');
}

/** How many completions the request asks for (`n`), each bounded by the cap. */
function choices(body: ChatCompletionRequest): number {
  return typeof body.n === 'number' && body.n > 1 ? body.n : 1;
}

/**
 * OpenAI's reasoning models refuse `max_tokens`, and every current OpenAI chat model accepts
 * `max_completion_tokens`; OpenAI-compatible hosts reliably know only `max_tokens`.
 */
function capFieldFor(access: ProviderAccess): 'max_tokens' | 'max_completion_tokens' {
  return access.provider === 'openai' && isOpenAiOwnHost(access.baseUrl) ? 'max_completion_tokens' : 'max_tokens';
}
