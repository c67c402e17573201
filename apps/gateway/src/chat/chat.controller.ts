import { Body, Controller, HttpCode, Post, Req, Res, UseGuards } from '@nestjs/common';
import { ApiBearerAuth, ApiBody, ApiOperation, ApiParam, ApiTags } from '@nestjs/swagger';
import { AdmitInHandler, RequestLimitsGuard } from '@keygate/limits';
import { CredentialGuard } from '@keygate/auth';
import { requestContextStorage } from '@keygate/observability';
import type { ChatCompletionRequest } from '@keygate/providers';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { modelCall } from '../http/request.decorators';
import { ApiGatewayErrors } from '../http/api-errors.decorator';
import { ApiOkAnswer } from '../http/api-ok.decorator';
import { CHAT_COMPLETION_STREAM, ChatCompletionDto } from './chat-completion-response.dto';
import { ChatCompletionRequestDto } from './chat-completion.dto';
import { ChatCompletionsService } from './chat-completions.service';

/**
 * The body Swagger UI's "Try it out" starts from. Without it Swagger UI fills in every optional field
 * of the schema (`n: 128`, `max_tokens: 0`, `stream_options` without `stream`…), which the
 * gateway refuses: a person would have to know which to delete.
 */
const CHAT_EXAMPLE = ApiBody({
  type: ChatCompletionRequestDto,
  examples: {
    hello: {
      summary: 'One user message',
      value: { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'Hello!' }] },
    },
  },
});

/** OpenAI-compatible chat completions; the product comes from the credential. */
@ApiTags('chat')
@ApiBearerAuth()
@UseGuards(CredentialGuard, RequestLimitsGuard)
@Controller()
export class ChatController {
  constructor(private readonly chat: ChatCompletionsService) {}

  @Post('v1/chat/completions')
  @AdmitInHandler()
  @HttpCode(200)
  @ApiOperation({ summary: 'Create a chat completion (OpenAI-compatible; `stream: true` answers SSE)' })
  @ApiOkAnswer({
    description: 'A chat.completion object, or with `stream: true` a stream of chat.completion.chunk events',
    json: ChatCompletionDto,
    stream: CHAT_COMPLETION_STREAM,
  })
  @CHAT_EXAMPLE
  @ApiGatewayErrors()
  async create(@Req() request: FastifyRequest, @Body() body: ChatCompletionRequestDto, @Res() reply: FastifyReply): Promise<void> {
    const { ctx, principal, bodyBytes: bytes } = modelCall(request);
    if (ctx.abort.aborted) return; // the client left before the handler: audited, nothing to charge
    ctx.settled = requestContextStorage.run(ctx, () => this.chat.complete(ctx, principal, body as ChatCompletionRequest, bytes, reply));
    await ctx.settled;
  }

  @Post('chat/:product')
  @AdmitInHandler()
  @HttpCode(200)
  @ApiOperation({ summary: 'Create a chat completion for the product named in the path (must match the credential)' })
  @ApiParam({ name: 'product', type: String, example: 'demo' })
  @ApiOkAnswer({ description: 'As POST /v1/chat/completions', json: ChatCompletionDto, stream: CHAT_COMPLETION_STREAM })
  @CHAT_EXAMPLE
  @ApiGatewayErrors(undefined, [
    [
      403,
      '`forbidden`: the path names another product than the credential’s, or that product is not configured on this gateway; ' +
        '`blocked`: the product or user is blocked',
    ],
  ])
  createForProduct(@Req() request: FastifyRequest, @Body() body: ChatCompletionRequestDto, @Res() reply: FastifyReply): Promise<void> {
    // The path's product was checked against the credential's by CredentialGuard (403 otherwise).
    return this.create(request, body, reply);
  }
}
