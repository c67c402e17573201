import { Injectable } from '@nestjs/common';
import type { Principal } from '@keygate/auth';
import { GatewayError } from '@keygate/errors';
import type { RequestContext } from '@keygate/observability';
import { applyParameterPolicy, endUserId, identifyAnthropicCaller, refuseBetas } from '@keygate/policy';
import {
  AnthropicAdapter,
  estimateMessagesPromptTokens,
  messagesForFallback,
  promptCacheWrite,
  UpstreamError,
  type MessagesPassthrough,
  type OnMessage,
} from '@keygate/providers';
import type { ProductEntry, ProviderAccess } from '@keygate/secrets';
import type { FastifyReply } from 'fastify';
import { isRecord } from '../chat/chat-completion.dto';
import { CompletionRunner } from '../chat/completion-runner';
import { checkContainers, rememberContainer, type NamedContainer } from '../responses/containers';
import { RESPONSE_ID } from '../responses/response-id';
import { ownerOf, StoredResponses, type StoredResponse } from '../responses/stored-responses';
import { ProductRouter, type ResolvedRoute } from '../routing/product.router';
import { ANTHROPIC_STREAM } from './anthropic-errors';

/** The Messages request fields keygate reads; the rest goes to Anthropic as sent. */
export interface MessagesRequest {
  model: string;
  messages: unknown[];
  max_tokens?: number | null;
  temperature?: number | null;
  stream?: boolean;
  system?: unknown;
  tools?: unknown;
  thread?: unknown;
  container?: unknown;
  fallbacks?: unknown;
  diagnostics?: unknown;
  [key: string]: unknown;
}

/** The client headers that go on to Anthropic, once checked. */
export interface AnthropicClientHeaders {
  version?: string;
  beta?: string;
}

const VERSION = /^\d{4}-\d{2}-\d{2}$/;
const BETA = /^[A-Za-z0-9._-]+( *, *[A-Za-z0-9._-]+)*$/;
const MAX_BETA_LENGTH = 1024;

/**
 * `anthropic-version` and `anthropic-beta` as the client sent them, checked: they pick the API's
 * behaviour (Claude Code sends several betas), so they go on; nothing else of the client's does.
 * An `oauth-*` beta (which the Anthropic SDK adds to every request when given `credentials`) is
 * left out: it concerns how the caller authenticates, and keygate calls Anthropic with the
 * product's API key.
 */
export function anthropicClientHeaders(headers: Record<string, string | string[] | undefined>): AnthropicClientHeaders {
  const out: AnthropicClientHeaders = {};
  const version = headers['anthropic-version'];
  if (version !== undefined) {
    if (typeof version !== 'string' || !VERSION.test(version))
      throw new GatewayError('invalid_request', 'the anthropic-version header must be a date such as 2023-06-01', {
        param: 'anthropic-version',
      });
    out.version = version;
  }
  const beta = headers['anthropic-beta'];
  if (beta !== undefined) {
    if (typeof beta !== 'string' || beta.length > MAX_BETA_LENGTH || !BETA.test(beta.trim()))
      throw new GatewayError('invalid_request', 'the anthropic-beta header must be a comma-separated list of feature names', {
        param: 'anthropic-beta',
      });
    const sent = beta.trim();
    // Split only when an oauth-* feature may be there (Claude Code sends betas on every request).
    const kept = /oauth-/i.test(sent)
      ? sent
          .split(',')
          .filter((feature) => !/^\s*oauth-/i.test(feature))
          .join(',')
      : sent;
    if (kept !== '') out.beta = kept;
  }
  return out;
}

/**
 * What a request asks of Anthropic's server-held threads (`thread`, the message-threads beta the
 * Anthropic SDKs' tool runner uses by default): a new thread held under the answer's id, or the
 * continuation of one from an earlier answer's id, the request then carrying only the new turn.
 */
type ThreadAsk = { type: 'create' } | { type: 'continue'; previousId: string };

