import { Body, Controller, Delete, Get, HttpCode, Inject, Post, Query, Req, UseGuards } from '@nestjs/common';
import { length } from 'class-validator';
import { ApiBearerAuth, ApiBody, ApiCreatedResponse, ApiOkResponse, ApiOperation, ApiQuery, ApiTags } from '@nestjs/swagger';
import { ThrottlerGuard } from '@nestjs/throttler';
import { administers, AdminScopeGuard, adminReach, CredentialGuard, type Principal } from '@keygate/auth';
import { GatewayError } from '@keygate/errors';
import { contextOf, JsonLogger, KEYGATE_LOGGER } from '@keygate/observability';
import { blockedUserKey, BlocksService, CounterStore, fromNanoUsd, utcDay, type Block, type DailyUsage } from '@keygate/limits';
import { SecretsService } from '@keygate/secrets';
import type { FastifyRequest } from 'fastify';
import { ApiAdminErrors } from '../http/api-errors.decorator';
import { knownQuery, queryValue } from '../http/query-params';
import { CurrentPrincipal } from '../http/request.decorators';
import { BlockDto, BlockListDto, CreateBlockDto, DeletedDto, UsageDto } from './admin.dto';

const DAY = /^\d{4}-\d{2}-\d{2}$/;
/** Product names, as in the product keys. */
const PRODUCT = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
/**
 * A user id to find a block by: 1 to 256 characters, counted by the same rule as POST /admin/blocks
 * (class-validator's length), so every user a block can be made for can be named here. Control and
 * invisible characters, which no block can be made for any more, are taken: a block made before
 * keygate refused them must still be found and lifted.
 */
const USER = { test: (value: string): boolean => length(value, 1, 256) };

/**
 * Refuses (403) an operator whose scopes do not take in the product: checked before the product is
 * looked up, so an operator of one product learns nothing of the others.
 */
function mayOperate(admin: Principal, product: string): void {
  if (!administers(adminReach(admin), product))
    throw new GatewayError('forbidden', `this credential may not administer product ${product.slice(0, 64)}`, { param: 'product' });
}

/** The refusal (400) of a product this gateway is not configured with. */
function notConfigured(product: string): GatewayError {
  return new GatewayError('invalid_request', `product ${product} is not configured on this gateway`, { param: 'product' });
}

/** A real calendar day, YYYY-MM-DD: 2024-02-30 is not one. */
function isDay(value: string): boolean {
  if (!DAY.test(value)) return false;
  const [y, m, d] = value.split('-').map(Number);
  return new Date(Date.UTC(y, m - 1, d)).toISOString().slice(0, 10) === value;
}

/** A day's cost totals, kept in billionths of a dollar, in dollars. */
function inDollars(cost: DailyUsage['costNanoUsd']): UsageDto['cost_usd'] {
  // No prototype, as the stores' maps: a user whose id is `__proto__` is a key like any other.
  const users = Object.create(null) as Record<string, number>;
  for (const [user, nano] of Object.entries(cost.users)) users[user] = fromNanoUsd(nano);
  return { total: fromNanoUsd(cost.total), users };
}

/**
 * Operator routes: blocks (in force on every replica within a second) and daily usage. A
 * credential with the `keygate.admin` scope is required, or `keygate.admin:<product>`, which keeps
 * the operator to the products it names; then a per-operator throttle.
 */
@ApiTags('admin')
@ApiBearerAuth()
@UseGuards(CredentialGuard, AdminScopeGuard, ThrottlerGuard)
@Controller('admin')
export class AdminController {
  constructor(
    private readonly blocks: BlocksService,
    @Inject(CounterStore) private readonly counters: CounterStore,
    private readonly secrets: SecretsService,
    @Inject(KEYGATE_LOGGER) private readonly logger: JsonLogger,
  ) {}

