import { Body, Controller, HttpCode, Post, Req, Res, UseGuards } from '@nestjs/common';
import { ApiBearerAuth, ApiBody, ApiOkResponse, ApiOperation, ApiParam, ApiQuery, ApiSecurity, ApiTags } from '@nestjs/swagger';
import { AdmitInHandler, RequestLimitsGuard, SkipDailyRequestLimits } from '@keygate/limits';
import { CredentialGuard } from '@keygate/auth';
import { GatewayError } from '@keygate/errors';
import { requestContextStorage } from '@keygate/observability';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { ApiGatewayErrors, GoogleErrorBodyDto } from '../http/api-errors.decorator';
import { ApiOkAnswer } from '../http/api-ok.decorator';
import { GEMINI_STREAM_EXAMPLE } from '../http/stream-examples';
import { modelCall } from '../http/request.decorators';
import type { GeminiApiVersion } from '@keygate/providers';
import {
  BatchEmbedContentsRequestDto,
  BatchEmbedContentsResponseDto,
  CountTokensRequestDto,
  CountTokensResponseDto,
  EmbedContentRequestDto,
  EmbedContentResponseDto,
  GenerateContentRequestDto,
  GenerateContentResponseDto,
} from './gemini.dto';
import { GeminiService, type GenerateContentRequest } from './gemini.service';

/** The OpenAPI security scheme of the token sent in `x-goog-api-key` (declared in bootstrap). */
export const GOOGLE_KEY_SCHEME = 'x-goog-api-key';

/**
 * The model, then Google's method after a colon (`gemini-2.5-flash:generateContent`). Fastify's
 * router takes a parameter followed by a literal `:` (written `::`) only with a pattern that stops
 * the parameter at the colon; the model may also be sent as `models%2F…` (Google's resource name).
 */
const MODEL = ':model(^[^:]+$)';
/** The prefix of Google's resource name for a model, which the SDKs leave out of the path. */
const RESOURCE_PREFIX = 'models/';

const MODEL_PARAM = ApiParam({
  name: 'model',
  description: 'A Gemini model of the caller’s product (`gemini-2.5-flash`), as the SDKs put it in the path',
  type: String,
  example: 'gemini-1.5-pro',
});

const EMBED_MODEL_PARAM = ApiParam({
  name: 'model',
  description: 'A Gemini embedding model of the caller’s product, as the SDKs put it in the path',
  type: String,
  example: 'text-embedding-004',
});

const HELLO = { hello: { summary: 'One user turn', value: { contents: [{ role: 'user', parts: [{ text: 'Hello, Gemini' }] }] } } };

const EMBED = {
  embed: { summary: 'One text', value: { content: { parts: [{ text: 'The food was delicious' }] } } },
};
const BATCH_EMBED = {
  embed: {
    summary: 'Two texts',
    value: {
      requests: [
        { model: 'models/text-embedding-004', content: { parts: [{ text: 'The food was delicious' }] } },
        { model: 'models/text-embedding-004', content: { parts: [{ text: 'The service was slow' }] } },
      ],
    },
  },
};

/** The API version a Gemini route was called under (`/v1/models/…` or `/v1beta/models/…`), which the upstream call uses too. */
function apiVersion(request: FastifyRequest): GeminiApiVersion {
  return request.routeOptions.url?.startsWith('/v1/') ? 'v1' : 'v1beta';
}

/**
 * Google's Gemini API for Gemini models; the product comes from the credential. Served under
 * `v1beta` (the SDKs' default) and the stable `v1` (`@google/genai` with `apiVersion: 'v1'`), each
 * passed to the same version upstream. Only these POST methods are under `/v1/models`: its GET
 * routes are OpenAI's model list.
 */