/** The request's `thread`, checked: anything but the two shapes Anthropic documents is refused (keygate could not tell whose it is). */
export function threadOf(body: Pick<MessagesRequest, 'thread'>): ThreadAsk | undefined {
  const { thread } = body;
  if (thread === undefined || thread === null) return undefined;
  if (isRecord(thread) && thread.type === 'create') return { type: 'create' };
  if (isRecord(thread) && thread.type === 'continue') {
    const id = thread.previous_message_id;
    if (typeof id === 'string' && RESPONSE_ID.test(id)) return { type: 'continue', previousId: id };
    throw new GatewayError('invalid_request', 'thread.previous_message_id must be the id of an earlier answer (msg_…)', {
      param: 'thread.previous_message_id',
    });
  }
  throw new GatewayError('invalid_request', 'thread must be {"type": "create"} or {"type": "continue", "previous_message_id": "msg_…"}', {
    param: 'thread',
  });
}

/**
 * The earlier answer a request asks Anthropic's cache diagnostics to compare it with
 * (`diagnostics.previous_message_id`), checked; undefined for none (`null` opts in on a first turn).
 */
export function diagnosedAgainst(body: Pick<MessagesRequest, 'diagnostics'>): string | undefined {
  const { diagnostics } = body;
  if (diagnostics === undefined || diagnostics === null) return undefined;
  if (!isRecord(diagnostics))
    throw new GatewayError('invalid_request', 'diagnostics must be an object: {"previous_message_id": "msg_…" or null}', {
      param: 'diagnostics',
    });
  const id = diagnostics.previous_message_id;
  if (id === undefined || id === null) return undefined;
  if (typeof id === 'string' && RESPONSE_ID.test(id)) return id;
  throw new GatewayError('invalid_request', 'diagnostics.previous_message_id must be the id of an earlier answer (msg_…) or null', {
    param: 'diagnostics.previous_message_id',
  });
}

/**
 * Whether Anthropic fingerprints the request for its cache diagnostics: it does for every request
 * sent with the `cache-diagnosis-*` beta, keyed by the answer's id.
 */
export function fingerprinted(beta: string | undefined): boolean {
  return beta !== undefined && beta.split(',').some((feature) => feature.trim().toLowerCase().startsWith('cache-diagnosis-'));
}

/**
 * The code execution container a request names to reuse (`container`: its id, or `{id, skills}`);
 * none for `{skills}` alone (a new container with those skills).
 */
export function containerOf(body: Pick<MessagesRequest, 'container'>): NamedContainer[] {
  const { container } = body;
  if (container === undefined || container === null) return [];
  if (typeof container === 'string') return [{ id: container, at: 'container' }];
  if (isRecord(container)) {
    if (container.id === undefined || container.id === null) return [];
    if (typeof container.id === 'string') return [{ id: container.id, at: 'container.id' }];
  }
  throw new GatewayError('invalid_request', 'container must be a container id or an object with an id and/or skills', {
    param: 'container',
  });
}

/**
 * Anthropic's server-side `fallbacks` (a model to retry on when the requested one declines), checked:
 * each must be a Claude model the caller's product serves at the host serving the request, since the
 * answer would come from it, with the request's own (policed) parameters: an entry's overrides are
 * refused. `"default"` (models Anthropic picks) is refused: keygate could not tell which model
 * answers, and the product may not serve it.
 */
export function checkServerFallbacks(body: Pick<MessagesRequest, 'fallbacks'>, product: ProductEntry, host: string): void {
  const { fallbacks } = body;
  if (fallbacks === undefined || fallbacks === null) return;
  if (fallbacks === 'default')
    throw new GatewayError(
      'unsupported_parameter',
      'fallbacks: "default" lets Anthropic pick the models, which keygate cannot check against this product\'s: list them',
      { param: 'fallbacks' },
    );
  if (!Array.isArray(fallbacks))
    throw new GatewayError('invalid_request', 'fallbacks must be a list of {"model": …} entries', { param: 'fallbacks' });
  fallbacks.forEach((entry: unknown, i) => {
    const model = isRecord(entry) ? entry.model : undefined;
    const at = `fallbacks[${i}].model`;
    if (typeof model !== 'string' || model === '') throw new GatewayError('invalid_request', `${at} must be a model name`, { param: at });
    // An entry's own max_tokens, thinking, output_config or speed would apply to that attempt past the
    // parameter policy and the reservation (checked on the request's own fields only): refused.
    const other = Object.keys(entry as Record<string, unknown>).find((key) => key !== 'model');
    if (other !== undefined)
      throw new GatewayError(
        'unsupported_parameter',
        `fallbacks[${i}].${other.slice(0, 64)}: an entry takes only a model through keygate`,
        {
          param: `fallbacks[${i}].${other.slice(0, 64)}`,
        },
      );
    const access = product.route(model);
    if (!access || access.provider !== 'anthropic' || access.baseUrl !== host)
      throw new GatewayError(
        'model_not_allowed',
        `The model '${model.slice(0, 256)}' is not one this product serves through Anthropic here`,
        {
          param: at,
        },
      );
  });
}