  @Post('blocks')
  @HttpCode(201)
  @ApiOperation({
    summary: 'Block a product, or one user of a product',
    description:
      'In force on every replica when the call answers: their next requests get 403 `blocked`, and the requests and streams ' +
      'already running that the block covers are ended with it (a stream with an error event).',
  })
  @ApiBody({
    type: CreateBlockDto,
    examples: {
      user: {
        summary: 'Block one user for an hour',
        value: { product: 'demo', user: 'mallory', reason: 'abuse report #123', expires_in_seconds: 3600 },
      },
    },
  })
  @ApiCreatedResponse({ type: BlockDto, description: 'The block, in force on every replica (with Redis) when this answers' })
  @ApiAdminErrors([
    [
      400,
      'A body that does not validate (unknown or malformed fields, expires_in_seconds outside 1 s–10 years), or a product not configured on this gateway',
      notConfigured('demo-typo'),
    ],
    [408, 'The body did not arrive within the request timeout (API_KEY_SERVER_REQUEST_TIMEOUT_SECONDS; carries Connection: close)'],
    [413, 'Body larger than the largest max_request_bytes of any product'],
    [503, '`service_unavailable`: Redis is down, so block changes are refused; or keygate is shutting down (carries Retry-After)'],
  ])
  async create(@Body() body: CreateBlockDto, @CurrentPrincipal() admin: Principal, @Req() request: FastifyRequest): Promise<Block> {
    mayOperate(admin, body.product);
    // A misspelt product would be a block that stops nothing while the operator believes it does.
    if (!this.secrets.product(body.product)) throw notConfigured(body.product);
    const now = Date.now();
    const block = await this.blocks.create({
      product: body.product,
      user: body.user ?? null,
      reason: body.reason,
      createdAt: new Date(now).toISOString(),
      expiresAt: body.expires_in_seconds ? new Date(now + body.expires_in_seconds * 1000).toISOString() : null,
      createdBy: admin.user,
    });
    // Who blocked or lifted what stays in the log after the block itself is gone, whatever LOG_LEVEL
    // says, under the request's id.
    this.logger.trail(
      'NOTICE',
      'block created',
      {
        product: block.product,
        user: block.user,
        reason: block.reason,
        expiresAt: block.expiresAt,
        by: admin.user,
      },
      contextOf(request.raw),
    );
    return block;
  }

  @Get('blocks')
  @ApiOperation({ summary: 'List the blocks in force, of one product (and one of its users) when asked' })
  @ApiQuery({ name: 'product', required: false, type: String, example: 'demo' })
  @ApiQuery({ name: 'user', required: false, type: String, description: "With product: that user's own block" })
  @ApiOkResponse({ type: BlockListDto, description: 'The blocks in force that this credential may administer, filtered as asked' })
  @ApiAdminErrors([
    [
      400,
      'A query parameter the route does not take, user without product, or a product not configured on this gateway ' +
        '(one since removed from the configuration is listed while a block of it is in force, so that it can be lifted)',
      notConfigured('demo-typo'),
    ],
  ])
  list(@Query() query: Record<string, unknown>, @CurrentPrincipal() admin: Principal): { data: Block[] } {
    // A filter that is ignored would read as "no block" for the product or user asked about.
    const { product: productParam, user: userParam } = knownQuery(query, ['product', 'user']);
    const product = productParam === undefined ? undefined : queryValue(productParam, 'product', PRODUCT, 'one product name');
    if (userParam !== undefined && product === undefined)
      throw new GatewayError('invalid_request', 'user needs product', { param: 'product' });
    const user = userParam === undefined ? undefined : queryValue(userParam, 'user', USER, 'one user id (1-256 characters)');
    const blocks = this.blocks.list();
    if (product !== undefined) {
      mayOperate(admin, product);
      // A misspelt product would read as "no block": refused, as POST /admin/blocks and GET
      // /admin/usage refuse it. A product since removed from the configuration may still have a block
      // in Redis (back in force if the product comes back): that one is listed, for DELETE to lift.
      if (!this.secrets.product(product) && !blocks.some((block) => block.product === product)) throw notConfigured(product);
    }
    const reach = adminReach(admin);
    return {
      data: blocks.filter(
        (block) =>
          administers(reach, block.product) &&
          (product === undefined || block.product === product) &&
          (user === undefined || (block.user !== null && blockedUserKey(block.user) === blockedUserKey(user))),
      ),
    };
  }

