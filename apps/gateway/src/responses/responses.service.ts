import { Injectable } from '@nestjs/common';
import type { Principal } from '@keygate/auth';
import { GatewayError } from '@keygate/errors';
import type { RequestContext } from '@keygate/observability';
import { applyParameterPolicy, endUserId, identifyCaller, refuseDenied } from '@keygate/policy';
import {
  estimateResponsesPromptTokens,
  OpenAiAdapter,
  UpstreamError,
  type ResponsesPassthrough,
  type StoredResponseCall,
  type Usage,
} from '@keygate/providers';
import type { FastifyReply } from 'fastify';
import { isRecord } from '../chat/chat-completion.dto';
import { CompletionRunner, type Candidate } from '../chat/completion-runner';
import { ProductRouter, type ResolvedRoute } from '../routing/product.router';
import { RESPONSES_STREAM } from './responses-errors';
import { storedResponseQuery, type StoredResponseRoute } from './stored-response.query';
import { checkContainers, rememberContainer, type NamedContainer } from './containers';
import { RESPONSE_ID } from './response-id';
import { ownerOf, StoredResponses, type StoredResponse } from './stored-responses';

/** The Responses request fields keygate reads; the rest goes to OpenAI as sent. */
export interface ResponsesRequest {
  model: string;
  input?: string | unknown[];
  instructions?: string;
  max_output_tokens?: number | null;
  temperature?: number | null;
  stream?: boolean;
  tools?: unknown;
  previous_response_id?: string | null;
  [key: string]: unknown;
}

/** How each stored-response route goes upstream. */
const STORED_ROUTES: Readonly<Record<StoredResponseRoute, { method: StoredResponseCall['method']; suffix: string }>> = {
  retrieve: { method: 'GET', suffix: '' },
  delete: { method: 'DELETE', suffix: '' },
  inputItems: { method: 'GET', suffix: '/input_items' },
  // OpenAI cancels a background response only, and refuses any other with a 400 that is passed on.
  cancel: { method: 'POST', suffix: '/cancel' },
};

/**
 * Whether the upstream says it does not hold a response: OpenAI's `previous_response_not_found`,
 * or a 404 (a host's own) whose message names the id. Any other refusal (a host without the route,
 * a response another model cannot continue) is passed on as it is, and the record kept.
 */
function isGone(error: unknown, id: string): boolean {
  if (!(error instanceof UpstreamError) || error.kind !== 'http') return false;
  return error.code === 'previous_response_not_found' || (error.status === 404 && error.message.includes(id));
}

/** The answer for a response the caller may not use: none, another user's, another product's, all alike. */
function responseNotFound(id: string, param?: string): GatewayError {
  return new GatewayError('response_not_found', `No response with id '${id.slice(0, 128)}' was created by this user through keygate`, {
    param,
  });
}

/** The answer for an item reference the caller may not use: none, another user's, gone upstream, all alike. */
function itemNotFound(id: string, param: string): GatewayError {
  return new GatewayError(
    'response_not_found',
    `No stored item with id '${id.slice(0, 128)}' was made by this user's responses through keygate`,
    {
      param,
    },
  );
}

/** The stored state a request names, each checked to be its user's (see ResponsesService.storedState). */
interface StoredState {
  previousId: string | undefined;
  previous: StoredResponse | undefined;
  referenced: Array<{ id: string; at: string; record: StoredResponse }>;
  /** The host of the containers the request's tools reuse, when they name any. */
  containerHost: string | undefined;
}

/**
 * The code execution containers a list of tools names to reuse: a code interpreter's `container`
 * given as an id (not `{type: "auto"}`), a shell tool's `environment` of type `container_reference`,
 * also inside a `namespace`'s tools. An empty id is 400.
 */
export function toolContainers(tools: unknown, at = 'tools'): NamedContainer[] {
  if (!Array.isArray(tools)) return [];
  return tools.flatMap((tool: unknown, i): NamedContainer[] => {
    if (!isRecord(tool)) return [];
    if (tool.type === 'namespace') return toolContainers(tool.tools, `${at}[${i}].tools`);
    if (tool.type === 'code_interpreter' && typeof tool.container === 'string') {
      const where = `${at}[${i}].container`;
      if (tool.container === '')
        throw new GatewayError('invalid_request', `${where} must be the id of a container, or {"type": "auto"}`, { param: where });
      return [{ id: tool.container, at: where }];
    }
    const environment = tool.environment;
    if (isRecord(environment) && environment.type === 'container_reference') {
      const where = `${at}[${i}].environment.container_id`;
      if (typeof environment.container_id !== 'string' || environment.container_id === '')
        throw new GatewayError('invalid_request', `${where} must be the id of a container`, { param: where });
      return [{ id: environment.container_id, at: where }];
    }
    return [];
  });
}

