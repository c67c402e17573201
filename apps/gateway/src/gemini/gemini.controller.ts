import { Body, Controller, HttpCode, Post, Req, Res, UseGuards } from '@nestjs/common';
import {
  ApiBearerAuth,
  ApiBody,
  ApiOkResponse,
  ApiOperation,
  ApiParam,
  ApiProduces,
  ApiQuery,
  ApiSecurity,
  ApiTags,
} from '@nestjs/swagger';
import { AdmitInHandler, RequestLimitsGuard, SkipRequestLimits } from '@keygate/limits';
import { CredentialGuard } from '@keygate/auth';
import { GatewayError } from '@keygate/errors';
import { requestContextStorage } from '@keygate/observability';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { ApiGatewayErrors, GoogleErrorBodyDto } from '../http/api-errors.decorator';
import { modelCall } from '../http/request.decorators';
import { CountTokensRequestDto, CountTokensResponseDto, GenerateContentRequestDto, GenerateContentResponseDto } from './gemini.dto';
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
  example: 'gemini-1.5-pro',
});

const HELLO = { hello: { summary: 'One user turn', value: { contents: [{ role: 'user', parts: [{ text: 'Hello, Gemini' }] }] } } };

/** Google's Gemini API for Gemini models; the product comes from the credential. */
@ApiTags('gemini')
// Listed after the bearer scheme (decorators apply bottom-up).
@ApiSecurity(GOOGLE_KEY_SCHEME)
@ApiBearerAuth()
@UseGuards(CredentialGuard, RequestLimitsGuard)
@Controller('v1beta/models')
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
    return this.serve(request, (ctx, principal, model, bytes) =>
      this.gemini.generateContent(ctx, principal, model, body as unknown as GenerateContentRequest, false, bytes, reply),
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
  @ApiProduces('text/event-stream')
  @ApiOkResponse({ description: "Google's stream: `data:` events, each a GenerateContentResponse; the last carries the usage" })
  @ApiGatewayErrors(GoogleErrorBodyDto)
  streamGenerateContent(
    @Req() request: FastifyRequest,
    @Body() body: GenerateContentRequestDto,
    @Res() reply: FastifyReply,
  ): Promise<void> {
    return this.serve(request, (ctx, principal, model, bytes) => {
      // Without alt=sse Google streams one JSON array, which keygate does not relay. (`$alt` is
      // Google's system-parameter spelling of it.)
      const query = request.query as Record<string, unknown>;
      if ((query.alt ?? query.$alt) !== 'sse')
        throw new GatewayError('invalid_request', 'streamGenerateContent is served as server-sent events only: add ?alt=sse', {
          param: 'alt',
        });
      return this.gemini.generateContent(ctx, principal, model, body as unknown as GenerateContentRequest, true, bytes, reply);
    });
  }

  @Post(`${MODEL}::countTokens`)
  @SkipRequestLimits()
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
    [429, 'The upstream rate-limited keygate (carries Retry-After); keygate’s own limits do not count this route'],
  ])
  countTokens(@Req() request: FastifyRequest, @Body() body: CountTokensRequestDto, @Res() reply: FastifyReply): Promise<void> {
    return this.serve(request, (ctx, principal, model, bytes) =>
      this.gemini.countTokens(ctx, principal, model, body as unknown as Record<string, unknown>, bytes, reply),
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
    ) => Promise<void>,
  ): Promise<void> {
    const { ctx, principal, bodyBytes } = modelCall(request);
    if (ctx.abort.signal.aborted) return; // the client left before the handler: audited, nothing to charge
    const param = (request.params as { model?: string }).model ?? '';
    const model = param.startsWith(RESOURCE_PREFIX) ? param.slice(RESOURCE_PREFIX.length) : param;
    ctx.settled = requestContextStorage.run(ctx, () => handle(ctx, principal, model, bodyBytes));
    await ctx.settled;
  }
}
