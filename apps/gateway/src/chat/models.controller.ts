import { Controller, Get, Param, Req, UseGuards } from '@nestjs/common';
import { ApiBearerAuth, ApiOkResponse, ApiOperation, ApiParam, ApiProperty, ApiTags } from '@nestjs/swagger';
import { RequestLimitsGuard } from '@keygate/limits';
import { CredentialGuard } from '@keygate/auth';
import type { FastifyRequest } from 'fastify';
import { ApiGatewayErrors } from '../http/api-errors.decorator';
import { modelCall } from '../http/request.decorators';
import { ProductRouter } from '../routing/product.router';

class ModelDto {
  @ApiProperty({ example: 'gpt-4o-mini' }) id!: string;
  @ApiProperty({ example: 'model' }) object!: 'model';
  @ApiProperty({ example: 0 }) created!: number;
  @ApiProperty({ example: 'openai', description: 'The provider that serves the model' }) owned_by!: string;
}

class ModelListDto {
  @ApiProperty({ example: 'list' }) object!: 'list';
  @ApiProperty({ type: [ModelDto] }) data!: ModelDto[];
}

/** `GET /v1/models` and `GET /v1/models/{model}`: the models the caller's product may use, in OpenAI's format. */
@ApiTags('models')
@ApiBearerAuth()
@UseGuards(CredentialGuard, RequestLimitsGuard)
@Controller('v1/models')
export class ModelsController {
  constructor(private readonly router: ProductRouter) {}

  @Get()
  @ApiOperation({ summary: "List the models of the caller's product" })
  @ApiOkResponse({ type: ModelListDto })
  @ApiGatewayErrors()
  list(@Req() request: FastifyRequest): ModelListDto {
    const { product } = this.router.product(modelCall(request).principal);
    // Exact names only (a pattern names no model), each once, with the provider that serves it.
    const data: ModelDto[] = [];
    for (const id of product.modelIds) {
      const access = product.route(id);
      if (access) data.push(model(id, access.provider));
    }
    return { object: 'list', data };
  }

  /** A model id with a slash (an OpenAI-compatible host's `meta-llama/Llama-3.1-8B`) is sent encoded, as the SDKs do. */
  @Get(':model')
  @ApiOperation({
    summary: "One model of the caller's product (the SDKs' models.retrieve)",
    description: 'A name the product serves through a pattern (`gpt-4o*`) is answered too: chat would accept it.',
  })
  @ApiParam({ name: 'model', example: 'gpt-4o-mini' })
  @ApiOkResponse({ type: ModelDto })
  @ApiGatewayErrors()
  retrieve(@Req() request: FastifyRequest, @Param('model') id: string): ModelDto {
    const { ctx, principal } = modelCall(request);
    const { product } = this.router.product(principal);
    ctx.model = id;
    ctx.requestedModel = id;
    // As chat resolves it: 404 model_not_found for a model the product may not use.
    return model(id, this.router.serve(ctx, product, id).access.provider);
  }
}

function model(id: string, provider: string): ModelDto {
  return { id, object: 'model', created: 0, owned_by: provider };
}
