import { Controller, Get, Param, Req, UseGuards } from '@nestjs/common';
import {
  ApiBearerAuth,
  ApiOkResponse,
  ApiOperation,
  ApiParam,
  ApiProperty,
  ApiPropertyOptional,
  ApiQuery,
  ApiSecurity,
  ApiTags,
} from '@nestjs/swagger';
import { RequestLimitsGuard } from '@keygate/limits';
import { CredentialGuard } from '@keygate/auth';
import { GatewayError } from '@keygate/errors';
import type { FastifyRequest } from 'fastify';
import { ApiGeminiModelsErrors } from '../http/api-errors.decorator';
import { knownQuery } from '../http/query-params';
import { modelCall } from '../http/request.decorators';
import { ProductRouter } from '../routing/product.router';
import { servedModels } from '../routing/served-models';
import { GOOGLE_KEY_SCHEME } from './gemini.controller';
import { geminiModel, geminiModelPage, type GeminiModel, type GeminiModelList } from './gemini-models';

/** The prefix of Google's resource name for a model (`models/gemini-2.5-flash`), taken in the path too. */
const RESOURCE_PREFIX = 'models/';

class GeminiModelDto implements GeminiModel {
  @ApiProperty({ example: 'models/gemini-2.5-flash', description: 'Google’s resource name' }) name!: string;
  @ApiProperty({ example: 'gemini-2.5-flash' }) baseModelId!: string;
  @ApiProperty({ example: 'gemini-2.5-flash', description: 'The id: keygate knows no display name' }) displayName!: string;
  @ApiProperty({
    type: [String],
    example: ['generateContent', 'countTokens'],
    description: 'The methods keygate serves for the model: embedContent and batchEmbedContents for an embedding model',
  })
  supportedGenerationMethods!: string[];
}

class GeminiModelListDto implements GeminiModelList {
  @ApiProperty({ type: [GeminiModelDto] }) models!: GeminiModelDto[];
  @ApiPropertyOptional({ description: 'Present while more models follow: send it as pageToken' }) nextPageToken?: string;
}

/**
 * `GET /v1beta/models` and `GET /v1beta/models/{model}` (`@google/genai`'s `models.list` and
 * `models.get`): the Gemini models of the caller's product in Google's `Model` shape, answered from
 * keygate's configuration. Google's own list is not asked: it would cost an upstream call (and the
 * product key's quota) per listing, fail when Google does, list models the product may not use,
 * and miss nothing a client needs that keygate would route; what it alone knows (token limits,
 * versions) is left out.
 */
@ApiTags('gemini')
// Listed after the bearer scheme (decorators apply bottom-up).
@ApiSecurity(GOOGLE_KEY_SCHEME)
@ApiBearerAuth()
@UseGuards(CredentialGuard, RequestLimitsGuard)
@Controller('v1beta/models')
export class GeminiModelsController {
  constructor(private readonly router: ProductRouter) {}

  @Get()
  @ApiOperation({ summary: "List the Gemini models of the caller's product (Gemini API)" })
  @ApiQuery({ name: 'pageSize', required: false, schema: { type: 'integer', minimum: 0, default: 50 }, description: 'At most 1000' })
  @ApiQuery({ name: 'pageToken', required: false, type: String, description: 'The nextPageToken of the previous page' })
  @ApiOkResponse({ type: GeminiModelListDto, description: "The product's Gemini models, a page of Google's ListModelsResponse" })
  @ApiGeminiModelsErrors('list')
  list(@Req() request: FastifyRequest): GeminiModelList {
    const { principal } = modelCall(request);
    const { product } = this.router.product(principal);
    return geminiModelPage(
      servedModels(product, 'gemini').map(([id]) => id),
      request.query as Record<string, unknown>,
    );
  }

  @Get(':model')
  @ApiOperation({
    summary: "One Gemini model of the caller's product (Gemini API)",
    description: 'A name the product serves through a pattern (`gemini-2.5-*`) is answered too: generateContent would accept it.',
  })
  @ApiParam({ name: 'model', example: 'gemini-2.5-flash' })
  @ApiOkResponse({ type: GeminiModelDto, description: "The model, as Google's Model resource" })
  @ApiGeminiModelsErrors('retrieve')
  retrieve(@Req() request: FastifyRequest, @Param('model') param: string): GeminiModel {
    const { ctx, principal } = modelCall(request);
    const { product } = this.router.product(principal);
    const id = param.startsWith(RESOURCE_PREFIX) ? param.slice(RESOURCE_PREFIX.length) : param;
    ctx.model = id;
    ctx.requestedModel = id;
    // As generateContent resolves it (SPEC §6): 403 for another product's model, 404 for an unknown one.
    const { provider } = this.router.serve(ctx, product, id).access;
    // Google's API serves Gemini models only: another provider's model does not exist for this client.
    if (provider !== 'gemini')
      throw new GatewayError('model_not_found', `The model '${id}' is served by ${provider}; Google's API serves Gemini models only`, {
        param: 'model',
      });
    knownQuery(request.query as Record<string, unknown>, []);
    return geminiModel(id);
  }
}
