import { Body, Controller, Delete, Get, HttpCode, Param, Post, Query, Req, Res, UseGuards } from '@nestjs/common';
import { ApiBearerAuth, ApiBody, ApiOkResponse, ApiOperation, ApiParam, ApiQuery, ApiTags } from '@nestjs/swagger';
import { AdmitInHandler, RequestLimitsGuard, SkipDailyRequestLimits } from '@keygate/limits';
import { CredentialGuard } from '@keygate/auth';
import { requestContextStorage } from '@keygate/observability';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { GatewayError } from '@keygate/errors';
import { ApiGatewayErrors, ApiStoredResponseErrors } from '../http/api-errors.decorator';
import { ApiOkAnswer } from '../http/api-ok.decorator';
import { RESPONSES_STREAM_EXAMPLE } from '../http/stream-examples';
import { modelCall } from '../http/request.decorators';
import {
  InputItemListDto,
  ResponseCompactionDto,
  ResponseDeletedDto,
  ResponseInputTokensDto,
  ResponseObjectDto,
  ResponsesCompactRequestDto,
  ResponsesInputTokensRequestDto,
  ResponsesRequestDto,
} from './responses.dto';
import { ResponsesService, type ResponsesRequest } from './responses.service';
import type { StoredResponseRoute } from './stored-response.query';

