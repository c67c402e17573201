import { Controller, Get, Param, Req, UseGuards } from '@nestjs/common';
import {
  ApiBearerAuth,
  ApiExtraModels,
  ApiHeader,
  ApiOkResponse,
  ApiOperation,
  ApiParam,
  ApiProperty,
  ApiPropertyOptional,
  ApiQuery,
  ApiSecurity,
  ApiTags,
  getSchemaPath,
} from '@nestjs/swagger';
import { RequestLimitsGuard } from '@keygate/limits';
import { CredentialGuard } from '@keygate/auth';
import { GatewayError } from '@keygate/errors';
import type { FastifyRequest } from 'fastify';
import { ApiModelsErrors } from '../http/api-errors.decorator';
import { knownQuery, queryList, queryValue } from '../http/query-params';
import { modelCall } from '../http/request.decorators';
import { ANTHROPIC_KEY_SCHEME } from '../messages/messages.controller';
import { ProductRouter } from '../routing/product.router';
import { servedModels } from '../routing/served-models';

/** Anthropic's `created_at` for every model: keygate knows no release date (OpenAI's `created` is 0 alike). */
const EPOCH = '1970-01-01T00:00:00Z';
const PAGE_LIMIT = { test: (value: string): boolean => /^\d{1,4}$/.test(value) && Number(value) >= 1 && Number(value) <= 1000 };
const MODEL_ID = /^[\x21-\x7e]{1,256}$/;
const LIFECYCLE = /^(active|deprecated|retired)$/;
/** Sent by the Anthropic SDKs' `beta.models` calls (`?beta=true`): taken, and ignored. */
const ANTHROPIC_SDK_QUERY = ['beta'];

class ModelDto {
  @ApiProperty({ example: 'gpt-4o-mini' }) id!: string;
  @ApiProperty({ example: 'model' }) object!: 'model';
  @ApiProperty({ type: 'integer', example: 0 }) created!: number;
  @ApiProperty({ example: 'openai', description: 'The provider that serves the model' }) owned_by!: string;
}

class ModelListDto {
  @ApiProperty({ example: 'list' }) object!: 'list';
  @ApiProperty({ type: [ModelDto] }) data!: ModelDto[];
}

/**
 * A model in Anthropic's Models API format, as the Anthropic SDKs' `models.retrieve` reads it. keygate
 * knows a model's name and nothing else about it: what Anthropic documents as unknown-able is so
 * (`created_at` the epoch, `capabilities` and the token limits null), the rest says "available".
 */
class AnthropicModelDto {
  @ApiProperty({ example: 'model' }) type!: 'model';
  @ApiProperty({ example: 'claude-3-5-sonnet-20241022' }) id!: string;
  @ApiProperty({ example: 'claude-3-5-sonnet-20241022', description: 'The id: keygate knows no display name' }) display_name!: string;
  @ApiProperty({ example: EPOCH, description: 'The epoch: keygate knows no release date (`created` is 0 in the OpenAI format)' })
  created_at!: string;
  @ApiProperty({ example: 'active', description: 'Every model a product may use is `active`' }) lifecycle!: 'active';
  @ApiProperty({ type: 'object', additionalProperties: true, nullable: true, example: null }) capabilities!: null;
  @ApiProperty({ type: String, nullable: true, example: null }) line!: null;
  @ApiProperty({ type: 'integer', nullable: true, example: null }) max_input_tokens!: null;
  @ApiProperty({ type: 'integer', nullable: true, example: null }) max_tokens!: null;
  @ApiProperty({ type: String, nullable: true, example: null }) deprecated_at!: null;
  @ApiProperty({ type: String, nullable: true, example: null }) retires_at!: null;
}

/** One page of Anthropic's model list (`models.list`, whose auto-paging follows `last_id`). */
class AnthropicModelListDto {
  @ApiProperty({ type: [AnthropicModelDto] }) data!: AnthropicModelDto[];
  @ApiProperty({ example: false }) has_more!: boolean;
  @ApiPropertyOptional({ type: String, nullable: true, example: 'claude-3-5-sonnet-20241022' }) first_id!: string | null;
  @ApiPropertyOptional({ type: String, nullable: true, example: 'claude-3-5-sonnet-20241022' }) last_id!: string | null;
}