  @Delete('blocks')
  @ApiOperation({ summary: 'Lift a block' })
  @ApiQuery({ name: 'product', required: true, type: String, example: 'demo' })
  @ApiQuery({ name: 'user', required: false, type: String, example: 'mallory', description: 'Absent: the block of the whole product' })
  @ApiOkResponse({ type: DeletedDto, description: 'The block is lifted' })
  @ApiAdminErrors([
    [404, '`route_not_found`: no such block in force', new GatewayError('route_not_found', 'no such block')],
    [503, '`service_unavailable`: Redis is down, so block changes are refused; or keygate is shutting down (carries Retry-After)'],
  ])
  async remove(
    @Query() query: Record<string, unknown>,
    @CurrentPrincipal() admin: Principal,
    @Req() request: FastifyRequest,
  ): Promise<{ deleted: boolean }> {
    const { product: productParam, user: userParam } = knownQuery(query, ['product', 'user']);
    if (productParam === undefined) throw new GatewayError('invalid_request', 'product is required', { param: 'product' });
    const product = queryValue(productParam, 'product', PRODUCT, 'one product name');
    mayOperate(admin, product);
    // Not refused when the product is not configured (unlike POST): a product since removed from the
    // configuration keeps its blocks in Redis until they are lifted. A misspelt one lifts nothing and is told 404.
    const user = userParam === undefined ? null : queryValue(userParam, 'user', USER, 'one user id (1-256 characters)');
    const deleted = await this.blocks.remove(product, user);
    if (!deleted) throw new GatewayError('route_not_found', 'no such block');
    this.logger.trail('NOTICE', 'block lifted', { product, user, by: admin.user }, contextOf(request.raw));
    return { deleted };
  }

  @Get('usage')
  @ApiOperation({ summary: "A product's requests, tokens and cost for one UTC day, in total and per user" })
  @ApiQuery({ name: 'product', required: true, type: String, example: 'demo' })
  @ApiQuery({
    name: 'date',
    required: false,
    type: String,
    description: 'YYYY-MM-DD (UTC): today (the default) or yesterday; counts are kept two days',
  })
  @ApiOkResponse({ type: UsageDto, description: "The product's counts and cost for the day, in total and per user" })
  @ApiAdminErrors([
    [
      400,
      'A query parameter the route does not take, no product, a product not configured on this gateway, or a date other than today or yesterday (UTC)',
      notConfigured('demo-typo'),
    ],
  ])
  async usage(@Query() query: Record<string, unknown>, @CurrentPrincipal() admin: Principal): Promise<UsageDto> {
    const { product: productParam, date: dateParam } = knownQuery(query, ['product', 'date']);
    if (productParam === undefined) throw new GatewayError('invalid_request', 'product is required', { param: 'product' });
    const product = queryValue(productParam, 'product', PRODUCT, 'one product name');
    mayOperate(admin, product);
    // A misspelt product would read as a product that had no traffic.
    if (!this.secrets.product(product)) throw notConfigured(product);
    if (dateParam !== undefined && (typeof dateParam !== 'string' || !isDay(dateParam)))
      throw new GatewayError('invalid_request', 'date must be one calendar day, YYYY-MM-DD', { param: 'date' });
    const now = Date.now();
    const [today, yesterday] = [utcDay(now), utcDay(now - 86_400_000)];
    const day = dateParam ?? today;
    // Older days' counters have expired and later ones do not exist yet: zeros would be a false answer.
    if (day !== today && day !== yesterday)
      throw new GatewayError(
        'invalid_request',
        `date must be today (${today}) or yesterday (${yesterday}), UTC: daily counts are kept two days`,
        {
          param: 'date',
        },
      );
    const { scope, requests, tokens, costNanoUsd } = await this.counters.usage(product, day);
    return { product, date: day, scope, requests, tokens, cost_usd: inDollars(costNanoUsd) };
  }
}