@ApiTags('gemini')
// Listed after the bearer scheme (decorators apply bottom-up).
@ApiSecurity(GOOGLE_KEY_SCHEME)
@ApiBearerAuth()
@UseGuards(CredentialGuard, RequestLimitsGuard)
@Controller(['v1beta/models', 'v1/models'])
export class GeminiController {
  constructor(private readonly gemini: GeminiService) {}

  @Post(`${MODEL}::generateContent`)
  @AdmitInHandler()
  @HttpCode(200)
  @ApiOperation({
    summary: 'Generate content (Gemini API, Gemini models)',
    description:
      "`@google/genai` (`httpOptions.baseUrl`) and Gemini CLI (`GOOGLE_GEMINI_BASE_URL`) work with keygate's address as their base " +
      'URL. The credential goes in `x-goog-api-key` (as they send `GEMINI_API_KEY`) or as `Authorization: Bearer`; never as `?key=` (refused).',
  })
  @MODEL_PARAM
  @ApiBody({ type: GenerateContentRequestDto, examples: HELLO })
  @ApiOkResponse({ type: GenerateContentResponseDto, description: "Google's GenerateContentResponse, unchanged" })
  @ApiGatewayErrors(GoogleErrorBodyDto)
  generateContent(@Req() request: FastifyRequest, @Body() body: GenerateContentRequestDto, @Res() reply: FastifyReply): Promise<void> {
    return this.serve(request, (ctx, principal, model, bytes, version) =>
      this.gemini.generateContent(ctx, principal, model, body as unknown as GenerateContentRequest, false, bytes, reply, version),
    );
  }

  @Post(`${MODEL}::streamGenerateContent`)
  @AdmitInHandler()
  @HttpCode(200)
  @ApiOperation({
    summary: 'Stream generated content (Gemini API, Gemini models; server-sent events)',
    description: 'Answers `?alt=sse` only (what the SDKs send): each of Google’s events passes as it comes.',
  })
  @MODEL_PARAM
  @ApiQuery({ name: 'alt', required: true, enum: ['sse'] })
  @ApiBody({ type: GenerateContentRequestDto, examples: HELLO })
  @ApiOkAnswer({
    description: "Google's stream: `data:` events, each a GenerateContentResponse; the last carries the usage",
    stream: {
      description: 'Server-sent events: `data:` lines, each a GenerateContentResponse (JSON); the last carries usageMetadata',
      example: GEMINI_STREAM_EXAMPLE,
    },
  })
  @ApiGatewayErrors(GoogleErrorBodyDto)
  streamGenerateContent(
    @Req() request: FastifyRequest,
    @Body() body: GenerateContentRequestDto,
    @Res() reply: FastifyReply,
  ): Promise<void> {
    return this.serve(request, (ctx, principal, model, bytes, version) => {
      // Without alt=sse Google streams one JSON array, which keygate does not relay. (`$alt` is
      // Google's system-parameter spelling of it.)
      const query = request.query as Record<string, unknown>;
      if ((query.alt ?? query.$alt) !== 'sse')
        throw new GatewayError('invalid_request', 'streamGenerateContent is served as server-sent events only: add ?alt=sse', {
          param: 'alt',
        });
      return this.gemini.generateContent(ctx, principal, model, body as unknown as GenerateContentRequest, true, bytes, reply, version);
    });
  }

