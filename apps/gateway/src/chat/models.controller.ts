import { Controller, Get, UseGuards } from '@nestjs/common';
import { ApiBearerAuth, ApiOkResponse, ApiOperation, ApiProperty, ApiTags } from '@nestjs/swagger';
import { RequestLimitsGuard } from '@keygate/limits';
import { CredentialGuard, type Principal } from '@keygate/auth';
import { GatewayError } from '@keygate/errors';
import { SecretsService } from '@keygate/secrets';
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

/** `GET /v1/models`: the models the caller's product may use, in OpenAI's list format. */
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
    const product = this.secrets.product(principal.product);
    // As for chat: a credential for a product this gateway does not serve is refused, not answered empty.
    if (!product) throw new GatewayError('forbidden', `product ${principal.product} is not configured on this gateway`);
    const data: ModelDto[] = [];
    for (const access of product.providers) {
      for (const id of access.models) if (!id.endsWith('*')) data.push({ id, object: 'model', created: 0, owned_by: access.provider });
    }
    return { object: 'list', data };
  }
}