/** The `anthropic-version` header that selects Anthropic's format (every Anthropic SDK sends it). */
const ANTHROPIC_FORMAT = ApiHeader({
  name: 'anthropic-version',
  required: false,
  description:
    "Present (as the Anthropic SDKs send it): Anthropic's format, with the Claude models only, Anthropic's error envelope, " +
    "and the credential may come in x-api-key; absent: OpenAI's",
});

/** Marks a query parameter that only Anthropic's format reads (without anthropic-version, the query is ignored). */
const ANTHROPIC_ONLY = 'Anthropic format only (with anthropic-version; ignored without it)';

/** Sent by the Anthropic SDKs' `beta.models` calls. */
const ANTHROPIC_BETA_QUERY = ApiQuery({
  name: 'beta',
  required: false,
  type: String,
  // No example: Swagger UI would fill it in on the OpenAI format's "Try it out", where it means nothing.
  description: `${ANTHROPIC_ONLY}: sent by the Anthropic SDKs' beta.models calls (\`true\`); taken and ignored`,
});

/**
 * `GET /v1/models` and `GET /v1/models/{model}`: the models the caller's product may use, in
 * OpenAI's format; or, for a client that sends `anthropic-version` (the Anthropic SDKs, Claude
 * Code), the Claude models in Anthropic's, which is all the Messages API can serve it.
 */
@ApiTags('models')
@ApiExtraModels(ModelListDto, AnthropicModelListDto, ModelDto, AnthropicModelDto)
// With anthropic-version the token may come in x-api-key, as on /v1/messages; listed after the
// bearer scheme (decorators apply bottom-up).
@ApiSecurity(ANTHROPIC_KEY_SCHEME)
@ApiBearerAuth()
@UseGuards(CredentialGuard, RequestLimitsGuard)
@Controller('v1/models')
export class ModelsController {
  constructor(private readonly router: ProductRouter) {}

  @Get()
  @ApiOperation({ summary: "List the models of the caller's product" })
  @ANTHROPIC_FORMAT
  @ApiQuery({
    name: 'limit',
    required: false,
    // Its default is said, not declared: Swagger UI would fill a declared one in (see beta).
    schema: { type: 'integer', minimum: 1, maximum: 1000 },
    description: `${ANTHROPIC_ONLY}: models per page (20 when left out)`,
  })
  @ApiQuery({
    name: 'after_id',
    required: false,
    type: String,
    description: `${ANTHROPIC_ONLY}: the page after this model (not with before_id)`,
  })
  @ApiQuery({
    name: 'before_id',
    required: false,
    type: String,
    description: `${ANTHROPIC_ONLY}: the page before this model (not with after_id)`,
  })
  @ApiQuery({
    name: 'lifecycle',
    required: false,
    isArray: true,
    enum: ['active', 'deprecated', 'retired'],
    description: `${ANTHROPIC_ONLY}: the lifecycle stages to list, at most 3 (every listed model is active)`,
  })
  @ApiQuery({
    name: 'lifecycle[]',
    required: false,
    isArray: true,
    enum: ['active', 'deprecated', 'retired'],
    description: `${ANTHROPIC_ONLY}: lifecycle as the Anthropic SDKs spell it`,
  })
  @ANTHROPIC_BETA_QUERY
  @ApiOkResponse({
    description: "The models the caller's product serves: OpenAI's list, or with `anthropic-version` Anthropic's page",
    schema: { oneOf: [{ $ref: getSchemaPath(ModelListDto) }, { $ref: getSchemaPath(AnthropicModelListDto) }] },
  })
  @ApiModelsErrors('list')
  list(@Req() request: FastifyRequest): ModelListDto | AnthropicModelListDto {
    const { ctx, principal } = modelCall(request);
    const { product } = this.router.product(principal);
    if (ctx.anthropic)
      return anthropicPage(servedModels(product, 'anthropic').map(anthropicModel), request.query as Record<string, unknown>);
    return { object: 'list', data: servedModels(product).map(([id, provider]) => model(id, provider)) };
  }