/** The models a request's server-side `fallbacks` list (after {@link checkServerFallbacks}). */
export function serverFallbackModels(body: Pick<MessagesRequest, 'fallbacks'>): string[] {
  return Array.isArray(body.fallbacks) ? body.fallbacks.map((entry: { model: string }) => entry.model) : [];
}

/** A model name with a snapshot date (`claude-sonnet-4-5-20250929`), as Anthropic may name the answering model. */
const DATED = /^(.+)-\d{8}$/;

/**
 * Which of a request's server-side fallbacks an answer came from, by the model it names: a listed
 * one by its name, else by its dated snapshot (`-YYYYMMDD`, which Anthropic may answer with);
 * undefined when it is the model asked for (by name or snapshot), or none listed.
 */
export function answeringFallback(answered: string, asked: string, fallbacks: readonly string[]): string | undefined {
  if (answered === asked) return undefined;
  if (fallbacks.includes(answered)) return answered;
  const undated = DATED.exec(answered)?.[1];
  if (undated === undefined || undated === asked) return undefined;
  return fallbacks.find((model) => model === undated);
}

/**
 * A content block that names a file of Anthropic's Files API by id (a document or image whose
 * `source` is `{type: "file"}`, a `container_upload`), in a message or a tool result inside one.
 * keygate serves no Files API, so such a file was made under the product's shared key some other
 * way (a code execution tool's output file, another user's): refused, since keygate cannot tell
 * whose it is. Send the file's content instead.
 */
export function refuseFileReferences(messages: unknown): void {
  if (!Array.isArray(messages)) return;
  const check = (block: unknown, at: string): void => {
    if (!isRecord(block)) return;
    const named =
      block.type === 'container_upload'
        ? `${at}.file_id`
        : isRecord(block.source) && block.source.type === 'file'
          ? `${at}.source.file_id`
          : undefined;
    if (named)
      throw new GatewayError(
        'unsupported_parameter',
        'a file named by its Files API id is not served through keygate (it cannot tell whose the file is): send its content (base64 or text)',
        { param: named },
      );
    if (block.type === 'tool_result' && Array.isArray(block.content))
      block.content.forEach((inner, k) => check(inner, `${at}.content[${k}]`));
    // A document made of content blocks (`source: {type: "content", content: [...]}`) may hold an image by file id.
    if (isRecord(block.source) && block.source.type === 'content' && Array.isArray(block.source.content))
      block.source.content.forEach((inner, k) => check(inner, `${at}.source.content[${k}]`));
  };
  messages.forEach((message, i) => {
    if (isRecord(message) && Array.isArray(message.content))
      message.content.forEach((block, j) => check(block, `messages[${i}].content[${j}]`));
  });
}

/**
 * The answer for a thread the caller may not continue: none recorded, another user's, another
 * product's, gone at Anthropic, all alike. Anthropic's own `details.error_code`: its SDKs then replay
 * the whole conversation under a new thread, which is the caller's.
 */
function threadNotFound(id: string): GatewayError {
  return new GatewayError('thread_not_found', `No thread answer with id '${id.slice(0, 128)}' was made for this user through keygate`, {
    param: 'thread.previous_message_id',
    details: { error_code: 'thread_not_found' },
  });
}

/** Whether Anthropic said it holds no thread for the id a continuation named (404 `thread_not_found`). */
function isThreadGone(error: unknown): boolean {
  return error instanceof UpstreamError && error.kind === 'http' && error.status === 404 && error.code === 'thread_not_found';
}

/**
 * `POST /v1/messages`: Anthropic's Messages API for the Claude models of the caller's product,
 * passed through (the Anthropic SDKs and Claude Code speak it). Routed, policed, limited, retried,
 * billed and audited like chat; the body and the answer stay Anthropic's.
 */
