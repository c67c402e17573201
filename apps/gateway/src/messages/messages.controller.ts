import { applyDecorators, Body, Controller, HttpCode, Post, Req, Res, UseGuards } from '@nestjs/common';
import { ApiBearerAuth, ApiBody, ApiHeader, ApiOkResponse, ApiOperation, ApiSecurity, ApiTags } from '@nestjs/swagger';
import { AdmitInHandler, RequestLimitsGuard, SkipDailyRequestLimits } from '@keygate/limits';
import { CredentialGuard } from '@keygate/auth';
import { requestContextStorage } from '@keygate/observability';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { GatewayError } from '@keygate/errors';
import { AnthropicErrorBodyDto, ApiGatewayErrors } from '../http/api-errors.decorator';
import { ApiOkAnswer } from '../http/api-ok.decorator';
import { MESSAGES_STREAM_EXAMPLE } from '../http/stream-examples';
import { modelCall } from '../http/request.decorators';
import { AnthropicMessageResponseDto, AnthropicTokenCountDto, MessagesRequestDto } from './messages.dto';
import { anthropicClientHeaders, MessagesService, type MessagesRequest } from './messages.service';

/** The OpenAPI security scheme of the token sent in `x-api-key` (declared in bootstrap). */
export const ANTHROPIC_KEY_SCHEME = 'x-api-key';

/** The client headers that go on to Anthropic (see anthropicClientHeaders). */
const ANTHROPIC_HEADERS = applyDecorators(
  ApiHeader({ name: 'anthropic-version', required: false, description: 'Passed on to Anthropic (default 2023-06-01)' }),
  ApiHeader({ name: 'anthropic-beta', required: false, description: 'Passed on to Anthropic' }),
);

/** Anthropic's Messages API for Claude models; the product comes from the credential. */
@ApiTags('messages')
// Listed after the bearer scheme (decorators apply bottom-up).
@ApiSecurity(ANTHROPIC_KEY_SCHEME)
@ApiBearerAuth()
@UseGuards(CredentialGuard, RequestLimitsGuard)
@Controller('v1/messages')
export class MessagesController {
  constructor(private readonly messages: MessagesService) {}

  @Post()
  @AdmitInHandler()
  @HttpCode(200)
  @ApiOperation({
    summary: 'Create a message (Anthropic-compatible, Claude models; `stream: true` answers SSE)',
    description:
      "The Anthropic SDKs and Claude Code work with keygate's address as their base URL. The credential goes as " +
      '`Authorization: Bearer` or in `x-api-key` (as Claude Code and older SDKs send a key).',
  })
  @ANTHROPIC_HEADERS
  @ApiBody({
    type: MessagesRequestDto,
    examples: {
      hello: {
        summary: 'One user message',
        value: { model: 'claude-3-5-sonnet-20241022', max_tokens: 256, messages: [{ role: 'user', content: 'Hello, Claude' }] },
      },
    },
  })
  @ApiOkAnswer({
    description: "Anthropic's Message object, or with `stream: true` its stream of events (`message_start` … `message_stop`)",
    json: AnthropicMessageResponseDto,
    stream: {
      description: 'Server-sent events as Anthropic sends them: `event:` and `data:` lines, `message_start` … `message_stop`',
      example: MESSAGES_STREAM_EXAMPLE,
    },
  })
  @ApiGatewayErrors(AnthropicErrorBodyDto)
  create(@Req() request: FastifyRequest, @Body() body: MessagesRequestDto, @Res() reply: FastifyReply): Promise<void> {
    return this.serve(request, body, reply, 'create');
  }

  @Post('count_tokens')
  // A count generates nothing (no daily cap) but is a call on the product's key, paced by the
  // per-second limits like any other (unlimited, one user could spend the key's rate at the provider).
  @SkipDailyRequestLimits()
  @HttpCode(200)
  @ApiOperation({
    summary: "Count a message's tokens (Anthropic-compatible, Claude models)",
    description:
      "Anthropic's count, passed through. Free and not a generation: not counted against the request or token limits " +
      '(Claude Code sends bursts of these), but blocks apply and each is audited.',
  })
  @ANTHROPIC_HEADERS
  @ApiBody({
    type: MessagesRequestDto,
    examples: {
      hello: {
        summary: 'One user message',
        value: { model: 'claude-3-5-sonnet-20241022', messages: [{ role: 'user', content: 'Hello, Claude' }] },
      },
    },
  })
  @ApiOkResponse({ type: AnthropicTokenCountDto, description: 'The prompt’s token count, as Anthropic answers it' })
  @ApiGatewayErrors(AnthropicErrorBodyDto, [
    [
      429,
      'The upstream rate-limited keygate (carries Retry-After); keygate’s own limits do not count this route',
      new GatewayError('upstream_rate_limited', 'upstream anthropic is rate limiting keygate; retry later', { retryAfterSeconds: 1 }),
    ],
  ])
  countTokens(@Req() request: FastifyRequest, @Body() body: MessagesRequestDto, @Res() reply: FastifyReply): Promise<void> {
    return this.serve(request, body, reply, 'countTokens');
  }

  /** Both routes: the admitted request's context and credential, the client's Anthropic headers checked. */
  private async serve(request: FastifyRequest, body: MessagesRequestDto, reply: FastifyReply, op: 'create' | 'countTokens'): Promise<void> {
    const { ctx, principal, bodyBytes } = modelCall(request);
    if (ctx.abort.aborted) return; // the client left before the handler: audited, nothing to charge
    const client = anthropicClientHeaders(request.headers);
    ctx.settled = requestContextStorage.run(ctx, () =>
      this.messages[op](ctx, principal, body as unknown as MessagesRequest, client, bodyBytes, reply),
    );
    await ctx.settled;
  }
}
