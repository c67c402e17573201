import { Injectable } from '@nestjs/common';
import type { Principal } from '@keygate/auth';
import { GatewayError } from '@keygate/errors';
import type { RequestContext } from '@keygate/observability';
import { applyParameterPolicy } from '@keygate/policy';
import { estimateResponsesPromptTokens, OpenAiAdapter, type ResponsesPassthrough } from '@keygate/providers';
import type { FastifyReply } from 'fastify';
import { CompletionRunner } from '../chat/completion-runner';
import { ProductRouter } from '../routing/product.router';
import { RESPONSES_STREAM } from './responses-errors';

/** The Responses request fields keygate reads; the rest goes to OpenAI as sent. */
export interface ResponsesRequest {
  model: string;
  input?: string | unknown[];
  instructions?: string;
  max_output_tokens?: number | null;
  temperature?: number | null;
  stream?: boolean;
  tools?: unknown;
  [key: string]: unknown;
}

/** Chat's names for the cap: the Responses API refuses them (keygate says which field it takes instead). */
const CHAT_CAP_FIELDS = ['max_tokens', 'max_completion_tokens'] as const;

/**
 * `POST /v1/responses`: OpenAI's Responses API for the OpenAI models of the caller's product,
 * passed through (the OpenAI SDKs' `responses.create`, the Agents SDK and Codex speak it). Routed,
 * policed, limited, retried, billed and audited like chat; the body and the answer stay OpenAI's.
 */
@Injectable()
export class ResponsesService {
  constructor(
    private readonly router: ProductRouter,
    private readonly runner: CompletionRunner,
    private readonly openai: OpenAiAdapter,
  ) {}

  async create(ctx: RequestContext, principal: Principal, body: ResponsesRequest, bodyBytes: number, reply: FastifyReply): Promise<void> {
    ctx.stream = body.stream === true;
    const first = this.router.resolve(ctx, principal, body.model, bodyBytes);
    if (first.access.provider !== 'openai') {
      throw new GatewayError(
        'unsupported_parameter',
        `The model '${body.model}' is served by ${first.access.provider}: /v1/responses serves OpenAI models, use /v1/chat/completions for it`,
        { param: 'model' },
      );
    }
    for (const field of CHAT_CAP_FIELDS) {
      if (body[field] !== undefined)
        throw new GatewayError(
          'unsupported_parameter',
          `${field} is the Chat Completions API's; the Responses API takes max_output_tokens`,
          {
            param: field,
          },
        );
    }
    // A background response is fetched later from GET /v1/responses/{id}, which keygate does not
    // serve; it could be neither answered nor billed here.
    if (body.background === true)
      throw new GatewayError(
        'unsupported_parameter',
        'background responses are not served through keygate; send the request without background',
        {
          param: 'background',
        },
      );
    const { policy } = first.policy;
    // Policy violations are the client's to fix: refused before any upstream is called.
    const cap = applyParameterPolicy({ ...body }, policy, 'max_output_tokens');
    await this.runner.run(
      ctx,
      principal,
      {
        // Fallbacks that OpenAI serves too: the body is the Responses API's.
        candidates: this.router.withFallbacks(ctx, first, body.model, (access) => access.provider === 'openai'),
        call: ({ model, access }) => {
          const attemptBody: ResponsesRequest = { ...body, model };
          applyParameterPolicy(attemptBody, policy, 'max_output_tokens');
          const call: ResponsesPassthrough = { body: attemptBody, access, signal: ctx.abort.signal };
          return ctx.stream ? this.openai.responsesStream(call) : this.openai.responses(call);
        },
        reserve: () => estimateResponsesPromptTokens(body) + cap,
        promptTokens: () => estimateResponsesPromptTokens(body),
        answerText: (answer) => answer.text,
        dialect: RESPONSES_STREAM,
        maxStreamSeconds: policy.maxStreamSeconds,
      },
      reply,
    );
  }
}