@Injectable()
export class MessagesService {
  constructor(
    private readonly router: ProductRouter,
    private readonly runner: CompletionRunner,
    private readonly anthropic: AnthropicAdapter,
    private readonly stored: StoredResponses,
  ) {}

  async create(
    ctx: RequestContext,
    principal: Principal,
    body: MessagesRequest,
    client: AnthropicClientHeaders,
    bodyBytes: number,
    reply: FastifyReply,
  ): Promise<void> {
    ctx.stream = body.stream === true;
    const first = this.anthropicRoute(ctx, principal, body, bodyBytes);
    // OpenAI's name for the cap: Anthropic refuses it, and keygate's policy would read it as the cap.
    if (body.max_completion_tokens !== undefined)
      throw new GatewayError('unsupported_parameter', "max_completion_tokens is OpenAI's; the Messages API takes max_tokens", {
        param: 'max_completion_tokens',
      });
    const { policy } = first.policy;
    // Policy violations are the client's to fix: refused before any upstream is called.
    const cap = applyParameterPolicy({ ...body }, policy);
    refuseBetas(client.beta, policy);
    // Anthropic's own fallbacks answer from another model: one this product serves, at this host.
    checkServerFallbacks(body, first.product, first.access.baseUrl);
    const serverFallbacks = serverFallbackModels(body);
    refuseFileReferences(body.messages);
    const thread = threadOf(body);
    const previous = thread?.type === 'continue' ? await this.threadRecord(principal, thread.previousId, first, body.model) : undefined;
    await this.checkDiagnosed(principal, body);
    const fingerprint = fingerprinted(client.beta);
    // A container reused: the caller's own, at the host that holds it.
    const containerHost = await checkContainers(this.stored, principal, containerOf(body), {
      baseUrl: first.access.baseUrl,
      model: body.model,
    });
    // A continuation carries only the new turn: the thread's context is part of the prompt Anthropic bills.
    const promptTokens = (): number => estimateMessagesPromptTokens(body) + (previous?.tokens ?? 0);
    const owner = ownerOf(principal);
    // An answer that holds a thread is recorded as its user's before the client has its id; so is
    // one whose request Anthropic fingerprinted (once: the id is all a comparison needs).
    const onMessage = (model: string, access: ProviderAccess): OnMessage | undefined => {
      if (thread)
        return (id, usage) =>
          this.stored.remember(principal.product, id, {
            owner,
            model,
            baseUrl: access.baseUrl,
            tokens: usage?.total_tokens ?? promptTokens(),
            kind: 'thread',
          });
      if (!fingerprint) return undefined;
      let told = false;
      return (id) => {
        if (told) return;
        told = true;
        return this.stored.remember(principal.product, id, { owner, model, baseUrl: access.baseUrl, tokens: 0, kind: 'message' });
      };
    };
    try {
      await this.runner.run(
        ctx,
        principal,
        {
          // Fallbacks that Anthropic serves too (the body is Anthropic's); a continuation only on the
          // model and at the host that hold its thread.
          candidates: this.router
            .withFallbacks(
              ctx,
              first,
              body.model,
              (access) =>
                access.provider === 'anthropic' &&
                (!previous || access.baseUrl === previous.baseUrl) &&
                // Anthropic's own fallbacks were checked against the first host's models.
                (body.fallbacks === undefined || body.fallbacks === null || access.baseUrl === first.access.baseUrl) &&
                (containerHost === undefined || access.baseUrl === containerHost),
            )
            .filter((candidate) => !previous || candidate.model === body.model),
          call: ({ model, access }) => {
            // A fallback that thinks otherwise (or not at all) gets the request as it can take it, or is skipped.
            const attemptBody: MessagesRequest = { ...(model === body.model ? body : messagesForFallback(body, model)), model };
            applyParameterPolicy(attemptBody, policy);
            if (policy.endUserId) identifyAnthropicCaller(attemptBody, endUserId(principal.product, principal.user));
            const call: MessagesPassthrough = {
              body: attemptBody,
              access,
              signal: ctx.abort,
              ...client,
              onMessage: onMessage(model, access),
              onContainer: (id) => rememberContainer(this.stored, principal, id, { model, baseUrl: access.baseUrl }),
              // An answer from one of Anthropic's own fallbacks is audited and priced as that model's.
              onModel: serverFallbacks.length
                ? (answered) => {
                    const fallback = answeringFallback(answered, model, serverFallbacks);
                    if (fallback !== undefined) ctx.model = fallback;
                  }
                : undefined,
            };
            return ctx.stream ? this.anthropic.messagesStream(call) : this.anthropic.messages(call);
          },
          alsoAnsweredBy: serverFallbacks,
          reserve: (prompt) => ({ prompt, completion: cap, promptCacheWrite: promptCacheWrite(body) }),
          promptTokens,
          answerText: (answer) => answer.text,
          dialect: ANTHROPIC_STREAM,
          maxStreamSeconds: policy.maxStreamSeconds,
        },
        reply,
      );
    } catch (error) {
      // Anthropic no longer holds the thread (expired there): forgotten, and answered as any thread not the caller's.
      if (thread?.type === 'continue' && isThreadGone(error)) {
        await this.stored.forget(principal.product, thread.previousId);
        throw threadNotFound(thread.previousId);
      }
      throw error;
    }
  }