const RESPONSE_ID_PARAM = ApiParam({
  name: 'id',
  // The example is the shape of an id, not one of the reader's: Try it out with it is a 404, so the
  // description says where a real one comes from.
  description:
    'The `id` of a response this user created through keygate: paste the one `POST /v1/responses` answered. ' +
    'The example is no response of yours (404 `response_not_found`).',
  example: 'resp_67ccd2bed1ec8190b14f964abc054267',
});
/** The 404 and 503 of a route that routes a body's model and may name stored state. */
const CONTINUATION_ERRORS: Array<[number, string]> = [
  [
    404,
    'Unknown model for this product, or (`response_not_found`, param `previous_response_id` or `input[i].id`) not a response ' +
      'or item this user created through keygate',
  ],
  [
    503,
    '`service_unavailable`: Redis, which records who owns each stored response, is unavailable; the HMAC replay cache is ' +
      'down (an HMAC-signed request); or keygate is shutting down (carries Retry-After)',
  ],
];
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
  @ApiOkAnswer({
    description: "OpenAI's Response object, or with `stream: true` its stream of events (`response.created` … `response.completed`)",
    json: ResponseObjectDto,
    stream: {
      description: 'Server-sent events as OpenAI sends them: `event:` and `data:` lines, `response.created` … `response.completed`',
      example: RESPONSES_STREAM_EXAMPLE,
    },
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
    if (ctx.abort.aborted) return; // the client left before the handler: audited, nothing to charge
    ctx.settled = requestContextStorage.run(ctx, () =>
      this.responses.create(ctx, principal, body as unknown as ResponsesRequest, bodyBytes, reply),
    );
    await ctx.settled;
  }

  @Post('input_tokens')
  // A count generates nothing (no daily cap) but is a call on the product's key, paced by the
  // per-second limits like any other (unlimited, one user could spend the key's rate at the provider).
  @SkipDailyRequestLimits()
  @HttpCode(200)
  @ApiOperation({
    summary: "Count a request's input tokens (OpenAI Responses API, OpenAI models)",
    description:
      "OpenAI's count of the input tokens `POST /v1/responses` with the same fields would be billed, passed through " +
      "(the OpenAI SDKs' `responses.inputTokens.count`). Free and not a generation: not counted against the request or " +
      'token limits, but blocks and the refused fields and tools of the policy apply, and each is audited. ' +
      '`previous_response_id` must be a response this user created through keygate.',
  })
  @ApiBody({
    type: ResponsesInputTokensRequestDto,
    examples: { hello: { summary: 'One text input', value: { model: 'gpt-4o-mini', input: 'Hello!' } } },
  })
  @ApiOkResponse({ type: ResponseInputTokensDto, description: 'The input token count, as OpenAI answers it' })
  @ApiGatewayErrors(undefined, [
    ...CONTINUATION_ERRORS,
    [
      429,
      'The upstream rate-limited keygate (carries Retry-After); keygate’s own limits do not count this route',
      new GatewayError('upstream_rate_limited', 'upstream openai is rate limiting keygate; retry later', { retryAfterSeconds: 1 }),
    ],
  ])
  inputTokens(@Req() request: FastifyRequest, @Body() body: ResponsesInputTokensRequestDto, @Res() reply: FastifyReply): Promise<void> {
    return this.serve(request, body, reply, 'inputTokens');
  }

  @Post('compact')
  @AdmitInHandler()
  @HttpCode(200)
  @ApiOperation({
    summary: 'Compact a conversation (OpenAI Responses API, OpenAI models)',
    description:
      "OpenAI's compaction, passed through (Codex calls it when its context fills up): the conversation's user messages and one " +
      'encrypted `compaction` item to send back as input. A model call: counted against the request limits, its tokens ' +
      '(the usage OpenAI reports) against the daily token quotas, and audited. `previous_response_id` must be a response ' +
      'this user created through keygate.',
  })
  @ApiBody({
    type: ResponsesCompactRequestDto,
    examples: {
      history: {
        summary: 'A conversation to compact',
        value: {
          model: 'gpt-4o-mini',
          input: [
            { role: 'user', content: 'Create a landing page for a café.' },
            { type: 'message', role: 'assistant', content: [{ type: 'output_text', text: '<html>…</html>' }] },
          ],
        },
      },
    },
  })
  @ApiOkResponse({ type: ResponseCompactionDto, description: "OpenAI's `response.compaction` object" })
  @ApiGatewayErrors(undefined, CONTINUATION_ERRORS)
  compact(@Req() request: FastifyRequest, @Body() body: ResponsesCompactRequestDto, @Res() reply: FastifyReply): Promise<void> {
    return this.serve(request, body, reply, 'compact');
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

  @Post(':id/cancel')
  @SkipDailyRequestLimits()
  @HttpCode(200)
  @ApiOperation({
    summary: 'Cancel a response (OpenAI Responses API)',
    description:
      'For a response the caller created through keygate, passed through. OpenAI cancels only background responses, which ' +
      'keygate does not create: its refusal of any other comes back as a 400 (`upstream_bad_request`). Free: counted ' +
      'against the per-second limits only. Another user’s or product’s response is 404 `response_not_found`.',
  })
  @RESPONSE_ID_PARAM
  @ApiOkResponse({ type: ResponseObjectDto, description: "OpenAI's Response object, `status: cancelled`" })
  @ApiStoredResponseErrors('cancel')
  cancel(
    @Req() request: FastifyRequest,
    @Param('id') id: string,
    @Query() query: Record<string, unknown>,
    @Res() reply: FastifyReply,
  ): Promise<void> {
    return this.serveStored(request, 'cancel', id, query, reply);
  }

  /** The body routes besides create: the admitted request's context and credential. */
  private async serve(
    request: FastifyRequest,
    body: ResponsesInputTokensRequestDto | ResponsesCompactRequestDto,
    reply: FastifyReply,
    op: 'inputTokens' | 'compact',
  ): Promise<void> {
    const { ctx, principal, bodyBytes } = modelCall(request);
    if (ctx.abort.aborted) return; // the client left before the handler: audited, nothing to charge
    ctx.settled = requestContextStorage.run(ctx, () =>
      this.responses[op](ctx, principal, body as unknown as ResponsesRequest, bodyBytes, reply),
    );
    await ctx.settled;
  }

  private async serveStored(
    request: FastifyRequest,
    route: StoredResponseRoute,
    id: string,
    query: Record<string, unknown>,
    reply: FastifyReply,
  ): Promise<void> {
    const { ctx, principal } = modelCall(request);
    if (ctx.abort.aborted) return;
    ctx.settled = requestContextStorage.run(ctx, () => this.responses.storedResponse(ctx, principal, route, id, query, reply));
    await ctx.settled;
  }
}
