import { Controller, Get, Param, UseGuards } from '@nestjs/common';
import { ApiBearerAuth, ApiOkResponse, ApiOperation, ApiParam, ApiProperty, ApiTags } from '@nestjs/swagger';
import { RequestLimitsGuard } from '@keygate/limits';
import { CredentialGuard, type Principal } from '@keygate/auth';
import { GatewayError } from '@keygate/errors';
import { SecretsService, type ProductEntry } from '@keygate/secrets';
import { ApiGatewayErrors } from '../http/api-errors.decorator';
import { CurrentPrincipal } from '../http/request.decorators';

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
  constructor(private readonly secrets: SecretsService) {}

  @Get()
  @ApiOperation({ summary: "List the models of the caller's product" })
  @ApiOkResponse({ type: ModelListDto })
  @ApiGatewayErrors()
  list(@CurrentPrincipal() principal: Principal): ModelListDto {
    const product = this.productOf(principal);
    // Exact names only (a pattern names no model), each once, with the provider that serves it.
    const data = product.modelIds.map((id) => model(id, product.route(id)?.provider ?? 'unknown'));
    return { object: 'list', data };
  }

  @Get(':model')
  @ApiOperation({
    summary: "One model of the caller's product (the SDKs' models.retrieve)",
    description: 'A name the product serves through a pattern (`gpt-4o*`) is answered too: chat would accept it.',
  })
  @ApiParam({ name: 'model', example: 'gpt-4o-mini' })
  @ApiOkResponse({ type: ModelDto })
  @ApiGatewayErrors()
  retrieve(@CurrentPrincipal() principal: Principal, @Param('model') id: string): ModelDto {
    const access = this.productOf(principal).route(id);
    if (!access)
      throw new GatewayError('model_not_found', `The model '${id}' does not exist or this product may not use it`, { param: 'model' });
    return model(id, access.provider);
  }

  private productOf(principal: Principal): ProductEntry {
    const product = this.secrets.product(principal.product);
    // As for chat: a credential for a product this gateway does not serve is refused, not answered empty.
    if (!product) throw new GatewayError('forbidden', `product ${principal.product} is not configured on this gateway`);
    return product;
  }
}

function model(id: string, provider: string): ModelDto {
  return { id, object: 'model', created: 0, owned_by: provider };
}
