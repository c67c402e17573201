import { Body, Controller, Delete, Get, HttpCode, Param, Post, Query, Req, Res, UseGuards } from '@nestjs/common';
import { ApiBearerAuth, ApiBody, ApiOkResponse, ApiOperation, ApiParam, ApiProduces, ApiQuery, ApiTags } from '@nestjs/swagger';
import { AdmitInHandler, RequestLimitsGuard, SkipDailyRequestLimits } from '@keygate/limits';
import { CredentialGuard } from '@keygate/auth';
import { requestContextStorage } from '@keygate/observability';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { ApiGatewayErrors, ApiStoredResponseErrors } from '../http/api-errors.decorator';
import { modelCall } from '../http/request.decorators';
import { InputItemListDto, ResponseDeletedDto, ResponseObjectDto, ResponsesRequestDto } from './responses.dto';
import { ResponsesService, type ResponsesRequest } from './responses.service';
import type { StoredResponseRoute } from './stored-response.query';

const RESPONSE_ID_PARAM = ApiParam({
  name: 'id',
  description: 'A response this user created through keygate',
  example: 'resp_67ccd2bed1ec8190b14f964abc054267',
});
const INCLUDE_QUERY = ApiQuery({
  name: 'include[]',
  required: false,
  isArray: true,
  type: String,
  description: 'Extra fields to include, e.g. `message.input_image.image_url`, passed on',
});

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
      '`previous_response_id` must be a response this user created through keygate. Background responses are not served.',
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
  @ApiGatewayErrors(undefined, [
    [
      404,
      'Unknown model for this product, or (`response_not_found`, param `previous_response_id`) not a response this user created through keygate',
    ],
    [
      503,
      '`service_unavailable`: Redis, which records who owns each stored response, is unavailable; the HMAC replay cache is ' +
        'down (an HMAC-signed request); or keygate is shutting down (carries Retry-After)',
    ],
  ])
  async create(@Req() request: FastifyRequest, @Body() body: ResponsesRequestDto, @Res() reply: FastifyReply): Promise<void> {
    const { ctx, principal, bodyBytes } = modelCall(request);
    if (ctx.abort.signal.aborted) return; // the client left before the handler: audited, nothing to charge
    ctx.settled = requestContextStorage.run(ctx, () =>
      this.responses.create(ctx, principal, body as unknown as ResponsesRequest, bodyBytes, reply),
    );
    await ctx.settled;
  }

  @Get(':id')
  @SkipDailyRequestLimits()
  @ApiOperation({
    summary: 'Retrieve a stored response (OpenAI Responses API)',
    description:
      'A response the caller created through keygate (`store` not false), as OpenAI keeps it. Free: counted against the ' +
      'per-second limits only. Another user’s or product’s response is 404 `response_not_found`.',
  })
  @RESPONSE_ID_PARAM
  @INCLUDE_QUERY
  @ApiQuery({ name: 'stream', required: false, enum: ['false'], description: 'Only false: only background responses stream back' })
  @ApiOkResponse({ type: ResponseObjectDto, description: "OpenAI's Response object" })
  @ApiStoredResponseErrors('retrieve')
  retrieve(
    @Req() request: FastifyRequest,
    @Param('id') id: string,
    @Query() query: Record<string, unknown>,
    @Res() reply: FastifyReply,
  ): Promise<void> {
    return this.serveStored(request, 'retrieve', id, query, reply);
  }

  @Delete(':id')
  @SkipDailyRequestLimits()
  @ApiOperation({
    summary: 'Delete a stored response (OpenAI Responses API)',
    description: 'A response the caller created through keygate; keygate forgets it too.',
  })
  @RESPONSE_ID_PARAM
  @ApiOkResponse({ type: ResponseDeletedDto, description: "OpenAI's deletion answer" })
  @ApiStoredResponseErrors('delete')
  remove(
    @Req() request: FastifyRequest,
    @Param('id') id: string,
    @Query() query: Record<string, unknown>,
    @Res() reply: FastifyReply,
  ): Promise<void> {
    return this.serveStored(request, 'delete', id, query, reply);
  }

  @Get(':id/input_items')
  @SkipDailyRequestLimits()
  @ApiOperation({
    summary: "List a stored response's input items (OpenAI Responses API)",
    description: 'For a response the caller created through keygate; paged as OpenAI pages it.',
  })
  @RESPONSE_ID_PARAM
  @ApiQuery({ name: 'after', required: false, type: String, description: 'An item id: the items after it' })
  @ApiQuery({ name: 'limit', required: false, schema: { type: 'integer', minimum: 1, maximum: 100 }, description: 'OpenAI’s default: 20' })
  @ApiQuery({ name: 'order', required: false, enum: ['asc', 'desc'] })
  @INCLUDE_QUERY
  @ApiOkResponse({ type: InputItemListDto, description: "OpenAI's list of input items" })
  @ApiStoredResponseErrors('inputItems')
  inputItems(
    @Req() request: FastifyRequest,
    @Param('id') id: string,
    @Query() query: Record<string, unknown>,
    @Res() reply: FastifyReply,
  ): Promise<void> {
    return this.serveStored(request, 'inputItems', id, query, reply);
  }

  private async serveStored(
    request: FastifyRequest,
    route: StoredResponseRoute,
    id: string,
    query: Record<string, unknown>,
    reply: FastifyReply,
  ): Promise<void> {
    const { ctx, principal } = modelCall(request);
    if (ctx.abort.signal.aborted) return;
    ctx.settled = requestContextStorage.run(ctx, () => this.responses.storedResponse(ctx, principal, route, id, query, reply));
    await ctx.settled;
  }
}