  /** A model id with a slash (an OpenAI-compatible host's `meta-llama/Llama-3.1-8B`) is sent encoded, as the SDKs do. */
  @Get(':model')
  @ApiOperation({
    summary: "One model of the caller's product (the SDKs' models.retrieve)",
    description: 'A name the product serves through a pattern (`gpt-4o*`) is answered too: chat would accept it.',
  })
  @ApiParam({ name: 'model', example: 'gpt-4o-mini' })
  @ANTHROPIC_FORMAT
  @ANTHROPIC_BETA_QUERY
  @ApiOkResponse({
    description: "The model: OpenAI's model object, or with `anthropic-version` Anthropic's",
    schema: { oneOf: [{ $ref: getSchemaPath(ModelDto) }, { $ref: getSchemaPath(AnthropicModelDto) }] },
  })
  @ApiModelsErrors('retrieve')
  retrieve(@Req() request: FastifyRequest, @Param('model') id: string): ModelDto | AnthropicModelDto {
    const { ctx, principal } = modelCall(request);
    const { product } = this.router.product(principal);
    ctx.model = id;
    ctx.requestedModel = id;
    // As chat resolves it: 404 model_not_found for a model the product may not use.
    const { provider } = this.router.serve(ctx, product, id).access;
    if (!ctx.anthropic) return model(id, provider);
    // The Messages API serves Claude models only: another provider's model does not exist for this client.
    if (provider !== 'anthropic')
      throw new GatewayError('model_not_found', `The model '${id}' is served by ${provider}; Anthropic's API serves Claude models only`, {
        param: 'model',
      });
    knownQuery(request.query as Record<string, unknown>, ANTHROPIC_SDK_QUERY);
    return anthropicModel([id, provider]);
  }
}

function model(id: string, provider: string): ModelDto {
  return { id, object: 'model', created: 0, owned_by: provider };
}

function anthropicModel([id]: [id: string, provider: string]): AnthropicModelDto {
  return {
    type: 'model',
    id,
    display_name: id,
    created_at: EPOCH,
    lifecycle: 'active',
    capabilities: null,
    line: null,
    max_input_tokens: null,
    max_tokens: null,
    deprecated_at: null,
    retires_at: null,
  };
}

/** Anthropic's `lifecycle` filter (`lifecycle[]=…` as the SDKs send it): whether it keeps active models. */
function listsActive(params: Record<string, unknown>): boolean {
  const values = queryList(params, 'lifecycle', LIFECYCLE, 'active, deprecated or retired', 3);
  return values.length === 0 || values.includes('active');
}

/**
 * One page of Anthropic's model list: `limit` models after `after_id`, or before `before_id`, with
 * `has_more` in the direction paged (Anthropic's cursor rules); none when `lifecycle` asks only for
 * deprecated or retired models. A cursor that names no listed model is refused, as are both cursors
 * at once and any other parameter.
 */
function anthropicPage(all: AnthropicModelDto[], query: Record<string, unknown> | undefined): AnthropicModelListDto {
  const params = knownQuery(query, ['limit', 'after_id', 'before_id', 'lifecycle', 'lifecycle[]', ...ANTHROPIC_SDK_QUERY]);
  const models = listsActive(params) ? all : [];
  const limit = params.limit === undefined ? 20 : Number(queryValue(params.limit, 'limit', PAGE_LIMIT, 'a whole number from 1 to 1000'));
  if (params.after_id !== undefined && params.before_id !== undefined)
    throw new GatewayError('invalid_request', 'after_id and before_id cannot be used together', { param: 'before_id' });
  const cursor = (param: 'after_id' | 'before_id'): number => {
    const id = queryValue(params[param], param, MODEL_ID, 'a model id');
    const at = models.findIndex((m) => m.id === id);
    if (at === -1) throw new GatewayError('invalid_request', `${param}: no model '${id.slice(0, 64)}' in this list`, { param });
    return at;
  };
  let from = 0;
  let to = Math.min(models.length, limit);
  let hasMore = models.length > to;
  if (params.after_id !== undefined) {
    from = cursor('after_id') + 1;
    to = Math.min(models.length, from + limit);
    hasMore = models.length > to;
  } else if (params.before_id !== undefined) {
    to = cursor('before_id');
    from = Math.max(0, to - limit);
    hasMore = from > 0;
  }
  const data = models.slice(from, to);
  return { data, has_more: hasMore, first_id: data[0]?.id ?? null, last_id: data.at(-1)?.id ?? null };
}
