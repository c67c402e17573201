import { Body, Controller, HttpCode, Post, Req, Res, UseGuards } from '@nestjs/common';
import { ApiBearerAuth, ApiBody, ApiOkResponse, ApiOperation, ApiProduces, ApiTags } from '@nestjs/swagger';
import { AdmitInHandler, RequestLimitsGuard } from '@keygate/limits';
import { CredentialGuard } from '@keygate/auth';
import { requestContextStorage } from '@keygate/observability';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { ApiGatewayErrors } from '../http/api-errors.decorator';
import { modelCall } from '../http/request.decorators';
import { ResponseObjectDto, ResponsesRequestDto } from './responses.dto';
import { ResponsesService, type ResponsesRequest } from './responses.service';

/** OpenAI's Responses API for OpenAI models; the product comes from the credential. */
@ApiTags('responses')
@ApiBearerAuth()
@UseGuards(CredentialGuard, RequestLimitsGuard)
@Controller('v1/responses')
export class ResponsesController {
  constructor(private readonly responses: ResponsesService) {}

  @Post()
  @AdmitInHandler()
  @HttpCode(200)
  @ApiOperation({
    summary: 'Create a model response (OpenAI Responses API, OpenAI models; `stream: true` answers SSE)',
    description:
      "The OpenAI SDKs' `responses.create` and clients built on it work with keygate's `/v1` as their base URL. " +
      'Background responses and the other `/v1/responses/{id}` routes are not served.',
  })
  @ApiBody({
    type: ResponsesRequestDto,
    examples: { hello: { summary: 'One text input', value: { model: 'gpt-4o-mini', input: 'Hello!' } } },
  })
  @ApiProduces('application/json', 'text/event-stream')
  @ApiOkResponse({
    type: ResponseObjectDto,
    description: "OpenAI's Response object, or with `stream: true` its stream of events (`response.created` … `response.completed`)",
  })
  @ApiGatewayErrors()
  async create(@Req() request: FastifyRequest, @Body() body: ResponsesRequestDto, @Res() reply: FastifyReply): Promise<void> {
    const { ctx, principal, bodyBytes } = modelCall(request);
    if (ctx.abort.signal.aborted) return; // the client left before the handler: audited, nothing to charge
    ctx.settled = requestContextStorage.run(ctx, () =>
      this.responses.create(ctx, principal, body as unknown as ResponsesRequest, bodyBytes, reply),
    );
    await ctx.settled;
  }
}