  @Post(`${MODEL}::countTokens`)
  // A count generates nothing (no daily cap) but is a call on the product's key, paced by the
  // per-second limits like any other (unlimited, one user could spend the key's rate at the provider).
  @SkipDailyRequestLimits()
  @HttpCode(200)
  @ApiOperation({
    summary: "Count a prompt's tokens (Gemini API, Gemini models)",
    description:
      "Google's count, passed through. Free and not a generation: not counted against the request or token limits, " +
      'but blocks apply and each is audited.',
  })
  @MODEL_PARAM
  @ApiBody({ type: CountTokensRequestDto, examples: HELLO })
  @ApiOkResponse({ type: CountTokensResponseDto, description: 'The prompt’s token count, as Google answers it' })
  @ApiGatewayErrors(GoogleErrorBodyDto, [
    [
      429,
      'The upstream rate-limited keygate (carries Retry-After); keygate’s own limits do not count this route',
      new GatewayError('upstream_rate_limited', 'upstream gemini is rate limiting keygate; retry later', { retryAfterSeconds: 1 }),
    ],
  ])
  countTokens(@Req() request: FastifyRequest, @Body() body: CountTokensRequestDto, @Res() reply: FastifyReply): Promise<void> {
    return this.serve(request, (ctx, principal, model, bytes, version) =>
      this.gemini.countTokens(ctx, principal, model, body as unknown as Record<string, unknown>, bytes, reply, version),
    );
  }

  @Post(`${MODEL}::embedContent`)
  @AdmitInHandler()
  @HttpCode(200)
  @ApiOperation({
    summary: 'Embed one content (Gemini API, Gemini embedding models)',
    description:
      "Google's answer, passed through, for the product's Gemini embedding models. Counted against the request limits and the " +
      'token quotas (the input, estimated with keygate’s tokenizer); the policy’s refused_fields apply.',
  })
  @EMBED_MODEL_PARAM
  @ApiBody({ type: EmbedContentRequestDto, examples: EMBED })
  @ApiOkResponse({ type: EmbedContentResponseDto, description: "Google's EmbedContentResponse, unchanged" })
  @ApiGatewayErrors(GoogleErrorBodyDto)
  embedContent(@Req() request: FastifyRequest, @Body() body: EmbedContentRequestDto, @Res() reply: FastifyReply): Promise<void> {
    return this.serve(request, (ctx, principal, model, bytes, version) =>
      this.gemini.embedContent(ctx, principal, model, body as unknown as Record<string, unknown>, false, bytes, reply, version),
    );
  }

  @Post(`${MODEL}::batchEmbedContents`)
  @AdmitInHandler()
  @HttpCode(200)
  @ApiOperation({
    summary: 'Embed up to 100 contents (Gemini API, Gemini embedding models; what @google/genai’s models.embedContent sends)',
    description: "Google's answer, passed through, as on embedContent. Each request names the path's model (`models/{model}`) or none.",
  })
  @EMBED_MODEL_PARAM
  @ApiBody({ type: BatchEmbedContentsRequestDto, examples: BATCH_EMBED })
  @ApiOkResponse({ type: BatchEmbedContentsResponseDto, description: "Google's BatchEmbedContentsResponse, unchanged" })
  @ApiGatewayErrors(GoogleErrorBodyDto)
  batchEmbedContents(
    @Req() request: FastifyRequest,
    @Body() body: BatchEmbedContentsRequestDto,
    @Res() reply: FastifyReply,
  ): Promise<void> {
    return this.serve(request, (ctx, principal, model, bytes, version) =>
      this.gemini.embedContent(ctx, principal, model, body as unknown as Record<string, unknown>, true, bytes, reply, version),
    );
  }

  /** Every route: the admitted request's context, credential and model, the handler run in its context. */
  private async serve(
    request: FastifyRequest,
    handle: (
      ctx: ReturnType<typeof modelCall>['ctx'],
      principal: ReturnType<typeof modelCall>['principal'],
      model: string,
      bodyBytes: number,
      version: GeminiApiVersion,
    ) => Promise<void>,
  ): Promise<void> {
    const { ctx, principal, bodyBytes } = modelCall(request);
    if (ctx.abort.aborted) return; // the client left before the handler: audited, nothing to charge
    const param = (request.params as { model?: string }).model ?? '';
    const model = param.startsWith(RESOURCE_PREFIX) ? param.slice(RESOURCE_PREFIX.length) : param;
    ctx.settled = requestContextStorage.run(ctx, () => handle(ctx, principal, model, bodyBytes, apiVersion(request)));
    await ctx.settled;
  }
}
