import { Body, Controller, HttpCode, Post, Req, Res, UseGuards } from '@nestjs/common';
import { ApiBearerAuth, ApiBody, ApiOkResponse, ApiOperation, ApiTags } from '@nestjs/swagger';
import { AdmitInHandler, RequestLimitsGuard } from '@keygate/limits';
import { CredentialGuard } from '@keygate/auth';
import { requestContextStorage } from '@keygate/observability';
import type { EmbeddingsRequest } from '@keygate/providers';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { ApiGatewayErrors } from '../http/api-errors.decorator';
import { modelCall } from '../http/request.decorators';
import { EmbeddingListDto, EmbeddingsRequestDto } from './embeddings.dto';
import { EmbeddingsService } from './embeddings.service';

/** OpenAI-compatible embeddings (OpenAI and Gemini models). */
@ApiTags('embeddings')
@ApiBearerAuth()
@UseGuards(CredentialGuard, RequestLimitsGuard)
@Controller('v1/embeddings')
export class EmbeddingsController {
  constructor(private readonly embeddings: EmbeddingsService) {}

  @Post()
  @AdmitInHandler()
  @HttpCode(200)
  @ApiOperation({ summary: 'Create embeddings (OpenAI-compatible; float or base64)' })
  // The body Try it out starts from: without it Swagger UI fills in every optional field (`user: "string"`…).
  @ApiBody({
    type: EmbeddingsRequestDto,
    examples: { embed: { summary: 'One text', value: { model: 'text-embedding-3-small', input: 'The food was delicious' } } },
  })
  @ApiOkResponse({ type: EmbeddingListDto, description: 'An OpenAI embeddings list' })
  @ApiGatewayErrors()
  async create(@Req() request: FastifyRequest, @Body() body: EmbeddingsRequestDto, @Res() reply: FastifyReply): Promise<void> {
    const { ctx, principal, bodyBytes: bytes } = modelCall(request);
    if (ctx.abort.aborted) return; // the client left before the handler: audited, nothing to charge
    ctx.settled = requestContextStorage.run(ctx, () => this.embeddings.embed(ctx, principal, body as EmbeddingsRequest, bytes, reply));
    await ctx.settled;
  }
}