  /**
   * `POST /v1/messages/count_tokens`: Anthropic's count of a Messages prompt, passed through. No
   * generation, so no parameter policy, no token reservation and nothing billed; retried like a
   * call, without fallbacks (a count is per model).
   */
  async countTokens(
    ctx: RequestContext,
    principal: Principal,
    body: MessagesRequest,
    client: AnthropicClientHeaders,
    bodyBytes: number,
    reply: FastifyReply,
  ): Promise<void> {
    const route = this.anthropicRoute(ctx, principal, body, bodyBytes);
    const { access } = route;
    // A count of a continuation counts the thread's context: only the caller's own thread.
    const thread = threadOf(body);
    refuseFileReferences(body.messages);
    if (thread?.type === 'continue') await this.threadRecord(principal, thread.previousId, route, body.model);
    await this.checkDiagnosed(principal, body);
    await checkContainers(this.stored, principal, containerOf(body), { baseUrl: access.baseUrl, model: body.model });
    const call: MessagesPassthrough = { body, access, signal: ctx.abort, ...client };
    const value = await this.runner.once(ctx, body.model, () => this.anthropic.countTokens(call));
    ctx.answer(200);
    void reply.status(200).headers(value.headers).type('application/json').send(value.body);
  }

  /**
   * The record of the thread answer a request continues from: the caller's own (else 404, said as
   * Anthropic says it, see {@link threadNotFound}), held at the host serving the requested model.
   */
  private async threadRecord(principal: Principal, id: string, first: ResolvedRoute, model: string): Promise<StoredResponse> {
    const record = await this.stored.findThread(principal.product, ownerOf(principal), id);
    if (!record) throw threadNotFound(id);
    if (record.baseUrl !== first.access.baseUrl)
      throw new GatewayError(
        'unsupported_parameter',
        `thread.previous_message_id is held at another host than the one serving ${model}: continue it with ${record.model}`,
        { param: 'thread.previous_message_id' },
      );
    return record;
  }

  /**
   * A request comparing itself with an earlier answer for Anthropic's cache diagnostics: only with
   * an answer of the caller's own (another user's would tell whether that user's model, system
   * prompt, tools or messages match the ones sent, prefix by prefix), else 400.
   */
  private async checkDiagnosed(principal: Principal, body: MessagesRequest): Promise<void> {
    const id = diagnosedAgainst(body);
    if (id === undefined || (await this.stored.findMessage(principal.product, ownerOf(principal), id))) return;
    throw new GatewayError(
      'invalid_request',
      `diagnostics.previous_message_id '${id}' is no answer of yours that keygate saw sent with a cache-diagnosis beta: send null on a first turn`,
      { param: 'diagnostics.previous_message_id' },
    );
  }

  /** The route of a Messages request: the model must be one the product serves through Anthropic. */
  private anthropicRoute(ctx: RequestContext, principal: Principal, body: MessagesRequest, bodyBytes: number): ResolvedRoute {
    return this.router.resolveServedBy(ctx, principal, body.model, bodyBytes, {
      provider: 'anthropic',
      route: '/v1/messages',
      api: 'Anthropic',
    });
  }
}
