import { Body, Controller, HttpCode, Post, Res, UseGuards } from '@nestjs/common';
import { ApiBearerAuth, ApiOkResponse, ApiOperation, ApiTags } from '@nestjs/swagger';
import { RequestLimitsGuard } from '@keygate/limits';
import { CredentialGuard, type Principal } from '@keygate/auth';
import { requestContextStorage, type RequestContext } from '@keygate/observability';
import type { EmbeddingsRequest } from '@keygate/providers';
import type { FastifyReply } from 'fastify';
import { ApiGatewayErrors } from '../http/api-errors.decorator';
import { BodyBytes, Ctx, CurrentPrincipal } from '../http/request.decorators';
import { EmbeddingsRequestDto } from './embeddings.dto';
import { EmbeddingsService } from './embeddings.service';

/** OpenAI-compatible embeddings (OpenAI and Gemini models). */
@ApiTags('embeddings')
@ApiBearerAuth()
@UseGuards(CredentialGuard, RequestLimitsGuard)
@Controller('v1/embeddings')
export class EmbeddingsController {
  constructor(private readonly embeddings: EmbeddingsService) {}

  @Post()
  @HttpCode(200)
  @ApiOperation({ summary: 'Create embeddings (OpenAI-compatible; float or base64)' })
  @ApiOkResponse({ description: 'An OpenAI embeddings list' })
  @ApiGatewayErrors()
  async create(
    @Ctx() ctx: RequestContext,
    @CurrentPrincipal() principal: Principal,
    @Body() body: EmbeddingsRequestDto,
    @BodyBytes() bytes: number,
    @Res() reply: FastifyReply,
  ): Promise<void> {
    ctx.settled = requestContextStorage.run(ctx, () => this.embeddings.embed(ctx, principal, body as EmbeddingsRequest, bytes, reply));
    await ctx.settled;
  }
}