/**
 * The containers a Responses request names to reuse: in its tools, and in the tools its input
 * items declare (a client's `tool_search_output`, Codex's `additional_tools`), as the parameter
 * policy reads them.
 */
export function requestContainers(body: Pick<ResponsesRequest, 'tools' | 'input'>): NamedContainer[] {
  const named = toolContainers(body.tools);
  if (Array.isArray(body.input))
    body.input.forEach((item: unknown, i) => {
      if (isRecord(item)) named.push(...toolContainers(item.tools, `input[${i}].tools`));
    });
  return named;
}

/**
 * Whether an input item carries its own content, so that it means the same without its `id`: any
 * typed item but an item reference and a reasoning item without `encrypted_content` (which stands
 * for the stored reasoning of that id).
 */
function carriesContent(item: Record<string, unknown>): boolean {
  if (typeof item.type !== 'string' || item.type === 'item_reference') return false;
  return item.type !== 'reasoning' || (typeof item.encrypted_content === 'string' && item.encrypted_content !== '');
}

/**
 * A conversation is created and kept at OpenAI outside keygate, under the product's shared key:
 * keygate cannot tell whose it is, as it can for a previous response.
 */
function refuseConversation(body: ResponsesRequest): void {
  if (body.conversation !== undefined && body.conversation !== null)
    throw new GatewayError(
      'unsupported_parameter',
      'conversations are not served through keygate (it cannot tell whose a conversation is); continue with previous_response_id',
      { param: 'conversation' },
    );
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
    private readonly stored: StoredResponses,
  ) {}

  async create(ctx: RequestContext, principal: Principal, body: ResponsesRequest, bodyBytes: number, reply: FastifyReply): Promise<void> {
    ctx.stream = body.stream === true;
    const first = this.openaiRoute(ctx, principal, body.model, bodyBytes, '/v1/responses');
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
    // A background response generates after this request has ended, where keygate could neither
    // limit nor bill it.
    if (body.background === true)
      throw new GatewayError(
        'unsupported_parameter',
        'background responses are not served through keygate; send the request without background',
        {
          param: 'background',
        },
      );
    refuseConversation(body);
    const { policy } = first.policy;
    // Policy violations are the client's to fix: refused before any upstream is called.
    const cap = applyParameterPolicy({ ...body }, policy, 'max_output_tokens');
    const state = await this.storedState(principal, body, first);
    const { previous } = state;
    const context = previous?.tokens ?? 0;
    const promptTokens = (): number => estimateResponsesPromptTokens(body) + context;
    const owner = ownerOf(principal);
    try {
      await this.run(
        ctx,
        principal,
        body,
        first,
        {
          cap,
          previous,
          itemsBaseUrl: state.referenced[0]?.record.baseUrl ?? state.containerHost,
          promptTokens,
          onStored: async (id, usage, itemIds, { model, access }) => {
            const record: StoredResponse = { owner, model, baseUrl: access.baseUrl, tokens: usage?.total_tokens ?? promptTokens() };
            // Its output items too: a later request may name them in an item_reference.
            await Promise.all([this.stored.remember(principal.product, id, record), this.rememberItems(principal, itemIds, record)]);
          },
        },
        reply,
      );
    } catch (error) {
      throw await this.goneOrSame(error, principal, state);
    }
  }

  /**
   * `POST /v1/responses/input_tokens`: OpenAI's count of the input tokens a create request with
   * these fields would be billed, passed through. Routed as create (an OpenAI model of the
   * product; `previous_response_id` and item references only this user's, at the host that stores
   * them), with the parameter policy's refused fields and tools; nothing to cap, nothing generated.
   * Limits as Anthropic's `count_tokens` and Gemini's `countTokens`: free and no generation, so the
   * per-second limits pace it (a call on the product's key) but no daily cap or token limit counts
   * it and nothing is billed (the route is @SkipDailyRequestLimits); blocks apply and it is audited. Retried like a call, without fallbacks (a count is per model).
   */
  async inputTokens(
    ctx: RequestContext,
    principal: Principal,
    body: ResponsesRequest,
    bodyBytes: number,
    reply: FastifyReply,
  ): Promise<void> {
    const first = this.openaiRoute(ctx, principal, body.model, bodyBytes, '/v1/responses/input_tokens');
    refuseConversation(body);
    refuseDenied(body, first.policy.policy);
    const state = await this.storedState(principal, body, first);
    const call: ResponsesPassthrough = { body, access: first.access, signal: ctx.abort };
    let answer: string;
    try {
      answer = await this.runner.once(ctx, body.model, () => this.openai.responsesInputTokens(call));
    } catch (error) {
      throw await this.goneOrSame(error, principal, state);
    }
    ctx.answer(200);
    void reply.status(200).type('application/json').send(answer);
  }

  /**
   * `POST /v1/responses/compact`: OpenAI's compaction of a conversation (Codex calls it when its
   * context fills up), passed through. It generates (the compaction is billed as output), so it is
   * admitted, reserved, settled and audited as create is: the prompt's estimate (with a previous
   * response's tokens as context) and the product's completion cap are reserved, then settled to
   * the usage OpenAI reports. Routed and checked as create; not fallen back (the compaction item
   * is encrypted for the model that made it), never streamed, and not recorded (OpenAI stores no
   * response for it: its output is sent back as the next request's input).
   */
  async compact(ctx: RequestContext, principal: Principal, body: ResponsesRequest, bodyBytes: number, reply: FastifyReply): Promise<void> {
    ctx.stream = false;
    const first = this.openaiRoute(ctx, principal, body.model, bodyBytes, '/v1/responses/compact');
    // OpenAI answers a compaction as one JSON object: a stream asked for is refused here, not upstream.
    if (body.stream === true)
      throw new GatewayError('unsupported_parameter', 'a compaction is answered as one JSON object: leave stream out', {
        param: 'stream',
      });
    refuseConversation(body);
    const { policy } = first.policy;
    refuseDenied(body, policy);
    const state = await this.storedState(principal, body, first);
    const context = state.previous?.tokens ?? 0;
    const promptTokens = (): number => estimateResponsesPromptTokens(body) + context;
    const owner = ownerOf(principal);
    try {
      await this.runner.run(
        ctx,
        principal,
        {
          candidates: [{ model: body.model, access: first.access }],
          call: ({ access }) =>
            this.openai.responsesCompact({
              body,
              access,
              signal: ctx.abort,
              // The compaction's items come back as the next request's input: the caller's, as a stored response's are.
              onItems: (itemIds) =>
                this.rememberItems(principal, itemIds, { owner, model: body.model, baseUrl: access.baseUrl, tokens: 0 }),
            }),
          reserve: (prompt) => ({ prompt, completion: policy.maxTokens }),
          promptTokens,
          answerText: (answer) => answer.text,
          dialect: RESPONSES_STREAM,
          maxStreamSeconds: policy.maxStreamSeconds,
        },
        reply,
      );
    } catch (error) {
      throw await this.goneOrSame(error, principal, state);
    }
  }

  /** The route of a Responses API request: the model must be one the product serves through OpenAI. */
  private openaiRoute(ctx: RequestContext, principal: Principal, model: string, bodyBytes: number, route: string): ResolvedRoute {
    return this.router.resolveServedBy(ctx, principal, model, bodyBytes, { provider: 'openai', route, api: 'OpenAI' });
  }

  /**
   * What a request continues from, each checked to be this user's: its item references (an item
   * OpenAI stores under the product's shared key, fetched by its id alone: only an output item of
   * a response this user made through keygate) and its `previous_response_id` (whose context is
   * part of the prompt OpenAI bills), both at the host serving the requested model.
   */
  private async storedState(principal: Principal, body: ResponsesRequest, first: ResolvedRoute): Promise<StoredState> {
    const referenced = await this.referencedItems(principal, body.input);
    for (const { at, record } of referenced)
      if (record.baseUrl !== first.access.baseUrl)
        throw new GatewayError(
          'unsupported_parameter',
          `${at} names an item stored at another host than the one serving ${body.model}: reference it with ${record.model}`,
          { param: at },
        );
    const previousId = typeof body.previous_response_id === 'string' ? body.previous_response_id : undefined;
    const previous = previousId === undefined ? undefined : await this.previous(principal, previousId);
    if (previous && previous.baseUrl !== first.access.baseUrl)
      throw new GatewayError(
        'unsupported_parameter',
        `previous_response_id is stored at another host than the one serving ${body.model}: continue it with ${previous.model}`,
        { param: 'previous_response_id' },
      );
    // A container reused: the caller's own (a code interpreter's container holds its files and state), at this host.
    const containerHost = await checkContainers(this.stored, principal, requestContainers(body), {
      baseUrl: first.access.baseUrl,
      model: body.model,
    });
    return { previousId, previous, referenced, containerHost };
  }

  /**
   * The error to answer for an upstream failure of a request that named stored state: a previous
   * response or a referenced item OpenAI no longer has (deleted there, expired) is forgotten, and
   * said as for any other not the caller's; any other error is answered as it is.
   */
  private async goneOrSame(error: unknown, principal: Principal, state: StoredState): Promise<unknown> {
    const { previousId, referenced } = state;
    if (previousId !== undefined && isGone(error, previousId)) {
      await this.stored.forget(principal.product, previousId);
      return responseNotFound(previousId, 'previous_response_id');
    }
    const gone = referenced.find(({ id }) => isGone(error, id));
    if (gone) {
      await this.stored.forget(principal.product, gone.id);
      return itemNotFound(gone.id, gone.at);
    }
    return error;
  }

  private async run(
    ctx: RequestContext,
    principal: Principal,
    body: ResponsesRequest,
    first: ResolvedRoute,
    plan: {
      cap: number;
      previous: StoredResponse | undefined;
      /** The host storing the items the input references or the containers its tools reuse, if any (checked to be the first candidate's). */
      itemsBaseUrl: string | undefined;
      promptTokens: () => number;
      onStored: (id: string, usage: Usage | null, itemIds: string[], candidate: Candidate) => Promise<void>;
    },
    reply: FastifyReply,
  ): Promise<void> {
    const { policy } = first.policy;
    const { previous, promptTokens, cap } = plan;
    const pinnedBaseUrl = previous?.baseUrl ?? plan.itemsBaseUrl;
    await this.runner.run(
      ctx,
      principal,
      {
        // Fallbacks that OpenAI serves too (the body is the Responses API's), at the host holding
        // the previous response or the referenced items if there are any.
        candidates: this.router.withFallbacks(
          ctx,
          first,
          body.model,
          (access) => access.provider === 'openai' && (pinnedBaseUrl === undefined || access.baseUrl === pinnedBaseUrl),
        ),
        call: ({ model, access }) => {
          const attemptBody: ResponsesRequest = { ...body, model };
          applyParameterPolicy(attemptBody, policy, 'max_output_tokens');
          if (policy.endUserId) identifyCaller(attemptBody, endUserId(principal.product, principal.user));
          const call: ResponsesPassthrough = {
            body: attemptBody,
            access,
            signal: ctx.abort,
            onStored: (id, usage, itemIds) => plan.onStored(id, usage, itemIds, { model, access }),
            // The containers its code ran in: reusable by this user only.
            onContainers: async (ids) => {
              await Promise.all(ids.map((id) => rememberContainer(this.stored, principal, id, { model, baseUrl: access.baseUrl })));
            },
          };
          return ctx.stream ? this.openai.responsesStream(call) : this.openai.responses(call);
        },
        reserve: (prompt) => ({ prompt, completion: cap }),
        promptTokens,
        answerText: (answer) => answer.text,
        dialect: RESPONSES_STREAM,
        maxStreamSeconds: policy.maxStreamSeconds,
      },
      reply,
    );
  }

  /**
   * `GET /v1/responses/{id}`, `DELETE /v1/responses/{id}`, `GET /v1/responses/{id}/input_items`:
   * a response stored through keygate, for the product and user that created it, passed through
   * with the product's key for the host that stores it. Free at OpenAI: no tokens, retried like a
   * call. A response OpenAI no longer has is forgotten.
   */
  async storedResponse(
    ctx: RequestContext,
    principal: Principal,
    route: StoredResponseRoute,
    id: string,
    query: Record<string, unknown> | undefined,
    reply: FastifyReply,
  ): Promise<void> {
    const { product } = this.router.product(principal);
    const search = storedResponseQuery(route, query);
    const record = RESPONSE_ID.test(id) ? await this.stored.find(product.name, ownerOf(principal), id) : undefined;
    if (!record) throw responseNotFound(id);
    ctx.model = record.model;
    ctx.requestedModel = record.model;
    ctx.provider = 'openai';
    // The product's key for that host today (keys rotate); gone when the product no longer uses the host.
    const access = product.providers.find((a) => a.provider === 'openai' && a.baseUrl === record.baseUrl);
    if (!access) throw responseNotFound(id);
    const { method, suffix } = STORED_ROUTES[route];
    const call: StoredResponseCall = { method, path: `/responses/${id}${suffix}${search}`, access, signal: ctx.abort };
    let body: string;
    try {
      // A delete is not retried: one that went through but whose answer was lost would come back 404.
      body = await this.runner.once(ctx, record.model, () => this.openai.storedResponse(call), { retry: route !== 'delete' });
    } catch (error) {
      // Gone upstream (deleted there, expired): forgotten, and answered as any response not the caller's.
      if (route !== 'inputItems' && isGone(error, id)) {
        await this.stored.forget(product.name, id);
        throw responseNotFound(id);
      }
      if (error instanceof UpstreamError && error.kind === 'http' && error.status === 404) throw responseNotFound(id);
      throw error;
    }
    if (route === 'delete') await this.stored.forget(product.name, id);
    ctx.answer(200);
    void reply.status(200).type('application/json').send(body);
  }

  /**
   * The input's item references, each the record of an output item this user's stored response
   * made through keygate (looked up together: a long history references many); the first that is
   * not (unknown, another user's, not an id) is refused as a previous response is, without saying why.
   * OpenAI takes an item without a `type` (or `type: null`) that carries an `id` as a reference too,
   * and may look up a typed item by its `id` (a reasoning item, a generated image, a tool call sent
   * back as history), so every id is checked; so is an MCP approval's `approval_request_id`, which
   * names an output item as well. A typed item that carries its own content (any but a reasoning
   * item without `encrypted_content`, which is only a reference) and whose id is not the caller's
   * goes on without the id instead: OpenAI then has nothing to look up, and a stateless chain
   * (`store: false`, whose output items are recorded nowhere) that sends its output items back, as
   * the Agents SDK does, is served as OpenAI serves it.
   */
  private async referencedItems(principal: Principal, input: unknown): Promise<Array<{ id: string; at: string; record: StoredResponse }>> {
    if (!Array.isArray(input)) return [];
    const references = input.flatMap((item: unknown, i): Array<{ id: string; at: string; carried?: number }> => {
      if (!isRecord(item)) return [];
      const named: Array<{ id: string; at: string; carried?: number }> = [];
      const untyped = item.type === undefined || item.type === null;
      if (item.type === 'item_reference' || (untyped && 'id' in item) || (typeof item.id === 'string' && item.id !== ''))
        named.push({ id: typeof item.id === 'string' ? item.id : '', at: `input[${i}].id`, carried: carriesContent(item) ? i : undefined });
      if (item.type === 'mcp_approval_response' && item.approval_request_id !== undefined && item.approval_request_id !== null)
        named.push({
          id: typeof item.approval_request_id === 'string' ? item.approval_request_id : '',
          at: `input[${i}].approval_request_id`,
        });
      return named;
    });
    const owner = ownerOf(principal);
    const records = await Promise.all(
      references.map(({ id }) => (RESPONSE_ID.test(id) ? this.stored.findItem(principal.product, owner, id) : Promise.resolve(undefined))),
    );
    return references.flatMap(({ id, at, carried }, k) => {
      const record = records[k];
      if (record) return [{ id, at, record }];
      if (carried === undefined) throw itemNotFound(id, at);
      const { id: _unknown, ...item } = input[carried] as Record<string, unknown>;
      input[carried] = item;
      return [];
    });
  }

  /** Records output items as the caller's (what a later request may name by id: see referencedItems). */
  private async rememberItems(principal: Principal, itemIds: string[], record: StoredResponse): Promise<void> {
    await Promise.all(itemIds.map((itemId) => this.stored.remember(principal.product, itemId, { ...record, tokens: 0, kind: 'item' })));
  }

  /** The record of the response a request continues from; 404 when it is not this user's. */
  private async previous(principal: Principal, id: string): Promise<StoredResponse> {
    const record = await this.stored.find(principal.product, ownerOf(principal), id);
    if (!record) throw responseNotFound(id, 'previous_response_id');
    return record;
  }
}
